# restart, dom0 side: our netback serves the stock Linux guest; it is restarted twice while
# the guest streams to dom0, and must take over the rings each time.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

# net_restart SIGNAL: stop netback with SIGNAL, start it again; the vif is re-attached and
# dom0 -> guest ping answers within 5 s of the new netback serving.
net_restart() {
    _nr_pid=$(pidof netback)
    bed_log "netback (pid $_nr_pid): kill -$1"
    kill "-$1" "$_nr_pid"
    bed_check "netback (pid $_nr_pid) is gone after SIG$1" \
        bed_retry 100 0.1 sh -c "! kill -0 $_nr_pid 2>/dev/null" || return 1
    net_netback_start || return 1
    _nr_t0=$(bed_uptime)
    bed_check "the new netback re-attached $NET_VIF (no new handshake)" \
        bed_retry 100 0.1 net_log_has netback "$NET_VIF: re-attached"
    bed_check "dom0 -> guest ping answers within 5 s of the restart (SIG$1)" \
        bed_retry 50 0.1 ping -c 1 -W 1 "$NET_GUEST_IP"
    bed_log "after SIG$1: ping answered $(echo "$(bed_uptime) $_nr_t0" | awk '{printf "%.1f", $1 - $2}') s after the new netback served"
}

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_tcp_listen
net_netback_start || exit 1
bed_check "xl create guest with a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" || exit 1
_domid=$(bed_guest_domid guest)
NET_BE=/local/domain/0/backend/vif/$_domid/0
NET_FE=/local/domain/$_domid/device/vif/0
NET_VIF=vif$_domid.0
bed_check "guest's network is up (it pinged dom0)" \
    bed_retry 600 0.2 net_guest_has guest net-up || exit 1
bed_check "guest started its stream to dom0" bed_retry 300 0.2 net_guest_has guest tx-start
sleep 2
net_restart KILL
sleep 2
net_restart TERM

bed_check "TCP stream (guest -> dom0) across both restarts finished" bed_wait_file /tmp/rx.done 120
_want=$(bed_guest_read guest tx-sha256)
_got=$(sha256sum /tmp/rx.bin | cut -d' ' -f1)
bed_log "TCP guest -> dom0: $(wc -c </tmp/rx.bin) bytes, sha256 $_got (guest says ${_want:-nothing})"
bed_check "TCP stream arrived intact (SHA-256)" test -n "$_want" -a "$_want" = "$_got"
bed_guest_signal guest restarts-done 1
bed_check "guest's checks (stream sent, ping dom0 after the restarts)" bed_guest_result guest 180
bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$NET_BE/state")" = 4
bed_check "frontend state is 4 (Connected)" test "$(xenstore-read "$NET_FE/state")" = 4
net_destroy guest
net_netback_stop
