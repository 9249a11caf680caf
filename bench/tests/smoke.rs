//! A short run of every policy at 1/10 of the paper's rates (100 Mb/s NIC): the whole
//! chain works (three netfronts, netback, allocator, NIC model, report), and each policy
//! acts where it should. Only structural and rate-independent assertions: a slow CI
//! machine can change the numbers, not these facts.

use std::time::Duration;

use bench::report::run_report;
use bench::run::run;
use bench::scenario::{Policy, RunSpec, Scenario};

fn spec(scenario: Scenario, policy: Policy) -> RunSpec {
    RunSpec {
        scenario,
        policy,
        period: policy.is_dba().then_some(Duration::from_millis(20)),
        duration: Duration::from_millis(400),
        warmup: Duration::from_millis(100),
        scale: 10,
        backend_pps_limit: None,
        nic_queue_frames: 1000,
        guest_queue_frames: 1000,
        allocator_capacity_bps: None,
        link_buffer: true,
        guest_nice: 0,
        credit_cpu_waits: false,
    }
}

#[test]
fn every_policy_runs_and_acts_where_it_should() {
    for policy in Policy::ALL {
        let o = run(&spec(Scenario::S1500, policy), &mut |_| {})
            .unwrap_or_else(|e| panic!("{policy}: {e}"));
        let r = run_report(&o);
        assert_eq!(r.vms.len(), 3);
        for (i, v) in r.vms.iter().enumerate() {
            let sink = &o.nic.sinks[i];
            let g = &o.guests[i];
            assert!(sink.frames > 0, "{policy}: {} delivered nothing", v.name);
            assert!(
                sink.frames <= g.offered_frames,
                "{policy}: more delivered than offered"
            );
            assert!(
                v.ring_bytes_copied as u64 >= sink.bytes,
                "{policy}: delivered bytes that were never copied"
            );
            assert_eq!(sink.foreign, 0, "{policy}: frames without a bench header");
            assert!(v.delay_p50_us > 0.0 && v.delay_p99_us >= v.delay_p50_us);
        }
        // Every guest offers 100 Mb/s, 6× VM1's SLA: something must limit VM1.
        let v1 = &r.vms[0];
        match policy {
            Policy::Native => {
                assert_eq!(
                    v1.dropped_front + v1.dropped_back,
                    0,
                    "native shapes nothing"
                );
            }
            Policy::Tc => {
                assert!(v1.dropped_back > 0, "tc policed nothing");
                assert!(v1.copied_then_dropped_bytes > 0, "tc drops after the copy");
            }
            Policy::NetbackRate | Policy::DbaHold => {
                if policy == Policy::NetbackRate {
                    assert_eq!(v1.dropped_back, 0, "netback-rate holds, it does not drop");
                } else {
                    // The backstop may catch a few frames around budget changes (seen at
                    // 1/100 scale with 2-frame bursts: the frontend's hold and the backstop's bucket differ
                    // for a moment); never a significant part of the traffic.
                    let offered = o.guests[0].offered_frames as i64;
                    assert!(
                        v1.dropped_back * 20 <= offered,
                        "dba-hold: backstop dropped {}",
                        v1.dropped_back
                    );
                }
                let backlog = o.guests[0].left_in_queue + v1.dropped_front as u64;
                assert!(backlog > 0, "{policy}: nothing was held back in the guest");
            }
            Policy::DbaDrop => {
                assert!(
                    v1.dropped_front > 0,
                    "dba-drop: the frontend dropped nothing"
                );
                // As for dba-hold: a few backstop drops around budget changes at most.
                let offered = o.guests[0].offered_frames as i64;
                assert!(
                    v1.dropped_back * 20 <= offered,
                    "dba-drop: backstop dropped {}",
                    v1.dropped_back
                );
            }
        }
        if policy.is_dba() {
            assert!(r.allocator_rounds > 0, "{policy}: the allocator never ran");
            assert!(r.vms.iter().all(|v| v.budget_bps.is_some()));
        }
    }
}

#[test]
fn mixed_and_spare_scenarios_run() {
    for sc in [Scenario::Mixed, Scenario::Spare] {
        let o =
            run(&spec(sc, Policy::DbaDrop), &mut |_| {}).unwrap_or_else(|e| panic!("{sc}: {e}"));
        let r = run_report(&o);
        assert_eq!(
            r.vms[0].packet_bytes,
            if sc == Scenario::Mixed { 64 } else { 1500 }
        );
        assert_eq!(r.spare.is_some(), sc == Scenario::Spare);
        assert!(o.nic.sinks.iter().all(|s| s.frames > 0));
    }
}

#[test]
fn paper_command_writes_report_and_plots() {
    let dir = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    let mut o = bench::paper::PaperOptions::new(true);
    o.scale = 100;
    o.scenarios = vec![Scenario::S1500];
    o.policies = vec![Policy::DbaDrop];
    o.sweep = vec![Duration::from_millis(20)];
    o.duration = Some(Duration::from_millis(300));
    let r = bench::paper::paper(&o, &dir).expect("paper");
    assert_eq!(r.runs.len(), 1);
    assert_eq!(r.period_sweep.len(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["runs"][0]["policy"], "dba-drop");
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("Scenario `1500`"));
    let font = std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists();
    if font {
        for f in [
            "throughput_mbps_1500.svg",
            "throughput_mbps_1500.png",
            "period_sweep.png",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
    } else {
        eprintln!("skipping plot checks: DejaVu Sans not installed (fonts-dejavu-core)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--traffic netns`: kernel stacks and iperf3 in namespaces. Needs root, /dev/net/tun,
/// `tc` and `iperf3` (CI has them); elsewhere it prints why it is skipped.
#[test]
fn netns_traffic_runs_or_says_why() {
    if let Some(why) = bench::kernel_traffic::unavailable() {
        eprintln!("skipping netns_traffic_runs_or_says_why: {why}");
        return;
    }
    let mut s = spec(Scenario::S1500, Policy::DbaDrop);
    s.duration = Duration::from_secs(1);
    let o = bench::kernel_traffic::run_netns(&s).expect("netns run");
    assert_eq!(o.vms.len(), 3);
    for v in &o.vms {
        assert!(v.delivered_kpps > 0.0, "{} delivered nothing", v.name);
        assert!(
            v.ring_bytes_copied > 0,
            "{}: nothing crossed the ring",
            v.name
        );
        // Every frame iperf3 sent is accounted for on the guest's side: dropped by its
        // kernel before netfront, admitted to the ring, or dropped by netfront (plus a
        // few frames of the guest's own: ARP, iperf3's control connection).
        let n = v.netns.as_ref().expect("netns accounting");
        let seen = n.dropped_guest_kernel + n.admitted_netfront + n.dropped_netfront;
        assert!(
            n.offered.abs_diff(seen) <= 200,
            "{}: offered {} but kernel drops + admitted + netfront drops = {seen}: {n:?}",
            v.name,
            n.offered
        );
        assert!(n.delivered <= n.admitted_netfront, "{}: {n:?}", v.name);
        // Each VM offers the whole line rate, above its budget: some is lost.
        assert!(n.lost > 0, "{}: {n:?}", v.name);
        assert!(n.cpu_iperf3.total_s() > 0.0, "{}: {n:?}", v.name);
    }
    // VM1 offers 100 Mb/s against a 15 Mb/s budget: netfront drops the excess.
    let vm1 = o.vms[0].netns.as_ref().unwrap();
    assert!(vm1.dropped_netfront > 0, "{vm1:?}");
    assert!(o.backend_cpu_s > 0.0);
}
