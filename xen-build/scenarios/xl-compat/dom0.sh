# xl-compat, dom0 side: our netback, started with no bridge and no MTU (`--policy hold`:
# a guest over its `rate` waits, as under Linux's netback, instead of losing frames),
# serves a guest created with the operator's unchanged vif line. libxl runs the default
# hotplug script (vif-bridge) once netback's backend is in InitWait; the script, not
# netback, plugs the interface into xenbr0 and sets its MTU and MAC.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

XL_MAC=00:16:3e:12:34:56
XL_VIF="vif=['mac=$XL_MAC,bridge=xenbr0,ip=$NET_GUEST_IP,rate=1Mb/s,mtu=1400']"
# The guest sends 1 MiB to dom0; the rate is measured on what arrives after the first
# XL_SKIP bytes (the bucket's initial 128 KiB burst and TCP's slow start are left out).
XL_SKIP=262144

# xl_listen PORT NAME: a TCP receiver into /tmp/NAME.bin, /tmp/NAME.done once it ends
# (stdin held open, see net_tcp_listen).
xl_listen() {
    mkfifo "/tmp/$2.in"
    {
        nc -l -p "$1" <"/tmp/$2.in" >"/tmp/$2.bin"
        touch "/tmp/$2.done"
    } &
    exec 4>"/tmp/$2.in"
}

# xl_ifattr DEV ATTR: /sys/class/net/DEV/ATTR, or "none".
xl_ifattr() { cat "/sys/class/net/$1/$2" 2>/dev/null || echo none; }

# xl_measure_rate NAME RATE WINDOW_S: once /tmp/NAME.bin holds XL_SKIP bytes (past the
# bucket's initial 128 KiB burst and TCP's slow start), two samples WINDOW_S apart, dom0
# idle in between (dom0, the guest and netback share one CPU here: a polling loop would
# slow the very transfer it measures). Sets XL_KBIT to the goodput (kbit/s) and XL_WIRE
# to the frame rate (kbit/s) it stands for: `rate` caps whole frames, and each full
# segment at the guest's MTU carries MTU - 52 bytes of payload (IPv4, TCP with
# timestamps) in MTU + 14 bytes of frame.
xl_measure_rate() {
    bed_retry 300 0.2 sh -c "test \$(stat -c %s /tmp/$1.bin) -ge $XL_SKIP" || return 1
    _t1=$(bed_uptime)
    _s1=$(stat -c %s "/tmp/$1.bin")
    sleep "$3"
    _t2=$(bed_uptime)
    _s2=$(stat -c %s "/tmp/$1.bin")
    bed_check "the transfer was still running at the end of the window" test ! -e "/tmp/$1.done"
    XL_KBIT=$(awk -v b=$((_s2 - _s1)) -v a="$_t1" -v z="$_t2" 'BEGIN { printf "%d", b * 8 / (z - a) / 1000 }')
    XL_WIRE=$(awk -v k="$XL_KBIT" -v m="$XL_GUEST_MTU" 'BEGIN { printf "%d", k * (m + 14) / (m - 52) }')
    bed_log "guest -> dom0 at rate=$2: $((_s2 - _s1)) bytes in $(awk -v a="$_t1" -v z="$_t2" 'BEGIN { printf "%.2f", z - a }') s after the first $_s1: $XL_KBIT kbit/s of TCP payload, $XL_WIRE kbit/s of frames at MTU $XL_GUEST_MTU"
}

# xl_rate_checks KBIT: the measured frame rate (XL_WIRE) is within 10 % of KBIT: at most
# KBIT + 10 % (the cap holds) and at least KBIT - 10 % (the guest gets its rate: shaped
# to it, not held below it). Measured with dom0 idle (see xl_measure_rate); a guest
# starved by the host's other load would send less and fail the lower bound.
xl_rate_checks() {
    bed_check "guest TX at most rate + 10 % ($XL_WIRE kbit/s of frames, rate $1 kbit/s)" \
        test "${XL_WIRE:-0}" -le $(($1 * 11 / 10))
    bed_check "guest TX at least rate - 10 % ($XL_WIRE kbit/s of frames, rate $1 kbit/s)" \
        test "${XL_WIRE:-0}" -ge $(($1 * 9 / 10))
}

# ip= anti-spoofing as upstream Xen's scripts do it. Debian's vif-common.sh is upstream's
# with one change: handle_iptable returns at once ("This function is disabled in Debian
# packaging. See Debian bug #894013"), so vif-bridge installs no rule. An operator who
# wants upstream's rules deletes those two lines (xl_upstream_vif_common), has bridged
# IPv4 pass iptables (br_netfilter) and sets FORWARD's policy to DROP; vif-bridge then
# runs upstream's frob_iptable for each vif: ACCEPT in FORWARD for frames bridged in from
# the vif with a source in ip= (and DHCP), and for frames bridged out to it.
xl_upstream_vif_common() {
    _vc=/etc/xen/scripts/vif-common.sh
    _n0=$(wc -l <$_vc)
    sed -i '/This function is disabled in Debian packaging. See Debian bug #894013/{N;d}' $_vc
    bed_log "vif-common.sh: $_n0 -> $(wc -l <$_vc) lines; handle_iptable now starts: $(grep -A4 '^handle_iptable()' $_vc | grep -v '^[{ ]*$' | sed -n 2p)"
    test $((_n0 - $(wc -l <$_vc))) = 2 && ! grep -q 894013 $_vc
}

# xl_fwd_count SRC: packets from SRC counted arriving on the far end of the spy port
# (/tmp/spy-peer) of xenbr0, i.e. forwarded by the bridge from the guest's vif.
xl_fwd_count() {
    iptables -t raw -L PREROUTING -v -n -x | awk -v s="$1" '$8 == s { print $1; f = 1 } END { if (!f) print "none" }'
}

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
bed_check "upstream's handle_iptable: Debian's two lines disabling it removed, nothing else" \
    xl_upstream_vif_common
bed_check "modprobe br_netfilter nf_tables nft_compat xt_physdev xt_tcpudp (iptables, nft backend)" \
    modprobe -a crc32c_generic br_netfilter nf_tables nft_compat xt_physdev xt_tcpudp veth
bed_check "bridged IPv4 passes iptables (net.bridge.bridge-nf-call-iptables = 1)" \
    test "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)" = 1
bed_check "the operator's FORWARD policy: DROP" iptables -P FORWARD DROP
# A second port on xenbr0 (a veth; its far end stands for another guest on the bridge),
# with counters of what arrives there from the legitimate and the spoofed source.
if bed_check "spy port: veth spy0 on xenbr0" sh -c 'ip link add spy0 type veth && brctl addif xenbr0 spy0 &&
        test -e /sys/class/net/xenbr0/brif/spy0'; then
    for _p in /sys/class/net/*; do
        [ "$(cat "$_p/ifindex")" = "$(cat /sys/class/net/spy0/iflink)" ] && echo "${_p##*/}" >/tmp/spy-peer
    done
    _peer=$(cat /tmp/spy-peer)
    bed_check "spy port's peer $_peer up, counting 10.0.0.2 and 10.0.0.99 in raw PREROUTING" sh -c \
        "ip link set spy0 up && ip link set $_peer up &&
         iptables -t raw -A PREROUTING -i $_peer -s $NET_GUEST_IP -j ACCEPT &&
         iptables -t raw -A PREROUTING -i $_peer -s 10.0.0.99 -j ACCEPT"
    XL_SPY_MAC=$(cat "/sys/class/net/$_peer/address")
fi
net_tcp_listen
net_netback_serve --policy hold || exit 1
bed_check "xl create guest with the operator's vif line (default script: vif-bridge)" \
    bed_guest_create guest "$XL_VIF" || exit 1
_domid=$(bed_guest_domid guest)
NET_BE=/local/domain/0/backend/vif/$_domid/0
NET_FE=/local/domain/$_domid/device/vif/0
NET_VIF=vif$_domid.0
bed_log "backend keys: script=$(xenstore-read "$NET_BE/script" 2>&1) bridge=$(xenstore-read "$NET_BE/bridge" 2>&1) ip=$(xenstore-read "$NET_BE/ip" 2>&1) rate=$(xenstore-read "$NET_BE/rate" 2>&1) mtu=$(xenstore-read "$NET_BE/mtu" 2>&1) hotplug-status=$(xenstore-read "$NET_BE/hotplug-status" 2>&1)"
bed_check "libxl ran the default script (vif-bridge)" \
    sh -c "xenstore-read $NET_BE/script | grep -q '/vif-bridge\$'"
bed_check "vif-bridge reported success (hotplug-status connected)" \
    test "$(xenstore-read "$NET_BE/hotplug-status")" = connected
bed_check "$NET_VIF is on xenbr0" test -e "/sys/class/net/xenbr0/brif/$NET_VIF"
bed_log "$NET_VIF: mtu $(xl_ifattr "$NET_VIF" mtu), address $(xl_ifattr "$NET_VIF" address), operstate $(xl_ifattr "$NET_VIF" operstate)"
bed_check "$NET_VIF's MTU is 1400" test "$(xl_ifattr "$NET_VIF" mtu)" = 1400
bed_check "$NET_VIF's MAC is fe:ff:ff:ff:ff:ff" test "$(xl_ifattr "$NET_VIF" address)" = fe:ff:ff:ff:ff:ff
bed_check "netback read the rate (libxl's 6250 bytes per 50000 us)" \
    test "$(xenstore-read "$NET_BE/rate")" = 6250,50000

bed_check "guest's network is up (it pinged dom0)" \
    bed_retry 600 0.2 net_guest_has guest net-up || exit 1
XL_GUEST_MTU=$(bed_guest_read guest eth0-mtu)
bed_check "guest -> dom0 transfer at the rate measured" xl_measure_rate rx 1Mb/s 3
bed_check "TCP receiver (guest -> dom0) finished" bed_wait_file /tmp/rx.done 30
_want=$(bed_guest_read guest tx-sha256)
_got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_got (guest says ${_want:-nothing})"
bed_check "TCP guest -> dom0 arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
xl_rate_checks 1000

# The rate followed live: the operator lowers it to 512 kbit/s (3200 bytes per 50 ms) in
# the backend directory, as Linux's netback follows it; the guest sends 640 KiB more.
xl_listen 5003 rx2
xenstore-write "$NET_BE/rate" 3200,50000
bed_check "netback followed the new rate" bed_retry 50 0.2 net_log_has netback "$NET_VIF: rate .*-> Some"
bed_guest_signal guest rate2-go 1
XL_SKIP=163840
bed_check "guest -> dom0 transfer at the new rate measured" xl_measure_rate rx2 512Kb/s 4
bed_check "second TCP receiver finished" bed_wait_file /tmp/rx2.done 30
_want=$(bed_guest_read guest tx2-sha256)
_got=$(sha256sum /tmp/rx2.bin | cut -d' ' -f1)
bed_check "second TCP transfer arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
xl_rate_checks 512

# ip=: vif-bridge (upstream's handle_iptable) installed the rules for the vif.
iptables -S FORWARD | sed 's/^/iptables: /'
bed_check "FORWARD accepts frames bridged in from $NET_VIF with source $NET_GUEST_IP (ip=)" \
    sh -c "iptables -S FORWARD | grep -- '-s $NET_GUEST_IP/32' | grep -q -- '--physdev-in $NET_VIF '"
bed_check "FORWARD accepts DHCP requests from $NET_VIF" \
    sh -c "iptables -S FORWARD | grep -- '--physdev-in $NET_VIF ' | grep -q -- '--dport 67'"
# Spoofed source addresses: the guest sends 3 echo requests from its ip= and 3 from
# 10.0.0.99 (not its ip=) to 10.0.0.77, behind the spy port (a static neighbour entry in
# the guest gives it the spy's MAC), then 3 to dom0 from 10.0.0.99.
bed_guest_signal guest spoof-go "${XL_SPY_MAC:-none}"
bed_check "guest sent the legitimate and the spoofed pings" bed_retry 150 0.2 net_guest_has guest spoof-replies
_legit=$(xl_fwd_count "$NET_GUEST_IP")
_spoofed=$(xl_fwd_count 10.0.0.99)
iptables -L FORWARD -v -n -x | head -n 1 | sed 's/^/iptables: /'
bed_log "at the spy port: $_legit packets from $NET_GUEST_IP (ip=), $_spoofed from the spoofed 10.0.0.99"
bed_check "frames from the guest's ip= $NET_GUEST_IP are forwarded by the bridge (3 of 3)" test "$_legit" = 3
bed_check "frames with the spoofed source 10.0.0.99 are not forwarded by the bridge (0 of 3)" test "$_spoofed" = 0
bed_check "the spoofed frames were dropped by FORWARD's policy" \
    sh -c "iptables -L FORWARD -v -n -x | head -n 1 | awk '\$4 == \"DROP\" && \$5 >= 3 { ok = 1 } END { exit !ok }'"
_spoof=$(bed_guest_read guest spoof-replies)
if ip neigh show 10.0.0.99 | grep -q .; then _seen=yes; else _seen=no; fi
bed_log "spoofed source 10.0.0.99 to dom0 itself: $_spoof of 3 echo replies, dom0 learnt a neighbour for it: $_seen (upstream's rules filter bridged traffic, FORWARD, not dom0's own INPUT)"

# Runtime attach and detach of a second vif (the same default script).
# vifname=: vif-bridge is run with vif=vif<domid>.1 and renames it (as the kernel's).
# (xl network-attach takes its keys as separate arguments, not one comma-separated one.)
_mac2=00:16:3e:12:34:57
_vif2=xlweb1
bed_check "xl network-attach guest mac=$_mac2 bridge=xenbr0 mtu=1400 vifname=$_vif2" \
    xl network-attach guest "mac=$_mac2" bridge=xenbr0 mtu=1400 "vifname=$_vif2"
bed_log "after network-attach: interfaces $(ls /sys/class/net | tr '\n' ' '); backend: $(xenstore-ls /local/domain/0/backend/vif/$_domid/1 | tr '\n' ' ')"
bed_check "$_vif2 is on xenbr0 with MTU 1400" \
    bed_retry 50 0.2 sh -c "test -e /sys/class/net/xenbr0/brif/$_vif2 && test \$(cat /sys/class/net/$_vif2/mtu) = 1400"
bed_check "the guest sees a NIC with $_mac2" \
    bed_retry 100 0.2 sh -c "test \"\$(xenstore-read /local/domain/$_domid/data/xenbed-eth1-mac 2>/dev/null)\" = $_mac2"
bed_check "xl network-detach guest 1" xl network-detach guest 1
bed_check "$_vif2 is gone after network-detach" bed_retry 50 0.2 sh -c "! test -e /sys/class/net/$_vif2"
bed_check "backend of devid 1 removed" sh -c "! xenstore-exists /local/domain/0/backend/vif/$_domid/1"
bed_check "netback removed vif$_domid.1" bed_retry 25 0.2 net_log_has netback "vif$_domid.1: removed"

# vif-route, unmodified: it gives the vif dom0's address (that of eth0, its default
# netdev; here a veth) and routes the vif's ip= to it. It finds that address with
# iproute2's `ip -4 -o addr show primary dev eth0`; busybox's ip (the bed's) has no
# `primary` selector and fails, so the bed replaces /usr/bin/ip (a busybox link; the
# hotplug scripts put /usr/bin first in PATH) with a shim that drops the word.
_mac3=00:16:3e:12:34:58
cat >/usr/local/bin/ip-shim <<'SHIM'
#!/bin/sh
for a; do shift; [ "$a" = primary ] || set -- "$@" "$a"; done
exec /usr/bin/busybox ip "$@"
SHIM
chmod 755 /usr/local/bin/ip-shim
rm -f /usr/bin/ip && ln -s /usr/local/bin/ip-shim /usr/bin/ip
if bed_check "dom0 eth0 (a veth) at 10.0.9.1 for vif-route" sh -c \
    'modprobe veth && ip link add eth0 type veth && ip addr add 10.0.9.1/24 dev eth0 && ip link set eth0 up' &&
    bed_check "xl network-attach guest mac=$_mac3 script=vif-route ip=10.0.1.2" \
        xl network-attach guest "mac=$_mac3" script=vif-route ip=10.0.1.2 ||
    { bed_log "hotplug log: $(tail -n 5 /var/log/xen/xen-hotplug.log 2>&1 | tr '\n' ' ')"; false; }; then
    _be3=$(xenstore-list "/local/domain/0/backend/vif/$_domid" | tail -n 1)
    _vif3=vif$_domid.$_be3
    bed_log "vif-route: $(ip route show 10.0.1.2); $_vif3: $(ip -4 -o addr show dev "$_vif3" 2>&1)"
    bed_check "vif-route routed 10.0.1.2 to $_vif3" sh -c "ip route show 10.0.1.2 | grep -q 'dev $_vif3'"
    bed_check "vif-route gave $_vif3 dom0's address" sh -c "ip -4 -o addr show dev $_vif3 | grep -q 10.0.9.1/32"
    bed_guest_signal guest route-go "$_mac3"
    bed_check "guest pinged 10.0.9.1 through the routed vif" \
        bed_retry 150 0.2 sh -c "test \"\$(xenstore-read /local/domain/$_domid/data/xenbed-route-ping 2>/dev/null)\" = ok"
    bed_check "xl network-detach guest $_be3 (vif-route)" xl network-detach guest "$_be3"
    bed_check "route to 10.0.1.2 and $_vif3 gone" \
        bed_retry 50 0.2 sh -c "! ip route show 10.0.1.2 | grep -q . && ! test -e /sys/class/net/$_vif3"
else
    bed_guest_signal guest route-go none
fi

bed_guest_signal guest checks-done 1
bed_check "guest's checks (MAC, ping, TCP to dom0, eth1 attached)" bed_guest_result guest 120
net_destroy guest
bed_check "no vif$_domid.* interface left after xl destroy" \
    bed_retry 25 0.2 sh -c "! ls /sys/class/net | grep -q '^vif$_domid\\.'"
bed_check "no iptables rule for vif$_domid.* left after xl destroy" \
    sh -c "iptables -S FORWARD >/tmp/fwd.rules && ! grep -q 'physdev-in vif$_domid\\.' /tmp/fwd.rules"
bed_log "interfaces after destroy: $(ls /sys/class/net | tr '\n' ' ')"
net_netback_stop
