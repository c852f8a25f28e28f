#!/usr/bin/env bash
# Runs one test program under valgrind memcheck again and again, looking for
# an intermittent hang, and takes the evidence when one shows:
#   bash scripts/valgrind-loop.sh RUNS PARALLEL OUTDIR PROGRAM [ARGS...]
# e.g. bash scripts/valgrind-loop.sh 200 3 /tmp/vg build/tests/integrations/curl/integration-curl libuv
# A run whose output has not grown for STALL seconds (default 60) gets
# OUTDIR/run-W-I.log.hang: its threads' states and system calls
# (/proc/PID/task/*) and every thread's backtrace through valgrind's gdb
# server (vgdb). Runs are niced: the machine may be shared. OUTDIR/results
# has one line per run: worker, run, exit code, "HANG" if one was examined.
# A stall that ends and passes is slowness (a loaded machine), not a hang.
set -uo pipefail
[ $# -ge 4 ] || { sed -n 2,12p "$0"; exit 2; }
runs=$1 parallel=$2 out=$3
shift 3
stall=${STALL:-60}
mkdir -p "$out"

examine() { # examine PID LOG
    local pid=$1 log=$2 t
    {
        echo "== stalled for ${stall} s: pid $pid"
        tail -3 "$log"
        for t in /proc/"$pid"/task/*; do
            echo "$t state $(cut -d' ' -f3 "$t/stat") utime,stime $(cut -d' ' -f14,15 "$t/stat") syscall: $(cat "$t/syscall")"
        done
        timeout 60 gdb -batch -ex "target remote | vgdb --pid=$pid" -ex "info threads" \
            -ex "thread apply all bt" 2>&1
    } > "$log.hang" 2>&1
}

worker() { # worker W
    local w=$1 i log pid size last still rc
    shift
    for ((i = 1; i <= runs / parallel; i++)); do
        log=$out/run-$w-$i.log
        nice -n 15 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --error-exitcode=99 "$@" > "$log" 2>&1 &
        pid=$!
        last=-1 still=0
        while kill -0 "$pid" 2>/dev/null; do
            sleep 5
            size=$(stat -c %s "$log")
            if [ "$size" = "$last" ]; then still=$((still + 5)); else still=0 last=$size; fi
            [ "$still" -ge "$stall" ] && [ ! -f "$log.hang" ] && examine "$pid" "$log"
        done
        wait "$pid"
        rc=$?
        echo "$w $i rc=$rc$([ -f "$log.hang" ] && echo " HANG")" >> "$out/results"
        [ "$rc" -eq 0 ] && [ ! -f "$log.hang" ] && rm -f "$log"
    done
}

for ((w = 1; w <= parallel; w++)); do
    worker "$w" "$@" &
done
wait
echo "runs: $(wc -l < "$out/results"), failed: $(grep -vc ' rc=0' "$out/results"), examined: $(grep -c HANG "$out/results")"
