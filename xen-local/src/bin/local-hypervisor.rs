//! `local-hypervisor`: the local emulation of Xen's grant tables and event channels (and,
//! optionally, xenstore) as a daemon that separate netfront/netback processes attach to.
//!
//! ```text
//! local-hypervisor --socket PATH [--xenstore-socket PATH]
//! ```
//!
//! Domains attach with `xen_local::Domain::attach(PATH, domid)`. With
//! `--xenstore-socket`, a local xenstored serves that socket too, and
//! `Domain::xenstore()` hands each domain a connection to it over the hypervisor socket.
//! Prints `ready` on stdout once it accepts connections.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;

use xen_local::LocalHypervisor;
use xenstored::Xenstored;

const USAGE: &str = "usage: local-hypervisor --socket PATH [--xenstore-socket PATH]";

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut xs_socket: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--socket") => socket = args.next().map(PathBuf::from),
            Some("--xenstore-socket") => xs_socket = args.next().map(PathBuf::from),
            Some("-h") | Some("--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("local-hypervisor: unexpected argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(socket) = socket else {
        eprintln!("local-hypervisor: --socket is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let hv = LocalHypervisor::new();
    let xs = Xenstored::new();
    hv.set_xenstore(Box::new({
        let xs = xs.clone();
        move |d| xs.connect(xen_ids::DomId(d.0)).map(OwnedFd::from)
    }));
    hv.set_death_hook(Box::new({
        let xs = xs.clone();
        move |d| xs.domain_died(xen_ids::DomId(d.0))
    }));
    if let Some(p) = &xs_socket {
        if let Err(e) = xs.listen(p) {
            eprintln!("local-hypervisor: xenstore socket {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    let accept = match hv.listen(&socket) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("local-hypervisor: {}: {e}", socket.display());
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let _ = accept.join();
    ExitCode::FAILURE
}
