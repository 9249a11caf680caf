//! The xenbus device protocol on top of xenstore (`xen/include/public/io/xenbus.h`): the
//! state values both ends of a split driver publish in their `state` node, and strict
//! parsing of the values a peer writes.
//!
//! Values written by a peer are untrusted: every parser here bounds lengths and
//! ranges and returns an error that names the key, never panics.

use xen_ids::DomId;
use xenstore::{Xenstore, XsError, XsTx};

/// `enum xenbus_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    /// `XenbusStateUnknown`.
    Unknown = 0,
    /// `XenbusStateInitialising`.
    Initialising = 1,
    /// `XenbusStateInitWait`: the backend is ready for the frontend's details.
    InitWait = 2,
    /// `XenbusStateInitialised`: the frontend published its details.
    Initialised = 3,
    /// `XenbusStateConnected`.
    Connected = 4,
    /// `XenbusStateClosing`.
    Closing = 5,
    /// `XenbusStateClosed`.
    Closed = 6,
    /// `XenbusStateReconfiguring`.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured`.
    Reconfigured = 8,
}

impl XenbusState {
    /// Parses a `state` node's value.
    pub fn parse(v: &[u8]) -> Option<XenbusState> {
        use XenbusState::*;
        Some(match parse_u64(v, 8)? {
            0 => Unknown,
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => return None,
        })
    }

    /// The decimal value written in xenstore.
    pub fn as_str(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }
}

/// Why a value read from xenstore was refused.
#[derive(Debug, thiserror::Error)]
pub enum XenbusError {
    /// The xenstore request failed (including `ENOENT` for a missing key).
    #[error("{path}: {source}")]
    Xs {
        /// The key.
        path: String,
        /// The failure.
        #[source]
        source: XsError,
    },
    /// The value is not what the protocol allows.
    #[error("{path}: invalid value {value:?} ({why})")]
    Invalid {
        /// The key.
        path: String,
        /// The value (truncated to 64 bytes).
        value: String,
        /// What was expected.
        why: &'static str,
    },
}

/// Parses a decimal unsigned integer of at most 20 digits with value ≤ `max`: no sign,
/// no spaces, no leading `+`, a trailing NUL or newline tolerated (some toolstacks write
/// them).
pub fn parse_u64(v: &[u8], max: u64) -> Option<u64> {
    let v = match v {
        [rest @ .., b'\0'] | [rest @ .., b'\n'] => rest,
        _ => v,
    };
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    (n <= max).then_some(n)
}

fn shown(v: &[u8]) -> String {
    String::from_utf8_lossy(&v[..v.len().min(64)]).into_owned()
}

/// Reads `path` as a decimal integer ≤ `max`.
pub fn read_u64<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    path: &str,
    max: u64,
) -> Result<u64, XenbusError> {
    let v = xs.read(tx, path).map_err(|source| XenbusError::Xs {
        path: path.to_owned(),
        source,
    })?;
    parse_u64(&v, max).ok_or_else(|| XenbusError::Invalid {
        path: path.to_owned(),
        value: shown(&v),
        why: "expected a decimal integer in range",
    })
}

/// Parses a domain id as [`parse_u64`] does, bounded by [`DomId::MAX_GUEST`]: a
/// reserved id (`DOMID_SELF`, `DOMID_IO`, ...) is not a domain a peer can name.
pub fn parse_domid(v: &[u8]) -> Option<DomId> {
    parse_u64(v, u64::from(DomId::MAX_GUEST.0)).map(|n| DomId(n as u16))
}

/// Reads `path` as a domain id ([`parse_domid`]).
pub fn read_domid<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    path: &str,
) -> Result<DomId, XenbusError> {
    read_u64(xs, tx, path, u64::from(DomId::MAX_GUEST.0)).map(|n| DomId(n as u16))
}

/// Reads `path` as a decimal integer ≤ `max`, or `default` when the key is missing.
pub fn read_u64_or<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    path: &str,
    max: u64,
    default: u64,
) -> Result<u64, XenbusError> {
    match read_u64(xs, tx, path, max) {
        Err(XenbusError::Xs { source, .. }) if source.is_enoent() => Ok(default),
        r => r,
    }
}

/// Reads a `state` node; a missing node is `Unknown`, a garbage value an error.
pub fn read_state<X: Xenstore + ?Sized>(xs: &X, path: &str) -> Result<XenbusState, XenbusError> {
    match xs.read(XsTx::NONE, path) {
        Ok(v) => XenbusState::parse(&v).ok_or_else(|| XenbusError::Invalid {
            path: path.to_owned(),
            value: shown(&v),
            why: "expected a xenbus state 0..=8",
        }),
        Err(e) if e.is_enoent() => Ok(XenbusState::Unknown),
        Err(source) => Err(XenbusError::Xs {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a short string value (at most `max_len` bytes of printable ASCII).
pub fn read_str<X: Xenstore + ?Sized>(
    xs: &X,
    tx: XsTx,
    path: &str,
    max_len: usize,
) -> Result<String, XenbusError> {
    let v = xs.read(tx, path).map_err(|source| XenbusError::Xs {
        path: path.to_owned(),
        source,
    })?;
    if v.len() > max_len || !v.iter().all(|c| (0x20..0x7f).contains(c)) {
        return Err(XenbusError::Invalid {
            path: path.to_owned(),
            value: shown(&v),
            why: "expected short printable ASCII",
        });
    }
    Ok(String::from_utf8(v).expect("ASCII checked"))
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers() {
        assert_eq!(parse_u64(b"42", 100), Some(42));
        assert_eq!(parse_u64(b"42\0", 100), Some(42));
        assert_eq!(parse_u64(b"42\n", 100), Some(42));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"0x10",
            b"101",
            b"99999999999999999999999",
            b"1\0\0",
        ] {
            assert_eq!(parse_u64(bad, 100), None, "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615", u64::MAX), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616", u64::MAX), None);
    }

    #[test]
    fn states() {
        assert_eq!(XenbusState::parse(b"4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::Closed.as_str(), "6");
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("00:16:3e:00:00:01"),
            Some([0, 0x16, 0x3e, 0, 0, 1])
        );
        assert_eq!(parse_mac("00:16:3e:00:00"), None);
        assert_eq!(parse_mac("00:16:3e:00:00:01:02"), None);
        assert_eq!(parse_mac("0:16:3e:00:00:01"), None);
        assert_eq!(parse_mac("+f:16:3e:00:00:01"), None);
    }
}
