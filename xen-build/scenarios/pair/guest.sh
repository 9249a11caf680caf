# pair, guest side: our netfront with credits against our netback; ping, TCP both ways,
# then a UDP flood (busybox has no UDP generator: `yes | logger` into a syslogd that
# forwards every message as one UDP datagram) to a static neighbour, for dom0 to count.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
# Two queues (2 vCPUs): each queue grants ~514 pages, beyond xen-gntalloc's default
# limit of 1024 for two; the package's modprobe file raises it at boot.
bed_check "raise xen-gntalloc's limit to 4096 (as the package's modprobe file does)" \
    sh -c 'echo 4096 >/sys/module/xen_gntalloc/parameters/limit' || exit 1
net_guest_netfront --queues 2 || exit 1
bed_check "netfront connected with 2 queues and credits on" net_log_has netfront 'connected to .*2 queue\(s\), credits on'
net_guest_checks

# The flood's destination: an address no one answers, with a static neighbour entry, so
# that neither ARP nor ICMP errors join the flood or stall it.
# (busybox `ip neigh` only shows and flushes: its `arp -s` makes the permanent entry.)
bed_check "static neighbour 10.0.0.9 for the flood" arp -i eth0 -s 10.0.0.9 02:00:00:00:00:09 || exit 1
tx_packets() { cat /sys/class/net/eth0/statistics/tx_packets; }
syslogd -n -R 10.0.0.9:9 -O /dev/null &
syslogd_pid=$!
bed_check "syslogd made /dev/log" bed_retry 25 0.2 test -S /dev/log || exit 1
c0=$(tx_packets) t0=$(bed_uptime)
bed_publish flood-start 1
timeout 14 sh -c 'yes "dba-vm pair scenario: a UDP flood from the guest" | logger -t flood'
c1=$(tx_packets) t1=$(bed_uptime)
kill "$syslogd_pid"
# eth0's tx_packets: the frames netfront read from the TAP (it drops what exceeds credits).
offered=$(echo "$c0 $c1 $t0 $t1" | awk '{printf "%d", ($2 - $1) / ($4 - $3)}')
bed_log "UDP flood: $((c1 - c0)) frames offered in $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}') s = $offered packets/s"
bed_publish flood-offered "$offered"

# ---- the receive flood (dom0.sh): count what netfront delivers to eth0 over a window
# starting 2 s into dom0's 14 s flood; the VM's receive cap is 100 packets/s (sla.toml).
RX_PPS=100
rx_packets() { cat /sys/class/net/eth0/statistics/rx_packets; }
bed_publish rx-flood-ready 1
if bed_check "dom0 started the receive flood" bed_wait_signal rx-flood-start 120 >/dev/null; then
    sleep 2
    c0=$(rx_packets) t0=$(bed_uptime)
    sleep 6
    c1=$(rx_packets) t1=$(bed_uptime)
    got=$(echo "$c0 $c1 $t0 $t1" | awk '{printf "%d", ($2 - $1) / ($4 - $3)}')
    # The cap with 25 % margin plus a burst and the odd ARP frame, as for transmit.
    max=$((RX_PPS * 5 / 4 + 10))
    bed_log "receive flood: netfront delivered $((c1 - c0)) frames in $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}') s = $got packets/s (cap $RX_PPS, limit $max)"
    bed_check "what the guest receives stays under its receive cap ($got <= $max packets/s)" test "$got" -le "$max"
    bed_check "the receive flood is shaped, not cut off ($got >= $((RX_PPS / 4)) packets/s)" test "$got" -ge $((RX_PPS / 4))
    # netfront logs the allowance netback keeps in the credit area (at most every 10 s).
    bed_check "netfront tells the guest netback shaped what it receives (frames for packets/s)" \
        bed_retry 125 0.2 grep -qE 'RX [0-9]+ frames / [0-9]+ B for bits/s, [1-9][0-9]* frames for packets/s' /tmp/netfront.log
    grep 'allowance' /tmp/netfront.log | tail -n 1 | sed 's/^/[netfront] /'
fi
