. /usr/lib/xenbed.sh
# XENBED_EXTRA_BINS put a dynamically linked host binary here, with its libraries.
bed_check "prebuilt binary runs in the guest" /usr/local/bin/dpkg-deb --version
# run-selftest generates payload.txt and its checksum next to this script.
bed_check "the 12 MB payload reached the guest intact" sha256sum -c payload.sha256
bed_check "deliberate guest failure" false
