//! The local hypervisor's wire protocol (`xen_local::proto`): `Request::decode` (what
//! the hypervisor reads from a domain) and `Reply::<T>::decode` for every reply type
//! (what a domain reads from the hypervisor), over any bytes.
//!
//! Input: one message, decoded as a request and as each kind of reply.
//!
//! Checked: no panic; a decoded message re-encodes to exactly the bytes it came from
//! (except a refusal whose reason is not UTF-8, read lossily, which must still decode
//! to itself after re-encoding); a decoded request's op code is the message's first
//! field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_local::proto::{
    Accessed, Attached, Bound, Done, Fields, Mapped, Reply, Request, Shared, TableOpened,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        assert_eq!(req.encode(), data, "request re-encodes exactly");
        assert_eq!((req.op() as u16).to_le_bytes(), data[..2]);
    }
    reply::<Attached>(data);
    reply::<Shared>(data);
    reply::<Done>(data);
    reply::<TableOpened>(data);
    reply::<Accessed>(data);
    reply::<Mapped>(data);
    reply::<Bound>(data);
});

fn reply<T: Fields + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(r) = Reply::<T>::decode(data) else {
        return;
    };
    let again = r.encode();
    let lossy = matches!(r, Reply::Refused(_)) && std::str::from_utf8(&data[3..]).is_err();
    if !lossy {
        assert_eq!(again, data, "reply re-encodes exactly");
    }
    assert_eq!(Reply::<T>::decode(&again).as_ref(), Ok(&r), "reply round trip");
}
