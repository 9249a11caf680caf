//! The receive scenarios (issue 15) at 1/100 of the paper's rates (a 10 Mb/s NIC model):
//! three guests receive line rate each from the NIC model's senders, through netback,
//! under native, tc (a policer after the copy into the guest) and dba-drop (netback's RX
//! budget, before the copy). The report's receive checks must hold, and each policy acts
//! where it should, seen from the guest and from netback's counters.
//!
//! VM2's minimum is a rate: it holds only if the machine lets netback and the NIC
//! model's sender run. On this shared 2-core machine the whole process was seen
//! descheduled for 600 ms in a 2 s run; a token bucket cannot give back what a stall
//! longer than its burst took. So a `dba-drop` run that was visibly starved is run again,
//! up to three times, for the minimum: netback's loop stalled over 100 ms (VM2's burst
//! lasts 80 ms at 1/100; the 2 % of slack in a 1.5 s window is 30 ms more), or the sender
//! skipped over 5 % of a flow's frames (a 100 ms gap in a 2 s run). The caps and the
//! copies are asserted on every run.

use std::path::Path;
use std::time::Duration;

use bench::paper::{paper, PaperOptions};
use bench::report::{rx_checks, Check, Report, RunReport};
use bench::scenario::{Policy, Scenario};

fn find<'a>(runs: &'a [RunReport], sc: &str, p: &str) -> &'a RunReport {
    runs.iter()
        .find(|r| r.scenario == sc && r.policy == p)
        .unwrap_or_else(|| panic!("no run {sc} {p}"))
}

/// `bench paper` on the receive scenarios at 1/100, 2 s runs, with `policies`.
fn rx_paper(policies: Vec<Policy>, dir: &Path) -> Report {
    let mut o = PaperOptions::new(true);
    o.scale = 100;
    o.scenarios = Scenario::RX.to_vec();
    o.policies = policies;
    o.sweep = Vec::new();
    o.duration = Some(Duration::from_secs(2));
    paper(&o, dir).expect("paper")
}

/// Why the machine starved `run`, if it visibly did.
fn starved(run: &RunReport) -> Option<String> {
    if run.backend_max_stall_ms > 100.0 {
        return Some(format!(
            "netback's loop stalled {:.0} ms",
            run.backend_max_stall_ms
        ));
    }
    run.vms.iter().find_map(|v| {
        let offered = v.offered_mbps * 1e6 * run.duration_s / 8.0 / v.packet_bytes as f64;
        (v.generator_skipped as f64 > 0.05 * offered).then(|| {
            format!(
                "the sender skipped {} of {} frames for {}",
                v.generator_skipped, offered as u64, v.name
            )
        })
    })
}

/// VM1 and VM3 within 1 % of their receive caps (the check's first half; the second is
/// VM2's minimum).
fn caps_hold(run: &RunReport) -> bool {
    let kpps = run.scenario == "rx-mixed";
    [0, 2].iter().all(|&i| {
        let v = &run.vms[i];
        if kpps {
            v.delivered_kpps <= 1.01 * v.sla_kpps
        } else {
            v.delivered_mbps <= 1.01 * v.sla_mbps
        }
    })
}

/// The check of `rx_checks` about `sc`'s caps and VM2's minimum.
fn min_check<'a>(checks: &'a [Check], sc: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.what.starts_with(&format!("dba-drop, {sc}: VM1 and VM3")))
        .unwrap_or_else(|| panic!("no check of {sc}'s caps"))
}

#[test]
fn receive_scenarios_hold_the_slas_and_dba_copies_nothing_it_drops() {
    let dir = std::env::temp_dir().join(format!("bench-rx-{}", std::process::id()));
    // Every policy asked for: only native, tc and dba-drop are compared on RX.
    let r = rx_paper(Policy::ALL.to_vec(), &dir);
    // The outputs beside the TX ones: report.json's runs say their direction, report.md
    // has the scenarios' tables, and the plots are written under the scenarios' names.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["runs"][0]["direction"], "rx");
    assert_eq!(json["runs"][5]["scenario"], "rx-mixed");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Scenario `rx-1500`") && md.contains("## Scenario `rx-mixed`"));
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        for f in [
            "throughput_mbps_rx-1500.png",
            "throughput_kpps_rx-mixed.svg",
            "delay_cdf_rx-1500.png",
            "timeline_rx-mixed_dba-drop.png",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
    } else {
        eprintln!("skipping plot checks: DejaVu Sans not installed (fonts-dejavu-core)");
    }
    let names: Vec<(&str, &str)> = r
        .runs
        .iter()
        .map(|x| (x.scenario.as_str(), x.policy.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("rx-1500", "native"),
            ("rx-1500", "tc"),
            ("rx-1500", "dba-drop"),
            ("rx-mixed", "native"),
            ("rx-mixed", "tc"),
            ("rx-mixed", "dba-drop"),
        ]
    );
    assert!(r.runs.iter().all(|x| x.direction == "rx"));

    // The report carries the receive checks, and every one holds (VM2's minimum: on a
    // run the machine did not starve).
    let checks = rx_checks(&r.runs);
    assert_eq!(checks.len(), 6);
    for c in &checks {
        assert!(
            r.checks.iter().any(|x| x.what == c.what),
            "{} missing",
            c.what
        );
        if !c.what.contains("VM2 ≥ 98 %") {
            assert!(c.holds, "{}: {}", c.what, c.measured);
        }
    }
    for sc in ["rx-1500", "rx-mixed"] {
        let mut run = find(&r.runs, sc, "dba-drop").clone();
        let mut check = min_check(&checks, sc).clone();
        for attempt in 1..=3 {
            assert!(caps_hold(&run), "{}: {}", check.what, check.measured);
            let Some(why) = starved(&run) else {
                break;
            };
            eprintln!("{sc} dba-drop: {why}: run again ({attempt} of 3)");
            let again = rx_paper(vec![Policy::DbaDrop], &dir);
            run = find(&again.runs, sc, "dba-drop").clone();
            check = min_check(&again.checks, sc).clone();
        }
        assert!(caps_hold(&run), "{}: {}", check.what, check.measured);
        match starved(&run) {
            None => assert!(check.holds, "{}: {}", check.what, check.measured),
            Some(why) => eprintln!(
                "{sc} dba-drop: VM2's minimum not asserted: every run was starved ({why}); {}",
                check.measured
            ),
        }
    }

    for sc in ["rx-1500", "rx-mixed"] {
        // native: nothing limits what VM1 receives (10 Mb/s offered, 1.5 Mb/s SLA).
        let native = find(&r.runs, sc, "native");
        let v1 = &native.vms[0];
        assert!(
            v1.delivered_mbps
                > 3.0
                    * v1.sla_mbps
                        .min(v1.sla_kpps * 8.0 * v1.packet_bytes as f64 / 1e3),
            "{sc} native: VM1 got only {} Mb/s",
            v1.delivered_mbps
        );
        assert_eq!(v1.dropped_back, 0, "{sc} native: netback dropped");

        // tc: VM1's excess was copied into the guest, then policed: most of what
        // crossed the ring was thrown away after the copy.
        let tc = find(&r.runs, sc, "tc");
        let v1 = &tc.vms[0];
        assert!(v1.dropped_back > 0, "{sc} tc: nothing policed");
        assert!(
            v1.copied_then_dropped_bytes * 2 > v1.ring_bytes_copied,
            "{sc} tc: copied {} B, copied then dropped {} B",
            v1.ring_bytes_copied,
            v1.copied_then_dropped_bytes
        );

        // dba-drop: every VM got exactly what netback copied; VM1 was refused most of
        // its traffic, none of it copied; the guest was told its receive budget.
        let dba = find(&r.runs, sc, "dba-drop");
        for v in &dba.vms {
            assert_eq!(v.copied_then_dropped_bytes, 0, "{sc} dba-drop {}", v.name);
            let bps = v
                .budget_bps
                .unwrap_or_else(|| panic!("{sc} {}: no RX budget told", v.name));
            assert!(
                bps as f64 <= v.sla_mbps * 1e6,
                "{sc} {}: RX budget {bps} b/s above its SLA",
                v.name
            );
        }
        let v1 = &dba.vms[0];
        assert!(
            v1.dropped_back > 0,
            "{sc} dba-drop: netback refused nothing"
        );
        assert!(
            v1.ring_bytes_copied * 2 < tc.vms[0].ring_bytes_copied,
            "{sc}: dba-drop copied {} B into VM1, tc {} B",
            v1.ring_bytes_copied,
            tc.vms[0].ring_bytes_copied
        );
        if sc == "rx-mixed" {
            assert_eq!(v1.budget_pps, Some(200), "VM1's 20 Kp/s cap at 1/100");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
