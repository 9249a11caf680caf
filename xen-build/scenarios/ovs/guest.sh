# ovs, guest side: the stock Linux xen-netfront behind a vif on dom0's Open vSwitch bridge.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
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
