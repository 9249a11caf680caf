//! `bench hostile`: every attack class of `docs/security.md`, a few seconds each, against
//! one netback that serves an honest guest too, on the `local` platform. For each attack:
//! what the honest guest sent and got through (both directions), netback's CPU time
//! over the window, and what the process holds afterwards (heap-independent counters:
//! resident memory, memory mappings, file descriptors) against the run's baseline.
//!
//! netback, the honest guest and the attacker share this process: CPU is counted on
//! netback's threads only (those whose name starts with `netback`), memory, mappings and
//! descriptors are the whole process's after the attacker closed its device, so a
//! leak in netback shows as growth from one attack to the next.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::xenbus::XenbusState;
use netback::toolstack::{destroy_vif, VifSpec};
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::{FrameMeta, MemPort, MemPortConfig, Port};
use serde::Serialize;
use shared_ring::credit::{Credits, CREDIT_AREA_BYTES, CREDIT_AREA_OFFSET};
use shared_ring::netif::extra::XEN_NETIF_GSO_TYPE_TCPV4;
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, NetifTxFrontRing, NetifTxRequest, XenNetifExtraFlags,
};
use shared_ring::ring::layout;
use shared_ring::FrontIndices;
use shared_ring::Limit;
use testbed::{add_vif, frame, tx_req, BackendThread, Guest, RawConnect, RawFrontend, TxSlot};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

/// The honest guest's load: one frame each way per this interval.
const HONEST_EVERY: Duration = Duration::from_millis(1);
/// Size of the honest guest's frames.
const HONEST_LEN: usize = 300;
/// Budget given to attackers that send valid frames: packets/s and bytes/s.
const ATTACK_PPS: u64 = 10_000;
const ATTACK_BPS: u64 = 12_500_000;

/// One attack class.
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    /// Short name (`--attacks`).
    pub name: &'static str,
    /// What the attacker does.
    pub what: &'static str,
    run: fn(&mut Ctx) -> String,
}

/// Every attack, in the order they run.
pub const ATTACKS: &[Attack] = &[
    Attack {
        name: "none",
        what: "nothing: the attacker's vif exists, unconnected (baseline)",
        run: |c| {
            std::thread::sleep(c.window);
            String::new()
        },
    },
    Attack {
        name: "malformed-reconnect",
        what: "slot crossing its page, reconnect, again",
        run: malformed_reconnect,
    },
    Attack {
        name: "wild-producer",
        what: "TX req_prod far ahead, reconnect, again",
        run: wild_producer,
    },
    Attack {
        name: "incomplete-chain",
        what: "last slot has NETTXF_more_data, nothing follows",
        run: incomplete_chain,
    },
    Attack {
        name: "unconnected-frames",
        what: "frames from dom0 for a vif whose frontend never connects",
        run: unconnected_frames,
    },
    Attack {
        name: "evtchn-storm",
        what: "event-channel notifications in a tight loop",
        run: evtchn_storm,
    },
    Attack {
        name: "credit-scribble",
        what: "random words over the credit area while sending",
        run: credit_scribble,
    },
    Attack {
        name: "xenstore-storm",
        what: "4 connections rewriting the frontend's state",
        run: xenstore_storm,
    },
    Attack {
        name: "grant-churn",
        what: "every frame from a fresh grant, 256 at a time",
        run: grant_churn,
    },
    Attack {
        name: "budget-flood",
        what: "valid frames as fast as the ring takes them, credits ignored",
        run: budget_flood,
    },
    Attack {
        name: "gso-flood",
        what: "64 KiB TCPv4 GSO frames with MSS 48, credits ignored",
        run: gso_flood,
    },
    Attack {
        name: "double-fetch",
        what: "slots rewritten by a second thread while netback reads them",
        run: double_fetch,
    },
];

/// What one attack did to the host.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// The attack's name.
    pub attack: String,
    /// What the attacker did.
    pub what: String,
    /// How the attacker fared (netback's answer).
    pub outcome: String,
    /// Window length, ms.
    pub window_ms: u64,
    /// Honest guest → dom0.
    pub honest_tx: Honest,
    /// dom0 → honest guest.
    pub honest_rx: Honest,
    /// netback's CPU time over the window, ms.
    pub netback_cpu_ms: f64,
    /// Frames of the attacker that reached dom0, and the wire segments they make.
    pub attacker_wire: (u64, u64),
    /// The attacker's packets/s cap, when it had one.
    pub cap_pps: Option<u64>,
    /// Process resident memory after the attack minus the baseline, KiB.
    pub rss_delta_kib: i64,
    /// Memory mappings after the attack minus the baseline.
    pub maps_delta: i64,
    /// Open descriptors after the attack minus the baseline.
    pub fds_delta: i64,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct HostileOptions {
    /// How long each attack lasts.
    pub window: Duration,
    /// Which attacks (all when empty).
    pub only: Vec<String>,
    /// How many times the whole list runs (a leak grows from one round to the next).
    pub rounds: u32,
}

/// A run: the last round's reports, and what was held after each round.
#[derive(Debug, Clone, Serialize)]
pub struct HostileRun {
    /// One per attack, last round.
    pub reports: Vec<AttackReport>,
    /// Before the first attack.
    pub baseline: Usage,
    /// After each round, its attackers gone.
    pub after_round: Vec<Usage>,
}

/// Shared state of one attack: the host, netback, and the attacker's vif.
struct Ctx<'a> {
    host: &'a LocalHost,
    nb: &'a BackendThread,
    id: VifId,
    window: Duration,
    /// dom0's end of the attacker's vif (frames it got through are drained here).
    wire: MemPort,
    /// Frames and wire segments that reached dom0 from the attacker.
    got: (u64, u64),
    cap_pps: Option<u64>,
    buf: Vec<u8>,
}

impl Ctx<'_> {
    fn raw(&self) -> RawFrontend {
        RawFrontend::new(self.host, self.id).expect("attacker's domain")
    }

    /// Receives what the attacker got through to dom0; a GSO frame counts as the
    /// segments it becomes (payload after 54 bytes of Ethernet, IPv4 and TCP headers).
    fn drain_wire(&mut self) {
        while let Ok(Some((len, meta))) = self.wire.recv(&mut self.buf) {
            self.got.0 += 1;
            self.got.1 += match meta.gso {
                Some(g) => (len.saturating_sub(54) as u64)
                    .div_ceil(u64::from(g.size.max(1)))
                    .max(1),
                None => 1,
            };
        }
    }

    fn end(&self) -> Instant {
        Instant::now() + self.window
    }

    fn set_budget(&mut self, pps: u64, bps: u64) {
        self.cap_pps = Some(pps);
        let c = Credits {
            bytes: Limit::rate(bps, bps / 100),
            packets: Limit::rate(pps, pps / 100),
            period_us: 100_000,
        };
        let id = self.id;
        self.nb
            .call(move |nb| nb.set_tx_budget(id, &c), Duration::from_secs(10))
            .expect("netback thread");
    }
}

/// Runs the attacks, `rounds` times.
pub fn run(opts: &HostileOptions) -> HostileRun {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("honest vif");
    let ports = MemPortConfig::new(1024, 65536);
    let nb =
        BackendThread::start_with_ports(&host, NetbackConfig::default(), ports).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("honest guest");
    let mut wire = nb.wire(good);
    nb.wait_connected(&[good], Duration::from_secs(10))
        .expect("honest guest connects");
    let base = Usage::now(&host);
    let mut out = Vec::new();
    let mut after_round = Vec::new();
    let mut next_domid = 10u16;
    for _ in 0..opts.rounds.max(1) {
        out.clear();
        for a in ATTACKS {
            if !opts.only.is_empty() && !opts.only.iter().any(|n| n == a.name) {
                continue;
            }
            // A fresh attacking domain per attack: what one left behind is not the next's.
            let id = add_vif(&host, DomId(next_domid), 0).expect("attacker's vif");
            next_domid += 1;
            let mut ctx = Ctx {
                host: &host,
                nb: &nb,
                id,
                window: opts.window,
                wire: nb.wire(id),
                got: (0, 0),
                cap_pps: None,
                buf: vec![0u8; 65536],
            };
            let stop = AtomicBool::new(false);
            let cpu0 = netback_cpu_ns();
            let t0 = Instant::now();
            let (outcome, honest) = std::thread::scope(|s| {
                let h = s.spawn(|| honest_load(&mut guest.app, &mut wire, &stop));
                let outcome = (a.run)(&mut ctx);
                stop.store(true, Ordering::Relaxed);
                (outcome, h.join().expect("honest load"))
            });
            let cpu = netback_cpu_ns() - cpu0;
            let window = t0.elapsed();
            let (attacker_wire, cap_pps) = (ctx.got, ctx.cap_pps);
            drop(ctx);
            remove_vif(&host, &nb, id);
            let u = Usage::now(&host);
            out.push(AttackReport {
                attack: a.name.into(),
                what: a.what.into(),
                outcome,
                window_ms: window.as_millis() as u64,
                honest_tx: honest.0,
                honest_rx: honest.1,
                netback_cpu_ms: cpu as f64 / 1e6,
                attacker_wire,
                cap_pps,
                rss_delta_kib: (u.rss_kib as i64) - base.rss_kib as i64,
                maps_delta: u.maps as i64 - base.maps as i64,
                fds_delta: u.fds as i64 - base.fds as i64,
            });
        }
        after_round.push(Usage::now(&host));
    }
    HostileRun {
        reports: out,
        baseline: base,
        after_round,
    }
}

/// What the honest guest saw in one direction.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Honest {
    /// Frames the guest (or dom0) tried to send.
    pub sent: u64,
    /// Frames that arrived intact.
    pub delivered: u64,
    /// Longest time from send to arrival, ms.
    pub max_latency_ms: f64,
}

/// One direction of the honest load: send times by sequence number.
struct Flow {
    sent_at: Vec<Instant>,
    got: Honest,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            sent_at: Vec::new(),
            got: Honest::default(),
        }
    }

    fn send(&mut self, port: &mut MemPort) {
        let seq = self.sent_at.len() as u32;
        self.sent_at.push(Instant::now());
        self.got.sent += 1;
        // A full port is the guest's frame lost: it is counted as sent, not delivered.
        let _ = port.send(&frame(seq, HONEST_LEN), &FrameMeta::default());
    }

    fn drain(&mut self, port: &mut MemPort, buf: &mut [u8]) {
        while let Ok(Some((len, _))) = port.recv(buf) {
            let f = &buf[..len];
            if len < 18 {
                continue;
            }
            let seq = u32::from_le_bytes(f[14..18].try_into().expect("4 bytes"));
            let Some(t) = self.sent_at.get(seq as usize) else {
                continue;
            };
            if f == frame(seq, len).as_slice() {
                self.got.delivered += 1;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.got.max_latency_ms = self.got.max_latency_ms.max(ms);
            }
        }
    }
}

/// The toolstack destroys the attacker's vif (as `xl destroy` would); waits until
/// netback has let go of it.
fn remove_vif(host: &LocalHost, nb: &BackendThread, id: VifId) {
    let dom0 = testbed::domain(host, DomId(0)).expect("dom0");
    destroy_vif(&dom0.xenstore, &VifSpec::new(DomId(0), id.domid, id.devid)).expect("destroy vif");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nb.vif_status(id).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The honest guest: one frame each way every [`HONEST_EVERY`] until `stop`, then up
/// to a second for the last ones. Returns (guest → dom0, dom0 → guest).
fn honest_load(app: &mut MemPort, wire: &mut MemPort, stop: &AtomicBool) -> (Honest, Honest) {
    let (mut tx, mut rx) = (Flow::new(), Flow::new());
    let mut buf = vec![0u8; 65536];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next += HONEST_EVERY;
            tx.send(app);
            rx.send(wire);
        }
        tx.drain(wire, &mut buf);
        rx.drain(app, &mut buf);
        std::thread::sleep(Duration::from_micros(200));
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while (tx.got.delivered < tx.got.sent || rx.got.delivered < rx.got.sent)
        && Instant::now() < deadline
    {
        tx.drain(wire, &mut buf);
        rx.drain(app, &mut buf);
        std::thread::sleep(Duration::from_millis(1));
    }
    (tx.got, rx.got)
}

fn closed_or_connected(raw: &RawFrontend) -> String {
    match raw.be_state() {
        XenbusState::Connected => "vif still connected".into(),
        s => format!("vif {s:?}: {}", raw.error()),
    }
}

/// Connects, does `abuse` (given the connection number), expects netback to fail the
/// vif, closes; again until the window ends.
fn fail_and_reconnect(c: &mut Ctx, abuse: impl Fn(&mut RawFrontend, u32)) -> String {
    let mut raw = c.raw();
    let (end, mut cycles, mut failed) = (c.end(), 0u32, 0);
    let mut last = String::new();
    while Instant::now() < end {
        raw.connect(&RawConnect::default());
        abuse(&mut raw, cycles);
        if raw
            .wait_be(&[XenbusState::Closing], Duration::from_secs(5))
            .is_some()
        {
            failed += 1;
            last = raw.error();
        }
        raw.close();
        cycles += 1;
    }
    format!("{failed} of {cycles} connections failed (\"{last}\")")
}

fn malformed_reconnect(c: &mut Ctx) -> String {
    fail_and_reconnect(c, |raw, _| {
        let g = raw.data_gref(0);
        raw.push(&[tx_req(g, 4000, 200, NetTxFlags::empty(), 1)], true);
    })
}

fn wild_producer(c: &mut Ctx) -> String {
    fail_and_reconnect(c, |raw, cycle| {
        raw.tx_ring_mem()
            .store(layout::REQ_PROD, 0x8000_0000 ^ cycle);
        raw.notify();
    })
}

fn incomplete_chain(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    let g = raw.data_gref(0);
    raw.push(&[tx_req(g, 0, 200, NetTxFlags::MORE_DATA, 1)], true);
    std::thread::sleep(c.window);
    let answered = raw.take_responses().len();
    let s = format!("{answered} responses; {}", closed_or_connected(&raw));
    raw.close();
    s
}

fn unconnected_frames(c: &mut Ctx) -> String {
    let (end, mut sent) = (c.end(), 0u64);
    let meta = FrameMeta::default();
    while Instant::now() < end {
        if c.wire.send(&frame(sent as u32, 200), &meta).is_ok() {
            sent += 1;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    format!("{sent} frames queued for the vif (port full after that)")
}

fn evtchn_storm(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    let (end, mut n) = (c.end(), 0u64);
    while Instant::now() < end {
        for _ in 0..256 {
            raw.notify();
        }
        n += 256;
    }
    let s = format!("{n} notifications; {}", closed_or_connected(&raw));
    raw.close();
    s
}

fn credit_scribble(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    c.set_budget(ATTACK_PPS, ATTACK_BPS);
    let g = raw.data_gref(0);
    let (end, mut x, mut sent) = (c.end(), 0x9E37_79B9u32, 0u64);
    let mut ok = 0u64;
    while Instant::now() < end {
        let area = raw
            .tx_ring_mem()
            .slice(CREDIT_AREA_OFFSET, CREDIT_AREA_BYTES)
            .expect("credit area");
        for w in 0..CREDIT_AREA_BYTES / 4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            area.store(w * 4, x);
        }
        sent += u64::from(
            raw.push(&[tx_req(g, 0, 100, NetTxFlags::empty(), 1)], false)
                .is_some(),
        );
        ok += raw.take_responses().iter().filter(|r| r.1 == 0).count() as u64;
        c.drain_wire();
        std::thread::sleep(Duration::from_micros(100));
    }
    let s = format!("{sent} frames, {ok} sent; {}", closed_or_connected(&raw));
    raw.close();
    s
}

fn xenstore_storm(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    let path = format!("{}/state", raw.frontend_path());
    let end = c.end();
    let writes: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let plat = testbed::domain(c.host, c.id.domid).expect("domain");
                let path = path.clone();
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < end {
                        if plat.xenstore.write(XsTx::NONE, &path, b"4").is_err() {
                            break;
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer")).sum()
    });
    let s = format!("{writes} writes; {}", closed_or_connected(&raw));
    raw.close();
    s
}

fn grant_churn(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    let (end, mut copied, mut pages) = (c.end(), 0u64, 0u64);
    while Instant::now() < end {
        let g = &raw.platform().grants;
        let Ok(batch) = g.share(DomId(0), 256, Access::ReadOnly) else {
            break;
        };
        pages += 256;
        let slots: Vec<TxSlot> = batch
            .grefs()
            .iter()
            .enumerate()
            .map(|(i, r)| tx_req(r.0, 0, 64, NetTxFlags::empty(), i as u16))
            .collect();
        for chunk in slots.chunks(64) {
            while raw.push(chunk, true).is_none() && Instant::now() < end {
                copied += raw.take_responses().len() as u64;
                std::thread::sleep(Duration::from_micros(100));
            }
            copied += raw.take_responses().len() as u64;
        }
        copied += raw.responses(0, Duration::from_millis(100)).len() as u64;
        drop(batch);
    }
    let s = format!(
        "{pages} pages granted, {copied} answered; {}",
        closed_or_connected(&raw)
    );
    raw.close();
    s
}

/// Sends frames of `slots` as fast as the ring takes them for the window; counts the
/// answers with `NETIF_RSP_OKAY`.
fn flood(c: &mut Ctx, raw: &mut RawFrontend, packet: &[TxSlot]) -> (u64, u64) {
    let (end, mut sent, mut ok) = (c.end(), 0u64, 0u64);
    while Instant::now() < end {
        c.drain_wire();
        if raw.push(packet, true).is_some() {
            sent += 1;
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
        ok += raw.take_responses().iter().filter(|r| r.1 == 0).count() as u64;
    }
    ok += raw
        .responses(0, Duration::from_millis(200))
        .iter()
        .filter(|r| r.1 == 0)
        .count() as u64;
    (sent, ok)
}

fn budget_flood(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect::default());
    c.set_budget(ATTACK_PPS, ATTACK_BPS);
    let g = raw.data_gref(0);
    let t0 = Instant::now();
    let (sent, ok) = flood(c, &mut raw, &[tx_req(g, 0, 1000, NetTxFlags::empty(), 1)]);
    c.drain_wire();
    let secs = t0.elapsed().as_secs_f64();
    let s = format!(
        "{sent} frames offered, {ok} admitted, {} reached dom0: {:.0} packets/s, {:.1} Mb/s (caps {ATTACK_PPS}/s, {} Mb/s); {}",
        c.got.0,
        c.got.0 as f64 / secs,
        c.got.0 as f64 * 1000.0 * 8.0 / secs / 1e6,
        ATTACK_BPS * 8 / 1_000_000,
        closed_or_connected(&raw)
    );
    raw.close();
    s
}

fn gso_flood(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    raw.connect(&RawConnect {
        data_pages: 16,
        ..RawConnect::default()
    });
    c.set_budget(ATTACK_PPS, ATTACK_BPS);
    let gso = ExtraInfo::Gso {
        size: 48,
        r#type: XEN_NETIF_GSO_TYPE_TCPV4,
        features: 0,
    };
    let mut slots = vec![tx_req(
        raw.data_gref(0),
        0,
        (4096u32 * 16 - 100) as u16,
        NetTxFlags::MORE_DATA | NetTxFlags::EXTRA_INFO,
        1,
    )];
    slots.push(TxSlot::Extra(NetifExtraInfo::new(
        &gso,
        XenNetifExtraFlags::empty(),
    )));
    for i in 1..16 {
        let last = i == 15;
        let flags = if last {
            NetTxFlags::empty()
        } else {
            NetTxFlags::MORE_DATA
        };
        let size = if last { 4096 - 100 } else { 4096 };
        slots.push(tx_req(raw.data_gref(i), 0, size, flags, 1 + i as u16));
    }
    let t0 = Instant::now();
    let (sent, _) = flood(c, &mut raw, &slots);
    c.drain_wire();
    let secs = t0.elapsed().as_secs_f64();
    let s = format!(
        "{sent} frames offered, {} reached dom0 = {} wire segments ({:.0}/s, cap {ATTACK_PPS}/s); {}",
        c.got.0,
        c.got.1,
        c.got.1 as f64 / secs,
        closed_or_connected(&raw)
    );
    raw.close();
    s
}

fn double_fetch(c: &mut Ctx) -> String {
    let mut raw = c.raw();
    let (end, mut cycles, mut pushed) = (c.end(), 0u64, 0u64);
    let mut last = String::new();
    while Instant::now() < end {
        raw.connect(&RawConnect::default());
        pushed +=
            scribble_while_pushing(&raw, end.min(Instant::now() + Duration::from_millis(200)));
        last = closed_or_connected(&raw);
        raw.close();
        cycles += 1;
    }
    format!("{cycles} connections, {pushed} slots pushed; last: {last}")
}

/// Pushes one-slot packets until `end` (or the vif fails) while a second thread keeps
/// rewriting the TX ring's slots. Returns how many were pushed.
fn scribble_while_pushing(raw: &RawFrontend, end: Instant) -> u64 {
    let req = NetifTxRequest {
        gref: raw.data_gref(0),
        offset: 0,
        flags: 0,
        id: 1,
        size: 100,
    };
    let stop = AtomicBool::new(false);
    let mem = raw.tx_ring_mem();
    let mut pushed = 0u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut v = 0u32;
            while !stop.load(Ordering::Relaxed) {
                v = v.wrapping_add(0x0101_0101);
                for slot in 0..256 {
                    let at = 64 + slot * 12;
                    mem.store(at + 4, v & 0x0004_FFFF);
                    mem.store(at + 8, (v & 0xFFF) << 16 | slot as u32);
                }
            }
        });
        let mut idx = FrontIndices::default();
        while Instant::now() < end {
            let Ok(mut r) = NetifTxFrontRing::resume(mem, idx) else {
                break;
            };
            while let Ok(Some(_)) = r.take_response() {}
            if r.put_request(&req).is_ok() {
                pushed += 1;
            }
            r.push_requests();
            idx = r.indices();
            raw.notify();
            if raw.be_state() != XenbusState::Connected {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    pushed
}

/// CPU time of this process's threads named `netback…`, ns (scheduler run time).
fn netback_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("netback"))
        })
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Counters that a leak would grow: the process's, and what the hypervisor holds for
/// every domain (grants, event channels, connections).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Memory mappings.
    pub maps: u64,
    /// Open descriptors.
    pub fds: u64,
    /// Grant references in use (every domain).
    pub grants: u64,
    /// Event channel ports.
    pub ports: u64,
    /// Connections to the local hypervisor.
    pub connections: u64,
}

impl Usage {
    fn now(host: &LocalHost) -> Usage {
        let h = host.hypervisor.stats();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let maps = std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().count() as u64)
            .unwrap_or(0);
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        Usage {
            rss_kib: pages * 4,
            maps,
            fds,
            grants: h.grants as u64,
            ports: h.ports as u64,
            connections: h.connections as u64,
        }
    }
}

/// The reports as a Markdown table.
pub fn markdown(reports: &[AttackReport]) -> String {
    let mut s = String::from(
        "| attack | honest TX delivered (max latency) | honest RX delivered (max latency) | netback CPU | RSS Δ KiB | maps Δ | fds Δ | attacker's outcome |\n|---|---|---|---|---|---|---|---|\n",
    );
    let h = |x: &Honest| format!("{}/{} ({:.1} ms)", x.delivered, x.sent, x.max_latency_ms);
    for r in reports {
        s += &format!(
            "| {} | {} | {} | {:.0} ms of {} ({:.1} %) | {} | {} | {} | {} |\n",
            r.attack,
            h(&r.honest_tx),
            h(&r.honest_rx),
            r.netback_cpu_ms,
            r.window_ms,
            r.cpu_percent(),
            r.rss_delta_kib,
            r.maps_delta,
            r.fds_delta,
            r.outcome.replace('|', "/"),
        );
    }
    s
}

impl AttackReport {
    /// netback's CPU time as a percentage of the window.
    pub fn cpu_percent(&self) -> f64 {
        100.0 * self.netback_cpu_ms / self.window_ms.max(1) as f64
    }
}

/// Attacks after which netback must have been idle but for the honest guest: its CPU
/// may exceed the baseline's by at most [`STALL_CPU_PERCENT`] of the window.
const STALLS: &[&str] = &["incomplete-chain", "unconnected-frames"];
/// See [`STALLS`].
const STALL_CPU_PERCENT: f64 = 5.0;
/// Growth of a counter from the warm-up's end to the last round's that counts as a
/// leak (mappings move by a few as threads come and go; one leaked copy cache would be
/// thousands).
const LEAK_BOUND: i64 = 16;

/// The bounds a run must keep: every honest frame delivered, netback idle under the
/// stall attacks, no mapping or descriptor leak. The violations, if any.
pub fn violations(run: &HostileRun) -> Vec<String> {
    let reports = &run.reports;
    let mut v = Vec::new();
    let base = reports
        .iter()
        .find(|r| r.attack == "none")
        .map_or(0.0, AttackReport::cpu_percent);
    for r in reports {
        for (dir, x) in [("TX", &r.honest_tx), ("RX", &r.honest_rx)] {
            if x.delivered < x.sent {
                v.push(format!(
                    "{}: honest {dir} lost {} of {} frames",
                    r.attack,
                    x.sent - x.delivered,
                    x.sent
                ));
            }
        }
        if let Some(cap) = r.cap_pps {
            // The backstop's bucket: the rate over the window plus its depth (twice the
            // published burst, at least BACKSTOP_MIN_PACKETS); 10 % for the window's edges.
            let bound =
                cap as f64 * r.window_ms as f64 / 1000.0 * 1.1 + 2.0 * (cap / 100) as f64 + 64.0;
            if r.attacker_wire.1 as f64 > bound {
                v.push(format!(
                    "{}: {} wire packets reached dom0 in {} ms under a cap of {cap}/s",
                    r.attack, r.attacker_wire.1, r.window_ms
                ));
            }
        }
        if STALLS.contains(&r.attack.as_str()) && r.cpu_percent() > base + STALL_CPU_PERCENT {
            v.push(format!(
                "{}: netback used {:.1} % of a core (baseline {base:.1} %)",
                r.attack,
                r.cpu_percent()
            ));
        }
    }
    // Growth from the end of the warm-up (the first round; the second too when there
    // are three or more: thread stacks and allocator arenas settle) to the last round's
    // end: a leak, not warm-up.
    let warm = if run.after_round.len() >= 3 { 1 } else { 0 };
    let rounds = run.after_round.get(warm..).unwrap_or_default();
    if let (Some(a), Some(b)) = (rounds.first(), rounds.last()) {
        let grew = |x: u64, y: u64| y as i64 - x as i64;
        for (what, d) in [
            ("descriptors", grew(a.fds, b.fds)),
            ("grants", grew(a.grants, b.grants)),
            ("event channels", grew(a.ports, b.ports)),
            ("hypervisor connections", grew(a.connections, b.connections)),
        ] {
            if d > LEAK_BOUND {
                v.push(format!(
                    "{d} more {what} after the last round than after the first"
                ));
            }
        }
        if mappings_leak(rounds) {
            v.push(format!(
                "{} more mappings after the last round than after the first, more than {LEAK_BOUND} every round",
                grew(a.maps, b.maps)
            ));
        }
    }
    v
}

/// Whether the mappings counted after each round past the warm-up leak: every round
/// added more than [`LEAK_BOUND`]. A leak grows with each round's connections (a round
/// makes ~150 of them; one leaked ring pair each is 300 mappings, one leaked copy cache
/// thousands); the C library's allocator arenas and cached thread stacks move in steps
/// and wobble under load (ci13: +45 in one round; two busy loops beside the run: +28,
/// then −6; ci15 with the test bed beside it: +10, then +7).
fn mappings_leak(rounds: &[Usage]) -> bool {
    rounds.len() >= 2
        && rounds
            .windows(2)
            .all(|w| w[1].maps as i64 - w[0].maps as i64 > LEAK_BOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(m: &[u64]) -> Vec<Usage> {
        m.iter()
            .map(|&maps| Usage {
                rss_kib: 0,
                maps,
                fds: 0,
                grants: 0,
                ports: 0,
                connections: 0,
            })
            .collect()
    }

    #[test]
    fn mappings_that_grow_every_round_leak_and_one_step_does_not() {
        // A leak: every round adds its connections' mappings.
        assert!(mappings_leak(&maps(&[400, 420, 440])));
        assert!(mappings_leak(&maps(&[400, 700, 1000])));
        // The allocator's step under contention (ci13: +45 in one round), then flat.
        assert!(!mappings_leak(&maps(&[321, 368, 368])));
        assert!(!mappings_leak(&maps(&[447, 475, 469])));
        // Wobble under load (ci15: +10, +7) is no leak.
        assert!(!mappings_leak(&maps(&[440, 450, 457])));
        // Two rounds to compare: the one step decides.
        assert!(mappings_leak(&maps(&[400, 417])));
        assert!(!mappings_leak(&maps(&[400, 416])));
        assert!(!mappings_leak(&maps(&[400])));
    }

    #[test]
    fn attack_names_are_unique() {
        let mut n: Vec<_> = ATTACKS.iter().map(|a| a.name).collect();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), ATTACKS.len());
    }
}
