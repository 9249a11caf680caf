//! `local-hypervisor`: the local emulation of Xen's grant tables and event channels (and,
//! optionally, xenstore) as a daemon that separate netfront/netback processes attach to.
//!
//! ```text
//! local-hypervisor --socket PATH [--xenstore-socket PATH]
//! ```
//!
//! Domains attach with `xen_local::attach(PATH, domid)`. The daemon is a
//! [`xen_local::LocalHost`]: a hypervisor with a xenstored wired to it, so
//! `Domain::xenstore()` hands each domain a connection to that xenstored over the
//! hypervisor socket; with `--xenstore-socket` the xenstored also listens on that socket
//! (for tools that speak to xenstore directly). Prints `ready` on stdout once it accepts
//! connections.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use xen_local::LocalHost;

/// The local hypervisor daemon.
#[derive(Parser)]
#[command(
    version,
    about = "The local emulation of Xen's grant tables, event channels and xenstore"
)]
struct Cli {
    /// The socket domains attach to.
    #[arg(long)]
    socket: PathBuf,
    /// Also serve xenstore on this socket.
    #[arg(long)]
    xenstore_socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host = LocalHost::new();
    if let Some(p) = &cli.xenstore_socket {
        if let Err(e) = host.xenstored.listen(p) {
            eprintln!("local-hypervisor: xenstore socket {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    let accept = match host.hypervisor.listen(&cli.socket) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("local-hypervisor: {}: {e}", cli.socket.display());
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let _ = accept.join();
    ExitCode::FAILURE
}
