#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build, and
# run the benchmark comparison across all backends (anyevent on each backend
# against the same workloads written natively): prints a summary per backend
# and workload family against the targets of docs/benchmarks.md, then the
# full table, and draws build/ae-bench.png (time ratios) and
# build/ae-bench-memory.png (memory ratios). Extra arguments go to ae-bench
# (e.g. --quick, or --table FILE to keep the full table out of the output).
# Then ae-fork-bench (process templates; --quick passed on) draws
# build/ae-fork-bench.png.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
build_dir build
echo "== backends usable here: $(./build/examples/demo --backends)"
./build/bench/ae-bench --plot build/ae-bench.png "$@"
# Process templates (anyevent/fork.h): spawn rates by the parent's size, RPC.
quick=; for a in "$@"; do if [ "$a" = --quick ]; then quick=--quick; fi; done
./build/bench/fork/ae-fork-bench $quick --plot build/ae-fork-bench.png
# Streams: ae_stream ping-pong against bufferevent and libuv streams, with
# system calls per message; then bulk transfer against a plain read/write
# loop, 2,000 connections (memory per connection, 1% active with read
# timeouts) and ae_cmd_run against posix_spawn, at --quick sizes
# (docs/benchmarks.md, "Streams").
bash scripts/stream-bench.sh build --quick
