//! `ember ctl reexec`, the old binary's side: ask the new binary whether it reads this
//! one's handover, hand it every service (see `super::super::handover`), and exec it in
//! PID 1's place. Every failure before the exec leaves this binary running, and says so.

use super::super::handover::{self, CarriedProc, Handover};
use super::super::output;
use super::kept::{Proc, Said};
use super::{ChildOwner, Feed, Runtime};
use crate::config::Readiness;
use ember_ipc::{ErrorKind, ReexecArgs, Reply};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the new binary has to say whether it reads the handover.
const ASK_WITHIN: Duration = Duration::from_secs(10);

impl Runtime {
    /// Starts a reexec: runs `BINARY --handover-accepts FORMAT`; its answer comes back as
    /// [`Feed::Reexec`]. Nothing waits here: the loop goes on serving meanwhile.
    pub(super) fn ask_reexec(
        &mut self,
        args: ReexecArgs,
        origin: &str,
        reply: oneshot::Sender<Reply>,
    ) {
        let binary = args
            .binary
            .map(PathBuf::from)
            .unwrap_or_else(|| self.binary.clone());
        if !binary.is_absolute() {
            let _ = reply.send(Reply::error(
                ErrorKind::BadRequest,
                format!(
                    "--binary {}: give an absolute path (PID 1's directory is not yours)",
                    binary.display()
                ),
            ));
            return;
        }
        // Two at once: only one binary can take PID 1's place, and the other client would
        // be told that one took over that it did not ask for.
        if let Some(asked) = &self.reexec_asked {
            let _ = reply.send(Reply::error(
                ErrorKind::Busy,
                format!(
                    "a reexec is already under way (asking {} whether it takes over); see `ember ctl status` once it is done, then ask again if need be",
                    asked.display()
                ),
            ));
            return;
        }
        if let Some((kind, why)) = self.reexec_refusal() {
            let _ = reply.send(Reply::error(kind, why));
            return;
        }
        if let Some(why) = not_a_program(&binary) {
            let _ = reply.send(Reply::error(
                ErrorKind::Failed,
                format!(
                    "--binary {}: {why}; give the new ember's binary. Not exec'd: ember runs on",
                    binary.display()
                ),
            ));
            return;
        }
        let argv = [
            binary.display().to_string(),
            "--handover-accepts".to_owned(),
            handover::FORMAT.to_string(),
        ];
        let (done, exited) = oneshot::channel();
        let (pid, said) = match super::spawn::spawn_asking(&argv) {
            Ok(asking) => asking,
            Err(e) => {
                let _ = reply.send(Reply::error(
                    ErrorKind::Failed,
                    format!(
                        "cannot run {}: {e}; not exec'd: ember runs on",
                        binary.display()
                    ),
                ));
                return;
            }
        };
        self.children
            .insert(pid, ChildOwner::Check { of: None, done });
        self.reexec_asked = Some(binary.clone());
        crate::log::info!(
            "{origin}: reexec: asking {} whether it takes over",
            binary.display()
        );
        let feed = self.feed_tx.clone();
        let origin = origin.to_owned();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(ASK_WITHIN, answer_of(said, exited))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "it did not answer within {}s",
                        ASK_WITHIN.as_secs()
                    ))
                });
            let _ = feed
                .send(Feed::Reexec {
                    binary,
                    pid,
                    answer,
                    origin,
                    reply,
                })
                .await;
        });
    }

    /// Why a reexec cannot be done now, if it cannot: asked when it is requested, and
    /// again when the new binary has answered (a poweroff or a reload may have come
    /// meanwhile: exec'd then, the next binary would not know of it).
    fn reexec_refusal(&self) -> Option<(ErrorKind, String)> {
        if self.engine.shutting_down() {
            return Some((
                ErrorKind::Busy,
                "ember is shutting down; nothing to hand over, not exec'd".to_owned(),
            ));
        }
        // What a reload is still doing (a service stopping to go, or to restart on its
        // new spec) is done by this binary, which knows the specs those run: the next
        // reads only the configuration as it is now.
        let reloading = self
            .engine
            .units()
            .filter(|u| u.removing || u.pending_spec.is_some())
            .count();
        if reloading > 0 {
            return Some((
                ErrorKind::Busy,
                format!("a reload is still being applied ({reloading} services stopping to go or to restart); try again once they have"),
            ));
        }
        // The next binary reads the configuration again (as a reload does): one that
        // `ember check` fails would leave it with nothing to run, or with services that
        // cannot start, so it is refused now, as a reload is.
        let config = match crate::config::load(&self.config.path).checked() {
            Ok(config) => config,
            Err(failing) => {
                return Some((
                    ErrorKind::InvalidConfig,
                    format!(
                        "{} fails `ember check`; the next binary reads it again: not exec'd, ember runs on:\n{}",
                        self.config.path.display(),
                        failing.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
                    ),
                ));
            }
        };
        self.unapplied(config).map(|changed| {
            (
                ErrorKind::Busy,
                format!(
                    "{} changed since it was loaded ({changed}), and the next binary would take these services over as they run, not as they are now written: run `ember ctl reload` to apply the changes, then reexec; not exec'd, ember runs on",
                    self.config.path.display()
                ),
            )
        })
    }

    /// The services that `config` describes otherwise than they run, with what changed
    /// ("app (command), job (schedule)"), if any. The next binary takes each service over
    /// with its record and the spec it reads: a changed command went on running the old
    /// one, a changed schedule kept its old next run, a changed memory_max was never
    /// written, and a reload after that found nothing to change. (A service added or
    /// removed is not among them: the next binary starts or stops it, as a reload does.)
    fn unapplied(&self, config: crate::config::Config) -> Option<String> {
        let (mut config, _) = crate::adapters::with_adapters(config);
        let made = self
            .engine
            .units()
            .filter(|u| u.spec.transient && !u.removing)
            .map(|u| &*u.spec.name);
        let (specs, _) = super::with_instances(&mut config, made, &self.notify_dir);
        let changed: Vec<String> = self
            .engine
            .units()
            .filter(|u| !u.removing)
            .filter_map(|u| {
                let diff = u.spec.diff(specs.get(&*u.spec.name)?);
                let keys: Vec<&str> = diff.process.into_iter().chain(diff.policy).collect();
                (!keys.is_empty()).then(|| format!("{} ({})", u.spec.name, keys.join(", ")))
            })
            .collect();
        (!changed.is_empty()).then(|| changed.join(", "))
    }

    /// The answer of the binary asked by [`Runtime::ask_reexec`]: exec'd if it takes over
    /// and nothing came meanwhile that forbids it; otherwise the client is told why.
    pub(super) fn answered_reexec(
        &mut self,
        binary: PathBuf,
        pid: super::Pid,
        answer: Result<(), String>,
        origin: &str,
        reply: oneshot::Sender<Reply>,
    ) {
        self.reexec_asked = None;
        // One that did not answer in time still runs: it goes. Not reaped yet, so the pid
        // is still its own (and not a later check's: the one waiting on this check's exit
        // is gone, which is why its sender is closed).
        if matches!(self.children.get(&pid), Some(ChildOwner::Check { done, .. }) if done.is_closed())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let (kind, answer) = match answer {
            Err(why) => (
                ErrorKind::Failed,
                format!(
                    "{} cannot take over from this ember: {why}; not exec'd: ember runs on",
                    binary.display()
                ),
            ),
            Ok(()) => match self.reexec_refusal() {
                Some((kind, why)) => (
                    kind,
                    format!("{why} (it came while {} was asked)", binary.display()),
                ),
                // Returns only when the exec failed.
                None => (ErrorKind::Failed, self.reexec(&binary, origin)),
            },
        };
        crate::log::error!("{origin}: reexec: {answer}");
        let _ = reply.send(Reply::error(kind, answer));
    }

    /// Hands every service to `binary` and execs it. Returns only when that failed, with
    /// why; this binary then carries on as before.
    pub(super) fn reexec(&mut self, binary: &Path, origin: &str) -> String {
        let handover = self.handover();
        let memfd = match handover::write(&handover) {
            Ok(fd) => fd,
            Err(e) => return format!("{e}; not exec'd: ember runs on"),
        };
        let mut kept: Vec<RawFd> = handover.pipes.iter().map(|p| p.fd).collect();
        kept.extend(handover.control);
        kept.extend(handover.watchdog);
        kept.extend(handover.notify.iter().map(|(_, fd)| *fd));
        kept.push(memfd.as_raw_fd());
        for fd in &kept {
            if let Err(e) = handover::close_on_exec(*fd, false) {
                restore(&kept);
                return format!("cannot keep {e} open across the exec; not exec'd: ember runs on");
            }
        }
        crate::log::warn!(
            "{origin}: reexec: handing {} services over to {}",
            handover.engine.units.len(),
            binary.display()
        );
        let argv = [
            binary.display().to_string(),
            "--config".to_owned(),
            self.config.path.display().to_string(),
            "--handover".to_owned(),
            memfd.as_raw_fd().to_string(),
        ];
        let Ok(c_argv) = argv
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
        else {
            restore(&kept);
            return "a path holds a NUL byte; not exec'd: ember runs on".to_owned();
        };
        // A `--wait` in progress cannot be answered by the next binary: said now.
        for waiter in self.waiters.drain(..) {
            waiter.answer(Reply::error(
                ErrorKind::Busy,
                "ember is re-executing (reexec); ask again",
            ));
        }
        // Signals are blocked (always: they are read from a signalfd), and an exec keeps
        // the mask and what is pending: one sent now waits for the new binary. Lines
        // still queued for the console or a file would be lost with this binary's
        // threads.
        crate::supervisor::logfiles::flush(std::time::Duration::from_secs(5));
        crate::log::flush();
        let error = nix::unistd::execv(&c_argv[0], &c_argv).unwrap_err();
        restore(&kept);
        format!("cannot exec {}: {error}; ember runs on", binary.display())
    }

    /// Everything the next binary takes over.
    fn handover(&self) -> Handover {
        let children = self
            .children
            .iter()
            .filter_map(|(pid, owner)| match owner {
                ChildOwner::Service(name) => Some((*pid, name.to_string())),
                ChildOwner::Check { .. } => None,
            })
            .collect();
        let procs = self
            .services
            .iter()
            .map(|(name, kept)| (name, &kept.proc))
            .map(|(name, p)| CarriedProc {
                name: name.to_string(),
                pgid: p.pgid,
                session: p.session,
                cgroup: self.cgroup_path(name),
                oom_kills_before: p.oom_kills_before,
                cpu_before: p.cpu_before,
            })
            .collect();
        let logs = self
            .services
            .iter()
            .filter_map(|(name, kept)| Some((name, kept.log.as_ref()?)))
            .map(|(name, ring)| (name.to_string(), ring.last(name, ember_ipc::LOG_LINES_KEPT)))
            .collect();
        Handover {
            format: handover::FORMAT,
            from: env!("CARGO_PKG_VERSION").to_owned(),
            elapsed: self.origin.elapsed(),
            seq: self.seq,
            system_seq: self.system_seq,
            engine: self.engine.carry(),
            children,
            procs,
            pipes: output::open_pipes(),
            control: self.control_fd,
            watchdog: self.watchdog.as_ref().map(|w| w.raw_fd()),
            logs,
            boot_complete: self.boot_complete,
            config_status: self.config_status.clone(),
            published: self
                .services
                .iter()
                .filter_map(|(name, kept)| Some((name.to_string(), kept.said.as_ref()?.1)))
                .collect(),
            timeline: self.timeline.clone(),
            notify: self
                .services
                .iter()
                .filter_map(|(name, kept)| {
                    Some((name.to_string(), kept.proc.notify.as_ref()?.fd()))
                })
                .collect(),
        }
    }
}

impl Runtime {
    /// The new binary's side: takes over what the previous one handed over, before the
    /// first turn of the loop. The engine has its records already (`Engine::adopt`).
    pub(super) fn take_over(&mut self, h: Handover) {
        crate::log::info!(
            "reexec: taking over from ember {} ({} services, seq {})",
            h.from,
            h.engine.units.len(),
            h.seq
        );
        self.seq = h.seq;
        self.system_seq = h.system_seq;
        self.boot_complete = h.boot_complete;
        self.timeline = h.timeline;
        let now = self.now();
        self.timeline.taken_over(now);
        for (pid, name) in h.children {
            let name = self.shared_name(&name);
            self.children.insert(pid, ChildOwner::Service(name));
        }
        for p in h.procs {
            let name = self.shared_name(&p.name);
            self.services.entry(&name).proc = Proc {
                pgid: p.pgid,
                session: p.session,
                in_cgroup: p.cgroup.is_some(),
                oom_kills_before: p.oom_kills_before,
                cpu_before: p.cpu_before,
                ..Proc::default()
            };
        }
        for (name, lines) in h.logs {
            let name = self.shared_name(&name);
            let ring = self.services.entry(&name).log();
            for line in lines {
                ring.push_carried(&name, line);
            }
        }
        for (name, seq) in h.published {
            if let Some(unit) = self.engine.unit(&name) {
                self.services.entry(&unit.spec.name).said = Some((Said::of(unit), seq));
            }
        }
        // The output pipes: read again by this binary, to the same places.
        for pipe in h.pipes {
            // SAFETY: the fd was handed to this process for this alone.
            let fd =
                unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pipe.fd) };
            let _ = handover::close_on_exec(pipe.fd, true);
            let output = self.engine.unit(&pipe.name).map(|u| match pipe.stream {
                ember_ipc::Stream::Stderr => u.spec.stderr.clone(),
                _ => u.spec.stdout.clone(),
            });
            let sink = output.as_ref().and_then(super::super::logfiles::Sink::of);
            let name = self.shared_name(&pipe.name);
            self.readers.read(fd, name, pipe.run, pipe.stream, sink);
        }
        // What the previous binary's tasks did for a run in progress: the notify socket
        // (at the same path), readiness probes, pid-file watches.
        let running: Vec<(String, u64, Readiness, bool, Option<PathBuf>)> = self
            .engine
            .units()
            .filter(|u| u.is_running() && u.pid.is_some())
            .map(|u| {
                (
                    u.spec.name.to_string(),
                    u.run,
                    u.spec.ready.clone(),
                    u.state == super::super::model::State::Activating,
                    u.spec.pid_file.clone(),
                )
            })
            .collect();
        // The notify sockets, with what was sent to them meanwhile (format 3; bound again
        // after a binary that wrote 2).
        let mut notify_fds: std::collections::BTreeMap<String, std::os::fd::OwnedFd> = h
            .notify
            .into_iter()
            // SAFETY: the fd was handed to this process for this alone.
            .map(|(name, fd)| (name, unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
            .collect();
        for fd in notify_fds.values() {
            let _ = handover::close_on_exec(std::os::fd::AsRawFd::as_raw_fd(fd), true);
        }
        for (name, run, ready, starting, pid_file) in running {
            if ready == Readiness::Notify {
                let path = super::notify::socket_path(&self.notify_dir, &name);
                let owner = self
                    .engine
                    .unit(&name)
                    .and_then(|u| u.spec.user.clone())
                    .and_then(|user| super::effects::owner_ids(&user));
                let feed = self.feed_tx.clone();
                let listening = match notify_fds.remove(&name) {
                    Some(fd) => super::notify::adopt(fd, owner, name.clone(), run, feed),
                    None => super::notify::listen(&path, owner, name.clone(), run, feed),
                };
                match listening {
                    Ok(handle) => {
                        let key = self.shared_name(&name);
                        self.services.entry(&key).proc.notify = Some(handle);
                    }
                    Err(e) => crate::log::warn!("{name}: reexec: its notify socket: {e}"),
                }
            } else if starting && ready == Readiness::PidFile {
                if let Some(path) = pid_file {
                    let handle = super::readiness::watch_pid_file(
                        path,
                        name.clone(),
                        run,
                        self.feed_tx.clone(),
                    );
                    let key = self.shared_name(&name);
                    self.services.entry(&key).proc.probes.push(handle);
                }
            } else if starting {
                self.probe(&name, run, &ready);
            }
        }
        if let (Some(fd), Some(config)) = (h.watchdog, self.config.system.watchdog.clone()) {
            match crate::pid1::watchdog::Watchdog::adopt(fd, &config) {
                Ok(watchdog) => self.watchdog = Some(watchdog),
                Err(e) => crate::log::error!("reexec: the watchdog handed over: {e}"),
            }
        }
    }
}

/// Why `path` cannot be run at all, in words (exec's EACCES says "permission denied" for a
/// directory and for a file without x alike).
fn not_a_program(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) => crate::filekind::not_a_program(&meta).map(|why| format!("it {why}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file".to_owned()),
        Err(_) => None, // exec says why
    }
}

/// What the binary asked says: yes only when it printed [`handover::accepting`] (and no
/// more) and exited 0.
async fn answer_of(
    said: std::os::fd::OwnedFd,
    exited: oneshot::Receiver<bool>,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let expected = handover::accepting(handover::FORMAT);
    let mut words = Vec::new();
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(said)
        .map_err(|e| format!("its answer cannot be read: {e}"))?;
    // Bounded: what prints without end (`yes`) is cut off, and gets EPIPE.
    let _ = pipe.take(256).read_to_end(&mut words).await;
    let succeeded = exited.await.unwrap_or(false);
    if !succeeded {
        return Err(format!(
            "asked whether it reads handover format {}, it failed (not ember, or an ember that reads another format)",
            handover::FORMAT
        ));
    }
    if words != expected.as_bytes() {
        return Err(format!(
            "asked whether it reads handover format {}, it exited 0 without saying so (is it ember?)",
            handover::FORMAT
        ));
    }
    Ok(())
}

/// After a failed exec: the fds kept for it are closed at exec again.
fn restore(kept: &[RawFd]) {
    for fd in kept {
        let _ = handover::close_on_exec(*fd, true);
    }
}
