#!/usr/bin/env bash
# The pipe chain's run time on libev, anyevent builds against native libev,
# with the time inside each system call (bench/syscall_time.c): ROUNDS rounds,
# each running every configuration once in an order that rotates, each run
# 25 iterations under chrt -f 50 when allowed (the machine is shared: compare
# only configurations measured in the same minutes). Prints the medians over
# the runs, per round (µs): run_us, and the time inside epoll_wait,
# epoll_ctl, send and recv. docs/benchmarks.md, "libev pipe chain at 1,000
# active".
#   bench/pipechain-rotate.sh [--rounds R] [--active A] [--preload SO] CONFIG...
# CONFIG: NAME:BUILD (anyevent's worker and libev plugin of that build tree;
# an optional :VAR=VALUE sets one variable for it) or native:BUILD (that
# tree's ae-bench-libev). Example:
#   bench/pipechain-rotate.sh --rounds 21 anyevent:build native:build
set -euo pipefail
rounds=15 active=1000 preload=
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --active) active=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    -*) echo "pipechain-rotate.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: pipechain-rotate.sh [--rounds R] [--active A] [--preload SO] NAME:BUILD[:VAR=VALUE]..." >&2; exit 2; }
configs=("$@")
first_build=${configs[0]#*:}; first_build=${first_build%%:*}
[ -n "$preload" ] || preload=$(realpath "$first_build/bench/libae-syscall-time.so")
[ -f "$preload" ] || { echo "pipechain-rotate.sh: $preload not built" >&2; exit 1; }
rt=(chrt -f 50)
"${rt[@]}" true 2>/dev/null || rt=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=${#configs[@]}
for ((i = 0; i < rounds; i++)); do
    for ((j = 0; j < n; j++)); do
        IFS=: read -r name build var <<<"${configs[$(((i + j) % n))]}"
        build=$(realpath "$build")
        envs=(AE_SYSCALL_TIME_OUT="$tmp/calls" LD_PRELOAD="$preload")
        if [ "$name" = native ]; then
            cmd=("$build/bench/ae-bench-libev" pipechain)
        else
            cmd=("$build/bench/ae-bench-anyevent" pipechain --backend libev)
            envs+=(ANYEVENT_PLUGIN_PATH="$build/backends/libev")
        fi
        [ -n "${var:-}" ] && envs+=("$var")
        out=$(env "${envs[@]}" "${rt[@]}" "${cmd[@]}" --n 1000 --active "$active" --writes 100 --iterations 25)
        run_us=$(sed -n 's/.*run_us=\([0-9.]*\).*/\1/p' <<<"$out")
        # calls: wait NS N ctl NS N send NS N recv NS N
        read -r _ wait_ns _ _ ctl_ns _ _ send_ns _ _ recv_ns _ <"$tmp/calls"
        echo "$name $run_us $wait_ns $ctl_ns $send_ns $recv_ns" >>"$tmp/runs"
        rm -f "$tmp/calls"
    done
done
echo "pipe chain n=1000 a=$active, $rounds rounds; medians per round (us; a call's time: total / 25 iterations, setup included)"
awk '
    function median(s,    v, k, i, j, t) {
        k = split(s, v, " ")
        for (i = 2; i <= k; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
        return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    { if (!($1 in seen)) { seen[$1] = 1; order[++count] = $1 }
      run[$1] = run[$1] " " $2; w[$1] = w[$1] " " $3 / 25e3; c[$1] = c[$1] " " $4 / 25e3
      s[$1] = s[$1] " " $5 / 25e3; r[$1] = r[$1] " " $6 / 25e3 }
    END { printf "%-10s %8s %8s %8s %8s %8s\n", "config", "run_us", "wait", "ctl", "send", "recv"
          for (i = 1; i <= count; i++) { k = order[i]
              printf "%-10s %8.0f %8.0f %8.0f %8.0f %8.0f\n", k, median(run[k]), median(w[k]), median(c[k]), median(s[k]), median(r[k]) } }
' "$tmp/runs"
