# mq-front, guest side (2 vCPUs): our netfront with 2 queues presents eth0, a 2-queue TAP;
# one thread per queue. Many flows, so the kernel's flow hash puts frames on both queues.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
# Each queue grants ~514 pages (256 TX + 256 RX buffers, two rings): two queues exceed
# xen-gntalloc's default limit of 1024, which the package's /lib/modprobe.d/xen-dba-netfront.conf raises.
bed_check "raise xen-gntalloc's limit to 4096 (as the package's modprobe file does)" \
    sh -c 'echo 4096 >/sys/module/xen_gntalloc/parameters/limit' || exit 1
net_guest_netfront --queues 2 || exit 1
bed_check "2 vCPUs" test "$(grep -c ^processor /proc/cpuinfo)" = 2
bed_check "netfront connected with 2 queues (credits off: stock backend)" \
    net_log_has netfront 'connected to .*2 queue\(s\), credits off'
bed_check "eth0 is a TAP with 2 queues" test "$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)" = 2
net_guest_checks
# 16 more flows (TCP SYNs to closed ports, answered by RSTs) and pings, then the counters
# netfront logs every 5 s.
for p in $(seq 6000 6015); do nc -w 1 "$NET_DOM0_IP" "$p" </dev/null >/dev/null 2>&1; done
bed_ping "$NET_DOM0_IP"
sleep 6
for q in 0 1; do
    line=$(grep -E "netfront: queue $q: tx_packets=" /tmp/netfront.log | tail -n 1)
    bed_log "guest: ${line:-no counters logged for queue $q}"
    tx=$(echo "$line" | sed -n 's/.*tx_packets=\([0-9]*\).*/\1/p')
    rx=$(echo "$line" | sed -n 's/.*rx_packets=\([0-9]*\).*/\1/p')
    bed_check "netfront queue $q sent frames (tx_packets=${tx:-?})" test "${tx:-0}" -gt 0
    bed_check "netfront queue $q received frames (rx_packets=${rx:-?})" test "${rx:-0}" -gt 0
done
