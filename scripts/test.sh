#!/usr/bin/env bash
# Every test, on a fresh Debian machine: every suite (conformance, stress,
# fuzz, fork, bad input, fd hygiene, loader, adoption, plugin kit, the
# integrations against real servers) on every backend, in a gcc build, an
# ASan+UBSan build (plugins included), a clang build and under valgrind
# memcheck; the thread and conformance suites under ThreadSanitizer; then the
# builds a packager makes (release with gcc and with
# clang, debugoptimized without asserts), each compiled with -Werror and run
# through the fast suites whose checks are the contract (conformance, bad
# input, fd hygiene: what an optimizer or a missing assert could break); the
# gcc release build is installed and ae-bench run from the installed prefix.
# Every build here is made with -Werror (-Dwerror=true): the build's own
# defaults leave it out, so that a user's newer compiler does not fail it.
# Ends with one line: "tests: N passed, N failed" (a build that fails counts
# as one failed check).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
status=0
ran=()
build_failures=0
started=$SECONDS

# build NAME DIR [meson options...]: -Werror build; false (and counted) if it fails.
build() {
    local name=$1 dir=$2
    shift 2
    if ! build_dir "$dir" -Dwerror=true "$@"; then
        echo "== $name: the build failed"
        build_failures=$((build_failures + 1))
        status=1
        return 1
    fi
}

run() { # run NAME DIR LOGBASE [meson test options...]
    local name=$1 dir=$2 logbase=$3
    shift 3
    echo "== $name ($((SECONDS - started)) s so far)"
    meson test -C "$dir" --print-errorlogs --logbase "$logbase" "$@" || status=1
    # meson appends the wrapper's name to the log's name (valgrind-valgrind.json).
    ran+=("$(ls -t "$dir/meson-logs/$logbase"*.json | grep -v -- '-ts\.' | head -n 1)")
}

# check NAME COMMAND...: one check of its own, outside meson's logs.
checks_passed=0
checks_failed=0
check() {
    local name=$1
    shift
    echo "== $name ($((SECONDS - started)) s so far)"
    if "$@"; then
        checks_passed=$((checks_passed + 1))
    else
        echo "== $name: FAILED"
        checks_failed=$((checks_failed + 1))
        status=1
    fi
}

# install_check DIR: install DIR's build into its prefix and run ae-bench
# from there, with only that prefix's library.
install_check() {
    local dir=$1 prefix libdir out
    prefix=$(meson introspect "$dir" --buildoptions | python3 -c \
        'import json,sys; print({o["name"]: o["value"] for o in json.load(sys.stdin)}["prefix"])')
    libdir=$(meson introspect "$dir" --buildoptions | python3 -c \
        'import json,sys; print({o["name"]: o["value"] for o in json.load(sys.stdin)}["libdir"])')
    [[ $prefix == "$PWD/$dir/"* ]] || { echo "install_check: prefix $prefix is not inside $dir"; return 1; }
    rm -rf "$prefix"
    meson install -C "$dir" --quiet >/dev/null || return 1
    out=$(cd / && LD_LIBRARY_PATH="$prefix/$libdir" "$prefix/bin/ae-bench" --quick --reps 1 \
        --workloads idle,condvar --backends poll,libev 2>&1) || { printf '%s\n' "$out"; return 1; }
    grep -q "^idle" <<<"$out" && grep -q "^condvar" <<<"$out" || { printf '%s\n' "$out"; return 1; }
}

build "gcc" build && run "gcc" build testlog
build "gcc, ASan+UBSan" build-asan -Db_sanitize=address,undefined -Db_lundef=false &&
    run "gcc, ASan+UBSan" build-asan testlog
CC=clang build "clang" build-clang && run "clang" build-clang testlog
[ -f build/build.ninja ] && run "valgrind memcheck" build valgrind \
    --wrapper "valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
    --timeout-multiplier 4
# ThreadSanitizer over the thread suite and the conformance suite (plugins
# instrumented too: no -z defs). tests/tsan.supp says what it hides and why.
# A check may take five times as long there (a million timers).
build "gcc, ThreadSanitizer" build-tsan -Db_sanitize=thread -Db_lundef=false &&
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp:halt_on_error=1" \
        run "gcc, ThreadSanitizer" build-tsan testlog --suite threads --suite conformance \
        --test-args "--timeout 300" --timeout-multiplier 3

# As packagers build: -O3 (release) and without asserts. The gcc release
# build is also installed (into build-release/prefix) and the benchmark run
# from there, as from the build tree.
# Their runs are a subset, to keep the whole within CI's time budget.
packaged=(--suite conformance --suite badinput --suite fdhygiene)
build "gcc, release" build-release -Dbuildtype=release -Dprefix="$PWD/build-release/prefix" &&
    run "gcc, release" build-release testlog "${packaged[@]}" &&
    check "installed ae-bench runs" install_check build-release
CC=clang build "clang, release" build-release-clang -Dbuildtype=release &&
    run "clang, release" build-release-clang testlog "${packaged[@]}"
build "gcc, debugoptimized, no asserts" build-ndebug -Dbuildtype=debugoptimized -Db_ndebug=true &&
    run "gcc, debugoptimized, no asserts" build-ndebug testlog "${packaged[@]}"

echo "== all builds and runs took $((SECONDS - started)) s"

# Count the cmocka checks of every run (a binary that died counts as failed).
python3 - "$checks_passed" "$((checks_failed + build_failures))" "${ran[@]}" <<'PY'
import json, re, sys
passed = int(sys.argv[1])  # checks outside meson
failed = int(sys.argv[2])  # those that failed, and builds that failed
for path in sys.argv[3:]:
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
