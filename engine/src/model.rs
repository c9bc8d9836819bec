//! Plain data the engine reasons about: states, wants, exits, and the per-service record.

use crate::spec::ServiceSpec;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::Duration;

pub type Pid = i32;

// The states, sub-states and wants are the protocol's: the engine decides in the same
// words every client reads, with no translation to drift.
pub use ember_ipc::{RunResult, State, Sub, Want};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

/// Everything the engine knows about one service. Times are durations on the caller's
/// monotonic clock.
#[derive(Debug, Clone)]
pub struct Unit {
    pub spec: std::sync::Arc<ServiceSpec>,
    pub want: Want,
    pub state: State,
    pub sub: Sub,
    /// When `state` was entered.
    pub since: Duration,
    /// The main process, when there is one.
    pub pid: Option<Pid>,
    /// Increases at every spawn; readiness reports carry it so stale ones are dropped.
    pub run: u64,
    /// What the timer means depends on the state (ready timeout, backoff, stop timeout, watchdog).
    pub deadline: Option<Duration>,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Failures in a row; decides the backoff. Reset once a run stays up restart_delay_max.
    pub consecutive_failures: u32,
    /// When recent failures happened, for start_limit.
    pub failures: VecDeque<Duration>,
    pub active_since: Option<Duration>,
    pub last_exit: Option<Exit>,
    /// How the last run that ended went. Outlives a restart.
    pub result: Option<RunResult>,
    /// Why it is failed or blocked, in words.
    pub reason: Option<String>,
    /// sd_notify STATUS=.
    pub status_text: Option<String>,
    /// A restart was asked for: stop, then start again.
    pub restart_pending: bool,
    /// Set while stopping because something went wrong: the failure to record on exit.
    pub failing: Option<(Sub, String)>,
    /// A reload changed the spec while it ran: applied once it has stopped.
    pub pending_spec: Option<Box<ServiceSpec>>,
    /// A reload removed it: dropped once it has stopped.
    pub removing: bool,
    /// An instance made by a start that ended by itself, its work done (exit 0, not to
    /// run again): it goes as one stopped does, but said [`Action::Done`] first.
    ///
    /// [`Action::Done`]: crate::engine::Action::Done
    pub done: bool,
    /// A scheduled oneshot: when its next run is due (None: not armed, e.g. stopped).
    pub next_run: Option<Duration>,
    /// The time that run is counted from, before its jitter: the next is a period after.
    pub next_base: Duration,
    /// A scheduled oneshot's schedule is on (wanted up): armed once, then kept by its
    /// runs. Not the same as `next_run` being set: after its only run (after_boot alone)
    /// it is on with no next run, and must not be armed again.
    pub schedule_on: bool,
    /// A scheduled oneshot: a run is asked for (its time came, or a start command), and
    /// it starts as soon as it may.
    pub due: bool,
    /// The count of the engine's tally it is in.
    pub(crate) class: crate::engine::Class,
    /// What it last passed on to what requires it (see `Engine::touch`); None: not
    /// known, and looked through.
    pub(crate) passed_on: Option<crate::engine::PassedOn>,
}

impl Unit {
    pub fn new(spec: ServiceSpec, now: Duration) -> Unit {
        Unit {
            want: if spec.enabled { Want::Up } else { Want::Down },
            spec: std::sync::Arc::new(spec),
            state: State::Inactive,
            sub: Sub::Dead,
            since: now,
            pid: None,
            run: 0,
            deadline: None,
            restarts: 0,
            consecutive_failures: 0,
            failures: VecDeque::new(),
            active_since: None,
            last_exit: None,
            result: None,
            reason: None,
            status_text: None,
            restart_pending: false,
            failing: None,
            pending_spec: None,
            removing: false,
            done: false,
            next_run: None,
            next_base: Duration::ZERO,
            schedule_on: false,
            due: false,
            class: crate::engine::Class::Settled,
            passed_on: None,
        }
    }

    /// Has a process or is about to: what a dependency must wait for before stopping.
    pub fn is_running(&self) -> bool {
        matches!(
            self.state,
            State::Activating | State::Active | State::Deactivating
        )
    }
}
