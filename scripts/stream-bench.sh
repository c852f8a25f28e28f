#!/usr/bin/env bash
# Stream ping-pong (bench/stream): anyevent's raw io watchers and ae_stream
# (AE_EXACTLY, AE_LINE) on each backend, against libevent's bufferevents and
# libuv's streams. For each: round trips per second, CPU microseconds and
# allocations per round trip (from the programs), and system calls per
# message per side, counted with strace -c as the difference between a run
# of 2N and one of N round trips (so that setup does not count), divided by
# 2N messages (N round trips = N messages each way, one side each).
# Then issue 18's larger workloads (bench/stream/scale.c): bulk transfer
# (CPU per GiB against a plain poll/read/write loop, system calls per MiB),
# many connections held by a child process (memory per connection from
# mallinfo2, server CPU per request with 1% active, with and without a read
# timeout on each), and ae_cmd_run against posix_spawn+waitpid (parent
# system calls per run counted with strace -c, parent only).
# Usage: scripts/stream-bench.sh [BUILD_DIR] [--quick]
# Environment: SIZES (default "1 64 4096"), BACKENDS (default: every usable
# one), SCALE_BACKENDS (the larger workloads; default libev), PARTS (default
# "pingpong lines bulk conns cmd").
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
count=100000
quick=
for a in "$@"; do
    case $a in
    --quick) count=20000 quick=1 ;;
    *) build=$a ;;
    esac
done
parts=" ${PARTS:-pingpong lines bulk conns cmd} "
if [ -n "$quick" ]; then
    bulk_mib=256 conns=2000 conns_req=10000 cmd_true=200 cmd_print=500
else
    bulk_mib=1024 conns=10000 conns_req=100000 cmd_true=1000 cmd_print=10000
fi
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
scale_backends=${SCALE_BACKENDS:-libev}
if [[ $parts == *" pingpong "* ]]; then
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
fi
if [[ $parts == *" lines "* ]]; then
echo "== 1,000,000 lines of 16 bytes one way, one AE_LINE request each"
for be in $backends; do
    $b/ae-stream-bench "$be" lines 16 1000000
done
fi

per_mib() { # CMD... (MIB last): syscalls per MiB moved (both ways), 64 vs 128 MiB each way
    local n1 n2
    n1=$(syscalls "$@" 64)
    n2=$(syscalls "$@" 128)
    awk -v a="$n1" -v b="$n2" 'BEGIN { printf "%.1f", (b - a) / 128 }'
}

if [[ $parts == *" bulk "* ]]; then
echo "== bulk: $bulk_mib MiB each way at once over a socketpair, one process, median of 3 (syscalls: strace -c, 64 vs 128 MiB)"
for be in $scale_backends; do
    for impl in plain raw stream stream-ref; do
        # the median of three runs by CPU per GiB (one run is noisy on a shared machine)
        line=$(for r in 1 2 3; do $b/ae-stream-bench "$be" bulk $impl $bulk_mib; done | sort -k12,12n | sed -n 2p)
        echo "$line  $(per_mib $b/ae-stream-bench "$be" bulk $impl) syscalls/MiB"
    done
done
fi
if [[ $parts == *" conns "* ]]; then
echo "== $conns TCP connections (client ends in a child process), 1% active: $conns_req requests of 64 B; rt: read timeout on each"
for be in $scale_backends; do
    for rt in 0 30; do
        for impl in io stream; do
            $b/ae-stream-bench "$be" conns $impl $conns $conns_req $rt
        done
    done
done
for twin in libevent libuv; do
    [ -x "$b/ae-stream-bench-$twin" ] || continue
    for rt in 0 30; do
        $b/ae-stream-bench-$twin conns $conns $conns_req $rt
    done
done
fi

per_run() { # CMD... : the parent's syscalls per run (strace -c without -f), 100 vs 200 runs
    local n1 n2
    n1=$(strace_parent "$1" "$2" "$3" "$4" 100 "$5")
    n2=$(strace_parent "$1" "$2" "$3" "$4" 200 "$5")
    awk -v a="$n1" -v b="$n2" 'BEGIN { printf "%.1f", (b - a) / 100 }'
}
strace_parent() {
    local f
    f=$(mktemp)
    strace -c -o "$f" "$@" >/dev/null
    awk '/ total$/ { print $4 }' "$f"
    rm -f "$f"
}

if [[ $parts == *" cmd "* ]]; then
echo "== ae_cmd_run: $cmd_true runs of /bin/true, $cmd_print of /bin/echo (output captured and checked)"
for be in $scale_backends; do
    for what in true print; do
        n=$cmd_true
        [ $what = print ] && n=$cmd_print
        line=$($b/ae-stream-bench "$be" cmd $what $n)
        echo "$line"
        echo "    parent syscalls/run: posix_spawn+waitpid $(per_run $b/ae-stream-bench "$be" cmd $what plain)," \
            "ae_cmd_run $(per_run $b/ae-stream-bench "$be" cmd $what one), 16 at a time $(per_run $b/ae-stream-bench "$be" cmd $what par)"
    done
done
fi
