//! The configuration: `ember.toml` plus `services.d/*.toml`, read into a checked
//! [`Config`], or into every [`Problem`] found, each with file:line:col where it has one.
//!
//! Problems come in three severities. An `Error` rejects the configuration (at boot, at
//! reload, in `ember check`). A `Runtime` problem (a command or user that does not exist
//! now, a services.d file that cannot be loaded) fails `ember check` and a reload
//! ([`Loaded::checked`]) but not a boot: the program may live on a filesystem that is
//! mounted later, so the service fails at spawn time with the OS error instead. A
//! `Warning` is only printed.

pub mod control;
pub mod dbus;
pub mod graph;
pub mod limits;
pub mod mqtt;
mod position;
pub mod service;
#[cfg(test)]
mod tests;
pub mod values;
mod walk;
pub mod watchdog;

pub use service::{FailureAction, Output, Readiness, RestartPolicy, ServiceSpec, ServiceType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use walk::{FromToml, Issue, Table};

pub const DEFAULT_CONFIG: &str = "/etc/ember/ember.toml";
pub const DEFAULT_SOCKET: &str = "/run/ember/control.sock";
pub const DEFAULT_LOG_DIR: &str = "/var/log/ember";
/// The largest configuration file ember reads, the main one or one of services.d: far
/// above any real one (a thousand services fit in well under 1 MiB), and a bound on what
/// a mistaken path (/dev/zero, a log file) costs PID 1.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub system: SystemConfig,
    pub log: LogConfig,
    pub control: ControlConfig,
    /// `[mqtt]`; none: no MQTT.
    pub mqtt: Option<mqtt::MqttConfig>,
    /// `[dbus]`; none: no D-Bus.
    pub dbus: Option<dbus::DbusConfig>,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Templates (`worker@`), by name: `ember ctl start worker@42` makes `worker@42` from
    /// `worker@`. Their pools (`instances`) are in `services` already.
    pub templates: BTreeMap<String, ServiceSpec>,
}

impl Config {
    /// A copy with no services and no templates: the settings alone (a copy of every
    /// service would be as large as the rest of ember's memory).
    pub fn settings(&self) -> Config {
        Config {
            path: self.path.clone(),
            system: self.system.clone(),
            log: self.log.clone(),
            control: self.control.clone(),
            mqtt: self.mqtt.clone(),
            dbus: self.dbus.clone(),
            services: BTreeMap::new(),
            templates: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    pub device: String,
    pub services_dir: PathBuf,
    /// Set as PID 1; else /etc/hostname.
    pub hostname: Option<String>,
    /// What Ctrl-Alt-Del (SIGINT to PID 1) does.
    pub ctrl_alt_del: CtrlAltDel,
    /// How long processes left at shutdown get between SIGTERM and SIGKILL.
    pub shutdown_timeout: std::time::Duration,
    /// Started on the console when the configuration is broken or ember is in trouble.
    pub rescue_shell: Option<PathBuf>,
    /// How often every running service's resource use is published (MQTT, D-Bus);
    /// None: never, and no timer runs.
    pub metrics_interval: Option<std::time::Duration>,
    /// Where a relative `stdout = { file = ... }` is.
    pub log_dir: PathBuf,
    /// The hardware watchdog PID 1 pets; None: none.
    pub watchdog: Option<watchdog::WatchdogConfig>,
}

impl SystemConfig {
    pub fn defaults(device: String, services_dir: PathBuf) -> SystemConfig {
        SystemConfig {
            device,
            services_dir,
            hostname: None,
            ctrl_alt_del: CtrlAltDel::Reboot,
            shutdown_timeout: std::time::Duration::from_secs(5),
            rescue_shell: None,
            metrics_interval: None,
            log_dir: PathBuf::from(DEFAULT_LOG_DIR),
            watchdog: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlAltDel {
    Reboot,
    Poweroff,
    Ignore,
}

impl CtrlAltDel {
    /// The end Ctrl-Alt-Del (SIGINT to PID 1) asks for; None when it is ignored (and
    /// said).
    pub fn power(self) -> Option<crate::pid1::Power> {
        match self {
            CtrlAltDel::Reboot => Some(crate::pid1::Power::Reboot),
            CtrlAltDel::Poweroff => Some(crate::pid1::Power::Poweroff),
            CtrlAltDel::Ignore => {
                crate::log::info!("Ctrl-Alt-Del: ignored ([system] ctrl_alt_del = \"ignore\")");
                None
            }
        }
    }
}

impl FromToml for CtrlAltDel {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = [
            ("reboot", CtrlAltDel::Reboot),
            ("poweroff", CtrlAltDel::Poweroff),
            ("ignore", CtrlAltDel::Ignore),
        ];
        walk::keyword(value, &words, issues)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// `target=level` directives, e.g. "info,ember::service=warn"; EMBER_LOG overrides.
    pub level: Option<String>,
    /// Where ember's log goes; auto: journald when it answers, else /dev/kmsg as PID 1,
    /// else the console.
    pub output: LogOutput,
}

impl LogConfig {
    /// Takes the keys of `[log]`, in the order an unknown key's message lists them.
    fn take_from(t: &mut Table<'_>) -> LogConfig {
        LogConfig {
            level: t.take::<values::LogLevel>("level").map(|l| l.0),
            output: t.take("output").unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogOutput {
    #[default]
    Auto,
    Journald,
    Kmsg,
    Console,
}

impl FromToml for LogOutput {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = [
            ("auto", LogOutput::Auto),
            ("journald", LogOutput::Journald),
            ("kmsg", LogOutput::Kmsg),
            ("console", LogOutput::Console),
        ];
        walk::keyword(value, &words, issues)
    }
}

pub use control::ControlConfig;

/// The keys of `[system]`, as written; defaults are filled in by `load_source`.
#[derive(Debug, Default)]
struct RawSystem {
    device: Option<String>,
    services_dir: Option<PathBuf>,
    hostname: Option<String>,
    ctrl_alt_del: Option<CtrlAltDel>,
    shutdown_timeout: Option<Spanned<std::time::Duration>>,
    rescue_shell: Option<PathBuf>,
    metrics_interval: Option<Spanned<std::time::Duration>>,
    log_dir: Option<Spanned<PathBuf>>,
    watchdog: Option<watchdog::RawWatchdog>,
}

impl RawSystem {
    /// Takes the keys of `[system]`, in the order an unknown key's message lists them.
    fn take_from(t: &mut Table<'_>) -> RawSystem {
        RawSystem {
            device: t.take("device"),
            services_dir: t.take("services_dir"),
            hostname: t.take("hostname"),
            ctrl_alt_del: t.take("ctrl_alt_del"),
            shutdown_timeout: t.take("shutdown_timeout"),
            rescue_shell: t.take("rescue_shell"),
            metrics_interval: t.take("metrics_interval"),
            log_dir: t.take("log_dir"),
            watchdog: t.take("watchdog"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Runtime,
    Error,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    pub severity: Severity,
    pub message: String,
}

/// One line, whatever the values the message quotes: control characters (a newline, a
/// tab, ESC, a bidirectional override) are written as escapes (`\n`, `\t`, `\u{1b}`), for `ember check`'s output
/// and for PID 1's log, where a newline would start another record.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_escaped(f, &self.file.display().to_string())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.severity == Severity::Warning {
            write!(f, ": warning")?;
        }
        f.write_str(": ")?;
        write_escaped(f, &self.message)
    }
}

fn write_escaped(f: &mut std::fmt::Formatter<'_>, text: &str) -> std::fmt::Result {
    // The one escaper (which keeps tabs, for log lines), and tabs too: one line of
    // `ember check`'s output reads as one problem, its fields not split.
    f.write_str(&ember_ipc::text::escape_controls(text).replace('\t', "\\t"))
}

/// A file being read: its path and text, to turn byte offsets into line:col.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Checked as text alone ([`check_text`]): nothing is looked up on this machine
    /// (programs, accounts, files, `services_dir`).
    pub offline: bool,
    /// Read by PID 1 at boot, before /dev is mounted ([`load_at_boot`]): devices are not
    /// looked at then. At a reload they are, as `ember check` does.
    pub at_boot: bool,
    /// Its offsets as line:col, found as problems are reported.
    pub positions: position::Positions,
}

impl Source {
    pub fn problem(&self, offset: Option<usize>, severity: Severity, message: String) -> Problem {
        Problem {
            file: self.path.clone(),
            position: offset.map(|o| self.positions.find(&self.text, o)),
            severity,
            message,
        }
    }

    /// A syntax error, on one line, with advice where the parser gives none.
    fn toml_error(&self, e: &toml::de::Error) -> Problem {
        let mut message = e.message().trim().replace('\n', " ");
        if message == "duplicate key" {
            message.push_str("; keep one of the two");
        }
        self.problem(e.span().map(|s| s.start), Severity::Error, message)
    }

    /// Values of the wrong shape and unknown keys, found walking the file: errors.
    fn report(&self, issues: Vec<Issue>, problems: &mut Vec<Problem>) {
        problems.extend(
            issues
                .into_iter()
                .map(|i| self.problem(Some(i.offset), Severity::Error, i.message)),
        );
    }
}

/// What loading found: the configuration when it has no `Error`, and every problem.
pub struct Loaded {
    pub config: Option<Config>,
    /// The system, log and control settings, never the services (with errors: as far as
    /// they could be read; what PID 1 boots with so that it can be repaired).
    pub settings: Option<Config>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// What fails `ember check`: every problem but warnings (errors, and `Runtime`
    /// problems such as a missing program or user, or a services.d file that cannot be
    /// loaded). A boot runs a configuration with `Runtime` problems (each costs only
    /// itself); a reload and a reexec refuse it whole, as `ember check` does.
    pub fn failing(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity >= Severity::Runtime)
    }

    /// The configuration when `ember check` passes it (none of [`Loaded::failing`]),
    /// else every failing problem, as `ember check` prints them, in its order.
    pub fn checked(self) -> Result<Config, Vec<Problem>> {
        let failing: Vec<Problem> = self.failing().cloned().collect();
        match self.config {
            Some(config) if failing.is_empty() => Ok(config),
            _ => Err(failing),
        }
    }
}

/// The most problems PID 1 keeps for `ember ctl status` and quotes in a reload's refusal.
/// A file may hold tens of thousands: all of them were megabytes in every status answer
/// and in PID 1's memory, and the table came after thousands of lines.
pub const PROBLEMS_SHOWN: usize = 50;

/// `problems` as lines, the first [`PROBLEMS_SHOWN`] of them, then how many more there are.
pub fn shown<'a>(problems: impl Iterator<Item = &'a Problem>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut more = 0;
    for problem in problems {
        if lines.len() < PROBLEMS_SHOWN {
            lines.push(problem.to_string());
        } else {
            more += 1;
        }
    }
    if more > 0 {
        lines.push(format!("... and {more} more; `ember check` lists them all"));
    }
    lines
}

/// By file, then line and column: the order `ember check` prints them in.
pub fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
}

/// Reads and checks the configuration at `path`: as `ember check` does, and a reload.
pub fn load(path: &Path) -> Loaded {
    load_as(path, false)
}

/// [`load`] for the start of ember: as PID 1, /dev may not be mounted yet, so the
/// watchdog device is not looked at (opening it, once /dev is there, says loudly enough
/// when it is missing). A reload does look: found by a hostile review, a reload as PID 1
/// took a device that was not there, and closed the watchdog that was running.
pub fn load_at_boot(path: &Path) -> Loaded {
    load_as(path, std::process::id() == 1)
}

fn load_as(path: &Path, at_boot: bool) -> Loaded {
    let mut problems = Vec::new();
    let config =
        read_source(path, at_boot, &mut problems).map(|source| load_source(&source, &mut problems));
    finish(config, problems)
}

/// Checks the text of a main file as [`load`] would if it were at `path`, without
/// touching the file system or this machine: `services_dir` is not read, and whether
/// programs, users, groups and files exist is not checked (those problems are not
/// reported). Pure: for the fuzzer, and for checking text that is not on disk.
pub fn check_text(path: &Path, text: &str) -> Loaded {
    let source = Rc::new(Source {
        path: path.to_owned(),
        text: text.to_owned(),
        offline: true,
        at_boot: false,
        positions: Default::default(),
    });
    let mut problems = Vec::new();
    let config = load_source(&source, &mut problems);
    finish(Some(config), problems)
}

/// Sorts the problems and keeps the configuration only when none is an `Error`.
fn finish(config: Option<Config>, mut problems: Vec<Problem>) -> Loaded {
    sort_problems(&mut problems);
    let has_errors = problems.iter().any(|p| p.severity == Severity::Error);
    if has_errors {
        let settings = config.map(|mut c| {
            c.services.clear();
            c.templates.clear();
            c
        });
        return Loaded {
            config: None,
            settings,
            problems,
        };
    }
    Loaded {
        settings: config.as_ref().map(Config::settings),
        config,
        problems,
    }
}

/// A configuration file, open, and what it is (looked at through the open file, not by
/// its path beforehand: a file swapped for a FIFO in between would still be opened).
/// Opened without blocking: open(2) of a FIFO waits for a writer, and a read of a
/// terminal for a line, which would stop PID 1 for good.
fn open_config(path: &Path) -> std::io::Result<(std::fs::File, std::fs::FileType)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    Ok((file, kind))
}

/// Reads a configuration file whole (see [`read_open`]). A FIFO or a socket is refused:
/// what it gives depends on a writer that may never come. A character device is read
/// (`/dev/null` is an empty file; `/dev/zero` is cut at the limit).
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::FileTypeExt;
    let (file, kind) = open_config(path)?;
    if kind.is_fifo() || kind.is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO or a socket: ember would wait on it)",
        ));
    }
    read_open(file)
}

/// Reads an open configuration file whole, up to [`MAX_FILE_SIZE`]: counted as it is
/// read, not taken from the size the file says it has (/dev/zero says 0 and never ends;
/// a file may grow while it is read).
fn read_open(file: std::fs::File) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "larger than {} MiB, the most ember reads of a configuration file",
                MAX_FILE_SIZE >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| Error::new(ErrorKind::InvalidData, not_utf8(&e)))
}

/// Where a file stops being UTF-8, as an editor would find it: a Latin-1 `é` or a binary
/// file copied in by mistake, in a file of thousands of lines.
fn not_utf8(e: &std::string::FromUtf8Error) -> String {
    let bytes = e.as_bytes();
    let at = e.utf8_error().valid_up_to();
    // Up to `at` the text is valid, so the line and column count as for any other error.
    let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let (line, col) = position::line_col(valid, at);
    let byte = bytes.get(at).copied().unwrap_or_default();
    format!("it is not UTF-8 text: byte {byte:#04x} at line {line}, column {col}; save it as UTF-8")
}

fn read_source(path: &Path, at_boot: bool, problems: &mut Vec<Problem>) -> Option<Rc<Source>> {
    match read_bounded(path) {
        Ok(text) => Some(Rc::new(Source {
            path: path.to_owned(),
            text,
            offline: false,
            at_boot,
            positions: Default::default(),
        })),
        Err(e) => {
            problems.push(Problem {
                file: path.to_owned(),
                position: None,
                severity: Severity::Error,
                message: format!("cannot read: {e}"),
            });
            None
        }
    }
}

/// Parses a whole file, reporting every syntax error the parser can recover from.
fn parse_source<'a>(
    source: &'a Source,
    problems: &mut Vec<Problem>,
) -> Option<Spanned<DeTable<'a>>> {
    let (table, errors) = DeTable::parse_recoverable(&source.text);
    if errors.is_empty() {
        return Some(table);
    }
    problems.extend(errors.iter().map(|e| source.toml_error(e)));
    None
}

/// The adapter a table makes ember run, from beside its own executable, when it is not
/// there (or cannot be run): a `Runtime` problem, as a service's missing command is.
/// (Not in this crate's unit tests, whose executable is no ember: tests/check.rs has it.)
fn adapter_program(adapter: &str, at: usize, source: &Source, problems: &mut Vec<Problem>) {
    if source.offline || cfg!(test) {
        return;
    }
    if let Some(why) = crate::adapters::program_problem(adapter) {
        problems.push(source.problem(Some(at), Severity::Runtime, why));
    }
}

/// Checks the main file `source` and the services_dir it names (unless offline).
/// Each rotated output file that ember would refuse to write, said at its `file` (a
/// Runtime problem, as a missing workdir is: the boot goes on): looked at where it will
/// be, under log_dir when it is relative (those were never looked at, and a log_dir that
/// is a file failed them all at run time only). And a file that two outputs write with
/// different bounds (a warning).
fn check_rotated_files(
    services: &BTreeMap<String, ServiceSpec>,
    spans: &SpanMap,
    log_dir: Option<&Spanned<PathBuf>>,
    problems: &mut Vec<Problem>,
) {
    let log_dir = match log_dir {
        None => Some(PathBuf::from(DEFAULT_LOG_DIR)),
        // One that is wrong is said as such, not as each file under it.
        Some(dir) if dir.get_ref().is_absolute() => Some(dir.get_ref().clone()),
        Some(_) => None,
    };
    // Each file's first writer and its bound: one file rotated by two bounds grows
    // past the smaller (each line was rotated by its own output's settings).
    let mut bounds: BTreeMap<PathBuf, (&str, &str, u64, u32)> = BTreeMap::new();
    for (name, spec) in services {
        let Some((source, spans)) = spans.get(name) else {
            continue;
        };
        for (what, offset) in &spans.files {
            let output = if *what == "stdout" {
                &spec.stdout
            } else {
                &spec.stderr
            };
            let Output::Rotated(file) = output else {
                continue;
            };
            let path = match &log_dir {
                _ if file.path.is_absolute() => file.path.clone(),
                Some(dir) => dir.join(&file.path),
                None => continue,
            };
            // A template's: each instance's is its own, made when it starts.
            if path.to_string_lossy().contains(service::INSTANCE) {
                continue;
            }
            let first =
                bounds
                    .entry(path.clone())
                    .or_insert((name, what, file.max_size, file.keep));
            if (first.2, first.3) != (file.max_size, file.keep) {
                let (first_name, first_what, max_size, keep) = *first;
                // A warning, not an error: a board whose file has it boots as before.
                problems.push(source.problem(
                    Some(*offset),
                    Severity::Warning,
                    format!("service \"{name}\": {what} file {} is also {first_what} of {first_name}, with max_size {max_size} and keep {keep}: one file has one bound; give each the same max_size and keep", path.display()),
                ));
            }
            if source.offline {
                continue;
            }
            if let Some(why) = service::rotated_file_refused(name, what, &path) {
                problems.push(source.problem(Some(*offset), Severity::Runtime, why));
            }
        }
    }
}

fn load_source(source: &Rc<Source>, problems: &mut Vec<Problem>) -> Config {
    let path = source.path.as_path();
    let Some(root) = parse_source(source, problems) else {
        // Still check each services.d file on its own, so that its errors do not wait
        // for the main file's to be fixed; the graph needs every service, so not that.
        let (partial, _) = DeTable::parse_recoverable(&source.text);
        if let Some(dir) = recovered_services_dir(partial.get_ref()).filter(|_| !source.offline) {
            let dir = services_dir(path, dir);
            read_services_dir(&dir, &mut Found::default(), problems);
        }
        // The settings as far as the parser could read them (the socket, the rescue
        // shell): what PID 1 boots with until the file is repaired.
        let (mut system, mut log, mut control): (RawSystem, _, _) = Default::default();
        let mut ignored = Vec::new();
        for (key, value) in partial.into_inner() {
            match (key.get_ref().as_ref(), value.into_inner()) {
                ("system", DeValue::Table(t)) => {
                    system = section(t, RawSystem::take_from, source, &mut ignored)
                }
                ("log", DeValue::Table(t)) => {
                    log = section(t, LogConfig::take_from, source, &mut ignored)
                }
                ("control", DeValue::Table(t)) => {
                    control =
                        section(t, control::RawControl::take_from, source, &mut ignored).settings()
                }
                _ => {}
            }
        }
        let watchdog = system
            .watchdog
            .take()
            .and_then(|w| w.check(source, &mut ignored));
        return assemble(path, system, watchdog, log, control, BTreeMap::new());
    };
    let mut system = RawSystem::default();
    let mut log = LogConfig::default();
    let mut control = ControlConfig::default();
    let mut found = Found::default();
    let mut inline_services = None;
    let mut mqtt = None;
    let mut dbus = None;
    for (key, value) in root.into_inner() {
        let at = value.span().start;
        match (key.get_ref().as_ref(), value.into_inner()) {
            ("system", DeValue::Table(t)) => {
                system = section(t, RawSystem::take_from, source, problems)
            }
            ("log", DeValue::Table(t)) => log = section(t, LogConfig::take_from, source, problems),
            ("control", DeValue::Table(t)) => {
                control = section(t, control::RawControl::take_from, source, problems)
                    .check(source, problems)
            }
            ("mqtt", DeValue::Table(t)) => {
                let raw = section(t, mqtt::RawMqtt::take_from, source, problems);
                mqtt = Some(raw.check(key.span().start, source, problems));
                adapter_program(crate::adapters::MQTT, key.span().start, source, problems);
            }
            ("dbus", DeValue::Table(t)) => {
                let raw = section(t, dbus::RawDbus::take_from, source, problems);
                dbus = Some(raw.check(source, problems));
                adapter_program(crate::adapters::DBUS, key.span().start, source, problems);
            }
            // An array or a plain value: there are no keys to read from it.
            (name @ ("system" | "log" | "control" | "mqtt" | "dbus"), _) => problems.push(source.problem(
                Some(at),
                Severity::Error,
                format!("\"{name}\" must be a table: write [{name}] and its keys below it"),
            )),
            ("service", DeValue::Table(t)) => inline_services = Some(t),
            ("service", _) => problems.push(source.problem(
                Some(at),
                Severity::Error,
                "\"service\" must be a table of services: [service.NAME]".into(),
            )),
            (other, _) => problems.push(source.problem(
                Some(key.span().start),
                Severity::Error,
                format!(
                    "unknown section \"{other}\"; expected system, log, control, mqtt, dbus, service"
                ),
            )),
        }
    }
    for (name, service) in inline_services.unwrap_or_default() {
        let at = service.span().start;
        let name_offset = name.span().start;
        let name = name.get_ref();
        let DeValue::Table(entries) = service.into_inner() else {
            problems.push(source.problem(
                Some(at),
                Severity::Error,
                format!("service \"{name}\" must be a table: write [service.{name}] and its keys below it"),
            ));
            continue;
        };
        read_service(name, name_offset, entries, source, &mut found, problems);
    }

    if !source.offline {
        let dir = services_dir(path, system.services_dir.clone());
        read_services_dir(&dir, &mut found, problems);
    }
    let made = make_instances(&mut found, problems);
    let Found {
        services, spans, ..
    } = found;
    // Inserted one by one rather than collected: a collected BTreeMap sorts first, and
    // each type sorted costs its own copy of the sort (about 4 KB in a static build).
    let mut specs: BTreeMap<&str, &ServiceSpec> = BTreeMap::new();
    for (n, (s, _)) in &services {
        specs.insert(n.as_str(), s);
    }
    for issue in graph::check(&specs) {
        // An instance has its template's dependencies: what is wrong with them is said
        // once, for the template. A cycle through an instance is its own.
        if issue.kind.is_some() && made.contains(&issue.service) {
            continue;
        }
        let Some((source, deps)) = spans.get(&issue.service) else {
            continue;
        };
        // Point at the dependency that is wrong, else at the service's table.
        let offset = issue
            .dependency
            .as_ref()
            .and_then(|d| {
                deps.deps
                    .iter()
                    .find(|(name, kind, _)| name == d && issue.kind.is_none_or(|k| k == *kind))
                    .map(|(_, _, o)| *o)
            })
            .or(deps.table);
        problems.push(source.problem(offset, issue.severity, issue.message));
    }
    // A notify service's socket is bound beside the control socket: a path too long to
    // bind failed every start, found only then (by a hostile review).
    let dir = control::notify_dir(&control.socket);
    for (name, (spec, _)) in &services {
        if let Some(why) = control::notify_socket_too_long(&dir, name, spec) {
            let Some((source, deps)) = spans.get(name) else {
                continue;
            };
            problems.push(source.problem(deps.table, Severity::Error, why));
        }
    }
    let mut specs = BTreeMap::new();
    for (name, (spec, _)) in services {
        specs.insert(name, spec);
    }
    let services = specs;
    let nul = system.log_dir.as_ref().and_then(|dir| {
        values::nul_in("log_dir", dir.get_ref().as_os_str(), "path")
            .map(|why| (dir.span().start, why))
    });
    if let Some((offset, why)) = nul {
        problems.push(source.problem(Some(offset), Severity::Error, why));
        system.log_dir = None;
    }
    if let Some(dir) = &system.log_dir {
        if dir.get_ref().is_relative() {
            problems.push(source.problem(
                Some(dir.span().start),
                Severity::Error,
                format!(
                    "log_dir \"{}\" must be an absolute path, e.g. \"/var/log/ember\"",
                    dir.get_ref().display()
                ),
            ));
        }
    }
    check_rotated_files(&services, &spans, system.log_dir.as_ref(), problems);
    if let Some(grace) = system
        .shutdown_timeout
        .take_if(|grace| grace.get_ref().is_zero())
    {
        problems.push(source.problem(
            Some(grace.span().start),
            Severity::Error,
            "shutdown_timeout must be more than 0s: it is how long the processes left at shutdown have after SIGTERM, before SIGKILL; write e.g. \"5s\" (the default)".into(),
        ));
    }
    if let Some(every) = &system.metrics_interval {
        if *every.get_ref() < std::time::Duration::from_secs(1) {
            problems.push(source.problem(
                Some(every.span().start),
                Severity::Error,
                "metrics_interval must be at least 1s (each round reads /proc and the cgroups of every service); remove it for none".into(),
            ));
        }
    }
    let watchdog = system
        .watchdog
        .take()
        .and_then(|w| w.check(source, problems));
    let mut config = assemble(path, system, watchdog, log, control, services);
    if mqtt.is_some() {
        // The device name is a topic level of every MQTT topic ember uses, and the
        // default client id. "group" is taken: <prefix>/group/<group>/... are the
        // fleet's topics.
        let device = &config.system.device;
        let why = ember_ipc::names::check_topic_level("device", device, false)
            .err()
            .or_else(|| {
                (device.starts_with('$') || device == "group").then(|| {
                    format!(
                        "device \"{}\" cannot be an MQTT topic level of ember's: it may not start with $, nor be \"group\", which names the fleet's topics",
                        device.escape_debug()
                    )
                })
            });
        if let Some(why) = why {
            problems.push(source.problem(
                None,
                Severity::Error,
                format!("{why}: set [system] device to a name an MQTT topic level carries (the hostname when unset)"),
            ));
        }
    }
    config.mqtt = mqtt;
    config.dbus = dbus;
    config
}

impl Config {
    /// `worker@42` as a start makes it from the template `worker@` (forgotten once it
    /// stops); `None` when no template has that name. The caller checks the instance's
    /// name (`values::check_instance`) where a person gave it.
    pub fn made_on_demand(&self, name: &str) -> Option<ServiceSpec> {
        let (template, instance) = service::template_of(name)?;
        let mut spec = self.templates.get(template)?.instantiate(instance);
        spec.transient = true;
        spec.enabled = true;
        Some(spec)
    }
}

/// The checked configuration from its parts.
fn assemble(
    path: &Path,
    system: RawSystem,
    watchdog: Option<watchdog::WatchdogConfig>,
    log: LogConfig,
    control: ControlConfig,
    services: BTreeMap<String, ServiceSpec>,
) -> Config {
    let services_dir = services_dir(path, system.services_dir);
    let device = system.device.unwrap_or_else(hostname);
    let mut system_config = SystemConfig::defaults(device, services_dir);
    system_config.hostname = system.hostname;
    if let Some(c) = system.ctrl_alt_del {
        system_config.ctrl_alt_del = c;
    }
    if let Some(d) = system.shutdown_timeout {
        system_config.shutdown_timeout = d.into_inner();
    }
    system_config.rescue_shell = system.rescue_shell;
    system_config.watchdog = watchdog;
    system_config.metrics_interval = system.metrics_interval.map(Spanned::into_inner);
    if let Some(dir) = system.log_dir {
        system_config.log_dir = dir.into_inner();
    }
    // A relative output file is under log_dir.
    let mut services = services;
    let mut templates = BTreeMap::new();
    for (name, spec) in std::mem::take(&mut services) {
        if spec.is_template() {
            templates.insert(name, spec);
        } else {
            services.insert(name, spec);
        }
    }
    for spec in services.values_mut().chain(templates.values_mut()) {
        for output in [&mut spec.stdout, &mut spec.stderr] {
            if let Output::Rotated(file) = output {
                if file.path.is_relative() {
                    std::sync::Arc::make_mut(file).path = system_config.log_dir.join(&file.path);
                }
            }
        }
    }
    Config {
        path: path.to_owned(),
        system: system_config,
        log,
        control,
        mqtt: None,
        dbus: None,
        services,
        templates,
    }
}

/// Reads `[system]`, `[log]` or `[control]` with `take_from`. The keys read well are
/// kept even when others are not: they are the settings a broken configuration boots
/// with, and a good `services_dir` is where its services are looked for.
fn section<T>(
    entries: DeTable<'_>,
    take_from: fn(&mut Table<'_>) -> T,
    source: &Source,
    problems: &mut Vec<Problem>,
) -> T {
    let (section, issues) = Table::read(entries, take_from);
    source.report(issues, problems);
    section
}

/// `[system] services_dir`, relative to the main file's directory, `services.d` there
/// by default.
fn services_dir(main: &Path, dir: Option<PathBuf>) -> PathBuf {
    let base = main.parent().unwrap_or(Path::new("."));
    match dir {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => base.join(dir),
        None => base.join("services.d"),
    }
}

/// `[system] services_dir` as far as the parser could read it from a main file with
/// syntax errors: `None` when it cannot tell.
fn recovered_services_dir(root: &DeTable<'_>) -> Option<Option<PathBuf>> {
    let Some(system) = root.get("system") else {
        return Some(None);
    };
    let DeValue::Table(system) = system.get_ref() else {
        return None;
    };
    match system.get("services_dir").map(Spanned::get_ref) {
        None => Some(None),
        Some(DeValue::String(dir)) => Some(Some(PathBuf::from(dir.as_ref()))),
        Some(_) => None,
    }
}

type SpanMap = BTreeMap<String, (Rc<Source>, service::DependencySpans)>;
type ServiceMap = BTreeMap<String, (ServiceSpec, PathBuf)>;

/// What reading the files has found so far.
#[derive(Default)]
struct Found {
    /// Every service and template (`worker@`), and its file.
    services: ServiceMap,
    /// Where each one's dependencies are written.
    spans: SpanMap,
    /// Each template and its `instances` (a list, not a map: one more map type is one
    /// more copy of the B-tree's code in the executable).
    pools: Vec<(String, Vec<String>)>,
}

fn read_service(
    name: &str,
    offset: usize,
    entries: DeTable<'_>,
    source: &Rc<Source>,
    found: &mut Found,
    problems: &mut Vec<Problem>,
) {
    let Found {
        services,
        spans,
        pools,
    } = found;
    if let Err(why) = values::check_service_name(name) {
        problems.push(source.problem(Some(offset), Severity::Error, why));
        return;
    }
    let template = name.ends_with('@');
    if template && name.matches('@').count() > 1 {
        problems.push(source.problem(
            Some(offset),
            Severity::Error,
            format!("template \"{}\": a template's name has one @, at its end (worker@), and an instance's name is what follows it (worker@42)", name.escape_debug()),
        ));
        return;
    }
    if crate::adapters::NAMES.contains(&name) {
        problems.push(source.problem(
            Some(offset),
            Severity::Error,
            format!(
                "\"{name}\" is the name of ember's own adapter for [{}]; choose another name",
                &name[6..]
            ),
        ));
        return;
    }
    if let Some((_, other)) = services.get(name) {
        problems.push(source.problem(
            Some(offset),
            Severity::Error,
            format!(
                "service \"{name}\" is defined twice (also in {}); keep one",
                other.display()
            ),
        ));
    }
    let (mut raw, issues) = Table::read(entries, service::RawService::take_from);
    if let Some(instances) = raw.instances.take() {
        let at = instances.span().start;
        if template {
            let list = &instances.get_ref().0;
            for (i, instance) in list.iter().enumerate() {
                let why = if list[..i].contains(instance) {
                    Some("it is listed twice".to_owned())
                } else {
                    values::check_instance(name, instance).err()
                };
                if let Some(why) = why {
                    problems.push(source.problem(
                        Some(at),
                        Severity::Error,
                        format!(
                            "template \"{name}\": instance \"{}\": {why}",
                            ember_ipc::text::shortened(instance).escape_debug()
                        ),
                    ));
                }
            }
            pools.push((name.to_owned(), instances.into_inner().0));
        } else {
            problems.push(source.problem(
                Some(at),
                Severity::Error,
                format!("service \"{name}\": instances is a template's key; a template's name ends with @ ([service.\"{name}@\"], or services.d/{name}@.toml), and {{instance}} in it is each instance's name"),
            ));
        }
    }
    // A value of the wrong shape leaves its key unset; the checks of `build` would
    // then report the gap too (a command that is not an array as no command at all).
    let built = if issues.is_empty() {
        service::build(name, raw, offset, source, problems)
    } else {
        source.report(issues, problems);
        None
    };
    // Made with an empty instance, a service that names none is itself.
    if built
        .as_ref()
        .is_some_and(|(s, _)| !template && s.instantiate("") != *s)
    {
        problems.push(source.problem(
            Some(offset),
            Severity::Warning,
            format!("service \"{name}\" is not a template: {{instance}} in it stays as written; a template's name ends with @ ({name}@)"),
        ));
    }
    // A file an instance's supervision reads, shared by every instance: one would read
    // another's pid (and a stop of it signal the other's process), or be taken for ready
    // when another is (found by a hostile review).
    if let Some((spec, _)) = built.as_ref().filter(|_| template) {
        let shared = |p: &Path| !p.to_string_lossy().contains(service::INSTANCE);
        let ready_file = match &spec.ready {
            service::Readiness::File(p) => Some(p.as_path()),
            _ => None,
        };
        for (what, path, ext) in [
            ("pid_file", spec.pid_file.as_deref(), "pid"),
            ("ready's file", ready_file, "ready"),
        ] {
            if let Some(path) = path.filter(|p| shared(p)) {
                problems.push(source.problem(
                    Some(offset),
                    Severity::Warning,
                    format!(
                        "template \"{name}\": {what} {:?} has no {}: every instance would use this one file, and read another's; name it by the instance, e.g. \"/run/{}-{}.{ext}\"",
                        path.display().to_string(),
                        service::INSTANCE,
                        name.trim_end_matches('@'),
                        service::INSTANCE,
                    ),
                ));
            }
        }
    }
    if services.contains_key(name) {
        // The second definition is checked too, then dropped.
        return;
    }
    match built {
        Some((spec, deps)) => {
            spans.insert(name.to_owned(), (source.clone(), deps));
            services.insert(name.to_owned(), (spec, source.path.clone()));
        }
        // A service with errors is still defined: the services naming it get no "not
        // defined" error, a second definition is still found. It has an `Error`, so this
        // stand-in is never run.
        None => {
            let stand_in = ServiceSpec::new(name, &[]);
            services.insert(name.to_owned(), (stand_in, source.path.clone()));
        }
    }
}

/// Reads `services_dir`: one service per regular `NAME.toml` file whose NAME is a valid
/// service name. Editors' and package managers' leftovers (dotfiles such as `.#app.toml`
/// and `.app.toml.swp`, `app.toml~`, `app.toml.bak`, `.dpkg-*`, `.rpm*`) are skipped with
/// a debug line. One file that cannot be read (a dangling symlink, no permission, not
/// UTF-8, a directory or a FIFO named *.toml) is a problem of that file alone, of the
/// `Runtime` severity: `ember check` fails, and a reload is refused, but at boot the
/// other services start, and the unreadable one is a service that fails at start with the
/// reason (so that what requires it says why, instead of the whole configuration being
/// rejected).
fn read_services_dir(dir: &Path, found: &mut Found, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            problems.push(Problem {
                file: dir.to_owned(),
                position: None,
                severity: Severity::Runtime,
                message: format!("cannot read services_dir: {e}; none of its services is loaded"),
            });
            return;
        }
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        match classify_service_file(&file_name) {
            ServiceFile::Service(stem) => files.push((path, stem.to_owned())),
            ServiceFile::Leftover(what) => {
                crate::log::debug!("{}: skipped ({what})", path.display())
            }
            ServiceFile::Other => {}
        }
    }
    // Unstable is the same order here (equal entries are alike) and a smaller sort.
    files.sort_unstable();
    // A fault for the tests: the directory changing between its listing and its files.
    #[cfg(test)]
    tests::after_listing();
    for (file, name) in files {
        let not_loaded = |problems: &mut Vec<Problem>, why: String| {
            problems.push(Problem {
                file: file.clone(),
                position: None,
                severity: Severity::Runtime,
                message: why,
            })
        };
        if let Err(why) = values::check_service_name(&name) {
            not_loaded(
                problems,
                format!("not loaded: the file name is the service's name, and {why}"),
            );
            continue;
        }
        let source = match open_config(&file) {
            // Removed since the listing: gone, as it would be from a listing a moment
            // later (an `rm` racing a reload is a removal, not a broken file).
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&file).is_err() =>
            {
                crate::log::debug!("{}: removed while services_dir was read", file.display());
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err("it is a symlink to nothing (a dangling link)".to_owned())
            }
            Err(e) => Err(format!("cannot read it: {e}")),
            Ok((_, kind)) if !kind.is_file() => Err("it is not a regular file".to_owned()),
            Ok((open, _)) => read_open(open)
                .map_err(|e| format!("cannot read it: {e}"))
                .map(|text| Source {
                    path: file.clone(),
                    text,
                    offline: false,
                    // Only the main file has a [system] table.
                    at_boot: false,
                    positions: Default::default(),
                }),
        };
        let source = match source {
            Ok(source) => Rc::new(source),
            Err(why) => {
                not_loaded(problems, format!("service {name} not loaded: {why}"));
                let why = format!(
                    "its file {} cannot be loaded: {why}; fix it, then `ember ctl reload`",
                    file.display()
                );
                found
                    .services
                    .entry(name.clone())
                    .or_insert_with(|| (ServiceSpec::unloadable(&name, why), file.clone()));
                continue;
            }
        };
        let Some(table) = parse_source(&source, problems) else {
            continue;
        };
        read_service(&name, 0, table.into_inner(), &source, found, problems);
    }
}

/// Makes the instances the configuration names, from their templates: each template's
/// `instances`, and each `worker@NAME` a service requires or wants (as systemd does).
/// A service defined under an instance's name is that instance. Returns the names made.
fn make_instances(found: &mut Found, problems: &mut Vec<Problem>) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    for (template, instances) in &found.pools {
        wanted.extend(instances.iter().map(|i| format!("{template}{i}")));
    }
    for (name, (spec, _)) in &found.services {
        for dep in spec.ordered_after() {
            if found.services.contains_key(dep.as_str()) && dep.ends_with('@') {
                // Naming the template itself: say what to write instead.
                if let Some((source, deps)) = found.spans.get(name) {
                    let at = deps
                        .deps
                        .iter()
                        .find(|(d, _, _)| d == dep)
                        .map(|(_, _, o)| *o);
                    problems.push(source.problem(
                        at,
                        Severity::Error,
                        format!("service \"{name}\" names the template \"{dep}\"; name one of its instances, e.g. \"{dep}1\""),
                    ));
                }
            }
        }
        // What it requires or wants is made; what it is only after is not pulled in.
        wanted.extend(spec.requires.iter().chain(&spec.wants).cloned());
    }
    let mut made = Vec::new();
    for name in wanted {
        if found.services.contains_key(&name) {
            continue;
        }
        let Some((template, instance)) = service::template_of(&name) else {
            continue;
        };
        // A name that is no instance stays undefined: the graph says so.
        if values::check_instance(template, instance).is_err() {
            continue;
        }
        let Some((spec, file)) = found.services.get(template) else {
            continue;
        };
        let instance = spec.instantiate(instance);
        let file = file.clone();
        if let Some(spans) = found.spans.get(template).cloned() {
            found.spans.insert(name.clone(), spans);
        }
        found.services.insert(name.clone(), (instance, file));
        made.push(name);
    }
    made
}

/// What a file in services_dir is, by its name.
#[derive(Debug, PartialEq, Eq)]
enum ServiceFile<'a> {
    /// `NAME.toml`: a service (whether NAME is valid is checked next).
    Service(&'a str),
    /// An editor's or a package manager's leftover, skipped.
    Leftover(&'static str),
    /// Anything else (a README, a directory of scripts): not ours.
    Other,
}

fn classify_service_file(file_name: &str) -> ServiceFile<'_> {
    if file_name.starts_with('.') {
        return ServiceFile::Leftover("a dotfile: hidden, or an editor's lock or swap file");
    }
    const BACKUPS: [&str; 9] = [
        "~", ".swp", ".swo", ".bak", ".orig", ".old", ".tmp", ".rej", ".save",
    ];
    if BACKUPS.iter().any(|b| file_name.ends_with(b))
        || file_name.contains(".dpkg-")
        || file_name.contains(".rpm")
        || file_name.contains(".ucf-")
    {
        return ServiceFile::Leftover("a backup or a package manager's copy");
    }
    match file_name.strip_suffix(".toml") {
        Some(stem) => ServiceFile::Service(stem),
        None => ServiceFile::Other,
    }
}

/// The device name when `[system] device` is not set: the hostname.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ember".to_owned())
}

/// The account an adapter runs as (`[mqtt]` or `[dbus]` `user`, by default the adapter's
/// own name): a name it cannot be is an error at its value; root's account a Runtime
/// problem, since it is the board's: at boot the adapter fails, not the configuration.
fn adapter_user(
    user: Option<toml::Spanned<String>>,
    adapter: &str,
    source: &Source,
    problem: &mut impl FnMut(usize, Severity, String),
) -> String {
    let user_at = user.as_ref().map(|u| u.span().start);
    let user = match user {
        Some(u) => match crate::adapters::user_name_problem(u.get_ref(), adapter) {
            Some(why) => {
                problem(u.span().start, Severity::Error, why);
                adapter.to_owned()
            }
            None => u.into_inner(),
        },
        None => adapter.to_owned(),
    };
    let root = (!source.offline)
        .then(|| crate::adapters::root_user_problem(&user, adapter))
        .flatten();
    if let (Some(at), Some(why)) = (user_at, root) {
        problem(at, Severity::Runtime, why);
    }
    user
}
