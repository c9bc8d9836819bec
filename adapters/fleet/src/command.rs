//! `ember fleet start|stop|restart|kill|reset-failed SERVICE`: one command to the boards selected, each
//! board's answer collected, and the boards that did not do as asked listed with why.

use crate::fleet::{Change, Fleet, Reply};
use crate::session::{Event, Label, Session};
use crate::view::{self, seconds, Selection};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long ember fleet waits for the boards' own answers beyond a `--wait`'s timeout
/// (a board says `timeout` when its wait ends, with where the service is).
pub const GRACE: Duration = Duration::from_secs(2);

/// How one board did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It took the command (with wait: its service settled as asked).
    Done,
    /// It (or the broker) refused the command: a code and why.
    Refused {
        code: String,
        message: String,
    },
    /// With wait: the service failed; why.
    Failed(String),
    /// With wait: the service had not settled when the board's wait ended.
    NotSettled(String),
    Offline(String),
    NoAnswer(String),
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::NotSettled(_) => "not-settled",
            Outcome::Offline(_) => "offline",
            Outcome::NoAnswer(_) => "no-answer",
        }
    }

    fn from_reply(reply: &Reply) -> Outcome {
        if reply.ok {
            return Outcome::Done;
        }
        let code = reply.code.clone().unwrap_or_else(|| "?".into());
        let message = reply.message.clone().unwrap_or_default();
        match code.as_str() {
            "failed" => Outcome::Failed(message),
            "timeout" => Outcome::NotSettled(message),
            _ => Outcome::Refused { code, message },
        }
    }
}

/// The exit status of a command's outcomes (see the help): 1 refused or failed, then 3
/// no answer or not settled, then 4 offline.
pub fn exit_code<'a>(outcomes: impl Iterator<Item = &'a Outcome> + Clone) -> i32 {
    let any = |f: fn(&Outcome) -> bool| outcomes.clone().any(f);
    if any(|o| matches!(o, Outcome::Refused { .. } | Outcome::Failed(_))) {
        1
    } else if any(|o| matches!(o, Outcome::NoAnswer(_) | Outcome::NotSettled(_))) {
        3
    } else if any(|o| matches!(o, Outcome::Offline(_))) {
        4
    } else {
        0
    }
}

pub struct Request<'a> {
    pub verb: &'static str,
    pub service: &'a str,
    pub prefix: &'a str,
    pub selection: &'a Selection,
    pub wait: bool,
    /// kill's signal, when given.
    pub signal: Option<&'a str>,
    pub timeout: Duration,
    pub client_id: &'a str,
}

pub struct Report {
    pub outcomes: BTreeMap<String, Outcome>,
    pub elapsed: Duration,
    pub notes: Vec<String>,
}

/// Sends the command and collects the answers, once the retained states are in `fleet`.
pub async fn run(
    session: &mut Session,
    fleet: &mut Fleet,
    request: &Request<'_>,
) -> Result<Report, String> {
    let start = Instant::now();
    let selection = request.selection;
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    for (name, board) in view::selected(fleet, selection) {
        match board.online {
            Some(true) => {
                pending.insert(name.clone());
            }
            Some(false) => {
                let since = board
                    .last_change_usec()
                    .map(|u| format!(" (its last change: {})", view::rfc3339(u)))
                    .unwrap_or_default();
                outcomes.insert(
                    name.clone(),
                    Outcome::Offline(format!("the board is offline, not sent{since}")),
                );
            }
            None => {
                outcomes.insert(
                    name.clone(),
                    Outcome::Offline(
                        "the board has no status topic (never connected?), not sent".into(),
                    ),
                );
            }
        }
    }
    let id = format!("{}-{}", request.client_id, std::process::id());
    let mut body = json!({"cmd": request.verb, "id": id});
    if let Some(signal) = request.signal {
        body["signal"] = signal.into();
    }
    if request.wait {
        // The board's wait in whole seconds, at least 1.
        let secs = request.timeout.as_secs_f64().ceil().max(1.0) as u64;
        body["wait"] = true.into();
        body["timeout"] = secs.min(ember_mqtt::payload::MAX_WAIT_SECS).into();
    }
    let body = body.to_string().into_bytes();
    // One message to the group when a group alone selects; else one to each board.
    let mut sent_to: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match (&selection.group, &selection.device) {
        (Some(group), None) => {
            let topic = format!(
                "{}/group/{group}/service/{}/cmd",
                request.prefix, request.service
            );
            session
                .publish(&topic, body.clone(), Label::Command(topic.clone()))
                .await?;
            sent_to.insert(topic, pending.iter().cloned().collect());
        }
        _ => {
            for device in &pending {
                let topic = format!(
                    "{}/{device}/service/{}/cmd",
                    request.prefix, request.service
                );
                session
                    .publish(&topic, body.clone(), Label::Command(topic.clone()))
                    .await?;
                sent_to.insert(topic, vec![device.clone()]);
            }
        }
    }
    let limit = if request.wait {
        request.timeout + GRACE
    } else {
        request.timeout
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut notes = Vec::new();
    while !pending.is_empty() {
        let event = match tokio::time::timeout_at(deadline, session.next()).await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => break,
        };
        match event {
            Event::Message {
                topic,
                payload,
                retained,
            } => {
                for change in fleet.apply(&topic, &payload, !retained, Instant::now()) {
                    match change {
                        Change::Reply { device, reply } if reply.id == id.as_str() => {
                            pending.remove(&device);
                            // A board the selection could not place (groups unknown) that
                            // answered the group's command is shown too.
                            outcomes.insert(device, Outcome::from_reply(&reply));
                        }
                        Change::Online {
                            device,
                            online: false,
                        } if pending.remove(&device) => {
                            outcomes.insert(
                                device,
                                Outcome::Offline(
                                    "the board went offline before it answered".into(),
                                ),
                            );
                        }
                        _ => {}
                    }
                }
            }
            Event::Acked {
                label: Label::Command(topic),
                taken,
            } => {
                let boards = sent_to.get(&topic).cloned().unwrap_or_default();
                let outcome = match taken {
                    Ok(true) => continue,
                    Ok(false) => Outcome::NoAnswer(format!(
                        "nobody subscribes to {topic} at the broker (is the board's adapter \
                         connected, is the group in its [mqtt] groups?)"
                    )),
                    Err(why) => Outcome::Refused {
                        code: "broker".into(),
                        message: format!("the broker did not take the command on {topic}: {why}"),
                    },
                };
                for device in boards {
                    if pending.remove(&device) {
                        outcomes.insert(device, outcome.clone());
                    }
                }
            }
            Event::Lost(why) => notes.push(format!(
                "lost the broker during the command ({why}): answers sent meanwhile are lost"
            )),
            _ => {}
        }
    }
    for device in pending {
        let message = if request.wait {
            format!(
                "no answer within {} (its wait is {}; the board may be slow, or its \
                 ember-mqtt older than ember fleet)",
                seconds(limit),
                seconds(request.timeout)
            )
        } else {
            format!("no answer within {}", seconds(limit))
        };
        outcomes.insert(device, Outcome::NoAnswer(message));
    }
    Ok(Report {
        outcomes,
        elapsed: start.elapsed(),
        notes,
    })
}

/// The report as text: a line of counts, then one line per board that did not do as asked.
pub fn text(request: &Request<'_>, report: &Report) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in report.outcomes.values() {
        *counts.entry(outcome.word()).or_default() += 1;
    }
    let order = [
        "done",
        "refused",
        "failed",
        "not-settled",
        "offline",
        "no-answer",
    ];
    let said: Vec<String> = order
        .iter()
        .filter_map(|w| {
            counts
                .get(w)
                .map(|n| format!("{n} {}", w.replace('-', " ")))
        })
        .collect();
    let what = if request.wait {
        format!("{} {} --wait", request.verb, request.service)
    } else {
        format!("{} {}", request.verb, request.service)
    };
    let mut out = format!(
        "{what} on {} board{} ({}): {} in {}\n",
        report.outcomes.len(),
        if report.outcomes.len() == 1 { "" } else { "s" },
        request.selection.describe(),
        if said.is_empty() {
            "nothing to do".to_owned()
        } else {
            said.join(", ")
        },
        seconds(report.elapsed)
    );
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let width = report
        .outcomes
        .keys()
        .map(|d| d.chars().count())
        .max()
        .unwrap_or(0);
    for (device, outcome) in &report.outcomes {
        let line = match outcome {
            Outcome::Done => continue,
            Outcome::Refused { code, message } => format!("refused ({code}): {message}"),
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::NotSettled(why) => format!("not settled: {why}"),
            Outcome::Offline(why) => format!("offline: {why}"),
            Outcome::NoAnswer(why) => format!("no answer: {why}"),
        };
        out.push_str(&format!("  {device:<width$}  {line}\n"));
    }
    out
}

pub fn json(request: &Request<'_>, report: &Report) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let boards: Vec<Value> = report
        .outcomes
        .iter()
        .map(|(device, outcome)| {
            *counts.entry(outcome.word()).or_default() += 1;
            let mut v = json!({"device": device, "outcome": outcome.word()});
            match outcome {
                Outcome::Done => {}
                Outcome::Refused { code, message } => {
                    v["code"] = code.clone().into();
                    v["message"] = message.clone().into();
                }
                Outcome::Failed(m)
                | Outcome::NotSettled(m)
                | Outcome::Offline(m)
                | Outcome::NoAnswer(m) => v["message"] = m.clone().into(),
            }
            v
        })
        .collect();
    json!({
        "command": request.verb,
        "service": request.service,
        "group": request.selection.group,
        "device": request.selection.device,
        "wait": request.wait,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "counts": counts,
        "notes": report.notes,
        "boards": boards,
        "exit": exit_code(report.outcomes.values()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_put_refusals_and_failures_first() {
        let done = Outcome::Done;
        let offline = Outcome::Offline(String::new());
        let silent = Outcome::NoAnswer(String::new());
        let failed = Outcome::Failed(String::new());
        assert_eq!(exit_code([&done].into_iter()), 0);
        assert_eq!(exit_code([&done, &offline].into_iter()), 4);
        assert_eq!(exit_code([&offline, &silent].into_iter()), 3);
        assert_eq!(exit_code([&silent, &failed, &offline].into_iter()), 1);
    }

    #[test]
    fn replies_become_outcomes() {
        let reply = |ok, code: Option<&str>| Reply {
            id: "x".into(),
            ok,
            code: code.map(str::to_owned),
            message: Some("why".into()),
        };
        assert_eq!(Outcome::from_reply(&reply(true, None)), Outcome::Done);
        assert_eq!(
            Outcome::from_reply(&reply(false, Some("failed"))),
            Outcome::Failed("why".into())
        );
        assert_eq!(
            Outcome::from_reply(&reply(false, Some("timeout"))),
            Outcome::NotSettled("why".into())
        );
        assert_eq!(
            Outcome::from_reply(&reply(false, Some("not-allowed"))),
            Outcome::Refused {
                code: "not-allowed".into(),
                message: "why".into()
            }
        );
    }
}
