//! Feature negotiation with one frontend (`xen/include/public/io/netif.h`): the keys
//! netback advertises in the backend directory, and what it reads from the frontend's
//! directory when it connects — its offload offer ([`Offer`], which decides what netback
//! may put on its RX ring: [`Allowed::toward`]), `feature-rx-notify`,
//! `request-rx-copy`, and its event channels (one, or split TX/RX).
//!
//! The table of keys is in `docs/protocol.md` ("Feature negotiation").

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::xenbus;
use netport::negotiate::{Allowed, BadFeature, Offer};
use xen_ids::VifId;
use xenstore::{Xenstore, XsError, XsTx};

/// What netback offers every frontend: everything this driver takes on TX (it accepts
/// multi-slot frames, both GSO types and partial checksums of both IP versions),
/// copying receive only, split event channels.
pub fn backend_keys(credits: Option<u16>) -> Vec<(&'static str, String)> {
    let mut keys: Vec<(&'static str, String)> = Offer::ALL
        .keys()
        .iter()
        // `feature-no-csum-offload` is a frontend key (Linux's netback never writes it).
        .filter(|(k, _)| *k != "feature-no-csum-offload")
        .map(|&(k, v)| (k, v.to_string()))
        .collect();
    keys.extend([
        ("feature-rx-copy", "1".to_string()),
        ("feature-rx-flip", "0".to_string()),
        ("feature-multicast-control", "0".to_string()),
        ("feature-split-event-channels", "1".to_string()),
    ]);
    if let Some(v) = credits {
        keys.push(("feature-dba-credits", v.to_string()));
    }
    keys
}

/// The frontend's event channel(s), as it wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKeys {
    /// `event-channel`: one port for both rings.
    Single(u32),
    /// `event-channel-tx` and `event-channel-rx` (`feature-split-event-channels`).
    Split {
        /// The TX ring's port.
        tx: u32,
        /// The RX ring's port.
        rx: u32,
    },
}

impl ChannelKeys {
    /// The value recorded for a restarted netback to compare (`netback-rings`).
    pub fn record(&self) -> String {
        match self {
            ChannelKeys::Single(p) => p.to_string(),
            ChannelKeys::Split { tx, rx } => format!("{tx}/{rx}"),
        }
    }
}

/// What one frontend asked for, read when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendFeatures {
    /// Its offload keys.
    pub offer: Offer,
    /// `feature-rx-notify`: it notifies when it posts RX buffers.
    pub rx_notify: bool,
    /// Its event channel(s).
    pub channels: ChannelKeys,
}

impl FrontendFeatures {
    /// What netback may deliver to this frontend.
    pub fn allowed(&self) -> Allowed {
        Allowed::toward(&self.offer)
    }
}

/// Why a frontend's feature keys are refused (written to the vif's `error` node).
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// A key could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The key.
        path: String,
        /// The failure.
        source: XsError,
    },
    /// A feature key holds something else than 0 or 1.
    #[error("frontend {0}")]
    Bad(#[from] BadFeature),
    /// A numeric key is invalid.
    #[error(transparent)]
    Xenbus(#[from] xenbus::XenbusError),
    /// `request-rx-copy` is not 1: the frontend wants page flipping.
    #[error("request-rx-copy is not 1: receive by page flipping (feature-rx-flip) is not supported, only copying")]
    NoRxCopy,
    /// Only one of `event-channel-tx` / `event-channel-rx` is written.
    #[error("event-channel-tx and event-channel-rx must both be written, or neither")]
    HalfSplit,
}

/// The frontend keys read for features (besides the ring references).
const OFFER_KEYS: [&str; 5] = [
    "feature-sg",
    "feature-no-csum-offload",
    "feature-ipv6-csum-offload",
    "feature-gso-tcpv4",
    "feature-gso-tcpv6",
];

/// Reads the frontend's features from its directory `fe`, each key once.
pub fn read_frontend<X: Xenstore + ?Sized>(
    xs: &X,
    fe: &str,
) -> Result<FrontendFeatures, FeatureError> {
    let (offer, rx_notify) = read_offer(xs, fe)?;
    let channels = read_channels(xs, fe)?;
    Ok(FrontendFeatures {
        offer,
        rx_notify,
        channels,
    })
}

/// [`read_frontend`] with the event channels already read (those of queue 0, which
/// [`crate::queues::read_queues`] read where the frontend's queue count puts them).
pub fn read_frontend_with<X: Xenstore + ?Sized>(
    xs: &X,
    fe: &str,
    channels: ChannelKeys,
) -> Result<FrontendFeatures, FeatureError> {
    let (offer, rx_notify) = read_offer(xs, fe)?;
    Ok(FrontendFeatures {
        offer,
        rx_notify,
        channels,
    })
}

/// The frontend's offload offer and `feature-rx-notify`; `request-rx-copy` must be 1.
fn read_offer<X: Xenstore + ?Sized>(xs: &X, fe: &str) -> Result<(Offer, bool), FeatureError> {
    let raw = |k: &str| {
        let path = format!("{fe}/{k}");
        xs.try_read(XsTx::NONE, &path)
            .map_err(|source| FeatureError::Read { path, source })
    };
    let mut values: Vec<(&'static str, Option<Vec<u8>>)> = Vec::with_capacity(5);
    for k in OFFER_KEYS {
        values.push((k, raw(k)?));
    }
    let offer = Offer::parse(|k| {
        values
            .iter_mut()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| v.take())
    })?;
    let num = |k: &str, max: u64, def: u64| {
        xenbus::read_u64_or(xs, XsTx::NONE, &format!("{fe}/{k}"), max, def)
    };
    if num("request-rx-copy", 1, 0)? != 1 {
        return Err(FeatureError::NoRxCopy);
    }
    let rx_notify = num("feature-rx-notify", 1, 0)? == 1;
    Ok((offer, rx_notify))
}

/// Reads the event channel(s) written in directory `dir` (the frontend's, or one of its
/// `queue-N/` directories): `event-channel-tx` and `event-channel-rx`, or else
/// `event-channel`.
pub fn read_channels<X: Xenstore + ?Sized>(xs: &X, dir: &str) -> Result<ChannelKeys, FeatureError> {
    let port = |k: &str| -> Result<Option<u32>, FeatureError> {
        let path = format!("{dir}/{k}");
        match xs
            .try_read(XsTx::NONE, &path)
            .map_err(|source| FeatureError::Read { path, source })?
        {
            None => Ok(None),
            Some(_) => {
                Ok(Some(
                    xenbus::read_u64(xs, XsTx::NONE, &format!("{dir}/{k}"), u32::MAX as u64)?
                        as u32,
                ))
            }
        }
    };
    match (port("event-channel-tx")?, port("event-channel-rx")?) {
        (Some(tx), Some(rx)) => Ok(ChannelKeys::Split { tx, rx }),
        (None, None) => Ok(ChannelKeys::Single(xenbus::read_u64(
            xs,
            XsTx::NONE,
            &format!("{dir}/event-channel"),
            u32::MAX as u64,
        )? as u32)),
        _ => Err(FeatureError::HalfSplit),
    }
}

/// The local ports bound to a frontend's event channel(s): the same port twice when
/// it did not split them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundChannels {
    /// Notified for TX responses, and notifies of TX requests.
    pub tx: EvtPort,
    /// Notified for RX responses, and notifies of posted RX buffers.
    pub rx: EvtPort,
}

impl BoundChannels {
    /// Binds the frontend's channel(s); on failure nothing stays bound. The error names
    /// the remote port that failed.
    pub fn bind<E: EventChannels + ?Sized>(
        evtchn: &E,
        id: VifId,
        keys: ChannelKeys,
    ) -> Result<BoundChannels, (u32, hypervisor::evtchn::EvtchnError)> {
        let bind = |p: u32| {
            evtchn
                .bind_interdomain(id.domid, EvtPort(p))
                .map_err(|e| (p, e))
        };
        match keys {
            ChannelKeys::Single(p) => {
                let b = bind(p)?;
                Ok(BoundChannels { tx: b, rx: b })
            }
            ChannelKeys::Split { tx, rx } => {
                let t = bind(tx)?;
                match bind(rx) {
                    Ok(r) => Ok(BoundChannels { tx: t, rx: r }),
                    Err(e) => {
                        let _ = evtchn.unbind(t);
                        Err(e)
                    }
                }
            }
        }
    }

    /// The distinct local ports.
    pub fn ports(&self) -> impl Iterator<Item = EvtPort> {
        let rx = (self.rx != self.tx).then_some(self.rx);
        std::iter::once(self.tx).chain(rx)
    }

    /// How many notifications [`Self::notify`] sends for these requests.
    pub fn count(&self, tx: bool, rx: bool) -> u64 {
        if self.tx != self.rx {
            u64::from(tx) + u64::from(rx)
        } else {
            u64::from(tx || rx)
        }
    }

    /// Notifies the channel of each ring that asked for it (once when not split).
    pub fn notify<E: EventChannels + ?Sized>(&self, evtchn: &E, id: VifId, tx: bool, rx: bool) {
        let split = self.tx != self.rx;
        let send = |p: EvtPort| {
            if let Err(e) = evtchn.notify(p) {
                log::debug!("{id}: notify {p}: {e}");
            }
        };
        if tx || (rx && !split) {
            send(self.tx);
        }
        if rx && split {
            send(self.rx);
        }
    }

    /// Unbinds every port.
    pub fn unbind<E: EventChannels + ?Sized>(&self, evtchn: &E, id: VifId) {
        for p in self.ports() {
            if let Err(e) = evtchn.unbind(p) {
                log::debug!("{id}: unbind {p}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
