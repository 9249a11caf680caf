# restart, guest side: `guest` runs the stock Linux xen-netfront, `ours` our netfront;
# both untouched while dom0 restarts netback twice under a slow TCP stream from each
# (2.5 MiB over ~10 s).
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
if [ "$BED_NAME" = ours ]; then
    net_guest_netfront || exit 1
    _ip=10.0.0.3 _port=5003
else
    net_guest_kernel_netfront || exit 1
    _ip=$NET_GUEST_IP _port=5001
fi
ip addr add "$_ip/24" dev eth0 && ip link set eth0 up || {
    bed_fail "cannot configure eth0"
    exit 1
}
bed_check "guest -> dom0 ping" bed_ping "$NET_DOM0_IP" || exit 1
bed_publish net-up 1
bed_wait_signal stream-go 120 >/dev/null
dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=40 2>/dev/null
bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
bed_publish tx-start 1
# 64 KiB every 0.25 s: the stream is still running when netback is killed.
bed_check "TCP stream to dom0 across the restarts" timeout 150 sh -c '
    i=0
    while [ $i -lt 40 ]; do
        dd if=/tmp/tx.bin bs=64k skip=$i count=1 2>/dev/null
        sleep 0.25
        i=$((i + 1))
    done | nc '"$NET_DOM0_IP $_port"
bed_check "dom0 says both restarts are done" bed_wait_signal restarts-done 150 >/dev/null
bed_check "guest -> dom0 ping after the restarts" bed_ping "$NET_DOM0_IP"
if [ "$BED_NAME" = ours ]; then
    bed_publish handshakes "$(grep -c 'connected to' /tmp/netfront.log)"
    bed_check "netfront still running" sh -c '! grep -q "netfront exited" /tmp/netfront.log'
fi
