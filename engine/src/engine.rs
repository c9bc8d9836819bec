//! The pure engine: events in, actions out. No I/O and no clock of its own: the caller
//! passes `now` (a monotonic duration) with every input, executes the actions, and sleeps
//! until [`Engine::next_deadline`]. Tests drive it with a simulated clock.
//!
//! Commands only change a service's *want*; [`Engine::reconcile`] moves each service's
//! *state* toward it, honouring dependencies, readiness, backoff and start limits.
//!
//! Ordering rules, in one place:
//! - A service starts when everything it `requires` is active and nothing it `wants` or
//!   is `after` is still on its way up.
//! - A service stops when its want is down, a restart was asked for, or something it
//!   `requires` is going down; it waits until every service ordered after it that is also
//!   stopping has stopped (reverse order).

use crate::model::*;
use crate::spec::{FailureAction, Readiness, RestartPolicy, ServiceSpec, ServiceType};
use ember_ipc::{ReloadReport, SpecChange};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Start(String),
    Stop(String),
    Restart(String),
    /// Forget the service's failures (systemd's reset-failed): its restart count, start
    /// limit and backoff begin afresh, and a failed one becomes inactive without
    /// starting: not wanted up any more (unless its schedule is on: the next run is
    /// still due), and an instance made by a start goes, as one stopped does.
    ResetFailed(String),
    /// The runtime spawned the process asked for by [`Action::Spawn`].
    Spawned {
        name: String,
        run: u64,
        pid: Pid,
    },
    SpawnFailed {
        name: String,
        run: u64,
        error: String,
    },
    /// A process of this service ended (main or a forking daemon's first process).
    Exited {
        name: String,
        pid: Pid,
        exit: Exit,
        /// The kernel's OOM killer killed in its cgroup during this run.
        oom_killed: bool,
    },
    /// A readiness probe succeeded.
    Ready {
        name: String,
        run: u64,
    },
    /// The daemon's pid, from a forking service's pid_file or sd_notify MAINPID=.
    MainPid {
        name: String,
        run: u64,
        pid: Pid,
    },
    WatchdogPing {
        name: String,
        run: u64,
    },
    StatusText {
        name: String,
        run: u64,
        text: String,
    },
    /// sd_notify WATCHDOG=trigger: the service found itself broken; as a missed ping.
    WatchdogTrigger {
        name: String,
        run: u64,
    },
    /// sd_notify EXTEND_TIMEOUT_USEC=: the start timeout (while not ready) or the stop
    /// timeout (after the stop signal) is at least `by` from now, as systemd does.
    ExtendTimeout {
        name: String,
        run: u64,
        by: Duration,
    },
    /// Time passed: deadlines at or before `now` fire.
    Tick,
    /// A new, already checked configuration.
    Reload(BTreeMap<String, ServiceSpec>),
    /// A service made while running: an instance of a template, made by the start that
    /// names it (the start follows as its own input). Added unless it exists; one that
    /// exists and is on its way out (a stopped instance still stopping) is kept instead.
    Add(Box<ServiceSpec>),
    /// Stop everything, in reverse order; [`Action::AllStopped`] follows.
    Shutdown,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the service's command (as `spec` says, which the action carries: the runtime
    /// reads nothing back from the engine); answer with Spawned or SpawnFailed.
    Spawn {
        name: String,
        run: u64,
        spec: std::sync::Arc<ServiceSpec>,
    },
    /// Send a signal to every process of the service, and to its main process `pid`
    /// wherever that is.
    Kill {
        name: String,
        signal: Signal,
        pid: Option<Pid>,
    },
    /// Watch for readiness (log, delay, notify, tcp, file, exec); answer with Ready.
    Probe {
        name: String,
        run: u64,
        readiness: Readiness,
    },
    /// Read the forking daemon's pid from its pid_file; answer with MainPid.
    WatchPidFile {
        name: String,
        run: u64,
        path: std::path::PathBuf,
    },
    /// Readiness and pid-file watches for this service are no longer needed.
    StopProbes { name: String },
    /// SIGKILL whatever is left of the service once its main process is gone: its cgroup
    /// (unless `keep`: a oneshot that succeeded leaves what it started, as systemd's
    /// RemainAfterExit) and its process group.
    Cleanup { name: String, keep: bool },
    /// The service's status changed: publish it.
    Changed { name: String },
    /// A reload removed the service, or an instance made on demand was stopped or is
    /// done: it is forgotten.
    Removed { name: String },
    /// Just before its `Removed`: an instance made by a start ended by itself, its work
    /// done (a `start --wait` of it succeeded, though it is gone).
    Done { name: String },
    /// A service with `on_failure` ended failed.
    OnFailure { name: String, action: FailureAction },
    /// Shutdown: every service has stopped.
    AllStopped,
    /// A reload was applied: what it changed, for its reply.
    Reloaded(Box<ReloadReport>),
}

#[derive(Debug, Default)]
pub struct Engine {
    units: Units,
    /// For each service, the services ordered after it (reverse edges).
    dependents: BTreeMap<String, Vec<String>>,
    /// Each service's place in one order of all of them, consistent with the ordering of
    /// the configuration last checked: what reverse order follows (see
    /// [`Engine::rebuild_dependents`]).
    order: BTreeMap<Arc<str>, usize>,
    shutting_down: bool,
    all_stopped_sent: bool,
    dirty: BTreeSet<String>,
    changed: BTreeSet<String>,
    /// The services that linger (see [`ServiceSpec::linger`]), by name.
    lingering: Vec<String>,
    /// What the lingering services are ordered after, directly or through others (their
    /// brokers and buses, and what those are after): at shutdown these outlive them, so
    /// no lingering service waits for any of them, its own or another's.
    lingering_needs: BTreeSet<String>,
    /// How many services are running ([`Unit::is_running`]), and how many of those linger:
    /// kept as states change, so that a turn need not count them.
    running: usize,
    running_lingering: usize,
    /// How many services a reload is removing.
    removing: usize,
    /// Every deadline of a service, earliest first: the next one without a scan.
    timers: BTreeSet<(Duration, String)>,
    /// Every scheduled oneshot's next run, earliest first (see [`Unit::next_run`]).
    schedule_timers: BTreeSet<(Duration, String)>,
    /// When the engine was made: what `after_boot` counts from.
    booted_at: Duration,
    /// The first reconcile of an engine made at boot ([`Engine::new`], then
    /// [`Engine::boot`]): an `after_boot` that passed while ember got there ("0s", "1ms")
    /// is the boot's run, not one missed. Not for an engine adopted at a reexec.
    at_boot: bool,
    /// Makes each board's jitter its own (see [`Engine::set_jitter_seed`]).
    jitter_seed: u64,
    /// How many services are on their way up or down, and how many are failed: the
    /// system's state without a scan (see [`Engine::tally`]).
    tally: Tally,
    /// [`Engine::why_down`]'s answers since the last change (forgotten by `touch` and at
    /// each reconcile): every service waiting at a pass asked it of each link below it,
    /// so a `requires` chain of N cost N^2 at every pass, N^3 for its boot (a chain of
    /// 3,000 was not up after minutes, and PID 1 did not answer meanwhile).
    why_down_known: std::cell::RefCell<BTreeMap<String, Option<String>>>,
    /// How many times `why_down` looked at a service (tests read it).
    #[cfg(test)]
    pub(crate) why_down_looks: std::cell::Cell<u64>,
    /// How many times a reconcile looked at a service (tests read it).
    #[cfg(test)]
    pub(crate) steps: u64,
}

/// Every unit, by name. Looking one up is cheap; going through all of them is what makes
/// an input's work grow with the number of services, so that is counted (in tests): the
/// tests that keep the work of one input proportional to what it changes read the count.
///
/// Each unit is boxed: the B-tree's nodes hold 11 entries and are about half full, and a
/// unit inline (1.5 KB) made every service cost two units' room (3 KB); boxed, a slot
/// is a pointer and the unit takes its own size.
#[derive(Debug, Default)]
struct Units {
    /// Keyed by the spec's own name: one allocation of it per service.
    map: BTreeMap<Arc<str>, Box<Unit>>,
    /// Units looked at by walks through all of them.
    #[cfg(test)]
    visits: std::cell::Cell<u64>,
}

impl Units {
    fn get(&self, name: &str) -> Option<&Unit> {
        self.map.get(name).map(|unit| &**unit)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Unit> {
        self.map.get_mut(name).map(|unit| &mut **unit)
    }

    /// The shared name a unit is kept under.
    fn name(&self, name: &str) -> Option<&Arc<str>> {
        self.map.get_key_value(name).map(|(key, _)| key)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn insert(&mut self, unit: Unit) {
        self.map.insert(unit.spec.name.clone(), Box::new(unit));
    }

    fn remove(&mut self, name: &str) -> Option<Unit> {
        self.map.remove(name).map(|unit| *unit)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Every unit: counted, one visit per unit walked through.
    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Unit)> + '_ {
        self.map
            .iter()
            .map(|(name, unit)| (name, &**unit))
            .inspect(move |_| self.visit())
    }

    fn keys(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.iter().map(|(n, _)| n)
    }

    /// Every unit, to change, in the order of [`Units::iter`]: counted as it counts.
    fn values_mut(&mut self) -> impl Iterator<Item = &mut Unit> + '_ {
        #[cfg(test)]
        self.visits.set(self.visits.get() + self.map.len() as u64);
        self.map.values_mut().map(|unit| &mut **unit)
    }

    fn visit(&self) {
        #[cfg(test)]
        self.visits.set(self.visits.get() + 1);
    }
}

/// What the system's state is made of: how many services are starting (on their way up
/// or down, or wanted up and waiting) and how many have failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub starting: usize,
    pub failed: usize,
}

/// Which count of the [`Tally`] a unit is in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    #[default]
    Settled,
    Starting,
    Failed,
}

impl Class {
    fn of(unit: &Unit) -> Class {
        match unit.state {
            State::Failed => Class::Failed,
            State::Activating | State::Deactivating => Class::Starting,
            State::Inactive if unit.want == Want::Up && unit.sub != Sub::Dependency => {
                Class::Starting
            }
            _ => Class::Settled,
        }
    }
}

impl Tally {
    fn add(&mut self, class: Class) {
        match class {
            Class::Starting => self.starting += 1,
            Class::Failed => self.failed += 1,
            Class::Settled => {}
        }
    }

    fn remove(&mut self, class: Class) {
        match class {
            Class::Starting => self.starting = self.starting.saturating_sub(1),
            Class::Failed => self.failed = self.failed.saturating_sub(1),
            Class::Settled => {}
        }
    }
}

/// Sets one of a unit's times (`slot`) and keeps the engine's index of those times with it.
fn set_indexed(
    timers: &mut BTreeSet<(Duration, String)>,
    name: &str,
    slot: &mut Option<Duration>,
    at: Option<Duration>,
) {
    if *slot == at {
        return;
    }
    if let Some(old) = *slot {
        timers.remove(&(old, name.to_owned()));
    }
    if let Some(new) = at {
        timers.insert((new, name.to_owned()));
    }
    *slot = at;
}

/// What a service not ready in time was waited for, in words for its reason.
fn awaited(ready: &Readiness) -> Option<String> {
    match ready {
        Readiness::Notify => Some("no READY=1 came on its notify socket".to_owned()),
        Readiness::File(path) => Some(format!("{} did not exist", path.display())),
        Readiness::Exec(argv) => argv
            .first()
            .map(|program| format!("its check {program} did not exit 0")),
        Readiness::Tcp(addr) => Some(format!("nothing accepted a connection on {addr}")),
        Readiness::Log(pattern) => Some(format!("no line of its output matched {pattern}")),
        Readiness::Spawned | Readiness::Exit | Readiness::PidFile | Readiness::Delay(_) => None,
    }
}

/// Sets a unit's deadline and keeps the engine's index of deadlines with it.
fn set_deadline(
    timers: &mut BTreeSet<(Duration, String)>,
    name: &str,
    unit: &mut Unit,
    at: Option<Duration>,
) {
    set_indexed(timers, name, &mut unit.deadline, at);
}

/// Sets a scheduled unit's next run (None: no more), from the time it is counted from
/// plus its jitter, and keeps the index of next runs with it.
fn set_next_run(
    timers: &mut BTreeSet<(Duration, String)>,
    name: &str,
    unit: &mut Unit,
    base: Option<Duration>,
    seed: u64,
) {
    unit.next_base = base.unwrap_or_default();
    let spread = unit
        .spec
        .schedule
        .as_ref()
        .map(|s| s.jitter)
        .unwrap_or_default();
    let at = base.map(|b| b + jitter(seed, name, b, spread));
    set_indexed(timers, name, &mut unit.next_run, at);
}

/// The first of `base + k × every` (k ≥ 1) after `now`: computed, not stepped to, so that
/// a wake-up a year late with a 1 ms period costs no more than one on time.
fn next_period(base: Duration, every: Duration, now: Duration) -> Duration {
    let first = base + every;
    if first > now {
        return first;
    }
    let every_ns = every.as_nanos().max(1);
    let periods = (now - base).as_nanos() / every_ns + 1;
    let ns = base.as_nanos() + periods * every_ns;
    Duration::new(
        (ns / 1_000_000_000).min(u128::from(u64::MAX)) as u64,
        (ns % 1_000_000_000) as u32,
    )
}

/// FNV-1a of some bytes: a fixed spread, for the schedules' jitter and its seed.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_more(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a_more(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Up to `jitter`, the same for the same board, service and run time, and spread evenly
/// across boards (their seeds) and runs: FNV-1a over them, then a final mix.
fn jitter(seed: u64, name: &str, base: Duration, jitter: Duration) -> Duration {
    let span = jitter.as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    let base_ms = base.as_millis() as u64;
    let h = fnv1a(&seed.to_le_bytes());
    let mut h = fnv1a_more(fnv1a_more(h, name.as_bytes()), &base_ms.to_le_bytes());
    // splitmix64's finalizer: FNV's low bits alone are not spread well.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    Duration::from_millis(h % (span + 1))
}

impl Engine {
    pub fn new(specs: BTreeMap<String, ServiceSpec>, now: Duration) -> Engine {
        let mut units = BTreeMap::new();
        for (name, spec) in specs {
            units.insert(name, Unit::new(spec, now));
        }
        let mut engine = Engine::with_records(units, now);
        engine.at_boot = true;
        engine
    }

    /// An engine over `units` (new ones, or a previous binary's records: see `carry.rs`),
    /// with its indexes (counts, tally, timers, dependents) built from them and every unit
    /// to be looked at by the next reconcile.
    pub(crate) fn with_records(units: BTreeMap<String, Unit>, booted_at: Duration) -> Engine {
        let mut engine = Engine {
            booted_at,
            ..Engine::default()
        };
        for (name, mut unit) in units {
            unit.class = Class::of(&unit);
            engine.tally.add(unit.class);
            if let Some(at) = unit.deadline {
                engine.timers.insert((at, name.clone()));
            }
            if let Some(at) = unit.next_run {
                engine.schedule_timers.insert((at, name.clone()));
            }
            engine.units.insert(unit);
        }
        engine.rebuild_dependents();
        engine.dirty = engine.units.keys().map(|name| name.to_string()).collect();
        // What each passes on now: every service is looked at by the next reconcile, with
        // these answers or later ones, which a change passes on in turn.
        let passed: Vec<PassedOn> = engine.units.keys().map(|n| engine.passes_on(n)).collect();
        for (unit, passed) in engine.units.values_mut().zip(passed) {
            unit.passed_on = Some(passed);
        }
        engine
    }

    /// When the engine started (its clock's time): what `after_boot` counts from.
    pub(crate) fn booted_at(&self) -> Duration {
        self.booted_at
    }

    /// What the engine counts and indexes as it goes, against a scan of every unit.
    #[cfg(test)]
    pub(crate) fn check_counts(&self) -> Result<(), String> {
        // The map itself: these walks are the test's, not the engine's work.
        let units = &self.units.map;
        let running = units.values().filter(|u| u.is_running()).count();
        let running_lingering = units
            .values()
            .filter(|u| u.is_running() && u.spec.linger)
            .count();
        let lingering: Vec<&str> = units
            .iter()
            .filter(|(_, u)| u.spec.linger)
            .map(|(n, _)| &**n)
            .collect();
        let removing = units.values().filter(|u| u.removing).count();
        let timers: BTreeSet<(Duration, String)> = units
            .iter()
            .filter_map(|(n, u)| u.deadline.map(|d| (d, n.to_string())))
            .collect();
        let runs: BTreeSet<(Duration, String)> = units
            .iter()
            .filter_map(|(n, u)| u.next_run.map(|d| (d, n.to_string())))
            .collect();
        if runs != self.schedule_timers {
            return Err(format!(
                "scheduled runs {:?}, units say {runs:?}",
                self.schedule_timers
            ));
        }
        let mut tally = Tally::default();
        for unit in units.values() {
            tally.add(Class::of(unit));
        }
        let counted = (
            self.running,
            self.running_lingering,
            self.lingering
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>(),
            self.removing,
            &self.timers,
            self.tally,
        );
        let scanned = (
            running,
            running_lingering,
            lingering,
            removing,
            &timers,
            tally,
        );
        if counted != scanned {
            return Err(format!("counted {counted:?}, but a scan finds {scanned:?}"));
        }
        // Each unit is counted where it is, not only in sum.
        if let Some((name, unit)) = units.iter().find(|(_, u)| u.class != Class::of(u)) {
            return Err(format!(
                "{name} is counted as {:?}, but is {:?} ({:?} {:?}, want {:?})",
                unit.class,
                Class::of(unit),
                unit.state,
                unit.sub,
                unit.want
            ));
        }
        Ok(())
    }

    /// How many services are starting and failed, as of the last input.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.get(name)
    }

    /// Every unit, for the caller (not counted as the engine's work: see [`Units`]).
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.map.values().map(|unit| &**unit)
    }

    /// Units the engine has walked through so far (see [`Units`]).
    #[cfg(test)]
    pub(crate) fn visits(&self) -> u64 {
        self.units.visits.get()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The earliest deadline of any service: when to call again with [`Input::Tick`].
    pub fn next_deadline(&self) -> Option<Duration> {
        let deadline = self.timers.first().map(|(at, _)| *at);
        let run = self.schedule_timers.first().map(|(at, _)| *at);
        match (deadline, run) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What makes the schedules' jitter differ between boards (the runtime gives the
    /// machine id): a fleet's scheduled uploads spread out, and each board's stay put.
    pub fn set_jitter_seed(&mut self, seed: u64) {
        self.jitter_seed = seed;
    }

    /// Starts everything enabled: the first reconcile after [`Engine::new`].
    pub fn boot(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.reconcile(now, &mut actions);
        self.at_boot = false;
        self.finish(now, &mut actions);
        actions
    }

    /// Applies one input and returns what to do.
    pub fn handle(&mut self, input: Input, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.apply(input, now, &mut actions);
        self.reconcile(now, &mut actions);
        self.finish(now, &mut actions);
        actions
    }

    fn finish(&mut self, now: Duration, actions: &mut Vec<Action>) {
        // At a shutdown what the removed were ordered after may have been waiting, through
        // them, for what is ordered after them (see has_stopping_dependents): gone, they
        // hold nothing back, and it is looked at again. That can stop, and so remove, more.
        loop {
            let after = self.remove_stopped(actions);
            if after.is_empty() || !self.shutting_down {
                break;
            }
            self.look_again_below(after);
            self.reconcile(now, actions);
        }
        self.finish_changes(actions);
    }

    /// Removes the services a reload removed that have stopped; returns what they were
    /// ordered after.
    fn remove_stopped(&mut self, actions: &mut Vec<Action>) -> Vec<String> {
        let removed: Vec<String> = if self.removing > 0 {
            self.units
                .iter()
                .filter(|(_, u)| u.removing && !u.is_running())
                .map(|(n, _)| n.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let mut after = Vec::new();
        for name in removed {
            if let Some(unit) = self.units.remove(&name) {
                if unit.done {
                    actions.push(Action::Done { name: name.clone() });
                }
                after.extend(unit.spec.ordered_after().cloned());
                self.tally.remove(unit.class);
                if let Some(at) = unit.deadline {
                    self.timers.remove(&(at, name.clone()));
                }
                if let Some(at) = unit.next_run {
                    self.schedule_timers.remove(&(at, name.clone()));
                }
            }
            self.changed.remove(&name);
            actions.push(Action::Removed { name });
        }
        if !removed_is_empty(actions) {
            self.rebuild_dependents();
        }
        after
    }

    fn finish_changes(&mut self, actions: &mut Vec<Action>) {
        for name in std::mem::take(&mut self.changed) {
            if let Some(unit) = self.units.get_mut(&name) {
                let class = Class::of(unit);
                if class != unit.class {
                    self.tally.remove(unit.class);
                    self.tally.add(class);
                    unit.class = class;
                }
            }
            actions.push(Action::Changed { name });
        }
        if self.shutting_down && !self.all_stopped_sent && self.running == 0 {
            self.all_stopped_sent = true;
            actions.push(Action::AllStopped);
        }
    }

    fn rebuild_dependents(&mut self) {
        self.dependents.clear();
        self.lingering.clear();
        self.lingering_needs.clear();
        self.running = 0;
        self.running_lingering = 0;
        self.removing = 0;
        for (name, unit) in self.units.iter() {
            if unit.spec.linger {
                self.lingering.push(name.to_string());
            }
            if unit.is_running() {
                self.running += 1;
                if unit.spec.linger {
                    self.running_lingering += 1;
                }
            }
            if unit.removing {
                self.removing += 1;
            }
            for dep in unit.spec.ordered_after() {
                self.dependents
                    .entry(dep.clone())
                    .or_default()
                    .push(name.to_string());
            }
        }
        let mut todo: Vec<&String> = self.lingering.iter().collect();
        while let Some(next) = todo.pop() {
            let Some(unit) = self.units.get(next) else {
                continue;
            };
            for dep in unit.spec.ordered_after() {
                if self.lingering_needs.insert(dep.clone()) {
                    todo.push(dep);
                }
            }
        }
        self.rebuild_order();
    }

    /// Puts every service in one order that follows every ordering edge it can. The
    /// configuration last checked has no cycle, but not every service runs it: one that a
    /// reload removed keeps its old spec until it has stopped, and so does one whose new
    /// spec waits for its restart. Their older edges can close a cycle with the newer ones
    /// (b wants a, then a reload has a require b and restarts b), and in reverse order each
    /// service on such a cycle would wait for the next to stop first, forever. So where
    /// edges form a cycle, those of the services that run the last configuration win, and
    /// an edge against the order is not waited on (see has_stopping_dependents).
    fn rebuild_order(&mut self) {
        // Kahn's algorithm, ties broken by name; `preds`: edges into each service, with
        // whether they come from a spec of the last configuration.
        let mut preds: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
        for (name, unit) in self.units.iter() {
            let current = !unit.removing && unit.pending_spec.is_none();
            let entry = preds.entry(name).or_default();
            for dep in unit.spec.ordered_after() {
                if **dep != **name && self.units.contains_key(dep) {
                    entry.push((dep.as_str(), current));
                }
            }
        }
        // Inserted, not collected: a collected BTreeMap or BTreeSet sorts first, and each
        // type sorted is its own copy of the sort in the executable.
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ready: BTreeSet<&str> = BTreeSet::new();
        for (n, p) in &preds {
            left.insert(*n, p.len());
            if p.is_empty() {
                ready.insert(*n);
            }
        }
        let mut order = BTreeMap::new();
        while order.len() < self.units.len() {
            let Some(next) = ready.pop_first() else {
                // A cycle: let go of a service that nothing of the last configuration
                // placed after it still holds back (there is one, that configuration
                // having no cycle), dropping the older edges into it.
                let held = |n: &&str| {
                    preds.get(*n).is_some_and(|p| {
                        p.iter()
                            .any(|(dep, current)| *current && !order.contains_key(*dep))
                    })
                };
                let stuck = left.keys().copied();
                let Some(free) = stuck.clone().find(|n| !held(n)).or(stuck.min()) else {
                    break;
                };
                left.remove(free);
                ready.insert(free);
                continue;
            };
            left.remove(next);
            if let Some(name) = self.units.name(next) {
                order.insert(name.clone(), order.len());
            }
            for dependent in self.dependents.get(next).into_iter().flatten() {
                if let Some(count) = left.get_mut(dependent.as_str()) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        ready.insert(dependent.as_str());
                    }
                }
            }
        }
        self.order = order;
    }

    /// Whether `dependent`, ordered after `name`, is so in the order reverse order follows.
    fn after_in_order(&self, name: &str, dependent: &str) -> bool {
        match (self.order.get(name), self.order.get(dependent)) {
            (Some(a), Some(b)) => a < b,
            _ => false,
        }
    }

    /// Marks a service and its neighbours for the next reconcile pass.
    fn touch(&mut self, name: &str) {
        self.forget_why_down();
        self.changed.insert(name.to_owned());
        self.dirty.insert(name.to_owned());
        if self.shutting_down {
            // A lingering service waits for every other to stop: look at it again.
            self.dirty.extend(self.lingering.iter().cloned());
        }
        if let Some(unit) = self.units.get(name) {
            let after = unit.spec.ordered_after().cloned().collect();
            self.look_again_below(after);
        }
        if let Some(dependents) = self.dependents.get(name) {
            self.dirty.extend(dependents.iter().cloned());
        }
        // Whether what requires it (all the way down a `requires` chain) is going down,
        // or may start, depends on it without their own state changing; and so does
        // whether what those are ordered after waits for them to stop first. Look at
        // them all, or one waiting for that to change would never be looked at again.
        // Only as far up as what each passes on changed, though: what requires one whose
        // answers stay the same finds the same answers through it. (What reverse order
        // waits for at a shutdown is looked at by look_again_below above, and the
        // shutdown's start touches every service.)
        if !self.passes_on_new(name) {
            return;
        }
        let mut todo = vec![name.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(next) = todo.pop() {
            // What requires `next`, not looked at yet (collected: each is then updated).
            let above: Vec<String> = (self.dependents.get(&next).into_iter().flatten())
                .filter(|d| {
                    self.units
                        .get(d)
                        .is_some_and(|u| u.spec.requires.contains(&next))
                })
                .filter(|d| seen.insert((*d).clone()))
                .cloned()
                .collect();
            for dependent in above {
                if let Some(unit) = self.units.get(&dependent) {
                    self.dirty.extend(unit.spec.ordered_after().cloned());
                }
                self.dirty.insert(dependent.clone());
                if self.passes_on_new(&dependent) {
                    todo.push(dependent);
                }
            }
        }
    }

    /// What `name` passes on now, to what requires it.
    fn passes_on(&self, name: &str) -> PassedOn {
        PassedOn {
            why_down: self.why_down(name),
            stops: self
                .units
                .get(name)
                .is_none_or(|u| u.state != State::Active)
                || self.should_stop(name),
        }
    }

    /// Whether what `name` passes on changed since it was last passed on (and keeps it as
    /// passed on now).
    fn passes_on_new(&mut self, name: &str) -> bool {
        let passed = self.passes_on(name);
        let Some(unit) = self.units.get_mut(name) else {
            return true;
        };
        let same = unit.passed_on.as_ref() == Some(&passed);
        unit.passed_on = Some(passed);
        !same
    }

    /// Marks `after` (what a service is, or was, ordered after) for the next pass, and at
    /// a shutdown past those that hold nothing any more what they are ordered after in
    /// turn: one of
    /// them may wait for that service to stop first (has_stopping_dependents looks
    /// through them too), and nothing else would look at it again.
    fn look_again_below(&mut self, after: Vec<String>) {
        let mut todo = after;
        let mut seen = BTreeSet::new();
        while let Some(dep) = todo.pop() {
            if seen.contains(&dep) {
                continue;
            }
            let through = self.shutting_down;
            if let Some(u) = self.units.get(&dep).filter(|u| through && holds_nothing(u)) {
                todo.extend(u.spec.ordered_after().cloned());
            }
            seen.insert(dep);
        }
        self.dirty.extend(seen);
    }

    fn set_state(&mut self, name: &str, state: State, sub: Sub, now: Duration) {
        if let Some(unit) = self.units.get_mut(name) {
            if unit.state != state {
                unit.since = now;
            }
            let was_running = unit.is_running();
            unit.state = state;
            unit.sub = sub;
            match (was_running, unit.is_running()) {
                (false, true) => {
                    self.running += 1;
                    self.running_lingering += usize::from(unit.spec.linger);
                }
                (true, false) => {
                    self.running = self.running.saturating_sub(1);
                    if unit.spec.linger {
                        self.running_lingering = self.running_lingering.saturating_sub(1);
                    }
                }
                _ => {}
            }
        }
        self.touch(name);
    }

    fn apply(&mut self, input: Input, now: Duration, actions: &mut Vec<Action>) {
        match input {
            // A service that a reload removed is on its way out: only a reload that
            // configures it again brings it back. Wanting it up would make what wants it
            // or is after it wait for it, and nothing would look at them again once it
            // is dropped.
            Input::Start(name) => {
                if self.units.get(&name).is_none_or(|u| u.removing) {
                    return;
                }
                self.want_up(&name, now);
                self.pull_in(&name, now);
                self.run_now(&name, now);
            }
            Input::Stop(name) => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                unit.want = Want::Down;
                unit.due = false;
                // A restart asked for is cancelled; not one that a new spec waits for:
                // a start before it has stopped must not leave it on the old spec.
                if unit.pending_spec.is_none() {
                    unit.restart_pending = false;
                }
                // An instance made on demand goes once stopped, as a removed service does.
                if unit.spec.transient && !unit.removing {
                    unit.removing = true;
                    self.removing += 1;
                }
                self.touch(&name);
            }
            Input::Add(spec) => self.add(*spec, now),
            Input::ResetFailed(name) => self.reset_failed(&name, now),
            Input::Restart(name) => {
                let Some(unit) = self.units.get_mut(&name).filter(|u| !u.removing) else {
                    return;
                };
                unit.want = Want::Up;
                reset_failures(unit);
                match unit.state {
                    State::Active | State::Activating => unit.restart_pending = true,
                    State::Failed => self.set_state(&name, State::Inactive, Sub::Dead, now),
                    State::Inactive | State::Deactivating => {}
                }
                self.touch(&name);
                self.pull_in(&name, now);
                self.run_now(&name, now);
            }
            Input::Spawned { name, run, pid } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                if unit.run == run && unit.state == State::Deactivating && unit.pid.is_none() {
                    // Stopped before its spawn was answered (see begin_stop): now there
                    // is a process to stop.
                    unit.pid = Some(pid);
                    let signal = match unit.sub {
                        Sub::StopSigkill => Signal::SIGKILL,
                        _ => unit.spec.stop_signal,
                    };
                    actions.push(Action::Kill {
                        name: name.clone(),
                        signal,
                        pid: unit.pid,
                    });
                    self.touch(&name);
                    return;
                }
                if unit.run != run || unit.state != State::Activating {
                    return;
                }
                unit.pid = Some(pid);
                if unit.spec.ready == Readiness::Spawned {
                    self.become_active(&name, now, actions);
                } else if !matches!(unit.spec.ready, Readiness::Exit | Readiness::PidFile) {
                    let readiness = unit.spec.ready.clone();
                    actions.push(Action::Probe {
                        name: name.clone(),
                        run,
                        readiness,
                    });
                }
                self.touch(&name);
            }
            Input::SpawnFailed { name, run, error } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                if unit.run == run && unit.state == State::Deactivating && unit.pid.is_none() {
                    // Stopped before its spawn was answered: nothing was spawned, so it
                    // has stopped (a timeout that stopped it is still its failure).
                    set_deadline(&mut self.timers, &name, unit, None);
                    match unit.failing.take() {
                        Some((sub, why)) => self.fail(&name, sub, why, now, actions),
                        None => self.stopped(&name, now),
                    }
                    return;
                }
                if unit.run != run || unit.state != State::Activating || unit.sub != Sub::Start {
                    return; // already failed, or a stale answer
                }
                self.fail(
                    &name,
                    Sub::Spawn,
                    format!("cannot start: {error}"),
                    now,
                    actions,
                );
            }
            Input::Exited {
                name,
                pid,
                exit,
                oom_killed,
            } => self.exited(&name, pid, exit, oom_killed, now, actions),
            Input::Ready { name, run } => {
                let Some(unit) = self.units.get(&name) else {
                    return;
                };
                if unit.run == run && unit.state == State::Activating && unit.sub == Sub::Start {
                    self.become_active(&name, now, actions);
                }
            }
            Input::MainPid { name, run, pid } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                // Only a run that has a process (or, forking, a daemon to find) takes a
                // new main pid: a late report once the run ended (restart backoff, a
                // finished oneshot) would have the engine watch a process it never stops.
                let has_process =
                    unit.sub == Sub::StartPidFile || (unit.pid.is_some() && unit.is_running());
                if unit.run != run || !has_process {
                    return;
                }
                unit.pid = Some(pid);
                if unit.sub == Sub::StartPidFile {
                    self.become_active(&name, now, actions);
                }
                self.touch(&name);
            }
            Input::WatchdogPing { name, run } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                if unit.run == run && unit.state == State::Active {
                    if let Some(period) = unit.spec.watchdog {
                        set_deadline(&mut self.timers, &name, unit, Some(now + period));
                    }
                }
            }
            Input::WatchdogTrigger { name, run } => {
                let Some(unit) = self.units.get(&name) else {
                    return;
                };
                // As systemd: whether or not it has a `watchdog`, while it runs.
                let running = matches!(
                    (unit.state, unit.sub),
                    (State::Activating, Sub::Start) | (State::Active, Sub::Running)
                );
                if unit.run == run && running && unit.pid.is_some() {
                    let why = "asked for its watchdog to fire (WATCHDOG=trigger)".to_owned();
                    self.begin_stop(&name, Some((Sub::Watchdog, why)), now, actions);
                }
            }
            Input::ExtendTimeout { name, run, by } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                // Not the watchdog's (a ping is how to put that off), nor a restart delay.
                let timed = matches!(
                    (unit.state, unit.sub),
                    (State::Activating, Sub::Start) | (State::Deactivating, Sub::StopSigterm)
                );
                if let Some(at) = unit.deadline.filter(|_| unit.run == run && timed) {
                    set_deadline(&mut self.timers, &name, unit, Some(at.max(now + by)));
                }
            }
            Input::StatusText { name, run, text } => {
                let Some(unit) = self.units.get_mut(&name) else {
                    return;
                };
                if unit.run == run {
                    unit.status_text = Some(text);
                    self.changed.insert(name);
                }
            }
            Input::Tick => {
                let mut due: Vec<String> = self
                    .timers
                    .iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, n)| n.clone())
                    .collect();
                // By name (the timers are by time): the same order as the stable sort, for
                // names are unique, without a stable sort's own copy in the executable.
                due.sort_unstable();
                for name in due {
                    self.deadline_passed(&name, now, actions);
                }
                let runs: Vec<String> = self
                    .schedule_timers
                    .iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, n)| n.clone())
                    .collect();
                for name in runs {
                    self.scheduled_run_due(&name, now);
                }
            }
            Input::Reload(specs) => self.reload(specs, now, actions),
            Input::Shutdown => {
                self.shutting_down = true;
                let names: Vec<String> = self.units.keys().map(|n| n.to_string()).collect();
                for name in names {
                    if let Some(unit) = self.units.get_mut(&name) {
                        unit.want = Want::Down;
                        unit.restart_pending = false;
                        unit.due = false;
                    }
                    self.touch(&name);
                }
            }
        }
    }

    /// Wants a service up. One that was not wanted (stopped by hand, or done) or that
    /// failed gets a fresh start, as a restart does and as systemd's start does: its
    /// restart count, backoff and start limit count from here, and its last failure is no
    /// longer why it is down. One already wanted up (in its restart delay, waiting) keeps
    /// its own.
    fn reset_failed(&mut self, name: &str, now: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        unit.consecutive_failures = 0;
        unit.failures.clear();
        unit.restarts = 0;
        if unit.state != State::Failed {
            // Running or held: its reason, if any, is why it waits, not a failure.
            if unit.sub == Sub::AutoRestart {
                // Its backoff begins afresh, the delay it waits out too: no longer than
                // the first delay since its run ended (found by a hostile review: a
                // delay its failures had doubled ran its course).
                let first = backoff(unit.spec.restart_delay, unit.spec.restart_delay_max, 1);
                let at = (unit.since + first).max(now);
                if unit.deadline.is_some_and(|d| d > at) {
                    set_deadline(&mut self.timers, name, unit, Some(at));
                }
            }
            self.touch(name);
            return;
        }
        unit.reason = None;
        unit.result = None;
        // The run it was due for was the one that failed.
        unit.due = false;
        // A scheduled oneshot whose last run failed is still on its schedule (its next
        // time is armed); anything else that failed is left down, as systemd leaves it:
        // the reset is not a start.
        if !unit.schedule_on {
            unit.want = Want::Down;
            unit.restart_pending = false;
            if unit.spec.transient && !unit.removing {
                unit.removing = true;
                self.removing += 1;
            }
        }
        self.set_state(name, State::Inactive, Sub::Dead, now);
    }

    fn want_up(&mut self, name: &str, now: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if unit.want == Want::Down || unit.state == State::Failed {
            reset_failures(unit);
        }
        unit.want = Want::Up;
        if unit.state == State::Failed {
            self.set_state(name, State::Inactive, Sub::Dead, now);
        }
        self.touch(name);
    }

    /// An explicit start pulls in what the service `requires` and `wants`, all the way
    /// down, as systemd's start job does: each one not wanted up, or failed, is started
    /// too. One being removed by a reload is left alone (the start then names it).
    fn pull_in(&mut self, name: &str, now: Duration) {
        // Not BTreeSet::from([..]): that sorts the array, one more copy of the sort.
        let mut seen = BTreeSet::new();
        seen.insert(name.to_owned());
        let mut todo = vec![name.to_owned()];
        while let Some(next) = todo.pop() {
            let deps: Vec<String> = match self.units.get(&next) {
                Some(u) => u
                    .spec
                    .requires
                    .iter()
                    .chain(&u.spec.wants)
                    .cloned()
                    .collect(),
                None => continue,
            };
            for dep in deps {
                if !seen.insert(dep.clone()) {
                    continue;
                }
                let Some(d) = self.units.get(&dep) else {
                    continue;
                };
                if d.removing {
                    continue;
                }
                if d.want == Want::Down || d.state == State::Failed {
                    self.want_up(&dep, now);
                }
                todo.push(dep);
            }
        }
    }

    fn become_active(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        set_deadline(
            &mut self.timers,
            name,
            unit,
            unit.spec.watchdog.map(|w| now + w),
        );
        unit.active_since = Some(now);
        unit.reason = None;
        actions.push(Action::StopProbes {
            name: name.to_owned(),
        });
        self.set_state(name, State::Active, Sub::Running, now);
    }

    fn exited(
        &mut self,
        name: &str,
        pid: Pid,
        exit: Exit,
        oom_killed: bool,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if unit.pid != Some(pid) {
            return; // a leftover of the group, not the main process
        }
        unit.pid = None;
        unit.last_exit = Some(exit);
        // Until fail() says otherwise.
        unit.result = Some(RunResult::Success);
        match (unit.state, unit.sub) {
            (State::Deactivating, _) => {
                set_deadline(&mut self.timers, name, unit, None);
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: false,
                });
                if let Some((sub, reason)) = unit.failing.take() {
                    self.fail(name, sub, reason, now, actions);
                } else {
                    self.stopped(name, now);
                }
            }
            (State::Activating, Sub::Start)
                if unit.spec.kind == ServiceType::Forking && exit.success() =>
            {
                // The daemon forked away: its pid comes from pid_file.
                actions.push(Action::WatchPidFile {
                    name: name.to_owned(),
                    run: unit.run,
                    path: unit.spec.pid_file.clone().unwrap_or_default(),
                });
                self.set_state(name, State::Activating, Sub::StartPidFile, now);
            }
            (State::Activating, Sub::Start) if unit.spec.schedule.is_some() && exit.success() => {
                // A scheduled run is done: inactive until the next (what it started is
                // killed, as systemd does for a oneshot that does not remain after exit).
                unit.due = false;
                unit.consecutive_failures = 0;
                unit.failures.clear();
                unit.reason = None;
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: false,
                });
                self.stopped(name, now);
            }
            (State::Activating, Sub::Start)
                if unit.spec.kind == ServiceType::Oneshot
                    && exit.success()
                    && unit.spec.transient
                    && !unit.restart_pending =>
            {
                // An instance made by a start has done its work: it goes, as systemd
                // forgets a oneshot instance that does not remain after exit. Kept active
                // (exited), each counted against the bound on instances made by a start
                // until stopped: a board that ran a task per job (`start upload@<id>`)
                // was refused its 1,025th.
                self.finished(name, now, actions);
            }
            (State::Activating, Sub::Start)
                if unit.spec.kind == ServiceType::Oneshot && exit.success() =>
            {
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: true,
                });
                self.become_active(name, now, actions);
                self.set_state(name, State::Active, Sub::Exited, now);
            }
            (State::Active, _) if exit.success() && unit.spec.restart != RestartPolicy::Always => {
                self.finished(name, now, actions);
            }
            _ => {
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: false,
                });
                let (sub, reason) = match exit {
                    Exit::Code(0) if unit.state == State::Activating => (
                        Sub::ExitCode,
                        "exited with code 0 before it was ready".to_owned(),
                    ),
                    Exit::Code(0) => (
                        Sub::ExitCode,
                        "exited with code 0; restart = \"always\"".to_owned(),
                    ),
                    Exit::Code(c) => (Sub::ExitCode, format!("exited with code {c}")),
                    Exit::Signal(Signal::SIGKILL) if oom_killed => (
                        Sub::OomKill,
                        match unit.spec.limits.memory_max {
                            Some(max) => format!(
                                "killed by the kernel's OOM killer: it used more than its memory_max ({})",
                                max.human()
                            ),
                            None => "killed by the kernel's OOM killer: the system ran out of memory"
                                .to_owned(),
                        },
                    ),
                    Exit::Signal(s) => (Sub::Signal, format!("killed by {}", s.as_str())),
                };
                self.fail(name, sub, reason, now, actions);
            }
        }
    }

    /// The service stopped as asked: inactive, and started again by reconcile if wanted.
    /// The service ended by itself, its work done, not failed: down, as if stopped, and
    /// an instance made on demand goes, said done (found by a hostile review: it stayed
    /// inactive for good, and counted against the bound on instances made by a start).
    /// A restart that was asked for (by hand, or by a reload with a new spec) still
    /// happens.
    fn finished(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if !unit.restart_pending {
            unit.want = Want::Down;
            if unit.spec.transient && !unit.removing {
                unit.removing = true;
                unit.done = true;
                self.removing += 1;
            }
        }
        actions.push(Action::Cleanup {
            name: name.to_owned(),
            keep: false,
        });
        self.stopped(name, now);
    }

    fn stopped(&mut self, name: &str, now: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        set_deadline(&mut self.timers, name, unit, None);
        unit.restart_pending = false;
        end_run(unit, now);
        if let Some(spec) = unit.pending_spec.take() {
            self.replace_spec(name, *spec);
        }
        self.set_state(name, State::Inactive, Sub::Dead, now);
    }

    /// Puts a new spec in place. The services the old one was ordered after may be
    /// waiting for this one to stop first (reverse order): once it no longer names them,
    /// nothing else would look at them again, so they are looked at now.
    fn replace_spec(&mut self, name: &str, spec: ServiceSpec) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let after = unit.spec.ordered_after().cloned().collect();
        unit.spec = std::sync::Arc::new(spec);
        self.look_again_below(after);
        self.rebuild_dependents();
    }

    /// The run failed: restart after a backoff if the policy says so, else failed.
    fn fail(
        &mut self,
        name: &str,
        sub: Sub,
        reason: String,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        let shutting_down = self.shutting_down;
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        actions.push(Action::StopProbes {
            name: name.to_owned(),
        });
        unit.pid = None;
        set_deadline(&mut self.timers, name, unit, None);
        unit.result = Some(RunResult::of_failure(sub));
        end_run(unit, now);
        unit.consecutive_failures = unit.consecutive_failures.saturating_add(1);
        unit.failures.push_back(now);
        while unit
            .failures
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > unit.spec.start_limit_interval)
        {
            unit.failures.pop_front();
        }
        let stop_wanted =
            unit.want == Want::Down || unit.restart_pending || unit.pending_spec.is_some();
        let restart = match unit.spec.restart {
            RestartPolicy::Always | RestartPolicy::OnFailure => true,
            RestartPolicy::Never => false,
        };
        if stop_wanted || shutting_down {
            // It was on its way down anyway: record why, do not restart it.
            unit.reason = Some(reason);
            self.stopped(name, now);
            return;
        }
        let limit = unit.spec.start_limit;
        if restart && (limit == 0 || (unit.failures.len() as u32) < limit) {
            let mut delay = backoff(
                unit.spec.restart_delay,
                unit.spec.restart_delay_max,
                unit.consecutive_failures,
            );
            // A process that ran is its own pace; a spawn that fails at once (a missing
            // program) is not: with restart_delay = 0 and no start limit it would spin
            // PID 1. It waits at least this long.
            if sub == Sub::Spawn {
                delay = delay.max(SPAWN_FAILURE_DELAY);
            }
            set_deadline(&mut self.timers, name, unit, Some(now + delay));
            unit.reason = Some(reason);
            self.set_state(name, State::Activating, Sub::AutoRestart, now);
            return;
        }
        let (sub, reason) = if restart {
            (
                Sub::StartLimit,
                format!(
                    "{} failures within {}; not restarting until started by hand (last: {reason})",
                    unit.failures.len(),
                    humantime::format_duration(unit.spec.start_limit_interval)
                ),
            )
        } else {
            (sub, reason)
        };
        unit.reason = Some(reason);
        if unit.spec.on_failure != FailureAction::None {
            actions.push(Action::OnFailure {
                name: name.to_owned(),
                action: unit.spec.on_failure,
            });
        }
        self.set_state(name, State::Failed, sub, now);
    }

    fn deadline_passed(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        set_deadline(&mut self.timers, name, unit, None);
        match (unit.state, unit.sub) {
            (State::Activating, Sub::AutoRestart) => {
                // Backoff over: back to inactive, and reconcile starts it when it may.
                unit.restarts = unit.restarts.saturating_add(1);
                // The run is over, as when a run stops: a restart asked for, or a new
                // spec that came meanwhile (its restart waited for a dependent to stop
                // first), is done with now; the next run is the new spec's. Its reason
                // (the failure) stays until it is spawned or waits for something.
                self.stopped(name, now);
            }
            (State::Activating, Sub::StartPidFile) => {
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: false,
                });
                let why = match &unit.spec.pid_file {
                    Some(p) => format!("no pid in {} within ready_timeout", p.display()),
                    None => "no pid file".into(),
                };
                self.fail(name, Sub::Timeout, why, now, actions);
            }
            (State::Activating, _) => {
                let mut why = format!("not ready within {}", fmt_duration(unit.spec.ready_timeout));
                if let Some(awaited) = awaited(&unit.spec.ready) {
                    why = format!("{why}: {awaited}");
                }
                self.begin_stop(name, Some((Sub::Timeout, why)), now, actions);
            }
            (State::Active, _) => {
                let why = format!(
                    "missed its watchdog ping ({})",
                    fmt_duration(unit.spec.watchdog)
                );
                self.begin_stop(name, Some((Sub::Watchdog, why)), now, actions);
            }
            (State::Deactivating, Sub::StopSigterm) => {
                actions.push(Action::Kill {
                    name: name.to_owned(),
                    signal: Signal::SIGKILL,
                    pid: unit.pid,
                });
                set_deadline(
                    &mut self.timers,
                    name,
                    unit,
                    Some(now + unit.spec.stop_timeout),
                );
                self.set_state(name, State::Deactivating, Sub::StopSigkill, now);
            }
            (State::Deactivating, _) => {
                // Not even SIGKILL ended it (stuck in the kernel): stop waiting for it.
                unit.failing = None;
                let why = "did not exit after SIGKILL".to_owned();
                if unit.want == Want::Down || unit.removing || self.shutting_down {
                    // Meant to go down, so nothing to restart; but it did not stop either,
                    // and status must not call it inactive.
                    unit.pid = None;
                    unit.reason = Some(why);
                    self.stopped(name, now);
                    self.set_state(name, State::Failed, Sub::Timeout, now);
                } else {
                    self.fail(name, Sub::Timeout, why, now, actions);
                }
            }
            _ => {}
        }
    }

    /// Sends the stop signal (or, with no process, stops at once).
    fn begin_stop(
        &mut self,
        name: &str,
        failing: Option<(Sub, String)>,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        actions.push(Action::StopProbes {
            name: name.to_owned(),
        });
        if unit.pid.is_none() && unit.state == State::Activating && unit.sub == Sub::Start {
            // Its spawn is not answered yet (a runtime may have other inputs for the
            // engine first: an on_failure's shutdown comes before the rest of the batch
            // that asked for the spawn). Stopping at once would forget a process that
            // is about to exist, and could say AllStopped before it does: stop when the
            // answer comes (Spawned: stop the process; SpawnFailed: stopped).
            unit.failing = failing;
            set_deadline(
                &mut self.timers,
                name,
                unit,
                Some(now + unit.spec.stop_timeout),
            );
            self.set_state(name, State::Deactivating, Sub::StopSigterm, now);
            return;
        }
        if unit.pid.is_none() {
            // No main process, but maybe what it left: a forking daemon's first process
            // while its pid file is awaited, or what a oneshot that succeeded started,
            // which lives on while it is active (exited), and no longer.
            let exited = (unit.state, unit.sub) == (State::Active, Sub::Exited);
            if unit.sub == Sub::StartPidFile || exited {
                actions.push(Action::Cleanup {
                    name: name.to_owned(),
                    keep: false,
                });
            }
            match failing {
                Some((sub, why)) => self.fail(name, sub, why, now, actions),
                None => self.stopped(name, now),
            }
            return;
        }
        unit.failing = failing;
        set_deadline(
            &mut self.timers,
            name,
            unit,
            Some(now + unit.spec.stop_timeout),
        );
        actions.push(Action::Kill {
            name: name.to_owned(),
            signal: unit.spec.stop_signal,
            pid: unit.pid,
        });
        self.set_state(name, State::Deactivating, Sub::StopSigterm, now);
    }

    /// Adds a service made while running (see [`Input::Add`]).
    fn add(&mut self, spec: ServiceSpec, now: Duration) {
        let name = spec.name.clone();
        match self.units.get_mut(&name) {
            Some(unit) if unit.removing => {
                // Stopped and still stopping: wanted again, it stays.
                unit.removing = false;
                unit.done = false;
                self.removing = self.removing.saturating_sub(1);
            }
            Some(_) => return,
            None => {
                let mut unit = Unit::new(spec, now);
                unit.want = Want::Down; // the start that made it wants it up
                self.units.insert(unit);
                self.rebuild_dependents();
            }
        }
        self.touch(&name);
    }

    /// Applies a new configuration: new services are added, removed ones stop and go, and
    /// a changed one is restarted only when how its process runs changed (see
    /// [`ServiceSpec::diff`]); a change of policy alone applies in place (but see
    /// [`Engine::start_new_requirements`]). Reports what it did in [`Action::Reloaded`].
    fn reload(
        &mut self,
        specs: BTreeMap<String, ServiceSpec>,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        let mut report = ReloadReport::default();
        let old: Vec<String> = self.units.keys().map(|n| n.to_string()).collect();
        for name in &old {
            // One that an earlier reload removed is on its way already: touching it again
            // would publish a change that is none.
            let newly_removed = self.units.get_mut(name).filter(|u| !u.removing);
            if let (false, Some(unit)) = (specs.contains_key(name), newly_removed) {
                report.removed.push(name.clone());
                unit.removing = true;
                unit.want = Want::Down;
                self.touch(name);
            }
        }
        let mut look_again = Vec::new();
        // Running services that the reload gave new requirements, with those.
        let mut required_more = Vec::new();
        for (name, spec) in specs {
            let mut revived = false;
            if let Some(unit) = self.units.get_mut(&name).filter(|u| u.removing) {
                // An earlier reload removed it and it has not finished stopping: keep it,
                // wanted as a newly added service would be.
                unit.removing = false;
                unit.done = false;
                unit.want = if spec.enabled { Want::Up } else { Want::Down };
                revived = true;
                report.added.push(name.clone());
            }
            let Some(unit) = self.units.get_mut(&name) else {
                report.added.push(name.clone());
                self.units.insert(Unit::new(spec, now));
                self.touch(&name);
                continue;
            };
            // An instance made on demand and configured now (or the other way round): how
            // it runs is the same, but whether a stop forgets it is not.
            std::sync::Arc::make_mut(&mut unit.spec).transient = spec.transient;
            if let Some(pending) = &mut unit.pending_spec {
                pending.transient = spec.transient;
            }
            // What it will run next: a spec waiting for its restart, else the current one.
            let next = unit.pending_spec.as_deref().unwrap_or(&unit.spec);
            let diff = next.diff(&spec);
            if diff.is_empty() && !revived {
                continue;
            }
            let change = |keys: &[&'static str]| SpecChange {
                name: name.clone(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            };
            // Compared with what runs now: a change back to it cancels nothing already
            // asked, but needs no restart of its own.
            let running_diff = unit.spec.diff(&spec);
            // A oneshot that has run (active, exited) and now has a schedule.
            let mut now_scheduled = false;
            if unit.is_running() && !running_diff.process.is_empty() {
                report.restarted.push(change(&running_diff.process));
                unit.pending_spec = Some(Box::new(spec));
                if unit.state != State::Deactivating {
                    unit.restart_pending = true;
                }
            } else {
                if !diff.is_empty() {
                    let mut keys = diff.process.clone();
                    keys.extend(&diff.policy);
                    report.updated.push(change(&keys));
                }
                // What the old spec was ordered after may be waiting for this one to
                // stop first; with the new spec it may not be a neighbour any more, so
                // touch() below would not look at it again.
                look_again.extend(unit.spec.ordered_after().cloned());
                let new: Vec<String> = (spec.requires.iter())
                    .filter(|r| !unit.spec.requires.contains(r))
                    .cloned()
                    .collect();
                if !new.is_empty() && unit.is_running() && unit.want == Want::Up {
                    required_more.push((name.clone(), new));
                }
                if unit.spec.schedule != spec.schedule {
                    // Armed afresh by the next look at it, from the new schedule.
                    unit.schedule_on = false;
                    set_next_run(&mut self.schedule_timers, &name, unit, None, 0);
                    now_scheduled = spec.schedule.is_some()
                        && (unit.state, unit.sub) == (State::Active, Sub::Exited);
                }
                unit.spec = std::sync::Arc::new(spec);
                unit.pending_spec = None;
                if !unit.is_running() && unit.state == State::Failed && unit.want == Want::Up {
                    // A failed service gets another chance with its new configuration.
                    reset_failures(unit);
                    unit.state = State::Inactive;
                    unit.sub = Sub::Dead;
                    unit.since = now;
                }
            }
            if now_scheduled {
                // Between runs, as its runs end: what the last one left is killed. Left
                // active (exited), a due run took it for a run still going, and it never
                // ran again.
                actions.push(Action::Cleanup {
                    name: name.clone(),
                    keep: false,
                });
                self.stopped(&name, now);
            }
            self.touch(&name);
        }
        self.look_again_below(look_again);
        self.rebuild_dependents();
        // What was passed on along edges a reload may have changed: looked through again.
        for unit in self.units.values_mut() {
            unit.passed_on = None;
        }
        for (name, new) in required_more {
            self.start_new_requirements(&name, new, now, &mut report);
        }
        actions.push(Action::Reloaded(Box::new(report)));
    }

    /// A running service runs only while what it requires is active: given a requirement
    /// that is not, by a reload, it goes down until that is up. That is started, as a start
    /// of the service would (not left down, the service with it, for good), and the reload
    /// says the service restarts, not that its change applied without a restart.
    fn start_new_requirements(
        &mut self,
        name: &str,
        new: Vec<String>,
        now: Duration,
        report: &mut ReloadReport,
    ) {
        for dep in &new {
            let Some(d) = self.units.get(dep).filter(|d| !d.removing) else {
                continue;
            };
            if d.want == Want::Down || d.state == State::Failed {
                self.want_up(dep, now);
                self.pull_in(dep, now);
            }
        }
        // Down for one of them (not for a restart asked before).
        let not_up = |dep: &String| {
            self.units.get(dep).is_none_or(|d| d.state != State::Active) || self.should_stop(dep)
        };
        if self.going_down(name) && new.iter().any(not_up) {
            if let Some(at) = report.updated.iter().position(|c| c.name == name) {
                let change = report.updated.remove(at);
                report.restarted.push(change);
            }
        }
    }

    /// Moves every dirty service toward its want until nothing more changes.
    fn reconcile(&mut self, now: Duration, actions: &mut Vec<Action>) {
        // What changed before (an input, a reload) may not have been through `touch`.
        self.forget_why_down();
        let mut budget = 64 * (self.units.len() + 1) * 4;
        while let Some(name) = self.dirty.pop_first() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                break; // cannot happen with an acyclic graph; never spin PID 1 forever
            }
            self.step(&name, now, actions);
        }
    }

    fn step(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        #[cfg(test)]
        {
            self.steps += 1;
        }
        let Some(unit) = self.units.get(name) else {
            return;
        };
        if unit.spec.schedule.is_some() || unit.schedule_on {
            self.keep_schedule(name, now);
        }
        let Some(unit) = self.units.get(name) else {
            return;
        };
        match unit.state {
            State::Inactive => {
                if unit.want != Want::Up || unit.removing || self.shutting_down {
                    if unit.sub != Sub::Dead {
                        self.set_state(name, State::Inactive, Sub::Dead, now);
                        if let Some(u) = self.units.get_mut(name) {
                            u.reason = None;
                        }
                    }
                    return;
                }
                if unit.spec.schedule.is_some() && !unit.due {
                    // Between runs: the schedule starts it (scheduled_run_due).
                    if unit.sub != Sub::Scheduled {
                        self.set_state(name, State::Inactive, Sub::Scheduled, now);
                        if let Some(u) = self.units.get_mut(name) {
                            u.reason = None;
                        }
                    }
                    return;
                }
                match self.start_blocker(name) {
                    Blocker::None => self.spawn(name, now, actions),
                    Blocker::Waiting(why) => self.hold(name, Sub::Waiting, why, now),
                    Blocker::Blocked(why) => self.hold(name, Sub::Dependency, why, now),
                }
            }
            State::Activating | State::Active => {
                if !self.should_stop(name) {
                    return;
                }
                if self.has_stopping_dependents(name) {
                    // They go first. They may not have been looked at yet when what makes
                    // them stop is further up a `requires` chain.
                    if let Some(dependents) = self.dependents.get(name) {
                        let first = dependents.iter().filter(|d| self.after_in_order(name, d));
                        self.dirty.extend(first.cloned().collect::<Vec<_>>());
                    }
                } else if unit.sub == Sub::AutoRestart {
                    if let Some(u) = self.units.get_mut(name) {
                        set_deadline(&mut self.timers, name, u, None);
                    }
                    self.stopped(name, now);
                } else {
                    self.begin_stop(name, None, now, actions);
                }
            }
            State::Deactivating | State::Failed => {}
        }
    }

    /// Keeps a wanted service inactive, waiting (`sub`) for the reason `why`: published
    /// when either changed, so that what it waits for is always what status says.
    fn hold(&mut self, name: &str, sub: Sub, why: String, now: Duration) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if unit.reason.as_deref() != Some(&why) {
            unit.reason = Some(why);
            if unit.sub == sub {
                // Only published: no other service reads a waiting one's reason, and its
                // neighbours looked at again for each of a thousand `after` that came up
                // (touch) cost a million looks.
                self.changed.insert(name.to_owned());
                return;
            }
        }
        if unit.sub != sub {
            self.set_state(name, State::Inactive, sub, now);
        }
    }

    /// A scheduled oneshot's timer is armed while it is wanted (and not going away), and
    /// only then: called at every look at it, so that a start, a stop, a shutdown or a
    /// reload that changed the schedule arms or disarms it.
    fn keep_schedule(&mut self, name: &str, now: Duration) {
        let booted_at = self.booted_at;
        let at_boot = self.at_boot;
        let seed = self.jitter_seed;
        let shutting_down = self.shutting_down;
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let armed = unit.want == Want::Up && !unit.removing && !shutting_down;
        match unit.spec.schedule.as_deref().copied().filter(|_| armed) {
            None => {
                unit.schedule_on = false;
                set_next_run(&mut self.schedule_timers, name, unit, None, 0);
            }
            Some(_) if unit.schedule_on => {}
            Some(schedule) => {
                unit.schedule_on = true;
                // The first run: after_boot from ember's start while that is still ahead
                // or this is the boot itself (then a past one is due at once); else one
                // period from now; else (only after_boot, and past) none.
                let base = match (schedule.after_boot, schedule.every) {
                    (Some(a), _) if at_boot || booted_at + a >= now => Some(booted_at + a),
                    (_, Some(every)) => Some(now + every),
                    _ => None,
                };
                set_next_run(&mut self.schedule_timers, name, unit, base, seed);
            }
        }
    }

    /// A scheduled oneshot's time came: it runs, unless its last run still goes (a run
    /// is never started twice); and its next time is set, a period after this one's
    /// (periods that passed unseen, in a suspend, are skipped rather than caught up).
    fn scheduled_run_due(&mut self, name: &str, now: Duration) {
        let seed = self.jitter_seed;
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let Some(schedule) = unit.spec.schedule.as_deref().copied() else {
            set_next_run(&mut self.schedule_timers, name, unit, None, 0);
            return;
        };
        let next = schedule
            .every
            .map(|every| next_period(unit.next_base, every, now));
        set_next_run(&mut self.schedule_timers, name, unit, next, seed);
        if unit.want != Want::Up || unit.removing || self.shutting_down {
            return;
        }
        match unit.state {
            State::Inactive => unit.due = true,
            State::Failed => {
                // A failed run does not end the schedule: the next gets its chance.
                reset_failures(unit);
                unit.due = true;
                self.set_state(name, State::Inactive, Sub::Dead, now);
            }
            // Still running (or waiting out a failed run's restart delay).
            _ => return,
        }
        self.touch(name);
    }

    /// A start or restart of a scheduled oneshot runs it now (once what is running, if
    /// anything, has stopped), and counts its period from now: armed here, not by
    /// `keep_schedule`'s first-run rule, which kept a first run at after_boot still ahead
    /// (a start 1 minute after boot of `every = "1h", after_boot = "10m"` ran it again 9
    /// minutes later). Without a period, a first run after boot still ahead stays.
    fn run_now(&mut self, name: &str, now: Duration) {
        let booted_at = self.booted_at;
        let seed = self.jitter_seed;
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        let Some(schedule) = unit.spec.schedule.as_deref().copied() else {
            return;
        };
        if unit.want != Want::Up || unit.removing {
            return;
        }
        if unit.state != State::Activating || unit.restart_pending {
            unit.due = true;
        }
        let base = match (schedule.every, schedule.after_boot) {
            (Some(every), _) => Some(now + every),
            (None, Some(a)) if booted_at + a > now => Some(booted_at + a),
            _ => None,
        };
        // Disarmed again by `keep_schedule` if it should not be (a shutdown under way).
        unit.schedule_on = true;
        set_next_run(&mut self.schedule_timers, name, unit, base, seed);
        self.touch(name);
    }

    fn spawn(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        unit.run += 1;
        unit.pid = None;
        unit.failing = None;
        unit.status_text = None;
        // Said why it waited, and waits no more. (A failure's reason stays through the
        // next try after its restart delay, until a run is ready.)
        if matches!(unit.sub, Sub::Waiting | Sub::Dependency) {
            unit.reason = None;
        }
        let deadline = unit.spec.ready_timeout.map(|t| now + t);
        let deadline = deadline.filter(|_| unit.spec.ready != Readiness::Spawned);
        set_deadline(&mut self.timers, name, unit, deadline);
        actions.push(Action::Spawn {
            name: name.to_owned(),
            run: unit.run,
            spec: unit.spec.clone(),
        });
        self.set_state(name, State::Activating, Sub::Start, now);
    }

    /// Why a wanted, inactive service may not start yet.
    fn start_blocker(&self, name: &str) -> Blocker {
        let Some(unit) = self.units.get(name) else {
            return Blocker::None;
        };
        // The first service waited for, named in the reason.
        let mut waiting: Option<&str> = None;
        for dep in &unit.spec.requires {
            match self.units.get(dep) {
                // Active, and not about to go down (which would take this one down again).
                Some(d) if d.state == State::Active && !self.should_stop(dep) => {}
                _ => match self.why_down(dep) {
                    Some(why) => return Blocker::Blocked(format!("requires {why}")),
                    None => {
                        waiting.get_or_insert(dep);
                    }
                },
            }
        }
        for dep in unit.spec.wants.iter().chain(&unit.spec.after) {
            let Some(d) = self.units.get(dep) else {
                continue;
            };
            let on_its_way_up = d.want == Want::Up
                && match d.state {
                    // Decided afresh, not from its sub-state: that is only as recent as
                    // the last look at it, and a reload that changed what it requires
                    // may not have led to one yet (this one may be looked at first).
                    State::Inactive => {
                        // Between a scheduled oneshot's runs it is not coming.
                        (d.spec.schedule.is_none() || d.due) && self.why_down(dep).is_none()
                    }
                    State::Activating | State::Deactivating => true,
                    State::Active => d.restart_pending,
                    State::Failed => false,
                };
            if on_its_way_up {
                waiting.get_or_insert(dep);
            }
        }
        match waiting {
            Some(dep) => Blocker::Waiting(format!("waiting for {dep} to start")),
            None => Blocker::None,
        }
    }

    /// Forgets what `why_down` found: something it reads may have changed.
    fn forget_why_down(&mut self) {
        let known = self.why_down_known.get_mut();
        if !known.is_empty() {
            known.clear();
        }
    }

    /// Why a required service cannot come up without another command, following the
    /// chain to the service that blocks: "db, which requires disk, which is failed (exited
    /// with code 1)". None: it is on its way up.
    fn why_down(&self, name: &str) -> Option<String> {
        self.why_down_from(name, &mut BTreeSet::new())
    }

    /// [`Self::why_down`], each service looked at once: one found on its way up is so
    /// whichever path leads to it again. Walked down every path instead, a graph of
    /// diamonds (each of a layer requiring each of the layer below) cost 2^layers.
    fn why_down_from<'a>(&'a self, name: &'a str, seen: &mut BTreeSet<&'a str>) -> Option<String> {
        #[cfg(test)]
        self.why_down_looks.set(self.why_down_looks.get() + 1);
        if let Some(known) = self.why_down_known.borrow().get(name) {
            return known.clone();
        }
        let Some(d) = self.units.get(name) else {
            return Some(format!("{name}, which is not defined"));
        };
        match d.state {
            State::Failed => Some(match &d.reason {
                Some(reason) => format!("{name}, which is failed ({reason})"),
                None => format!("{name}, which is failed"),
            }),
            State::Inactive if d.removing => Some(format!("{name}, which a reload removed")),
            State::Inactive if d.want == Want::Down => Some(format!("{name}, which is stopped")),
            // Wanted, but maybe held by what it requires: decided afresh down the chain
            // rather than from its sub-state, which a reload may have made out of date.
            // Seen already: found on its way up, or (only in a cycle, which the config
            // check rejects) being looked at further up.
            State::Inactive if !seen.insert(name) => None,
            State::Inactive => {
                let why = d
                    .spec
                    .requires
                    .iter()
                    .find_map(|dd| self.why_down_from(dd, seen))
                    .map(|why| format!("{name}, which requires {why}"));
                // Whole (only a cycle, which the config check rejects, could leave part
                // of one unlooked at), so the same for whoever asks until a change.
                self.why_down_known
                    .borrow_mut()
                    .insert(name.to_owned(), why.clone());
                why
            }
            _ => None,
        }
    }

    /// Whether a running service is about to go down (a `--wait` for it to be up waits on).
    pub fn going_down(&self, name: &str) -> bool {
        self.units.get(name).is_some_and(|u| u.is_running()) && self.should_stop(name)
    }

    /// Whether a running service should go down: unwanted, restarting, being replaced, or
    /// something it requires is going down, directly or through its own requirements (so
    /// that the far end of a `requires` chain stops first).
    fn should_stop(&self, name: &str) -> bool {
        self.should_stop_from(name, &mut BTreeSet::new())
    }

    /// [`Self::should_stop`], each service looked at once: one seen already was found to
    /// stay (or, only in a cycle, which the config check rejects, is being looked at).
    /// Walked down every path instead, running diamonds cost 2^layers at every event.
    fn should_stop_from<'a>(&'a self, name: &'a str, seen: &mut BTreeSet<&'a str>) -> bool {
        let Some(unit) = self.units.get(name) else {
            return false;
        };
        if unit.want == Want::Down || unit.restart_pending || unit.removing || self.shutting_down {
            return true;
        }
        if !seen.insert(name) {
            return false;
        }
        unit.spec
            .requires
            .iter()
            .any(|dep| match self.units.get(dep) {
                None => true,
                Some(d) => {
                    d.state != State::Active
                        || d.want == Want::Down
                        || d.restart_pending
                        || d.removing
                        || self.should_stop_from(dep, seen)
                }
            })
    }

    /// Reverse order: a service waits for the running services ordered after it that are
    /// stopping too.
    fn has_stopping_dependents(&self, name: &str) -> bool {
        if self.shutting_down && self.units.get(name).is_some_and(|u| u.spec.linger) {
            // It goes last: after every service that does not linger, but those that a
            // lingering service is ordered after, directly or through others (its broker
            // or bus, another adapter's, and what those are after in turn): each of those
            // waits for the lingering services in reverse order, and waiting for them
            // would wait for ever, each adapter for the other's broker. Counted, not
            // scanned: this is asked again at every stop during a shutdown.
            let running_needed = self
                .lingering_needs
                .iter()
                .filter_map(|d| self.units.get(d))
                .filter(|u| !u.spec.linger && u.is_running())
                .count();
            let others_running =
                self.running.saturating_sub(self.running_lingering) > running_needed;
            if others_running {
                return true;
            }
        }
        // At a shutdown, a dependent that ended on its own meanwhile holds nothing back,
        // but what is ordered after it still needs what it needed (c requires b requires
        // a, b died while c stops: a waits for c): look through it, as far as the chain
        // goes. Only then: every service goes down, and none changes its spec or goes
        // away under the walk; otherwise a service that does not run (one disabled) joins
        // nothing, as a unit without a job in systemd.
        let through = self.shutting_down;
        let mut todo = vec![name];
        let mut seen = BTreeSet::new();
        while let Some(next) = todo.pop() {
            let deps = self.dependents.get(next).into_iter().flatten();
            for d in deps.filter(|d| self.after_in_order(next, d)) {
                let Some(u) = self.units.get(d) else {
                    continue;
                };
                if u.state == State::Deactivating
                    || (u.is_running() && u.sub != Sub::AutoRestart && self.should_stop(d))
                {
                    return true;
                }
                if through && holds_nothing(u) && seen.insert(d.as_str()) {
                    todo.push(d);
                }
            }
        }
        false
    }
}

/// What a service passes on to what requires it, directly or through others: everything
/// of it their answers read ([`Engine::start_blocker`], [`Engine::should_stop`], each
/// through [`Engine::why_down`] and should_stop's walk down the chain).
/// Kept in each unit ([`Unit::passed_on`]), not in a map of its own: a map of them by
/// name cost 0.13 KiB a service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PassedOn {
    /// Why it cannot come up (None: up, or on its way).
    why_down: Option<String>,
    /// Whether what requires it should go down: it is not active, or going down.
    stops: bool,
}

enum Blocker {
    None,
    /// On its way: the reason names what it waits for.
    Waiting(String),
    Blocked(String),
}

/// No process, none coming: ended, failed, or waiting out a restart delay.
fn holds_nothing(unit: &Unit) -> bool {
    !unit.is_running() || unit.sub == Sub::AutoRestart
}

fn removed_is_empty(actions: &[Action]) -> bool {
    !actions.iter().any(|a| matches!(a, Action::Removed { .. }))
}

/// A run is over, however it ended: one that stayed up `restart_delay_max` resets the
/// backoff (a run stopped after a day up, by its dependency's restart, is not the fifth
/// of a crash loop).
fn end_run(unit: &mut Unit, now: Duration) {
    if let Some(since) = unit.active_since.take() {
        if now.saturating_sub(since) >= unit.spec.restart_delay_max {
            unit.consecutive_failures = 0;
        }
    }
}

/// Its failures are forgotten, and so is why it failed: not why it is down any more.
fn reset_failures(unit: &mut Unit) {
    unit.reason = None;
    unit.consecutive_failures = 0;
    unit.failures.clear();
    unit.restarts = 0;
}

/// The least wait before another try after a spawn failed.
pub const SPAWN_FAILURE_DELAY: Duration = Duration::from_millis(100);

/// restart_delay doubled per consecutive failure after the first, capped.
pub fn backoff(first: Duration, max: Duration, consecutive_failures: u32) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).min(30);
    first.saturating_mul(1u32 << doublings).min(max)
}

fn fmt_duration(d: Option<Duration>) -> String {
    d.map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_else(|| "its timeout".into())
}
