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
    /// Receive B_i^min in bits/s.
    pub const RX_MIN_BPS: &str = "rx-min-bps";
    /// Receive B_i^max in bits/s.
    pub const RX_MAX_BPS: &str = "rx-max-bps";
    /// Receive pps^VM_j in packets/s.
    pub const RX_PPS: &str = "rx-pps";
    /// The link's receive capacity in bits/s (what the host can deliver to its guests).
    pub const RX_CAPACITY_BPS: &str = "rx-capacity-bps";
    /// The receive buffer in bytes (bounds the sum of the receive bursts).
    pub const RX_BUFFER_BYTES: &str = "rx-buffer-bytes";
    /// The receive buffer in packets.
    pub const RX_BUFFER_PACKETS: &str = "rx-buffer-packets";
}

/// A direction of traffic, seen from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// What the guest sends (guest TX, netback's TX ring).
    Tx,
    /// What the guest receives (guest RX, netback's RX ring).
    Rx,
}

/// One vif's SLA: its class C_i, guaranteed minimum B_i^min and maximum B_i^max for what
/// it sends (TX), and the same minimum and maximum for what it receives (RX). The class
/// is the vif's in both directions.
///
/// Invariants (checked by [`VifSla::new`] and [`VifSla::with_rx`]): `min_bps ≤ max_bps`,
/// `rx_min_bps ≤ rx_max_bps`, all ≤ [`MAX_BPS`]. A maximum of `None` means "no maximum
/// other than the link". A maximum of `0` blocks the vif in that direction. An SLA made
/// by [`VifSla::new`] alone names only TX: no receive minimum, no receive maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VifSla {
    priority: Priority,
    min_bps: u64,
    max_bps: Option<u64>,
    rx_min_bps: u64,
    rx_max_bps: Option<u64>,
}

/// Checks a (minimum, maximum) pair of `subject`: both ≤ [`MAX_BPS`], minimum ≤ maximum.
fn check_min_max(
    subject: &Subject,
    (min_field, min): (&str, u64),
    (max_field, max): (&str, Option<u64>),
) -> Result<(), SlaError> {
    let too_large = |field: &str, v: u64| {
        SlaError::new(
            subject.clone(),
            field,
            Problem::TooLarge {
                value: v,
                limit: MAX_BPS,
            },
        )
    };
    if min > MAX_BPS {
        return Err(too_large(min_field, min));
    }
    match max {
        Some(m) if m > MAX_BPS => Err(too_large(max_field, m)),
        Some(m) if min > m => Err(SlaError::new(
            subject.clone(),
            min_field,
            Problem::MinAboveMax { min, max: m },
        )),
        _ => Ok(()),
    }
}

impl VifSla {
    /// Best effort: lowest class, no minimum, no maximum, in either direction.
    pub const BEST_EFFORT: VifSla = VifSla {
        priority: Priority::LOWEST,
        min_bps: 0,
        max_bps: None,
        rx_min_bps: 0,
        rx_max_bps: None,
    };

    /// A validated SLA. `subject` names the vif (or the defaults) in errors.
    pub fn new(
        subject: Subject,
        priority: Priority,
        min_bps: u64,
        max_bps: Option<u64>,
    ) -> Result<VifSla, SlaError> {
        check_min_max(
            &subject,
            (field::MIN_BPS, min_bps),
            (field::MAX_BPS, max_bps),
        )?;
        Ok(VifSla {
            priority,
            min_bps,
            max_bps,
            ..VifSla::BEST_EFFORT
        })
    }

    /// This SLA with a receive minimum and maximum (validated like the TX pair; errors
    /// name `rx-min-bps` / `rx-max-bps`).
    pub fn with_rx(
        self,
        subject: Subject,
        rx_min_bps: u64,
        rx_max_bps: Option<u64>,
    ) -> Result<VifSla, SlaError> {
        check_min_max(
            &subject,
            (field::RX_MIN_BPS, rx_min_bps),
            (field::RX_MAX_BPS, rx_max_bps),
        )?;
        Ok(VifSla {
            rx_min_bps,
            rx_max_bps,
            ..self
        })
    }

    /// Receive B_i^min, bits/s.
    pub fn rx_min_bps(&self) -> u64 {
        self.rx_min_bps
    }

    /// Receive B_i^max, bits/s; `None` = limited by the receive link only.
    pub fn rx_max_bps(&self) -> Option<u64> {
        self.rx_max_bps
    }

    /// The SLA of one direction, in the TX fields (what steps 1 and 2 read): the
    /// allocator runs the same steps on each direction's projection.
    pub fn in_direction(&self, dir: Direction) -> VifSla {
        match dir {
            Direction::Tx => VifSla {
                rx_min_bps: 0,
                rx_max_bps: None,
                ..*self
            },
            Direction::Rx => VifSla {
                priority: self.priority,
                min_bps: self.rx_min_bps,
                max_bps: self.rx_max_bps,
                ..VifSla::BEST_EFFORT
            },
        }
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

/// A VM's SLA: its packets/s caps pps^VM_j for what it sends and for what it receives,
/// each shared by its vifs (step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmSla {
    pps: Option<u64>,
    rx_pps: Option<u64>,
}

/// `pps` of `field` if it is ≤ [`MAX_PPS`].
fn checked_pps(subject: Subject, field: &str, pps: Option<u64>) -> Result<Option<u64>, SlaError> {
    match pps {
        Some(p) if p > MAX_PPS => Err(SlaError::new(
            subject,
            field,
            Problem::TooLarge {
                value: p,
                limit: MAX_PPS,
            },
        )),
        _ => Ok(pps),
    }
}

impl VmSla {
    /// No packets/s cap.
    pub const UNCAPPED: VmSla = VmSla {
        pps: None,
        rx_pps: None,
    };

    /// A validated VM SLA (`pps ≤` [`MAX_PPS`]) for TX; no receive cap. A cap of `0`
    /// blocks the VM.
    pub fn new(domid: DomId, pps: Option<u64>) -> Result<VmSla, SlaError> {
        let pps = checked_pps(Subject::Vm(domid), field::PPS, pps)?;
        Ok(VmSla { pps, rx_pps: None })
    }

    /// This SLA with a receive packets/s cap (`≤` [`MAX_PPS`]; errors name `rx-pps`).
    pub fn with_rx_pps(self, domid: DomId, rx_pps: Option<u64>) -> Result<VmSla, SlaError> {
        let rx_pps = checked_pps(Subject::Vm(domid), field::RX_PPS, rx_pps)?;
        Ok(VmSla { rx_pps, ..self })
    }

    /// pps^VM_j, packets/s; `None` = no cap.
    pub fn pps(&self) -> Option<u64> {
        self.pps
    }

    /// Receive pps^VM_j, packets/s; `None` = no cap.
    pub fn rx_pps(&self) -> Option<u64> {
        self.rx_pps
    }

    /// The SLA of one direction, in the TX field (what step 2 reads).
    pub fn in_direction(&self, dir: Direction) -> VmSla {
        match dir {
            Direction::Tx => VmSla {
                pps: self.pps,
                rx_pps: None,
            },
            Direction::Rx => VmSla {
                pps: self.rx_pps,
                rx_pps: None,
            },
        }
    }
}

/// The physical interface p shared by the vifs: its capacity B_p in bits/s of L2 frame
/// bytes (see [`crate::rate`] for which bytes count) and, optionally, the egress buffer
/// in front of it (the NIC queue: `txqueuelen` × frame size), which bounds the sum of
/// the vifs' bursts (`docs/allocator.md` §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///
/// The receive direction (what the host delivers to its guests) has its own capacity and
/// buffer ([`Link::with_rx_capacity`], [`Link::with_rx_buffer`]); without a receive
/// capacity only the vifs' receive maximums and the VMs' receive caps limit it.
pub struct Link {
    capacity_bps: u64,
    buffer_bytes: Option<u64>,
    buffer_packets: Option<u64>,
    rx_capacity_bps: Option<u64>,
    rx_buffer_bytes: Option<u64>,
    rx_buffer_packets: Option<u64>,
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
    /// A link of capacity B_p bits/s (`0 < B_p ≤` [`MAX_BPS`]), transmit direction; the
    /// receive direction unconfigured.
    pub fn new(capacity_bps: u64) -> Result<Link, SlaError> {
        let capacity_bps = checked_buffer(field::CAPACITY_BPS, capacity_bps, MAX_BPS)?;
        Ok(Link {
            capacity_bps,
            buffer_bytes: None,
            buffer_packets: None,
            rx_capacity_bps: None,
            rx_buffer_bytes: None,
            rx_buffer_packets: None,
        })
    }

    /// This link with a receive capacity (`0 <` bits/s `≤` [`MAX_BPS`]): what the host
    /// can deliver to its guests, shared by the receive allocation.
    pub fn with_rx_capacity(self, bps: u64) -> Result<Link, SlaError> {
        let b = checked_buffer(field::RX_CAPACITY_BPS, bps, MAX_BPS)?;
        Ok(Link {
            rx_capacity_bps: Some(b),
            ..self
        })
    }

    /// This link with a receive buffer of `bytes` (bounds the sum of the receive bursts,
    /// as [`Link::with_buffer`] does for TX).
    pub fn with_rx_buffer(self, bytes: u64) -> Result<Link, SlaError> {
        let b = checked_buffer(field::RX_BUFFER_BYTES, bytes, MAX_BUFFER_BYTES)?;
        Ok(Link {
            rx_buffer_bytes: Some(b),
            ..self
        })
    }

    /// This link with a receive buffer of `packets`.
    pub fn with_rx_buffer_packets(self, packets: u64) -> Result<Link, SlaError> {
        let n = checked_buffer(field::RX_BUFFER_PACKETS, packets, MAX_BUFFER_PACKETS)?;
        Ok(Link {
            rx_buffer_packets: Some(n),
            ..self
        })
    }

    /// The receive capacity, bits/s; `None` = not configured.
    pub fn rx_capacity_bps(&self) -> Option<u64> {
        self.rx_capacity_bps
    }

    /// The receive buffer, bytes; `None` = not configured.
    pub fn rx_buffer_bytes(&self) -> Option<u64> {
        self.rx_buffer_bytes
    }

    /// The receive buffer, packets; `None` = not configured.
    pub fn rx_buffer_packets(&self) -> Option<u64> {
        self.rx_buffer_packets
    }

    /// The link of one direction, in the TX fields (what the allocation reads). An
    /// unconfigured receive capacity is [`MAX_BPS`]: only maximums and caps bind.
    pub fn in_direction(&self, dir: Direction) -> Link {
        match dir {
            Direction::Tx => Link {
                rx_capacity_bps: None,
                rx_buffer_bytes: None,
                rx_buffer_packets: None,
                ..*self
            },
            Direction::Rx => Link {
                capacity_bps: self.rx_capacity_bps.unwrap_or(MAX_BPS),
                buffer_bytes: self.rx_buffer_bytes,
                buffer_packets: self.rx_buffer_packets,
                rx_capacity_bps: None,
                rx_buffer_bytes: None,
                rx_buffer_packets: None,
            },
        }
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

    /// The set of one direction: link, defaults, vifs and VMs projected with their
    /// `in_direction` (the receive values in the TX fields for [`Direction::Rx`]), so
    /// that one allocation serves both directions.
    pub fn in_direction(&self, dir: Direction) -> SlaSet {
        SlaSet {
            link: self.link.in_direction(dir),
            default_vif: self.default_vif.in_direction(dir),
            default_vm: self.default_vm.in_direction(dir),
            vifs: self
                .vifs
                .iter()
                .map(|(k, v)| (*k, v.in_direction(dir)))
                .collect(),
            vms: self
                .vms
                .iter()
                .map(|(k, v)| (*k, v.in_direction(dir)))
                .collect(),
        }
    }

    /// Whether anything limits what `vif` receives: a receive capacity, a receive
    /// maximum in its SLA or a receive cap on its VM. When nothing does, its receive
    /// budget is unlimited (an SLA naming only TX keeps RX unlimited).
    pub fn rx_limited(&self, vif: VifId) -> bool {
        self.link.rx_capacity_bps.is_some()
            || self.vif(vif).rx_max_bps.is_some()
            || self.vm(vif.domid).rx_pps.is_some()
    }

    /// Whether any receive setting exists (capacity, a receive maximum or minimum of a
    /// vif or the defaults, a VM's receive cap): when none does, no receive round is
    /// needed.
    pub fn rx_configured(&self) -> bool {
        let vif_rx = |s: &VifSla| s.rx_min_bps > 0 || s.rx_max_bps.is_some();
        self.link.rx_capacity_bps.is_some()
            || vif_rx(&self.default_vif)
            || self.default_vm.rx_pps.is_some()
            || self.vifs.values().any(vif_rx)
            || self.vms.values().any(|v| v.rx_pps.is_some())
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
    fn receive_values_are_checked_and_projected() {
        let v = VifId::new(xen_ids::DomId(3), 1);
        let tx = VifSla::new(Subject::Vif(v), Priority::HIGHEST, 5, Some(9)).unwrap();
        assert_eq!((tx.rx_min_bps(), tx.rx_max_bps()), (0, None));
        let e = tx.with_rx(Subject::Vif(v), 20, Some(10)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vif3.1: field `rx-min-bps`: minimum 20 b/s is above the maximum 10 b/s"
        );
        let e = tx
            .with_rx(Subject::Vif(v), 0, Some(MAX_BPS + 1))
            .unwrap_err();
        assert_eq!(e.field, "rx-max-bps");
        let both = tx.with_rx(Subject::Vif(v), 7, Some(8)).unwrap();
        let rx = both.in_direction(Direction::Rx);
        assert_eq!(
            (rx.priority(), rx.min_bps(), rx.max_bps()),
            (Priority::HIGHEST, 7, Some(8))
        );
        assert_eq!(both.in_direction(Direction::Tx), tx);
        let e = VmSla::new(xen_ids::DomId(3), Some(1))
            .unwrap()
            .with_rx_pps(xen_ids::DomId(3), Some(MAX_PPS + 1))
            .unwrap_err();
        assert_eq!(e.field, "rx-pps");
        let link = Link::new(1000).unwrap();
        assert_eq!(link.in_direction(Direction::Rx).capacity_bps(), MAX_BPS);
        let e = link.with_rx_capacity(0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "link: field `rx-capacity-bps`: must be greater than zero"
        );
        let link = link
            .with_rx_capacity(500)
            .unwrap()
            .with_rx_buffer(64)
            .unwrap();
        let rx = link.in_direction(Direction::Rx);
        assert_eq!((rx.capacity_bps(), rx.buffer_bytes()), (500, Some(64)));
        assert_eq!(link.in_direction(Direction::Tx).capacity_bps(), 1000);
    }

    #[test]
    fn tx_only_slas_leave_receive_unlimited() {
        let mut s = SlaSet::new(Link::new(1_000_000_000).unwrap());
        let v = VifId::new(xen_ids::DomId(1), 0);
        s.set_vif(
            v,
            VifSla::new(Subject::Vif(v), Priority::HIGHEST, 1, Some(2)).unwrap(),
        );
        s.set_vm(v.domid, VmSla::new(v.domid, Some(10)).unwrap());
        assert!(!s.rx_configured());
        assert!(!s.rx_limited(v));
        let sla = s.vif(v).with_rx(Subject::Vif(v), 0, Some(5)).unwrap();
        s.set_vif(v, sla);
        assert!(s.rx_configured() && s.rx_limited(v));
        assert!(!s.rx_limited(VifId::new(xen_ids::DomId(2), 0)));
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
