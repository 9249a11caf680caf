. /usr/lib/xenbed.sh
bed_log "hanging on purpose"
while :; do sleep 1; done
