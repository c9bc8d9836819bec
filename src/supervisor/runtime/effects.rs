//! The runtime's effects on processes: spawning a service (in its turn), signalling
//! it, probing its readiness, reaping every child and telling the engine of each exit.

use super::kept::Kept;
use super::log_ready::LogReady;
use super::{ChildOwner, Runtime, SPAWN_SLICE, UNCLAIMED_KEPT};
use crate::config::{self, Readiness};
use crate::supervisor::cgroup;
use crate::supervisor::engine::Input;
use crate::supervisor::model::{Exit, Pid, State, Sub};
use crate::supervisor::sig::AnySignal;
use crate::supervisor::{notify, readiness, reaper, spawn, usage};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

impl Runtime {
    /// Spawns what waited for a turn of its own, for one [`SPAWN_SLICE`].
    pub(super) fn spawn_deferred(&mut self) {
        self.turn_started = Instant::now();
        while self.turn_started.elapsed() < SPAWN_SLICE {
            let Some((name, run)) = self.deferred.pop_front() else {
                break;
            };
            if let Some(result) = self.spawn(&name, run) {
                self.input(result);
            }
        }
        self.slice_ended = Instant::now();
    }

    /// Spawns a service; returns its result for the engine (spawned, or why not), or
    /// nothing when the spawn is no longer wanted.
    pub(super) fn spawn(&mut self, name: &str, run: u64) -> Option<Input> {
        let unit = self.engine.unit(name)?;
        // A spawn that waited its turn may no longer be wanted: stopped, or superseded by
        // a later run. Its process would have no one to answer to. A stop that came while
        // it waited is waiting for this answer: tell the engine nothing was spawned.
        if unit.run == run && unit.state == State::Deactivating && unit.pid.is_none() {
            return Some(Input::SpawnFailed {
                name: name.to_owned(),
                run,
                error: "stopped before its turn to spawn".to_owned(),
            });
        }
        if unit.run != run
            || unit.state != State::Activating
            || unit.sub != Sub::Start
            || unit.pid.is_some()
        {
            return None;
        }
        let spec = unit.spec.clone();
        let quiet = self.restart_is_quiet(name);
        let proc = &mut self.services.entry(&spec.name).proc;
        if let Some(n) = proc.notify.take() {
            n.abort();
        }
        let mut notify_path = None;
        if spec.ready == Readiness::Notify {
            let path = notify::socket_path(&self.notify_dir, name);
            let owner = spec.user.as_deref().and_then(owner_ids);
            match notify::listen(&path, owner, name.to_owned(), run, self.feed_tx.clone()) {
                Ok(handle) => {
                    proc.notify = Some(handle);
                    notify_path = Some(path);
                }
                Err(e) => {
                    let error = format!("cannot create its notify socket {}: {e}", path.display());
                    return Some(Input::SpawnFailed {
                        name: name.to_owned(),
                        run,
                        error,
                    });
                }
            }
        }
        // Its cgroup: without one it still runs (in its process group), unless it has
        // limits that only a cgroup can apply.
        let mut placed = None;
        if let Some(cgroups) = &self.cgroups {
            match cgroups.prepare(name, &spec.limits, proc.cgroup_killed) {
                Ok(prepared) => {
                    proc.cgroup_killed = prepared.killed;
                    for warning in &prepared.warnings {
                        crate::log::warn!("{name}: {warning}");
                    }
                    (proc.oom_kills_before, proc.cpu_before) = if prepared.made {
                        (0, 0)
                    } else {
                        (
                            cgroup::oom_kills(&prepared.path),
                            usage::cpu_usage_usec(&prepared.path).unwrap_or(0),
                        )
                    };
                    proc.in_cgroup = true;
                    placed = Some(prepared);
                }
                Err(e) if spec.limits.needs_controllers() => {
                    return Some(Input::SpawnFailed {
                        name: name.to_owned(),
                        run,
                        error: format!("{e}; its memory_max, pids_max or cpu_weight need it"),
                    });
                }
                Err(e) => {
                    crate::log::warn!("{name}: {e}; running it in its process group only");
                    proc.in_cgroup = false;
                }
            }
        }
        let cgroup = placed.as_ref().map(|p| crate::supervisor::launch::Cgroup {
            dir: p.dir.as_raw_fd(),
            killed: p.killed,
        });
        let result = spawn::spawn_service(&spec, notify_path.as_deref(), cgroup);
        drop(placed);
        if !self.first_spawn_logged {
            self.first_spawn_logged = true;
            crate::log::info!(
                "first service spawned {} us after ember started (uptime {})",
                crate::pid1::since_start().as_micros(),
                crate::pid1::uptime_text()
            );
        }
        match result {
            Ok(spawned) => {
                if !quiet {
                    crate::log::debug!("{name}: spawned pid {}", spawned.pid);
                }
                proc.pgid = Some(spawned.pid);
                proc.session = Some(spawned.pid);
                // The spec's copy of the name for the process and both pipes (and their
                // lines).
                let shared = spec.name.clone();
                self.children
                    .insert(spawned.pid, ChildOwner::Service(shared.clone()));
                for (fd, stream, output) in [
                    (spawned.stdout, ember_ipc::Stream::Stdout, &spec.stdout),
                    (spawned.stderr, ember_ipc::Stream::Stderr, &spec.stderr),
                ] {
                    if let Some(fd) = fd {
                        self.readers.read(
                            fd,
                            shared.clone(),
                            run,
                            stream,
                            crate::supervisor::logfiles::Sink::of(output),
                        );
                    }
                }
                Some(Input::Spawned {
                    name: name.to_owned(),
                    run,
                    pid: spawned.pid,
                })
            }
            Err(error) => {
                self.hold_run_end(name, true, format!("cannot start: {error}"));
                Some(Input::SpawnFailed {
                    name: name.to_owned(),
                    run,
                    error,
                })
            }
        }
    }

    /// Signals every process of the service: its cgroup's when it has one, else its
    /// process group's; and the main process once, wherever it is.
    /// Sends a service its stop signal (every Kill the engine asks is a stop), then
    /// SIGCONT, as systemd does: a stopped process (a debugger's, a `kill -STOP`) acts on
    /// a signal only once it runs again, and without it the whole stop_timeout ran out
    /// and it was SIGKILLed, its clean exit never run. Not after SIGKILL (it needs none)
    /// nor after a stop_signal that stops it (SIGCONT would undo it).
    pub(super) fn kill(&mut self, name: &str, signal: Signal) {
        self.send(name, signal);
        use Signal::{SIGCONT, SIGKILL, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU};
        if !matches!(
            signal,
            SIGKILL | SIGCONT | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU
        ) {
            self.send(name, SIGCONT);
        }
    }

    /// Whether [`Runtime::send`] would reach a process of the service: its main process,
    /// a member of its cgroup, or one of its process group. A oneshot that has run
    /// (active, exited) may have none, or leftovers.
    pub(super) fn has_processes(&self, name: &str) -> bool {
        if self.engine.unit(name).and_then(|u| u.pid).is_some() {
            return true;
        }
        if let Some(path) = self.cgroup_path(name) {
            return !cgroup::procs(&path).is_empty();
        }
        // Signal 0: is anyone in the group (ESRCH: no one).
        let pgid = self.services.get(name).and_then(|k| k.proc.pgid);
        pgid.is_some_and(|g| kill(NixPid::from_raw(-g), None).is_ok())
    }

    /// `signal` to the service's cgroup, or its process group and main process.
    pub(super) fn send(&mut self, name: &str, signal: impl Into<AnySignal>) {
        let signal = signal.into();
        let pid = self.engine.unit(name).and_then(|u| u.pid);
        let pgid = self.services.get(name).and_then(|k| k.proc.pgid);
        crate::log::debug!(
            "{name}: sending {} (pid {pid:?}, group {pgid:?})",
            signal.name()
        );
        if let Some(path) = self.cgroup_path(name) {
            let signalled = cgroup::signal_all(&path, signal);
            if let Some(Kept { proc, .. }) = self.services.get_mut(name) {
                proc.cgroup_killed |= signalled.killed;
            }
            if let Some(pid) = pid.filter(|p| !signalled.members.contains(p)) {
                let _ = signal.to(pid);
            }
            return;
        }
        if let Some(pgid) = pgid {
            // ESRCH when the group has emptied (then its number may be reused): forget it.
            if signal.to(-pgid).is_err() {
                if let Some(Kept { proc, .. }) = self.services.get_mut(name) {
                    proc.pgid = None;
                }
            }
        }
        // The main process outside that group (a forking daemon in a session of its own, a
        // MAINPID= elsewhere) gets it once too: never twice, a shell trap would run twice.
        if let Some(pid) = pid {
            match nix::unistd::getpgid(Some(NixPid::from_raw(pid))).map(|g| g.as_raw()) {
                Ok(group) if Some(group) == pgid => {}
                Ok(group) if group == pid => {
                    let _ = signal.to(-group);
                }
                _ => {
                    let _ = signal.to(pid);
                }
            }
        }
    }

    // Called from two places (a spawn, a takeover): one copy, not one inlined into each.
    #[inline(never)]
    pub(super) fn probe(&mut self, name: &str, run: u64, readiness: &Readiness) {
        let key = self.shared_name(name);
        let proc = &mut self.services.entry(&key).proc;
        match readiness {
            Readiness::Log(pattern) => match config::service::ready_log_regex(pattern) {
                Ok(re) => proc.log_ready = Some(Box::new(LogReady::new(run, re))),
                Err(e) => crate::log::error!("{name}: ready log pattern is invalid: {e}"),
            },
            other => {
                if let Some(handle) =
                    readiness::start(other, name.to_owned(), run, self.feed_tx.clone())
                {
                    proc.probes.push(handle);
                }
            }
        }
    }

    /// Whether `name` is starting: what a readiness check is run for.
    pub(super) fn activating(&self, name: &str) -> bool {
        self.engine
            .unit(name)
            .is_some_and(|u| u.state == State::Activating)
    }

    /// Kills the readiness checks still running for `name`, which has stopped starting
    /// (the probe that waited on them is aborted): a check that never ends would
    /// otherwise outlive its service, one more at each start. Each is a session of its
    /// own, killed whole; its exit is reaped as any, answering no one.
    pub(super) fn end_checks(&self, name: &str) {
        for (pid, owner) in &self.children {
            if let ChildOwner::Check { of: Some(of), .. } = owner {
                if **of == *name {
                    let _ = kill(NixPid::from_raw(-pid), Signal::SIGKILL);
                }
            }
        }
    }

    pub(super) fn reap(&mut self) {
        for (pid, exit) in reaper::reap_all() {
            match self.children.remove(&pid) {
                Some(ChildOwner::Service(name)) => {
                    self.log_exit(&name, pid, exit);
                    self.exited(name.to_string(), pid, exit);
                }
                Some(ChildOwner::Check { of, done }) => {
                    // What a readiness check left behind in its process group (`sleep &`,
                    // a daemon it started) goes with it: otherwise one was left at every
                    // try. Its pid names the group while the group has members (the
                    // kernel gives it to no other process until then).
                    if of.is_some() {
                        let _ = kill(NixPid::from_raw(-pid), Signal::SIGKILL);
                    }
                    let _ = done.send(exit.success());
                }
                None => {
                    crate::log::trace!("reaped orphan {pid} ({exit})");
                    if self.unclaimed.len() == UNCLAIMED_KEPT {
                        self.unclaimed.pop_front();
                    }
                    self.unclaimed.push_back((pid, exit));
                }
            }
        }
    }

    /// A process of the service ended: to the engine, with whether an OOM kill ended it.
    pub(super) fn exited(&mut self, name: String, pid: Pid, exit: Exit) {
        // Its last words: if some were left out of the log, say so now, not at its next line.
        if let Some(ring) = self.services.get_mut(&name).and_then(|k| k.log.as_mut()) {
            let held_back = ring.copies(Instant::now()).take_held_back();
            if held_back > 0 {
                super::feed::note_held_back(&name, held_back);
            }
        }
        let oom_killed = self.oom_killed(&name);
        self.input(Input::Exited {
            name,
            pid,
            exit,
            oom_killed,
        });
    }

    /// Whether the OOM killer has killed in the service's cgroup since its run began.
    fn oom_killed(&self, name: &str) -> bool {
        let before = self
            .services
            .get(name)
            .map_or(0, |k| k.proc.oom_kills_before);
        self.cgroup_path(name)
            .is_some_and(|path| cgroup::oom_kills(&path) > before)
    }

    /// The name of the service as its spec holds it, to key what is kept of it with the
    /// same copy (a name not among the services, which cannot be, gets its own).
    pub(super) fn shared_name(&self, name: &str) -> Arc<str> {
        self.engine
            .unit(name)
            .map_or_else(|| Arc::from(name), |unit| unit.spec.name.clone())
    }

    /// Writes the cgroup limits that a reload changed into the cgroups of the services
    /// running in one: applied in place, nothing restarted (see `ServiceSpec::diff`). One
    /// not running gets them at its next start.
    pub(super) fn apply_cgroup_limits(&self, updated: &[ember_ipc::SpecChange]) {
        let Some(cgroups) = &self.cgroups else {
            return;
        };
        let limits = ember_engine::spec::CGROUP_LIMITS;
        for change in updated {
            let name = change.name.as_str();
            let running = self.engine.unit(name).filter(|u| u.is_running());
            let (Some(unit), Some(_)) = (running, self.cgroup_path(name)) else {
                continue;
            };
            if change.keys.iter().any(|k| limits.contains(&k.as_str())) {
                for warning in cgroups.apply(name, &unit.spec.limits) {
                    crate::log::warn!("{name}: {warning}");
                }
            }
        }
    }

    /// The service's cgroup, when its last spawn went into it.
    pub(super) fn cgroup_path(&self, name: &str) -> Option<PathBuf> {
        self.services.get(name).filter(|k| k.proc.in_cgroup)?;
        self.cgroups.as_ref().map(|c| c.path(name))
    }

    /// Says how a process of the service ended, with the change it makes (see
    /// `restarts`: a restart's lines are within a limit).
    fn log_exit(&mut self, name: &str, pid: Pid, exit: Exit) {
        let stopping = self
            .engine
            .unit(name)
            .is_some_and(|u| u.state == State::Deactivating);
        let warning = !(exit.success() || stopping);
        self.hold_run_end(name, warning, format!("process {pid} ended with {exit}"));
    }
}

/// uid and gid for chowning a notify socket to the service's user.
pub(super) fn owner_ids(user: &str) -> Option<(u32, u32)> {
    match user.parse::<u32>() {
        Ok(uid) => Some((uid, uid)),
        Err(_) => nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
    }
}
