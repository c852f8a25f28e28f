#!/bin/bash
# The out-of-tree plugin story, end to end: install this build of anyevent
# into a temporary folder, build backends/epoll/epoll.c against that install
# with nothing but the compiler and pkg-config (docs/plugin-guide.md), and
# check that the plugin loads and runs:
#   - a program built against the installed anyevent.pc loads it by absolute
#     path, by name through ANYEVENT_PLUGIN_PATH, and as the default backend
#     (ANYEVENT_BACKEND), and runs a pipe io watcher and a timer on it;
#   - the installed conformance runner, bin/ae-conformance, runs the whole
#     conformance suite on it (when this build installs the runner).
# Usage: plugin-kit.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR 'CC...' 'EXTRA_CFLAGS'
# (meson passes these; EXTRA_CFLAGS are the build's sanitizer flags, so that
# a program linked against a sanitized libanyevent starts.)
set -euo pipefail

if [ $# -ne 6 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR PREFIX LIBDIR 'CC...' 'EXTRA_CFLAGS'" >&2
    exit 2
fi
build=$1 src=$2 prefix=$3 libdir=$4
read -r -a compiler <<<"$5"
read -r -a extra <<<"$6"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/anyevent-plugin-kit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

step() { echo "plugin-kit: $*"; }

# 1. Install into a staging root; nothing outside $tmp is written.
root=$tmp/root
step "meson install --destdir $root"
meson install -C "$build" --no-rebuild --quiet --destdir "$root" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    echo "plugin-kit: meson install failed" >&2
    exit 1
}
[[ $libdir = /* ]] || libdir=$prefix/$libdir
pcdir=$root$libdir/pkgconfig
[ -f "$pcdir/anyevent.pc" ] || { echo "plugin-kit: no anyevent.pc in $pcdir" >&2; exit 1; }
[ -f "$root$prefix/include/anyevent/backend.h" ] || { echo "plugin-kit: backend.h was not installed" >&2; exit 1; }

# The .pc file names the final prefix; the sysroot points its paths into the
# staging root instead.
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_SYSROOT_DIR=$root
cflags=$(pkg-config --cflags anyevent)
libs=$(pkg-config --libs anyevent)
plugindir=$(pkg-config --variable=plugindir anyevent)
step "pkg-config --cflags: $cflags; --libs: $libs; plugindir: $plugindir"
[ "${plugindir#"$root"}" = "$libdir/anyevent" ] || {
    echo "plugin-kit: plugindir is '$plugindir', expected $libdir/anyevent" >&2
    exit 1
}

# 2. The plugin, out of tree: one source file, the documented command (plus
# warnings as errors, and the build's sanitizer flags if any).
cp "$src/backends/epoll/epoll.c" "$tmp/epoll.c"
step "${compiler[*]} \$(pkg-config --cflags anyevent) -shared -fPIC -o anyevent-epoll.so epoll.c"
(cd "$tmp" && "${compiler[@]}" $cflags -Wall -Wextra -Werror "${extra[@]}" -shared -fPIC -o anyevent-epoll.so epoll.c)
plugin=$tmp/anyevent-epoll.so

# It exports its entry and nothing else of its own.
exported=$(nm -D --defined-only "$plugin" | awk '$2 ~ /^[TDB]$/ {print $3}' | grep -v '^_' | sort | tr '\n' ' ')
[ "$exported" = "anyevent_backend_entry " ] || {
    echo "plugin-kit: the plugin exports '$exported', expected only anyevent_backend_entry" >&2
    exit 1
}

# 3. A program built against the installed anyevent loads it.
step "building the smoke program against the installed anyevent.pc"
"${compiler[@]}" $cflags "${extra[@]}" -o "$tmp/smoke" "$src/tests/plugin-kit/smoke.c" $libs
export LD_LIBRARY_PATH=$root$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
unset ANYEVENT_BACKEND ANYEVENT_PLUGIN_PATH
"$tmp/smoke" "$plugin" epoll
mkdir "$tmp/plugins"
cp "$plugin" "$tmp/plugins/"
ANYEVENT_PLUGIN_PATH=$tmp/plugins "$tmp/smoke" epoll epoll
ANYEVENT_PLUGIN_PATH=$tmp/plugins ANYEVENT_BACKEND=epoll "$tmp/smoke" - epoll

# 4. The installed conformance runner on the out-of-tree plugin.
runner=$root$prefix/bin/ae-conformance
if [ -x "$runner" ]; then
    step "ae-conformance $plugin"
    "$runner" "$plugin"
else
    step "this build installs no bin/ae-conformance: the smoke program above is the check"
fi
step "ok"
