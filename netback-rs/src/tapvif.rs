//! Each vif's interface in the driver domain as Xen's hotplug scripts (`vif-bridge`,
//! `vif-route`, `vif-common.sh`) set up the kernel backend's: a TAP named by the
//! toolstack's `vifname`, else `vif<domid>.<devid>` (netback's `--tap-name` template);
//! MAC `fe:ff:ff:ff:ff:ff`; MTU from the backend's `mtu` key, else netback's default;
//! on the default bridge if one is given. So a deployment without a bridge script gets
//! the same interface as one with it.
//!
//! The TAPs are persistent (`TUNSETPERSIST`): when netback stops (SIGTERM, `kill -9`,
//! a crash) each vif's interface stays with what the hotplug script and the operator set
//! on it (bridge, MTU, addresses, firewall rules), and the next netback attaches to it by
//! name and leaves those settings alone. Removing the vif (the toolstack deletes its
//! backend directory while a netback runs) clears the persistence and the interface goes
//! away with the port.
//!
//! With both a `vifname` and a hotplug script (`script` key), netback does what the
//! kernel's netback does: it creates `vif<domid>.<devid>`, down and on no bridge, and
//! leaves it to the script, which libxl runs with `vif=vif<domid>.<devid>`: `vif-common.sh`
//! renames it to `vifname` (refusing if that name exists, and a renamed interface must be
//! down), then plugs it in and raises it. An interface already named `vifname` (netback
//! restarted) is taken as it is.

use std::collections::HashMap;
use std::io;

use netport::{Port, TapConfig, TapOffload, TapPort};
use xen_ids::VifId;

use crate::backend::PortFactory;
use crate::vifconfig::{VifConfig, BACKEND_MAC};

/// Opens each vif's TAP (see the module docs).
#[derive(Debug, Clone)]
pub struct TapFactory {
    /// Name of a vif's TAP without a `vifname` key; `{domid}` and `{devid}` are replaced.
    pub template: String,
    /// Bridge to attach each TAP to (`None`: none, the hotplug script's business).
    pub bridge: Option<String>,
    /// MTU of a vif's TAP without an `mtu` key.
    pub mtu: u32,
    /// Make the TAPs persistent (module docs).
    pub persist: bool,
    /// Create the TAPs `IFF_MULTI_QUEUE` (netback offers more than one queue), so that
    /// a vif whose frontend connects with several queues gets one TAP queue per ring
    /// queue ([`PortFactory::open_queue`]). A persistent TAP an earlier netback created
    /// without the flag is opened as it is: its frontends get one queue.
    pub multi_queue: bool,
    /// The multi-queue TAPs it opened (kept by the factory; start with the default).
    pub opened: OpenedTaps,
}

/// The interface index and offloads of each multi-queue TAP a [`TapFactory`] opened,
/// for opening its other queues.
#[derive(Debug, Clone, Default)]
pub struct OpenedTaps(HashMap<VifId, (u32, TapOffload)>);

impl OpenedTaps {
    /// Forgets the TAPs whose interface is gone (the vif was removed and its interface
    /// deleted), so the record does not grow with every vif the host ever had.
    fn forget_gone(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        let live: std::collections::HashSet<u32> = dir
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("ifindex")).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        self.0.retain(|_, (ifindex, _)| live.contains(ifindex));
    }
}

impl Default for TapFactory {
    /// `vif{domid}.{devid}`, no bridge, MTU 1500, persistent.
    fn default() -> Self {
        TapFactory {
            template: "vif{domid}.{devid}".into(),
            bridge: None,
            mtu: 1500,
            persist: true,
            multi_queue: false,
            opened: OpenedTaps::default(),
        }
    }
}

impl TapFactory {
    /// The name of vif `id`'s TAP without a `vifname` key.
    fn default_name(&self, id: VifId) -> String {
        self.template
            .replace("{domid}", &id.domid.0.to_string())
            .replace("{devid}", &id.devid.to_string())
    }

    /// The TAP configuration of vif `id` with the toolstack's keys `vif`.
    pub fn config(&self, id: VifId, vif: &VifConfig) -> TapConfig {
        let name = vif.vifname.clone().unwrap_or_else(|| self.default_name(id));
        let mut cfg = TapConfig::new(&name);
        cfg.mtu = Some(vif.mtu.unwrap_or(self.mtu));
        cfg.mac = Some(BACKEND_MAC);
        cfg.bridge = self.bridge.clone();
        cfg.persist = self.persist;
        cfg.offload = TapOffload {
            csum: true,
            tso: false,
        };
        cfg
    }

    /// [`TapFactory::config`], or, when a hotplug script will rename the interface to
    /// `vifname` (one is set, a script runs, and no interface has that name yet:
    /// `vifname_exists`), the interface the script expects (see the module docs).
    pub fn config_for_script(&self, id: VifId, vif: &VifConfig, vifname_exists: bool) -> TapConfig {
        let mut cfg = self.config(id, vif);
        if vif.hotplug_script && vif.vifname.is_some() && !vifname_exists {
            cfg.name = self.default_name(id);
            cfg.up = false;
            cfg.bridge = None;
        }
        cfg
    }
}

impl TapFactory {
    /// Opens vif `id`'s TAP, multi-queue when asked and possible.
    fn open_tap(&mut self, id: VifId, cfg: &TapConfig) -> io::Result<TapPort> {
        self.opened.0.remove(&id);
        self.opened.forget_gone();
        if !self.multi_queue {
            return TapPort::open(cfg);
        }
        match TapPort::open_multi_queue(cfg) {
            Ok(tap) => {
                self.opened.0.insert(id, (tap.ifindex(), cfg.offload));
                Ok(tap)
            }
            Err(e) => {
                log::warn!("{id}: {e}; opened with one queue (an interface created without IFF_MULTI_QUEUE?): its frontend can connect with one queue only");
                TapPort::open(cfg)
            }
        }
    }
}

impl PortFactory for TapFactory {
    fn open(&mut self, id: VifId, mac: [u8; 6]) -> io::Result<Box<dyn Port>> {
        let vif = VifConfig {
            mac: Some(mac),
            ..VifConfig::default()
        };
        self.open_vif(id, &vif)
    }

    fn open_vif(&mut self, id: VifId, vif: &VifConfig) -> io::Result<Box<dyn Port>> {
        let exists = vif
            .vifname
            .as_deref()
            .is_some_and(|n| netport::link::index(n).is_ok());
        let cfg = self.config_for_script(id, vif, exists);
        let mut tap = self.open_tap(id, &cfg)?;
        if tap.attached() {
            log::info!(
                "{id}: port {} (attached to the existing interface)",
                tap.name()
            );
        } else {
            log::info!("{id}: port {}", tap.name());
        }
        // No carrier until a frontend connects (netback turns it on then, and off when
        // the frontend disconnects or stalls), as Linux's netback.
        if let Err(e) = tap.set_carrier(false) {
            log::debug!("{id}: {e}");
        }
        Ok(Box::new(tap))
    }

    /// Any number for a multi-queue TAP (the kernel's limit applies), else 1.
    fn queues(&self, id: VifId) -> u32 {
        if self.opened.0.contains_key(&id) {
            u32::MAX
        } else {
            1
        }
    }

    fn open_queue(&mut self, id: VifId, queue: u32) -> io::Result<Box<dyn Port>> {
        let Some(&(ifindex, offload)) = self.opened.0.get(&id) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{id}: its TAP has one queue (not IFF_MULTI_QUEUE), not queue {queue}"),
            ));
        };
        let tap = TapPort::attach_queue(ifindex, offload)?;
        log::info!("{id}: queue {queue} on port {}", tap.name());
        Ok(Box::new(tap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_ids::DomId;

    #[test]
    fn names_mac_and_mtu_as_the_hotplug_scripts() {
        let f = TapFactory {
            mtu: 9000,
            bridge: Some("xenbr0".into()),
            ..TapFactory::default()
        };
        let id = VifId::new(DomId(7), 2);
        let c = f.config(id, &VifConfig::default());
        assert_eq!(c.name, "vif7.2");
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.mac, Some([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(c.bridge.as_deref(), Some("xenbr0"));
        assert!(c.persist, "netback's TAPs outlive a netback restart");
        let keys = VifConfig {
            vifname: Some("web0".into()),
            mtu: Some(1400),
            mac: Some([0, 0x16, 0x3e, 1, 2, 3]),
            ..VifConfig::default()
        };
        let c = f.config(id, &keys);
        assert_eq!(c.name, "web0");
        assert_eq!(c.mtu, Some(1400));
        // The guest's MAC is the guest's; the interface keeps fe:ff:ff:ff:ff:ff.
        assert_eq!(c.mac, Some(BACKEND_MAC));
    }

    #[test]
    fn a_hotplug_script_gets_the_kernel_name_to_rename() {
        let f = TapFactory {
            bridge: Some("xenbr0".into()),
            ..TapFactory::default()
        };
        let id = VifId::new(DomId(7), 2);
        let keys = VifConfig {
            vifname: Some("web0".into()),
            mtu: Some(1400),
            hotplug_script: true,
            ..VifConfig::default()
        };
        // vif-common.sh renames vif7.2 to web0: it must exist under that name, down.
        let c = f.config_for_script(id, &keys, false);
        assert_eq!(c.name, "vif7.2");
        assert!(!c.up);
        assert_eq!(c.bridge, None);
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.mac, Some(BACKEND_MAC));
        // Restarted netback: the script already renamed it; take it as it is.
        let c = f.config_for_script(id, &keys, true);
        assert_eq!(c.name, "web0");
        assert!(c.up);
        // No script: netback names it itself.
        let no_script = VifConfig {
            hotplug_script: false,
            ..keys.clone()
        };
        let c = f.config_for_script(id, &no_script, false);
        assert_eq!(c.name, "web0");
        assert!(c.up);
        assert_eq!(c.bridge.as_deref(), Some("xenbr0"));
        // No vifname: the kernel's name, as before.
        let plain = VifConfig {
            vifname: None,
            ..keys
        };
        let c = f.config_for_script(id, &plain, false);
        assert_eq!(c.name, "vif7.2");
        assert!(c.up);
    }
}
