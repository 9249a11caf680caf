# bench, guest side: the frontend dom0 names (stock xen-netfront, or our netfront), then
# the measurements dom0 starts one by one (see dom0.sh).
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
SECS=4
front=$(bed_wait_signal front 60) || { bed_fail "dom0 named no frontend"; exit 1; }
case $front in
    stock) net_guest_kernel_netfront || exit 1 ;;
    ours) net_guest_netfront || exit 1 ;;
    *) bed_fail "unknown frontend '$front'"; exit 1 ;;
esac
ip addr add "$NET_GUEST_IP/24" dev eth0 && ip link set eth0 up || { bed_fail "cannot configure eth0"; exit 1; }
bed_check "frontend state is 4 (Connected)" \
    bed_retry 50 0.2 sh -c 'test "$(xenstore-read device/vif/0/state)" = 4'
bed_check "guest -> dom0 ping" bed_ping "$NET_DOM0_IP" || exit 1
bed_publish ready 1

bed_wait_signal go-tcp 120 >/dev/null || { bed_fail "no go-tcp from dom0"; exit 1; }
_n0="nf=$(awk '{print $14"+"$15}' /proc/$(pidof netfront)/stat 2>/dev/null) k=$(head -1 /proc/stat)"
bench bedperf tcp-send --to $NET_DOM0_IP:5001 --secs $SECS >/tmp/tcp-tx.txt 2>&1
_n1="nf=$(awk '{print $14"+"$15}' /proc/$(pidof netfront)/stat 2>/dev/null) k=$(head -1 /proc/stat)"
bed_log "diag guest g2d cpu: before $_n0 after $_n1; $(cat /tmp/tcp-tx.txt)"
bench bedperf tcp-recv --port 5002 >/tmp/tcp-rx.txt 2>&1 &
rx=$!
bed_retry 25 0.2 sh -c 'netstat -ltn | grep -q ":5002 "'
bed_publish rx-ready 1
_n0="nf=$(awk '{print $14"+"$15}' /proc/$(pidof netfront)/stat 2>/dev/null) k=$(head -1 /proc/stat)"
bed_check "TCP receive from dom0" wait "$rx"
_n1="nf=$(awk '{print $14"+"$15}' /proc/$(pidof netfront)/stat 2>/dev/null) k=$(head -1 /proc/stat)"
bed_log "diag guest d2g cpu (from rx-ready): before $_n0 after $_n1"
bed_publish tcp-rx "$(cat /tmp/tcp-rx.txt)"

bed_wait_signal go-udp 120 >/dev/null || { bed_fail "no go-udp from dom0"; exit 1; }
bench bedperf udp-send --to "$NET_DOM0_IP:5003" --frame 64 --secs "$SECS" >/tmp/udp-tx.txt 2>&1
bed_publish udp-tx "$(cat /tmp/udp-tx.txt)"
bed_log "$(cat /tmp/udp-tx.txt)"
# Stay up (and answering pings) until dom0 is done.
bed_wait_signal done 120 >/dev/null
if [ "$front" = ours ]; then
    kill "$(pidof netfront)" 2>/dev/null
    bed_retry 25 0.2 sh -c 'grep -aq "stopped;" /tmp/netfront.log'
    bed_log "diag netfront: $(grep -a 'stopped;' /tmp/netfront.log | tail -n 1)"
fi
