# restart, dom0 side: our netback serves two guests at once: `guest` (the stock Linux
# xen-netfront, vif-userspace: netback bridges its TAP) and `ours` (our netfront, the
# operator's vif line with the default vif-bridge and mtu=1400: the script bridged the
# TAP and set its MTU and MAC). netback is restarted twice while both guests stream to
# dom0, and must take over both vifs' rings each time; the TAPs persist, so vif-bridge's
# work (bridge membership, MTU, MAC) must survive without the script running again.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

# The second guest: our netfront, at 10.0.0.3 behind a vif-bridge vif with MTU 1400.
OURS_IP=10.0.0.3
OURS_VIF="vif=['mac=00:16:3e:00:00:03,bridge=xenbr0,mtu=1400']"

# rs_vif_ok IF: IF is on xenbr0 with MTU 1400 and MAC fe:ff:ff:ff:ff:ff (vif-bridge's work).
rs_vif_ok() {
    test -e "/sys/class/net/xenbr0/brif/$1" && test "$(cat "/sys/class/net/$1/mtu")" = 1400 &&
        test "$(cat "/sys/class/net/$1/address")" = fe:ff:ff:ff:ff:ff
}

# rs_ping_by IP DEADLINE FILE: dom0's ping of IP is answered before bed_uptime passes
# DEADLINE (one echo request at a time, each waiting up to 1 s); the time of the answer
# (bed_uptime) goes to FILE.
rs_ping_by() {
    while awk -v n="$(bed_uptime)" -v d="$2" 'BEGIN { exit !(n < d) }'; do
        ping -c 1 -W 1 "$1" >/dev/null 2>&1 && bed_uptime >"$3" && return 0
        sleep 0.1
    done
    return 1
}

# net_restart SIGNAL: stop netback with SIGNAL, start it again; both vifs are re-attached
# and dom0's ping of each guest answers within 5 s of the new netback serving.
net_restart() {
    _nr_pid=$(pidof netback)
    bed_log "netback (pid $_nr_pid): kill -$1"
    kill "-$1" "$_nr_pid"
    bed_check "netback (pid $_nr_pid) is gone after SIG$1" \
        bed_retry 100 0.1 sh -c "! kill -0 $_nr_pid 2>/dev/null" || return 1
    net_netback_start || return 1
    _nr_t0=$(bed_uptime)
    bed_check "the new netback re-attached $NET_VIF (stock netfront, no new handshake)" \
        bed_retry 100 0.1 net_log_has netback "$NET_VIF: re-attached"
    bed_check "the new netback re-attached $OURS_IF (our netfront, no new handshake)" \
        bed_retry 100 0.1 net_log_has netback "$OURS_IF: re-attached"
    # Both pings by the same deadline, 5 s of dom0's clock after the new netback served,
    # tried at the same time (one slow guest must not use up the other's window).
    _nr_dl=$(echo "$_nr_t0" | awk '{ print $1 + 5 }')
    rs_ping_by "$OURS_IP" "$_nr_dl" /tmp/ours-ping.t &
    _nr_ours=$!
    bed_check "dom0 -> guest ping answers within 5 s of the restart (SIG$1, stock netfront)" \
        rs_ping_by "$NET_GUEST_IP" "$_nr_dl" /tmp/guest-ping.t &&
        bed_log "after SIG$1: stock guest's ping answered $(awk -v t="$_nr_t0" '{printf "%.1f", $1 - t}' /tmp/guest-ping.t) s after the new netback served"
    bed_check "dom0 -> ours ping answers within 5 s of the restart (SIG$1, our netfront)" \
        wait "$_nr_ours" &&
        bed_log "after SIG$1: our netfront's ping answered $(awk -v t="$_nr_t0" '{printf "%.1f", $1 - t}' /tmp/ours-ping.t) s after the new netback served"
    bed_log "$OURS_IF after SIG$1: mtu $(cat "/sys/class/net/$OURS_IF/mtu" 2>&1), address $(cat "/sys/class/net/$OURS_IF/address" 2>&1), bridged $(test -e "/sys/class/net/xenbr0/brif/$OURS_IF" && echo yes || echo no)"
    bed_check "$OURS_IF still on xenbr0 with MTU 1400 and fe:ff:ff:ff:ff:ff after SIG$1 (persistent TAP)" \
        rs_vif_ok "$OURS_IF"
}

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
# The second stream (ours -> dom0, port 5003, into /tmp/rx2.bin), stdin held open likewise.
mkfifo /tmp/nc2.in
{
    nc -l -p 5003 </tmp/nc2.in >/tmp/rx2.bin
    touch /tmp/rx2.done
} &
exec 4>/tmp/nc2.in
net_netback_start || exit 1
bed_check "xl create guest with a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" || exit 1
_domid=$(bed_guest_domid guest)
NET_BE=/local/domain/0/backend/vif/$_domid/0
NET_FE=/local/domain/$_domid/device/vif/0
NET_VIF=vif$_domid.0
bed_check "xl create ours (our netfront) with the operator's vif line (vif-bridge, mtu=1400)" \
    bed_guest_create ours "$OURS_VIF" || exit 1
_odomid=$(bed_guest_domid ours)
OURS_IF=vif$_odomid.0
bed_check "$OURS_IF on xenbr0 with MTU 1400 and fe:ff:ff:ff:ff:ff (vif-bridge)" bed_retry 50 0.2 rs_vif_ok "$OURS_IF"
bed_check "guest's network is up (it pinged dom0)" \
    bed_retry 600 0.2 net_guest_has guest net-up || exit 1
bed_check "ours' network is up (it pinged dom0)" \
    bed_retry 600 0.2 net_guest_has ours net-up || exit 1
bed_guest_signal guest stream-go 1
bed_guest_signal ours stream-go 1
bed_check "guest started its stream to dom0" bed_retry 300 0.2 net_guest_has guest tx-start
bed_check "ours started its stream to dom0" bed_retry 300 0.2 net_guest_has ours tx-start
sleep 2
net_restart KILL
sleep 2
net_restart TERM

bed_check "TCP stream (guest -> dom0) across both restarts finished" bed_wait_file /tmp/rx.done 120
_want=$(bed_guest_read guest tx-sha256)
_got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_got (guest says ${_want:-nothing})"
bed_check "TCP stream arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
bed_check "TCP stream (ours -> dom0) across both restarts finished" bed_wait_file /tmp/rx2.done 60
_want=$(bed_guest_read ours tx-sha256)
_got=$(sha256sum /tmp/rx2.bin | cut -d' ' -f1)
bed_log "TCP ours -> dom0: $(wc -c </tmp/rx2.bin) bytes, sha256 $_got (ours says ${_want:-nothing})"
bed_check "TCP stream from our netfront arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
bed_guest_signal guest restarts-done 1
bed_guest_signal ours restarts-done 1
bed_check "guest's checks (stream sent, ping dom0 after the restarts)" bed_guest_result guest 180
bed_check "ours' checks (stream sent, ping dom0 after the restarts)" bed_guest_result ours 120
bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$NET_BE/state")" = 4
bed_check "frontend state is 4 (Connected)" test "$(xenstore-read "$NET_FE/state")" = 4
bed_check "ours: frontend state is 4 (Connected)" \
    test "$(xenstore-read "/local/domain/$_odomid/device/vif/0/state")" = 4
bed_check "our netfront ran one handshake only (the restarts were invisible to it)" \
    test "$(bed_guest_read ours handshakes)" = 1
_be=$NET_BE
NET_BE=/local/domain/0/backend/vif/$_odomid/0
net_destroy ours
NET_BE=$_be
net_destroy guest
net_netback_stop
