//! Resource limits of a service: `limits = { nofile = 1024, ... }` (setrlimit in the
//! child), `memory_max`, `cpu_weight`, `pids_max` (files of its cgroup) and
//! `oom_score_adjust` (/proc/self/oom_score_adj in the child).

use super::walk::{self, FromToml, Issue, Table};
pub use ember_engine::spec::{Amount, LimitValues, Limits, Rlimit};
use nix::sys::resource::Resource;
use toml::de::DeValue;
use toml::Spanned;

/// An integer, or a string: "64M", "1G", "512K", "4096", "infinity". Every key that takes
/// a size (`max_size`, `memory_max`, `pids_max`, each of `limits`) reads it here, with
/// [`parse_amount`].
impl FromToml for Amount {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        match value.get_ref() {
            DeValue::Integer(_) => u64::from_toml(value, issues).map(Amount::Value),
            DeValue::String(text) => parse_amount(text)
                .map_err(|message| issues.push(Issue { offset, message }))
                .ok(),
            other => walk::wrong_type(
                offset,
                other,
                "a number, a size such as \"64M\", or \"infinity\"",
                issues,
            ),
        }
    }
}

/// The units a size is written in, and the power of two each is worth: powers of 1024,
/// as systemd reads them, and in upper case only. A lower-case "1m" is a minute in a
/// duration of the same file (and "m" a thousandth, "k" a thousand elsewhere): taken as
/// a MiB, a slip would pass unseen. "MB" and "MiB" are refused too, with the unit to
/// write: one spelling, and no doubt whether "MB" is 1000 or 1024 based.
const SIZE_UNITS: [(char, u32); 4] = [('K', 10), ('M', 20), ('G', 30), ('T', 40)];

/// Reads an amount: a number of bytes (or of files, processes...), a size with a unit
/// from [`SIZE_UNITS`] ("64M", "8 K"), or "infinity" (also "unlimited", "max").
pub fn parse_amount(text: &str) -> Result<Amount, String> {
    let shown = text.escape_debug();
    let advice = "write a number, a size such as \"512K\", \"64M\", \"1G\", or \"infinity\"";
    let units = "the units are K, M, G and T, powers of 1024";
    let trimmed = text.trim();
    if matches!(trimmed, "infinity" | "unlimited" | "max") {
        return Ok(Amount::Infinity);
    }
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid amount \"{shown}\"; {advice}"))?;
    let unit = unit.trim_start();
    let mut chars = unit.chars();
    let letter = chars.next();
    let rest = chars.as_str();
    let shift = match letter {
        None => 0,
        Some(letter) => match SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == letter.to_ascii_uppercase())
        {
            Some(&(u, shift)) if u == letter && rest.is_empty() => shift,
            // A unit of ours in another spelling: "m", "k", "MB", "MiB", "kb".
            Some(&(u, _)) if ["", "b", "ib"].iter().any(|r| rest.eq_ignore_ascii_case(r)) => {
                return Err(format!(
                    "invalid size \"{shown}\" (unit \"{}\" is written \"{u}\"; {units}); write \"{number}{u}\" for {number} {u}iB",
                    unit.escape_debug()
                ));
            }
            _ => {
                return Err(format!(
                    "invalid size \"{shown}\" (unknown unit \"{}\"; {units}); {advice}",
                    unit.escape_debug()
                ))
            }
        },
    };
    number
        .checked_mul(1u64 << shift)
        .map(Amount::Value)
        .ok_or_else(|| format!("amount \"{shown}\" is too large; {advice}"))
}

/// The setrlimit resources a service may set, by the names ulimit and systemd's
/// Limit*= use (nofile for LimitNOFILE=).
const RESOURCES: &[(&str, Resource)] = &[
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("core", Resource::RLIMIT_CORE),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("as", Resource::RLIMIT_AS),
    ("data", Resource::RLIMIT_DATA),
    ("stack", Resource::RLIMIT_STACK),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("cpu", Resource::RLIMIT_CPU),
    ("locks", Resource::RLIMIT_LOCKS),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("rtprio", Resource::RLIMIT_RTPRIO),
];

/// `limits = { ... }` as written: each resource's amount, in the order of [`RESOURCES`].
#[derive(Debug, Default)]
pub struct RawRlimits(Vec<Rlimit>);

impl FromToml for RawRlimits {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let expected = "an inline table of resources, such as { nofile = 1024, core = 0 }";
        walk::table(value, expected, issues, |t: &mut Table<'_>| {
            RawRlimits(
                RESOURCES
                    .iter()
                    .filter_map(|&(name, resource)| {
                        t.take::<Amount>(name).map(|amount| Rlimit {
                            name,
                            resource,
                            amount,
                        })
                    })
                    .collect(),
            )
        })
    }
}

/// The limit keys of one service, as written, with where each value is.
#[derive(Debug, Default)]
pub struct RawLimits {
    rlimits: Option<RawRlimits>,
    memory_max: Option<Spanned<Amount>>,
    cpu_weight: Option<Spanned<u32>>,
    pids_max: Option<Spanned<Amount>>,
    oom_score_adjust: Option<Spanned<i32>>,
}

impl RawLimits {
    pub fn take_from(t: &mut Table<'_>) -> RawLimits {
        RawLimits {
            rlimits: t.take("limits"),
            memory_max: t.take("memory_max"),
            cpu_weight: t.take("cpu_weight"),
            pids_max: t.take("pids_max"),
            oom_score_adjust: t.take("oom_score_adjust"),
        }
    }

    /// Checks the ranges; each value out of range is an (offset, message).
    pub fn check(self, name: &str) -> Result<Limits, Vec<(usize, String)>> {
        let mut errors = Vec::new();
        let cpu_weight = self.cpu_weight.and_then(|w| {
            let (offset, weight) = (w.span().start, w.into_inner());
            if (1..=10_000).contains(&weight) {
                Some(weight)
            } else {
                errors.push((offset, format!("service \"{name}\": cpu_weight {weight} is out of range; give 1 to 10000 (100 is the default)")));
                None
            }
        });
        let oom_score_adjust = self.oom_score_adjust.and_then(|a| {
            let (offset, adjust) = (a.span().start, a.into_inner());
            if (-1000..=1000).contains(&adjust) {
                Some(adjust)
            } else {
                errors.push((offset, format!("service \"{name}\": oom_score_adjust {adjust} is out of range; give -1000 (never killed) to 1000 (killed first)")));
                None
            }
        });
        // 0 is what some tools read as "no limit"; the kernel reads it as none at all, as
        // systemd refuses it in MemoryMax= and TasksMax=.
        let mut not_zero = |amount: Option<Spanned<Amount>>, key: &str, effect: &str| {
            let (offset, amount) = amount.map(|a| (a.span().start, a.into_inner()))?;
            if amount == Amount::Value(0) {
                errors.push((
                    offset,
                    format!(
                        "service \"{name}\": {key} 0 {effect}; write \"infinity\" for no limit"
                    ),
                ));
                return None;
            }
            Some(amount)
        };
        let memory_max = not_zero(self.memory_max, "memory_max", "would OOM-kill it at once");
        let pids_max = not_zero(self.pids_max, "pids_max", "allows it no process at all");
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Limits::from(LimitValues {
            rlimits: self.rlimits.map(|r| r.0).unwrap_or_default(),
            memory_max,
            cpu_weight,
            pids_max,
            oom_score_adjust,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("64M"), Ok(Amount::Value(64 << 20)));
        assert_eq!(parse_amount("512K"), Ok(Amount::Value(512 << 10)));
        assert_eq!(parse_amount("8 M"), Ok(Amount::Value(8 << 20)));
        assert_eq!(parse_amount("2T"), Ok(Amount::Value(2 << 40)));
        // Lower case, and other spellings of the units, are refused with the one to write.
        for (text, write) in [
            ("512k", "\"512K\" for 512 KiB"),
            ("1m", "\"1M\" for 1 MiB"),
            ("1g", "\"1G\" for 1 GiB"),
            ("1t", "\"1T\" for 1 TiB"),
            ("64MB", "\"64M\" for 64 MiB"),
            ("64MiB", "\"64M\" for 64 MiB"),
            ("64 kib", "\"64K\" for 64 KiB"),
        ] {
            let message = parse_amount(text).unwrap_err();
            assert!(
                message.starts_with(&format!("invalid size \"{text}\" (unit")),
                "{message}"
            );
            assert!(message.ends_with(&format!("; write {write}")), "{message}");
        }
        assert_eq!(parse_amount("1G"), Ok(Amount::Value(1 << 30)));
        assert_eq!(parse_amount("4096"), Ok(Amount::Value(4096)));
        assert_eq!(parse_amount("infinity"), Ok(Amount::Infinity));
        assert_eq!(parse_amount("unlimited"), Ok(Amount::Infinity));
        assert!(parse_amount("64Q")
            .unwrap_err()
            .contains("unknown unit \"Q\""));
        assert!(parse_amount("64 PB")
            .unwrap_err()
            .contains("unknown unit \"PB\""));
        assert!(parse_amount("lots").unwrap_err().contains("invalid amount"));
        assert!(parse_amount("").unwrap_err().contains("invalid amount"));
        assert!(parse_amount("99999999999T")
            .unwrap_err()
            .contains("too large"));
        // A multi-byte last character is not a unit, and must not split a char.
        assert!(parse_amount("1µ").is_err());
        assert_eq!(Amount::Infinity.cgroup_text(), "max");
        assert_eq!(Amount::Value(7).cgroup_text(), "7");
        assert_eq!(Amount::Value(64 << 20).human(), "64M");
        assert_eq!(Amount::Value(1536).human(), "1536");
        assert_eq!(Amount::Value(3 << 30).human(), "3G");
    }
}
