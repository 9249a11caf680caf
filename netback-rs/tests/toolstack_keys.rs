//! The toolstack's vif keys, as libxl writes them in the backend directory (`rate`,
//! `mtu`, `mac`, `vifname`, `ip`), on the local platform: a `rate` caps a flooding
//! guest (over a window of netback's injected clock), follows a change at runtime and
//! reaches a credit-negotiating frontend; the TAP gets the name, MAC and MTU the hotplug
//! scripts would give it; each malformed value refuses only its own vif.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::clock::monotonic_ns;
use netback::tapvif::TapFactory;
use netback::toolstack::{create_vif, VifSpec};
use netback::vifconfig::{RateCap, RATE_MIN_BURST};
use netback::{BackstopPolicy, NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::netns::{skip_unless_root_with_tun, unique_name, NetNs};
use netport::MemPortConfig;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

const LEN: usize = 1000;

/// Creates vif `devid` of `domid`, served by dom0, with `edit` applied to libxl's keys.
fn vif_with(host: &LocalHost, domid: u16, edit: impl FnOnce(&mut VifSpec)) -> (VifId, VifSpec) {
    let mut spec = VifSpec::new(DomId(0), DomId(domid), 0);
    edit(&mut spec);
    let dom0 = host.domain(DomId(0)).unwrap();
    create_vif(&dom0.xenstore, &spec).unwrap();
    (VifId::new(DomId(domid), 0), spec)
}

fn xs_read(host: &LocalHost, path: &str) -> Option<String> {
    let dom0 = host.domain(DomId(0)).unwrap();
    dom0.xenstore
        .try_read(XsTx::NONE, path)
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn xs_write(host: &LocalHost, path: &str, v: &str) {
    let dom0 = host.domain(DomId(0)).unwrap();
    dom0.xenstore.write(XsTx::NONE, path, v.as_bytes()).unwrap();
}

/// netback's clock here: the system's until the test first advances it, then frozen
/// there and moved only by the test, so that what a budget admits over a window is
/// exact, while the handshake and the control work (paced on this clock) run in real
/// time before.
#[derive(Default)]
struct TestClock {
    frozen_at: AtomicU64,
    skew: AtomicU64,
}

impl TestClock {
    fn now(&self) -> u64 {
        match self.frozen_at.load(Ordering::Relaxed) {
            0 => monotonic_ns(),
            at => at + self.skew.load(Ordering::Relaxed),
        }
    }

    /// Freezes the clock (the first time) and moves it `ns` ahead.
    fn advance(&self, ns: u64) {
        let _ = self.frozen_at.compare_exchange(
            0,
            monotonic_ns(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.skew.fetch_add(ns, Ordering::Relaxed);
    }
}

/// netback whose clock stands still once the test first advances it ([`TestClock`]).
fn frozen_clock_backend(
    host: &LocalHost,
    policy: BackstopPolicy,
) -> (BackendThread, Arc<TestClock>) {
    let skew = Arc::new(TestClock::default());
    let opts = BackendOptions {
        clock: Box::new({
            let skew = skew.clone();
            move || skew.now()
        }),
        ..BackendOptions::default()
    };
    let cfg = NetbackConfig {
        tx_policy: policy,
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start_with(host, cfg, MemPortConfig::new(1024, 65536), opts).unwrap();
    (nb, skew)
}

/// Floods from the guest while netback's clock advances by `window` in 10 ms steps (one
/// step per 10 ms of real time); then stops advancing it, lets what was admitted drain
/// and returns the bytes that reached the wire.
fn flood_over(
    guest: &mut Guest,
    wire: &mut netport::MemPort,
    skew: &TestClock,
    window: Duration,
) -> u64 {
    let steps = (window.as_millis() / 10) as u64;
    // From here netback's time moves only by the steps below.
    skew.advance(0);
    let app = std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0);
    let real = Duration::from_millis(10 * steps + 200);
    let sender = std::thread::spawn(move || {
        let mut app = app;
        let n = flood(&mut app, LEN, real);
        (app, n)
    });
    let mut bytes = 0;
    for _ in 0..steps {
        let (_, b) = count_until(wire, Instant::now() + Duration::from_millis(10));
        bytes += b;
        skew.advance(10_000_000);
    }
    let (app, offered) = sender.join().unwrap();
    guest.app = app;
    // The clock stands still now: nothing more can be admitted, only drained.
    let (_, b) = count_until(wire, Instant::now() + Duration::from_millis(300));
    bytes += b;
    assert!(
        offered * LEN as u64 > bytes,
        "the guest did not flood: {offered} frames offered, {bytes} bytes delivered"
    );
    bytes
}

/// Bytes a `rate` cap admits over `window` at most (Linux's semantics: the average rate
/// plus a burst of max(one interval's bytes, 128 KiB)).
fn cap_bound(rate: RateCap, window: Duration) -> u64 {
    let per_sec = rate.bytes_per_sec() as u128;
    (per_sec * window.as_nanos() / 1_000_000_000) as u64 + rate.bytes.max(RATE_MIN_BURST)
}

#[test]
fn rate_caps_a_flooding_guest_and_follows_a_change() {
    let host = LocalHost::new();
    // xl's rate=1Mb/s: libxl writes "6250,50000".
    let (id, spec) = vif_with(&host, 1, |s| s.rate = Some(VifSpec::libxl_rate(125_000)));
    assert_eq!(spec.rate, Some((6250, 50_000)));
    let slow = RateCap {
        bytes: 6250,
        usec: 50_000,
    };
    let (nb, skew) = frozen_clock_backend(&host, BackstopPolicy::Drop);
    // A frontend that negotiates no credits: netback alone enforces the cap.
    let mut fc = NetfrontConfig::new(0);
    fc.request_credits = false;
    let mut guest = Guest::start(&host, DomId(1), fc).unwrap();
    let mut wire = nb.wire(id);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    assert_eq!(nb.vif_status(id).unwrap().rate, Some(slow));

    let window = Duration::from_secs(1);
    let got = flood_over(&mut guest, &mut wire, &skew, window);
    let bound = cap_bound(slow, window);
    eprintln!("rate 6250,50000 over {window:?} of netback's clock: {got} bytes (bound {bound})");
    assert!(got <= bound, "{got} bytes admitted, more than {bound}");
    assert!(
        got >= RATE_MIN_BURST / 2,
        "the cap let almost nothing through: {got}"
    );

    // The toolstack raises the cap tenfold (xl network-attach's rate, or a direct
    // write): the running vif follows without reconnecting.
    let fast = RateCap {
        bytes: 62_500,
        usec: 50_000,
    };
    xs_write(
        &host,
        &format!("{}/rate", spec.backend_path()),
        "62500,50000",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while nb.vif_status(id).unwrap().rate != Some(fast) {
        assert!(Instant::now() < deadline, "the new rate was not applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    let got2 = flood_over(&mut guest, &mut wire, &skew, window);
    let bound2 = cap_bound(fast, window);
    eprintln!("rate 62500,50000 over {window:?}: {got2} bytes (bound {bound2})");
    assert!(got2 <= bound2, "{got2} bytes admitted, more than {bound2}");
    assert!(
        got2 > bound,
        "the raised cap was not applied: {got2} bytes, the old cap allows {bound}"
    );
    let st = nb.vif_status(id).unwrap();
    assert!(
        st.connected,
        "changing the rate must not disconnect the vif"
    );
    assert!(st.counters.tx_dropped_police > 0);

    // A malformed new value on the running vif: logged, the cap in force stays, the vif
    // stays connected and passes traffic.
    xs_write(&host, &format!("{}/rate", spec.backend_path()), "1Mb/s");
    std::thread::sleep(Duration::from_millis(300));
    let st = nb.vif_status(id).unwrap();
    assert_eq!(st.rate, Some(fast), "a malformed rate replaced the cap");
    assert!(
        st.connected,
        "a malformed rate on a running vif disconnected it"
    );
    skew.advance(1_000_000_000);
    send_all(&mut guest.app, &frame(7, LEN));
    assert_eq!(recv_n(&mut wire, 1, Duration::from_secs(10)).len(), 1);
    guest.stop().unwrap();
}

#[test]
fn a_credit_negotiating_frontend_gets_the_cap_in_its_credit_area() {
    let host = LocalHost::new();
    let (id, _) = vif_with(&host, 1, |s| s.rate = Some((6250, 50_000)));
    // No allocator: the budget is unlimited, so only the cap can make the frontend drop.
    let nb = BackendThread::start(&host, NetbackConfig::default()).unwrap();
    let t0 = Instant::now();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = nb.wire(id);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    let app = std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0);
    let sender = std::thread::spawn(move || {
        let mut app = app;
        flood(&mut app, LEN, Duration::from_millis(500))
    });
    let (_, bytes) = count_until(&mut wire, Instant::now() + Duration::from_millis(800));
    let elapsed = t0.elapsed();
    sender.join().unwrap();
    let stats = guest.stop().unwrap();
    let st = nb.vif_status(id).unwrap();
    assert!(st.credits, "the frontend negotiated credits");
    assert!(
        stats.tx_dropped_credit > 0,
        "the frontend enforced no cap: its credit area does not carry the rate"
    );
    let bound = cap_bound(
        RateCap {
            bytes: 6250,
            usec: 50_000,
        },
        elapsed,
    );
    assert!(
        bytes <= bound,
        "{bytes} bytes in {elapsed:?}, bound {bound}"
    );
}

#[test]
fn a_budget_below_the_cap_holds_and_the_cap_holds_above_it() {
    let host = LocalHost::new();
    let (id, _) = vif_with(&host, 1, |s| s.rate = Some((62_500, 50_000)));
    let (nb, skew) = frozen_clock_backend(&host, BackstopPolicy::Drop);
    let mut fc = NetfrontConfig::new(0);
    fc.request_credits = false;
    let mut guest = Guest::start(&host, DomId(1), fc).unwrap();
    let mut wire = nb.wire(id);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    // A DBA budget of 50 kB/s (burst 10 kB), far below the 1.25 MB/s cap: the budget
    // holds (with the backstop's slack, twice its burst).
    let budget = shared_ring::credit::Credits {
        bytes: shared_ring::Limit::rate(50_000, 10_000),
        packets: shared_ring::Limit::Unlimited,
        period_us: 20_000,
    };
    nb.call(
        move |nb| assert!(nb.set_tx_budget(id, &budget)),
        Duration::from_secs(10),
    )
    .unwrap();
    let window = Duration::from_secs(1);
    let got = flood_over(&mut guest, &mut wire, &skew, window);
    assert!(
        got <= 50_000 + 2 * 10_000,
        "the budget did not hold: {got} bytes"
    );
    // A budget far above the cap (100 MB/s): the cap holds.
    let budget = shared_ring::credit::Credits {
        bytes: shared_ring::Limit::rate(100_000_000, 10_000_000),
        ..budget
    };
    nb.call(
        move |nb| assert!(nb.set_tx_budget(id, &budget)),
        Duration::from_secs(10),
    )
    .unwrap();
    let got = flood_over(&mut guest, &mut wire, &skew, window);
    let bound = cap_bound(
        RateCap {
            bytes: 62_500,
            usec: 50_000,
        },
        window,
    );
    assert!(
        got <= bound,
        "the cap did not hold under a larger budget: {got} > {bound}"
    );
    guest.stop().unwrap();
}

#[test]
fn each_malformed_key_refuses_its_vif_only() {
    let host = LocalHost::new();
    let (good, _) = vif_with(&host, 1, |_| {});
    let cases: [(&str, &str); 8] = [
        ("rate", "1Mb/s"),
        ("rate", "6250,0"),
        ("mtu", "67"),
        ("mtu", "1500x"),
        ("mac", "01:16:3e:00:00:01"),
        ("mac", "00:16:3e:00:01"),
        ("vifname", "eth/0"),
        ("ip", "10.0.0.256"),
    ];
    let mut bad = Vec::new();
    for (i, (key, value)) in cases.iter().enumerate() {
        let (id, spec) = vif_with(&host, 10 + i as u16, |_| {});
        // Written after the directory as a toolstack may (a frontend is not there yet).
        xs_write(&host, &format!("{}/{key}", spec.backend_path()), value);
        bad.push((id, spec, *key));
    }
    let nb = BackendThread::start(&host, NetbackConfig::default()).unwrap();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = nb.wire(good);
    nb.wait_connected(&[good], Duration::from_secs(10)).unwrap();
    for (id, spec, key) in &bad {
        let be = spec.backend_path();
        let error = xs_read(&host, &format!("{be}/error"));
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains(&format!("backend key {key}"))),
            "{id}: error node {error:?}"
        );
        assert_eq!(
            xs_read(&host, &format!("{be}/state")).as_deref(),
            Some("5"),
            "{id}"
        );
        assert!(nb.vif_status(*id).is_none(), "{id} was taken up");
    }
    // The good vif passes traffic.
    for seq in 0..50 {
        send_all(&mut guest.app, &frame(seq, 300));
    }
    assert_eq!(recv_n(&mut wire, 50, Duration::from_secs(10)).len(), 50);

    // The toolstack fixes a value: the vif is probed again and waits for its frontend.
    let (id, spec, _) = &bad[2];
    xs_write(&host, &format!("{}/mtu", spec.backend_path()), "1400");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nb.vif_status(*id).is_none() {
        assert!(
            Instant::now() < deadline,
            "{id}: not probed again after the fix"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let be = spec.backend_path();
    assert_eq!(
        xs_read(&host, &format!("{be}/error")),
        None,
        "{id}: stale error"
    );
    assert_eq!(
        xs_read(&host, &format!("{be}/state")).as_deref(),
        Some("2"),
        "{id}"
    );
    // Another refused vif stays refused, its reason in place.
    let (id, spec, _) = &bad[0];
    assert!(nb.vif_status(*id).is_none());
    assert!(xs_read(&host, &format!("{}/error", spec.backend_path())).is_some());
    guest.stop().unwrap();
}

#[test]
fn the_tap_has_the_name_mac_and_mtu_the_scripts_would_give_it() {
    if skip_unless_root_with_tun("the_tap_has_the_name_mac_and_mtu_the_scripts_would_give_it") {
        return;
    }
    let host = LocalHost::new();
    let name = unique_name("web");
    let (named, _) = vif_with(&host, 1, |s| {
        s.vifname = Some(name.clone());
        s.mtu = 1400;
        s.ip = Some("10.0.0.2".into());
        s.rate = Some((6250, 50_000));
    });
    let (plain, spec) = vif_with(&host, 2, |_| {});
    // libxl writes `mtu` only when it is not the default: no key here.
    let dom0 = host.domain(DomId(0)).unwrap();
    dom0.xenstore
        .rm(XsTx::NONE, &format!("{}/mtu", spec.backend_path()))
        .unwrap();
    let back = NetNs::new("tkb").unwrap();
    let factory = TapFactory {
        mtu: 1280,
        ..TapFactory::default()
    };
    let dom0 = host.domain(DomId(0)).unwrap();
    let opts = BackendOptions::default();
    let _nb = BackendThread::spawn(
        Spawner::Netns(&back),
        dom0,
        NetbackConfig::default(),
        factory,
        opts,
    )
    .unwrap();
    let link = |ifname: &str| -> String {
        wait_link(&back, ifname, Duration::from_secs(10)).unwrap();
        let out = back.exec("ip", &["-o", "link", "show", ifname]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let l = link(&name);
    assert!(l.contains(" mtu 1400 "), "{named}: {l}");
    assert!(l.contains("link/ether fe:ff:ff:ff:ff:ff"), "{named}: {l}");
    // Without the keys: vif<domid>.<devid>, netback's default MTU, the same MAC.
    let l = link("vif2.0");
    assert!(l.contains(" mtu 1280 "), "{plain}: {l}");
    // No frontend connected: no carrier.
    assert!(l.contains("NO-CARRIER"), "{plain}: {l}");
    assert!(l.contains("link/ether fe:ff:ff:ff:ff:ff"), "{plain}: {l}");
}
