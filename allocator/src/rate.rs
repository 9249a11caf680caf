//! Rates and their textual form.
//!
//! Every bandwidth in this crate is an integer number of **bits per second of L2 frame
//! bytes**: the Ethernet frame from the first byte of the destination MAC address to the
//! last byte of the payload, without preamble, start-of-frame delimiter, inter-frame gap
//! or FCS (the convention of `docs/protocol.md` and `docs/allocator.md`). Packet rates are
//! packets (frames) per second. Integers keep the allocation exact and deterministic.
//!
//! Text form (SLA files and xenstore values): a decimal integer, optionally followed by
//! one SI multiplier `k` (10³), `M` (10⁶), `G` (10⁹) or `T` (10¹²), e.g. `150M`,
//! `20k`, `1G`, `1500000`. A fractional mantissa is allowed when the result is an
//! integer (`1.5G`). No sign, no spaces inside, no binary (`Ki`) multipliers: a rate is a
//! count per second, not a memory size.

use std::fmt;

/// Largest bits/s value accepted anywhere (10 Tb/s). Anything above is treated as a typo
/// (an extra multiplier or a bytes/bits mix-up), not as a capacity.
pub const MAX_BPS: u64 = 10_000_000_000_000;

/// Largest packets/s value accepted anywhere (10 Gp/s, ~600 times 100GbE line rate of
/// minimum-size frames).
pub const MAX_PPS: u64 = 10_000_000_000;

/// Why a rate's text could not be read. The caller adds which vif and field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateParseError {
    /// Empty string.
    #[error("empty value")]
    Empty,
    /// A leading minus sign.
    #[error("`{0}` is negative")]
    Negative(String),
    /// Not of the form `<digits>[.<digits>][k|M|G|T]`.
    #[error("`{0}` is not a number with an optional k/M/G/T multiplier")]
    Malformed(String),
    /// The value has a fractional part after applying the multiplier.
    #[error("`{0}` is not a whole number")]
    Fractional(String),
    /// Above the field's sanity bound.
    #[error("`{text}` is above the largest accepted value {limit}")]
    TooLarge {
        /// The text as given.
        text: String,
        /// The bound.
        limit: u64,
    },
}

/// Parses a rate in the text form described in the module documentation and checks it
/// against `limit` (use [`MAX_BPS`] or [`MAX_PPS`]).
pub fn parse_rate(text: &str, limit: u64) -> Result<u64, RateParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(RateParseError::Empty);
    }
    if t.starts_with('-') {
        return Err(RateParseError::Negative(t.to_string()));
    }
    let (mantissa, mult): (&str, u64) = match t.as_bytes()[t.len() - 1] {
        b'k' => (&t[..t.len() - 1], 1_000),
        b'M' => (&t[..t.len() - 1], 1_000_000),
        b'G' => (&t[..t.len() - 1], 1_000_000_000),
        b'T' => (&t[..t.len() - 1], 1_000_000_000_000),
        _ => (t, 1),
    };
    let malformed = || RateParseError::Malformed(t.to_string());
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac_part.is_empty())
    {
        return Err(malformed());
    }
    let too_large = || RateParseError::TooLarge {
        text: t.to_string(),
        limit,
    };
    // Integer part: reject absurd lengths before parsing so u128 cannot overflow.
    if int_part.len() > 30 || frac_part.len() > 30 {
        return Err(too_large());
    }
    let int: u128 = int_part.parse().map_err(|_| malformed())?;
    let mut value = int.checked_mul(mult as u128).ok_or_else(too_large)?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part.parse().map_err(|_| malformed())?;
        let scale = 10u128.pow(frac_part.len() as u32);
        let scaled = frac * mult as u128;
        if scaled % scale != 0 {
            return Err(RateParseError::Fractional(t.to_string()));
        }
        value += scaled / scale;
    }
    if value > limit as u128 {
        return Err(too_large());
    }
    Ok(value as u64)
}

/// Displays a bits/s or packets/s count with the largest exact SI multiplier
/// (`150000000` → `150M`), the inverse of [`parse_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateText(pub u64);

impl fmt::Display for RateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (m, s) in [
            (1_000_000_000_000u64, "T"),
            (1_000_000_000, "G"),
            (1_000_000, "M"),
            (1_000, "k"),
        ] {
            if v != 0 && v % m == 0 {
                return write!(f, "{}{}", v / m, s);
            }
        }
        write!(f, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed() {
        assert_eq!(parse_rate("0", MAX_BPS), Ok(0));
        assert_eq!(parse_rate("1500000", MAX_BPS), Ok(1_500_000));
        assert_eq!(parse_rate("150M", MAX_BPS), Ok(150_000_000));
        assert_eq!(parse_rate("20k", MAX_PPS), Ok(20_000));
        assert_eq!(parse_rate("1G", MAX_BPS), Ok(1_000_000_000));
        assert_eq!(parse_rate("1.5G", MAX_BPS), Ok(1_500_000_000));
        assert_eq!(parse_rate(" 10T ", MAX_BPS), Ok(10_000_000_000_000));
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(parse_rate("", MAX_BPS), Err(RateParseError::Empty));
        assert!(matches!(
            parse_rate("-5", MAX_BPS),
            Err(RateParseError::Negative(_))
        ));
        for bad in [
            "M", "1.", ".5", "1e9", "1 G", "10Mbit", "0x10", "1Ki", "1,000", "+3",
        ] {
            assert!(
                matches!(parse_rate(bad, MAX_BPS), Err(RateParseError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_rate("1.0005k", MAX_BPS),
            Err(RateParseError::Fractional(_))
        ));
        assert!(matches!(
            parse_rate("11T", MAX_BPS),
            Err(RateParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_rate("99999999999999999999999999999999999999999", MAX_BPS),
            Err(RateParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        for v in [
            0u64,
            1,
            999,
            1000,
            150_000_000,
            20_000,
            1_234_567,
            10_000_000_000_000,
        ] {
            assert_eq!(parse_rate(&RateText(v).to_string(), MAX_BPS), Ok(v));
        }
        assert_eq!(RateText(150_000_000).to_string(), "150M");
    }
}
