//! A multi-queue vif across a netback killed with `kill -9` in the middle of a batch,
//! under a frontend that acts as the stock Linux netfront does: it stays `Connected`,
//! keeps its rings and never runs a handshake again (issue 14, after issue 13's
//! "restarts that strand no guest").
//!
//! The first netback is a process (2 workers, journals in a directory of the test) that
//! exits as if killed right before writing a response of one queue, with responses of
//! that queue's batch written into the ring and not published. Frames queued on every
//! queue while no netback runs wait on the rings. The next netback takes every queue
//! over: each queue's journal replayed (the killed batch's responses published once),
//! the queued frames sent exactly once, on their own queue, and afterwards every queue
//! carries frames both ways. With 2 queues (TX batch of queue 1), 4 queues (TX batch of
//! queue 3; RX batch of queue 2), and 4 queues whose queue 1 and 2 journals are bad (not
//! a journal; another ring's): ignored, nothing written into those rings from them.
//!
//! Also: a vif's journals follow its queues (stale ones go at a reconnection with fewer,
//! all with the vif); a persistent 4-queue TAP is re-attached by the successor of a
//! netback killed with SIGKILL; a frontend that changed one queue's ring while no
//! netback ran is failed, not followed.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hypervisor::xenbus::{read_state, XenbusState};
use netback::{Netback, NetbackConfig};
use netfront::{Netfront, NetfrontConfig, Sent};
use netport::{FrameMeta, MemPort, MemPortConfig};
use testbed::{
    add_vif, check_frame, child_platform, frame, recv_n, send_all, tagged_numbers, BackendThread,
    ChildSpec, LocalNetfront, MemWires, TestChild,
};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

const WAIT: Duration = Duration::from_secs(10);
/// Environment variables of the child process: its settings.
const CHILD_QUEUES: &str = "DBA_MQ_RESTART_QUEUES";
const CHILD_JOURNAL: &str = "DBA_MQ_RESTART_JOURNAL";
const CHILD_EXIT_TX: &str = "DBA_MQ_RESTART_EXIT_TX";
const CHILD_EXIT_RX: &str = "DBA_MQ_RESTART_EXIT_RX";
/// `"<queue> <n>"`: the child puts frames 0..n on that queue's port for the guest.
const CHILD_RX_FRAMES: &str = "DBA_MQ_RESTART_RX_FRAMES";
/// The child serves multi-queue TAPs (in the network namespace it runs in), not memory
/// ports.
const CHILD_TAP: &str = "DBA_MQ_RESTART_TAP";
const FE: &str = "/local/domain/1/device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/1/0";
/// Frames each queue carries both ways before the kill.
const WARM: u32 = 5;
/// Frames queued on each queue while no netback runs.
const QUEUED: std::ops::Range<u32> = 100..120;

/// A length that varies with `seq`, from a minimal frame to a full one.
fn len_of(seq: u32) -> usize {
    60 + (seq as usize * 37) % 1440
}

/// Frame `seq` of queue `q` (its number says its queue).
fn qframe(q: usize, seq: u32) -> Vec<u8> {
    frame(q as u32 * 10_000 + seq, len_of(seq))
}

/// Entry point of the child process: netback for dom0 on memory ports, printing every
/// frame that reaches one of vif 1.0's queue ports as `FRAME <queue> <seq> <len>`.
#[test]
#[ignore = "child process of the tests of mq_restart.rs"]
fn child_netback() {
    let platform = child_platform("child_netback").expect("a child of mq_restart.rs");
    let wires = MemWires::new(MemPortConfig::new(1024, 65536));
    let env = |k: &str| std::env::var(k).ok();
    let num = |k: &str| env(k).map(|v| v.parse::<u64>().expect(k));
    let queues = num(CHILD_QUEUES).expect(CHILD_QUEUES) as u32;
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(queues),
        journal_dir: env(CHILD_JOURNAL).map(Into::into),
        exit_after_tx_responses: num(CHILD_EXIT_TX),
        exit_after_rx_responses: num(CHILD_EXIT_RX),
        ..NetbackConfig::default()
    };
    if env(CHILD_TAP).is_some() {
        let taps = netback::tapvif::TapFactory {
            multi_queue: true,
            ..Default::default()
        };
        let clock = hypervisor::clock::system();
        let mut nb = Netback::new(platform, cfg, Box::new(taps), clock).expect("netback");
        loop {
            nb.run_once(Duration::from_millis(5)).expect("netback");
        }
    }
    let rx: Option<(u32, u32)> = env(CHILD_RX_FRAMES).map(|v| {
        let mut w = v.split(' ').map(|x| x.parse().expect(CHILD_RX_FRAMES));
        (w.next().unwrap(), w.next().unwrap())
    });
    let mut nb = Netback::new(
        platform,
        cfg,
        Box::new(wires.factory()),
        hypervisor::clock::system(),
    )
    .expect("netback");
    let id = VifId::new(DomId(1), 0);
    for q in 0..queues {
        let wires = wires.clone();
        std::thread::spawn(move || {
            let mut wire = wires
                .take_queue(id, q, WAIT)
                .expect("netback opens the port");
            if let Some((_, n)) = rx.filter(|(rq, _)| *rq == q) {
                for seq in 0..n {
                    send_all(&mut wire, &qframe(q as usize, seq));
                }
            }
            loop {
                for f in recv_n(&mut wire, usize::MAX, Duration::from_millis(5)) {
                    println!("FRAME {q} {} {}", check_frame(&f), f.len());
                }
            }
        });
    }
    loop {
        nb.run_once(Duration::from_millis(5)).expect("netback");
    }
}

/// Starts [`child_netback`] as dom0 with `env`; the frames it sends to its ports, as
/// (queue, seq, len).
fn spawn_child(
    host: &LocalHost,
    env: &[(&str, String)],
) -> (TestChild, mpsc::Receiver<(usize, u32, usize)>) {
    spawn_child_in(host, None, env)
}

/// [`spawn_child`], in network namespace `ns` if given.
fn spawn_child_in(
    host: &LocalHost,
    netns: Option<&netport::netns::NetNs>,
    env: &[(&str, String)],
) -> (TestChild, mpsc::Receiver<(usize, u32, usize)>) {
    let spec = ChildSpec {
        test: "child_netback",
        env: env.to_vec(),
        netns,
        stdout: true,
    };
    let mut child = TestChild::spawn(host, DomId(0), &spec).expect("the netback process");
    let rx = child
        .stdout_lines(|line| match tagged_numbers(line, "FRAME ")?[..] {
            [q, seq, len] => Some((q as usize, seq as u32, len as usize)),
            _ => None,
        })
        .expect("its standard output");
    (child, rx)
}

/// Our netfront asking for `queues` queues, driven by hand from the test: it never
/// looks at xenstore again, so never runs a handshake again (as the stock Linux
/// netfront after its connection).
fn connect(host: &LocalHost, queues: usize) -> LocalNetfront {
    let platform = testbed::domain(host, DomId(1)).expect("domain");
    let mut cfg = NetfrontConfig::new(0);
    cfg.queues = queues;
    let nf =
        Netfront::connect(platform, cfg, hypervisor::clock::system()).expect("netfront connects");
    assert_eq!(nf.num_queues(), queues, "queues negotiated");
    nf
}

/// Queues frames `seqs` of queue `q` on its TX ring and publishes them; returns the TX
/// completions reaped meanwhile. Panics on a TX error response.
fn send_on(nf: &mut LocalNetfront, q: usize, seqs: std::ops::Range<u32>) -> usize {
    let mut reaped = 0;
    let mut split = nf.split().expect("connected");
    let h = &mut split.queues[q];
    for seq in seqs {
        let f = qframe(q, seq);
        let deadline = Instant::now() + WAIT;
        loop {
            match h.send_at(h.now(), &f, &FrameMeta::default()).expect("send") {
                Sent::Queued => break,
                Sent::RingFull => {
                    assert!(Instant::now() < deadline, "queue {q}: TX ring stayed full");
                    h.flush().expect("flush");
                    std::thread::sleep(Duration::from_micros(200));
                    reaped += h.reap_tx().expect("reap");
                }
                other => panic!("queue {q} frame {seq}: {other:?}"),
            }
        }
    }
    h.flush().expect("flush");
    assert_eq!(h.stats.tx_errors, 0, "queue {q}: TX error responses");
    reaped
}

/// Reaps queue `q`'s TX completions until `n` completed, `done` of them already; then
/// checks that no request is answered again. Each response must answer a request the
/// frontend has outstanding (netfront fails a reap otherwise).
fn reap_on(nf: &mut LocalNetfront, q: usize, mut done: usize, n: usize) {
    let deadline = Instant::now() + WAIT;
    while done < n {
        assert!(
            Instant::now() < deadline,
            "queue {q}: {done} of {n} TX completions"
        );
        nf.ack_events();
        let mut split = nf.split().expect("connected");
        let h = &mut split.queues[q];
        done += h
            .reap_tx()
            .expect("each response answers an outstanding request");
        assert_eq!(h.stats.tx_errors + h.stats.tx_dropped_back, 0, "queue {q}");
        drop(split);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(done, n, "queue {q}: completions");
    std::thread::sleep(Duration::from_millis(50));
    let mut split = nf.split().expect("connected");
    assert_eq!(
        split.queues[q].reap_tx().expect("reap"),
        0,
        "queue {q}: a request answered twice"
    );
}

/// Receives `n` frames on queue `q`.
fn recv_on(nf: &mut LocalNetfront, q: usize, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "queue {q}: {} of {n} frames",
            out.len()
        );
        nf.ack_events();
        let mut split = nf.split().expect("connected");
        match split.queues[q].recv(&mut buf).expect("recv") {
            Some((len, _)) => out.push(buf[..len].to_vec()),
            None => {
                drop(split);
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    out
}

/// The frames of `seqs` of queue `q` arrive on `wire` exactly once, intact, in order,
/// and nothing else follows.
fn expect_exactly(wire: &mut MemPort, q: usize, seqs: std::ops::Range<u32>) {
    let got = recv_n(wire, seqs.len(), WAIT);
    let got: Vec<(u32, usize)> = got.iter().map(|f| (check_frame(f), f.len())).collect();
    let want: Vec<(u32, usize)> = seqs.map(|s| (q as u32 * 10_000 + s, len_of(s))).collect();
    assert_eq!(got, want, "queue {q}: frames on its port");
    let extra = recv_n(wire, usize::MAX, Duration::from_millis(100));
    let extra: Vec<u32> = extra.iter().map(|f| check_frame(f)).collect();
    assert!(extra.is_empty(), "queue {q}: frames sent twice: {extra:?}");
}

/// Every queue carries `n` frames each way, on its own queue: netfront → port k, then
/// port k → netfront queue k.
fn every_queue_both_ways(nf: &mut LocalNetfront, wires: &mut [MemPort], base: u32, n: u32) {
    for (q, wire) in wires.iter_mut().enumerate() {
        let reaped = send_on(nf, q, base..base + n);
        expect_exactly(wire, q, base..base + n);
        reap_on(nf, q, reaped, n as usize);
        for seq in base..base + n {
            send_all(wire, &qframe(q, seq));
        }
        let got: Vec<u32> = recv_on(nf, q, n as usize)
            .iter()
            .map(|f| check_frame(f))
            .collect();
        let want: Vec<u32> = (base..base + n).map(|s| q as u32 * 10_000 + s).collect();
        assert_eq!(got, want, "queue {q}: port → netfront");
    }
}

/// The frontend's keys of every queue (its state, queue count, rings, channels).
fn frontend_keys(host: &LocalHost, queues: usize) -> Vec<(String, Option<Vec<u8>>)> {
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    let mut paths = vec![
        format!("{FE}/state"),
        format!("{FE}/multi-queue-num-queues"),
    ];
    for q in 0..queues {
        for k in [
            "tx-ring-ref",
            "rx-ring-ref",
            "event-channel",
            "event-channel-tx",
            "event-channel-rx",
        ] {
            paths.push(format!("{FE}/queue-{q}/{k}"));
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let v = xs.try_read(XsTx::NONE, &p).unwrap();
            (p, v)
        })
        .collect()
}

/// The backend's `error` node ("" when absent).
fn be_error(host: &LocalHost) -> String {
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    xs.try_read(XsTx::NONE, &format!("{BE}/error"))
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// A fresh directory for the journals of one test.
fn journal_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netback-mqj-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Which ring of which queue the first netback is killed in the middle of a batch of.
#[derive(Clone, Copy)]
enum Fault {
    /// Queue `.0`'s TX ring, after `.1` responses past the warm-up.
    Tx(usize, u32),
    /// Queue `.0`'s RX ring, after `.1` responses.
    Rx(usize, u32),
}

/// What the test does to the journals between the kill and the next netback.
type Tamper<'a> = &'a dyn Fn(&LocalHost, &std::path::Path);

/// The whole story with `queues` queues: warm-up on every queue, the kill at `fault`,
/// frames queued on every queue, `tamper`, the next netback, then checks.
fn killed_mid_batch(name: &str, queues: usize, fault: Fault, tamper: Tamper<'_>) {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let dir = journal_dir(name);
    let mut env = vec![
        (CHILD_QUEUES, queues.to_string()),
        (CHILD_JOURNAL, dir.display().to_string()),
    ];
    match fault {
        // Each queue counts its own responses: only the faulty queue gets past WARM.
        Fault::Tx(_, k) => env.push((CHILD_EXIT_TX, (WARM + k).to_string())),
        Fault::Rx(q, k) => {
            env.push((CHILD_EXIT_RX, k.to_string()));
            env.push((CHILD_RX_FRAMES, format!("{q} 40")));
        }
    }
    let (mut child, sent) = spawn_child(&host, &env);
    let mut nf = connect(&host, queues);
    let keys = frontend_keys(&host, queues);
    let refs = keys.iter().filter(|(p, _)| p.ends_with("-ring-ref"));
    assert!(
        refs.clone().count() == 2 * queues && refs.clone().all(|(_, v)| v.is_some()),
        "{keys:?}"
    );
    // Warm-up: every queue's frames leave on its own port (TX), all answered.
    if let Fault::Tx(..) = fault {
        for q in 0..queues {
            let reaped = send_on(&mut nf, q, 0..WARM);
            let mut got: Vec<(usize, u32, usize)> = (0..WARM)
                .map(|_| sent.recv_timeout(WAIT).expect("the netback process sends"))
                .collect();
            got.sort();
            let want: Vec<_> = (0..WARM)
                .map(|s| (q, q as u32 * 10_000 + s, len_of(s)))
                .collect();
            assert_eq!(got, want, "queue {q} before the kill");
            reap_on(&mut nf, q, reaped, WARM as usize);
        }
    }
    // The kill, in the middle of a batch of one queue.
    let (fq, reaped_fq) = match fault {
        Fault::Tx(q, _) => (q, send_on(&mut nf, q, WARM..WARM + 40)),
        Fault::Rx(q, _) => (q, 0),
    };
    child
        .wait_exit(WAIT)
        .expect("the netback process reaches its fault point");
    // No netback: the guest queues frames on every queue (it does not know).
    let reaped: Vec<usize> = (0..queues).map(|q| send_on(&mut nf, q, QUEUED)).collect();
    tamper(&host, &dir);
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(queues as u32),
        journal_dir: Some(dir.clone()),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes every queue over");
    assert_eq!(be_error(&host), "", "the vif was failed");
    let mut wires: Vec<MemPort> = std::iter::once(nb.wire(id))
        .chain((1..queues as u32).map(|k| nb.wire_queue(id, k)))
        .collect();
    match fault {
        Fault::Tx(q, k) => {
            // Frames WARM..=WARM+k went out before the kill (the last one's response
            // recorded, not written): the rest, once, then what was queued.
            let mut got = recv_n(&mut wires[q], 40 - k as usize - 1, WAIT);
            got.extend(recv_n(&mut wires[q], QUEUED.len(), WAIT));
            let got: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
            let want: Vec<u32> = (WARM + k + 1..WARM + 40)
                .chain(QUEUED)
                .map(|s| q as u32 * 10_000 + s)
                .collect();
            assert_eq!(
                got, want,
                "queue {q}: the killed batch's rest, then the queued"
            );
            // The killed process sent none of those (its printer may have died before
            // printing some of WARM..=WARM+k).
            let late: Vec<_> = sent
                .try_iter()
                .filter(|f| f.0 != q || f.1 % 10_000 > WARM + k)
                .collect();
            assert!(late.is_empty(), "the killed process sent {late:?}");
        }
        Fault::Rx(q, k) => {
            expect_exactly(&mut wires[q], q, QUEUED);
            // The frames the killed netback put into the guest's buffers and answered
            // without publishing: once, intact.
            let got: Vec<u32> = recv_on(&mut nf, q, k as usize + 1)
                .iter()
                .map(|f| check_frame(f))
                .collect();
            let want: Vec<u32> = (0..=k).map(|s| q as u32 * 10_000 + s).collect();
            assert_eq!(got, want, "queue {q}: the killed netback's RX batch");
        }
    }
    for q in (0..queues).filter(|q| *q != fq) {
        expect_exactly(&mut wires[q], q, QUEUED);
    }
    // Every TX request answered exactly once.
    for (q, r) in reaped.iter().enumerate() {
        let before = if q == fq { reaped_fq + r } else { *r };
        let n = if let (Fault::Tx(..), true) = (fault, q == fq) {
            40 + QUEUED.len()
        } else {
            QUEUED.len()
        };
        reap_on(&mut nf, q, before, n);
    }
    every_queue_both_ways(&mut nf, &mut wires, 200, 10);
    // The frontend never ran a handshake: same keys, same rings, still Connected.
    assert_eq!(frontend_keys(&host, queues), keys, "the frontend's keys");
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    assert_eq!(
        read_state(xs, &format!("{FE}/state")).ok(),
        Some(XenbusState::Connected)
    );
    assert!(nf.maintain(), "netfront stays connected");
    assert_eq!(nf.num_queues(), queues);
    let st = nb.vif_status(id).expect("status");
    assert!(st.connected && st.state == XenbusState::Connected, "{st:?}");
    assert_eq!(be_error(&host), "");
    drop(nb);
    let _ = std::fs::remove_dir_all(&dir);
}

fn no_tamper(_: &LocalHost, _: &std::path::Path) {}

#[test]
fn a_2_queue_vif_survives_a_kill_in_the_middle_of_a_tx_batch() {
    killed_mid_batch("tx2", 2, Fault::Tx(1, 10), &no_tamper);
}

#[test]
fn a_4_queue_vif_survives_a_kill_in_the_middle_of_a_tx_batch() {
    killed_mid_batch("tx4", 4, Fault::Tx(3, 12), &no_tamper);
}

#[test]
fn a_4_queue_vif_survives_a_kill_in_the_middle_of_an_rx_batch() {
    killed_mid_batch("rx4", 4, Fault::Rx(2, 10), &no_tamper);
}

/// The journal layout (`netback::journal`): per ring a page of u32 words, magic, ring
/// reference, batch start, count, then from byte 32 two words per response.
const J_MAGIC: u32 = 0x314a_424e;

/// Queue `q`'s `tx-ring-ref`, as the frontend wrote it.
fn tx_ring_ref(host: &LocalHost, q: usize) -> u32 {
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    let key = format!("{FE}/queue-{q}/tx-ring-ref");
    let v = hypervisor::xenbus::read_str(xs, XsTx::NONE, &key, 16).unwrap();
    v.parse().unwrap()
}

/// The TX ring's `rsp_prod` of queue `q`, read through a dom0 mapping.
fn tx_rsp_prod(host: &LocalHost, q: usize) -> u32 {
    use hypervisor::grant::{Access, GrantMap, GrantMapping, GrantRef};
    use hypervisor::platform::{ring_mem, Platform};
    let gref = tx_ring_ref(host, q);
    let dom0 = testbed::domain(host, DomId(0)).unwrap();
    let page = dom0
        .grants()
        .map(DomId(1), &[GrantRef(gref)], Access::Writable)
        .unwrap();
    ring_mem(page.mem()).load(shared_ring::ring::layout::RSP_PROD)
}

/// Queue 1's journal file is not a journal; queue 2's is a journal of another ring
/// (queue 3's reference) whose batch would fit queue 2's ring exactly (it starts at
/// queue 2's `rsp_prod` and answers the requests queued there): trusted, it would
/// answer them without their frames ever going out.
fn bad_journals(host: &LocalHost, dir: &std::path::Path) {
    std::fs::write(dir.join("1.0.q1.journal"), vec![0xa5u8; 8192]).unwrap();
    let other = tx_ring_ref(host, 3);
    let mut page = vec![0u8; 8192];
    let mut put = |at: usize, w: u32| page[at..at + 4].copy_from_slice(&w.to_ne_bytes());
    put(0, J_MAGIC);
    put(4, other);
    put(8, tx_rsp_prod(host, 2));
    put(12, QUEUED.len() as u32);
    for i in 0..QUEUED.len() {
        put(32 + 8 * i, i as u32); // id i, status 0 (OK)
    }
    std::fs::write(dir.join("1.0.q2.journal"), &page).unwrap();
}

#[test]
fn bad_journals_of_some_queues_are_ignored_safely() {
    // Killed in queue 0's TX batch: its journal (the file name of single-queue
    // netbacks) is replayed, queue 1's and 2's are set aside.
    killed_mid_batch("bad4", 4, Fault::Tx(0, 10), &bad_journals);
}

/// The names of the files in `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The frontend closes (its rings released) and netback follows it to `Closed`.
fn close(host: &LocalHost, mut nf: LocalNetfront) {
    nf.disconnect();
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    xs.write(XsTx::NONE, &format!("{FE}/state"), b"6").unwrap();
    let deadline = Instant::now() + WAIT;
    while read_state(xs, &format!("{BE}/state")).ok() != Some(XenbusState::Closed) {
        assert!(
            Instant::now() < deadline,
            "netback did not follow to Closed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A vif's journals follow its queues: one per queue while connected with 4; connected
/// again with 2, the journals of queues 2 and 3 are gone; the vif removed, all are.
#[test]
fn a_vif_s_journals_follow_its_queues() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let dir = journal_dir("follow");
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(4),
        journal_dir: Some(dir.clone()),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    let nf = connect(&host, 4);
    nb.wait_connected(&[id], WAIT).expect("connected");
    assert_eq!(
        files(&dir),
        [
            "1.0.journal",
            "1.0.q1.journal",
            "1.0.q2.journal",
            "1.0.q3.journal"
        ]
    );
    let mut wires: Vec<MemPort> = std::iter::once(nb.wire(id))
        .chain((1..4).map(|k| nb.wire_queue(id, k)))
        .collect();
    close(&host, nf);
    let mut nf = connect(&host, 2);
    nb.wait_connected(&[id], WAIT).expect("connected again");
    assert_eq!(
        files(&dir),
        ["1.0.journal", "1.0.q1.journal"],
        "stale journals"
    );
    wires.truncate(1);
    wires.push(nb.wire_queue(id, 1));
    every_queue_both_ways(&mut nf, &mut wires, 0, 5);
    let dom0 = host.domain(DomId(0)).unwrap();
    let spec = netback::toolstack::VifSpec::new(DomId(0), DomId(1), 0);
    netback::toolstack::destroy_vif(&dom0.xenstore, &spec).unwrap();
    let deadline = Instant::now() + WAIT;
    while nb.vif_status(id).is_some() || !files(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "journals of the removed vif: {:?}",
            files(&dir)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Frames the kernel received from netback on interface `vif1.0` of `ns` (all of its
/// TAP queues together).
fn tap_rx_packets(ns: &netport::netns::NetNs) -> u64 {
    let out = ns
        .exec("cat", &["/sys/class/net/vif1.0/statistics/rx_packets"])
        .expect("vif1.0's counters");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Waits until `tap_rx_packets` is `want`; fails if it is not, or goes past it.
fn wait_tap_rx(ns: &netport::netns::NetNs, want: u64) {
    let deadline = Instant::now() + WAIT;
    let mut got = tap_rx_packets(ns);
    while got < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        got = tap_rx_packets(ns);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(tap_rx_packets(ns), want, "frames on the interface");
}

/// netback with persistent multi-queue TAPs killed (SIGKILL) under a 4-queue guest that
/// stays connected: the next netback re-attaches the 4 queues of the same interface
/// (ifindex), the frames queued meanwhile on every queue reach it once, and every queue
/// carries frames to it afterwards.
#[test]
fn a_killed_netback_s_successor_re_attaches_the_4_queues_of_the_tap() {
    use netport::netns::{skip_unless_root_with_tun, NetNs};
    if skip_unless_root_with_tun("a_killed_netback_s_successor_re_attaches_the_4_queues_of_the_tap")
    {
        return;
    }
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let ns = NetNs::new("mqk").unwrap();
    let dir = journal_dir("tap");
    let env = [
        (CHILD_QUEUES, "4".to_string()),
        (CHILD_JOURNAL, dir.display().to_string()),
        (CHILD_TAP, "1".to_string()),
    ];
    let (child, _) = spawn_child_in(&host, Some(&ns), &env);
    let mut nf = connect(&host, 4);
    testbed::wait_link(&ns, "vif1.0", WAIT).unwrap();
    let link = || {
        let out = ns.exec("ip", &["-o", "link", "show", "vif1.0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ifindex = |l: String| l.split(':').next().unwrap().trim().to_string();
    let index = ifindex(link());
    let base = tap_rx_packets(&ns);
    let reaped: Vec<usize> = (0..4).map(|q| send_on(&mut nf, q, 0..5)).collect();
    wait_tap_rx(&ns, base + 20);
    for (q, r) in reaped.into_iter().enumerate() {
        reap_on(&mut nf, q, r, 5);
    }
    drop(child); // kill -9
    let reaped: Vec<usize> = (0..4).map(|q| send_on(&mut nf, q, QUEUED)).collect();
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(4),
        journal_dir: Some(dir.clone()),
        ..NetbackConfig::default()
    };
    let taps = netback::tapvif::TapFactory {
        multi_queue: true,
        ..Default::default()
    };
    let dom0 = host.domain(DomId(0)).unwrap();
    let opts = testbed::BackendOptions::default();
    let nb = BackendThread::spawn(testbed::Spawner::Netns(&ns), dom0, cfg, taps, opts).unwrap();
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the 4 queues over");
    assert_eq!(be_error(&host), "");
    wait_tap_rx(&ns, base + 20 + 4 * QUEUED.len() as u64);
    for (q, r) in reaped.into_iter().enumerate() {
        reap_on(&mut nf, q, r, QUEUED.len());
    }
    let reaped: Vec<usize> = (0..4).map(|q| send_on(&mut nf, q, 200..205)).collect();
    wait_tap_rx(&ns, base + 40 + 4 * QUEUED.len() as u64);
    for (q, r) in reaped.into_iter().enumerate() {
        reap_on(&mut nf, q, r, 5);
    }
    assert_eq!(ifindex(link()), index, "the same interface");
    let st = nb.vif_status(id).expect("status");
    assert!(st.connected, "{st:?}");
    assert_eq!(st.counters.tx_packets, 4 * (QUEUED.len() as u64 + 5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 4-queue frontend that names another ring for one queue while no netback runs,
/// without a handshake, is not followed into it: the vif fails with the reason in its
/// `error` node, nothing of it taken over.
#[test]
fn one_queue_s_ring_changed_without_a_handshake_is_refused() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(4),
        ..NetbackConfig::default()
    };
    let mut nb = BackendThread::start(&host, cfg.clone()).expect("netback");
    let _nf = connect(&host, 4);
    nb.wait_connected(&[id], WAIT).expect("connected");
    nb.stop().expect("netback");
    drop(nb);
    let xs = &host.domain(DomId(0)).unwrap().xenstore;
    let key = format!("{FE}/queue-2/tx-ring-ref");
    let gref = tx_ring_ref(&host, 2);
    xs.write(XsTx::NONE, &key, (gref + 1000).to_string().as_bytes())
        .unwrap();
    let nb = BackendThread::start(&host, cfg).expect("netback");
    let deadline = Instant::now() + WAIT;
    while read_state(xs, &format!("{BE}/state")).ok() != Some(XenbusState::Closing) {
        assert!(Instant::now() < deadline, "the vif was not failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = be_error(&host);
    assert!(
        error.contains("changed its rings without a new handshake")
            && error.contains(&(gref + 1000).to_string()),
        "{error}"
    );
    assert!(nb.vif_status(id).is_some_and(|s| !s.connected));
}
