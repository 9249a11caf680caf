# upgrade, guest side: the stock Linux xen-netfront, untouched while dom0 upgrades the
# netback package. A ping every 0.2 s runs across the upgrade; it must have been running
# when dom0 says the upgrade is done, lose at most 10 s of echo requests, and go on.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
net_guest_kernel_netfront || exit 1
ip addr add "$NET_GUEST_IP/24" dev eth0 && ip link set eth0 up || {
    bed_fail "cannot configure eth0"
    exit 1
}
bed_check "guest -> dom0 ping" bed_ping "$NET_DOM0_IP" || exit 1
bed_publish net-up 1
ping -i 0.2 -W 1 "$NET_DOM0_IP" >/tmp/ping.log 2>&1 &
_ping=$!
bed_publish ping-start 1
bed_check "dom0 says the upgrade is done" bed_wait_signal upgraded 150 >/dev/null
bed_check "the ping was running through the upgrade" kill -0 "$_ping"
# 5 s more of pings after the upgrade, then its summary (SIGINT).
sleep 5
kill -INT "$_ping"
wait "$_ping"
_stats=$(grep 'packets transmitted' /tmp/ping.log)
bed_publish ping-stats "$_stats"
bed_log "ping across the upgrade: $_stats"
_tx=$(echo "$_stats" | sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p')
_rx=$(echo "$_stats" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
bed_check "ping across the upgrade: at most 50 (10 s) of $_tx echo requests lost, $_rx answered" \
    test -n "$_tx" -a -n "$_rx" -a "$_tx" -ge 25 -a "$((_tx - _rx))" -le 50
bed_check "the last ping of the series was answered (it survived)" \
    sh -c "tail -n 8 /tmp/ping.log | grep -q 'bytes from $NET_DOM0_IP'"
bed_check "guest -> dom0 ping after the upgrade" bed_ping "$NET_DOM0_IP"
