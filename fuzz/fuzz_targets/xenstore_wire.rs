//! The xenstore wire decoder (`FrameDecoder`, `XsMessage::decode`) over any byte stream
//! cut into any chunks, and every parser the server and the drivers apply to payloads
//! and values a guest wrote: string splitting, paths, permissions, numbers, the xenbus
//! `state`/integer/MAC parsers.
//!
//! Input: one byte choosing the chunk size, then the stream.
//!
//! Checked: no panic; decoded messages re-encode to exactly the bytes they came from;
//! the decoder never returns more bytes than it was given; an oversize length is an
//! error, never an allocation.
#![no_main]

use hypervisor::xenbus::{parse_mac, parse_u64, XenbusState};
use xenstore::perms::{parse_perms, XsPerm};
use xenstore::wire::{
    one_arg, parse_domid, parse_u32, split_str_args, split_strings, split_write, validate_path,
    FrameDecoder, PathKind, XsMessage, XsdError, XENSTORE_PAYLOAD_MAX,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = chunk as usize % 64 + 1;

    // One message exactly, or an error.
    if let Ok(m) = XsMessage::decode(stream) {
        assert_eq!(m.encode(), stream, "decode/encode round trip");
    }

    // A stream in chunks.
    let mut d = FrameDecoder::new();
    let mut pos = 0usize; // bytes of `stream` accounted for by returned messages
    'feed: for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= XENSTORE_PAYLOAD_MAX);
                    let bytes = m.encode();
                    assert_eq!(&stream[pos..pos + bytes.len()], bytes.as_slice());
                    pos += bytes.len();
                    payload(&m);
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_string();
                    // The announced length is over the limit: the stream is dead.
                    let len = u32::from_ne_bytes(stream[pos + 12..pos + 16].try_into().unwrap());
                    assert!(len as usize > XENSTORE_PAYLOAD_MAX);
                    break 'feed;
                }
            }
        }
    }
    assert!(pos + d.buffered() <= stream.len());
});

/// Everything a server or a driver parses out of one payload.
fn payload(m: &XsMessage) {
    let _ = m.msg_type().map(|t| t.name());
    let p = &m.payload;
    let _ = XsdError::from_payload(p);
    let _ = split_strings(p);
    if let Ok(args) = split_str_args(p) {
        for a in &args {
            let _ = validate_path(a, PathKind::Node);
            let _ = validate_path(a, PathKind::Watch);
            let _ = parse_domid(a);
            let _ = parse_u32(a);
            let _ = XsPerm::parse(a);
            let _ = parse_mac(a);
        }
        let _ = parse_perms(&args);
    }
    let _ = one_arg(p);
    if let Ok((path, value)) = split_write(p) {
        let _ = validate_path(path, PathKind::Node);
        // The values a frontend writes and netback reads.
        if let Some(n) = parse_u64(value, u64::MAX) {
            assert_eq!(
                n.to_string().as_bytes(),
                value
                    .strip_suffix(b"\0")
                    .or(value.strip_suffix(b"\n"))
                    .unwrap_or(value)
                    .trim_ascii_start_matches_zeros()
            );
        }
        if let Some(s) = XenbusState::parse(value) {
            assert_eq!(XenbusState::parse(s.as_str().as_bytes()), Some(s));
        }
    }
}

trait TrimZeros {
    fn trim_ascii_start_matches_zeros(&self) -> &[u8];
}
impl TrimZeros for [u8] {
    /// Leading zeros off a decimal (keeping one digit).
    fn trim_ascii_start_matches_zeros(&self) -> &[u8] {
        let mut s = self;
        while s.len() > 1 && s[0] == b'0' {
            s = &s[1..];
        }
        s
    }
}
