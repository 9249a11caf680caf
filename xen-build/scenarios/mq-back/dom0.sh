# mq-back, dom0 side: our netback offering 2 queues per vif serves the guest's vif on
# xenbr0; the guest (2 vCPUs) runs the stock xen-netfront, which asks for one queue per vCPU.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
net_netback_start --max-queues 2 --workers 2 || exit 1
bed_check "xl create guest with 2 vCPUs and a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" "vcpus=2" || exit 1
net_dom0_transfer guest
bed_check "netback offers multi-queue-max-queues = 2" \
    test "$(xenstore-read "$NET_BE/multi-queue-max-queues")" = 2
bed_check "the stock frontend wrote multi-queue-num-queues = 2" \
    test "$(xenstore-read "$NET_FE/multi-queue-num-queues")" = 2
for q in 0 1; do
    bed_check "frontend wrote queue-$q/tx-ring-ref, rx-ring-ref and its event channel(s)" \
        sh -c "xenstore-exists $NET_FE/queue-$q/tx-ring-ref && xenstore-exists $NET_FE/queue-$q/rx-ring-ref &&
               { xenstore-exists $NET_FE/queue-$q/event-channel || xenstore-exists $NET_FE/queue-$q/event-channel-tx; }"
done
bed_check "netback connected the vif with 2 queues" net_log_has netback "$NET_VIF: connected \\(2 queue"
bed_check "$NET_VIF is a TAP with 2 queues" test "$(ls -d /sys/class/net/$NET_VIF/queues/tx-* | wc -l)" = 2
net_dom0_verify guest
net_destroy guest
net_netback_stop
