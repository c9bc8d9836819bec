//! What the tasks around the runtime tell it ([`Feed`](super::Feed)): output lines (to the
//! ring, the log and the readiness checks), readiness, main pids (checked to be the
//! service's own) and notify messages.

use super::kept::Kept;
use super::untold::{Held, TELL_AFTER};
use std::time::Duration;

/// How often a service's STATUS= is taken at most (see `status_said`).
const STATUS_EVERY: Duration = Duration::from_millis(100);
use super::{ChildOwner, Feed, Runtime, LAST_LINES_MOST, LAST_LINES_QUIET};
use crate::supervisor::cgroup;
use crate::supervisor::engine::Input;
use crate::supervisor::model::Pid;
use crate::supervisor::output;
use crate::supervisor::usage::{self, Stat};
use crate::supervisor::{notify, spawn, status};
use ember_ipc::throttle::Admit;
use nix::sys::signal::kill;
use nix::unistd::Pid as NixPid;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

impl Runtime {
    /// At most `most` of what is queued in the feed, without waiting.
    pub(super) fn serve_feed(&mut self, feed: &mut mpsc::Receiver<Feed>, most: usize) {
        for _ in 0..most {
            match feed.try_recv() {
                Ok(item) => self.on_feed(item),
                Err(_) => return,
            }
        }
    }

    /// Once the main loop has ended: what the services printed last (the pipes of those
    /// just stopped still hold it, read by another task), until the feed has been quiet
    /// for a moment, so that the log holds a stopped service's last words.
    pub(super) async fn last_lines(&mut self, feed: &mut mpsc::Receiver<Feed>) {
        let most = Instant::now() + LAST_LINES_MOST;
        while let Ok(Some(item)) = tokio::time::timeout_at(
            most.min(Instant::now() + LAST_LINES_QUIET).into(),
            feed.recv(),
        )
        .await
        {
            // Lines only: readiness and the rest are for services that are gone.
            if matches!(item, Feed::Line { .. }) {
                self.on_feed(item);
            }
        }
    }

    pub(super) fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Line {
                name,
                run,
                stream,
                line,
                to_log,
            } => {
                if to_log {
                    self.copy_to_log(&name, stream, &line);
                }
                let ready = self
                    .services
                    .get_mut(&name)
                    .and_then(|k| k.proc.log_ready.as_deref_mut())
                    .is_some_and(|l| l.matches(&name, run, &line));
                let time = status::usec(std::time::SystemTime::now());
                let entry = self
                    .services
                    .entry(&name)
                    .log()
                    .push(&name, stream, line, time);
                // Shared only with a follower (`ember ctl logs -f`, a subscriber).
                if self.lines.receiver_count() > 0 {
                    self.lines.send(Arc::new(entry));
                }
                if ready {
                    let name = name.to_string();
                    self.input(Input::Ready { name, run });
                }
            }
            Feed::Ready { name, run } => self.input(Input::Ready { name, run }),
            Feed::MainPid { name, run, pid } => self.claim_main_pid(name, run, pid),
            Feed::Notify {
                name,
                run,
                sender,
                trusted,
                message,
            } => {
                if !self.heard_from(&name, run, sender, trusted) {
                    return;
                }
                match message {
                    notify::Message::Ready => {
                        // The status said before comes first: a service is published ready
                        // with what it said then. (Only while it starts: READY=1 again
                        // changes nothing, and would let a flood of both through.)
                        if self.activating(&name) {
                            self.tell_status_waiting(&name);
                        }
                        self.input(Input::Ready { name, run })
                    }
                    notify::Message::Watchdog => self.input(Input::WatchdogPing { name, run }),
                    notify::Message::Status(text) => self.status_said(name, run, text),
                    notify::Message::MainPid(pid) => self.claim_main_pid(name, run, pid),
                    notify::Message::WatchdogTrigger => {
                        self.input(Input::WatchdogTrigger { name, run })
                    }
                    notify::Message::ExtendTimeout(by) => {
                        self.input(Input::ExtendTimeout { name, run, by })
                    }
                    notify::Message::Stopping => {
                        // Once a run: a service that says it again and again does not
                        // fill the log.
                        if self
                            .services
                            .get_mut(&name)
                            .is_some_and(|k| k.proc.first_in_run(run, |n| &mut n.told_stopping))
                        {
                            crate::log::info!("{name}: says it is stopping");
                        }
                    }
                }
            }
            Feed::Reexec {
                binary,
                pid,
                answer,
                origin,
                reply,
            } => self.answered_reexec(binary, pid, answer, &origin, reply),
            // Asked before its probe was aborted (the service stopped starting since):
            // nothing waits for it, and nothing would kill it.
            Feed::RunCheck { name, done, .. } if done.is_closed() || !self.activating(&name) => {}
            Feed::RunCheck {
                name,
                run,
                argv,
                done,
            } => match spawn::spawn_helper(&argv) {
                Ok(pid) => {
                    let of = Some(self.shared_name(&name));
                    self.children.insert(pid, ChildOwner::Check { of, done });
                }
                Err(e) => {
                    // Once a run (it is tried again every 250ms): not a line per try.
                    if self
                        .services
                        .get_mut(&name)
                        .is_some_and(|k| k.proc.first_in_run(run, |n| &mut n.check_unrunnable))
                    {
                        crate::log::warn!("{name}: its readiness check cannot run ({e}); it is not ready until it can and exits 0 (tried again every 250ms, said once a run); fix ready = {{ exec = {argv:?} }}");
                    }
                    let _ = done.send(false);
                }
            },
        }
    }

    /// Copies a service's line to ember's own log, within the rate limits (the service's
    /// own, then all services'); says how many were left out when it copies again.
    fn copy_to_log(&mut self, name: &str, stream: ember_ipc::Stream, line: &str) {
        let now = Instant::now();
        let key = self.shared_name(name);
        let ring = self.services.entry(&key).log();
        let Admit::Yes { held_back } = ring.copies(now).admit(now) else {
            self.untold.add(Held::Lines, key, now);
            return;
        };
        if self.copies_of_all.admit(now) == Admit::No {
            ring.copies(now).hold_back();
            self.untold.add(Held::Lines, key, now);
            return;
        }
        if held_back > 0 {
            note_held_back(name, held_back);
        } else if ring.copies(now).holds_back() {
            // Told with a later line, at most once a second, or by the timer.
            self.untold.add(Held::Lines, key, now);
        }
        tracing::info!(target: "ember::service", service = %name, stream = stream.word(), "{name}: {line}");
    }

    /// Counts the lines `name` held back, within the limit for all services (a thousand
    /// floods do not become a thousand notes a second); when that limit says not now,
    /// returns when to try again.
    pub(super) fn tell_lines_held_back(&mut self, name: &str, now: Instant) -> Option<Instant> {
        let ring = self.services.get_mut(name).and_then(|k| k.log.as_mut())?;
        if self.copies_of_all.admit(now) == Admit::No {
            return Some(now + TELL_AFTER);
        }
        let held_back = ring.copies(now).take_held_back();
        if held_back > 0 {
            note_held_back(name, held_back);
        }
        None
    }

    /// A service's STATUS=, taken at most once each [`STATUS_EVERY`]: each is published
    /// (subscribers, MQTT, D-Bus), and a service that says its progress a thousand times
    /// a second must not make ember publish a thousand times a second. The last one said
    /// waits for its turn, and is always taken.
    fn status_said(&mut self, name: String, run: u64, text: String) {
        let now = Instant::now();
        let key = self.shared_name(&name);
        let proc = &mut self.services.entry(&key).proc;
        match proc
            .noted()
            .and_then(|n| n.status_due)
            .filter(|due| now < *due)
        {
            Some(due) => {
                if proc.notes().status_waiting.replace((run, text)).is_none() {
                    self.untold.again(Held::Status, key, due);
                }
            }
            None => {
                proc.notes().status_due = Some(now + STATUS_EVERY);
                proc.notes().status_waiting = None;
                self.input(Input::StatusText { name, run, text });
            }
        }
    }

    /// The status that waited for its turn, if one did.
    pub(super) fn tell_status_waiting(&mut self, name: &str) {
        let Some(proc) = self.services.get_mut(name).map(|k| &mut k.proc) else {
            return;
        };
        if let Some((run, text)) = proc.notes.as_mut().and_then(|n| n.status_waiting.take()) {
            proc.notes().status_due = Some(Instant::now() + STATUS_EVERY);
            let name = name.to_owned();
            self.input(Input::StatusText { name, run, text });
        }
    }

    /// Whether a notify message from `sender` is the service's to send (systemd's
    /// NotifyAccess=all): from its main process or another of its own (see [`owns`]),
    /// whatever its user (a daemon may drop to one of its own), or from one of root's,
    /// ember's or the service's user that is gone already (a short-lived sender such as
    /// `systemd-notify` may have exited before its message is read). A live process of
    /// another service, or one left from its previous run, is not heard, nor one of
    /// another user that is gone: it is said once a run.
    fn heard_from(&mut self, name: &str, run: u64, sender: Pid, trusted: bool) -> bool {
        let main = self.engine.unit(name).and_then(|u| u.pid);
        let Some(proc) = self.services.get(name).map(|k| &k.proc) else {
            return false;
        };
        // No pid (a sender in a PID namespace ember cannot see): by its user alone.
        if sender <= 0 {
            return trusted;
        }
        if main == Some(sender) || proc.noted().and_then(|n| n.notify_sender) == Some((run, sender))
        {
            return true;
        }
        // Nor is a flood from one process refused a lookup per message.
        if proc.noted().and_then(|n| n.notify_refused) == Some((run, sender)) {
            return false;
        }
        let gone = kill(NixPid::from_raw(sender), None) == Err(nix::errno::Errno::ESRCH)
            || usage::stat(sender).is_none();
        let own = if gone {
            trusted
        } else {
            self.owns(name, sender)
        };
        let Some(proc) = self.services.get_mut(name).map(|k| &mut k.proc) else {
            return false;
        };
        if own {
            // The next message from it is heard without looking again.
            proc.notes().notify_sender = Some((run, sender));
        } else {
            let told = proc
                .noted()
                .and_then(|n| n.notify_refused)
                .is_some_and(|(r, _)| r == run);
            proc.notes().notify_refused = Some((run, sender));
            if told {
                return false;
            }
            crate::log::warn!("{name}: ignoring notify messages from pid {sender}: not a process of this service (said once a run: later ones are ignored without a word)");
        }
        own
    }

    /// A new main pid (forking pid file, sd_notify MAINPID=): supervise it from now on.
    fn claim_main_pid(&mut self, name: String, run: u64, pid: Pid) {
        let running = self
            .engine
            .unit(&name)
            .is_some_and(|u| u.run == run && u.is_running());
        if !running || self.engine.unit(&name).and_then(|u| u.pid) == Some(pid) {
            return;
        }
        // It may have died before we learnt its pid: its exit was kept for this.
        let exited = self.unclaimed.iter().position(|(p, _)| *p == pid);
        if exited.is_none() && !self.owns(&name, pid) {
            // Once a run: a service that says it again and again does not fill the log.
            if self
                .services
                .get_mut(&name)
                .is_some_and(|k| k.proc.first_in_run(run, |n| &mut n.main_pid_refused))
            {
                crate::log::warn!("{name}: ignoring main pid {pid}: not a process of this service (said once a run: later ones are ignored without a word)");
            }
            return;
        }
        self.children
            .insert(pid, ChildOwner::Service(Arc::from(name.as_str())));
        if let Some(Kept { proc, .. }) = self.services.get_mut(&name) {
            // The first process's group is only the service's while it has members.
            let group = nix::unistd::getpgid(Some(NixPid::from_raw(pid)))
                .map(|g| g.as_raw())
                .ok();
            if let Some(pgid) = proc.pgid {
                if group != Some(pgid) && kill(NixPid::from_raw(-pgid), None).is_err() {
                    proc.pgid = None;
                }
            }
        }
        self.input(Input::MainPid {
            name: name.clone(),
            run,
            pid,
        });
        if let Some((_, exit)) = exited.and_then(|i| self.unclaimed.remove(i)) {
            self.children.remove(&pid);
            self.exited(name, pid, exit);
        }
    }

    /// Whether `pid` may be the service's main process: in the session it was started in,
    /// a descendant of its processes, or an orphan reparented to us that belongs to no
    /// other service. Never PID 1 or ember itself: a service must not make ember signal
    /// an arbitrary process.
    fn owns(&self, name: &str, pid: Pid) -> bool {
        let own = std::process::id() as Pid;
        if pid <= 1 || pid == own {
            return false;
        }
        if matches!(self.children.get(&pid), Some(ChildOwner::Service(other)) if **other != *name) {
            return false;
        }
        // In its cgroup: its own, whatever its session or parent.
        if let Some(path) = self.cgroup_path(name) {
            if cgroup::procs(&path).contains(&pid) {
                return true;
            }
        }
        let session = self.services.get(name).and_then(|k| k.proc.session);
        let known: Vec<Pid> = [session, self.engine.unit(name).and_then(|u| u.pid)]
            .into_iter()
            .flatten()
            .collect();
        let mut current = pid;
        for _ in 0..64 {
            let Some(Stat {
                ppid, session: sid, ..
            }) = usage::stat(current)
            else {
                return false;
            };
            if current == pid
                && (Some(sid) == session || (ppid == own && !self.children.contains_key(&pid)))
            {
                return true;
            }
            if known.contains(&ppid) {
                return true;
            }
            if ppid <= 1 || ppid == own {
                return false;
            }
            current = ppid;
        }
        false
    }
}

pub(super) fn note_held_back(name: &str, held_back: u64) {
    crate::log::warn!(
        "{name}: {held_back} lines were not copied to this log (more than {} a second from it, or {} from all services); `ember ctl logs {name}` shows its last {}",
        output::COPY_RATE,
        output::COPY_RATE_ALL,
        ember_ipc::LOG_LINES_KEPT
    );
}
