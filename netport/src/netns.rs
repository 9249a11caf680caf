//! Network-namespace helpers for tests (this crate's, the drivers' and the bench's):
//! namespaces, veth pairs, moving links, running commands or threads inside a namespace.
//!
//! These shell out to `ip` (iproute2), which is fine for tests and not used by the port
//! implementations. Everything created is removed on drop. Tests that need them call
//! [`skip_unless_root_with_tun`] first.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

/// Environment variable that turns a missing prerequisite into a test failure instead of
/// a skip (also implied by `CI=true`/`CI=1`, as CI runs as root and must not skip).
pub const REQUIRE_ENV: &str = "DBA_REQUIRE_NETNS";

/// Why root-with-TUN tests cannot run here, or `None` if they can: needs uid 0, a usable
/// `/dev/net/tun`, the `ip` tool and the ability to create a network namespace.
/// The answer is computed once per process.
pub fn root_with_tun_unavailable() -> Option<String> {
    static ANSWER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (needs CAP_NET_ADMIN for TAP/netns)".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        return Some(format!("/dev/net/tun unusable: {e}"));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Some(format!("`ip -V` failed: {}", o.status)),
        Err(e) => return Some(format!("`ip` (iproute2) not runnable: {e}")),
    }
    match NetNs::new("nptprobe") {
        Ok(ns) => drop(ns),
        Err(e) => return Some(format!("cannot create a network namespace: {e}")),
    }
    None
}

fn required() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| s == "1" || s.eq_ignore_ascii_case("true"));
    on(REQUIRE_ENV) || on("CI")
}

/// For tests that need root, `/dev/net/tun` and netns: returns `true` (after printing
/// `SKIP <test>: <reason>` to stderr) when they cannot run here, `false` when they can.
///
/// # Panics
///
/// When the prerequisites are missing but required (`CI` or [`REQUIRE_ENV`] set to `1`
/// or `true`): CI runs as root and must run these tests, not skip them.
pub fn skip_unless_root_with_tun(test: &str) -> bool {
    match root_with_tun_unavailable() {
        None => false,
        Some(reason) => {
            if required() {
                panic!("{test}: required ({REQUIRE_ENV} or CI set) but cannot run: {reason}");
            }
            eprintln!("SKIP {test}: {reason}");
            true
        }
    }
}

/// A short name unique in this process and across concurrently running test processes.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Runs `ip ARGS` in the current namespace; an error carries its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args)).map(drop)
}

/// A named network namespace (`ip netns add`), deleted on drop. Its loopback is up.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named from `prefix` (made unique).
    pub fn new(prefix: &str) -> io::Result<NetNs> {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }

    /// Moves link `ifname` from the current namespace into this one (it goes down; bring
    /// it up with [`NetNs::ip`]).
    pub fn move_link(&self, ifname: &str) -> io::Result<()> {
        ip(&["link", "set", "dev", ifname, "netns", &self.name])
    }

    /// Gives `ifname` (already in this namespace) the address `cidr` and brings it up.
    pub fn addr_up(&self, ifname: &str, cidr: &str) -> io::Result<()> {
        self.ip(&["addr", "add", cidr, "dev", ifname])?;
        self.ip(&["link", "set", "dev", ifname, "up"])
    }

    /// A command that runs `program ARGS` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Runs `program ARGS` inside the namespace to completion; an error if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        run(&mut self.command(program, args))
    }

    /// Starts `program ARGS` inside the namespace (stdout/stderr piped).
    pub fn spawn(&self, program: &str, args: &[&str]) -> io::Result<Child> {
        self.command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Spawns a thread that enters this namespace (`setns(CLONE_NEWNET)`, which affects the
    /// calling thread only) and runs `f` there: sockets it opens live in the namespace.
    pub fn spawn_thread<T, F>(&self, f: F) -> io::Result<JoinHandle<io::Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        Ok(std::thread::spawn(move || {
            // Changes only this thread's network namespace.
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            drop(file);
            f()
        }))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns cleanup: {e}");
        }
    }
}

/// A veth pair created in the current namespace; deleted on drop (deleting either end
/// deletes both; a namespace's deletion also removes its end).
#[derive(Debug)]
pub struct VethPair {
    /// First end.
    pub a: String,
    /// Second end.
    pub b: String,
}

impl VethPair {
    /// Creates `a` ↔ `b`.
    pub fn new(a: &str, b: &str) -> io::Result<VethPair> {
        ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        Ok(VethPair {
            a: a.to_owned(),
            b: b.to_owned(),
        })
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Either end may already be gone with its namespace; nothing to report then.
        let _ = ip(&["link", "del", &self.a]);
    }
}
