# shellcheck shell=bash disable=SC2034
# Shared helpers for the host-side xen-build scripts (setup, run, build-image).
# Sourced, never executed. Callers use `set -euo pipefail`.

XB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XB_ROOT=$(cd "$XB_DIR/.." && pwd)
XB_CACHE=${XENBED_CACHE:-$XB_DIR/cache}
XB_OUT=${XENBED_OUT:-$XB_DIR/out}
# Where scenarios live (xen-build/selftest points this at its fixtures).
XB_SCENARIOS=${XENBED_SCENARIO_DIR:-$XB_DIR/scenarios}

# Layout of the cache (all derived, all rebuildable by `setup`):
XB_DEBS=$XB_CACHE/debs          # downloaded .debs, verified by SHA256
XB_XEN=$XB_CACHE/xen            # extracted Xen hypervisor, tools and libraries
XB_KERNEL=$XB_CACHE/kernel      # extracted kernel image + the modules we use
XB_QEMU=$XB_CACHE/qemu          # extracted QEMU + the runtime libraries the host lacks
XB_TOOLS=$XB_CACHE/tools        # extracted busybox (and xz when the host has none)
XB_IMG=$XB_CACHE/img            # boot images: xen, vmlinux, guest kernel, base initramfs
XB_STAMP=$XB_CACHE/setup.stamp  # written last by a successful setup

# Exit codes shared by setup and run.
XB_EXIT_FAIL=1
XB_EXIT_UNAVAILABLE=2  # a package/QEMU cannot be had here (e.g. no archive access): SKIP

xb_prog=$(basename "$0")
# Under `set -e` an unexpected failure would otherwise end the script without a word.
set -o errtrace
trap 'xb_log "internal error: \"$BASH_COMMAND\" failed (status $?) at ${BASH_SOURCE[0]##*/}:$LINENO"' ERR
xb_log() { printf '%s: %s\n' "$xb_prog" "$*" >&2; }
xb_die() { printf '%s: error: %s\n' "$xb_prog" "$*" >&2; exit "$XB_EXIT_FAIL"; }
xb_unavailable() { printf '%s: unavailable: %s\n' "$xb_prog" "$*" >&2; exit "$XB_EXIT_UNAVAILABLE"; }

# Monotonic-ish seconds with one decimal, for timings.
xb_now() { date +%s.%N; }
xb_elapsed() { awk -v a="$1" -v b="$(xb_now)" 'BEGIN { printf "%.1f", b - a }'; }

# The kernel release of the extracted kernel (one directory under lib/modules).
xb_kver() {
    local d
    for d in "$XB_KERNEL"/lib/modules/*/; do
        [ -d "$d" ] && { basename "$d"; return 0; }
    done
    return 1
}

# Check that setup has completed; say how to fix it otherwise.
xb_require_setup() {
    [ -f "$XB_STAMP" ] || xb_die "the test bed is not set up ($XB_STAMP missing); run xen-build/setup first"
}

# PATH additions for tools extracted by setup (busybox, xz).
xb_tools_path() { printf '%s' "$XB_TOOLS/bin"; }

# xb_lock_cache shared|exclusive: hold the cache lock until this process exits. `run` holds
# it shared while it boots; `setup` takes it exclusive only to rebuild the cache.
xb_lock_cache() {
    local how=-s
    [ "$1" = exclusive ] && how=-x
    mkdir -p "$XB_CACHE"
    exec 9>>"$XB_CACHE/.lock"
    if ! flock -n "$how" 9; then
        xb_log "waiting for another test bed process to release $XB_CACHE/.lock"
        flock "$how" 9
    fi
}

# xb_lock_out NAME: one run of scenario NAME at a time (its out/ folder is rewritten).
xb_lock_out() {
    mkdir -p "$XB_OUT/$1"
    exec 8>>"$XB_OUT/$1/.lock"
    if ! flock -n -x 8; then
        xb_log "scenario $1 is being run by another process; waiting"
        flock -x 8
    fi
}
