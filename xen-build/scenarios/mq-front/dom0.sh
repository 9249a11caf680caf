# mq-front, dom0 side: the kernel's xen-netback, allowed 2 queues per vif (its default is
# dom0's CPU count, 1 here), serves the guest's vif bridged to xenbr0; the guest (2 vCPUs)
# runs our netfront with --queues 2.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

bed_check "modprobe xen-netback max_queues=2, bridge" \
    sh -c 'modprobe xen-netback max_queues=2 && modprobe bridge' || exit 1
net_bridge_up || exit 1
net_tcp_listen
bed_check "xl create guest with 2 vCPUs and a vif on xenbr0 (kernel netback)" \
    bed_guest_create guest "$NET_VIF_BRIDGE" "vcpus=2" || exit 1
net_dom0_transfer guest
bed_check "backend offers multi-queue-max-queues = 2" \
    test "$(xenstore-read "$NET_BE/multi-queue-max-queues")" = 2
bed_check "frontend wrote multi-queue-num-queues = 2" \
    test "$(xenstore-read "$NET_FE/multi-queue-num-queues")" = 2
for q in 0 1; do
    bed_check "frontend wrote queue-$q/tx-ring-ref, rx-ring-ref and its event channel(s)" \
        sh -c "xenstore-exists $NET_FE/queue-$q/tx-ring-ref && xenstore-exists $NET_FE/queue-$q/rx-ring-ref &&
               { xenstore-exists $NET_FE/queue-$q/event-channel || xenstore-exists $NET_FE/queue-$q/event-channel-tx; }"
done
bed_check "no flat ring keys with 2 queues" sh -c "! xenstore-exists $NET_FE/tx-ring-ref"
net_dom0_verify guest

# Per-queue counters in dom0: the event channel interrupts of each queue (netback names
# them vifD.0-qN[-tx|-rx]) and, with debugfs, each queue's ring indices.
mount -t debugfs none /sys/kernel/debug 2>/dev/null
for q in 0 1; do
    n=$(awk -v p="$NET_VIF-q$q" 'index($NF, p) == 1 || index($0, " " p) {
            for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) t += $i } END { print t + 0 }' /proc/interrupts)
    bed_log "dom0: $NET_VIF queue $q: $n event channel interrupts"
    f=/sys/kernel/debug/xen-netback/$NET_VIF/io_ring_q$q
    bed_check "dom0: queue $q of $NET_VIF carried frames ($n interrupts)" test "$n" -gt 0
    if [ -r "$f" ]; then
        bed_log "dom0: $f: $(head -n 6 "$f" | tr '\n' ' ')"
        reqs=$(sed -n 's/^req prod \([0-9]*\).*/\1/p' "$f" | head -n 1)
        bed_check "dom0: queue $q's TX ring took requests (req prod ${reqs:-?})" test "${reqs:-0}" -gt 0
    fi
done
bed_log "$(grep -E "$NET_VIF-q" /proc/interrupts | tr -s ' ' | head -n 4 | tr '\n' ';')"
bed_check "no credits negotiated with the stock netback (no request-dba-credits)" \
    sh -c "! xenstore-exists $NET_FE/request-dba-credits"
net_destroy guest
