//! `[control]`: where the control socket is, and who besides root may use it for what.
//!
//! ```toml
//! [control]
//! socket = "/run/ember/control.sock"
//!
//! [[control.allow]]
//! group = "ops"                               # or user = "alice" (names or numeric ids)
//! verbs = ["status", "subscribe", "logs", "start", "stop", "restart"]
//! services = ["web*", "worker@*"]             # start/stop/restart/logs of these only
//! ```

use super::walk::{self, FromToml, Issue, Table};
use super::{Problem, Severity, Source};
use ember_ipc::rights::{Rule, Who};
use ember_ipc::Verb;
use std::path::PathBuf;
use toml::de::DeValue;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// `[[control.allow]]`, with users and groups looked up.
    pub allow: Vec<Rule>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(super::DEFAULT_SOCKET),
            allow: Vec::new(),
        }
    }
}

impl ControlConfig {
    /// The rules the control socket admits clients by.
    pub fn policy(&self) -> ember_ipc::rights::Policy {
        ember_ipc::rights::Policy {
            rules: self.allow.clone(),
        }
    }
}

/// The keys of `[control]`, as written.
#[derive(Debug, Default)]
pub struct RawControl {
    socket: Option<Spanned<PathBuf>>,
    allow: Option<Vec<Spanned<RawAllow>>>,
}

/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes, the last
/// a NUL.
pub const SOCKET_PATH_MOST: usize = 107;

/// What is wrong with `path` as the control socket's, if anything: one that cannot be
/// bound (empty, or too long) is an error (found by a hostile review: both passed `ember
/// check`, and ember then ran without its socket); a relative one binds in ember's
/// working directory, which `ember ctl --config` does not share: a warning.
pub fn socket_path_problem(path: &std::path::Path) -> Option<(Severity, String)> {
    let shown = path.display();
    let len = path.as_os_str().len();
    if len == 0 {
        Some((
            Severity::Error,
            format!(
                "socket is empty; give a path such as \"{}\"",
                super::DEFAULT_SOCKET
            ),
        ))
    } else if len > SOCKET_PATH_MOST {
        Some((
            Severity::Error,
            format!(
                "socket \"{shown}\" is {len} bytes, and a socket's path may be {SOCKET_PATH_MOST} at most; choose a shorter one"
            ),
        ))
    } else if !path.is_absolute() {
        Some((
            Severity::Warning,
            format!(
                "socket \"{shown}\" is relative: ember binds it in its own working directory, where `ember ctl --config` does not look; give an absolute path such as \"{}\"",
                super::DEFAULT_SOCKET
            ),
        ))
    } else {
        None
    }
}

/// The directory of the services' notify sockets: named after the control socket
/// (`/run/ember/control.sock.notify/`), which no two live embers can share (binding it
/// refuses a live one), so two embers whose sockets sit in one directory never remove
/// each other's notify sockets.
pub fn notify_dir(control_socket: &std::path::Path) -> PathBuf {
    let mut dir = control_socket.as_os_str().to_owned();
    dir.push(".notify");
    PathBuf::from(dir)
}

/// Where the service `name`'s notify socket is bound in `dir` (a [`notify_dir`]).
pub fn notify_socket_in(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Why the service `name`'s notify socket, in `dir` (a [`notify_dir`]), could not be
/// bound: it is a notify service and the path would be too long. Checked for each
/// service by `ember check`, and for each instance a start makes (its name is part of
/// the path).
pub fn notify_socket_too_long(
    dir: &std::path::Path,
    name: &str,
    spec: &super::service::ServiceSpec,
) -> Option<String> {
    if spec.ready != super::service::Readiness::Notify {
        return None;
    }
    let path = notify_socket_in(dir, name);
    let len = path.as_os_str().len();
    (len > SOCKET_PATH_MOST).then(|| {
        format!(
            "service \"{name}\": its notify socket would be {} ({len} bytes), and a socket's path may be {SOCKET_PATH_MOST} at most; give the service a shorter name, or [control] socket a shorter path",
            path.display(),
        )
    })
}

/// Where the service `name`'s notify socket is bound.
pub fn notify_socket_path(control_socket: &std::path::Path, name: &str) -> PathBuf {
    notify_socket_in(&notify_dir(control_socket), name)
}

/// One `[[control.allow]]`, as written.
#[derive(Debug)]
pub struct RawAllow {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    verbs: Option<Vec<Spanned<String>>>,
    services: Option<Vec<Spanned<String>>>,
}

impl FromToml for RawAllow {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        walk::table(
            value,
            "a table: [[control.allow]] with user or group, and verbs",
            issues,
            |t| RawAllow {
                user: t.take("user"),
                group: t.take("group"),
                verbs: t.take("verbs"),
                services: t.take("services"),
            },
        )
    }
}

/// The verbs a rule may grant (`hello` needs no grant).
const GRANTABLE: [Verb; 13] = [
    Verb::Status,
    Verb::Subscribe,
    Verb::Logs,
    Verb::Timeline,
    Verb::Start,
    Verb::Stop,
    Verb::Restart,
    Verb::ResetFailed,
    Verb::Kill,
    Verb::Reload,
    Verb::Poweroff,
    Verb::Reboot,
    Verb::Halt,
];

impl RawControl {
    /// Takes the keys of `[control]`.
    pub fn take_from(t: &mut Table<'_>) -> RawControl {
        RawControl {
            socket: t.take("socket"),
            allow: t.take("allow"),
        }
    }

    /// The socket alone: what a configuration with errors still boots with.
    pub fn settings(self) -> ControlConfig {
        ControlConfig {
            socket: self
                .socket
                .map(Spanned::into_inner)
                .unwrap_or_else(|| PathBuf::from(super::DEFAULT_SOCKET)),
            allow: Vec::new(),
        }
    }

    pub fn check(self, source: &Source, problems: &mut Vec<Problem>) -> ControlConfig {
        if let Some(socket) = &self.socket {
            if let Some((severity, why)) = socket_path_problem(socket.get_ref()) {
                problems.push(source.problem(Some(socket.span().start), severity, why));
            }
        }
        let raw_rules = self.allow.unwrap_or_default();
        let mut control = RawControl {
            socket: self.socket,
            allow: None,
        }
        .settings();
        for (i, rule) in raw_rules.into_iter().enumerate() {
            let at = rule.span().start;
            if let Some(rule) = check_rule(rule.into_inner(), i + 1, at, source, problems) {
                control.allow.push(rule);
            }
        }
        control
    }
}

fn check_rule(
    raw: RawAllow,
    number: usize,
    at: usize,
    source: &Source,
    problems: &mut Vec<Problem>,
) -> Option<Rule> {
    let mut problem = |offset: usize, severity, message: String| {
        problems.push(source.problem(Some(offset), severity, message))
    };
    let name = format!("[[control.allow]] {number}");
    let verbs: Vec<Verb> = match raw.verbs {
        None => {
            problem(
                at,
                Severity::Error,
                format!("{name} needs verbs, e.g. verbs = [\"status\", \"subscribe\"]"),
            );
            return None;
        }
        Some(words) => {
            let mut verbs = Vec::new();
            for word in words {
                match GRANTABLE
                    .iter()
                    .find(|v| v.word() == word.get_ref().as_str())
                {
                    Some(v) => verbs.push(*v),
                    None => {
                        let known: Vec<&str> = GRANTABLE.iter().map(|v| v.word()).collect();
                        let word_said = word.get_ref().escape_debug().to_string();
                        // A verb of the protocol that no rule grants is said to be one.
                        let what = match word.get_ref().as_str() {
                            "reexec" => {
                                format!("\"{word_said}\" is root's alone; no rule grants it")
                            }
                            "hello" => format!(
                                "\"{word_said}\" needs no rule; every client admitted may say it"
                            ),
                            _ => format!("unknown verb \"{word_said}\""),
                        };
                        problem(
                            word.span().start,
                            Severity::Error,
                            format!("{name}: {what}; a rule grants {}", known.join(", ")),
                        );
                        return None;
                    }
                }
            }
            verbs
        }
    };
    let services = match raw.services {
        None => None,
        Some(globs) => {
            for glob in &globs {
                let ok = !glob.get_ref().is_empty()
                    && glob.get_ref().chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-' | '*' | '?')
                    });
                if !ok {
                    problem(
                        glob.span().start,
                        Severity::Error,
                        format!(
                            "{name}: \"{}\" is not a glob of service names; use letters, digits, . _ @ - and the wildcards * and ?",
                            glob.get_ref().escape_debug()
                        ),
                    );
                    return None;
                }
            }
            Some(globs.into_iter().map(Spanned::into_inner).collect())
        }
    };
    let who = match (raw.user, raw.group) {
        (Some(user), None) => {
            let offset = user.span().start;
            lookup(user.into_inner(), false, source.offline)
                .map_err(|why| (offset, Severity::Runtime, why))
        }
        (None, Some(group)) => {
            let offset = group.span().start;
            lookup(group.into_inner(), true, source.offline)
                .map_err(|why| (offset, Severity::Runtime, why))
        }
        _ => Err((
            at,
            Severity::Error,
            "a rule names a user or a group: give one of user = \"...\" or group = \"...\""
                .to_owned(),
        )),
    };
    match who {
        Ok(Some(who)) => Some(Rule {
            who,
            except: adapters_left_out(services.as_deref()),
            verbs,
            services,
            source: name,
        }),
        // Checked as text only: nothing to look the account up in.
        Ok(None) => None,
        // A user or group made later (by a package, at first boot) is not a reason to
        // refuse the configuration (Runtime): the rule is left out until a reload finds it.
        Err((offset, severity, why)) => {
            problem(offset, severity, format!("{name}: {why}"));
            None
        }
    }
}

/// ember's adapters that a rule with these `services` may not start, stop or restart:
/// every one it does not name exactly. A glob (`"*"`, `"e*"`) or a rule without
/// `services` means the board's services, not the links that reach it (found by a
/// hostile review: a rule of `"*"` let its user stop ember-mqtt, and the board was off
/// its broker until root started it again).
fn adapters_left_out(services: Option<&[String]>) -> Vec<String> {
    ember_ipc::adapter::ADAPTERS
        .iter()
        .filter(|adapter| !services.is_some_and(|names| names.iter().any(|n| n == *adapter)))
        .map(|adapter| adapter.to_string())
        .collect()
}

/// A user or group by name or number; `Ok(None)` when checking text only.
fn lookup(name: String, group: bool, offline: bool) -> Result<Option<Who>, String> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(Some(if group { Who::Gid(id) } else { Who::Uid(id) }));
    }
    if offline {
        return Ok(None);
    }
    let found = if group {
        nix::unistd::Group::from_name(&name).map(|g| g.map(|g| Who::Gid(g.gid.as_raw())))
    } else {
        nix::unistd::User::from_name(&name).map(|u| u.map(|u| Who::Uid(u.uid.as_raw())))
    };
    let what = if group { "group" } else { "user" };
    match found {
        Ok(Some(who)) => Ok(Some(who)),
        Ok(None) => Err(format!(
            "no {what} named \"{}\" on this machine; the rule is left out until a reload finds it",
            name.escape_debug()
        )),
        Err(e) => Err(format!(
            "cannot look up {what} \"{}\": {e}",
            name.escape_debug()
        )),
    }
}
