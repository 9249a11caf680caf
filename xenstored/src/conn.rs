//! Connection I/O of the local xenstore server.
//!
//! Each connection has a reader thread (reads and decodes requests, processes them
//! under the server's lock, writes the replies) and a writer thread that flushes the
//! [`Outbox`] when something other than the connection's own requests queued output
//! (watch events caused by other connections). Output to a connection is never
//! written while holding the server lock, so a client that stops reading only stalls
//! itself; once its queued output exceeds the configured limit it is disconnected.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{ConnId, Inner};
use xenstore::wire::{FrameDecoder, XsMessage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are single container operations; a poisoned lock still holds
    // consistent data, and the server must not panic because a thread did.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct OutState {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    writing: bool,
    closed: bool,
}

/// Queued output of one connection.
pub(crate) struct Outbox {
    state: Mutex<OutState>,
    cond: Condvar,
    stream: UnixStream,
    limit: usize,
}

impl Outbox {
    pub fn new(stream: UnixStream, limit: usize) -> Self {
        Outbox {
            state: Mutex::new(OutState::default()),
            cond: Condvar::new(),
            stream,
            limit,
        }
    }

    /// Queues one encoded message. Returns `false` (and closes the connection) if the
    /// connection's backlog exceeds the limit.
    pub fn push(&self, bytes: Vec<u8>) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        s.bytes += bytes.len();
        s.queue.push_back(bytes);
        if s.bytes > self.limit {
            log::warn!(
                "xenstored(local): connection backlog over {} bytes, closing it",
                self.limit
            );
            drop(s);
            self.close();
            return false;
        }
        self.cond.notify_all();
        true
    }

    /// Writes what is queued from the calling thread unless another thread is
    /// writing (then that thread flushes it).
    pub fn flush_inline(&self) {
        let batch = {
            let mut s = lock(&self.state);
            if s.writing || s.closed || s.queue.is_empty() {
                return;
            }
            s.writing = true;
            s.bytes = 0;
            std::mem::take(&mut s.queue)
        };
        self.write_batch(batch);
    }

    fn write_batch(&self, batch: VecDeque<Vec<u8>>) {
        let mut stream = &self.stream;
        let mut ok = true;
        for m in batch {
            if stream.write_all(&m).is_err() {
                ok = false;
                break;
            }
        }
        let mut s = lock(&self.state);
        s.writing = false;
        if !ok {
            drop(s);
            self.close();
            return;
        }
        if !s.queue.is_empty() {
            self.cond.notify_all();
        }
    }

    /// The writer thread: flushes output queued while no reply was being written.
    pub fn writer_loop(&self) {
        loop {
            let batch = {
                let mut s = lock(&self.state);
                while !s.closed && (s.writing || s.queue.is_empty()) {
                    s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.closed {
                    return;
                }
                s.writing = true;
                s.bytes = 0;
                std::mem::take(&mut s.queue)
            };
            self.write_batch(batch);
        }
    }

    /// Closes the connection: both threads stop, the peer sees end of stream.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.queue.clear();
        self.cond.notify_all();
        drop(s);
        // Ignored: the socket may already be shut down by the peer.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The reader thread of connection `id`.
pub(crate) fn reader_loop(inner: Arc<Inner>, id: ConnId, mut stream: UnixStream, out: Arc<Outbox>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    inner.process(id, &msg);
                    out.flush_inline();
                }
                Ok(None) => break,
                Err(e) => {
                    // An oversize length cannot be skipped: like xenstored, drop the
                    // connection.
                    log::warn!("xenstored(local): connection {id}: {e}; closing it");
                    break 'conn;
                }
            }
        }
    }
    out.close();
    inner.disconnect(id);
}

/// Encodes a message, for the outbox.
pub(crate) fn encode(msg: &XsMessage) -> Vec<u8> {
    msg.encode()
}
