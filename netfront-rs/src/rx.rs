//! RX reassembly: turns the backend's RX responses (`netif_rx_response`, and the
//! `netif_extra_info` slots that follow a response flagged `NETRXF_extra_info`) into
//! frames, as a pure state machine: no ring, no grants. [`Netfront::recv`] feeds it the
//! responses it copied out of the ring and a closure that reads the posted buffer of a
//! response's slot; the fuzz target `netfront_rx` feeds it anything.
//!
//! Rules (`xen/include/public/io/netif.h`, "Receive path"):
//!
//! * A frame is one or more responses; every one but the last has `NETRXF_more_data`.
//!   Each carries `status` bytes (negative: an error code) at `offset` in the buffer the
//!   frontend posted for that slot, which must lie inside the page.
//! * `NETRXF_extra_info` on a response means an extra-info slot follows it; each extra
//!   slot says with `XEN_NETIF_EXTRA_FLAG_MORE` whether another follows. A GSO extra
//!   gives the frame its segment size and type; other types are skipped.
//! * The first response's `NETRXF_csum_blank` / `NETRXF_data_validated` give the frame's
//!   checksum state.
//! * A frame with an error response, a fragment outside its page, more than 65 535 bytes
//!   or no bytes is dropped whole (counted as one error); the reassembly goes on with the
//!   next frame.
//!
//! [`Netfront::recv`]: crate::Netfront::recv

use netport::{FrameMeta, Gso, GsoKind};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{ExtraInfo, NetRxFlags, NetifExtraInfo, NetifRxResponse};
use shared_ring::XEN_PAGE_SIZE;

/// The largest frame the netif protocol can carry (the 16-bit `size`/`status`).
pub const MAX_FRAME: usize = 65_535;

/// What one slot did to the frame being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxEvent {
    /// The frame goes on (more responses or extra slots expected).
    Pending,
    /// A frame is complete: [`RxAssembler::frame`] holds its bytes until the next slot.
    Frame(FrameMeta),
    /// A frame ended and was dropped (error status, bad fragment, too long, empty).
    Dropped,
}

#[derive(Debug)]
struct Partial {
    meta: FrameMeta,
    error: bool,
}

/// The reassembly state of one RX ring (kept across `recv` calls: a frame may span
/// several batches of responses).
#[derive(Debug)]
pub struct RxAssembler {
    /// The frame being assembled, `data[..len]` (a buffer of [`MAX_FRAME`] bytes,
    /// zeroed once: slots are copied into it, not appended with a zero fill first).
    data: Box<[u8]>,
    len: usize,
    partial: Option<Partial>,
    /// Extra-info slots expected next.
    extra_next: bool,
    /// The meta of the last completed frame while its extra slots may still follow.
    done_meta: Option<FrameMeta>,
}

impl Default for RxAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl RxAssembler {
    /// An empty assembler (its buffer pre-sized to [`MAX_FRAME`]).
    pub fn new() -> Self {
        RxAssembler {
            data: vec![0; MAX_FRAME].into_boxed_slice(),
            len: 0,
            partial: None,
            extra_next: false,
            done_meta: None,
        }
    }

    /// Whether the next slot of the ring is an extra-info slot.
    pub fn expects_extra(&self) -> bool {
        self.extra_next
    }

    /// The bytes of the frame last reported by [`RxEvent::Frame`].
    pub fn frame(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Feeds a response slot. `read(offset, dst)` copies `dst.len()` bytes at `offset`
    /// of the buffer posted for this slot (called only for an in-page fragment of a frame
    /// that is still sane); its error aborts the call and is returned.
    pub fn response<E>(
        &mut self,
        r: &NetifRxResponse,
        read: impl FnOnce(usize, &mut [u8]) -> Result<(), E>,
    ) -> Result<RxEvent, E> {
        let flags = r.rx_flags();
        if self.partial.is_none() {
            self.len = 0;
            self.done_meta = None;
        }
        let frame = self.partial.get_or_insert_with(|| Partial {
            meta: FrameMeta {
                csum_blank: flags.contains(NetRxFlags::CSUM_BLANK),
                data_validated: flags.contains(NetRxFlags::DATA_VALIDATED),
                gso: None,
            },
            error: false,
        });
        let offset = r.offset as usize;
        if r.status < 0 || offset + r.status.max(0) as usize > XEN_PAGE_SIZE {
            frame.error = true;
        } else if !frame.error {
            let len = r.status as usize;
            if self.len + len > MAX_FRAME {
                frame.error = true;
            } else {
                let at = self.len;
                if let Err(e) = read(offset, &mut self.data[at..at + len]) {
                    // The caller disconnects; leave a clean state behind.
                    frame.error = true;
                    return Err(e);
                }
                self.len = at + len;
            }
        }
        self.extra_next = flags.contains(NetRxFlags::EXTRA_INFO);
        if flags.contains(NetRxFlags::MORE_DATA) {
            return Ok(RxEvent::Pending);
        }
        let f = self.partial.take().expect("set above");
        if f.error || self.len == 0 {
            self.len = 0;
            Ok(RxEvent::Dropped)
        } else {
            self.done_meta = Some(f.meta);
            Ok(RxEvent::Frame(f.meta))
        }
    }

    /// Feeds an extra-info slot (call when [`RxAssembler::expects_extra`]). A GSO extra
    /// sets the segmentation of the frame it belongs to: the one being assembled, or the
    /// one just completed, whose updated meta is then returned.
    pub fn extra(&mut self, e: &NetifExtraInfo) -> Option<FrameMeta> {
        self.extra_next = e.has_more();
        let Ok(ExtraInfo::Gso { size, r#type, .. }) = e.parse() else {
            return None;
        };
        let kind = match r#type {
            XEN_NETIF_GSO_TYPE_TCPV4 => Some(GsoKind::TcpV4),
            XEN_NETIF_GSO_TYPE_TCPV6 => Some(GsoKind::TcpV6),
            _ => None,
        };
        let gso = kind.filter(|_| size > 0).map(|kind| Gso { size, kind });
        match (&mut self.partial, &mut self.done_meta) {
            (Some(p), _) => {
                p.meta.gso = gso;
                None
            }
            (None, Some(m)) => {
                m.gso = gso;
                Some(*m)
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_ring::netif::XenNetifExtraFlags;

    fn rsp(offset: u16, flags: NetRxFlags, status: i16) -> NetifRxResponse {
        NetifRxResponse {
            id: 0,
            offset,
            flags: flags.bits(),
            status,
        }
    }

    fn page(fill: u8) -> impl FnOnce(usize, &mut [u8]) -> Result<(), ()> {
        move |_, dst: &mut [u8]| {
            dst.fill(fill);
            Ok(())
        }
    }

    fn gso(size: u16, more: bool) -> NetifExtraInfo {
        let flags = if more {
            XenNetifExtraFlags::MORE
        } else {
            XenNetifExtraFlags::empty()
        };
        NetifExtraInfo::new(
            &ExtraInfo::Gso {
                size,
                r#type: XEN_NETIF_GSO_TYPE_TCPV4,
                features: 0,
            },
            flags,
        )
    }

    #[test]
    fn one_slot_frame() {
        let mut a = RxAssembler::new();
        let ev = a
            .response(&rsp(10, NetRxFlags::DATA_VALIDATED, 60), page(7))
            .unwrap();
        let RxEvent::Frame(m) = ev else {
            panic!("{ev:?}")
        };
        assert!(m.data_validated && !m.csum_blank && m.gso.is_none());
        assert_eq!(a.frame(), &[7u8; 60][..]);
        assert!(!a.expects_extra());
    }

    #[test]
    fn multi_slot_frame_with_gso_extra_after_the_first_slot() {
        let mut a = RxAssembler::new();
        let first = NetRxFlags::MORE_DATA | NetRxFlags::EXTRA_INFO | NetRxFlags::CSUM_BLANK;
        assert_eq!(
            a.response(&rsp(0, first, 4096), page(1)),
            Ok(RxEvent::Pending)
        );
        assert!(a.expects_extra());
        assert_eq!(a.extra(&gso(1448, false)), None);
        assert!(!a.expects_extra());
        let ev = a
            .response(&rsp(0, NetRxFlags::empty(), 100), page(2))
            .unwrap();
        let RxEvent::Frame(m) = ev else {
            panic!("{ev:?}")
        };
        assert!(m.csum_blank);
        assert_eq!(
            m.gso,
            Some(Gso {
                size: 1448,
                kind: GsoKind::TcpV4
            })
        );
        assert_eq!(a.frame().len(), 4196);
        assert_eq!(a.frame()[4095..4097], [1, 2]);
    }

    #[test]
    fn extra_after_a_single_slot_frame_updates_it() {
        let mut a = RxAssembler::new();
        let ev = a
            .response(&rsp(0, NetRxFlags::EXTRA_INFO, 100), page(3))
            .unwrap();
        assert!(matches!(ev, RxEvent::Frame(m) if m.gso.is_none()));
        let m = a
            .extra(&gso(536, false))
            .expect("the completed frame's meta");
        assert_eq!(m.gso.map(|g| g.size), Some(536));
        assert_eq!(a.frame().len(), 100);
    }

    #[test]
    fn bad_frames_are_dropped_whole_and_the_next_one_is_fine() {
        let mut a = RxAssembler::new();
        let more = NetRxFlags::MORE_DATA;
        // An error status in the middle.
        assert_eq!(
            a.response(&rsp(0, more, 100), page(1)),
            Ok(RxEvent::Pending)
        );
        assert_eq!(a.response(&rsp(0, more, -1), page(1)), Ok(RxEvent::Pending));
        assert_eq!(
            a.response(&rsp(0, NetRxFlags::empty(), 100), page(1)),
            Ok(RxEvent::Dropped)
        );
        // A fragment crossing its page: the read is never attempted.
        let never = |_: usize, _: &mut [u8]| -> Result<(), ()> { panic!("read outside the page") };
        assert_eq!(
            a.response(&rsp(4000, NetRxFlags::empty(), 200), never),
            Ok(RxEvent::Dropped)
        );
        // Longer than 65 535 bytes.
        for _ in 0..16 {
            assert_eq!(
                a.response(&rsp(0, more, 4096), page(0)),
                Ok(RxEvent::Pending)
            );
        }
        assert_eq!(
            a.response(&rsp(0, NetRxFlags::empty(), 4096), page(0)),
            Ok(RxEvent::Dropped)
        );
        // Empty.
        assert_eq!(
            a.response(&rsp(0, NetRxFlags::empty(), 0), page(0)),
            Ok(RxEvent::Dropped)
        );
        // And a good one.
        assert!(matches!(
            a.response(&rsp(0, NetRxFlags::empty(), 64), page(9)),
            Ok(RxEvent::Frame(_))
        ));
        assert_eq!(a.frame(), &[9u8; 64][..]);
    }

    #[test]
    fn a_failed_read_is_returned_and_the_state_stays_sane() {
        let mut a = RxAssembler::new();
        let r = a.response(&rsp(0, NetRxFlags::empty(), 10), |_, _| Err("gone"));
        assert_eq!(r, Err("gone"));
        // The broken frame is still open (no MORE_DATA seen yet); it ends as dropped.
        assert_eq!(
            a.response(&rsp(0, NetRxFlags::empty(), 10), page(0)),
            Ok(RxEvent::Dropped)
        );
    }
}
