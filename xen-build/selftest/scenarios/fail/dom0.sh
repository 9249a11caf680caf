. /usr/lib/xenbed.sh
bed_check "xl create guest without vif" bed_guest_create guest || exit 1
bed_check "collect the guest's result" bed_guest_result guest 150
