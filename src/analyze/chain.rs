//! `ember analyze critical-chain [NAME]`: the chain of dependencies that decided when a
//! service became active, like systemd-analyze's: from NAME, at each step the dependency
//! (requires, wants or after) that became active last before the service was spawned.

use super::{find, last_state, span, startup};
use ember_ipc::{ServiceTimeline, Timeline};
use std::cmp::Reverse;

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// 0 for NAME, 1 for what it waited for, and so on.
    pub depth: usize,
    /// When it first became active, since ember started.
    pub active_usec: Option<u64>,
    /// From its first spawn to its first activation.
    pub took_usec: Option<u64>,
    /// Its state in words, for a link that never became active.
    pub state: String,
}

/// The chain for `name`, or for the service that became active last.
pub fn critical_chain(timeline: &Timeline, name: Option<&str>) -> Result<Vec<Link>, String> {
    let target = match name {
        Some(name) => find(timeline, name).ok_or_else(|| {
            format!("no service named \"{name}\"; `ember ctl status` lists the services")
        })?,
        None => timeline
            .services
            .iter()
            .filter_map(|s| Some((s.first_active_usec?, s)))
            .max_by_key(|(active, s)| (*active, Reverse(s.name.as_str())))
            .map(|(_, s)| s)
            .ok_or("no service has become active yet; try again once one has, or name one")?,
    };
    let mut chain = Vec::new();
    let mut current = target;
    loop {
        chain.push(Link {
            name: current.name.clone(),
            depth: chain.len(),
            active_usec: current.first_active_usec,
            took_usec: startup(current),
            state: last_state(current),
        });
        // Each service once: the configuration check rejects cycles, but the timeline
        // comes over a socket.
        match decider(timeline, current) {
            Some(next) if !chain.iter().any(|l| l.name == next.name) => current = next,
            _ => break,
        }
    }
    Ok(chain)
}

/// The dependency `service` waited for last: of those active by the time it was spawned,
/// the last to become active. One that was never spawned waits for a dependency that is
/// not active yet, if there is one.
pub(crate) fn decider<'a>(
    timeline: &'a Timeline,
    service: &ServiceTimeline,
) -> Option<&'a ServiceTimeline> {
    let deps: Vec<(usize, &ServiceTimeline)> = super::ordered_after(service)
        .into_iter()
        .filter_map(|name| find(timeline, name))
        .enumerate()
        .collect();
    let Some(spawned) = service.first_spawn_usec else {
        if let Some((_, blocker)) = deps.iter().find(|(_, d)| d.first_active_usec.is_none()) {
            return Some(blocker);
        }
        return latest(deps.into_iter(), timeline.now_usec);
    };
    latest(deps.into_iter(), spawned)
}

/// Of `deps` (numbered in the order requires, wants, after), the one active last at or
/// before `limit`; ties go to the earlier-listed one.
fn latest<'a>(
    deps: impl Iterator<Item = (usize, &'a ServiceTimeline)>,
    limit: u64,
) -> Option<&'a ServiceTimeline> {
    deps.filter_map(|(i, d)| Some((d.first_active_usec?, i, d)))
        .filter(|(active, _, _)| *active <= limit)
        .max_by_key(|(active, i, _)| (*active, Reverse(*i)))
        .map(|(_, _, d)| d)
}

pub const LEGEND: &str = "\
The time a service became active (since ember started) is printed after the \"@\" character.
The time it took from its spawn to active is printed after the \"+\" character.
";

/// The chain as text, indented along the dependencies:
///
/// ```text
/// web @705ms +200ms
/// └─db @502ms +500ms
/// ```
pub fn render(chain: &[Link]) -> String {
    let mut out = String::new();
    for link in chain {
        if link.depth > 0 {
            out.push_str(&"  ".repeat(link.depth - 1));
            out.push_str("└─");
        }
        out.push_str(&link.name);
        match (link.active_usec, link.took_usec) {
            (Some(active), Some(took)) if took > 0 => {
                out.push_str(&format!(" @{} +{}", span(active), span(took)))
            }
            (Some(active), _) => out.push_str(&format!(" @{}", span(active))),
            (None, _) => out.push_str(&format!(" ({})", link.state)),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{service, simple, timeline};
    use super::*;

    fn names(chain: &[Link]) -> Vec<&str> {
        chain.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn follows_the_dependency_active_last_before_each_spawn() {
        let mut app = simple("app", &["db", "cache"], 900, 1000);
        app.after = vec!["migrate".into()];
        let t = timeline(vec![
            simple("db", &[], 0, 300),
            simple("cache", &[], 0, 100),
            // Active last of app's dependencies: it decided.
            simple("migrate", &["db"], 300, 900),
            app,
            // Became active before app, but app does not depend on it.
            simple("other", &[], 0, 950),
        ]);
        let chain = critical_chain(&t, None).unwrap();
        assert_eq!(names(&chain), ["app", "migrate", "db"]);
        assert_eq!(chain[0].active_usec, Some(1_000_000));
        assert_eq!(chain[0].took_usec, Some(100_000));
        assert_eq!(
            render(&chain),
            "app @1.000s +100ms\n└─migrate @900ms +600ms\n  └─db @300ms +300ms\n"
        );
        // A named service.
        let chain = critical_chain(&t, Some("migrate")).unwrap();
        assert_eq!(names(&chain), ["migrate", "db"]);
        // A dependency that became active after the spawn did not hold it up.
        let t = timeline(vec![
            simple("slow", &[], 0, 800),
            simple("quick", &[], 0, 200),
            {
                let mut s = simple("web", &["quick"], 200, 300);
                s.wants = vec!["slow".into()];
                s
            },
        ]);
        assert_eq!(
            names(&critical_chain(&t, Some("web")).unwrap()),
            ["web", "quick"]
        );
    }

    #[test]
    fn a_service_never_started_shows_what_blocks_it() {
        let t = timeline(vec![
            service(
                "db",
                &[],
                &[
                    (0, "activating", "start", 1),
                    (50, "failed", "exit-code", 1),
                ],
            ),
            service("web", &["db"], &[(0, "inactive", "dependency", 0)]),
        ]);
        let chain = critical_chain(&t, Some("web")).unwrap();
        assert_eq!(names(&chain), ["web", "db"]);
        assert_eq!(
            render(&chain),
            "web (inactive (dependency))\n└─db (failed (exit-code))\n"
        );
    }

    #[test]
    fn errors_read_like_advice() {
        let t = timeline(vec![service("db", &[], &[(0, "activating", "start", 1)])]);
        assert!(critical_chain(&t, None)
            .unwrap_err()
            .contains("no service has become active yet"));
        assert!(critical_chain(&t, Some("nope"))
            .unwrap_err()
            .contains("`ember ctl status` lists the services"));
    }

    #[test]
    fn a_cycle_in_the_timeline_ends_the_chain() {
        let t = timeline(vec![
            simple("a", &["b"], 100, 200),
            simple("b", &["a"], 0, 50),
        ]);
        // b's dependency a was not active before b's spawn: the chain ends at b.
        assert_eq!(names(&critical_chain(&t, None).unwrap()), ["a", "b"]);
        let t = timeline(vec![simple("a", &["b"], 0, 0), simple("b", &["a"], 0, 0)]);
        assert_eq!(names(&critical_chain(&t, Some("a")).unwrap()), ["a", "b"]);
    }
}
