//! What the runtime keeps for each service beside the engine's unit: the effects of its
//! current run, the ring of its output, and what was last published about it.
//!
//! One record per service, under the name its spec already holds (an `Arc<str>` shared by
//! the engine, the child table, the output pipes and the timeline: one copy of a name per
//! service). It was three maps keyed by three copies of the name; a hash table is up to
//! half empty, and at 1,000 services those three tables alone were 600 bytes of every
//! service. The record is boxed for the same reason: an empty slot costs a pointer.

use super::output::LogRing;
use crate::supervisor::model::{Exit, Pid, State, Sub, Unit, Want};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// Every service's record, by its shared name.
#[derive(Default)]
pub(super) struct Services(HashMap<Arc<str>, Box<Kept>>);

impl Services {
    pub(super) fn get(&self, name: &str) -> Option<&Kept> {
        self.0.get(name).map(|kept| &**kept)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Kept> {
        self.0.get_mut(name).map(|kept| &mut **kept)
    }

    /// The record of `name`, made empty the first time.
    pub(super) fn entry(&mut self, name: &Arc<str>) -> &mut Kept {
        self.0.entry(name.clone()).or_default()
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Box<Kept>> {
        self.0.remove(name)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Kept)> {
        self.0.iter().map(|(name, kept)| (name, &**kept))
    }
}

/// One service's record.
#[derive(Default)]
pub(super) struct Kept {
    pub(super) proc: Proc,
    /// Its last lines, for `ember ctl logs` (boxed, made at its first line: a quiet
    /// service has none).
    pub(super) log: Option<Box<LogRing>>,
    /// What was last published about it, so an unchanged status is not sent twice, and
    /// its seq: a status read gives the seq of the service's last published change.
    pub(super) said: Option<(Said, u64)>,
    /// The limit on the log lines of its restarts (boxed, made at its first run's end).
    pub(super) restart_lines: Option<Box<super::restarts::RestartLines>>,
}

impl Kept {
    /// Its ring of lines, made at the first.
    pub(super) fn log(&mut self) -> &mut LogRing {
        self.log.get_or_insert_with(Box::default)
    }
}

/// The effects attached to one service's current run.
#[derive(Default)]
pub(super) struct Proc {
    /// The process group the service was spawned in, while it may still have members.
    pub(super) pgid: Option<Pid>,
    /// The session the service was spawned in (its first pid: it calls setsid).
    pub(super) session: Option<Pid>,
    pub(super) probes: Vec<AbortHandle>,
    pub(super) notify: Option<crate::supervisor::notify::Listening>,
    /// `ready = { log = ... }`: the run it applies to and the compiled pattern (boxed: few
    /// services have one, and a regex is large).
    pub(super) log_ready: Option<Box<super::log_ready::LogReady>>,
    /// Whether its last spawn went into its cgroup (`Cgroups::path`; not kept here: a
    /// path per service is 100 bytes of every service).
    pub(super) in_cgroup: bool,
    /// OOM kills counted in that cgroup before this run: more at its exit means one hit it.
    pub(super) oom_kills_before: u64,
    /// The cgroup's CPU time (usage_usec) before this run: what a run used is the rest.
    pub(super) cpu_before: u64,
    /// What few services need noted about a run (boxed, and made when first needed: inline
    /// it cost every service 0.2 KiB).
    pub(super) notes: Option<Box<Notes>>,
    /// SIGKILL went to its cgroup's processes (by cgroup.kill) since its last spawn.
    pub(super) cgroup_killed: bool,
}

impl Proc {
    /// Its notes, made if it has none.
    pub(super) fn notes(&mut self) -> &mut Notes {
        self.notes.get_or_insert_with(Box::default)
    }

    /// Its notes, if any were made.
    pub(super) fn noted(&self) -> Option<&Notes> {
        self.notes.as_deref()
    }
    /// Whether `run` is not yet noted in `slot` (and notes it): what is said once a run.
    pub(super) fn first_in_run(
        &mut self,
        run: u64,
        slot: fn(&mut Notes) -> &mut Option<u64>,
    ) -> bool {
        slot(self.notes()).replace(run) != Some(run)
    }
}

/// What was heard from, and said about, a service's run: notify senders, STATUS= held
/// back, and what was logged once a run.
#[derive(Default)]
pub(super) struct Notes {
    /// The run whose refused main pid (sd_notify MAINPID=, a pid file) was logged: once
    /// a run, however often it is said.
    pub(super) main_pid_refused: Option<u64>,
    /// The last process heard on its notify socket, and in which run: its next message
    /// is heard without looking at it again (a flood costs no lookup per message).
    pub(super) notify_sender: Option<(u64, Pid)>,
    /// When its next STATUS= may be taken, and the one said since that waits till then
    /// (with its run).
    pub(super) status_due: Option<std::time::Instant>,
    pub(super) status_waiting: Option<(u64, String)>,
    /// The run in which its readiness check was logged as one that cannot run.
    pub(super) check_unrunnable: Option<u64>,
    /// The run in which its STOPPING=1 was logged.
    pub(super) told_stopping: Option<u64>,
    /// The last process not its own whose message was ignored, and in which run (it was
    /// logged then: once a run).
    pub(super) notify_refused: Option<(u64, Pid)>,
}

/// What a published status said of a service: a new status that says the same is not
/// sent again.
#[derive(Debug, PartialEq)]
pub(super) struct Said {
    pub(super) state: State,
    pub(super) sub: Sub,
    want: Want,
    pid: Option<Pid>,
    restarts: u32,
    last_exit: Option<Exit>,
    reason: Option<Box<str>>,
    status_text: Option<Box<str>>,
}

impl Said {
    pub(super) fn of(unit: &Unit) -> Said {
        Said {
            state: unit.state,
            sub: unit.sub,
            want: unit.want,
            pid: unit.pid,
            restarts: unit.restarts,
            last_exit: unit.last_exit,
            reason: unit.reason.as_deref().map(Box::from),
            status_text: unit.status_text.as_deref().map(Box::from),
        }
    }

    pub(super) fn same_as(&self, unit: &Unit) -> bool {
        self.state == unit.state
            && self.sub == unit.sub
            && self.want == unit.want
            && self.pid == unit.pid
            && self.restarts == unit.restarts
            && self.last_exit == unit.last_exit
            && self.reason.as_deref() == unit.reason.as_deref()
            && self.status_text.as_deref() == unit.status_text.as_deref()
    }
}
