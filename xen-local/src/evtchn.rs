//! Local event channels: one eventfd per direction of a channel, gathered in an epoll
//! instance whose fd is the handle's pollable fd.
//!
//! Each port's receive eventfd is registered with `EPOLLONESHOT`: once
//! [`pending`](EventChannels::pending) reported it, epoll disarms it, which is exactly
//! Xen's "a fired port stays masked until written back"; [`unmask`](EventChannels::unmask)
//! re-arms it, and a notification that arrived meanwhile is reported again at once.
//! Notifying is a single `write` to the peer's eventfd.
//!
//! A [`detach`](EventChannels::detach)ed port leaves the epoll instance: its caller
//! polls (a duplicate of) its receive eventfd itself — level-triggered, readable from a
//! notification until [`ack`](EventChannels::ack) reads the counter back to zero. A
//! wake-up of such a port costs its caller one `read` besides its own poll, where a
//! port reported through the handle's fd costs an `epoll_wait`, a `read` and an
//! `epoll_ctl` (the re-arm).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, RwLock};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;
use rustix::io::Errno;

use super::client::{CallError, Conn, Domain};
use super::proto::*;
use super::sys;
use hypervisor::evtchn::{EventChannels, EvtchnError, Port};
use xen_ids::DomId;

struct PortFds {
    recv: OwnedFd,
    send: OwnedFd,
    /// Taken out of the epoll instance by [`EventChannels::detach`].
    detached: bool,
}

/// A handle on a local domain's event channels (the local `/dev/xen/evtchn`). Dropping
/// it unbinds every port bound through it.
pub struct LocalEventChannels {
    conn: Arc<Conn>,
    epoll: OwnedFd,
    ports: RwLock<HashMap<u32, PortFds>>,
}

impl std::fmt::Debug for LocalEventChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<u32> = self
            .ports
            .read()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("LocalEventChannels")
            .field("ports", &ports)
            .finish()
    }
}

const ARMED: EventFlags = EventFlags::IN.union(EventFlags::ONESHOT);

fn call_err(op: &'static str) -> impl Fn(CallError) -> EvtchnError {
    move |e| match e {
        CallError::Io(source) => EvtchnError::Io { op, source },
        CallError::Refused(r) => EvtchnError::Refused(r.reason),
    }
}

impl Domain {
    /// Open a handle on this domain's event channels.
    pub fn event_channels(&self) -> Result<LocalEventChannels, EvtchnError> {
        let epoll = epoll::create(CreateFlags::CLOEXEC).map_err(|e| EvtchnError::Io {
            op: "epoll_create1",
            source: e.into(),
        })?;
        Ok(LocalEventChannels {
            conn: self.conn().clone(),
            epoll,
            ports: RwLock::new(HashMap::new()),
        })
    }
}

impl LocalEventChannels {
    fn add(
        &self,
        reply: Bound,
        mut fds: Vec<OwnedFd>,
        op: &'static str,
    ) -> Result<Port, EvtchnError> {
        let port = reply.port.0;
        if fds.len() != 2 {
            return Err(EvtchnError::Io {
                op,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "expected two eventfds",
                ),
            });
        }
        let send = fds.pop().expect("two");
        let recv = fds.pop().expect("two");
        epoll::add(&self.epoll, &recv, EventData::new_u64(port.into()), ARMED).map_err(|e| {
            EvtchnError::Io {
                op: "epoll_ctl add",
                source: e.into(),
            }
        })?;
        self.ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                port,
                PortFds {
                    recv,
                    send,
                    detached: false,
                },
            );
        Ok(Port(port))
    }

    fn with_port<T>(&self, port: Port, f: impl FnOnce(&PortFds) -> T) -> Result<T, EvtchnError> {
        let ports = self.ports.read().unwrap_or_else(|p| p.into_inner());
        ports
            .get(&port.0)
            .map(f)
            .ok_or(EvtchnError::UnknownPort(port))
    }
}

impl AsFd for LocalEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl EventChannels for LocalEventChannels {
    fn reopen(&self) -> Result<Self, EvtchnError> {
        let epoll = epoll::create(CreateFlags::CLOEXEC).map_err(|e| EvtchnError::Io {
            op: "epoll_create1",
            source: e.into(),
        })?;
        Ok(LocalEventChannels {
            conn: self.conn.clone(),
            epoll,
            ports: RwLock::new(HashMap::new()),
        })
    }

    fn alloc_unbound(&self, peer: DomId) -> Result<Port, EvtchnError> {
        let req = AllocUnbound { peer };
        let (reply, fds) = self.conn.call(req).map_err(call_err("alloc_unbound"))?;
        self.add(reply, fds, "alloc_unbound")
    }

    fn bind_interdomain(&self, peer: DomId, remote: Port) -> Result<Port, EvtchnError> {
        let req = Bind { peer, remote };
        let (reply, fds) = self.conn.call(req).map_err(call_err("bind_interdomain"))?;
        self.add(reply, fds, "bind_interdomain")
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_port(port, |p| sys::eventfd_signal(&p.send))?
            .map_err(|source| EvtchnError::Io {
                op: "notify",
                source,
            })
    }

    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        let p = self
            .ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port.0)
            .ok_or(EvtchnError::UnknownPort(port))?;
        // The hypervisor holds duplicates of the eventfd, so closing ours would not take
        // it out of the epoll set: remove it explicitly.
        let _ = epoll::delete(&self.epoll, &p.recv);
        let req = Unbind { port };
        self.conn.call(req).map(drop).map_err(call_err("unbind"))
    }

    fn pending(&self, out: &mut [Port]) -> Result<usize, EvtchnError> {
        let none = Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        };
        let mut evs = [none; 64];
        let max = out.len().min(evs.len());
        if max == 0 {
            return Ok(0);
        }
        let n = loop {
            match epoll::wait(&self.epoll, &mut evs[..max], Some(&Timespec::default())) {
                Err(Errno::INTR) => continue,
                r => {
                    break r.map_err(|e| EvtchnError::Io {
                        op: "epoll_wait",
                        source: e.into(),
                    })?
                }
            }
        };
        let ports = self.ports.read().unwrap_or_else(|p| p.into_inner());
        let mut k = 0;
        for ev in &evs[..n] {
            let port = ev.data.u64() as u32;
            // A port unbound meanwhile by another thread is simply not reported.
            if let Some(p) = ports.get(&port) {
                sys::eventfd_drain(&p.recv).map_err(|source| EvtchnError::Io {
                    op: "read eventfd",
                    source,
                })?;
                out[k] = Port(port);
                k += 1;
            }
        }
        Ok(k)
    }

    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_port(port, |p| {
            if p.detached {
                return Ok(());
            }
            epoll::modify(
                &self.epoll,
                &p.recv,
                EventData::new_u64(port.0.into()),
                ARMED,
            )
        })?
        .map_err(|e| EvtchnError::Io {
            op: "epoll_ctl mod",
            source: e.into(),
        })
    }

    fn detach(&self, port: Port) -> Result<Option<OwnedFd>, EvtchnError> {
        let mut ports = self.ports.write().unwrap_or_else(|p| p.into_inner());
        let p = ports
            .get_mut(&port.0)
            .ok_or(EvtchnError::UnknownPort(port))?;
        let fd = p.recv.try_clone().map_err(|source| EvtchnError::Io {
            op: "dup eventfd",
            source,
        })?;
        if !p.detached {
            // A notification already queued stays in the eventfd's counter: the
            // caller's poll of `fd` sees it.
            epoll::delete(&self.epoll, &p.recv).map_err(|e| EvtchnError::Io {
                op: "epoll_ctl del",
                source: e.into(),
            })?;
            p.detached = true;
        }
        Ok(Some(fd))
    }

    fn ack(&self, port: Port) -> Result<bool, EvtchnError> {
        self.with_port(port, |p| {
            if !p.detached {
                return Err(EvtchnError::NotDetached(port));
            }
            sys::eventfd_drain(&p.recv).map_err(|source| EvtchnError::Io {
                op: "read eventfd",
                source,
            })
        })?
    }
}

impl Drop for LocalEventChannels {
    fn drop(&mut self) {
        let ports: Vec<u32> = self
            .ports
            .read()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        for port in ports {
            if let Err(e) = self.unbind(Port(port)) {
                log::warn!("unbinding local port {port}: {e}");
            }
        }
    }
}
