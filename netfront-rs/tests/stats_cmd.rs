//! `netfront stats` as a guest administrator uses it: netfront runs against netback
//! (local platform) with the allocator holding the vif to 2 Mb/s each way, dom0 floods
//! the guest and the guest floods out; then the admin runs the `netfront stats` binary
//! against the running netfront's state file. What it prints — the budgets, netfront's
//! own drops, netback's shaping counters — must equal what netback counted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use netback::meter::VifCounters;
use netback::NetbackConfig;
use netfront::stats::{StatsFile, StatsReport};
use netfront::NetfrontConfig;
use netport::MemPort;
use testbed::{
    add_vif, count_until, domain, flood, pump_until, BackendThread, GuestOptions, GuestThread,
    Spawner,
};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

/// The guest may send and receive 2 Mb/s (250 000 B/s) each way.
const SLAS: &str = r#"
[link]
capacity-bps = "100M"
rx-capacity-bps = "100M"
[[vif]]
domid = 1
max-bps = "2M"
rx-max-bps = "2M"
"#;
const FRAME: usize = 1000;

fn vif1() -> VifId {
    VifId::new(DomId(1), 0)
}

fn stats_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netfront-stats-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `netfront stats IFACE --stats-dir dir [--json]` as the admin would.
fn run_stats(dir: &Path, iface: &str, json: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netfront"));
    cmd.args(["stats", iface, "--stats-dir"]).arg(dir);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run netfront stats")
}

/// `netfront stats eth0`, which must succeed: (stdout, stderr).
fn netfront_stats(dir: &Path, json: bool) -> (String, String) {
    let out = run_stats(dir, "eth0", json);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "netfront stats failed: {stderr}");
    (stdout, stderr)
}

/// The lines `netfront stats` prints for these figures of netback's and netfront's.
fn expected_lines(c: &VifCounters, own_dropped: u64) -> Vec<String> {
    vec![
        "  TX budget: 250000 B/s".to_string(),
        "  RX budget: 250000 B/s".to_string(),
        format!("  dropped by netfront for TX credit: {own_dropped} frames"),
        format!(
            "    TX: {} frames / {} B for bits/s, {} frames for packets/s",
            c.tx_shaped_bps_frames, c.tx_shaped_bps_bytes, c.tx_shaped_pps_frames
        ),
        format!(
            "    RX: {} frames / {} B for bits/s, {} frames for packets/s",
            c.rx_dropped_police, c.rx_police_wire_bytes, c.rx_shaped_pps_frames
        ),
    ]
}

/// One run: netfront (`enforce`: whether it applies its credits itself) serves a memory
/// port with its state file in `dir`; both directions are flooded for 400 ms. Returns
/// netback's counters of the vif once the floods ended, the frames netfront says it
/// dropped as netback read them from the credit area, and the netfront thread (still
/// running).
fn shaped_run(
    host: &LocalHost,
    dir: &Path,
    enforce: bool,
) -> (
    BackendThread,
    GuestThread<std::io::Result<()>>,
    VifCounters,
    Option<u64>,
) {
    add_vif(host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(host, NetbackConfig::default()).expect("netback");
    nb.command(|nb| {
        nb.enable_allocator(
            parse_sla_file(SLAS).unwrap(),
            LoopConfig::with_period(Duration::from_millis(10)),
        )
        .unwrap();
    });
    let (mut app, mut dev) = MemPort::pair(1024, 65536).unwrap();
    let cfg = NetfrontConfig {
        enforce_credits: enforce,
        ..NetfrontConfig::new(0)
    };
    let dir2 = dir.to_path_buf();
    let g = GuestThread::spawn(
        Spawner::Thread,
        domain(host, DomId(1)).unwrap(),
        cfg,
        GuestOptions::default(),
        move |nf, stop| {
            // As the binary does (`--stats-dir`, `--tap eth0`).
            nf.stats_file = Some(StatsFile::new(&dir2, "eth0"));
            pump_until(nf, &mut dev, stop)
        },
    )
    .expect("guest");
    nb.wait_connected(&[vif1()], Duration::from_secs(10))
        .expect("connected");
    let dur = Duration::from_millis(400);
    let end = Instant::now() + dur + Duration::from_millis(300);
    let mut wire = nb.wire(vif1());
    let down = std::thread::spawn(move || {
        flood(&mut wire, FRAME, dur);
        count_until(&mut wire, end);
    });
    let up = std::thread::spawn(move || {
        flood(&mut app, FRAME, dur);
        count_until(&mut app, end);
    });
    down.join().unwrap();
    up.join().unwrap();
    let s = nb.vif_status(vif1()).unwrap();
    (nb, g, s.counters, s.front_dropped_packets)
}

/// Polls `netfront stats` until its lines contain `want` (the running netfront rewrites
/// its file within a second of a change), or fails with what it printed.
fn wait_for_lines(dir: &Path, want: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (text, _) = if dir.join("eth0.stats").exists() {
            netfront_stats(dir, false)
        } else {
            (String::new(), String::new())
        };
        if want
            .iter()
            .all(|w| text.lines().any(|l| l.starts_with(w.as_str())))
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "netfront stats never printed {want:#?}; last:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn netfront_stats_prints_what_netback_dropped_for_the_budgets() {
    let host = LocalHost::new();
    let dir = stats_dir("enforcing");
    let (_nb, g, c, front_dropped) = shaped_run(&host, &dir, true);
    // The flood exceeded both budgets: netback dropped on RX before the copy; netfront
    // dropped its own excess TX.
    assert!(c.rx_dropped_police > 0, "{c:?}");
    assert_eq!(c.rx_shaped_bps_frames, c.rx_dropped_police);
    let own = front_dropped.expect("netfront publishes its drops");
    assert!(own > 0);
    let text = wait_for_lines(&dir, &expected_lines(&c, own));
    assert!(
        text.starts_with(&format!(
            "eth0: netfront pid {}, connected, credit area v2\n",
            std::process::id()
        )),
        "{text}"
    );
    // --json: the same figures, for scripts.
    let (json, _) = netfront_stats(&dir, true);
    for field in [
        format!(
            "\"rx\":{{\"bps_frames\":{},\"bps_bytes\":{}",
            c.rx_dropped_police, c.rx_police_wire_bytes
        ),
        format!("\"front_tx_dropped\":{{\"frames\":{own},"),
        "\"rx_budget\":{\"bytes_per_sec\":250000,".to_string(),
    ] {
        assert!(json.contains(&field), "{field} not in {json}");
    }
    // The writer (this process) runs: no "not running" warning.
    let (_, stderr) = netfront_stats(&dir, false);
    assert!(stderr.is_empty(), "{stderr}");
    g.finish().unwrap().value.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_frontend_that_does_not_enforce_sees_netback_shape_its_tx() {
    let host = LocalHost::new();
    let dir = stats_dir("greedy");
    let (_nb, g, c, _) = shaped_run(&host, &dir, false);
    // netfront sent everything: netback's TX backstop shaped it, and tells it so.
    // (Frames refused and held count as well as those dropped.)
    assert!(c.tx_dropped_police > 0, "{c:?}");
    assert!(c.tx_shaped_bps_frames >= c.tx_dropped_police, "{c:?}");
    let text = wait_for_lines(&dir, &expected_lines(&c, 0));
    let r = StatsReport::read(&dir.join("eth0.stats")).unwrap();
    assert_eq!(r.shaped.unwrap(), c.shaped(), "{text}");
    g.finish().unwrap().value.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stats_for_an_interface_netfront_does_not_serve_is_a_clear_error() {
    let dir = stats_dir("none");
    let out = run_stats(&dir, "eth7", false);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("eth7.stats") && err.contains("is netfront running"),
        "{err}"
    );
    // A truncated file (a disk full while writing it): an error naming the problem.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("eth7.stats"), "format 1\niface eth7\n").unwrap();
    let out = run_stats(&dir, "eth7", false);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
