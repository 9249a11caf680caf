# stock, guest side: the kernel's xen-netfront, addressed 10.0.0.2/24.
. /usr/lib/xenbed.sh
set -u
GUEST_IP=10.0.0.2
DOM0_IP=10.0.0.1

bed_check "guest has /dev/xen/{evtchn,gntalloc,gntdev,xenbus}" \
    test -c /dev/xen/evtchn -a -c /dev/xen/gntalloc -a -c /dev/xen/gntdev -a -c /dev/xen/xenbus
bed_check "modprobe xen-netfront" modprobe xen-netfront || exit 1
bed_check "eth0 appeared" bed_retry 50 0.2 test -e /sys/class/net/eth0 || exit 1
ip addr add "$GUEST_IP/24" dev eth0 && ip link set eth0 up || { bed_fail "cannot configure eth0"; exit 1; }
bed_check "frontend state is 4 (Connected)" \
    bed_retry 25 0.2 sh -c 'test "$(xenstore-read device/vif/0/state)" = 4'
bed_check "guest -> dom0 ping" bed_ping "$DOM0_IP"

# 4 MiB of random data to dom0 over TCP (many ring slots, GSO), checked by SHA-256 there.
dd if=/dev/urandom of=/tmp/tx.bin bs=64k count=64 2>/dev/null
bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
bed_check "TCP send of 4 MiB to dom0" timeout 60 nc "$DOM0_IP" 5001 </tmp/tx.bin
