//! The xenstore wire protocol: `io/xs_wire.h` and `docs/misc/xenstore.txt`.
//!
//! Every message, in either direction, is a 16-byte [`XsdSockmsg`] header (four `u32` in
//! the host's byte order, since both ends run on the same machine) followed by
//! `len` payload bytes, `len <= XENSTORE_PAYLOAD_MAX`. Payloads are mostly strings each
//! terminated by a NUL byte; `WRITE` carries `path\0` followed by the raw value, and a
//! `READ` reply is the raw value without a terminator.
//!
//! This module is pure: encoding, decoding ([`FrameDecoder`] for a byte stream), the
//! payload helpers, the error strings of `xsd_errors` and path validation. It never
//! panics on any input.

use std::fmt;
use xen_ids::DomId;

/// `XENSTORE_PAYLOAD_MAX`: the largest payload, in either direction. A peer that
/// announces more is killed by xenstored ("Violating this is very bad").
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path, in bytes.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: the longest path relative to a domain's home
/// (`/local/domain/<domid>/`), in bytes.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `XENSTORE_RING_SIZE`: size of each of the two rings of the shared xenstore page
/// (`struct xenstore_domain_interface`; used by kernels, not by this userspace client).
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XS_WRITE_NONE`: historical `WRITE` flag string.
pub const XS_WRITE_NONE: &str = "NONE";
/// `XS_WRITE_CREATE`: historical `WRITE` flag string.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// `XS_WRITE_CREATE_EXCL`: historical `WRITE` flag string.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";
/// `enum xs_watch_type`: index of the path in a `WATCH_EVENT` payload.
pub const XS_WATCH_PATH: usize = 0;
/// `enum xs_watch_type`: index of the token in a `WATCH_EVENT` payload.
pub const XS_WATCH_TOKEN: usize = 1;
/// `sizeof(struct xsd_sockmsg)`.
pub const XSD_SOCKMSG_SIZE: usize = 16;
/// The `OK\0` payload of a successful reply that carries no data.
pub const XS_OK: &[u8] = b"OK\0";

/// `enum xsd_sockmsg_type`: the message types, with the numbers of `io/xs_wire.h` and
/// `docs/misc/xenstore.txt` (`XS_<NAME>`). Number 20 (`XS_RESTRICT`) was removed
/// from the protocol and is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum XsdSockmsgType {
    /// `XS_CONTROL` (alias `XS_DEBUG`): implementation-specific control commands.
    Control = 0,
    /// `XS_DIRECTORY`: `<path>|` → `<child-leaf-name>|*`.
    Directory = 1,
    /// `XS_READ`: `<path>|` → `<value|>`.
    Read = 2,
    /// `XS_GET_PERMS`: `<path>|` → `<perm-as-string>|+`.
    GetPerms = 3,
    /// `XS_WATCH`: `<wpath>|<token>|[<depth>|]?`.
    Watch = 4,
    /// `XS_UNWATCH`: `<wpath>|<token>|?`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: `|` → `<transid>|`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: `T|` (commit) or `F|` (abort).
    TransactionEnd = 7,
    /// `XS_INTRODUCE`: `<domid>|<gfn>|<evtchn>|?` (dom0 only).
    Introduce = 8,
    /// `XS_RELEASE`: `<domid>|` (dom0 only).
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`: `<domid>|` → `<path>|`.
    GetDomainPath = 10,
    /// `XS_WRITE`: `<path>|<value|>`.
    Write = 11,
    /// `XS_MKDIR`: `<path>|`.
    Mkdir = 12,
    /// `XS_RM`: `<path>|`.
    Rm = 13,
    /// `XS_SET_PERMS`: `<path>|<perm-as-string>|+?`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: `<epath>|<token>|`, unsolicited, `req_id` and `tx_id` 0.
    WatchEvent = 15,
    /// `XS_ERROR`: `E<something>|`.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`: `<domid>|` → `T|` or `F|` (dom0 only).
    IsDomainIntroduced = 17,
    /// `XS_RESUME`: `<domid>|` (dom0 only).
    Resume = 18,
    /// `XS_SET_TARGET`: `<domid>|<tdomid>|` (dom0 only).
    SetTarget = 19,
    /// `XS_RESET_WATCHES`: `|`, drops all watches and transactions of the caller.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: `<path>|<offset>` → `<gencnt>|<child-leaf-name>|*`.
    DirectoryPart = 22,
    /// `XS_GET_FEATURE` (newer than Xen 4.17's header).
    GetFeature = 23,
    /// `XS_SET_FEATURE` (newer than Xen 4.17's header).
    SetFeature = 24,
    /// `XS_GET_QUOTA` (newer than Xen 4.17's header).
    GetQuota = 25,
    /// `XS_SET_QUOTA` (newer than Xen 4.17's header).
    SetQuota = 26,
    /// `XS_INVALID`: guaranteed to remain an invalid type.
    Invalid = 0xffff,
}

impl XsdSockmsgType {
    /// Every defined type, in numeric order (including `XS_INVALID`).
    pub const ALL: [XsdSockmsgType; 27] = [
        Self::Control,
        Self::Directory,
        Self::Read,
        Self::GetPerms,
        Self::Watch,
        Self::Unwatch,
        Self::TransactionStart,
        Self::TransactionEnd,
        Self::Introduce,
        Self::Release,
        Self::GetDomainPath,
        Self::Write,
        Self::Mkdir,
        Self::Rm,
        Self::SetPerms,
        Self::WatchEvent,
        Self::Error,
        Self::IsDomainIntroduced,
        Self::Resume,
        Self::SetTarget,
        Self::ResetWatches,
        Self::DirectoryPart,
        Self::GetFeature,
        Self::SetFeature,
        Self::GetQuota,
        Self::SetQuota,
        Self::Invalid,
    ];

    /// The type for a wire number, `None` for numbers the protocol does not define
    /// (including the removed `XS_RESTRICT`, 20).
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as u32 == v)
    }

    /// The name `docs/misc/xenstore.txt` uses (`"READ"`, `"GET_DOMAIN_PATH"`, …); the C
    /// enumerator is `XS_` followed by it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Control => "CONTROL",
            Self::Directory => "DIRECTORY",
            Self::Read => "READ",
            Self::GetPerms => "GET_PERMS",
            Self::Watch => "WATCH",
            Self::Unwatch => "UNWATCH",
            Self::TransactionStart => "TRANSACTION_START",
            Self::TransactionEnd => "TRANSACTION_END",
            Self::Introduce => "INTRODUCE",
            Self::Release => "RELEASE",
            Self::GetDomainPath => "GET_DOMAIN_PATH",
            Self::Write => "WRITE",
            Self::Mkdir => "MKDIR",
            Self::Rm => "RM",
            Self::SetPerms => "SET_PERMS",
            Self::WatchEvent => "WATCH_EVENT",
            Self::Error => "ERROR",
            Self::IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            Self::Resume => "RESUME",
            Self::SetTarget => "SET_TARGET",
            Self::ResetWatches => "RESET_WATCHES",
            Self::DirectoryPart => "DIRECTORY_PART",
            Self::GetFeature => "GET_FEATURE",
            Self::SetFeature => "SET_FEATURE",
            Self::GetQuota => "GET_QUOTA",
            Self::SetQuota => "SET_QUOTA",
            Self::Invalid => "INVALID",
        }
    }
}

impl fmt::Display for XsdSockmsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XS_{}", self.name())
    }
}

/// The error names of `xsd_errors[]`, in the header's order. Errors travel as these
/// strings (`"EACCES\0"`), never as numbers.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsdError {
    /// Invalid argument (malformed payload or path).
    EINVAL,
    /// Permission denied.
    EACCES,
    /// Already exists (e.g. a duplicate watch).
    EEXIST,
    /// Is a directory.
    EISDIR,
    /// No such node, transaction or watch.
    ENOENT,
    /// Out of memory.
    ENOMEM,
    /// Quota exceeded.
    ENOSPC,
    /// I/O error.
    EIO,
    /// Directory not empty.
    ENOTEMPTY,
    /// Unknown or unsupported message type.
    ENOSYS,
    /// Read-only.
    EROFS,
    /// Busy (e.g. `TRANSACTION_START` inside a transaction).
    EBUSY,
    /// Transaction conflict: retry the whole transaction.
    EAGAIN,
    /// Already connected.
    EISCONN,
    /// Argument too long.
    E2BIG,
    /// Operation not permitted (e.g. an unprivileged owner change).
    EPERM,
}

impl XsdError {
    /// `xsd_errors[]` in the header's order.
    pub const ALL: [XsdError; 16] = [
        Self::EINVAL,
        Self::EACCES,
        Self::EEXIST,
        Self::EISDIR,
        Self::ENOENT,
        Self::ENOMEM,
        Self::ENOSPC,
        Self::EIO,
        Self::ENOTEMPTY,
        Self::ENOSYS,
        Self::EROFS,
        Self::EBUSY,
        Self::EAGAIN,
        Self::EISCONN,
        Self::E2BIG,
        Self::EPERM,
    ];

    /// The string sent on the wire (without the NUL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EINVAL => "EINVAL",
            Self::EACCES => "EACCES",
            Self::EEXIST => "EEXIST",
            Self::EISDIR => "EISDIR",
            Self::ENOENT => "ENOENT",
            Self::ENOMEM => "ENOMEM",
            Self::ENOSPC => "ENOSPC",
            Self::EIO => "EIO",
            Self::ENOTEMPTY => "ENOTEMPTY",
            Self::ENOSYS => "ENOSYS",
            Self::EROFS => "EROFS",
            Self::EBUSY => "EBUSY",
            Self::EAGAIN => "EAGAIN",
            Self::EISCONN => "EISCONN",
            Self::E2BIG => "E2BIG",
            Self::EPERM => "EPERM",
        }
    }

    /// The Linux errno value (`errnum` in `xsd_errors`).
    pub fn errno(self) -> i32 {
        use rustix::io::Errno;
        let e = match self {
            Self::EINVAL => Errno::INVAL,
            Self::EACCES => Errno::ACCESS,
            Self::EEXIST => Errno::EXIST,
            Self::EISDIR => Errno::ISDIR,
            Self::ENOENT => Errno::NOENT,
            Self::ENOMEM => Errno::NOMEM,
            Self::ENOSPC => Errno::NOSPC,
            Self::EIO => Errno::IO,
            Self::ENOTEMPTY => Errno::NOTEMPTY,
            Self::ENOSYS => Errno::NOSYS,
            Self::EROFS => Errno::ROFS,
            Self::EBUSY => Errno::BUSY,
            Self::EAGAIN => Errno::AGAIN,
            Self::EISCONN => Errno::ISCONN,
            Self::E2BIG => Errno::TOOBIG,
            Self::EPERM => Errno::PERM,
        };
        e.raw_os_error()
    }

    /// Parses an error name (`"EAGAIN"`); `None` for names outside `xsd_errors`.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.as_str() == s)
    }

    /// Parses an `XS_ERROR` payload (`"EAGAIN\0"`; a missing NUL is tolerated).
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        let s = payload.strip_suffix(b"\0").unwrap_or(payload);
        std::str::from_utf8(s).ok().and_then(Self::from_name)
    }

    /// The `XS_ERROR` payload for this error (`"EAGAIN\0"`).
    pub fn to_payload(self) -> Vec<u8> {
        let mut v = self.as_str().as_bytes().to_vec();
        v.push(0);
        v
    }
}

impl fmt::Display for XsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for XsdError {}

/// `struct xsd_sockmsg`: the header in front of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct XsdSockmsg {
    /// `type`: an [`XsdSockmsgType`] number (kept raw, so unknown types survive decoding).
    pub type_: u32,
    /// `req_id`: chosen by the requester, echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// `tx_id`: the transaction, 0 outside transactions.
    pub tx_id: u32,
    /// `len`: the payload length in bytes.
    pub len: u32,
}

impl XsdSockmsg {
    /// Encodes the header in host byte order.
    pub fn to_bytes(&self) -> [u8; XSD_SOCKMSG_SIZE] {
        let mut b = [0u8; XSD_SOCKMSG_SIZE];
        b[0..4].copy_from_slice(&self.type_.to_ne_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_ne_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_ne_bytes());
        b[12..16].copy_from_slice(&self.len.to_ne_bytes());
        b
    }

    /// Decodes a header (no validation: see [`FrameDecoder`]).
    pub fn from_bytes(b: &[u8; XSD_SOCKMSG_SIZE]) -> Self {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        XsdSockmsg {
            type_: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    /// The message type, `None` if the number is not a defined type.
    pub fn msg_type(&self) -> Option<XsdSockmsgType> {
        XsdSockmsgType::from_u32(self.type_)
    }
}

/// A whole message: header plus payload. `header.len == payload.len()` for messages
/// built by [`XsMessage::new`] and returned by [`FrameDecoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsMessage {
    /// The header.
    pub header: XsdSockmsg,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Why bytes could not be turned into messages, or a message could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header announced (or a caller built) a payload above `XENSTORE_PAYLOAD_MAX`.
    #[error("xenstore payload of {0} bytes exceeds XENSTORE_PAYLOAD_MAX ({XENSTORE_PAYLOAD_MAX})")]
    PayloadTooLong(usize),
    /// A payload that must be NUL-terminated strings is not.
    #[error("xenstore payload is not NUL-terminated strings as its type requires")]
    MissingNul,
    /// A payload has the wrong number of strings for its type.
    #[error("xenstore payload has {got} strings, expected {expected}")]
    WrongArgCount {
        /// Strings found.
        got: usize,
        /// Strings the type requires (a description, e.g. "2" or "at least 2").
        expected: &'static str,
    },
    /// A string is not UTF-8 (paths, tokens and permission strings are ASCII).
    #[error("xenstore string is not valid UTF-8")]
    NotUtf8,
    /// A path is invalid; the reason is given.
    #[error("invalid xenstore path: {0}")]
    InvalidPath(&'static str),
    /// A number field (domid, transaction id, offset) does not parse.
    #[error("invalid xenstore number: {0:?}")]
    InvalidNumber(String),
    /// A permission string (`b0`, `r5`) does not parse.
    #[error("invalid xenstore permission string: {0:?}")]
    InvalidPerm(String),
}

impl WireError {
    /// The xenstore error a server answers for this defect.
    pub fn xsd_error(&self) -> XsdError {
        match self {
            WireError::PayloadTooLong(_) => XsdError::E2BIG,
            _ => XsdError::EINVAL,
        }
    }
}

impl XsMessage {
    /// Builds a message, checking the payload limit.
    pub fn new(
        type_: XsdSockmsgType,
        req_id: u32,
        tx_id: u32,
        payload: Vec<u8>,
    ) -> Result<Self, WireError> {
        Self::with_raw_type(type_ as u32, req_id, tx_id, payload)
    }

    /// Builds a message with a raw type number (for tests of unknown types).
    pub fn with_raw_type(
        type_: u32,
        req_id: u32,
        tx_id: u32,
        payload: Vec<u8>,
    ) -> Result<Self, WireError> {
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(WireError::PayloadTooLong(payload.len()));
        }
        Ok(XsMessage {
            header: XsdSockmsg {
                type_,
                req_id,
                tx_id,
                len: payload.len() as u32,
            },
            payload,
        })
    }

    /// The message type, `None` for an undefined number.
    pub fn msg_type(&self) -> Option<XsdSockmsgType> {
        self.header.msg_type()
    }

    /// Appends the encoded message (header then payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut h = self.header;
        h.len = self.payload.len() as u32;
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The encoded message.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(XSD_SOCKMSG_SIZE + self.payload.len());
        self.encode_into(&mut v);
        v
    }

    /// Decodes exactly one message from `bytes` (header + `len` payload bytes, nothing
    /// more). For streams use [`FrameDecoder`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = FrameDecoder::new();
        d.push(bytes);
        match d.next_message()? {
            Some(m) if d.buffered() == 0 => Ok(m),
            Some(_) => Err(DecodeError::TrailingBytes(d.buffered())),
            None => Err(DecodeError::Truncated),
        }
    }
}

/// Why [`XsMessage::decode`] or a [`FrameDecoder`] refused bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces a payload above `XENSTORE_PAYLOAD_MAX`: the stream cannot be
    /// resynchronised; xenstored drops such a connection.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Fewer bytes than the header announces.
    #[error("truncated xenstore message")]
    Truncated,
    /// Bytes after the single expected message.
    #[error("{0} bytes after the xenstore message")]
    TrailingBytes(usize),
}

/// Splits a byte stream into messages. Feed it what `read` returned; take messages out
/// with [`FrameDecoder::next_message`]. An oversize `len` is a fatal error for the
/// stream (there is no way to find the next header).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<XsMessage>, DecodeError> {
        let avail = &self.buf[self.start..];
        let Some(hdr_bytes) = avail.first_chunk::<XSD_SOCKMSG_SIZE>() else {
            return Ok(None);
        };
        let header = XsdSockmsg::from_bytes(hdr_bytes);
        let len = header.len as usize;
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(WireError::PayloadTooLong(len).into());
        }
        if avail.len() < XSD_SOCKMSG_SIZE + len {
            return Ok(None);
        }
        let payload = avail[XSD_SOCKMSG_SIZE..XSD_SOCKMSG_SIZE + len].to_vec();
        self.start += XSD_SOCKMSG_SIZE + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(XsMessage { header, payload }))
    }
}

/// Encodes strings each followed by a NUL (`<foo>|*`). Strings must not contain NUL.
pub fn encode_strings<S: AsRef<[u8]>>(strings: &[S]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in strings {
        v.extend_from_slice(s.as_ref());
        v.push(0);
    }
    v
}

/// Splits a payload of NUL-terminated strings (`<foo>|*`); the payload must be empty or
/// end in NUL.
pub fn split_strings(payload: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = payload.strip_suffix(b"\0") else {
        return Err(WireError::MissingNul);
    };
    Ok(body.split(|b| *b == 0).collect())
}

/// Splits a payload of NUL-terminated strings and checks they are UTF-8.
pub fn split_str_args(payload: &[u8]) -> Result<Vec<&str>, WireError> {
    split_strings(payload)?
        .into_iter()
        .map(|s| std::str::from_utf8(s).map_err(|_| WireError::NotUtf8))
        .collect()
}

/// The single string of a one-argument payload (`<path>|`): exactly one NUL, at the end
/// (xenstored's `onearg`).
pub fn one_arg(payload: &[u8]) -> Result<&str, WireError> {
    let args = split_str_args(payload)?;
    match args.as_slice() {
        [one] => Ok(one),
        other => Err(WireError::WrongArgCount {
            got: other.len(),
            expected: "1",
        }),
    }
}

/// Splits a `WRITE` payload `<path>|<value|>` at its first NUL.
pub fn split_write(payload: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let Some(nul) = payload.iter().position(|b| *b == 0) else {
        return Err(WireError::MissingNul);
    };
    let path = std::str::from_utf8(&payload[..nul]).map_err(|_| WireError::NotUtf8)?;
    Ok((path, &payload[nul + 1..]))
}

/// Encodes a `WRITE` payload.
pub fn encode_write(path: &str, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(path.len() + 1 + value.len());
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    v.extend_from_slice(value);
    v
}

/// How a path may be used in [`validate_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A node path: absolute, or relative to the caller's domain home.
    Node,
    /// A watch path: a node path or a special `@<name>` path.
    Watch,
}

/// Checks a path the way xenstored's `canonicalize` does: characters
/// `[A-Za-z0-9-/_@]` only, not empty, no `//`, no trailing `/` except for `/`
/// itself, `@` only at the start of a watch path, at most `XENSTORE_ABS_PATH_MAX` bytes.
/// Relative paths (not starting with `/`) are allowed; the server resolves them
/// against `/local/domain/<domid>`.
pub fn validate_path(path: &str, kind: PathKind) -> Result<(), WireError> {
    if path.is_empty() {
        return Err(WireError::InvalidPath("empty path"));
    }
    if path.len() > XENSTORE_ABS_PATH_MAX {
        return Err(WireError::InvalidPath(
            "path longer than XENSTORE_ABS_PATH_MAX",
        ));
    }
    let valid = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@');
    if !path.bytes().all(valid) {
        return Err(WireError::InvalidPath(
            "character outside [A-Za-z0-9-/_@] in path",
        ));
    }
    if path.starts_with('@') && kind != PathKind::Watch {
        return Err(WireError::InvalidPath(
            "special @ path outside a watch request",
        ));
    }
    if path.contains("//") {
        return Err(WireError::InvalidPath("doubled slash in path"));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(WireError::InvalidPath("trailing slash in path"));
    }
    Ok(())
}

/// Parses a decimal domid (`0..=65535`), as in `GET_DOMAIN_PATH`.
pub fn parse_domid(s: &str) -> Result<DomId, WireError> {
    s.parse::<u16>()
        .map(DomId)
        .map_err(|_| WireError::InvalidNumber(s.to_owned()))
}

/// Parses a decimal unsigned 32-bit number (transaction ids, offsets).
pub fn parse_u32(s: &str) -> Result<u32, WireError> {
    s.parse::<u32>()
        .map_err(|_| WireError::InvalidNumber(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_spec_table() {
        assert_eq!(XsdSockmsgType::Directory as u32, 1);
        assert_eq!(XsdSockmsgType::GetDomainPath as u32, 10);
        assert_eq!(XsdSockmsgType::Error as u32, 16);
        assert_eq!(XsdSockmsgType::ResetWatches as u32, 21);
        assert_eq!(XsdSockmsgType::SetQuota as u32, 26);
        assert_eq!(XsdSockmsgType::from_u32(20), None);
        assert_eq!(XsdSockmsgType::from_u32(27), None);
        assert_eq!(
            XsdSockmsgType::from_u32(0xffff),
            Some(XsdSockmsgType::Invalid)
        );
        for t in XsdSockmsgType::ALL {
            assert_eq!(XsdSockmsgType::from_u32(t as u32), Some(t));
        }
    }

    #[test]
    fn errors_roundtrip_through_payload() {
        for e in XsdError::ALL {
            assert_eq!(XsdError::from_payload(&e.to_payload()), Some(e));
        }
        assert_eq!(XsdError::from_payload(b"EWHATEVER\0"), None);
    }

    #[test]
    fn decoder_handles_split_and_joined_frames() {
        let a = XsMessage::new(XsdSockmsgType::Read, 7, 0, b"/a\0".to_vec()).unwrap();
        let b = XsMessage::new(XsdSockmsgType::Write, 8, 3, encode_write("/b", b"v")).unwrap();
        let mut bytes = a.encode();
        bytes.extend(b.encode());
        let mut d = FrameDecoder::new();
        for chunk in bytes.chunks(5) {
            d.push(chunk);
        }
        assert_eq!(d.next_message().unwrap(), Some(a));
        assert_eq!(d.next_message().unwrap(), Some(b));
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn decoder_refuses_oversize_len() {
        let h = XsdSockmsg {
            type_: 2,
            req_id: 1,
            tx_id: 0,
            len: 4097,
        };
        let mut d = FrameDecoder::new();
        d.push(&h.to_bytes());
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::Wire(WireError::PayloadTooLong(4097)))
        ));
    }

    #[test]
    fn strings_and_paths() {
        assert_eq!(split_strings(b"a\0bc\0").unwrap(), vec![&b"a"[..], b"bc"]);
        assert_eq!(split_strings(b"a\0bc"), Err(WireError::MissingNul));
        assert_eq!(one_arg(b"/x\0").unwrap(), "/x");
        assert!(one_arg(b"/x\0y\0").is_err());
        assert_eq!(split_write(b"/p\0v\0w").unwrap(), ("/p", &b"v\0w"[..]));
        assert!(validate_path("/local/domain/1", PathKind::Node).is_ok());
        assert!(validate_path("device/vif/0", PathKind::Node).is_ok());
        assert!(validate_path("/", PathKind::Node).is_ok());
        assert!(validate_path("/a/", PathKind::Node).is_err());
        assert!(validate_path("/a//b", PathKind::Node).is_err());
        assert!(validate_path("/a b", PathKind::Node).is_err());
        assert!(validate_path("@releaseDomain", PathKind::Node).is_err());
        assert!(validate_path("@releaseDomain", PathKind::Watch).is_ok());
        assert!(validate_path("", PathKind::Node).is_err());
        let long = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
        assert!(validate_path(&long, PathKind::Node).is_err());
    }
}
