# Open vSwitch scenarios (ovs: our netback; ovs-kernel: the kernel's xen-netback, the
# control): dom0 starts Open vSwitch as Debian's openvswitch-switch runs it (ovsdb-server
# with the packaged schema, ovs-vswitchd on the kernel datapath), a bridge ovsbr0 at
# 10.0.0.1, and a guest whose vif line names vif-openvswitch; the guest runs the stock
# Linux xen-netfront.

# ovs_start: the database and both daemons, as the packaged ovs-ctl starts them.
ovs_start() {
    mkdir -p /etc/openvswitch /var/run/openvswitch /var/log/openvswitch &&
        ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema &&
        ovsdb-server /etc/openvswitch/conf.db --remote=punix:/var/run/openvswitch/db.sock \
            --pidfile --detach --log-file &&
        ovs-vsctl --no-wait init &&
        ovs-vswitchd --pidfile --detach --log-file
}

# ovs_diag: where the frames stopped when a ping failed: the vif's counters as the kernel
# and as Open vSwitch count them, and the daemon's last log lines. (busybox `ip` has no
# -s; the image has ovs-vsctl, not ovs-ofctl/ovs-appctl.) The vif counts what its backend
# wrote into it as rx, what the bridge sent the guest as tx.
ovs_diag() {
    for c in rx_packets tx_packets rx_dropped tx_dropped; do
        echo "[diag] $NET_VIF $c $(cat "/sys/class/net/$NET_VIF/statistics/$c" 2>&1)"
    done
    for i in "$NET_VIF" ovsbr0; do
        echo "[diag] ovs $i statistics: $(ovs-vsctl get interface "$i" statistics 2>&1)"
    done
    tail -n 20 /var/log/openvswitch/ovs-vswitchd.log 2>&1 | sed 's/^/[diag] /'
}

# ovs_dom0 BACKEND: the dom0 side with BACKEND `ours` (our netback, started with no
# bridge) or `kernel` (xen-netback).
ovs_dom0() {
    _ovs_backend=$1
    # libcrc32c (a dependency) needs a crc32c implementation first; busybox modprobe
    # ignores its softdep.
    bed_check "modprobe tun openvswitch" modprobe -a tun crc32c_generic openvswitch || exit 1
    bed_check "Open vSwitch started (ovsdb-server, ovs-vswitchd)" ovs_start || {
        tail -n 5 /var/log/openvswitch/*.log
        exit 1
    }
    bed_check "ovs-vsctl add-br ovsbr0 at $NET_DOM0_IP" sh -c \
        "ovs-vsctl add-br ovsbr0 && ip addr add $NET_DOM0_IP/24 dev ovsbr0 && ip link set ovsbr0 up" || exit 1
    net_tcp_listen
    if [ "$_ovs_backend" = kernel ]; then
        bed_check "modprobe xen-netback" modprobe xen-netback || exit 1
    else
        net_netback_serve || exit 1
    fi
    bed_check "xl create guest with script=vif-openvswitch,bridge=ovsbr0" \
        bed_guest_create guest "vif=['mac=$NET_MAC,script=vif-openvswitch,bridge=ovsbr0']" || {
        tail -n 10 /var/log/xen/xen-hotplug.log
        exit 1
    }
    _domid=$(bed_guest_domid guest)
    NET_BE=/local/domain/0/backend/vif/$_domid/0
    NET_FE=/local/domain/$_domid/device/vif/0
    NET_VIF=vif$_domid.0
    bed_check "libxl ran vif-openvswitch" sh -c "xenstore-read $NET_BE/script | grep -q '/vif-openvswitch\$'"
    bed_check "vif-openvswitch reported success (hotplug-status connected)" \
        test "$(xenstore-read "$NET_BE/hotplug-status")" = connected
    bed_log "ovsbr0 ports: $(ovs-vsctl list-ports ovsbr0 | tr '\n' ' '); $NET_VIF external-ids: $(ovs-vsctl get interface "$NET_VIF" external-ids 2>&1)"
    bed_check "$NET_VIF is a port of ovsbr0" sh -c "ovs-vsctl list-ports ovsbr0 | grep -qx $NET_VIF"
    bed_check "the port carries the VM's MAC and name (external-ids)" sh -c \
        "ovs-vsctl get interface $NET_VIF external-ids | grep -q 'attached-mac=\"$NET_MAC\"' &&
         ovs-vsctl get interface $NET_VIF external-ids | grep -q 'xen-vm-name=guest'"
    bed_check "$NET_VIF is up" sh -c "ip link show $NET_VIF | grep -q ',UP'"

    bed_check "guest's checks (ping dom0, TCP to dom0)" bed_guest_result guest 180
    bed_check "dom0 -> guest ping through ovsbr0" bed_ping "$NET_GUEST_IP" || ovs_diag
    bed_check "TCP receiver (guest -> dom0) finished" bed_wait_file /tmp/rx.done 30
    _want=$(bed_guest_read guest tx-sha256)
    _got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
    bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_got (guest says ${_want:-nothing})"
    bed_check "TCP guest -> dom0 through ovsbr0 arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
    bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$NET_BE/state")" = 4

    net_destroy guest
    bed_check "vif-openvswitch offline removed $NET_VIF from ovsbr0" \
        bed_retry 50 0.2 sh -c "! ovs-vsctl list-ports ovsbr0 | grep -qx $NET_VIF"
    bed_check "no vif$_domid.* interface left after xl destroy" \
        bed_retry 25 0.2 sh -c "! ls /sys/class/net | grep -q '^vif$_domid\\.'"
    [ "$_ovs_backend" = kernel ] || net_netback_stop
}

# ovs_guest: the guest side: the stock Linux xen-netfront behind a vif on dom0's bridge.
ovs_guest() {
    net_guest_kernel_netfront || exit 1
    ip addr add "$NET_GUEST_IP/24" dev eth0 && ip link set eth0 up || {
        bed_fail "cannot configure eth0"
        exit 1
    }
    bed_check "guest -> dom0 ping through ovsbr0" bed_ping "$NET_DOM0_IP" || {
        for c in rx_packets tx_packets rx_dropped tx_dropped; do
            echo "[diag] eth0 $c $(cat "/sys/class/net/eth0/statistics/$c" 2>&1)"
        done
        ip neigh 2>&1 | sed 's/^/[diag] /'
        exit 1
    }
    dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=16 2>/dev/null
    bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
    bed_check "TCP send of 1 MiB to dom0" timeout 90 nc "$NET_DOM0_IP" 5001 </tmp/tx.bin
}
