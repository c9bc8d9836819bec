//! The command line of `ember fleet` (run by `ember fleet ...`, or as `ember-fleet`).

use ember_ipc::adapter::{parse_url, Secret};
use ember_mqtt::connect::Broker;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
ember fleet — the boards of a fleet over MQTT: one view, and one command with a known outcome

Usage:
  ember fleet status [--group G] [--device GLOB] [--service GLOB] [--json]
  ember fleet start|stop|restart SERVICE (--group G | --device GLOB) [--wait] [--timeout 30s]
  ember fleet kill SERVICE (--group G | --device GLOB) [--signal SIG]
  ember fleet reset-failed SERVICE (--group G | --device GLOB)
  ember fleet watch [--group G] [--device GLOB] [--service GLOB] [--json] [--lines]

Commands:
  status      Every board the broker knows of: online or offline (its status topic, the
              last will), its system state, its groups, when it last changed; then each
              service across the boards (\"web: 998 active, 1 failed (board-17), 1 offline
              (board-412)\"). Read from the retained topics with one subscription: done
              once the broker has sent them all (a message ember fleet publishes after
              subscribing comes back after them), or after --timeout (default 5 s), or,
              where the broker's ACL forbids that message, after 500 ms without one. It
              says how many boards answered, and when the view may be incomplete.
  start SERVICE, stop SERVICE, restart SERVICE
              The command to the boards selected: one message on the group's topic
              (--group alone), or one to each board (--device). Each board's reply is
              collected; the boards that did not take it are listed with why: refused (with
              its code: not-allowed, unknown-service, busy...), failed (with the reason),
              offline (never skipped), or no answer. With --wait each board answers once its
              ember says the service has settled: active in a new run (restart), active
              (start), stopped (stop); or failed, with the reason.
  kill SERVICE
              A signal to the service's processes on each board (--signal, default
              SIGTERM: `ember ctl kill`); a board where it is not running says so (failed).
  reset-failed SERVICE
              The service's failures forgotten on each board (`ember ctl reset-failed`):
              a failed one becomes inactive and stays down.
  watch       One line per change: a board online or offline, a service's new state, a
              board whose seq jumped (it missed changes: its adapter kept only the latest
              state while the broker was away), a board whose ember started again. On a
              terminal, a table that refreshes (--lines: lines there too). Until Ctrl-C,
              or --timeout.

Selecting:
  -g, --group G          boards in fleet group G (the `groups` of their [mqtt] table, which
                         each board publishes on <prefix>/<device>/system)
  -d, --device GLOB      boards whose device name matches (* any run, ? one character);
                         with --group, the boards of the group that match
  -s, --service GLOB     status, watch: only the services that match
Commands:
  -w, --wait             start, stop, restart: wait until each board's service has settled
      --signal SIG       kill: the signal (HUP, SIGHUP, SIGRTMIN+N or a number; default SIGTERM)
  -t, --timeout TIME     \"30s\", \"2m\", \"1500ms\". start, stop, restart: how long to wait for
                         the boards' answers (default 30 s; with --wait, each board waits
                         that long, in whole seconds, and ember fleet up to 2 s more for
                         their answers); status: at most this long for the retained states
                         (default 5 s); watch: watch this long, then exit 0. At most a year
Output:
      --json             status, start, stop, restart: one JSON document; watch: one JSON
                         object per line
      --lines            watch: one line per change, even on a terminal
Broker (the same settings as a board's [mqtt]):
  -b, --broker URL       mqtt://host[:port] or mqtts://host[:port] (default: the environment's
                         EMBER_FLEET_BROKER, else mqtt://127.0.0.1:1883)
      --prefix PREFIX    the boards' topic prefix, [mqtt] prefix (default ember)
      --client-id ID     (default ember-fleet-<hostname>-<pid>)
      --username NAME
      --password-file FILE   the password, on the file's first line
      --ca-file FILE     mqtts://: the CA that signed the broker's certificate (PEM)
      --cert-file FILE   mqtts://: a client certificate (PEM), with --key-file
      --key-file FILE    its private key (PEM)
  -h, --help             this help
  -V, --version          the version

What ember fleet reads and writes (for the broker's ACL): it reads <prefix>/+/status,
<prefix>/+/system, <prefix>/+/service/+/state and <prefix>/+/reply, writes
<prefix>/<device>/service/<name>/cmd and <prefix>/group/<group>/service/<name>/cmd, and
reads and writes ember-fleet/<client id>/# (the message that marks the end of the
retained states). A board's seq is checked for jumps only when every state of it is read.

Exit status:
  0  status, watch: done. start, stop, restart, kill, reset-failed: every board selected
     took the command (with --wait: its service settled as asked)
  1  a board refused the command, or its service failed
  2  a usage error; the broker cannot be reached, or refused ember fleet
  3  an online board did not answer in time (with --wait: or its service did not settle)
  4  a board selected is offline (and every other one did as asked)
  5  no board the broker knows of is selected by --group and --device
  When several apply: 1, then 3, then 4.
";

/// The longest --timeout: a year (watch runs until Ctrl-C without one).
const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    /// "start", "stop", "restart", "kill" or "reset-failed", and the service.
    Command {
        verb: &'static str,
        service: String,
    },
    Watch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub action: Action,
    pub url: String,
    pub broker: Broker,
    pub client_id: String,
    pub prefix: String,
    pub group: Option<String>,
    pub device: Option<String>,
    pub service: Option<String>,
    pub json: bool,
    pub lines: bool,
    pub wait: bool,
    /// kill's signal; the board's default (SIGTERM) when not given.
    pub signal: Option<String>,
    pub timeout: Option<Duration>,
}

pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// The broker's files, as named on the command line; read by [`load`].
#[derive(Debug, Default)]
struct Files {
    password: Option<PathBuf>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Reads the command line; errors say what to write instead.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut url = std::env::var("EMBER_FLEET_BROKER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_owned());
    let (mut prefix, mut client_id, mut username) = ("ember".to_owned(), None, None);
    let (mut group, mut device, mut service) = (None, None, None);
    let (mut json, mut lines, mut wait, mut timeout) = (false, false, false, None);
    let mut signal: Option<String> = None;
    let mut files = Files::default();
    let value = |parser: &mut lexopt::Parser, name: &str| -> Result<String, String> {
        parser
            .value()
            .map_err(|e| format!("{e}; try `ember fleet --help`"))?
            .into_string()
            .map_err(|_| format!("the value of {name} must be valid UTF-8"))
    };
    while let Some(arg) = parser
        .next()
        .map_err(|e| format!("{e}; try `ember fleet --help`"))?
    {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('b') | Long("broker") => url = value(&mut parser, "--broker")?,
            Long("prefix") => prefix = value(&mut parser, "--prefix")?,
            Long("client-id") => client_id = Some(value(&mut parser, "--client-id")?),
            Long("username") => username = Some(value(&mut parser, "--username")?),
            Long("password-file") => {
                files.password = Some(value(&mut parser, "--password-file")?.into())
            }
            Long("ca-file") => files.ca = Some(value(&mut parser, "--ca-file")?.into()),
            Long("cert-file") => files.cert = Some(value(&mut parser, "--cert-file")?.into()),
            Long("key-file") => files.key = Some(value(&mut parser, "--key-file")?.into()),
            Short('g') | Long("group") => group = Some(value(&mut parser, "--group")?),
            Short('d') | Long("device") => device = Some(value(&mut parser, "--device")?),
            Short('s') | Long("service") => service = Some(value(&mut parser, "--service")?),
            Long("json") => json = true,
            Long("lines") => lines = true,
            Short('w') | Long("wait") => wait = true,
            Long("signal") => signal = Some(value(&mut parser, "--signal")?),
            Short('t') | Long("timeout") => {
                let text = value(&mut parser, "--timeout")?;
                let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
                    format!("--timeout {text:?}: {e}; write e.g. 30s, 2m or 1500ms")
                })?;
                if parsed.is_zero() {
                    return Err("--timeout must be more than 0, e.g. 30s".into());
                }
                // A deadline is the clock plus the timeout: one past what the clock
                // holds would panic there.
                if parsed > MAX_TIMEOUT {
                    return Err(format!(
                        "--timeout {text:?} is more than a year; for watch, leave it out to watch until Ctrl-C"
                    ));
                }
                timeout = Some(parsed);
            }
            Value(v) => words.push(
                v.into_string()
                    .map_err(|_| "arguments must be valid UTF-8".to_owned())?,
            ),
            other => return Err(format!("{}; try `ember fleet --help`", other.unexpected())),
        }
    }
    let mut words = words.into_iter();
    let action =
        match words.next().as_deref() {
            None => return Err(
                "say what to do: status, start, stop, restart, kill, reset-failed or watch; try `ember fleet --help`"
                    .into(),
            ),
            Some("help") => return Ok(Parsed::Help),
            Some("status") => Action::Status,
            Some("watch") => Action::Watch,
            Some(verb @ ("start" | "stop" | "restart" | "kill" | "reset-failed")) => {
                let verb = match verb {
                    "start" => "start",
                    "stop" => "stop",
                    "kill" => "kill",
                    "reset-failed" => "reset-failed",
                    _ => "restart",
                };
                let Some(service) = words.next() else {
                    return Err(format!(
                        "{verb} needs a service: ember fleet {verb} SERVICE --group G"
                    ));
                };
                Action::Command { verb, service }
            }
            Some(other) => {
                return Err(format!(
            "unknown command \"{other}\"; ember fleet takes status, start, stop, restart, kill, reset-failed or watch"
        ))
            }
        };
    if let Some(extra) = words.next() {
        return Err(format!(
            "unexpected argument \"{extra}\"; one service per command (a group or --device selects the boards)"
        ));
    }
    // ember's own rule for the boards' [mqtt] prefix and groups: a value no board can
    // have is refused before anything is sent.
    ember_ipc::names::check_topic_level("--prefix", &prefix, true)?;
    if let Some(group) = &group {
        ember_ipc::names::check_topic_level("--group", group, false)?;
    }
    for (name, value) in [("--client-id", &client_id), ("--username", &username)] {
        if let Some(value) = value {
            ember_ipc::names::check_mqtt_string(name, value)?;
        }
    }
    match &action {
        Action::Command { service, verb } => {
            if service.contains(['*', '?']) {
                return Err(format!(
                    "\"{service}\" is not a service name; {verb} takes one name, without globs"
                ));
            }
            // ember's own rule: a name no board can have is refused before it is sent.
            ember_ipc::names::check_service_name(service)?;
            if group.is_none() && device.is_none() {
                return Err(format!(
                    "say which boards: --group G (the boards of a fleet group) or --device GLOB \
                     (e.g. --device '*' for every board); ember fleet {verb} {service} --group G"
                ));
            }
        }
        _ => {
            if wait {
                return Err("--wait goes with start, stop and restart".into());
            }
        }
    }
    let verb = match &action {
        Action::Command { verb, .. } => Some(*verb),
        _ => None,
    };
    if wait && matches!(verb, Some("kill" | "reset-failed")) {
        return Err("--wait goes with start, stop and restart".into());
    }
    if signal.is_some() && verb != Some("kill") {
        return Err("--signal goes with kill".into());
    }
    if let Some(signal) = &signal {
        // Sent as the board's command's "signal": one line of text, as a name is.
        ember_ipc::names::check_mqtt_string("--signal", signal)?;
    }
    if matches!(action, Action::Command { .. }) && service.is_some() {
        return Err(
            "--service selects services for status and watch; start, stop and restart name theirs"
                .into(),
        );
    }
    if lines && action != Action::Watch {
        return Err("--lines goes with watch".into());
    }
    let address = parse_url(&url).map_err(|e| format!("--broker: {e}"))?;
    let broker = load(address, username, &files)?;
    let client_id = client_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        format!("ember-fleet-{host}-{}", std::process::id())
    });
    Ok(Parsed::Run(Box::new(Options {
        action,
        url,
        broker,
        client_id,
        prefix,
        group,
        device,
        service,
        json,
        lines,
        wait,
        signal,
        timeout,
    })))
}

/// The broker with its files read: a password on the file's first line, PEM files whole.
fn load(
    address: ember_ipc::adapter::MqttUrl,
    username: Option<String>,
    files: &Files,
) -> Result<Broker, String> {
    let read = |option: &str, path: &Option<PathBuf>| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {option} {}: {e}", p.display()))
            })
            .transpose()
    };
    let password = read("--password-file", &files.password)?
        .map(|text| Secret::new(text.lines().next().unwrap_or_default().to_owned()));
    if password.is_some() && username.is_none() {
        return Err("--password-file goes with --username".into());
    }
    let (ca, cert, key) = (
        read("--ca-file", &files.ca)?,
        read("--cert-file", &files.cert)?,
        read("--key-file", &files.key)?.map(Secret::new),
    );
    if address.tls && ca.is_none() {
        return Err(
            "mqtts:// needs --ca-file, the CA that signed the broker's certificate \
                    (no system store is used)"
                .into(),
        );
    }
    if !address.tls && (ca.is_some() || cert.is_some() || key.is_some()) {
        return Err(
            "--ca-file, --cert-file and --key-file are for mqtts://; --broker is mqtt://".into(),
        );
    }
    if cert.is_some() != key.is_some() {
        return Err("give both --cert-file and --key-file for a client certificate".into());
    }
    Ok(Broker {
        host: address.host,
        port: address.port,
        tls: address.tls,
        username,
        password,
        ca,
        cert,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(OsString::from).collect())? {
            Parsed::Run(o) => Ok(*o),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn commands_and_their_options() {
        let o = run(&["restart", "web", "--group", "all", "--wait", "-t", "1500ms"]).unwrap();
        assert_eq!(
            o.action,
            Action::Command {
                verb: "restart",
                service: "web".into()
            }
        );
        assert_eq!(o.group.as_deref(), Some("all"));
        assert!(o.wait);
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
        // Options before the command too.
        let o = run(&["--broker", "mqtt://10.0.0.2", "--json", "status"]).unwrap();
        assert_eq!((o.broker.host.as_str(), o.broker.port), ("10.0.0.2", 1883));
        assert!(o.json);
        assert_eq!(o.prefix, "ember");
    }

    #[test]
    fn mistakes_are_named_with_what_to_write() {
        for (args, says) in [
            (&["restart", "web"][..], "say which boards"),
            (&["restart"][..], "needs a service"),
            (
                &["restart", "web", "db", "-g", "a"][..],
                "one service per command",
            ),
            (&["restart", "w*", "-g", "a"][..], "not a service name"),
            // ember's rule for names, not one of this tool's own.
            (&["restart", "we b", "-g", "a"][..], "' ' is not allowed"),
            (&["restart", "", "-g", "a"][..], "cannot be empty"),
            (&["restart", "-rf", "-g", "a"][..], "option"),
            (
                &["stop", "cgroup.procs", "-g", "a"][..],
                "cgroup's own files",
            ),
            (&["status", "--wait"][..], "--wait goes with"),
            (&["status", "--lines"][..], "--lines goes with watch"),
            (&["status", "-t", "soon"][..], "write e.g. 30s"),
            (&["status", "--group", "a/b"][..], "one MQTT topic level"),
            (&["status", "--prefix", "$SYS"][..], "starts with $"),
            (&["status", "--group", "a\0"][..], "control character"),
            (&["status", "--client-id", "c\0"][..], "control character"),
            (&["status", "--username", "u\n"][..], "control character"),
            (&["status", "--broker", "http://x"][..], "mqtt://"),
            (&["status", "--broker", "mqtts://x"][..], "--ca-file"),
            (&["fly"][..], "unknown command"),
            (&[][..], "say what to do"),
            (
                &[
                    "status",
                    "--password-file",
                    "/nonexistent/pw",
                    "--username",
                    "u",
                ][..],
                "cannot read --password-file /nonexistent/pw",
            ),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
