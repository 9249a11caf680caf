# ovs-kernel, guest side: the stock Linux xen-netfront behind a vif on dom0's Open vSwitch bridge.
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/ovs.sh
set -u
ovs_guest
