//! Node permissions: `<perm-as-string>` of `GET_PERMS`/`SET_PERMS` (`b0`, `r5`, `n3`).
//!
//! A node carries one or more entries. The first names the **owner** (who always has
//! full access) and, through its access letter, the access of every domain without an
//! entry of its own. Further entries grant a given domain `r`ead, `w`rite, `b`oth or
//! `n`othing. Domain 0 (the control domain) bypasses all checks.

use std::fmt;

use crate::wire::WireError;
use xen_ids::DomId;

/// Access granted by one permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsAccess {
    /// `n`: no access (`XS_PERM_NONE`).
    None,
    /// `r`: read only (`XS_PERM_READ`).
    Read,
    /// `w`: write only (`XS_PERM_WRITE`).
    Write,
    /// `b`: read and write.
    Both,
}

impl XsAccess {
    /// The letter used on the wire.
    pub fn letter(self) -> char {
        match self {
            XsAccess::None => 'n',
            XsAccess::Read => 'r',
            XsAccess::Write => 'w',
            XsAccess::Both => 'b',
        }
    }

    /// Parses the wire letter.
    pub fn from_letter(c: char) -> Option<Self> {
        match c {
            'n' => Some(XsAccess::None),
            'r' => Some(XsAccess::Read),
            'w' => Some(XsAccess::Write),
            'b' => Some(XsAccess::Both),
            _ => None,
        }
    }

    /// Whether this access allows reading.
    pub fn can_read(self) -> bool {
        matches!(self, XsAccess::Read | XsAccess::Both)
    }

    /// Whether this access allows writing.
    pub fn can_write(self) -> bool {
        matches!(self, XsAccess::Write | XsAccess::Both)
    }
}

/// One permission entry: a domain and its access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsPerm {
    /// The domain the entry is about (the owner, for the first entry).
    pub domid: DomId,
    /// The access granted.
    pub access: XsAccess,
}

impl XsPerm {
    /// A permission entry.
    pub fn new(domid: DomId, access: XsAccess) -> Self {
        XsPerm { domid, access }
    }

    /// Parses `<letter><domid>`, e.g. `b0`, `r12`.
    pub fn parse(s: &str) -> Result<Self, WireError> {
        let bad = || WireError::InvalidPerm(s.to_owned());
        let mut chars = s.chars();
        let access = chars
            .next()
            .and_then(XsAccess::from_letter)
            .ok_or_else(bad)?;
        let rest = chars.as_str();
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let domid = DomId(rest.parse::<u16>().map_err(|_| bad())?);
        Ok(XsPerm { domid, access })
    }
}

impl fmt::Display for XsPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// Encodes permission entries as a `GET_PERMS` reply / `SET_PERMS` tail (each
/// followed by NUL).
pub fn encode_perms(perms: &[XsPerm]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in perms {
        v.extend_from_slice(p.to_string().as_bytes());
        v.push(0);
    }
    v
}

/// Parses a list of permission strings; at least one (the owner) is required.
pub fn parse_perms<S: AsRef<str>>(strings: &[S]) -> Result<Vec<XsPerm>, WireError> {
    if strings.is_empty() {
        return Err(WireError::WrongArgCount {
            got: 0,
            expected: "at least 1 permission",
        });
    }
    strings.iter().map(|s| XsPerm::parse(s.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in ["b0", "r5", "w65535", "n1"] {
            assert_eq!(XsPerm::parse(s).unwrap().to_string(), s);
        }
        for s in ["", "b", "x0", "b-1", "b65536", "r 1", "b+1"] {
            assert!(XsPerm::parse(s).is_err(), "{s:?}");
        }
    }
}
