//! Guest transmit: reading and validating one packet's slot chain from the TX ring.
//!
//! A packet on the TX ring (`netif.h`, and Linux `xen-netback/netback.c`:
//! `xenvif_tx_build_gops`, `xenvif_count_requests`, `xenvif_get_extras`) is:
//!
//! 1. a first `netif_tx_request` whose `size` is the **whole packet's** size;
//! 2. if it has `NETTXF_extra_info`: `netif_extra_info` slots, chained by
//!    `XEN_NETIF_EXTRA_FLAG_MORE`;
//! 3. while the previous data request has `NETTXF_more_data`: continuation requests,
//!    each carrying its own fragment size. The first slot's own data is the packet size
//!    minus the continuation sizes.
//!
//! Every slot is copied out of shared memory once (the snapshot's
//! [`Pending::copy`](shared_ring::ring::Pending::copy)); everything is validated on the
//! copies. The result is either a [`TxPacket`] describing exactly what to grant-copy,
//! or a [`TxError`] that says whether the packet is merely dropped (answered with an
//! error, the vif keeps running) or the frontend broke the protocol (the vif must be
//! disconnected, as Linux's `xenvif_fatal_tx_err` does). Parsing is bounded by the
//! number of slots in the snapshot and by [`FATAL_SKB_SLOTS`]: no frontend can make it
//! loop.

use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, ExtraType, NetTxFlags, NetifExtraInfo, NetifTxRequest, NetifTxResponse,
    XEN_NETIF_NR_SLOTS_MIN,
};
use shared_ring::ring::Pending;
use shared_ring::XEN_PAGE_SIZE;

/// Slots per packet this backend accepts (`XEN_NETIF_NR_SLOTS_MIN`, as Linux's
/// `max_skb_slots` default). Longer chains are dropped with an error response.
pub const MAX_SKB_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;

/// A chain longer than this is treated as malicious and disconnects the vif (Linux's
/// `fatal_skb_slots` default).
pub const FATAL_SKB_SLOTS: usize = 20;

/// Extra-info slots a packet may carry (one per type at most).
pub const MAX_EXTRAS: usize = ExtraType::COUNT;

/// Smallest packet accepted: an Ethernet header (`ETH_HLEN`).
pub const ETH_HLEN: u16 = 14;

/// Smallest GSO segment size accepted (Linux's `tcp_min_snd_mss` default). A guest
/// asking dom0 to cut a 64 KiB frame into 1-byte segments would make it do 65 535
/// segments of work for one slot chain; such frames are dropped.
pub const MIN_GSO_SIZE: u16 = shared_ring::wire::MIN_GSO_MSS;

/// One data slot of a packet: where its bytes are in the guest's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxSlot {
    /// The request's `id`, echoed in its response.
    pub id: u16,
    /// Grant of the page holding the data.
    pub gref: u32,
    /// Offset of the data in that page.
    pub offset: u16,
    /// Bytes of data in this slot.
    pub len: u16,
}

/// A validated TX packet: everything needed to police it, copy it and answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPacket {
    /// Total size in bytes (the first request's `size`); the buckets are charged its
    /// wire cost ([`shared_ring::WireCost`]), which is this for a frame without GSO.
    pub size: u16,
    /// The first request's flags (`NETTXF_csum_blank`, `NETTXF_data_validated`).
    pub flags: NetTxFlags,
    /// Data slots in order; `slots[..nr_slots]` are valid.
    pub slots: [TxSlot; MAX_SKB_SLOTS],
    /// Number of data slots.
    pub nr_slots: usize,
    /// Extra-info slots that followed the first request.
    pub nr_extras: usize,
    /// The GSO request, if any (`XEN_NETIF_EXTRA_TYPE_GSO`).
    pub gso: Option<Gso>,
    /// Multicast filter changes requested with the packet (`MCAST_ADD`/`MCAST_DEL`).
    pub mcast: Option<(bool, [u8; 6])>,
    /// Ring slots the packet occupies (data + extras): how far to advance `req_cons`.
    pub ring_slots: u32,
}

/// A GSO request from the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Segment size (MSS).
    pub size: u16,
    /// `XEN_NETIF_GSO_TYPE_TCPV4` or `_TCPV6`.
    pub r#type: u8,
}

impl TxPacket {
    /// A packet of no slots, to parse into ([`parse_packet_into`]).
    pub const EMPTY: TxPacket = TxPacket {
        size: 0,
        flags: NetTxFlags::empty(),
        slots: [TxSlot {
            id: 0,
            gref: 0,
            offset: 0,
            len: 0,
        }; MAX_SKB_SLOTS],
        nr_slots: 0,
        nr_extras: 0,
        gso: None,
        mcast: None,
        ring_slots: 0,
    };

    /// The valid data slots.
    pub fn data_slots(&self) -> &[TxSlot] {
        &self.slots[..self.nr_slots]
    }

    /// Writes this packet's responses, in ring order, with `status` for the data slots
    /// and `NETIF_RSP_NULL` for the extra-info slots (which follow the first slot).
    pub fn responses(&self, status: i16, mut put: impl FnMut(NetifTxResponse)) {
        let slots = self.data_slots();
        put(NetifTxResponse {
            id: slots[0].id,
            status,
        });
        for _ in 0..self.nr_extras {
            put(NetifTxResponse {
                id: 0,
                status: shared_ring::netif::NETIF_RSP_NULL,
            });
        }
        for s in &slots[1..] {
            put(NetifTxResponse { id: s.id, status });
        }
    }
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// The snapshot ends inside the packet: the frontend has not pushed all of it yet.
    /// Nothing is consumed; try again after the next notification.
    Incomplete,
    /// The packet is refused but the protocol was followed: answer its `ring_slots`
    /// slots with `NETIF_RSP_ERROR` (the ids to use are in `ids`) and carry on.
    Drop {
        /// Why.
        reason: DropReason,
        /// Ring slots to consume and answer.
        ring_slots: u32,
    },
    /// The frontend broke the protocol: disconnect this vif.
    Fatal(FatalReason),
}

/// Packet-level refusals (the vif keeps running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    #[error("packet of {size} bytes is shorter than an Ethernet header")]
    Runt {
        /// The packet size.
        size: u16,
    },
    /// More than [`MAX_SKB_SLOTS`] (but at most [`FATAL_SKB_SLOTS`]) slots.
    #[error("packet uses {slots} slots, more than {MAX_SKB_SLOTS}")]
    TooManySlots {
        /// Data slots in the chain.
        slots: usize,
    },
    /// A GSO segment size below [`MIN_GSO_SIZE`].
    #[error("GSO segment size {size} is below {MIN_GSO_SIZE}")]
    GsoTooSmall {
        /// The requested segment size.
        size: u16,
    },
}

/// Protocol violations that disconnect the vif, each with what was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FatalReason {
    /// A slot's `offset + size` runs past the end of its page.
    #[error("TX slot crosses its page: offset {offset} + size {len} > 4096")]
    CrossesPage {
        /// Slot offset.
        offset: u16,
        /// Slot data size.
        len: u16,
    },
    /// The chain is longer than [`FATAL_SKB_SLOTS`].
    #[error("TX slot chain longer than {FATAL_SKB_SLOTS} slots")]
    ChainTooLong,
    /// The continuation fragments add up to more than the packet size.
    #[error("TX fragments add up to more than the packet size {size}")]
    FragmentsExceedPacket {
        /// The first request's size.
        size: u16,
    },
    /// An extra-info slot has type 0 or an unknown type.
    #[error("invalid extra-info type {0}")]
    InvalidExtraType(u8),
    /// The same extra type appears twice in one packet.
    #[error("extra-info type {0} repeated")]
    DuplicateExtra(u8),
    /// More extra-info slots than there are types.
    #[error("more extra-info slots than types")]
    TooManyExtras,
    /// A GSO extra with size 0 or an unknown GSO type.
    #[error("bad GSO extra: size {size}, type {type}")]
    BadGso {
        /// MSS.
        size: u16,
        /// GSO type.
        r#type: u8,
    },
}

fn check_page(offset: u16, len: u16) -> Result<(), TxError> {
    if offset as usize + len as usize > XEN_PAGE_SIZE {
        return Err(TxError::Fatal(FatalReason::CrossesPage { offset, len }));
    }
    Ok(())
}

/// Reads the packet that starts at entry `start` of the snapshot `pending`.
///
/// On success the packet occupies `ring_slots` entries from `start`. On
/// [`TxError::Drop`], `ring_slots` entries must be consumed and answered with an error
/// (use [`drop_responses`] for the ids). On [`TxError::Incomplete`] nothing is consumed.
pub fn parse_packet(
    pending: &Pending<'_, '_, NetifTxRequest, NetifTxResponse>,
    start: u32,
) -> Result<TxPacket, TxError> {
    let mut pkt = TxPacket::EMPTY;
    parse_packet_into(pending, start, &mut pkt)?;
    Ok(pkt)
}

/// [`parse_packet`] into `pkt`, a packet reused from batch to batch (the data path
/// does not move a packet, slots and all, out of the parser): on success every field
/// is the parsed packet's, except `slots[nr_slots..]`, left as they were (never read:
/// [`TxPacket::data_slots`]). On an error `pkt` holds nothing usable.
pub fn parse_packet_into(
    pending: &Pending<'_, '_, NetifTxRequest, NetifTxResponse>,
    start: u32,
    pkt: &mut TxPacket,
) -> Result<(), TxError> {
    let avail = pending.len().saturating_sub(start);
    let mut at = start;
    let next = |at: &mut u32| -> Option<u32> {
        if *at - start >= avail {
            return None;
        }
        let i = *at;
        *at += 1;
        Some(i)
    };

    let first: NetifTxRequest = match next(&mut at) {
        Some(i) => pending.copy(i).expect("index within the snapshot"),
        None => return Err(TxError::Incomplete),
    };
    let flags = first.tx_flags();

    // Extras, right after the first request.
    let mut seen = [false; MAX_EXTRAS];
    let mut nr_extras = 0usize;
    let mut gso = None;
    let mut mcast = None;
    if flags.contains(NetTxFlags::EXTRA_INFO) {
        loop {
            let i = next(&mut at).ok_or(TxError::Incomplete)?;
            let extra: NetifExtraInfo = pending.copy(i).expect("index within the snapshot");
            nr_extras += 1;
            if nr_extras > MAX_EXTRAS {
                return Err(TxError::Fatal(FatalReason::TooManyExtras));
            }
            let info = extra
                .parse()
                .map_err(|_| TxError::Fatal(FatalReason::InvalidExtraType(extra.r#type)))?;
            let t = ExtraType::try_from(extra.r#type).expect("parsed above");
            if core::mem::replace(&mut seen[t.index()], true) {
                return Err(TxError::Fatal(FatalReason::DuplicateExtra(extra.r#type)));
            }
            match info {
                ExtraInfo::Gso { size, r#type, .. } => {
                    if size == 0
                        || (r#type != XEN_NETIF_GSO_TYPE_TCPV4
                            && r#type != XEN_NETIF_GSO_TYPE_TCPV6)
                    {
                        return Err(TxError::Fatal(FatalReason::BadGso { size, r#type }));
                    }
                    gso = Some(Gso { size, r#type });
                }
                ExtraInfo::McastAdd { addr } => mcast = Some((true, addr)),
                ExtraInfo::McastDel { addr } => mcast = Some((false, addr)),
                // A hash is a hint for the backend's RSS; XDP headroom is RX-only. Both are
                // accepted and ignored, as Linux netback does on TX.
                ExtraInfo::Hash { .. } | ExtraInfo::Xdp { .. } => {}
            }
            if !extra.has_more() {
                break;
            }
        }
    }

    // Data slots: the first (written last, at index 0: its length is what the
    // continuations leave), then continuations while more_data, from index 1. A chain
    // longer than MAX_SKB_SLOTS is dropped below: its continuations past the array are
    // validated and counted, not kept.
    let slots = &mut pkt.slots;
    let mut nr = 1usize;
    let mut total_data_slots = 1usize;
    let mut rest = first.size; // bytes left for the first slot after continuations
    let mut more = flags.contains(NetTxFlags::MORE_DATA);
    while more {
        let i = next(&mut at).ok_or(TxError::Incomplete)?;
        let req: NetifTxRequest = pending.copy(i).expect("index within the snapshot");
        total_data_slots += 1;
        if total_data_slots > FATAL_SKB_SLOTS {
            return Err(TxError::Fatal(FatalReason::ChainTooLong));
        }
        if req.size > rest {
            return Err(TxError::Fatal(FatalReason::FragmentsExceedPacket {
                size: first.size,
            }));
        }
        rest -= req.size;
        check_page(req.offset, req.size)?;
        if let Some(slot) = slots.get_mut(nr) {
            *slot = TxSlot {
                id: req.id,
                gref: req.gref,
                offset: req.offset,
                len: req.size,
            };
            nr += 1;
        }
        more = req.tx_flags().contains(NetTxFlags::MORE_DATA);
    }
    check_page(first.offset, rest)?;
    let ring_slots = at - start;

    if total_data_slots > MAX_SKB_SLOTS {
        return Err(TxError::Drop {
            reason: DropReason::TooManySlots {
                slots: total_data_slots,
            },
            ring_slots,
        });
    }
    if first.size < ETH_HLEN {
        return Err(TxError::Drop {
            reason: DropReason::Runt { size: first.size },
            ring_slots,
        });
    }
    if let Some(g) = gso.filter(|g| g.size < MIN_GSO_SIZE) {
        return Err(TxError::Drop {
            reason: DropReason::GsoTooSmall { size: g.size },
            ring_slots,
        });
    }

    slots[0] = TxSlot {
        id: first.id,
        gref: first.gref,
        offset: first.offset,
        len: rest,
    };
    pkt.size = first.size;
    pkt.flags = flags;
    pkt.nr_slots = nr;
    pkt.nr_extras = nr_extras;
    pkt.gso = gso;
    pkt.mcast = mcast;
    pkt.ring_slots = ring_slots;
    Ok(())
}

/// The responses for `ring_slots` entries from `start` that are refused as a whole:
/// each request slot is answered with `status`, each extra-info slot with
/// `NETIF_RSP_NULL`. The slots are re-read (copy-once per pass) only to learn which are
/// extras; a frontend that rewrote them meanwhile only garbles its own response ids.
pub fn drop_responses(
    pending: &Pending<'_, '_, NetifTxRequest, NetifTxResponse>,
    start: u32,
    ring_slots: u32,
    status: i16,
    mut put: impl FnMut(NetifTxResponse),
) {
    let first: Option<NetifTxRequest> = pending.copy(start);
    let mut extras_left = 0u32;
    let mut in_extras = first.is_some_and(|f| f.tx_flags().contains(NetTxFlags::EXTRA_INFO));
    for k in 0..ring_slots {
        let i = start + k;
        if k > 0 && in_extras {
            let e: Option<NetifExtraInfo> = pending.copy(i);
            extras_left += 1;
            in_extras = e.is_some_and(|e| e.has_more()) && extras_left < MAX_EXTRAS as u32;
            put(NetifTxResponse {
                id: 0,
                status: shared_ring::netif::NETIF_RSP_NULL,
            });
            continue;
        }
        let r: Option<NetifTxRequest> = pending.copy(i);
        put(NetifTxResponse {
            id: r.map_or(0, |r| r.id),
            status,
        });
    }
}
