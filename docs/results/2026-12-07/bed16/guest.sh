# bench, guest side: the frontend dom0 names (stock xen-netfront, or our netfront), then
# the measurements dom0 starts one by one (see dom0.sh).
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/diag.sh
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
nf=$(pidof netfront)
diag_trace_start "$nf" /tmp/st-g2d.txt
_s0=$(diag_snap)
bed_check "TCP send to dom0 for $SECS s" sh -c "bench bedperf tcp-send --to $NET_DOM0_IP:5001 --secs $SECS"
_s1=$(diag_snap)
diag_trace_stop "$nf" /tmp/st-g2d.txt "g2d netfront"
bed_log "diag g2d guest before: $_s0"
bed_log "diag g2d guest after: $_s1"
bench bedperf tcp-recv --port 5002 >/tmp/tcp-rx.txt 2>&1 &
rx=$!
bed_retry 25 0.2 sh -c 'netstat -ltn | grep -q ":5002 "'
diag_trace_start "$nf" /tmp/st-d2g.txt
_s0=$(diag_snap)
bed_publish rx-ready 1
bed_check "TCP receive from dom0" wait "$rx"
_s1=$(diag_snap)
diag_trace_stop "$nf" /tmp/st-d2g.txt "d2g netfront"
bed_log "diag d2g guest before: $_s0"
bed_log "diag d2g guest after: $_s1"
bed_publish tcp-rx "$(cat /tmp/tcp-rx.txt)"

bed_wait_signal go-udp 120 >/dev/null || { bed_fail "no go-udp from dom0"; exit 1; }
bench bedperf udp-send --to "$NET_DOM0_IP:5003" --frame 64 --secs "$SECS" >/tmp/udp-tx.txt 2>&1
bed_publish udp-tx "$(cat /tmp/udp-tx.txt)"
bed_log "$(cat /tmp/udp-tx.txt)"
# Stay up (and answering pings) until dom0 is done.
bed_wait_signal done 120 >/dev/null
# Our netfront's counters (notifications sent, events taken, idle timeouts, late wake-ups).
if [ "$front" = ours ]; then
    kill "$(pidof netfront)" 2>/dev/null
    bed_retry 25 0.2 sh -c 'grep -aq "stopped;" /tmp/netfront.log'
    bed_log "bench netfront: $(grep -a 'stopped;' /tmp/netfront.log | tail -n 1)"
fi
