//! Xen's own `ring.h` / `netif.h` macros, compiled from the system headers, as an oracle
//! for differential tests of `shared-ring` (the MirageOS `shared-memory-ring` approach:
//! same operations on the C macros and on the Rust ring, pages compared byte for byte).
//!
//! [`AVAILABLE`] is false when the headers were missing at build time (then nothing but
//! the constant is compiled, and the tests say why they skip).
#![deny(missing_docs)]

/// True when the C oracle was compiled (the Xen headers were present).
pub const AVAILABLE: bool = cfg!(not(no_xen_headers));

/// Why the oracle is unavailable, for skip messages.
pub const SKIP_REASON: &str =
    "Xen public headers not found at build time (apt-get install libxen-dev); C differential test skipped";

#[cfg(not(no_xen_headers))]
pub use imp::*;

#[cfg(not(no_xen_headers))]
mod imp {
    use core::ffi::c_void;
    use shared_ring::netif::{NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse};
    use shared_ring::SharedPage;

    /// `struct K##_front_ring` (same layout for every ring kind).
    #[repr(C)]
    #[derive(Debug)]
    pub struct CFrontRing {
        /// `req_prod_pvt`.
        pub req_prod_pvt: u32,
        /// `rsp_cons`.
        pub rsp_cons: u32,
        /// `nr_ents`.
        pub nr_ents: u32,
        /// `sring`.
        pub sring: *mut c_void,
    }

    /// `struct K##_back_ring`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct CBackRing {
        /// `rsp_prod_pvt`.
        pub rsp_prod_pvt: u32,
        /// `req_cons`.
        pub req_cons: u32,
        /// `nr_ents`.
        pub nr_ents: u32,
        /// `sring`.
        pub sring: *mut c_void,
    }

    macro_rules! layout_fns {
        ($($name:ident),* $(,)?) => {
            extern "C" { $( fn $name() -> usize; )* }
            /// Every size and offset the C oracle reports, by name.
            pub fn c_layout() -> Vec<(&'static str, usize)> {
                // SAFETY: each function returns a compile-time constant.
                unsafe { vec![$( (stringify!($name), $name()) ),*] }
            }
        };
    }

    layout_fns!(
        oracle_tx_req_size,
        oracle_tx_req_gref,
        oracle_tx_req_offset,
        oracle_tx_req_flags,
        oracle_tx_req_id,
        oracle_tx_req_size_field,
        oracle_tx_rsp_size,
        oracle_tx_rsp_id,
        oracle_tx_rsp_status,
        oracle_rx_req_size,
        oracle_rx_req_id,
        oracle_rx_req_pad,
        oracle_rx_req_gref,
        oracle_rx_rsp_size,
        oracle_rx_rsp_id,
        oracle_rx_rsp_offset,
        oracle_rx_rsp_flags,
        oracle_rx_rsp_status,
        oracle_extra_size,
        oracle_extra_align,
        oracle_extra_type,
        oracle_extra_flags,
        oracle_extra_u,
        oracle_extra_gso_size,
        oracle_extra_gso_type,
        oracle_extra_gso_features,
        oracle_extra_mcast_addr,
        oracle_extra_hash_type,
        oracle_extra_hash_algorithm,
        oracle_extra_hash_value,
        oracle_ctrl_req_size,
        oracle_ctrl_req_data,
        oracle_ctrl_rsp_size,
        oracle_ctrl_rsp_status,
        oracle_ctrl_rsp_data,
        oracle_sring_req_prod,
        oracle_sring_req_event,
        oracle_sring_rsp_prod,
        oracle_sring_rsp_event,
        oracle_sring_pvt,
        oracle_sring_pad,
        oracle_sring_ring,
        oracle_tx_slot_size,
        oracle_rx_slot_size,
        oracle_tx_ring_size,
        oracle_rx_ring_size,
        oracle_front_ring_size,
        oracle_back_ring_size,
    );

    extern "C" {
        fn oracle_nr_slots_min() -> i64;
        fn oracle_max_tx_size() -> i64;
        fn oracle_rsp_dropped() -> i64;
        fn oracle_rsp_error() -> i64;
        fn oracle_rsp_okay() -> i64;
        fn oracle_rsp_null() -> i64;
        fn oracle_nettxf(bit: i32) -> i64;
        fn oracle_netrxf(bit: i32) -> i64;
        fn oracle_extra_const(i: i32) -> i64;
    }

    /// The protocol constants as the C header defines them, by name.
    pub fn c_constants() -> Vec<(&'static str, i64)> {
        // SAFETY: the functions return constants; indices are within their tables.
        unsafe {
            vec![
                ("XEN_NETIF_NR_SLOTS_MIN", oracle_nr_slots_min()),
                ("XEN_NETIF_MAX_TX_SIZE", oracle_max_tx_size()),
                ("NETIF_RSP_DROPPED", oracle_rsp_dropped()),
                ("NETIF_RSP_ERROR", oracle_rsp_error()),
                ("NETIF_RSP_OKAY", oracle_rsp_okay()),
                ("NETIF_RSP_NULL", oracle_rsp_null()),
                ("NETTXF_csum_blank", oracle_nettxf(0)),
                ("NETTXF_data_validated", oracle_nettxf(1)),
                ("NETTXF_more_data", oracle_nettxf(2)),
                ("NETTXF_extra_info", oracle_nettxf(3)),
                ("NETRXF_data_validated", oracle_netrxf(0)),
                ("NETRXF_csum_blank", oracle_netrxf(1)),
                ("NETRXF_more_data", oracle_netrxf(2)),
                ("NETRXF_extra_info", oracle_netrxf(3)),
                ("NETRXF_gso_prefix", oracle_netrxf(4)),
                ("XEN_NETIF_EXTRA_TYPE_NONE", oracle_extra_const(0)),
                ("XEN_NETIF_EXTRA_TYPE_GSO", oracle_extra_const(1)),
                ("XEN_NETIF_EXTRA_TYPE_MCAST_ADD", oracle_extra_const(2)),
                ("XEN_NETIF_EXTRA_TYPE_MCAST_DEL", oracle_extra_const(3)),
                ("XEN_NETIF_EXTRA_TYPE_HASH", oracle_extra_const(4)),
                ("XEN_NETIF_EXTRA_TYPE_MAX(xen)", oracle_extra_const(5)),
                ("XEN_NETIF_EXTRA_FLAG_MORE", oracle_extra_const(6)),
                ("XEN_NETIF_GSO_TYPE_TCPV4", oracle_extra_const(7)),
                ("XEN_NETIF_GSO_TYPE_TCPV6", oracle_extra_const(8)),
            ]
        }
    }

    macro_rules! ring_kind {
        ($m:ident, $p:ident, $req:ty, $rsp:ty) => {
            /// The C macros for this netif ring.
            pub mod $m {
                use super::*;
                paste_fns!($p, $req, $rsp);

                /// A C front ring on a page.
                pub struct Front<'a> {
                    r: CFrontRing,
                    _page: &'a SharedPage,
                }

                /// A C back ring on a page.
                pub struct Back<'a> {
                    r: CBackRing,
                    _page: &'a SharedPage,
                }

                fn page_ptr(p: &SharedPage) -> *mut c_void {
                    p as *const SharedPage as *mut c_void
                }

                fn empty_front() -> CFrontRing {
                    CFrontRing {
                        req_prod_pvt: 0,
                        rsp_cons: 0,
                        nr_ents: 0,
                        sring: core::ptr::null_mut(),
                    }
                }

                impl<'a> Front<'a> {
                    /// `XEN_FRONT_RING_INIT`.
                    pub fn init(page: &'a SharedPage) -> Self {
                        let mut r = empty_front();
                        // SAFETY: `page` is a live, page-sized, page-aligned buffer for 'a;
                        // the C code only touches its 4096 bytes, single-threaded.
                        unsafe { front_init(&mut r, page_ptr(page)) };
                        Front { r, _page: page }
                    }
                    /// `FRONT_RING_ATTACH`.
                    pub fn attach(page: &'a SharedPage, idx: u32) -> Self {
                        let mut r = empty_front();
                        // SAFETY: as in `init`.
                        unsafe { front_attach(&mut r, page_ptr(page), idx) };
                        Front { r, _page: page }
                    }
                    /// Private indices `(req_prod_pvt, rsp_cons)`.
                    pub fn pvt(&self) -> (u32, u32) {
                        (self.r.req_prod_pvt, self.r.rsp_cons)
                    }
                    /// `RING_FREE_REQUESTS`.
                    pub fn free_requests(&mut self) -> u32 {
                        // SAFETY: `self.r.sring` points at the borrowed page.
                        unsafe { free_requests(&mut self.r) }
                    }
                    /// `RING_FULL`.
                    pub fn full(&mut self) -> bool {
                        // SAFETY: as above.
                        unsafe { full(&mut self.r) != 0 }
                    }
                    /// `*RING_GET_REQUEST(r, req_prod_pvt++) = *q`.
                    pub fn put_request(&mut self, q: &$req) {
                        // SAFETY: as above; `q` is a valid #[repr(C)] struct of the C type.
                        unsafe { put_request(&mut self.r, q) }
                    }
                    /// `RING_PUSH_REQUESTS`.
                    pub fn push_requests(&mut self) {
                        // SAFETY: as above.
                        unsafe { push_requests(&mut self.r) }
                    }
                    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`.
                    pub fn push_requests_and_check_notify(&mut self) -> bool {
                        // SAFETY: as above.
                        unsafe { push_requests_and_check_notify(&mut self.r) != 0 }
                    }
                    /// `RING_HAS_UNCONSUMED_RESPONSES` (a count).
                    pub fn unconsumed_responses(&mut self) -> u32 {
                        // SAFETY: as above.
                        unsafe { unconsumed_responses(&mut self.r) }
                    }
                    /// `RING_RESPONSE_PROD_OVERFLOW`.
                    pub fn response_prod_overflow(&mut self, prod: u32) -> bool {
                        // SAFETY: as above.
                        unsafe { response_prod_overflow(&mut self.r, prod) != 0 }
                    }
                    /// `RING_COPY_RESPONSE(r, rsp_cons++, out)`.
                    pub fn take_response(&mut self) -> $rsp {
                        let mut out = <$rsp>::default();
                        // SAFETY: as above; `out` is a valid destination.
                        unsafe { take_response(&mut self.r, &mut out) };
                        out
                    }
                    /// `RING_FINAL_CHECK_FOR_RESPONSES`.
                    pub fn final_check_for_responses(&mut self) -> bool {
                        // SAFETY: as above.
                        unsafe { final_check_for_responses(&mut self.r) != 0 }
                    }
                }

                impl<'a> Back<'a> {
                    /// `BACK_RING_ATTACH`.
                    pub fn attach(page: &'a SharedPage, idx: u32) -> Self {
                        let mut r = CBackRing {
                            rsp_prod_pvt: 0,
                            req_cons: 0,
                            nr_ents: 0,
                            sring: core::ptr::null_mut(),
                        };
                        // SAFETY: as in `Front::init`.
                        unsafe { back_attach(&mut r, page_ptr(page), idx) };
                        Back { r, _page: page }
                    }
                    /// Private indices `(rsp_prod_pvt, req_cons)`.
                    pub fn pvt(&self) -> (u32, u32) {
                        (self.r.rsp_prod_pvt, self.r.req_cons)
                    }
                    /// `RING_HAS_UNCONSUMED_REQUESTS` (a count).
                    pub fn unconsumed_requests(&mut self) -> u32 {
                        // SAFETY: `self.r.sring` points at the borrowed page.
                        unsafe { unconsumed_requests(&mut self.r) }
                    }
                    /// `RING_REQUEST_PROD_OVERFLOW`.
                    pub fn request_prod_overflow(&mut self, prod: u32) -> bool {
                        // SAFETY: as above.
                        unsafe { request_prod_overflow(&mut self.r, prod) != 0 }
                    }
                    /// `RING_REQUEST_CONS_OVERFLOW`.
                    pub fn request_cons_overflow(&mut self, cons: u32) -> bool {
                        // SAFETY: as above.
                        unsafe { request_cons_overflow(&mut self.r, cons) != 0 }
                    }
                    /// `RING_COPY_REQUEST(r, req_cons++, out)`.
                    pub fn take_request(&mut self) -> $req {
                        let mut out = <$req>::default();
                        // SAFETY: as above.
                        unsafe { take_request(&mut self.r, &mut out) };
                        out
                    }
                    /// `*RING_GET_RESPONSE(r, rsp_prod_pvt++) = *p`.
                    pub fn put_response(&mut self, p: &$rsp) {
                        // SAFETY: as above.
                        unsafe { put_response(&mut self.r, p) }
                    }
                    /// `RING_PUSH_RESPONSES`.
                    pub fn push_responses(&mut self) {
                        // SAFETY: as above.
                        unsafe { push_responses(&mut self.r) }
                    }
                    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
                    pub fn push_responses_and_check_notify(&mut self) -> bool {
                        // SAFETY: as above.
                        unsafe { push_responses_and_check_notify(&mut self.r) != 0 }
                    }
                    /// `RING_FINAL_CHECK_FOR_REQUESTS`.
                    pub fn final_check_for_requests(&mut self) -> bool {
                        // SAFETY: as above.
                        unsafe { final_check_for_requests(&mut self.r) != 0 }
                    }
                }
            }
        };
    }

    macro_rules! paste_fns {
        ($p:ident, $req:ty, $rsp:ty) => {
            #[allow(clippy::duplicated_attributes)]
            mod ffi {
                use super::*;
                extern "C" {
                    #[link_name = concat!(stringify!($p), "_front_init")]
                    pub fn front_init(r: *mut CFrontRing, page: *mut c_void);
                    #[link_name = concat!(stringify!($p), "_front_attach")]
                    pub fn front_attach(r: *mut CFrontRing, page: *mut c_void, i: u32);
                    #[link_name = concat!(stringify!($p), "_back_attach")]
                    pub fn back_attach(r: *mut CBackRing, page: *mut c_void, i: u32);
                    #[link_name = concat!(stringify!($p), "_free_requests")]
                    pub fn free_requests(r: *mut CFrontRing) -> u32;
                    #[link_name = concat!(stringify!($p), "_full")]
                    pub fn full(r: *mut CFrontRing) -> i32;
                    #[link_name = concat!(stringify!($p), "_put_request")]
                    pub fn put_request(r: *mut CFrontRing, q: *const $req);
                    #[link_name = concat!(stringify!($p), "_push_requests")]
                    pub fn push_requests(r: *mut CFrontRing);
                    #[link_name = concat!(stringify!($p), "_push_requests_and_check_notify")]
                    pub fn push_requests_and_check_notify(r: *mut CFrontRing) -> i32;
                    #[link_name = concat!(stringify!($p), "_unconsumed_requests")]
                    pub fn unconsumed_requests(r: *mut CBackRing) -> u32;
                    #[link_name = concat!(stringify!($p), "_request_prod_overflow")]
                    pub fn request_prod_overflow(r: *mut CBackRing, prod: u32) -> i32;
                    #[link_name = concat!(stringify!($p), "_request_cons_overflow")]
                    pub fn request_cons_overflow(r: *mut CBackRing, cons: u32) -> i32;
                    #[link_name = concat!(stringify!($p), "_take_request")]
                    pub fn take_request(r: *mut CBackRing, out: *mut $req);
                    #[link_name = concat!(stringify!($p), "_put_response")]
                    pub fn put_response(r: *mut CBackRing, p: *const $rsp);
                    #[link_name = concat!(stringify!($p), "_push_responses")]
                    pub fn push_responses(r: *mut CBackRing);
                    #[link_name = concat!(stringify!($p), "_push_responses_and_check_notify")]
                    pub fn push_responses_and_check_notify(r: *mut CBackRing) -> i32;
                    #[link_name = concat!(stringify!($p), "_final_check_for_requests")]
                    pub fn final_check_for_requests(r: *mut CBackRing) -> i32;
                    #[link_name = concat!(stringify!($p), "_unconsumed_responses")]
                    pub fn unconsumed_responses(r: *mut CFrontRing) -> u32;
                    #[link_name = concat!(stringify!($p), "_response_prod_overflow")]
                    pub fn response_prod_overflow(r: *mut CFrontRing, prod: u32) -> i32;
                    #[link_name = concat!(stringify!($p), "_take_response")]
                    pub fn take_response(r: *mut CFrontRing, out: *mut $rsp);
                    #[link_name = concat!(stringify!($p), "_final_check_for_responses")]
                    pub fn final_check_for_responses(r: *mut CFrontRing) -> i32;
                }
            }
            use ffi::*;
        };
    }

    ring_kind!(tx, netif_tx, NetifTxRequest, NetifTxResponse);
    ring_kind!(rx, netif_rx, NetifRxRequest, NetifRxResponse);
}

/// The DBA-VM credit area as `c/dba_credit.h` declares it (written from
/// `docs/protocol.md` §2.2, not from the Rust crate): offsets and sizes the C compiler
/// computed, and a reader through the C struct. Always available (no Xen header needed).
pub mod credit {
    use core::ffi::{c_char, CStr};

    extern "C" {
        fn credit_oracle_nfields() -> usize;
        fn credit_oracle_field(i: usize, offset: *mut usize, size: *mut usize) -> *const c_char;
        fn credit_oracle_v1_size() -> usize;
        fn credit_oracle_v2_size() -> usize;
        fn credit_oracle_area_offset() -> usize;
        fn credit_oracle_magic() -> u32;
        fn credit_oracle_read_v2(page: *const u8, out: *mut u64);
    }

    /// One field of the C structs: name, byte offset in the area, size in bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Field {
        /// The field's name in `dba_credit.h`.
        pub name: &'static str,
        /// Its offset from the start of the area.
        pub offset: usize,
        /// Its size in bytes.
        pub size: usize,
    }

    /// Every named field of the version-2 area (the version-1 ones first), in the
    /// order [`read_v2`] returns their values.
    pub fn fields() -> Vec<Field> {
        // SAFETY: a constant count.
        let n = unsafe { credit_oracle_nfields() };
        (0..n)
            .map(|i| {
                let (mut offset, mut size) = (0, 0);
                // SAFETY: i < n; the out-pointers are valid; the name is a static C
                // string literal of the table in credit.c.
                let name = unsafe {
                    let p = credit_oracle_field(i, &mut offset, &mut size);
                    CStr::from_ptr(p).to_str().expect("ASCII field name")
                };
                Field { name, offset, size }
            })
            .collect()
    }

    /// `sizeof(struct dba_credit_area_v1)` and `sizeof(struct dba_credit_area_v2)`.
    pub fn sizes() -> (usize, usize) {
        // SAFETY: constants.
        unsafe { (credit_oracle_v1_size(), credit_oracle_v2_size()) }
    }

    /// `DBA_CREDIT_AREA_OFFSET` and `DBA_CREDIT_MAGIC`.
    pub fn area_offset_and_magic() -> (usize, u32) {
        // SAFETY: constants.
        unsafe { (credit_oracle_area_offset(), credit_oracle_magic()) }
    }

    #[repr(C, align(8))]
    struct Aligned([u8; 4096]);

    /// Every field of [`fields`] read through the C struct from a copy of a whole TX
    /// ring page.
    pub fn read_v2(page: &[u8; 4096]) -> Vec<u64> {
        let copy = Aligned(*page);
        let mut out = vec![0u64; fields().len()];
        // SAFETY: `copy` is 4096 readable, 8-aligned bytes this function owns (the C
        // struct's u64 fields are then aligned); `out` holds one slot per field.
        unsafe { credit_oracle_read_v2(copy.0.as_ptr(), out.as_mut_ptr()) };
        out
    }
}
