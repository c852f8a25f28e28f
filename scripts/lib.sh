# Shared by the scripts in this folder: installing what anyevent needs on a
# Debian machine, and building a configuration.

# Debian packages the build, the tests and the main job need.
AE_PACKAGES=(meson ninja-build pkg-config gcc clang libcmocka-dev valgrind python3 libev-dev libevent-dev libuv1-dev libglib2.0-dev gnuplot-nox libhiredis-dev libc-ares-dev libcurl4-openssl-dev libssl-dev openssl redis-server nginx-light strace)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the packages that are missing, and nothing when all are there.
ensure_deps() {
    local missing=()
    for p in "${AE_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# build_dir DIR [meson options...]: configure (or, for a folder configured
# before, apply the options again), then compile. -Werror is not a default of
# the build (a new compiler's new warning must not break a user's build): the
# test command asks for it with -Dwerror=true.
build_dir() {
    local dir=$1
    shift
    local out
    if [ ! -f "$dir/build.ninja" ]; then
        out=$(meson setup "$dir" "$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
    elif [ $# -gt 0 ]; then
        out=$(meson configure "$dir" "$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
    fi
    # Quiet when it works; the compiler's messages when it does not.
    out=$(meson compile -C "$dir" 2>&1) || { printf '%s\n' "$out"; return 1; }
}
