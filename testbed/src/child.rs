//! A test of the running test binary, run as a child process in a domain of a local
//! host: how the restart and fault tests get a netback (or a guest) they can kill with
//! SIGKILL, or that exits by itself at a fault point, as a real process would.
//!
//! The child is the same test binary run with `--ignored --exact <test>`: the named test
//! is `#[ignore]`d in normal runs and starts with [`child_platform`], which refuses to
//! run unless [`TestChild::spawn`] started it (marker [`CHILD_MARKER`]) and connects it
//! as the domain it was started as. What the child tells its parent it prints on its
//! standard output, one line each ([`TestChild::stdout_lines`], [`tagged_numbers`]).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netport::netns::NetNs;
use xen_ids::DomId;
use xen_local::{LocalHost, LocalPlatform};

use crate::backend::timeout_err;
use crate::TestbedError;

/// Environment variable [`TestChild::spawn`] sets to the name of the test it runs.
pub const CHILD_MARKER: &str = "TESTBED_CHILD_TEST";

/// In a child process: its domain's platform (the hypervisor connection its parent
/// passed in the environment), if [`TestChild::spawn`] started test `test`; an error
/// when the test was run by hand.
pub fn child_platform(test: &str) -> Result<LocalPlatform, TestbedError> {
    if std::env::var(CHILD_MARKER).ok().as_deref() != Some(test) {
        return Err(TestbedError::NotAChild(test.to_string()));
    }
    let dom = xen_local::Domain::from_env().map_err(TestbedError::ChildDomain)?;
    xen_local::host::platform_of(dom).map_err(TestbedError::ChildDomain)
}

/// The numbers after `tag` in `line` (`"FRAME 3 17 60"`, tag `"FRAME "`: 3, 17, 60),
/// up to the first word that is not one; `None` without the tag. The tag may follow
/// other output (the test harness prints `test <name> ... ` before the first line).
pub fn tagged_numbers(line: &str, tag: &str) -> Option<Vec<u64>> {
    let at = line.find(tag)?;
    Some(
        line[at + tag.len()..]
            .split(' ')
            .map_while(|w| w.parse().ok())
            .collect(),
    )
}

/// How to start a [`TestChild`].
#[derive(Debug, Default)]
pub struct ChildSpec<'a> {
    /// The `#[ignore]`d test to run (exact name).
    pub test: &'a str,
    /// Environment variables to set (the child's marker among them).
    pub env: Vec<(&'a str, String)>,
    /// Run it in this network namespace (`ip netns exec`).
    pub netns: Option<&'a NetNs>,
    /// Pipe its standard output (else discarded); its standard error is discarded.
    pub stdout: bool,
}

/// The child process; killed (SIGKILL) and reaped when dropped, as `kill -9` would.
#[derive(Debug)]
pub struct TestChild(pub Child);

impl TestChild {
    /// Starts `spec.test` of this test binary as domain `domid` of `host`.
    pub fn spawn(
        host: &LocalHost,
        domid: DomId,
        spec: &ChildSpec<'_>,
    ) -> Result<Self, TestbedError> {
        let exe = std::env::current_exe().map_err(TestbedError::Spawn)?;
        let mut cmd = match spec.netns {
            None => Command::new(exe),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(exe);
                c
            }
        };
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(CHILD_MARKER, spec.test)
            .args([
                "--ignored",
                "--exact",
                spec.test,
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(if spec.stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::null());
        let child = host
            .hypervisor
            .spawn_domain(domid, &mut cmd)
            .map_err(TestbedError::Spawn)?;
        Ok(TestChild(child))
    }

    /// Waits (at most `timeout`) until it exits by itself: a fault point that ends the
    /// process as if killed.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, TestbedError> {
        self.wait_exit_doing(timeout, || {})
    }

    /// [`TestChild::wait_exit`], running `each` every 5 ms meanwhile (what the parent
    /// must keep doing for the child to reach its fault point).
    pub fn wait_exit_doing(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(),
    ) -> Result<ExitStatus, TestbedError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().map_err(TestbedError::Spawn)? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(timeout_err("the child process to exit", timeout));
            }
            each();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads its standard output (piped: [`ChildSpec::stdout`]) on a thread: each line
    /// `parse` makes something of is sent to the receiver, until the child closes it.
    /// `None` if its standard output is not piped or was taken already.
    pub fn stdout_lines<T: Send + 'static>(
        &mut self,
        mut parse: impl FnMut(&str) -> Option<T> + Send + 'static,
    ) -> Option<mpsc::Receiver<T>> {
        let stdout = self.0.stdout.take()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Read on after the receiver is gone: the child never meets a closed
                // pipe.
                if let Some(x) = parse(&line) {
                    let _ = tx.send(x);
                }
            }
        });
        Some(rx)
    }

    /// Sends it `signal` (as `kill` takes it: `-STOP`, `-CONT`…).
    pub fn signal(&self, signal: &str) -> Result<(), TestbedError> {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .map_err(TestbedError::Spawn)?;
        if status.success() {
            Ok(())
        } else {
            Err(TestbedError::Spawn(std::io::Error::other(format!(
                "kill {signal} {pid}: {status}"
            ))))
        }
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
