//! The local grant table: one per domain, in a sealed memfd written only by the local
//! hypervisor and mapped read-only by every domain that copies from or to that domain's
//! grants (the way Xen itself reads a guest's grant table on every copy).
//!
//! Entry `gref` is a little `u64` at byte `8 * gref`:
//! bits 0–15 the grantee domid, bit 16 `PERMIT` (`GTF_permit_access`), bit 17
//! `READONLY` (`GTF_readonly`), bits 32–63 the id of the allocation (one `share` call)
//! the page belongs to. Allocation ids are never reused, so a cached mapping can tell a
//! reused reference from the one it mapped.

use hypervisor::grant::GntStatus;
use xen_ids::DomId;

/// Entries per domain (`nr_grant_entries`).
pub const CAPACITY: u32 = 65536;
/// The first references are reserved, as in Xen (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const FIRST_GREF: u32 = 8;
/// Bytes of one table.
pub(crate) const TABLE_BYTES: usize = CAPACITY as usize * 8;

const PERMIT: u64 = 1 << 16;
const READONLY: u64 = 1 << 17;

/// Encode an entry granting `page` of allocation `alloc` to `grantee`.
pub(crate) fn entry(grantee: DomId, alloc: u32, readonly: bool) -> u64 {
    u64::from(grantee.0) | PERMIT | if readonly { READONLY } else { 0 } | (u64::from(alloc) << 32)
}

/// A decoded, valid entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) alloc: u32,
    pub(crate) readonly: bool,
}

/// Xen's checks for `me` using entry `e` (`_set_status` in `grant_table.c`): the entry
/// must permit access, name `me`, and not be read-only when writing. Xen answers
/// `GNTST_general_error` to all three.
pub(crate) fn check(e: u64, me: DomId, write: bool) -> Result<Checked, (GntStatus, &'static str)> {
    if e & PERMIT == 0 {
        return Err((
            GntStatus::GENERAL_ERROR,
            "grant not in use (never granted or revoked)",
        ));
    }
    if (e & 0xFFFF) as u16 != me.0 {
        return Err((GntStatus::GENERAL_ERROR, "granted to another domain"));
    }
    let readonly = e & READONLY != 0;
    if write && readonly {
        return Err((
            GntStatus::GENERAL_ERROR,
            "write access to a read-only grant",
        ));
    }
    Ok(Checked {
        alloc: (e >> 32) as u32,
        readonly,
    })
}

/// The range check on a reference (`GNTST_bad_gntref`).
pub(crate) fn check_gref(gref: u32) -> Result<(), (GntStatus, &'static str)> {
    if gref >= CAPACITY {
        Err((GntStatus::BAD_GNTREF, "reference outside the grant table"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason() {
        let me = DomId(3);
        let rw = entry(me, 77, false);
        let ro = entry(me, 78, true);
        assert_eq!(
            check(rw, me, true),
            Ok(Checked {
                alloc: 77,
                readonly: false
            })
        );
        assert_eq!(
            check(ro, me, false),
            Ok(Checked {
                alloc: 78,
                readonly: true
            })
        );
        assert_eq!(check(ro, me, true).unwrap_err().0, GntStatus::GENERAL_ERROR);
        assert_eq!(
            check(rw, DomId(4), false).unwrap_err().1,
            "granted to another domain"
        );
        assert_eq!(check(0, me, false).unwrap_err().0, GntStatus::GENERAL_ERROR);
        assert!(check_gref(CAPACITY - 1).is_ok());
        assert_eq!(check_gref(CAPACITY).unwrap_err().0, GntStatus::BAD_GNTREF);
    }
}
