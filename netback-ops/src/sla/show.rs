//! `sla show`: a vif's keys, whether they parse, and what the daemon applies (from a
//! scrape of its metrics endpoint).

use std::fmt;

use allocator::rate::RateText;
use xen_ids::VifId;
use xenstore::{Xenstore, XsTx};

use super::{existing_dir, no_vif, read_keys, validate, xs_err, SlaError, VifDir, XsOp};
use crate::metric::{self as m, vif_reason_value, vif_value};
use crate::Sample;

/// A vif's figures in a scrape (`None`: absent from it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Live {
    /// Rings connected (present whenever the daemon knows the vif).
    pub connected: Option<f64>,
    /// Budget, bits/s.
    pub budget_bps: Option<f64>,
    /// Budget, packets/s.
    pub budget_pps: Option<f64>,
    /// Budget, byte bucket depth.
    pub burst_bytes: Option<f64>,
    /// Budget, packet bucket depth.
    pub burst_packets: Option<f64>,
    /// The toolstack's static TX cap (`rate`), bits/s.
    pub rate_cap_bps: Option<f64>,
    /// That cap's byte bucket depth.
    pub rate_cap_burst: Option<f64>,
    /// SLA in force: class.
    pub sla_priority: Option<f64>,
    /// SLA in force: minimum bits/s.
    pub sla_min_bps: Option<f64>,
    /// SLA in force: maximum bits/s.
    pub sla_max_bps: Option<f64>,
    /// The receive budget (absent: unlimited).
    pub rx: RxBudget,
    /// SLA in force: receive minimum bits/s.
    pub sla_rx_min_bps: Option<f64>,
    /// SLA in force: receive maximum bits/s.
    pub sla_rx_max_bps: Option<f64>,
    /// Frames netback held or dropped for the budgets, guest → port.
    pub tx_shaped: Shaped,
    /// The same, port → guest.
    pub rx_shaped: Shaped,
}

/// A vif's receive budget in a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RxBudget {
    /// Bits/s.
    pub bps: Option<f64>,
    /// Packets/s.
    pub pps: Option<f64>,
    /// Byte bucket depth.
    pub burst_bytes: Option<f64>,
    /// Packet bucket depth.
    pub burst_packets: Option<f64>,
}

/// One direction's shaping counters in a scrape (what the guest reads in its credit
/// area).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shaped {
    /// Frames held or dropped for the bits/s budget.
    pub bps_frames: Option<f64>,
    /// Their wire bits.
    pub bps_bits: Option<f64>,
    /// Frames held or dropped for the packets/s budget.
    pub pps_frames: Option<f64>,
}

impl Live {
    /// `vif`'s figures in `samples`.
    pub fn of(samples: &[Sample], vif: VifId) -> Live {
        let name = vif.to_string();
        let get = |metric: &str| vif_value(samples, metric, &name);
        Live {
            connected: get(m::VIF_CONNECTED),
            budget_bps: get(m::VIF_BUDGET_BPS),
            budget_pps: get(m::VIF_BUDGET_PPS),
            burst_bytes: get(m::VIF_BUDGET_BURST_BYTES),
            burst_packets: get(m::VIF_BUDGET_BURST_PACKETS),
            rate_cap_bps: get(m::VIF_RATE_CAP_BPS),
            rate_cap_burst: get(m::VIF_RATE_CAP_BURST_BYTES),
            sla_priority: get(m::VIF_SLA_PRIORITY),
            sla_min_bps: get(m::VIF_SLA_MIN_BPS),
            sla_max_bps: get(m::VIF_SLA_MAX_BPS),
            rx: RxBudget {
                bps: get(m::VIF_RX_BUDGET_BPS),
                pps: get(m::VIF_RX_BUDGET_PPS),
                burst_bytes: get(m::VIF_RX_BUDGET_BURST_BYTES),
                burst_packets: get(m::VIF_RX_BUDGET_BURST_PACKETS),
            },
            sla_rx_min_bps: get(m::VIF_SLA_RX_MIN_BPS),
            sla_rx_max_bps: get(m::VIF_SLA_RX_MAX_BPS),
            tx_shaped: Shaped::of(
                samples,
                &name,
                m::VIF_TX_SHAPED_FRAMES,
                m::VIF_TX_SHAPED_BITS,
            ),
            rx_shaped: Shaped::of(
                samples,
                &name,
                m::VIF_RX_SHAPED_FRAMES,
                m::VIF_RX_SHAPED_BITS,
            ),
        }
    }
}

impl Shaped {
    fn of(samples: &[Sample], vif: &str, frames: &str, bits: &str) -> Shaped {
        Shaped {
            bps_frames: vif_reason_value(samples, frames, vif, "bps"),
            bps_bits: vif_value(samples, bits, vif),
            pps_frames: vif_reason_value(samples, frames, vif, "pps"),
        }
    }
}

impl fmt::Display for Shaped {
    /// `12 frames (13000 B) for bits/s, 14 for packets/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |x: Option<f64>| x.unwrap_or(0.0);
        write!(
            f,
            "{} frames ({} B) for bits/s, {} for packets/s",
            n(self.bps_frames),
            n(self.bps_bits) / 8.0,
            n(self.pps_frames)
        )
    }
}

/// One vif's block of `sla show` (its [`fmt::Display`] is the text printed).
#[derive(Debug, Clone, PartialEq)]
pub struct SlaView {
    /// The vif.
    pub vif: VifId,
    /// Its backend directory.
    pub dir: String,
    /// The SLA keys present, in the order of `allocator::xenstore::KEYS`.
    pub keys: Vec<(&'static str, String)>,
    /// Why the keys do not parse, if they do not (the daemon then keeps the vif's
    /// previous SLA).
    pub invalid: Option<allocator::SlaError>,
    /// The toolstack's `rate` key (`"<bytes>,<usec>"`), if present: a static TX cap
    /// that holds under the SLA's budget (the smaller of the two applies).
    pub rate_key: Option<String>,
    /// The daemon's figures, when a scrape is given.
    pub live: Option<Live>,
}

/// Reads `at`'s keys and checks them; `live` is a scrape of the daemon, if one answered.
pub fn show<X: Xenstore + ?Sized>(
    xs: &X,
    at: &VifDir,
    live: Option<&[Sample]>,
) -> Result<SlaView, SlaError> {
    let path = at.path();
    let dir = existing_dir(xs, XsTx::NONE, at)
        .map_err(xs_err(XsOp::Read, &path))?
        .ok_or_else(|| no_vif(at))?;
    let keys = read_keys(xs, &dir)?;
    let rate_path = format!("{dir}/rate");
    let rate_key = xs
        .try_read(XsTx::NONE, &rate_path)
        .map_err(xs_err(XsOp::Read, &rate_path))?
        .map(|v| String::from_utf8_lossy(&v[..v.len().min(64)]).into_owned());
    Ok(SlaView {
        rate_key,
        vif: at.vif,
        invalid: validate(at.vif, &keys).err(),
        keys,
        dir,
        live: live.map(|s| Live::of(s, at.vif)),
    })
}

/// A rate as operators write it (`150M b/s`); absent or negative is "unlimited".
fn rate(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(x) if x.is_finite() && x >= 0.0 => format!("{}{unit}", RateText(x as u64)),
        _ => "unlimited".into(),
    }
}

impl fmt::Display for SlaView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}  ({})", self.vif, self.dir)?;
        if self.keys.is_empty() {
            writeln!(
                f,
                "  no dba-* keys: the daemon's SLA file / default SLA applies"
            )?;
        }
        for (k, v) in &self.keys {
            writeln!(f, "  {k:<13} {v}")?;
        }
        if let Some(r) = &self.rate_key {
            writeln!(
                f,
                "  rate          {r} (toolstack cap: <bytes>,<usec>; the smaller of it and the budget holds)"
            )?;
        }
        if let Some(e) = &self.invalid {
            writeln!(
                f,
                "  INVALID: {e} (the daemon keeps the vif's previous SLA)"
            )?;
        }
        match &self.live {
            Some(live) => live.fmt(f),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Live {
    /// The `live` lines of a vif's block.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.connected.is_none() {
            writeln!(f, "  live: not known to the daemon")?;
        } else if self.budget_bps.is_none() {
            writeln!(
                f,
                "  live: no budget (allocator off, or the vif is not connected yet)"
            )?;
        } else {
            writeln!(
                f,
                "  live budget: {}, {} (burst {} B, {} packets)",
                rate(self.budget_bps, " b/s"),
                rate(self.budget_pps, " p/s"),
                self.burst_bytes.unwrap_or(0.0),
                self.burst_packets
                    .map_or("unlimited".into(), |x| x.to_string()),
            )?;
        }
        if self.connected.is_some() {
            match self.rx.bps {
                Some(bps) => writeln!(
                    f,
                    "  live RX budget: {}, {} (burst {} B, {} packets)",
                    rate(Some(bps), " b/s"),
                    rate(self.rx.pps, " p/s"),
                    self.rx.burst_bytes.unwrap_or(0.0),
                    self.rx
                        .burst_packets
                        .map_or("unlimited".into(), |x| x.to_string()),
                )?,
                None => writeln!(f, "  live RX budget: unlimited")?,
            }
        }
        if self.tx_shaped.bps_frames.is_some() || self.rx_shaped.bps_frames.is_some() {
            writeln!(f, "  shaped TX: {}", self.tx_shaped)?;
            writeln!(f, "  shaped RX: {}", self.rx_shaped)?;
        }
        if let Some(cap) = self.rate_cap_bps {
            writeln!(
                f,
                "  live rate cap: {} (burst {} B)",
                rate(Some(cap), " b/s"),
                self.rate_cap_burst.unwrap_or(0.0),
            )?;
        }
        if let Some(p) = self.sla_priority {
            writeln!(
                f,
                "  SLA in force: class {p}, min {}, max {}; RX min {}, max {}",
                rate(self.sla_min_bps, " b/s"),
                rate(self.sla_max_bps, " b/s"),
                rate(Some(self.sla_rx_min_bps.unwrap_or(0.0)), " b/s"),
                rate(self.sla_rx_max_bps, " b/s"),
            )?;
        }
        Ok(())
    }
}
