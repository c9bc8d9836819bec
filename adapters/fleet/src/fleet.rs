//! The fleet as the boards' topics show it, and what each message changes. No I/O: the
//! session feeds it messages, the commands read it.
//!
//! ```text
//! <prefix>/<device>/status                 online | offline (retained; the board's last will)
//! <prefix>/<device>/system                 {"state":..,"config":..,"seq":..,"groups":[..]} (retained)
//! <prefix>/<device>/service/<name>/state   the service's status, with its seq (retained)
//! <prefix>/<device>/reply                  {"id":..,"ok":..,"error":{"code":..,"message":..}}
//! ```
//!
//! **Missed changes.** Every change a board publishes carries `seq`, one counter over
//! all its services and its system state, raised by each change. While its adapter cannot
//! publish (the broker is away, the queue is full) it keeps only the latest state per
//! service, so a watcher that reads every state of a board sees a seq jump: the numbers
//! between were changes nobody will see. Their order is not kept (the adapter publishes
//! a burst of states by name), so a number is counted missed only when it has not come
//! within a grace period. A removed service's retained state is cleared with an empty
//! message, which has no seq: each removal forgives one missing number. A service's seq
//! going backwards means the board's ember started again (seq counts from 1 each run).
//!
//! **What is taken as it comes, and what is not.** Anyone who may publish under the
//! prefix writes what the operator's terminal shows: control characters in a topic or in
//! a payload's strings are escaped as they arrive (`\u{1b}`, `\n`), so that no view of
//! this tool can print an escape sequence or a line that a board did not make.

use ember_ipc::text::escape_controls;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Gaps longer than this are counted at once, not number by number.
const MOST_TRACKED: u64 = 4096;

#[derive(Debug, Default)]
pub struct Fleet {
    prefix: String,
    pub boards: BTreeMap<String, Board>,
}

#[derive(Debug, Default)]
pub struct Board {
    /// From the status topic: `None` before any.
    pub online: Option<bool>,
    /// The system topic, as published.
    pub system: Option<Value>,
    /// Each service's latest state, as published.
    pub services: BTreeMap<String, Value>,
    seqs: Seqs,
}

/// What a message changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Online {
        device: String,
        online: bool,
    },
    System {
        device: String,
        system: Value,
    },
    Service {
        device: String,
        name: String,
        state: Value,
        /// The state before, when there was one.
        before: Option<Value>,
    },
    Removed {
        device: String,
        name: String,
    },
    /// The board's seq started over: its ember started again.
    Restarted {
        device: String,
    },
    Reply {
        device: String,
        reply: Reply,
    },
}

/// A board's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: Value,
    pub ok: bool,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Changes a board published that nobody will see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub device: String,
    pub count: u64,
    pub first: u64,
    pub last: u64,
}

impl Board {
    /// The groups the board says it is in; `None` when it has not said (no system
    /// topic, or an adapter older than ember fleet).
    pub fn groups(&self) -> Option<Vec<String>> {
        let groups = self.system.as_ref()?.get("groups")?.as_array()?;
        Some(
            groups
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
        )
    }

    pub fn in_group(&self, group: &str) -> Option<bool> {
        self.groups().map(|g| g.iter().any(|x| x == group))
    }

    /// "running", "degraded"...
    pub fn system_state(&self) -> Option<&str> {
        self.system.as_ref()?.get("state")?.as_str()
    }

    pub fn fallback(&self) -> bool {
        self.system
            .as_ref()
            .and_then(|s| s.get("config")?.get("fallback")?.as_bool())
            .unwrap_or(false)
    }

    /// When the board last changed, as far as its retained states tell (microseconds
    /// since the epoch): the newest `since` of its services.
    pub fn last_change_usec(&self) -> Option<u64> {
        self.services
            .values()
            .filter_map(|s| s.get("since_usec")?.as_u64())
            .max()
    }

    /// The highest seq seen from the board.
    pub fn seq(&self) -> u64 {
        self.seqs.high
    }
}

/// A service's state word ("active", "failed"...).
pub fn state_of(service: &Value) -> &str {
    service.get("state").and_then(Value::as_str).unwrap_or("?")
}

pub fn sub_state_of(service: &Value) -> &str {
    service
        .get("sub_state")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

/// A payload's JSON with the control characters of its strings (and keys) escaped;
/// `None` if it is not JSON.
fn parsed(payload: &[u8]) -> Option<Value> {
    fn escaped(value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(escape_controls(&s).into_owned()),
            Value::Array(list) => Value::Array(list.into_iter().map(escaped).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (escape_controls(&k).into_owned(), escaped(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    serde_json::from_slice(payload).ok().map(escaped)
}

fn seq_of(value: &Value) -> Option<u64> {
    value.get("seq")?.as_u64()
}

impl Fleet {
    pub fn new(prefix: &str) -> Fleet {
        Fleet {
            prefix: prefix.to_owned(),
            boards: BTreeMap::new(),
        }
    }

    /// Takes one message. `live`: a change as it happens (not a retained message sent
    /// because of a subscription), whose seq is checked for jumps.
    pub fn apply(&mut self, topic: &str, payload: &[u8], live: bool, now: Instant) -> Vec<Change> {
        let topic = escape_controls(topic);
        let Some(rest) = topic
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Vec::new();
        };
        let levels: Vec<&str> = rest.split('/').collect();
        let (device, what) = match levels.as_slice() {
            ["group", ..] => return Vec::new(),
            [device, what] => (*device, *what),
            [device, "service", name, "state"] => {
                return self.service(device, name, payload, live, now)
            }
            _ => return Vec::new(),
        };
        if device.is_empty() {
            return Vec::new();
        }
        match what {
            "status" => {
                let online = match payload {
                    b"online" => true,
                    b"offline" => false,
                    // Cleared (an empty retained message) or unknown: forget it.
                    _ => {
                        if let Some(board) = self.boards.get_mut(device) {
                            board.online = None;
                        }
                        return Vec::new();
                    }
                };
                let board = self.boards.entry(device.to_owned()).or_default();
                if board.online == Some(online) {
                    return Vec::new();
                }
                board.online = Some(online);
                vec![Change::Online {
                    device: device.to_owned(),
                    online,
                }]
            }
            "system" => {
                let Some(system) = parsed(payload) else {
                    return Vec::new();
                };
                let board = self.boards.entry(device.to_owned()).or_default();
                let mut changes = Vec::new();
                if let Some(seq) = seq_of(&system) {
                    let before = board.system.as_ref().and_then(seq_of);
                    if before.is_some_and(|b| seq < b) {
                        board.seqs.restart(seq);
                        changes.push(Change::Restarted {
                            device: device.to_owned(),
                        });
                    } else {
                        board.seqs.see(seq, live, now);
                    }
                }
                if board.system.as_ref() != Some(&system) {
                    board.system = Some(system.clone());
                    changes.push(Change::System {
                        device: device.to_owned(),
                        system,
                    });
                }
                changes
            }
            "reply" => {
                let Some(value) = parsed(payload) else {
                    return Vec::new();
                };
                let error = value.get("error");
                let text = |key: &str| {
                    error
                        .and_then(|e| e.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                vec![Change::Reply {
                    device: device.to_owned(),
                    reply: Reply {
                        id: value.get("id").cloned().unwrap_or(Value::Null),
                        ok: value.get("ok").and_then(Value::as_bool).unwrap_or(false),
                        code: text("code"),
                        message: text("message"),
                    },
                }]
            }
            _ => Vec::new(),
        }
    }

    fn service(
        &mut self,
        device: &str,
        name: &str,
        payload: &[u8],
        live: bool,
        now: Instant,
    ) -> Vec<Change> {
        if device.is_empty() || name.is_empty() {
            return Vec::new();
        }
        let board = self.boards.entry(device.to_owned()).or_default();
        if payload.is_empty() {
            // A reload removed the service: its retained state is cleared.
            if board.services.remove(name).is_none() {
                return Vec::new();
            }
            if live {
                board.seqs.removals += 1;
            }
            return vec![Change::Removed {
                device: device.to_owned(),
                name: name.to_owned(),
            }];
        }
        let Some(state) = parsed(payload) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let before = board.services.get(name).cloned();
        if let Some(seq) = seq_of(&state) {
            if before.as_ref().and_then(seq_of).is_some_and(|b| seq < b) {
                board.seqs.restart(seq);
                changes.push(Change::Restarted {
                    device: device.to_owned(),
                });
            } else {
                board.seqs.see(seq, live, now);
            }
        }
        if before.as_ref() == Some(&state) {
            return changes; // the same state again (republished after a reconnect)
        }
        board.services.insert(name.to_owned(), state.clone());
        changes.push(Change::Service {
            device: device.to_owned(),
            name: name.to_owned(),
            state,
            before,
        });
        changes
    }

    /// The changes boards published that have not come within `grace`: missed.
    pub fn missed(&mut self, now: Instant, grace: Duration) -> Vec<Missed> {
        self.boards
            .iter_mut()
            .filter_map(|(device, board)| {
                let (count, first, last) = board.seqs.expired(now, grace)?;
                Some(Missed {
                    device: device.clone(),
                    count,
                    first,
                    last,
                })
            })
            .collect()
    }
}

/// The seqs seen from one board (see the module's notes).
#[derive(Debug, Default)]
struct Seqs {
    high: u64,
    /// Whether `high` was set by a message seen live: only then is a jump a gap.
    live: bool,
    /// Numbers between `high`s not seen yet, and since when.
    missing: BTreeMap<u64, Instant>,
    /// Numbers of a gap too long to track one by one: missed at once.
    lost: Option<(u64, u64)>,
    /// Removals seen (each took a number that no message shows).
    removals: u64,
}

impl Seqs {
    fn see(&mut self, seq: u64, live: bool, now: Instant) {
        if !live || !self.live {
            // A retained state (the latest of its service only) sets where counting starts.
            self.high = self.high.max(seq);
            self.live |= live;
            return;
        }
        if seq <= self.high {
            self.missing.remove(&seq);
            return;
        }
        let gap = seq - self.high - 1;
        if gap > MOST_TRACKED {
            let (first, last) = (self.high + 1, seq - 1);
            self.lost = Some(match self.lost {
                Some((f, _)) => (f, last),
                None => (first, last),
            });
        } else {
            for n in self.high + 1..seq {
                self.missing.insert(n, now);
            }
        }
        self.high = seq;
    }

    fn restart(&mut self, seq: u64) {
        *self = Seqs {
            high: seq,
            live: false,
            ..Seqs::default()
        };
    }

    fn expired(&mut self, now: Instant, grace: Duration) -> Option<(u64, u64, u64)> {
        let due: Vec<u64> = self
            .missing
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(n, _)| *n)
            .collect();
        for n in &due {
            self.missing.remove(n);
        }
        let mut count = due.len() as u64;
        let (mut first, mut last) = (due.first().copied(), due.last().copied());
        if let Some((f, l)) = self.lost.take() {
            count += l - f + 1;
            first = Some(first.map_or(f, |x| x.min(f)));
            last = Some(last.map_or(l, |x| x.max(l)));
        }
        let forgiven = count.min(self.removals);
        self.removals -= forgiven;
        count -= forgiven;
        match (count, first, last) {
            (0, _, _) => None,
            (count, Some(first), Some(last)) => Some((count, first, last)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: &str, seq: u64) -> Vec<u8> {
        format!(r#"{{"name":"x","state":"{state}","seq":{seq},"since_usec":{seq}}}"#).into_bytes()
    }

    #[test]
    fn topics_become_boards() {
        let mut fleet = Fleet::new("ember");
        let now = Instant::now();
        fleet.apply("ember/b1/status", b"online", false, now);
        fleet.apply(
            "ember/b1/system",
            br#"{"state":"running","config":{"path":"/etc/ember/ember.toml","fallback":false},"seq":3,"groups":["lab","all"]}"#,
            false,
            now,
        );
        fleet.apply(
            "ember/b1/service/web/state",
            &state("active", 2),
            false,
            now,
        );
        fleet.apply("ember/b2/status", b"offline", false, now);
        // Not a board's topics.
        fleet.apply("ember/group/lab/service/web/cmd", b"restart", false, now);
        fleet.apply("other/b3/status", b"online", false, now);
        fleet.apply("ember/b4/service/web/cmd", b"restart", false, now);
        assert_eq!(fleet.boards.len(), 2);
        let b1 = &fleet.boards["b1"];
        assert_eq!(b1.online, Some(true));
        assert_eq!(b1.system_state(), Some("running"));
        assert_eq!(b1.in_group("lab"), Some(true));
        assert_eq!(b1.in_group("eu"), Some(false));
        assert_eq!(b1.last_change_usec(), Some(2));
        assert_eq!(b1.seq(), 3);
        assert_eq!(fleet.boards["b2"].online, Some(false));
        assert_eq!(fleet.boards["b2"].in_group("lab"), None);
    }

    /// A newline in a reason cannot forge a line of a view, nor an escape sequence reach
    /// the terminal: control characters are escaped as they arrive, in the topic too.
    #[test]
    fn control_characters_are_escaped_as_they_arrive() {
        let mut fleet = Fleet::new("ember");
        let changes = fleet.apply(
            "ember/b\x1b1/service/web/state",
            br#"{"seq":1,"state":"failed","reason":"x\nb2 online\u001b[2J","k\u0007":["\u009b"]}"#,
            true,
            Instant::now(),
        );
        let [Change::Service { device, state, .. }] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(device, "b\\u{1b}1");
        assert_eq!(state["reason"], "x\\nb2 online\\u{1b}[2J");
        assert_eq!(state["k\\u{7}"][0], "\\u{9b}");
    }

    #[test]
    fn replies_are_read() {
        let mut fleet = Fleet::new("ember");
        let changes = fleet.apply(
            "ember/b1/reply",
            br#"{"id":"f-1","ok":false,"error":{"code":"not-allowed","message":"no"}}"#,
            true,
            Instant::now(),
        );
        assert_eq!(
            changes,
            vec![Change::Reply {
                device: "b1".into(),
                reply: Reply {
                    id: "f-1".into(),
                    ok: false,
                    code: Some("not-allowed".into()),
                    message: Some("no".into())
                }
            }]
        );
    }

    #[test]
    fn a_seq_that_jumps_is_missed_changes_after_the_grace() {
        let mut fleet = Fleet::new("ember");
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        // The retained states set where counting starts; they jump by nature.
        fleet.apply("ember/b1/service/a/state", &state("active", 4), false, t0);
        fleet.apply("ember/b1/service/b/state", &state("active", 9), false, t0);
        fleet.apply(
            "ember/b1/service/a/state",
            &state("deactivating", 10),
            true,
            t0,
        );
        // Out of order within a burst: 12 before 11, both come.
        fleet.apply("ember/b1/service/b/state", &state("active", 12), true, t0);
        fleet.apply("ember/b1/service/a/state", &state("active", 11), true, t0);
        assert!(fleet.missed(t0 + grace, grace).is_empty());
        // 13 and 14 never come.
        fleet.apply("ember/b1/service/a/state", &state("failed", 15), true, t0);
        assert!(fleet.missed(t0, grace).is_empty(), "not before the grace");
        assert_eq!(
            fleet.missed(t0 + grace, grace),
            vec![Missed {
                device: "b1".into(),
                count: 2,
                first: 13,
                last: 14
            }]
        );
        assert!(fleet.missed(t0 + grace * 2, grace).is_empty(), "said once");
    }

    #[test]
    fn a_removal_forgives_one_number_and_a_seq_going_back_is_a_restart() {
        let mut fleet = Fleet::new("ember");
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        fleet.apply("ember/b1/service/a/state", &state("active", 5), true, t0);
        fleet.apply("ember/b1/service/b/state", &state("active", 6), true, t0);
        fleet.apply("ember/b1/service/b/state", b"", true, t0); // seq 7, unseen
        fleet.apply("ember/b1/service/a/state", &state("failed", 8), true, t0);
        assert!(fleet.missed(t0 + grace, grace).is_empty());
        let changes = fleet.apply("ember/b1/service/a/state", &state("active", 2), true, t0);
        assert!(changes.contains(&Change::Restarted {
            device: "b1".into()
        }));
        assert_eq!(fleet.boards["b1"].seq(), 2);
        // The same state again (a republish) is no change.
        assert!(fleet
            .apply("ember/b1/service/a/state", &state("active", 2), true, t0)
            .is_empty());
    }
}
