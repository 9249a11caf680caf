//! The TX poll's packet budget and the emulated backend rate wrapped around it, on one
//! vif driven directly (no event loop, an injected time): a poll takes exactly its
//! budget of request chains, and [`EmulatedBackendRate`] lets through no more than its
//! tokens allow, holding the vif until the next one.

use hypervisor::grant::{Access, GrantMap, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use netback::emulation::EmulatedBackendRate;
use netback::vif::{Poll, Vif, TX_BATCH};
use netport::{MemPort, Port};
use shared_ring::netif::{
    NetTxFlags, NetifRxFrontRing, NetifTxFrontRing, NetifTxRequest, NETIF_RSP_OKAY,
};
use shared_ring::FrontIndices;
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalMapping, LocalPlatform, LocalSharedPages};

const FRAME: u16 = 60;

/// A frontend written against the raw rings, and a vif of dom0 over them.
struct Rig {
    _host: LocalHost,
    back: LocalPlatform,
    _front: LocalPlatform,
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    tx_idx: FrontIndices,
    vif: Vif<LocalMapping>,
    wire: MemPort,
    port: MemPort,
}

impl Rig {
    fn new() -> Rig {
        let host = LocalHost::new();
        let back = host.domain(DomId(0)).unwrap();
        let front = host.domain(DomId(1)).unwrap();
        let tx_ring = front.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let rx_ring = front.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let data = front.grants.share(DomId(0), 1, Access::ReadOnly).unwrap();
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        let map = |s: &LocalSharedPages| {
            back.grants
                .map(DomId(1), &[s.grefs()[0]], Access::Writable)
                .unwrap()
        };
        let vif = Vif::new(
            VifId::new(DomId(1), 0),
            map(&tx_ring),
            map(&rx_ring),
            None,
            None,
            0,
        )
        .expect("fresh rings attach");
        let (port, wire) = MemPort::pair(256, 2048).unwrap();
        Rig {
            _host: host,
            back,
            _front: front,
            tx_ring,
            _rx_ring: rx_ring,
            data,
            tx_idx: FrontIndices::default(),
            vif,
            wire,
            port,
        }
    }

    /// Puts `n` one-slot frames on the TX ring and pushes them.
    fn push(&mut self, n: u16) {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        for id in 0..n {
            r.put_request(&NetifTxRequest {
                gref: self.data.grefs()[0].0,
                offset: 0,
                flags: NetTxFlags::empty().bits(),
                id,
                size: FRAME,
            })
            .unwrap();
        }
        r.push_requests();
        self.tx_idx = r.indices();
    }

    /// Responses the backend wrote since the last call.
    fn responses(&mut self) -> Vec<i16> {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push(x.status);
        }
        self.tx_idx = r.indices();
        out
    }

    /// Frames that reached the port.
    fn wire_frames(&mut self) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while let Some((len, _)) = self.wire.recv(&mut buf).unwrap() {
            assert_eq!(len, FRAME as usize);
            n += 1;
        }
        n
    }

    fn poll(&mut self, now: u64, budget: usize) -> Poll {
        self.vif
            .tx_poll(&|| now, &self.back.grants, &mut self.port, budget)
            .unwrap()
    }

    fn poll_rated(&mut self, rate: &mut EmulatedBackendRate, now: u64) -> Poll {
        rate.tx_poll(&mut self.vif, &|| now, &self.back.grants, &mut self.port)
            .unwrap()
    }
}

#[test]
fn a_poll_takes_exactly_its_budget() {
    let mut rig = Rig::new();
    rig.push(10);
    let p = rig.poll(0, 3);
    assert_eq!((p.packets, p.more, p.hold_until), (3, true, None));
    assert_eq!(rig.wire_frames(), 3);
    assert_eq!(rig.responses(), vec![NETIF_RSP_OKAY; 3]);

    let p = rig.poll(0, 0);
    assert_eq!((p.packets, p.more), (0, true), "nothing taken, work left");
    assert!(rig.responses().is_empty());

    let p = rig.poll(0, TX_BATCH);
    assert_eq!((p.packets, p.more, p.hold_until), (7, false, None));
    assert_eq!(rig.wire_frames(), 7);
    assert_eq!(rig.responses(), vec![NETIF_RSP_OKAY; 7]);
}

#[test]
fn the_batch_bounds_a_large_budget() {
    let mut rig = Rig::new();
    rig.push(TX_BATCH as u16 + 5);
    let p = rig.poll(0, usize::MAX);
    assert_eq!((p.packets, p.more), (TX_BATCH, true));
    let p = rig.poll(0, usize::MAX);
    assert_eq!((p.packets, p.more), (5, false));
    assert_eq!(rig.wire_frames(), TX_BATCH + 5);
}

#[test]
fn emulated_rate_lets_through_its_tokens_and_holds_until_the_next() {
    const MS: u64 = 1_000_000;
    let mut rig = Rig::new();
    // 5000 packets/s: a burst of 5 (1 ms of work), one token every 200 µs.
    let mut rate = EmulatedBackendRate::new(5000, 0);
    rig.push(12);

    let p = rig.poll_rated(&mut rate, 0);
    assert_eq!((p.packets, p.more, p.hold_until), (5, false, Some(200_000)));
    assert_eq!(rig.vif.hold_until(), Some(200_000));
    assert_eq!(rig.wire_frames(), 5);

    // Held: the ring is not read before the next token.
    let p = rig.poll_rated(&mut rate, 100_000);
    assert_eq!((p.packets, p.hold_until), (0, Some(200_000)));
    assert_eq!(rig.wire_frames(), 0);

    let p = rig.poll_rated(&mut rate, 200_000);
    assert_eq!((p.packets, p.hold_until), (1, Some(400_000)));

    // 10 ms later the bucket is full again, but holds only its burst.
    let p = rig.poll_rated(&mut rate, 10 * MS);
    assert_eq!((p.packets, p.hold_until), (5, Some(10 * MS + 200_000)));

    // The last frame: the ring is empty afterwards, no hold.
    let p = rig.poll_rated(&mut rate, 20 * MS);
    assert_eq!((p.packets, p.more, p.hold_until), (1, false, None));
    assert_eq!(rig.wire_frames(), 1 + 5 + 1);
    assert_eq!(rig.responses(), vec![NETIF_RSP_OKAY; 12]);
}

#[test]
fn emulated_rate_is_shared_by_every_vif() {
    let mut a = Rig::new();
    let mut b = Rig::new();
    let mut rate = EmulatedBackendRate::new(5000, 0);
    a.push(4);
    b.push(4);
    let pa = a.poll_rated(&mut rate, 0);
    let pb = b.poll_rated(&mut rate, 0);
    assert_eq!((pa.packets, pa.hold_until), (4, None));
    assert_eq!((pb.packets, pb.hold_until), (1, Some(200_000)));
    assert_eq!(a.wire_frames() + b.wire_frames(), 5);
}
