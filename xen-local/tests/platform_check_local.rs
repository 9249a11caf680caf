//! The test bed's `platform` scenario programs (`hv-platform-check guest` / `dom0`), run
//! as separate processes on a `local-hypervisor` daemon: the same code that runs on
//! real Xen, on the local platform.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn platform_scenario_programs_pass_on_local() {
    let socket = std::env::temp_dir().join(format!("hv-platform-{}.sock", std::process::id()));
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
    let exe = env!("CARGO_BIN_EXE_hv-platform-check");
    let dom0 = Command::new(exe)
        .args(["dom0", "--guest-domid", "3", "--local"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let guest = Command::new(exe)
        .args(["guest", "--domid", "3", "--local"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let g = guest.wait_with_output().unwrap();
    let d = dom0.wait_with_output().unwrap();
    let (gs, ds) = (
        String::from_utf8_lossy(&g.stdout),
        String::from_utf8_lossy(&d.stdout),
    );
    assert!(
        g.status.success() && gs.contains("PLATFORM-GUEST-OK"),
        "guest: {gs}"
    );
    assert!(
        d.status.success() && ds.contains("PLATFORM-DOM0-OK"),
        "dom0: {ds}"
    );
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn bad_command_lines_are_refused() {
    let exe = env!("CARGO_BIN_EXE_hv-platform-check");
    for args in [
        &[][..],
        &["dom0"],
        &["guest", "--domid", "x"],
        &["nope"],
        &["guest", "--local", "/nonexistent", "--domid", "1"],
    ] {
        let out = Command::new(exe).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
    }
}
