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
        parsed(value, issues, parse_duration)
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let duration = humantime::parse_duration(trimmed).map_err(|e| {
        format!("invalid duration \"{text}\" ({e}); write e.g. \"250ms\", \"5s\", \"2m\"")
    })?;
    // Deadlines are computed by adding durations to clocks: keep them far from overflow.
    if duration > MAX_DURATION {
        return Err(format!(
            "duration \"{text}\" is too long; the longest ember takes is 1 year (\"365d\")"
        ));
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

/// Service names appear in topics, object paths and file names: keep them plain.
pub fn check_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "invalid service name \"{name}\": it must be 1 to 64 characters long"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        return Err(format!(
            "invalid service name \"{name}\": '{bad}' is not allowed; use letters, digits and . _ @ -"
        ));
    }
    Ok(())
}

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
        assert!(parse_duration("500000000000y")
            .unwrap_err()
            .contains("too long"));
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

    #[test]
    fn names() {
        assert!(check_service_name("web-1.x@y_z").is_ok());
        assert!(check_service_name("").is_err());
        assert!(check_service_name("a/b").unwrap_err().contains("'/'"));
        assert!(check_service_name(&"x".repeat(65)).is_err());
    }
}
