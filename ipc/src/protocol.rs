//! The control protocol: what an adapter may ask of the core, and what the core tells.
//!
//! On the local socket every value below is one line of JSON. The same types serve the
//! MQTT and D-Bus adapters, so a command means the same thing whichever way it arrives.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Lines kept per service for `logs`, and the default number a `logs` request returns.
pub const LOG_LINES_KEPT: usize = 200;
pub const LOG_LINES_DEFAULT: usize = 10;
/// Transitions kept per service for `timeline`, besides its first spawn and activation.
pub const TRANSITIONS_KEPT: usize = 16;

/// A request to the core. Start, stop and restart only change a service's *want*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// The status of the named services, or of every service when `names` is empty.
    /// With `details`, each also carries its resource use (measured now), its
    /// dependencies and its processes: what `ember ctl status` shows.
    Status {
        #[serde(default)]
        names: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        details: bool,
    },
    Start {
        names: Vec<String>,
    },
    Stop {
        names: Vec<String>,
    },
    Restart {
        names: Vec<String>,
    },
    /// Re-read the configuration; rejected whole when it has any error.
    Reload,
    /// The last `lines` lines a service wrote.
    Logs {
        name: String,
        #[serde(default = "default_lines")]
        lines: usize,
    },
    /// When each service was spawned, became active, failed and restarted during this run
    /// of ember (this boot, as PID 1): what `ember analyze` reads.
    Timeline,
    Poweroff,
    Reboot,
    Halt,
}

fn default_lines() -> usize {
    LOG_LINES_DEFAULT
}

impl Command {
    /// The verb, as spelled on the wire (`"start"`, `"status"`...), for logs and errors.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Status { .. } => "status",
            Command::Start { .. } => "start",
            Command::Stop { .. } => "stop",
            Command::Restart { .. } => "restart",
            Command::Reload => "reload",
            Command::Logs { .. } => "logs",
            Command::Timeline => "timeline",
            Command::Poweroff => "poweroff",
            Command::Reboot => "reboot",
            Command::Halt => "halt",
        }
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
    Logs {
        lines: Vec<LogLine>,
    },
    Timeline(Timeline),
    Error(Error),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Ok {
            services: Vec::new(),
        }
    }
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::Error(Error {
            kind,
            message: message.into(),
        })
    }
}

/// A typed error, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
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
    ServiceRemoved { name: String },
    /// A service wrote a line.
    Log(LogLine),
    /// The system as a whole changed state.
    System { state: SystemState },
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

/// One service's state as every adapter shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// inactive | activating | active | deactivating | failed
    pub state: String,
    /// running | exited | start | auto-restart | dead | waiting | dependency | ...
    pub sub_state: String,
    /// up | down
    pub want: String,
    pub pid: Option<u32>,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Exit code of the last run that exited.
    pub exit_code: Option<i32>,
    /// Signal that ended the last run, e.g. "SIGKILL".
    #[serde(default)]
    pub exit_signal: Option<String>,
    /// How the last run that ended went, in systemd's words: success, exit-code, signal,
    /// oom-kill, timeout, watchdog, spawn. None before any run has ended.
    #[serde(default)]
    pub result: Option<String>,
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
    /// How readiness is decided: none, exit, log, delay, notify, tcp, file, exec, pid-file.
    pub ready: String,
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
    /// stdout | stderr
    pub stream: String,
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
    /// machine (PID 1 of the machine), namespace (PID 1 of a PID namespace) or supervisor.
    pub role: String,
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
    /// simple | oneshot | notify | forking
    pub kind: String,
    /// How readiness is decided: none, exit, log, delay, notify, tcp, file, exec, pid-file.
    pub ready: String,
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
    /// inactive | activating | active | deactivating | failed
    pub state: String,
    pub sub_state: String,
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

/// What an adapter holds: the way in (commands) and the way out (events).
#[derive(Debug, Clone)]
pub struct Control {
    pub requests: mpsc::Sender<Request>,
    pub events: broadcast::Sender<Event>,
}

impl Control {
    /// Sends a command to the core and waits for its reply.
    pub async fn call(&self, command: Command, origin: impl Into<String>) -> Reply {
        let (tx, rx) = oneshot::channel();
        let request = Request {
            command,
            origin: origin.into(),
            reply: tx,
        };
        if self.requests.send(request).await.is_err() {
            return Reply::error(ErrorKind::Internal, "ember's core is not running");
        }
        rx.await.unwrap_or_else(|_| {
            Reply::error(ErrorKind::Internal, "ember's core dropped the request")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_as_documented() {
        let c: Command = serde_json::from_str(r#"{"cmd":"start","names":["web"]}"#).unwrap();
        assert_eq!(
            c,
            Command::Start {
                names: vec!["web".into()]
            }
        );
        let c: Command = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(
            c,
            Command::Status {
                names: vec![],
                details: false
            }
        );
        let c: Command =
            serde_json::from_str(r#"{"cmd":"status","names":["a"],"details":true}"#).unwrap();
        assert_eq!(
            c,
            Command::Status {
                names: vec!["a".into()],
                details: true
            }
        );
        let c: Command = serde_json::from_str(r#"{"cmd":"logs","name":"web"}"#).unwrap();
        assert_eq!(
            c,
            Command::Logs {
                name: "web".into(),
                lines: LOG_LINES_DEFAULT
            }
        );
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"start","names":["a"],"x":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"explode"}"#).is_err());
        let c: Command = serde_json::from_str(r#"{"cmd":"timeline"}"#).unwrap();
        assert_eq!(c, Command::Timeline);
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
