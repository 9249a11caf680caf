//! What netback's threads say to each other.
//!
//! The control thread ([`crate::control_thread`]) does every xenstore round trip; the
//! data-path workers ([`crate::worker`]) do only local work (grant maps, event-channel
//! binds, ports, the rings); the manager ([`crate::backend::Netback`], on the thread
//! that runs its loop) runs the allocator and keeps the status. The control thread
//! places each vif on a worker and sends it [`Command`]s, and sends the manager
//! [`ManagerCommand`]s, each over a bounded channel whose eventfd sits in the receiving
//! thread's epoll; the manager sends the allocator's budgets to the workers the same
//! way (never waiting for room). A command that needs an answer carries its own reply
//! channel, on which only the control thread (or the manager, for an operator's
//! budget) ever waits; a worker never does. A worker reports what it decides alone — a
//! frontend that broke the protocol on its rings — as [`Notice`]s, one per failed
//! connection at most, and rings the control thread's eventfd.

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
use crate::published::VifBoard;
use crate::queues::QueueError;
use crate::vif::VifFatal;
use crate::vifconfig::{RateCap, VifConfig};
use shared_ring::credit::{Credits, CREDIT_VERSION};

/// Most commands queued for one thread; the sender waits when it is full.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// What a frontend set up, as the control thread read and checked it from xenstore.
#[derive(Debug, Clone)]
pub(crate) struct FrontendSetup {
    /// Each queue's ring references and event channel(s) (queue 0 first; one entry
    /// for a single-queue frontend).
    pub queues: Vec<crate::queues::QueueKeys>,
    /// Negotiated features, queue 0's event channel keys included.
    pub features: FrontendFeatures,
    /// Whether the credit area is used (offered and requested).
    pub credits: bool,
    /// The credit-area version requested (meaningful with `credits`).
    pub credit_version: u16,
    /// The rings are taken over from a previous netback (no handshake).
    pub reattach: bool,
}

/// An order to a data-path worker, from the control thread (or, for budgets, from
/// the manager).
pub(crate) enum Command {
    /// A device was probed and placed on this worker: open its port (not armed until a
    /// frontend connects); the worker publishes the vif on `board`.
    Add {
        id: VifId,
        config: VifConfig,
        board: Arc<VifBoard>,
        /// The most queues its port can have ([`crate::PortFactory::queues`]).
        reply: SyncSender<Result<u32, io::Error>>,
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
    /// The toolstack's `rate` changed.
    Rate { id: VifId, rate: Option<RateCap> },
    /// A TX budget for the vif's connection `created` (from the allocator's round; a
    /// budget for an earlier connection is ignored).
    Budget {
        id: VifId,
        created: u64,
        credits: Credits,
    },
    /// An RX budget for the vif's connection `created` (from the allocator's RX round;
    /// a budget for an earlier connection is ignored).
    RxBudget {
        id: VifId,
        created: u64,
        credits: Credits,
    },
    /// A TX budget for the vif's current connection; replies whether it has one.
    SetBudget {
        id: VifId,
        credits: Credits,
        reply: SyncSender<bool>,
    },
}

/// An order to the manager (the thread running [`crate::Netback::run_once`]: the
/// allocator, status and metrics), from the control thread.
pub(crate) enum ManagerCommand {
    /// Vif `id` was placed on a worker, which publishes it on `board`.
    Placed { id: VifId, board: Arc<VifBoard> },
    /// The device is gone.
    Removed { id: VifId },
    /// The backend's xenbus state, as written (for [`crate::VifStatus`]).
    State { id: VifId, state: XenbusState },
    /// The vif's `dba-*` keys as read (in `allocator::xenstore::KEYS` order); the reply
    /// says they are in force (for the budget a connection starts with).
    SlaKeys {
        id: VifId,
        values: Vec<Option<String>>,
        reply: SyncSender<()>,
    },
    /// The xenstore connection is gone: netback stops.
    Lost(XsError),
}

/// What a data-path worker tells the control thread on its own.
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
    /// The vif's worker is gone (netback is stopping).
    #[error("netback is stopping")]
    Stopping,
    /// A frontend key is missing or invalid.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// The frontend's queue keys are refused (count, missing keys, shared rings).
    #[error(transparent)]
    Queues(#[from] QueueError),
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
    /// A multi-queue frontend still `Connected` across a netback restart: its rings are
    /// not taken over (the response journal is per vif, not per queue); it is failed so
    /// that it runs a new handshake.
    #[error("{0} queues: a restarted netback takes over the rings of single-queue frontends only; reconnect")]
    MultiQueueTakeOver(usize),
    /// One queue of a multi-queue frontend could not be connected (its rings mapped,
    /// its channels bound, its indices checked): which one, and why.
    #[error("queue {queue}: {source}")]
    InQueue {
        /// The queue.
        queue: usize,
        /// The failure.
        source: Box<ConnectError>,
    },
    /// A queue's port could not be opened.
    #[error("queue {queue}: port: {source}")]
    QueuePort {
        /// The queue.
        queue: u32,
        /// The failure.
        source: io::Error,
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

/// Where the data-path threads' [`Notice`]s arrive: the control thread's inbox and
/// the bell that wakes it.
pub(crate) struct Notices {
    pub(crate) receiver: Receiver<Notice>,
    pub(crate) bell: Doorbell,
    sender: Sender<Notice>,
}

impl Notices {
    pub(crate) fn new() -> io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        Ok(Notices {
            receiver,
            bell: Doorbell::new()?,
            sender,
        })
    }
}

/// The sending end of one thread's command queue (the control thread's, or the
/// manager's for budgets): commands out.
pub(crate) struct ControlEnd<C> {
    commands: SyncSender<C>,
    data_bell: Doorbell,
}

impl<C> Clone for ControlEnd<C> {
    fn clone(&self) -> Self {
        ControlEnd {
            commands: self.commands.clone(),
            data_bell: self.data_bell.clone(),
        }
    }
}

/// The receiving thread's end: commands in, notices out.
pub(crate) struct DataEnd<C> {
    commands: Receiver<C>,
    pub(crate) bell: Doorbell,
    notices: Sender<Notice>,
    control_bell: Doorbell,
}

/// A connected pair of ends; the data end's notices go to `notices`.
pub(crate) fn link<C>(notices: &Notices) -> io::Result<(ControlEnd<C>, DataEnd<C>)> {
    let (ctx, crx) = mpsc::sync_channel(COMMAND_QUEUE);
    let data_bell = Doorbell::new()?;
    Ok((
        ControlEnd {
            commands: ctx,
            data_bell: data_bell.clone(),
        },
        DataEnd {
            commands: crx,
            bell: data_bell,
            notices: notices.sender.clone(),
            control_bell: notices.bell.clone(),
        },
    ))
}

impl<C> ControlEnd<C> {
    /// Queues `cmd` (waiting while the queue is full). False: the receiving thread is gone.
    pub(crate) fn send(&self, cmd: C) -> bool {
        let ok = self.commands.send(cmd).is_ok();
        self.data_bell.ring();
        ok
    }

    /// Wakes the receiving thread (to look at its stop flag).
    pub(crate) fn ring(&self) {
        self.data_bell.ring();
    }

    /// Queues `cmd` unless the queue is full (false then, or when the thread is gone).
    pub(crate) fn try_send(&self, cmd: C) -> bool {
        let ok = self.commands.try_send(cmd).is_ok();
        self.data_bell.ring();
        ok
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply.
    /// `None`: the receiving thread is gone.
    pub(crate) fn call<T>(&self, make: impl FnOnce(SyncSender<T>) -> C) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(make(tx)) {
            return None;
        }
        rx.recv().ok()
    }
}

impl<C> DataEnd<C> {
    /// The next queued command; `Err(Disconnected)` once every sender is gone.
    pub(crate) fn next(&self) -> Result<C, TryRecvError> {
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
        let notices = Notices::new().unwrap();
        let (ctl, data) = link::<Command>(&notices).unwrap();
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
        let notices = Notices::new().unwrap();
        let (ctl, data) = link::<Command>(&notices).unwrap();
        let t = std::thread::spawn(move || {
            // More commands than the queue holds: the sender would wait for room.
            let mut answered = 0;
            for _ in 0..COMMAND_QUEUE + 1 {
                ctl.send(Command::Rate {
                    id: vif(),
                    rate: None,
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
        let ctl = Notices::new().unwrap();
        let (_to_data, data) = link::<Command>(&ctl).unwrap();
        data.notify(Notice::Failed {
            id: vif(),
            created: 7,
            reason: "bad ring".into(),
        });
        assert!(hypervisor::poll::readable(&ctl.bell, std::time::Duration::ZERO).unwrap());
        match ctl.receiver.try_recv() {
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
