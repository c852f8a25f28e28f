#!/usr/bin/env bash
# Stream ping-pong (bench/stream): anyevent's raw io watchers and ae_stream
# (AE_EXACTLY, AE_LINE) on each backend, against libevent's bufferevents and
# libuv's streams. For each: round trips per second, CPU microseconds and
# allocations per round trip (from the programs), and system calls per
# message per side, counted with strace -c as the difference between a run
# of 2N and one of N round trips (so that setup does not count), divided by
# 2N messages (N round trips = N messages each way, one side each).
# Usage: scripts/stream-bench.sh [BUILD_DIR] [--quick]
# Environment: SIZES (default "1 64 4096"), BACKENDS (default: every usable one).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
count=100000
for a in "$@"; do
    case $a in
    --quick) count=20000 ;;
    *) build=$a ;;
    esac
done
b=$build/bench/stream
strace_n=2000

syscalls() { # total system calls of a command
    local f
    f=$(mktemp)
    strace -f -c -o "$f" "$@" >/dev/null
    awk '/ total$/ { print $4 }' "$f"
    rm -f "$f"
}

per_message() { # CMD... (COUNT last): syscalls per message per side
    local n1 n2
    n1=$(syscalls "$@" "$strace_n")
    n2=$(syscalls "$@" $((2 * strace_n)))
    awk -v a="$n1" -v b="$n2" -v n="$strace_n" 'BEGIN { printf "%.2f", (b - a) / (2 * n) }'
}

backends=${BACKENDS:-$($build/examples/demo --backends 2>/dev/null | tr ',' ' ' || echo poll)}
echo "== stream ping-pong over a socketpair, one loop, $count round trips (syscalls: strace -c, $strace_n vs $((2 * strace_n)))"
for size in ${SIZES:-1 64 4096}; do
    for mode in exact line; do
        for be in $backends; do
            for m in raw $mode; do
                [ "$m" = raw ] && [ "$mode" = line ] && continue
                line=$($b/ae-stream-bench "$be" "$m" "$size" "$count")
                echo "$line  $(per_message $b/ae-stream-bench "$be" "$m" "$size") syscalls/msg/side"
            done
        done
        for twin in libevent libuv; do
            [ -x "$b/ae-stream-bench-$twin" ] || continue
            line=$($b/ae-stream-bench-$twin "$mode" "$size" "$count")
            echo "$line  $(per_message $b/ae-stream-bench-$twin "$mode" "$size") syscalls/msg/side"
        done
    done
done
echo "== 1,000,000 lines of 16 bytes one way, one AE_LINE request each"
for be in $backends; do
    $b/ae-stream-bench "$be" lines 16 1000000
done
