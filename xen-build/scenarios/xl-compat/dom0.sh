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
# The guest sends XL_BYTES to dom0; the rate is measured on what arrives after the first
# XL_SKIP bytes (the bucket's initial 128 KiB burst and TCP's slow start are left out).
XL_BYTES=$((12 * 65536))
XL_SKIP=262144

# xl_ifattr DEV ATTR: /sys/class/net/DEV/ATTR, or "none".
xl_ifattr() { cat "/sys/class/net/$1/$2" 2>/dev/null || echo none; }

# xl_measure_rate: follows /tmp/rx.bin until the listener finishes; sets XL_KBIT to the
# goodput (kbit/s) between the first sample past XL_SKIP bytes and the last byte's arrival.
xl_measure_rate() {
    _t1="" _s1=0 _last=0 _tlast=0 _n=0
    while [ ! -e /tmp/rx.done ] && [ "$_n" -lt 900 ]; do
        _s=$(stat -c %s /tmp/rx.bin 2>/dev/null || echo 0)
        _t=$(bed_uptime)
        if [ "$_s" != "$_last" ]; then
            _last=$_s
            _tlast=$_t
        fi
        if [ -z "$_t1" ] && [ "$_s" -ge "$XL_SKIP" ]; then
            _t1=$_t
            _s1=$_s
        fi
        _n=$((_n + 1))
        sleep 0.1
    done
    _s=$(stat -c %s /tmp/rx.bin 2>/dev/null || echo 0)
    [ "$_s" != "$_last" ] && _tlast=$(bed_uptime)
    [ -n "$_t1" ] || return 1
    XL_KBIT=$(awk -v b=$((_s - _s1)) -v a="$_t1" -v z="$_tlast" 'BEGIN { if (z <= a) print 0; else printf "%d", b * 8 / (z - a) / 1000 }')
    bed_log "guest -> dom0 at rate=1Mb/s: $((_s - _s1)) bytes in $(awk -v a="$_t1" -v z="$_tlast" 'BEGIN { printf "%.2f", z - a }') s after the first $_s1: $XL_KBIT kbit/s (TCP payload)"
}

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
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
bed_check "guest -> dom0 transfer at the rate finished" xl_measure_rate
bed_check "TCP receiver (guest -> dom0) finished" bed_wait_file /tmp/rx.done 10
_want=$(bed_guest_read guest tx-sha256)
_got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_got (guest says ${_want:-nothing})"
bed_check "TCP guest -> dom0 arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
bed_check "guest TX held to rate=1Mb/s within 10 % (${XL_KBIT:-?} kbit/s)" \
    test "${XL_KBIT:-0}" -ge 900 -a "${XL_KBIT:-0}" -le 1100

# Spoofed source address: the guest pings dom0 from 10.0.0.99 (not its ip=).
bed_guest_signal guest spoof-go 1
bed_check "guest tried the spoofed ping" bed_retry 150 0.2 net_guest_has guest spoof-replies
_spoof=$(bed_guest_read guest spoof-replies)
if ip neigh show 10.0.0.99 | grep -q .; then _seen=yes; else _seen=no; fi
bed_log "spoofed source 10.0.0.99 from the guest: $_spoof of 3 echo replies, dom0 learnt a neighbour for it: $_seen (Debian's vif-common.sh disables handle_iptable, Debian bug #894013: no ip= rules are installed, for our vif as for the kernel's; the image has no iptables either)"

# Runtime attach and detach of a second vif (the same default script).
_mac2=00:16:3e:12:34:57
bed_check "xl network-attach guest mac=$_mac2,bridge=xenbr0,mtu=1400" \
    xl network-attach guest "mac=$_mac2,bridge=xenbr0,mtu=1400"
_vif2=vif$_domid.1
bed_check "$_vif2 is on xenbr0 with MTU 1400" \
    bed_retry 50 0.2 sh -c "test -e /sys/class/net/xenbr0/brif/$_vif2 && test \$(cat /sys/class/net/$_vif2/mtu) = 1400"
bed_check "the guest sees a NIC with $_mac2" \
    bed_retry 100 0.2 sh -c "test \"\$(xenstore-read /local/domain/$_domid/data/xenbed-eth1-mac 2>/dev/null)\" = $_mac2"
bed_check "xl network-detach guest 1" xl network-detach guest 1
bed_check "$_vif2 is gone after network-detach" bed_retry 50 0.2 sh -c "! test -e /sys/class/net/$_vif2"
bed_check "backend of devid 1 removed" sh -c "! xenstore-exists /local/domain/0/backend/vif/$_domid/1"
bed_check "netback removed $_vif2" bed_retry 25 0.2 net_log_has netback "$_vif2: removed"

bed_guest_signal guest checks-done 1
bed_check "guest's checks (MAC, ping, TCP to dom0, eth1 attached)" bed_guest_result guest 120
net_destroy guest
bed_check "no vif$_domid.* interface left after xl destroy" \
    bed_retry 25 0.2 sh -c "! ls /sys/class/net | grep -q '^vif$_domid\\.'"
bed_log "interfaces after destroy: $(ls /sys/class/net | tr '\n' ' ')"
net_netback_stop
