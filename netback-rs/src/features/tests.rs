use super::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const FE: &str = "/local/domain/1/device/vif/0";

/// A frontend directory holding exactly `keys`, read by dom0.
fn read(keys: &[(&str, &str)]) -> Result<FrontendFeatures, FeatureError> {
    let host = LocalHost::new();
    let dom0 = host.domain(DomId(0)).unwrap();
    for (k, v) in keys {
        dom0.xenstore
            .write(XsTx::NONE, &format!("{FE}/{k}"), v.as_bytes())
            .unwrap();
    }
    read_frontend(&dom0.xenstore, FE)
}

#[test]
fn a_frontend_writing_no_feature_key_gets_the_netif_defaults() {
    let f = read(&[("request-rx-copy", "1"), ("event-channel", "9")]).unwrap();
    assert_eq!(f.offer, Offer::DEFAULTS);
    assert!(!f.rx_notify);
    assert_eq!(f.channels, ChannelKeys::Single(9));
    let a = f.allowed();
    assert!(!a.multi_slot && !a.gso_v4 && !a.gso_v6 && a.csum_v4 && !a.csum_v6);
}

#[test]
fn a_linux_like_frontend_is_read_key_by_key() {
    let f = read(&[
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("event-channel-tx", "11"),
        ("event-channel-rx", "12"),
    ])
    .unwrap();
    assert!(f.rx_notify);
    assert_eq!(f.channels, ChannelKeys::Split { tx: 11, rx: 12 });
    assert_eq!(f.channels.record(), "11/12");
    let a = f.allowed();
    assert!(a.multi_slot && a.gso_v4 && !a.gso_v6 && a.csum_v6);
}

#[test]
fn page_flipping_is_refused_with_a_clear_reason() {
    for keys in [
        &[("request-rx-copy", "0"), ("event-channel", "9")][..],
        &[("feature-rx-flip", "1"), ("event-channel", "9")][..],
    ] {
        let e = read(keys).unwrap_err();
        assert!(matches!(e, FeatureError::NoRxCopy), "{e}");
        assert!(e.to_string().contains("page flipping"), "{e}");
    }
}

#[test]
fn half_a_split_event_channel_is_refused() {
    let e = read(&[("request-rx-copy", "1"), ("event-channel-tx", "3")]).unwrap_err();
    assert!(matches!(e, FeatureError::HalfSplit), "{e}");
}

#[test]
fn a_broken_feature_value_names_its_key() {
    let e = read(&[
        ("request-rx-copy", "1"),
        ("event-channel", "9"),
        ("feature-no-csum-offload", "maybe"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("feature-no-csum-offload"), "{e}");
}

#[test]
fn netback_offers_split_channels_and_every_offload_it_takes() {
    let keys = backend_keys(Some(1));
    let get = |k: &str| {
        keys.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    };
    for k in [
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
        "feature-rx-copy",
        "feature-split-event-channels",
        "feature-dba-credits",
    ] {
        assert_eq!(get(k), Some("1"), "{k}");
    }
    assert_eq!(get("feature-rx-flip"), Some("0"));
    assert_eq!(get("feature-no-csum-offload"), None);
    assert_eq!(backend_keys(None).len() + 1, keys.len());
}
