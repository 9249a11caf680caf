# shellcheck shell=sh
# /scenario/net.sh: the network checks shared by the our-back, our-front and pair scenarios.
# Lives in xen-build/scenarios/_lib/; build-image copies _lib/ into every scenario's
# /scenario/ before the scenario's own files.
# Sourced after /usr/lib/xenbed.sh by dom0.sh and guest.sh.

NET_DOM0_IP=10.0.0.1
NET_GUEST_IP=10.0.0.2
NET_MAC=00:16:3e:00:00:02
# The vif as xl creates it: our netback only reports hotplug success (vif-userspace).
NET_VIF_USERSPACE="vif=['mac=$NET_MAC,script=vif-userspace']"
NET_VIF_BRIDGE="vif=['mac=$NET_MAC,bridge=xenbr0']"

# net_prefixed NAME CMD [ARG...]: run CMD in the background, its output (stdout and
# stderr) in /tmp/NAME.log and on the console prefixed "[NAME] "; its exit is logged too.
net_prefixed() {
    _np_name=$1
    shift
    : >"/tmp/$_np_name.log"
    {
        "$@" 2>&1
        echo "$_np_name exited, status $?"
    } | tee -a "/tmp/$_np_name.log" | while IFS= read -r _np_l; do echo "[$_np_name] $_np_l"; done &
}

# net_guest_has NAME KEY: guest NAME published KEY (bed_publish); quiet, for bed_retry.
net_guest_has() { bed_guest_read "$1" "$2" >/dev/null 2>&1; }

# net_packaged BIN PACKAGE: BIN on PATH is the one the Debian package PACKAGE shipped
# (scenario.conf `package = PACKAGE ...`: unpacked into the image with dpkg-deb -x).
net_packaged() {
    bed_check "$1 is $2's /usr/sbin/$1 ($(cat "/usr/share/doc/$2/changelog.gz" 2>/dev/null | gunzip 2>/dev/null | head -n 1))" \
        test "$(command -v "$1")" = "/usr/sbin/$1" -a -f "/usr/share/doc/$2/copyright"
}

# net_log_has NAME REGEX: NAME's log (net_prefixed) has a line matching REGEX.
net_log_has() { grep -qE "$2" "/tmp/$1.log"; }

# ------------------------------------------------------------------ dom0

# net_bridge_up: xenbr0 at 10.0.0.1/24 (the vif's dom0 end is plugged into it).
net_bridge_up() {
    ip link add xenbr0 type bridge &&
        ip addr add "$NET_DOM0_IP/24" dev xenbr0 &&
        ip link set xenbr0 up || {
        bed_fail "cannot set up bridge xenbr0"
        return 1
    }
}

# net_tcp_listen: the receiver of the guest -> dom0 transfer (port 5001, into /tmp/rx.bin).
# busybox nc half-closes when its stdin ends and the sender then stops early: the
# listener's stdin is a fifo that this shell holds open and never writes.
net_tcp_listen() {
    mkfifo /tmp/nc.in
    {
        nc -l -p 5001 </tmp/nc.in >/tmp/rx.bin
        touch /tmp/rx.done
    } &
    exec 3>/tmp/nc.in
}

# net_netback_start [SERVE_ARG...]: our netback on real Xen, its TAPs plugged into xenbr0;
# returns once it serves (it then watches backend/vif: `xl create` may follow).
net_netback_start() { net_netback_serve --bridge xenbr0 "$@"; }

# net_netback_serve [SERVE_ARG...]: our netback on real Xen with exactly these options
# (no default bridge: the hotplug script plugs each TAP in); returns once it serves.
net_netback_serve() {
    bed_check "kernel netback is not loaded" sh -c '! grep -q "^xen_netback " /proc/modules' || return 1
    net_packaged netback xen-dba-netback || return 1
    net_prefixed netback netback serve --platform xen "$@"
    bed_check "netback serve started and watches backend/vif" \
        bed_retry 100 0.2 net_log_has netback 'netback: serving' || {
        net_log_has netback 'exited' && bed_log "netback: $(tail -n 3 /tmp/netback.log)"
        return 1
    }
}

# net_dom0_checks NAME: after `xl create NAME`: net_dom0_transfer then net_dom0_verify.
net_dom0_checks() {
    net_dom0_transfer "$1"
    net_dom0_verify "$1"
}

# net_dom0_transfer NAME: the vif is bridged; the dom0 -> guest TCP transfer (port 5002).
# Sets NET_BE, NET_FE (xenstore directories) and NET_VIF (dom0's interface).
net_dom0_transfer() {
    _nd_domid=$(bed_guest_domid "$1")
    NET_BE=/local/domain/0/backend/vif/$_nd_domid/0
    NET_FE=/local/domain/$_nd_domid/device/vif/0
    NET_VIF=vif$_nd_domid.0
    bed_check "$NET_VIF is plugged into xenbr0" \
        bed_retry 25 0.2 test -e "/sys/class/net/xenbr0/brif/$NET_VIF"

    dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=64 2>/dev/null
    NET_SENT=$(sha256sum /tmp/tx.bin | cut -d' ' -f1)
    if bed_check "guest listens for the dom0 -> guest transfer" \
        bed_retry 450 0.2 net_guest_has "$1" rx-ready; then
        bed_check "TCP send of 4 MiB to the guest" timeout 90 nc "$NET_GUEST_IP" 5002 </tmp/tx.bin
    fi
}

# net_dom0_verify NAME: the guest's own checks, states, ping, and both checksums.
net_dom0_verify() {
    bed_check "guest's checks (frontend connected, guest -> dom0 ping, TCP both ways)" \
        bed_guest_result "$1" 180
    bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$NET_BE/state")" = 4
    bed_check "frontend state is 4 (Connected)" test "$(xenstore-read "$NET_FE/state")" = 4
    bed_check "dom0 -> guest ping" bed_ping "$NET_GUEST_IP"

    # The listener exits once the guest has sent everything and closed the connection.
    bed_check "TCP receiver (guest -> dom0) finished" bed_wait_file /tmp/rx.done 5
    _nd_want=$(bed_guest_read "$1" tx-sha256)
    _nd_got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
    bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_nd_got (guest says ${_nd_want:-nothing})"
    bed_check "TCP guest -> dom0 arrived intact (SHA-256)" test -n "$_nd_want" -a "$_nd_want" = "$_nd_got"
    _nd_rx=$(bed_guest_read "$1" rx-sha256)
    bed_log "TCP dom0 -> guest: sent sha256 $NET_SENT, guest received ${_nd_rx:-nothing}"
    bed_check "TCP dom0 -> guest arrived intact (SHA-256)" test "$_nd_rx" = "$NET_SENT"
}

# net_destroy NAME: xl destroy, timed (libxl waits 10 s more for a backend that does not
# answer Closing/Closed), and the backend directory gone.
net_destroy() {
    _ndd_t0=$(bed_uptime)
    bed_check "xl destroy $1" bed_guest_destroy "$1"
    bed_log "xl destroy $1 took $(echo "$(bed_uptime) $_ndd_t0" | awk '{printf "%.1f", $1 - $2 - 1.1}') s"
    bed_check "backend directory removed" sh -c "! xenstore-exists $NET_BE"
}

# net_netback_stop: the vif was removed from netback, which then stops on SIGTERM.
net_netback_stop() {
    bed_check "netback removed the vif" bed_retry 25 0.2 net_log_has netback "$NET_VIF: removed"
    kill "$(pidof netback)" 2>/dev/null
    bed_check "netback stops on SIGTERM (status 0)" bed_retry 25 0.2 net_log_has netback 'netback exited, status 0'
}

# ------------------------------------------------------------------ guest

# net_guest_kernel_netfront: the stock Linux xen-netfront presents eth0.
net_guest_kernel_netfront() {
    bed_check "modprobe xen-netfront" modprobe xen-netfront || return 1
    bed_check "eth0 appeared" bed_retry 50 0.2 test -e /sys/class/net/eth0 || return 1
}

# net_guest_netfront [NETFRONT_ARG...]: our netfront presents eth0 (a TAP); the kernel's
# xen-netfront stays unloaded, so device/vif/0 waits in state 1 for us.
net_guest_netfront() {
    bed_check "kernel xen-netfront is not loaded" sh -c '! grep -q "^xen_netfront " /proc/modules' || return 1
    bed_check "modprobe tun" modprobe tun || return 1
    net_packaged netfront xen-dba-netfront || return 1
    net_prefixed netfront netfront --platform xen --devid 0 --tap eth0 "$@"
    bed_check "netfront connected and presents eth0" \
        bed_retry 150 0.2 sh -c 'test -e /sys/class/net/eth0 && grep -q "connected to" /tmp/netfront.log' || {
        bed_log "netfront: $(tail -n 3 /tmp/netfront.log)"
        return 1
    }
    # netfront gives eth0 the toolstack's MAC, as the kernel netfront does.
    bed_check "eth0 has the vif's MAC ($(xenstore-read device/vif/0/mac))" \
        sh -c 'test "$(cat /sys/class/net/eth0/address)" = "$(xenstore-read device/vif/0/mac)"' || return 1
}

# net_guest_checks: eth0 up at 10.0.0.2, ping dom0, TCP both ways (4 MiB each).
net_guest_checks() {
    ip addr add "$NET_GUEST_IP/24" dev eth0 && ip link set eth0 up || {
        bed_fail "cannot configure eth0"
        return 1
    }
    bed_check "frontend state is 4 (Connected)" \
        bed_retry 50 0.2 sh -c 'test "$(xenstore-read device/vif/0/state)" = 4'
    bed_check "guest -> dom0 ping" bed_ping "$NET_DOM0_IP"

    # dom0 -> guest: a listener on 5002 (stdin held open, see net_tcp_listen).
    mkfifo /tmp/nc.in
    {
        nc -l -p 5002 </tmp/nc.in >/tmp/rx.bin
        touch /tmp/rx.done
    } &
    exec 3>/tmp/nc.in
    bed_retry 25 0.2 sh -c 'netstat -ltn | grep -q ":5002 "'
    bed_publish rx-ready 1

    # guest -> dom0: 4 MiB of random data (many ring slots, GSO), checked by SHA-256 there.
    dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=64 2>/dev/null
    bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
    bed_check "TCP send of 4 MiB to dom0" timeout 90 nc "$NET_DOM0_IP" 5001 </tmp/tx.bin
    bed_check "TCP receive from dom0 finished" bed_wait_file /tmp/rx.done 90
    bed_log "received $(wc -c </tmp/rx.bin) bytes from dom0"
    bed_publish rx-sha256 "$(sha256sum /tmp/rx.bin | cut -d' ' -f1)"
}
