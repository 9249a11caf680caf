//! `netback status`: each vif with its queues — the data-path worker serving each queue
//! and the queue's frames and bytes both ways — built from a scrape of the metrics
//! endpoint ([`crate::scrape()`]): the per-vif counters and the per-queue series
//! (labels `vif`, `queue`, `worker`). Printed as a table ([`render`]) or as one JSON
//! object ([`to_json`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metric as name;
use crate::top::vif_key;
use crate::Sample;

/// Frames and bytes both ways, cumulated since the daemon started. TX is guest → port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Guest → port frames.
    pub tx_packets: u64,
    /// Guest → port bytes (L2 frames).
    pub tx_bytes: u64,
    /// Port → guest frames.
    pub rx_packets: u64,
    /// Port → guest bytes (L2 frames).
    pub rx_bytes: u64,
}

impl Counts {
    /// Takes `value` of metric `metric` if it is one of the four counters (per vif
    /// or per queue, as `names` lists them: tx packets, tx bits, rx packets, rx bits).
    fn take(&mut self, names: [&str; 4], metric: &str, value: f64) -> bool {
        let v = value.max(0.0) as u64;
        match names.iter().position(|n| *n == metric) {
            Some(0) => self.tx_packets = v,
            Some(1) => self.tx_bytes = v / 8,
            Some(2) => self.rx_packets = v,
            Some(3) => self.rx_bytes = v / 8,
            _ => return false,
        }
        true
    }
}

/// One queue of a vif.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueRow {
    /// Queue index.
    pub queue: u32,
    /// The data-path worker serving it.
    pub worker: u32,
    /// Part of the vif's current connection.
    pub connected: bool,
    /// Its counters.
    pub counts: Counts,
}

/// One vif and its queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VifRow {
    /// Label `vif` (`vif1.0`).
    pub vif: String,
    /// Rings connected.
    pub connected: bool,
    /// The vif's counters (its queues' summed).
    pub counts: Counts,
    /// Its queues, by index.
    pub queues: Vec<QueueRow>,
}

/// What `netback status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Per vif, sorted by domain then device id.
    pub vifs: Vec<VifRow>,
}

const VIF_COUNTS: [&str; 4] = [
    name::VIF_TX_PACKETS,
    name::VIF_TX_BITS,
    name::VIF_RX_PACKETS,
    name::VIF_RX_BITS,
];

const QUEUE_COUNTS: [&str; 4] = [
    name::QUEUE_TX_PACKETS,
    name::QUEUE_TX_BITS,
    name::QUEUE_RX_PACKETS,
    name::QUEUE_RX_BITS,
];

/// A vif's queues while they are read, by index.
type Queues = BTreeMap<u32, QueueRow>;

/// A sample's label parsed as a number.
fn label_number(s: &Sample, label: &str) -> Option<u32> {
    s.label(label)?.parse().ok()
}

/// Builds the status from scraped samples (per-queue samples without a numeric
/// `queue` and `worker` are left out).
pub fn status(samples: &[Sample]) -> Status {
    let mut vifs: BTreeMap<(u64, u64, String), (VifRow, Queues)> = BTreeMap::new();
    for s in samples {
        let Some(v) = s.label(name::LABEL_VIF) else {
            continue;
        };
        let (row, queues) = vifs.entry(vif_key(v)).or_insert_with(|| {
            let row = VifRow {
                vif: v.to_string(),
                ..VifRow::default()
            };
            (row, BTreeMap::new())
        });
        if s.label(name::LABEL_QUEUE).is_none() {
            if s.name == name::VIF_CONNECTED {
                row.connected = s.value != 0.0;
            } else {
                row.counts.take(VIF_COUNTS, &s.name, s.value);
            }
            continue;
        }
        let (Some(queue), Some(worker)) = (
            label_number(s, name::LABEL_QUEUE),
            label_number(s, name::LABEL_WORKER),
        ) else {
            continue;
        };
        let q = queues.entry(queue).or_insert(QueueRow {
            queue,
            worker,
            ..QueueRow::default()
        });
        if s.name == name::QUEUE_CONNECTED {
            q.connected = s.value != 0.0;
        } else {
            q.counts.take(QUEUE_COUNTS, &s.name, s.value);
        }
    }
    Status {
        vifs: vifs
            .into_values()
            .map(|(mut row, queues)| {
                row.queues = queues.into_values().collect();
                row
            })
            .collect(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One line of the table.
fn line(out: &mut String, cols: [&str; 4], c: &Counts) {
    let [vif, queue, worker, conn] = cols;
    let _ = writeln!(
        out,
        "{vif:<12} {queue:>5} {worker:>6} {conn:>4} {:>12} {:>14} {:>12} {:>14}",
        c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes
    );
}

/// Renders the status as a text table: per vif a line `all` (its counters), then a
/// line per queue with its worker.
pub fn render(st: &Status, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "netback status — {source}");
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:>6} {:>4} {:>12} {:>14} {:>12} {:>14}",
        "VIF", "QUEUE", "WORKER", "CONN", "TX PACKETS", "TX BYTES", "RX PACKETS", "RX BYTES"
    );
    for v in &st.vifs {
        line(
            &mut out,
            [&v.vif, "all", "-", yes_no(v.connected)],
            &v.counts,
        );
        for q in &v.queues {
            let (queue, worker) = (q.queue.to_string(), q.worker.to_string());
            line(
                &mut out,
                [&v.vif, &queue, &worker, yes_no(q.connected)],
                &q.counts,
            );
        }
    }
    if st.vifs.is_empty() {
        let _ = writeln!(out, "(no vifs)");
    }
    let _ = writeln!(
        out,
        "TX = guest to port. Totals since netback started; a vif's are its queues' summed."
    );
    out
}

/// `s` as a JSON string.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The four counters as JSON members (no braces).
fn json_counts(c: &Counts) -> String {
    format!(
        "\"tx_packets\":{},\"tx_bytes\":{},\"rx_packets\":{},\"rx_bytes\":{}",
        c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes
    )
}

/// The status as one JSON object: `{"source", "vifs": [{"vif", "connected",
/// counters…, "queues": [{"queue", "worker", "connected", counters…}]}]}`.
pub fn to_json(st: &Status, source: &str) -> String {
    let vifs: Vec<String> = st
        .vifs
        .iter()
        .map(|v| {
            let queues: Vec<String> = v
                .queues
                .iter()
                .map(|q| {
                    format!(
                        "{{\"queue\":{},\"worker\":{},\"connected\":{},{}}}",
                        q.queue,
                        q.worker,
                        q.connected,
                        json_counts(&q.counts)
                    )
                })
                .collect();
            format!(
                "{{\"vif\":{},\"connected\":{},{},\"queues\":[{}]}}",
                json_str(&v.vif),
                v.connected,
                json_counts(&v.counts),
                queues.join(",")
            )
        })
        .collect();
    format!(
        "{{\"source\":{},\"vifs\":[{}]}}",
        json_str(source),
        vifs.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_exposition;

    const TEXT: &str = "\
dbavm_vif_connected{vif=\"vif1.0\"} 1
dbavm_vif_tx_packets_total{vif=\"vif1.0\"} 30
dbavm_vif_tx_bits_total{vif=\"vif1.0\"} 24000
dbavm_vif_rx_packets_total{vif=\"vif1.0\"} 3
dbavm_vif_rx_bits_total{vif=\"vif1.0\"} 800
dbavm_vif_connected{vif=\"vif10.0\"} 0
dbavm_queue_connected{vif=\"vif1.0\",queue=\"1\",worker=\"1\"} 0
dbavm_queue_connected{vif=\"vif1.0\",queue=\"0\",worker=\"0\"} 1
dbavm_queue_tx_packets_total{vif=\"vif1.0\",queue=\"0\",worker=\"0\"} 10
dbavm_queue_tx_packets_total{vif=\"vif1.0\",queue=\"1\",worker=\"1\"} 20
dbavm_queue_tx_bits_total{vif=\"vif1.0\",queue=\"0\",worker=\"0\"} 8000
dbavm_queue_tx_bits_total{vif=\"vif1.0\",queue=\"1\",worker=\"1\"} 16000
dbavm_queue_rx_packets_total{vif=\"vif1.0\",queue=\"1\",worker=\"1\"} 3
dbavm_queue_rx_bits_total{vif=\"vif1.0\",queue=\"1\",worker=\"1\"} 800
dbavm_queue_tx_packets_total{vif=\"vif1.0\",queue=\"x\",worker=\"1\"} 99
dbavm_vif_connected{vif=\"a\\\"b\"} 1
";

    #[test]
    fn vifs_with_their_queues_in_order() {
        let st = status(&parse_exposition(TEXT).unwrap());
        let names: Vec<&str> = st.vifs.iter().map(|v| v.vif.as_str()).collect();
        assert_eq!(names, ["vif1.0", "vif10.0", "a\"b"]);
        let v = &st.vifs[0];
        assert!(v.connected);
        assert_eq!(
            v.counts,
            Counts {
                tx_packets: 30,
                tx_bytes: 3000,
                rx_packets: 3,
                rx_bytes: 100
            }
        );
        let q: Vec<(u32, u32, bool, u64, u64)> = v
            .queues
            .iter()
            .map(|q| {
                let c = q.counts;
                (q.queue, q.worker, q.connected, c.tx_packets, c.rx_bytes)
            })
            .collect();
        // The sample with a queue label that is not a number is left out.
        assert_eq!(q, [(0, 0, true, 10, 0), (1, 1, false, 20, 100)]);
        assert!(st.vifs[1].queues.is_empty() && !st.vifs[1].connected);
    }

    #[test]
    fn text_and_json() {
        let st = status(&parse_exposition(TEXT).unwrap());
        let out = render(&st, "src");
        let rows: Vec<Vec<&str>> = out
            .lines()
            .filter(|l| l.starts_with("vif1.0"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["vif1.0", "all", "-", "yes", "30", "3000", "3", "100"],
                ["vif1.0", "0", "0", "yes", "10", "1000", "0", "0"],
                ["vif1.0", "1", "1", "no", "20", "2000", "3", "100"],
            ]
        );
        let json = to_json(&st, "src");
        assert!(json.starts_with("{\"source\":\"src\",\"vifs\":[{\"vif\":\"vif1.0\",\"connected\":true,\"tx_packets\":30,\"tx_bytes\":3000,"), "{json}");
        assert!(json.contains("{\"queue\":1,\"worker\":1,\"connected\":false,\"tx_packets\":20,\"tx_bytes\":2000,\"rx_packets\":3,\"rx_bytes\":100}"), "{json}");
        assert!(
            json.contains("{\"vif\":\"a\\\"b\",\"connected\":true,"),
            "{json}"
        );
        assert!(render(&Status::default(), "src").contains("(no vifs)"));
        assert_eq!(
            to_json(&Status::default(), "a\nb"),
            "{\"source\":\"a\\u000ab\",\"vifs\":[]}"
        );
    }
}
