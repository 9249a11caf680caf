# upgrade, dom0 side: the packaged netback serves a stock Linux guest; while the guest
# pings dom0, the newer xen-dba-netback in /scenario/debs/ is unpacked over the installed
# one (dpkg-deb -x: this image is no full Debian system, it has no dpkg database) and
# netback is restarted as the package's postinst does on an upgrade
# (`deb-systemd-invoke restart dba-netback.service`: SIGTERM, then start again).
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u

# deb_unpack DEB: unpack DEB over / as dpkg does on an upgrade: every file is written
# beside its target as NAME.dpkg-new and renamed over it, so a running program keeps its
# old file. (busybox's dpkg-deb -x refuses to overwrite a file; dpkg's database and
# maintainer scripts are not in this image.)
deb_unpack() {
    rm -rf /tmp/deb-new
    mkdir -p /tmp/deb-new
    dpkg-deb -x "$1" /tmp/deb-new || return 1
    (cd /tmp/deb-new && find . ! -type d) | while IFS= read -r _f; do
        _t=${_f#.}
        mkdir -p "${_t%/*}" &&
            cp -a "/tmp/deb-new$_t" "$_t.dpkg-new" &&
            mv -f "$_t.dpkg-new" "$_t" || { echo "cannot install $_t"; return 1; }
    done
}

# The version in the installed package's changelog (its first line).
pkg_version() { gunzip -c /usr/share/doc/xen-dba-netback/changelog.gz | sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p'; }

bed_check "modprobe tun bridge" modprobe -a tun bridge || exit 1
net_bridge_up || exit 1
net_netback_start || exit 1
bed_check "xl create guest with a vif served by netback (vif-userspace hotplug)" \
    bed_guest_create guest "$NET_VIF_USERSPACE" || exit 1
_domid=$(bed_guest_domid guest)
NET_BE=/local/domain/0/backend/vif/$_domid/0
NET_FE=/local/domain/$_domid/device/vif/0
NET_VIF=vif$_domid.0
bed_check "guest's network is up (it pinged dom0)" \
    bed_retry 600 0.2 net_guest_has guest net-up || exit 1
bed_check "guest is pinging dom0 (every 0.2 s)" bed_retry 300 0.2 net_guest_has guest ping-start || exit 1
sleep 2

_old=$(pkg_version)
_deb=$(ls /scenario/debs/xen-dba-netback_*.deb 2>/dev/null | head -n 1)
bed_check "a newer xen-dba-netback is in /scenario/debs ($_deb)" test -f "$_deb" || exit 1
_pid=$(pidof netback)
bed_check "the newer package unpacked over / (dpkg-deb -x, files renamed into place)" deb_unpack "$_deb" || exit 1
_new=$(pkg_version)
bed_log "xen-dba-netback: $_old -> $_new"
bed_check "the installed package is now the newer one ($_old -> $_new)" \
    sh -c "test '$_new' != '$_old' && case '$_new' in *+xenbed1) true ;; *) false ;; esac"
bed_check "the running netback's file was replaced (its /proc/$_pid/exe is deleted)" \
    sh -c "readlink /proc/$_pid/exe | grep -q '(deleted)'"

# The postinst's restart: SIGTERM, wait for the exit, start.
bed_log "netback (pid $_pid): restart as postinst does (SIGTERM, start)"
kill -TERM "$_pid"
bed_check "netback (pid $_pid) stopped" bed_retry 100 0.1 sh -c "! kill -0 $_pid 2>/dev/null" || exit 1
net_netback_start || exit 1
_t0=$(bed_uptime)
bed_check "the new netback re-attached $NET_VIF (no new handshake)" \
    bed_retry 100 0.1 net_log_has netback "$NET_VIF: re-attached"
bed_check "dom0 -> guest ping answers within 5 s of the restart" \
    bed_retry 50 0.1 ping -c 1 -W 1 "$NET_GUEST_IP"
bed_log "ping answered $(echo "$(bed_uptime) $_t0" | awk '{printf "%.1f", $1 - $2}') s after the new netback served"
_npid=$(pidof netback)
bed_check "the new netback (pid $_npid) runs the new /usr/sbin/netback" \
    sh -c "test \"\$(readlink /proc/$_npid/exe)\" = /usr/sbin/netback"
bed_guest_signal guest upgraded 1

bed_check "guest's checks (ping across the upgrade, ping after it)" bed_guest_result guest 180
bed_log "guest's ping across the upgrade: $(bed_guest_read guest ping-stats)"
bed_check "backend state is 4 (Connected)" test "$(xenstore-read "$NET_BE/state")" = 4
bed_check "frontend state is 4 (Connected)" test "$(xenstore-read "$NET_FE/state")" = 4
net_destroy guest
net_netback_stop
