//! Readiness notification to the service manager (systemd's `Type=notify`).
//!
//! The packaged unit (`packaging/xen-dba-netfront/dba-netfront.service`) is ordered
//! before `network-pre.target`: the guest's network configuration (ifupdown,
//! systemd-networkd) must find the TAP already there. systemd considers a
//! `Type=notify` service started only when it sends `READY=1` to the datagram socket
//! named by `$NOTIFY_SOCKET`, which netfront does once the vif is connected and its TAP
//! exists. Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Why a readiness message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is neither an absolute path nor an abstract name (`@…`).
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract socket name")]
    BadAddress(String),
    /// The socket could not be created, addressed or written.
    #[error("notify socket {addr:?}: {source}")]
    Io {
        /// The socket's name as given.
        addr: String,
        /// What failed.
        source: io::Error,
    },
}

/// Sends `READY=1` and `STATUS=<status>` to the socket named by `$NOTIFY_SOCKET`.
/// Returns whether a message was sent (`false`: the variable is unset or empty).
pub fn notify_ready(status: &str) -> Result<bool, NotifyError> {
    match std::env::var(NOTIFY_SOCKET_VAR) {
        Ok(addr) if !addr.is_empty() => notify_ready_to(&addr, status).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `READY=1` and `STATUS=<status>` to the datagram socket `addr`, given as
/// systemd gives it: an absolute path, or `@name` for Linux's abstract namespace.
pub fn notify_ready_to(addr: &str, status: &str) -> Result<(), NotifyError> {
    let io_err = |source| NotifyError::Io {
        addr: addr.to_owned(),
        source,
    };
    let sa = socket_addr(addr)?.map_err(io_err)?;
    let sock = UnixDatagram::unbound().map_err(io_err)?;
    // One line per field; a newline in the status would start a field of its own.
    let msg = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
    sock.send_to_addr(msg.as_bytes(), &sa).map_err(io_err)?;
    Ok(())
}

fn socket_addr(addr: &str) -> Result<io::Result<SocketAddr>, NotifyError> {
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        Ok(SocketAddr::from_abstract_name(name.as_bytes()))
    } else if addr.starts_with('/') {
        Ok(SocketAddr::from_pathname(addr))
    } else {
        Err(NotifyError::BadAddress(addr.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_gets_ready_and_the_status() {
        let dir = std::env::temp_dir().join(format!("netfront-ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_ready_to(path.to_str().unwrap(), "serving eth0\ninjected=1").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=serving eth0 injected=1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_abstract_socket_gets_ready() {
        let name = format!("netfront-ready-test-{}", std::process::id());
        let sa = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&sa).unwrap();
        notify_ready_to(&format!("@{name}"), "serving eth0").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=serving eth0\n");
    }

    #[test]
    fn a_relative_name_or_a_missing_socket_is_an_error() {
        assert!(matches!(
            notify_ready_to("notify", "x"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(matches!(
            notify_ready_to("/nonexistent/netfront/notify", "x"),
            Err(NotifyError::Io { .. })
        ));
    }
}
