//! Each service's transitions during this run of ember, for `ember analyze` (the
//! `timeline` request).
//!
//! The engine stays pure: the runtime shows the [`Recorder`] every unit whose status it
//! publishes (every change the engine reports), and the recorder notes what changed and
//! when. Memory is bounded: per service the first spawn and first activation, a few
//! counters, and the last [`TRANSITIONS_KEPT`] transitions (most services have two).
//!
//! A spawn is the engine's `activating`/`start`. The engine may take a service through
//! several states within one input (a spawn that fails at once, a service with no
//! readiness check that is active as soon as it is spawned): a run number that moved on
//! since the last look means a spawn, which happened when the unit entered its current
//! state (the same input, the same instant).

use super::model::{State, Sub, Unit};
use crate::pid1::Role;
use ember_engine::wire::{Reader, Writer};
use ember_ipc::{ServiceTimeline, Timeline, Transition, TRANSITIONS_KEPT};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A failure reason is kept to this many bytes.
const REASON_KEPT: usize = 200;

/// Handed to the next binary at a reexec as it is (its times are on the runtime's clock,
/// which the next binary keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorder {
    /// From the runtime's clock (the engine's `now`) to time since ember started.
    offset: Duration,
    /// The uptime when ember started (not written in a handover: see
    /// [`Recorder::taken_over`]).
    uptime_at_start: Option<Duration>,
    /// Keyed by the spec's own name (one copy per service), boxed: the table is up to
    /// half empty, and an empty slot costs a pointer, not a record.
    services: HashMap<Arc<str>, Box<Record>>,
    boot_complete: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Record {
    first_spawn: Option<Duration>,
    first_active: Option<Duration>,
    spawns: u32,
    failures: u32,
    dropped: u32,
    /// The state, sub-state and run last recorded.
    last: Option<(State, Sub, u64)>,
    recent: VecDeque<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    at: Duration,
    state: State,
    sub: Sub,
    run: u64,
    reason: Option<Box<str>>,
}

impl Record {
    fn push(&mut self, entry: Entry) {
        if self.recent.len() >= TRANSITIONS_KEPT {
            self.recent.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.recent.push_back(entry);
    }
}

/// A run ended badly: failed for good, or waiting out the backoff before a restart.
fn is_failure(state: State, sub: Sub) -> bool {
    state == State::Failed || (state == State::Activating && sub == Sub::AutoRestart)
}

impl Recorder {
    /// For the next binary at a reexec (see `super::handover`).
    pub fn write(&self, w: &mut Writer) {
        w.duration(self.offset);
        w.opt_duration(self.boot_complete);
        w.count(self.services.len());
        for (name, r) in &self.services {
            w.str(name);
            w.opt_duration(r.first_spawn);
            w.opt_duration(r.first_active);
            w.u64(u64::from(r.spawns));
            w.u64(u64::from(r.failures));
            w.u64(u64::from(r.dropped));
            w.some(r.last.is_some());
            if let Some((state, sub, run)) = r.last {
                w.str(state.word());
                w.str(sub.word());
                w.u64(run);
            }
            w.count(r.recent.len());
            for e in &r.recent {
                w.duration(e.at);
                w.str(e.state.word());
                w.str(e.sub.word());
                w.u64(e.run);
                w.opt_str(e.reason.as_deref());
            }
        }
    }

    /// Reads what [`Recorder::write`] wrote; `r.finish()` says whether it all could be.
    pub fn read(r: &mut Reader) -> Recorder {
        let mut recorder = Recorder {
            offset: r.duration(),
            uptime_at_start: crate::pid1::uptime_at_start(),
            boot_complete: r.opt_duration(),
            services: HashMap::new(),
        };
        for _ in 0..r.count() {
            let name = r.str();
            let record = Record {
                first_spawn: r.opt_duration(),
                first_active: r.opt_duration(),
                spawns: r.narrow(),
                failures: r.narrow(),
                dropped: r.narrow(),
                last: r.some().then(|| {
                    (
                        r.word().unwrap_or_default(),
                        r.word().unwrap_or_default(),
                        r.u64(),
                    )
                }),
                recent: (0..r.count())
                    .map(|_| Entry {
                        at: r.duration(),
                        state: r.word().unwrap_or_default(),
                        sub: r.word().unwrap_or_default(),
                        run: r.u64(),
                        reason: r.opt_str().map(String::into_boxed_str),
                    })
                    .collect(),
            };
            recorder.services.insert(name.into(), Box::new(record));
        }
        recorder
    }
}

impl Recorder {
    /// `offset`: how long ember had run when the runtime's clock read zero.
    pub fn new(offset: Duration) -> Recorder {
        Recorder {
            offset,
            uptime_at_start: crate::pid1::uptime_at_start(),
            services: HashMap::new(),
            boot_complete: None,
        }
    }

    /// In the binary that took over at a reexec, `now` being its runtime's clock: the
    /// uptime at start is the first binary's, not this one's (a reexec three days after
    /// boot made the plot say the kernel took three days to hand over). It is not in the
    /// handover, whose format a new field would change, and it need not be: the time
    /// since the start is on CLOCK_MONOTONIC, which is where it began, and on which the
    /// uptime at start is exact for the machine's init (nothing is suspended before it).
    pub fn taken_over(&mut self, now: Duration) {
        let since_start = now.saturating_add(self.offset);
        self.uptime_at_start = crate::pid1::monotonic().and_then(|m| m.checked_sub(since_start));
    }

    /// Notes the unit's state if it changed since the last look. `now` is on the
    /// runtime's clock, as `unit.since` is.
    pub fn observe(&mut self, unit: &Unit, now: Duration) {
        let record = self
            .services
            .entry(unit.spec.name.clone())
            .or_insert_with(|| {
                // Room for two transitions, what most services ever have (started, up):
                // a VecDeque's first push would make room for four.
                Box::new(Record {
                    recent: VecDeque::with_capacity(2),
                    ..Record::default()
                })
            });
        let current = (unit.state, unit.sub, unit.run);
        if record.last == Some(current) {
            return;
        }
        let (last_state, last_run) = match record.last {
            Some((state, _, run)) => (Some(state), run),
            None => (None, 0),
        };
        let spawned = unit.run > last_run;
        if spawned {
            // Every spawn goes through inactive -> activating: `since` is the spawn (or,
            // when the unit moved on within the same input, the same instant).
            let runs = (unit.run - last_run).min(u32::MAX as u64) as u32;
            record.spawns = record.spawns.saturating_add(runs);
            record.first_spawn.get_or_insert(unit.since);
            if (unit.state, unit.sub) != (State::Activating, Sub::Start) {
                record.push(Entry {
                    at: unit.since,
                    state: State::Activating,
                    sub: Sub::Start,
                    run: unit.run,
                    reason: None,
                });
            }
        }
        // `since` moves with the state only: a new sub-state alone happened just now.
        let at = if spawned || last_state != Some(unit.state) {
            unit.since
        } else {
            now
        };
        let failure = is_failure(unit.state, unit.sub);
        if failure {
            record.failures = record.failures.saturating_add(1);
        }
        if unit.state == State::Active {
            record.first_active.get_or_insert(at);
        }
        let reason = unit
            .reason
            .as_deref()
            .filter(|_| failure)
            .map(|r| shorten(r, REASON_KEPT).into());
        record.push(Entry {
            at,
            state: unit.state,
            sub: unit.sub,
            run: unit.run,
            reason,
        });
        record.last = Some(current);
    }

    /// A reload removed the service: its record goes too.
    pub fn remove(&mut self, name: &str) {
        self.services.remove(name);
    }

    /// Every service has settled for the first time (runtime clock).
    pub fn boot_complete(&mut self, now: Duration) {
        self.boot_complete.get_or_insert(now);
    }

    /// The record of every current unit, as the `timeline` request returns it.
    pub fn snapshot<'a>(
        &self,
        units: impl Iterator<Item = &'a Unit>,
        now: Duration,
        device: &str,
        role: Role,
    ) -> Timeline {
        let usec = |d: Duration| {
            d.saturating_add(self.offset)
                .as_micros()
                .min(u64::MAX as u128) as u64
        };
        let empty = Record::default();
        let services = units
            .map(|unit| {
                let record = self.services.get(&*unit.spec.name).map_or(&empty, |r| &**r);
                ServiceTimeline {
                    name: unit.spec.name.to_string(),
                    kind: unit.spec.kind,
                    ready: unit.spec.ready.kind(),
                    enabled: unit.spec.enabled,
                    requires: unit.spec.requires.clone(),
                    wants: unit.spec.wants.clone(),
                    after: unit.spec.after.clone(),
                    first_spawn_usec: record.first_spawn.map(usec),
                    first_active_usec: record.first_active.map(usec),
                    spawns: record.spawns,
                    failures: record.failures,
                    dropped: record.dropped,
                    transitions: record
                        .recent
                        .iter()
                        .map(|e| Transition {
                            at_usec: usec(e.at),
                            state: e.state,
                            sub_state: e.sub,
                            run: e.run,
                            reason: e.reason.as_deref().map(str::to_owned),
                        })
                        .collect(),
                }
            })
            .collect();
        let since_start = now.saturating_add(self.offset);
        Timeline {
            device: device.to_owned(),
            role,
            uptime_at_start_usec: self.uptime_at_start.map(|u| u.as_micros() as u64),
            started_usec: super::status::usec(
                SystemTime::now()
                    .checked_sub(since_start)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            now_usec: usec(now),
            boot_complete_usec: self.boot_complete.map(usec),
            services,
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, with "…" when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceSpec;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    struct Sim {
        unit: Unit,
        recorder: Recorder,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                unit: Unit::new(ServiceSpec::new("db", &["/bin/true"]), ms(0)),
                recorder: Recorder::new(ms(5)),
            }
        }
        /// The unit enters a state at `at` (as set_state does) and the runtime looks at `seen`.
        fn set(&mut self, state: State, sub: Sub, at: u64, seen: u64) {
            if self.unit.state != state {
                self.unit.since = ms(at);
            }
            self.unit.state = state;
            self.unit.sub = sub;
            self.recorder.observe(&self.unit, ms(seen));
        }
        fn spawn(&mut self, at: u64) {
            self.unit.run += 1;
            self.set(State::Activating, Sub::Start, at, at);
        }
        fn timeline(&self) -> ServiceTimeline {
            let t = self.recorder.snapshot(
                std::iter::once(&self.unit),
                ms(1000),
                "b",
                Role::Supervisor,
            );
            t.services.into_iter().next().unwrap()
        }
    }

    fn states(t: &ServiceTimeline) -> Vec<(u64, String, String, u64)> {
        t.transitions
            .iter()
            .map(|e| {
                (
                    e.at_usec / 1000,
                    e.state.to_string(),
                    e.sub_state.to_string(),
                    e.run,
                )
            })
            .collect()
    }

    fn s(at: u64, state: &str, sub: &str, run: u64) -> (u64, String, String, u64) {
        (at, state.into(), sub.into(), run)
    }

    #[test]
    fn a_boot_with_a_restart() {
        let mut sim = Sim::new();
        sim.spawn(10);
        // An unchanged status seen again records nothing.
        sim.recorder.observe(&sim.unit, ms(11));
        sim.unit.reason = Some("exited with code 1".into());
        // A sub-state change within activating: `since` stays; the time is when it was seen.
        sim.set(State::Activating, Sub::AutoRestart, 30, 31);
        // The backoff ends: inactive and spawned again within one input.
        sim.unit.reason = None;
        sim.unit.since = ms(130);
        sim.unit.state = State::Inactive;
        sim.spawn(130);
        sim.set(State::Active, Sub::Running, 200, 200);
        let t = sim.timeline();
        assert_eq!(
            states(&t),
            vec![
                s(15, "activating", "start", 1),
                s(36, "activating", "auto-restart", 1),
                s(135, "activating", "start", 2),
                s(205, "active", "running", 2),
            ]
        );
        assert_eq!(t.first_spawn_usec, Some(15_000));
        assert_eq!(t.first_active_usec, Some(205_000));
        assert_eq!((t.spawns, t.failures, t.dropped), (2, 1, 0));
        assert_eq!(
            t.transitions[1].reason.as_deref(),
            Some("exited with code 1")
        );
    }

    #[test]
    fn a_spawn_the_runtime_never_saw_is_inferred() {
        // No readiness check: spawned and active within one input.
        let mut sim = Sim::new();
        sim.unit.run = 1;
        sim.set(State::Active, Sub::Running, 40, 41);
        let t = sim.timeline();
        assert_eq!(
            states(&t),
            vec![
                s(45, "activating", "start", 1),
                s(45, "active", "running", 1)
            ]
        );
        assert_eq!(t.first_spawn_usec, t.first_active_usec);
        // A spawn that fails at once.
        let mut sim = Sim::new();
        sim.unit.run = 1;
        sim.unit.reason = Some("cannot start: No such file".into());
        sim.set(State::Failed, Sub::Spawn, 50, 52);
        let t = sim.timeline();
        assert_eq!(
            states(&t),
            vec![s(55, "activating", "start", 1), s(55, "failed", "spawn", 1)]
        );
        assert_eq!((t.spawns, t.failures), (1, 1));
        assert_eq!(t.first_active_usec, None);
    }

    #[test]
    fn memory_is_bounded_but_the_first_activation_stays() {
        let mut sim = Sim::new();
        sim.spawn(1);
        sim.set(State::Active, Sub::Running, 2, 2);
        for i in 0..100u64 {
            let t = 10 + i * 10;
            sim.set(State::Deactivating, Sub::StopSigterm, t, t);
            sim.set(State::Inactive, Sub::Dead, t + 1, t + 1);
            sim.spawn(t + 2);
            sim.set(State::Active, Sub::Running, t + 3, t + 3);
        }
        let t = sim.timeline();
        assert_eq!(t.transitions.len(), TRANSITIONS_KEPT);
        assert_eq!(t.dropped as usize, 2 + 400 - TRANSITIONS_KEPT);
        assert_eq!(t.first_spawn_usec, Some(6_000));
        assert_eq!(t.first_active_usec, Some(7_000));
        assert_eq!(t.spawns, 101);
        assert_eq!(t.transitions.last().map(|e| e.run), Some(101));
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(300);
        let cut = shorten(&long, 201);
        assert!(cut.len() <= 204 && cut.ends_with('…'), "{cut}");
        assert_eq!(shorten("short", 10), "short");
    }
}
