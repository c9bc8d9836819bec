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

/// The rule every service name follows, checked here and nowhere else. A name becomes a
/// path component (its cgroup directory, its notify socket, a services.d file), an MQTT
/// topic level, a D-Bus object path label and a command-line argument, so it must be
/// something each of those carries as itself:
///
/// - 1 to 64 characters: ASCII letters, digits and `. _ @ -`. No `/` (a path separator,
///   an MQTT level separator), no `+ #` (MQTT wildcards), no `$`, no NUL, no control
///   characters, no spaces;
/// - starting with a letter, a digit or `_`: not `.` (so never `.` or `..`, which name a
///   directory itself or its parent, nor a hidden file), not `-` (it would read as an
///   option to `ember ctl`), not `@`;
/// - not `cgroup.*`, `cpu.*`, `memory.*`, `pids.*`... : a cgroup's own files are named
///   so, and a service's cgroup directory sits beside them.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let shortened = ember_ipc::text::shortened(name);
    let shown = shortened.escape_debug();
    if name.is_empty() {
        return Err("a service name cannot be empty".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "invalid service name \"{shown}\": it is {} characters long; the longest is 64 (it becomes a socket path, whose length the kernel limits)",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        let why = match bad {
            '/' => "a name becomes a file name and an MQTT topic level, which '/' would split",
            '+' | '#' => "a name becomes an MQTT topic level, where it is a wildcard",
            c if c.is_control() => "a control character cannot be shown or stored safely",
            _ => "a name becomes a file name, an MQTT topic level and a D-Bus path",
        };
        return Err(format!(
            "invalid service name \"{shown}\": {:?} is not allowed ({why}); use letters, digits and . _ @ -",
            bad
        ));
    }
    if let Some(first) = name
        .chars()
        .next()
        .filter(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        let why = match first {
            '.' => "\".\" and \"..\" name a directory itself and its parent, and a leading dot hides a file",
            '-' => "it would read as an option on a command line",
            _ => "a name must start with a letter, a digit or _",
        };
        return Err(format!(
            "invalid service name \"{shown}\": it starts with {first:?} ({why}); start it with a letter, a digit or _"
        ));
    }
    if let Some((prefix, _)) = name.split_once('.') {
        if CGROUP_FILE_PREFIXES.contains(&prefix) {
            return Err(format!(
                "invalid service name \"{shown}\": a cgroup's own files are named {prefix}.*, and each service's cgroup directory sits beside them; choose a name that does not start with \"{prefix}.\""
            ));
        }
    }
    Ok(())
}

/// Checks the name of a template's instance (`42` of `worker@42`): the whole name is a
/// service name (see [`check_service_name`]), and the instance starts with a letter, a
/// digit or `_`, as a name does: `{instance}` goes into paths (the command, workdir,
/// output files), where `.` and `..` would name other directories (`/srv/{instance}` as
/// `/srv/..`), and a leading `-` would read as an option.
pub fn check_instance(template: &str, instance: &str) -> Result<(), String> {
    let full = format!("{template}{instance}");
    match instance.chars().next() {
        None => Err(format!("\"{}\" names no instance: write {template}NAME", full.escape_debug())),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => Err(format!(
            "invalid instance \"{}\" of {template}: it starts with {c:?}; an instance goes into paths ({{instance}}), so it starts with a letter, a digit or _",
            instance.escape_debug()
        )),
        Some(_) => check_service_name(&full),
    }
}

/// What the files of a cgroup2 directory start with: its core files and each controller's.
const CGROUP_FILE_PREFIXES: [&str; 10] = [
    "cgroup", "cpu", "cpuset", "io", "memory", "pids", "rdma", "hugetlb", "misc", "irq",
];

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

    #[test]
    fn names() {
        for good in [
            "web-1.x@y_z",
            "_private",
            "9lives",
            "a",
            "memoryhog",
            "web.service",
            &"x".repeat(64),
        ] {
            assert!(check_service_name(good).is_ok(), "{good}");
        }
        let refused = |name: &str| check_service_name(name).unwrap_err();
        assert!(refused("").contains("empty"));
        assert!(refused("a/b").contains("'/'"));
        assert!(refused(&"x".repeat(65)).contains("64"));
        // Path components that are not a service's own.
        assert!(refused(".").contains("starts with '.'"));
        assert!(refused("..").contains("starts with '.'"));
        assert!(refused(".hidden").contains("starts with '.'"));
        assert!(refused("-rf").contains("option"));
        assert!(refused("@x").contains("start it with"));
        // MQTT wildcards, controls, NUL, spaces, non-ASCII.
        for bad in [
            "a+b", "a#", "$SYS", "a\0b", "a\nb", "a\u{1b}b", "a b", "wéb", "a\\b",
        ] {
            assert!(refused(bad).contains("is not allowed"), "{bad:?}");
        }
        // A control character is shown escaped, so the message stays one line.
        assert!(!refused("a\nb").contains('\n'));
        // A cgroup's own files.
        for bad in [
            "cgroup.procs",
            "cgroup.kill",
            "memory.max",
            "cpu.weight",
            "pids.max",
            "io.x",
        ] {
            assert!(refused(bad).contains("cgroup's own files"), "{bad}");
        }
    }
}
