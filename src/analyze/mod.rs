//! `ember analyze`: how the boot went, from the timeline a running ember keeps
//! ([`ember_ipc::Timeline`]), and a deeper check of a configuration.
//!
//! Everything here is a pure function of its input, so it is tested on synthetic boots:
//!
//! - [`blame`]: services by the time from spawn to active.
//! - [`chain`]: the dependency chain that decided when a service became active.
//! - [`plot`]: an SVG timeline of the boot, written by hand.
//! - [`verify`]: `ember check` plus warnings about configurations that load but mislead.

pub mod blame;
pub mod chain;
pub mod plot;
pub mod verify;

use ember_ipc::{ServiceTimeline, Timeline};

/// A span of microseconds as systemd-analyze writes it, to a useful precision:
/// "734us", "4.21ms", "12.3ms", "502ms", "1.503s", "2min 3.004s", "2h 46min 23.267s".
pub fn span(usec: u64) -> String {
    let ms = usec as f64 / 1000.0;
    match usec {
        0..1_000 => format!("{usec}us"),
        1_000..10_000 => format!("{ms:.2}ms"),
        10_000..100_000 => format!("{ms:.1}ms"),
        100_000..1_000_000 => format!("{ms:.0}ms"),
        1_000_000..60_000_000 => format!("{:.3}s", usec as f64 / 1e6),
        60_000_000..3_600_000_000 => format!(
            "{}min {:.3}s",
            usec / 60_000_000,
            (usec % 60_000_000) as f64 / 1e6
        ),
        _ => format!(
            "{}h {}min {:.3}s",
            usec / 3_600_000_000,
            usec % 3_600_000_000 / 60_000_000,
            (usec % 60_000_000) as f64 / 1e6
        ),
    }
}

/// Time from the first spawn to the first activation.
pub fn startup(service: &ServiceTimeline) -> Option<u64> {
    Some(
        service
            .first_active_usec?
            .saturating_sub(service.first_spawn_usec?),
    )
}

/// The service's dependencies that order its start: requires, then wants, then after,
/// each named once.
pub fn ordered_after(service: &ServiceTimeline) -> Vec<&str> {
    let mut deps: Vec<&str> = Vec::new();
    for dep in service
        .requires
        .iter()
        .chain(&service.wants)
        .chain(&service.after)
    {
        if !deps.contains(&dep.as_str()) {
            deps.push(dep);
        }
    }
    deps
}

/// How a service stands at the end of the timeline, in words: "failed (start-limit)".
pub fn last_state(service: &ServiceTimeline) -> String {
    match service.transitions.last() {
        Some(t) => format!("{} ({})", t.state, t.sub_state),
        None if !service.enabled => "not started (enabled = false)".to_owned(),
        None => "not started".to_owned(),
    }
}

/// The service named `name`.
pub fn find<'a>(timeline: &'a Timeline, name: &str) -> Option<&'a ServiceTimeline> {
    timeline.services.iter().find(|s| s.name == name)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Synthetic boots for the tests of every analysis.

    use ember_ipc::{ServiceTimeline, State, Sub, Timeline, Transition};

    pub fn timeline(services: Vec<ServiceTimeline>) -> Timeline {
        let now = services
            .iter()
            .flat_map(|s| s.transitions.iter().map(|t| t.at_usec))
            .max()
            .unwrap_or(0)
            + 100_000;
        Timeline {
            device: "board1".into(),
            role: ember_ipc::Role::Machine,
            uptime_at_start_usec: Some(1_450_000),
            started_usec: 1_795_000_000_000_000,
            now_usec: now,
            boot_complete_usec: None,
            services,
        }
    }

    /// A service with `requires` and these transitions: (ms, state, sub, run).
    pub fn service(
        name: &str,
        requires: &[&str],
        transitions: &[(u64, &str, &str, u64)],
    ) -> ServiceTimeline {
        let transitions: Vec<Transition> = transitions
            .iter()
            .map(|&(ms, state, sub, run)| Transition {
                at_usec: ms * 1000,
                state: state.parse().unwrap(),
                sub_state: sub.parse().unwrap(),
                run,
                reason: (state == "failed" || sub == "auto-restart")
                    .then(|| "exited with code 1".to_owned()),
            })
            .collect();
        let spawns = transitions
            .iter()
            .filter(|t| t.state == State::Activating && t.sub_state == Sub::Start)
            .count() as u32;
        let failures = transitions
            .iter()
            .filter(|t| t.state == State::Failed || t.sub_state == Sub::AutoRestart)
            .count() as u32;
        let first_spawn_usec = transitions
            .iter()
            .find(|t| t.sub_state == Sub::Start)
            .map(|t| t.at_usec);
        let first_active_usec = transitions
            .iter()
            .find(|t| t.state == State::Active)
            .map(|t| t.at_usec);
        ServiceTimeline {
            name: name.into(),
            kind: ember_ipc::ServiceKind::Simple,
            ready: ember_ipc::ReadyKind::Delay,
            enabled: true,
            requires: requires.iter().map(|s| s.to_string()).collect(),
            wants: Vec::new(),
            after: Vec::new(),
            first_spawn_usec,
            first_active_usec,
            spawns,
            failures,
            dropped: 0,
            transitions,
        }
    }

    /// Spawned at `spawn` ms, active at `active` ms, requiring `requires`.
    pub fn simple(name: &str, requires: &[&str], spawn: u64, active: u64) -> ServiceTimeline {
        service(
            name,
            requires,
            &[
                (spawn, "activating", "start", 1),
                (active, "active", "running", 1),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_systemd_analyze() {
        assert_eq!(span(0), "0us");
        assert_eq!(span(734), "734us");
        assert_eq!(span(4_210), "4.21ms");
        assert_eq!(span(12_345), "12.3ms");
        assert_eq!(span(502_400), "502ms");
        assert_eq!(span(1_503_000), "1.503s");
        assert_eq!(span(123_004_000), "2min 3.004s");
        assert_eq!(span(9_983_267_000), "2h 46min 23.267s");
    }
}
