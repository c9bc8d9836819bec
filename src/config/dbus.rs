//! `[dbus]`: which bus to serve `io.ember.Init1` on and who may change things over it.
//! No table, no D-Bus.

use super::walk::Table;
use super::{Problem, Severity, Source};
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbusConfig {
    pub bus: Bus,
    /// Members of this group may call the mutating methods, besides root.
    pub control_group: String,
    /// The user the ember-dbus adapter runs as (default "ember-dbus"; without such an
    /// account, a uid of ember's: see `crate::adapters`).
    pub user: String,
}

/// Where the bus is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    System,
    Session,
    /// A D-Bus address, e.g. "unix:path=/run/dbus/system_bus_socket".
    Address(String),
}

/// `system`, `session`, or an address with its transport (`unix:`, `tcp:`...).
pub fn parse_bus(text: &str) -> Result<Bus, String> {
    match text {
        "system" => Ok(Bus::System),
        "session" => Ok(Bus::Session),
        a if a
            .split_once(':')
            .is_some_and(|(t, rest)| !t.is_empty() && rest.contains('=')) =>
        {
            Ok(Bus::Address(a.to_owned()))
        }
        other => Err(format!(
            "bus \"{other}\" must be \"system\", \"session\" or an address such as \"unix:path=/run/dbus/system_bus_socket\""
        )),
    }
}

/// The keys as written.
pub struct RawDbus {
    bus: Option<Spanned<String>>,
    control_group: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
}

impl RawDbus {
    /// Takes the keys of `[dbus]`, in the order an unknown key's message lists them.
    pub fn take_from(t: &mut Table<'_>) -> RawDbus {
        RawDbus {
            bus: t.take("bus"),
            control_group: t.take("control_group"),
            user: t.take("user"),
        }
    }

    pub fn check(self, source: &Source, problems: &mut Vec<Problem>) -> DbusConfig {
        let mut problem = |offset: usize, severity, message: String| {
            problems.push(source.problem(Some(offset), severity, message))
        };
        let bus = match self.bus {
            Some(b) => parse_bus(b.get_ref()).unwrap_or_else(|message| {
                problem(b.span().start, Severity::Error, message);
                Bus::System
            }),
            None => Bus::System,
        };
        let control_group = match self.control_group {
            Some(g) if g.get_ref().is_empty() || g.get_ref().contains([':', ' ', '/']) => {
                problem(
                    g.span().start,
                    Severity::Error,
                    format!(
                        "control_group \"{}\" must be a group name, e.g. \"ember\"",
                        g.get_ref()
                    ),
                );
                "ember".to_owned()
            }
            Some(g) => {
                // A group made later (by a package, on first boot) is not a reason to refuse.
                let lookup = || nix::unistd::Group::from_name(g.get_ref());
                if !source.offline && matches!(lookup(), Ok(None)) {
                    problem(
                        g.span().start,
                        Severity::Warning,
                        format!(
                            "control_group \"{}\" does not exist here: only root may change services over D-Bus",
                            g.get_ref()
                        ),
                    );
                }
                g.into_inner()
            }
            None => "ember".to_owned(),
        };
        let user = super::adapter_user(self.user, crate::adapters::DBUS, source, &mut problem);
        DbusConfig {
            bus,
            control_group,
            user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buses() {
        assert_eq!(parse_bus("system"), Ok(Bus::System));
        assert_eq!(parse_bus("session"), Ok(Bus::Session));
        assert_eq!(
            parse_bus("unix:path=/run/dbus/system_bus_socket"),
            Ok(Bus::Address("unix:path=/run/dbus/system_bus_socket".into()))
        );
        assert!(parse_bus("systen").unwrap_err().contains("unix:path="));
        assert!(parse_bus("/run/dbus/socket").is_err());
    }
}
