//! The SLA file: a TOML description of the link and the SLAs, for the `local` platform,
//! the bench, and hosts whose toolstack does not write the xenstore keys.
//!
//! Schema (every key is optional unless marked; unknown keys are errors):
//!
//! ```toml
//! [link]                     # required
//! capacity-bps = "1G"        # required. B_p, bits/s of L2 frame bytes
//! buffer-bytes = "1.5M"      # the NIC's egress queue in bytes (txqueuelen × frame size);
//!                            # default: none. Bursts are sized so that Σ burst ≤ half of it
//! buffer-packets = 1000      # the same in packets (txqueuelen); default: none
//! rx-capacity-bps = "1G"     # what the host can deliver to its guests; default: none
//!                            # (only rx maximums and rx caps limit the receive side)
//! rx-buffer-bytes = "1.5M"   # bounds Σ receive bursts as buffer-bytes does; default: none
//! rx-buffer-packets = 1000   # the same in packets; default: none
//!
//! [defaults]                 # for vifs / VMs without their own entry
//! priority = 7               # class 0 (highest) ..= 7 (lowest); default 7
//! min-bps = 0                # B^min; default 0
//! max-bps = "1G"             # B^max; default: none (the link)
//! pps = "100k"               # pps^VM for VMs without a [[vm]] entry; default: none
//! rx-min-bps = 0             # receive B^min; default 0
//! rx-max-bps = "1G"          # receive B^max; default: none (receive unlimited)
//! rx-pps = "100k"            # receive pps^VM; default: none
//!
//! [[vm]]                     # one per VM with a packets/s cap
//! domid = 1                  # required
//! pps = "20k"                # pps^VM_j
//! rx-pps = "20k"             # receive pps^VM_j
//!
//! [[vif]]                    # one per vif with its own SLA
//! domid = 1                  # required
//! devid = 0                  # default 0
//! priority = 1               # default: [defaults] (both directions)
//! min-bps = "150M"           # default: [defaults]
//! max-bps = "150M"           # default: [defaults]
//! rx-min-bps = "100M"        # default: [defaults]
//! rx-max-bps = "300M"        # default: [defaults]
//! ```
//!
//! An SLA naming only TX fields leaves the receive side unlimited.
//!
//! Rates are TOML integers or strings in the form of [`crate::rate`] (`"150M"`,
//! `"20k"`). Errors name the vif (or VM, link, defaults) and the field; TOML syntax and
//! structure errors carry the line and column.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::rate::{MAX_BPS, MAX_PPS};
use crate::sla::{
    field, parse_bps, parse_pps, DomId, Link, Priority, Problem, SlaError, SlaSet, Subject, VifId,
    VifSla, VmSla, MAX_BUFFER_BYTES, MAX_BUFFER_PACKETS,
};

/// The largest domid a guest can have (`DOMID_FIRST_RESERVED - 1`).
pub const MAX_DOMID: i64 = DomId::MAX_GUEST.0 as i64;

/// Why an SLA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SlaFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or keys / tables that the schema does not have.
    #[error("SLA file is not valid: {0}")]
    Toml(String),
    /// A value is invalid.
    #[error("SLA file: {0}")]
    Sla(#[from] SlaError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    link: RawLink,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    vm: Vec<RawVm>,
    #[serde(default)]
    vif: Vec<RawVif>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLink {
    capacity_bps: toml::Value,
    buffer_bytes: Option<toml::Value>,
    buffer_packets: Option<toml::Value>,
    rx_capacity_bps: Option<toml::Value>,
    rx_buffer_bytes: Option<toml::Value>,
    rx_buffer_packets: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDefaults {
    priority: Option<toml::Value>,
    min_bps: Option<toml::Value>,
    max_bps: Option<toml::Value>,
    pps: Option<toml::Value>,
    rx_min_bps: Option<toml::Value>,
    rx_max_bps: Option<toml::Value>,
    rx_pps: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVm {
    domid: i64,
    pps: Option<toml::Value>,
    rx_pps: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVif {
    domid: i64,
    #[serde(default)]
    devid: i64,
    priority: Option<toml::Value>,
    min_bps: Option<toml::Value>,
    max_bps: Option<toml::Value>,
    rx_min_bps: Option<toml::Value>,
    rx_max_bps: Option<toml::Value>,
}

/// An optional bits/s field.
fn opt_bps(
    subject: &Subject,
    name: &str,
    v: &Option<toml::Value>,
) -> Result<Option<u64>, SlaError> {
    v.as_ref()
        .map(|x| number(subject, name, x, MAX_BPS))
        .transpose()
}

/// An optional packets/s field.
fn opt_pps(
    subject: &Subject,
    name: &str,
    v: &Option<toml::Value>,
) -> Result<Option<u64>, SlaError> {
    v.as_ref()
        .map(|x| number(subject, name, x, MAX_PPS))
        .transpose()
}

fn number(subject: &Subject, name: &str, v: &toml::Value, limit: u64) -> Result<u64, SlaError> {
    let err = |p| SlaError::new(subject.clone(), name, p);
    match v {
        toml::Value::Integer(i) if *i < 0 => Err(err(Problem::Negative(*i))),
        toml::Value::Integer(i) if *i as u64 > limit => Err(err(Problem::TooLarge {
            value: *i as u64,
            limit,
        })),
        toml::Value::Integer(i) => Ok(*i as u64),
        toml::Value::String(s) if limit == MAX_PPS => parse_pps(subject, name, s),
        toml::Value::String(s) => parse_bps(subject, name, s),
        _ => Err(err(Problem::WrongType(
            "an integer or a string such as \"150M\"",
        ))),
    }
}

fn priority(subject: &Subject, v: &toml::Value) -> Result<Priority, SlaError> {
    let text = match v {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Priority::parse(&text).map_err(|p| SlaError::new(subject.clone(), field::PRIORITY, p))
}

fn domid(table: &'static str, index: usize, v: i64) -> Result<DomId, SlaError> {
    let subject = Subject::Entry { table, index };
    if v < 0 {
        return Err(SlaError::new(subject, "domid", Problem::Negative(v)));
    }
    if v > MAX_DOMID {
        return Err(SlaError::new(
            subject,
            "domid",
            Problem::TooLarge {
                value: v as u64,
                limit: MAX_DOMID as u64,
            },
        ));
    }
    Ok(DomId(v as u16))
}

/// Parses an SLA file's text into a validated [`SlaSet`].
pub fn parse_sla_file(text: &str) -> Result<SlaSet, SlaFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| SlaFileError::Toml(e.to_string()))?;

    let capacity = number(
        &Subject::Link,
        field::CAPACITY_BPS,
        &raw.link.capacity_bps,
        MAX_BPS,
    )?;
    let mut link = Link::new(capacity)?;
    if let Some(v) = &raw.link.buffer_bytes {
        let bytes = number(&Subject::Link, field::BUFFER_BYTES, v, MAX_BUFFER_BYTES)?;
        link = link.with_buffer(bytes)?;
    }
    if let Some(v) = &raw.link.buffer_packets {
        let n = number(&Subject::Link, field::BUFFER_PACKETS, v, MAX_BUFFER_PACKETS)?;
        link = link.with_buffer_packets(n)?;
    }
    link = rx_link(link, &raw.link)?;
    let mut set = SlaSet::new(link);

    let d = &raw.defaults;
    let s = Subject::Defaults;
    let def_priority = d
        .priority
        .as_ref()
        .map(|v| priority(&s, v))
        .transpose()?
        .unwrap_or(Priority::LOWEST);
    let def_min = d
        .min_bps
        .as_ref()
        .map(|v| number(&s, field::MIN_BPS, v, MAX_BPS))
        .transpose()?
        .unwrap_or(0);
    let def_max = d
        .max_bps
        .as_ref()
        .map(|v| number(&s, field::MAX_BPS, v, MAX_BPS))
        .transpose()?;
    let def_rx_min = opt_bps(&s, field::RX_MIN_BPS, &d.rx_min_bps)?.unwrap_or(0);
    let def_rx_max = opt_bps(&s, field::RX_MAX_BPS, &d.rx_max_bps)?;
    let defaults = VifSla::new(s.clone(), def_priority, def_min, def_max)?.with_rx(
        s.clone(),
        def_rx_min,
        def_rx_max,
    )?;
    set.set_default_vif(defaults);
    let def_pps = opt_pps(&s, field::PPS, &d.pps)?;
    let def_rx_pps = opt_pps(&s, field::RX_PPS, &d.rx_pps)?;
    set.set_default_vm(
        VmSla::new(xen_ids::DomId(0), def_pps)?.with_rx_pps(xen_ids::DomId(0), def_rx_pps)?,
    );

    let mut seen_vms = BTreeSet::new();
    for (k, vm) in raw.vm.iter().enumerate() {
        let domid = domid("vm", k + 1, vm.domid)?;
        let s = Subject::Vm(domid);
        if !seen_vms.insert(domid) {
            return Err(SlaError::new(s, "domid", Problem::Duplicate).into());
        }
        let pps = opt_pps(&s, field::PPS, &vm.pps)?;
        let rx_pps = opt_pps(&s, field::RX_PPS, &vm.rx_pps)?;
        set.set_vm(domid, VmSla::new(domid, pps)?.with_rx_pps(domid, rx_pps)?);
    }

    for (k, v) in raw.vif.iter().enumerate() {
        let domid = domid("vif", k + 1, v.domid)?;
        if v.devid < 0 || v.devid > u32::MAX as i64 {
            return Err(SlaError::new(
                Subject::Entry {
                    table: "vif",
                    index: k + 1,
                },
                "devid",
                if v.devid < 0 {
                    Problem::Negative(v.devid)
                } else {
                    Problem::TooLarge {
                        value: v.devid as u64,
                        limit: u32::MAX as u64,
                    }
                },
            )
            .into());
        }
        let id = VifId::new(domid, v.devid as u32);
        let s = Subject::Vif(id);
        if set.vif_own(id).is_some() {
            return Err(SlaError::new(s, "devid", Problem::Duplicate).into());
        }
        let p = v
            .priority
            .as_ref()
            .map(|x| priority(&s, x))
            .transpose()?
            .unwrap_or(defaults.priority());
        let min = v
            .min_bps
            .as_ref()
            .map(|x| number(&s, field::MIN_BPS, x, MAX_BPS))
            .transpose()?
            .unwrap_or(defaults.min_bps());
        let max = match &v.max_bps {
            Some(x) => Some(number(&s, field::MAX_BPS, x, MAX_BPS)?),
            None => defaults.max_bps(),
        };
        let rx_min =
            opt_bps(&s, field::RX_MIN_BPS, &v.rx_min_bps)?.unwrap_or(defaults.rx_min_bps());
        let rx_max = match opt_bps(&s, field::RX_MAX_BPS, &v.rx_max_bps)? {
            Some(x) => Some(x),
            None => defaults.rx_max_bps(),
        };
        let sla = VifSla::new(s.clone(), p, min, max)?.with_rx(s, rx_min, rx_max)?;
        set.set_vif(id, sla);
    }
    Ok(set)
}

/// `link` with the receive settings of `raw`.
fn rx_link(mut link: Link, raw: &RawLink) -> Result<Link, SlaError> {
    let s = Subject::Link;
    if let Some(b) = opt_bps(&s, field::RX_CAPACITY_BPS, &raw.rx_capacity_bps)? {
        link = link.with_rx_capacity(b)?;
    }
    if let Some(v) = &raw.rx_buffer_bytes {
        link = link.with_rx_buffer(number(&s, field::RX_BUFFER_BYTES, v, MAX_BUFFER_BYTES)?)?;
    }
    if let Some(v) = &raw.rx_buffer_packets {
        let n = number(&s, field::RX_BUFFER_PACKETS, v, MAX_BUFFER_PACKETS)?;
        link = link.with_rx_buffer_packets(n)?;
    }
    Ok(link)
}

/// Reads and parses an SLA file.
pub fn load_sla_file(path: &Path) -> Result<SlaSet, SlaFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SlaFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_sla_file(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAPER: &str = r#"
        [link]
        capacity-bps = "1G"

        [[vm]]
        domid = 1
        pps = "20k"
        [[vm]]
        domid = 2
        pps = 60000

        [[vif]]
        domid = 1
        priority = 1
        min-bps = "150M"
        max-bps = "150M"
        [[vif]]
        domid = 2
        devid = 0
        priority = "0"
        min-bps = 700000000
    "#;

    #[test]
    fn parses() {
        let s = parse_sla_file(PAPER).unwrap();
        assert_eq!(s.link().capacity_bps(), 1_000_000_000);
        let v1 = s.vif(VifId::new(xen_ids::DomId(1), 0));
        assert_eq!(v1.priority().get(), 1);
        assert_eq!(
            (v1.min_bps(), v1.max_bps()),
            (150_000_000, Some(150_000_000))
        );
        let v2 = s.vif(VifId::new(xen_ids::DomId(2), 0));
        assert_eq!((v2.min_bps(), v2.max_bps()), (700_000_000, None));
        assert_eq!(s.vm(xen_ids::DomId(1)).pps(), Some(20_000));
        assert_eq!(s.vm(xen_ids::DomId(2)).pps(), Some(60_000));
        assert_eq!(s.vm(xen_ids::DomId(3)).pps(), None);
        assert_eq!(s.vif(VifId::new(xen_ids::DomId(9), 9)), VifSla::BEST_EFFORT);
    }

    fn err(text: &str) -> String {
        parse_sla_file(text).unwrap_err().to_string()
    }

    #[test]
    fn receive_fields() {
        let s = parse_sla_file(
            r#"
            [link]
            capacity-bps = "1G"
            rx-capacity-bps = "2G"
            rx-buffer-bytes = "1M"
            rx-buffer-packets = 700
            [defaults]
            rx-max-bps = "500M"
            rx-pps = "90k"
            [[vm]]
            domid = 1
            rx-pps = "20k"
            [[vif]]
            domid = 1
            rx-min-bps = "100M"
            rx-max-bps = "300M"
            [[vif]]
            domid = 2
            max-bps = "10M"
            "#,
        )
        .unwrap();
        let l = s.link();
        assert_eq!(
            (
                l.rx_capacity_bps(),
                l.rx_buffer_bytes(),
                l.rx_buffer_packets()
            ),
            (Some(2_000_000_000), Some(1_000_000), Some(700))
        );
        let v1 = s.vif(VifId::new(xen_ids::DomId(1), 0));
        assert_eq!(
            (v1.rx_min_bps(), v1.rx_max_bps()),
            (100_000_000, Some(300_000_000))
        );
        assert_eq!((v1.min_bps(), v1.max_bps()), (0, None));
        let v2 = s.vif(VifId::new(xen_ids::DomId(2), 0));
        assert_eq!((v2.rx_min_bps(), v2.rx_max_bps()), (0, Some(500_000_000)));
        assert_eq!(s.vm(xen_ids::DomId(1)).rx_pps(), Some(20_000));
        assert_eq!(s.vm(xen_ids::DomId(1)).pps(), None);
        assert_eq!(s.vm(xen_ids::DomId(5)).rx_pps(), Some(90_000));
        // A TX-only SLA: nothing on the receive side.
        let tx = parse_sla_file(PAPER).unwrap();
        assert!(!tx.rx_configured());
        let v = tx.vif(VifId::new(xen_ids::DomId(1), 0));
        assert_eq!((v.rx_min_bps(), v.rx_max_bps()), (0, None));
    }

    #[test]
    fn receive_errors_name_vif_and_field() {
        let base = "[link]\ncapacity-bps = \"1G\"\n";
        assert_eq!(
            err(&format!(
                "{base}[[vif]]\ndomid = 3\nrx-min-bps = \"900M\"\nrx-max-bps = \"700M\"\n"
            )),
            "SLA file: vif3.0: field `rx-min-bps`: minimum 900M b/s is above the maximum 700M b/s"
        );
        assert_eq!(
            err(&format!("{base}[[vif]]\ndomid = 3\nrx-max-bps = -1\n")),
            "SLA file: vif3.0: field `rx-max-bps`: -1 is negative"
        );
        assert!(err(&format!("{base}[[vm]]\ndomid = 4\nrx-pps = \"99G\"\n"))
            .contains("VM (domain 4): field `rx-pps`"));
        assert!(err("[link]\ncapacity-bps = 1\nrx-capacity-bps = 0\n")
            .contains("link: field `rx-capacity-bps`: must be greater than zero"));
        assert!(err("[link]\ncapacity-bps = 1\nrx-buffer-packets = 0\n")
            .contains("link: field `rx-buffer-packets`"));
        assert!(err(&format!(
            "{base}[defaults]\nrx-min-bps = \"2G\"\nrx-max-bps = \"1G\"\n"
        ))
        .contains("default SLA: field `rx-min-bps`"));
    }

    #[test]
    fn errors_name_vif_and_field() {
        let base = "[link]\ncapacity-bps = \"1G\"\n";
        assert_eq!(
            err(&format!(
                "{base}[[vif]]\ndomid = 3\nmin-bps = \"900M\"\nmax-bps = \"700M\"\n"
            )),
            "SLA file: vif3.0: field `min-bps`: minimum 900M b/s is above the maximum 700M b/s"
        );
        assert_eq!(
            err(&format!(
                "{base}[[vif]]\ndomid = 3\ndevid = 1\nmin-bps = -5\n"
            )),
            "SLA file: vif3.1: field `min-bps`: -5 is negative"
        );
        assert_eq!(
            err(&format!("{base}[[vif]]\ndomid = 3\npriority = \"gold\"\n")),
            "SLA file: vif3.0: field `priority`: unknown priority class `gold` (classes are 0 = highest to 7 = lowest)"
        );
        assert!(err(&format!("{base}[[vif]]\ndomid = 3\npriority = 8\n"))
            .contains("unknown priority class `8`"));
        assert!(
            err(&format!("{base}[[vif]]\ndomid = 3\nmax-bps = \"1P\"\n"))
                .contains("vif3.0: field `max-bps`")
        );
        assert!(err(&format!("{base}[[vif]]\ndomid = 3\nmax-bps = 1.5\n"))
            .contains("expected an integer"));
        assert!(err(&format!("{base}[[vm]]\ndomid = 4\npps = \"99G\"\n"))
            .contains("VM (domain 4): field `pps`"));
        assert!(
            err(&format!("{base}[[vif]]\ndomid = 3\n[[vif]]\ndomid = 3\n"))
                .contains("vif3.0: field `devid`: described more than once")
        );
        assert!(err(&format!("{base}[[vif]]\ndomid = 3\nmin_bps = 5\n"))
            .contains("unknown field `min_bps`"));
        assert!(err("[link]\ncapacity-bps = 0\n")
            .contains("link: field `capacity-bps`: must be greater than zero"));
        assert!(err("[link]\ncapacity-bps = 1\nbuffer-bytes = 0\n")
            .contains("link: field `buffer-bytes`: must be greater than zero"));
        assert!(err("[link]\ncapacity-bps = 1\nbuffer-bytes = \"2G\"\n")
            .contains("link: field `buffer-bytes`: 2000000000 is above"));
        assert!(err("[link]\ncapacity-bps = 1\nbuffer-bytes = true\n")
            .contains("link: field `buffer-bytes`: expected"));
        let s = parse_sla_file("[link]\ncapacity-bps = 1\nbuffer-bytes = \"1.5M\"\n").unwrap();
        assert_eq!(s.link().buffer_bytes(), Some(1_500_000));
        assert!(err("[link]\ncapacity-bps = 1\nbuffer-packets = 0\n")
            .contains("link: field `buffer-packets`: must be greater than zero"));
        let s = parse_sla_file("[link]\ncapacity-bps = 1\nbuffer-packets = \"1k\"\n").unwrap();
        assert_eq!(s.link().buffer_packets(), Some(1000));
        assert_eq!(parse_sla_file(PAPER).unwrap().link().buffer_bytes(), None);
        assert!(err("[[vif]]\ndomid = 1\n").contains("missing field `link`"));
        assert!(err("[link\n").contains("SLA file is not valid"));
        assert!(err(&format!(
            "{base}[defaults]\nmin-bps = \"2G\"\nmax-bps = \"1G\"\n"
        ))
        .contains("default SLA: field `min-bps`"));
        assert!(err(&format!("{base}[[vif]]\ndomid = 70000\n"))
            .contains("[[vif]] entry 1: field `domid`: 70000 is above"));
    }
}
