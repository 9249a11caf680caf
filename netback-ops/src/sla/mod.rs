//! A vif's SLA keys in xenstore (`dba-priority`, `dba-min-bps`, `dba-max-bps`,
//! `dba-vm-pps` and the receive side's `dba-rx-min-bps`, `dba-rx-max-bps`,
//! `dba-rx-vm-pps`, `docs/allocator.md` §10.2), administered as the toolstack domain:
//!
//! * [`set`]: validate the values given, alone and merged with the keys already there,
//!   then write them in one transaction; report the VM's other vifs whose VM cap differs;
//! * [`remove`]: remove some or all keys in one transaction;
//! * [`list`] and [`show()`]: the keys of vifs, whether they parse, and the live figures
//!   of a scrape ([`show::SlaView`]).
//!
//! Values are validated with the allocator's own parsers (`allocator::xenstore`) and the
//! best-effort defaults; a running daemon validates again with its SLA file's defaults.
//! Nothing is written unless everything validates, and nothing is written for a vif whose
//! backend directory does not exist (a typo cannot create a stray device directory).

pub mod show;
#[cfg(test)]
mod tests;

use std::fmt;

use allocator::xenstore::{
    parse_vif_keys, VifKeyValues, KEYS, KEY_MAX_BPS, KEY_MIN_BPS, KEY_PRIORITY, KEY_RX_MAX_BPS,
    KEY_RX_MIN_BPS, KEY_RX_VM_PPS, KEY_VM_PPS,
};
use allocator::VifSla;
use xen_ids::{DomId, VifId};
use xenstore::{with_transaction, Xenstore, XsError, XsTx};

pub use show::{show, Live, RxBudget, Shaped, SlaView};

/// One of a vif's SLA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaField {
    /// `dba-priority`: class 0 (highest) to 7.
    Priority,
    /// `dba-min-bps`: guaranteed minimum, bits/s.
    MinBps,
    /// `dba-max-bps`: maximum, bits/s.
    MaxBps,
    /// `dba-vm-pps`: packets/s cap of the vif's VM.
    VmPps,
    /// `dba-rx-min-bps`: guaranteed receive minimum, bits/s.
    RxMinBps,
    /// `dba-rx-max-bps`: receive maximum, bits/s.
    RxMaxBps,
    /// `dba-rx-vm-pps`: receive packets/s cap of the vif's VM.
    RxVmPps,
}

impl SlaField {
    /// Every field, in the order of [`KEYS`].
    pub const ALL: [SlaField; 7] = [
        SlaField::Priority,
        SlaField::MinBps,
        SlaField::MaxBps,
        SlaField::VmPps,
        SlaField::RxMinBps,
        SlaField::RxMaxBps,
        SlaField::RxVmPps,
    ];

    /// The xenstore key.
    pub fn key(self) -> &'static str {
        match self {
            SlaField::Priority => KEY_PRIORITY,
            SlaField::MinBps => KEY_MIN_BPS,
            SlaField::MaxBps => KEY_MAX_BPS,
            SlaField::VmPps => KEY_VM_PPS,
            SlaField::RxMinBps => KEY_RX_MIN_BPS,
            SlaField::RxMaxBps => KEY_RX_MAX_BPS,
            SlaField::RxVmPps => KEY_RX_VM_PPS,
        }
    }
}

/// A vif's backend directory: `/local/domain/<backend>/backend/<type>/<domid>/<devid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifDir {
    /// The backend's (our) domain.
    pub backend: DomId,
    /// The backend device type directory (`vif`, or e.g. `vif-dba`).
    pub backend_type: String,
    /// The vif.
    pub vif: VifId,
}

impl VifDir {
    /// The directory of `vif` under `backend`'s `backend_type` directory.
    pub fn new(backend: DomId, backend_type: impl Into<String>, vif: VifId) -> Self {
        VifDir {
            backend,
            backend_type: backend_type.into(),
            vif,
        }
    }

    /// The directory's path.
    pub fn path(&self) -> String {
        format!(
            "{}/{}/{}",
            type_dir(self.backend, &self.backend_type),
            self.vif.domid,
            self.vif.devid
        )
    }
}

/// `/local/domain/<backend>/backend/<type>`: where a backend's vifs of one type live.
pub fn type_dir(backend: DomId, backend_type: &str) -> String {
    format!("/local/domain/{backend}/backend/{backend_type}")
}

/// What `sla set` writes: the values as the operator typed them (`None`: keep the key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaUpdate {
    /// `dba-priority`.
    pub priority: Option<String>,
    /// `dba-min-bps`.
    pub min_bps: Option<String>,
    /// `dba-max-bps`.
    pub max_bps: Option<String>,
    /// `dba-vm-pps`.
    pub vm_pps: Option<String>,
    /// `dba-rx-min-bps`.
    pub rx_min_bps: Option<String>,
    /// `dba-rx-max-bps`.
    pub rx_max_bps: Option<String>,
    /// `dba-rx-vm-pps`.
    pub rx_vm_pps: Option<String>,
}

impl SlaUpdate {
    /// The (key, trimmed value) pairs given, in the order of [`KEYS`].
    pub fn keys(&self) -> Vec<(&'static str, String)> {
        [
            (KEY_PRIORITY, &self.priority),
            (KEY_MIN_BPS, &self.min_bps),
            (KEY_MAX_BPS, &self.max_bps),
            (KEY_VM_PPS, &self.vm_pps),
            (KEY_RX_MIN_BPS, &self.rx_min_bps),
            (KEY_RX_MAX_BPS, &self.rx_max_bps),
            (KEY_RX_VM_PPS, &self.rx_vm_pps),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?.trim().to_string())))
        .collect()
    }

    /// Checks the values given, alone, for `vif` (what [`set`] checks before it touches
    /// xenstore): at least one, each parses, and together they are consistent.
    pub fn check(&self, vif: VifId) -> Result<(), SlaError> {
        let new = self.keys();
        if new.is_empty() {
            return Err(SlaError::NothingToSet);
        }
        // The values given, alone: an error names the field the operator typed.
        validate(vif, &new).map_err(SlaError::Invalid)
    }
}

/// A xenstore operation, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsOp {
    /// Reading a node.
    Read,
    /// Listing a directory.
    List,
    /// A transaction updating a vif's keys.
    Update,
}

impl fmt::Display for XsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XsOp::Read => "read",
            XsOp::List => "list",
            XsOp::Update => "update",
        })
    }
}

/// Why an SLA command failed. Every variant but [`SlaError::Xenstore`] guarantees that
/// nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    /// `set` without any value.
    #[error(
        "give at least one of --priority, --min-bps, --max-bps, --vm-pps, --rx-min-bps, \
         --rx-max-bps, --rx-vm-pps"
    )]
    NothingToSet,
    /// A value given does not parse, or the values given contradict each other.
    #[error("{0}; nothing written")]
    Invalid(#[source] allocator::SlaError),
    /// The values given are valid alone but not with the keys already in the directory.
    #[error("with the keys already in {dir}: {source}; nothing written")]
    InvalidWithExisting {
        /// The vif's backend directory.
        dir: String,
        /// The problem, naming the key.
        source: allocator::SlaError,
    },
    /// The vif's backend directory does not exist.
    #[error(
        "no {vif}: {dir} does not exist (create the vif first: `netback vif-add` or the toolstack)"
    )]
    NoVif {
        /// The vif.
        vif: VifId,
        /// Its (missing) backend directory.
        dir: String,
    },
    /// xenstore refused or failed.
    #[error("{op} {path}: {source}")]
    Xenstore {
        /// What was being done.
        op: XsOp,
        /// On which path.
        path: String,
        /// The error.
        source: XsError,
    },
}

fn xs_err(op: XsOp, path: &str) -> impl FnOnce(XsError) -> SlaError + '_ {
    move |source| SlaError::Xenstore {
        op,
        path: path.to_string(),
        source,
    }
}

/// The SLA keys present in `dir`, in the order of [`KEYS`].
pub fn read_keys<X: Xenstore + ?Sized>(
    xs: &X,
    dir: &str,
) -> Result<Vec<(&'static str, String)>, SlaError> {
    key_values(xs, XsTx::NONE, dir).map_err(xs_err(XsOp::Read, dir))
}

/// [`read_keys`] in `tx`.
fn key_values<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    dir: &str,
) -> Result<Vec<(&'static str, String)>, XsError> {
    let mut out = Vec::new();
    for k in KEYS {
        if let Some(v) = xs.try_read(tx, &format!("{dir}/{k}"))? {
            out.push((k, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(out)
}

/// Parses (key, value) pairs as a vif's keys, over the best-effort defaults.
fn validate(vif: VifId, kv: &[(&'static str, String)]) -> Result<(), allocator::SlaError> {
    let lookup = |k: &str| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
    parse_vif_keys(vif, &VifKeyValues::read_with(lookup), VifSla::BEST_EFFORT).map(|_| ())
}

/// `existing` with the keys of `new` replaced or added.
fn merge(
    mut existing: Vec<(&'static str, String)>,
    new: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    existing.retain(|(k, _)| !new.iter().any(|(n, _)| n == k));
    existing.extend(new.iter().cloned());
    existing
}

/// `at`'s path if it exists (its `frontend-id` node is there), read in `tx`.
fn existing_dir<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    at: &VifDir,
) -> Result<Option<String>, XsError> {
    let dir = at.path();
    Ok(xs.try_read(tx, &format!("{dir}/frontend-id"))?.map(|_| dir))
}

fn no_vif(at: &VifDir) -> SlaError {
    SlaError::NoVif {
        vif: at.vif,
        dir: at.path(),
    }
}

/// Another vif of the same VM whose `dba-vm-pps` (or `dba-rx-vm-pps`) differs from the
/// one just written (the cap is per VM but written per vif; the daemon applies the
/// smallest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmCapMismatch {
    /// The other vif.
    pub vif: VifId,
    /// The key compared: `dba-vm-pps` or `dba-rx-vm-pps`.
    pub key: &'static str,
    /// Its value of that key (`None`: absent).
    pub value: Option<String>,
}

impl fmt::Display for VmCapMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} = {}; a VM's cap should be the same on all its vifs \
             (the smallest applies)",
            self.vif,
            self.key,
            self.value.as_deref().unwrap_or("(absent)")
        )
    }
}

/// What [`set`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    /// The vif's backend directory.
    pub dir: String,
    /// The keys written, with their values.
    pub written: Vec<(&'static str, String)>,
    /// When `dba-vm-pps` or `dba-rx-vm-pps` was written: the VM's other vifs with a
    /// different cap.
    pub vm_cap_mismatches: Vec<VmCapMismatch>,
}

/// Writes the values of `update` in `at`, in one transaction, after checking them alone
/// and merged with the keys already there (an error writes nothing).
pub fn set<X: Xenstore + ?Sized>(
    xs: &X,
    at: &VifDir,
    update: &SlaUpdate,
) -> Result<SetReport, SlaError> {
    update.check(at.vif)?;
    let new = update.keys();
    let path = at.path();
    let dir = with_transaction(xs, |tx| {
        let Some(dir) = existing_dir(xs, tx, at)? else {
            return Ok(Err(no_vif(at)));
        };
        let existing = key_values(xs, tx, &dir)?;
        // Combined with the keys already there (e.g. a new minimum above the maximum).
        if let Err(source) = validate(at.vif, &merge(existing, &new)) {
            return Ok(Err(SlaError::InvalidWithExisting { dir, source }));
        }
        for (k, v) in &new {
            xs.write(tx, &format!("{dir}/{k}"), v.as_bytes())?;
        }
        Ok(Ok(dir))
    })
    .map_err(xs_err(XsOp::Update, &path))??;
    let vm_cap_mismatches = new
        .iter()
        .filter(|(k, _)| [KEY_VM_PPS, KEY_RX_VM_PPS].contains(k))
        .flat_map(|(k, pps)| vm_cap_mismatches(xs, at, k, pps))
        .collect();
    Ok(SetReport {
        dir,
        written: new,
        vm_cap_mismatches,
    })
}

/// The vifs of `at`'s domain (same backend and type) other than `at` whose VM cap `key`
/// (`dba-vm-pps` or `dba-rx-vm-pps`) differs from `pps` (compared as parsed rates: `20k`
/// equals `20000`). Best effort: nodes that cannot be read are skipped.
pub fn vm_cap_mismatches<X: Xenstore + ?Sized>(
    xs: &X,
    at: &VifDir,
    key: &'static str,
    pps: &str,
) -> Vec<VmCapMismatch> {
    let parse = |v: &str| allocator::rate::parse_rate(v, allocator::rate::MAX_PPS).ok();
    let ours = parse(pps);
    let parent = format!(
        "{}/{}",
        type_dir(at.backend, &at.backend_type),
        at.vif.domid
    );
    let Ok(siblings) = xs.directory(XsTx::NONE, &parent) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for devid in siblings.iter().filter_map(|d| d.parse::<u32>().ok()) {
        if devid == at.vif.devid {
            continue;
        }
        let value = match xs.try_read(XsTx::NONE, &format!("{parent}/{devid}/{key}")) {
            Ok(v) => v.map(|v| String::from_utf8_lossy(&v).into_owned()),
            Err(_) => continue,
        };
        if value.as_deref().and_then(parse) != ours {
            out.push(VmCapMismatch {
                vif: VifId::new(at.vif.domid, devid),
                key,
                value,
            });
        }
    }
    out
}

/// Removes `fields` (all of them when empty) from `at` in one transaction; returns the
/// paths removed (keys that were absent are skipped).
pub fn remove<X: Xenstore + ?Sized>(
    xs: &X,
    at: &VifDir,
    fields: &[SlaField],
) -> Result<Vec<String>, SlaError> {
    let fields = if fields.is_empty() {
        &SlaField::ALL[..]
    } else {
        fields
    };
    let path = at.path();
    with_transaction(xs, |tx| {
        let Some(dir) = existing_dir(xs, tx, at)? else {
            return Ok(Err(no_vif(at)));
        };
        let mut removed = Vec::new();
        for f in fields {
            let p = format!("{dir}/{}", f.key());
            if xs.try_read(tx, &p)?.is_some() {
                xs.rm(tx, &p)?;
                removed.push(p);
            }
        }
        Ok(Ok(removed))
    })
    .map_err(xs_err(XsOp::Update, &path))?
}

/// The vifs under `backend`'s `backend_type` directory, sorted: all of them, those of
/// `frontend`, or the one `frontend`/`devid` (listed whether it exists or not; [`show()`]
/// checks). A missing directory lists nothing.
pub fn list<X: Xenstore + ?Sized>(
    xs: &X,
    backend: DomId,
    backend_type: &str,
    frontend: Option<DomId>,
    devid: Option<u32>,
) -> Result<Vec<VifDir>, SlaError> {
    let root = type_dir(backend, backend_type);
    let ls = |path: &str| -> Result<Vec<String>, SlaError> {
        match xs.directory(XsTx::NONE, path) {
            Ok(d) => Ok(d),
            Err(e) if e.is_enoent() => Ok(Vec::new()),
            Err(e) => Err(xs_err(XsOp::List, path)(e)),
        }
    };
    let domids: Vec<DomId> = match frontend {
        Some(d) => vec![d],
        None => ls(&root)?.iter().filter_map(|d| d.parse().ok()).collect(),
    };
    let mut vifs = Vec::new();
    for d in domids {
        match devid {
            Some(i) => vifs.push(VifId::new(d, i)),
            None => vifs.extend(
                ls(&format!("{root}/{d}"))?
                    .iter()
                    .filter_map(|i| i.parse().ok())
                    .map(|i| VifId::new(d, i)),
            ),
        }
    }
    vifs.sort_unstable_by_key(|v| (v.domid.0, v.devid));
    Ok(vifs
        .into_iter()
        .map(|v| VifDir::new(backend, backend_type, v))
        .collect())
}
