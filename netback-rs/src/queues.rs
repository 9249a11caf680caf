//! A frontend's queues (`docs/protocol.md` §1.4): how many it asks for
//! (`multi-queue-num-queues`, at most the `multi-queue-max-queues` netback offered) and
//! each queue's ring references and event channel(s), read as Linux's netback reads
//! them (`xen-netback/xenbus.c`, `connect` and `connect_data_rings`): with one queue the
//! keys are directly in the frontend directory, with two or more they are in
//! `queue-0/` … `queue-<N-1>/` and the flat keys are not read.
//!
//! Checked before anything is mapped, so that a hostile frontend fails only its own vif,
//! with the reason in its `error` node: no queue count of 0 or above the offer, every
//! queue directory present with all its keys (a missing or skipped `queue-N` names the
//! key that is absent), no grant reference used twice — two queues (or a queue's
//! two rings) on one page would have two data paths write responses into the same
//! ring — and no event-channel port named twice (Xen binds a remote port once; the
//! refusal comes before any binding, naming both keys). Every ring of the netif protocol is one page (there is no ring-size key), so
//! queues cannot differ in ring size.

use hypervisor::xenbus::{self, XenbusError};
use xenstore::{Xenstore, XsTx};

use crate::features::{read_channels, ChannelKeys, FeatureError};

/// The backend key offering queues (the most a vif may have; netback writes
/// [`crate::NetbackConfig::offered_queues`]).
pub const MAX_QUEUES_KEY: &str = "multi-queue-max-queues";
/// The frontend key with the number of queues it set up (absent: 1).
pub const NUM_QUEUES_KEY: &str = "multi-queue-num-queues";

/// One queue's keys, as the frontend wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKeys {
    /// The TX ring's grant reference (`tx-ring-ref`).
    pub tx_ref: u32,
    /// The RX ring's grant reference (`rx-ring-ref`).
    pub rx_ref: u32,
    /// Its event channel(s).
    pub channels: ChannelKeys,
}

impl QueueKeys {
    /// `"<tx-ring-ref> <rx-ring-ref> <event-channel>"`, as netback records a queue's
    /// rings for a restarted netback to compare.
    pub fn record(&self) -> String {
        format!("{} {} {}", self.tx_ref, self.rx_ref, self.channels.record())
    }
}

/// The record of all the queues (queue 0 first, `", "` between queues): for one queue,
/// exactly [`QueueKeys::record`].
pub fn record(queues: &[QueueKeys]) -> String {
    queues
        .iter()
        .map(QueueKeys::record)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a frontend's queue keys are refused (written to the vif's `error` node).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A key is missing or invalid (the path says which queue).
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// A queue's event-channel keys are refused.
    #[error("{dir}: {source}")]
    Channels {
        /// The directory holding them.
        dir: String,
        /// The failure.
        source: FeatureError,
    },
    /// `multi-queue-num-queues` is 0.
    #[error("multi-queue-num-queues is 0: a vif has at least one queue")]
    NoQueue,
    /// More queues than offered (Linux: "guest requested %u queues, exceeding the
    /// maximum of %u.").
    #[error("multi-queue-num-queues {asked}: more queues than the {max} offered (multi-queue-max-queues)")]
    TooMany {
        /// What the frontend asked for.
        asked: u64,
        /// What netback offered.
        max: u32,
    },
    /// One grant reference names two rings.
    #[error("queue {queue} {key} {gref} is also queue {other}'s {other_key}: each ring needs its own page")]
    SharedRef {
        /// The later queue.
        queue: usize,
        /// Its key.
        key: &'static str,
        /// The grant reference.
        gref: u32,
        /// The queue that used it first.
        other: usize,
        /// That queue's key.
        other_key: &'static str,
    },
    /// One event-channel port named twice (Xen binds a remote port once: the second
    /// binding would fail, or, should it not, two queues would share one channel).
    #[error("queue {queue} {key} {port} is also queue {other}'s {other_key}: each queue needs its own event channel(s)")]
    SharedPort {
        /// The later queue.
        queue: usize,
        /// Its key.
        key: &'static str,
        /// The port.
        port: u32,
        /// The queue that named it first.
        other: usize,
        /// That queue's key.
        other_key: &'static str,
    },
}

/// The number of queues the frontend in directory `fe` asks for, checked against the
/// `max` offered.
pub fn read_count<X: Xenstore + ?Sized>(xs: &X, fe: &str, max: u32) -> Result<u32, QueueError> {
    let path = format!("{fe}/{NUM_QUEUES_KEY}");
    let asked = xenbus::read_u64_or(xs, XsTx::NONE, &path, u64::MAX, 1)?;
    match asked {
        0 => Err(QueueError::NoQueue),
        n if n > u64::from(max) => Err(QueueError::TooMany { asked: n, max }),
        n => Ok(n as u32),
    }
}

/// The directory holding queue `q`'s keys when the frontend has `count` queues.
pub fn queue_dir(fe: &str, count: u32, q: u32) -> String {
    if count == 1 {
        fe.to_string()
    } else {
        format!("{fe}/queue-{q}")
    }
}

/// Reads and checks the keys of the `count` queues of the frontend in `fe` (`count` as
/// [`read_count`] returned it).
pub fn read_queues<X: Xenstore + ?Sized>(
    xs: &X,
    fe: &str,
    count: u32,
) -> Result<Vec<QueueKeys>, QueueError> {
    let mut queues = Vec::with_capacity(count as usize);
    for q in 0..count {
        let dir = queue_dir(fe, count, q);
        let gref = |k: &str| {
            xenbus::read_u64(xs, XsTx::NONE, &format!("{dir}/{k}"), u32::MAX as u64)
                .map(|v| v as u32)
        };
        let tx_ref = gref("tx-ring-ref")?;
        let rx_ref = gref("rx-ring-ref")?;
        let channels =
            read_channels(xs, &dir).map_err(|source| QueueError::Channels { dir, source })?;
        queues.push(QueueKeys {
            tx_ref,
            rx_ref,
            channels,
        });
    }
    check_distinct_refs(&queues)?;
    check_distinct_ports(&queues)?;
    Ok(queues)
}

/// The first value named twice in `named` (`(queue, key, value)` in the order read):
/// the later `(queue, key)`, the value, and the earlier `(queue, key)`.
#[allow(clippy::type_complexity)]
fn first_repeat(
    named: &[(usize, &'static str, u32)],
) -> Option<((usize, &'static str), u32, (usize, &'static str))> {
    named.iter().enumerate().find_map(|(i, &(q, key, v))| {
        named[..i]
            .iter()
            .find(|(_, _, w)| *w == v)
            .map(|&(other, other_key, _)| ((q, key), v, (other, other_key)))
    })
}

/// Every ring of every queue on its own grant reference.
fn check_distinct_refs(queues: &[QueueKeys]) -> Result<(), QueueError> {
    let named: Vec<_> = queues
        .iter()
        .enumerate()
        .flat_map(|(q, k)| [(q, "tx-ring-ref", k.tx_ref), (q, "rx-ring-ref", k.rx_ref)])
        .collect();
    match first_repeat(&named) {
        None => Ok(()),
        Some(((queue, key), gref, (other, other_key))) => Err(QueueError::SharedRef {
            queue,
            key,
            gref,
            other,
            other_key,
        }),
    }
}

/// Every event-channel port named once: across queues, and within a split queue.
/// Checked before anything is bound, so the refusal names both keys whatever the
/// hypervisor would do with a second binding.
fn check_distinct_ports(queues: &[QueueKeys]) -> Result<(), QueueError> {
    let named: Vec<_> = queues
        .iter()
        .enumerate()
        .flat_map(|(q, k)| match k.channels {
            ChannelKeys::Single(p) => vec![(q, "event-channel", p)],
            ChannelKeys::Split { tx, rx } => {
                vec![(q, "event-channel-tx", tx), (q, "event-channel-rx", rx)]
            }
        })
        .collect();
    match first_repeat(&named) {
        None => Ok(()),
        Some(((queue, key), port, (other, other_key))) => Err(QueueError::SharedPort {
            queue,
            key,
            port,
            other,
            other_key,
        }),
    }
}

#[cfg(test)]
mod tests;
