//! One service: its TOML shape (`RawService`), the checked model the engine runs
//! (`ServiceSpec`), and the checks that turn one into the other.

use super::limits::RawLimits;
use super::walk::{self, FromToml, Issue, Table};
use super::{Problem, Severity, Source};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

/// The keys of a `[service.NAME]` table or a `services.d/NAME.toml` file, as written.
#[derive(Debug)]
pub struct RawService {
    command: Option<Spanned<Vec<String>>>,
    kind: Option<ServiceType>,
    pid_file: Option<Spanned<PathBuf>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    env: Env,
    workdir: Option<Spanned<PathBuf>>,
    requires: Vec<Spanned<String>>,
    wants: Vec<Spanned<String>>,
    after: Vec<Spanned<String>>,
    restart: Option<RestartPolicy>,
    restart_delay: Option<Duration>,
    restart_delay_max: Option<Duration>,
    start_limit: Option<u32>,
    start_limit_interval: Option<Spanned<Duration>>,
    stop_signal: Option<Signal>,
    stop_timeout: Option<Spanned<Duration>>,
    ready: Option<Spanned<RawReady>>,
    ready_timeout: Option<Duration>,
    watchdog: Option<Spanned<Duration>>,
    stdout: Option<Spanned<RawOutput>>,
    stderr: Option<Spanned<RawOutput>>,
    enabled: Option<bool>,
    on_failure: Option<FailureAction>,
    schedule: Option<Spanned<RawSchedule>>,
    /// A template's pool, made at boot: see [`Instances`].
    pub instances: Option<Spanned<Instances>>,
    limits: RawLimits,
}

impl RawService {
    /// Takes a service's keys from its table. The order they are taken in is the order
    /// an unknown key's message lists them in.
    pub fn take_from(t: &mut Table<'_>) -> RawService {
        RawService {
            command: t.take("command"),
            kind: t.take("type"),
            pid_file: t.take("pid_file"),
            user: t.take("user"),
            group: t.take("group"),
            env: t.take("env").unwrap_or_default(),
            workdir: t.take("workdir"),
            requires: t.take("requires").unwrap_or_default(),
            wants: t.take("wants").unwrap_or_default(),
            after: t.take("after").unwrap_or_default(),
            restart: t.take("restart"),
            restart_delay: t.take("restart_delay"),
            restart_delay_max: t.take("restart_delay_max"),
            start_limit: t.take("start_limit"),
            start_limit_interval: t.take("start_limit_interval"),
            stop_signal: t.take("stop_signal"),
            stop_timeout: t.take("stop_timeout"),
            ready: t.take("ready"),
            ready_timeout: t.take("ready_timeout"),
            watchdog: t.take("watchdog"),
            stdout: t.take("stdout"),
            stderr: t.take("stderr"),
            enabled: t.take("enabled"),
            on_failure: t.take("on_failure"),
            schedule: t.take("schedule"),
            instances: t.take("instances"),
            limits: RawLimits::take_from(t),
        }
    }
}

/// `env = { NAME = "value" }`: each name and value checked where it is written. A name
/// is not empty and holds no `=` (the first `=` ends it: "A=B" = "1" would set A to
/// "B=1"), no NUL and no control character; a value holds no NUL (execve takes C strings:
/// the service could never start).
#[derive(Debug, Default)]
struct Env(BTreeMap<String, String>);

impl FromToml for Env {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        let entries = match value.into_inner() {
            DeValue::Table(entries) => entries,
            other => return walk::wrong_type(offset, &other, "a table", issues),
        };
        let before = issues.len();
        let mut env = BTreeMap::new();
        for (key, value) in entries {
            let at = key.span().start;
            let key = key.into_inner();
            let shown = key.escape_debug();
            let bad_key = if key.is_empty() {
                Some(format!("env key \"{shown}\" is empty; name the variable"))
            } else if key.contains('\0') {
                Some(format!(
                    "env key \"{shown}\" contains a NUL byte, which no program can be given"
                ))
            } else if key.contains(INSTANCE) {
                Some(format!("env key \"{shown}\": {INSTANCE} is not replaced in a variable's name (only in its value); name the variable"))
            } else if key.contains('=') {
                Some(format!("env key \"{shown}\" contains '=', which ends a variable's name; name the variable without it"))
            } else {
                key.chars().find(|c| c.is_control()).map(|c| format!("env key \"{shown}\" contains the control character {c:?}; name the variable with letters, digits and _"))
            };
            if let Some(message) = bad_key {
                issues.push(Issue {
                    offset: at,
                    message,
                });
            }
            let Some(value) = Spanned::<String>::from_toml(value, issues) else {
                continue;
            };
            if value.get_ref().contains('\0') {
                issues.push(Issue {
                    offset: value.span().start,
                    message: format!(
                        "env {shown}: its value (\"{}\") contains a NUL byte, which no program can be given",
                        value.get_ref().escape_debug()
                    ),
                });
            }
            env.insert(key.into_owned(), value.into_inner());
        }
        (issues.len() == before).then_some(Env(env))
    }
}

/// `ready = { ... }`: exactly one of its keys should be set, checked in `ready_kind`.
#[derive(Debug)]
struct RawReady {
    log: Option<String>,
    delay: Option<Duration>,
    notify: Option<bool>,
    tcp: Option<String>,
    file: Option<Spanned<PathBuf>>,
    exec: Option<Spanned<Vec<String>>>,
}

impl FromToml for RawReady {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let expected = "an inline table with one of log, delay, notify, tcp, file, exec, such as { notify = true }";
        walk::table(value, expected, issues, |t| RawReady {
            log: t.take("log"),
            delay: t.take("delay"),
            notify: t.take("notify"),
            tcp: t.take("tcp"),
            file: t.take("file"),
            exec: t.take("exec"),
        })
    }
}

/// Where a template's [`INSTANCE`] is replaced by the instance's name, as said where it is
/// written anywhere else.
pub const REPLACED_IN: &str =
    "only in command, env values, workdir, pid_file, stdout, stderr and ready's file or exec";

/// The instances a template (`worker@`) has from boot: `instances = ["a", "b"]` makes
/// `worker@a` and `worker@b`; `instances = 4` makes `worker@1` ... `worker@4`.
#[derive(Debug)]
pub struct Instances(pub Vec<String>);

/// The largest pool `instances = N` makes.
pub const MAX_POOL: u32 = 1024;

impl FromToml for Instances {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        // Said in the words of a pool, not the parser's ("expected u32"), whatever the
        // number (found by a hostile review).
        if let DeValue::Integer(i) = value.get_ref() {
            let written = i.as_str();
            let count = walk::integer(i)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_POOL).contains(n));
            let Some(count) = count else {
                issues.push(Issue {
                    offset,
                    message: format!("instances = {written}: a pool has 1 to {MAX_POOL} instances; remove the key for none"),
                });
                return None;
            };
            return Some(Instances((1..=count).map(|n| n.to_string()).collect()));
        }
        match value.get_ref() {
            // Numbers for names: say how to write them as names.
            DeValue::Array(list)
                if list
                    .iter()
                    .any(|v| matches!(v.get_ref(), DeValue::Integer(_))) =>
            {
                let shown = |quote: &str| {
                    list.iter()
                        .take(4)
                        .map(|v| match v.get_ref() {
                            DeValue::Integer(i) => format!("{quote}{}{quote}", i.as_str()),
                            DeValue::String(s) => {
                                format!("\"{}\"", ember_ipc::text::shortened(s).escape_debug())
                            }
                            _ => "...".to_owned(),
                        })
                        .chain((list.len() > 4).then(|| "...".to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                issues.push(Issue {
                    offset,
                    message: format!(
                        "instances = [{}]: an instance's name is a string: write instances = [{}], or instances = N for worker@1 ... worker@N",
                        shown(""),
                        shown("\"")
                    ),
                });
                None
            }
            // Bounded as a number is (found by a hostile review: a list of 100,000 names
            // made as many services at boot, after minutes of looking for duplicates).
            DeValue::Array(list) if list.len() > MAX_POOL as usize => {
                issues.push(Issue {
                    offset,
                    message: format!("instances lists {} names: a pool has 1 to {MAX_POOL} instances; start more on demand (ember ctl start worker@NAME), or use another template", list.len()),
                });
                None
            }
            DeValue::Array(_) => Vec::<String>::from_toml(value, issues).map(Instances),
            other => walk::wrong_type(
                offset,
                other,
                "an array of instance names such as [\"a\", \"b\"], or a number of instances",
                issues,
            ),
        }
    }
}

/// `schedule = { every = "1h", after_boot = "5m", jitter = "2m" }`.
#[derive(Debug)]
struct RawSchedule {
    every: Option<Spanned<Duration>>,
    after_boot: Option<Duration>,
    jitter: Option<Spanned<Duration>>,
}

impl FromToml for RawSchedule {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let expected =
            "an inline table such as { every = \"1h\", after_boot = \"5m\", jitter = \"2m\" }";
        walk::table(value, expected, issues, |t| RawSchedule {
            every: t.take("every"),
            after_boot: t.take("after_boot"),
            jitter: t.take("jitter"),
        })
    }
}

pub use ember_engine::spec::{
    template_of, Argv, FailureAction, Output, Readiness, RestartPolicy, RotatedFile, Schedule,
    ServiceSpec, ServiceType, SpecDiff, DEFAULT_KEEP, DEFAULT_MAX_SIZE, DEFAULT_READY_TIMEOUT,
    INSTANCE,
};

impl FromToml for ServiceType {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = ServiceType::ALL.iter().map(|k| (k.word(), *k));
        walk::keyword(value, &words.collect::<Vec<_>>(), issues)
    }
}

impl FromToml for RestartPolicy {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = [
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ];
        walk::keyword(value, &words, issues)
    }
}

impl FromToml for FailureAction {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = [
            ("none", FailureAction::None),
            ("reboot", FailureAction::Reboot),
            ("poweroff", FailureAction::Poweroff),
        ];
        walk::keyword(value, &words, issues)
    }
}

/// `stdout` or `stderr` as written: a word or a path, or a table for a rotated file.
#[derive(Debug)]
pub enum RawOutput {
    Text(String),
    Rotated {
        file: Option<Spanned<PathBuf>>,
        max_size: Option<Spanned<super::limits::Amount>>,
        keep: Option<Spanned<u32>>,
    },
}

impl FromToml for RawOutput {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        if matches!(value.get_ref(), DeValue::String(_)) {
            return String::from_toml(value, issues).map(RawOutput::Text);
        }
        walk::table(
            value,
            "\"log\", \"console\", \"null\", a path, or a table such as { file = \"out.log\", max_size = \"1M\", keep = 3 }",
            issues,
            |t| RawOutput::Rotated {
                file: t.take("file"),
                max_size: t.take("max_size"),
                keep: t.take("keep"),
            },
        )
    }
}

/// Why ember would not write `path`, the `what` ("stdout") of service `name`, as a rotated
/// file (see `crate::supervisor::logfiles::open_file`), if it would not: it is on a
/// kernel filesystem, it is there and is not a regular file of its own, or a directory
/// it would be in is there and is not one. Looked at, never opened.
pub fn rotated_file_refused(name: &str, what: &str, path: &Path) -> Option<String> {
    // The nearest part of the path that is there (through links, as the open goes).
    let nearest = path
        .ancestors()
        .skip(1)
        .find_map(|dir| std::fs::metadata(dir).ok().map(|meta| (dir, meta)));
    if let Some((dir, meta)) = nearest.filter(|(_, meta)| !meta.is_dir()) {
        return Some(format!(
            "service \"{name}\": {what} file {} cannot be made: {} is {}, not a directory",
            path.display(),
            dir.display(),
            crate::filekind::kind(meta.file_type())
        ));
    }
    if let Some(fs) = path.parent().and_then(crate::filekind::kernel_filesystem) {
        return Some(format!(
            "service \"{name}\": {what} file {} is on a kernel filesystem ({fs}), not on a disk: ember neither writes nor rotates a file there",
            path.display()
        ));
    }
    let why = std::fs::symlink_metadata(path)
        .ok()
        .and_then(|m| crate::filekind::not_a_file_of_its_own(&m))?;
    Some(format!(
        "service \"{name}\": {what} file {} {why}: ember writes only files it can rotate (for a device or a FIFO, write {what} = \"{}\", which the service writes itself)",
        path.display(),
        path.display()
    ))
}

/// Where each dependency was written, for errors found when the graph is checked, and
/// each rotated output file, looked at once it is under log_dir.
#[derive(Debug, Clone, Default)]
pub struct DependencySpans {
    pub table: Option<usize>,
    pub deps: Vec<(String, &'static str, usize)>,
    /// "stdout" or "stderr", and where its `file` was written.
    pub files: Vec<(&'static str, usize)>,
}

/// Checks a raw service and builds its spec; every problem found goes to `problems`.
pub fn build(
    name: &str,
    raw: RawService,
    table_offset: usize,
    source: &Source,
    problems: &mut Vec<Problem>,
) -> Option<(ServiceSpec, DependencySpans)> {
    let errors_before = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    macro_rules! error {
        ($offset:expr, $message:expr $(,)?) => {
            problems.push(source.problem(Some($offset), Severity::Error, $message))
        };
    }
    let mut spec = ServiceSpec::new(name, &[]);
    spec.env = raw.env.0;
    // What the OS is given as a C string cannot hold a NUL: said here, at the value, not
    // found when the service can never start. (A command's and env's are said by theirs.)
    let mut nul_free = |what: &str, offset: usize, text: &std::ffi::OsStr| {
        let nul =
            super::values::nul_in(&format!("service \"{name}\": {what}"), text, "path or name");
        let free = nul.is_none();
        if let Some(why) = nul {
            error!(offset, why);
        }
        free
    };
    let pid_file_ok = raw
        .pid_file
        .as_ref()
        .is_none_or(|p| nul_free("pid_file", p.span().start, p.get_ref().as_os_str()));
    let workdir_ok = raw
        .workdir
        .as_ref()
        .is_none_or(|d| nul_free("workdir", d.span().start, d.get_ref().as_os_str()));
    let user_ok = raw
        .user
        .as_ref()
        .is_none_or(|u| nul_free("user", u.span().start, u.get_ref().as_ref()));
    let group_ok = raw
        .group
        .as_ref()
        .is_none_or(|g| nul_free("group", g.span().start, g.get_ref().as_ref()));
    for (what, output) in [("stdout", &raw.stdout), ("stderr", &raw.stderr)] {
        match output.as_ref().map(|o| (o.span().start, o.get_ref())) {
            Some((offset, RawOutput::Text(text))) => {
                nul_free(what, offset, text.as_ref());
            }
            Some((
                _,
                RawOutput::Rotated {
                    file: Some(file), ..
                },
            )) => {
                nul_free(
                    &format!("{what} file"),
                    file.span().start,
                    file.get_ref().as_os_str(),
                );
            }
            _ => {}
        }
    }

    match raw.command {
        None => error!(table_offset, format!("service \"{name}\" has no command; add e.g. command = [\"/usr/bin/app\", \"--flag\"]")),
        Some(command) if command.get_ref().is_empty() || command.get_ref()[0].is_empty() => {
            error!(command.span().start, format!("service \"{name}\": command is empty; give the program and its arguments"))
        }
        Some(command) => {
            let offset = command.span().start;
            match Argv::new(command.into_inner()) {
                Err(why) => error!(offset, format!("service \"{name}\": {why}")),
                Ok(argv) => spec.command = argv,
            }
            let program = spec.command.first().unwrap_or_default();
            let path_var = spec.env.get("PATH").map(String::as_str);
            // A template's program named by its instance is looked up when one is made.
            let look_up = !source.offline && !program.is_empty() && !program.contains(INSTANCE);
            if let Some(Err(why)) = look_up.then(|| resolve_program(program, path_var)) {
                problems.push(source.problem(Some(offset), Severity::Runtime, format!("service \"{name}\": {why}")));
            }
        }
    }
    spec.kind = raw.kind.unwrap_or(ServiceType::Simple);
    let pid_file_offset = raw.pid_file.as_ref().map(|p| p.span().start);
    spec.pid_file = raw.pid_file.map(Spanned::into_inner);
    if spec.kind == ServiceType::Forking && spec.pid_file.is_none() {
        error!(table_offset, format!("service \"{name}\" is type = \"forking\" but has no pid_file: ember must know the daemon's pid; add e.g. pid_file = \"/run/{name}.pid\""));
    }
    if let (Some(p), Some(offset), true) = (&spec.pid_file, pid_file_offset, pid_file_ok) {
        if spec.kind != ServiceType::Forking {
            error!(
                offset,
                format!("service \"{name}\": pid_file applies to type = \"forking\" only; remove it or set type = \"forking\"")
            );
        } else if !p.is_absolute() {
            error!(
                offset,
                format!("service \"{name}\": pid_file must be an absolute path such as \"/run/{name}.pid\"")
            );
        }
    }
    for (value, what) in [(&raw.user, "user"), (&raw.group, "group")] {
        let ok = if what == "user" { user_ok } else { group_ok };
        if let Some(v) = value.as_ref().filter(|v| v.get_ref().contains(INSTANCE)) {
            problems.push(source.problem(
                Some(v.span().start),
                Severity::Error,
                format!("service \"{name}\": {INSTANCE} is not replaced in {what} ({REPLACED_IN}); name the {what}"),
            ));
            continue;
        }
        if let Some(v) = value.as_ref().filter(|_| !source.offline && ok) {
            if let Err(why) = check_account(v.get_ref(), what == "user") {
                problems.push(source.problem(
                    Some(v.span().start),
                    Severity::Runtime,
                    format!("service \"{name}\": {why}"),
                ));
            }
        }
    }
    spec.user = raw.user.map(Spanned::into_inner);
    spec.group = raw.group.map(Spanned::into_inner);
    // Absolute, as pid_file is: a relative one was looked for from where `ember check`
    // ran, and taken at run time from ember's own working directory (/ at boot).
    let mut workdir_ok = workdir_ok;
    if let Some(dir) = raw.workdir.as_ref().filter(|_| workdir_ok) {
        if !dir.get_ref().is_absolute() {
            error!(
                dir.span().start,
                format!(
                    "service \"{name}\": workdir \"{}\" must be an absolute path such as \"/var/lib/{name}\"",
                    dir.get_ref().display()
                )
            );
            workdir_ok = false;
        }
    }
    let names_instance = |dir: &PathBuf| dir.to_string_lossy().contains(INSTANCE);
    if let Some(dir) = raw
        .workdir
        .as_ref()
        .map(Spanned::get_ref)
        .filter(|d| !source.offline && workdir_ok && !names_instance(d))
    {
        if !dir.is_dir() {
            // Like a missing command: it may be on a filesystem mounted later.
            problems.push(source.problem(
                Some(table_offset),
                Severity::Runtime,
                format!(
                    "service \"{name}\": workdir {} is not a directory that exists",
                    dir.display()
                ),
            ));
        }
    }
    spec.workdir = raw.workdir.map(Spanned::into_inner);
    let mut deps = DependencySpans {
        table: Some(table_offset),
        deps: Vec::new(),
        files: Vec::new(),
    };
    for (list, kind, target) in [
        (raw.requires, "requires", &mut spec.requires),
        (raw.wants, "wants", &mut spec.wants),
        (raw.after, "after", &mut spec.after),
    ] {
        for dep in list {
            deps.deps
                .push((dep.get_ref().clone(), kind, dep.span().start));
            if dep.get_ref() == name {
                error!(
                    dep.span().start,
                    format!("service \"{name}\" {kind} itself; remove \"{name}\" from {kind}")
                );
            }
            target.push(dep.into_inner());
        }
    }
    spec.restart = raw.restart.unwrap_or(RestartPolicy::OnFailure);
    if let Some(d) = raw.restart_delay {
        spec.restart_delay = d;
    }
    if let Some(d) = raw.restart_delay_max {
        spec.restart_delay_max = d;
    }
    if spec.restart_delay_max < spec.restart_delay {
        spec.restart_delay_max = spec.restart_delay;
    }
    if let Some(n) = raw.start_limit {
        spec.start_limit = n;
    }
    // A window of 0 counts no failure, and a stop_timeout of 0 leaves no time to stop:
    // neither means what it seems to, and each has its own way to say what it would.
    if let Some(d) = raw.start_limit_interval {
        if d.get_ref().is_zero() {
            error!(d.span().start, format!("service \"{name}\": start_limit_interval must be more than 0s: start_limit counts the failures within it; for no start limit, set start_limit = 0"));
        } else {
            spec.start_limit_interval = d.into_inner();
        }
    }
    if let Some(s) = raw.stop_signal {
        spec.stop_signal = s;
    }
    if let Some(d) = raw.stop_timeout {
        if d.get_ref().is_zero() {
            error!(d.span().start, format!("service \"{name}\": stop_timeout must be more than 0s: it is how long the service has to stop after its stop_signal, before SIGKILL; to kill it at once, set stop_signal = \"SIGKILL\""));
        } else {
            spec.stop_timeout = d.into_inner();
        }
    }
    spec.ready = match spec.kind {
        ServiceType::Oneshot => Readiness::Exit,
        ServiceType::Forking => Readiness::PidFile,
        ServiceType::Notify => Readiness::Notify,
        ServiceType::Simple => Readiness::Spawned,
    };
    let mut ready_offset = table_offset;
    if let Some(ready) = raw.ready {
        let offset = ready.span().start;
        ready_offset = offset;
        check_ready_exec_and_file(name, ready.get_ref(), source, problems);
        match ready_kind(ready.into_inner()) {
            Err(why) => error!(offset, format!("service \"{name}\": {why}")),
            Ok(kind) if spec.kind == ServiceType::Simple || (spec.kind == ServiceType::Notify && kind == Readiness::Notify) => {
                spec.ready = kind;
            }
            Ok(_) => error!(
                offset,
                format!(
                    "service \"{name}\": ready does not apply to type = \"{}\" ({}); use type = \"simple\" with ready",
                    ServiceType::word(spec.kind),
                    match spec.kind {
                        ServiceType::Oneshot => "a oneshot is ready when it exits 0",
                        ServiceType::Forking => "a forking daemon is ready when its pid_file appears",
                        _ => "a notify service is ready when it sends READY=1",
                    }
                ),
            ),
        }
    }
    if let Readiness::Log(pattern) = &spec.ready {
        if pattern.contains(INSTANCE) {
            error!(
                ready_offset,
                format!("service \"{name}\": {INSTANCE} is not replaced in ready's log pattern ({REPLACED_IN}); match what every instance prints, e.g. \"listening\"")
            );
        } else if ready_log_regex(pattern).is_err() {
            match regex_lite::Regex::new(pattern) {
                Ok(_) => error!(
                    ready_offset,
                    format!("service \"{name}\": ready log pattern {pattern:?} is too costly to match against every line: it compiles to more than {} KiB; shorten it (large counted repetitions such as {{100}}, and \\w or \\d, which stand for every Unicode letter or digit, cost most)", READY_LOG_SIZE >> 10)
                ),
                Err(e) => error!(
                    ready_offset,
                    format!("service \"{name}\": ready log pattern {pattern:?} is not a valid regex ({e}); escape the characters meant literally, e.g. '\\(' or \"\\\\(\" for (")
                ),
            }
        }
    }
    spec.ready_timeout = match raw.ready_timeout {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if spec.kind == ServiceType::Oneshot => None,
        None => Some(DEFAULT_READY_TIMEOUT),
    };
    if let Some(w) = raw.watchdog {
        let offset = w.span().start;
        let d = w.into_inner();
        if spec.ready != Readiness::Notify {
            error!(offset, format!("service \"{name}\": watchdog needs sd_notify; set type = \"notify\" or ready = {{ notify = true }}"));
        } else if d.is_zero() {
            error!(
                offset,
                format!("service \"{name}\": watchdog must be longer than 0; remove it for none")
            );
        } else {
            spec.watchdog = Some(d);
        }
    }
    for (what, value, slot) in [
        ("stdout", raw.stdout, &mut spec.stdout),
        ("stderr", raw.stderr, &mut spec.stderr),
    ] {
        if let Some(v) = value {
            let offset = v.span().start;
            match v.into_inner() {
                RawOutput::Text(text) => match parse_output(&text) {
                    Ok(o) => *slot = o,
                    Err(why) => error!(offset, format!("service \"{name}\": {why}")),
                },
                RawOutput::Rotated {
                    file,
                    max_size,
                    keep,
                } => {
                    let Some(file) = file else {
                        error!(offset, format!("service \"{name}\": an output table needs file, e.g. {{ file = \"/var/log/{name}.log\", max_size = \"1M\", keep = 3 }}"));
                        continue;
                    };
                    let max_size = match max_size {
                        None => Some(DEFAULT_MAX_SIZE),
                        Some(m) => match m.get_ref() {
                            super::limits::Amount::Value(n) if *n >= 4096 => Some(*n),
                            _ => {
                                error!(m.span().start, format!("service \"{name}\": max_size must be a size of at least 4K, e.g. \"1M\" (a file never grows past it)"));
                                None
                            }
                        },
                    };
                    let keep = match keep {
                        None => Some(DEFAULT_KEEP),
                        Some(k) if (1..=100).contains(k.get_ref()) => Some(*k.get_ref()),
                        Some(k) => {
                            error!(k.span().start, format!("service \"{name}\": keep must be 1 to 100: how many files are kept, the one written to included"));
                            None
                        }
                    };
                    let (Some(max_size), Some(keep)) = (max_size, keep) else {
                        continue;
                    };
                    let path = file.get_ref().clone();
                    let no_file = format!("service \"{name}\": file must name a file, e.g. \"{name}.log\" (under [system] log_dir) or \"/var/log/{name}.log\"");
                    if path.as_os_str().is_empty()
                        || path.ends_with("..")
                        || path.file_name().is_none()
                    {
                        error!(file.span().start, no_file);
                        continue;
                    }
                    // "logs/" names a directory (Path's file_name() reads it as "logs"):
                    // no line is ever written to it. A Runtime problem, as a file that is
                    // a directory is: a board whose file has it boots as before.
                    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
                        problems.push(source.problem(
                            Some(file.span().start),
                            Severity::Runtime,
                            no_file,
                        ));
                    }
                    // Looked at once a relative file is under log_dir (see
                    // `super::check_rotated_files`).
                    deps.files.push((what, file.span().start));
                    *slot = Output::Rotated(std::sync::Arc::new(RotatedFile {
                        path,
                        max_size,
                        keep,
                    }));
                }
            }
        }
    }
    // ember reads only the output that goes to the log: a log pattern on output that
    // goes elsewhere would wait for a line that never comes, until ready_timeout.
    if matches!(spec.ready, Readiness::Log(_)) && !spec.stdout.is_read() && !spec.stderr.is_read() {
        let words = |o: &Output| match o {
            Output::Log | Output::Rotated(_) => "log".to_owned(),
            Output::Console => "\"console\"".to_owned(),
            Output::Null => "\"null\"".to_owned(),
            Output::File(p) => format!("the file {}", p.display()),
        };
        error!(
            ready_offset,
            format!(
                "service \"{name}\": ready = {{ log = ... }} matches the lines ember reads from the service, but its stdout goes to {} and its stderr to {}, which ember does not read; set stdout or stderr = \"log\" (the default), or choose another readiness check",
                words(&spec.stdout),
                words(&spec.stderr)
            )
        );
    }
    spec.enabled = raw.enabled.unwrap_or(true);
    spec.on_failure = raw.on_failure.unwrap_or(FailureAction::None);
    if let Some(schedule) = raw.schedule {
        let offset = schedule.span().start;
        let RawSchedule {
            every,
            after_boot,
            jitter,
        } = schedule.into_inner();
        if spec.kind != ServiceType::Oneshot {
            error!(offset, format!("service \"{name}\": schedule applies to type = \"oneshot\" only (a job that runs and exits); add type = \"oneshot\", or remove schedule"));
        } else if every.is_none() && after_boot.is_none() {
            error!(offset, format!("service \"{name}\": schedule needs every, after_boot or both, e.g. {{ every = \"1h\", after_boot = \"5m\" }}"));
        } else if let Some(e) = every
            .as_ref()
            .filter(|e| *e.get_ref() < Duration::from_secs(1))
        {
            // Each run is a process that ember starts and logs: "1ms" ran 500 a second,
            // and flooded ember's log with their transitions.
            error!(
                e.span().start,
                format!("service \"{name}\": every must be at least 1s, e.g. \"1h\" (each run is a process that ember starts and logs); for a job that never ends, use a service with restart = \"always\"")
            );
        } else {
            if let Some(j) = jitter
                .as_ref()
                .filter(|j| every.as_ref().is_some_and(|e| j.get_ref() >= e.get_ref()))
            {
                // A run is put off from its own time; the next is counted from the period
                // after the time the run began, so a run put off a period or more made the
                // next skipped: every = "1m", jitter = "5m" ran about every 3 minutes. A
                // warning, not an error: a board whose file has it boots as before.
                problems.push(source.problem(
                    Some(j.span().start),
                    Severity::Warning,
                    format!("service \"{name}\": jitter is not shorter than every, so a run it puts off can pass the next one's time, which is then skipped; make jitter shorter than every (e.g. half of it)"),
                ));
            }
            spec.schedule = Some(Box::new(Schedule {
                every: every.map(Spanned::into_inner),
                after_boot,
                jitter: jitter.map(Spanned::into_inner).unwrap_or_default(),
            }));
        }
    }
    match raw.limits.check(name) {
        Ok(limits) => spec.limits = limits,
        Err(errors) => {
            for (offset, message) in errors {
                error!(offset, message);
            }
        }
    }
    if spec.kind == ServiceType::Oneshot && spec.restart == RestartPolicy::Always {
        // A oneshot that exited 0 is done; "always" only means "also after failures" here.
        spec.restart = RestartPolicy::OnFailure;
    }
    let errors_after = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    (errors_after == errors_before).then_some((spec, deps))
}

/// How large a `ready = { log }` pattern may compile to. Matching a line costs about
/// this times the line's length, in PID 1's loop (which bounds the time too): 32 KiB is
/// ten times what a sentence with a few classes and a port number takes.
const READY_LOG_SIZE: usize = 32 << 10;

/// A `ready = { log }` pattern compiled as ember matches it: at check, at reload and at
/// each start, one rule.
pub fn ready_log_regex(pattern: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(READY_LOG_SIZE)
        .build()
}

fn ready_kind(raw: RawReady) -> Result<Readiness, String> {
    let mut kinds = Vec::new();
    if let Some(pattern) = raw.log {
        kinds.push(Readiness::Log(pattern));
    }
    if let Some(d) = raw.delay {
        kinds.push(Readiness::Delay(d));
    }
    match raw.notify {
        Some(true) => kinds.push(Readiness::Notify),
        Some(false) => kinds.push(Readiness::Spawned),
        None => {}
    }
    if let Some(addr) = raw.tcp {
        check_tcp_address(&addr)?;
        kinds.push(Readiness::Tcp(addr));
    }
    // Their values are checked by check_ready_exec_and_file.
    if let Some(path) = raw.file {
        kinds.push(Readiness::File(path.into_inner()));
    }
    if let Some(argv) = raw.exec {
        kinds.push(Readiness::Exec(argv.into_inner()));
    }
    match kinds.len() {
        1 => Ok(kinds.remove(0)),
        0 => Err("ready needs one of log, delay, notify, tcp, file, exec".into()),
        _ => Err("ready takes exactly one of log, delay, notify, tcp, file, exec".into()),
    }
}

/// `ready = { tcp }` is an IP address and a port (no host name: PID 1 resolves nothing)
/// that a connection can be made to. Port 0, a multicast or a broadcast address parse,
/// but no connect to them ever succeeds: the service would wait out its ready_timeout,
/// or for ever.
fn check_tcp_address(addr: &str) -> Result<(), String> {
    if addr.contains(INSTANCE) {
        return Err(format!("{INSTANCE} is not replaced in ready's tcp address ({REPLACED_IN}); give the port every instance listens on, or ready = {{ exec = [...] }} with {INSTANCE} to check each"));
    }
    let Ok(parsed) = addr.parse::<std::net::SocketAddr>() else {
        return Err(format!(
            "ready tcp \"{addr}\" is not an address such as \"127.0.0.1:1883\""
        ));
    };
    if parsed.port() == 0 {
        return Err(format!("ready tcp \"{addr}\" names port 0, on which nothing can be connected to; give the port the service listens on"));
    }
    let unreachable = match parsed.ip() {
        std::net::IpAddr::V4(ip) => ip.is_multicast() || ip.is_broadcast(),
        std::net::IpAddr::V6(ip) => ip.is_multicast(),
    };
    if unreachable {
        return Err(format!("ready tcp \"{addr}\" is a multicast or broadcast address, to which no TCP connection can be made; give the address the service listens on, such as \"127.0.0.1:{}\"", parsed.port()));
    }
    Ok(())
}

/// `ready = { exec }` is checked as `command` is: not empty, no NUL, and its program
/// looked up (with ember's PATH, which the check runs with), a missing one being this
/// machine's problem; `ready = { file }` is an absolute path, as `pid_file` is. Each
/// problem at its value.
fn check_ready_exec_and_file(
    name: &str,
    ready: &RawReady,
    source: &Source,
    problems: &mut Vec<Problem>,
) {
    let mut problem = |offset: usize, severity: Severity, message: String| {
        problems.push(source.problem(Some(offset), severity, message))
    };
    if let Some(argv) = &ready.exec {
        let offset = argv.span().start;
        let program = argv.get_ref().first().map(String::as_str).unwrap_or("");
        if program.is_empty() {
            problem(offset, Severity::Error, format!("service \"{name}\": ready exec is empty; give a command such as [\"/bin/check\", \"arg\"]"));
        } else if let Err(why) = Argv::new(argv.get_ref()) {
            problem(
                offset,
                Severity::Error,
                format!("service \"{name}\": ready exec: {why}"),
            );
        } else if !source.offline && !program.contains(INSTANCE) {
            if let Err(why) = resolve_program(program, None) {
                problem(
                    offset,
                    Severity::Runtime,
                    format!("service \"{name}\": ready exec: {why}"),
                );
            }
        }
    }
    if let Some(file) = &ready.file {
        let offset = file.span().start;
        let path = file.get_ref();
        if !path.is_absolute() {
            problem(offset, Severity::Error, format!("service \"{name}\": ready file must be an absolute path such as \"/run/{name}.ready\""));
        } else if let Some(why) = super::values::nul_in(
            &format!("service \"{name}\": ready file"),
            path.as_os_str(),
            "path",
        ) {
            problem(offset, Severity::Error, why);
        }
    }
}

fn parse_output(text: &str) -> Result<Output, String> {
    match text {
        "log" => Ok(Output::Log),
        "console" => Ok(Output::Console),
        "null" => Ok(Output::Null),
        path if path.starts_with('/') => Ok(Output::File(PathBuf::from(path))),
        other => Err(format!(
            "output \"{other}\" must be \"log\", \"console\", \"null\" or an absolute file path"
        )),
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The search path services get when neither they nor ember have one.
pub fn default_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned())
}

/// Finds the program a command runs, as exec would: a path with a slash as is, a bare
/// name on PATH. Says why not when it is missing or not executable.
pub fn resolve_program(program: &str, path_var: Option<&str>) -> Result<PathBuf, String> {
    if program.contains('/') {
        check_executable(Path::new(program))?;
        return check_interpreter(Path::new(program)).map(|()| PathBuf::from(program));
    }
    let search = path_var.map(str::to_owned).unwrap_or_else(default_path);
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if check_executable(&candidate).is_ok() {
            return check_interpreter(&candidate).map(|()| candidate);
        }
    }
    Err(format!(
        "command \"{program}\" is not found on PATH ({search}); give its absolute path"
    ))
}

fn check_executable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "command {} does not exist; give the path of an installed program",
            path.display()
        )),
        Err(e) => Err(format!("command {} cannot be used: {e}", path.display())),
        Ok(meta) => match crate::filekind::not_a_program(&meta) {
            Some(why) => Err(format!("command {} {why}", path.display())),
            None => Ok(()),
        },
    }
}

/// A script whose `#!` line names an interpreter that is not there: exec says "no such
/// file" of a file that is there.
fn check_interpreter(path: &Path) -> Result<(), String> {
    match missing_interpreter(path) {
        Some(why) => Err(format!(
            "command {}: {why}; install it or correct that line",
            path.display()
        )),
        None => Ok(()),
    }
}

/// The first bytes of `path` (as many as the kernel reads to tell a program from a
/// script: 256), when it is a regular file that can be read; never waits (a FIFO).
pub fn program_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(256);
    file.take(256).read_to_end(&mut head).ok()?;
    Some(head)
}

/// The interpreter a script's `#!` line names, when `head` starts with one.
pub fn shebang_interpreter(head: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let line = head.strip_prefix(b"#!")?;
    let line = line
        .split(|&b| b == b'\n' || b == 0)
        .next()
        .unwrap_or_default();
    let word = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(word)))
}

/// Why a script that exists cannot run: its `#!` line names an absolute interpreter that
/// does not exist. `None` for anything else.
pub fn missing_interpreter(path: &Path) -> Option<String> {
    let interpreter = shebang_interpreter(&program_head(path)?)?;
    if !interpreter.is_absolute() {
        return None; // relative to the service's workdir: not judged here
    }
    match std::fs::metadata(&interpreter) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "its #! line names {}, which does not exist",
            interpreter.display()
        )),
        _ => None,
    }
}

fn check_account(name: &str, user: bool) -> Result<(), String> {
    match name.parse::<u32>() {
        // (uid_t)-1 is no id: to setuid/setgid it means "leave it as it is", which the
        // kernel refuses (EINVAL), so the service could never start.
        Ok(u32::MAX) => {
            return Err(format!(
                "{} id {name} is (uid_t)-1, which no account has (to the kernel it means \"unchanged\"); give a real id, below {name}",
                if user { "user" } else { "group" }
            ))
        }
        Ok(_) => return Ok(()),
        Err(_) => {}
    }
    let found = if user {
        nix::unistd::User::from_name(name).map(|u| u.is_some())
    } else {
        nix::unistd::Group::from_name(name).map(|g| g.is_some())
    };
    match found {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "{} \"{name}\" does not exist on this system; create it or give a numeric id",
            if user { "user" } else { "group" }
        )),
        Err(e) => Err(format!("cannot look up \"{name}\": {e}")),
    }
}
