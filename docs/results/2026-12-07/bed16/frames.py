#!/usr/bin/env python3
"""Per transfer: frames and bytes per frame on the guest's eth0 and dom0's vif, from the
`diag ... before/after` lines of a boot-*.txt file (counters of /proc/net/dev, snmp)."""
import re, sys

def parse(line):
    d = {}
    for m in re.finditer(r'(\S+?):rx=(\d+)/(\d+)B,tx=(\d+)/(\d+)B', line):
        d[m.group(1)] = tuple(int(m.group(i)) for i in range(2, 6))
    for m in re.finditer(r'(InSegs|OutSegs|RetransSegs)=(\d+)', line):
        d[m.group(1)] = int(m.group(2))
    return d

snaps, pairing = {}, None
for line in open(sys.argv[1]):
    m = re.search(r'bench (r1-[\w-]+):', line)
    m2 = re.search(r'diag (r1-[\w-]+ )?(g2d|d2g) (dom0|guest) (before|after): (.*)', line)
    if m2:
        key = (m2.group(2), m2.group(3), m2.group(4))
        snaps.setdefault('cur', {})[key] = parse(m2.group(5))
    if m and 'tcp guest->dom0' in line:
        print(line.strip().split('XENBED: ')[-1])
        s = snaps.pop('cur', {})
        for d in ('g2d', 'd2g'):
            b, a = s.get((d, 'guest', 'before')), s.get((d, 'guest', 'after'))
            if not (b and a and 'eth0' in a):
                continue
            rxp, rxb, txp, txb = (a['eth0'][i] - b['eth0'][i] for i in range(4))
            # g2d: data = guest eth0 tx (frames netfront/the kernel took), acks = rx.
            data_p, data_b, ack_p = (txp, txb, rxp) if d == 'g2d' else (rxp, rxb, txp)
            line = f"  {d}: guest eth0 data frames {data_p}, {data_b / max(data_p, 1) / 1000:.1f} kB/frame, ACK frames {ack_p} ({ack_p / max(data_p, 1):.2f} per data frame)"
            db, da = s.get((d, 'dom0', 'before')), s.get((d, 'dom0', 'after'))
            vif = [k for k in (da or {}) if k.startswith('vif')]
            if vif:
                v = vif[0]
                vrx, _, vtx, _ = (da[v][i] - db[v][i] for i in range(4))
                line += f"; dom0 {v} rx {vrx} tx {vtx} packets"
            print(line)
