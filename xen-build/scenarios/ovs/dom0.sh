# ovs, dom0 side: our netback (no --bridge) serves a guest whose vif line names
# vif-openvswitch, on Debian's Open vSwitch (see /scenario/ovs.sh).
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/ovs.sh
set -u
ovs_dom0 ours
