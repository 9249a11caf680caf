//! What netback's control thread and its data-path thread say to each other.
//!
//! The control thread ([`crate::control_thread`]) does every xenstore round trip; the
//! data-path thread ([`crate::backend::Netback`]) does only local work (grant maps,
//! event-channel binds, ports, the rings). The control thread sends [`Command`]s over a
//! bounded channel and rings the data thread's eventfd, which sits in its epoll; a
//! command that needs an answer carries its own reply channel, on which only the
//! control thread ever waits (it may block; the data thread never does). The data
//! thread reports what it decides alone — a frontend that broke the protocol on its
//! rings — as [`Notice`]s, one per failed connection at most, and rings the control
//! thread's eventfd.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;

use hypervisor::evtchn::EvtchnError;
use hypervisor::grant::GrantError;
use hypervisor::xenbus::{XenbusError, XenbusState};
use rustix::event::{eventfd, EventfdFlags};
use xen_ids::VifId;
use xenstore::XsError;

use crate::features::{FeatureError, FrontendFeatures};
use crate::vif::VifFatal;
use crate::vifconfig::{RateCap, VifConfig};
use shared_ring::credit::CREDIT_VERSION;

/// Most commands queued for the data thread; the control thread waits when it is full.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// What a frontend set up, as the control thread read and checked it from xenstore.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontendSetup {
    /// `tx-ring-ref`.
    pub tx_ref: u32,
    /// `rx-ring-ref`.
    pub rx_ref: u32,
    /// Negotiated features, event channel keys included.
    pub features: FrontendFeatures,
    /// Whether the credit area is used (offered and requested).
    pub credits: bool,
    /// The credit-area version requested (meaningful with `credits`).
    pub credit_version: u16,
    /// The rings are taken over from a previous netback (no handshake).
    pub reattach: bool,
}

/// An order from the control thread to the data-path thread.
pub(crate) enum Command {
    /// A device was probed: open its port (not armed until a frontend connects).
    Add {
        id: VifId,
        config: VifConfig,
        reply: SyncSender<Result<(), io::Error>>,
    },
    /// Map the frontend's rings and bind its event channel(s); replies the connection's
    /// sequence number.
    Connect {
        id: VifId,
        setup: FrontendSetup,
        reply: SyncSender<Result<u64, ConnectError>>,
    },
    /// Release the vif's rings and channels (the device stays).
    Disconnect { id: VifId, reply: SyncSender<()> },
    /// The device is gone: release everything of it.
    Remove { id: VifId, reply: SyncSender<()> },
    /// The backend's xenbus state, as written (for [`crate::VifStatus`]).
    State { id: VifId, state: XenbusState },
    /// The toolstack's `rate` changed.
    Rate { id: VifId, rate: Option<RateCap> },
    /// The vif's `dba-*` keys as read (in `allocator::xenstore::KEYS` order).
    SlaKeys {
        id: VifId,
        values: Vec<Option<String>>,
    },
    /// The xenstore connection is gone: the data thread stops.
    Lost(XsError),
}

/// What the data-path thread tells the control thread on its own.
#[derive(Debug)]
pub(crate) enum Notice {
    /// Connection `created` of vif `id` broke the protocol on its rings and was
    /// released; the reason goes to its `error` node.
    Failed {
        id: VifId,
        created: u64,
        reason: String,
    },
}

/// Why the rings of a frontend could not be connected (written to the backend's `error`
/// node).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The device was removed meanwhile.
    #[error("no such device")]
    NoDevice,
    /// The data-path thread is gone (netback is stopping).
    #[error("netback is stopping")]
    Stopping,
    /// A frontend key is missing or invalid.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// The frontend asks for more than one queue.
    #[error("multi-queue is not supported")]
    MultiQueue,
    /// The frontend's feature keys are refused (page flipping, broken values).
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// `request-dba-credits` asks for a version above the one advertised.
    #[error("request-dba-credits {0} is above the advertised version (at most {CREDIT_VERSION})")]
    CreditVersion(u64),
    /// A ring grant could not be mapped.
    #[error("map {key} {gref}: {source}")]
    Map {
        /// The frontend key naming the grant.
        key: &'static str,
        /// The grant reference.
        gref: u32,
        /// The failure.
        source: GrantError,
    },
    /// The frontend's event channel could not be bound.
    #[error("bind event-channel {port}: {source}")]
    Bind {
        /// The frontend's port.
        port: u32,
        /// The failure.
        source: EvtchnError,
    },
    /// The mapped rings cannot be attached (impossible indices).
    #[error(transparent)]
    Rings(VifFatal),
    /// A frontend still `Connected` across a netback restart names other rings than the
    /// previous netback served, without having run a new handshake.
    #[error("the frontend changed its rings without a new handshake: \"{now}\", was \"{was}\" (tx-ring-ref rx-ring-ref event-channel)")]
    RingsChanged {
        /// What the previous netback recorded.
        was: String,
        /// What the frontend names now.
        now: String,
    },
    /// The record of the previous netback's rings could not be read.
    #[error("read {path}: {source}")]
    Record {
        /// The record's path.
        path: String,
        /// The failure.
        source: XsError,
    },
}

/// A non-blocking eventfd one thread rings and another waits on in its epoll.
#[derive(Debug, Clone)]
pub(crate) struct Doorbell(Arc<OwnedFd>);

impl Doorbell {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Doorbell(Arc::new(fd)))
    }

    /// Wakes the waiting thread.
    pub(crate) fn ring(&self) {
        // Fails only when the counter is saturated: the bell is ringing already.
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }

    /// Silences the bell (before looking at what it announced).
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&*self.0, &mut buf);
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The control thread's end: commands out, notices in.
pub(crate) struct ControlEnd {
    commands: SyncSender<Command>,
    data_bell: Doorbell,
    pub(crate) notices: Receiver<Notice>,
    pub(crate) bell: Doorbell,
}

/// The data thread's end: commands in, notices out.
pub(crate) struct DataEnd {
    commands: Receiver<Command>,
    pub(crate) bell: Doorbell,
    notices: Sender<Notice>,
    control_bell: Doorbell,
}

/// A connected pair of ends.
pub(crate) fn link() -> io::Result<(ControlEnd, DataEnd)> {
    let (ctx, crx) = mpsc::sync_channel(COMMAND_QUEUE);
    let (ntx, nrx) = mpsc::channel();
    let data_bell = Doorbell::new()?;
    let control_bell = Doorbell::new()?;
    Ok((
        ControlEnd {
            commands: ctx,
            data_bell: data_bell.clone(),
            notices: nrx,
            bell: control_bell.clone(),
        },
        DataEnd {
            commands: crx,
            bell: data_bell,
            notices: ntx,
            control_bell,
        },
    ))
}

impl ControlEnd {
    /// Queues `cmd` (waiting while the queue is full). False: the data thread is gone.
    pub(crate) fn send(&self, cmd: Command) -> bool {
        let ok = self.commands.send(cmd).is_ok();
        self.data_bell.ring();
        ok
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply.
    /// `None`: the data thread is gone.
    pub(crate) fn call<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(make(tx)) {
            return None;
        }
        rx.recv().ok()
    }
}

impl DataEnd {
    /// The next queued command; `Err(Disconnected)` once the control thread is gone.
    pub(crate) fn next(&self) -> Result<Command, TryRecvError> {
        self.commands.try_recv()
    }

    /// Tells the control thread.
    pub(crate) fn notify(&self, notice: Notice) {
        // The control thread gone means netback is stopping: nobody to tell.
        if self.notices.send(notice).is_ok() {
            self.control_bell.ring();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_ids::DomId;

    fn vif() -> VifId {
        VifId::new(DomId(1), 0)
    }

    #[test]
    fn a_call_gets_the_data_thread_s_reply() {
        let (ctl, data) = link().unwrap();
        let t =
            std::thread::spawn(move || ctl.call(|reply| Command::Disconnect { id: vif(), reply }));
        // The data thread is woken by its bell, then finds the command.
        assert!(hypervisor::poll::readable(&data.bell, std::time::Duration::from_secs(5)).unwrap());
        data.bell.clear();
        match data.next() {
            Ok(Command::Disconnect { id, reply }) => {
                assert_eq!(id, vif());
                reply.send(()).unwrap();
            }
            _ => panic!("expected the Disconnect command"),
        }
        assert_eq!(t.join().unwrap(), Some(()));
        // Nothing else was queued, and the control end went with its thread.
        assert!(matches!(data.next(), Err(TryRecvError::Disconnected)));
    }

    #[test]
    fn a_call_returns_when_the_data_thread_goes_away() {
        let (ctl, data) = link().unwrap();
        let t = std::thread::spawn(move || {
            // More commands than the queue holds: the sender would wait for room.
            let mut answered = 0;
            for _ in 0..COMMAND_QUEUE + 1 {
                ctl.send(Command::State {
                    id: vif(),
                    state: XenbusState::InitWait,
                });
            }
            if ctl
                .call(|reply| Command::Remove { id: vif(), reply })
                .is_some()
            {
                answered += 1;
            }
            answered
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        // netback stopping: its end goes, queued commands with it.
        drop(data);
        assert_eq!(t.join().unwrap(), 0);
    }

    #[test]
    fn notices_reach_the_control_thread_and_ring_its_bell() {
        let (ctl, data) = link().unwrap();
        data.notify(Notice::Failed {
            id: vif(),
            created: 7,
            reason: "bad ring".into(),
        });
        assert!(hypervisor::poll::readable(&ctl.bell, std::time::Duration::ZERO).unwrap());
        match ctl.notices.try_recv() {
            Ok(Notice::Failed {
                id,
                created,
                reason,
            }) => {
                assert_eq!((id, created, reason.as_str()), (vif(), 7, "bad ring"));
            }
            other => panic!("{other:?}"),
        }
    }
}
