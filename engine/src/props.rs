//! Property tests of the pure engine: random service graphs and random histories of
//! commands, process exits, readiness, timers, reloads and shutdown, on a simulated clock,
//! with the engine's promises checked after every step.
//!
//! Self-contained on purpose (the engine will move into a crate of its own): it uses only
//! the engine's public API ([`Engine`], [`Input`], [`Action`]), the model ([`Unit`] and its
//! states) and [`ServiceSpec`].
//!
//! [`World`] plays the runtime the way `runtime.rs` does: it executes each batch of
//! actions in order, answers a `Spawn` at once with `Spawned` (or `SpawnFailed`) and
//! appends the engine's reaction to the queue, and answers an `OnFailure` that takes the
//! system down with `Shutdown`. It also plays the processes: each has a pid and belongs to
//! a service, receives the signals `Kill` sends and dies of `Cleanup`, and ends when the
//! history says so (with a code, a signal, or after ignoring SIGTERM; or never, stuck).
//! A history also reloads (the same configuration, another drawn one, one with a process
//! key or a policy key changed, one without a service, the first one again), makes
//! services as instances of a template on demand (forgotten once stopped), shuts down,
//! crash-loops a service, and sends stale or misdirected events (old runs, old pids,
//! services the configuration does not have).
//! Time passes only when the history says so, and the runtime then ticks at once, as
//! the real one wakes at its deadline (or late, past several of them).
//!
//! The invariants are listed at [`World::check_step`] (after every input the engine
//! handles), [`World::check_quiet`] (once a batch of actions has been carried out) and
//! [`World::check_settled`] (at the end of a history, once every process has done what it
//! was asked and every timer that matters has fired).
//!
//! `PROPTEST_CASES` sets the number of histories (default [`DEFAULT_CASES`]);
//! `PROPTEST_RNG_SEED` fixes the seed (each run draws new histories otherwise). A failure
//! prints the smallest history found that fails, and what the engine did in it: make it
//! an example test in engine_tests.rs, next to the fix.

use crate::engine::{Action, Engine, Input};
use crate::model::{Exit, Pid, State, Sub, Unit, Want};
use crate::spec::{FailureAction, Readiness, RestartPolicy, Schedule, ServiceSpec, ServiceType};
use nix::sys::signal::Signal;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

/// About 2 s in a debug build on 2 cores, 7 s with them six times oversubscribed;
/// PROPTEST_CASES asks for more (20,000 take 3 to 4 minutes).
const DEFAULT_CASES: u32 = 256;

/// The service names a history draws from. Commands and events also name services that
/// the configuration of the moment does not define.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const N: usize = NAMES.len();

/// The longest duration a configuration may give (the config refuses longer ones).
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Simple,
    /// type = "simple" with a ready probe (delay, log...): ready when the probe says so.
    Probed,
    Notify,
    Oneshot,
    Forking,
}

/// One service as drawn; [`Svc::spec`] turns it into what the config checker would accept.
#[derive(Debug, Clone)]
struct Svc {
    kind: Kind,
    watchdog: Option<Duration>,
    restart: RestartPolicy,
    restart_delay: Duration,
    restart_delay_max: Duration,
    start_limit: u32,
    start_limit_interval: Duration,
    stop_timeout: Duration,
    ready_timeout: Option<Duration>,
    enabled: bool,
    reboot_on_failure: bool,
    /// Stops last at shutdown, as the adapters do.
    linger: bool,
    /// A oneshot's schedule (ignored for the other kinds, as the config refuses it).
    schedule: Option<Schedule>,
    /// Indexes into NAMES; kept only where the drawn order allows (no cycles).
    requires: Vec<usize>,
    wants: Vec<usize>,
    after: Vec<usize>,
}

/// A whole configuration: the services defined (by index into NAMES) and a rank for each
/// name. A dependency is kept only towards a lower rank, so the graph has no cycle, and
/// the order of dependencies is not the order of names (ties broken by index, so a rank
/// that shrinks to all zeros reads "depends only on names before it").
#[derive(Clone)]
struct Conf {
    rank: Vec<u8>,
    svcs: Vec<Option<Svc>>,
}

impl Svc {
    fn spec(&self, me: usize, conf: &Conf) -> ServiceSpec {
        let name = NAMES[me];
        let mut s = ServiceSpec::new(name, &["/usr/bin/app"]);
        match self.kind {
            Kind::Simple => {}
            Kind::Probed => s.ready = Readiness::Delay(ms(500)),
            Kind::Notify => {
                s.kind = ServiceType::Notify;
                s.ready = Readiness::Notify;
                // The config accepts a watchdog with sd_notify only.
                s.watchdog = self.watchdog;
            }
            Kind::Oneshot => {
                s.kind = ServiceType::Oneshot;
                s.ready = Readiness::Exit;
            }
            Kind::Forking => {
                s.kind = ServiceType::Forking;
                s.ready = Readiness::PidFile;
                s.pid_file = Some(format!("/run/{name}.pid").into());
            }
        }
        s.restart = self.restart;
        if self.kind == Kind::Oneshot && s.restart == RestartPolicy::Always {
            // As the config does: "always" only means "also after failures" for a oneshot.
            s.restart = RestartPolicy::OnFailure;
        }
        s.restart_delay = self.restart_delay;
        s.restart_delay_max = self.restart_delay_max.max(self.restart_delay);
        s.start_limit = self.start_limit;
        if s.start_limit == 0 && s.restart_delay.is_zero() {
            // Accepted by the config, but a service that fails at once then restarts at
            // once, with no limit, fails and restarts forever at the same instant: not a
            // history this test can run to its end. (Reported; not the engine's to fix.)
            s.restart_delay = ms(1);
            s.restart_delay_max = s.restart_delay_max.max(s.restart_delay);
        }
        s.start_limit_interval = self.start_limit_interval;
        s.stop_timeout = self.stop_timeout;
        s.ready_timeout = self.ready_timeout;
        s.enabled = self.enabled;
        if self.reboot_on_failure {
            s.on_failure = FailureAction::Reboot;
        }
        s.linger = self.linger;
        if self.kind == Kind::Oneshot {
            s.schedule = self.schedule.map(Box::new);
        }
        let before = |d: usize| d != me && (conf.rank[d], d) < (conf.rank[me], me);
        let names = |list: &[usize], defined_only: bool| -> Vec<String> {
            list.iter()
                .copied()
                .filter(|&d| before(d) && (!defined_only || conf.svcs[d].is_some()))
                .map(|d| NAMES[d].to_owned())
                .collect()
        };
        // `requires` must name a defined service, and not a scheduled one (the config
        // refuses it); `wants` and `after` may name any.
        s.requires = names(&self.requires, true)
            .into_iter()
            .filter(|r| {
                let d = NAMES.iter().position(|n| n == r);
                !d.and_then(|d| conf.svcs[d].as_ref())
                    .is_some_and(|d| d.kind == Kind::Oneshot && d.schedule.is_some())
            })
            .collect();
        s.wants = names(&self.wants, false);
        s.after = names(&self.after, false);
        s
    }
}

impl Conf {
    fn specs(&self) -> BTreeMap<String, ServiceSpec> {
        self.svcs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (NAMES[i].to_owned(), s.spec(i, self))))
            .collect()
    }
}

/// The non-default keys of each service, one line each: what a failing case prints.
fn show_specs(specs: &BTreeMap<String, ServiceSpec>) -> String {
    let default = ServiceSpec::new("x", &["/usr/bin/app"]);
    let mut out = String::new();
    for (name, s) in specs {
        let mut keys = vec![format!("{:?}", s.kind).to_lowercase()];
        let mut key = |k: &str, changed: bool, v: String| {
            if changed {
                keys.push(format!("{k}={v}"));
            }
        };
        key(
            "command",
            s.command != default.command,
            format!("{:?}", s.command),
        );
        key(
            "ready",
            s.kind == ServiceType::Simple && s.ready != default.ready,
            format!("{:?}", s.ready),
        );
        key(
            "watchdog",
            s.watchdog.is_some(),
            format!("{:?}", s.watchdog),
        );
        key(
            "restart",
            s.restart != default.restart,
            format!("{:?}", s.restart),
        );
        key(
            "restart_delay",
            s.restart_delay != default.restart_delay,
            format!("{:?}", s.restart_delay),
        );
        key(
            "restart_delay_max",
            s.restart_delay_max != default.restart_delay_max,
            format!("{:?}", s.restart_delay_max),
        );
        key(
            "start_limit",
            s.start_limit != default.start_limit,
            s.start_limit.to_string(),
        );
        key(
            "start_limit_interval",
            s.start_limit_interval != default.start_limit_interval,
            format!("{:?}", s.start_limit_interval),
        );
        key(
            "stop_timeout",
            s.stop_timeout != default.stop_timeout,
            format!("{:?}", s.stop_timeout),
        );
        key(
            "ready_timeout",
            s.ready_timeout != default.ready_timeout,
            format!("{:?}", s.ready_timeout),
        );
        key("enabled", !s.enabled, "false".into());
        key("linger", s.linger, "true".into());
        key(
            "schedule",
            s.schedule.is_some(),
            format!("{:?}", s.schedule),
        );
        key(
            "on_failure",
            s.on_failure != FailureAction::None,
            format!("{:?}", s.on_failure),
        );
        key(
            "requires",
            !s.requires.is_empty(),
            format!("{:?}", s.requires),
        );
        key("wants", !s.wants.is_empty(), format!("{:?}", s.wants));
        key("after", !s.after.is_empty(), format!("{:?}", s.after));
        out.push_str(&format!("    {name}: {}\n", keys.join(" ")));
    }
    out
}

impl fmt::Debug for Conf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", show_specs(&self.specs()))
    }
}

/// A duration as configurations give it: mostly the default, sometimes nothing at all
/// (zero: at once), sometimes the longest accepted. The default first: what shrinking
/// goes back to, and what a failing case then does not print.
fn duration(default: Duration) -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => Just(default),
        2 => Just(Duration::ZERO),
        1 => Just(ms(1)),
        2 => Just(ms(100)),
        2 => Just(ms(1000)),
        1 => Just(YEAR),
    ]
}

fn deps() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..N, 0..3)
}

fn svc() -> impl Strategy<Value = Svc> {
    let kind = prop_oneof![
        3 => Just(Kind::Simple),
        2 => Just(Kind::Notify),
        2 => Just(Kind::Oneshot),
        1 => Just(Kind::Forking),
        1 => Just(Kind::Probed),
    ];
    let restart = prop_oneof![
        Just(RestartPolicy::OnFailure),
        Just(RestartPolicy::Always),
        Just(RestartPolicy::Never),
    ];
    let start_limit = prop_oneof![Just(5u32), Just(0), Just(1), Just(2)];
    let ready_timeout = prop_oneof![
        3 => Just(Some(Duration::from_secs(90))),
        2 => Just(None),
        2 => Just(Some(ms(1000))),
        1 => Just(Some(ms(1))),
        1 => Just(Some(YEAR)),
    ];
    let watchdog = prop_oneof![
        3 => Just(None),
        1 => Just(Some(ms(1000))),
        1 => Just(Some(ms(1))),
    ];
    (
        (
            kind,
            watchdog,
            restart,
            duration(ms(100)),
            duration(ms(30_000)),
            start_limit,
        ),
        (duration(ms(10_000)), duration(ms(5000)), ready_timeout),
        (
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
        ),
        (deps(), deps(), deps()),
        schedule(),
    )
        .prop_map(
            |(
                (kind, watchdog, restart, restart_delay, restart_delay_max, start_limit),
                (start_limit_interval, stop_timeout, ready_timeout),
                (enabled, reboot_on_failure, linger),
                (requires, wants, after),
                schedule,
            )| Svc {
                kind,
                watchdog,
                restart,
                restart_delay,
                restart_delay_max,
                start_limit,
                start_limit_interval,
                stop_timeout,
                ready_timeout,
                enabled,
                reboot_on_failure,
                linger,
                requires,
                wants,
                after,
                schedule,
            },
        )
}

/// Mostly none; else every second or so, or once after boot, with or without jitter.
fn schedule() -> impl Strategy<Value = Option<Schedule>> {
    let every = prop_oneof![
        Just(None),
        Just(Some(ms(1000))),
        Just(Some(ms(1))),
        Just(Some(YEAR))
    ];
    let after_boot = prop_oneof![Just(None), Just(Some(Duration::ZERO)), Just(Some(ms(500)))];
    let jitter = prop_oneof![Just(Duration::ZERO), Just(ms(300))];
    prop::option::weighted(
        0.4,
        (every, after_boot, jitter)
            .prop_filter("every or after_boot", |(e, a, _)| {
                e.is_some() || a.is_some()
            })
            .prop_map(|(every, after_boot, jitter)| Schedule {
                every,
                after_boot,
                jitter,
            }),
    )
}

fn conf() -> impl Strategy<Value = Conf> {
    (
        prop::collection::vec(0u8..4, N),
        prop::collection::vec(prop::option::weighted(0.8, svc()), N),
    )
        .prop_map(|(rank, svcs)| Conf { rank, svcs })
}

// ---------------------------------------------------------------------------------------
// Histories
// ---------------------------------------------------------------------------------------

/// Which process of a service ends.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// The one the engine watches (or, when it watches none, any left in its group).
    Main,
    /// Another one of its group (the first process after a MAINPID=, a leftover).
    Other,
    /// One that ended long ago (or never was): the engine must not take it for the main.
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Advance {
    /// To the earliest deadline.
    ToDeadline,
    /// Past the earliest deadline by this much: a late wake-up, maybe past several.
    PastDeadline(Duration),
    /// This much later, whatever is due on the way.
    By(Duration),
}

/// A change a reload makes to one service of the running configuration.
#[derive(Debug, Clone, Copy)]
enum Edit {
    /// How the process runs (command): restarts it if it runs.
    Process,
    /// restart, restart_delay, start_limit, stop_timeout, ready_timeout or enabled:
    /// applied in place.
    Policy(u8),
    /// Gone from the configuration (and from the `requires` of the others, which the
    /// config checker would demand).
    Remove,
}

#[derive(Debug, Clone)]
enum Op {
    Start(usize),
    Stop(usize),
    Restart(usize),
    ResetFailed(usize),
    Exit {
        unit: usize,
        who: Who,
        exit: Exit,
        oom: bool,
    },
    /// From now on, spawning this service fails (a missing binary), or works again.
    SpawnFails(usize, bool),
    Ready {
        unit: usize,
        stale: bool,
    },
    /// A pid file or MAINPID= names a new process of the service.
    MainPid {
        unit: usize,
        stale: bool,
    },
    Ping {
        unit: usize,
        stale: bool,
    },
    Status {
        unit: usize,
        stale: bool,
    },
    /// Every process that was sent a signal acts on it: SIGKILL ends it; another signal
    /// ends it (with that signal, or exit 0 when `clean`) unless `stubborn`.
    Obey {
        clean: bool,
        stubborn: bool,
    },
    /// An answer to a spawn of a previous run (ignored: not what the engine waits for).
    StaleSpawnAnswer {
        unit: usize,
        failed: bool,
    },
    Time(Advance),
    /// The service's main process fails, then time passes to the next deadline, again
    /// and again: backoff, start limits and counters over many failures.
    CrashLoop {
        unit: usize,
        times: u8,
    },
    /// The runtime makes the service as an instance of a template (`start worker@42`):
    /// added (transient, forgotten once stopped), then started. Only when the
    /// configuration does not define it.
    Make(usize),
    /// `ember ctl reexec`: the engine's records carried (through JSON, as the runtime
    /// hands them over) into a new engine over the same configuration, which must then
    /// do nothing at once.
    Reexec,
    /// Reload with the configuration that runs: must change nothing.
    ReloadSame,
    /// Reload with one of the drawn configurations (0: the first, which brings back
    /// what later ones removed).
    Reload(usize),
    ReloadEdit {
        unit: usize,
        edit: Edit,
    },
    Shutdown,
}

/// Changes one policy key the way an admin would, keeping what the config checker asks.
fn policy_edit(s: &mut ServiceSpec, key: u8) {
    match key {
        0 => {
            s.restart = match s.restart {
                RestartPolicy::OnFailure => RestartPolicy::Never,
                RestartPolicy::Never if s.kind != ServiceType::Oneshot => RestartPolicy::Always,
                _ => RestartPolicy::OnFailure,
            }
        }
        1 => {
            s.restart_delay = if s.restart_delay == ms(100) {
                ms(1000)
            } else {
                ms(100)
            };
            s.restart_delay_max = s.restart_delay_max.max(s.restart_delay);
        }
        2 => s.start_limit = if s.start_limit == 1 { 3 } else { 1 },
        3 => {
            s.stop_timeout = if s.stop_timeout == ms(100) {
                ms(5000)
            } else {
                ms(100)
            }
        }
        4 => s.enabled = !s.enabled,
        _ => {
            s.ready_timeout = match s.ready_timeout {
                Some(_) => None,
                None => Some(ms(1000)),
            }
        }
    }
}

fn exit() -> impl Strategy<Value = Exit> {
    prop_oneof![
        3 => Just(Exit::Code(1)),
        3 => Just(Exit::Code(0)),
        2 => Just(Exit::Signal(Signal::SIGKILL)),
        1 => Just(Exit::Signal(Signal::SIGTERM)),
        1 => Just(Exit::Signal(Signal::SIGSEGV)),
        1 => Just(Exit::Code(255)),
    ]
}

fn stale() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.2)
}

fn op(confs: usize) -> impl Strategy<Value = Op> {
    let unit = || 0..N;
    let who = prop_oneof![
        6 => Just(Who::Main),
        1 => Just(Who::Other),
        1 => Just(Who::Stale),
    ];
    let step = prop_oneof![
        Just(ms(1)),
        Just(ms(100)),
        Just(ms(1000)),
        Just(ms(10_000)),
        Just(ms(600_000)),
        Just(YEAR),
    ];
    let advance = prop_oneof![
        3 => Just(Advance::ToDeadline),
        2 => step.clone().prop_map(Advance::PastDeadline),
        2 => step.prop_map(Advance::By),
    ];
    let edit = prop_oneof![
        Just(Edit::Process),
        (0u8..6).prop_map(Edit::Policy),
        Just(Edit::Remove),
    ];
    prop_oneof![
        3 => unit().prop_map(Op::Start),
        3 => unit().prop_map(Op::Stop),
        3 => unit().prop_map(Op::Restart),
        1 => unit().prop_map(Op::ResetFailed),
        8 => (unit(), who, exit(), prop::bool::weighted(0.1))
            .prop_map(|(unit, who, exit, oom)| Op::Exit { unit, who, exit, oom }),
        2 => (unit(), prop::bool::weighted(0.7)).prop_map(|(u, f)| Op::SpawnFails(u, f)),
        5 => (unit(), stale()).prop_map(|(unit, stale)| Op::Ready { unit, stale }),
        2 => (unit(), stale()).prop_map(|(unit, stale)| Op::MainPid { unit, stale }),
        2 => (unit(), stale()).prop_map(|(unit, stale)| Op::Ping { unit, stale }),
        1 => (unit(), stale()).prop_map(|(unit, stale)| Op::Status { unit, stale }),
        6 => (any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(clean, stubborn)| Op::Obey { clean, stubborn }),
        1 => (unit(), any::<bool>())
            .prop_map(|(unit, failed)| Op::StaleSpawnAnswer { unit, failed }),
        7 => advance.prop_map(Op::Time),
        1 => (unit(), 1u8..40).prop_map(|(unit, times)| Op::CrashLoop { unit, times }),
        2 => unit().prop_map(Op::Make),
        2 => Just(Op::ReloadSame),
        2 => Just(Op::Reexec),
        2 => (0..confs).prop_map(Op::Reload),
        3 => (unit(), edit).prop_map(|(unit, edit)| Op::ReloadEdit { unit, edit }),
        1 => Just(Op::Shutdown),
    ]
}

/// A configuration to boot with, others to reload with, and what happens.
#[derive(Debug, Clone)]
struct History {
    confs: Vec<Conf>,
    ops: Vec<Op>,
}

const CONFS: usize = 3;

fn history() -> impl Strategy<Value = History> {
    (
        prop::collection::vec(conf(), CONFS),
        prop::collection::vec(op(CONFS), 1..48),
    )
        .prop_map(|(confs, ops)| History { confs, ops })
}

// ---------------------------------------------------------------------------------------
// The fake runtime and its processes
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Proc {
    unit: String,
    /// The strongest signal it was sent and has not acted on yet.
    signal: Option<Signal>,
    /// The engine gave up waiting for it to end (it did not die of SIGKILL): it is no
    /// longer the engine's, and a new run may start beside it.
    abandoned: bool,
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

struct World {
    engine: Engine,
    now: Duration,
    /// The configuration last given to the engine.
    config: BTreeMap<String, ServiceSpec>,
    /// The instances made on demand (not configured) the engine has, as made.
    made: BTreeMap<String, ServiceSpec>,
    next_pid: Pid,
    /// Processes alive, by pid.
    procs: BTreeMap<Pid, Proc>,
    /// The last process of each service that ended: for exits of stale pids.
    dead: BTreeMap<String, Pid>,
    /// Killed by a Cleanup; their exits reach the engine at the next Obey.
    unreaped: Vec<(String, Pid)>,
    spawn_fails: BTreeSet<String>,
    all_stopped: u32,
    /// Settling: time jumped, and every service with a watchdog pings before the tick.
    pinging: bool,
    /// What happened, for the message of a failing case.
    trace: Vec<String>,
}

fn name_of(action: &Action) -> Option<&str> {
    match action {
        Action::Spawn { name, .. }
        | Action::Kill { name, .. }
        | Action::Probe { name, .. }
        | Action::WatchPidFile { name, .. }
        | Action::StopProbes { name }
        | Action::Cleanup { name, .. }
        | Action::Changed { name }
        | Action::Removed { name }
        | Action::Done { name }
        | Action::OnFailure { name, .. } => Some(name),
        Action::AllStopped | Action::Reloaded(_) => None,
    }
}

fn show_input(input: &Input) -> String {
    match input {
        Input::Reload(specs) => format!("Reload\n{}", show_specs(specs)),
        other => format!("{other:?}"),
    }
}

fn show_actions(actions: &[Action]) -> String {
    let shown: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Probe { name, run, .. } => format!("Probe({name} run {run})"),
            Action::Spawn { name, run, .. } => format!("Spawn({name} run {run})"),
            Action::Kill { name, signal, .. } => format!("Kill({name} {})", signal.as_str()),
            Action::Reloaded(r) => format!("Reloaded({r:?})"),
            a => match name_of(a) {
                Some(name) => format!(
                    "{}({name})",
                    format!("{a:?}").split(' ').next().unwrap_or("")
                ),
                None => format!("{a:?}"),
            },
        })
        .collect();
    shown.join(", ")
}

/// What a unit shows: a change of it must be published with `Changed`.
fn shown(u: &Unit) -> (State, Sub, Want, Option<Pid>, u64) {
    (u.state, u.sub, u.want, u.pid, u.run)
}

/// Has a process of its own now (Activating with a spawn answered, or not yet).
fn up(u: &Unit) -> bool {
    u.state == State::Active || (u.state == State::Activating && u.sub != Sub::AutoRestart)
}

impl World {
    fn new(specs: BTreeMap<String, ServiceSpec>) -> World {
        World {
            engine: Engine::new(specs.clone(), Duration::ZERO),
            now: Duration::ZERO,
            config: specs.clone(),
            made: BTreeMap::new(),
            next_pid: 100,
            procs: BTreeMap::new(),
            dead: BTreeMap::new(),
            unreaped: Vec::new(),
            spawn_fails: BTreeSet::new(),
            all_stopped: 0,
            pinging: false,
            trace: vec![format!("boot\n{}", show_specs(&specs))],
        }
    }

    /// The first reconcile, checked as a step from nothing.
    fn boot(&mut self) -> Check {
        let actions = self.engine.boot(self.now);
        self.trace.push(format!("  -> {}", show_actions(&actions)));
        self.check_step(&Input::Tick, &BTreeMap::new(), &actions)?;
        self.execute(actions)?;
        self.settle_instant()
    }

    fn unit(&self, name: &str) -> Option<&Unit> {
        self.engine.unit(name)
    }

    fn fresh_pid(&mut self) -> Pid {
        self.next_pid += 1;
        self.next_pid
    }

    fn live_of(&self, name: &str) -> Vec<Pid> {
        self.procs
            .iter()
            .filter(|(_, p)| p.unit == name && !p.abandoned)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// One input to the engine, checked; returns what the engine asked for.
    fn feed(&mut self, input: Input) -> Result<Vec<Action>, String> {
        let before: BTreeMap<String, Unit> = self
            .engine
            .units()
            .map(|u| (u.spec.name.to_string(), u.clone()))
            .collect();
        if let Input::Reload(specs) = &input {
            // What the runtime adds to a reload, the instances made on demand, is not
            // configuration; an instance configured now is configured.
            self.config = specs
                .iter()
                .filter(|(_, s)| !s.transient)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let config = &self.config;
            self.made.retain(|n, _| !config.contains_key(n));
        }
        let actions = self.engine.handle(input.clone(), self.now);
        for action in &actions {
            if let Action::Removed { name } = action {
                self.made.remove(name);
            }
        }
        self.trace.push(format!(
            "t={:?} {}\n  -> {}",
            self.now,
            show_input(&input),
            show_actions(&actions)
        ));
        self.check_step(&input, &before, &actions)?;
        Ok(actions)
    }

    /// Feeds an input and carries out everything that follows from it.
    fn feed_all(&mut self, input: Input) -> Check {
        let actions = self.feed(input)?;
        self.execute(actions)?;
        self.settle_instant()
    }

    /// Carries out actions as the runtime does: in order, a Spawn answered at once with
    /// the engine's reaction appended to the queue.
    fn execute(&mut self, actions: Vec<Action>) -> Check {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Spawn { name, run, .. } => {
                    // The runtime spawns whatever a Spawn names, if the service exists.
                    if self.unit(&name).is_none() {
                        continue;
                    }
                    // What AllStopped promised: nothing runs, nor will.
                    ensure!(self.all_stopped == 0, "{name} is spawned after AllStopped");
                    let stray = self.live_of(&name);
                    ensure!(
                        stray.is_empty(),
                        "{name} is spawned (run {run}) while its process(es) {stray:?} still run"
                    );
                    let input = if self.spawn_fails.contains(&name) {
                        Input::SpawnFailed {
                            name,
                            run,
                            error: "no such file or directory".into(),
                        }
                    } else {
                        let pid = self.fresh_pid();
                        self.procs.insert(
                            pid,
                            Proc {
                                unit: name.clone(),
                                signal: None,
                                abandoned: false,
                            },
                        );
                        Input::Spawned { name, run, pid }
                    };
                    queue.extend(self.feed(input)?);
                }
                Action::Kill { name, signal, .. } => {
                    for p in self.procs.values_mut().filter(|p| p.unit == name) {
                        if p.signal != Some(Signal::SIGKILL) {
                            p.signal = Some(signal);
                        }
                    }
                }
                Action::Cleanup { name, .. } => {
                    // SIGKILL to the whole group: gone at once, reaped later.
                    for pid in self.live_of(&name) {
                        self.procs.remove(&pid);
                        self.dead.insert(name.clone(), pid);
                        self.unreaped.push((name.clone(), pid));
                    }
                }
                Action::OnFailure { action, .. } if action != FailureAction::None => {
                    queue.extend(self.feed(Input::Shutdown)?);
                }
                _ => {}
            }
        }
        self.check_quiet()
    }

    /// A deadline at `now` (a zero restart_delay or stop_timeout): the runtime's sleep
    /// returns at once and it ticks again. It must come to an end.
    fn settle_instant(&mut self) -> Check {
        for _ in 0..64 {
            match self.engine.next_deadline() {
                Some(d) if d <= self.now => {
                    ensure!(
                        d == self.now,
                        "deadline {d:?} in the past at {:?}",
                        self.now
                    );
                    let actions = self.feed(Input::Tick)?;
                    self.execute(actions)?;
                }
                _ => return Ok(()),
            }
        }
        Err(format!("deadlines keep coming due at {:?}", self.now))
    }

    fn end(&mut self, pid: Pid, exit: Exit, oom_killed: bool) -> Check {
        let Some(p) = self.procs.remove(&pid) else {
            return Ok(());
        };
        self.dead.insert(p.unit.clone(), pid);
        self.feed_all(Input::Exited {
            name: p.unit,
            pid,
            exit,
            oom_killed,
        })
    }

    /// Every process that was sent a signal acts on it; the killed ones are reaped.
    fn obey(&mut self, clean: bool, stubborn: bool) -> Result<bool, String> {
        let mut acted = false;
        for (name, pid) in std::mem::take(&mut self.unreaped) {
            acted = true;
            self.feed_all(Input::Exited {
                name,
                pid,
                exit: Exit::Signal(Signal::SIGKILL),
                oom_killed: false,
            })?;
        }
        let signalled: Vec<(Pid, Signal)> = self
            .procs
            .iter()
            .filter_map(|(pid, p)| p.signal.map(|s| (*pid, s)))
            .collect();
        for (pid, signal) in signalled {
            // It may have been killed meanwhile by what an earlier exit caused.
            if !self.procs.contains_key(&pid) {
                continue;
            }
            let exit = match signal {
                Signal::SIGKILL => Exit::Signal(Signal::SIGKILL),
                _ if stubborn => continue,
                _ if clean => Exit::Code(0),
                s => Exit::Signal(s),
            };
            acted = true;
            self.end(pid, exit, false)?;
        }
        Ok(acted)
    }

    /// A reload's services as the runtime gives them: the configuration's, and the
    /// instances made on demand that are not on their way out, unless configured now.
    fn with_made(&self, mut specs: BTreeMap<String, ServiceSpec>) -> BTreeMap<String, ServiceSpec> {
        for (name, spec) in &self.made {
            let leaving = self.unit(name).is_none_or(|u| u.removing);
            if !leaving && !specs.contains_key(name) {
                specs.insert(name.clone(), spec.clone());
            }
        }
        specs
    }

    fn tick_at(&mut self, t: Duration) -> Check {
        self.now = self.now.max(t);
        self.feed_all(Input::Tick)
    }

    fn run(&mut self, op: &Op, confs: &[Conf]) -> Check {
        let name = |i: usize| NAMES[i].to_owned();
        let run_of = |w: &World, i: usize, stale: bool| {
            let run = w.unit(NAMES[i]).map_or(1, |u| u.run);
            if stale {
                run.saturating_sub(1)
            } else {
                run
            }
        };
        match *op {
            Op::Start(i) => self.feed_all(Input::Start(name(i))),
            Op::Stop(i) => self.feed_all(Input::Stop(name(i))),
            Op::Restart(i) => self.feed_all(Input::Restart(name(i))),
            Op::ResetFailed(i) => self.feed_all(Input::ResetFailed(name(i))),
            Op::Exit {
                unit,
                who,
                exit,
                oom,
            } => {
                let n = NAMES[unit];
                let main = self.unit(n).and_then(|u| u.pid);
                let mine: Vec<Pid> = self
                    .procs
                    .iter()
                    .filter(|(_, p)| p.unit == n)
                    .map(|(pid, _)| *pid)
                    .collect();
                let pid = match who {
                    Who::Main => main.filter(|p| mine.contains(p)).or(mine.first().copied()),
                    Who::Other => mine.iter().copied().find(|p| Some(*p) != main),
                    // Never a live one: a pid of an earlier run, or one never used.
                    Who::Stale => Some(self.dead.get(n).copied().unwrap_or(7)),
                };
                let Some(pid) = pid else {
                    return Ok(());
                };
                if self.procs.contains_key(&pid) {
                    self.end(pid, exit, oom)
                } else {
                    self.feed_all(Input::Exited {
                        name: n.to_owned(),
                        pid,
                        exit,
                        oom_killed: oom,
                    })
                }
            }
            Op::SpawnFails(i, fails) => {
                if fails {
                    self.spawn_fails.insert(name(i));
                } else {
                    self.spawn_fails.remove(&name(i));
                }
                Ok(())
            }
            Op::Ready { unit, stale } => {
                let run = run_of(self, unit, stale);
                self.feed_all(Input::Ready {
                    name: name(unit),
                    run,
                })
            }
            Op::MainPid { unit, stale } => {
                let n = name(unit);
                let run = run_of(self, unit, stale);
                // The daemon exists (in the service's group) for as long as the engine
                // takes it for its main process; one it refuses was a stale report.
                let pid = self.fresh_pid();
                self.procs.insert(
                    pid,
                    Proc {
                        unit: n.clone(),
                        signal: None,
                        abandoned: false,
                    },
                );
                let actions = self.feed(Input::MainPid {
                    name: n.clone(),
                    run,
                    pid,
                })?;
                if self.unit(&n).and_then(|u| u.pid) != Some(pid) {
                    self.procs.remove(&pid);
                }
                self.execute(actions)?;
                self.settle_instant()
            }
            Op::Ping { unit, stale } => {
                let run = run_of(self, unit, stale);
                self.feed_all(Input::WatchdogPing {
                    name: name(unit),
                    run,
                })
            }
            Op::Status { unit, stale } => {
                let run = run_of(self, unit, stale);
                self.feed_all(Input::StatusText {
                    name: name(unit),
                    run,
                    text: "busy".into(),
                })
            }
            Op::Obey { clean, stubborn } => self.obey(clean, stubborn).map(|_| ()),
            Op::StaleSpawnAnswer { unit, failed } => {
                let n = name(unit);
                let Some(run) = self.unit(&n).map(|u| u.run).filter(|r| *r > 0) else {
                    return Ok(());
                };
                let input = if failed {
                    Input::SpawnFailed {
                        name: n,
                        run: run - 1,
                        error: "late".into(),
                    }
                } else {
                    Input::Spawned {
                        name: n,
                        run: run - 1,
                        pid: self.fresh_pid(),
                    }
                };
                self.feed_all(input)
            }
            Op::Time(advance) => {
                let next = self.engine.next_deadline();
                let t = match advance {
                    Advance::ToDeadline => next.unwrap_or(self.now + ms(1000)),
                    Advance::PastDeadline(d) => next.unwrap_or(self.now) + d,
                    Advance::By(d) => self.now + d,
                };
                self.tick_at(t)
            }
            Op::CrashLoop { unit, times } => {
                for _ in 0..times {
                    let main = self.unit(NAMES[unit]).and_then(|u| u.pid);
                    if let Some(pid) = main.filter(|p| self.procs.contains_key(p)) {
                        self.end(pid, Exit::Code(1), false)?;
                    }
                    self.run(&Op::Time(Advance::ToDeadline), confs)?;
                }
                Ok(())
            }
            Op::Make(k) => {
                let n = name(k);
                let exists = self
                    .unit(&n)
                    .is_some_and(|u| !(u.removing && u.spec.transient));
                if self.config.contains_key(&n) || exists || self.engine.shutting_down() {
                    // The runtime makes only what it does not have, and nothing once
                    // shutting down (a start is refused then).
                    return Ok(());
                }
                // From a template as the first configuration would have it, without its
                // dependencies (a template's are checked against the configuration it
                // came with, which may be another by now).
                let mut spec = confs[0]
                    .specs()
                    .remove(&n)
                    .unwrap_or_else(|| ServiceSpec::new(&n, &["/bin/app"]));
                spec.requires.clear();
                spec.wants.clear();
                spec.after.clear();
                spec.transient = true;
                spec.enabled = true;
                self.made.insert(n.clone(), spec.clone());
                self.feed_all(Input::Add(Box::new(spec)))?;
                self.feed_all(Input::Start(n))
            }
            Op::Reexec => {
                // The runtime refuses a reexec while shutting down, and while a reload is
                // being applied (a service stopping to go, or to restart on a new spec).
                let reloading = self
                    .engine
                    .units()
                    .any(|u| u.removing || u.pending_spec.is_some());
                if self.engine.shutting_down() || reloading {
                    return Ok(());
                }
                let carried = self.engine.carry();
                let mut w = crate::wire::Writer::default();
                carried.write(&mut w);
                let bytes = w.into_bytes();
                let mut r = crate::wire::Reader::new(&bytes);
                let back = crate::carry::Carried::read(&mut r);
                r.finish()?;
                if back != carried {
                    return Err(format!("carried {carried:?}\nread back {back:?}"));
                }
                let carried = back;
                // As the runtime does: the configuration, and the instances made on
                // demand that are not on their way out.
                let specs = self.with_made(self.config.clone());
                let before = self.engine.next_deadline();
                self.engine = Engine::adopt(specs, carried, self.now);
                self.engine.check_counts()?;
                let actions = self.engine.boot(self.now);
                self.trace.push(format!(
                    "t={:?} reexec\n  -> {}",
                    self.now,
                    show_actions(&actions)
                ));
                ensure!(
                    actions.is_empty(),
                    "the engine taking over did something at once: {}",
                    show_actions(&actions)
                );
                ensure!(
                    self.engine.next_deadline() == before,
                    "the next deadline moved: {before:?} -> {:?}",
                    self.engine.next_deadline()
                );
                Ok(())
            }
            Op::ReloadSame => {
                let same = self.with_made(self.config.clone());
                let actions = self.feed(Input::Reload(same))?;
                ensure!(
                    actions == vec![Action::Reloaded(Box::default())],
                    "a reload of the configuration that runs did something: {}",
                    show_actions(&actions)
                );
                self.execute(actions)?;
                self.settle_instant()
            }
            Op::Reload(k) => {
                let specs = self.with_made(confs[k].specs());
                self.feed_all(Input::Reload(specs))
            }
            Op::ReloadEdit { unit, edit } => {
                let n = name(unit);
                let mut specs = self.config.clone();
                let Some(spec) = specs.get_mut(&n) else {
                    return Ok(());
                };
                match edit {
                    Edit::Process => spec.command.push("--v"),
                    Edit::Policy(k) => policy_edit(spec, k),
                    Edit::Remove => {
                        specs.remove(&n);
                        for s in specs.values_mut() {
                            s.requires.retain(|d| *d != n);
                        }
                    }
                }
                let specs = self.with_made(specs);
                self.feed_all(Input::Reload(specs))
            }
            Op::Shutdown => self.feed_all(Input::Shutdown),
        }
    }

    // -----------------------------------------------------------------------------------
    // Invariants
    // -----------------------------------------------------------------------------------

    /// Whether a service cannot come up without another command: it is failed, removed,
    /// stopped or not defined, or something it requires is so (down the chain).
    fn held(&self, name: &str, depth: usize) -> bool {
        match self.unit(name) {
            None => true,
            Some(d) => match d.state {
                State::Failed => true,
                State::Inactive => {
                    d.removing
                        || d.want == Want::Down
                        // Between a scheduled oneshot's runs: only its timer starts it.
                        || (d.spec.schedule.is_some() && !d.due)
                        || (depth > 0 && d.spec.requires.iter().any(|r| self.held(r, depth - 1)))
                }
                _ => false,
            },
        }
    }

    /// Whether something the service requires is not active to stay (active, and not
    /// about to go down): it may not start yet.
    fn required_not_up<'a>(&'a self, u: &'a Unit) -> impl Iterator<Item = &'a String> + 'a {
        u.spec.requires.iter().filter(|r| match self.unit(r) {
            Some(r) => r.state != State::Active || self.engine.going_down(&r.spec.name),
            None => true,
        })
    }

    /// Whether a wanted, inactive service may not start yet: the engine's start rule, as
    /// the test states it. Something it `requires` is not active to stay; or something
    /// it `wants` or is `after` is on its way up: wanted up, and starting, stopping,
    /// active with a restart pending, or inactive and not held (see [`World::held`]).
    fn blocked(&self, u: &Unit) -> bool {
        let depth = N;
        let ordered_coming = u.spec.wants.iter().chain(&u.spec.after).any(|d| {
            self.unit(d).is_some_and(|d| {
                d.want == Want::Up
                    && match d.state {
                        State::Inactive => !self.held(&d.spec.name, depth),
                        State::Activating | State::Deactivating => true,
                        State::Active => d.restart_pending,
                        State::Failed => false,
                    }
            })
        });
        self.required_not_up(u).next().is_some() || ordered_coming
    }

    /// Whether something ordered after the service (through requires, wants or after) is
    /// on its way down: reverse order makes the service wait for it.
    fn stopping_dependent(&self, name: &str) -> bool {
        // At shutdown a lingering service also waits for every service that does not
        // linger and that no lingering service is ordered after, directly or through
        // others.
        let own = self.engine.unit(name).map(|u| &u.spec);
        if self.engine.shutting_down() && own.is_some_and(|s| s.linger) {
            let mut before: BTreeSet<String> = BTreeSet::new();
            let mut grew = true;
            while grew {
                grew = false;
                for e in self.engine.units() {
                    let ordered = e.spec.linger || before.contains(&*e.spec.name);
                    for d in e.spec.ordered_after().filter(|_| ordered) {
                        grew |= before.insert(d.clone());
                    }
                }
            }
            let others = self
                .engine
                .units()
                .any(|e| !e.spec.linger && e.is_running() && !before.contains(&*e.spec.name));
            if others {
                return true;
            }
        }
        // At a shutdown, through a service ordered after it that holds nothing any more
        // (ended on its own meanwhile): what is ordered after that one still needs it.
        let mut todo = vec![name.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(next) = todo.pop() {
            for e in self
                .engine
                .units()
                .filter(|e| e.spec.ordered_after().any(|d| *d == next))
            {
                if e.state == State::Deactivating
                    || (e.is_running()
                        && e.sub != Sub::AutoRestart
                        && self.engine.going_down(&e.spec.name))
                {
                    return true;
                }
                // Only at a shutdown (see has_stopping_dependents).
                let ended =
                    self.engine.shutting_down() && (!e.is_running() || e.sub == Sub::AutoRestart);
                if ended && seen.insert(e.spec.name.to_string()) {
                    todo.push(e.spec.name.to_string());
                }
            }
        }
        false
    }

    /// After every input the engine handles (`before`: the units before it).
    ///
    /// 1. Names: every action names a service the engine knows after the step, or one it
    ///    knew before and removes in this step (the `Removed` coming after every other
    ///    action for it); `Removed` comes once, for a service the configuration no longer
    ///    has; an input naming a service the engine does not know does nothing.
    /// 2. Runs: a `Spawn` carries the service's next run number; a `Probe` or
    ///    `WatchPidFile` the current one.
    /// 3. Wants: a `Spawn` is only for a service wanted up, not being removed, and never
    ///    once shutdown began.
    /// 4. Order: a `Spawn` only when everything the service requires is active and not
    ///    about to go down, and nothing it wants or is after is starting.
    /// 5. Kill: only for a service that is then stopping (Deactivating), with its stop
    ///    signal or SIGKILL; and in reverse order: a service the engine chose to stop
    ///    (not one a timer found failing) begins to stop only once what the last
    ///    configuration orders after it has stopped.
    /// 6. Processes: the engine lets go of a process only when it ended, or when it gave
    ///    up on one that SIGKILL did not end (after which that one is no longer its).
    /// 7. Publication: a service whose state, sub-state, want, pid or run changed gets a
    ///    `Changed` (or `Removed`).
    /// 8. Shutdown: `AllStopped` once, after Shutdown, when nothing runs; and it has come
    ///    as soon as shutdown began and nothing runs.
    /// 9. Fixed point (the reconcile loop finished, within its budget): a wanted inactive
    ///    service is waiting for something (see [`World::blocked`]), and is `dependency`
    ///    exactly when held by what it requires; an unwanted inactive one is dead; a
    ///    service that should go down and is up is waiting for something ordered after
    ///    it to stop first; a removed service is dropped once stopped; one that does not
    ///    run has no restart pending and no new spec waiting; one that runs with a new
    ///    spec waiting is going down.
    /// 10. Requires: a service up while something it requires is not active is only
    ///     waiting for something ordered after it to stop first (and then stops).
    /// 11. Wants down: a service wanted down and up is only waiting for the same.
    /// 12. Timers: no deadline is in the past; every service that waits for time has one
    ///     (backoff, stop timeout, watchdog), and no service that waits for none has one.
    /// 13. Reset: after a reset-failed the service is not failed, has no failures
    ///     counted, and was not started by it (a failed one is left down, unless its
    ///     schedule is on).
    fn check_step(
        &mut self,
        input: &Input,
        before: &BTreeMap<String, Unit>,
        actions: &[Action],
    ) -> Check {
        let engine = &self.engine;
        let after: BTreeSet<&str> = engine.units().map(|u| &*u.spec.name).collect();

        // 0. What the engine counts instead of scanning equals what a scan finds.
        engine.check_counts()?;

        // 1. Names.
        let input_name = match input {
            Input::Start(n) | Input::Stop(n) | Input::Restart(n) | Input::ResetFailed(n) => Some(n),
            Input::Spawned { name, .. }
            | Input::SpawnFailed { name, .. }
            | Input::Exited { name, .. }
            | Input::Ready { name, .. }
            | Input::MainPid { name, .. }
            | Input::WatchdogPing { name, .. }
            | Input::StatusText { name, .. }
            | Input::ExtendTimeout { name, .. }
            | Input::WatchdogTrigger { name, .. } => Some(name),
            Input::Tick | Input::Reload(_) | Input::Add(_) | Input::Shutdown => None,
        };
        if let Some(n) = input_name.filter(|n| !before.contains_key(n.as_str())) {
            ensure!(
                actions.is_empty(),
                "an input for {n}, which the engine does not know, did something: {}",
                show_actions(actions)
            );
        }
        for (i, action) in actions.iter().enumerate() {
            let Some(n) = name_of(action) else { continue };
            let removed_at = actions
                .iter()
                .position(|a| matches!(a, Action::Removed { name } if name == n));
            if let Action::Removed { .. } = action {
                ensure!(
                    before.contains_key(n) && !after.contains(n),
                    "Removed({n}) for a service that was not there or still is"
                );
                ensure!(
                    !self.config.contains_key(n),
                    "Removed({n}) while the configuration has it"
                );
                ensure!(
                    actions.iter().filter(|a| *a == action).count() == 1,
                    "Removed({n}) twice"
                );
            } else {
                ensure!(
                    after.contains(n) || (before.contains_key(n) && removed_at > Some(i)),
                    "{} names a service the engine does not know",
                    show_actions(std::slice::from_ref(action))
                );
            }
        }

        for action in actions {
            match action {
                Action::Spawn { name, run, .. } => {
                    let Some(u) = engine.unit(name) else {
                        return Err(format!("Spawn({name}) of a service that is gone"));
                    };
                    // 2. Runs.
                    let last = before.get(name).map_or(0, |b| b.run);
                    ensure!(
                        *run == last + 1 && u.run == *run,
                        "Spawn({name} run {run}) after run {last}"
                    );
                    // 3. Wants.
                    ensure!(
                        u.want == Want::Up && !u.removing && !engine.shutting_down(),
                        "Spawn({name}) of a service wanted {:?}, removing {}, shutting down {}",
                        u.want,
                        u.removing,
                        engine.shutting_down()
                    );
                    // 4. Order.
                    for r in &u.spec.requires {
                        let ok = engine.unit(r).is_some_and(|r| {
                            r.state == State::Active && !engine.going_down(&r.spec.name)
                        });
                        ensure!(
                            ok,
                            "Spawn({name}) while {r}, which it requires, is not up to stay"
                        );
                    }
                    for d in u.spec.wants.iter().chain(&u.spec.after) {
                        let starting = engine.unit(d).is_some_and(|d| {
                            d.want == Want::Up
                                && d.state == State::Activating
                                && d.sub != Sub::AutoRestart
                        });
                        ensure!(
                            !starting,
                            "Spawn({name}) while {d}, ordered before it, is starting"
                        );
                    }
                }
                Action::Probe { name, run, .. } | Action::WatchPidFile { name, run, .. } => {
                    let current = engine.unit(name).map(|u| u.run);
                    ensure!(
                        current == Some(*run),
                        "{} for run {run}, the run is {current:?}",
                        show_actions(std::slice::from_ref(action))
                    );
                }
                // 5. Kill.
                Action::Kill { name, signal, .. } => {
                    let u = engine.unit(name);
                    ensure!(
                        u.is_some_and(|u| u.state == State::Deactivating
                            && (*signal == Signal::SIGKILL || *signal == u.spec.stop_signal)),
                        "Kill({name} {signal:?}) of a service that is not stopping: {:?}",
                        u.map(|u| (u.state, u.sub))
                    );
                    // Reverse order, for a stop the engine chose (one that a timer found
                    // failing, not ready in time or silent, stops at once), where the last
                    // configuration orders it (the edges of a spec on its way out may
                    // form a cycle with it, and lose).
                    let begins = before
                        .get(name)
                        .is_some_and(|b| b.state != State::Deactivating);
                    let chosen = u.is_some_and(|u| u.failing.is_none());
                    if *signal != Signal::SIGKILL && begins && chosen {
                        for d in engine.units() {
                            let current = !d.removing && d.pending_spec.is_none();
                            let stopping = d.state == State::Deactivating
                                || (d.is_running()
                                    && d.sub != Sub::AutoRestart
                                    && engine.going_down(&d.spec.name));
                            ensure!(
                                !(current && stopping && d.spec.ordered_after().any(|r| r == name)),
                                "{name} begins to stop while {}, ordered after it, is still \
                                 stopping ({:?}/{:?})",
                                d.spec.name,
                                d.state,
                                d.sub
                            );
                        }
                    }
                }
                _ => {}
            }
        }

        // 6. Processes the engine lets go of.
        for (name, b) in before {
            let Some(pid) = b.pid else { continue };
            let now_pid = engine.unit(name).and_then(|u| u.pid);
            if now_pid == Some(pid) || !self.procs.contains_key(&pid) {
                continue; // still watched, or it ended
            }
            if now_pid.is_some() {
                continue; // another process of the group took over (MAINPID=, pid file)
            }
            let gave_up = matches!(input, Input::Tick)
                && b.state == State::Deactivating
                && b.sub == Sub::StopSigkill
                && b.deadline.is_some_and(|d| d <= self.now);
            ensure!(
                gave_up,
                "{name} let go of its process {pid}, which still runs, in {:?}/{:?}",
                b.state,
                b.sub
            );
            for p in self.procs.values_mut().filter(|p| &p.unit == name) {
                p.abandoned = true;
            }
        }

        // 13. Reset.
        if let Input::ResetFailed(name) = input {
            if let Some(u) = engine.unit(name) {
                let was = before.get(name);
                ensure!(
                    u.state != State::Failed && u.failures.is_empty() && u.restarts == 0,
                    "{name} is {:?}/{:?} with {} failures, {} restarts after a reset-failed",
                    u.state,
                    u.sub,
                    u.failures.len(),
                    u.restarts
                );
                let was_failed = was.is_some_and(|b| b.state == State::Failed);
                ensure!(
                    !was_failed || u.want == Want::Down || u.schedule_on,
                    "{name} was failed and is wanted up after a reset-failed"
                );
                ensure!(
                    !actions
                        .iter()
                        .any(|a| matches!(a, Action::Spawn { name: n, .. } if n == name)),
                    "a reset-failed spawned {name}"
                );
            }
        }

        // 7. Publication.
        for (name, b) in before {
            let Some(u) = engine.unit(name) else { continue };
            if shown(u) != shown(b) {
                ensure!(
                    actions.contains(&Action::Changed { name: name.clone() }),
                    "{name} changed from {:?} to {:?} without a Changed",
                    shown(b),
                    shown(u)
                );
            }
        }

        // 8. Shutdown.
        let running: Vec<&str> = engine
            .units()
            .filter(|u| u.is_running())
            .map(|u| &*u.spec.name)
            .collect();
        let all_stopped = actions.iter().filter(|a| **a == Action::AllStopped).count() as u32;
        if all_stopped > 0 {
            ensure!(engine.shutting_down(), "AllStopped without a shutdown");
            ensure!(running.is_empty(), "AllStopped while {running:?} run");
        }
        self.all_stopped += all_stopped;
        ensure!(
            self.all_stopped <= 1,
            "AllStopped {} times",
            self.all_stopped
        );
        if engine.shutting_down() && running.is_empty() {
            ensure!(
                self.all_stopped == 1,
                "shut down, nothing runs, and no AllStopped"
            );
        }

        for u in engine.units() {
            let name = &*u.spec.name;
            let shutting = engine.shutting_down();
            // 9. Fixed point.
            if u.removing {
                ensure!(
                    u.is_running(),
                    "{name} was removed and stopped, but is still there"
                );
            }
            if u.state == State::Inactive {
                if u.want == Want::Down || u.removing || shutting {
                    ensure!(
                        u.sub == Sub::Dead,
                        "{name} is inactive, unwanted, but {:?}",
                        u.sub
                    );
                } else if u.spec.schedule.is_some() && !u.due {
                    ensure!(
                        u.sub == Sub::Scheduled,
                        "{name} is scheduled, between runs, but {:?}",
                        u.sub
                    );
                } else {
                    ensure!(
                        matches!(u.sub, Sub::Waiting | Sub::Dependency) && self.blocked(u),
                        "{name} is wanted, inactive ({:?}) and nothing holds it back",
                        u.sub
                    );
                    // Dependency: held by something it requires that will not come up
                    // without another command; Waiting: only waiting for what comes.
                    let held = self.required_not_up(u).any(|r| self.held(r, N));
                    ensure!(
                        (u.sub == Sub::Dependency) == held,
                        "{name} is {:?}, but held by what it requires: {held}",
                        u.sub
                    );
                    // And its reason says so: what it waits for, a service ordered before
                    // it that is not up; or what blocks it.
                    let reason = u.reason.as_deref().unwrap_or_default();
                    let truthful = match u.sub {
                        Sub::Waiting => reason
                            .strip_prefix("waiting for ")
                            .and_then(|r| r.strip_suffix(" to start"))
                            .is_some_and(|d| {
                                u.spec.ordered_after().any(|x| x == d)
                                    && engine.unit(d).is_some_and(|du| {
                                        du.state != State::Active || engine.going_down(d)
                                    })
                            }),
                        _ => reason.starts_with("requires "),
                    };
                    ensure!(truthful, "{name} is {:?}, and says {reason:?}", u.sub);
                }
            }
            if matches!(u.state, State::Activating | State::Active) && engine.going_down(name) {
                ensure!(
                    self.stopping_dependent(name),
                    "{name} should go down, is {:?}/{:?}, and waits for nothing",
                    u.state,
                    u.sub
                );
            }
            // Nothing waits for the end of a run that is over.
            if !u.is_running() {
                ensure!(
                    u.pending_spec.is_none() && !u.restart_pending,
                    "{name} is {:?}/{:?} with a restart pending ({}) or a new spec waiting ({})",
                    u.state,
                    u.sub,
                    u.restart_pending,
                    u.pending_spec.is_some()
                );
            }
            // A new spec waiting for a restart: it is on its way down.
            if u.pending_spec.is_some() && up(u) {
                ensure!(
                    engine.going_down(name),
                    "{name} has a new spec waiting for a restart, and is not going down"
                );
            }
            // 10. Requires.
            if up(u) {
                for r in &u.spec.requires {
                    let r_up = engine.unit(r).is_some_and(|r| r.state == State::Active);
                    ensure!(
                        r_up || self.stopping_dependent(name),
                        "{name} is {:?}/{:?} while {r}, which it requires, is not active",
                        u.state,
                        u.sub
                    );
                }
            }
            // 11. Wants down.
            if u.want == Want::Down && matches!(u.state, State::Activating | State::Active) {
                ensure!(
                    self.stopping_dependent(name),
                    "{name} is wanted down but {:?}/{:?}",
                    u.state,
                    u.sub
                );
            }
            // 12. Timers.
            if let Some(d) = u.deadline {
                let pinged = self.pinging && u.state == State::Active;
                ensure!(
                    d >= self.now || pinged,
                    "{name}'s deadline {d:?} is before now {:?}",
                    self.now
                );
            }
            let timer = match (u.state, u.sub) {
                (State::Inactive | State::Failed, _) => Some(false),
                (State::Activating, Sub::AutoRestart) | (State::Deactivating, _) => Some(true),
                (State::Active, _) => Some(u.spec.watchdog.is_some()),
                // ready_timeout may change in place by a reload while it starts.
                (State::Activating, _) => None,
            };
            if let Some(timer) = timer {
                ensure!(
                    u.deadline.is_some() == timer,
                    "{name} is {:?}/{:?} with deadline {:?}",
                    u.state,
                    u.sub,
                    u.deadline
                );
            }
        }
        Ok(())
    }

    /// Once a batch and everything it caused has been carried out.
    ///
    /// 13. The engine's pid for a service is a live process of that service, and it has
    ///     one exactly when its state says it has a process: Active/Running, Deactivating,
    ///     Activating/Start (its spawn answered by now); none otherwise.
    fn check_quiet(&self) -> Check {
        for u in self.engine.units() {
            let name = &u.spec.name;
            let has_process = matches!(
                (u.state, u.sub),
                (State::Active, Sub::Running)
                    | (State::Deactivating, _)
                    | (State::Activating, Sub::Start)
            );
            ensure!(
                u.pid.is_some() == has_process,
                "{name} is {:?}/{:?} with pid {:?}",
                u.state,
                u.sub,
                u.pid
            );
            if let Some(pid) = u.pid {
                let live = self
                    .procs
                    .get(&pid)
                    .is_some_and(|p| *p.unit == **name && !p.abandoned);
                ensure!(
                    live,
                    "{name} watches pid {pid}, which is not one of its live processes"
                );
            }
        }
        Ok(())
    }

    /// Lets the history come to rest: processes do what they were asked, starting
    /// services become ready, spawns work again, and time passes to every deadline but a
    /// watchdog's (services are pinged first). Then:
    ///
    /// 14. Nothing is starting or stopping, and no removed service is left.
    /// 15. A service wanted down is not running.
    /// 16. An active service has everything it requires active.
    /// 17. A wanted, inactive service is blocked by something it requires (Dependency),
    ///     never waiting forever; unless the system shut down.
    /// 18. After a shutdown nothing runs and AllStopped came once.
    /// 19. Every service runs the configuration last given (no change left pending), and
    ///     the services are the configuration's.
    /// 20. No process is left over: each live one (but those given up on) belongs to an
    ///     active service.
    fn settle(&mut self) -> Check {
        self.spawn_fails.clear();
        for _ in 0..400 {
            if self.obey(false, false)? {
                continue;
            }
            let starting = self
                .engine
                .units()
                .find(|u| u.state == State::Activating && u.sub != Sub::AutoRestart)
                .map(|u| {
                    (
                        u.spec.name.to_string(),
                        u.sub,
                        u.run,
                        u.pid,
                        u.spec.ready.clone(),
                    )
                });
            if let Some((name, sub, run, pid, ready)) = starting {
                match (sub, ready, pid) {
                    (Sub::Start, Readiness::Exit | Readiness::PidFile, Some(pid)) => {
                        self.end(pid, Exit::Code(0), false)?
                    }
                    (Sub::StartPidFile, _, _) => {
                        let pid = self.fresh_pid();
                        self.procs.insert(
                            pid,
                            Proc {
                                unit: name.clone(),
                                signal: None,
                                abandoned: false,
                            },
                        );
                        self.feed_all(Input::MainPid { name, run, pid })?
                    }
                    _ => self.feed_all(Input::Ready { name, run })?,
                }
                continue;
            }
            // Time for what waits for it (backoff, stop timeouts); watchdogs are fed.
            let waiting = self
                .engine
                .units()
                .filter(|u| u.state != State::Active)
                .filter_map(|u| u.deadline)
                .min();
            let Some(t) = waiting else {
                return self.check_settled();
            };
            // Healthy services ping all along: the last ping comes just before the tick.
            // (Stepping from ping to ping would take a million steps for a 1 ms watchdog
            // over a backoff of minutes.)
            self.now = self.now.max(t);
            self.pinging = true;
            let pings: Vec<(String, u64)> = self
                .engine
                .units()
                .filter(|u| u.state == State::Active && u.spec.watchdog.is_some())
                .map(|u| (u.spec.name.to_string(), u.run))
                .collect();
            for (name, run) in pings {
                let actions = self.feed(Input::WatchdogPing { name, run })?;
                ensure!(
                    actions.is_empty(),
                    "a ping did something: {}",
                    show_actions(&actions)
                );
            }
            self.pinging = false;
            self.tick_at(t)?;
        }
        Err("the system does not come to rest".into())
    }

    fn check_settled(&self) -> Check {
        let engine = &self.engine;
        for u in engine.units() {
            let name = &u.spec.name;
            // 14.
            ensure!(
                !matches!(u.state, State::Activating | State::Deactivating) && !u.removing,
                "{name} is still {:?}/{:?} (removing {})",
                u.state,
                u.sub,
                u.removing
            );
            // 15.
            if u.want == Want::Down {
                ensure!(!u.is_running(), "{name} is wanted down and runs");
            }
            // 16.
            if u.state == State::Active {
                for r in &u.spec.requires {
                    ensure!(
                        engine.unit(r).is_some_and(|r| r.state == State::Active),
                        "{name} is active while {r}, which it requires, is not"
                    );
                }
            }
            // 17.
            let between_runs = u.spec.schedule.is_some() && !u.due && u.sub == Sub::Scheduled;
            if u.state == State::Inactive
                && u.want == Want::Up
                && !engine.shutting_down()
                && !between_runs
            {
                let required_down = u
                    .spec
                    .requires
                    .iter()
                    .any(|r| engine.unit(r).is_none_or(|r| r.state != State::Active));
                ensure!(
                    u.sub == Sub::Dependency && required_down,
                    "{name} is wanted and waits forever ({:?})",
                    u.sub
                );
            }
            // 19.
            let given = self.config.get(&**name).or(self.made.get(&**name));
            ensure!(
                given == Some(&u.spec) && u.pending_spec.is_none(),
                "{name} does not run the configuration last given"
            );
        }
        // 18.
        if engine.shutting_down() {
            ensure!(
                engine.units().all(|u| !u.is_running()) && self.all_stopped == 1,
                "shut down: AllStopped came {} times",
                self.all_stopped
            );
        }
        // 19.
        let units: Vec<&str> = engine.units().map(|u| &*u.spec.name).collect();
        let mut configured: Vec<&String> = self.config.keys().chain(self.made.keys()).collect();
        configured.sort();
        ensure!(
            units == configured,
            "services {units:?}, configuration {configured:?}"
        );
        // 20.
        for (pid, p) in &self.procs {
            if p.abandoned {
                continue;
            }
            let active = engine
                .unit(&p.unit)
                .is_some_and(|u| u.state == State::Active && u.sub == Sub::Running);
            ensure!(
                active,
                "process {pid} of {} is left over: {:?}",
                p.unit,
                engine.unit(&p.unit).map(|u| (u.state, u.sub))
            );
        }
        Ok(())
    }
}

fn run_history(h: &History) -> Result<(), TestCaseError> {
    let mut world = World::new(h.confs[0].specs());
    let mut result = world.boot();
    for op in &h.ops {
        if result.is_err() {
            break;
        }
        world.trace.push(format!("# {op:?}"));
        result = world.run(op, &h.confs);
    }
    if result.is_ok() {
        world.trace.push("# settle".into());
        result = world.settle();
    }
    result.map_err(|e| {
        let start = world.trace.len().saturating_sub(60);
        TestCaseError::fail(format!(
            "{e}\n\nwhat happened:\n{}\n",
            world.trace[start..].join("\n")
        ))
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn engine_keeps_its_promises_whatever_happens() {
    let config = Config {
        cases: cases(),
        // Failing cases become example tests in engine_tests.rs, not files in the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&history(), |h| run_history(&h)) {
        panic!("{e}");
    }
}
