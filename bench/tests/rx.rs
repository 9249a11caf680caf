//! The receive scenarios (issue 15) at 1/100 of the paper's rates (a 10 Mb/s NIC model):
//! three guests receive line rate each from the NIC model's senders, through netback,
//! under native, tc (a policer after the copy into the guest) and dba-drop (netback's RX
//! budget, before the copy). The report's receive checks must hold, and each policy acts
//! where it should, seen from the guest and from netback's counters.

use std::time::Duration;

use bench::paper::{paper, PaperOptions};
use bench::report::{rx_checks, RunReport};
use bench::scenario::{Policy, Scenario};

fn find<'a>(runs: &'a [RunReport], sc: &str, p: &str) -> &'a RunReport {
    runs.iter()
        .find(|r| r.scenario == sc && r.policy == p)
        .unwrap_or_else(|| panic!("no run {sc} {p}"))
}

#[test]
fn receive_scenarios_hold_the_slas_and_dba_copies_nothing_it_drops() {
    let dir = std::env::temp_dir().join(format!("bench-rx-{}", std::process::id()));
    let mut o = PaperOptions::new(true);
    o.scale = 100;
    o.scenarios = Scenario::RX.to_vec();
    // Every policy asked for: only native, tc and dba-drop are compared on RX.
    o.policies = Policy::ALL.to_vec();
    o.sweep = Vec::new();
    o.duration = Some(Duration::from_secs(2));
    let r = paper(&o, &dir).expect("paper");
    let _ = std::fs::remove_dir_all(&dir);
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

    // The report carries the receive checks, and every one holds.
    let checks = rx_checks(&r.runs);
    assert_eq!(checks.len(), 6);
    for c in &checks {
        assert!(
            r.checks.iter().any(|x| x.what == c.what),
            "{} missing",
            c.what
        );
        assert!(c.holds, "{}: {}", c.what, c.measured);
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
}
