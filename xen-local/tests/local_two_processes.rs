//! Two processes attached to the `local-hypervisor` daemon (a third process): the
//! frontend (dom1, a child process) grants a page and an unbound port and publishes them
//! in xenstore (its xenstore connection comes over the hypervisor socket, SCM_RIGHTS);
//! the backend (dom0, this test) finds them with a watch, maps the page, grant-copies,
//! and the two ring each other's doorbell.

mod platform_contract;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hypervisor::evtchn::{EventChannels, Port};
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantMap, GrantMapping, GrantRef, GrantShare,
    SharedPages,
};
use platform_contract::{expect_pending, readable, MUST_ARRIVE_MS};
use xen_ids::DomId;
use xen_local::Domain;
use xenstore::{Xenstore, XsClient, XsTx};

const ROLE: &str = "HV_TWO_PROCESSES_ROLE";
const SOCKET: &str = "HV_TWO_PROCESSES_SOCKET";

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn frontend(socket: PathBuf) {
    let d = Domain::attach(&socket, DomId(1)).unwrap();
    let xs = XsClient::new(d.xenstore().unwrap()).unwrap();
    let ev = d.event_channels().unwrap();
    let page = d.share(DomId(0), 1, Access::Writable).unwrap();
    page.mem().write(16, b"hello from domU").unwrap();
    let port = ev.alloc_unbound(DomId(0)).unwrap();
    xs.write(
        XsTx::NONE,
        "/local/domain/1/data/gref",
        page.grefs()[0].0.to_string().as_bytes(),
    )
    .unwrap();
    xs.write(
        XsTx::NONE,
        "/local/domain/1/data/port",
        port.0.to_string().as_bytes(),
    )
    .unwrap();
    // Wait for the backend's doorbell, check its write, ring back.
    expect_pending(&ev, port);
    let mut buf = [0u8; 15];
    page.mem().read(16, &mut buf).unwrap();
    assert_eq!(&buf, b"hello from dom0");
    assert_eq!(page.mem().load_u32(0, Ordering::Acquire).unwrap(), 0xfeed);
    page.mem().store_u32(4, 0xbeef, Ordering::Release).unwrap();
    ev.notify(port).unwrap();
    ev.unmask(port).unwrap();
    // Wait for the backend to say it is done before revoking.
    expect_pending(&ev, port);
    page.revoke().unwrap();
    println!("FRONTEND-OK");
}

/// Not a test on its own: the body of the frontend child process of
/// `two_processes_share_a_page_and_ring_each_other` (does nothing unless started by it).
#[test]
fn frontend_child_process() {
    if std::env::var(ROLE).as_deref() == Ok("front") {
        frontend(std::env::var_os(SOCKET).expect("socket").into());
    }
}

#[test]
fn two_processes_share_a_page_and_ring_each_other() {
    let socket = std::env::temp_dir().join(format!("local-hv-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_local-hypervisor"))
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let _daemon = Killer(daemon);

    let back = Domain::attach(&socket, DomId(0)).unwrap();
    let xs = XsClient::new(back.xenstore().unwrap()).unwrap();
    xs.watch("/local/domain/1/data/port", "fe").unwrap();

    let front = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "frontend_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "front")
        .env(SOCKET, &socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut front = Killer(front);

    // Wait (through the watch) for the frontend to publish its grant and port.
    let (gref, port) = loop {
        let ev = xs
            .wait_event(Some(Duration::from_millis(MUST_ARRIVE_MS as u64)))
            .unwrap()
            .expect("frontend never published");
        assert_eq!(ev.token, "fe");
        if let Ok(p) = xs.read_string(XsTx::NONE, "/local/domain/1/data/port") {
            let g = xs
                .read_string(XsTx::NONE, "/local/domain/1/data/gref")
                .unwrap();
            break (GrantRef(g.parse().unwrap()), Port(p.parse().unwrap()));
        }
    };

    let m = back.map(DomId(1), &[gref], Access::Writable).unwrap();
    let mut buf = [0u8; 15];
    m.mem().read(16, &mut buf).unwrap();
    assert_eq!(&buf, b"hello from domU");
    // Grant copy out of the page and into it.
    let mut local = *b"................hello from dom0";
    let mut segs = [
        CopySegment::from_grant(DomId(1), gref, 16, 0, 15),
        CopySegment::to_grant(DomId(1), gref, 16, 16, 15),
    ];
    back.copy(&mut local, &mut segs).unwrap();
    assert_eq!([segs[0].status, segs[1].status], [GntStatus::OKAY; 2]);
    assert_eq!(&local[..15], b"hello from domU");
    m.mem().store_u32(0, 0xfeed, Ordering::Release).unwrap();

    let ev = back.event_channels().unwrap();
    let lport = ev.bind_interdomain(DomId(1), port).unwrap();
    ev.notify(lport).unwrap();
    assert!(
        readable(&ev, MUST_ARRIVE_MS),
        "the frontend never rang back"
    );
    expect_pending(&ev, lport);
    assert_eq!(m.mem().load_u32(4, Ordering::Acquire).unwrap(), 0xbeef);
    m.unmap().unwrap();
    ev.notify(lport).unwrap();

    let out = front.0.stdout.take().unwrap();
    // Read everything (stopping early would break the child's pipe).
    let lines: Vec<String> = BufReader::new(out).lines().map_while(Result::ok).collect();
    let ok = lines.iter().any(|l| l.contains("FRONTEND-OK"));
    let status = front.0.wait().unwrap();
    assert!(status.success() && ok, "frontend process failed: {status}");
    let _ = std::fs::remove_file(&socket);
}

/// Not a test on its own: the body of the child of `a_spawned_domain_gets_its_domid`.
#[test]
fn spawned_child_process() {
    if std::env::var(ROLE).as_deref() != Ok("spawned") {
        return;
    }
    let d = Domain::from_env().unwrap();
    assert!(Domain::from_env().is_err(), "taken twice");
    let s = d.share(DomId(0), 1, Access::ReadOnly).unwrap();
    s.mem().write(0, b"spawned").unwrap();
    // libtest has already printed "test spawned_child_process ... " on this line.
    println!("DOMID {} GREF {}", d.domid().0, s.grefs()[0].0);
    // Keep the grant until the parent has checked it and closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_spawned_domain_gets_its_domid_over_an_inherited_connection() {
    let hv = xen_local::LocalHypervisor::new();
    let back = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "spawned_child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, "spawned")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let mut child = Killer(hv.spawn_domain(DomId(4), &mut cmd).unwrap());
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let mut lines = out.lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.find("DOMID ").map(|i| l[i..].to_string()))
        .expect("child printed its grant");
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[1], "4");
    let gref = GrantRef(f[3].parse().unwrap());
    let m = back.map(DomId(4), &[gref], Access::ReadOnly).unwrap();
    let mut buf = [0u8; 7];
    m.mem().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"spawned");
    drop(child.0.stdin.take()); // let the child finish
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.0.wait().unwrap().success());
    // Without the variable, or with a descriptor that is not our socket: clear errors.
    assert!(Domain::from_env().is_err());
}
