//! A test of the running test binary, run as a child process in a domain of a local
//! host: how the restart and fault tests get a netback (or a guest) they can kill with
//! SIGKILL, or that exits by itself at a fault point, as a real process would.
//!
//! The child is the same test binary run with `--ignored --exact <test>`: the named test
//! is `#[ignore]`d in normal runs and checks a marker variable of the environment.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use netport::netns::NetNs;
use xen_ids::DomId;
use xen_local::LocalHost;

use crate::backend::timeout_err;
use crate::TestbedError;

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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().map_err(TestbedError::Spawn)? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(timeout_err("the child process to exit", timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
