//! The runtime: executes the engine's actions and turns the world into engine inputs.
//!
//! One task owns everything (the engine, the child table, the logs) and waits on: SIGCHLD
//! (reap and dispatch by pid), control requests, feeds from output readers, probes and
//! notify sockets, signals, and the engine's next deadline. Nothing polls: with no
//! deadline pending, an idle ember sleeps until something happens.
//!
//! This file is the loop and the execution of the engine's actions; the rest is in parts:
//! `effects` (spawn in turn, kill, probe, reap), `feed` (what the tasks around the
//! runtime tell it: lines, readiness, main pids, notify), `publish` (events, the system
//! status, metrics), `requests` (the control socket's requests), `reexec` (the handover,
//! both sides) and `kept` (what is kept per service beside the engine's unit).

use super::cgroup::{self, Cgroups};
use super::engine::{Action, Engine, Input};
use super::model::{Exit, Pid, Unit};
use super::output;
use super::signals::Signals;
use super::{notify, readiness, spawn};
use crate::config::{self, Config, FailureAction};
use crate::pid1::watchdog::{Petting, Watchdog};
use crate::pid1::{Meaning, Power, Role};
use ember_ipc::broadcast::Broadcast;
use ember_ipc::throttle::RateLimit;
use ember_ipc::{ConfigStatus, ErrorKind, Event, ReloadReport, Reply, Request, SystemState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod effects;
mod feed;
mod kept;
mod log_ready;
mod publish;
mod reexec;
mod requests;
mod restarts;
mod untold;

use kept::{Kept, Services};
use untold::Untold;

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
        /// The sending process, as the kernel says (SCM_CREDENTIALS); 0 when unknown.
        sender: Pid,
        /// Whether its user is root, ember's or the service's.
        trusted: bool,
        message: notify::Message,
    },
    /// An `exec` readiness check of service `name` to run; `done` gets whether it exited 0.
    RunCheck {
        name: String,
        run: u64,
        argv: Vec<String>,
        done: oneshot::Sender<bool>,
    },
    /// `reexec`: whether `binary` (run as `pid`) said it takes over this binary's
    /// handover format, or why not.
    Reexec {
        binary: std::path::PathBuf,
        pid: Pid,
        answer: Result<(), String>,
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
    /// The control socket's work in flight (clients that have just connected).
    pub socket: ember_ipc::socket::Pending,
}

/// How the supervisor ended, for main to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit the process with this code (not PID 1).
    Exit(i32),
    /// PID 1: finish the shutdown sequence and power off, reboot or halt.
    Power(Power),
}

impl Outcome {
    /// What the shutdown ends in, as a log line or a reply says it.
    fn word(self) -> &'static str {
        match self {
            Outcome::Exit(_) => "exit",
            Outcome::Power(power) => power.word(),
        }
    }
}

enum ChildOwner {
    /// The name is the one its output pipes share (one copy per service).
    Service(Arc<str>),
    /// A helper whose exit status answers `done`: a readiness check of the service `of`
    /// (killed when that service stops starting), or reexec's question to the next binary.
    Check {
        of: Option<Arc<str>>,
        done: oneshot::Sender<bool>,
    },
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
    /// When the last slice of deferred spawns ended: a client goes ahead of the spawns
    /// for at most a slice's time after it (see [`clients_first`]).
    slice_ended: Instant,
    /// The control socket's work in flight: whether a client has just connected.
    socket: ember_ipc::socket::Pending,
    /// The limit on service lines copied to ember's log, all services together.
    copies_of_all: RateLimit,
    /// Lines and restarts held back from ember's log and not yet counted there (see
    /// `untold`).
    untold: Untold,
    /// Services whose run's end waits for the change it makes to be logged with it.
    run_ends: Vec<Arc<str>>,
    /// The hardware watchdog, open and petted by this loop.
    watchdog: Option<Watchdog>,
    /// The control socket's listening fd and this binary's path, for a reexec.
    control_fd: Option<std::os::fd::RawFd>,
    binary: PathBuf,
    /// The binary a reexec is asking whether it takes over (one at a time).
    reexec_asked: Option<PathBuf>,
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

const FEED_CAPACITY: usize = 1024;
/// How much of the feed every turn of the main loop serves, whatever else it served.
const FEED_BATCH: usize = 64;
/// At the end, how long the feed may stay quiet before the services' last lines are taken
/// as all read (their pipes are read by another task), and how long it may take at most.
const LAST_LINES_QUIET: Duration = Duration::from_millis(20);
const LAST_LINES_MOST: Duration = Duration::from_secs(1);
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
            socket,
        } = links;
        // Read the signals before the first spawn, so no exit is missed (they are
        // blocked: one that came since main waits in the signalfd).
        let mut signals = match Signals::open() {
            Ok(signals) => signals,
            Err(e) => {
                crate::log::error!("cannot read signals ({e}); not starting any service");
                return Ended {
                    outcome: Outcome::Exit(1),
                    system: config.system,
                    watchdog: None,
                };
            }
        };
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
                    {
                        let (specs, left_out) = with_instances(
                            &mut config,
                            h.engine
                                .units
                                .iter()
                                .filter(|u| u.transient && !u.removing)
                                .map(|u| u.name.as_str()),
                            &notify_dir,
                        );
                        for why in left_out {
                            crate::log::warn!("{why}; it stops and goes");
                        }
                        specs
                    },
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
            slice_ended: Instant::now(),
            socket,
            copies_of_all: RateLimit::new(
                output::COPY_RATE_ALL,
                output::COPY_BURST_ALL,
                Instant::now(),
            ),
            untold: Untold::default(),
            run_ends: Vec::new(),
            watchdog: None,
            watchdog_error: None,
            control_fd,
            binary,
            reexec_asked: None,
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
            let untold_due = sleep_until_or_never(rt.untold.due());
            let sleep = sleep_until_or_never(rt.engine.next_deadline().map(|d| rt.origin + d));
            // The watchdog is petted by this loop and nothing else: if the loop stalls,
            // the board is reset. Its one wakeup per half timeout is the only cost.
            let pet_due = sleep_until_or_never(rt.watchdog.as_ref().map(Watchdog::due));
            rt.turn_started = Instant::now();
            let mut served_a_request = false;
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
                signal = signals.recv() => match crate::pid1::meaning(signal) {
                    Some(Meaning::Reap) => rt.reap(),
                    Some(Meaning::Reload) => { let _ = rt.reload("SIGHUP"); }
                    _ => rt.on_signal(signal),
                },
                Some(request) = requests.recv() => {
                    // What services printed before they asked comes first (a report
                    // that ends with `ember ctl poweroff` is in the log whole): the lines
                    // queued now, at most the channel's capacity.
                    let queued = feed_rx.len();
                    rt.serve_feed(&mut feed_rx, queued);
                    rt.on_request(request);
                    served_a_request = true;
                }
                _ = sleep => rt.input(Input::Tick),
                _ = untold_due => rt.tell_held_back(),
                _ = metrics_due => {
                    rt.publish_metrics();
                    next_metrics = None;
                }
                Some(feed) = feed_rx.recv() => rt.on_feed(feed),
                // Yielding first lets the runtime poll its driver, which is what delivers
                // signals, exits and connections: a loop that never yields would starve it.
                () = tokio::task::yield_now(), if !rt.deferred.is_empty() => {}
            }
            // The spawns that wait get a slice after every turn, whatever the turn served
            // (under a flood of output lines the feed is ready at every turn, and a branch
            // of their own never won: a stop then waited for a spawn that never came),
            // but for a turn that lets a client go first, which is never longer than a
            // slice after the last slice.
            if !rt.deferred.is_empty() && !rt.clients_first(served_a_request) {
                rt.spawn_deferred();
            }
            // And some of the feed after every turn too: the select serves it last, and a
            // stream of exits or requests must not hold the services' output back.
            rt.serve_feed(&mut feed_rx, FEED_BATCH);
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
        rt.last_lines(&mut feed_rx).await;
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

    /// Whether this turn leaves the deferred spawns for the next (see [`clients_first`]).
    fn clients_first(&self, served_a_request: bool) -> bool {
        clients_first(
            served_a_request,
            self.socket.arriving(),
            self.slice_ended,
            Instant::now(),
        )
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
                    self.end_checks(&name);
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
                            proc.cgroup_killed |= cgroup::signal_all(&path, Signal::SIGKILL).killed;
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
                Action::Done { name } => {
                    crate::log::info!("{name}: done");
                    self.done(&name);
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
                    self.end_checks(&name);
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
                    if self.engine.shutting_down() {
                        // Two failed at once: the first one's end is the one under way.
                        let under_way = self.outcome.map_or("stop", Outcome::word);
                        crate::log::info!(
                            "{name}: not acted on: ember is already stopping to {under_way}"
                        );
                        None
                    } else if let Some(outcome) = outcome {
                        self.outcome = Some(outcome);
                        self.shutdown_started = Some(Instant::now());
                        crate::log::leave_journald();
                        Some(self.react(Input::Shutdown))
                    } else {
                        None
                    }
                }
                Action::Reloaded(report) => {
                    self.apply_cgroup_limits(&report.updated);
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
        self.say_run_ends();
    }

    /// Signals, by sysvinit's, busybox's and systemd's conventions when PID 1
    /// ([`crate::pid1::SIGNALS`]).
    fn on_signal(&mut self, signal: i32) {
        let name = crate::pid1::signal_name(signal);
        if !self.role.is_pid1() {
            match signal {
                nix::libc::SIGTERM | nix::libc::SIGINT => {
                    self.begin_shutdown(&name, Outcome::Exit(0));
                }
                _ => crate::log::info!("{name}: ignored (ember is not PID 1)"),
            }
            return;
        }
        let power = match crate::pid1::meaning(signal) {
            Some(Meaning::Shutdown(power)) => power,
            Some(Meaning::CtrlAltDel) => match self.config.system.ctrl_alt_del.power() {
                Some(power) => power,
                None => return,
            },
            Some(Meaning::Immediate(power)) => {
                // systemd's "immediately": no service is stopped first; the last steps
                // (every process ended, sync, unmount) still run. It goes before an end
                // under way, as `reboot -f` does.
                crate::log::warn!(
                    "shutdown: {name}: {} at once, without stopping the services",
                    power.word()
                );
                self.outcome = Some(Outcome::Power(power));
                self.done = true;
                return;
            }
            Some(Meaning::Reap | Meaning::Reload) | None => return,
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
        match self.begin_shutdown(&format!("{origin}: {}", power.word()), outcome) {
            // The same end again: nothing to change, as for any command asked twice.
            // Not PID 1 every request ends in an exit, whatever its code.
            Some(Outcome::Exit(_)) | None => Reply::ok(),
            Some(under_way) if under_way != outcome => Reply::error(
                ErrorKind::Busy,
                format!(
                    "ember is already stopping every service to {}; a {} cannot replace it (`ember {} -f` does it at once, without stopping the services)",
                    under_way.word(),
                    power.word(),
                    match power {
                        Power::Poweroff => "poweroff",
                        Power::Reboot => "reboot",
                        Power::Halt => "halt",
                    }
                ),
            ),
            _ => Reply::ok(),
        }
    }

    /// New rules for the control socket: in force for the next request of every client,
    /// and the socket's mode follows (open to all when a rule admits others).
    /// Puts `policy` in force; returns whether it changed anything.
    fn set_policy(&mut self, policy: ember_ipc::rights::Policy) -> bool {
        if *self.policy.borrow() == policy {
            return false;
        }
        let open = policy.opens_the_socket();
        if let Err(e) = ember_ipc::socket::set_open(&self.config.control.socket, open) {
            crate::log::warn!(
                "cannot set the mode of {}: {e}",
                self.config.control.socket.display()
            );
        }
        self.policy.send_replace(policy);
        true
    }

    /// Begins the shutdown that ends in `outcome`. One already under way goes on as it
    /// was asked first (a second client, a signal, a failing service's on_failure do not
    /// turn a poweroff into a reboot halfway): its end is returned then.
    fn begin_shutdown(&mut self, why: &str, outcome: Outcome) -> Option<Outcome> {
        if self.engine.shutting_down() {
            let under_way = self.outcome.unwrap_or(outcome);
            if under_way == outcome
                || matches!((under_way, outcome), (Outcome::Exit(_), Outcome::Exit(_)))
            {
                crate::log::info!("{why}: already stopping");
            } else {
                crate::log::warn!(
                    "{why}: refused: ember is already stopping to {}",
                    under_way.word()
                );
            }
            return Some(under_way);
        }
        crate::log::info!("shutdown: stopping every service ({why})");
        // journald stops like any service: the shutdown steps must still be seen.
        crate::log::leave_journald();
        self.shutdown_started = Some(Instant::now());
        self.outcome.get_or_insert(outcome);
        self.input(Input::Shutdown);
        None
    }

    /// Re-reads the configuration. One that `ember check` fails (any problem but a
    /// warning: an error, a missing program or user, a services.d file or services_dir
    /// that cannot be read) changes nothing, and every service runs on: the leniency of a
    /// boot (such a problem costs only its service) is for a boot alone. Refused too while
    /// ember stops every service, as a start is: nothing it added would start, and what
    /// the shutdown relies on (the watchdog, the timeouts) must not change under it.
    fn reload(&mut self, why: &str) -> Result<ReloadReport, Reply> {
        if self.engine.shutting_down() {
            crate::log::warn!("{why}: reload refused: ember is shutting down");
            return Err(Reply::error(
                ErrorKind::Busy,
                "ember is shutting down; nothing changed (the configuration is read again at the next start)",
            ));
        }
        let loaded = config::load(&self.config.path);
        let warnings: Vec<String> = loaded
            .problems
            .iter()
            .filter(|p| p.severity == config::Severity::Warning)
            .map(|p| p.to_string())
            .collect();
        for warning in &warnings {
            crate::log::warn!("{warning}");
        }
        let new = match loaded.checked() {
            Ok(new) => new,
            Err(failing) => {
                let errors = config::shown(failing.iter());
                for e in &errors {
                    crate::log::error!("{e}");
                }
                crate::log::error!(
                    "{why}: reload rejected: the configuration fails `ember check`; nothing changed"
                );
                return Err(Reply::error(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the configuration fails `ember check`; nothing changed:\n{}",
                        errors.join("\n")
                    ),
                ));
            }
        };
        crate::log::info!("{why}: reloading {}", new.path.display());
        // What the reload changed beside the services, or did not: told to whoever asked
        // too, with the warnings (found by a hostile review: the reply said "nothing
        // changed" when the rules of the socket had, and when its path had not).
        let mut notes = Vec::new();
        // A changed [mqtt] (or device) restarts ember-mqtt with it: the reply lists it.
        // What stays behind is the old name's retained topics, which no board clears.
        if let (Some(old), Some(mqtt)) = (&self.config.mqtt, &new.mqtt) {
            let (old_device, device) = (&self.config.system.device, &new.system.device);
            if (old.prefix.as_str(), old_device) != (mqtt.prefix.as_str(), device) {
                notes.push(format!(
                    "ember-mqtt now publishes under {}/{device}; the retained topics under {}/{old_device} stay on the broker (clear each with mosquitto_pub -r -n -t TOPIC)",
                    mqtt.prefix, old.prefix
                ));
            }
        }
        if new.control.socket != self.config.control.socket {
            notes.push(format!(
                "the control socket stays at {} until ember restarts",
                self.config.control.socket.display()
            ));
        }
        let (mut new, rules) = crate::adapters::with_adapters(new);
        let made = self
            .engine
            .units()
            .filter(|u| u.spec.transient && !u.removing)
            .map(|u| &*u.spec.name);
        let (specs, left_out) = with_instances(&mut new, made, &self.notify_dir);
        // What a start of an instance is refused for, the template as it is now may say
        // of one made already: a reload that would make it so is refused (found by a
        // hostile review: an instance then waited for itself, or failed at every start).
        if let Some(left_out) = left_out.first() {
            let refused = format!(
                "{left_out}; nothing changed (stop the instance first, or change its template)"
            );
            crate::log::error!("{why}: reload rejected: {refused}");
            return Err(Reply::error(ErrorKind::InvalidConfig, refused));
        }
        crate::log::init(new.log.level.as_deref(), new.log.output, self.role);
        // [[control.allow]] as written: the adapters' rules change with [mqtt] and
        // [dbus], and a changed adapter is restarted, which the reply says already.
        // (The socket's mode is said whenever it changes: an adapter added opens it.)
        let allow_changed = new.control.allow != self.config.control.allow;
        let was_open = self.policy.borrow().opens_the_socket();
        let mut policy = new.control.policy();
        policy.rules.extend(rules);
        let now_open = policy.opens_the_socket();
        if self.set_policy(policy) && (allow_changed || was_open != now_open) {
            let mode = if self.policy.borrow().opens_the_socket() {
                "0666: the rules decide"
            } else {
                "0600: root only"
            };
            notes.push(format!(
                "[[control.allow]] changed: it applies to every client's next request, and ends the streams whose right it took away (the socket is mode {mode})"
            ));
        }
        for note in &notes {
            crate::log::warn!("{why}: {note}");
        }
        self.config = new;
        self.apply_watchdog();
        self.reloaded = None;
        self.input(Input::Reload(specs));
        let mut report = self.reloaded.take().unwrap_or_default();
        self.start_changed_adapters(&mut report);
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
        report.warnings.extend(notes);
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
}

impl Runtime {
    /// A changed `[mqtt]` or `[dbus]` restarts its adapter: one that is down, wanted down
    /// (a `reset-failed` after it failed on a file it could not read, or a stop), is
    /// started with its new settings, as its failure's advice ("fix it, then `ember ctl
    /// reload`") says. Found by a hostile review: after a reset-failed, the reload that
    /// read the fixed file listed ember-mqtt as "updated", and it stayed down for good,
    /// the board cut off its broker. Nothing else ever starts an adapter.
    fn start_changed_adapters(&mut self, report: &mut ember_ipc::ReloadReport) {
        let (down, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut report.updated)
            .into_iter()
            .partition(|change| {
                ember_ipc::adapter::ADAPTERS.contains(&change.name.as_str())
                    && self.engine.unit(&change.name).is_some_and(|u| {
                        !u.is_running() && !u.removing && u.want == super::model::Want::Down
                    })
            });
        report.updated = rest;
        for change in down {
            self.input(Input::Start(change.name.clone()));
            report.restarted.push(change);
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
///
/// An instance made on demand that the template as it is now makes one a start would be
/// refused for is left out, and why is returned: a notify socket that could not be bound
/// in `notify_dir` (its name is part of the path), or a dependency cycle through it (the
/// configuration alone has none).
fn with_instances<'a>(
    config: &mut Config,
    made: impl Iterator<Item = &'a str>,
    notify_dir: &std::path::Path,
) -> (
    std::collections::BTreeMap<String, crate::config::ServiceSpec>,
    Vec<String>,
) {
    let mut specs = std::mem::take(&mut config.services);
    let mut added = Vec::new();
    let mut left_out = Vec::new();
    for name in made {
        if !specs.contains_key(name) {
            if let Some(spec) = config.made_on_demand(name) {
                if let Some(why) = config::control::notify_socket_too_long(notify_dir, name, &spec)
                {
                    left_out.push(format!("{why} ({name} was made by a start)"));
                    continue;
                }
                specs.insert(name.to_owned(), spec);
                added.push(name.to_owned());
            }
        }
    }
    // The configuration had no cycle: one now goes through an instance just added.
    while let Some(cycle) = {
        let all = specs.iter().map(|(n, s)| (n.as_str(), s)).collect();
        config::graph::cycles(&all).into_iter().next()
    } {
        let Some(at) = cycle.iter().position(|n| added.contains(n)) else {
            break;
        };
        let mut cycle = cycle;
        if cycle.len() > 1 && cycle.first() == cycle.last() {
            cycle.pop();
        }
        let len = cycle.len().max(1);
        cycle.rotate_left(at % len);
        if let Some(first) = cycle.first().cloned() {
            specs.remove(&first);
            left_out.push(format!(
                "dependency cycle: {} -> {first}: {first} was made by a start, and the template as it is now orders it after itself",
                cycle.join(" -> ")
            ));
        }
    }
    (specs, left_out)
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

fn log_transition(unit: &Unit) {
    let text = transition_text(unit);
    if unit.state == super::model::State::Failed && unit.reason.is_some() {
        crate::log::error!("{}: {text}", unit.spec.name)
    } else {
        crate::log::info!("{}: {text}", unit.spec.name)
    }
}

/// A service's state as the log says it: "activating (auto-restart): exited with code 1".
fn transition_text(unit: &Unit) -> String {
    let (state, sub) = (unit.state.word(), unit.sub.word());
    match &unit.reason {
        Some(reason) => format!("{state} ({sub}): {reason}"),
        None => format!("{state} ({sub})"),
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

/// Whether a turn of the main loop leaves the deferred spawns for the next, so that a
/// client goes first: one that has just connected and not yet sent its request (which is
/// then read before the next slice; see `Pending::arriving`), or one this turn answered
/// (its reply is then written before it). A status during a boot of 3,000 otherwise
/// waited behind three slices. Only until a slice's time has passed since the last slice
/// ended: clients that connect and ask without pause still leave the boot half of the
/// time.
fn clients_first(
    served_a_request: bool,
    arriving: bool,
    slice_ended: Instant,
    now: Instant,
) -> bool {
    (served_a_request || arriving) && now.saturating_duration_since(slice_ended) < SPAWN_SLICE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn a_client_goes_ahead_of_the_spawns_for_a_slice_at_most() {
        let ended = Instant::now();
        let soon = ended + SPAWN_SLICE / 2;
        let later = ended + SPAWN_SLICE;
        // Nothing for a client: the spawns go on.
        assert!(!clients_first(false, false, ended, soon));
        // A reply to write, or a request to read: the client first...
        assert!(clients_first(true, false, ended, soon));
        assert!(clients_first(false, true, ended, soon));
        // ... but not once a slice's time has gone by without a slice.
        assert!(!clients_first(true, true, ended, later));
    }

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
