//! Property tests: the wire codec round-trips, the decoders never panic on arbitrary
//! bytes, and the local server survives arbitrary framed and unframed input while
//! serving a healthy client.

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use xenstore::perms::XsPerm;
use xenstore::wire::{
    self, split_strings, split_write, validate_path, FrameDecoder, PathKind, XsMessage, XsdError,
    XsdSockmsg, XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE,
};
use xenstore::{Xenstore, XsClient, XsTx};
use xenstored::Xenstored;

fn message() -> impl Strategy<Value = XsMessage> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..=XENSTORE_PAYLOAD_MAX),
    )
        .prop_map(|(t, r, x, p)| XsMessage::with_raw_type(t, r, x, p).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_decode_roundtrip(m in message()) {
        let bytes = m.encode();
        prop_assert_eq!(bytes.len(), XSD_SOCKMSG_SIZE + m.payload.len());
        prop_assert_eq!(XsMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn stream_of_messages_decodes_whatever_the_chunking(
        ms in proptest::collection::vec(message(), 1..6),
        cuts in proptest::collection::vec(1usize..700, 1..40),
    ) {
        let mut bytes = Vec::new();
        for m in &ms {
            m.encode_into(&mut bytes);
        }
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = cuts[i % cuts.len()].min(bytes.len() - pos);
            d.push(&bytes[pos..pos + n]);
            pos += n;
            i += 1;
            while let Some(m) = d.next_message().unwrap() {
                out.push(m);
            }
        }
        prop_assert_eq!(out, ms);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        // Ok(Some), Ok(None) or Err: never a panic, and progress always stops.
        for _ in 0..bytes.len() + 1 {
            match d.next_message() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = XsMessage::decode(&bytes);
        let _ = split_strings(&bytes);
        let _ = split_write(&bytes);
        let _ = wire::one_arg(&bytes);
        let _ = XsdError::from_payload(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = validate_path(&s, PathKind::Node);
        let _ = validate_path(&s, PathKind::Watch);
        let _ = XsPerm::parse(&s);
        let _ = wire::parse_domid(&s);
    }

    #[test]
    fn strings_roundtrip(strings in proptest::collection::vec("[a-zA-Z0-9/_@-]{0,20}", 0..8)) {
        let enc = wire::encode_strings(&strings);
        let dec = split_strings(&enc).unwrap();
        prop_assert_eq!(dec.len(), strings.len());
        for (a, b) in dec.iter().zip(&strings) {
            prop_assert_eq!(*a, b.as_bytes());
        }
    }
}

fn server() -> &'static Xenstored {
    static S: OnceLock<Xenstored> = OnceLock::new();
    S.get_or_init(Xenstored::new)
}

fn healthy() -> &'static XsClient {
    static C: OnceLock<XsClient> = OnceLock::new();
    C.get_or_init(|| {
        let c = XsClient::new(server().connect(xen_ids::DomId(0)).unwrap()).unwrap();
        c.set_request_timeout(Some(Duration::from_secs(10)));
        c
    })
}

/// A request with a plausible type and a payload of path-like strings and junk.
fn framed_request() -> impl Strategy<Value = XsMessage> {
    let piece = prop_oneof![
        "[a-z0-9/@_-]{0,12}".prop_map(|s| s.into_bytes()),
        Just(b"/local/domain/3".to_vec()),
        Just(b"T".to_vec()),
        Just(b"b3".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    (
        prop_oneof![0u32..30, any::<u32>()],
        0u32..4,
        proptest::collection::vec((piece, any::<bool>()), 0..5),
    )
        .prop_map(|(t, tx, pieces)| {
            let mut p = Vec::new();
            for (s, nul) in pieces {
                p.extend(s);
                if nul {
                    p.push(0);
                }
            }
            XsMessage::with_raw_type(t, 1, tx, p).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn server_answers_every_framed_request_and_stays_healthy(
        domid in prop_oneof![Just(0u16), 1u16..5],
        reqs in proptest::collection::vec(framed_request(), 1..12),
    ) {
        let mut s = server().connect(xen_ids::DomId(domid)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for (i, mut r) in reqs.into_iter().enumerate() {
            r.header.req_id = i as u32 + 1;
            s.write_all(&r.encode()).unwrap();
            // Exactly one reply with our req_id, possibly after watch events.
            loop {
                let mut h = [0u8; XSD_SOCKMSG_SIZE];
                s.read_exact(&mut h).unwrap();
                let h = XsdSockmsg::from_bytes(&h);
                prop_assert!(h.len as usize <= XENSTORE_PAYLOAD_MAX);
                let mut p = vec![0u8; h.len as usize];
                s.read_exact(&mut p).unwrap();
                if h.type_ == wire::XsdSockmsgType::WatchEvent as u32 {
                    prop_assert_eq!(h.req_id, 0);
                    continue;
                }
                prop_assert_eq!(h.req_id, i as u32 + 1);
                break;
            }
        }
        healthy().write(XsTx::NONE, "/prop/alive", b"1").unwrap();
        prop_assert_eq!(healthy().read(XsTx::NONE, "/prop/alive").unwrap(), b"1");
    }

    #[test]
    fn server_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut s = server().connect(xen_ids::DomId(9)).unwrap();
        // Whatever happens to this connection (error replies, close), the write side
        // may fail once the server closes it; that is fine.
        let _ = s.write_all(&bytes);
        drop(s);
        healthy().write(XsTx::NONE, "/prop/alive2", b"1").unwrap();
        prop_assert_eq!(healthy().read(XsTx::NONE, "/prop/alive2").unwrap(), b"1");
    }
}
