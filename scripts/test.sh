#!/usr/bin/env bash
# Every test, on a fresh Debian machine: every suite (conformance, stress,
# fuzz, fork, bad input, fd hygiene, loader, adoption, plugin kit, the
# integrations against real servers) on every backend, in a gcc build, an
# ASan+UBSan build (plugins included), a clang build and under valgrind
# memcheck.
# Ends with one line: "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
status=0
ran=()

run() { # run NAME DIR LOGBASE [meson test options...]
    local name=$1 dir=$2 logbase=$3
    shift 3
    echo "== $name"
    meson test -C "$dir" --print-errorlogs --logbase "$logbase" "$@" || status=1
    # meson appends the wrapper's name to the log's name (valgrind-valgrind.json).
    ran+=("$(ls -t "$dir/meson-logs/$logbase"*.json | grep -v -- '-ts\.' | head -n 1)")
}

build_dir build || exit 1
run "gcc" build testlog
build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false || exit 1
run "gcc, ASan+UBSan" build-asan testlog
CC=clang build_dir build-clang || exit 1
run "clang" build-clang testlog
run "valgrind memcheck" build valgrind \
    --wrapper "valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
    --timeout-multiplier 4

# Count the cmocka checks of every run (a binary that died counts as failed).
python3 - "${ran[@]}" <<'PY'
import json, re, sys
passed = failed = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            out = t.get("stdout", "") + t.get("stderr", "")
            p = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
            x = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
            if t["result"] not in ("OK", "SKIP") and x == 0:
                x = 1  # a binary that died, or a test that is not cmocka's
            if t["result"] == "OK" and p == 0 and x == 0:
                p = 1  # a test that is not cmocka's counts as one check
            passed += p
            failed += x
print(f"tests: {passed} passed, {failed} failed")
PY
[ $? -eq 0 ] || status=1
exit $status
