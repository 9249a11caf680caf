//! The operator CLI as a process: `netback sla set/show/rm` against a local hypervisor
//! (in this process, listening on a socket), `netback top --once` against a metrics
//! endpoint, SIGHUP reloading `serve --sla`, and `serve` exiting when its xenstore
//! connection is lost (the last two need root and /dev/net/tun for the TAP of the vif:
//! they run in CI, skip with the reason elsewhere).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::meter::VifCounters;
use netback::metrics::{name, MetricsServer, Sampler, SnapshotCell};
use netback::{VifId, VifStatus};
use netback_ops::scrape;
use testbed::add_vif;
use xen_ids::DomId;
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

const BIN: &str = env!("CARGO_BIN_EXE_netback");
const DIR: &str = "/local/domain/0/backend/vif/1/0";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("netback-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local host whose hypervisor listens on `<dir>/hv.sock`, with vif1.0 created.
fn host_with_socket(dir: &Path) -> (LocalHost, PathBuf) {
    let host = LocalHost::new();
    let sock = dir.join("hv.sock");
    host.hypervisor.listen(&sock).expect("listen");
    add_vif(&host, DomId(1), 0).expect("vif");
    (host, sock)
}

fn netback(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netback")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn key(host: &LocalHost, k: &str) -> Option<String> {
    let xs = host.domain(DomId(0)).unwrap().xenstore;
    xs.try_read(XsTx::NONE, &format!("{DIR}/{k}"))
        .unwrap()
        .map(|v| text(&v))
}

#[test]
fn vif_add_writes_the_toolstack_keys_and_refuses_bad_ones() {
    let scratch = Scratch::new("vifadd");
    let (host, sock) = host_with_socket(&scratch.0);
    let sock = sock.to_str().unwrap();
    let dir = "/local/domain/0/backend/vif/4/0";
    let read = |k: &str| {
        let xs = host.domain(DomId(0)).unwrap().xenstore;
        xs.try_read(XsTx::NONE, &format!("{dir}/{k}"))
            .unwrap()
            .map(|v| text(&v))
    };
    for (flag, value) in [
        ("--rate", "6250,0"),
        ("--mtu", "67"),
        ("--vifname", "eth/0"),
        ("--ip", "10.0.0.256"),
        ("--mac", "01:00:5e:00:00:01"),
    ] {
        let o = netback(&[
            "vif-add",
            "--hv-socket",
            sock,
            "--frontend",
            "4",
            flag,
            value,
        ]);
        assert!(!o.status.success(), "{flag} {value} accepted");
        assert!(
            text(&o.stderr).starts_with("netback: backend key"),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(
            read("frontend"),
            None,
            "{flag} {value}: something was written"
        );
    }
    let o = netback(&[
        "vif-add",
        "--hv-socket",
        sock,
        "--frontend",
        "4",
        "--rate",
        "6250,50000",
        "--mtu",
        "1400",
        "--vifname",
        "web0",
        "--ip",
        "10.0.0.2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read("rate").as_deref(), Some("6250,50000"));
    assert_eq!(read("mtu").as_deref(), Some("1400"));
    assert_eq!(read("vifname").as_deref(), Some("web0"));
    assert_eq!(read("ip").as_deref(), Some("10.0.0.2"));
}

#[test]
fn sla_set_show_rm() {
    let scratch = Scratch::new("sla");
    let (host, sock) = host_with_socket(&scratch.0);
    let sock = sock.to_str().unwrap();
    let base = ["--hv-socket", sock, "--frontend", "1"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        v.extend(extra.iter().take(2).map(|s| s.to_string()));
        v.extend(base.iter().map(|s| s.to_string()));
        v.extend(extra.iter().skip(2).map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = with(extra);
        netback(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let o = run(&[
        "sla",
        "set",
        "--priority",
        "1",
        "--min-bps",
        "150M",
        "--max-bps",
        "150M",
        "--vm-pps",
        "20k",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("{DIR}/dba-min-bps = 150M")));
    assert_eq!(key(&host, "dba-priority").as_deref(), Some("1"));
    assert_eq!(key(&host, "dba-min-bps").as_deref(), Some("150M"));
    assert_eq!(key(&host, "dba-max-bps").as_deref(), Some("150M"));
    assert_eq!(key(&host, "dba-vm-pps").as_deref(), Some("20k"));

    // Bad values: a clear error naming the field, nothing written.
    for (args, field) in [
        (&["sla", "set", "--min-bps", "lots"][..], "dba-min-bps"),
        (&["sla", "set", "--priority", "9"][..], "dba-priority"),
        (&["sla", "set", "--vm-pps", "-5"][..], "dba-vm-pps"),
        // Valid alone, but below the minimum already in xenstore.
        (&["sla", "set", "--max-bps", "100M"][..], "dba-min-bps"),
        (
            &["sla", "set", "--min-bps", "1k", "--max-bps", "20T"][..],
            "dba-max-bps",
        ),
    ] {
        let o = run(args);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(
            err.contains(&format!("`{field}`")) && err.contains("nothing written"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(key(&host, "dba-min-bps").as_deref(), Some("150M"));
    assert_eq!(key(&host, "dba-max-bps").as_deref(), Some("150M"));
    assert_eq!(key(&host, "dba-priority").as_deref(), Some("1"));

    // No value at all, and a vif that does not exist.
    let o = run(&["sla", "set"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("at least one of"));
    let o = netback(&[
        "sla",
        "set",
        "--hv-socket",
        sock,
        "--frontend",
        "7",
        "--min-bps",
        "1M",
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no vif7.0"), "{}", text(&o.stderr));
    let xs = host.domain(DomId(0)).unwrap().xenstore;
    assert!(xs
        .try_read(XsTx::NONE, "/local/domain/0/backend/vif/7")
        .unwrap()
        .is_none());

    // The VM cap is per VM: a second vif of domain 1 without the same cap is flagged.
    add_vif(&host, DomId(1), 1).expect("vif");
    let o = run(&["sla", "set", "--vm-pps", "20k"]);
    assert!(o.status.success());
    assert!(
        text(&o.stderr).contains("vif1.1 has dba-vm-pps = (absent)"),
        "{}",
        text(&o.stderr)
    );
    let o = netback(&[
        "sla",
        "set",
        "--hv-socket",
        sock,
        "--frontend",
        "1",
        "--devid",
        "1",
        "--vm-pps",
        "20000",
    ]);
    assert!(o.status.success());
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));

    // Show: the keys, no daemon to ask for budgets.
    let o = netback(&["sla", "show", "--hv-socket", sock, "--metrics", "none"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("vif1.0"), "{out}");
    assert!(out.contains("dba-vm-pps    20k"), "{out}");
    // A daemon that does not answer: the keys, and why there is no live budget.
    let o = netback(&[
        "sla",
        "show",
        "--hv-socket",
        sock,
        "--frontend",
        "1",
        "--metrics",
        "http://127.0.0.1:1/metrics",
    ]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("live budgets unavailable"));

    // A key changed behind our back to garbage: show flags it.
    xs.write(XsTx::NONE, &format!("{DIR}/dba-max-bps"), b"oops")
        .unwrap();
    let o = netback(&["sla", "show", "--hv-socket", sock, "--metrics", "none"]);
    assert!(text(&o.stdout).contains("INVALID"), "{}", text(&o.stdout));
    // set refuses to build on it, naming that key.
    let o = run(&["sla", "set", "--priority", "2"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("`dba-max-bps`"));

    // rm one key, then the rest.
    let o = run(&["sla", "rm", "--field", "max-bps"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(key(&host, "dba-max-bps"), None);
    assert_eq!(key(&host, "dba-min-bps").as_deref(), Some("150M"));
    let o = run(&["sla", "rm"]);
    assert!(o.status.success());
    for k in ["dba-priority", "dba-min-bps", "dba-max-bps", "dba-vm-pps"] {
        assert_eq!(key(&host, k), None, "{k}");
    }
    // The vif itself is untouched.
    assert!(key(&host, "frontend-id").is_some());
    let o = run(&["sla", "rm"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("nothing removed"));
}

fn status(domid: u16, tx_bytes: u64) -> VifStatus {
    VifStatus {
        id: VifId {
            domid: DomId(domid),
            devid: 0,
        },
        state: XenbusState::Connected,
        connected: true,
        credits: true,
        counters: VifCounters {
            tx_bytes,
            tx_packets: tx_bytes / 1000,
            // Frames without GSO: each is one packet on the wire.
            tx_wire_bytes: tx_bytes,
            tx_wire_packets: tx_bytes / 1000,
            tx_dropped_police: 3,
            rx_dropped_oversize: 2,
            ..Default::default()
        },
        budget: Some(allocator::Budget::with_bursts(
            150_000_000,
            Some(20_000),
            Duration::from_millis(20),
        )),
        rx_budget: None,
        front_dropped_packets: Some(11),
        rate: None,
        queues: Vec::new(),
    }
}

/// An endpoint serving two snapshots one second apart: vif1.0 sent 18.75 MB in it
/// (150 Mb/s, 18.75 Kp/s).
fn endpoint() -> MetricsServer {
    let cell = SnapshotCell::new();
    let mut sm = Sampler::new(Duration::from_secs(1));
    sm.sample(0, vec![status(1, 0)], |_| None, None);
    let snap = sm.sample(
        1_000_000_000,
        vec![status(1, 18_750_000)],
        |_| {
            Some(
                allocator::VifSla::new(
                    allocator::sla::Subject::Defaults,
                    allocator::Priority::parse("1").unwrap(),
                    150_000_000,
                    Some(150_000_000),
                )
                .unwrap(),
            )
        },
        None,
    );
    cell.publish(snap).unwrap();
    MetricsServer::start("127.0.0.1:0", cell).unwrap()
}

/// The columns of the first line of `out` that starts with `start`.
fn first_row<'a>(out: &'a str, start: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start} row in\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn top_once_prints_the_table() {
    let server = endpoint();
    let url = format!("http://{}/metrics", server.local_addr());
    let o = netback(&["top", "--once", "--metrics", &url]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains('\x1b'), "--once prints no control codes");
    let cols = first_row(&out, "vif1.0");
    assert_eq!(
        cols,
        ["vif1.0", "yes", "150.00", "18.75", "0.00", "0.00", "150.00", "20.00", "3", "2", "11"],
        "{out}"
    );
    assert!(out.contains("allocator: off"));

    // Nothing listening: a clear error, exit status 1.
    let o = netback(&["top", "--once", "--metrics", "http://127.0.0.1:1/metrics"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("127.0.0.1:1"),
        "{}",
        text(&o.stderr)
    );
    let o = netback(&["top", "--once", "--metrics", "ftp://x"]);
    assert!(text(&o.stderr).contains("bad metrics URL"));
    let o = netback(&["top", "--interval", "fast"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("interval"));
}

#[test]
fn status_needs_the_endpoint_and_lists_each_vif() {
    let server = endpoint();
    let url = format!("http://{}/metrics", server.local_addr());
    let o = netback(&["status", "--metrics", &url]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let cols = first_row(&out, "vif1.0");
    // 18.75 MB sent in 18750 frames (the endpoint's second snapshot).
    assert_eq!(
        cols,
        ["vif1.0", "all", "-", "yes", "18750", "18750000", "0", "0"],
        "{out}"
    );
    let o = netback(&["status", "--json", "--metrics", &url]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("\"vif\":\"vif1.0\",\"connected\":true,\"tx_packets\":18750,"),
        "{}",
        text(&o.stdout)
    );

    // Nothing listening: a clear error, exit status 1, nothing on stdout.
    let o = netback(&["status", "--metrics", "http://127.0.0.1:1/metrics"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).contains("127.0.0.1:1"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn sla_show_reports_the_live_budget() {
    let scratch = Scratch::new("show");
    let (_host, sock) = host_with_socket(&scratch.0);
    let server = endpoint();
    let url = format!("http://{}/metrics", server.local_addr());
    let o = netback(&[
        "sla",
        "show",
        "--hv-socket",
        sock.to_str().unwrap(),
        "--frontend",
        "1",
        "--devid",
        "0",
        "--metrics",
        &url,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("no dba-* keys"), "{out}");
    assert!(
        out.contains("live budget: 150M b/s, 20k p/s (burst 375000 B, 400 packets)"),
        "{out}"
    );
    assert!(
        out.contains("SLA in force: class 1, min 150M b/s, max 150M b/s"),
        "{out}"
    );
}

/// `netback serve` with `args` (log level info). Its stderr is echoed and sent line by
/// line to the receiver; the thread returns every line once the process closes it.
fn spawn_serve(
    args: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<Vec<String>>,
) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn netback serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[netback] {l}");
            let _ = tx.send(l.clone());
            all.push(l);
        }
        all
    });
    (child, lines, reader)
}

/// Deletes interface `.0` when dropped: `netback serve`'s TAPs are persistent, they
/// outlive the process (docs/operations.md, "Restarting `netback serve`").
struct DelLink(String);

impl Drop for DelLink {
    fn drop(&mut self) {
        let _ = netport::netns::ip(&["link", "del", &self.0]);
    }
}

/// Waits for a stderr line containing `what`; returns it.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("netback never logged {what:?}"),
        }
    }
}

fn sla_file(min: &str) -> String {
    format!(
        "[link]\ncapacity-bps = \"1G\"\n[[vif]]\ndomid = 1\ndevid = 0\npriority = 2\nmin-bps = \"{min}\"\n"
    )
}

#[test]
fn sighup_reloads_the_sla_file() {
    if netport::netns::skip_unless_root_with_tun("sighup_reloads_the_sla_file") {
        return;
    }
    let scratch = Scratch::new("hup");
    let (_host, sock) = host_with_socket(&scratch.0);
    let file = scratch.0.join("sla.toml");
    std::fs::write(&file, sla_file("10M")).unwrap();
    let tap = format!("nbh{}", std::process::id() % 100_000);
    let _tap = DelLink(tap.clone());
    let (mut child, lines, _) = spawn_serve(&[
        "--hv-socket",
        sock.to_str().unwrap(),
        "--sla",
        file.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--metrics-interval",
        "100ms",
        "--tap-name",
        &tap,
    ]);
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let l = wait_line(&lines, "metrics on http://");
        let url = l[l.find("http://").unwrap()..].trim().to_string();
        let min = || {
            scrape(&url, Duration::from_secs(2)).ok().and_then(|s| {
                s.iter()
                    .find(|x| x.name == name::VIF_SLA_MIN_BPS && x.label("vif") == Some("vif1.0"))
                    .map(|x| x.value)
            })
        };
        let wait_min = |want: f64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while min() != Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "min-bps never became {want}: {:?}",
                    min()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        wait_min(10e6);

        std::fs::write(&file, sla_file("20M")).unwrap();
        signal("-HUP");
        wait_line(&lines, "reloaded SLAs");
        wait_min(20e6);

        // A bad file: logged with the file and field, the SLAs in force stay.
        std::fs::write(&file, sla_file("-3M")).unwrap();
        signal("-HUP");
        let l = wait_line(&lines, "keeping the SLAs in force");
        assert!(
            l.contains(file.to_str().unwrap()) && l.contains("min-bps"),
            "{l}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(min(), Some(20e6));
    }));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert!(status.success(), "netback exited with {status}");
}

/// `netback serve` whose xenstore connection is closed under it (xenstored shut down)
/// exits at once, non-zero, saying why, for its supervisor to restart it: it does not
/// spin on the dead connection nor log a warning per loop iteration.
#[test]
fn serve_exits_non_zero_when_its_xenstore_connection_is_lost() {
    if netport::netns::skip_unless_root_with_tun(
        "serve_exits_non_zero_when_its_xenstore_connection_is_lost",
    ) {
        return;
    }
    let scratch = Scratch::new("xslost");
    let (host, sock) = host_with_socket(&scratch.0);
    let tap = format!("nbx{}", std::process::id() % 100_000);
    let _tap = DelLink(tap.clone());
    let (mut child, lines, reader) =
        spawn_serve(&["--hv-socket", sock.to_str().unwrap(), "--tap-name", &tap]);
    wait_line(&lines, "probed, waiting for the frontend");
    host.xenstored.shutdown();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("netback serve kept running without xenstore");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let all = reader.join().unwrap();
    assert!(!status.success(), "netback exited with {status}");
    let last = all.last().cloned().unwrap_or_default();
    assert!(
        last.contains("xenstore connection lost"),
        "last line: {last:?}"
    );
    let warnings = all.iter().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 5, "{warnings} warnings: {all:?}");
}

/// `netback serve` runs one data-path worker per CPU it may run on, or `--workers N`;
/// 0 is refused.
#[test]
fn serve_runs_a_worker_per_usable_cpu_unless_told() {
    let refused = netback(&["serve", "--workers", "0"]);
    assert!(!refused.status.success(), "--workers 0 accepted");
    let scratch = Scratch::new("workers");
    let (_host, sock) = host_with_socket(&scratch.0);
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (args, want) in [(vec![], cpus), (vec!["--workers", "3"], 3)] {
        let mut all = vec!["--hv-socket", sock.to_str().unwrap()];
        all.extend(args);
        let (mut child, lines, reader) = spawn_serve(&all);
        let line = wait_line(&lines, "data-path workers");
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        assert!(
            line.contains(&format!("netback: {want} data-path workers")),
            "{line}"
        );
    }
}

/// `netback serve` offers each vif as many queues as the CPUs it may run on (as Linux's
/// netback offers the driver domain's CPUs), or `--max-queues N`; 0 is refused. Read
/// where a frontend reads it: the vif's `multi-queue-max-queues`.
#[test]
fn serve_offers_a_queue_per_usable_cpu_unless_told() {
    if netport::netns::skip_unless_root_with_tun("serve_offers_a_queue_per_usable_cpu_unless_told")
    {
        return;
    }
    let refused = netback(&["serve", "--max-queues", "0"]);
    assert!(!refused.status.success(), "--max-queues 0 accepted");
    let scratch = Scratch::new("queues");
    let cpus = std::thread::available_parallelism().unwrap().get();
    let tap = format!("nbq{}", std::process::id() % 100_000);
    let _tap = DelLink(tap.clone());
    let journals = scratch.0.join("journals");
    for (args, want) in [(vec![], cpus), (vec!["--max-queues", "3"], 3)] {
        let (host, sock) = host_with_socket(&scratch.0);
        let mut all = vec![
            "--hv-socket",
            sock.to_str().unwrap(),
            "--tap-name",
            &tap,
            "--journal-dir",
            journals.to_str().unwrap(),
        ];
        all.extend(args);
        let (mut child, lines, reader) = spawn_serve(&all);
        wait_line(&lines, "probed");
        let offered = key(&host, "multi-queue-max-queues");
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        let _ = std::fs::remove_file(&sock);
        // The persistent TAP goes: the next run creates it for its own offer.
        let _ = netport::netns::ip(&["link", "del", &tap]);
        assert_eq!(offered, Some(want.to_string()), "args {all:?}");
    }
}
