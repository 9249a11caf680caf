# xl-compat, guest side: the stock Linux xen-netfront; its vif was created from the
# operator's line (mac=00:16:3e:12:34:56, ip=10.0.0.2, rate=1Mb/s, mtu=1400).
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
net_guest_kernel_netfront || exit 1
_mac=$(cat /sys/class/net/eth0/address)
bed_log "eth0: address $_mac, mtu $(cat /sys/class/net/eth0/mtu), device/vif/0/mtu $(xenstore-read device/vif/0/mtu 2>&1)"
bed_check "eth0 has the vif line's MAC 00:16:3e:12:34:56" test "$_mac" = 00:16:3e:12:34:56
ip addr add "$NET_GUEST_IP/24" dev eth0 && ip link set eth0 up || {
    bed_fail "cannot configure eth0"
    exit 1
}
bed_check "guest -> dom0 ping" bed_ping "$NET_DOM0_IP" || exit 1
dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=16 2>/dev/null
bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
bed_publish eth0-mtu "$(cat /sys/class/net/eth0/mtu)"
bed_publish net-up 1
bed_check "TCP send of 1 MiB to dom0 (at rate=1Mb/s)" timeout 60 nc "$NET_DOM0_IP" 5001 </tmp/tx.bin

# dom0 lowered the rate: 640 KiB more.
bed_wait_signal rate2-go 60 >/dev/null
dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=10 2>/dev/null
bed_publish tx2-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
bed_check "TCP send of 640 KiB to dom0 (at the lowered rate)" timeout 60 nc "$NET_DOM0_IP" 5003 </tmp/tx.bin

# Frames with a source address that is not the vif's ip=: 3 echo requests to 10.0.0.77
# (behind dom0's spy port on the bridge: its MAC from dom0) from the guest's own address,
# 3 from 10.0.0.99, then 3 to dom0 itself from 10.0.0.99. Nobody answers 10.0.0.77.
_spy=$(bed_wait_signal spoof-go 60)
ip addr add 10.0.0.99/32 dev eth0
if [ -n "$_spy" ] && [ "$_spy" != none ]; then
    arp -s 10.0.0.77 "$_spy"
    ping -c 3 -W 1 -I "$NET_GUEST_IP" 10.0.0.77 >/dev/null 2>&1
    ping -c 3 -W 1 -I 10.0.0.99 10.0.0.77 >/dev/null 2>&1
fi
_r=$(ping -c 3 -W 1 -I 10.0.0.99 "$NET_DOM0_IP" 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
bed_log "ping dom0 from spoofed 10.0.0.99: ${_r:-0} replies"
bed_publish spoof-replies "${_r:-0}"
ip addr del 10.0.0.99/32 dev eth0

# dom0 attaches a second vif at runtime: the kernel netfront presents eth1.
bed_check "eth1 appeared (xl network-attach)" bed_retry 150 0.2 test -e /sys/class/net/eth1 &&
    bed_publish eth1-mac "$(cat /sys/class/net/eth1/address)"
# vif-route: a third NIC (MAC from dom0), 10.0.1.2/32, dom0 at 10.0.9.1 through it.
if _mac3=$(bed_wait_signal route-go 90) && [ "$_mac3" != none ]; then
    _ok=fail
    for _i in $(seq 1 75); do
        for _d in /sys/class/net/eth*; do
            [ "$(cat "$_d/address")" = "$_mac3" ] && _eth=${_d##*/} && break 2
        done
        sleep 0.2
    done
    if [ -n "${_eth:-}" ]; then
        ip addr add 10.0.1.2/32 dev "$_eth" && ip link set "$_eth" up &&
            ip route add 10.0.9.1/32 dev "$_eth" &&
            bed_check "guest -> dom0 10.0.9.1 ping via $_eth (vif-route)" bed_ping 10.0.9.1 && _ok=ok
    else
        bed_fail "no NIC with MAC $_mac3 appeared"
    fi
    bed_publish route-ping "$_ok"
fi
bed_check "dom0 says its checks are done" bed_wait_signal checks-done 120 >/dev/null
