//! What can go wrong while setting up or tearing down a test bed.

use std::io;

use xen_ids::VifId;

/// A test bed failure.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// The connection of a domain to the local hypervisor and xenstored.
    #[error("domain {domid}: {source}")]
    Domain {
        /// The domain.
        domid: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The toolstack could not write a vif's xenstore nodes.
    #[error("create vif {id}: {source}")]
    CreateVif {
        /// The vif.
        id: VifId,
        /// Why.
        #[source]
        source: xenstore::XsError,
    },
    /// A harness thread could not be started (or, in a namespace, could not enter it).
    #[error("thread {name}: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A harness thread panicked.
    #[error("thread {0} panicked")]
    Panicked(String),
    /// netback failed to start.
    #[error("netback: {0}")]
    Netback(#[source] io::Error),
    /// netback's event loop stopped (e.g. its xenstore connection was lost).
    #[error("netback: {0}")]
    Loop(#[source] netback::RunError),
    /// The allocator's loop settings were refused.
    #[error("allocator: {0}")]
    Allocator(#[from] allocator::control::ConfigError),
    /// netfront could not connect.
    #[error("netfront connect: {0}")]
    Connect(#[source] netfront::FrontError),
    /// A port could not be opened or failed.
    #[error("port: {0}")]
    Port(#[source] io::Error),
    /// A child process could not be started or waited for.
    #[error("child process: {0}")]
    Spawn(#[source] io::Error),
    /// A test meant to run as a child process was run by hand (its marker is not set).
    #[error("{0} is the child process of another test (started by it with --ignored), not a test to run by itself")]
    NotAChild(String),
    /// A child process could not connect as its domain (from its environment).
    #[error("the child's hypervisor connection: {0}")]
    ChildDomain(#[source] io::Error),
    /// Something the harness waits for did not happen in time.
    #[error("timed out after {timeout_ms} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout_ms: u128,
    },
    /// The netback thread is gone (it stopped or failed): a command could not run.
    #[error("the netback thread is not running")]
    BackendGone,
    /// The guest thread ended before netfront connected (its error follows at `join`).
    #[error("the guest thread ended before netfront connected")]
    GuestGone,
    /// netfront's event loop ([`netfront::pump::run`]) failed.
    #[error("netfront pump: {0}")]
    Pump(#[source] io::Error),
}
