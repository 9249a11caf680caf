. /usr/lib/xenbed.sh
bed_check "a passing check before skipping" true
bed_skip "fixture skips on purpose"
