#!/usr/bin/env bash
# Instructions per event, anyevent against the native libraries, counted with
# valgrind --tool=callgrind: exact and repeatable where timings are noise.
#
# Each figure runs one ae-bench worker (build/bench/ae-bench-*) twice, with N1
# and N2 events, and divides the difference of the two totals by N2 - N1, so
# that start-up, loop creation and teardown cancel out. The workloads:
#   pingpong  one byte over a socketpair, a read watcher on each end: per round
#             trip (two events), each backend against its native reference
#             (libev, libevent, libuv themselves; libevent forced to poll or
#             select for the built-in loops; libev forced to epoll for the
#             epoll plugin, as ae-bench compares them);
#   timer     the lifecycle workload's 0 s one-shot timers, created, fired and
#             freed: per timer, each backend against libev, libevent and libuv;
#   lifecycle the same for signal, idle and io watchers, against libev;
#   idle      one idle watcher called N times in one ae_run: per call, on libev
#             and libuv against the library's own (ev_idle in ev_run, uv_idle
#             in uv_run);
#   phases    with --phases, the lifecycle's create and free calls alone, per
#             watcher of timer, signal, idle and io: callgrind counts only
#             inside ae_KIND and ae_watcher_free (--toggle-collect, callees
#             included), against libev's ev_KIND_start and ev_KIND_stop
#             (libev's ev_KIND_init macros are inline stores, not counted);
#   pipechain with --pipechain, the pipe chain (1,000 pipes, 100 and 1,000
#             active, 100 writes): per round, the whole round, its setup
#             (every watcher stopped and started: ae_io_set twice against
#             ev_io_stop+ev_io_start, event_del+event_add,
#             uv_poll_stop+uv_poll_start; callgrind --toggle-collect) and its
#             run (ae_run_once against ev_run, event_base_loop, uv_run), on
#             libev, libevent and libuv among the backends; against issue 13's
#             targets (setup <= 1.5x, run <= 1.05x native, in time: the
#             instructions are their proxy; the kernel's share is not counted);
#   glib      with glib among the backends, anyevent on GLib against GLib alone
#             (ae-bench-glib): an idle watcher's call (per iteration), and a
#             timer pushed back (timers rearm, per re-arm). GLib's re-arm
#             also writes its context's wake-up fd, a system call callgrind
#             does not count (strace -c shows it).
# The issue's targets are marked met or missed. --require makes named targets
# fail the run when missed (the bench suite requires the ones already met).
#
#   bench/instructions.sh [--build DIR] [--backends LIST] [--quick] [--jobs J]
#                         [--require LIST] [--phases] [--pipechain]
#   --require pingpong/libev,timer/poll,...  pingpong/B: round trip <= 1.10x
#             native on B; timer/B: timer on B <= 1.5x libev's; timer-own/B:
#             timer on B <= native B's (libevent, libuv); signal/B, idle/B:
#             that lifecycle on B <= 1.5x libev's; idle-call/B: an idle
#             call on B (libev, libuv) <= 1.10x B's own; glib-idle, glib-rearm:
#             that glib case <= 1.10x GLib's; pipechain-setup/B,
#             pipechain-run/B (with --pipechain): that part of both rounds on
#             B <= 1.5x, <= 1.05x native.
# Exit: 0, 1 if a required target is missed or a worker failed, 77 when
# valgrind or the workers are missing (meson's "skipped").
set -uo pipefail

build=
backends=
quick=0
jobs=2
require=
phases=0
pipechain=0
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --require) require=$2; shift 2 ;;
    --phases) phases=1; shift ;;
    --pipechain) pipechain=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "instructions.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done

if [ -z "$build" ]; then
    build=$(cd "$(dirname "$0")/.." && pwd)/build
fi
workers=$build/bench
if ! command -v valgrind >/dev/null; then
    echo "instructions.sh: valgrind is not installed" >&2
    exit 77
fi
if [ ! -x "$workers/ae-bench-anyevent" ]; then
    echo "instructions.sh: no $workers/ae-bench-anyevent (build first; no bench in sanitizer builds)" >&2
    exit 77
fi

# Run lengths. The difference must dwarf the few instructions that vary
# between runs (environment, address layout): a few thousand events do.
if [ "$quick" = 1 ]; then
    pp1=1000 pp2=3000 tm1=1000 tm2=3000
else
    pp1=1000 pp2=5000 tm1=1000 tm2=5000
fi

if [ -z "$backends" ]; then
    # Every backend that opens, in anyevent's order of preference.
    for b in libev libuv libevent epoll poll select glib; do
        if "$workers/ae-bench-anyevent" pingpong --backend "$b" --count 1 >/dev/null 2>&1; then
            backends+=${backends:+,}$b
        fi
    done
fi
IFS=, read -r -a backend_list <<<"$backends"

# The native reference of a backend, as ae-bench's native_of(): "impl env label".
native_of() {
    case $1 in
    poll) echo "libevent EVENT_NOEPOLL=1 libevent(poll)" ;;
    select) echo "libevent EVENT_NOEPOLL=1,EVENT_NOPOLL=1 libevent(select)" ;;
    epoll) echo "libev LIBEV_FLAGS=4 libev(epoll)" ;;
    *) echo "$1 - $1" ;;
    esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# measure KEY ENV IMPL N1 N2 ARGS...: writes instructions per event to
# $tmp/KEY (or "unsupported", or "failed" with the reason in $tmp/KEY.err).
# ARGS contain @N@, replaced by the run length. ENV: "-" or VAR=VALUE,...;
# an item collect=FN counts only inside FN (callgrind --toggle-collect).
measure() {
    local key=$1 env=$2 impl=$3 n1=$4 n2=$5
    shift 5
    local exe=$workers/ae-bench-$impl totals=() n
    if [ ! -x "$exe" ]; then
        echo unsupported >"$tmp/$key"
        return
    fi
    local envs=() vgopts=() items=() item
    [ "$env" != - ] && IFS=, read -r -a items <<<"$env"
    for item in "${items[@]}"; do
        case $item in
        collect=*) vgopts+=("--toggle-collect=${item#collect=}") ;;
        *) envs+=("$item") ;;
        esac
    done
    for n in "$n1" "$n2"; do
        local args=("${@//@N@/$n}") out
        if ! out=$(env "${envs[@]}" valgrind --tool=callgrind "${vgopts[@]}" --callgrind-out-file="$tmp/$key.$n.cg" \
            "$exe" "${args[@]}" 2>"$tmp/$key.err"); then
            echo failed >"$tmp/$key"
            return
        fi
        case $out in
        unsupported*) echo unsupported >"$tmp/$key"; return ;;
        ok*) ;;
        *) echo "unexpected output: $out" >>"$tmp/$key.err"; echo failed >"$tmp/$key"; return ;;
        esac
        totals+=("$(awk '/^totals:/ { print $2 }' "$tmp/$key.$n.cg")")
    done
    awk -v a="${totals[0]}" -v b="${totals[1]}" -v n1="$n1" -v n2="$n2" \
        'BEGIN { if (a == "" || b == "") print "failed"; else printf "%.0f\n", (b - a) / (n2 - n1) }' >"$tmp/$key"
}

# Runs "measure ..." lines, $jobs at a time.
running=0
spawn() {
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    measure "$@" &
    running=$((running + 1))
}

for b in "${backend_list[@]}"; do
    read -r nimpl nenv _ <<<"$(native_of "$b")"
    spawn "pp-ae-$b" - anyevent $pp1 $pp2 pingpong --backend "$b" --count @N@
    spawn "pp-nat-$b" "$nenv" "$nimpl" $pp1 $pp2 pingpong --count @N@
    spawn "tm-ae-$b" - anyevent $tm1 $tm2 lifecycle --kind timer --backend "$b" --n @N@
done
for lib in libev libevent libuv; do
    spawn "tm-nat-$lib" - "$lib" $tm1 $tm2 lifecycle --kind timer --n @N@
done
for kind in signal idle io; do
    for b in "${backend_list[@]}"; do
        spawn "lc-ae-$kind-$b" - anyevent $tm1 $tm2 lifecycle --kind $kind --backend "$b" --n @N@
    done
    spawn "lc-nat-$kind" - libev $tm1 $tm2 lifecycle --kind $kind --n @N@
done
idle_backends=()
for b in "${backend_list[@]}"; do
    case $b in
    libev | libuv)
        idle_backends+=("$b")
        spawn "id-ae-$b" - anyevent $tm1 $tm2 idle --backend "$b" --count @N@
        spawn "id-nat-$b" - "$b" $tm1 $tm2 idle --count @N@
        ;;
    esac
done
if [ "$phases" = 1 ]; then
    for kind in timer signal idle io; do
        for b in "${backend_list[@]}"; do
            [ "$b" = glib ] && continue
            spawn "ph-ae-create-$kind-$b" "collect=ae_$kind" anyevent $tm1 $tm2 lifecycle --kind $kind --backend "$b" --n @N@
            spawn "ph-ae-free-$kind-$b" collect=ae_watcher_free anyevent $tm1 $tm2 lifecycle --kind $kind --backend "$b" --n @N@
        done
        spawn "ph-nat-create-$kind" "collect=ev_${kind}_start" libev $tm1 $tm2 lifecycle --kind $kind --n @N@
        spawn "ph-nat-free-$kind" "collect=ev_${kind}_stop" libev $tm1 $tm2 lifecycle --kind $kind --n @N@
    done
fi
# Pipe chain rounds: few, as each is 1,000 fds re-armed and 200-1,100 events.
pc1=3 pc2=9
pc_backends=()
if [ "$pipechain" = 1 ]; then
    for b in "${backend_list[@]}"; do
        case $b in libev | libevent | libuv) pc_backends+=("$b") ;; esac
    done
fi
for b in "${pc_backends[@]}"; do
    case $b in
    libev) nset=collect=ev_io_stop,collect=ev_io_start nrun=collect=ev_run ;;
    libevent) nset=collect=event_del,collect=event_add nrun=collect=event_base_loop ;;
    libuv) nset=collect=uv_poll_stop,collect=uv_poll_start nrun=collect=uv_run ;;
    esac
    for a in 100 1000; do
        args=(pipechain --n 1000 --active $a --writes 100 --iterations @N@)
        spawn "pc-ae-all-$a-$b" - anyevent $pc1 $pc2 "${args[@]}" --backend "$b"
        spawn "pc-nat-all-$a-$b" - "$b" $pc1 $pc2 "${args[@]}"
        spawn "pc-ae-set-$a-$b" collect=ae_io_set anyevent $pc1 $pc2 "${args[@]}" --backend "$b"
        spawn "pc-nat-set-$a-$b" "$nset" "$b" $pc1 $pc2 "${args[@]}"
        spawn "pc-ae-run-$a-$b" collect=ae_run_once anyevent $pc1 $pc2 "${args[@]}" --backend "$b"
        spawn "pc-nat-run-$a-$b" "$nrun" "$b" $pc1 $pc2 "${args[@]}"
    done
done
with_glib=0
[[ ",$backends," == *",glib,"* ]] && with_glib=1
if [ "$with_glib" = 1 ]; then
    spawn gl-ae-idle - anyevent $tm1 $tm2 idle --backend glib --count @N@
    spawn gl-nat-idle - glib $tm1 $tm2 idle --count @N@
    spawn gl-ae-rearm - anyevent $tm1 $tm2 timers --kind rearm --backend glib --count @N@
    spawn gl-nat-rearm - glib $tm1 $tm2 timers --kind rearm --count @N@
fi
wait

failed=0
missed_required=()
get() { cat "$tmp/$1"; }
isnum() { [[ $1 =~ ^-?[0-9]+$ ]]; }
ratio() { # ratio A B: A/B with two decimals, or "-"
    if isnum "$1" && isnum "$2" && [ "$2" -gt 0 ]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'
    else
        echo -
    fi
}
# verdict NAME RATIO LIMIT: "met"/"missed" (or "-"), remembering required misses.
verdict() {
    local name=$1 r=$2 limit=$3 v
    if [ "$r" = - ]; then
        v=-
    elif awk -v r="$r" -v l="$limit" 'BEGIN { exit !(r <= l) }'; then
        v=met
    else
        v=missed
    fi
    if [[ ",$require," == *",$name,"* ]] && [ "$v" != met ]; then
        missed_required+=("$name ($r, limit $limit)")
    fi
    echo "$v"
}
for f in "$tmp"/pp-* "$tmp"/tm-* "$tmp"/lc-* "$tmp"/id-* "$tmp"/gl-* "$tmp"/ph-* "$tmp"/pc-*; do
    case $f in *.cg | *.err | "$tmp/id-*" | "$tmp/gl-*" | "$tmp/ph-*" | "$tmp/pc-*") continue ;; esac
    if [ "$(cat "$f")" = failed ]; then
        failed=1
        echo "instructions.sh: $(basename "$f") failed:" >&2
        sed 's/^/  /' "$f.err" | tail -n 20 >&2
    fi
done

echo "Instructions per event (valgrind --tool=callgrind; (Ir(N2) - Ir(N1)) / (N2 - N1))"
echo
echo "Ping-pong, 1 byte over a socketpair, per round trip (N = $pp1, $pp2)"
printf '%-9s %9s  %-17s %9s  %6s  %s\n' backend anyevent native "" ratio "target <= 1.10x"
for b in "${backend_list[@]}"; do
    read -r _ _ nlabel <<<"$(native_of "$b")"
    a=$(get "pp-ae-$b") n=$(get "pp-nat-$b") r=$(ratio "$a" "$n")
    case $b in
    libev | libevent | libuv | glib) t=$(verdict "pingpong/$b" "$r" 1.10) ;;
    *) t=- ;;
    esac
    printf '%-9s %9s  %-17s %9s  %5sx  %s\n' "$b" "$a" "$nlabel" "$n" "$r" "$t"
done
echo
tev=$(get tm-nat-libev) tevent=$(get tm-nat-libevent) tuv=$(get tm-nat-libuv)
echo "Timer, 0 s one-shot created, fired and freed, per timer (N = $tm1, $tm2)"
echo "native: libev $tev, libevent $tevent, libuv $tuv"
printf '%-9s %9s  %8s  %-8s  %-22s\n' backend anyevent "/ libev" "<= 1.5x" "<= own library's"
for b in "${backend_list[@]}"; do
    a=$(get "tm-ae-$b") r=$(ratio "$a" "$tev")
    t=$(verdict "timer/$b" "$r" 1.5)
    own=-
    case $b in
    libevent | libuv)
        n=$(get "tm-nat-$b") ro=$(ratio "$a" "$n")
        own="${ro}x $b: $(verdict "timer-own/$b" "$ro" 1.0)"
        ;;
    esac
    printf '%-9s %9s  %7sx  %-8s  %-22s\n' "$b" "$a" "$r" "$t" "$own"
done

echo
echo "Lifecycle against libev: a watcher created, called once and freed, per watcher (N = $tm1, $tm2)"
echo "(the issue's lifecycle target, <= 1.5x libev for signal and idle, is in time; instructions are its proxy)"
printf '%-7s %-9s %9s  %9s  %6s  %s\n' kind backend anyevent libev ratio "<= 1.5x"
for kind in signal idle io; do
    n=$(get "lc-nat-$kind")
    for b in "${backend_list[@]}"; do
        a=$(get "lc-ae-$kind-$b") r=$(ratio "$a" "$n")
        case $kind in
        io) t=- ;;
        *) t=$(verdict "$kind/$b" "$r" 1.5) ;;
        esac
        printf '%-7s %-9s %9s  %9s  %5sx  %s\n' "$kind" "$b" "$a" "$n" "$r" "$t"
    done
done

if [ "${#idle_backends[@]}" -gt 0 ]; then
    echo
    echo "Idle, one watcher called N times in one ae_run, per call (N = $tm1, $tm2), against the library's own"
    echo "(ev_idle in ev_run, uv_idle in uv_run)"
    printf '%-9s %9s  %9s  %6s  %s\n' backend anyevent native ratio "<= 1.10x"
    for b in "${idle_backends[@]}"; do
        a=$(get "id-ae-$b") n=$(get "id-nat-$b") r=$(ratio "$a" "$n")
        printf '%-9s %9s  %9s  %5sx  %s\n' "$b" "$a" "$n" "$r" "$(verdict "idle-call/$b" "$r" 1.10)"
    done
fi

if [ "$phases" = 1 ]; then
    echo
    echo "Lifecycle phases against libev, per watcher (N = $tm1, $tm2): create = ae_KIND / ev_KIND_start,"
    echo "free = ae_watcher_free / ev_KIND_stop, callees included (ev_KIND_init is inline: not counted)"
    printf '%-7s %-9s %7s %6s %6s  %7s %6s %6s\n' kind backend create libev ratio free libev ratio
    for kind in timer signal idle io; do
        nc=$(get "ph-nat-create-$kind") nf=$(get "ph-nat-free-$kind")
        for b in "${backend_list[@]}"; do
            [ "$b" = glib ] && continue
            ac=$(get "ph-ae-create-$kind-$b") af=$(get "ph-ae-free-$kind-$b")
            printf '%-7s %-9s %7s %6s %5sx  %7s %6s %5sx\n' "$kind" "$b" "$ac" "$nc" "$(ratio "$ac" "$nc")" \
                "$af" "$nf" "$(ratio "$af" "$nf")"
        done
    done
fi

if [ "${#pc_backends[@]}" -gt 0 ]; then
    echo
    echo "Pipe chain, 1,000 pipes, 100 writes, per round (rounds = $pc1, $pc2): the whole round, its setup"
    echo "(ae_io_set twice per fd against the native stop+start) and its run (ae_run_once against the native"
    echo "loop call); issue 13's targets, setup <= 1.5x and run <= 1.05x, are in time: these are their proxy"
    printf '%-9s %6s  %-5s %9s  %9s  %6s  %s
' backend active part anyevent native ratio target
    for b in "${pc_backends[@]}"; do
        for a in 100 1000; do
            for part in all set run; do
                x=$(get "pc-ae-$part-$a-$b") n=$(get "pc-nat-$part-$a-$b") r=$(ratio "$x" "$n")
                case $part in
                set) t="<= 1.5x: $(verdict "pipechain-setup/$b" "$r" 1.5)" ;;
                run) t="<= 1.05x: $(verdict "pipechain-run/$b" "$r" 1.05)" ;;
                *) t=- ;;
                esac
                printf '%-9s %6s  %-5s %9s  %9s  %5sx  %s
' "$b" "$a" "$part" "$x" "$n" "$r" "$t"
            done
        done
    done
fi

if [ "$with_glib" = 1 ]; then
    echo
    echo "anyevent on GLib against GLib alone (ae-bench-glib), per event (N = $tm1, $tm2)"
    printf '%-7s %9s  %9s  %6s  %s\n' case anyevent glib ratio "<= 1.10x"
    for c in idle rearm; do
        a=$(get "gl-ae-$c") n=$(get "gl-nat-$c") r=$(ratio "$a" "$n")
        printf '%-7s %9s  %9s  %5sx  %s\n' "$c" "$a" "$n" "$r" "$(verdict "glib-$c" "$r" 1.10)"
    done
    echo "(GLib's re-arm also makes one write(2) to its wake-up fd, not counted here)"
fi

# A required target that was not measured (a backend left out) is missed too.
IFS=, read -r -a req_list <<<"$require"
for name in "${req_list[@]}"; do
    case $name in
    glib-*) b=glib ;;
    *) b=${name#*/} ;;
    esac
    if [[ ",$backends," != *",$b,"* ]] || { [[ $name == pipechain-* ]] && [ "$pipechain" != 1 ]; }; then
        missed_required+=("$name (not measured)")
    fi
done
if [ "${#missed_required[@]}" -gt 0 ]; then
    echo
    printf 'required target missed: %s\n' "${missed_required[@]}"
    failed=1
fi
exit $failed
