. /usr/lib/xenbed.sh
