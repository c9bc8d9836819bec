//! What the engine hands to the next binary at `ember ctl reexec`, and how that binary
//! takes it back: every service's record but its spec (the new binary reads the
//! configuration again, as systemd's daemon-reexec does), on the same monotonic clock
//! (the runtime carries the time since its origin, so every duration here stays valid).

use crate::engine::Engine;
use crate::model::{Exit, Pid, RunResult, State, Sub, Unit, Want};
use crate::spec::{RestartPolicy, ServiceSpec};
use crate::wire::{Reader, Writer};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The engine's part of the state handed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    pub booted_at: Duration,
    pub units: Vec<CarriedUnit>,
}

/// One service's record, without its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedUnit {
    pub name: String,
    pub want: Want,
    pub state: State,
    pub sub: Sub,
    pub since: Duration,
    pub pid: Option<Pid>,
    pub run: u64,
    pub deadline: Option<Duration>,
    pub restarts: u32,
    pub consecutive_failures: u32,
    pub failures: Vec<Duration>,
    pub active_since: Option<Duration>,
    /// The exit code, or the signal's number, of the last exit.
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub result: Option<RunResult>,
    pub reason: Option<String>,
    pub status_text: Option<String>,
    pub restart_pending: bool,
    pub failing: Option<(Sub, String)>,
    pub removing: bool,
    pub next_run: Option<Duration>,
    pub next_base: Duration,
    pub schedule_on: bool,
    pub due: bool,
    pub transient: bool,
    /// How it is stopped and what it is ordered after, from the spec it runs: what the
    /// new binary stops it by when its configuration no longer has it (a removed
    /// service's stand-in), in the same order as the old binary would have.
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub ordered_after: Vec<String>,
}

impl Carried {
    pub fn write(&self, w: &mut Writer) {
        w.duration(self.booted_at);
        w.count(self.units.len());
        for u in &self.units {
            u.write(w);
        }
    }

    /// Reads what [`Carried::write`] wrote; `r.finish()` says whether it all could be.
    pub fn read(r: &mut Reader) -> Carried {
        let mut carried = Carried {
            booted_at: r.duration(),
            units: Vec::new(),
        };
        for _ in 0..r.count() {
            carried.units.push(CarriedUnit::read(r));
        }
        carried
    }
}

impl CarriedUnit {
    fn write(&self, w: &mut Writer) {
        w.str(&self.name);
        w.str(self.want.word());
        w.str(self.state.word());
        w.str(self.sub.word());
        w.duration(self.since);
        w.opt_i64(self.pid.map(i64::from));
        w.u64(self.run);
        w.opt_duration(self.deadline);
        w.u64(u64::from(self.restarts));
        w.u64(u64::from(self.consecutive_failures));
        w.count(self.failures.len());
        for f in &self.failures {
            w.duration(*f);
        }
        w.opt_duration(self.active_since);
        w.opt_i64(self.exit_code.map(i64::from));
        w.opt_i64(self.exit_signal.map(i64::from));
        w.opt_str(self.result.map(|r| r.word()));
        w.opt_str(self.reason.as_deref());
        w.opt_str(self.status_text.as_deref());
        w.bool(self.restart_pending);
        w.some(self.failing.is_some());
        if let Some((sub, why)) = &self.failing {
            w.str(sub.word());
            w.str(why);
        }
        w.bool(self.removing);
        w.opt_duration(self.next_run);
        w.duration(self.next_base);
        w.bool(self.schedule_on);
        w.bool(self.due);
        w.bool(self.transient);
        w.i64(i64::from(self.stop_signal));
        w.duration(self.stop_timeout);
        w.count(self.ordered_after.len());
        for a in &self.ordered_after {
            w.str(a);
        }
    }

    fn read(r: &mut Reader) -> CarriedUnit {
        CarriedUnit {
            name: r.str(),
            want: r.word().unwrap_or_default(),
            state: r.word().unwrap_or_default(),
            sub: r.word().unwrap_or_default(),
            since: r.duration(),
            pid: r.opt_i32(),
            run: r.u64(),
            deadline: r.opt_duration(),
            restarts: r.narrow(),
            consecutive_failures: r.narrow(),
            failures: (0..r.count()).map(|_| r.duration()).collect(),
            active_since: r.opt_duration(),
            exit_code: r.opt_i32(),
            exit_signal: r.opt_i32(),
            result: r.some().then(|| r.word()).flatten(),
            reason: r.opt_str(),
            status_text: r.opt_str(),
            restart_pending: r.bool(),
            failing: r.some().then(|| (r.word().unwrap_or_default(), r.str())),
            removing: r.bool(),
            next_run: r.opt_duration(),
            next_base: r.duration(),
            schedule_on: r.bool(),
            due: r.bool(),
            transient: r.bool(),
            stop_signal: r.narrow_signed(),
            stop_timeout: r.duration(),
            ordered_after: (0..r.count()).map(|_| r.str()).collect(),
        }
    }
}

impl Engine {
    /// Everything the engine knows but the specs, for the next binary.
    pub fn carry(&self) -> Carried {
        let units = self
            .units()
            .map(|u| CarriedUnit {
                name: u.spec.name.to_string(),
                want: u.want,
                state: u.state,
                sub: u.sub,
                since: u.since,
                pid: u.pid,
                run: u.run,
                deadline: u.deadline,
                restarts: u.restarts,
                consecutive_failures: u.consecutive_failures,
                failures: u.failures.iter().copied().collect(),
                active_since: u.active_since,
                exit_code: match u.last_exit {
                    Some(Exit::Code(c)) => Some(c),
                    _ => None,
                },
                exit_signal: match u.last_exit {
                    Some(Exit::Signal(s)) => Some(s as i32),
                    _ => None,
                },
                result: u.result,
                reason: u.reason.clone(),
                status_text: u.status_text.clone(),
                restart_pending: u.restart_pending,
                failing: u.failing.clone(),
                removing: u.removing,
                next_run: u.next_run,
                next_base: u.next_base,
                schedule_on: u.schedule_on,
                due: u.due,
                transient: u.spec.transient,
                stop_signal: u.spec.stop_signal as i32,
                stop_timeout: u.spec.stop_timeout,
                ordered_after: u.spec.ordered_after().cloned().collect(),
            })
            .collect();
        Carried {
            booted_at: self.booted_at(),
            units,
        }
    }

    /// The engine a new binary runs: `specs` from the configuration as it reads it now,
    /// and each service's record as the old binary left it. A service carried that the
    /// configuration no longer has is kept as one a reload removed (it stops, then goes);
    /// one the configuration has that was not carried is new (started if enabled). A
    /// spawn the old binary had not done yet (its turn had not come) is asked again.
    /// Nothing is done until [`Engine::boot`], which reconciles what needs it.
    pub fn adopt(
        mut specs: BTreeMap<String, ServiceSpec>,
        carried: Carried,
        now: Duration,
    ) -> Engine {
        let mut units = BTreeMap::new();
        for c in carried.units {
            let (spec, gone) = match specs.remove(&c.name) {
                Some(spec) => (spec, false),
                None => {
                    let mut stand_in = ServiceSpec::new(&c.name, &[]);
                    stand_in.restart = RestartPolicy::Never;
                    stand_in.stop_signal =
                        Signal::try_from(c.stop_signal).unwrap_or(Signal::SIGTERM);
                    stand_in.stop_timeout = c.stop_timeout;
                    stand_in.after = c.ordered_after.clone();
                    (stand_in, true)
                }
            };
            let mut unit = Unit::new(spec, now);
            std::sync::Arc::make_mut(&mut unit.spec).transient = c.transient && !gone;
            unit.want = if gone { Want::Down } else { c.want };
            unit.removing = c.removing || gone;
            unit.state = c.state;
            unit.sub = c.sub;
            unit.since = c.since;
            unit.pid = c.pid;
            unit.run = c.run;
            unit.deadline = c.deadline;
            unit.restarts = c.restarts;
            unit.consecutive_failures = c.consecutive_failures;
            unit.failures = VecDeque::from(c.failures);
            unit.active_since = c.active_since;
            unit.last_exit = match (c.exit_code, c.exit_signal) {
                (Some(code), _) => Some(Exit::Code(code)),
                (None, Some(n)) => Signal::try_from(n).ok().map(Exit::Signal),
                (None, None) => None,
            };
            unit.result = c.result;
            unit.reason = c.reason;
            unit.status_text = c.status_text;
            unit.restart_pending = c.restart_pending;
            unit.failing = c.failing;
            unit.next_run = c.next_run;
            unit.next_base = c.next_base;
            unit.schedule_on = c.schedule_on;
            unit.due = c.due;
            if unit.state == State::Activating && unit.sub == Sub::Start && unit.pid.is_none() {
                // Its spawn waited its turn in the old binary, which is gone: not spawned.
                unit.state = State::Inactive;
                unit.sub = Sub::Dead;
                unit.deadline = None;
            }
            units.insert(c.name, unit);
        }
        for (name, spec) in specs {
            units.insert(name, Unit::new(spec, now));
        }
        Engine::with_records(units, carried.booted_at)
    }
}
