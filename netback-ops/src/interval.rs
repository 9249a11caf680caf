//! Intervals as operators type them: `1s`, `500ms`, `0.5`, `2m`.

use std::time::Duration;

/// Shortest interval accepted, seconds.
const MIN_SECS: f64 = 0.05;
/// Longest interval accepted, seconds.
const MAX_SECS: f64 = 3600.0;

/// An interval that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    /// Not a number with an optional unit.
    #[error("interval {0:?}: expected e.g. 1s, 500ms")]
    Syntax(String),
    /// Outside [50 ms, 1 h].
    #[error("interval {0:?}: must be between 50ms and 1 hour")]
    Range(String),
}

/// Parses an interval: a positive number with an optional unit `ms`, `s` (default) or
/// `m` (`1s`, `500ms`, `0.5`), between 50 ms and 1 hour.
pub fn parse_interval(text: &str) -> Result<Duration, IntervalError> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| IntervalError::Syntax(text.to_string()))?;
    let secs = v * mult;
    if !secs.is_finite() || !(MIN_SECS..=MAX_SECS).contains(&secs) {
        return Err(IntervalError::Range(text.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval(" 2m ").unwrap(), Duration::from_secs(120));
        for bad in ["", "x", "-1s", "0", "10ms", "2h", "NaN"] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_interval("fast"),
            Err(IntervalError::Syntax("fast".into()))
        );
        assert_eq!(
            parse_interval("2h").unwrap_err().to_string(),
            "interval \"2h\": expected e.g. 1s, 500ms"
        );
        assert_eq!(
            parse_interval("10ms"),
            Err(IntervalError::Range("10ms".into()))
        );
    }
}
