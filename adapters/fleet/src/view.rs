//! `ember fleet status`, and what every command starts with: the retained states, read
//! until the broker has sent them all (or a bounded time), and how they are shown.

use crate::fleet::{state_of, sub_state_of, Board, Fleet};
use crate::session::{Event, Label, Session, QUIET};
use ember_mqtt::topics::glob_match;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The boards and services a command looks at.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub group: Option<String>,
    pub device: Option<String>,
    pub service: Option<String>,
}

impl Selection {
    /// Whether the board is selected: `None` when that depends on groups it has not said.
    pub fn board(&self, name: &str, board: &Board) -> Option<bool> {
        if self.device.as_ref().is_some_and(|g| !glob_match(g, name)) {
            return Some(false);
        }
        match &self.group {
            Some(group) => board.in_group(group),
            None => Some(true),
        }
    }

    pub fn service(&self, name: &str) -> bool {
        self.service.as_ref().is_none_or(|g| glob_match(g, name))
    }

    /// In words, for messages: "group lab", "boards matching b*".
    pub fn describe(&self) -> String {
        match (&self.group, &self.device) {
            (Some(g), Some(d)) => format!("group {g}, boards matching {d}"),
            (Some(g), None) => format!("group {g}"),
            (None, Some(d)) => format!("boards matching {d}"),
            (None, None) => "every board".to_owned(),
        }
    }
}

/// How the reading of the retained states went.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every retained state is in (the broker said so, or was quiet where it could not).
    pub complete: bool,
    /// What the user should know about how complete it is.
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// Reads what the broker sends until its end-of-retained message comes back (see
/// `session`), at most `window`. Messages that come meanwhile are applied to `fleet`.
pub async fn snapshot(session: &mut Session, fleet: &mut Fleet, window: Duration) -> Snapshot {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + window;
    let mut quiet = false;
    let mut last = tokio::time::Instant::now();
    let mut notes = Vec::new();
    let complete = loop {
        let wake = if quiet {
            deadline.min(last + QUIET)
        } else {
            deadline
        };
        let event = match tokio::time::timeout_at(wake, session.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                notes.push("the MQTT client stopped".to_owned());
                break false;
            }
            Err(_) => break quiet && tokio::time::Instant::now() < deadline,
        };
        match event {
            Event::Synced => break true,
            Event::Message {
                topic,
                payload,
                retained,
            } => {
                fleet.apply(&topic, &payload, !retained, Instant::now());
                last = tokio::time::Instant::now();
            }
            Event::Acked {
                label: Label::Sync,
                taken: Err(why),
            } => {
                quiet = true;
                notes.push(format!(
                    "the broker does not take ember fleet's end-of-states message ({why}): \
                     500 ms without a message was taken as the end (allow the client to \
                     write and read ember-fleet/#)"
                ));
            }
            Event::Refused(filters) => {
                if filters.iter().any(|f| f.starts_with("ember-fleet/")) {
                    quiet = true;
                }
                notes.push(format!(
                    "the broker refused the subscription to {} (its ACL): what is there \
                     is not shown",
                    filters.join(", ")
                ));
            }
            Event::Lost(why) => notes.push(format!("lost the broker: {why}; reconnecting")),
            Event::Acked { .. } | Event::Reconnected => {}
        }
    };
    if !complete {
        notes.push(format!(
            "the broker did not finish sending the retained states within {}: the view \
             may be incomplete (--timeout sets how long to wait)",
            seconds(window)
        ));
    }
    Snapshot {
        complete,
        notes,
        elapsed: start.elapsed(),
    }
}

/// "1.50 s".
pub fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// A board's status word: online, offline, or unknown (no status topic).
pub fn status_word(board: &Board) -> &'static str {
    match board.online {
        Some(true) => "online",
        Some(false) => "offline",
        None => "unknown",
    }
}

/// Names, at most five, then how many more.
fn names(list: &[&str]) -> String {
    let mut text = list.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if list.len() > 5 {
        text.push_str(&format!(", +{} more", list.len() - 5));
    }
    text
}

/// The order states are listed in.
fn rank(state: &str) -> u8 {
    match state {
        "active" => 0,
        "activating" => 1,
        "deactivating" => 2,
        "inactive" => 3,
        "failed" => 4,
        _ => 5,
    }
}

/// Each selected service across the selected boards: state → boards (online boards by
/// their service's state, the others under "offline" or "unknown").
pub fn services(
    fleet: &Fleet,
    selection: &Selection,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut table: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (device, board) in selected(fleet, selection) {
        for (name, state) in &board.services {
            if !selection.service(name) {
                continue;
            }
            let key = match board.online {
                Some(true) => state_of(state).to_owned(),
                _ => status_word(board).to_owned(),
            };
            table
                .entry(name.clone())
                .or_default()
                .entry(key)
                .or_default()
                .push(device.clone());
        }
    }
    table
}

/// The boards the selection takes (those whose groups are unknown left out).
pub fn selected<'a>(
    fleet: &'a Fleet,
    selection: &'a Selection,
) -> impl Iterator<Item = (&'a String, &'a Board)> {
    fleet
        .boards
        .iter()
        .filter(|(name, board)| selection.board(name, board) == Some(true))
}

/// "web: 998 active, 1 failed (board-17), 1 offline (board-412)".
pub fn service_line(name: &str, states: &BTreeMap<String, Vec<String>>) -> String {
    let mut parts: Vec<(&String, &Vec<String>)> = states.iter().collect();
    parts.sort_by_key(|(state, _)| {
        let last = match state.as_str() {
            "offline" => 7,
            "unknown" => 8,
            other => rank(other),
        };
        (last, state.to_string())
    });
    let said: Vec<String> = parts
        .iter()
        .map(|(state, boards)| {
            let list: Vec<&str> = boards.iter().map(String::as_str).collect();
            if state.as_str() == "active" {
                format!("{} active", boards.len())
            } else {
                format!("{} {state} ({})", boards.len(), names(&list))
            }
        })
        .collect();
    format!("{name}: {}", said.join(", "))
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// "2026-12-04T20:31:02Z (5m ago)".
fn when(usec: u64) -> String {
    let ago = Duration::from_secs(now_usec().saturating_sub(usec) / 1_000_000);
    format!(
        "{} ({} ago)",
        rfc3339(usec),
        humantime::format_duration(ago)
    )
}

/// A board's time (microseconds since the epoch), "2026-12-04T20:31:02Z". It comes from
/// whoever may publish under the prefix: one past the year 9999, which humantime cannot
/// write (its Display fails, and `to_string` panics), is shown as the number it is.
pub fn rfc3339(usec: u64) -> String {
    /// The first second of the year 10000.
    const YEAR_10000: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_micros(usec)) {
        Some(at) if usec / 1_000_000 < YEAR_10000 => {
            humantime::format_rfc3339_seconds(at).to_string()
        }
        _ => format!("{usec} µs after 1970 (past the year 9999)"),
    }
}

/// A board's services in short: "3 active", "2 active, 1 failed (web)".
fn board_services(board: &Board, selection: &Selection) -> String {
    let mut by_state: BTreeMap<(u8, &str), Vec<&str>> = BTreeMap::new();
    for (name, state) in &board.services {
        if selection.service(name) {
            let s = state_of(state);
            by_state.entry((rank(s), s)).or_default().push(name);
        }
    }
    if by_state.is_empty() {
        return "-".to_owned();
    }
    by_state
        .iter()
        .map(|((_, state), list)| {
            if *state == "active" {
                format!("{} active", list.len())
            } else {
                format!("{} {state} ({})", list.len(), names(list))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The counts of the selected boards: (boards, online, offline, unknown).
pub fn counts(fleet: &Fleet, selection: &Selection) -> (usize, usize, usize, usize) {
    let mut c = (0, 0, 0, 0);
    for (_, board) in selected(fleet, selection) {
        c.0 += 1;
        match board.online {
            Some(true) => c.1 += 1,
            Some(false) => c.2 += 1,
            None => c.3 += 1,
        }
    }
    c
}

/// Boards whose groups are unknown, when a group selects: said, not counted.
fn ungrouped<'a>(fleet: &'a Fleet, selection: &Selection) -> Vec<&'a str> {
    fleet
        .boards
        .iter()
        .filter(|(name, board)| selection.board(name, board).is_none())
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The status as text: a line of counts, a table of boards, one line per service.
pub fn text(fleet: &Fleet, selection: &Selection, url: &str, snapshot: &Snapshot) -> String {
    let (boards, online, offline, unknown) = counts(fleet, selection);
    let mut out = format!(
        "{boards} board{} answered ({online} online, {offline} offline{}) on {url}, read in {}{}\n",
        if boards == 1 { "" } else { "s" },
        if unknown > 0 {
            format!(", {unknown} without a status")
        } else {
            String::new()
        },
        seconds(snapshot.elapsed),
        if selection.group.is_some() || selection.device.is_some() {
            format!("; {}", selection.describe())
        } else {
            String::new()
        }
    );
    for note in &snapshot.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let ungrouped = ungrouped(fleet, selection);
    if !ungrouped.is_empty() {
        out.push_str(&format!(
            "note: {} board(s) do not say their groups (no {}/<device>/system, or an older \
             ember-mqtt), left out: {}\n",
            ungrouped.len(),
            "<prefix>",
            names(&ungrouped)
        ));
    }
    if boards == 0 {
        return out;
    }
    let rows: Vec<[String; 7]> = selected(fleet, selection)
        .map(|(name, board)| {
            let system = match (board.system_state(), board.fallback()) {
                (Some(s), true) => format!("{s}, fallback config"),
                (Some(s), false) => s.to_owned(),
                (None, _) => "-".to_owned(),
            };
            [
                name.clone(),
                status_word(board).to_owned(),
                system,
                board
                    .groups()
                    .map(|g| g.join(","))
                    .unwrap_or_else(|| "?".into()),
                board_services(board, selection),
                board.seq().to_string(),
                board
                    .last_change_usec()
                    .map(when)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "BOARD",
        "STATUS",
        "SYSTEM",
        "GROUPS",
        "SERVICES",
        "SEQ",
        "LAST CHANGE",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    out.push('\n');
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    let services = services(fleet, selection);
    if !services.is_empty() {
        out.push('\n');
        for (name, states) in &services {
            out.push_str(&service_line(name, states));
            out.push('\n');
        }
    }
    out
}

/// The status as one JSON document.
pub fn json(fleet: &Fleet, selection: &Selection, url: &str, snapshot: &Snapshot) -> Value {
    let (boards, online, offline, unknown) = counts(fleet, selection);
    let list: Vec<Value> = selected(fleet, selection)
        .map(|(name, board)| {
            let services: serde_json::Map<String, Value> = board
                .services
                .iter()
                .filter(|(n, _)| selection.service(n))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            json!({
                "device": name,
                "status": status_word(board),
                "system": board.system,
                "groups": board.groups(),
                "seq": board.seq(),
                "last_change_usec": board.last_change_usec(),
                "services": services,
            })
        })
        .collect();
    json!({
        "broker": url,
        "complete": snapshot.complete,
        "notes": snapshot.notes,
        "elapsed_ms": snapshot.elapsed.as_millis() as u64,
        "counts": {"boards": boards, "online": online, "offline": offline, "unknown": unknown},
        "boards": list,
        "services": services(fleet, selection),
        "ungrouped": ungrouped(fleet, selection),
    })
}

/// One line for a service's state: "active (running) pid 123", "failed (failed): why".
pub fn describe_state(state: &Value) -> String {
    let mut text = format!("{} ({})", state_of(state), sub_state_of(state));
    if let Some(pid) = state.get("pid").and_then(Value::as_u64) {
        text.push_str(&format!(" pid {pid}"));
    }
    if let Some(reason) = state.get("reason").and_then(Value::as_str) {
        text.push_str(&format!(": {reason}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        let mut fleet = Fleet::new("ember");
        let now = Instant::now();
        for (device, status, web) in [
            ("b1", "online", "active"),
            ("b2", "online", "failed"),
            ("b3", "offline", "active"),
        ] {
            fleet.apply(
                &format!("ember/{device}/status"),
                status.as_bytes(),
                false,
                now,
            );
            fleet.apply(
                &format!("ember/{device}/system"),
                br#"{"state":"running","config":{"path":"x","fallback":false},"seq":1,"groups":["lab"]}"#,
                false,
                now,
            );
            let state = format!(r#"{{"state":"{web}","sub_state":"x","seq":2,"since_usec":1}}"#);
            fleet.apply(
                &format!("ember/{device}/service/web/state"),
                state.as_bytes(),
                false,
                now,
            );
        }
        fleet
    }

    #[test]
    fn each_service_across_the_boards() {
        let fleet = fleet();
        let services = services(&fleet, &Selection::default());
        assert_eq!(
            service_line("web", &services["web"]),
            "web: 1 active, 1 failed (b2), 1 offline (b3)"
        );
        let only_lab = Selection {
            group: Some("eu".into()),
            ..Selection::default()
        };
        assert!(services_empty(&fleet, &only_lab));
    }

    fn services_empty(fleet: &Fleet, selection: &Selection) -> bool {
        services(fleet, selection).is_empty()
    }

    #[test]
    fn the_text_says_how_many_answered() {
        let snapshot = Snapshot {
            complete: true,
            notes: Vec::new(),
            elapsed: Duration::from_millis(120),
        };
        let text = text(&fleet(), &Selection::default(), "mqtt://x", &snapshot);
        assert!(
            text.starts_with("3 boards answered (2 online, 1 offline) on mqtt://x"),
            "{text}"
        );
        assert!(text.contains("\nb3     offline"), "{text}");
    }

    #[test]
    fn long_lists_are_cut() {
        let list = ["a", "b", "c", "d", "e", "f", "g"];
        assert_eq!(names(&list), "a, b, c, d, e, +2 more");
    }
}
