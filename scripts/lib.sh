# Shared by the scripts in this folder: installing what anyevent needs on a
# Debian machine, and building a configuration.

# Debian packages the build, the tests and the main job need.
AE_PACKAGES=(meson ninja-build pkg-config gcc clang libcmocka-dev valgrind python3 libev-dev libevent-dev libuv1-dev gnuplot-nox libhiredis-dev libc-ares-dev libcurl4-openssl-dev redis-server nginx-light)

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

# build_dir DIR [meson options...]: configure once, then compile.
build_dir() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    meson compile -C "$dir" >/dev/null
}
