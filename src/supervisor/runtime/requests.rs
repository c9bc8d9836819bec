//! The control plane: what the runtime answers to each request from an adapter, and the
//! `--wait`s it holds until their services have settled. Every request is answered here,
//! in the core, from the engine's own state: a client never guesses from a status's words
//! whether a service has come up.

use super::super::model::{RunResult, State, Sub, Want};
use super::super::usage;
use super::{Input, Runtime};
use crate::config::service::ServiceSpec;
use crate::pid1::Power;
use ember_ipc::{
    Command, ErrorKind, Reply, Request, ServiceStatus, StatusArgs, StatusReply, Targets,
};
use tokio::sync::oneshot;

/// A `--wait` in progress: the reply goes out once every service has reached its goal,
/// or one never will without another command.
pub struct Waiter {
    goals: Vec<(String, Goal)>,
    reply: oneshot::Sender<Reply>,
}

impl Waiter {
    /// Answers it now, settled or not.
    pub(super) fn answer(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Active, in a run later than `after_run` when there is one (a restart waits for its
    /// new run, not the old one still up while its dependents stop first).
    Up { after_run: Option<u64> },
    /// Stopped (inactive or failed).
    Down,
    /// Was `Up`, and the instance made by that start has done its work and gone.
    Done,
}

impl Runtime {
    pub(super) fn on_request(&mut self, request: Request) {
        crate::log::debug!("{}: {}", request.origin, request.command.verb());
        match request.command {
            command @ (Command::Start(_) | Command::Stop(_) | Command::Restart(_)) => {
                let wait = matches!(&command, Command::Start(t) | Command::Stop(t) | Command::Restart(t) if t.wait);
                match self.change(command, &request.origin) {
                    Ok(goals) if wait => {
                        self.waiters.push(Waiter {
                            goals,
                            reply: request.reply,
                        });
                        // It may have settled already (a start of what is up).
                        self.check_waiters();
                    }
                    Ok(goals) => {
                        let names: Vec<String> = goals.into_iter().map(|(n, _)| n).collect();
                        let services = self.statuses_left(&names);
                        let _ = request.reply.send(Reply::Ok { services });
                    }
                    Err(reply) => {
                        let _ = request.reply.send(reply);
                    }
                }
            }
            Command::Reexec(args) => self.ask_reexec(args, &request.origin, request.reply),
            command => {
                let reply = self.answer(command, &request.origin);
                let _ = request.reply.send(reply);
            }
        }
    }

    /// Start, stop or restart: changes the wants, and returns each service's goal.
    fn change(&mut self, command: Command, origin: &str) -> Result<Vec<(String, Goal)>, Reply> {
        let verb = command.verb();
        let (kind, Targets { mut names, .. }) = match command {
            Command::Start(t) => (Kind::Start, t),
            Command::Stop(t) => (Kind::Stop, t),
            Command::Restart(t) => (Kind::Restart, t),
            _ => return Err(Reply::error(ErrorKind::Internal, "not a service command")),
        };
        if names.is_empty() {
            return Err(Reply::error(
                ErrorKind::BadRequest,
                "name at least one service",
            ));
        }
        // Each service once, where it was first named (found by a hostile review: `start
        // worker@1 'worker@*'` acted on worker@1 and answered for it twice).
        names = once_each(names);
        if self.engine.shutting_down() {
            return Err(Reply::error(
                ErrorKind::Busy,
                "ember is shutting down; no services can be started",
            ));
        }
        // Instances to make, all checked before any is made: a start refused for one of
        // its names makes nothing.
        self.check_instance_names(&names)?;
        let to_make = match kind {
            Kind::Stop => Vec::new(),
            Kind::Start | Kind::Restart => self.instances_to_make(&names)?,
        };
        // An unknown name changes nothing; nor does a start of a service that a reload
        // removed and that is still stopping. An instance of a template that is not there
        // (never made, or made and forgotten once stopped) is stopped: a stop of it is
        // done, as a stop of any stopped service is (found by a hostile review: a second
        // `stop worker@42` failed with "no service named").
        let made = |n: &String| to_make.iter().any(|s| *s.name == **n);
        let stopped_instance = |n: &String| {
            matches!(kind, Kind::Stop)
                && crate::config::service::template_of(n)
                    .is_some_and(|(template, _)| self.config.templates.contains_key(template))
        };
        if let Some(name) = names
            .iter()
            .find(|n| self.engine.unit(n).is_none() && !made(n) && !stopped_instance(n))
        {
            return Err(self.unknown(name));
        }
        for spec in to_make {
            crate::log::info!("{origin}: {} made from its template", spec.name);
            self.input(Input::Add(Box::new(spec)));
        }
        if !matches!(kind, Kind::Stop) {
            if let Some(gone) = names
                .iter()
                .find(|n| self.engine.unit(n).is_some_and(|u| u.removing))
            {
                return Err(Reply::error(
                    ErrorKind::UnknownService,
                    format!("{gone} was removed by a reload and is stopping; it cannot be started"),
                ));
            }
        }
        let mut goals = Vec::with_capacity(names.len());
        for name in names {
            let Some(unit) = self.engine.unit(&name) else {
                continue;
            };
            let (goal, input) = match kind {
                Kind::Stop => (Goal::Down, Input::Stop(name.clone())),
                // A start of a service waiting out a restart delay waits for its next run.
                Kind::Start => (
                    Goal::Up {
                        after_run: (unit.sub == Sub::AutoRestart).then_some(unit.run),
                    },
                    Input::Start(name.clone()),
                ),
                Kind::Restart => (
                    Goal::Up {
                        after_run: Some(unit.run),
                    },
                    Input::Restart(name.clone()),
                ),
            };
            crate::log::info!("{origin}: {verb} {name}");
            self.input(input);
            goals.push((name, goal));
        }
        Ok(goals)
    }

    /// Forgets the failures of `names`, or of every failed service when none is named;
    /// answered with the status of each, as it is after.
    fn reset_failed(&mut self, mut names: Vec<String>, origin: &str) -> Reply {
        if names.is_empty() {
            names = self
                .engine
                .units()
                .filter(|u| u.state == State::Failed)
                .map(|u| u.spec.name.to_string())
                .collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        // A name no instance can have (`worker@..`) is refused with why, as for a stop
        // (found by a hostile review: it was "ok", as an instance not there).
        if let Err(refused) = self.check_instance_names(&names) {
            return refused;
        }
        // Refused whole when a name is unknown, as a stop is; an instance not there (never
        // made, or forgotten once stopped) has no failure to forget.
        let absent_instance = |n: &String| {
            crate::config::service::template_of(n)
                .is_some_and(|(template, _)| self.config.templates.contains_key(template))
        };
        if let Some(name) = names
            .iter()
            .find(|n| self.engine.unit(n).is_none() && !absent_instance(n))
        {
            return self.unknown(name);
        }
        for name in &names {
            if self.engine.unit(name).is_some() {
                crate::log::info!("{origin}: reset_failed {name}");
                self.input(Input::ResetFailed(name.clone()));
            }
        }
        Reply::Ok {
            services: self.statuses_left(&names),
        }
    }

    /// Sends a signal to the services' processes, all checked first: an unknown name, a
    /// service with no process to signal or a signal that does not exist sends nothing.
    fn signal(&mut self, args: ember_ipc::KillArgs, origin: &str) -> Reply {
        let signal = match crate::supervisor::sig::AnySignal::parse(&args.signal) {
            Ok(signal) => signal,
            Err(why) => return Reply::error(ErrorKind::BadRequest, why),
        };
        let mut names = args.names;
        if names.is_empty() {
            return Reply::error(ErrorKind::BadRequest, "name at least one service");
        }
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if let Err(refused) = self.check_instance_names(&names) {
            return refused;
        }
        for name in &names {
            let Some(unit) = self.engine.unit(name) else {
                return self.unknown(name);
            };
            let idle = !unit.is_running() || unit.sub == Sub::AutoRestart;
            // Found by a hostile review: a oneshot that had run, with nothing left, was
            // "signalled" (ok, and nothing sent).
            let what = if idle {
                "is not running"
            } else if args.main && unit.pid.is_none() {
                "has no main process"
            } else if !self.has_processes(name) {
                "has no process left to signal"
            } else {
                continue;
            };
            return Reply::error(
                ErrorKind::Failed,
                format!(
                    "{name} {what} ({} ({})); nothing was signalled",
                    unit.state, unit.sub
                ),
            );
        }
        for name in &names {
            let whom = if args.main {
                "its main process"
            } else {
                "every process"
            };
            crate::log::info!("{origin}: kill {name}: {} to {whom}", signal.name());
            if args.main {
                if let Some(pid) = self.engine.unit(name).and_then(|u| u.pid) {
                    let _ = signal.to(pid);
                }
            } else {
                self.send(name, signal);
            }
        }
        Reply::Ok {
            services: self.statuses_left(&names),
        }
    }

    /// What a name that is no service is: a template's own (`worker@`, said so: found by
    /// a hostile review, it was "no service named", though defined), or unknown.
    fn unknown(&self, name: &str) -> Reply {
        if self.config.templates.contains_key(name) {
            return Reply::error(
                ErrorKind::BadRequest,
                format!("\"{name}\" names no instance: it is a template, which runs as its instances ({name}NAME); `ember ctl status '{name}*'` lists them"),
            );
        }
        unknown_service(name)
    }

    /// Refuses a name of a template's instance that no instance can have (`worker@..`,
    /// `worker@a@`), or the template's own (`worker@`), with why, for every verb.
    fn check_instance_names(&self, names: &[String]) -> Result<(), Reply> {
        for name in names {
            if self.engine.unit(name).is_some() {
                continue;
            }
            if self.config.templates.contains_key(name) {
                return Err(self.unknown(name));
            }
            // The instance's name becomes a cgroup, a socket, a topic level, and part of
            // paths: the rules of the configuration's instances apply. A template's own
            // name (`worker@`) names none, and is told so on every interface (found by a
            // hostile review: it was "no service named", though it is defined).
            if let Some(at) = name.find('@') {
                let (template, instance) = name.split_at(at + 1);
                if self.config.templates.contains_key(template) {
                    if let Err(why) = crate::config::values::check_instance(template, instance) {
                        return Err(Reply::error(ErrorKind::BadRequest, why));
                    }
                }
            }
        }
        Ok(())
    }

    /// The instances a start or restart of `names` makes from their templates (`worker@42`
    /// from `worker@`): those that do not exist, or were stopped and are still stopping
    /// (kept, then: see `Input::Add`). A name that is no instance of a template is left
    /// for the caller to find unknown.
    fn instances_to_make(&self, names: &[String]) -> Result<Vec<ServiceSpec>, Reply> {
        let mut to_make: Vec<ServiceSpec> = Vec::new();
        for name in names {
            let exists = self
                .engine
                .unit(name)
                .is_some_and(|u| !(u.removing && u.spec.transient));
            if exists || to_make.iter().any(|s| *s.name == **name) {
                continue;
            }
            let Some(spec) = self.config.made_on_demand(name) else {
                continue;
            };
            // What `ember check` refuses in a configured instance is refused here: a
            // notify socket that could not be bound failed every start of it (found by a
            // hostile review).
            let unbindable = crate::config::control::notify_socket_too_long;
            if let Some(why) = unbindable(&self.notify_dir, name, &spec) {
                return Err(Reply::error(ErrorKind::BadRequest, why));
            }
            to_make.push(spec);
        }
        // An instance is ordered by its template's lists, which `ember check` could not
        // follow to it: one that would wait for itself (`after = ["p@2"]` in `p@`, for
        // p@2), directly or round a cycle, would wait forever (found by a hostile review:
        // `ember ctl start p@2 --wait` never returned).
        if !to_make.is_empty() {
            let mut all: std::collections::BTreeMap<&str, &ServiceSpec> = self
                .engine
                .units()
                .filter(|u| !u.removing)
                .map(|u| (&*u.spec.name, &*u.spec))
                .collect();
            all.extend(to_make.iter().map(|s| (&*s.name, s)));
            // The units' graph had no cycle before (checked by the configuration's load
            // and at each instance made): a cycle now goes through one of these.
            if let Some(cycle) = crate::config::graph::cycles(&all).into_iter().next() {
                return Err(Reply::error(
                    ErrorKind::BadRequest,
                    format!(
                        "dependency cycle: {}: nothing on it could ever start; remove one of these dependencies from the template",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
        // Whoever may start `worker@*` could otherwise make instances until the board
        // runs out of memory or pids. One stopped but still stopping runs too, and counts
        // until it has gone (found by a hostile review: a stop made room at once, and
        // rounds of starts and stops of distinct instances slow to stop ran 1,024 more
        // each); one taken back by this start is counted once.
        let made = self.engine.units().filter(|u| u.spec.transient).count();
        let new = to_make
            .iter()
            .filter(|s| self.engine.unit(&s.name).is_none())
            .count();
        if new > 0 && made + new > MAX_MADE {
            // The advice names a template of this start's, not one the board may lack.
            let template = to_make
                .iter()
                .find_map(|s| crate::config::service::template_of(&s.name))
                .map_or("worker@", |(template, _)| template);
            return Err(Reply::error(
                ErrorKind::Busy,
                format!("{made} instances made by a start are there already (running, failed or stopping), and at most {MAX_MADE} may; stop some first (ember ctl stop '{template}*')"),
            ));
        }
        Ok(to_make)
    }

    /// Answers every `--wait` whose services have settled; forgets those whose client
    /// has gone.
    pub(super) fn check_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if waiter.reply.is_closed() {
                continue;
            }
            let outcomes: Vec<Option<Result<(), String>>> = waiter
                .goals
                .iter()
                .map(|(name, goal)| self.settled(name, *goal))
                .collect();
            if outcomes.iter().any(Option::is_none) {
                self.waiters.push(waiter);
                continue;
            }
            let errors: Vec<String> = outcomes
                .into_iter()
                .flatten()
                .filter_map(Result::err)
                .collect();
            let reply = if errors.is_empty() {
                let names: Vec<String> = waiter.goals.iter().map(|(n, _)| n.clone()).collect();
                Reply::Ok {
                    services: self.statuses_left(&names),
                }
            } else {
                Reply::error(ErrorKind::Failed, errors.join("; "))
            };
            let _ = waiter.reply.send(reply);
        }
    }

    /// An instance made by a start has done its work, and goes: the waits for it to be up
    /// have their answer (once gone, it could not be told from one stopped).
    pub(super) fn done(&mut self, name: &str) {
        for waiter in &mut self.waiters {
            for (waited, goal) in &mut waiter.goals {
                if waited == name && matches!(goal, Goal::Up { .. }) {
                    *goal = Goal::Done;
                }
            }
        }
    }

    /// Answers the waits still open when ember stops.
    pub(super) fn end_waiters(&mut self) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Reply::error(
                ErrorKind::Failed,
                "ember stopped before the services settled",
            ));
        }
    }

    /// Whether a service has reached `goal`: `Some(Ok)` yes, `Some(Err(why))` it never
    /// will without another command, `None` not yet.
    fn settled(&self, name: &str, goal: Goal) -> Option<Result<(), String>> {
        let Some(unit) = self.engine.unit(name) else {
            // A stopped instance made on demand is forgotten at once: it is down. Gone
            // while its template is there, it was stopped or ended (found by a hostile
            // review: that was answered "removed by a reload", with no reload run).
            let instance = crate::config::service::template_of(name)
                .is_some_and(|(template, _)| self.config.templates.contains_key(template));
            return Some(match goal {
                Goal::Down | Goal::Done => Ok(()),
                Goal::Up { .. } if instance => Err(format!(
                    "{name} was stopped again, or ended by itself: an instance made by a start is then forgotten"
                )),
                Goal::Up { .. } => Err(format!("{name} was removed by a reload")),
            });
        };
        let failed = || {
            let mut why = format!("{name} failed ({})", unit.sub);
            if let Some(reason) = &unit.reason {
                why.push_str(": ");
                why.push_str(reason);
            }
            why
        };
        match goal {
            // Made again since by another start: this one's answer stands.
            Goal::Done => Some(Ok(())),
            Goal::Down if matches!(unit.state, State::Inactive | State::Failed) => Some(Ok(())),
            // Wanted up again (a start or restart after this stop): it will not settle
            // down without another stop (found by review: the wait never ended).
            Goal::Down if unit.want == Want::Up => Some(Err(format!("{name} was started again"))),
            Goal::Down => None,
            Goal::Up { after_run } => {
                let new_run = after_run.is_none_or(|before| unit.run > before);
                match (unit.state, unit.sub) {
                    (State::Active, _) if new_run && !self.engine.going_down(name) => Some(Ok(())),
                    (State::Failed, _) => Some(Err(failed())),
                    // The run asked for failed; the restart policy tries again, but the
                    // answer to this start is that it failed.
                    (State::Activating, Sub::AutoRestart) if new_run => {
                        Some(Err(format!("{}; restarting it after a delay", failed())))
                    }
                    // A scheduled oneshot's run is done when it is back between runs.
                    (State::Inactive, Sub::Scheduled) if new_run => match unit.result {
                        Some(RunResult::Success) => Some(Ok(())),
                        _ => Some(Err(failed())),
                    },
                    (State::Inactive, Sub::Dependency) => Some(Err(format!(
                        "{name} cannot start: {}",
                        unit.reason.as_deref().unwrap_or("a dependency is down")
                    ))),
                    (State::Inactive, _) if unit.want == Want::Down => {
                        Some(Err(format!("{name} was stopped again")))
                    }
                    _ => None,
                }
            }
        }
    }

    fn answer(&mut self, command: Command, origin: &str) -> Reply {
        match command {
            Command::Status(StatusArgs { names, details }) => {
                #[cfg(feature = "test-hooks")]
                test_hooks(&names);
                let names = if names.is_empty() {
                    self.engine
                        .units()
                        .map(|u| u.spec.name.to_string())
                        .collect()
                } else {
                    once_each(names)
                };
                match self.statuses(&names) {
                    Ok(mut services) => {
                        if details {
                            for service in &mut services {
                                self.add_details(service);
                            }
                        }
                        Reply::Status(StatusReply {
                            seq: self.seq,
                            system: self.system_status(true),
                            services,
                        })
                    }
                    Err(reply) => reply,
                }
            }
            Command::Hello(args) => {
                crate::log::debug!(
                    "{origin}: hello from {} (protocol {}; ember speaks {})",
                    args.client.as_deref().unwrap_or("a client"),
                    args.protocol,
                    ember_ipc::PROTOCOL
                );
                Reply::Hello(ember_ipc::Hello {
                    protocol: ember_ipc::PROTOCOL,
                    ember: env!("CARGO_PKG_VERSION").to_owned(),
                    device: self.config.system.device.clone(),
                    role: self.role,
                })
            }
            Command::Subscribe(_) => Reply::error(
                ErrorKind::BadRequest,
                "subscribe is served by the control socket, not by a call",
            ),
            Command::Start(_) | Command::Stop(_) | Command::Restart(_) => {
                Reply::error(ErrorKind::Internal, "answered by on_request")
            }
            Command::ResetFailed(args) => self.reset_failed(args.names, origin),
            Command::Kill(args) => self.signal(args, origin),
            Command::Reload => match self.reload(origin) {
                Ok(report) => Reply::Reloaded(report),
                Err(refused) => refused,
            },
            Command::Logs(args) => {
                if self.engine.unit(&args.name).is_none() {
                    return self.unknown(&args.name);
                }
                let lines = self
                    .services
                    .get(&args.name)
                    .and_then(|kept| kept.log.as_ref())
                    .map(|ring| ring.last(&args.name, args.lines))
                    .unwrap_or_default();
                Reply::Logs { lines }
            }
            Command::Timeline => Reply::Timeline(self.timeline.snapshot(
                self.engine.units(),
                self.now(),
                &self.config.system.device,
                self.role,
            )),
            Command::Poweroff => self.power_request(origin, Power::Poweroff),
            Command::Reboot => self.power_request(origin, Power::Reboot),
            Command::Halt => self.power_request(origin, Power::Halt),
            Command::Reexec(_) => Reply::error(ErrorKind::Internal, "answered by on_request"),
        }
    }

    /// What the service's processes are and use now; dependencies from its spec.
    fn add_details(&self, service: &mut ServiceStatus) {
        let Some(unit) = self.engine.unit(&service.name) else {
            return;
        };
        let cgroup = self.cgroup_path(&service.name);
        let cgroup = cgroup.as_deref();
        let mut details = ember_ipc::Details {
            requires: unit.spec.requires.clone(),
            wants: unit.spec.wants.clone(),
            after: unit.spec.after.clone(),
            cgroup: cgroup.map(|c| c.display().to_string()),
            processes: Vec::new(),
        };
        if let Some((pids, figures)) = self.measure(&service.name) {
            details.processes = usage::describe(&pids, unit.pid);
            service.cpu_usec = Some(figures.cpu_usec);
            service.memory_bytes = Some(figures.memory_bytes);
            service.tasks = Some(figures.tasks);
        }
        service.details = Some(Box::new(details));
    }

    /// The statuses of the services a command acted on, as far as they are still there:
    /// an instance made on demand is forgotten once stopped (a failed one at once).
    fn statuses_left(&self, names: &[String]) -> Vec<ServiceStatus> {
        let left: Vec<String> = names
            .iter()
            .filter(|n| self.engine.unit(n).is_some())
            .cloned()
            .collect();
        self.statuses(&left).unwrap_or_default()
    }

    pub(super) fn statuses(&self, names: &[String]) -> Result<Vec<ServiceStatus>, Reply> {
        let now = self.now();
        names
            .iter()
            .map(|name| match self.engine.unit(name) {
                Some(unit) => {
                    let seq = self
                        .services
                        .get(name)
                        .and_then(|kept| kept.said.as_ref())
                        .map_or(0, |(_, seq)| *seq);
                    Ok(super::super::status::service_status(unit, now, seq))
                }
                None => Err(self.unknown(name)),
            })
            .collect()
    }
}

/// `names` with each name once, where it was first given: every request that names
/// services answers for each once (found by a hostile review: a status of `web web`
/// answered for web twice, as a start of `worker@1 'worker@*'` once did).
fn once_each(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Instances made by a start (not configured) that may run at once, all templates
/// together.
const MAX_MADE: usize = 1024;

#[derive(Clone, Copy)]
enum Kind {
    Start,
    Stop,
    Restart,
}

pub(super) fn unknown_service(name: &str) -> Reply {
    Reply::error(
        ErrorKind::UnknownService,
        format!(
            "no service named \"{}\"; `ember ctl status` lists the services",
            ember_ipc::text::shortened(name)
        ),
    )
}

/// Faults for the tests, compiled only with the `test-hooks` feature (never in a build a
/// board runs, debug or not): a status request for `__panic_task` panics in a task of its
/// own (contained by tokio), `__panic_main` panics in the main loop itself (caught in
/// daemon.rs, which falls back to the emergency loop as PID 1), `__stall_main` blocks the
/// main loop for good (nothing is served, nothing reaped, the watchdog no longer petted),
/// `__hang_sync` makes the shutdown's sync block for good (a filesystem that does not
/// answer), `__slow_files` makes each line written to a rotated file take 5 ms (a slow
/// flash).
#[cfg(feature = "test-hooks")]
fn test_hooks(names: &[String]) {
    if names.iter().any(|n| n == "__slow_files") {
        crate::log::warn!("each line written to a file takes 5 ms from now on (test hook)");
        crate::supervisor::logfiles::SLOW.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if names.iter().any(|n| n == "__stall_main") {
        crate::log::warn!("stalling the main loop for good (test hook)");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    if names.iter().any(|n| n == "__hang_sync") {
        crate::log::warn!("the shutdown's sync will hang for good (test hook)");
        crate::pid1::shutdown::HANG_SYNC.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if names.iter().any(|n| n == "__panic_task") {
        tokio::spawn(async { panic!("injected panic in a task (test hook)") });
    }
    if names.iter().any(|n| n == "__panic_main") {
        panic!("injected panic in the main loop (test hook)");
    }
}
