# our-front, dom0 side: the kernel's xen-netback serves the guest's vif, bridged to xenbr0;
# the guest runs our netfront.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

bed_check "modprobe xen-netback bridge" modprobe -a xen-netback bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
bed_check "xl create guest with a vif on xenbr0 (kernel netback, vif-bridge hotplug)" \
    bed_guest_create guest "$NET_VIF_BRIDGE" || exit 1
net_dom0_checks guest
# The stock backend offers no credit area, so our netfront must not request one.
bed_check "no credits negotiated with the stock netback (no request-dba-credits)" \
    sh -c "! xenstore-exists $NET_FE/request-dba-credits"
net_destroy guest
