//! Offload negotiation between the two ends of a vif (`xen/include/public/io/netif.h`,
//! the feature keys): what each side offers in its xenstore directory ([`Offer`]), what
//! may therefore be sent toward it ([`Allowed`]), and the per-frame check a sender makes
//! before a frame goes on the ring ([`Allowed::conform`]).
//!
//! Both drivers use the same rules; each direction is negotiated on its own: netback
//! sends to the frontend what the frontend's keys allow, netfront sends to the backend
//! what the backend's keys allow.
//!
//! | key | default when absent | allows toward the side that wrote it |
//! |---|---|---|
//! | `feature-sg` | 0 | frames of more than one slot |
//! | `feature-no-csum-offload` | 0 (offload on) | IPv4 TCP/UDP frames with a partial checksum (`csum_blank`), `data_validated` |
//! | `feature-ipv6-csum-offload` | 0 (off) | the same for IPv6 |
//! | `feature-gso-tcpv4` | 0 | TCPv4 GSO frames (also needs SG and IPv4 checksum offload) |
//! | `feature-gso-tcpv6` | 0 | TCPv6 GSO frames (also needs SG and IPv6 checksum offload) |
//!
//! A frame the receiver did not agree to is made conformant when software can do it (a
//! partial checksum is completed, an unagreed `data_validated` is cleared) and refused
//! otherwise (a GSO frame of a type it did not agree to, or a multi-slot frame without
//! SG): the sender drops it and counts it.

use crate::csum::{self, IpVersion};
use crate::port::{FrameMeta, GsoKind};

/// One page: the most one ring slot carries.
pub const SLOT_BYTES: usize = 4096;

/// The netif feature keys one side writes in its own xenstore directory, as read by its
/// peer (defaults of `netif.h` for absent keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// `feature-sg`: takes frames spread over several slots.
    pub sg: bool,
    /// Not `feature-no-csum-offload`: takes IPv4 TCP/UDP frames with a partial checksum.
    pub ipv4_csum: bool,
    /// `feature-ipv6-csum-offload`: takes IPv6 TCP/UDP frames with a partial checksum.
    pub ipv6_csum: bool,
    /// `feature-gso-tcpv4`: takes TCPv4 GSO frames.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`: takes TCPv6 GSO frames.
    pub gso_tcpv6: bool,
}

/// A feature key that does not hold `0` or `1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} is not 0 or 1")]
pub struct BadFeature {
    /// The key.
    pub key: &'static str,
}

impl Offer {
    /// What a peer that writes no optional feature key offers: `netif.h`'s defaults
    /// (single-slot frames, IPv4 checksum offload, nothing else).
    pub const DEFAULTS: Offer = Offer {
        sg: false,
        ipv4_csum: true,
        ipv6_csum: false,
        gso_tcpv4: false,
        gso_tcpv6: false,
    };

    /// Everything this project's drivers can take.
    pub const ALL: Offer = Offer {
        sg: true,
        ipv4_csum: true,
        ipv6_csum: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
    };

    /// Nothing optional at all: single-slot frames with complete checksums.
    pub const NOTHING: Offer = Offer {
        sg: false,
        ipv4_csum: false,
        ipv6_csum: false,
        gso_tcpv4: false,
        gso_tcpv6: false,
    };

    /// Parses a peer's keys: `read(key)` gives the key's value as the peer wrote it
    /// (`None` when absent). Each key is read once. A value other than `0`/`1` (after
    /// surrounding whitespace) is refused: the peer's directory is broken.
    pub fn parse(
        mut read: impl FnMut(&'static str) -> Option<Vec<u8>>,
    ) -> Result<Offer, BadFeature> {
        let mut flag = |key: &'static str, default: bool| -> Result<bool, BadFeature> {
            match read(key) {
                None => Ok(default),
                Some(v) => match v.trim_ascii() {
                    b"0" => Ok(false),
                    b"1" => Ok(true),
                    _ => Err(BadFeature { key }),
                },
            }
        };
        let d = Offer::DEFAULTS;
        Ok(Offer {
            sg: flag("feature-sg", d.sg)?,
            ipv4_csum: !flag("feature-no-csum-offload", !d.ipv4_csum)?,
            ipv6_csum: flag("feature-ipv6-csum-offload", d.ipv6_csum)?,
            gso_tcpv4: flag("feature-gso-tcpv4", d.gso_tcpv4)?,
            gso_tcpv6: flag("feature-gso-tcpv6", d.gso_tcpv6)?,
        })
    }

    /// The keys and values that express this offer, for the offering side to write.
    pub fn keys(&self) -> [(&'static str, &'static str); 5] {
        let b = |on: bool| if on { "1" } else { "0" };
        [
            ("feature-sg", b(self.sg)),
            ("feature-no-csum-offload", b(!self.ipv4_csum)),
            ("feature-ipv6-csum-offload", b(self.ipv6_csum)),
            ("feature-gso-tcpv4", b(self.gso_tcpv4)),
            ("feature-gso-tcpv6", b(self.gso_tcpv6)),
        ]
    }

    /// The common part of two offers (e.g. what a peer offers and what the sender's own
    /// port can produce).
    pub fn and(self, o: Offer) -> Offer {
        Offer {
            sg: self.sg && o.sg,
            ipv4_csum: self.ipv4_csum && o.ipv4_csum,
            ipv6_csum: self.ipv6_csum && o.ipv6_csum,
            gso_tcpv4: self.gso_tcpv4 && o.gso_tcpv4,
            gso_tcpv6: self.gso_tcpv6 && o.gso_tcpv6,
        }
    }
}

/// What may be sent toward a receiver, given its [`Offer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// Frames of more than one slot ([`SLOT_BYTES`]).
    pub multi_slot: bool,
    /// IPv4 frames with a partial checksum, or marked validated.
    pub csum_v4: bool,
    /// IPv6 frames with a partial checksum, or marked validated.
    pub csum_v6: bool,
    /// TCPv4 GSO frames.
    pub gso_v4: bool,
    /// TCPv6 GSO frames.
    pub gso_v6: bool,
}

/// Why a frame cannot be sent to a receiver as it is, and software cannot fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A GSO frame of a type the receiver did not agree to.
    #[error("GSO type {0:?} not agreed")]
    Gso(GsoKind),
    /// A frame of more than one slot to a receiver without `feature-sg`.
    #[error("a {0}-byte frame needs feature-sg")]
    MultiSlot(usize),
    /// A partial-checksum frame whose checksum could not be completed (headers that do
    /// not parse).
    #[error("partial checksum cannot be completed: {0}")]
    Checksum(csum::ParseError),
}

/// What [`Allowed::conform`] did to a frame it let through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conformed {
    /// The metadata to send the frame with.
    pub meta: FrameMeta,
    /// The partial checksum was completed in software.
    pub csum_filled: bool,
}

impl Allowed {
    /// What may be sent toward a receiver that offers `o`. GSO needs SG (a GSO frame
    /// spans several slots) and checksum offload for its IP version (a GSO frame is
    /// always partial-checksum), as Linux's feature dependencies have it.
    pub fn toward(o: &Offer) -> Allowed {
        Allowed {
            multi_slot: o.sg,
            csum_v4: o.ipv4_csum,
            csum_v6: o.ipv6_csum,
            gso_v4: o.gso_tcpv4 && o.sg && o.ipv4_csum,
            gso_v6: o.gso_tcpv6 && o.sg && o.ipv6_csum,
        }
    }

    /// Whether GSO frames of `kind` may be sent.
    pub fn gso(&self, kind: GsoKind) -> bool {
        match kind {
            GsoKind::TcpV4 => self.gso_v4,
            GsoKind::TcpV6 => self.gso_v6,
        }
    }

    /// Whether any checksum offload may be used (a TAP's `TUN_F_CSUM`).
    pub fn any_csum(&self) -> bool {
        self.csum_v4 || self.csum_v6
    }

    /// Checks one frame before it is sent, and makes it conformant where software can:
    /// a partial checksum the receiver did not agree to is completed in `frame`, and the
    /// checksum flags are cleared; a `data_validated` mark it did not agree to is
    /// cleared. A GSO frame of a type not agreed, or a frame of more than one slot without
    /// SG, is refused.
    pub fn conform(&self, frame: &mut [u8], meta: &FrameMeta) -> Result<Conformed, Refused> {
        let c = self.check(frame, meta)?;
        if c.csum_filled {
            csum::fill_partial_checksum(frame).map_err(Refused::Checksum)?;
        }
        Ok(c)
    }

    /// [`Allowed::conform`] without touching the frame: what to send it with, and
    /// whether its partial checksum must be completed first ([`Conformed::csum_filled`];
    /// [`csum::fill_partial_checksum`] on a copy). For senders that hold the frame
    /// read-only and copy it anyway.
    pub fn check(&self, frame: &[u8], meta: &FrameMeta) -> Result<Conformed, Refused> {
        if let Some(g) = meta.gso {
            if !self.gso(g.kind) {
                return Err(Refused::Gso(g.kind));
            }
        }
        if frame.len() > SLOT_BYTES && !self.multi_slot {
            return Err(Refused::MultiSlot(frame.len()));
        }
        let mut out = Conformed {
            meta: *meta,
            csum_filled: false,
        };
        if !(meta.csum_blank || meta.data_validated)
            || meta.gso.is_some()
            || (self.csum_v4 && self.csum_v6)
        {
            // Nothing to check, a GSO frame already agreed with its checksum offload, or
            // a receiver that takes both IP versions' checksum states (the common case:
            // no header parse per frame).
            return Ok(out);
        }
        let agreed = match csum::parse_l4(frame) {
            Ok(i) => match i.ip {
                IpVersion::V4 => self.csum_v4,
                IpVersion::V6 => self.csum_v6,
            },
            // Headers that do not parse: whatever they are, a receiver that takes both
            // IP versions' offloads takes them; any other cannot be helped.
            Err(e) if meta.csum_blank && !(self.csum_v4 && self.csum_v6) => {
                return Err(Refused::Checksum(e))
            }
            Err(_) => true,
        };
        if agreed {
            return Ok(out);
        }
        out.csum_filled = meta.csum_blank;
        out.meta.csum_blank = false;
        out.meta.data_validated = false;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
