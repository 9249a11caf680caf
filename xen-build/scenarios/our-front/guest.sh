# our-front, guest side: our netfront presents eth0 (a TAP) against the stock xen-netback.
. /usr/lib/xenbed.sh
. /scenario/net.sh
set -u
net_guest_netfront || exit 1
net_guest_checks
bed_check "netfront connected with credits off (stock backend)" \
    net_log_has netfront 'connected to .*credits off'
