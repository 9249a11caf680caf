#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (small, hand-made, valid and invalid
inputs that reach deep into each parser). Run from this directory; the output is
committed, so this script only documents how it was made."""
import os
import struct

def put(target, name, data):
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, name), "wb") as f:
        f.write(data)

u32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)

# --- netback_tx_parse: ahead u32, cons u32, lag u8, entries -------------------------
MORE, EXTRA = 4, 8
def txreq(gref, off, flags, rid, size):
    return struct.pack("<IHHHH", gref, off, flags, rid, size)
def extra(typ, flags, u=b"\0" * 6):
    return struct.pack("<BB", typ, flags) + u + b"\0" * 4
def tx(ahead, cons, lag, slots):
    return u32(ahead) + u32(cons) + bytes([lag]) + b"".join(slots)
put("netback_tx_parse", "one_packet", tx(1, 0, 0, [txreq(8, 0, 0, 1, 60)]))
put("netback_tx_parse", "gso_two_frags", tx(3, 250, 3, [
    txreq(8, 0, MORE | EXTRA, 1, 3000),
    extra(1, 0, struct.pack("<HBBH", 1448, 1, 0, 0)),
    txreq(9, 0, 0, 2, 1000)]))
put("netback_tx_parse", "crosses_page", tx(1, 7, 0, [txreq(8, 4000, 0, 1, 200)]))
put("netback_tx_parse", "nineteen_slots", tx(19, 0xFFFFFFF0, 0,
    [txreq(8, 0, MORE, 0, 1000)] + [txreq(8, 0, MORE if i < 17 else 0, i + 1, 10) for i in range(18)]))
put("netback_tx_parse", "wild_prod", tx(100000, 0, 0, [txreq(8, 0, 0, 1, 60)]))
put("netback_tx_parse", "incomplete", tx(1, 0, 0, [txreq(8, 0, MORE, 1, 100)]))
put("netback_tx_parse", "mcast_dup", tx(3, 0, 0, [
    txreq(8, 0, EXTRA, 1, 60), extra(2, 1, b"\x01\0\x5e\0\0\1"), extra(2, 0, b"\x01\0\x5e\0\0\2")]))

# --- ring_responses: which u8, outstanding u16, cons u32, ahead u32, entries ----------
def rxrsp(rid, off, flags, status):
    return struct.pack("<HHHh", rid, off, flags, status)
def ring(which, outstanding, cons, ahead, entries):
    return bytes([which]) + struct.pack("<H", outstanding) + u32(cons) + u32(ahead) + entries
put("ring_responses", "rx_one", ring(0, 256, 0, 1, rxrsp(0, 0, 0, 1500)))
put("ring_responses", "rx_multi_extra", ring(0, 256, 0xFFFFFFFE, 4,
    rxrsp(0, 0, 4 | 8, 4096) + extra(1, 0)[:8] + rxrsp(1, 0, 0, 100) + rxrsp(2, 4000, 0, 200)))
put("ring_responses", "rx_unrequested", ring(0, 2, 0, 5, rxrsp(0, 0, 0, 60) * 5))
put("ring_responses", "tx_two", ring(1, 2, 9, 2, struct.pack("<Hh", 1, 0) + struct.pack("<Hh", 2, -1)))

# --- xenstore_wire: chunk u8, stream --------------------------------------------------
def msg(typ, rid, tx, payload):
    return struct.pack("<IIII", typ, rid, tx, len(payload)) + payload
READ, WRITE, WATCH, TSTART, TEND, SETPERMS, DIRECTORY, RM, MKDIR = 2, 11, 4, 6, 7, 12, 1, 13, 9
put("xenstore_wire", "read", b"\x07" + msg(READ, 1, 0, b"/local/domain/1/device/vif/0/state\0"))
put("xenstore_wire", "write_state", b"\x03" + msg(WRITE, 2, 0, b"device/vif/0/state\x004"))
put("xenstore_wire", "several", b"\x10" + msg(WATCH, 3, 0, b"/local\0tok\0")
    + msg(SETPERMS, 4, 0, b"/a\0n1\0r0\0") + msg(WRITE, 5, 0, b"ring-ref\x0012345\n"))
put("xenstore_wire", "oversize", b"\x01" + struct.pack("<IIII", READ, 1, 0, 5000))

# --- xenstore_server: guest sel u8, dom0 length u16, dom0 stream, guest stream ------
vif = b"/local/domain/1/device/vif/0"
dom0 = (msg(WRITE, 1, 0, vif + b"/state\x001") + msg(SETPERMS, 2, 0, vif + b"\0n1\0r0\0")
        + msg(SETPERMS, 3, 0, vif + b"/state\0n1\0r0\0") + msg(WATCH, 4, 0, vif + b"\0be\0"))
guest = (msg(READ, 1, 0, b"device/vif/0/state\0") + msg(TSTART, 2, 0, b"\0")
         + msg(WRITE, 3, 1, b"device/vif/0/tx-ring-ref\x00999999999999999999999")
         + msg(TEND, 4, 1, b"T\0") + msg(WRITE, 5, 0, b"device/vif/0/state\x004")
         + msg(DIRECTORY, 6, 0, b"/local/domain/0\0") + msg(RM, 7, 0, b"device\0")
         + msg(WATCH, 8, 0, b"@introduceDomain\0x\0") + msg(MKDIR, 9, 0, b"a/b/c\0"))
put("xenstore_server", "vif_handshake", b"\x00" + struct.pack("<H", len(dom0)) + dom0 + guest)
put("xenstore_server", "guest_only", b"\x01\x00\x00" + guest)

# --- credit_reader: 128-byte area, then (µs u16, bytes u16) charges -------------------
def area(magic=0x56414244, version=1, seq=2, bps=1_250_000, bburst=15000, pps=10000, pburst=100):
    a = struct.pack("<IHHII", magic, version, 128, seq, 0)
    a += struct.pack("<QQQQI", bps, bburst, pps, pburst, 100000) + b"\0" * 12
    return a + b"\0" * 64
charges = b"".join(struct.pack("<HH", dt, size) for dt, size in [(0, 1500), (10, 1500), (1000, 60), (65535, 9000), (1, 1500)] * 4)
put("credit_reader", "valid", area() + charges)
put("credit_reader", "odd_seq", area(seq=3) + charges)
put("credit_reader", "bad_magic", area(magic=0xdeadbeef) + charges)
put("credit_reader", "unlimited", area(bps=2**64 - 1, pps=2**64 - 1) + charges)
put("credit_reader", "closed", area(bps=0, bburst=0, pps=0, pburst=0) + charges)
put("credit_reader", "huge_rates", area(bps=2**64 - 2, bburst=2**64 - 1, pps=2**63, pburst=1) + charges)

# --- sla_file: TOML text ----------------------------------------------------------------
put("sla_file", "example", b'''[link]
capacity-bps = "1G"

[defaults]
priority = 7
min-bps = 0
max-bps = "1G"
pps = "100k"

[[vm]]
domid = 1
pps = "20k"

[[vif]]
domid = 1
devid = 0
priority = 1
min-bps = "150M"
max-bps = "150M"

[[vif]]
domid = 2
min-bps = 100000000
''')
put("sla_file", "overcommitted", b'''[link]
capacity-bps = "100M"
[[vif]]
domid = 1
min-bps = "90M"
[[vif]]
domid = 2
min-bps = "90M"
max-bps = "95M"
''')
put("sla_file", "bad", b'[link]\ncapacity-bps = "-1G"\n[[vif]]\ndomid = 99999\n')

# --- sla_xenstore: (sel, prio \0 min \0 max \0 pps) separated by 0xFF ------------------
put("sla_xenstore", "updates", b"\xff".join([
    b"\x00" + b"1\x00150M\x00150M\x0020k",
    b"\x01" + b"-\x00-\x00-\x00-",
    b"\x00" + b"9\x00200M\x00100M\x00-",
    b"\x04" + b"0\x0018446744073709551615\x00\x00x",
    b"\x02" + b"3\x000\x000\x0010k",
    b"\x03" + b"7\x00\xe2\x82\xac\x001G\x005k",
]))

# --- netfront_rx: 8-byte slots, read as responses or extra-info as the assembler asks --
def rxslot(rid, off, flags, status):
    return struct.pack("<HHHh", rid, off, flags, status)
def gso_slot(size, more):
    return struct.pack("<BBHBBH", 1, 1 if more else 0, size, 1, 0, 0)
CSUM, VALID = 1, 2
put("netfront_rx", "one", rxslot(0, 0, VALID, 60))
put("netfront_rx", "gso_two_slots", rxslot(0, 0, MORE | EXTRA | CSUM, 4096) + gso_slot(1448, False) + rxslot(1, 0, 0, 100))
put("netfront_rx", "extra_after_last", rxslot(0, 0, EXTRA, 100) + gso_slot(536, False) + rxslot(1, 0, 0, 64))
put("netfront_rx", "errors", rxslot(0, 0, MORE, 100) + rxslot(1, 0, MORE, -1) + rxslot(2, 0, 0, 10)
    + rxslot(3, 4000, 0, 200) + rxslot(4, 0, 0, 0) + rxslot(5, 0, 0, 64))
put("netfront_rx", "too_long", b"".join(rxslot(i, 0, MORE, 4096) for i in range(16)) + rxslot(16, 0, 0, 4096) + rxslot(17, 0, 0, 1))

# --- local_proto: one message of the local hypervisor protocol (xen_local::proto) ---
u16 = lambda v: struct.pack("<H", v & 0xFFFF)
put("local_proto", "map_request", u16(6) + u16(3) + b"\x01" + u32(2) + u32(10) + u32(11))
put("local_proto", "share_reply", b"\x00" + u32(7) + u32(2) + u32(8) + u32(9))
put("local_proto", "refusal", b"\x01" + struct.pack("<h", -3) + b"gref 70000: reference outside the grant table")
