# stock, dom0 side: the kernel's xen-netback serves the guest's vif, bridged to xenbr0.
. /usr/lib/xenbed.sh
set -u
GUEST_IP=10.0.0.2
DOM0_IP=10.0.0.1

# The userspace interfaces the project's drivers use (the hypervisor crate's `xen` side).
bed_check "dom0 has /dev/xen/{evtchn,gntdev,gntalloc,privcmd,xenbus}" \
    test -c /dev/xen/evtchn -a -c /dev/xen/gntdev -a -c /dev/xen/gntalloc -a -c /dev/xen/privcmd -a -c /dev/xen/xenbus

bed_check "modprobe xen-netback bridge" modprobe -a xen-netback bridge || exit 1
ip link add xenbr0 type bridge &&
    ip addr add "$DOM0_IP/24" dev xenbr0 &&
    ip link set xenbr0 up || { bed_fail "cannot set up bridge xenbr0"; exit 1; }

# The guest sends a file over TCP; dom0 checks it against the SHA-256 the guest publishes.
# (busybox nc half-closes when its stdin ends, and the sender then stops early: the
# listener's stdin is a fifo that dom0 holds open and never writes.)
mkfifo /tmp/nc.in
{
    nc -l -p 5001 </tmp/nc.in >/tmp/rx.bin
    touch /tmp/rx.done
} &
exec 3>/tmp/nc.in

bed_check "xl create guest with a vif on xenbr0 (vif-bridge hotplug)" \
    bed_guest_create guest "vif=['mac=00:16:3e:00:00:02,bridge=xenbr0']" || exit 1
DOMID=$(bed_guest_domid guest)
BE=/local/domain/0/backend/vif/$DOMID/0

bed_check "kernel netback made vif$DOMID.0 and plugged it into xenbr0" \
    test -e "/sys/class/net/xenbr0/brif/vif$DOMID.0"
bed_check "guest's checks (netfront up, guest -> dom0 ping, TCP send)" bed_guest_result guest 180
bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$BE/state")" = 4
bed_check "dom0 -> guest ping" bed_ping "$GUEST_IP"

# The listener exits once the guest has sent everything and closed the connection.
bed_check "TCP receiver finished" bed_wait_file /tmp/rx.done 5
want=$(bed_guest_read guest tx-sha256)
got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $got (guest says ${want:-nothing})"
bed_check "TCP transfer arrived intact (SHA-256)" test -n "$want" -a "$want" = "$got"

bed_check "xl destroy guest" bed_guest_destroy guest
