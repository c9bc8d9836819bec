//! The log lines of a service's restarts, within a limit. A service that crash-loops
//! (`restart = "always"`, `restart_delay = "0s"`, `start_limit = 0`) restarts thousands
//! of times a second, and each restart was three lines in ember's log (its exit, its
//! auto-restart, its next run): on a serial console that is a flood, and PID 1 writing it.
//! So, per service, as for the lines copied from its output ([`RateLimit`]): the first
//! [`BURST`] restarts are logged whole, then one a second, and the rest are counted; their
//! count is told with the next restart logged (one line for both), at most once a second,
//! or by a note once they stop coming, or before the line that ends the loop (failed,
//! stopped). Only the log is spared: every change is still published (status, events,
//! the adapters) and recorded in the timeline.
//!
//! What a restart is, the engine decides: a run's end is held until the change it makes
//! is published, and only an end that leads to `activating (auto-restart)` counts as one.
//! (A forking daemon's launcher that exits 0, a oneshot done, a stop: logged as ever,
//! unless they come on the way back up of a restart held back, as its steps do.)

use super::untold::{Held, TELL_AFTER};
use super::{transition_text, Runtime};
use crate::supervisor::model::{State, Sub, Unit, Want};
use ember_ipc::throttle::{Admit, RateLimit};
use std::sync::Arc;
use std::time::Instant;

/// Restarts of one service logged whole at once, and then a second.
const BURST: u64 = 5;
const RATE: u64 = 1;

/// One service's limit on the lines of its restarts (made at its first run's end).
pub(super) struct RestartLines {
    limit: RateLimit,
    /// The lines of the restart under way are held back: those of its states on the way
    /// back up (auto-restart, start, ...), until it runs again or the way ends.
    quiet: bool,
    /// When a restart was last held back: their count is told once they stop coming.
    last_held: Instant,
    /// How the run ended ("process 12 ended with exit code 1"; whether a warning), kept
    /// until the change it makes says whether it is a restart's.
    end: Option<(bool, Box<str>)>,
}

/// What to log of a change of state, and of the run's end that made it.
#[derive(Debug, PartialEq, Eq)]
enum Say {
    /// Nothing: a restart held back, and counted.
    Held,
    /// Nothing: a step of a restart held back.
    Nothing,
    /// The change, after a note of `held_back` restarts not logged when there were some.
    Change { held_back: u64 },
    /// A restart logged in one line after some were not: the run's end (or, without one,
    /// the change) with the count; the rest of this restart is held back.
    Counted { held_back: u64 },
}

impl RestartLines {
    fn new(now: Instant) -> RestartLines {
        RestartLines {
            limit: RateLimit::new(RATE, BURST, now),
            quiet: false,
            last_held: now,
            end: None,
        }
    }

    /// What to log of `unit`'s new state.
    fn changed(&mut self, unit: &Unit, now: Instant) -> Say {
        if unit.state == State::Activating && unit.sub == Sub::AutoRestart {
            // A restart begins: within the limit, or held back and counted.
            return match self.limit.admit(now) {
                Admit::Yes { held_back } => {
                    // A count not handed out yet (at most once a second) is told now.
                    let held_back = held_back + self.limit.take_held_back();
                    self.quiet = held_back > 0;
                    match held_back {
                        0 => Say::Change { held_back },
                        _ => Say::Counted { held_back },
                    }
                }
                Admit::No => {
                    self.quiet = true;
                    self.last_held = now;
                    Say::Held
                }
            };
        }
        if self.quiet && unit.want == Want::Up && unit.state != State::Failed {
            // Running again, the restart is over: what comes next is logged.
            self.quiet = unit.state != State::Active;
            return Say::Nothing;
        }
        // Failed, stopped or stopping, or anything else: logged.
        self.quiet = false;
        Say::Change {
            held_back: self.limit.take_held_back(),
        }
    }
}

/// Why some restarts were not logged, and where they are all counted.
fn not_logged(name: &str, count: u64, before_this: bool) -> String {
    format!(
        "{count} restarts{} were not logged (ember logs {BURST} of a service's restarts at once, then {RATE} a second; `ember ctl status {name}` counts every one)",
        if before_this { " before this one" } else { "" }
    )
}

fn say_end(name: &str, (warning, what): (bool, Box<str>), note: &str) {
    if warning {
        crate::log::warn!("{name}: {what}{note}");
    } else {
        crate::log::info!("{name}: {what}{note}");
    }
}

/// Logs a change of the service's state, and the run's end that made it, unless they are
/// steps of a restart held back. Returns whether a restart was held back (its count is to
/// be told later, if nothing says it sooner).
pub(super) fn log_change(lines: Option<&mut RestartLines>, unit: &Unit) -> bool {
    let name = &unit.spec.name;
    let Some(lines) = lines else {
        super::log_transition(unit);
        return false;
    };
    let end = lines.end.take();
    match lines.changed(unit, Instant::now()) {
        Say::Held => true,
        Say::Nothing => false,
        Say::Change { held_back } => {
            if held_back > 0 {
                crate::log::warn!("{name}: {}", not_logged(name, held_back, false));
            }
            if let Some(end) = end {
                say_end(name, end, "");
            }
            super::log_transition(unit);
            false
        }
        Say::Counted { held_back } => {
            let note = format!("; {}", not_logged(name, held_back, true));
            match end {
                Some(end) => say_end(name, end, &note),
                None => say_end(name, (true, transition_text(unit).into()), &note),
            }
            false
        }
    }
}

impl Runtime {
    /// Keeps how a run ended (`what`: "process 12 ended with exit code 1", "cannot start:
    /// ..."; a warning or not) until the change it makes is published, which logs it, or
    /// leaves it out with the rest of a restart held back; [`Runtime::say_run_ends`] logs
    /// it if it made no change.
    pub(super) fn hold_run_end(&mut self, name: &str, warning: bool, what: String) {
        let key = self.shared_name(name);
        let lines = self
            .services
            .entry(&key)
            .restart_lines
            .get_or_insert_with(|| Box::new(RestartLines::new(Instant::now())));
        if let Some(end) = lines.end.replace((warning, what.into())) {
            say_end(name, end, "");
        }
        self.run_ends.push(key);
    }

    /// Logs the runs' ends that made no change (a process that was not the main one).
    pub(super) fn say_run_ends(&mut self) {
        for name in std::mem::take(&mut self.run_ends) {
            let end = self
                .services
                .get_mut(&name)
                .and_then(|k| k.restart_lines.as_mut())
                .and_then(|lines| lines.end.take());
            if let Some(end) = end {
                say_end(&name, end, "");
            }
        }
    }

    /// Whether the restart under way is left out of the log (its debug lines too).
    pub(super) fn restart_is_quiet(&self, name: &str) -> bool {
        self.services
            .get(name)
            .and_then(|k| k.restart_lines.as_ref())
            .is_some_and(|lines| lines.quiet)
    }

    /// Remembers to tell how many restarts of `name` were not logged, once they stop
    /// coming, if no line of its says it sooner.
    pub(super) fn restart_notes_later(&mut self, name: &Arc<str>) {
        self.untold
            .add(Held::Restarts, name.clone(), Instant::now());
    }

    /// Tells how many restarts of `name` were not logged, and how it is now, once they
    /// have not come for a while; otherwise returns when to look again (one wakeup a
    /// second while a service crash-loops).
    pub(super) fn tell_restarts_held_back(&mut self, name: &str, now: Instant) -> Option<Instant> {
        let lines = self
            .services
            .get_mut(name)
            .and_then(|k| k.restart_lines.as_mut())?;
        let quiet_from = lines.last_held + TELL_AFTER;
        if quiet_from > now {
            return Some(quiet_from);
        }
        let held_back = lines.limit.take_held_back();
        if held_back > 0 {
            let state = self
                .engine
                .unit(name)
                .map(|u| format!("; it is now {} ({})", u.state.word(), u.sub.word()))
                .unwrap_or_default();
            crate::log::warn!("{name}: {}{state}", not_logged(name, held_back, false));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn unit(state: State, sub: Sub, want: Want) -> Unit {
        let mut unit = Unit::new(
            crate::config::ServiceSpec::new("crashy", &[]),
            Duration::ZERO,
        );
        (unit.state, unit.sub, unit.want) = (state, sub, want);
        unit
    }

    /// The first restarts are logged whole; past them a restart is held back with each of
    /// its steps until it runs again; a second later one is logged, in one line with the
    /// count of those before it; what ends the loop (a stop, a failure) is logged with the
    /// count of what was held back since.
    #[test]
    fn the_first_restarts_whole_then_counts() {
        let start = Instant::now();
        let mut lines = RestartLines::new(start);
        let restart = unit(State::Activating, Sub::AutoRestart, Want::Up);
        let starting = unit(State::Activating, Sub::Start, Want::Up);
        let running = unit(State::Active, Sub::Running, Want::Up);
        let logged = Say::Change { held_back: 0 };
        for _ in 0..BURST {
            assert_eq!(lines.changed(&restart, start), logged);
            assert_eq!(lines.changed(&starting, start), logged);
            assert_eq!(lines.changed(&running, start), logged);
        }
        for _ in 0..100 {
            assert_eq!(lines.changed(&restart, start), Say::Held);
            assert_eq!(lines.changed(&starting, start), Say::Nothing);
            assert_eq!(lines.changed(&running, start), Say::Nothing);
        }
        let later = start + Duration::from_secs(1);
        assert_eq!(
            lines.changed(&restart, later),
            Say::Counted { held_back: 100 }
        );
        assert_eq!(lines.changed(&running, later), Say::Nothing);
        // Running again: a stop is logged, with what was held back since.
        assert_eq!(lines.changed(&restart, later), Say::Held);
        let stopping = unit(State::Deactivating, Sub::StopSigterm, Want::Down);
        assert_eq!(
            lines.changed(&stopping, later),
            Say::Change { held_back: 1 }
        );
        // So is a failure that ends the loop.
        assert_eq!(lines.changed(&restart, later), Say::Held);
        let failed = unit(State::Failed, Sub::StartLimit, Want::Up);
        assert_eq!(lines.changed(&failed, later), Say::Change { held_back: 1 });
        assert_eq!(lines.changed(&running, later), logged);
    }

    /// Each step of a held restart on its way back up (waiting its turn, spawned, not
    /// ready yet) is left out; running again ends it, and what comes next is logged.
    #[test]
    fn a_held_restart_is_quiet_until_it_runs_again() {
        let start = Instant::now();
        let mut lines = RestartLines::new(start);
        let restart = unit(State::Activating, Sub::AutoRestart, Want::Up);
        for _ in 0..BURST {
            assert_eq!(lines.changed(&restart, start), Say::Change { held_back: 0 });
        }
        assert_eq!(lines.changed(&restart, start), Say::Held);
        for (state, sub) in [
            (State::Inactive, Sub::Waiting),
            (State::Activating, Sub::Start),
            (State::Activating, Sub::StartPidFile),
        ] {
            assert_eq!(
                lines.changed(&unit(state, sub, Want::Up), start),
                Say::Nothing
            );
            assert!(lines.quiet, "{state:?} ({sub:?}) ended the quiet");
        }
        let running = unit(State::Active, Sub::Running, Want::Up);
        assert_eq!(lines.changed(&running, start), Say::Nothing);
        assert!(!lines.quiet);
        // Running again: a stop asked for is logged, and tells the one held back.
        let stopping = unit(State::Deactivating, Sub::StopSigterm, Want::Down);
        assert_eq!(
            lines.changed(&stopping, start),
            Say::Change { held_back: 1 }
        );
        let stopped = unit(State::Inactive, Sub::Dead, Want::Down);
        assert_eq!(lines.changed(&stopped, start), Say::Change { held_back: 0 });
    }

    /// A failure on the way back up (not spawned, start limit) ends the loop: logged, with
    /// the count of what was held back, never left out as a step of the restart.
    #[test]
    fn a_failure_on_the_way_up_is_logged_with_the_count() {
        let start = Instant::now();
        let mut lines = RestartLines::new(start);
        let restart = unit(State::Activating, Sub::AutoRestart, Want::Up);
        for _ in 0..BURST {
            lines.changed(&restart, start);
        }
        for _ in 0..3 {
            assert_eq!(lines.changed(&restart, start), Say::Held);
        }
        let starting = unit(State::Activating, Sub::Start, Want::Up);
        assert_eq!(lines.changed(&starting, start), Say::Nothing);
        let failed = unit(State::Failed, Sub::Spawn, Want::Up);
        assert_eq!(lines.changed(&failed, start), Say::Change { held_back: 3 });
        assert!(!lines.quiet);
    }

    /// Restarts that come no faster than the limit are all logged whole, however many:
    /// only a loop is thinned out.
    #[test]
    fn restarts_within_the_rate_are_all_logged_whole() {
        let start = Instant::now();
        let mut lines = RestartLines::new(start);
        let restart = unit(State::Activating, Sub::AutoRestart, Want::Up);
        let running = unit(State::Active, Sub::Running, Want::Up);
        for i in 0..100 {
            let at = start + Duration::from_secs(i);
            assert_eq!(lines.changed(&restart, at), Say::Change { held_back: 0 });
            assert_eq!(lines.changed(&running, at), Say::Change { held_back: 0 });
        }
    }

    #[test]
    fn the_note_says_where_every_restart_is_counted() {
        let note = not_logged("crashy", 7, true);
        assert!(
            note.starts_with("7 restarts before this one were not logged"),
            "{note}"
        );
        assert!(note.contains("ember ctl status crashy"), "{note}");
        assert!(not_logged("crashy", 7, false).starts_with("7 restarts were not logged"));
    }
}
