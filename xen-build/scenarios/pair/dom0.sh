# pair, dom0 side: our netback (credits offered, allocator on with /scenario/sla.toml)
# serves the guest's vif; the guest runs our netfront. After ping and TCP both ways, the
# guest floods UDP and dom0 counts what reaches its end of the vif; then dom0 floods the
# guest and the guest counts what netfront delivers (the receive cap).
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
# The VM's packets/s cap (pps under [defaults] in sla.toml).
NET_PPS=200
# Seconds counted in dom0, starting 2 s into the guest's 14 s flood.
NET_WINDOW=6
# The VM's receive packets/s cap (rx-pps under [defaults]); the guest counts that flood.
NET_RX_PPS=100

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
bed_check "sla.toml caps VMs at $NET_PPS packets/s" grep -qx "pps = $NET_PPS" /scenario/sla.toml
bed_check "sla.toml caps what VMs receive at $NET_RX_PPS packets/s" grep -qx "rx-pps = $NET_RX_PPS" /scenario/sla.toml
# Two queues (issue 14): the caps are the VM's, whatever the number of queues.
net_netback_start --sla /scenario/sla.toml --metrics 127.0.0.1:9101 --max-queues 2 --workers 2 || exit 1
bed_check "xl create guest with a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" "vcpus=2" || exit 1
net_dom0_transfer guest
bed_check "backend offers the credit area, layout version 2 (feature-dba-credits = 2)" \
    test "$(xenstore-read "$NET_BE/feature-dba-credits")" = 2
bed_check "frontend requested version 2 (request-dba-credits = 2)" \
    test "$(xenstore-read "$NET_FE/request-dba-credits" 2>/dev/null)" = 2
bed_check "netback connected the vif with credits on" \
    net_log_has netback "$NET_VIF: connected \(.*credits on[,)]"
bed_check "netback connected the vif with 2 queues" net_log_has netback "$NET_VIF: connected \\(2 queue"

# ---- the UDP flood: count the frames arriving on dom0's end of the vif (netback's TAP).
rx_packets() { cat "/sys/class/net/$NET_VIF/statistics/rx_packets"; }
if bed_check "guest started its UDP flood" bed_retry 600 0.2 net_guest_has guest flood-start; then
    sleep 2
    c0=$(rx_packets) t0=$(bed_uptime)
    sleep "$NET_WINDOW"
    c1=$(rx_packets) t1=$(bed_uptime)
    netback top --once --metrics http://127.0.0.1:9101/metrics 2>&1 | sed 's/^/[netback top] /'
    wget -q -O /tmp/metrics.txt http://127.0.0.1:9101/metrics
    bed_check "the allocator's live budget for $NET_VIF is $NET_PPS packets/s (metrics)" \
        awk -v want="$NET_PPS" -v vif="vif=\"$NET_VIF\"" \
        '$1 ~ /^dbavm_vif_budget_packets_per_second[{]/ && index($1, vif) { found = 1; ok = ($NF == want) }
         END { exit !(found && ok) }' /tmp/metrics.txt
    # pps measured; the limit: the cap with 25 % margin plus a burst (the allocator's
    # bucket is one 20 ms period deep, i.e. 4 packets) and the odd ARP/ICMP frame.
    got=$(echo "$c0 $c1 $t0 $t1" | awk '{printf "%d", ($2 - $1) / ($4 - $3)}')
    max=$((NET_PPS * 5 / 4 + 10))
    bed_log "UDP flood: dom0 received $((c1 - c0)) frames in $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}') s = $got packets/s (cap $NET_PPS, limit $max)"
    bed_check "the flood reaching dom0 stays under the cap ($got <= $max packets/s)" test "$got" -le "$max"
    bed_check "the flood is shaped, not cut off ($got >= $((NET_PPS / 4)) packets/s)" test "$got" -ge $((NET_PPS / 4))
    if bed_check "guest reported its offered load" bed_retry 150 0.2 net_guest_has guest flood-offered; then
        offered=$(bed_guest_read guest flood-offered)
        bed_log "UDP flood: the guest offered $offered packets/s to netfront"
        # Unshaped, such a flood would have broken the limit: the cap check above bit.
        bed_check "the guest offered more than the limit ($offered > $max packets/s; else the cap check proves nothing)" \
            test "$offered" -gt "$max"
    fi
fi

# ---- the receive flood: dom0 floods the guest with UDP (busybox syslogd forwarding each
# message as a datagram to the guest's discard port); the guest counts what netfront
# delivers (guest.sh) against NET_RX_PPS; dom0 counts what it offered to netback.
if bed_check "guest is ready for the receive flood" bed_retry 600 0.2 net_guest_has guest rx-flood-ready; then
    syslogd -n -R "$NET_GUEST_IP:9" -O /dev/null &
    syslogd_pid=$!
    if bed_check "dom0 syslogd made /dev/log" bed_retry 25 0.2 test -S /dev/log; then
        tx_packets() { cat "/sys/class/net/$NET_VIF/statistics/tx_packets"; }
        c0=$(tx_packets) t0=$(bed_uptime)
        bed_guest_signal guest rx-flood-start 1
        timeout 14 sh -c 'yes "dba-vm pair scenario: a UDP flood into the guest" | logger -t rxflood'
        c1=$(tx_packets) t1=$(bed_uptime)
        offered=$(echo "$c0 $c1 $t0 $t1" | awk '{printf "%d", ($2 - $1) / ($4 - $3)}')
        bed_log "receive flood: dom0 offered $((c1 - c0)) frames to netback in $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}') s = $offered packets/s"
        max=$((NET_RX_PPS * 5 / 4 + 10))
        bed_check "dom0 offered more than the guest's receive limit ($offered > $max packets/s; else the cap check proves nothing)" \
            test "$offered" -gt "$max"
        wget -q -O /tmp/metrics.txt http://127.0.0.1:9101/metrics
        police=$(awk -v vif="vif=\"$NET_VIF\"" \
            '$1 ~ /^dbavm_vif_rx_dropped_packets_total[{]/ && index($1, vif) && index($1, "reason=\"police\"") { n = $NF }
             END { printf "%d", n }' /tmp/metrics.txt)
        bed_log "receive flood: netback dropped $police frames for the receive budget before copying them"
        bed_check "netback refused the excess before the copy (police drops $police > 0)" test "$police" -gt 0
    fi
    kill "$syslogd_pid" 2>/dev/null
fi

net_dom0_verify guest
net_destroy guest
net_netback_stop
