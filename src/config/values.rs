//! Value types the TOML files spell as strings: durations, signals, service names.

use super::walk::{FromToml, Issue};
use nix::sys::signal::Signal;
use std::str::FromStr;
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

/// A string read with `parse`; what `parse` objects to is reported at the string.
fn parsed<T>(
    value: Spanned<DeValue<'_>>,
    issues: &mut Vec<Issue>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    let offset = value.span().start;
    let text = String::from_toml(value, issues)?;
    parse(&text)
        .map_err(|message| issues.push(Issue { offset, message }))
        .ok()
}

/// A log filter: a default level and `target=level` directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(pub String);

impl FromToml for LogLevel {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        parsed(value, issues, parse_log_level)
    }
}

pub fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    let advice = "write a level (off, error, warn, info, debug, trace) and target=level directives, e.g. \"info,ember::service=warn\"";
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // tracing would read a bare word as a target at every level: a typo for a
        // level ("loud", "inf") must not turn the log up instead of being reported.
        let level = directive
            .rsplit_once('=')
            .map(|(_, l)| l)
            .unwrap_or(directive);
        if LevelFilter::from_str(level).is_err() {
            return Err(format!(
                "invalid log level \"{text}\": \"{level}\" is not a level; {advice}"
            ));
        }
    }
    tracing_subscriber::filter::Targets::from_str(text)
        .map(|_| LogLevel(text.to_owned()))
        .map_err(|e| format!("invalid log level \"{text}\" ({e}); {advice}"))
}

/// A duration written as "250ms", "5s", "2m", "1h 30m".
impl FromToml for Duration {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        // A bare number has no unit (other tools take seconds): "expected a string" alone
        // left the reader to guess that the unit is what is missing.
        let advice = match value.get_ref() {
            DeValue::Integer(i) => {
                let n = super::walk::integer(i)
                    .map_or_else(|| i.as_str().to_owned(), |n| n.to_string());
                Some(format!("integer `{n}`, expected a duration: a string with its unit, e.g. \"{n}s\" (or \"{n}ms\", \"{n}m\")"))
            }
            DeValue::Float(f) => {
                let ms = f
                    .as_str()
                    .parse::<f64>()
                    .map(|f| f * 1000.0)
                    .unwrap_or(-1.0);
                let example = if ms >= 1.0 && ms.fract() == 0.0 && ms < 1e12 {
                    format!("\"{ms}ms\" for {f} seconds")
                } else {
                    "\"250ms\"".to_owned()
                };
                Some(format!("floating point `{f}`, expected a duration: a string with its unit, in whole numbers, e.g. {example}"))
            }
            _ => None,
        };
        if let Some(advice) = advice {
            issues.push(Issue {
                offset: value.span().start,
                message: format!("invalid type: {advice}"),
            });
            return None;
        }
        parsed(value, issues, parse_duration)
    }
}

/// The units a duration is written in, and what each is worth in milliseconds. Lower
/// case only: "1M" is a MiB in a size of the same file, and must not be read as a month
/// (humantime's "M"); nor are years, weeks or sub-millisecond units taken, which no
/// timeout of ember's needs and which a slip could write.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// What every invalid duration's message ends with.
const DURATION_ADVICE: &str = "write e.g. \"250ms\", \"5s\", \"2m\"";

/// Reads a duration: one or more `NUMBER UNIT` pieces ("1h 30m"), units from
/// [`DURATION_UNITS`], or "0".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let shown = text.escape_debug();
    let invalid = |why: String| format!("invalid duration \"{shown}\" ({why}); {DURATION_ADVICE}");
    let too_long = || {
        format!("duration \"{shown}\" is too long; the longest ember takes is 365 days (\"365d\")")
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let units = "the units are ms, s, m (minutes), h and d (days)";
    let mut rest = trimmed;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let at = trimmed.len() - rest.len();
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid(format!("expected number at {at}")));
        }
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let Some(&(_, ms)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            let unit = unit.escape_debug();
            return Err(invalid(match unit.to_string().as_str() {
                "" => format!("a number without its unit; {units}"),
                "M" => format!("\"M\" is no unit of time: a size's \"1M\" is 1 MiB, a minute is \"1m\", a month \"30d\"; {units}"),
                u if DURATION_UNITS.iter().any(|(d, _)| d.eq_ignore_ascii_case(u)) => {
                    format!("unit \"{u}\" is written in lower case; {units}")
                }
                u => format!("unknown unit \"{u}\"; {units}"),
            }));
        };
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(ms))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(too_long)?;
        rest = after.trim_start();
    }
    let duration = Duration::from_millis(total);
    // Deadlines are computed by adding durations to clocks: keep them far from overflow.
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// The longest duration a configuration may give.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A signal written as "SIGTERM", "TERM" or "15".
impl FromToml for Signal {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        parsed(value, issues, parse_signal)
    }
}

/// What the OS is given as a C string (a path, a name) cannot hold a NUL: the problem
/// with `text` when it has one, said as `{what} "..." contains a NUL byte, which no
/// {holds} can hold`.
pub fn nul_in(what: &str, text: &std::ffi::OsStr, holds: &str) -> Option<String> {
    text.as_encoded_bytes().contains(&0).then(|| {
        format!(
            "{what} \"{}\" contains a NUL byte, which no {holds} can hold",
            text.to_string_lossy().escape_debug()
        )
    })
}

pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let parsed = if let Ok(n) = upper.parse::<i32>() {
        Signal::try_from(n).ok()
    } else if upper.starts_with("SIG") {
        Signal::from_str(&upper).ok()
    } else {
        Signal::from_str(&format!("SIG{upper}")).ok()
    };
    parsed.ok_or_else(|| {
        format!("unknown signal \"{text}\"; write e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\"")
    })
}

// The rule every service name follows is ember-ipc's (`ember_ipc::names`): ember checks
// it in the configuration, and clients (`ember fleet`) before they send.
pub use ember_ipc::names::{check_instance, check_service_name};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_log_level("info,ember::service=warn").is_ok());
        assert!(parse_log_level("loud")
            .unwrap_err()
            .contains("invalid log level \"loud\""));
        assert!(parse_duration("500000000000000000000d")
            .unwrap_err()
            .contains("too long"));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("invalid duration \"soon\""));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("int"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGNOPE")
            .unwrap_err()
            .contains("unknown signal"));
    }
}
