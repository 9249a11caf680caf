# our-back, dom0 side: the project's netback serves the guest's vif (no kernel netback);
# its TAP vif<domid>.0 is plugged into xenbr0. The guest runs the stock xen-netfront.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
# netback must watch backend/vif before `xl create` (libxl gives the backend 10 s).
net_netback_start || exit 1
bed_check "xl create guest with a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" || exit 1
net_dom0_checks guest
bed_check "netback connected the vif (credits off: stock netfront)" \
    net_log_has netback 'connected \(.*credits off[,)]'
net_destroy guest
net_netback_stop
