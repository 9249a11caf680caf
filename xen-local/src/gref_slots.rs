//! [`GrefSlots`]: values kept for some of a peer's grant references, found by the
//! reference itself — an index with one entry per reference of a grant table
//! ([`table::CAPACITY`]) pointing into a dense slab. No hashing: a lookup is two loads,
//! and no choice of references by a guest changes its cost or its memory.
//!
//! Bounded: the index is allocated once (2 bytes per reference of the table, 128 KiB)
//! and never grows; the slab holds at most as many values as were live at once (freed
//! slots are reused), and at most [`GrefSlots::MAX`] at a time. References beyond the
//! table are never stored.

use crate::table;

/// Values for some of a grant table's references (see the module documentation).
pub(crate) struct GrefSlots<V> {
    /// Per reference: its slot + 1, or 0 when it has no value.
    index: Box<[u16]>,
    /// The values, with their reference; `None`: a free slot (listed in `free`).
    slots: Vec<Option<(u32, V)>>,
    free: Vec<u16>,
    len: usize,
}

impl<V> Default for GrefSlots<V> {
    fn default() -> Self {
        GrefSlots {
            index: vec![0u16; table::CAPACITY as usize].into_boxed_slice(),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<V> GrefSlots<V> {
    /// The most values held at once.
    pub(crate) const MAX: usize = u16::MAX as usize - 1;

    fn slot(&self, gref: u32) -> Option<usize> {
        match self.index.get(gref as usize) {
            Some(&s) if s != 0 => Some(usize::from(s) - 1),
            _ => None,
        }
    }

    /// The value of `gref`.
    pub(crate) fn get(&self, gref: u32) -> Option<&V> {
        let s = self.slot(gref)?;
        self.slots[s].as_ref().map(|(_, v)| v)
    }

    /// The value of `gref`, mutable.
    pub(crate) fn get_mut(&mut self, gref: u32) -> Option<&mut V> {
        let s = self.slot(gref)?;
        self.slots[s].as_mut().map(|(_, v)| v)
    }

    /// Sets the value of `gref`; the value it replaces. Refused (`Err(v)`) for a
    /// reference beyond the table, or when [`Self::MAX`] values are held.
    pub(crate) fn insert(&mut self, gref: u32, v: V) -> Result<Option<V>, V> {
        if gref as usize >= self.index.len() {
            return Err(v);
        }
        if let Some(s) = self.slot(gref) {
            let old = self.slots[s].replace((gref, v));
            return Ok(old.map(|(_, v)| v));
        }
        let s = match self.free.pop() {
            Some(s) => usize::from(s),
            None if self.slots.len() < Self::MAX => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(v),
        };
        self.slots[s] = Some((gref, v));
        self.index[gref as usize] = (s + 1) as u16;
        self.len += 1;
        Ok(None)
    }

    /// Removes the value of `gref`.
    pub(crate) fn remove(&mut self, gref: u32) -> Option<V> {
        let s = self.slot(gref)?;
        self.index[gref as usize] = 0;
        self.free.push(s as u16);
        self.len -= 1;
        self.slots[s].take().map(|(_, v)| v)
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated (held values and free slots): the slab's size.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The references that have a value, in no particular order.
    #[cfg(test)]
    pub(crate) fn grefs(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(g, _)| *g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reference_finds_its_own_value_and_nothing_beyond_the_table_is_stored() {
        let mut m = GrefSlots::default();
        // A guest's choice of references: spread over the whole table, both ends.
        let grefs: Vec<u32> = (0..table::CAPACITY).step_by(97).chain([1, 65535]).collect();
        for &g in &grefs {
            assert_eq!(m.insert(g, g * 3), Ok(None));
        }
        assert_eq!(m.len(), grefs.len());
        for &g in &grefs {
            assert_eq!(m.get(g), Some(&(g * 3)), "gref {g}");
        }
        // Neighbours of stored references have nothing.
        assert_eq!(m.get(2), None);
        assert_eq!(m.get(96), None);
        // Beyond the table: refused, and never found.
        assert_eq!(m.insert(table::CAPACITY, 1), Err(1));
        assert_eq!(m.insert(u32::MAX, 2), Err(2));
        assert_eq!(m.get(table::CAPACITY), None);
        assert_eq!(m.get(u32::MAX), None);
        // Replacing keeps one slot.
        assert_eq!(m.insert(97, 5), Ok(Some(291)));
        assert_eq!(m.get(97), Some(&5));
        assert_eq!(m.len(), grefs.len());
        let mut listed: Vec<u32> = m.grefs().collect();
        listed.sort_unstable();
        let mut want = grefs.clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(listed, want);
    }

    #[test]
    fn the_slab_holds_no_more_slots_than_values_were_live_at_once() {
        let mut m = GrefSlots::default();
        // A guest cycling through the whole table, 64 references live at a time (the
        // way the copy cache evicts before it inserts).
        for g in 0..table::CAPACITY {
            if g >= 64 {
                assert_eq!(m.remove(g - 64), Some(()));
            }
            assert_eq!(m.insert(g, ()), Ok(None));
            assert!(m.capacity() <= 64, "slab grew to {}", m.capacity());
        }
        assert_eq!(m.len(), 64);
        // A removed reference is gone; removing it again is a no-op.
        assert_eq!(m.get(0), None);
        assert_eq!(m.remove(0), None);
        assert_eq!(m.len(), 64);
    }

    #[test]
    fn at_most_max_values_are_held() {
        let mut m = GrefSlots::default();
        for g in 0..GrefSlots::<()>::MAX as u32 {
            assert_eq!(m.insert(g, ()), Ok(None));
        }
        let next = GrefSlots::<()>::MAX as u32;
        assert_eq!(m.insert(next, ()), Err(()));
        assert_eq!(m.capacity(), GrefSlots::<()>::MAX);
        // A freed slot makes room again.
        m.remove(5);
        assert_eq!(m.insert(next, ()), Ok(None));
        assert_eq!(m.get(next), Some(&()));
        assert_eq!(m.get(5), None);
    }
}
