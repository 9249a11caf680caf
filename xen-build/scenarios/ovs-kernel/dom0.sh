# ovs-kernel, dom0 side: the kernel's xen-netback serves a guest whose vif line names
# vif-openvswitch, on Debian's Open vSwitch (see /scenario/ovs.sh).
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/ovs.sh
set -u
ovs_dom0 kernel
