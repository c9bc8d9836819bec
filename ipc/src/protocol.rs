//! The control protocol: what an adapter may ask of the core, and what the core tells.
//!
//! On the local socket every value below is one line of JSON. The same types serve the
//! MQTT and D-Bus adapters, so a command means the same thing whichever way it arrives.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Lines kept per service for `logs`, and the default number a `logs` request returns.
pub const LOG_LINES_KEPT: usize = 200;
pub const LOG_LINES_DEFAULT: usize = 10;
/// Transitions kept per service for `timeline`, besides its first spawn and activation.
pub const TRANSITIONS_KEPT: usize = 16;

/// The version of the control protocol this ember speaks. A client says which it speaks
/// with `hello`; within one version, fields and verbs are only ever added, and a client
/// ignores what it does not know (see [`Hello`]).
pub const PROTOCOL: u32 = 1;

/// The verbs of the control protocol, as spelled on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Hello,
    Subscribe,
    Status,
    Start,
    Stop,
    Restart,
    ResetFailed,
    Kill,
    Reload,
    Logs,
    Timeline,
    Poweroff,
    Reboot,
    Halt,
    Reexec,
}

impl Verb {
    pub const ALL: [Verb; 15] = [
        Verb::Hello,
        Verb::Subscribe,
        Verb::Status,
        Verb::Start,
        Verb::Stop,
        Verb::Restart,
        Verb::ResetFailed,
        Verb::Kill,
        Verb::Reload,
        Verb::Logs,
        Verb::Timeline,
        Verb::Poweroff,
        Verb::Reboot,
        Verb::Halt,
        Verb::Reexec,
    ];

    /// The word on the wire (`"start"`, `"status"`...).
    pub fn word(self) -> &'static str {
        match self {
            Verb::Hello => "hello",
            Verb::Subscribe => "subscribe",
            Verb::Status => "status",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::ResetFailed => "reset_failed",
            Verb::Kill => "kill",
            Verb::Reload => "reload",
            Verb::Logs => "logs",
            Verb::Timeline => "timeline",
            Verb::Poweroff => "poweroff",
            Verb::Reboot => "reboot",
            Verb::Halt => "halt",
            Verb::Reexec => "reexec",
        }
    }

    fn from_word(word: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.word() == word)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A request to the core. Start, stop and restart only change a service's *want*.
///
/// On the wire an object with `"cmd"` and the verb's arguments beside it:
/// `{"cmd":"restart","names":["web"],"wait":true}`. Reading one is strict (see
/// [`Command::from_json`]): unknown fields, a key given twice and a value of the wrong
/// type are refused with a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Which protocol the client speaks; the reply says which ember speaks, and who it is.
    Hello(HelloArgs),
    /// Every change from now on, as one line each: first a snapshot of everything, then
    /// each event; a client that falls behind is told so and gets a fresh snapshot. Only
    /// on the socket, where the adapter streams it: the core never sees this command.
    Subscribe(SubscribeArgs),
    /// The status of the named services, or of every service when `names` is empty.
    /// With `details`, each also carries its resource use (measured now), its
    /// dependencies and its processes: what `ember ctl status` shows.
    Status(StatusArgs),
    Start(Targets),
    Stop(Targets),
    Restart(Targets),
    /// Forget the named services' failures, or every failed service's when `names` is
    /// empty (systemd's reset-failed): a failed one becomes inactive and is left down
    /// (a scheduled oneshot stays on its schedule), and every one named begins its
    /// restart count, start limit and backoff afresh. Nothing is started or stopped.
    ResetFailed(ResetFailedArgs),
    /// Send a signal to the named services' processes (systemctl kill, dinitctl signal,
    /// s6-svc): to every process of each (its cgroup, else its process group and main
    /// process), or with `main` to its main process only. Wants do not change: a service
    /// that the signal ends is restarted as its `restart` says.
    Kill(KillArgs),
    /// Re-read the configuration; rejected whole when it has any error.
    Reload,
    /// The last `lines` lines a service wrote (and, with `follow`, every later one).
    Logs(LogsArgs),
    /// When each service was spawned, became active, failed and restarted during this run
    /// of ember (this boot, as PID 1): what `ember analyze` reads.
    Timeline,
    Poweroff,
    Reboot,
    Halt,
    /// Exec a new ember binary in PID 1's place, handing it every service as it runs
    /// (systemd's daemon-reexec): what an update of ember needs without a reboot. Root
    /// only. Answered only when it fails; the client then sees the connection close, and
    /// the new binary answers on the same socket.
    Reexec(ReexecArgs),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReexecArgs {
    /// The binary to exec; by default the one ember was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloArgs {
    /// The protocol version the client speaks ([`PROTOCOL`]).
    pub protocol: u32,
    /// Who the client is, for ember's log ("ember-mqtt").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeArgs {
    /// Every line each service writes, as `log` events, too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs: bool,
    /// The `metrics` rounds of `[system] metrics_interval`, too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub details: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetFailedArgs {
    /// The services; none: every failed one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillArgs {
    pub names: Vec<String>,
    /// A name (`"SIGHUP"`, `"HUP"`, any case) or a number; SIGTERM when not given.
    #[serde(default = "default_signal", deserialize_with = "signal_field::read")]
    pub signal: String,
    /// The main process only, not every process of the service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub main: bool,
}

fn default_signal() -> String {
    "SIGTERM".into()
}

/// A kill's `"signal"` as its text, given as a name or as a number: `"HUP"`, `"9"` or
/// `9` (JSON's number, which is what a number in a JSON request reads as; found by a
/// hostile review: `"signal":9` was refused, "expected a string"). Ember reads the text;
/// every JSON interface that takes a signal (the socket, MQTT) reads it here.
pub mod signal_field {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a signal name such as \"HUP\", or its number such as 9")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }

    /// The same, for a field that may be left out (`#[serde(default)]`) or null, as an
    /// `Option<String>` was.
    pub fn read_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        struct Maybe;
        impl<'de> Visitor<'de> for Maybe {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                Text.expecting(f)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                read(d).map(Some)
            }
        }
        d.deserialize_option(Maybe)
    }
}

/// The services a start, stop or restart is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub names: Vec<String>,
    /// Reply once each service has settled: up (a new run active) for start and restart,
    /// down for stop; or failed, with the reason. Decided by the core.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
}

impl Targets {
    pub fn new(names: Vec<String>) -> Targets {
        Targets { names, wait: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    pub name: String,
    #[serde(default = "default_lines")]
    pub lines: usize,
    /// Keep streaming lines after the reply (the local socket only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

fn default_lines() -> usize {
    LOG_LINES_DEFAULT
}

impl Command {
    pub fn verb(&self) -> Verb {
        match self {
            Command::Hello(_) => Verb::Hello,
            Command::Subscribe(_) => Verb::Subscribe,
            Command::Status(_) => Verb::Status,
            Command::Start(_) => Verb::Start,
            Command::Stop(_) => Verb::Stop,
            Command::Restart(_) => Verb::Restart,
            Command::ResetFailed(_) => Verb::ResetFailed,
            Command::Kill(_) => Verb::Kill,
            Command::Reload => Verb::Reload,
            Command::Logs(_) => Verb::Logs,
            Command::Timeline => Verb::Timeline,
            Command::Poweroff => Verb::Poweroff,
            Command::Reboot => Verb::Reboot,
            Command::Halt => Verb::Halt,
            Command::Reexec(_) => Verb::Reexec,
        }
    }

    /// Reads one request line: a JSON object with `"cmd"`. Every refusal is typed
    /// (`bad_request`, or `unknown_command` for a verb ember does not know) and says what
    /// to change.
    pub fn from_json(bytes: &[u8]) -> Result<Command, Error> {
        let value = crate::json::parse(bytes).map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("malformed JSON ({e}); send one JSON object per line"),
            )
        })?;
        Command::from_value(value)
    }

    /// [`Command::from_json`] for a value already parsed (duplicate keys refused).
    pub fn from_value(value: serde_json::Value) -> Result<Command, Error> {
        let bad = |message: String| Error::new(ErrorKind::BadRequest, message);
        let serde_json::Value::Object(mut fields) = value else {
            return Err(bad(
                "a request is a JSON object such as {\"cmd\":\"status\"}".into(),
            ));
        };
        let verb = match fields.remove("cmd") {
            Some(serde_json::Value::String(word)) => word,
            Some(other) => {
                return Err(bad(format!(
                    "\"cmd\" must be a string such as \"status\", not {}",
                    json_type(&other)
                )))
            }
            None => return Err(bad("missing \"cmd\", e.g. {\"cmd\":\"status\"}".into())),
        };
        let Some(verb) = Verb::from_word(&verb) else {
            let known: Vec<&str> = Verb::ALL.iter().map(|v| v.word()).collect();
            return Err(Error::new(
                ErrorKind::UnknownCommand,
                format!(
                    "unknown command \"{}\"; ember understands {}",
                    verb.escape_default(),
                    known.join(", ")
                ),
            ));
        };
        let rest = serde_json::Value::Object(fields);
        let args = |what: &serde_json::Value| -> Result<(), Error> {
            match what {
                serde_json::Value::Object(m) if m.is_empty() => Ok(()),
                serde_json::Value::Object(m) => Err(bad(format!(
                    "\"{verb}\" takes no arguments; remove \"{}\"",
                    m.keys().next().map(String::as_str).unwrap_or_default()
                ))),
                _ => Ok(()),
            }
        };
        fn typed<T: serde::de::DeserializeOwned>(
            verb: Verb,
            rest: serde_json::Value,
        ) -> Result<T, Error> {
            crate::json::from_value(rest).map_err(|e| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("bad \"{verb}\" request: {e}"),
                )
            })
        }
        Ok(match verb {
            Verb::Hello => Command::Hello(typed(verb, rest)?),
            Verb::Subscribe => Command::Subscribe(typed(verb, rest)?),
            Verb::Status => Command::Status(typed(verb, rest)?),
            Verb::Start => Command::Start(typed(verb, rest)?),
            Verb::Stop => Command::Stop(typed(verb, rest)?),
            Verb::Restart => Command::Restart(typed(verb, rest)?),
            Verb::ResetFailed => Command::ResetFailed(typed(verb, rest)?),
            Verb::Kill => Command::Kill(typed(verb, rest)?),
            Verb::Logs => Command::Logs(typed(verb, rest)?),
            Verb::Reload => args(&rest).map(|()| Command::Reload)?,
            Verb::Timeline => args(&rest).map(|()| Command::Timeline)?,
            Verb::Poweroff => args(&rest).map(|()| Command::Poweroff)?,
            Verb::Reboot => args(&rest).map(|()| Command::Reboot)?,
            Verb::Halt => args(&rest).map(|()| Command::Halt)?,
            Verb::Reexec => Command::Reexec(typed(verb, rest)?),
        })
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        let value = crate::json::unique_value(d)?;
        Command::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// "a number", "an array"...: for messages about a value of the wrong type.
pub fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The core's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done (or, for start/stop/restart, the wants are set); the services' status right after.
    Ok {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        services: Vec<ServiceStatus>,
    },
    /// The answer to `hello`.
    Hello(Hello),
    /// The answer to `status`: the board's state and its configuration's, and services.
    Status(StatusReply),
    /// The first line of a `subscribe` stream, and the line after each `lagged`:
    /// everything as it is, up to and including the change numbered `seq`.
    Snapshot(StatusReply),
    /// A line of a `subscribe` stream: one change (boxed: most replies are smaller).
    Event(Box<Event>),
    /// A line of a `subscribe` stream: this client fell behind and `missed` changes were
    /// dropped for it; a fresh snapshot follows. Never a silent gap.
    Lagged {
        missed: u64,
    },
    /// The answer to a `reload` that was applied: what it changed, service by service.
    Reloaded(ReloadReport),
    Logs {
        lines: Vec<LogLine>,
    },
    Timeline(Timeline),
    Error(Error),
    /// The first line for a start, stop or restart with `wait` sent with `"taken":true`:
    /// the command is in the core's queue, which takes requests in order, so every
    /// request that reaches ember after this line runs after it. Its reply follows.
    Taken {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The number of the last change published before this reply (see
    /// [`ServiceStatus::seq`]): in a snapshot, events up to it are already in it.
    #[serde(default)]
    pub seq: u64,
    pub system: SystemStatus,
    pub services: Vec<ServiceStatus>,
}

/// Who answered a `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version ember speaks ([`PROTOCOL`]).
    pub protocol: u32,
    /// ember's version.
    pub ember: String,
    /// `[system] device`.
    pub device: String,
    pub role: Role,
}

/// The board as a whole: its state, and whether it runs the configuration it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    pub state: SystemState,
    pub config: ConfigStatus,
    /// The number of the change that made it so (see [`ServiceStatus::seq`]).
    #[serde(default)]
    pub seq: u64,
    /// The hardware watchdog, when `[system] watchdog` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Box<WatchdogStatus>>,
}

/// The hardware watchdog ember's main loop pets (`[system] watchdog`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogStatus {
    /// The device, e.g. "/dev/watchdog0".
    pub device: String,
    /// The driver's name for it (WDIOC_GETSUPPORT), e.g. "i6300ESB timer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// ember holds it open and pets it; false with `error`.
    pub armed: bool,
    /// The timeout in force, in seconds: the configured one, or the driver's when the
    /// driver would not take it.
    pub timeout_sec: u32,
    /// How often the main loop pets it (half the timeout), in milliseconds.
    pub pet_interval_ms: u64,
    /// Pets since it was opened.
    pub pets: u64,
    /// When it was last petted, microseconds since the epoch. In status replies only (an
    /// event would carry a stale one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pet_usec: Option<u64>,
    /// What a clean shutdown does with it: "auto", "close" or "keep".
    pub on_shutdown: String,
    /// Its driver says that it reset the board last time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_by_watchdog: bool,
    /// Why it is not armed: it cannot be opened, it is not a watchdog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which configuration is running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The main file.
    pub path: String,
    /// The configuration had errors when ember started, so it runs a fallback: the
    /// settings it could read and no services, until a reload succeeds.
    pub fallback: bool,
    /// With `fallback`: the errors, one line each (file:line:col: what to change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// New services (started when enabled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Services no longer configured (stopped, then forgotten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Running services whose process changed: restarted, with the keys that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<SpecChange>,
    /// Services whose policy alone changed (restart, limits of restarts, timeouts,
    /// dependencies...): applied in place, nothing restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updated: Vec<SpecChange>,
    /// Warnings of the new configuration, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A service and the configuration keys of it that a reload changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecChange {
    pub name: String,
    pub keys: Vec<String>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Ok {
            services: Vec::new(),
        }
    }
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::Error(Error::new(kind, message))
    }
}

/// A typed error, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UnknownService,
    UnknownCommand,
    BadRequest,
    TooLarge,
    InvalidConfig,
    AccessDenied,
    Busy,
    Failed,
    Internal,
}

/// What the core broadcasts to every adapter.
// Most events are Service: boxing it would add an allocation to nearly every event to
// save bytes in the broadcast ring's slots, which are few (FEED_CAPACITY-sized).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A service changed state (or was added by a reload).
    Service(ServiceStatus),
    /// A reload removed a service.
    ServiceRemoved {
        name: String,
        /// The number of this change (see [`ServiceStatus::seq`]).
        #[serde(default)]
        seq: u64,
    },
    /// A service wrote a line.
    Log(LogLine),
    /// The system as a whole changed state, or its configuration did.
    System(SystemStatus),
    /// Resource use of every running service, every `[system] metrics_interval`.
    Metrics(Vec<Metrics>),
}

/// One service's resource use during its current run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub name: String,
    /// CPU time, user and system, in microseconds.
    pub cpu_usec: u64,
    /// Memory charged to it (its cgroup's memory.current), else its processes' RSS.
    pub memory_bytes: u64,
    /// Tasks (threads) it has.
    pub tasks: u32,
}

/// What a status with details adds: what a person debugging the service wants next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Its cgroup's directory, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Every process it has, main first, then by pid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Its command line, arguments joined by spaces (its name in brackets for a kernel
    /// thread or a zombie).
    pub command: String,
}

/// Systemd's words for the system as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemState {
    Starting,
    Running,
    Degraded,
    Stopping,
}

/// A service's state, in systemd's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    #[default]
    Inactive,
    /// Spawned, not ready yet; or waiting out a restart backoff.
    Activating,
    /// Ready; a oneshot that exited 0 stays active.
    Active,
    Deactivating,
    Failed,
}

/// The detail under a state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sub {
    /// inactive, and nothing asks for it
    #[default]
    Dead,
    /// inactive, wanted, waiting for what it is ordered after
    Waiting,
    /// inactive, wanted, but something it requires is down or failed
    Dependency,
    /// inactive between the runs of a scheduled oneshot: `next_run` says when
    Scheduled,
    /// activating: spawned, not ready yet
    Start,
    /// activating: a forking daemon's first process exited; waiting for its pid_file
    StartPidFile,
    /// activating: waiting out the restart backoff
    AutoRestart,
    Running,
    /// active oneshot that exited 0
    Exited,
    StopSigterm,
    StopSigkill,
    /// failed: exited non-zero
    ExitCode,
    /// failed: killed by a signal
    Signal,
    /// failed: killed by the kernel's OOM killer (over its memory_max, or out of memory)
    OomKill,
    /// failed: not ready within ready_timeout, or did not stop after SIGKILL
    Timeout,
    /// failed: too many failures within start_limit_interval
    StartLimit,
    /// failed: could not be spawned (missing binary, bad user...)
    Spawn,
    /// failed: missed a watchdog ping
    Watchdog,
}

/// What a service should be: every command changes only this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Want {
    Up,
    #[default]
    Down,
}

/// How the last run that ended went, in systemd's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    Success,
    ExitCode,
    Signal,
    OomKill,
    Timeout,
    Spawn,
    Watchdog,
}

/// How readiness is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyKind {
    /// Ready once spawned.
    #[default]
    None,
    /// A oneshot: ready once it exited 0.
    Exit,
    PidFile,
    Log,
    Delay,
    Notify,
    Tcp,
    File,
    Exec,
}

/// How a service runs (`type` in its configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    #[default]
    Simple,
    Oneshot,
    Notify,
    Forking,
}

/// Where ember runs: the machine's PID 1, PID 1 of a PID namespace, or a supervisor under
/// another init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// PID 1 of the machine: the kernel started us. Every duty, reboot(2) included.
    Machine,
    /// PID 1 of a PID namespace (a container, a test): reaping, signals and the shutdown
    /// sequence, but nothing that would reach the host.
    Namespace,
    /// An ordinary process: a child subreaper that exits when told to stop.
    Supervisor,
}

/// Which output a log line came from; `ember` marks a line ember wrote itself (a note
/// that lines were skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stream {
    Stdout,
    Stderr,
    Ember,
}

/// The words on the wire, for people: `word()`, `Display`, `FromStr` and `ALL` (a test
/// checks that serde writes the same words).
macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub fn word(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),*
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.word())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(word: &str) -> Result<$ty, String> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.word() == word)
                    .ok_or_else(|| format!("unknown {} \"{word}\"", stringify!($ty)))
            }
        }
    };
}

words!(State {
    Inactive => "inactive",
    Activating => "activating",
    Active => "active",
    Deactivating => "deactivating",
    Failed => "failed",
});
words!(Sub {
    Dead => "dead",
    Waiting => "waiting",
    Dependency => "dependency",
    Scheduled => "scheduled",
    Start => "start",
    StartPidFile => "start-pid-file",
    AutoRestart => "auto-restart",
    Running => "running",
    Exited => "exited",
    StopSigterm => "stop-sigterm",
    StopSigkill => "stop-sigkill",
    ExitCode => "exit-code",
    Signal => "signal",
    OomKill => "oom-kill",
    Timeout => "timeout",
    StartLimit => "start-limit",
    Spawn => "spawn",
    Watchdog => "watchdog",
});
words!(Want { Up => "up", Down => "down" });
words!(SystemState {
    Starting => "starting",
    Running => "running",
    Degraded => "degraded",
    Stopping => "stopping",
});
words!(RunResult {
    Success => "success",
    ExitCode => "exit-code",
    Signal => "signal",
    OomKill => "oom-kill",
    Timeout => "timeout",
    Spawn => "spawn",
    Watchdog => "watchdog",
});
words!(ReadyKind {
    None => "none",
    Exit => "exit",
    PidFile => "pid-file",
    Log => "log",
    Delay => "delay",
    Notify => "notify",
    Tcp => "tcp",
    File => "file",
    Exec => "exec",
});
words!(ServiceKind {
    Simple => "simple",
    Oneshot => "oneshot",
    Notify => "notify",
    Forking => "forking",
});
words!(Role {
    Machine => "machine",
    Namespace => "namespace",
    Supervisor => "supervisor",
});
words!(Stream {
    Stdout => "stdout",
    Stderr => "stderr",
    Ember => "ember",
});

impl Role {
    pub fn is_pid1(self) -> bool {
        self != Role::Supervisor
    }
}

impl RunResult {
    /// The result a failure with this sub-state records.
    pub fn of_failure(sub: Sub) -> RunResult {
        match sub {
            Sub::Signal => RunResult::Signal,
            Sub::OomKill => RunResult::OomKill,
            Sub::Timeout => RunResult::Timeout,
            Sub::Spawn => RunResult::Spawn,
            Sub::Watchdog => RunResult::Watchdog,
            _ => RunResult::ExitCode,
        }
    }
}

/// One service's state as every adapter shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: State,
    pub sub_state: Sub,
    pub want: Want,
    pub pid: Option<u32>,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Exit code of the last run that exited.
    pub exit_code: Option<i32>,
    /// Signal that ended the last run, e.g. "SIGKILL".
    #[serde(default)]
    pub exit_signal: Option<String>,
    /// How the last run that ended went. None before any run has ended.
    #[serde(default)]
    pub result: Option<RunResult>,
    /// When the current state was entered, RFC 3339 UTC.
    pub since: String,
    /// The same instant in microseconds since the epoch.
    pub since_usec: u64,
    /// Why the service is failed or blocked, in words (e.g. the OS error of a failed spawn).
    #[serde(default)]
    pub reason: Option<String>,
    /// What the service last said with sd_notify `STATUS=`.
    #[serde(default)]
    pub status_text: Option<String>,
    /// How readiness is decided.
    pub ready: ReadyKind,
    /// A scheduled oneshot's next run (RFC 3339 UTC, from the monotonic clock as `since`
    /// is), while its schedule is armed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The same instant in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_usec: Option<u64>,
    /// The number of the change this status shows: one counter for every service, raised
    /// by each published change during one run of ember. A status read carries the seq of
    /// the service's last published change, the same as its event (and retained state).
    pub seq: u64,
    /// Resource use of the current run (see [`Metrics`]), measured for a status with
    /// details of a running service; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<Details>>,
}

/// One line a service wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub service: String,
    pub stream: Stream,
    pub line: String,
    /// Microseconds since the epoch.
    pub time_usec: u64,
    /// Increases per service; lets a follower skip lines it already has.
    pub seq: u64,
}

/// Every service's transitions during this run of ember. Times are microseconds on the
/// monotonic clock since ember started (its `main`), so they hold however the wall clock
/// is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// [system] device.
    pub device: String,
    pub role: Role,
    /// What /proc/uptime read (CLOCK_BOOTTIME) when ember started: as the machine's PID 1,
    /// how long the kernel (and firmware it counts) took to hand over.
    #[serde(default)]
    pub uptime_at_start_usec: Option<u64>,
    /// Wall-clock time of ember's start, microseconds since the epoch.
    pub started_usec: u64,
    /// Time since ember started when this was taken: the open end of every running bar.
    pub now_usec: u64,
    /// When every service had first settled (active, or failed for good), if it has.
    #[serde(default)]
    pub boot_complete_usec: Option<u64>,
    pub services: Vec<ServiceTimeline>,
}

/// One service's record for [`Timeline`]: its first activation, kept whatever happens
/// later, and its last [`TRANSITIONS_KEPT`] transitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTimeline {
    pub name: String,
    pub kind: ServiceKind,
    pub ready: ReadyKind,
    pub enabled: bool,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub wants: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    /// Its first spawn.
    #[serde(default)]
    pub first_spawn_usec: Option<u64>,
    /// The first time it became active.
    #[serde(default)]
    pub first_active_usec: Option<u64>,
    /// Processes spawned for it (every start and restart).
    pub spawns: u32,
    /// Runs that failed (whether restarted or not).
    pub failures: u32,
    /// Transitions older than the ones below, no longer kept.
    pub dropped: u32,
    /// Oldest first.
    pub transitions: Vec<Transition>,
}

/// A service entering a state or a sub-state. `activating`/`start` is a spawn: a process
/// was started for run `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_usec: u64,
    pub state: State,
    pub sub_state: Sub,
    /// Which run of the service it belongs to: 1 for its first process, +1 at every spawn.
    pub run: u64,
    /// Why it failed, on a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A command in flight: the adapter waits on `reply`.
#[derive(Debug)]
pub struct Request {
    pub command: Command,
    /// Who asked, for the log: "socket uid=0", "mqtt ember/b1/service/web/cmd".
    pub origin: String,
    pub reply: oneshot::Sender<Reply>,
}

/// What an adapter holds: the way in (commands) and the ways out: changes of state
/// (`events`: services, the system, metrics) and the services' lines (`lines`), apart so
/// that a chatty service's flood never makes a reader of states fall behind.
///
/// Both carry `Arc`s: a broadcast channel keeps a slot for each of its places, and an
/// `Event` inline is 256 bytes (a status), a `LogLine` 72: 350 KiB of every ember's
/// memory, with one service or a thousand. Shared, a slot is a pointer; and the slots are
/// made only when someone subscribes (see [`crate::broadcast`]).
#[derive(Debug, Clone)]
pub struct Control {
    pub requests: mpsc::Sender<Request>,
    pub events: crate::broadcast::Broadcast<std::sync::Arc<Event>>,
    pub lines: crate::broadcast::Broadcast<std::sync::Arc<LogLine>>,
}

impl Control {
    /// Sends a command to the core and waits for its reply.
    pub async fn call(&self, command: Command, origin: impl Into<String>) -> Reply {
        match self.enqueue(command, origin).await {
            Ok(queued) => answer(queued).await,
            Err(reply) => reply,
        }
    }

    /// Puts a command in the core's queue, and returns where its reply will come. The
    /// core takes its queue in order: every request queued after this returns runs
    /// after this one (what `"taken"` tells a client, see [`Reply::Taken`]).
    pub async fn enqueue(
        &self,
        command: Command,
        origin: impl Into<String>,
    ) -> Result<oneshot::Receiver<Reply>, Reply> {
        let (tx, rx) = oneshot::channel();
        let request = Request {
            command,
            origin: origin.into(),
            reply: tx,
        };
        match self.requests.send(request).await {
            Ok(()) => Ok(rx),
            Err(_) => Err(Reply::error(
                ErrorKind::Internal,
                "ember's core is not running",
            )),
        }
    }
}

/// The reply to a command queued with [`Control::enqueue`].
pub async fn answer(queued: oneshot::Receiver<Reply>) -> Reply {
    queued
        .await
        .unwrap_or_else(|_| Reply::error(ErrorKind::Internal, "ember's core dropped the request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Command, Error> {
        Command::from_json(text.as_bytes())
    }

    /// A kill's signal is "a name or a number", and a number is read as JSON writes one
    /// (found by a hostile review: `"signal":9` was refused, "expected a string").
    #[test]
    fn a_kill_signal_is_a_name_or_a_number() {
        for (json, signal) in [
            (r#""signal":"HUP""#, "HUP"),
            (r#""signal":9"#, "9"),
            (r#""signal":-1"#, "-1"),
            (r#""signal":"9""#, "9"),
        ] {
            let text = format!(r#"{{"cmd":"kill","names":["web"],{json}}}"#);
            match read(&text) {
                Ok(Command::Kill(k)) => assert_eq!(k.signal, signal, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for json in [r#""signal":1.5"#, r#""signal":true"#, r#""signal":null"#] {
            let text = format!(r#"{{"cmd":"kill","names":["web"],{json}}}"#);
            let e = read(&text).unwrap_err();
            assert!(e.message.contains("a signal name"), "{text}: {e:?}");
        }
    }

    #[test]
    fn commands_read_as_documented() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read(r#"{"cmd":"start","names":["web"]}"#),
            Ok(Command::Start(Targets::new(names(&["web"]))))
        );
        assert_eq!(
            read(r#"{"cmd":"restart","names":["web"],"wait":true}"#),
            Ok(Command::Restart(Targets {
                names: names(&["web"]),
                wait: true
            }))
        );
        assert_eq!(
            read(r#"{"cmd":"status"}"#),
            Ok(Command::Status(StatusArgs::default()))
        );
        assert_eq!(
            read(r#"{"cmd":"status","names":["a"],"details":true}"#),
            Ok(Command::Status(StatusArgs {
                names: names(&["a"]),
                details: true
            }))
        );
        assert_eq!(
            read(r#"{"cmd":"logs","name":"web"}"#),
            Ok(Command::Logs(LogsArgs {
                name: "web".into(),
                lines: LOG_LINES_DEFAULT,
                follow: false
            }))
        );
        assert_eq!(read(r#"{"cmd":"timeline"}"#), Ok(Command::Timeline));
        // Through serde too (a reply or a file that embeds a command).
        let c: Command = serde_json::from_str(r#"{"cmd":"reload"}"#).unwrap();
        assert_eq!(c, Command::Reload);
    }

    #[test]
    fn every_command_reads_back_as_written() {
        let commands = [
            Command::Status(StatusArgs {
                names: vec!["a".into()],
                details: true,
            }),
            Command::Start(Targets::new(vec!["a".into(), "b".into()])),
            Command::Stop(Targets {
                names: vec!["a".into()],
                wait: true,
            }),
            Command::Restart(Targets::new(vec!["a".into()])),
            Command::ResetFailed(ResetFailedArgs::default()),
            Command::ResetFailed(ResetFailedArgs {
                names: vec!["a".into()],
            }),
            Command::Kill(KillArgs {
                names: vec!["a".into()],
                signal: "SIGHUP".into(),
                main: true,
            }),
            Command::Reload,
            Command::Logs(LogsArgs {
                name: "a".into(),
                lines: 3,
                follow: true,
            }),
            Command::Timeline,
            Command::Poweroff,
            Command::Reboot,
            Command::Halt,
        ];
        for command in commands {
            let text = serde_json::to_string(&command).unwrap();
            assert_eq!(read(&text), Ok(command.clone()), "{text}");
            assert!(text.contains(&format!("\"cmd\":\"{}\"", command.verb())));
        }
    }

    #[test]
    fn bad_commands_are_refused_with_what_to_change() {
        let refused = |text: &str| read(text).unwrap_err();
        // A key twice is refused whichever of the two would win.
        let e = refused(r#"{"cmd":"status","cmd":"reboot"}"#);
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("given twice"), "{e}");
        let e = refused(r#"{"cmd":"start","names":["a"],"names":["b"]}"#);
        assert!(e.message.contains("given twice"), "{e}");
        // A field of the wrong type is named, with the type it must have.
        let e = refused(r#"{"cmd":5}"#);
        assert_eq!(
            e.message,
            "\"cmd\" must be a string such as \"status\", not a number"
        );
        let e = refused(r#"{"cmd":"start","names":"web"}"#);
        assert!(
            e.message
                .contains("\"names\": invalid type: string \"web\", expected an array"),
            "{e}"
        );
        let e = refused(r#"{"cmd":"start","names":["a"],"wait":"yes"}"#);
        assert!(e.message.contains("\"wait\""), "{e}");
        let e = refused(r#"{"cmd":"logs","name":"a","lines":-1}"#);
        assert!(e.message.contains("\"lines\""), "{e}");
        // Unknown fields and verbs, missing fields.
        let e = refused(r#"{"cmd":"start","names":["a"],"x":1}"#);
        assert!(e.message.contains("unknown field `x`"), "{e}");
        let e = refused(r#"{"cmd":"reboot","now":true}"#);
        assert!(e.message.contains("takes no arguments"), "{e}");
        assert_eq!(
            refused(r#"{"cmd":"explode"}"#).kind,
            ErrorKind::UnknownCommand
        );
        assert!(refused(r#"{"cmd":"start"}"#)
            .message
            .contains("missing field `names`"));
        assert!(refused(r#"{"names":[]}"#)
            .message
            .contains("missing \"cmd\""));
        assert!(refused("[1,2]").message.contains("JSON object"));
        assert!(refused("{not json").message.contains("malformed JSON"));
    }

    #[test]
    fn words_are_what_serde_writes() {
        fn check<T: Serialize + std::fmt::Display>(all: &[T]) {
            for value in all {
                assert_eq!(serde_json::to_value(value).unwrap(), value.to_string());
            }
        }
        check(State::ALL);
        check(Sub::ALL);
        check(Want::ALL);
        check(RunResult::ALL);
        check(ReadyKind::ALL);
        check(ServiceKind::ALL);
        check(Role::ALL);
        check(Stream::ALL);
        check(SystemState::ALL);
        for verb in Verb::ALL {
            assert_eq!(serde_json::to_value(verb).unwrap(), verb.word());
        }
    }

    #[test]
    fn replies_round_trip() {
        let r = Reply::error(ErrorKind::UnknownService, "no service named \"x\"");
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"error":{"kind":"unknown_service","message":"no service named \"x\""}}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&s).unwrap(), r);
        assert_eq!(serde_json::to_string(&Reply::ok()).unwrap(), r#"{"ok":{}}"#);
    }
}
