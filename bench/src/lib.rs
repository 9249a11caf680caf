//! `bench`: the reproduction of the DBA-VM paper (Amamou et al., ISCC 2012, §III-C and
//! §V) on the local platform, with the real drivers.
//!
//! Three guests, each a real [`netfront`](netfront) driven by a traffic generator thread
//! ([`guest`]), one [`netback`](netback) on its own thread (with the DBA-VM allocator for
//! the `dba-*` policies), and every vif's port feeding one shared 1 Gb/s NIC model
//! ([`nic`], [`port`]) whose sink timestamps departures. [`run`] does one experiment,
//! [`kernel_traffic`] the same with kernel stacks and iperf3 (`--traffic netns`), both on
//! the harness of the `testbed` crate set up by [`bed`] from a [`scenario`];
//! [`rx`] the receive scenarios (the NIC model's senders → netback → the guests),
//! [`paper`] the whole comparison, [`report`] and [`plots`] write the outputs.
//! See `docs/reproduction.md`.

#![forbid(unsafe_code)]

pub mod bed;
pub mod bedperf;
pub mod clock;
pub mod frame;
pub mod guest;
pub mod hostile;
pub mod kernel_traffic;
pub mod nic;
pub mod outcome;
pub mod pace;
pub mod paper;
pub mod plots;
pub mod port;
pub mod proc_cpu;
pub mod report;
pub mod run;
pub mod rx;
pub mod scenario;
