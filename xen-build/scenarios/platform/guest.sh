# platform, guest side: hv-platform-check guest grants pages and an event channel to dom0.
. /usr/lib/xenbed.sh
set -u
bed_check "hv-platform-check guest" timeout 90 hv-platform-check guest
