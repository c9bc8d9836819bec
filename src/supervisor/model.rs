//! Plain data the engine reasons about: states, wants, exits, and the per-service record.

use crate::config::ServiceSpec;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::Duration;

pub type Pid = i32;

/// systemd's words, so users read them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Inactive,
    /// Spawned, not ready yet; or waiting out a restart backoff.
    Activating,
    /// Ready; a oneshot that exited 0 stays active.
    Active,
    Deactivating,
    Failed,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Activating => "activating",
            State::Active => "active",
            State::Deactivating => "deactivating",
            State::Failed => "failed",
        }
    }
}

/// The detail under a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// inactive, and nothing asks for it
    Dead,
    /// inactive, wanted, waiting for what it is ordered after
    Waiting,
    /// inactive, wanted, but something it requires is down or failed
    Dependency,
    /// activating: spawned, not ready yet
    Start,
    /// activating: a forking daemon's first process exited; waiting for its pid_file
    StartPidFile,
    /// activating: waiting out the restart backoff
    AutoRestart,
    Running,
    /// active oneshot that exited 0
    Exited,
    StopSigterm,
    StopSigkill,
    /// failed: exited non-zero
    ExitCode,
    /// failed: killed by a signal
    Signal,
    /// failed: killed by the kernel's OOM killer (over its memory_max, or out of memory)
    OomKill,
    /// failed: not ready within ready_timeout, or did not stop after SIGKILL
    Timeout,
    /// failed: too many failures within start_limit_interval
    StartLimit,
    /// failed: could not be spawned (missing binary, bad user...)
    Spawn,
    /// failed: missed a watchdog ping
    Watchdog,
}

impl Sub {
    pub fn word(self) -> &'static str {
        match self {
            Sub::Dead => "dead",
            Sub::Waiting => "waiting",
            Sub::Dependency => "dependency",
            Sub::Start => "start",
            Sub::StartPidFile => "start-pid-file",
            Sub::AutoRestart => "auto-restart",
            Sub::Running => "running",
            Sub::Exited => "exited",
            Sub::StopSigterm => "stop-sigterm",
            Sub::StopSigkill => "stop-sigkill",
            Sub::ExitCode => "exit-code",
            Sub::Signal => "signal",
            Sub::OomKill => "oom-kill",
            Sub::Timeout => "timeout",
            Sub::StartLimit => "start-limit",
            Sub::Spawn => "spawn",
            Sub::Watchdog => "watchdog",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Up,
    Down,
}

impl Want {
    pub fn word(self) -> &'static str {
        match self {
            Want::Up => "up",
            Want::Down => "down",
        }
    }
}

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
    pub spec: ServiceSpec,
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
    /// How the last run that ended went, in systemd's words: "success", or the failure
    /// sub-state ("exit-code", "signal", "oom-kill", "timeout"...). Outlives a restart.
    pub result: Option<&'static str>,
    /// Why it is failed or blocked, in words.
    pub reason: Option<String>,
    /// sd_notify STATUS=.
    pub status_text: Option<String>,
    /// A restart was asked for: stop, then start again.
    pub restart_pending: bool,
    /// Set while stopping because something went wrong: the failure to record on exit.
    pub failing: Option<(Sub, String)>,
    /// A reload changed the spec while it ran: applied once it has stopped.
    pub pending_spec: Option<ServiceSpec>,
    /// A reload removed it: dropped once it has stopped.
    pub removing: bool,
}

impl Unit {
    pub fn new(spec: ServiceSpec, now: Duration) -> Unit {
        Unit {
            want: if spec.enabled { Want::Up } else { Want::Down },
            spec,
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
