# bench, dom0 side: the benchmark mode of the bed. In one boot, for each pairing of a
# backend (the stock kernel xen-netback, or our netback process) with a frontend (the
# stock kernel xen-netfront, or our netfront process), one fresh guest measures: TCP
# goodput guest -> dom0 and dom0 -> guest (receiver side), 64-byte UDP frames/s guest ->
# dom0 (counted by a socket in dom0), ping RTT dom0 -> guest. Three rounds, the pairings
# alternating inside each round. The table at the end gives each pairing's median over
# the rounds as a ratio to the stock pair's median: under QEMU's software emulation the
# absolute figures mean nothing, only the ratios measured in the same boot do.
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/diag.sh
set -u
# Rounds, seconds of traffic per measurement, pings per RTT measurement.
ROUNDS=1
SECS=4
PINGS=20
# <name>:<back>:<front>: back stock | ours | ours-nocredits; front stock | ours.
PAIRINGS="stock:stock:stock ours-nocred:ours-nocredits:ours ours-front:stock:ours"
RESULTS=/tmp/bench.results

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
: >"$RESULTS"

# field LINE KEY: the value of KEY=... in a `bedperf` line.
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

back_up() {
    case $1 in
        stock) bed_check "modprobe xen-netback" modprobe xen-netback ;;
        ours) net_netback_start ;;
        ours-nocredits) net_netback_start --no-credits ;;
    esac
}

back_down() {
    case $1 in
        stock) bed_check "rmmod xen-netback" bed_retry 50 0.2 rmmod xen-netback ;;
        *) net_netback_stop ;;
    esac
}

# measure NAME: the four measurements against guest NAME; one result line.
measure() {
    _m=$1
    # TCP guest -> dom0: our receiver, then the guest's sender.
    bench bedperf tcp-recv --port 5001 >/tmp/tcp-g2d.txt 2>&1 &
    _p=$!
    bed_retry 25 0.2 sh -c 'netstat -ltn | grep -q ":5001 "'
    _nb=$(pidof netback)
    diag_trace_start "$_nb" /tmp/st-g2d.txt
    _s0=$(diag_snap)
    bed_guest_signal "$_m" go-tcp 1
    wait "$_p"
    _s1=$(diag_snap)
    diag_trace_stop "$_nb" /tmp/st-g2d.txt "$_m g2d netback"
    bed_log "diag $_m g2d dom0 before: $_s0"
    bed_log "diag $_m g2d dom0 after: $_s1"
    _g2d=$(field "$(cat /tmp/tcp-g2d.txt)" mbps)
    # TCP dom0 -> guest: the guest's receiver publishes its line.
    _d2g=""
    if bed_retry 300 0.2 net_guest_has "$_m" rx-ready; then
        diag_trace_start "$_nb" /tmp/st-d2g.txt
        _s0=$(diag_snap)
        bench bedperf tcp-send --to "$NET_GUEST_IP:5002" --secs "$SECS" >/dev/null 2>&1
        _s1=$(diag_snap)
        diag_trace_stop "$_nb" /tmp/st-d2g.txt "$_m d2g netback"
        bed_log "diag $_m d2g dom0 before: $_s0"
        bed_log "diag $_m d2g dom0 after: $_s1"
        bed_retry 300 0.2 net_guest_has "$_m" tcp-rx &&
            _d2g=$(field "$(bed_guest_read "$_m" tcp-rx)" mbps)
    fi
    # UDP guest -> dom0: 64-byte frames counted by a socket here.
    bench bedperf udp-count --port 5003 --max-s $((SECS * 3)) >/tmp/udp.txt 2>&1 &
    _p=$!
    bed_retry 25 0.2 sh -c 'netstat -lun | grep -q ":5003 "'
    bed_guest_signal "$_m" go-udp 1
    wait "$_p"
    _pps=$(field "$(cat /tmp/udp.txt)" pps)
    _sent=""
    bed_retry 150 0.2 net_guest_has "$_m" udp-tx && _sent=$(field "$(bed_guest_read "$_m" udp-tx)" pps)
    # RTT dom0 -> guest.
    _rtt=$(ping -q -c "$PINGS" -i 0.2 -W 2 "$NET_GUEST_IP" 2>&1 | sed -n 's#.*min/avg/max = [^/]*/\([^/]*\)/.*#\1#p')
    bed_guest_signal "$_m" done 1
    bed_log "bench $_m: tcp guest->dom0 ${_g2d:-?} Mb/s, dom0->guest ${_d2g:-?} Mb/s, udp 64 B ${_pps:-?} pkt/s received (${_sent:-?} sent), rtt ${_rtt:-?} ms"
    for _v in "$_g2d" "$_d2g" "$_pps" "$_rtt"; do
        [ -n "$_v" ] || { bed_fail "bench $_m: a measurement gave nothing (see the lines above)"; break; }
    done
    echo "$2 $3 ${_g2d:--} ${_d2g:--} ${_pps:--} ${_rtt:--}" >>"$RESULTS"
}

# one ROUND PAIRING: boot a guest with the pairing's drivers, measure, tear down.
one() {
    _name=${2%%:*}
    _rest=${2#*:}
    _back=${_rest%%:*}
    _front=${_rest#*:}
    _g=r$1-$_name
    back_up "$_back" || return 1
    if [ "$_back" = stock ]; then _vif=$NET_VIF_BRIDGE; else _vif=$NET_VIF_USERSPACE; fi
    if bed_check "xl create $_g (back $_back, front $_front)" bed_guest_create "$_g" "$_vif"; then
        bed_guest_signal "$_g" front "$_front"
        _domid=$(bed_guest_domid "$_g")
        NET_VIF=vif$_domid.0
        bed_check "$_g: $NET_VIF is plugged into xenbr0" \
            bed_retry 50 0.2 test -e "/sys/class/net/xenbr0/brif/$NET_VIF"
        if bed_check "$_g: guest's drivers up and dom0 answers its ping" \
            bed_retry 900 0.2 net_guest_has "$_g" ready; then
            measure "$_g" "$1" "$_name"
        fi
        bed_check "$_g: guest's checks" bed_guest_result "$_g" 120
        bed_check "xl destroy $_g" bed_guest_destroy "$_g"
    fi
    back_down "$_back"
    # Our netback's loop counters (wake-ups, events taken, notifications sent).
    [ "$_back" = stock ] || bed_log "bench $_g netback: $(grep -a 'stopping;' /tmp/netback.log | tail -n 1)"
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    for p in $PAIRINGS; do one "$r" "$p"; done
    r=$((r + 1))
done

# The table: per pairing, the median of the rounds and its ratio to the stock pair's.
bed_log "bench: raw results (round pairing tcp_g2d_mbps tcp_d2g_mbps udp64_pps rtt_ms):"
sed 's/^/XENBED: bench-raw /' "$RESULTS"
awk -v pairs="$PAIRINGS" '
function median(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (n == 0) return ""
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function ratio(p, c,   m, s) {
    m = median(p SUBSEP c); s = median("stock" SUBSEP c)
    if (m == "" || s == "" || s + 0 == 0) return "-"
    return sprintf("%.2f", m / s)
}
{ for (c = 3; c <= 6; c++) if ($c != "-") vals[$2 SUBSEP c] = vals[$2 SUBSEP c] " " $c }
END {
    print "XENBED: bench-table software-emulated Xen, ratios only: median of the rounds / the stock pair median"
    print "XENBED: bench-table | pairing | TCP guest->dom0 | TCP dom0->guest | UDP 64 B pkt/s guest->dom0 | ping RTT |"
    n = split(pairs, P, " ")
    for (i = 1; i <= n; i++) {
        split(P[i], f, ":")
        printf "XENBED: bench-table | %s (back %s, front %s) | %s | %s | %s | %s |\n", f[1], f[2], f[3], ratio(f[1], 3), ratio(f[1], 4), ratio(f[1], 5), ratio(f[1], 6)
    }
    printf "XENBED: bench-table stock pair medians: %s Mb/s, %s Mb/s, %s pkt/s, %s ms\n", median("stock" SUBSEP 3), median("stock" SUBSEP 4), median("stock" SUBSEP 5), median("stock" SUBSEP 6)
}' "$RESULTS"
bed_check "every round of every pairing gave its four figures" \
    test "$(awk 'NF == 6 && $3 != "-" && $4 != "-" && $5 != "-" && $6 != "-"' "$RESULTS" | wc -l)" -eq \
    "$((ROUNDS * $(echo "$PAIRINGS" | wc -w)))"
