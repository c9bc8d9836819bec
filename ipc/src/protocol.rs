//! The control protocol: what an adapter may ask of the core, and what the core tells.
//!
//! On the local socket every value below is one line of JSON. The same types serve the
//! MQTT and D-Bus adapters, so a command means the same thing whichever way it arrives.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Lines kept per service for `logs`, and the default number a `logs` request returns.
pub const LOG_LINES_KEPT: usize = 200;
pub const LOG_LINES_DEFAULT: usize = 10;

/// A request to the core. Start, stop and restart only change a service's *want*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// The status of the named services, or of every service when `names` is empty.
    Status {
        #[serde(default)]
        names: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        assert_eq!(c, Command::Status { names: vec![] });
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
