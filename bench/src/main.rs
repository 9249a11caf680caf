//! `bench paper --out <dir>`: reproduces the DBA-VM paper's experiments on the local
//! platform (no Xen, no root). See `docs/reproduction.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::paper::{paper, PaperOptions};
use bench::scenario::{Policy, Scenario};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "DBA-VM paper reproduction on the local platform"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario × policy of the paper, plus the period sweep; writes report.json,
    /// report.md and plots into --out.
    Paper {
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Short runs (every scenario and policy kept).
        #[arg(long)]
        quick: bool,
        /// EMULATION: the most TX packets/s the backend processes, all vifs together
        /// (e.g. 190000 for the paper's memory-bound test bed).
        #[arg(long, value_name = "N")]
        backend_pps_limit: Option<u64>,
        /// Divide every rate (NIC, offered load, SLAs, caps) by this, for slow machines.
        #[arg(long, default_value_t = 1)]
        scale: u64,
        /// Comma-separated scenarios: 1500, mixed, spare (the default: all three), and the
        /// receive scenarios rx-1500, rx-mixed (run only when named; policies native, tc
        /// and dba-drop).
        #[arg(long, value_delimiter = ',')]
        scenarios: Option<Vec<String>>,
        /// Comma-separated policies (native, netback-rate, tc, dba-drop, dba-hold).
        #[arg(long, value_delimiter = ',')]
        policies: Option<Vec<String>>,
        /// Allocator readjustment period of the comparison runs, ms.
        #[arg(long, default_value_t = 20)]
        period_ms: u64,
        /// Periods of the sweep, ms, comma-separated ("none" to skip it).
        #[arg(long, value_delimiter = ',')]
        sweep_ms: Option<Vec<String>>,
        /// Duration of each comparison run, s (default 4, or 1 with --quick).
        #[arg(long)]
        duration_s: Option<f64>,
        /// The allocator's link capacity B_p, Mb/s of frame bytes (default: what the NIC
        /// carries with 1500-byte frames, 984.25).
        #[arg(long)]
        link_capacity_mbps: Option<f64>,
        /// Traffic: `mem` (in-process generators, NIC model; default) or `netns` (guests are
        /// network namespaces with kernel stacks and iperf3; needs root).
        #[arg(long, default_value = "mem")]
        traffic: String,
        /// NIC transmit queue, frames (Linux txqueuelen default: 1000).
        #[arg(long, default_value_t = 1000)]
        nic_queue_frames: usize,
        /// Do not tell the allocator the NIC queue's size (by default its bursts are
        /// sized to fit half of it: docs/allocator.md §6).
        #[arg(long)]
        no_link_buffer: bool,
        /// netback's backstops keep the tokens of its worker's waits for a CPU (off by
        /// default: after a long wait on a full link the NIC may then drop frames
        /// already copied; docs/protocol.md §2.4 "Stalls").
        #[arg(long)]
        credit_cpu_waits: bool,
        /// Nice value of the guest threads (0: same as netback). The paper's dom0 had
        /// cores of its own; by default the guests yield to the backend thread.
        #[arg(long, default_value_t = bench::paper::DEFAULT_GUEST_NICE, allow_negative_numbers = true)]
        guest_nice: i32,
    },
    /// Every attack class of docs/security.md for a few seconds each, against one
    /// netback serving an honest guest too; a table of what each cost (Markdown on
    /// stdout, JSON into --json).
    Hostile {
        /// Seconds per attack.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Comma-separated attacks (default: all; `none` is the baseline).
        #[arg(long, value_delimiter = ',')]
        attacks: Option<Vec<String>>,
        /// Write the reports as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run the whole list this many times (leaks show as growth between rounds;
        /// the table is the last round's).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Exit non-zero when a bound is broken (an honest frame lost, netback busy
        /// under a stall attack, mappings or descriptors leaked).
        #[arg(long)]
        check: bool,
    },
    /// The Xen test bed's traffic tools (`xen-build/scenarios/bench`): prints one line
    /// `bedperf <what> key=value ...`.
    Bedperf {
        #[command(subcommand)]
        tool: Bedperf,
    },
}

#[derive(Subcommand)]
enum Bedperf {
    /// Accept one TCP connection and read it to its end (receiver goodput).
    TcpRecv {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
        /// Seconds to wait for the connection.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
    },
    /// Connect and write for --secs, then wait for the receiver to close.
    TcpSend {
        /// ADDRESS:PORT of the receiver.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Seconds of sending.
        #[arg(long)]
        secs: f64,
        /// Seconds to keep trying to connect.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// Send UDP datagrams making --frame-byte frames for --secs, as fast as possible.
    UdpSend {
        /// ADDRESS:PORT of the counter.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Frame length (destination MAC to end of payload).
        #[arg(long, default_value_t = 64)]
        frame: usize,
        /// Seconds of sending.
        #[arg(long)]
        secs: f64,
    },
    /// Count the UDP datagrams arriving on --port until none came for 1 s.
    UdpCount {
        /// Port to count on.
        #[arg(long)]
        port: u16,
        /// Seconds to wait for the first datagram.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
        /// Stop counting this long after the first datagram.
        #[arg(long, default_value_t = 60)]
        max_s: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Hostile {
            seconds,
            attacks,
            json,
            rounds,
            check,
        } => hostile_main(seconds, attacks.unwrap_or_default(), rounds, json, check),
        Cmd::Bedperf { tool } => bedperf_main(tool),
        paper => paper_main(paper),
    }
}

fn bedperf_main(tool: Bedperf) -> Result<(), String> {
    use bench::bedperf::{tcp_recv, tcp_send, udp_count, udp_send};
    let s = Duration::from_secs;
    let (what, t) = match tool {
        Bedperf::TcpRecv { port, wait_s } => ("tcp-recv", tcp_recv(port, s(wait_s))),
        Bedperf::TcpSend { to, secs, wait_s } => ("tcp-send", tcp_send(to, secs, s(wait_s))),
        Bedperf::UdpSend { to, frame, secs } => ("udp-send", udp_send(to, frame, secs)),
        Bedperf::UdpCount {
            port,
            wait_s,
            max_s,
        } => ("udp-count", udp_count(port, s(wait_s), s(1), s(max_s))),
    };
    let t = t.map_err(|e| format!("bedperf {what}: {e}"))?;
    println!("{}", t.line(what));
    Ok(())
}

fn hostile_main(
    seconds: f64,
    only: Vec<String>,
    rounds: u32,
    json: Option<PathBuf>,
    check: bool,
) -> Result<(), String> {
    if !(1..=100).contains(&rounds) {
        return Err(format!("--rounds {rounds}: must be 1..=100"));
    }
    use bench::hostile;
    if !(0.1..=600.0).contains(&seconds) {
        return Err(format!("--seconds {seconds}: must be 0.1..=600"));
    }
    if let Some(bad) = only
        .iter()
        .find(|n| !hostile::ATTACKS.iter().any(|a| a.name == n.as_str()))
    {
        let names: Vec<_> = hostile::ATTACKS.iter().map(|a| a.name).collect();
        return Err(format!("--attacks {bad}: not one of {}", names.join(", ")));
    }
    let opts = hostile::HostileOptions {
        window: Duration::from_secs_f64(seconds),
        only,
        rounds,
    };
    let run = hostile::run(&opts);
    print!("{}", hostile::markdown(&run.reports));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&run).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let v = hostile::violations(&run);
    for x in &v {
        eprintln!("bench hostile: bound broken: {x}");
    }
    if check && !v.is_empty() {
        return Err(format!("{} bound(s) broken", v.len()));
    }
    Ok(())
}

fn paper_main(cmd: Cmd) -> Result<(), String> {
    let Cmd::Paper {
        out,
        quick,
        backend_pps_limit,
        scale,
        scenarios,
        policies,
        period_ms,
        sweep_ms,
        duration_s,
        nic_queue_frames,
        link_capacity_mbps,
        traffic,
        no_link_buffer,
        credit_cpu_waits,
        guest_nice,
    } = cmd
    else {
        return Err("not the paper command".into());
    };
    if !(1..=1_000_000).contains(&nic_queue_frames) {
        return Err(format!(
            "--nic-queue-frames {nic_queue_frames}: must be 1..=1000000"
        ));
    }
    let mut o = PaperOptions::new(quick);
    if scale == 0 || scale > 10_000 {
        return Err(format!("--scale {scale}: must be 1..=10000"));
    }
    o.scale = scale;
    if backend_pps_limit == Some(0) {
        return Err("--backend-pps-limit 0 would stop all traffic".into());
    }
    o.backend_pps_limit = backend_pps_limit;
    if let Some(s) = scenarios {
        o.scenarios = s
            .iter()
            .map(|x| Scenario::parse(x))
            .collect::<Result<_, _>>()?;
    }
    if let Some(p) = policies {
        o.policies = p
            .iter()
            .map(|x| Policy::parse(x))
            .collect::<Result<_, _>>()?;
    }
    if period_ms == 0 || period_ms > 10_000 {
        return Err(format!("--period-ms {period_ms}: must be 1..=10000"));
    }
    o.period = Duration::from_millis(period_ms);
    if let Some(s) = sweep_ms {
        o.sweep = if s.len() == 1 && s[0] == "none" {
            Vec::new()
        } else {
            s.iter()
                .map(|x| match x.parse::<u64>() {
                    Ok(v) if (1..=10_000).contains(&v) => Ok(Duration::from_millis(v)),
                    _ => Err(format!("--sweep-ms {x:?}: expected 1..=10000 or none")),
                })
                .collect::<Result<_, _>>()?
        };
    }
    if let Some(d) = duration_s {
        if !(0.1..=600.0).contains(&d) {
            return Err(format!("--duration-s {d}: must be 0.1..=600"));
        }
        o.duration = Some(Duration::from_secs_f64(d));
    }
    o.nic_queue_frames = nic_queue_frames;
    o.link_buffer = !no_link_buffer;
    o.credit_cpu_waits = credit_cpu_waits;
    if !(-20..=19).contains(&guest_nice) {
        return Err(format!("--guest-nice {guest_nice}: must be -20..=19"));
    }
    o.guest_nice = guest_nice;
    o.netns = match traffic.as_str() {
        "mem" => false,
        "netns" => true,
        t => return Err(format!("--traffic {t:?}: expected mem or netns")),
    };
    if let Some(c) = link_capacity_mbps {
        if !(1.0..=100_000.0).contains(&c) {
            return Err(format!("--link-capacity-mbps {c}: must be 1..=100000"));
        }
        o.allocator_capacity_bps = Some((c * 1e6) as u64);
    }

    let r = paper(&o, &out)?;
    let bad: Vec<_> = r.checks.iter().filter(|c| !c.holds).collect();
    eprintln!(
        "done: {} runs, {} sweep points; {} of {} checks hold; see {}/report.md",
        r.runs.len(),
        r.period_sweep.len(),
        r.checks.len() - bad.len(),
        r.checks.len(),
        out.display()
    );
    for c in bad {
        eprintln!("  does not hold: {} ({})", c.what, c.measured);
    }
    Ok(())
}
