//! `netfront stats`: what a running netfront knows about its shaping, for the guest's
//! administrator.
//!
//! The running netfront rewrites a small state file, by default
//! `/run/netfront/<interface>.stats`, at most once per [`STATS_EVERY_NS`] and only when
//! something in it changed ([`StatsFile::maybe_write`]): written to a temporary file in
//! the same directory, then renamed over the old one, so a reader sees either the old
//! or the new file, never a torn one. `netfront stats` reads it ([`StatsReport::parse`])
//! and prints it ([`StatsReport`]'s `Display`, or [`StatsReport::to_json`]). A file is
//! chosen over a socket: nothing in the event loop ever waits for a reader, a crashed
//! netfront leaves its last figures readable, and the reader needs no running process.
//!
//! The file: one `key value` per line, `format 1` first; a budget value is a number or
//! `unlimited`, a value netfront does not know (no credit area, a version-1 area) is
//! `none`. Readers ignore keys they do not know (a newer netfront may add some).

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use shared_ring::credit::{BackCounters, Credits};
use shared_ring::Limit;

use super::{Allowance, FrontStats};

/// Least time between two writes of the state file, ns.
pub const STATS_EVERY_NS: u64 = 1_000_000_000;

/// The default directory of the state files.
pub const DEFAULT_STATS_DIR: &str = "/run/netfront";

/// The state file of interface `iface` in `dir`.
pub fn stats_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("{iface}.stats"))
}

/// A budget as the report carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// Wire bytes per second (`None`: unlimited).
    pub bytes_per_sec: Option<u64>,
    /// Bytes bucket depth.
    pub bytes_burst: u64,
    /// Wire packets per second (`None`: unlimited).
    pub packets_per_sec: Option<u64>,
    /// Packets bucket depth.
    pub packets_burst: u64,
}

impl From<Credits> for Budget {
    fn from(c: Credits) -> Budget {
        let split = |l: Limit| match l {
            Limit::Unlimited => (None, 0),
            Limit::Rate { per_sec, burst } => (Some(per_sec), burst),
        };
        let (bytes_per_sec, bytes_burst) = split(c.bytes);
        let (packets_per_sec, packets_burst) = split(c.packets);
        Budget {
            bytes_per_sec,
            bytes_burst,
            packets_per_sec,
            packets_burst,
        }
    }
}

/// What netfront itself dropped or held for lack of TX credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnDrops {
    /// Frames dropped (policy `drop`).
    pub frames: u64,
    /// Their wire packets (a GSO frame: its segments).
    pub wire_packets: u64,
    /// Their wire bytes.
    pub wire_bytes: u64,
    /// Times netfront stopped taking frames until tokens returned (policy `hold`).
    pub held: u64,
}

/// Everything `netfront stats` prints about one interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsReport {
    /// The guest's interface (the TAP netfront serves).
    pub iface: String,
    /// The netfront process that wrote the report.
    pub pid: u32,
    /// Whether the rings were connected.
    pub connected: bool,
    /// The credit-area layout version in use (0: none).
    pub credit_version: u16,
    /// The TX budget the backend published (`None`: not known).
    pub tx_budget: Option<Budget>,
    /// The RX budget netback enforces (`None`: not told, a version-1 area).
    pub rx_budget: Option<Budget>,
    /// netfront's own TX drops for credit.
    pub own: OwnDrops,
    /// The counters netback maintains in the credit area (`None`: not told).
    pub shaped: Option<BackCounters>,
}

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file could not be read.
    #[error("{path}: {source} (is netfront running for this interface?)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A line is not `key value`, or a value is not what the key takes.
    #[error("line {line}: {problem}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A required key is missing.
    #[error("key {0} missing")]
    Missing(&'static str),
    /// The file is of a format this `netfront stats` does not know.
    #[error("format {0} unknown (this netfront reads format 1)")]
    Format(String),
}

impl StatsReport {
    /// The report of a running netfront: its counters and what the backend told it.
    pub fn new(iface: &str, connected: bool, stats: &FrontStats, a: &Allowance) -> Self {
        StatsReport {
            iface: iface.into(),
            pid: std::process::id(),
            connected,
            credit_version: a.version,
            tx_budget: a.tx.map(Budget::from),
            rx_budget: a.rx.map(Budget::from),
            own: OwnDrops {
                frames: stats.tx_dropped_credit,
                wire_packets: stats.tx_dropped_credit_wire_packets,
                wire_bytes: stats.tx_dropped_credit_wire_bytes,
                held: stats.tx_held,
            },
            shaped: a.shaped,
        }
    }

    /// Every `(key, value)` of the file, in order.
    fn lines(&self) -> Vec<(String, String)> {
        let num = |v: u64| v.to_string();
        let rate = |v: Option<u64>| v.map_or("unlimited".into(), |v| v.to_string());
        let mut out = vec![
            ("format".into(), "1".into()),
            ("iface".into(), self.iface.clone()),
            ("pid".into(), self.pid.to_string()),
            ("connected".into(), u64::from(self.connected).to_string()),
            ("credit_version".into(), self.credit_version.to_string()),
        ];
        for (dir, b) in [("tx", self.tx_budget), ("rx", self.rx_budget)] {
            let fields: [(&str, String); 4] = match b {
                Some(b) => [
                    ("bytes_per_sec", rate(b.bytes_per_sec)),
                    ("bytes_burst", num(b.bytes_burst)),
                    ("packets_per_sec", rate(b.packets_per_sec)),
                    ("packets_burst", num(b.packets_burst)),
                ],
                None => [
                    "bytes_per_sec",
                    "bytes_burst",
                    "packets_per_sec",
                    "packets_burst",
                ]
                .map(|k| (k, "none".into())),
            };
            out.extend(fields.map(|(k, v)| (format!("{dir}_budget_{k}"), v)));
        }
        out.extend(
            [
                ("front_tx_dropped_frames", self.own.frames),
                ("front_tx_dropped_wire_packets", self.own.wire_packets),
                ("front_tx_dropped_wire_bytes", self.own.wire_bytes),
                ("front_tx_held", self.own.held),
            ]
            .map(|(k, v)| (k.into(), num(v))),
        );
        for (k, v) in shaped_fields(self.shaped.as_ref()) {
            out.push((k.into(), v.map_or("none".into(), num)));
        }
        out
    }

    /// The state file's text.
    pub fn to_file_text(&self) -> String {
        self.lines()
            .into_iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }

    /// Parses a state file's text.
    pub fn parse(text: &str) -> Result<StatsReport, StatsError> {
        let mut kv = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let (k, v) = line.split_once(' ').ok_or_else(|| StatsError::Malformed {
                line: i + 1,
                problem: format!("{line:?} is not `key value`"),
            })?;
            kv.insert(k, (i + 1, v));
        }
        let f = Fields(&kv);
        match f.str("format")? {
            "1" => {}
            other => return Err(StatsError::Format(other.into())),
        }
        let budget = |dir: &'static str| -> Result<Option<Budget>, StatsError> {
            let key = |k: &str| -> &'static str {
                BUDGET_KEYS
                    .iter()
                    .find(|(d, f, _)| *d == dir && *f == k)
                    .expect("known key")
                    .2
            };
            if f.str(key("bytes_per_sec"))? == "none" {
                return Ok(None);
            }
            Ok(Some(Budget {
                bytes_per_sec: f.rate(key("bytes_per_sec"))?,
                bytes_burst: f.num(key("bytes_burst"))?,
                packets_per_sec: f.rate(key("packets_per_sec"))?,
                packets_burst: f.num(key("packets_burst"))?,
            }))
        };
        let shaped = if f.str("back_tx_shaped_bps_frames")? == "none" {
            None
        } else {
            let mut vals = [0u64; 6];
            for (slot, (k, _)) in vals.iter_mut().zip(shaped_fields(None)) {
                *slot = f.num(k)?;
            }
            Some(shaped_from(vals))
        };
        Ok(StatsReport {
            iface: f.str("iface")?.into(),
            pid: f
                .num("pid")?
                .try_into()
                .map_err(|_| f.bad("pid", "too large"))?,
            connected: f.num("connected")? != 0,
            credit_version: f
                .num("credit_version")?
                .try_into()
                .map_err(|_| f.bad("credit_version", "too large"))?,
            tx_budget: budget("tx")?,
            rx_budget: budget("rx")?,
            own: OwnDrops {
                frames: f.num("front_tx_dropped_frames")?,
                wire_packets: f.num("front_tx_dropped_wire_packets")?,
                wire_bytes: f.num("front_tx_dropped_wire_bytes")?,
                held: f.num("front_tx_held")?,
            },
            shaped,
        })
    }

    /// Reads the state file at `path`.
    pub fn read(path: &Path) -> Result<StatsReport, StatsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatsError::Read {
            path: path.into(),
            source,
        })?;
        StatsReport::parse(&text)
    }

    /// The report as one JSON object (stable keys: those of the state file, nested by
    /// budget and direction; unknown values are `null`, unlimited rates `"unlimited"`).
    pub fn to_json(&self) -> String {
        let rate = |v: Option<u64>| v.map_or("\"unlimited\"".into(), |v| v.to_string());
        let budget = |b: Option<Budget>| {
            b.map_or("null".into(), |b| {
                format!(
                    "{{\"bytes_per_sec\":{},\"bytes_burst\":{},\"packets_per_sec\":{},\"packets_burst\":{}}}",
                    rate(b.bytes_per_sec),
                    b.bytes_burst,
                    rate(b.packets_per_sec),
                    b.packets_burst
                )
            })
        };
        let shaped = self.shaped.map_or("null".into(), |s| {
            format!(
                "{{\"tx\":{{\"bps_frames\":{},\"bps_bytes\":{},\"pps_frames\":{}}},\
                 \"rx\":{{\"bps_frames\":{},\"bps_bytes\":{},\"pps_frames\":{}}}}}",
                s.tx_shaped_bps_frames,
                s.tx_shaped_bps_bytes,
                s.tx_shaped_pps_frames,
                s.rx_shaped_bps_frames,
                s.rx_shaped_bps_bytes,
                s.rx_shaped_pps_frames
            )
        });
        format!(
            "{{\"iface\":{},\"pid\":{},\"connected\":{},\"credit_version\":{},\
             \"tx_budget\":{},\"rx_budget\":{},\
             \"front_tx_dropped\":{{\"frames\":{},\"wire_packets\":{},\"wire_bytes\":{},\"held\":{}}},\
             \"shaped_by_netback\":{}}}",
            json_str(&self.iface),
            self.pid,
            self.connected,
            self.credit_version,
            budget(self.tx_budget),
            budget(self.rx_budget),
            self.own.frames,
            self.own.wire_packets,
            self.own.wire_bytes,
            self.own.held,
            shaped
        )
    }
}

/// (direction, field, state-file key) of the budget lines.
const BUDGET_KEYS: [(&str, &str, &str); 8] = [
    ("tx", "bytes_per_sec", "tx_budget_bytes_per_sec"),
    ("tx", "bytes_burst", "tx_budget_bytes_burst"),
    ("tx", "packets_per_sec", "tx_budget_packets_per_sec"),
    ("tx", "packets_burst", "tx_budget_packets_burst"),
    ("rx", "bytes_per_sec", "rx_budget_bytes_per_sec"),
    ("rx", "bytes_burst", "rx_budget_bytes_burst"),
    ("rx", "packets_per_sec", "rx_budget_packets_per_sec"),
    ("rx", "packets_burst", "rx_budget_packets_burst"),
];

/// The state-file keys of netback's counters, with their values when known.
fn shaped_fields(s: Option<&BackCounters>) -> [(&'static str, Option<u64>); 6] {
    [
        (
            "back_tx_shaped_bps_frames",
            s.map(|s| s.tx_shaped_bps_frames),
        ),
        ("back_tx_shaped_bps_bytes", s.map(|s| s.tx_shaped_bps_bytes)),
        (
            "back_tx_shaped_pps_frames",
            s.map(|s| s.tx_shaped_pps_frames),
        ),
        (
            "back_rx_shaped_bps_frames",
            s.map(|s| s.rx_shaped_bps_frames),
        ),
        ("back_rx_shaped_bps_bytes", s.map(|s| s.rx_shaped_bps_bytes)),
        (
            "back_rx_shaped_pps_frames",
            s.map(|s| s.rx_shaped_pps_frames),
        ),
    ]
}

fn shaped_from(v: [u64; 6]) -> BackCounters {
    BackCounters {
        tx_shaped_bps_frames: v[0],
        tx_shaped_bps_bytes: v[1],
        tx_shaped_pps_frames: v[2],
        rx_shaped_bps_frames: v[3],
        rx_shaped_bps_bytes: v[4],
        rx_shaped_pps_frames: v[5],
    }
}

/// The parsed `key → (line, value)` of a state file.
struct Fields<'a>(&'a std::collections::HashMap<&'a str, (usize, &'a str)>);

impl Fields<'_> {
    fn str(&self, k: &'static str) -> Result<&str, StatsError> {
        self.0.get(k).map(|(_, v)| *v).ok_or(StatsError::Missing(k))
    }

    fn bad(&self, k: &str, problem: &str) -> StatsError {
        StatsError::Malformed {
            line: self.0.get(k).map_or(0, |(l, _)| *l),
            problem: format!("{k}: {problem}"),
        }
    }

    fn num(&self, k: &'static str) -> Result<u64, StatsError> {
        let v = self.str(k)?;
        v.parse()
            .map_err(|_| self.bad(k, &format!("{v:?} is not a number")))
    }

    fn rate(&self, k: &'static str) -> Result<Option<u64>, StatsError> {
        match self.str(k)? {
            "unlimited" => Ok(None),
            _ => self.num(k).map(Some),
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for StatsReport {
    /// The human format of `netfront stats` (stable: one fact per line, fixed wording).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate =
            |v: Option<u64>, unit: &str| v.map_or("unlimited".into(), |v| format!("{v} {unit}"));
        let budget = |b: Option<Budget>| {
            b.map_or("not told by the backend".into(), |b| {
                format!(
                    "{} (burst {} B), {} (burst {})",
                    rate(b.bytes_per_sec, "B/s"),
                    b.bytes_burst,
                    rate(b.packets_per_sec, "packets/s"),
                    b.packets_burst
                )
            })
        };
        writeln!(
            f,
            "{}: netfront pid {}, {}, credit area v{}",
            self.iface,
            self.pid,
            if self.connected {
                "connected"
            } else {
                "not connected"
            },
            self.credit_version
        )?;
        writeln!(f, "  TX budget: {}", budget(self.tx_budget))?;
        writeln!(f, "  RX budget: {}", budget(self.rx_budget))?;
        writeln!(
            f,
            "  dropped by netfront for TX credit: {} frames ({} wire packets, {} B); held {} times",
            self.own.frames, self.own.wire_packets, self.own.wire_bytes, self.own.held
        )?;
        match self.shaped {
            Some(s) => {
                writeln!(f, "  shaped by netback (allowance exceeded):")?;
                writeln!(
                    f,
                    "    TX: {} frames / {} B for bits/s, {} frames for packets/s",
                    s.tx_shaped_bps_frames, s.tx_shaped_bps_bytes, s.tx_shaped_pps_frames
                )?;
                writeln!(
                    f,
                    "    RX: {} frames / {} B for bits/s, {} frames for packets/s",
                    s.rx_shaped_bps_frames, s.rx_shaped_bps_bytes, s.rx_shaped_pps_frames
                )
            }
            None => writeln!(
                f,
                "  shaped by netback: not told (the backend does not publish its counters)"
            ),
        }
    }
}

/// The running netfront's side: at most once per [`STATS_EVERY_NS`], builds the report
/// and rewrites the state file if it changed.
#[derive(Debug)]
pub struct StatsFile {
    path: PathBuf,
    iface: String,
    checked_at: Option<u64>,
    last: Option<StatsReport>,
    failed: bool,
}

impl StatsFile {
    /// A writer of interface `iface`'s state file in `dir` (created at the first write).
    pub fn new(dir: &Path, iface: &str) -> Self {
        StatsFile {
            path: stats_path(dir, iface),
            iface: iface.into(),
            checked_at: None,
            last: None,
            failed: false,
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the next [`StatsFile::maybe_write`] look now (at exit: the last figures).
    pub fn due_now(&mut self) {
        self.checked_at = None;
    }

    /// Called from the event loop (`now`: the netfront's clock): O(1) unless
    /// [`STATS_EVERY_NS`] passed since the last look; then writes the report if it
    /// changed. A failure is logged once (then at debug level) and never stops the
    /// caller; the next look tries again.
    pub fn maybe_write(&mut self, now: u64, connected: bool, stats: &FrontStats, a: &Allowance) {
        if self
            .checked_at
            .is_some_and(|t| now.saturating_sub(t) < STATS_EVERY_NS)
        {
            return;
        }
        self.checked_at = Some(now);
        let report = StatsReport::new(&self.iface, connected, stats, a);
        if self.last.as_ref() == Some(&report) {
            return;
        }
        match self.write(&report) {
            Ok(()) => {
                self.failed = false;
                self.last = Some(report);
            }
            Err(e) if !self.failed => {
                log::warn!("netfront: stats file {}: {e}", self.path.display());
                self.failed = true;
            }
            Err(e) => log::debug!("netfront: stats file {}: {e}", self.path.display()),
        }
    }

    /// Writes `report` now: a temporary file beside the state file, renamed over it.
    pub fn write(&self, report: &StatsReport) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(report.to_file_text().as_bytes())?;
        f.sync_data().ok();
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatsReport {
        StatsReport {
            iface: "eth0".into(),
            pid: 42,
            connected: true,
            credit_version: 2,
            tx_budget: Some(Budget {
                bytes_per_sec: Some(6_250_000),
                bytes_burst: 125_000,
                packets_per_sec: None,
                packets_burst: 0,
            }),
            rx_budget: Some(Budget {
                bytes_per_sec: Some(250_000),
                bytes_burst: 5000,
                packets_per_sec: Some(100),
                packets_burst: 2,
            }),
            own: OwnDrops {
                frames: 1,
                wire_packets: 2,
                wire_bytes: 3,
                held: 4,
            },
            shaped: Some(shaped_from([5, 6, 7, 8, 9, 10])),
        }
    }

    #[test]
    fn the_file_round_trips_and_unknown_keys_are_ignored() {
        let r = report();
        let text = r.to_file_text();
        assert!(text.starts_with("format 1\n"), "{text}");
        assert_eq!(StatsReport::parse(&text).unwrap(), r);
        let newer = format!("{text}some_future_key 17\n");
        assert_eq!(StatsReport::parse(&newer).unwrap(), r);
        let bare = StatsReport {
            tx_budget: None,
            rx_budget: None,
            shaped: None,
            credit_version: 0,
            ..report()
        };
        assert_eq!(StatsReport::parse(&bare.to_file_text()).unwrap(), bare);
    }

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let text = report().to_file_text();
        let e = StatsReport::parse(&text.replace("front_tx_held 4", "front_tx_held x"));
        assert!(
            matches!(&e, Err(StatsError::Malformed { problem, .. }) if problem.contains("front_tx_held")),
            "{e:?}"
        );
        let e = StatsReport::parse(&text.replace("pid 42\n", ""));
        assert!(matches!(e, Err(StatsError::Missing("pid"))), "{e:?}");
        let e = StatsReport::parse(&text.replace("format 1", "format 9"));
        assert!(matches!(e, Err(StatsError::Format(_))), "{e:?}");
        let e = StatsReport::parse("garbage");
        assert!(
            matches!(e, Err(StatsError::Malformed { line: 1, .. })),
            "{e:?}"
        );
    }

    #[test]
    fn human_and_json_formats() {
        let r = report();
        assert_eq!(
            r.to_string(),
            "eth0: netfront pid 42, connected, credit area v2\n\
             \x20 TX budget: 6250000 B/s (burst 125000 B), unlimited (burst 0)\n\
             \x20 RX budget: 250000 B/s (burst 5000 B), 100 packets/s (burst 2)\n\
             \x20 dropped by netfront for TX credit: 1 frames (2 wire packets, 3 B); held 4 times\n\
             \x20 shaped by netback (allowance exceeded):\n\
             \x20   TX: 5 frames / 6 B for bits/s, 7 frames for packets/s\n\
             \x20   RX: 8 frames / 9 B for bits/s, 10 frames for packets/s\n"
        );
        assert_eq!(
            r.to_json(),
            "{\"iface\":\"eth0\",\"pid\":42,\"connected\":true,\"credit_version\":2,\
             \"tx_budget\":{\"bytes_per_sec\":6250000,\"bytes_burst\":125000,\"packets_per_sec\":\"unlimited\",\"packets_burst\":0},\
             \"rx_budget\":{\"bytes_per_sec\":250000,\"bytes_burst\":5000,\"packets_per_sec\":100,\"packets_burst\":2},\
             \"front_tx_dropped\":{\"frames\":1,\"wire_packets\":2,\"wire_bytes\":3,\"held\":4},\
             \"shaped_by_netback\":{\"tx\":{\"bps_frames\":5,\"bps_bytes\":6,\"pps_frames\":7},\
             \"rx\":{\"bps_frames\":8,\"bps_bytes\":9,\"pps_frames\":10}}}"
        );
    }

    #[test]
    fn the_writer_rewrites_only_changes_and_at_most_once_a_period() {
        let dir = std::env::temp_dir().join(format!("nf-stats-{}", std::process::id()));
        let mut w = StatsFile::new(&dir, "eth9");
        let path = stats_path(&dir, "eth9");
        assert_eq!(w.path(), path);
        let mut stats = FrontStats::default();
        let a = Allowance::default();
        w.maybe_write(0, true, &stats, &a);
        let r = StatsReport::read(&path).unwrap();
        assert_eq!(
            (r.iface.as_str(), r.pid, r.connected),
            ("eth9", std::process::id(), true)
        );
        assert_eq!(r, StatsReport::new("eth9", true, &stats, &a));
        stats.tx_dropped_credit = 100;
        w.maybe_write(STATS_EVERY_NS - 1, true, &stats, &a); // too soon
        assert_eq!(StatsReport::read(&path).unwrap().own.frames, 0);
        w.maybe_write(STATS_EVERY_NS, true, &stats, &a);
        assert_eq!(StatsReport::read(&path).unwrap().own.frames, 100);
        // Unchanged: not rewritten (the file's removal stays visible).
        std::fs::remove_file(&path).unwrap();
        w.maybe_write(3 * STATS_EVERY_NS, true, &stats, &a);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
        // Unwritable: logged, never a panic.
        let mut bad = StatsFile::new(Path::new("/proc/nonexistent"), "eth0");
        bad.maybe_write(0, true, &stats, &a);
        assert!(StatsReport::read(bad.path()).is_err());
    }
}
