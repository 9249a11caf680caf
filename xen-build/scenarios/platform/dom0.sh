# platform, dom0 side: hv-platform-check dom0 maps/copies the guest's grants and rings it.
. /usr/lib/xenbed.sh
set -u
bed_check "xl create guest (no vif)" bed_guest_create guest || exit 1
DOMID=$(bed_guest_domid guest)
# dom0's half watches the guest's data/platform/port itself, so it can start right away.
bed_check "hv-platform-check dom0 (gntdev map + grant copy both ways, read-only grant refused, evtchn both ways)" \
    timeout 90 hv-platform-check dom0 --guest-domid "$DOMID"
bed_check "hv-platform-check guest (gntalloc, evtchn, xenstore transaction)" bed_guest_result guest 60
bed_check "xl destroy guest" bed_guest_destroy guest
