//! What a toolstack (libxl's `libxl_nic.c`) writes in xenstore to create and destroy a
//! vif: the frontend and backend directories with their initial keys and permissions.
//! Used by the `local` platform, the tests, the bench and the CLI; on a real Xen host
//! `xl` does this (see `docs/xen.md`).

use xen_ids::DomId;
use xenstore::{with_transaction, Xenstore, XsAccess, XsPerm, XsResult};

/// A vif to create.
#[derive(Debug, Clone)]
pub struct VifSpec {
    /// The driver domain running netback.
    pub backend: DomId,
    /// The guest.
    pub frontend: DomId,
    /// Device id (`handle`).
    pub devid: u32,
    /// Guest MAC address.
    pub mac: [u8; 6],
    /// MTU (1500 by default).
    pub mtu: u32,
    /// Backend device type: `vif` as libxl, or another name so that a kernel netback
    /// ignores the device (see `docs/xen.md`).
    pub backend_type: String,
    /// xl's `rate=`, as libxl writes it in the backend's `rate` key: bytes per interval
    /// and the interval in µs (`rate=1Mb/s` → `(6250, 50000)`). `None`: no key.
    pub rate: Option<(u64, u32)>,
    /// xl's `vifname=`: the backend interface's name (backend key `vifname`).
    pub vifname: Option<String>,
    /// xl's `ip=`: the guest's addresses, space-separated (backend key `ip`).
    pub ip: Option<String>,
}

impl VifSpec {
    /// A vif with libxl's defaults and a MAC derived from the ids (Xen's 00:16:3e OUI).
    pub fn new(backend: DomId, frontend: DomId, devid: u32) -> Self {
        VifSpec {
            backend,
            frontend,
            devid,
            mac: [
                0x00,
                0x16,
                0x3e,
                (frontend.0 >> 8) as u8,
                frontend.0 as u8,
                devid as u8,
            ],
            mtu: 1500,
            backend_type: "vif".into(),
            rate: None,
            vifname: None,
            ip: None,
        }
    }

    /// `/local/domain/<frontend>/device/vif/<devid>`.
    pub fn frontend_path(&self) -> String {
        format!(
            "/local/domain/{}/device/vif/{}",
            self.frontend.0, self.devid
        )
    }

    /// `/local/domain/<backend>/backend/<type>/<frontend>/<devid>`.
    pub fn backend_path(&self) -> String {
        format!(
            "/local/domain/{}/backend/{}/{}/{}",
            self.backend.0, self.backend_type, self.frontend.0, self.devid
        )
    }

    /// The backend's `rate` for `bytes_per_sec` as libxl computes it from xl's `rate=`
    /// with its default 50 ms interval (bytes per interval rounded down).
    pub fn libxl_rate(bytes_per_sec: u64) -> (u64, u32) {
        const INTERVAL_US: u32 = 50_000;
        let bytes = u128::from(bytes_per_sec) * u128::from(INTERVAL_US) / 1_000_000;
        (u64::try_from(bytes).unwrap_or(u64::MAX), INTERVAL_US)
    }

    /// The optional backend keys libxl writes for this vif (`rate`, `vifname`, `ip`).
    fn optional_backend_keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        if let Some((bytes, usec)) = self.rate {
            keys.push(("rate", format!("{bytes},{usec}")));
        }
        if let Some(n) = &self.vifname {
            keys.push(("vifname", n.clone()));
        }
        if let Some(ip) = &self.ip {
            keys.push(("ip", ip.clone()));
        }
        keys
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Writes both directories in one transaction, as libxl does: the frontend directory
/// owned by the guest and readable by the backend, the backend directory owned by the
/// driver domain and readable by the guest. Must run as a privileged domain (dom0).
pub fn create_vif<X: Xenstore + ?Sized>(xs: &X, spec: &VifSpec) -> XsResult<()> {
    let fe = spec.frontend_path();
    let be = spec.backend_path();
    let mac = spec.mac_string();
    with_transaction(xs, |tx| {
        let fe_perms = [
            XsPerm::new(spec.frontend, XsAccess::None),
            XsPerm::new(spec.backend, XsAccess::Read),
        ];
        let be_perms = [
            XsPerm::new(spec.backend, XsAccess::None),
            XsPerm::new(spec.frontend, XsAccess::Read),
        ];
        xs.mkdir(tx, &fe)?;
        xs.set_perms(tx, &fe, &fe_perms)?;
        let fe_keys: [(&str, String); 6] = [
            ("backend", be.clone()),
            ("backend-id", spec.backend.0.to_string()),
            ("handle", spec.devid.to_string()),
            ("mac", mac.clone()),
            ("mtu", spec.mtu.to_string()),
            ("state", "1".into()),
        ];
        for (k, v) in &fe_keys {
            let p = format!("{fe}/{k}");
            xs.write(tx, &p, v.as_bytes())?;
            xs.set_perms(tx, &p, &fe_perms)?;
        }
        xs.mkdir(tx, &be)?;
        xs.set_perms(tx, &be, &be_perms)?;
        let be_keys: [(&str, String); 9] = [
            ("frontend", fe.clone()),
            ("frontend-id", spec.frontend.0.to_string()),
            ("online", "1".into()),
            ("state", "1".into()),
            ("mac", mac.clone()),
            ("handle", spec.devid.to_string()),
            ("type", "vif".into()),
            ("mtu", spec.mtu.to_string()),
            ("hotplug-status", "connected".into()),
        ];
        for (k, v) in be_keys.iter().chain(&spec.optional_backend_keys()) {
            let p = format!("{be}/{k}");
            xs.write(tx, &p, v.as_bytes())?;
            xs.set_perms(tx, &p, &be_perms)?;
        }
        Ok(())
    })
}

/// Removes both directories (the backend sees its directory vanish and tears the vif
/// down; the frontend sees its backend go away).
pub fn destroy_vif<X: Xenstore + ?Sized>(xs: &X, spec: &VifSpec) -> XsResult<()> {
    with_transaction(xs, |tx| {
        for p in [spec.backend_path(), spec.frontend_path()] {
            match xs.rm(tx, &p) {
                Err(e) if e.is_enoent() => {}
                r => r?,
            }
        }
        Ok(())
    })
}
