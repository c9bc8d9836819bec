//! `ember analyze blame`: services by the time from their first spawn to their first
//! activation in this boot, slowest first; then the ones that never became active.

use super::{last_state, span, startup};
use ember_ipc::{ServiceTimeline, State, Sub, Timeline};

/// One line of the blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    /// Spawn to active; `None` for a service that never became active.
    pub took_usec: Option<u64>,
    /// Restarts, or why it never became active.
    pub note: String,
}

/// Active services by startup time (slowest first, then by name), then the others by name.
pub fn blame(timeline: &Timeline) -> Vec<Row> {
    let mut rows: Vec<Row> = timeline.services.iter().map(row).collect();
    rows.sort_unstable_by(|a, b| match (a.took_usec, b.took_usec) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.name.cmp(&b.name)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    rows
}

fn row(service: &ServiceTimeline) -> Row {
    let took_usec = startup(service);
    let note = match took_usec {
        Some(_) => {
            // Failures before the first activation: why it took that long.
            let failed_first = service
                .transitions
                .iter()
                .filter(|t| t.at_usec <= service.first_active_usec.unwrap_or(0))
                .filter(|t| t.state == State::Failed || t.sub_state == Sub::AutoRestart)
                .count();
            let mut notes = Vec::new();
            match failed_first {
                0 => {}
                1 => notes.push("after 1 failed run".to_owned()),
                n => notes.push(format!("after {n} failed runs")),
            }
            if service
                .transitions
                .last()
                .is_some_and(|t| t.state == State::Failed)
            {
                notes.push(format!("now {}", last_state(service)));
            }
            if notes.is_empty() {
                String::new()
            } else {
                format!("({})", notes.join("; "))
            }
        }
        None => {
            let runs = match service.spawns {
                0 => String::new(),
                1 => ", 1 run".to_owned(),
                n => format!(", {n} runs"),
            };
            format!("never active: {}{runs}", last_state(service))
        }
    };
    Row {
        name: service.name.clone(),
        took_usec,
        note,
    }
}

/// The rows as text, times right-aligned: "   1.503s db".
pub fn render(rows: &[Row]) -> String {
    let times: Vec<String> = rows
        .iter()
        .map(|r| r.took_usec.map(span).unwrap_or_else(|| "-".to_owned()))
        .collect();
    let width = times.iter().map(|t| t.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (row, time) in rows.iter().zip(times) {
        out.push_str(&format!("{time:>width$} {}", row.name));
        if !row.note.is_empty() {
            out.push_str(&format!(" {}", row.note));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{service, simple, timeline};
    use super::*;

    #[test]
    fn slowest_first_then_the_ones_never_active() {
        let t = timeline(vec![
            simple("db", &[], 0, 500),
            simple("web", &["db"], 500, 700),
            simple("migrate", &[], 0, 1200),
            simple("fast", &[], 0, 0),
            service(
                "crashed",
                &[],
                &[
                    (0, "activating", "start", 1),
                    (0, "active", "running", 1),
                    (90, "failed", "exit-code", 1),
                ],
            ),
            service(
                "flaky",
                &[],
                &[
                    (0, "activating", "start", 1),
                    (5, "activating", "auto-restart", 1),
                    (105, "activating", "start", 2),
                    (110, "failed", "start-limit", 2),
                ],
            ),
            service(
                "late",
                &[],
                &[
                    (0, "activating", "start", 1),
                    (5, "activating", "auto-restart", 1),
                    (105, "activating", "start", 2),
                    (150, "active", "running", 2),
                ],
            ),
            service("off", &[], &[]),
        ]);
        let rows = blame(&t);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["migrate", "db", "web", "late", "crashed", "fast", "flaky", "off"]
        );
        assert_eq!(rows[0].took_usec, Some(1_200_000));
        assert_eq!(rows[3].note, "(after 1 failed run)");
        assert_eq!(rows[4].note, "(now failed (exit-code))");
        assert_eq!(rows[6].note, "never active: failed (start-limit), 2 runs");
        assert_eq!(rows[7].note, "never active: not started");
        let text = render(&rows);
        assert!(
            text.starts_with("1.200s migrate\n 500ms db\n 200ms web\n"),
            "{text}"
        );
        assert!(text.contains("\n     - flaky never active"), "{text}");
        assert!(text.contains("\n   0us fast\n"), "{text}");
    }
}
