//! The SLA model: vif and VM identities, priority classes, per-vif SLAs, per-VM packet
//! caps, the physical link, and the validated set of all of them ([`SlaSet`]).
//!
//! Every constructor validates; an invalid SLA cannot be represented, so the allocation
//! functions need no error path. Validation errors name the vif (or VM, or the link) and
//! the field, using the same field names as the SLA file and the xenstore keys.

use std::collections::BTreeMap;
use std::fmt;

use crate::rate::{parse_rate, RateParseError, RateText, MAX_BPS, MAX_PPS};

pub use xen_ids::{DomId, VifId};

/// A priority class, the paper's C_i. `0` is the most important class, [`Priority::LOWEST`]
/// (`7`) the least, like Linux `tc` priorities. Eight classes: enough for gold / silver /
/// bronze / best-effort style offers with room between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// The most important class.
    pub const HIGHEST: Priority = Priority(0);
    /// The least important class (also the default for vifs without an SLA).
    pub const LOWEST: Priority = Priority(7);

    /// A class from its number; `None` if the number is not `0..=7`.
    pub const fn new(class: u8) -> Option<Priority> {
        if class <= Self::LOWEST.0 {
            Some(Priority(class))
        } else {
            None
        }
    }

    /// The class number, `0` (highest) to `7` (lowest).
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Parses the text form: a decimal class number `0`..`7`.
    pub fn parse(text: &str) -> Result<Priority, Problem> {
        let t = text.trim();
        t.parse::<u8>()
            .ok()
            .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(Priority::new)
            .ok_or_else(|| Problem::UnknownPriority(t.to_string()))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an SLA error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A vif's SLA.
    Vif(VifId),
    /// A VM's (domain's) SLA.
    Vm(DomId),
    /// The SLA applied to vifs that have none of their own.
    Defaults,
    /// The physical link.
    Link,
    /// An SLA file entry whose identity is itself invalid: `[[table]]` number `index`
    /// (counting from 1).
    Entry {
        /// `vif` or `vm`.
        table: &'static str,
        /// Position in the file, from 1.
        index: usize,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Vif(v) => write!(f, "{v}"),
            Subject::Vm(d) => write!(f, "VM (domain {d})"),
            Subject::Defaults => write!(f, "default SLA"),
            Subject::Link => write!(f, "link"),
            Subject::Entry { table, index } => write!(f, "[[{table}]] entry {index}"),
        }
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The minimum is above the maximum.
    #[error("minimum {} b/s is above the maximum {} b/s", RateText(*min), RateText(*max))]
    MinAboveMax {
        /// B_i^min.
        min: u64,
        /// B_i^max.
        max: u64,
    },
    /// Not a class number `0..=7`.
    #[error("unknown priority class `{0}` (classes are 0 = highest to 7 = lowest)")]
    UnknownPriority(String),
    /// A rate's text could not be read.
    #[error(transparent)]
    Rate(#[from] RateParseError),
    /// A number below zero.
    #[error("{0} is negative")]
    Negative(i64),
    /// A number above the sanity bound.
    #[error("{value} is above the largest accepted value {limit}")]
    TooLarge {
        /// The value given.
        value: u64,
        /// The bound.
        limit: u64,
    },
    /// Zero where zero makes no sense (a link of capacity 0).
    #[error("must be greater than zero")]
    Zero,
    /// A value of the wrong type (e.g. a boolean where a rate is expected).
    #[error("expected {0}")]
    WrongType(&'static str),
    /// The same vif or VM is described twice.
    #[error("described more than once")]
    Duplicate,
    /// A required field is absent.
    #[error("missing")]
    Missing,
    /// Values that must agree do not (e.g. two vifs of one VM with different VM caps).
    #[error("{0}")]
    Conflict(String),
}

/// A validation error: which vif / VM / link, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: field `{field}`: {problem}")]
pub struct SlaError {
    /// What the error is about.
    pub subject: Subject,
    /// The field's name as written in the SLA file or xenstore key.
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

impl SlaError {
    /// An error about `field` of `subject`.
    pub fn new(subject: Subject, field: impl Into<String>, problem: Problem) -> Self {
        SlaError {
            subject,
            field: field.into(),
            problem,
        }
    }
}

/// Field names shared by the SLA file and (with the `dba-` prefix) the xenstore keys.
pub mod field {
    /// Priority class.
    pub const PRIORITY: &str = "priority";
    /// B_i^min in bits/s.
    pub const MIN_BPS: &str = "min-bps";
    /// B_i^max in bits/s.
    pub const MAX_BPS: &str = "max-bps";
    /// pps^VM_j in packets/s.
    pub const PPS: &str = "pps";
    /// B_p in bits/s.
    pub const CAPACITY_BPS: &str = "capacity-bps";
    /// The link's egress buffer in bytes (bounds the sum of the bursts).
    pub const BUFFER_BYTES: &str = "buffer-bytes";
    /// The link's egress buffer in packets (`txqueuelen`; bounds the sum of the packet
    /// bursts).
    pub const BUFFER_PACKETS: &str = "buffer-packets";
}

/// One vif's SLA: its class C_i, guaranteed minimum B_i^min and maximum B_i^max.
///
/// Invariants (checked by [`VifSla::new`]): `min_bps ≤ max_bps`, both ≤ [`MAX_BPS`].
/// `max_bps == None` means "no maximum other than the link". A maximum of `0` blocks
/// the vif.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VifSla {
    priority: Priority,
    min_bps: u64,
    max_bps: Option<u64>,
}

impl VifSla {
    /// Best effort: lowest class, no minimum, no maximum.
    pub const BEST_EFFORT: VifSla = VifSla {
        priority: Priority::LOWEST,
        min_bps: 0,
        max_bps: None,
    };

    /// A validated SLA. `subject` names the vif (or the defaults) in errors.
    pub fn new(
        subject: Subject,
        priority: Priority,
        min_bps: u64,
        max_bps: Option<u64>,
    ) -> Result<VifSla, SlaError> {
        let check = |field: &str, v: u64| {
            if v > MAX_BPS {
                Err(SlaError::new(
                    subject.clone(),
                    field,
                    Problem::TooLarge {
                        value: v,
                        limit: MAX_BPS,
                    },
                ))
            } else {
                Ok(())
            }
        };
        check(field::MIN_BPS, min_bps)?;
        if let Some(max) = max_bps {
            check(field::MAX_BPS, max)?;
            if min_bps > max {
                return Err(SlaError::new(
                    subject,
                    field::MIN_BPS,
                    Problem::MinAboveMax { min: min_bps, max },
                ));
            }
        }
        Ok(VifSla {
            priority,
            min_bps,
            max_bps,
        })
    }

    /// C_i.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// B_i^min, bits/s.
    pub fn min_bps(&self) -> u64 {
        self.min_bps
    }

    /// B_i^max, bits/s; `None` = limited by the link only.
    pub fn max_bps(&self) -> Option<u64> {
        self.max_bps
    }

    /// B_i^max bounded by the link: the most this vif can ever be given.
    pub fn max_bps_on(&self, link: &Link) -> u64 {
        self.max_bps
            .map_or(link.capacity_bps(), |m| m.min(link.capacity_bps()))
    }
}

/// A VM's SLA: its packets/s cap pps^VM_j, shared by its vifs (step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmSla {
    pps: Option<u64>,
}

impl VmSla {
    /// No packets/s cap.
    pub const UNCAPPED: VmSla = VmSla { pps: None };

    /// A validated VM SLA (`pps ≤` [`MAX_PPS`]). A cap of `0` blocks the VM.
    pub fn new(domid: DomId, pps: Option<u64>) -> Result<VmSla, SlaError> {
        if let Some(p) = pps {
            if p > MAX_PPS {
                return Err(SlaError::new(
                    Subject::Vm(domid),
                    field::PPS,
                    Problem::TooLarge {
                        value: p,
                        limit: MAX_PPS,
                    },
                ));
            }
        }
        Ok(VmSla { pps })
    }

    /// pps^VM_j, packets/s; `None` = no cap.
    pub fn pps(&self) -> Option<u64> {
        self.pps
    }
}

/// The physical interface p shared by the vifs: its capacity B_p in bits/s of L2 frame
/// bytes (see [`crate::rate`] for which bytes count) and, optionally, the egress buffer
/// in front of it (the NIC queue: `txqueuelen` × frame size), which bounds the sum of
/// the vifs' bursts (`docs/allocator.md` §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Link {
    capacity_bps: u64,
    buffer_bytes: Option<u64>,
    buffer_packets: Option<u64>,
}

/// The largest link buffer accepted, bytes (1 GiB: far above any NIC queue).
pub const MAX_BUFFER_BYTES: u64 = 1 << 30;
/// The largest link buffer accepted, packets.
pub const MAX_BUFFER_PACKETS: u64 = 1 << 24;

/// `value` of the link's `field` if it is in `1..=limit`.
fn checked_buffer(field: &str, value: u64, limit: u64) -> Result<u64, SlaError> {
    let err = |p| SlaError::new(Subject::Link, field, p);
    match value {
        0 => Err(err(Problem::Zero)),
        v if v > limit => Err(err(Problem::TooLarge { value: v, limit })),
        v => Ok(v),
    }
}

/// Ethernet's per-frame overhead outside the counted L2 bytes: preamble + SFD (8),
/// FCS (4) and the minimum inter-frame gap (12).
pub const ETHERNET_OVERHEAD_BYTES: u64 = 24;

impl Link {
    /// A link of capacity B_p bits/s (`0 < B_p ≤` [`MAX_BPS`]).
    pub fn new(capacity_bps: u64) -> Result<Link, SlaError> {
        if capacity_bps == 0 {
            return Err(SlaError::new(
                Subject::Link,
                field::CAPACITY_BPS,
                Problem::Zero,
            ));
        }
        if capacity_bps > MAX_BPS {
            return Err(SlaError::new(
                Subject::Link,
                field::CAPACITY_BPS,
                Problem::TooLarge {
                    value: capacity_bps,
                    limit: MAX_BPS,
                },
            ));
        }
        Ok(Link {
            capacity_bps,
            buffer_bytes: None,
            buffer_packets: None,
        })
    }

    /// This link with an egress buffer of `buffer_bytes` (`0 < buffer_bytes ≤`
    /// [`MAX_BUFFER_BYTES`]): every round then sizes the bursts so that their sum fits
    /// in half of it.
    pub fn with_buffer(self, buffer_bytes: u64) -> Result<Link, SlaError> {
        let b = checked_buffer(field::BUFFER_BYTES, buffer_bytes, MAX_BUFFER_BYTES)?;
        Ok(Link {
            buffer_bytes: Some(b),
            ..self
        })
    }

    /// The egress buffer, bytes; `None` = not configured (bursts are not bounded by it).
    pub fn buffer_bytes(&self) -> Option<u64> {
        self.buffer_bytes
    }

    /// This link with an egress buffer of `buffer_packets` packets (`0 < n ≤`
    /// [`MAX_BUFFER_PACKETS`]; Linux's `txqueuelen` counts packets): every round then
    /// sizes the packet bursts so that their sum fits in half of it.
    pub fn with_buffer_packets(self, buffer_packets: u64) -> Result<Link, SlaError> {
        let n = checked_buffer(field::BUFFER_PACKETS, buffer_packets, MAX_BUFFER_PACKETS)?;
        Ok(Link {
            buffer_packets: Some(n),
            ..self
        })
    }

    /// The egress buffer, packets; `None` = not configured.
    pub fn buffer_packets(&self) -> Option<u64> {
        self.buffer_packets
    }

    /// The L2 capacity of an Ethernet link of nominal `line_bps` when every frame is
    /// `frame_bytes` long (L2, no FCS): `line_bps × L / (L + 24)`. For 1 Gb/s and 1514-byte
    /// frames this is 984.4 Mb/s; for 60-byte frames 714.3 Mb/s.
    pub fn ethernet(line_bps: u64, frame_bytes: u64) -> Result<Link, SlaError> {
        let l = frame_bytes.max(1) as u128;
        let cap = line_bps as u128 * l / (l + ETHERNET_OVERHEAD_BYTES as u128);
        Link::new(cap.min(u64::MAX as u128) as u64)
    }

    /// B_p, bits/s.
    pub fn capacity_bps(&self) -> u64 {
        self.capacity_bps
    }
}

/// Parses a bits/s text value for `field` of `subject` (see [`crate::rate`]).
pub fn parse_bps(subject: &Subject, field: &str, text: &str) -> Result<u64, SlaError> {
    parse_rate(text, MAX_BPS).map_err(|e| SlaError::new(subject.clone(), field, e.into()))
}

/// Parses a packets/s text value for `field` of `subject` (see [`crate::rate`]).
pub fn parse_pps(subject: &Subject, field: &str, text: &str) -> Result<u64, SlaError> {
    parse_rate(text, MAX_PPS).map_err(|e| SlaError::new(subject.clone(), field, e.into()))
}

/// Everything the allocator needs to know about contracts: the link, the SLA of every
/// vif and VM that has one, and the SLA given to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaSet {
    link: Link,
    default_vif: VifSla,
    default_vm: VmSla,
    vifs: BTreeMap<VifId, VifSla>,
    vms: BTreeMap<DomId, VmSla>,
}

impl SlaSet {
    /// An empty set on `link`: every vif best effort ([`VifSla::BEST_EFFORT`]), every VM
    /// uncapped.
    pub fn new(link: Link) -> Self {
        SlaSet {
            link,
            default_vif: VifSla::BEST_EFFORT,
            default_vm: VmSla::UNCAPPED,
            vifs: BTreeMap::new(),
            vms: BTreeMap::new(),
        }
    }

    /// The link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Changes the link capacity (configuration).
    pub fn set_link(&mut self, link: Link) {
        self.link = link;
    }

    /// The SLA given to vifs without one.
    pub fn default_vif(&self) -> VifSla {
        self.default_vif
    }

    /// Sets the SLA given to vifs without one.
    pub fn set_default_vif(&mut self, sla: VifSla) {
        self.default_vif = sla;
    }

    /// The SLA given to VMs without one.
    pub fn default_vm(&self) -> VmSla {
        self.default_vm
    }

    /// Sets the SLA given to VMs without one.
    pub fn set_default_vm(&mut self, sla: VmSla) {
        self.default_vm = sla;
    }

    /// The SLA in force for `vif` (its own, else the default).
    pub fn vif(&self, vif: VifId) -> VifSla {
        self.vifs.get(&vif).copied().unwrap_or(self.default_vif)
    }

    /// The vif's own SLA, if it has one.
    pub fn vif_own(&self, vif: VifId) -> Option<VifSla> {
        self.vifs.get(&vif).copied()
    }

    /// The SLA in force for the VM `domid` (its own, else the default).
    pub fn vm(&self, domid: DomId) -> VmSla {
        self.vms.get(&domid).copied().unwrap_or(self.default_vm)
    }

    /// The VM's own SLA, if it has one.
    pub fn vm_own(&self, domid: DomId) -> Option<VmSla> {
        self.vms.get(&domid).copied()
    }

    /// Sets (replaces) a vif's SLA; returns the previous one.
    pub fn set_vif(&mut self, vif: VifId, sla: VifSla) -> Option<VifSla> {
        self.vifs.insert(vif, sla)
    }

    /// Removes a vif's own SLA (it falls back to the default).
    pub fn remove_vif(&mut self, vif: VifId) -> Option<VifSla> {
        self.vifs.remove(&vif)
    }

    /// Sets (replaces) a VM's SLA; returns the previous one.
    pub fn set_vm(&mut self, domid: DomId, sla: VmSla) -> Option<VmSla> {
        self.vms.insert(domid, sla)
    }

    /// Removes a VM's own SLA (it falls back to the default).
    pub fn remove_vm(&mut self, domid: DomId) -> Option<VmSla> {
        self.vms.remove(&domid)
    }

    /// The vifs with their own SLA, in id order.
    pub fn vifs(&self) -> impl Iterator<Item = (VifId, VifSla)> + '_ {
        self.vifs.iter().map(|(k, v)| (*k, *v))
    }

    /// The VMs with their own SLA, in domid order.
    pub fn vms(&self) -> impl Iterator<Item = (DomId, VmSla)> + '_ {
        self.vms.iter().map(|(k, v)| (*k, *v))
    }

    /// Σ B_i^min over the vifs with their own SLA: compare with the link to detect an
    /// over-committed host (the allocator copes, see `docs/allocator.md`).
    pub fn sum_min_bps(&self) -> u128 {
        self.vifs.values().map(|s| s.min_bps as u128).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_above_max_names_vif_and_field() {
        let e = VifSla::new(
            Subject::Vif(VifId::new(xen_ids::DomId(3), 0)),
            Priority::HIGHEST,
            900_000_000,
            Some(700_000_000),
        )
        .unwrap_err();
        assert_eq!(e.field, "min-bps");
        assert_eq!(
            e.to_string(),
            "vif3.0: field `min-bps`: minimum 900M b/s is above the maximum 700M b/s"
        );
    }

    #[test]
    fn absurd_values_rejected() {
        let e = VifSla::new(Subject::Defaults, Priority::LOWEST, 0, Some(MAX_BPS + 1)).unwrap_err();
        assert_eq!(e.field, "max-bps");
        assert!(matches!(e.problem, Problem::TooLarge { .. }));
        assert!(VmSla::new(xen_ids::DomId(4), Some(MAX_PPS + 1)).is_err());
        assert!(Link::new(0).is_err());
        assert!(Link::new(MAX_BPS + 1).is_err());
    }

    #[test]
    fn priorities() {
        assert_eq!(Priority::parse("0"), Ok(Priority::HIGHEST));
        assert_eq!(Priority::parse("7"), Ok(Priority::LOWEST));
        for bad in ["8", "-1", "gold", "", "+1", "255", "1.0"] {
            assert!(
                matches!(Priority::parse(bad), Err(Problem::UnknownPriority(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ethernet_capacity() {
        assert_eq!(
            Link::ethernet(1_000_000_000, 1514).unwrap().capacity_bps(),
            984_395_318
        );
        assert_eq!(
            Link::ethernet(1_000_000_000, 60).unwrap().capacity_bps(),
            714_285_714
        );
    }

    #[test]
    fn defaults_apply() {
        let mut s = SlaSet::new(Link::new(1_000_000_000).unwrap());
        let v = VifId::new(xen_ids::DomId(1), 0);
        assert_eq!(s.vif(v), VifSla::BEST_EFFORT);
        let sla = VifSla::new(Subject::Vif(v), Priority::HIGHEST, 1, Some(2)).unwrap();
        s.set_vif(v, sla);
        assert_eq!(s.vif(v), sla);
        assert_eq!(s.vm(xen_ids::DomId(1)).pps(), None);
        assert_eq!(sla.max_bps_on(s.link()), 2);
        assert_eq!(VifSla::BEST_EFFORT.max_bps_on(s.link()), 1_000_000_000);
    }
}
