//! The runtime: executes the engine's actions and turns the world into engine inputs.
//!
//! One task owns everything (the engine, the child table, the logs) and waits on: SIGCHLD
//! (reap and dispatch by pid), control requests, feeds from output readers, probes and
//! notify sockets, signals, and the engine's next deadline. Nothing polls: with no
//! deadline pending, an idle ember sleeps until something happens.

use super::cgroup::{self, Cgroups};
use super::engine::{Action, Engine, Input};
use super::model::{Exit, Pid, Unit};
use super::output;
use super::{notify, readiness, reaper, spawn, status, usage};
use crate::config::{self, Config, CtrlAltDel, FailureAction, Readiness};
use crate::pid1::watchdog::{Petting, Watchdog};
use crate::pid1::{Power, Role};
use ember_ipc::broadcast::Broadcast;
use ember_ipc::throttle::{Admit, RateLimit};
use ember_ipc::{ConfigStatus, Event, ReloadReport, Reply, Request, SystemState, SystemStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

mod kept;
mod reexec;
mod requests;

use kept::{Kept, Said, Services};

/// What the tasks around the runtime tell it.
#[derive(Debug)]
pub enum Feed {
    Line {
        name: Arc<str>,
        run: u64,
        stream: ember_ipc::Stream,
        line: String,
        /// Copied to ember's own log (not when it goes to a file of its own).
        to_log: bool,
    },
    Ready {
        name: String,
        run: u64,
    },
    MainPid {
        name: String,
        run: u64,
        pid: Pid,
    },
    Notify {
        name: String,
        run: u64,
        message: notify::Message,
    },
    /// An `exec` readiness check to run; `done` gets whether it exited 0.
    RunCheck {
        argv: Vec<String>,
        done: oneshot::Sender<bool>,
    },
    /// `reexec`: whether `binary` said it takes over this binary's handover format.
    Reexec {
        binary: std::path::PathBuf,
        accepted: bool,
        origin: String,
        reply: oneshot::Sender<ember_ipc::Reply>,
    },
}

/// The runtime's ways in and out: requests from the adapters, the broadcasts of changes
/// and of lines, and the rules of the control socket (changed by a reload).
pub struct Links {
    pub requests: mpsc::Receiver<Request>,
    pub events: Broadcast<Arc<Event>>,
    pub lines: Broadcast<Arc<ember_ipc::LogLine>>,
    pub policy: tokio::sync::watch::Sender<ember_ipc::rights::Policy>,
    /// The control socket's listening fd, handed to the next binary at a reexec.
    pub control_fd: Option<std::os::fd::RawFd>,
    /// The binary ember was started from: what a reexec execs by default.
    pub binary: PathBuf,
}

/// How the supervisor ended, for main to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit the process with this code (not PID 1).
    Exit(i32),
    /// PID 1: finish the shutdown sequence and power off, reboot or halt.
    Power(Power),
}

enum ChildOwner {
    /// The name is the one its output pipes share (one copy per service).
    Service(Arc<str>),
    Check(oneshot::Sender<bool>),
}

pub struct Runtime {
    engine: Engine,
    origin: Instant,
    config: Config,
    children: HashMap<Pid, ChildOwner>,
    /// What it keeps of each service beside the engine's unit (see kept.rs).
    services: Services,
    /// Exits of pids nobody had claimed yet: a forking daemon may die before we read its pid.
    unclaimed: VecDeque<(Pid, Exit)>,
    events: Broadcast<Arc<Event>>,
    lines: Broadcast<Arc<ember_ipc::LogLine>>,
    policy: tokio::sync::watch::Sender<ember_ipc::rights::Policy>,
    seq: u64,
    /// The seq of the system's last change.
    system_seq: u64,
    feed_tx: mpsc::Sender<Feed>,
    /// Reads the services' output (one task for every pipe).
    readers: output::Readers,
    notify_dir: PathBuf,
    system_state: Option<SystemState>,
    role: Role,
    /// Logged once, when every service has settled after start-up.
    boot_complete: bool,
    /// Logged once: how long PID 1 took from its start to the first spawn.
    first_spawn_logged: bool,
    /// When the shutdown began, to log how long stopping the services took.
    shutdown_started: Option<Instant>,
    outcome: Option<Outcome>,
    done: bool,
    /// ember's part of the cgroup2 hierarchy; None: process groups only.
    cgroups: Option<Cgroups>,
    /// Every service's transitions, for `ember analyze`.
    timeline: super::timeline::Recorder,
    /// `--wait`s not answered yet.
    waiters: Vec<requests::Waiter>,
    /// Which configuration runs: the one given, or a fallback from one with errors.
    config_status: ConfigStatus,
    /// What the last reload did, from the engine, for its reply.
    reloaded: Option<ReloadReport>,
    /// Spawns asked for after this turn of the main loop had spent [`SPAWN_SLICE`]
    /// spawning, in the order asked: between two slices the loop serves signals, requests
    /// and exits, so a SIGTERM or a status during the start of thousands of services is
    /// answered at once instead of after all of them.
    deferred: VecDeque<(String, u64)>,
    /// When this turn of the main loop began spawning.
    turn_started: Instant,
    /// The limit on service lines copied to ember's log, all services together.
    copies_of_all: RateLimit,
    /// Services with lines held back from ember's log and not yet counted there, and when
    /// to count them: a flood that ends in silence still gets its "N lines were not
    /// copied" (a timer armed only while something is held back).
    held_back: (BTreeSet<String>, Option<Instant>),
    /// The hardware watchdog, open and petted by this loop.
    watchdog: Option<Watchdog>,
    /// The control socket's listening fd and this binary's path, for a reexec.
    control_fd: Option<std::os::fd::RawFd>,
    binary: PathBuf,
    /// Why the configured watchdog is not open.
    watchdog_error: Option<String>,
}

/// How the runtime ended, and what main needs for the rest of the shutdown.
pub struct Ended {
    pub outcome: Outcome,
    /// The system settings as last reloaded: the shutdown uses those.
    pub system: crate::config::SystemConfig,
    /// For a poweroff, reboot or halt: the watchdog, petted by a thread through the last
    /// steps, until `shutdown::finish` closes it or leaves it armed.
    pub watchdog: Option<Petting>,
}

/// How long after the first line held back its count is written, if no copied line or
/// exit of the service has written it before.
const HELD_BACK_NOTE_AFTER: Duration = Duration::from_secs(1);

const FEED_CAPACITY: usize = 1024;
/// The longest a turn of the main loop spawns before it looks at its other work again.
const SPAWN_SLICE: Duration = Duration::from_millis(10);
const UNCLAIMED_KEPT: usize = 64;

impl Runtime {
    /// Supervises `config` until shutdown completes; returns what to do next.
    pub async fn run(
        mut config: Config,
        config_status: ConfigStatus,
        role: Role,
        links: Links,
        handover: Option<super::handover::Handover>,
    ) -> Ended {
        let Links {
            mut requests,
            events,
            lines,
            policy,
            control_fd,
            binary,
        } = links;
        // Register for SIGCHLD before the first spawn, so no exit is missed.
        let signals = (
            signal(SignalKind::child()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
        );
        let (
            Ok(mut sigchld),
            Ok(mut sigterm),
            Ok(mut sigint),
            Ok(mut sighup),
            Ok(mut sigusr1),
            Ok(mut sigusr2),
        ) = signals
        else {
            crate::log::error!("cannot install signal handlers; not starting any service");
            return Ended {
                outcome: Outcome::Exit(1),
                system: config.system,
                watchdog: None,
            };
        };
        // Handlers are in place: signals that arrived since main (blocked there as PID 1)
        // are delivered now.
        crate::pid1::unblock_signals();
        let (feed_tx, mut feed_rx) = mpsc::channel(FEED_CAPACITY);
        let notify_dir = notify::dir_for(&config.control.socket);
        let cgroups = match Cgroups::setup(role) {
            Ok(c) => {
                crate::log::info!(
                    "services run in cgroups under {} (controllers: {})",
                    c.base().display(),
                    if c.controllers().is_empty() {
                        "none".to_owned()
                    } else {
                        c.controllers().join(", ")
                    }
                );
                Some(c)
            }
            Err(why) => {
                crate::log::warn!("no cgroups ({why}): each service is contained by its process group only, which a process that calls setsid() leaves; memory_max, pids_max and cpu_weight cannot apply");
                None
            }
        };
        // Taking over from a reexec: the previous binary's clock (its origin as far back
        // as it had run) and records.
        let (origin, mut engine) = match &handover {
            Some(h) => (
                Instant::now()
                    .checked_sub(h.elapsed)
                    .unwrap_or_else(Instant::now),
                Engine::adopt(
                    with_instances(
                        &mut config,
                        h.engine
                            .units
                            .iter()
                            .filter(|u| u.transient && !u.removing)
                            .map(|u| u.name.as_str()),
                    ),
                    h.engine.clone(),
                    h.elapsed,
                ),
            ),
            None => (
                Instant::now(),
                Engine::new(std::mem::take(&mut config.services), Duration::ZERO),
            ),
        };
        engine.set_jitter_seed(board_seed());
        let mut rt = Runtime {
            engine,
            origin,
            config,
            children: HashMap::new(),
            services: Services::default(),
            unclaimed: VecDeque::new(),
            events,
            lines,
            policy,
            seq: 0,
            system_seq: 0,
            readers: output::Readers::start(feed_tx.clone()),
            feed_tx,
            notify_dir,
            system_state: None,
            role,
            boot_complete: false,
            first_spawn_logged: false,
            shutdown_started: None,
            outcome: None,
            done: false,
            cgroups,
            timeline: super::timeline::Recorder::new(crate::pid1::since_start()),
            waiters: Vec::new(),
            config_status,
            reloaded: None,
            deferred: VecDeque::new(),
            turn_started: Instant::now(),
            copies_of_all: RateLimit::new(
                output::COPY_RATE_ALL,
                output::COPY_BURST_ALL,
                Instant::now(),
            ),
            held_back: (BTreeSet::new(), None),
            watchdog: None,
            watchdog_error: None,
            control_fd,
            binary,
        };
        let handed_over = handover.is_some();
        if let Some(h) = handover {
            rt.take_over(h);
        }
        // Armed before the first service starts: a boot that hangs is reset too. (One
        // handed over is open already, and kept.)
        rt.apply_watchdog();
        if handed_over {
            crate::log::info!("reexec: took over {} services", rt.engine.units().count());
        }
        let actions = rt.guarded(|engine, now| engine.boot(now));
        rt.execute(actions);
        // Only with [system] metrics_interval: otherwise no timer, no wakeups.
        let mut next_metrics = rt
            .config
            .system
            .metrics_interval
            .map(|d| Instant::now() + d);
        while !rt.done {
            let metrics_due = sleep_until_or_never(next_metrics);
            let held_back_due = sleep_until_or_never(rt.held_back.1);
            let sleep = sleep_until_or_never(rt.engine.next_deadline().map(|d| rt.origin + d));
            // The watchdog is petted by this loop and nothing else: if the loop stalls,
            // the board is reset. Its one wakeup per half timeout is the only cost.
            let pet_due = sleep_until_or_never(rt.watchdog.as_ref().map(Watchdog::due));
            rt.turn_started = Instant::now();
            tokio::select! {
                // In this order: the watchdog, signals and exits first, then requests and
                // timers, the feed (lines, readiness) last. The watchdog first: a busy
                // loop must still pet. The feed after everything that comes one at a
                // time: services that flood their output keep it full, and a branch
                // after it never won (restart delays and stop timeouts never elapsed).
                biased;
                _ = pet_due => {
                    if let Some(watchdog) = &mut rt.watchdog {
                        watchdog.pet(Instant::now());
                    }
                }
                _ = sigterm.recv() => rt.on_signal(Signal::SIGTERM),
                _ = sigint.recv() => rt.on_signal(Signal::SIGINT),
                _ = sigchld.recv() => rt.reap(),
                Some(request) = requests.recv() => rt.on_request(request),
                _ = sigusr1.recv() => rt.on_signal(Signal::SIGUSR1),
                _ = sigusr2.recv() => rt.on_signal(Signal::SIGUSR2),
                _ = sighup.recv() => { let _ = rt.reload("SIGHUP"); }
                _ = sleep => rt.input(Input::Tick),
                _ = held_back_due => rt.note_all_held_back(),
                _ = metrics_due => {
                    rt.publish_metrics();
                    next_metrics = None;
                }
                Some(feed) = feed_rx.recv() => rt.on_feed(feed),
                // Yielding first lets the runtime poll its driver, which is what delivers
                // signals, exits and connections: a loop that never yields would starve it.
                () = tokio::task::yield_now(), if !rt.deferred.is_empty() => {}
            }
            // The spawns that wait get a slice after every turn, whatever the turn served:
            // under a flood of output lines the feed is ready at every turn, and a branch
            // of their own never won (a stop then waited for a spawn that never came).
            if !rt.deferred.is_empty() {
                rt.spawn_deferred();
            }
            rt.check_waiters();
            // A reload may have set, changed or removed the interval.
            match (rt.config.system.metrics_interval, next_metrics) {
                (None, _) => next_metrics = None,
                (Some(every), None) => next_metrics = Some(Instant::now() + every),
                (Some(every), Some(at)) if at > Instant::now() + every => {
                    next_metrics = Some(Instant::now() + every)
                }
                _ => {}
            }
        }
        rt.end_waiters();
        let outcome = rt.outcome.unwrap_or(Outcome::Exit(0));
        let watchdog = match (rt.watchdog.take(), outcome) {
            // This loop pets it no more: a thread does, through the last steps.
            (Some(watchdog), Outcome::Power(_)) => Some(watchdog.keep_petting(
                rt.config.system.shutdown_timeout + crate::pid1::shutdown::WATCHDOG_GRACE,
            )),
            // ember exits: the watchdog stops with it.
            (Some(watchdog), Outcome::Exit(_)) if !rt.role.is_pid1() => {
                watchdog.disarm();
                None
            }
            // PID 1 does not exit: the emergency loop follows, and does not pet it.
            _ => None,
        };
        Ended {
            outcome,
            system: rt.config.system,
            watchdog,
        }
    }

    /// Makes the watchdog what `[system] watchdog` says now: opened (at start, or again
    /// after it could not be: a reload retries), set to a new timeout, or closed.
    fn apply_watchdog(&mut self) {
        let wanted = self.config.system.watchdog.clone();
        match (self.watchdog.take(), wanted) {
            (Some(mut open), Some(config)) if open.device == config.device => {
                open.reconfigure(&config);
                self.watchdog = Some(open);
            }
            (open, wanted) => {
                if let Some(open) = open {
                    open.disarm();
                }
                self.watchdog_error = None;
                let Some(config) = wanted else {
                    return;
                };
                match Watchdog::open(&config) {
                    Ok(watchdog) => {
                        crate::log::info!("{}", watchdog.describe());
                        if watchdog.reset_by_watchdog() {
                            crate::log::warn!(
                                "watchdog: {} says that it reset the board last time",
                                config.device.display()
                            );
                        }
                        self.watchdog = Some(watchdog);
                    }
                    Err(e) => {
                        crate::log::error!("watchdog: {e}; the board has NO hardware watchdog: fix [system] watchdog or load its driver, then `ember ctl reload`");
                        self.watchdog_error = Some(e);
                    }
                }
            }
        }
    }

    /// The watchdog for a status: with its last pet for a reply, without for an event.
    fn watchdog_status(&self, reply: bool) -> Option<Box<ember_ipc::WatchdogStatus>> {
        let config = self.config.system.watchdog.as_ref()?;
        Some(Box::new(match &self.watchdog {
            Some(watchdog) => watchdog.status(reply),
            None => ember_ipc::WatchdogStatus {
                device: config.device.display().to_string(),
                timeout_sec: config.timeout.as_secs() as u32,
                on_shutdown: config.on_shutdown.word().to_owned(),
                error: self.watchdog_error.clone(),
                ..Default::default()
            },
        }))
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Feeds one input to the engine and carries out what it decides.
    fn input(&mut self, input: Input) {
        let actions = self.react(input);
        self.execute(actions);
    }

    /// What the engine decides for one input. Every call into the engine goes through
    /// here, inside the panic guard: a bug that panics in the engine is logged and
    /// survived (nothing is done for that input), PID 1 does not die of it. The results
    /// of effects (a spawn, a shutdown an action asks for) come back this way too, as
    /// inputs, never as calls into the engine from inside an action.
    fn react(&mut self, input: Input) -> Vec<Action> {
        self.guarded(|engine, now| engine.handle(input, now))
    }

    /// One call into the engine, inside the panic guard (see [`Runtime::react`]).
    fn guarded(&mut self, call: impl FnOnce(&mut Engine, Duration) -> Vec<Action>) -> Vec<Action> {
        let now = self.now();
        let engine = &mut self.engine;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(engine, now))) {
            Ok(actions) => actions,
            Err(_) => {
                crate::log::error!(
                    "internal error in the engine (a bug; please report it); carrying on"
                );
                Vec::new()
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        let mut changed = false;
        while let Some(action) = queue.pop_front() {
            let follow_up = match action {
                Action::Spawn { name, run, .. } => {
                    if self.deferred.is_empty() && self.turn_started.elapsed() < SPAWN_SLICE {
                        self.spawn(&name, run).map(|result| self.react(result))
                    } else {
                        self.deferred.push_back((name, run));
                        None
                    }
                }
                Action::Kill { name, signal, .. } => {
                    self.kill(&name, signal);
                    None
                }
                Action::Probe {
                    name,
                    run,
                    readiness,
                } => {
                    self.probe(&name, run, &readiness);
                    None
                }
                Action::WatchPidFile { name, run, .. } => {
                    let path = self
                        .engine
                        .unit(&name)
                        .and_then(|u| u.spec.pid_file.clone());
                    if let Some(path) = path {
                        let handle = readiness::watch_pid_file(
                            path,
                            name.clone(),
                            run,
                            self.feed_tx.clone(),
                        );
                        let key = self.shared_name(&name);
                        self.services.entry(&key).proc.probes.push(handle);
                    }
                    None
                }
                Action::StopProbes { name } => {
                    if let Some(Kept { proc, .. }) = self.services.get_mut(&name) {
                        proc.probes.drain(..).for_each(|p| p.abort());
                        proc.log_ready = None;
                    }
                    None
                }
                Action::Cleanup { name, .. } => {
                    // A oneshot that succeeded stays active (exited): like systemd's
                    // RemainAfterExit, what it started in sessions of its own lives on.
                    let finished_oneshot = self.engine.unit(&name).is_some_and(|u| {
                        u.state == super::model::State::Active && u.sub == super::model::Sub::Exited
                    });
                    let cgroup = self.cgroup_path(&name);
                    if let Some(Kept { proc, .. }) = self.services.get_mut(&name) {
                        // Whatever the main process left behind goes with it: all of its
                        // cgroup (nothing escapes that), and its process group.
                        if let Some(path) = cgroup.filter(|_| !finished_oneshot) {
                            let members = cgroup::signal_all(&path, Signal::SIGKILL);
                            proc.cgroup_killed |= !members.is_empty();
                        }
                        if let Some(pgid) = proc.pgid.take() {
                            let _ = kill(NixPid::from_raw(-pgid), Signal::SIGKILL);
                        }
                        if let Some(n) = proc.notify.take() {
                            n.abort();
                        }
                    }
                    None
                }
                Action::Changed { name } => {
                    changed = true;
                    self.publish(&name);
                    None
                }
                Action::Removed { name } => {
                    changed = true;
                    crate::log::info!("{name}: removed");
                    if let Some(mut kept) = self.services.remove(&name) {
                        let proc = &mut kept.proc;
                        proc.probes.drain(..).for_each(|p| p.abort());
                        if let Some(n) = proc.notify.take() {
                            n.abort();
                        }
                    }
                    if let Some(cgroups) = &self.cgroups {
                        cgroups.remove(&name);
                    }
                    self.timeline.remove(&name);
                    let _ = std::fs::remove_file(notify::socket_path(&self.notify_dir, &name));
                    self.seq += 1;
                    let seq = self.seq;
                    let _ = self
                        .events
                        .send(Arc::new(Event::ServiceRemoved { name, seq }));
                    None
                }
                Action::OnFailure { name, action } => {
                    crate::log::error!(
                        "{name} failed and has on_failure = {action:?}: taking the system down"
                    );
                    let outcome = match action {
                        FailureAction::None => None,
                        // Not PID 1: stop everything and exit non-zero.
                        FailureAction::Reboot | FailureAction::Poweroff if !self.role.is_pid1() => {
                            Some(Outcome::Exit(1))
                        }
                        FailureAction::Reboot => Some(Outcome::Power(Power::Reboot)),
                        FailureAction::Poweroff => Some(Outcome::Power(Power::Poweroff)),
                    };
                    if let Some(outcome) = outcome {
                        self.outcome = Some(outcome);
                        self.shutdown_started = Some(Instant::now());
                        crate::log::leave_journald();
                        Some(self.react(Input::Shutdown))
                    } else {
                        None
                    }
                }
                Action::Reloaded(report) => {
                    self.reloaded = Some(*report);
                    None
                }
                Action::AllStopped => {
                    let took = self
                        .shutdown_started
                        .map(|t| t.elapsed().as_millis())
                        .unwrap_or(0);
                    crate::log::info!("shutdown: services stopped in {took} ms");
                    if let Some(cgroups) = &self.cgroups {
                        cgroups.teardown();
                    }
                    self.done = true;
                    None
                }
            };
            if let Some(more) = follow_up {
                queue.extend(more);
            }
        }
        if changed {
            self.publish_system_state();
        }
    }

    /// Signals, by sysvinit and busybox conventions when PID 1.
    fn on_signal(&mut self, signal: Signal) {
        let name = signal.as_str();
        if !self.role.is_pid1() {
            match signal {
                Signal::SIGTERM | Signal::SIGINT => self.begin_shutdown(name, Outcome::Exit(0)),
                _ => crate::log::info!("{name}: ignored (ember is not PID 1)"),
            }
            return;
        }
        let power = match signal {
            Signal::SIGTERM => Power::Reboot,
            Signal::SIGUSR1 => Power::Halt,
            Signal::SIGUSR2 => Power::Poweroff,
            Signal::SIGINT => match self.config.system.ctrl_alt_del {
                CtrlAltDel::Reboot => Power::Reboot,
                CtrlAltDel::Poweroff => Power::Poweroff,
                CtrlAltDel::Ignore => {
                    crate::log::info!("Ctrl-Alt-Del: ignored ([system] ctrl_alt_del = \"ignore\")");
                    return;
                }
            },
            _ => return,
        };
        self.begin_shutdown(&format!("{name} ({})", power.word()), Outcome::Power(power));
    }

    /// poweroff, reboot and halt requests: as PID 1 the machine's; otherwise stop and exit.
    fn power_request(&mut self, origin: &str, power: Power) -> Reply {
        let outcome = if self.role.is_pid1() {
            Outcome::Power(power)
        } else {
            Outcome::Exit(0)
        };
        self.begin_shutdown(&format!("{origin}: {}", power.word()), outcome);
        Reply::ok()
    }

    /// Spawns what waited for a turn of its own, for one [`SPAWN_SLICE`].
    fn spawn_deferred(&mut self) {
        self.turn_started = Instant::now();
        while self.turn_started.elapsed() < SPAWN_SLICE {
            let Some((name, run)) = self.deferred.pop_front() else {
                return;
            };
            if let Some(result) = self.spawn(&name, run) {
                self.input(result);
            }
        }
    }

    /// Spawns a service; returns its result for the engine (spawned, or why not), or
    /// nothing when the spawn is no longer wanted.
    fn spawn(&mut self, name: &str, run: u64) -> Option<Input> {
        let unit = self.engine.unit(name)?;
        // A spawn that waited its turn may no longer be wanted: stopped, or superseded by
        // a later run. Its process would have no one to answer to. A stop that came while
        // it waited is waiting for this answer: tell the engine nothing was spawned.
        if unit.run == run && unit.state == super::model::State::Deactivating && unit.pid.is_none()
        {
            return Some(Input::SpawnFailed {
                name: name.to_owned(),
                run,
                error: "stopped before its turn to spawn".to_owned(),
            });
        }
        if unit.run != run
            || unit.state != super::model::State::Activating
            || unit.sub != super::model::Sub::Start
            || unit.pid.is_some()
        {
            return None;
        }
        let spec = unit.spec.clone();
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
        let cgroup = placed.as_ref().map(|p| super::launch::Cgroup {
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
                crate::log::debug!("{name}: spawned pid {}", spawned.pid);
                proc.pgid = Some(spawned.pid);
                proc.session = Some(spawned.pid);
                // The spec's copy of the name for the process and both pipes (and their
                // lines).
                let shared = spec.name.clone();
                self.children
                    .insert(spawned.pid, ChildOwner::Service(shared.clone()));
                let sink = |output: &config::Output| match output {
                    config::Output::Rotated(file) => super::logfiles::Sink::new(file),
                    _ => None,
                };
                for (fd, stream, output) in [
                    (spawned.stdout, ember_ipc::Stream::Stdout, &spec.stdout),
                    (spawned.stderr, ember_ipc::Stream::Stderr, &spec.stderr),
                ] {
                    if let Some(fd) = fd {
                        self.readers
                            .read(fd, shared.clone(), run, stream, sink(output));
                    }
                }
                Some(Input::Spawned {
                    name: name.to_owned(),
                    run,
                    pid: spawned.pid,
                })
            }
            Err(error) => {
                crate::log::warn!("{name}: cannot start: {error}");
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
    fn kill(&mut self, name: &str, signal: Signal) {
        let pid = self.engine.unit(name).and_then(|u| u.pid);
        let pgid = self.services.get(name).and_then(|k| k.proc.pgid);
        crate::log::debug!(
            "{name}: sending {} (pid {pid:?}, group {pgid:?})",
            signal.as_str()
        );
        if let Some(path) = self.cgroup_path(name) {
            let members = cgroup::signal_all(&path, signal);
            if let Some(Kept { proc, .. }) = self.services.get_mut(name) {
                proc.cgroup_killed |= signal == Signal::SIGKILL && !members.is_empty();
            }
            if let Some(pid) = pid.filter(|p| !members.contains(p)) {
                let _ = kill(NixPid::from_raw(pid), signal);
            }
            return;
        }
        if let Some(pgid) = pgid {
            // ESRCH when the group has emptied (then its number may be reused): forget it.
            if kill(NixPid::from_raw(-pgid), signal).is_err() {
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
                    let _ = kill(NixPid::from_raw(-group), signal);
                }
                _ => {
                    let _ = kill(NixPid::from_raw(pid), signal);
                }
            }
        }
    }

    // Called from two places (a spawn, a takeover): one copy, not one inlined into each.
    #[inline(never)]
    fn probe(&mut self, name: &str, run: u64, readiness: &Readiness) {
        let key = self.shared_name(name);
        let proc = &mut self.services.entry(&key).proc;
        match readiness {
            Readiness::Log(pattern) => match regex_lite::Regex::new(pattern) {
                Ok(re) => proc.log_ready = Some(Box::new((run, re))),
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

    fn reap(&mut self) {
        for (pid, exit) in reaper::reap_all() {
            match self.children.remove(&pid) {
                Some(ChildOwner::Service(name)) => {
                    self.log_exit(&name, pid, exit);
                    self.exited(name.to_string(), pid, exit);
                }
                Some(ChildOwner::Check(done)) => {
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
    fn exited(&mut self, name: String, pid: Pid, exit: Exit) {
        // Its last words: if some were left out of the log, say so now, not at its next line.
        if let Some(ring) = self.services.get_mut(&name).and_then(|k| k.log.as_mut()) {
            let held_back = ring.copies(Instant::now()).take_held_back();
            if held_back > 0 {
                note_held_back(&name, held_back);
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
    fn shared_name(&self, name: &str) -> Arc<str> {
        self.engine
            .unit(name)
            .map_or_else(|| Arc::from(name), |unit| unit.spec.name.clone())
    }

    /// The service's cgroup, when its last spawn went into it.
    fn cgroup_path(&self, name: &str) -> Option<PathBuf> {
        self.services.get(name).filter(|k| k.proc.in_cgroup)?;
        self.cgroups.as_ref().map(|c| c.path(name))
    }

    fn log_exit(&self, name: &str, pid: Pid, exit: Exit) {
        let stopping = self
            .engine
            .unit(name)
            .is_some_and(|u| u.state == super::model::State::Deactivating);
        if exit.success() || stopping {
            crate::log::info!("{name}: process {pid} ended with {exit}");
        } else {
            crate::log::warn!("{name}: process {pid} ended with {exit}");
        }
    }

    fn on_feed(&mut self, feed: Feed) {
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
                    .get(&name)
                    .and_then(|k| k.proc.log_ready.as_deref())
                    .is_some_and(|(r, re)| *r == run && re.is_match(&line));
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
            Feed::Notify { name, run, message } => match message {
                notify::Message::Ready => self.input(Input::Ready { name, run }),
                notify::Message::Watchdog => self.input(Input::WatchdogPing { name, run }),
                notify::Message::Status(text) => self.input(Input::StatusText { name, run, text }),
                notify::Message::MainPid(pid) => self.claim_main_pid(name, run, pid),
                notify::Message::Stopping => crate::log::info!("{name}: says it is stopping"),
            },
            Feed::Reexec {
                binary,
                accepted,
                origin,
                reply,
            } => {
                let answer = if accepted {
                    // Returns only when the exec failed.
                    self.reexec(&binary, &origin)
                } else {
                    format!(
                        "{} cannot take over from this ember (it does not read handover format {}, or does not answer); not exec'd: ember runs on",
                        binary.display(),
                        super::handover::FORMAT
                    )
                };
                crate::log::error!("{origin}: reexec: {answer}");
                let _ = reply.send(ember_ipc::Reply::error(
                    ember_ipc::ErrorKind::Failed,
                    answer,
                ));
            }
            Feed::RunCheck { argv, done } => match spawn::spawn_helper(&argv) {
                Ok(pid) => {
                    self.children.insert(pid, ChildOwner::Check(done));
                }
                Err(e) => {
                    crate::log::warn!("readiness check {argv:?} cannot run: {e}");
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
            self.held_back_later(name, now);
            return;
        };
        if self.copies_of_all.admit(now) == Admit::No {
            ring.copies(now).hold_back();
            self.held_back_later(name, now);
            return;
        }
        if held_back > 0 {
            note_held_back(name, held_back);
        }
        tracing::info!(target: "ember::service", service = %name, stream = stream.word(), "{name}: {line}");
    }

    /// Remembers to count what `name` had held back, if nothing says it sooner.
    fn held_back_later(&mut self, name: &str, now: Instant) {
        let (names, due) = &mut self.held_back;
        if !names.contains(name) {
            names.insert(name.to_owned());
        }
        due.get_or_insert(now + HELD_BACK_NOTE_AFTER);
    }

    /// Writes the count of lines held back for every service that has some, within the
    /// limit for all services (a thousand floods do not become a thousand notes a second:
    /// the rest wait for the next round).
    fn note_all_held_back(&mut self) {
        let now = Instant::now();
        let mut later = BTreeSet::new();
        for name in std::mem::take(&mut self.held_back.0) {
            let Some(ring) = self.services.get_mut(&name).and_then(|k| k.log.as_mut()) else {
                continue;
            };
            if self.copies_of_all.admit(now) == Admit::No {
                later.insert(name);
                continue;
            }
            let held_back = ring.copies(now).take_held_back();
            if held_back > 0 {
                note_held_back(&name, held_back);
            }
        }
        self.held_back.1 = (!later.is_empty()).then(|| now + HELD_BACK_NOTE_AFTER);
        self.held_back.0 = later;
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
            crate::log::warn!("{name}: ignoring main pid {pid}: not a process of this service");
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
            let Some((ppid, sid)) = parent_and_session(current) else {
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

    fn publish(&mut self, name: &str) {
        let Some(unit) = self.engine.unit(name) else {
            return;
        };
        self.timeline.observe(unit, self.origin.elapsed());
        let said = self
            .services
            .get(name)
            .and_then(|k| k.said.as_ref())
            .map(|(said, _)| said);
        if said.is_some_and(|said| said.same_as(unit)) {
            return;
        }
        // A change of want alone is published but not logged again.
        let before = said.map(|said| (said.state, said.sub));
        let was_active = before.is_some_and(|(state, _)| state == super::model::State::Active);
        if (unit.state == super::model::State::Active) != was_active {
            // journald is often one of our services: move the log there once it answers,
            // and away from it once it stops.
            crate::log::reprobe();
        }
        self.seq += 1;
        self.services.entry(&unit.spec.name).said = Some((Said::of(unit), self.seq));
        let status = status::service_status(unit, self.now(), self.seq);
        if before != Some((unit.state, unit.sub)) {
            log_transition(unit);
        }
        self.events.send(Arc::new(Event::Service(status)));
    }

    fn publish_system_state(&mut self) {
        let tally = self.engine.tally();
        let mut state = status::system_state(tally, self.engine.shutting_down());
        // As systemd: "starting" is the boot. A restart later leaves the system running
        // (or degraded, while something has failed).
        if self.boot_complete && state == SystemState::Starting {
            state = if tally.failed > 0 {
                SystemState::Degraded
            } else {
                SystemState::Running
            };
        }
        if !self.boot_complete && matches!(state, SystemState::Running | SystemState::Degraded) {
            self.boot_complete = true;
            self.timeline.boot_complete(self.now());
            crate::log::info!(
                "boot complete: every service settled {} ms after ember started (uptime {})",
                crate::pid1::since_start().as_millis(),
                crate::pid1::uptime_text()
            );
            give_back_freed_memory();
        }
        if self.system_state != Some(state) {
            self.system_state = Some(state);
            match state {
                SystemState::Degraded => crate::log::warn!("system is degraded"),
                _ => crate::log::debug!("system is {state}"),
            }
            self.publish_system();
        }
    }

    /// Tells the system's state and its configuration's, as a change of its own.
    fn publish_system(&mut self) {
        self.seq += 1;
        self.system_seq = self.seq;
        let _ = self
            .events
            .send(Arc::new(Event::System(self.system_status(false))));
    }

    /// New rules for the control socket: in force for the next request of every client,
    /// and the socket's mode follows (open to all when a rule admits others).
    fn set_policy(&mut self, policy: ember_ipc::rights::Policy) {
        if *self.policy.borrow() == policy {
            return;
        }
        let open = policy.opens_the_socket();
        if let Err(e) = ember_ipc::socket::set_open(&self.config.control.socket, open) {
            crate::log::warn!(
                "cannot set the mode of {}: {e}",
                self.config.control.socket.display()
            );
        }
        self.policy.send_replace(policy);
    }

    /// The board's state and its configuration's, as status replies and events carry it.
    /// `reply`: for a status reply (the watchdog's last pet), not an event.
    fn system_status(&self, reply: bool) -> SystemStatus {
        SystemStatus {
            state: self.system_state.unwrap_or(SystemState::Starting),
            config: self.config_status.clone(),
            seq: self.system_seq,
            watchdog: self.watchdog_status(reply),
        }
    }

    fn begin_shutdown(&mut self, why: &str, outcome: Outcome) {
        if self.engine.shutting_down() {
            crate::log::info!("{why}: already stopping");
            return;
        }
        crate::log::info!("shutdown: stopping every service ({why})");
        // journald stops like any service: the shutdown steps must still be seen.
        crate::log::leave_journald();
        self.shutdown_started = Some(Instant::now());
        self.outcome.get_or_insert(outcome);
        self.input(Input::Shutdown);
    }

    /// Re-reads the configuration; a configuration with any error changes nothing.
    fn reload(&mut self, why: &str) -> Result<ReloadReport, Vec<String>> {
        let loaded = config::load(&self.config.path);
        let warnings: Vec<String> = loaded
            .problems
            .iter()
            .filter(|p| p.severity != config::Severity::Error)
            .map(|p| p.to_string())
            .collect();
        for warning in &warnings {
            crate::log::warn!("{warning}");
        }
        let Some(new) = loaded.config else {
            let errors: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
            for e in &errors {
                crate::log::error!("{e}");
            }
            crate::log::error!(
                "{why}: reload rejected: the configuration has errors; nothing changed"
            );
            return Err(errors);
        };
        crate::log::info!("{why}: reloading {}", new.path.display());
        if new.mqtt != self.config.mqtt || new.system.device != self.config.system.device {
            crate::log::warn!(
                "{why}: [mqtt] and the device name change at the next start of ember"
            );
        }
        if new.control.socket != self.config.control.socket {
            crate::log::warn!(
                "{why}: the control socket stays at {} until ember restarts",
                self.config.control.socket.display()
            );
        }
        let (mut new, rules) = crate::adapters::with_adapters(new);
        let made = self
            .engine
            .units()
            .filter(|u| u.spec.transient && !u.removing)
            .map(|u| &*u.spec.name);
        let specs = with_instances(&mut new, made);
        crate::log::init(new.log.level.as_deref(), new.log.output, self.role);
        let mut policy = new.control.policy();
        policy.rules.extend(rules);
        self.set_policy(policy);
        self.config = new;
        self.apply_watchdog();
        self.reloaded = None;
        self.input(Input::Reload(specs));
        let mut report = self.reloaded.take().unwrap_or_default();
        for change in &report.restarted {
            crate::log::info!(
                "{why}: {} restarts: {} changed",
                change.name,
                change.keys.join(", ")
            );
        }
        for change in &report.updated {
            crate::log::info!(
                "{why}: {}: {} changed, applied without a restart",
                change.name,
                change.keys.join(", ")
            );
        }
        report.warnings = warnings;
        if self.config_status.fallback {
            crate::log::info!("{why}: the configuration is good again: no longer a fallback");
            self.config_status = ConfigStatus {
                path: self.config.path.display().to_string(),
                fallback: false,
                problems: Vec::new(),
            };
            self.publish_system();
        }
        Ok(report)
    }

    /// A running service's processes and what they use; None when it is not running.
    fn measure(&self, name: &str) -> Option<(Vec<Pid>, usage::Usage)> {
        let unit = self.engine.unit(name)?;
        // A oneshot that exited is active with nothing left to measure.
        if !unit.is_running() || unit.sub == super::model::Sub::Exited {
            return None;
        }
        let proc = self.services.get(name).map(|k| &k.proc);
        let cgroup = self.cgroup_path(name);
        let cgroup = cgroup.as_deref();
        let pids = usage::processes(cgroup, proc.and_then(|p| p.pgid), unit.pid);
        let figures = usage::measure(cgroup, proc.map(|p| p.cpu_before).unwrap_or(0), &pids);
        Some((pids, figures))
    }

    /// One metrics round: every running service's figures, to MQTT and D-Bus.
    fn publish_metrics(&mut self) {
        let metrics: Vec<ember_ipc::Metrics> = self
            .engine
            .units()
            .filter_map(|u| {
                let (_, figures) = self.measure(&u.spec.name)?;
                Some(ember_ipc::Metrics {
                    name: u.spec.name.to_string(),
                    cpu_usec: figures.cpu_usec,
                    memory_bytes: figures.memory_bytes,
                    tasks: figures.tasks,
                })
            })
            .collect();
        if !metrics.is_empty() {
            self.events.send(Arc::new(Event::Metrics(metrics)));
        }
    }
}

/// The services of `config`, and the instances `made` on demand (by a reload, those the
/// engine has; by a reexec, those handed over), made again from their templates as the
/// configuration has them now: a change to a template restarts them as a change to a
/// service does; with their template gone, they go; defined as services now, they are
/// those.
///
/// The services are taken out of `config`: the engine keeps the only copy (the runtime's
/// configuration, kept for its other tables, would hold every spec a second time).
fn with_instances<'a>(
    config: &mut Config,
    made: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, crate::config::ServiceSpec> {
    let mut specs = std::mem::take(&mut config.services);
    for name in made {
        if !specs.contains_key(name) {
            if let Some(spec) = config.made_on_demand(name) {
                specs.insert(name.to_owned(), spec);
            }
        }
    }
    specs
}

/// Sleeps until `at`; with none, never wakes (no timer is armed). A moment that has come
/// already costs one yield, not a timer: tokio's timer rounds every deadline up to its
/// next 1 ms tick, so a restart with `restart_delay = "0ms"` would wait that millisecond
/// at every exit. The yield lets the runtime poll its driver (signals, exits, requests)
/// first, even if deadlines kept coming due.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) if at <= Instant::now() => tokio::task::yield_now().await,
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The parent pid and session id of a process, from /proc/PID/stat.
fn parent_and_session(pid: Pid) -> Option<(Pid, Pid)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let ppid = fields.nth(1)?.parse().ok()?;
    let session = fields.nth(1)?.parse().ok()?;
    Some((ppid, session))
}

fn note_held_back(name: &str, held_back: u64) {
    crate::log::warn!(
        "{name}: {held_back} lines were not copied to this log (more than {} a second from it, or {} from all services); `ember ctl logs {name}` shows its last {}",
        output::COPY_RATE,
        output::COPY_RATE_ALL,
        ember_ipc::LOG_LINES_KEPT
    );
}

fn log_transition(unit: &Unit) {
    let state = unit.state.word();
    let sub = unit.sub.word();
    match &unit.reason {
        Some(reason) if unit.state == super::model::State::Failed => {
            crate::log::error!("{}: {state} ({sub}): {reason}", unit.spec.name)
        }
        Some(reason) => crate::log::info!("{}: {state} ({sub}): {reason}", unit.spec.name),
        None => crate::log::info!("{}: {state} ({sub})", unit.spec.name),
    }
}

/// uid and gid for chowning a notify socket to the service's user.
fn owner_ids(user: &str) -> Option<(u32, u32)> {
    match user.parse::<u32>() {
        Ok(uid) => Some((uid, uid)),
        Err(_) => nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
    }
}

/// What makes this board's schedule jitter its own and the same at every boot: its
/// machine id (systemd's, which Yocto images and dbus create), else its hostname. A
/// board with neither gets no spread from its peers, only from its services' names.
fn board_seed() -> u64 {
    let id = std::fs::read("/etc/machine-id")
        .or_else(|_| std::fs::read("/var/lib/dbus/machine-id"))
        .or_else(|_| std::fs::read("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    ember_engine::engine::fnv1a(&id)
}

/// Returns to the kernel the heap pages that the boot used and freed (the configuration's
/// text and parse, the boot's list of actions): glibc keeps them resident, in the middle
/// of the heap, until told. At 1,000 services that is about 1 KiB a service that a
/// board's RAM holds for nothing. musl's allocator gives pages back by itself.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; any thread may call it.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Whether `future` is ready by its second poll, with no timer fired in between (the
    /// test runs no driver): one yield, at most.
    fn ready_at_once(future: impl Future<Output = ()>) -> bool {
        let mut future = std::pin::pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        (0..2).any(|_| future.as_mut().poll(&mut context) == Poll::Ready(()))
    }

    /// A deadline that has come is not left to tokio's timer, which would wait for its
    /// next millisecond tick: a restart with no delay would wait that long at every exit.
    #[test]
    fn a_deadline_that_has_come_is_ready_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for the test");
        let _entered = runtime.enter();
        assert!(ready_at_once(sleep_until_or_never(Some(Instant::now()))));
        let past = Instant::now().checked_sub(Duration::from_millis(5));
        assert!(ready_at_once(sleep_until_or_never(
            past.or(Some(Instant::now()))
        )));
        assert!(!ready_at_once(sleep_until_or_never(Some(
            Instant::now() + Duration::from_secs(60)
        ))));
        assert!(!ready_at_once(sleep_until_or_never(None)));
    }
}
