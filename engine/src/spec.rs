//! A service as the engine and the runtime take it: checked, plain data. The
//! configuration (ember's `config` module) builds these from TOML; nothing here reads a
//! file or looks anything up.

use nix::sys::resource::Resource;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A command line: the program and its arguments, in one allocation, each ended by a NUL,
/// which no argument can hold (execve takes C strings). As a `Vec<String>` it was an
/// allocation per argument and one for the list: 200 bytes of every four-word command.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Argv(Box<str>);

impl Argv {
    /// The command of these arguments; the error names the first that holds a NUL.
    pub fn new<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Argv, String> {
        let mut text = String::new();
        for (n, arg) in args.into_iter().enumerate() {
            let arg = arg.as_ref();
            if arg.contains('\0') {
                return Err(format!(
                    "argument {n} of the command (\"{}\") contains a NUL byte, which no program can be given",
                    arg.escape_debug()
                ));
            }
            text.push_str(arg);
            text.push('\0');
        }
        Ok(Argv(text.into_boxed_str()))
    }

    /// The program and then each argument.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.0.split_terminator('\0')
    }

    /// The program, as given.
    pub fn first(&self) -> Option<&str> {
        self.iter().next()
    }

    pub fn len(&self) -> usize {
        self.0.bytes().filter(|b| *b == 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One more argument at the end (the engine's tests edit commands).
    #[cfg(test)]
    pub(crate) fn push(&mut self, arg: &str) {
        let mut text = String::from(std::mem::take(&mut self.0));
        text.push_str(arg);
        text.push('\0');
        self.0 = text.into_boxed_str();
    }
}

impl std::fmt::Debug for Argv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `type`: the protocol's enum, so status and timelines carry it as it is.
pub use ember_ipc::ServiceKind as ServiceType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    None,
    Reboot,
    Poweroff,
}

/// How the engine learns that a started service is ready (`active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Active as soon as it is spawned.
    Spawned,
    /// Oneshot: active when it exits 0.
    Exit,
    /// Forking: active when the first process exited 0 and `pid_file` names the daemon.
    PidFile,
    /// A line of its output matches this regex.
    Log(String),
    Delay(Duration),
    /// sd_notify READY=1 on $NOTIFY_SOCKET.
    Notify,
    /// A TCP connect to this address succeeds.
    Tcp(String),
    /// This path exists.
    File(PathBuf),
    /// This command exits 0.
    Exec(Vec<String>),
}

impl Readiness {
    /// Which kind it is, as status shows it.
    pub fn kind(&self) -> ember_ipc::ReadyKind {
        use ember_ipc::ReadyKind;
        match self {
            Readiness::Spawned => ReadyKind::None,
            Readiness::Exit => ReadyKind::Exit,
            Readiness::PidFile => ReadyKind::PidFile,
            Readiness::Log(_) => ReadyKind::Log,
            Readiness::Delay(_) => ReadyKind::Delay,
            Readiness::Notify => ReadyKind::Notify,
            Readiness::Tcp(_) => ReadyKind::Tcp,
            Readiness::File(_) => ReadyKind::File,
            Readiness::Exec(_) => ReadyKind::Exec,
        }
    }
}

/// Where a service's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Read line by line, logged with the service's name, kept for `ember ctl logs`.
    Log,
    /// ember's own stdout (the console when PID 1).
    Console,
    Null,
    /// Appended to this file by the service itself, without bound.
    File(PathBuf),
    /// Read line by line by ember (kept for `ember ctl logs` and readiness, as `Log`) and
    /// written to a file that ember rotates, bounded. Behind a pointer: inline, it made
    /// every service's two outputs 16 bytes larger each; shared, so that each run's
    /// writer of the file refers to the spec's instead of a copy of its path.
    Rotated(std::sync::Arc<RotatedFile>),
}

/// `stdout = { file = "out.log", max_size = "1M", keep = 3 }`: at most `keep` files of at
/// most `max_size` bytes (`out.log`, `out.log.1` ... `out.log.<keep-1>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RotatedFile {
    /// Absolute: a relative `file` is under `[system] log_dir`.
    pub path: PathBuf,
    pub max_size: u64,
    pub keep: u32,
}

pub const DEFAULT_MAX_SIZE: u64 = 1024 * 1024;
pub const DEFAULT_KEEP: u32 = 3;

impl Output {
    /// Whether ember reads it line by line (and so may match `ready = { log }` in it).
    pub fn is_read(&self) -> bool {
        matches!(self, Output::Log | Output::Rotated(_))
    }
}

/// A checked service, as the engine and the runtime use it. Equality decides what a
/// reload restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: std::sync::Arc<str>,
    pub command: Argv,
    pub kind: ServiceType,
    pub pid_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub after: Vec<String>,
    pub restart: RestartPolicy,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    /// 0: no limit.
    pub start_limit: u32,
    pub start_limit_interval: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub ready: Readiness,
    pub ready_timeout: Option<Duration>,
    pub watchdog: Option<Duration>,
    pub stdout: Output,
    pub stderr: Output,
    pub enabled: bool,
    pub on_failure: FailureAction,
    /// rlimits, cgroup limits and the OOM score.
    pub limits: Limits,
    /// Runs on ember's own stdin/stdout/stderr with the console as its controlling
    /// terminal: the rescue shell. Not settable from TOML.
    pub console: bool,
    /// Its file could not be loaded (see `config::read_services_dir`): it is kept as a
    /// service that fails at every start with this reason, so that it shows in status and
    /// what requires it says why.
    pub load_error: Option<String>,
    /// Written to its standard input at every start, then closed: an adapter's settings,
    /// secrets included, which must not be in its argv or environment. Not from TOML.
    pub input: Option<ember_ipc::adapter::Secret>,
    /// At shutdown, stopped after every service but those it is ordered after: the
    /// adapters, so that what they report includes every other stop. Not from TOML.
    pub linger: bool,
    /// A oneshot run on a timer (`schedule = { every = "1h" }`) rather than once at boot.
    /// Boxed: few services have one, and inline it is 48 bytes of every spec.
    pub schedule: Option<Box<Schedule>>,
    /// An instance of a template made on demand (`ember ctl start worker@42`): forgotten
    /// once it is stopped, as systemd forgets an inactive instance. Not from TOML.
    pub transient: bool,
}

/// What a template's fields say where the instance's name goes: `{instance}`.
pub const INSTANCE: &str = "{instance}";

/// The template a service name is an instance of, and the instance: `worker@42` is
/// `("worker@", "42")`. `None` for a name without `@`, or with nothing after it.
pub fn template_of(name: &str) -> Option<(&str, &str)> {
    let at = name.find('@')?;
    let instance = &name[at + 1..];
    (at > 0 && !instance.is_empty()).then(|| (&name[..=at], instance))
}

/// When a scheduled oneshot runs, on the monotonic clock (a board without an RTC keeps
/// time from boot): systemd's OnBootSec, OnUnitActiveSec and RandomizedDelaySec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Between the starts of two runs.
    pub every: Option<Duration>,
    /// The first run, after ember started; without it, the first run is `every` after.
    pub after_boot: Option<Duration>,
    /// Each run is put off by up to this much, a different amount per board and run, so
    /// that a fleet does not upload its logs in the same second.
    pub jitter: Duration,
}

impl ServiceSpec {
    /// A spec with every default, for tests and for building by hand.
    pub fn new(name: &str, command: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            // The tests' and the adapters' own commands: none holds a NUL.
            command: Argv::new(command).unwrap_or_default(),
            kind: ServiceType::Simple,
            pid_file: None,
            user: None,
            group: None,
            env: BTreeMap::new(),
            workdir: None,
            requires: Vec::new(),
            wants: Vec::new(),
            after: Vec::new(),
            restart: RestartPolicy::OnFailure,
            restart_delay: Duration::from_millis(100),
            restart_delay_max: Duration::from_secs(30),
            start_limit: 5,
            start_limit_interval: Duration::from_secs(10),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(5),
            ready: Readiness::Spawned,
            ready_timeout: Some(DEFAULT_READY_TIMEOUT),
            watchdog: None,
            stdout: Output::Log,
            stderr: Output::Log,
            enabled: true,
            on_failure: FailureAction::None,
            limits: Limits::default(),
            console: false,
            load_error: None,
            input: None,
            linger: false,
            schedule: None,
            transient: false,
        }
    }

    /// A stand-in for a service whose file cannot be loaded: it fails at start, once.
    pub fn unloadable(name: &str, why: String) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, &[]);
        spec.restart = RestartPolicy::Never;
        spec.load_error = Some(why);
        spec
    }

    /// A template (`worker@`): the service `worker@NAME` is made from it, with every
    /// [`INSTANCE`] in its command, environment, workdir, pid file, output files and its
    /// readiness check's file or command replaced by NAME.
    pub fn is_template(&self) -> bool {
        self.name.ends_with('@')
    }

    /// The service `instance` of this template (see [`ServiceSpec::is_template`]).
    pub fn instantiate(&self, instance: &str) -> ServiceSpec {
        let text = |s: &str| s.replace(INSTANCE, instance);
        let path = |p: &std::path::Path| PathBuf::from(text(&p.to_string_lossy()));
        let output = |o: &Output| match o {
            Output::File(p) => Output::File(path(p)),
            Output::Rotated(f) => Output::Rotated(std::sync::Arc::new(RotatedFile {
                path: path(&f.path),
                ..(**f).clone()
            })),
            other => other.clone(),
        };
        // Inserted, not collected: a collected BTreeMap sorts first, and each type sorted
        // is its own copy of the sort in the executable.
        let mut env = BTreeMap::new();
        for (key, value) in &self.env {
            env.insert(key.clone(), text(value));
        }
        let ready = match &self.ready {
            Readiness::File(p) => Readiness::File(path(p)),
            Readiness::Exec(argv) => Readiness::Exec(argv.iter().map(|a| text(a)).collect()),
            other => other.clone(),
        };
        ServiceSpec {
            name: format!("{}{instance}", self.name).into(),
            ready,
            // An instance's name holds no NUL (it is a service's name): neither does this.
            command: Argv::new(self.command.iter().map(text)).unwrap_or_default(),
            env,
            workdir: self.workdir.as_deref().map(path),
            pid_file: self.pid_file.as_deref().map(path),
            stdout: output(&self.stdout),
            stderr: output(&self.stderr),
            ..self.clone()
        }
    }

    /// Every service this one is ordered after (requires, wants, after).
    pub fn ordered_after(&self) -> impl Iterator<Item = &String> {
        self.requires.iter().chain(&self.wants).chain(&self.after)
    }
}

/// What a reload changes in a service, as the keys of its configuration. Every key is in
/// one of two classes: how the process runs (a change restarts a running service, as
/// systemd and dinit do), or policy (restart rules, timeouts, readiness, dependencies,
/// `enabled`: applied in place, nothing restarted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecDiff {
    pub process: Vec<&'static str>,
    pub policy: Vec<&'static str>,
}

impl SpecDiff {
    pub fn is_empty(&self) -> bool {
        self.process.is_empty() && self.policy.is_empty()
    }
}

impl ServiceSpec {
    /// The keys that differ from `new`, by class.
    pub fn diff(&self, new: &ServiceSpec) -> SpecDiff {
        // Destructured in full: a new field does not compile until it is given a class.
        let ServiceSpec {
            name: _,
            command,
            kind,
            pid_file,
            user,
            group,
            env,
            workdir,
            requires,
            wants,
            after,
            restart,
            restart_delay,
            restart_delay_max,
            start_limit,
            start_limit_interval,
            stop_signal,
            stop_timeout,
            ready,
            ready_timeout,
            watchdog,
            stdout,
            stderr,
            enabled,
            on_failure,
            limits,
            console,
            load_error,
            input,
            linger,
            schedule,
            // Made on demand or configured: how it runs is the same.
            transient: _,
        } = self;
        let mut diff = SpecDiff::default();
        let mut process = |changed: bool, key| {
            if changed {
                diff.process.push(key)
            }
        };
        process(*command != new.command, "command");
        process(*kind != new.kind, "type");
        process(*pid_file != new.pid_file, "pid_file");
        process(*user != new.user, "user");
        process(*group != new.group, "group");
        process(*env != new.env, "env");
        process(*workdir != new.workdir, "workdir");
        // WATCHDOG_USEC is in the process's environment.
        process(*watchdog != new.watchdog, "watchdog");
        process(*stdout != new.stdout, "stdout");
        process(*stderr != new.stderr, "stderr");
        process(limits.rlimits != new.limits.rlimits, "limits");
        process(
            limits.oom_score_adjust != new.limits.oom_score_adjust,
            "oom_score_adjust",
        );
        process(*console != new.console, "console");
        process(*load_error != new.load_error, "file");
        process(*input != new.input, "settings");
        let mut policy = |changed: bool, key| {
            if changed {
                diff.policy.push(key)
            }
        };
        policy(*requires != new.requires, "requires");
        policy(*wants != new.wants, "wants");
        policy(*after != new.after, "after");
        policy(*restart != new.restart, "restart");
        policy(*restart_delay != new.restart_delay, "restart_delay");
        policy(
            *restart_delay_max != new.restart_delay_max,
            "restart_delay_max",
        );
        policy(*start_limit != new.start_limit, "start_limit");
        policy(
            *start_limit_interval != new.start_limit_interval,
            "start_limit_interval",
        );
        policy(*stop_signal != new.stop_signal, "stop_signal");
        policy(*stop_timeout != new.stop_timeout, "stop_timeout");
        policy(*ready != new.ready, "ready");
        policy(*ready_timeout != new.ready_timeout, "ready_timeout");
        policy(*enabled != new.enabled, "enabled");
        policy(*on_failure != new.on_failure, "on_failure");
        policy(*linger != new.linger, "linger");
        policy(*schedule != new.schedule, "schedule");
        // Files of its cgroup, which the runtime writes again on a reload: the running
        // process keeps running under the new limits, as systemd applies MemoryMax=.
        policy(limits.memory_max != new.limits.memory_max, "memory_max");
        policy(limits.cpu_weight != new.limits.cpu_weight, "cpu_weight");
        policy(limits.pids_max != new.limits.pids_max, "pids_max");
        diff
    }
}

/// Like systemd's DefaultTimeoutStartSec; oneshots have none unless set.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// An amount of a resource: a count or a size in bytes, or no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Value(u64),
    /// "infinity" (systemd's word) or "unlimited" (ulimit's).
    Infinity,
}

impl Amount {
    /// As a cgroup file takes it: a number, or "max".
    pub fn cgroup_text(self) -> String {
        match self {
            Amount::Value(n) => n.to_string(),
            Amount::Infinity => "max".to_owned(),
        }
    }

    /// As people write it: "64M" rather than 67108864.
    pub fn human(self) -> String {
        match self {
            Amount::Infinity => "infinity".to_owned(),
            Amount::Value(0) => "0".to_owned(),
            Amount::Value(n) => {
                let unit = [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')]
                    .into_iter()
                    .find(|(shift, _)| n % (1u64 << shift) == 0);
                match unit {
                    Some((shift, letter)) => format!("{}{letter}", n >> shift),
                    None => n.to_string(),
                }
            }
        }
    }

    /// As setrlimit takes it.
    pub fn rlim(self) -> nix::libc::rlim_t {
        match self {
            Amount::Value(n) => n as nix::libc::rlim_t,
            Amount::Infinity => nix::libc::RLIM_INFINITY,
        }
    }
}

/// One `limits` entry: both the soft and the hard limit are set to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub amount: Amount,
}

/// A service's limits, checked. Nothing set: the service runs with ember's own limits,
/// outside any controller's reach, as before.
///
/// Kept boxed, and only when one is set: most services have none, and inline they were
/// 72 bytes of every service's spec. Reads see [`LimitValues`] (all unset when there are
/// none); a write makes room for them.
#[derive(Clone, Default)]
pub struct Limits(Option<Box<LimitValues>>);

/// The limits themselves (see [`Limits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitValues {
    pub rlimits: Vec<Rlimit>,
    /// memory.max of its cgroup; over it, the kernel OOM-kills the service.
    pub memory_max: Option<Amount>,
    /// cpu.weight of its cgroup, 1 to 10000 (100 is everyone's default).
    pub cpu_weight: Option<u32>,
    /// pids.max of its cgroup: fork fails with EAGAIN past it.
    pub pids_max: Option<Amount>,
    /// -1000 (never OOM-killed) to 1000 (first to go).
    pub oom_score_adjust: Option<i32>,
}

/// What a service without limits reads.
static NO_LIMITS: LimitValues = LimitValues {
    rlimits: Vec::new(),
    memory_max: None,
    cpu_weight: None,
    pids_max: None,
    oom_score_adjust: None,
};

impl From<LimitValues> for Limits {
    fn from(values: LimitValues) -> Limits {
        Limits((values != NO_LIMITS).then(|| Box::new(values)))
    }
}

impl std::ops::Deref for Limits {
    type Target = LimitValues;
    fn deref(&self) -> &LimitValues {
        self.0.as_deref().unwrap_or(&NO_LIMITS)
    }
}

impl std::ops::DerefMut for Limits {
    fn deref_mut(&mut self) -> &mut LimitValues {
        self.0.get_or_insert_with(Box::default)
    }
}

/// By what they say: none boxed and all unset boxed are the same limits.
impl PartialEq for Limits {
    fn eq(&self, other: &Limits) -> bool {
        **self == **other
    }
}

impl Eq for Limits {}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The keys of the limits kept in a service's cgroup ([`ServiceSpec::diff`] calls them
/// policy): a reload writes them there in place.
pub const CGROUP_LIMITS: [&str; 3] = ["memory_max", "cpu_weight", "pids_max"];

impl LimitValues {
    /// Whether any limit needs the service's cgroup (and its controllers).
    pub fn needs_controllers(&self) -> bool {
        self.memory_max.is_some() || self.cpu_weight.is_some() || self.pids_max.is_some()
    }
}

#[cfg(test)]
mod argv_tests {
    use super::Argv;

    #[test]
    fn a_command_keeps_its_words_empty_ones_too() {
        let argv = Argv::new(["/bin/sh", "-c", "", "echo hi"]).unwrap();
        assert_eq!(
            argv.iter().collect::<Vec<_>>(),
            ["/bin/sh", "-c", "", "echo hi"]
        );
        assert_eq!((argv.len(), argv.first()), (4, Some("/bin/sh")));
        assert_eq!(format!("{argv:?}"), r#"["/bin/sh", "-c", "", "echo hi"]"#);
        let none = Argv::new(Vec::<String>::new()).unwrap();
        assert!(none.is_empty() && none.first().is_none());
        assert_eq!(none.len(), 0);
        let one_empty = Argv::new([""]).unwrap();
        assert_eq!((one_empty.len(), one_empty.first()), (1, Some("")));
    }

    #[test]
    fn a_word_with_a_nul_is_refused_by_its_place() {
        let err = Argv::new(["/bin/app", "a\0b"]).unwrap_err();
        assert!(err.contains("argument 1") && err.contains("NUL"), "{err}");
    }
}
