# shellcheck shell=sh
# /scenario/neg.sh: shared by the negotiation scenario's dom0.sh and guest.sh.
# /scenario/offers: one line per vif (devid), what its netfront offers and what netback
# may then send it (its `Allowed`, logged by netback when the vif connects).

# Every vif: 10.1.<devid>.1 / fd00:<devid>::1 in dom0, .2 / ::2 in the guest.
# Ports: guest -> dom0 on 6000 + 2 * devid + (0 for IPv4, 1 for IPv6); dom0 -> guest on
# 7000 + the same.
NEG_BYTES_KIB=256

# neg_vifs: the devids, from /scenario/offers.
neg_vifs() { awk '!/^#/ && NF { print $1 }' /scenario/offers; }

# neg_offer DEVID: netfront's --offer for it.
neg_offer() { awk -v d="$1" '$1 == d { print $2 }' /scenario/offers; }

# neg_allowed DEVID: netback's Allowed for it, as its Debug output reads.
neg_allowed() {
    awk -v d="$1" '$1 == d { printf "Allowed { multi_slot: %s, csum_v4: %s, csum_v6: %s, gso_v4: %s, gso_v6: %s }", $3, $4, $5, $6, $7 }' /scenario/offers
}

# neg_addr DEVID 4|6 SIDE(1 dom0, 2 guest)
neg_addr() { if [ "$2" = 4 ]; then echo "10.1.$1.$3"; else echo "fd00:$1::$3"; fi; }

# neg_port BASE DEVID 4|6
neg_port() { echo $(($1 + 2 * $2 + ($3 == 6))); }

# neg_csum_errors: TCP's InCsumErrors (IPv4 and IPv6 together) from /proc/net/snmp.
neg_csum_errors() {
    awk '$1 == "Tcp:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") c = i } else print $c }' /proc/net/snmp
}

# neg_no_dad: new interfaces skip IPv6 duplicate address detection (addresses usable at once).
neg_no_dad() {
    sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
}

# neg_listen BASE SIDE: a TCP receiver for every vif and IP version into
# /tmp/rx-<devid>-<4|6>.bin, /tmp/rx-<devid>-<4|6>.done once it ends. One fifo that this
# shell holds open (never written) is every listener's stdin (see net_tcp_listen).
neg_listen() {
    mkfifo /tmp/neg.in
    for _nl_d in $(neg_vifs); do
        for _nl_v in 4 6; do
            {
                nc -l -p "$(neg_port "$1" "$_nl_d" "$_nl_v")" </tmp/neg.in >"/tmp/rx-$_nl_d-$_nl_v.bin"
                touch "/tmp/rx-$_nl_d-$_nl_v.done"
            } &
        done
    done
    exec 5>/tmp/neg.in
}

# neg_send BASE SIDE FILE: FILE to the peer over every vif, IPv4 then IPv6.
neg_send() {
    for _ns_d in $(neg_vifs); do
        for _ns_v in 4 6; do
            bed_check "TCP send over vif $_ns_d, IPv$_ns_v (offer $(neg_offer "$_ns_d"))" \
                timeout 60 nc "$(neg_addr "$_ns_d" "$_ns_v" "$2")" "$(neg_port "$1" "$_ns_d" "$_ns_v")" <"$3"
        done
    done
}

# neg_wait_received: every listener finished (60 s in all).
neg_wait_received() {
    for _nw_d in $(neg_vifs); do
        for _nw_v in 4 6; do
            bed_check "TCP receive over vif $_nw_d, IPv$_nw_v finished" bed_wait_file "/tmp/rx-$_nw_d-$_nw_v.done" 60
        done
    done
}
