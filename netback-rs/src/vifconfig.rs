//! The toolstack's settings of one vif: what libxl (`libxl_nic.c`) writes into the vif's
//! **backend** directory besides the handshake keys — `mac`, `mtu`, `rate`, `vifname`,
//! `ip` — parsed by pure functions into a typed [`VifConfig`].
//!
//! Every value is checked as a whole; a malformed one is a [`VifConfigError`] naming the
//! key, and the vif it belongs to refuses to connect (the reason goes to its `error` node
//! and the log). Absent keys take netback's defaults.
//!
//! * `rate` = `"<bytes>,<usec>"` (libxl: the bytes per interval and the interval, e.g.
//!   `rate=1Mb/s` → `"6250,50000"`): a static cap on the guest's TX bytes, with the burst
//!   Linux's netback allows (the larger of one interval's bytes and 128 KiB, so that a
//!   64 KiB GSO frame always fits). See [`RateCap::limit`].
//! * `mtu`: 68..=65535 (Linux's `ETH_MIN_MTU`..`ETH_MAX_MTU`).
//! * `mac`: the guest's MAC, six two-digit hex octets separated by `:`; a multicast or
//!   all-zero address is refused (Linux's `is_valid_ether_addr`).
//! * `vifname`: the name of netback's interface for the vif, a valid Linux interface
//!   name: 1..=15 bytes of printable ASCII without `/`, `:` or `%` (no template), not
//!   `.` or `..`.
//! * `ip`: space-separated IPv4/IPv6 addresses, each optionally `/prefix` (the hotplug
//!   scripts' anti-spoofing rules are built from it; netback only checks it).

use std::net::IpAddr;

use shared_ring::Limit;
use xenstore::{Xenstore, XsError, XsTx};

/// The MAC netback gives its own interface for a vif, as Xen's `vif-bridge` sets it: the
/// highest unicast-looking address, so that a Linux bridge never adopts it as its own.
pub const BACKEND_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// Smallest MTU accepted (Linux's `ETH_MIN_MTU`).
pub const MIN_MTU: u32 = 68;
/// Largest MTU accepted (Linux's `ETH_MAX_MTU`).
pub const MAX_MTU: u32 = 65535;
/// Smallest byte burst of a `rate` cap: Linux's netback always lets a 128 KiB burst
/// through, so that one large (GSO) frame cannot seize the interface up.
pub const RATE_MIN_BURST: u64 = 131_072;
/// Longest value read for any of these keys (bytes): longer is malformed.
pub const MAX_VALUE_LEN: usize = 256;
/// Interface names are at most this many bytes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// The backend keys this module reads.
pub const KEYS: [&str; 5] = ["mac", "mtu", "rate", "vifname", "ip"];

/// libxl's `rate`: `bytes` may be sent every `usec` microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCap {
    /// Bytes per interval.
    pub bytes: u64,
    /// The interval, µs (> 0).
    pub usec: u64,
}

impl RateCap {
    /// Average bytes per second (rounded down; at least 1 when `bytes` > 0; saturating).
    pub fn bytes_per_sec(&self) -> u64 {
        if self.bytes == 0 {
            return 0;
        }
        let r = u128::from(self.bytes) * 1_000_000 / u128::from(self.usec);
        u64::try_from(r).unwrap_or(u64::MAX).max(1)
    }

    /// The burst: the larger of one interval's bytes and [`RATE_MIN_BURST`] (0 for a
    /// cap of 0 bytes).
    pub fn burst_bytes(&self) -> u64 {
        if self.bytes == 0 {
            0
        } else {
            self.bytes.max(RATE_MIN_BURST)
        }
    }

    /// The byte bucket it stands for: [`RateCap::bytes_per_sec`] on average, with a burst
    /// of the larger of one interval's bytes and [`RATE_MIN_BURST`] (Linux's netback). A
    /// cap of 0 bytes lets nothing through.
    pub fn limit(&self) -> Limit {
        if self.bytes == 0 {
            return Limit::CLOSED;
        }
        Limit::rate(self.bytes_per_sec(), self.burst_bytes())
    }
}

/// An `ip` entry: an address and an optional prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpEntry {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length, if given (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix: Option<u8>,
}

/// What the toolstack set for one vif (absent keys `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VifConfig {
    /// `mac`: the guest's MAC.
    pub mac: Option<[u8; 6]>,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `rate`: the static TX cap.
    pub rate: Option<RateCap>,
    /// `vifname`: the interface's name.
    pub vifname: Option<String>,
    /// `ip`: the guest's addresses.
    pub ip: Vec<IpEntry>,
    /// A `script` key is present: the toolstack runs a hotplug script for the vif (libxl
    /// always does, `vif-bridge` by default), which names, plugs and raises the interface.
    /// The project's no-op `vif-userspace` does none of that and does not count.
    pub hotplug_script: bool,
}

/// Why a vif's toolstack keys are refused.
#[derive(Debug, thiserror::Error)]
pub enum VifConfigError {
    /// The value of `key` is not what libxl writes.
    #[error("backend key {key}: {why} (value {value:?})")]
    Malformed {
        /// The key.
        key: &'static str,
        /// The value, cut to 64 bytes.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The key could not be read.
    #[error("backend key {key}: read: {source}")]
    Read {
        /// The key.
        key: &'static str,
        /// The failure.
        source: XsError,
    },
}

fn malformed(key: &'static str, value: &[u8], why: &'static str) -> VifConfigError {
    VifConfigError::Malformed {
        key,
        value: String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned(),
        why,
    }
}

/// The value as text, without one trailing NUL (some writers include it).
fn text<'a>(key: &'static str, v: &'a [u8]) -> Result<&'a str, VifConfigError> {
    if v.len() > MAX_VALUE_LEN {
        return Err(malformed(key, v, "too long"));
    }
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    std::str::from_utf8(v).map_err(|_| malformed(key, v, "not UTF-8"))
}

/// A strict decimal: digits only, no sign, no spaces, fits in a u64.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `rate` (`"<bytes>,<usec>"`, both decimal, `usec` > 0).
pub fn parse_rate(v: &[u8]) -> Result<RateCap, VifConfigError> {
    let s = text("rate", v)?;
    let (b, u) = s
        .split_once(',')
        .ok_or_else(|| malformed("rate", v, "expected \"<bytes>,<usec>\""))?;
    let bytes = decimal(b).ok_or_else(|| malformed("rate", v, "bytes is not a decimal"))?;
    let usec = decimal(u).ok_or_else(|| malformed("rate", v, "usec is not a decimal"))?;
    if usec == 0 {
        return Err(malformed("rate", v, "the interval is 0 µs"));
    }
    Ok(RateCap { bytes, usec })
}

/// Parses `mtu` (decimal, [`MIN_MTU`]..=[`MAX_MTU`]).
pub fn parse_mtu(v: &[u8]) -> Result<u32, VifConfigError> {
    let s = text("mtu", v)?;
    let n = decimal(s).ok_or_else(|| malformed("mtu", v, "not a decimal"))?;
    if !(u64::from(MIN_MTU)..=u64::from(MAX_MTU)).contains(&n) {
        return Err(malformed("mtu", v, "outside 68..=65535"));
    }
    Ok(n as u32)
}

/// Parses `mac` (six two-digit hex octets separated by `:`, unicast, not all zero).
pub fn parse_mac(v: &[u8]) -> Result<[u8; 6], VifConfigError> {
    let s = text("mac", v)?;
    let mac = hypervisor::xenbus::parse_mac(s)
        .ok_or_else(|| malformed("mac", v, "expected six hex octets aa:bb:cc:dd:ee:ff"))?;
    if mac[0] & 1 != 0 {
        return Err(malformed("mac", v, "a multicast address"));
    }
    if mac == [0; 6] {
        return Err(malformed("mac", v, "the all-zero address"));
    }
    Ok(mac)
}

/// Parses `vifname` (a valid Linux interface name, see the module docs).
pub fn parse_vifname(v: &[u8]) -> Result<String, VifConfigError> {
    let s = text("vifname", v)?;
    if s.is_empty() || s.len() > MAX_IFNAME_LEN {
        return Err(malformed("vifname", v, "not 1..=15 bytes"));
    }
    if s == "." || s == ".." {
        return Err(malformed("vifname", v, "\".\" or \"..\""));
    }
    let ok = |c: u8| c.is_ascii_graphic() && !matches!(c, b'/' | b':' | b'%');
    if !s.bytes().all(ok) {
        return Err(malformed(
            "vifname",
            v,
            "only printable ASCII without '/', ':', '%' or spaces",
        ));
    }
    Ok(s.to_string())
}

/// Parses `ip` (space-separated addresses, each optionally `/prefix`; at least one).
pub fn parse_ip(v: &[u8]) -> Result<Vec<IpEntry>, VifConfigError> {
    let s = text("ip", v)?;
    let entries: Vec<IpEntry> = s
        .split_ascii_whitespace()
        .map(|tok| parse_ip_entry(tok).ok_or_else(|| malformed("ip", v, "not an IP address")))
        .collect::<Result<_, _>>()?;
    if entries.is_empty() {
        return Err(malformed("ip", v, "empty"));
    }
    Ok(entries)
}

fn parse_ip_entry(tok: &str) -> Option<IpEntry> {
    let (a, p) = match tok.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (tok, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => None,
        Some(p) => Some(decimal(p).filter(|n| *n <= max)? as u8),
    };
    Some(IpEntry { addr, prefix })
}

/// Builds a [`VifConfig`] from the keys' raw values as `read` returns them (`None`:
/// absent). The first malformed key is the error.
pub fn parse_config(
    mut read: impl FnMut(&'static str) -> Result<Option<Vec<u8>>, VifConfigError>,
) -> Result<VifConfig, VifConfigError> {
    Ok(VifConfig {
        mac: read("mac")?.as_deref().map(parse_mac).transpose()?,
        mtu: read("mtu")?.as_deref().map(parse_mtu).transpose()?,
        rate: read("rate")?.as_deref().map(parse_rate).transpose()?,
        vifname: read("vifname")?.as_deref().map(parse_vifname).transpose()?,
        ip: read("ip")?
            .as_deref()
            .map(parse_ip)
            .transpose()?
            .unwrap_or_default(),
        hotplug_script: read("script")?.is_some_and(|s| !is_noop_script(&s)),
    })
}

/// The project's no-op hotplug script (`xen-build/deploy/vif-userspace`), by path or name.
fn is_noop_script(script: &[u8]) -> bool {
    script.rsplit(|&b| b == b'/').next() == Some(&b"vif-userspace"[..])
}

/// Reads `key` of the backend directory `be` (absent: `None`).
pub fn read_key<X: Xenstore + ?Sized>(
    xs: &X,
    be: &str,
    key: &'static str,
) -> Result<Option<Vec<u8>>, VifConfigError> {
    xs.try_read(XsTx::NONE, &format!("{be}/{key}"))
        .map_err(|source| VifConfigError::Read { key, source })
}

/// Reads and parses the toolstack keys of the backend directory `be`.
pub fn read_config<X: Xenstore + ?Sized>(xs: &X, be: &str) -> Result<VifConfig, VifConfigError> {
    parse_config(|k| read_key(xs, be, k))
}

/// Reads and parses `rate` alone (followed at runtime).
pub fn read_rate<X: Xenstore + ?Sized>(
    xs: &X,
    be: &str,
) -> Result<Option<RateCap>, VifConfigError> {
    read_key(xs, be, "rate")?
        .as_deref()
        .map(parse_rate)
        .transpose()
}

/// The smaller of two limits, component by component (rate and burst): whatever passes
/// it passes both.
pub fn min_limit(a: Limit, b: Limit) -> Limit {
    match (a, b) {
        (Limit::Unlimited, l) | (l, Limit::Unlimited) => l,
        (
            Limit::Rate {
                per_sec: r1,
                burst: b1,
            },
            Limit::Rate {
                per_sec: r2,
                burst: b2,
            },
        ) => Limit::rate(r1.min(r2), b1.min(b2)),
    }
}

/// `l` capped by `cap` if there is one.
pub fn capped(l: Limit, cap: Option<RateCap>) -> Limit {
    match cap {
        Some(c) => min_limit(l, c.limit()),
        None => l,
    }
}

#[cfg(test)]
mod tests;
