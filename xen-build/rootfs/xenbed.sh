# shellcheck shell=sh
# /usr/lib/xenbed.sh: helpers for scenario scripts inside the test bed (busybox sh).
# Sourced by /init and by every scenario's dom0.sh and guest.sh:  . /usr/lib/xenbed.sh
#
# Verdicts: a scenario fails if any bed_check/bed_fail fails (in dom0, or in a guest whose
# result dom0 collects with bed_guest_result), or if dom0.sh exits non-zero.
# Serial-log markers (read by xen-build/run): "XENBED: ...", "XENBED-CHECK: ok|FAIL: ...",
# "XENBED-RESULT: ...", guests' lines prefixed with "[<guest name>] ".

BED_STATE=/run/xenbed
BED_CONSOLE_DIR=/var/log/xen/console
mkdir -p "$BED_STATE" 2>/dev/null

# ---------------------------------------------------------------- both sides

bed_uptime() { cut -d' ' -f1 /proc/uptime; }

# bed_log MESSAGE...: a timestamped progress line (uptime of this domain).
bed_log() { echo "XENBED: [$(bed_uptime)s] $*"; }

# bed_fail MESSAGE...: record a failed check (the scenario will FAIL) and go on.
bed_fail() {
    echo "XENBED-CHECK: FAIL: $*"
    echo "$*" >>"$BED_STATE/failed"
}

# bed_check DESCRIPTION COMMAND [ARG...]: run COMMAND; record ok or FAIL under DESCRIPTION.
# Returns COMMAND's status, so `bed_check ... || exit 1` stops a scenario at a fatal step.
bed_check() {
    _bc_desc=$1
    shift
    if "$@"; then
        echo "XENBED-CHECK: ok: $_bc_desc"
        return 0
    else
        _bc_rc=$?
        bed_fail "$_bc_desc (status $_bc_rc)"
        return "$_bc_rc"
    fi
}

# bed_skip REASON...: end the scenario as SKIP (dom0 only; e.g. a needed feature is absent).
bed_skip() {
    echo "$*" >"$BED_STATE/skip"
    bed_log "skip: $*"
    exit 0
}

# bed_retry TRIES DELAY COMMAND [ARG...]: run COMMAND until it succeeds, at most TRIES times.
bed_retry() {
    _br_n=$1
    _br_d=$2
    shift 2
    while :; do
        "$@" && return 0
        _br_n=$((_br_n - 1))
        [ "$_br_n" -gt 0 ] || return 1
        sleep "$_br_d"
    done
}

# bed_ping ADDRESS: three echo replies out of three (busybox ping itself succeeds on one),
# after at most ~10 s for the link/ARP to come up (a single ping retried every second).
# A batch with a loss is reported and retried once; two lossy batches fail.
bed_ping() {
    bed_retry 10 1 ping -c 1 -W 1 "$1" >/dev/null 2>&1
    for _bp_try in 1 2; do
        _bp_out=$(ping -c 3 -i 0.3 -W 2 "$1" 2>&1)
        echo "$_bp_out"
        case $_bp_out in *" 0% packet loss"*) return 0 ;; esac
        bed_log "ping $1: not 3/3 (try $_bp_try)"
    done
    return 1
}

# bed_wait_file PATH TIMEOUT_S: wait until PATH exists.
bed_wait_file() {
    bed_retry $(($2 * 5)) 0.2 test -e "$1"
}

# ---------------------------------------------------------------- guest side

# bed_wait_signal KEY TIMEOUT_S: wait for dom0's bed_guest_signal KEY; print its value.
bed_wait_signal() {
    _bw_n=$(($2 * 5))
    while [ "$_bw_n" -gt 0 ]; do
        xenstore-read "data/xenbed-$1" 2>/dev/null && return 0
        _bw_n=$((_bw_n - 1))
        sleep 0.2
    done
    return 1
}

# bed_publish KEY VALUE: a value dom0 can read with bed_guest_read NAME KEY.
bed_publish() { xenstore-write "data/xenbed-$1" "$2"; }

# ---------------------------------------------------------------- dom0 side

# bed_guest_domid NAME: the domain id of guest NAME.
bed_guest_domid() { xl domid "$1" 2>/dev/null; }

_bed_cr=$(printf '\r')
# _bed_prefix NAME: copy stdin to stdout line by line, prefixed "[NAME] ", without CRs.
_bed_prefix() {
    while IFS= read -r _bp_l; do
        echo "[$1] ${_bp_l%"$_bed_cr"}"
    done
}

# bed_guest_create NAME [XL_CONFIG_ITEM...]: start a PV guest running this scenario's
# guest.sh, with the bed's kernel and guest image. Items override the defaults, e.g.
#   bed_guest_create guest "vif=['mac=00:16:3e:00:00:02,bridge=xenbr0']" "memory=128"
# The guest's console is copied to the serial log with a "[NAME] " prefix.
bed_guest_create() {
    _gc_name=$1
    shift
    _gc_cfg=/etc/xen/$_gc_name.cfg
    cat >"$_gc_cfg" <<EOF
name = "$_gc_name"
type = "pv"
kernel = "/boot/guest/kernel"
ramdisk = "/boot/guest/initrd"
extra = "console=hvc0 rdinit=/init quiet"
memory = 256
vcpus = 1
vif = []
on_crash = "preserve"
EOF
    _gc_log=$BED_CONSOLE_DIR/guest-$_gc_name.log
    : >"$_gc_log"
    _gc_fifo=$BED_STATE/$_gc_name.console
    rm -f "$_gc_fifo"
    mkfifo "$_gc_fifo"
    _bed_prefix "$_gc_name" <"$_gc_fifo" &
    tail -f "$_gc_log" >"$_gc_fifo" &
    echo $! >"$BED_STATE/$_gc_name.tail"
    bed_log "xl create $_gc_name $*"
    # (The status is taken right after xl: after an `if` whose branch did not run, $? is 0.)
    xl create "$_gc_cfg" "$@" >"$BED_STATE/$_gc_name.xl.log" 2>&1
    _gc_rc=$?
    if [ "$_gc_rc" = 0 ]; then
        bed_log "guest $_gc_name created, domid $(bed_guest_domid "$_gc_name")"
        return 0
    fi
    bed_log "xl create $_gc_name failed (status $_gc_rc):"
    tail -n 15 "$BED_STATE/$_gc_name.xl.log"
    return "$_gc_rc"
}

# bed_guest_wait NAME PATTERN TIMEOUT_S: wait until the guest's console shows PATTERN
# (a grep -E pattern).
bed_guest_wait() {
    bed_retry $(($3 * 5)) 0.2 grep -qE "$2" "$BED_CONSOLE_DIR/guest-$1.log"
}

# bed_guest_result NAME TIMEOUT_S: wait for the guest's guest.sh to finish; returns its
# status (124 if it did not finish in time). Failed guest checks make it non-zero.
bed_guest_result() {
    if ! bed_guest_wait "$1" '^XENBED-GUEST-DONE rc=' "$2"; then
        bed_log "guest $1 did not finish guest.sh within $2 s"
        return 124
    fi
    _gr_line=$(grep -m1 '^XENBED-GUEST-DONE rc=' "$BED_CONSOLE_DIR/guest-$1.log" | tr -d '\r')
    _gr=$(echo "$_gr_line" | sed -n 's/^XENBED-GUEST-DONE rc=\([0-9]*\).*/\1/p')
    # The guest's own first failure is the most useful reason: record it first.
    [ "${_gr:-1}" = 0 ] || bed_fail "guest $1: $(echo "$_gr_line" | sed 's/^XENBED-GUEST-DONE rc=[0-9]* *//')"
    return "${_gr:-1}"
}

# bed_guest_signal NAME KEY VALUE: tell guest NAME something (it waits with bed_wait_signal).
bed_guest_signal() {
    xenstore-write "/local/domain/$(bed_guest_domid "$1")/data/xenbed-$2" "$3"
}

# bed_guest_read NAME KEY: a value the guest published with bed_publish.
bed_guest_read() {
    xenstore-read "/local/domain/$(bed_guest_domid "$1")/data/xenbed-$2"
}

# bed_guest_destroy NAME: destroy the guest and stop copying its console.
bed_guest_destroy() {
    xl destroy "$1"
    _gd_rc=$?
    sleep 1.1 # busybox tail -f polls once a second: let the console copy drain
    # Stopping tail ends the prefixing loop too (end of file on the fifo).
    [ -f "$BED_STATE/$1.tail" ] && kill "$(cat "$BED_STATE/$1.tail")" 2>/dev/null
    rm -f "$BED_STATE/$1.tail"
    return "$_gd_rc"
}
