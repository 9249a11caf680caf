//! The client side of the Prometheus text exposition format (version 0.0.4): the
//! samples of a scrape, with their labels. Comments (`# HELP`, `# TYPE`) are skipped and
//! timestamps ignored: `top` and `sla show` need values only.

use std::iter::Peekable;
use std::str::CharIndices;

/// One sample of a scraped exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A name without a value.
    #[error("no value")]
    NoValue,
    /// The name has characters other than `[A-Za-z0-9_:]`, or is empty.
    #[error("bad metric name")]
    BadName,
    /// `{` without `}`.
    #[error("unterminated labels")]
    UnterminatedLabels,
    /// `name=value` without quotes.
    #[error("label value not quoted")]
    LabelNotQuoted,
    /// An opening quote without its closing one.
    #[error("unterminated label value")]
    UnterminatedLabelValue,
    /// The value is not a float, `+Inf`, `-Inf` or `NaN`.
    #[error("value is not a number")]
    NotANumber,
}

/// A malformed exposition line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: Problem,
}

/// Parses the Prometheus text format (comments skipped; timestamps ignored).
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let sample = parse_line(l).map_err(|problem| ParseError {
            line: i + 1,
            problem,
        })?;
        out.push(sample);
    }
    Ok(out)
}

/// One sample line: `name[{labels}] value [timestamp]`.
fn parse_line(l: &str) -> Result<Sample, Problem> {
    let name_end = l.find(['{', ' ', '\t']).ok_or(Problem::NoValue)?;
    let name = &l[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(Problem::BadName);
    }
    let mut rest = &l[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let end = parse_labels(r, &mut labels)?;
        rest = &r[end + 1..];
    }
    let value = parse_value(rest.split_whitespace().next().ok_or(Problem::NoValue)?)?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` (after the `{`) into `labels`; returns the index of the `}`.
fn parse_labels(r: &str, labels: &mut Vec<(String, String)>) -> Result<usize, Problem> {
    let mut chars = r.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
            chars.next();
        }
        match chars.peek() {
            Some((j, '}')) => return Ok(*j),
            None => return Err(Problem::UnterminatedLabels),
            _ => {}
        }
        let mut key = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(Problem::LabelNotQuoted);
        }
        let val = parse_quoted(&mut chars)?;
        labels.push((key.trim().to_string(), val));
    }
}

/// The rest of a label value after its opening quote, unescaped (`\\`, `\"`, `\n`).
fn parse_quoted(chars: &mut Peekable<CharIndices<'_>>) -> Result<String, Problem> {
    let mut val = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Ok(val),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => val.push('\n'),
                Some(c) => val.push(c),
                None => return Err(Problem::UnterminatedLabelValue),
            },
            c => val.push(c),
        }
    }
    Err(Problem::UnterminatedLabelValue)
}

fn parse_value(text: &str) -> Result<f64, Problem> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t.parse().map_err(|_| Problem::NotANumber),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_escapes_and_rejects_garbage() {
        let s = parse_exposition("# c\nm{a=\"x\\\"y\\\\z\\n\",b=\"\"} 1.5 123\nn 2\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y\\z\n"));
        assert_eq!(s[0].label("b"), Some(""));
        assert_eq!(s[0].value, 1.5);
        assert_eq!(s[1].value, 2.0);
        for bad in [
            "m{a=\"x} 1",
            "m{a=x} 1",
            "m",
            "m abc",
            "m-x 1",
            "m{a=\"1\"",
            "{} 1",
        ] {
            assert!(parse_exposition(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let e = parse_exposition("a 1\n\n# x\nb{k=\"v\"} many\n").unwrap_err();
        assert_eq!(
            e,
            ParseError {
                line: 4,
                problem: Problem::NotANumber
            }
        );
        assert_eq!(e.to_string(), "line 4: value is not a number");
        for (bad, problem) in [
            ("m", Problem::NoValue),
            ("m{} ", Problem::NoValue),
            ("m-x 1", Problem::BadName),
            ("m{a=\"1\"", Problem::UnterminatedLabels),
            ("m{a=1} 2", Problem::LabelNotQuoted),
            ("m{a=\"1} 2", Problem::UnterminatedLabelValue),
        ] {
            assert_eq!(
                parse_exposition(bad).unwrap_err().problem,
                problem,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn special_values_and_timestamps() {
        let s = parse_exposition("a +Inf\nb -Inf 17\nc NaN\nd{x=\"1\",} -2.5e3\n").unwrap();
        assert_eq!(s[0].value, f64::INFINITY);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert!(s[2].value.is_nan());
        assert_eq!(s[3].value, -2500.0);
        assert_eq!(s[3].labels, [("x".to_string(), "1".to_string())]);
    }
}
