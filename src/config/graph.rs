//! The dependency graph: unknown dependencies and cycles, found before anything runs.
//!
//! `requires`, `wants` and `after` all order a service after another, so a cycle through
//! any mix of them would leave every service on it waiting forever: it is an error.

use super::{service::ServiceSpec, Severity};
use std::collections::BTreeMap;

/// Something wrong with the graph, tied to the service (and dependency) that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphIssue {
    pub service: String,
    pub dependency: Option<String>,
    /// The list the dependency is in ("requires", "wants", "after"), when one is.
    pub kind: Option<&'static str>,
    pub severity: Severity,
    pub message: String,
}

/// Finds unknown dependencies and every cycle (each reported once, as `a -> b -> a`).
pub fn check(services: &BTreeMap<&str, &ServiceSpec>) -> Vec<GraphIssue> {
    let mut issues = Vec::new();
    for (name, spec) in services {
        for (deps, kind, severity) in [
            (&spec.requires, "requires", Severity::Error),
            // Like systemd's Wants=/After=: naming a service that is not installed is allowed.
            (&spec.wants, "wants", Severity::Warning),
            (&spec.after, "after", Severity::Warning),
        ] {
            for dep in deps.iter().filter(|d| !services.contains_key(d.as_str())) {
                issues.push(GraphIssue {
                    service: name.to_string(),
                    dependency: Some(dep.clone()),
                    kind: Some(kind),
                    severity,
                    message: if dep.contains(super::service::INSTANCE) {
                        format!(
                            "service \"{name}\" {kind} \"{dep}\", which is not defined: {{instance}} \
                             is not replaced in {kind} ({}); name the service",
                            super::service::REPLACED_IN
                        )
                    } else {
                        format!(
                            "service \"{name}\" {kind} \"{dep}\", which is not defined; \
                             define it or remove it from {kind}"
                        )
                    },
                });
            }
        }
    }
    // A scheduled oneshot is inactive between its runs: what requires it would be stopped
    // with it after every run.
    for (name, spec) in services {
        for dep in &spec.requires {
            if services
                .get(dep.as_str())
                .is_some_and(|d| d.schedule.is_some())
            {
                issues.push(GraphIssue {
                    service: name.to_string(),
                    dependency: Some(dep.clone()),
                    kind: Some("requires"),
                    severity: Severity::Error,
                    message: format!(
                        "service \"{name}\" requires \"{dep}\", which runs on a schedule and is \
                         inactive between its runs; use after (to start after a run in \
                         progress) or remove it from requires"
                    ),
                });
            }
        }
    }
    for cycle in cycles(services) {
        let Some(first) = cycle.first().cloned() else {
            continue;
        };
        issues.push(GraphIssue {
            service: first.clone(),
            dependency: cycle.get(1).cloned(),
            kind: None,
            severity: Severity::Error,
            message: format!(
                "dependency cycle: {}; remove one of these dependencies",
                cycle.join(" -> ")
            ),
        });
    }
    issues
}

/// Every elementary cycle found by a depth-first search, each closed (`[a, b, a]`).
pub fn cycles(services: &BTreeMap<&str, &ServiceSpec>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for k in services.keys() {
        marks.insert(*k, Mark::New);
    }
    let mut found = Vec::new();
    for &start in services.keys() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, index of the next edge to follow).
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last().copied() {
            let edges: Vec<&str> = services[node]
                .ordered_after()
                .map(String::as_str)
                .filter(|d| services.contains_key(d))
                .collect();
            if next < edges.len() {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                let dep = edges[next];
                match marks[dep] {
                    Mark::New => {
                        marks.insert(dep, Mark::OnPath);
                        path.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.to_string());
                        found.push(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                path.pop();
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, requires: &[&str], after: &[&str]) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, &["/bin/true"]);
        s.requires = requires.iter().map(|s| s.to_string()).collect();
        s.after = after.iter().map(|s| s.to_string()).collect();
        s
    }

    fn check_all(specs: &[ServiceSpec]) -> Vec<GraphIssue> {
        let map = specs.iter().map(|s| (&*s.name, s)).collect();
        check(&map)
    }

    #[test]
    fn names_the_cycle() {
        let issues = check_all(&[
            spec("a", &["b"], &[]),
            spec("b", &[], &["a"]),
            spec("c", &["a"], &[]),
        ]);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "dependency cycle: a -> b -> a; remove one of these dependencies"
        );
        assert_eq!(issues[0].severity, Severity::Error);
    }

    #[test]
    fn unknown_dependencies() {
        let issues = check_all(&[spec("a", &["ghost"], &["maybe"])]);
        assert_eq!(issues.len(), 2);
        assert_eq!(
            issues[0].message,
            "service \"a\" requires \"ghost\", which is not defined; define it or remove it from requires"
        );
        assert_eq!(issues[0].severity, Severity::Error);
        assert_eq!(issues[1].severity, Severity::Warning);
    }

    #[test]
    fn a_diamond_is_no_cycle() {
        let issues = check_all(&[
            spec("a", &["b", "c"], &[]),
            spec("b", &["d"], &[]),
            spec("c", &["d"], &[]),
            spec("d", &[], &[]),
        ]);
        assert!(issues.is_empty());
    }
}
