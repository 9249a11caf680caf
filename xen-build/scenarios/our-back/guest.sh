# our-back, guest side: the stock Linux xen-netfront, against our netback in dom0.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
net_guest_kernel_netfront || exit 1
net_guest_checks
