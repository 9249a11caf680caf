//! Kernel stacks at the ends of the pair: the TAPs netfront and netback serve in network
//! namespaces, as the namespace tests and `bench paper --traffic netns` set them up (the
//! namespaces themselves are `netport::netns`).

use std::time::{Duration, Instant};

use netport::netns::NetNs;
use netport::{TapConfig, TapOffload};

use crate::backend::timeout_err;
use crate::TestbedError;

/// A TAP named `name` with checksum offload (the guest's TCP leaves `csum_blank`
/// frames), no TSO (turn it on where the ring negotiated GSO) and a 1500-byte MTU.
pub fn tap_config(name: &str) -> TapConfig {
    let mut c = TapConfig::new(name);
    c.offload = TapOffload {
        csum: true,
        tso: false,
    };
    c.mtu = Some(1500);
    c
}

/// Waits until link `name` exists in `ns` (a driver thread opens its TAP there).
pub fn wait_link(ns: &NetNs, name: &str, timeout: Duration) -> Result<(), TestbedError> {
    let deadline = Instant::now() + timeout;
    while ns.ip(&["link", "show", name]).is_err() {
        if Instant::now() > deadline {
            return Err(timeout_err(&format!("{name} in {}", ns.name()), timeout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
