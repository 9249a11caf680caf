//! Per-vif SLA keys in xenstore: their names, the parsing of their values, and
//! [`XenstoreSlas`], the state a netback keeps while it watches them.
//!
//! The keys live in the vif's **backend** directory, next to netback's own keys
//! (`frontend`, `state`, `rate`, …), so that only the toolstack / dom0 can write them:
//!
//! ```text
//! /local/domain/<backend-domid>/backend/vif/<domid>/<devid>/
//!     dba-priority = "1"        C_i: class 0 (highest) ..= 7 (lowest)
//!     dba-min-bps  = "150M"     B_i^min, bits/s of L2 frame bytes
//!     dba-max-bps  = "150M"     B_i^max, bits/s of L2 frame bytes
//!     dba-vm-pps   = "20k"      pps^VM_j of the vif's VM (domain), packets/s
//!     dba-rx-min-bps = "100M"   receive B_i^min
//!     dba-rx-max-bps = "300M"   receive B_i^max
//!     dba-rx-vm-pps  = "20k"    receive pps^VM_j of the vif's VM
//! ```
//!
//! A vif whose keys name only TX receives without limit (unless the link has a receive
//! capacity configured).
//!
//! Values use the text form of [`crate::rate`] (a decimal integer with an optional
//! `k`/`M`/`G`/`T`), priorities a decimal class number. A vif with none of the keys has
//! the default SLA; a missing key takes the default's value for that field. The VM cap is
//! written on every vif of the VM (a domain has no backend directory of its own that
//! toolstacks would not mistake for a device); if the vifs disagree, the smallest cap
//! applies (never more than any of the values written) and the disagreement is reported.
//!
//! The netback watches `<backend dir>/dba-` keys of each connected vif (a watch on the vif's
//! backend directory fires for them), reads the four keys and calls
//! [`XenstoreSlas::update_vif`]; on an error the vif keeps its previous SLA.

use std::collections::BTreeMap;

use crate::sla::{
    field, parse_bps, parse_pps, DomId, Priority, SlaError, SlaSet, Subject, VifId, VifSla, VmSla,
};

/// `dba-priority`: the vif's class C_i.
pub const KEY_PRIORITY: &str = "dba-priority";
/// `dba-min-bps`: B_i^min.
pub const KEY_MIN_BPS: &str = "dba-min-bps";
/// `dba-max-bps`: B_i^max.
pub const KEY_MAX_BPS: &str = "dba-max-bps";
/// `dba-vm-pps`: the packets/s cap of the vif's VM.
pub const KEY_VM_PPS: &str = "dba-vm-pps";
/// `dba-rx-min-bps`: receive B_i^min.
pub const KEY_RX_MIN_BPS: &str = "dba-rx-min-bps";
/// `dba-rx-max-bps`: receive B_i^max.
pub const KEY_RX_MAX_BPS: &str = "dba-rx-max-bps";
/// `dba-rx-vm-pps`: the receive packets/s cap of the vif's VM.
pub const KEY_RX_VM_PPS: &str = "dba-rx-vm-pps";
/// All SLA keys, in the order above.
pub const KEYS: [&str; 7] = [
    KEY_PRIORITY,
    KEY_MIN_BPS,
    KEY_MAX_BPS,
    KEY_VM_PPS,
    KEY_RX_MIN_BPS,
    KEY_RX_MAX_BPS,
    KEY_RX_VM_PPS,
];

/// The vif's backend directory, `/local/domain/<backend>/backend/vif/<domid>/<devid>`.
pub fn vif_backend_dir(backend_domid: DomId, vif: VifId) -> String {
    format!(
        "/local/domain/{backend_domid}/backend/vif/{}/{}",
        vif.domid, vif.devid
    )
}

/// The raw values of a vif's SLA keys as read from xenstore (`None` = key absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifKeyValues<'a> {
    /// `dba-priority`.
    pub priority: Option<&'a str>,
    /// `dba-min-bps`.
    pub min_bps: Option<&'a str>,
    /// `dba-max-bps`.
    pub max_bps: Option<&'a str>,
    /// `dba-vm-pps`.
    pub vm_pps: Option<&'a str>,
    /// `dba-rx-min-bps`.
    pub rx_min_bps: Option<&'a str>,
    /// `dba-rx-max-bps`.
    pub rx_max_bps: Option<&'a str>,
    /// `dba-rx-vm-pps`.
    pub rx_vm_pps: Option<&'a str>,
}

impl<'a> VifKeyValues<'a> {
    /// Collects the values with `read(key)` (e.g. a closure over a xenstore directory
    /// listing or a map), for each of [`KEYS`].
    pub fn read_with(mut read: impl FnMut(&str) -> Option<&'a str>) -> Self {
        VifKeyValues {
            priority: read(KEY_PRIORITY),
            min_bps: read(KEY_MIN_BPS),
            max_bps: read(KEY_MAX_BPS),
            vm_pps: read(KEY_VM_PPS),
            rx_min_bps: read(KEY_RX_MIN_BPS),
            rx_max_bps: read(KEY_RX_MAX_BPS),
            rx_vm_pps: read(KEY_RX_VM_PPS),
        }
    }

    /// None of the keys is present.
    pub fn is_empty(&self) -> bool {
        [
            self.priority,
            self.min_bps,
            self.max_bps,
            self.vm_pps,
            self.rx_min_bps,
            self.rx_max_bps,
            self.rx_vm_pps,
        ]
        .iter()
        .all(Option::is_none)
    }
}

/// A vif's SLA as read from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifKeys {
    /// The vif's SLA (`None`: no bandwidth key present; the default applies).
    pub sla: Option<VifSla>,
    /// The VM cap written on this vif (`None`: key absent).
    pub vm_pps: Option<u64>,
    /// The VM's receive cap written on this vif (`None`: key absent).
    pub rx_vm_pps: Option<u64>,
}

/// Parses a vif's key values. Missing fields take `defaults`' values. Errors name the vif
/// and the key.
pub fn parse_vif_keys(
    vif: VifId,
    values: &VifKeyValues<'_>,
    defaults: VifSla,
) -> Result<VifKeys, SlaError> {
    let s = Subject::Vif(vif);
    let priority = values
        .priority
        .map(|t| Priority::parse(t).map_err(|p| SlaError::new(s.clone(), KEY_PRIORITY, p)))
        .transpose()?;
    let min = values
        .min_bps
        .map(|t| parse_bps(&s, KEY_MIN_BPS, t))
        .transpose()?;
    let max = values
        .max_bps
        .map(|t| parse_bps(&s, KEY_MAX_BPS, t))
        .transpose()?;
    let vm_pps = values
        .vm_pps
        .map(|t| parse_pps(&s, KEY_VM_PPS, t))
        .transpose()?;
    let bps = |key, v: Option<&str>| v.map(|t| parse_bps(&s, key, t)).transpose();
    let rx_min = bps(KEY_RX_MIN_BPS, values.rx_min_bps)?;
    let rx_max = bps(KEY_RX_MAX_BPS, values.rx_max_bps)?;
    let rx_vm_pps = values
        .rx_vm_pps
        .map(|t| parse_pps(&s, KEY_RX_VM_PPS, t))
        .transpose()?;
    let named = [priority.map(|_| 0), min, max, rx_min, rx_max];
    let sla = if named.iter().all(Option::is_none) {
        None
    } else {
        let sla = VifSla::new(
            s.clone(),
            priority.unwrap_or(defaults.priority()),
            min.unwrap_or(defaults.min_bps()),
            max.or(defaults.max_bps()),
        )
        .and_then(|v| {
            v.with_rx(
                s.clone(),
                rx_min.unwrap_or(defaults.rx_min_bps()),
                rx_max.or(defaults.rx_max_bps()),
            )
        })
        .map_err(|mut e| {
            // Name the xenstore key, not the file field.
            e.field = match e.field.as_str() {
                field::MIN_BPS => KEY_MIN_BPS.to_string(),
                field::MAX_BPS => KEY_MAX_BPS.to_string(),
                field::RX_MIN_BPS => KEY_RX_MIN_BPS.to_string(),
                field::RX_MAX_BPS => KEY_RX_MAX_BPS.to_string(),
                other => other.to_string(),
            };
            e
        })?;
        Some(sla)
    };
    Ok(VifKeys {
        sla,
        vm_pps,
        rx_vm_pps,
    })
}

/// The SLAs a netback has read from xenstore, with last-good semantics per vif.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XenstoreSlas {
    vifs: BTreeMap<VifId, VifKeys>,
}

impl XenstoreSlas {
    /// No vif known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the keys just read for `vif`. On error nothing changes: the vif keeps the
    /// SLA it had (the caller logs the error, which names the vif and key).
    pub fn update_vif(
        &mut self,
        vif: VifId,
        values: &VifKeyValues<'_>,
        defaults: VifSla,
    ) -> Result<(), SlaError> {
        let keys = parse_vif_keys(vif, values, defaults)?;
        self.vifs.insert(vif, keys);
        Ok(())
    }

    /// Forgets a vif (it disconnected, or its backend directory was removed).
    pub fn remove_vif(&mut self, vif: VifId) {
        self.vifs.remove(&vif);
    }

    /// The keys recorded for `vif`.
    pub fn vif(&self, vif: VifId) -> Option<&VifKeys> {
        self.vifs.get(&vif)
    }

    /// The SLAs in force: `base` (link, defaults, and any SLA from a file) overlaid with
    /// every vif's xenstore SLA and VM cap. Also returns the VMs whose vifs disagree on
    /// `dba-vm-pps` (the smallest value is used), as errors to log. Call it after each
    /// update; a removed key reverts the field to `base`.
    pub fn overlay(&self, base: &SlaSet) -> (SlaSet, Vec<SlaError>) {
        let mut set = base.clone();
        for (vif, keys) in &self.vifs {
            if let Some(sla) = keys.sla {
                set.set_vif(*vif, sla);
            }
        }
        let mut conflicts = Vec::new();
        let tx = self.vm_caps(KEY_VM_PPS, |k| k.vm_pps, &mut conflicts);
        let rx = self.vm_caps(KEY_RX_VM_PPS, |k| k.rx_vm_pps, &mut conflicts);
        let domids: std::collections::BTreeSet<DomId> =
            tx.keys().chain(rx.keys()).copied().collect();
        for domid in domids {
            let own = set.vm(domid);
            let pps = tx.get(&domid).copied().or(own.pps());
            let rx_pps = rx.get(&domid).copied().or(own.rx_pps());
            // The caps passed the per-vif validation, so they are in range.
            if let Ok(vm) = VmSla::new(domid, pps).and_then(|v| v.with_rx_pps(domid, rx_pps)) {
                set.set_vm(domid, vm);
            }
        }
        (set, conflicts)
    }

    /// Per VM, the smallest cap `cap` written on its vifs under `key`; a VM whose vifs
    /// disagree is reported in `conflicts`.
    fn vm_caps(
        &self,
        key: &str,
        cap: impl Fn(&VifKeys) -> Option<u64>,
        conflicts: &mut Vec<SlaError>,
    ) -> BTreeMap<DomId, u64> {
        let mut caps: BTreeMap<DomId, Vec<(VifId, u64)>> = BTreeMap::new();
        for (vif, keys) in &self.vifs {
            if let Some(p) = cap(keys) {
                caps.entry(vif.domid).or_default().push((*vif, p));
            }
        }
        let mut out = BTreeMap::new();
        for (domid, list) in caps {
            let min = list.iter().map(|(_, p)| *p).min().unwrap_or(0);
            if list.iter().any(|(_, p)| *p != min) {
                let detail = list
                    .iter()
                    .map(|(v, p)| format!("{v}={p}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                conflicts.push(SlaError::new(
                    Subject::Vm(domid),
                    key,
                    crate::sla::Problem::Conflict(format!(
                        "its vifs disagree ({detail}); using the smallest, {min}"
                    )),
                ));
            }
            out.insert(domid, min);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{Link, Problem};

    fn vals<'a>(
        p: Option<&'a str>,
        min: Option<&'a str>,
        max: Option<&'a str>,
        pps: Option<&'a str>,
    ) -> VifKeyValues<'a> {
        VifKeyValues {
            priority: p,
            min_bps: min,
            max_bps: max,
            vm_pps: pps,
            ..VifKeyValues::default()
        }
    }

    fn rx_vals<'a>(
        min: Option<&'a str>,
        max: Option<&'a str>,
        pps: Option<&'a str>,
    ) -> VifKeyValues<'a> {
        VifKeyValues {
            rx_min_bps: min,
            rx_max_bps: max,
            rx_vm_pps: pps,
            ..VifKeyValues::default()
        }
    }

    #[test]
    fn receive_keys() {
        let vif = VifId::new(xen_ids::DomId(2), 3);
        let k = parse_vif_keys(
            vif,
            &rx_vals(Some("1M"), Some("2M"), Some("3k")),
            VifSla::BEST_EFFORT,
        )
        .unwrap();
        let sla = k.sla.unwrap();
        assert_eq!(
            (sla.rx_min_bps(), sla.rx_max_bps()),
            (1_000_000, Some(2_000_000))
        );
        assert_eq!((sla.min_bps(), sla.max_bps()), (0, None));
        assert_eq!((k.vm_pps, k.rx_vm_pps), (None, Some(3000)));
        let e = |v: VifKeyValues<'_>| parse_vif_keys(vif, &v, VifSla::BEST_EFFORT).unwrap_err();
        assert_eq!(
            e(rx_vals(Some("3M"), Some("2M"), None)).to_string(),
            "vif2.3: field `dba-rx-min-bps`: minimum 3M b/s is above the maximum 2M b/s"
        );
        assert!(e(rx_vals(None, Some("x"), None))
            .to_string()
            .starts_with("vif2.3: field `dba-rx-max-bps`"));
        assert!(e(rx_vals(None, None, Some("20000000000")))
            .to_string()
            .starts_with("vif2.3: field `dba-rx-vm-pps`"));
        // The keys of both directions, last-good, and the VM's receive cap.
        let mut x = XenstoreSlas::new();
        let a = VifId::new(xen_ids::DomId(1), 0);
        let b = VifId::new(xen_ids::DomId(1), 1);
        let both = VifKeyValues {
            vm_pps: Some("10k"),
            ..rx_vals(None, Some("5M"), Some("4k"))
        };
        x.update_vif(a, &both, VifSla::BEST_EFFORT).unwrap();
        x.update_vif(b, &rx_vals(None, None, Some("6k")), VifSla::BEST_EFFORT)
            .unwrap();
        assert!(x
            .update_vif(
                a,
                &rx_vals(Some("9M"), Some("5M"), None),
                VifSla::BEST_EFFORT
            )
            .is_err());
        let (set, conflicts) = x.overlay(&SlaSet::new(Link::new(1_000_000_000).unwrap()));
        assert_eq!(set.vif(a).rx_max_bps(), Some(5_000_000));
        let vm = set.vm(xen_ids::DomId(1));
        assert_eq!((vm.pps(), vm.rx_pps()), (Some(10_000), Some(4_000)));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].field, "dba-rx-vm-pps");
    }

    #[test]
    fn paths_and_keys() {
        assert_eq!(
            vif_backend_dir(xen_ids::DomId(0), VifId::new(xen_ids::DomId(5), 1)),
            "/local/domain/0/backend/vif/5/1"
        );
        let map = [("dba-min-bps", "1M"), ("other", "x")];
        let v = VifKeyValues::read_with(|k| map.iter().find(|(n, _)| *n == k).map(|(_, v)| *v));
        assert_eq!(v, vals(None, Some("1M"), None, None));
    }

    #[test]
    fn parse_values() {
        let vif = VifId::new(xen_ids::DomId(2), 0);
        let k = parse_vif_keys(
            vif,
            &vals(Some("1"), Some("150M"), Some("150M"), Some("20k")),
            VifSla::BEST_EFFORT,
        )
        .unwrap();
        let sla = k.sla.unwrap();
        assert_eq!(
            (sla.priority().get(), sla.min_bps(), sla.max_bps()),
            (1, 150_000_000, Some(150_000_000))
        );
        assert_eq!(k.vm_pps, Some(20_000));
        let k =
            parse_vif_keys(vif, &vals(None, None, None, Some("5")), VifSla::BEST_EFFORT).unwrap();
        assert_eq!(k.sla, None);
        let k = parse_vif_keys(
            vif,
            &vals(None, Some("1k"), None, None),
            VifSla::BEST_EFFORT,
        )
        .unwrap();
        assert_eq!(k.sla.unwrap().priority(), Priority::LOWEST);
    }

    #[test]
    fn bad_values_name_vif_and_key() {
        let vif = VifId::new(xen_ids::DomId(2), 3);
        let e = |v: VifKeyValues<'_>| parse_vif_keys(vif, &v, VifSla::BEST_EFFORT).unwrap_err();
        assert_eq!(
            e(vals(None, Some("200M"), Some("100M"), None)).to_string(),
            "vif2.3: field `dba-min-bps`: minimum 200M b/s is above the maximum 100M b/s"
        );
        assert_eq!(
            e(vals(Some("9"), None, None, None)).to_string(),
            "vif2.3: field `dba-priority`: unknown priority class `9` (classes are 0 = highest to 7 = lowest)"
        );
        assert_eq!(
            e(vals(None, Some("-1"), None, None)).to_string(),
            "vif2.3: field `dba-min-bps`: `-1` is negative"
        );
        assert!(e(vals(None, None, Some("lots"), None))
            .to_string()
            .starts_with("vif2.3: field `dba-max-bps`"));
        assert!(e(vals(None, None, None, Some("20000000000")))
            .to_string()
            .starts_with("vif2.3: field `dba-vm-pps`"));
        assert!(matches!(
            e(vals(None, None, None, Some(""))).problem,
            Problem::Rate(_)
        ));
    }

    #[test]
    fn last_good_and_vm_caps() {
        let mut x = XenstoreSlas::new();
        let a = VifId::new(xen_ids::DomId(1), 0);
        let b = VifId::new(xen_ids::DomId(1), 1);
        x.update_vif(
            a,
            &vals(Some("0"), Some("10M"), None, Some("20k")),
            VifSla::BEST_EFFORT,
        )
        .unwrap();
        x.update_vif(b, &vals(None, None, None, Some("30k")), VifSla::BEST_EFFORT)
            .unwrap();
        // A bad update leaves the previous SLA.
        assert!(x
            .update_vif(a, &vals(Some("x"), None, None, None), VifSla::BEST_EFFORT)
            .is_err());
        let base = SlaSet::new(Link::new(1_000_000_000).unwrap());
        let (set, conflicts) = x.overlay(&base);
        assert_eq!(set.vif(a).min_bps(), 10_000_000);
        assert_eq!(set.vif_own(b), None);
        assert_eq!(set.vm(xen_ids::DomId(1)).pps(), Some(20_000));
        assert_eq!(conflicts.len(), 1);
        assert!(conflicts[0]
            .to_string()
            .contains("vif1.0=20000, vif1.1=30000"));
        x.remove_vif(a);
        let (set, conflicts) = x.overlay(&base);
        assert!(conflicts.is_empty());
        assert_eq!(set.vif_own(a), None);
        assert_eq!(set.vm(xen_ids::DomId(1)).pps(), Some(30_000));
    }
}
