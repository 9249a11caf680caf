//! The `xen` implementation's ioctl numbers and struct layouts, checked against Linux's
//! uapi headers (`/usr/include/xen/{gntalloc,gntdev,evtchn}.h`, package linux-libc-dev)
//! by compiling and running a small C program. Skips, saying why, when no C compiler or
//! no headers are installed (CI installs both: see `.ci/packages`).

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use hypervisor::evtchn::uapi as e;
use hypervisor::grant::uapi as g;

const C_SHIM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
typedef uint16_t domid_t;
typedef uint32_t grant_ref_t;
#include <xen/gntalloc.h>
#include <xen/gntdev.h>
#include <xen/evtchn.h>
#define N(x) printf("%s %lu\n", #x, (unsigned long)(x));
#define S(t) printf("sizeof %s %lu\n", #t, (unsigned long)sizeof(struct t));
#define O(t, f) printf("offsetof %s.%s %lu\n", #t, #f, (unsigned long)offsetof(struct t, f));
int main(void) {
  N(IOCTL_GNTALLOC_ALLOC_GREF) N(IOCTL_GNTALLOC_DEALLOC_GREF) N(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY)
  N(IOCTL_GNTDEV_MAP_GRANT_REF) N(IOCTL_GNTDEV_UNMAP_GRANT_REF) N(IOCTL_GNTDEV_SET_MAX_GRANTS)
  N(IOCTL_GNTDEV_SET_UNMAP_NOTIFY) N(IOCTL_GNTDEV_GRANT_COPY)
  N(IOCTL_EVTCHN_BIND_VIRQ) N(IOCTL_EVTCHN_BIND_INTERDOMAIN) N(IOCTL_EVTCHN_BIND_UNBOUND_PORT)
  N(IOCTL_EVTCHN_UNBIND) N(IOCTL_EVTCHN_NOTIFY) N(IOCTL_EVTCHN_RESET) N(IOCTL_EVTCHN_RESTRICT_DOMID)
  N(GNTALLOC_FLAG_WRITABLE) N(UNMAP_NOTIFY_CLEAR_BYTE) N(UNMAP_NOTIFY_SEND_EVENT)
  S(ioctl_gntalloc_alloc_gref) O(ioctl_gntalloc_alloc_gref, domid) O(ioctl_gntalloc_alloc_gref, flags)
  O(ioctl_gntalloc_alloc_gref, count) O(ioctl_gntalloc_alloc_gref, index) O(ioctl_gntalloc_alloc_gref, gref_ids)
  S(ioctl_gntalloc_dealloc_gref) O(ioctl_gntalloc_dealloc_gref, index) O(ioctl_gntalloc_dealloc_gref, count)
  S(ioctl_gntalloc_unmap_notify) O(ioctl_gntalloc_unmap_notify, index) O(ioctl_gntalloc_unmap_notify, action)
  O(ioctl_gntalloc_unmap_notify, event_channel_port)
  S(ioctl_gntdev_unmap_notify) O(ioctl_gntdev_unmap_notify, index) O(ioctl_gntdev_unmap_notify, action)
  O(ioctl_gntdev_unmap_notify, event_channel_port)
  S(ioctl_gntdev_grant_ref) O(ioctl_gntdev_grant_ref, domid) O(ioctl_gntdev_grant_ref, ref)
  S(ioctl_gntdev_map_grant_ref) O(ioctl_gntdev_map_grant_ref, count) O(ioctl_gntdev_map_grant_ref, pad)
  O(ioctl_gntdev_map_grant_ref, index) O(ioctl_gntdev_map_grant_ref, refs)
  S(ioctl_gntdev_unmap_grant_ref) O(ioctl_gntdev_unmap_grant_ref, index) O(ioctl_gntdev_unmap_grant_ref, count)
  S(ioctl_gntdev_set_max_grants)
  S(gntdev_grant_copy_segment) O(gntdev_grant_copy_segment, source) O(gntdev_grant_copy_segment, dest)
  O(gntdev_grant_copy_segment, len) O(gntdev_grant_copy_segment, flags) O(gntdev_grant_copy_segment, status)
  O(gntdev_grant_copy_segment, source.foreign.ref) O(gntdev_grant_copy_segment, source.foreign.offset)
  O(gntdev_grant_copy_segment, source.foreign.domid)
  S(ioctl_gntdev_grant_copy) O(ioctl_gntdev_grant_copy, count) O(ioctl_gntdev_grant_copy, segments)
  S(ioctl_evtchn_bind_virq) S(ioctl_evtchn_bind_interdomain) O(ioctl_evtchn_bind_interdomain, remote_domain)
  O(ioctl_evtchn_bind_interdomain, remote_port) S(ioctl_evtchn_bind_unbound_port) S(ioctl_evtchn_unbind)
  S(ioctl_evtchn_notify) S(ioctl_evtchn_restrict_domid)
  return 0;
}
"#;

/// Compile and run the shim; `None` (with the reason printed) when it cannot be built.
fn c_values() -> Option<HashMap<String, u64>> {
    for h in ["gntalloc.h", "gntdev.h", "evtchn.h"] {
        if !std::path::Path::new("/usr/include/xen").join(h).exists() {
            println!("SKIP: /usr/include/xen/{h} missing (install linux-libc-dev)");
            return None;
        }
    }
    let dir = std::env::temp_dir().join(format!("hv-uapi-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("shim.c");
    let exe = dir.join("shim");
    std::fs::write(&src, C_SHIM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = match Command::new(&cc).arg("-o").arg(&exe).arg(&src).output() {
        Ok(o) => o,
        Err(err) => {
            println!("SKIP: no C compiler ({cc}: {err}); install build-essential");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "the C shim does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8(run.stdout).unwrap();
    Some(
        text.lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect(),
    )
}

#[test]
fn ioctl_numbers_and_layouts_match_the_uapi_headers() {
    let Some(c) = c_values() else { return };
    let mut checked = 0;
    let mut eq = |key: &str, rust: u64| {
        let cv = *c
            .get(key)
            .unwrap_or_else(|| panic!("the shim does not print {key}"));
        assert_eq!(rust, cv, "{key}: Rust {rust:#x}, C {cv:#x}");
        checked += 1;
    };
    eq(
        "IOCTL_GNTALLOC_ALLOC_GREF",
        g::IOCTL_GNTALLOC_ALLOC_GREF.into(),
    );
    eq(
        "IOCTL_GNTALLOC_DEALLOC_GREF",
        g::IOCTL_GNTALLOC_DEALLOC_GREF.into(),
    );
    eq(
        "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
        g::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY.into(),
    );
    eq(
        "IOCTL_GNTDEV_MAP_GRANT_REF",
        g::IOCTL_GNTDEV_MAP_GRANT_REF.into(),
    );
    eq(
        "IOCTL_GNTDEV_UNMAP_GRANT_REF",
        g::IOCTL_GNTDEV_UNMAP_GRANT_REF.into(),
    );
    eq(
        "IOCTL_GNTDEV_SET_MAX_GRANTS",
        g::IOCTL_GNTDEV_SET_MAX_GRANTS.into(),
    );
    eq(
        "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
        g::IOCTL_GNTDEV_SET_UNMAP_NOTIFY.into(),
    );
    eq("IOCTL_GNTDEV_GRANT_COPY", g::IOCTL_GNTDEV_GRANT_COPY.into());
    eq("IOCTL_EVTCHN_BIND_VIRQ", e::IOCTL_EVTCHN_BIND_VIRQ.into());
    eq(
        "IOCTL_EVTCHN_BIND_INTERDOMAIN",
        e::IOCTL_EVTCHN_BIND_INTERDOMAIN.into(),
    );
    eq(
        "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
        e::IOCTL_EVTCHN_BIND_UNBOUND_PORT.into(),
    );
    eq("IOCTL_EVTCHN_UNBIND", e::IOCTL_EVTCHN_UNBIND.into());
    eq("IOCTL_EVTCHN_NOTIFY", e::IOCTL_EVTCHN_NOTIFY.into());
    eq("IOCTL_EVTCHN_RESET", e::IOCTL_EVTCHN_RESET.into());
    eq(
        "IOCTL_EVTCHN_RESTRICT_DOMID",
        e::IOCTL_EVTCHN_RESTRICT_DOMID.into(),
    );
    eq("GNTALLOC_FLAG_WRITABLE", g::GNTALLOC_FLAG_WRITABLE.into());
    eq("UNMAP_NOTIFY_CLEAR_BYTE", g::UNMAP_NOTIFY_CLEAR_BYTE.into());
    eq("UNMAP_NOTIFY_SEND_EVENT", g::UNMAP_NOTIFY_SEND_EVENT.into());

    macro_rules! size {
        ($c:literal, $t:ty) => {
            eq(concat!("sizeof ", $c), size_of::<$t>() as u64)
        };
    }
    macro_rules! off {
        ($c:literal, $t:ty, $($f:tt).+) => {
            eq(concat!("offsetof ", $c), offset_of!($t, $($f).+) as u64)
        };
    }
    size!("ioctl_gntalloc_alloc_gref", g::IoctlGntallocAllocGref);
    off!(
        "ioctl_gntalloc_alloc_gref.domid",
        g::IoctlGntallocAllocGref,
        domid
    );
    off!(
        "ioctl_gntalloc_alloc_gref.flags",
        g::IoctlGntallocAllocGref,
        flags
    );
    off!(
        "ioctl_gntalloc_alloc_gref.count",
        g::IoctlGntallocAllocGref,
        count
    );
    off!(
        "ioctl_gntalloc_alloc_gref.index",
        g::IoctlGntallocAllocGref,
        index
    );
    off!(
        "ioctl_gntalloc_alloc_gref.gref_ids",
        g::IoctlGntallocAllocGref,
        gref_ids
    );
    size!("ioctl_gntalloc_dealloc_gref", g::IoctlGntallocDeallocGref);
    off!(
        "ioctl_gntalloc_dealloc_gref.index",
        g::IoctlGntallocDeallocGref,
        index
    );
    off!(
        "ioctl_gntalloc_dealloc_gref.count",
        g::IoctlGntallocDeallocGref,
        count
    );
    for which in ["gntalloc", "gntdev"] {
        let k = |f: &str| format!("offsetof ioctl_{which}_unmap_notify.{f}");
        eq(
            &format!("sizeof ioctl_{which}_unmap_notify"),
            size_of::<g::IoctlUnmapNotify>() as u64,
        );
        eq(&k("index"), offset_of!(g::IoctlUnmapNotify, index) as u64);
        eq(&k("action"), offset_of!(g::IoctlUnmapNotify, action) as u64);
        eq(
            &k("event_channel_port"),
            offset_of!(g::IoctlUnmapNotify, event_channel_port) as u64,
        );
    }
    size!("ioctl_gntdev_grant_ref", g::IoctlGntdevGrantRef);
    off!(
        "ioctl_gntdev_grant_ref.domid",
        g::IoctlGntdevGrantRef,
        domid
    );
    off!("ioctl_gntdev_grant_ref.ref", g::IoctlGntdevGrantRef, ref_);
    size!("ioctl_gntdev_map_grant_ref", g::IoctlGntdevMapGrantRef);
    off!(
        "ioctl_gntdev_map_grant_ref.count",
        g::IoctlGntdevMapGrantRef,
        count
    );
    off!(
        "ioctl_gntdev_map_grant_ref.pad",
        g::IoctlGntdevMapGrantRef,
        pad
    );
    off!(
        "ioctl_gntdev_map_grant_ref.index",
        g::IoctlGntdevMapGrantRef,
        index
    );
    off!(
        "ioctl_gntdev_map_grant_ref.refs",
        g::IoctlGntdevMapGrantRef,
        refs
    );
    size!("ioctl_gntdev_unmap_grant_ref", g::IoctlGntdevUnmapGrantRef);
    off!(
        "ioctl_gntdev_unmap_grant_ref.index",
        g::IoctlGntdevUnmapGrantRef,
        index
    );
    off!(
        "ioctl_gntdev_unmap_grant_ref.count",
        g::IoctlGntdevUnmapGrantRef,
        count
    );
    size!("ioctl_gntdev_set_max_grants", g::IoctlGntdevSetMaxGrants);
    size!("gntdev_grant_copy_segment", g::GntdevGrantCopySegment);
    off!(
        "gntdev_grant_copy_segment.source",
        g::GntdevGrantCopySegment,
        source
    );
    off!(
        "gntdev_grant_copy_segment.dest",
        g::GntdevGrantCopySegment,
        dest
    );
    off!(
        "gntdev_grant_copy_segment.len",
        g::GntdevGrantCopySegment,
        len
    );
    off!(
        "gntdev_grant_copy_segment.flags",
        g::GntdevGrantCopySegment,
        flags
    );
    off!(
        "gntdev_grant_copy_segment.status",
        g::GntdevGrantCopySegment,
        status
    );
    off!(
        "gntdev_grant_copy_segment.source.foreign.ref",
        g::GntdevCopyForeign,
        ref_
    );
    off!(
        "gntdev_grant_copy_segment.source.foreign.offset",
        g::GntdevCopyForeign,
        offset
    );
    off!(
        "gntdev_grant_copy_segment.source.foreign.domid",
        g::GntdevCopyForeign,
        domid
    );
    size!("ioctl_gntdev_grant_copy", g::IoctlGntdevGrantCopy);
    off!(
        "ioctl_gntdev_grant_copy.count",
        g::IoctlGntdevGrantCopy,
        count
    );
    off!(
        "ioctl_gntdev_grant_copy.segments",
        g::IoctlGntdevGrantCopy,
        segments
    );
    size!("ioctl_evtchn_bind_virq", e::IoctlEvtchnBindVirq);
    size!(
        "ioctl_evtchn_bind_interdomain",
        e::IoctlEvtchnBindInterdomain
    );
    off!(
        "ioctl_evtchn_bind_interdomain.remote_domain",
        e::IoctlEvtchnBindInterdomain,
        remote_domain
    );
    off!(
        "ioctl_evtchn_bind_interdomain.remote_port",
        e::IoctlEvtchnBindInterdomain,
        remote_port
    );
    size!(
        "ioctl_evtchn_bind_unbound_port",
        e::IoctlEvtchnBindUnboundPort
    );
    size!("ioctl_evtchn_unbind", e::IoctlEvtchnUnbind);
    size!("ioctl_evtchn_notify", e::IoctlEvtchnNotify);
    size!("ioctl_evtchn_restrict_domid", e::IoctlEvtchnRestrictDomid);
    // Every line the shim printed was compared.
    assert_eq!(
        checked,
        c.len(),
        "values printed by the shim but not compared"
    );
}
