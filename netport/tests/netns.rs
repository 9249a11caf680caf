//! The namespace helpers themselves: a veth pair between two namespaces, `ping` across it
//! with `NetNs::exec`, and a TCP exchange between threads that entered each namespace
//! (`NetNs::spawn_thread`). Needs root (CI); skips with the reason elsewhere.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netport::netns::{self, skip_unless_root_with_tun, NetNs, VethPair};

#[test]
fn veth_between_namespaces_carries_ping_and_tcp() {
    if skip_unless_root_with_tun("veth_between_namespaces_carries_ping_and_tcp") {
        return;
    }
    let a = NetNs::new("nptva").unwrap();
    let b = NetNs::new("nptvb").unwrap();
    let veth = VethPair::new(&netns::unique_name("nva"), &netns::unique_name("nvb")).unwrap();
    a.move_link(&veth.a).unwrap();
    b.move_link(&veth.b).unwrap();
    a.addr_up(&veth.a, "10.204.0.1/24").unwrap();
    b.addr_up(&veth.b, "10.204.0.2/24").unwrap();
    // Links in a namespace are invisible from here.
    assert!(netns::ip(&["link", "show", &veth.a]).is_err());

    if std::process::Command::new("ping")
        .arg("-V")
        .output()
        .is_ok()
    {
        let out = a
            .exec("ping", &["-c", "2", "-i", "0.2", "-W", "5", "10.204.0.2"])
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("2 received"));
    } else {
        assert!(std::env::var("CI").is_err(), "`ping` is required in CI");
        eprintln!("no `ping`: skipping the ping half");
    }

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = b
        .spawn_thread(move || {
            let l = TcpListener::bind("10.204.0.2:5002")?;
            ready_tx.send(()).unwrap();
            let (mut s, _) = l.accept()?;
            let mut got = Vec::new();
            s.read_to_end(&mut got)?;
            Ok(got)
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let client = a
        .spawn_thread(|| {
            let mut s = TcpStream::connect("10.204.0.2:5002")?;
            s.write_all(b"through the veth")?;
            Ok(())
        })
        .unwrap();
    client.join().unwrap().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), b"through the veth");

    // A failing command is an error carrying its stderr.
    let e = a
        .exec("ip", &["link", "show", "does-not-exist"])
        .unwrap_err();
    assert!(e.to_string().contains("does-not-exist"), "{e}");
    let name = a.name().to_owned();
    drop(a);
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
}
