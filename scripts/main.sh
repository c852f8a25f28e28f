#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build, and
# run the benchmark comparison across all backends (anyevent on each backend
# against the same workloads written natively), printing the table and
# drawing build/ae-bench.png. Extra arguments go to ae-bench (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
build_dir build
echo "== backends usable here: $(./build/examples/demo --backends)"
./build/bench/ae-bench --plot build/ae-bench.png "$@"
