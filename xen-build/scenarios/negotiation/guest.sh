# negotiation, guest side: one of our netfronts per vif, each offering the subset on its
# line of /scenario/offers; TCP over IPv4 and IPv6 both ways on every vif.
. /usr/lib/xenbed.sh
. /scenario/net.sh
. /scenario/neg.sh
set -u

neg_no_dad
_errs0=$(neg_csum_errors)
bed_check "kernel xen-netfront is not loaded" sh -c '! grep -q "^xen_netfront " /proc/modules' || exit 1
bed_check "modprobe tun" modprobe tun || exit 1
# Each netfront grants ~514 pages (rings and buffers); gntalloc's default limit is 1024.
bed_check "gntalloc limit raised for six netfronts" sh -c 'echo 8192 >/sys/module/xen_gntalloc/parameters/limit'
for _d in $(neg_vifs); do
    net_prefixed "netfront$_d" netfront --platform xen --devid "$_d" --tap "eth$_d" --offer "$(neg_offer "$_d")"
done
for _d in $(neg_vifs); do
    bed_check "netfront on vif $_d (offer $(neg_offer "$_d")) connected and presents eth$_d" \
        bed_retry 300 0.2 sh -c "test -e /sys/class/net/eth$_d && grep -q 'connected to' /tmp/netfront$_d.log" || {
        bed_log "netfront$_d: $(tail -n 3 "/tmp/netfront$_d.log")"
        exit 1
    }
    ip link set "eth$_d" address "$(xenstore-read "device/vif/$_d/mac")"
    ip link set "eth$_d" up && ip addr add "$(neg_addr "$_d" 4 2)/24" dev "eth$_d" &&
        ip -6 addr add "$(neg_addr "$_d" 6 2)/64" dev "eth$_d" || bed_fail "cannot configure eth$_d"
done
neg_listen 7000 2
bed_retry 25 0.2 sh -c 'netstat -ltn | grep -q ":7011 "'
dd if=/dev/urandom of=/tmp/tx.bin bs=1k count=$NEG_BYTES_KIB 2>/dev/null
bed_publish tx-sha256 "$(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
bed_publish listening 1
neg_send 6000 1 /tmp/tx.bin
bed_wait_signal dom0-sent 120 >/dev/null
neg_wait_received
for _d in $(neg_vifs); do
    for _v in 4 6; do
        bed_publish "rx-$_d-$_v" "$(sha256sum "/tmp/rx-$_d-$_v.bin" | cut -d' ' -f1)"
    done
    bed_log "netfront$_d: $(grep -E 'TAP offloads|connected to' "/tmp/netfront$_d.log" | sed 's/.*netfront[^:]*: //' | tr '\n' ' ')"
done
bed_publish csum-errors $(($(neg_csum_errors) - _errs0))
