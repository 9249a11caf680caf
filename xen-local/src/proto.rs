//! The wire protocol between a local domain and the local hypervisor, as typed
//! messages: one `SOCK_SEQPACKET` message per request and per reply, little-endian
//! fields, file descriptors attached with `SCM_RIGHTS`.
//!
//! * A request is a [`Request`]: a `u16` [`Op`] code, then that operation's fields (one
//!   struct per operation: [`Hello`], [`Share`], ... each documents its layout).
//! * A reply is a [`Reply<T>`], `T` being the operation's reply type
//!   ([`Call::Reply`]): the tag `u8 0` then `T`'s fields, with [`Call::FDS`]
//!   descriptors attached; or the tag `u8 1` then a [`Refusal`].
//!
//! Encoding and decoding live here only: the hypervisor
//! ([`LocalHypervisor`](super::LocalHypervisor)) decodes requests and encodes replies,
//! a domain ([`Domain`](super::Domain)) the reverse. Decoding never panics and never
//! allocates more than the message's own size, whatever the counts inside say; it
//! accepts exactly the bytes `encode` produces (booleans are 0 or 1, no trailing
//! bytes), so for every message `m`, `decode(&m.encode()) == Ok(m)`.

use std::ops::RangeInclusive;

use hypervisor::evtchn::Port;
use hypervisor::grant::{GntStatus, GrantRef};
use xen_ids::DomId;

/// Why a message does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The message ends inside a field.
    #[error("message too short")]
    Short,
    /// Bytes follow the last field.
    #[error("trailing bytes")]
    Trailing,
    /// A boolean field is neither 0 nor 1.
    #[error("boolean field not 0 or 1")]
    BadBool(u8),
    /// An element count is larger than the elements the message can hold.
    #[error("count larger than the message")]
    CountTooLarge(u32),
    /// The request's operation code is not one of [`Op`].
    #[error("unknown operation {0}")]
    UnknownOp(u16),
    /// The reply's first byte is neither 0 (success) nor 1 (refusal).
    #[error("bad reply tag")]
    BadTag(u8),
}

/// The operation codes: a request's first field, a `u16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Op {
    /// [`Hello`].
    Hello = 1,
    /// [`Share`].
    Share = 2,
    /// [`Revoke`].
    Revoke = 3,
    /// [`Table`].
    Table = 4,
    /// [`Access`].
    Access = 5,
    /// [`Map`].
    Map = 6,
    /// [`AllocUnbound`].
    AllocUnbound = 7,
    /// [`Bind`].
    Bind = 8,
    /// [`Unbind`].
    Unbind = 9,
    /// [`Xenstore`].
    Xenstore = 10,
    /// [`Ping`].
    Ping = 11,
}

impl Op {
    /// Every operation, in code order.
    pub const ALL: [Op; 11] = [
        Op::Hello,
        Op::Share,
        Op::Revoke,
        Op::Table,
        Op::Access,
        Op::Map,
        Op::AllocUnbound,
        Op::Bind,
        Op::Unbind,
        Op::Xenstore,
        Op::Ping,
    ];

    /// The operation with wire code `code`.
    pub fn from_code(code: u16) -> Option<Op> {
        Op::ALL.into_iter().find(|op| *op as u16 == code)
    }
}

/// The fields of one message body, in wire order (what follows the op code of a
/// request or the `u8 0` tag of a successful reply).
pub trait Fields: Sized {
    /// Appends the fields to `out`.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads the fields from the front of `input`, advancing it.
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError>;
}

/// One operation's request, tied to the type of its reply.
pub trait Call: Fields + Into<Request> {
    /// The operation code.
    const OP: Op;
    /// The body of a successful reply.
    type Reply: Fields;
    /// How many descriptors travel with a successful reply.
    const FDS: RangeInclusive<usize>;
}

/// Little-endian readers over the front of a byte slice.
trait Take<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtoError>;
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bool(&mut self) -> Result<bool, ProtoError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(ProtoError::BadBool(b)),
        }
    }
    /// A `u32` count of `elem`-byte elements, checked against the bytes present so that
    /// a lying count allocates nothing.
    fn count(&mut self, elem: usize) -> Result<usize, ProtoError>;
    /// A `u32` count then that many `T`.
    fn list<T: Fields>(&mut self, elem: usize) -> Result<Vec<T>, ProtoError>;
}

impl<'a> Take<'a> for &'a [u8] {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.len() < n {
            return Err(ProtoError::Short);
        }
        let all: &'a [u8] = self;
        let (a, b) = all.split_at(n);
        *self = b;
        Ok(a)
    }
    fn count(&mut self, elem: usize) -> Result<usize, ProtoError> {
        let n = self.u32()?;
        if n as usize > self.len() / elem {
            return Err(ProtoError::CountTooLarge(n));
        }
        Ok(n as usize)
    }
    fn list<T: Fields>(&mut self, elem: usize) -> Result<Vec<T>, ProtoError> {
        let n = self.count(elem)?;
        (0..n).map(|_| T::get(self)).collect()
    }
}

/// Little-endian writers.
trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn list<T: Fields>(&mut self, items: &[T]);
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u32` count then the items. Messages are at most 64 KiB, so a count always
    /// fits.
    fn list<T: Fields>(&mut self, items: &[T]) {
        self.u32(u32::try_from(items.len()).expect("a message holds < 2^32 items"));
        for i in items {
            i.put(self);
        }
    }
}

/// Fields of the plain types, so that lists of them share one codec.
impl Fields for GrantRef {
    fn put(&self, out: &mut Vec<u8>) {
        out.u32(self.0);
    }
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
        input.u32().map(GrantRef)
    }
}

impl Fields for DomId {
    fn put(&self, out: &mut Vec<u8>) {
        out.u16(self.0);
    }
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
        input.u16().map(DomId)
    }
}

impl Fields for Port {
    fn put(&self, out: &mut Vec<u8>) {
        out.u32(self.0);
    }
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
        input.u32().map(Port)
    }
}

/// Decodes a whole body: the fields, then nothing.
fn whole<T: Fields>(mut input: &[u8]) -> Result<T, ProtoError> {
    let v = T::get(&mut input)?;
    if input.is_empty() {
        Ok(v)
    } else {
        Err(ProtoError::Trailing)
    }
}

/// Declares a request or reply struct's `Fields` from its fields' wire order: each
/// field is `name: kind` with kind one of `u32`, `bool`, `field` (a [`Fields`] type) or
/// `list` (a `u32` count then the elements, `size` bytes each).
macro_rules! fields {
    ($t:ident { $($f:ident : $k:ident $(($size:expr))?),* }) => {
        impl Fields for $t {
            #[allow(unused_variables)]
            fn put(&self, out: &mut Vec<u8>) {
                $( fields!(@put out, self.$f, $k); )*
            }
            #[allow(unused_variables)]
            fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
                Ok($t { $( $f: fields!(@get input, $k $(, $size)?), )* })
            }
        }
    };
    (@put $o:ident, $v:expr, u32) => { $o.u32($v) };
    (@put $o:ident, $v:expr, bool) => { $o.u8(u8::from($v)) };
    (@put $o:ident, $v:expr, field) => { $v.put($o) };
    (@put $o:ident, $v:expr, list) => { $o.list(&$v) };
    (@get $i:ident, u32) => { $i.u32()? };
    (@get $i:ident, bool) => { $i.bool()? };
    (@get $i:ident, field) => { Fields::get($i)? };
    (@get $i:ident, list, $size:expr) => { $i.list($size)? };
}

/// Declares one operation: its request struct's place in [`Request`] and its reply.
macro_rules! call {
    ($t:ident, $reply:ty, $fds:expr) => {
        impl Call for $t {
            const OP: Op = Op::$t;
            type Reply = $reply;
            const FDS: RangeInclusive<usize> = $fds;
        }
        impl From<$t> for Request {
            fn from(r: $t) -> Request {
                Request::$t(r)
            }
        }
    };
}

/// The domain a connection claims in [`Hello`]. Wire: a `u16`, `0xFFFF` for
/// [`Claim::Assigned`], else the domain id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The domain the connection was made for
    /// ([`LocalHypervisor::connect`](super::LocalHypervisor::connect)).
    Assigned,
    /// This domain (any id but `0xFFFF`, which means [`Claim::Assigned`]).
    Domain(DomId),
}

impl Claim {
    /// The wire value of [`Claim::Assigned`].
    pub const ASSIGNED: u16 = 0xFFFF;
}

impl Fields for Claim {
    fn put(&self, out: &mut Vec<u8>) {
        out.u16(match self {
            Claim::Assigned => Claim::ASSIGNED,
            Claim::Domain(d) => d.0,
        });
    }
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
        Ok(match input.u16()? {
            Claim::ASSIGNED => Claim::Assigned,
            d => Claim::Domain(DomId(d)),
        })
    }
}

/// `HELLO` (op 1), the first request on a connection: attach as a domain.
/// Wire: `u16 claim` (see [`Claim`]). Reply: [`Attached`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The domain claimed.
    pub claim: Claim,
}
fields!(Hello { claim: field });
call!(Hello, Attached, 0..=0);

/// `SHARE` (op 2): grant `pages` new zeroed pages to `peer`.
/// Wire: `u16 peer, u8 writable, u32 pages`. Reply: [`Shared`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The grantee.
    pub peer: DomId,
    /// Whether the peer may map the pages writable.
    pub writable: bool,
    /// How many pages (the hypervisor accepts 1 to
    /// [`MAX_SHARE_PAGES`](super::MAX_SHARE_PAGES)).
    pub pages: u32,
}
fields!(Share {
    peer: field,
    writable: bool,
    pages: u32
});
call!(Share, Shared, 1..=1);

/// `REVOKE` (op 3): end the grants of one allocation. Wire: `u32 alloc`. Reply:
/// [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    /// The allocation, as [`Shared::alloc`] named it.
    pub alloc: u32,
}
fields!(Revoke { alloc: u32 });
call!(Revoke, Done, 0..=0);

/// `TABLE` (op 4): a read-only descriptor of `peer`'s grant table.
/// Wire: `u16 peer`. Reply: [`TableOpened`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Whose table.
    pub peer: DomId,
}
fields!(Table { peer: field });
call!(Table, TableOpened, 1..=1);

/// `ACCESS` (op 5): the allocation behind one reference `peer` granted to the caller,
/// for grant copies. Wire: `u16 peer, u32 gref`. Reply: [`Accessed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The granting domain.
    pub peer: DomId,
    /// The reference.
    pub gref: GrantRef,
}
fields!(Access {
    peer: field,
    gref: field
});
call!(Access, Accessed, 1..=1);

/// `MAP` (op 6): map references `peer` granted to the caller.
/// Wire: `u16 peer, u8 writable, u32 n, u32 ref[n]`. Reply: [`Mapped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// The granting domain.
    pub peer: DomId,
    /// Whether to map writable.
    pub writable: bool,
    /// The references (the hypervisor accepts 1 to
    /// [`MAX_MAP_REFS`](super::MAX_MAP_REFS)).
    pub refs: Vec<GrantRef>,
}
fields!(Map {
    peer: field,
    writable: bool,
    refs: list(4)
});
call!(Map, Mapped, 1..=MAX_FDS);

/// `ALLOC_UNBOUND` (op 7): a new event-channel port that `peer` may bind to.
/// Wire: `u16 peer`. Reply: [`Bound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocUnbound {
    /// The domain allowed to bind.
    pub peer: DomId,
}
fields!(AllocUnbound { peer: field });
call!(AllocUnbound, Bound, 2..=2);

/// `BIND` (op 8): bind a new port to `peer`'s unbound port `remote`.
/// Wire: `u16 peer, u32 remote`. Reply: [`Bound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The domain that allocated `remote`.
    pub peer: DomId,
    /// Its unbound port, allocated for the caller.
    pub remote: Port,
}
fields!(Bind {
    peer: field,
    remote: field
});
call!(Bind, Bound, 2..=2);

/// `UNBIND` (op 9): close one of the caller's ports. Wire: `u32 port`. Reply: [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbind {
    /// The port.
    pub port: Port,
}
fields!(Unbind { port: field });
call!(Unbind, Done, 0..=0);

/// `XENSTORE` (op 10): a connection to the xenstore server as the caller. Wire: no
/// fields. Reply: [`Done`] with one descriptor, a connected xenstore socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xenstore;
fields!(Xenstore {});
call!(Xenstore, Done, 1..=1);

/// `PING` (op 11): a round trip that does nothing (for measurements). Wire: no fields.
/// Reply: [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping;
fields!(Ping {});
call!(Ping, Done, 0..=0);

/// The most descriptors one message carries.
pub const MAX_FDS: usize = super::sys::MAX_FDS;

/// Any request: a `u16` [`Op`] code, then that operation's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// [`Hello`].
    Hello(Hello),
    /// [`Share`].
    Share(Share),
    /// [`Revoke`].
    Revoke(Revoke),
    /// [`Table`].
    Table(Table),
    /// [`Access`].
    Access(Access),
    /// [`Map`].
    Map(Map),
    /// [`AllocUnbound`].
    AllocUnbound(AllocUnbound),
    /// [`Bind`].
    Bind(Bind),
    /// [`Unbind`].
    Unbind(Unbind),
    /// [`Xenstore`].
    Xenstore(Xenstore),
    /// [`Ping`].
    Ping(Ping),
}

/// `$f` applied to the request struct inside `$r`, whatever its type.
macro_rules! each_request {
    ($r:expr, $x:ident => $e:expr) => {
        match $r {
            Request::Hello($x) => $e,
            Request::Share($x) => $e,
            Request::Revoke($x) => $e,
            Request::Table($x) => $e,
            Request::Access($x) => $e,
            Request::Map($x) => $e,
            Request::AllocUnbound($x) => $e,
            Request::Bind($x) => $e,
            Request::Unbind($x) => $e,
            Request::Xenstore($x) => $e,
            Request::Ping($x) => $e,
        }
    };
}

/// The operation of a request struct `T`.
fn op_of<T: Call>(_: &T) -> Op {
    T::OP
}

impl Request {
    /// The operation.
    pub fn op(&self) -> Op {
        each_request!(self, r => op_of(r))
    }

    /// The message: the op code, then the fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.u16(self.op() as u16);
        each_request!(self, r => r.put(&mut out));
        out
    }

    /// The op code of message `msg`, known or not (the first field alone).
    pub fn code(msg: &[u8]) -> Result<u16, ProtoError> {
        let mut input = msg;
        input.u16()
    }

    /// Decodes one whole message.
    pub fn decode(msg: &[u8]) -> Result<Request, ProtoError> {
        let code = Request::code(msg)?;
        let input = &msg[2..];
        let op = Op::from_code(code).ok_or(ProtoError::UnknownOp(code))?;
        Ok(match op {
            Op::Hello => Request::Hello(whole(input)?),
            Op::Share => Request::Share(whole(input)?),
            Op::Revoke => Request::Revoke(whole(input)?),
            Op::Table => Request::Table(whole(input)?),
            Op::Access => Request::Access(whole(input)?),
            Op::Map => Request::Map(whole(input)?),
            Op::AllocUnbound => Request::AllocUnbound(whole(input)?),
            Op::Bind => Request::Bind(whole(input)?),
            Op::Unbind => Request::Unbind(whole(input)?),
            Op::Xenstore => Request::Xenstore(whole(input)?),
            Op::Ping => Request::Ping(whole(input)?),
        })
    }
}

/// Reply to [`Hello`]: the domain the connection is now attached as.
/// Wire: `u16 domid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The domain.
    pub domid: DomId,
}
fields!(Attached { domid: field });

/// Reply to [`Share`]: the allocation and its references, one per page in order.
/// Wire: `u32 alloc, u32 n, u32 gref[n]`; with it travels the allocation's memfd
/// (read-write), for the caller to map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// The allocation's id (never reused), for [`Revoke`].
    pub alloc: u32,
    /// The references.
    pub grefs: Vec<GrantRef>,
}
fields!(Shared {
    alloc: u32,
    grefs: list(4)
});

/// Reply to [`Revoke`], [`Unbind`], [`Xenstore`] and [`Ping`]. Wire: no fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done;
fields!(Done {});

/// Reply to [`Table`]. Wire: `u32 capacity`; with it travels a read-only descriptor
/// of the table (see [`table`](super::table) for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOpened {
    /// Entries in the table ([`table::CAPACITY`](super::table::CAPACITY)).
    pub capacity: u32,
}
fields!(TableOpened { capacity: u32 });

/// Reply to [`Access`]: where the granted page lies.
/// Wire: `u32 alloc, u32 pages, u32 page, u8 writable`; with it travels the
/// allocation's descriptor, read-only unless `writable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessed {
    /// The allocation the page belongs to.
    pub alloc: u32,
    /// Pages in the allocation.
    pub pages: u32,
    /// The page's index in the allocation.
    pub page: u32,
    /// Whether the grant (and the descriptor) is writable.
    pub writable: bool,
}
fields!(Accessed {
    alloc: u32,
    pages: u32,
    page: u32,
    writable: bool
});

/// One mapped reference in [`Mapped`]. Wire: `u32 fd_index, u32 page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedPage {
    /// Which of the reply's descriptors holds the page.
    pub fd_index: u32,
    /// The page's index in that descriptor's allocation.
    pub page: u32,
}
fields!(MappedPage {
    fd_index: u32,
    page: u32
});

/// Reply to [`Map`]: one entry per requested reference, in order.
/// Wire: `u32 n, (u32 fd_index, u32 page)[n]`; with it travel the distinct
/// allocations' descriptors (read-only unless a writable mapping was asked for), in
/// the order `fd_index` counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The pages.
    pub pages: Vec<MappedPage>,
}
fields!(Mapped { pages: list(8) });

/// Reply to [`AllocUnbound`] and [`Bind`]: the new port. Wire: `u32 port`; with it
/// travel two eventfds: the one this port receives on, then the one it sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The port.
    pub port: Port,
}
fields!(Bound { port: field });

/// A refused request. Wire (after the tag `u8 1`): `i16 status` (a `GNTST_*` code:
/// the grant table's verdict, or `GNTST_general_error` for refusals that are not about
/// a grant), then the reason as UTF-8 up to the end of the message.
///
/// A [`Map`] refused because of one reference gives its reason as `gref N: ...`
/// ([`Refusal::gref`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status.
    pub status: GntStatus,
    /// Why, for people.
    pub reason: String,
}

impl Refusal {
    /// The reason a [`Map`] refusal gives for reference `gref`.
    pub fn about_gref(gref: GrantRef, why: &str) -> String {
        format!("gref {}: {why}", gref.0)
    }

    /// The whole reply message: the tag `u8 1`, then the refusal.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![TAG_REFUSED];
        self.put(&mut out);
        out
    }

    /// The reference a [`Map`] refusal names, if any.
    pub fn gref(&self) -> Option<GrantRef> {
        let rest = self.reason.strip_prefix("gref ")?;
        rest.split(':').next()?.parse().ok().map(GrantRef)
    }
}

impl Fields for Refusal {
    fn put(&self, out: &mut Vec<u8>) {
        out.u16(self.status.0 as u16);
        out.extend_from_slice(self.reason.as_bytes());
    }
    /// Reads to the end of `input`; a reason that is not UTF-8 is read lossily.
    fn get(input: &mut &[u8]) -> Result<Self, ProtoError> {
        let status = GntStatus(input.u16()? as i16);
        let reason = String::from_utf8_lossy(std::mem::take(input)).into_owned();
        Ok(Refusal { status, reason })
    }
}

/// A reply: the operation's result `T`, or a refusal.
/// Wire: `u8 0` then `T`'s fields, or `u8 1` then the [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Success.
    Ok(T),
    /// Refused.
    Refused(Refusal),
}

const TAG_OK: u8 = 0;
const TAG_REFUSED: u8 = 1;

impl<T: Fields> Reply<T> {
    /// The message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok(v) => {
                let mut out = vec![TAG_OK];
                v.put(&mut out);
                out
            }
            Reply::Refused(r) => r.encode(),
        }
    }

    /// Decodes one whole message.
    pub fn decode(msg: &[u8]) -> Result<Self, ProtoError> {
        let mut input = msg;
        match input.u8()? {
            TAG_OK => whole(input).map(Reply::Ok),
            TAG_REFUSED => whole(input).map(Reply::Refused),
            t => Err(ProtoError::BadTag(t)),
        }
    }

    /// As a `Result`.
    pub fn into_result(self) -> Result<T, Refusal> {
        match self {
            Reply::Ok(v) => Ok(v),
            Reply::Refused(r) => Err(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_documented_bytes() {
        let map = Request::from(Map {
            peer: DomId(3),
            writable: true,
            refs: vec![GrantRef(10), GrantRef(11)],
        });
        let bytes = [6, 0, 3, 0, 1, 2, 0, 0, 0, 10, 0, 0, 0, 11, 0, 0, 0];
        assert_eq!(map.encode(), bytes);
        assert_eq!(Request::decode(&bytes), Ok(map));
        let hello = Request::from(Hello {
            claim: Claim::Assigned,
        });
        assert_eq!(hello.encode(), [1, 0, 0xFF, 0xFF]);
        let refused = Reply::<Done>::Refused(Refusal {
            status: GntStatus::BAD_GNTREF,
            reason: "nope".into(),
        });
        assert_eq!(refused.encode(), [1, 0xFD, 0xFF, b'n', b'o', b'p', b'e']);
        let accessed = Reply::Ok(Accessed {
            alloc: 1,
            pages: 2,
            page: 1,
            writable: true,
        });
        assert_eq!(
            accessed.encode(),
            [0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1]
        );
    }

    #[test]
    fn short_lying_and_trailing_messages_are_errors() {
        assert_eq!(Request::decode(&[1]), Err(ProtoError::Short));
        assert_eq!(Request::decode(&[1, 0, 5]), Err(ProtoError::Short));
        assert_eq!(Request::decode(&[99, 0]), Err(ProtoError::UnknownOp(99)));
        assert_eq!(
            Request::decode(&[2, 0, 0, 0, 2, 1, 0, 0, 0]),
            Err(ProtoError::BadBool(2))
        );
        assert_eq!(Request::decode(&[11, 0, 0]), Err(ProtoError::Trailing));
        let lying = [6, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0];
        assert_eq!(
            Request::decode(&lying),
            Err(ProtoError::CountTooLarge(u32::MAX))
        );
        assert_eq!(Reply::<Done>::decode(&[2]), Err(ProtoError::BadTag(2)));
        assert_eq!(Reply::<Done>::decode(&[]), Err(ProtoError::Short));
        assert_eq!(
            Reply::<Mapped>::decode(&[0, 1, 0, 0, 0, 1, 2, 3, 4]),
            Err(ProtoError::CountTooLarge(1))
        );
    }

    #[test]
    fn a_map_refusal_names_its_reference() {
        let r = Refusal {
            status: GntStatus::GENERAL_ERROR,
            reason: Refusal::about_gref(GrantRef(77), "granted to another domain"),
        };
        assert_eq!(r.gref(), Some(GrantRef(77)));
        let other = Refusal {
            status: GntStatus::GENERAL_ERROR,
            reason: "grant table full".into(),
        };
        assert_eq!(other.gref(), None);
    }

    #[test]
    fn op_codes_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_code(op as u16), Some(op));
        }
        assert_eq!(Op::from_code(0), None);
        assert_eq!(Op::from_code(12), None);
    }
}
