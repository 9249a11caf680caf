# mq-back, guest side (2 vCPUs): the stock Linux xen-netfront asks our netback for 2 queues;
# many flows, so the kernel's flow hash uses both; each queue's event channel interrupts
# (xen-netfront names them vif<devid>-q<N>[-tx|-rx]) count what netback answered and
# delivered on it.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
net_guest_kernel_netfront || exit 1
bed_check "2 vCPUs" test "$(grep -c ^processor /proc/cpuinfo)" = 2
net_guest_checks
for p in $(seq 6000 6015); do nc -w 1 "$NET_DOM0_IP" "$p" </dev/null >/dev/null 2>&1; done
bed_ping "$NET_DOM0_IP"
grep -E -- '-q[0-9]+(-tx|-rx)?$' /proc/interrupts | tr -s ' ' | sed 's/^/[interrupts] /'
for q in 0 1; do
    n=$(awk -v p="-q$q" '$NF ~ ("^vif[0-9]+" p "(-tx|-rx)?$") {
            for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) t += $i } END { print t + 0 }' /proc/interrupts)
    bed_check "queue $q carried frames: its event channels fired $n times" test "$n" -gt 0
done
