//! The wire protocol between a local domain and the local hypervisor: one
//! SOCK_SEQPACKET message per request and per reply, little-endian fields, file
//! descriptors attached with SCM_RIGHTS.
//!
//! Request: `u16 op` then the op's fields. Reply: `u8 0` then the op's result fields, or
//! `u8 1`, `i16 GNTST_*`, then a UTF-8 message.

use hypervisor::grant::GntStatus;

/// `HELLO u16 domid` (`0xFFFF`: the one the connection was created for) → `u16 domid`.
pub(crate) const OP_HELLO: u16 = 1;
/// `SHARE u16 peer, u8 writable, u32 pages` → `u32 alloc, u32 n, u32 gref[n]` + memfd.
pub(crate) const OP_SHARE: u16 = 2;
/// `REVOKE u32 alloc` → nothing.
pub(crate) const OP_REVOKE: u16 = 3;
/// `TABLE u16 peer` → `u32 capacity` + read-only fd of the peer's grant table.
pub(crate) const OP_TABLE: u16 = 4;
/// `ACCESS u16 peer, u32 gref` → `u32 alloc, u32 pages, u32 page, u8 writable` + fd of the
/// allocation (read-only unless writable).
pub(crate) const OP_ACCESS: u16 = 5;
/// `MAP u16 peer, u8 writable, u32 n, u32 ref[n]` → `u32 n, (u32 fd_index, u32 page)[n]`
/// + the distinct allocation fds.
pub(crate) const OP_MAP: u16 = 6;
/// `ALLOC_UNBOUND u16 peer` → `u32 port` + (receive eventfd, send eventfd).
pub(crate) const OP_ALLOC_UNBOUND: u16 = 7;
/// `BIND u16 peer, u32 remote_port` → `u32 port` + (receive eventfd, send eventfd).
pub(crate) const OP_BIND: u16 = 8;
/// `UNBIND u32 port` → nothing.
pub(crate) const OP_UNBIND: u16 = 9;
/// `XENSTORE` → nothing + a connected xenstore socket.
pub(crate) const OP_XENSTORE: u16 = 10;
/// `PING` → nothing (a round trip, for measurements).
pub(crate) const OP_PING: u16 = 11;

/// The wildcard domid in `HELLO`.
pub(crate) const DOMID_ASSIGNED: u16 = 0xFFFF;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Builds a message.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn op(op: u16) -> Self {
        let mut w = Writer::default();
        w.u16(op);
        w
    }
    pub(crate) fn ok() -> Self {
        let mut w = Writer::default();
        w.u8(0);
        w
    }
    pub(crate) fn err(status: GntStatus, msg: &str) -> Self {
        let mut w = Writer::default();
        w.u8(1);
        w.buf.extend_from_slice(&status.0.to_le_bytes());
        w.buf.extend_from_slice(msg.as_bytes());
        w
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// Reads a message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed("message too short"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn i16(&mut self) -> Result<i16, Malformed> {
        Ok(self.u16()? as i16)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("boolean field not 0 or 1")),
        }
    }
    /// `n` u32s, with `n` bounded by the bytes actually present (no huge allocation on
    /// a lying count).
    pub(crate) fn u32s(&mut self, n: u32) -> Result<Vec<u32>, Malformed> {
        let n = n as usize;
        if n > self.buf.len() / 4 {
            return Err(Malformed("count larger than the message"));
        }
        (0..n).map(|_| self.u32()).collect()
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub(crate) fn end(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_or_lying_messages() {
        let mut w = Writer::op(OP_MAP);
        w.u16(3).u8(1).u32(2).u32(10).u32(11);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u16().unwrap(), OP_MAP);
        assert_eq!(r.u16().unwrap(), 3);
        assert!(r.bool().unwrap());
        let n = r.u32().unwrap();
        assert_eq!(r.u32s(n).unwrap(), vec![10, 11]);
        r.end().unwrap();
        assert!(Reader::new(&[1]).u16().is_err());
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[0; 8]).u32s(u32::MAX).is_err());
        let w = Writer::err(GntStatus::BAD_GNTREF, "nope");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.i16().unwrap(), -3);
        assert_eq!(r.rest(), b"nope");
    }
}
