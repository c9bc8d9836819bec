//! `ember fleet watch`: the changes as they come, one line each (or one JSON object), or
//! on a terminal a status table that refreshes with the latest lines under it.

use crate::fleet::{Change, Fleet, Missed};
use crate::session::{Event, Session};
use crate::view::{self, describe_state, Selection, Snapshot};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

/// How long a seq missing in a burst may take to come before it counts as missed.
pub const GRACE: Duration = Duration::from_secs(1);
/// The table is drawn at most this often.
const REDRAW: Duration = Duration::from_millis(500);
/// Lines kept under the table.
const TAIL: usize = 12;

pub struct Watch<'a> {
    pub selection: &'a Selection,
    pub json: bool,
    pub table: bool,
    pub url: &'a str,
    /// Watch this long, then end; `None`: until interrupted.
    pub timeout: Option<Duration>,
}

/// One change as the watcher says it, if the selection takes it.
fn say(change: &Change, fleet: &Fleet, selection: &Selection) -> Option<(String, Value)> {
    let device = match change {
        Change::Online { device, .. }
        | Change::System { device, .. }
        | Change::Service { device, .. }
        | Change::Removed { device, .. }
        | Change::Restarted { device } => device,
        Change::Reply { .. } => return None,
    };
    let board = fleet.boards.get(device)?;
    if selection.board(device, board) != Some(true) {
        return None;
    }
    Some(match change {
        Change::Online { online, .. } => {
            let word = if *online { "online" } else { "offline" };
            (word.to_owned(), json!({"event": word}))
        }
        Change::System { system, .. } => {
            let state = system.get("state").and_then(Value::as_str).unwrap_or("?");
            let seq = system.get("seq").and_then(Value::as_u64).unwrap_or(0);
            let fallback = board.fallback();
            (
                format!(
                    "system {state}{} seq {seq}",
                    if fallback {
                        " (fallback configuration)"
                    } else {
                        ""
                    }
                ),
                json!({"event": "system", "system": system}),
            )
        }
        Change::Service { name, state, .. } => {
            if !selection.service(name) {
                return None;
            }
            let seq = state.get("seq").and_then(Value::as_u64).unwrap_or(0);
            (
                format!("{name} {} seq {seq}", describe_state(state)),
                json!({"event": "service", "service": name, "state": state}),
            )
        }
        Change::Removed { name, .. } => {
            if !selection.service(name) {
                return None;
            }
            (
                format!("{name} removed (a reload)"),
                json!({"event": "removed", "service": name}),
            )
        }
        Change::Restarted { .. } => (
            "ember started again (its seq counts from 1)".to_owned(),
            json!({"event": "restarted"}),
        ),
        Change::Reply { .. } => return None,
    })
    .map(|(text, value)| (format!("{device} {text}"), with_device(value, device)))
}

fn with_device(mut value: Value, device: &str) -> Value {
    value["device"] = device.into();
    value
}

fn say_missed(missed: &Missed, fleet: &Fleet, selection: &Selection) -> Option<(String, Value)> {
    let board = fleet.boards.get(&missed.device)?;
    if selection.board(&missed.device, board) != Some(true) {
        return None;
    }
    let range = if missed.first == missed.last {
        format!("seq {}", missed.first)
    } else {
        format!("seq {}-{}", missed.first, missed.last)
    };
    Some((
        format!(
            "{} missed {} change{} ({range}): its adapter kept only the latest state while it could not publish",
            missed.device,
            missed.count,
            if missed.count == 1 { "" } else { "s" }
        ),
        json!({"event": "missed", "device": missed.device, "count": missed.count, "first": missed.first, "last": missed.last}),
    ))
}

fn stamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Watches until the timeout (or forever). Returns the exit status.
pub async fn run(
    session: &mut Session,
    fleet: &mut Fleet,
    watch: &Watch<'_>,
    snapshot: Snapshot,
) -> i32 {
    let mut out = std::io::stdout().lock();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut dirty = watch.table;
    let mut last_draw: Option<tokio::time::Instant> = None;
    let mut snapshot = snapshot;
    if !watch.table && !watch.json {
        let (boards, online, offline, _) = view::counts(fleet, watch.selection);
        eprintln!(
            "watching {boards} boards ({online} online, {offline} offline) on {}; Ctrl-C ends",
            watch.url
        );
        for note in &snapshot.notes {
            eprintln!("note: {note}");
        }
    }
    let end = watch.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut said: Vec<(String, Value)> = Vec::new();
        tokio::select! {
            event = session.next() => match event {
                None => {
                    eprintln!("ember fleet: the MQTT client stopped");
                    return 2;
                }
                Some(Event::Message { topic, payload, retained }) => {
                    for change in fleet.apply(&topic, &payload, !retained, Instant::now()) {
                        said.extend(say(&change, fleet, watch.selection));
                    }
                }
                Some(Event::Lost(why)) => {
                    said.push((format!("(lost the broker: {why}; reconnecting)"), json!({"event": "lost", "why": why})));
                }
                Some(Event::Reconnected) => {
                    said.push(("(connected again)".to_owned(), json!({"event": "reconnected"})));
                }
                Some(Event::Refused(filters)) => {
                    snapshot.notes.push(format!("the broker refused the subscription to {}", filters.join(", ")));
                }
                Some(_) => {}
            },
            _ = tick.tick() => {
                for missed in fleet.missed(Instant::now(), GRACE) {
                    said.extend(say_missed(&missed, fleet, watch.selection));
                }
            }
            () = async {
                match end {
                    Some(end) => tokio::time::sleep_until(end).await,
                    None => std::future::pending().await,
                }
            } => return 0,
        }
        for (text, value) in said {
            let time = stamp();
            if watch.json {
                let mut value = value;
                value["time"] = time.into();
                let _ = writeln!(out, "{value}");
            } else if watch.table {
                tail.push_back(format!("{time} {text}"));
                if tail.len() > TAIL {
                    tail.pop_front();
                }
                dirty = true;
            } else {
                let _ = writeln!(out, "{time} {text}");
            }
        }
        if watch.table && dirty && last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            let mut screen = String::from("\x1b[H\x1b[2J");
            screen.push_str(&view::text(fleet, watch.selection, watch.url, &snapshot));
            screen.push_str("\nlatest changes (Ctrl-C ends):\n");
            for line in &tail {
                screen.push_str(line);
                screen.push('\n');
            }
            let _ = out.write_all(screen.as_bytes());
            last_draw = Some(tokio::time::Instant::now());
            dirty = false;
        }
        let _ = out.flush();
    }
}
