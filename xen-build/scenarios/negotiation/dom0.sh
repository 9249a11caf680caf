# negotiation, dom0 side: our netback (no bridge: each vif's TAP gets its own subnet)
# serves one guest with six vifs; the guest's netfront on vif N offers the subset on
# line N of /scenario/offers. dom0 checks what the frontend wrote and what netback
# decided to send it, then TCP over IPv4 and IPv6 both ways on every vif.
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/neg.sh
set -u

neg_no_dad
bed_check "modprobe tun" modprobe tun || exit 1
_errs0=$(neg_csum_errors)
neg_listen 6000 1
net_netback_serve || exit 1

_vifs=
for _d in $(neg_vifs); do
    _vifs="$_vifs${_vifs:+,}'mac=00:16:3e:00:03:0$_d,script=vif-userspace'"
done
bed_check "xl create guest with $(neg_vifs | wc -l) vifs served by netback" \
    bed_guest_create guest "vif=[$_vifs]" || exit 1
_domid=$(bed_guest_domid guest)

# neg_dom0_if IF DEVID: netback's TAP IF (once it exists) up with the vif's dom0 addresses.
neg_dom0_if() {
    bed_retry 50 0.2 test -e "/sys/class/net/$1" || return 1
    ip link set "$1" up && ip addr add "$(neg_addr "$2" 4 1)/24" dev "$1" &&
        ip -6 addr add "$(neg_addr "$2" 6 1)/64" dev "$1"
}
for _d in $(neg_vifs); do
    bed_check "vif$_domid.$_d up at $(neg_addr "$_d" 4 1) and $(neg_addr "$_d" 6 1)" \
        neg_dom0_if "vif$_domid.$_d" "$_d"
done

# What each frontend wrote, and what netback made of it.
for _d in $(neg_vifs); do
    _fe=/local/domain/$_domid/device/vif/$_d
    bed_check "vif $_d: frontend connected (state 4)" \
        bed_retry 300 0.2 sh -c "test \"\$(xenstore-read $_fe/state 2>/dev/null)\" = 4"
    _keys=
    for _k in feature-sg feature-no-csum-offload feature-ipv6-csum-offload feature-gso-tcpv4 feature-gso-tcpv6; do
        _keys="$_keys $_k=$(xenstore-read "$_fe/$_k" 2>&1)"
    done
    bed_log "vif $_d: netfront --offer $(neg_offer "$_d"):$_keys"
    _want=$(neg_allowed "$_d")
    bed_check "vif $_d (offer $(neg_offer "$_d")): netback may send $_want" \
        bed_retry 50 0.2 sh -c "grep -F 'vif$_domid.$_d: connected' /tmp/netback.log | grep -qF '$_want'"
done
# The keys as a frontend writes them: checked once against the offer names.
_fe=/local/domain/$_domid/device/vif
bed_check "offer none wrote feature-sg=0 feature-no-csum-offload=1" sh -c \
    "test \$(xenstore-read $_fe/0/feature-sg) = 0 && test \$(xenstore-read $_fe/0/feature-no-csum-offload) = 1"
bed_check "offer sg,csum,gso-tcpv4,gso-tcpv6 wrote feature-gso-tcpv6=1 feature-ipv6-csum-offload=0" sh -c \
    "test \$(xenstore-read $_fe/4/feature-gso-tcpv6) = 1 && test \$(xenstore-read $_fe/4/feature-ipv6-csum-offload) = 0"

# TCP both ways at once: the guest sends to dom0's listeners while dom0 sends to its.
dd if=/dev/urandom of=/tmp/tx.bin bs=1k count=$NEG_BYTES_KIB 2>/dev/null
_sent=$(sha256sum /tmp/tx.bin | cut -d' ' -f1)
if bed_check "guest listens on every vif" bed_retry 600 0.2 net_guest_has guest listening; then
    neg_send 7000 2 /tmp/tx.bin
fi
neg_wait_received
_want=$(bed_guest_read guest tx-sha256)
for _d in $(neg_vifs); do
    for _v in 4 6; do
        _got=$(sha256sum "/tmp/rx-$_d-$_v.bin" | cut -d' ' -f1)
        bed_check "guest -> dom0 over vif $_d, IPv$_v: $(wc -c <"/tmp/rx-$_d-$_v.bin") bytes intact (SHA-256)" \
            test -n "$_want" -a "$_got" = "$_want"
    done
done
bed_guest_signal guest dom0-sent 1
bed_check "guest's checks (netfronts connected, TCP received)" bed_guest_result guest 120
for _d in $(neg_vifs); do
    for _v in 4 6; do
        _got=$(bed_guest_read guest "rx-$_d-$_v")
        bed_check "dom0 -> guest over vif $_d, IPv$_v intact (SHA-256)" test "$_got" = "$_sent"
    done
done
_errs1=$(neg_csum_errors)
bed_log "dom0 TCP InCsumErrors: $_errs0 -> $_errs1; guest: $(bed_guest_read guest csum-errors)"
bed_check "dom0's TCP saw no checksum error" test "$_errs1" = "$_errs0"
bed_check "the guest's TCP saw no checksum error" test "$(bed_guest_read guest csum-errors)" = 0
grep -E 'refused|csum|dropped' /tmp/netback.log | tail -n 5 | sed 's/^/netback: /'

NET_BE=/local/domain/0/backend/vif/$_domid/0
NET_VIF=vif$_domid.0
net_destroy guest
net_netback_stop
