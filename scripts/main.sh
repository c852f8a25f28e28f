#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build, and
# run the demo of every watcher kind on every backend that was built.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
build_dir build
backends=$(./build/examples/demo --backends)
for backend in ${backends//,/ }; do
    echo "== demo on the $backend backend"
    ./build/examples/demo "$backend"
done
