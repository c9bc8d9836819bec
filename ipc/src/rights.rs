//! Who may ask what over the control socket. A connection is admitted by its peer's
//! credentials (SO_PEERCRED, and SO_PEERGROUPS for its groups): root and ember's own uid
//! may do everything; anyone else only what a rule grants their uid or one of their
//! groups, and a connection no rule admits is refused at once. Rules come from
//! `[[control.allow]]` and from the adapters ember runs ([mqtt] and [dbus]), so that an
//! adapter runs unprivileged and a compromised one can do no more than its rights.

use crate::glob::glob_match;
use crate::protocol::{Command, Verb};

/// Who a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Uid(u32),
    /// The primary group or any supplementary group of the peer.
    Gid(u32),
}

/// What a rule grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub who: Who,
    /// The verbs it may use (`hello` is always allowed to anyone admitted).
    pub verbs: Vec<Verb>,
    /// The services `start`, `stop`, `restart`, `reset_failed`, `kill` and `logs` may
    /// name: globs; `None`: any.
    pub services: Option<Vec<String>>,
    /// Services it may never start, stop, restart, reset or signal, whatever the globs
    /// say: ember's
    /// adapters (see `crate::adapter::ADAPTERS`), for an adapter's rule all of them, for a
    /// `[[control.allow]]` rule those it does not name exactly.
    pub except: Vec<String>,
    /// Where the rule comes from, for refusals: "[[control.allow]] 1", "[mqtt]".
    pub source: String,
}

/// Every rule in force; root and `own_uid` need none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// What one peer may do: everything, or what its rules grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    All,
    Granted(Vec<Rule>),
}

/// The verbs that only read.
pub const READ_VERBS: [Verb; 5] = [
    Verb::Hello,
    Verb::Status,
    Verb::Subscribe,
    Verb::Logs,
    Verb::Timeline,
];

impl Policy {
    /// The rights of a peer, or `None`: it may not connect at all.
    pub fn rights(&self, own_uid: u32, uid: u32, gids: &[u32]) -> Option<Rights> {
        if uid == 0 || uid == own_uid {
            return Some(Rights::All);
        }
        let matched: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| match r.who {
                Who::Uid(u) => u == uid,
                Who::Gid(g) => gids.contains(&g),
            })
            .cloned()
            .collect();
        (!matched.is_empty()).then_some(Rights::Granted(matched))
    }

    /// Whether any rule lets someone other than root in: the socket is then open to
    /// every local user (mode 0666), and these rules decide.
    pub fn opens_the_socket(&self) -> bool {
        !self.rules.is_empty()
    }
}

impl Rights {
    /// Whether `command` is allowed; if not, why, in words to show the client.
    pub fn check(&self, command: &Command) -> Result<(), String> {
        let Rights::Granted(rules) = self else {
            return Ok(());
        };
        let verb = command.verb();
        if verb == Verb::Hello {
            return Ok(());
        }
        // A subscription with `logs` streams every service's lines: it is reading the
        // logs of every service, and needs that right as well as its own.
        if let Command::Subscribe(args) = command {
            let all_logs = |rule: &Rule| rule.verbs.contains(&Verb::Logs) && rule.covers_all();
            if args.logs && !rules.iter().any(all_logs) {
                let sources: Vec<&str> = rules.iter().map(|r| r.source.as_str()).collect();
                return Err(format!(
                    "subscribe with logs streams every service's lines, and this client may not read the logs of every service ({}); subscribe without logs and follow the logs it may read (`logs NAME --follow`), or root may",
                    sources.join(", ")
                ));
            }
        }
        // A reset of every failed service names none: it is for a rule that covers every
        // service, whatever has failed. (Its exceptions, the adapters, need no keeping
        // from it: a reset starts and stops nothing.)
        if let Command::ResetFailed(args) = command {
            let every = |rule: &Rule| rule.verbs.contains(&verb) && rule.covers_all();
            if args.names.is_empty() && rules.iter().any(|r| r.verbs.contains(&verb)) {
                if rules.iter().any(every) {
                    return Ok(());
                }
                let sources: Vec<&str> = rules.iter().map(|r| r.source.as_str()).collect();
                return Err(format!(
                    "reset_failed of every failed service is not allowed to this client ({}): it may reset only some; name them, or root may",
                    sources.join(", ")
                ));
            }
        }
        let names: Vec<&str> = match command {
            Command::Start(t) | Command::Stop(t) | Command::Restart(t) => {
                t.names.iter().map(String::as_str).collect()
            }
            Command::ResetFailed(args) => args.names.iter().map(String::as_str).collect(),
            Command::Kill(args) => args.names.iter().map(String::as_str).collect(),
            Command::Logs(args) => vec![args.name.as_str()],
            _ => Vec::new(),
        };
        let changes = matches!(
            verb,
            Verb::Start | Verb::Stop | Verb::Restart | Verb::ResetFailed | Verb::Kill
        );
        let with_verb: Vec<&Rule> = rules.iter().filter(|r| r.verbs.contains(&verb)).collect();
        // The client's rules together: each name needs one rule that grants the verb for
        // it, not the same rule for every name (its uid's and each of its groups' rules
        // are one set of rights).
        let refused: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !with_verb.iter().any(|r| r.covers(name, changes)))
            .collect();
        if !with_verb.is_empty() && refused.is_empty() {
            return Ok(());
        }
        let sources: Vec<&str> = rules.iter().map(|r| r.source.as_str()).collect();
        Err(if with_verb.is_empty() {
            format!(
                "{verb} is not allowed to this client ({}); root may",
                sources.join(", ")
            )
        } else {
            // The services to take out: the request is refused whole, the others allowed.
            format!(
                "{verb} of {} is not allowed to this client ({}); root may",
                refused.join(", "),
                sources.join(", ")
            )
        })
    }
}

impl Rule {
    /// Whether the rule's services include `name`; for a start, stop, restart, reset or
    /// kill (`changes`), never one of its exceptions.
    fn covers(&self, name: &str, changes: bool) -> bool {
        self.services
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| glob_match(g, name)))
            && !(changes && self.except.iter().any(|e| e == name))
    }

    /// Whether the rule's services are every service: none named, or a glob of stars
    /// alone (`"*"`), which every name matches.
    fn covers_all(&self) -> bool {
        self.services.as_ref().is_none_or(|globs| {
            globs
                .iter()
                .any(|g| !g.is_empty() && g.chars().all(|c| c == '*'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LogsArgs, StatusArgs, Targets};

    fn rule(who: Who, verbs: &[Verb], services: Option<&[&str]>) -> Rule {
        Rule {
            who,
            verbs: verbs.to_vec(),
            services: services.map(|s| s.iter().map(|x| x.to_string()).collect()),
            except: Vec::new(),
            source: "test".into(),
        }
    }

    #[test]
    fn rights_by_uid_and_group() {
        let policy = Policy {
            rules: vec![
                rule(Who::Gid(100), &READ_VERBS, None),
                rule(
                    Who::Uid(1001),
                    &[Verb::Start, Verb::Stop, Verb::Restart],
                    Some(&["web*", "worker@*"]),
                ),
            ],
        };
        assert_eq!(policy.rights(5, 0, &[]), Some(Rights::All));
        assert_eq!(policy.rights(5, 5, &[]), Some(Rights::All));
        assert_eq!(policy.rights(5, 1002, &[7]), None, "no rule, no entry");
        let reader = policy.rights(5, 1002, &[7, 100]).unwrap();
        let status = Command::Status(StatusArgs::default());
        let restart = |n: &str| Command::Restart(Targets::new(vec![n.to_owned()]));
        assert!(reader.check(&status).is_ok());
        assert!(reader.check(&restart("web")).is_err());
        assert!(reader
            .check(&Command::Reboot)
            .unwrap_err()
            .contains("reboot is not allowed"));
        let operator = policy.rights(5, 1001, &[100]).unwrap();
        assert!(operator.check(&restart("web-1")).is_ok());
        assert!(operator.check(&restart("worker@7")).is_ok());
        let e = operator.check(&restart("db")).unwrap_err();
        assert!(e.contains("restart of db is not allowed"), "{e}");
        // Every name must be allowed, not one of them.
        let both = Command::Stop(Targets::new(vec!["web".into(), "db".into()]));
        assert!(operator.check(&both).is_err());
        assert!(operator.check(&status).is_ok(), "its group's rule reads");
        let logs = Command::Logs(LogsArgs {
            name: "db".into(),
            lines: 1,
            follow: false,
        });
        assert!(
            operator.check(&logs).is_ok(),
            "logs: the reading rule has no globs"
        );
        assert!(operator.check(&Command::Reload).is_err());
    }

    /// A subscription with `logs` carries every service's lines: found by a hostile
    /// review, a client that could subscribe but not read logs read them all this way.
    #[test]
    fn a_subscription_with_logs_needs_the_logs_of_every_service() {
        use crate::protocol::SubscribeArgs;
        let policy = Policy {
            rules: vec![
                rule(Who::Uid(1), &[Verb::Subscribe], None),
                rule(
                    Who::Uid(2),
                    &[Verb::Subscribe, Verb::Logs],
                    Some(&["worker@*"]),
                ),
                rule(Who::Uid(3), &[Verb::Subscribe, Verb::Logs], None),
            ],
        };
        let subscribe = |logs| {
            Command::Subscribe(SubscribeArgs {
                logs,
                metrics: false,
            })
        };
        for uid in [1, 2, 3] {
            let rights = policy.rights(5, uid, &[]).unwrap();
            assert!(rights.check(&subscribe(false)).is_ok(), "uid {uid}");
            let with_logs = rights.check(&subscribe(true));
            assert_eq!(with_logs.is_ok(), uid == 3, "uid {uid}: {with_logs:?}");
        }
        let e = policy
            .rights(5, 2, &[])
            .unwrap()
            .check(&subscribe(true))
            .unwrap_err();
        assert!(e.contains("may not read the logs of every service"), "{e}");
    }

    /// A client's rules together grant what any of them grants (found by a hostile
    /// review: a user whose one group may restart web* and another db could restart
    /// each, but `restart web db` was refused, though no name in it was forbidden).
    #[test]
    fn a_client_has_what_any_of_its_rules_grants() {
        let policy = Policy {
            rules: vec![
                rule(Who::Gid(10), &[Verb::Restart], Some(&["web*"])),
                rule(Who::Gid(20), &[Verb::Restart, Verb::Logs], Some(&["db"])),
            ],
        };
        let rights = policy.rights(5, 1, &[10, 20]).unwrap();
        let restart =
            |n: &[&str]| Command::Restart(Targets::new(n.iter().map(|s| s.to_string()).collect()));
        assert_eq!(rights.check(&restart(&["web-1", "db"])), Ok(()));
        let e = rights.check(&restart(&["web", "db", "cache"])).unwrap_err();
        assert!(e.starts_with("restart of cache is not allowed"), "{e}");
        // Only in one group: only that group's.
        let one = policy.rights(5, 1, &[20]).unwrap();
        let e = one.check(&restart(&["web", "db"])).unwrap_err();
        assert!(e.starts_with("restart of web is not allowed"), "{e}");
    }

    /// `services = ["*"]` is every service: its logs are the logs of every service, as a
    /// rule without `services` (found by a hostile review: `subscribe --logs` was refused
    /// to a rule granting `logs` of "*").
    #[test]
    fn a_glob_of_stars_alone_covers_every_service() {
        use crate::protocol::SubscribeArgs;
        let with_logs = Command::Subscribe(SubscribeArgs {
            logs: true,
            metrics: false,
        });
        for globs in [&["*"][..], &["**"], &["web*", "*"]] {
            let policy = Policy {
                rules: vec![rule(
                    Who::Uid(1),
                    &[Verb::Subscribe, Verb::Logs],
                    Some(globs),
                )],
            };
            let rights = policy.rights(5, 1, &[]).unwrap();
            assert_eq!(rights.check(&with_logs), Ok(()), "{globs:?}");
        }
        let policy = Policy {
            rules: vec![rule(
                Who::Uid(1),
                &[Verb::Subscribe, Verb::Logs],
                Some(&["w*"]),
            )],
        };
        let rights = policy.rights(5, 1, &[]).unwrap();
        assert!(
            rights.check(&with_logs).is_err(),
            "w* is some services only"
        );
    }

    /// A refusal names the services that made it, not the allowed ones beside them.
    #[test]
    fn a_refusal_names_only_the_services_refused() {
        let policy = Policy {
            rules: vec![rule(Who::Uid(1), &[Verb::Stop], Some(&["worker@*"]))],
        };
        let rights = policy.rights(5, 1, &[]).unwrap();
        let stop = Command::Stop(Targets::new(vec!["worker@a".into(), "sleeper".into()]));
        let e = rights.check(&stop).unwrap_err();
        assert!(e.starts_with("stop of sleeper is not allowed"), "{e}");
    }

    /// reset_failed is a change, as a restart is: by globs, never of what is excepted;
    /// a reset of every failed service only for a rule over every service.
    #[test]
    fn a_reset_needs_the_services_it_names_or_every_service() {
        use crate::protocol::ResetFailedArgs;
        let mut adapter = rule(Who::Uid(1), &[Verb::ResetFailed], Some(&["*"]));
        adapter.except = vec!["ember-mqtt".into()];
        let policy = Policy {
            rules: vec![
                adapter,
                rule(Who::Uid(2), &[Verb::ResetFailed], Some(&["worker@*"])),
                rule(Who::Uid(3), &[Verb::ResetFailed], None),
                rule(Who::Uid(4), &[Verb::Restart], None),
                Rule {
                    except: vec!["ember-dbus".into()],
                    ..rule(Who::Uid(6), &[Verb::ResetFailed], None)
                },
            ],
        };
        let reset = |names: &[&str]| {
            Command::ResetFailed(ResetFailedArgs {
                names: names.iter().map(|n| n.to_string()).collect(),
            })
        };
        let check = |uid, command: &Command| policy.rights(5, uid, &[]).unwrap().check(command);
        assert!(check(1, &reset(&["web"])).is_ok());
        let e = check(1, &reset(&["ember-mqtt"])).unwrap_err();
        assert!(
            e.contains("reset_failed of ember-mqtt is not allowed"),
            "{e}"
        );
        assert!(check(2, &reset(&["worker@3"])).is_ok());
        assert!(check(2, &reset(&["db"])).is_err());
        let e = check(2, &reset(&[])).unwrap_err();
        assert!(e.contains("every failed service is not allowed"), "{e}");
        assert!(check(1, &reset(&[])).is_ok(), "\"*\" covers every service");
        assert!(check(3, &reset(&[])).is_ok());
        assert!(check(6, &reset(&[])).is_ok());
        assert!(check(6, &reset(&["ember-dbus"])).is_err());
        let e = check(4, &reset(&[])).unwrap_err();
        assert!(e.contains("reset_failed is not allowed"), "{e}");
        assert!(Rights::All.check(&reset(&[])).is_ok());
    }
}
