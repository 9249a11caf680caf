//! The identifiers every crate of the project shares, one type per concept:
//!
//! * [`DomId`]: a Xen domain (`domid_t` in `xen.h`), with the bounds a toolstack
//!   value must respect ([`DomId::MAX_GUEST`]) and a strict parser for xenstore values;
//! * [`VifId`]: a virtual interface, identified as the toolstack does (the frontend
//!   domain and the device id: `backend/vif/<domid>/<devid>`), displayed as Linux
//!   netback names the interface (`vif<domid>.<devid>`).
//!
//! `no_std`, no dependencies: the I/O-free allocator uses these types as they are.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;
use core::str::FromStr;

/// A Xen domain id (`domid_t`). In DBA-VM a VM is a domain: the paper's VM_j.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DomId(pub u16);

impl DomId {
    /// Domain 0, the usual driver domain.
    pub const DOM0: DomId = DomId(0);
    /// `DOMID_FIRST_RESERVED` (`xen.h`): ids from here up name special domains
    /// (`DOMID_SELF`, `DOMID_IO`, `DOMID_XEN`, ...), never a guest.
    pub const FIRST_RESERVED: u16 = 0x7ff0;
    /// The largest id a real domain can have (`DOMID_FIRST_RESERVED - 1`): the bound for
    /// every domain id read from xenstore or given by an operator.
    pub const MAX_GUEST: DomId = DomId(Self::FIRST_RESERVED - 1);

    /// Whether this id can name a real domain (below `DOMID_FIRST_RESERVED`).
    pub const fn is_valid(self) -> bool {
        self.0 < Self::FIRST_RESERVED
    }

    /// Parses a decimal domain id as xenstore and the toolstack write it: ASCII digits
    /// only (no sign, no spaces, no empty string), at most [`DomId::MAX_GUEST`].
    pub fn parse(text: &[u8]) -> Result<DomId, DomIdError> {
        if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
            return Err(DomIdError::NotANumber);
        }
        let n = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        if n > u32::from(Self::MAX_GUEST.0) {
            return Err(DomIdError::Reserved(n));
        }
        Ok(DomId(n as u16))
    }
}

/// The bare number, as xenstore paths, permissions and `xl` show a domain id.
impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for DomId {
    type Err = DomIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomId::parse(s.as_bytes())
    }
}

impl From<DomId> for u16 {
    fn from(d: DomId) -> u16 {
        d.0
    }
}

/// Why a text is not a domain id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomIdError {
    /// Not a plain decimal number (empty, sign, spaces, other characters, too long).
    NotANumber,
    /// A number at or above `DOMID_FIRST_RESERVED` (0x7ff0): not a real domain.
    Reserved(u32),
}

impl fmt::Display for DomIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomIdError::NotANumber => f.write_str("not a decimal domain id"),
            DomIdError::Reserved(n) => write!(
                f,
                "domain id {n} is reserved (ids must be below {})",
                DomId::FIRST_RESERVED
            ),
        }
    }
}

impl core::error::Error for DomIdError {}

/// A virtual interface: the paper's vf_i. Identified like Xen does, by the frontend
/// domain and the device id (`backend/vif/<domid>/<devid>`); displayed like Linux netback
/// names the interface (`vif<domid>.<devid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VifId {
    /// The frontend (guest) domain: the VM this vif belongs to.
    pub domid: DomId,
    /// The device id inside that domain (`handle`, the `<devid>` of `device/vif/`).
    pub devid: u32,
}

impl VifId {
    /// A vif id.
    pub const fn new(domid: DomId, devid: u32) -> Self {
        VifId { domid, devid }
    }
}

impl fmt::Display for VifId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vif{}.{}", self.domid, self.devid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_plain_decimal_below_reserved() {
        assert_eq!(DomId::parse(b"0"), Ok(DomId::DOM0));
        assert_eq!(DomId::parse(b"32751"), Ok(DomId::MAX_GUEST));
        assert_eq!(DomId::parse(b"007"), Ok(DomId(7)));
    }

    #[test]
    fn parse_refuses_reserved_and_malformed() {
        assert_eq!(DomId::parse(b"32752"), Err(DomIdError::Reserved(32752)));
        assert_eq!(DomId::parse(b"99999"), Err(DomIdError::Reserved(99999)));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"0x10",
            b"123456",
            b"1\0",
        ] {
            assert_eq!(DomId::parse(bad), Err(DomIdError::NotANumber), "{bad:?}");
        }
    }

    #[test]
    fn vif_displays_like_linux_netback() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(VifId::new(DomId(3), 1).to_string(), "vif3.1");
        assert_eq!(DomId(3).to_string(), "3");
    }
}
