//! `ember ctl`: the client of the control socket, and how its answers look on a terminal.

use super::out::{out, outln};
use super::terminal;
use ember_ipc::socket::Client;
use ember_ipc::{
    Command, LogLine, LogsArgs, Reply, ServiceStatus, State, StatusArgs, StatusReply, Stream,
    SystemStatus, Targets, Verb,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HELP: &str = "\
ember ctl — control a running ember over its local socket

Usage: ember ctl [--socket PATH | --config PATH] COMMAND [ARGS]

Commands:
  status [--json]             every service, a line each: state, pid, uptime, restarts,
                              last exit; --json prints a JSON array instead. When ember
                              runs a fallback (its configuration had errors at start-up)
                              it says so first, with the errors, and exits 1
  status NAME... [--json]     NAME in full: state since when, main pid and the process
                              tree, restarts and last exit, readiness, dependencies and
                              their states, memory, CPU and tasks, the last 10 log lines
  start NAME... [--wait]      want NAME up, and what it requires and wants (as systemd's
                              start); --wait returns once it is active, or fails with the
                              reason when its run fails. worker@42 is made from the
                              template worker@ when it does not exist
  stop NAME... [--wait]       want NAME down; --wait returns once it has stopped. An
                              instance made by a start (worker@42) is then forgotten;
                              a stop of one that is not there is done
  restart NAME... [--wait]    stop, then start again; --wait returns once the new run is
                              active (not while the old one still is)
  kill NAME... [--signal SIG] [--main]
                              send SIG (default SIGTERM; a name such as HUP or SIGHUP,
                              SIGRTMIN+N, or a number) to every process of NAME, or with --main to
                              its main process only (systemctl kill); the service's want
                              does not change: one the signal ends restarts as its
                              `restart` says. Refused, sending nothing, when one is not
                              running or has no process left; a pattern
                              matches those that run
  reset-failed [NAME...]      forget NAME's failures, or every failed service's: a failed
                              one becomes inactive and stays down (a scheduled one waits
                              for its next time), and its restart count, start limit
                              and backoff begin afresh; nothing is started or stopped
  reload                      re-read the configuration: added services start, removed
                              ones stop, a service restarts only when how its process runs
                              changed (command, env, user, limits, output...); a change of
                              policy (restart, timeouts, dependencies...) applies in place.
                              Prints what it did; any error rejects it whole
  logs NAME [-n N] [-f]       the last N lines NAME wrote (default 10; 200 are kept);
                              -f keeps printing new lines until interrupted, through a
                              reexec too; when ember stops, it says so and exits 1
  subscribe [--logs] [--metrics]
                              every change as it happens, a JSON line each: a snapshot
                              of everything first, then each event (with --logs, every
                              line the services write too; with --metrics, each round
                              of [system] metrics_interval); the stream of the protocol
                              that adapters read (see the README); through a reexec,
                              a new snapshot; when ember stops, it says so and exits 1
  poweroff | reboot | halt    stop every service in reverse order; as PID 1 then power
                              off, reboot or halt, otherwise ember exits
  reexec [--binary PATH]      exec a new ember in PID 1's place (after an update of
                              ember, without a reboot): it takes over every service as
                              it runs, same pids. PATH: the new binary (default: the one
                              ember was started from). Returns once the new one answers;
                              one that cannot take over is refused, the old one runs on

Options:
  -s, --socket PATH   the control socket (default $EMBER_SOCKET, else /run/ember/control.sock)
  -c, --config PATH   use the [control] socket of this configuration file
      --json          print replies as JSON (status, start/stop/restart, kill,
                      reset-failed, reload, logs)
  -w, --wait          see start, stop, restart
  -n, --lines N       see logs
      --binary PATH   see reexec
      --signal SIG    see kill
      --main          see kill
  -f, --follow        see logs
      --logs          see subscribe
      --metrics       see subscribe
  -h, --help          print this help

NAME may be a pattern with * and ? (quote it from the shell): `stop 'worker@*'` acts
on every service ember has now whose name matches, as do start, restart, kill (every
one that runs), reset-failed and status.

Only root and the user ember runs as may use the socket, and whom [[control.allow]]
lets in, for what it grants. Text a service wrote (its lines, its status) is shown with
control characters escaped when printed to a terminal.
Exit status: 0 on success, 1 when ember refused, a service did not reach the state asked
for (the reason is printed) or ember runs a fallback configuration, 2 for a usage error;
a reader that goes away (`| head`) ends it quietly, as it ends any tool.
";

pub struct Invocation {
    pub socket: PathBuf,
    pub command: Ctl,
}

pub enum Ctl {
    Help,
    /// A request (built from the protocol's own types), and whether to print JSON.
    Request {
        command: Command,
        json: bool,
    },
}

pub fn parse(mut parser: lexopt::Parser) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut socket: Option<PathBuf> = None;
    let mut verb: Option<String> = None;
    let mut names = Vec::new();
    let (mut json, mut wait, mut follow, mut lines) =
        (false, false, false, ember_ipc::LOG_LINES_DEFAULT);
    let (mut with_logs, mut with_metrics, mut lines_given) = (false, false, false);
    let mut binary: Option<String> = None;
    let mut signal: Option<String> = None;
    let mut main = false;
    let usage = |m: String| format!("{m}; try `ember ctl --help`");
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('s') | Long("socket") => {
                socket = Some(parser.value().map_err(|e| usage(e.to_string()))?.into())
            }
            Short('c') | Long("config") => {
                let path: PathBuf = parser.value().map_err(|e| usage(e.to_string()))?.into();
                socket = Some(socket_of(&path)?);
            }
            Short('h') | Long("help") => {
                return Ok(Invocation {
                    socket: PathBuf::new(),
                    command: Ctl::Help,
                })
            }
            Long("json") => json = true,
            Long("logs") => with_logs = true,
            Long("metrics") => with_metrics = true,
            Long("binary") => {
                let value = parser.value().map_err(|e| usage(e.to_string()))?;
                binary = Some(
                    value
                        .string()
                        .map_err(|_| usage("--binary takes a UTF-8 path".into()))?,
                );
            }
            Short('w') | Long("wait") => wait = true,
            Long("main") => main = true,
            Long("signal") => {
                let value = parser.value().map_err(|e| usage(e.to_string()))?;
                signal = Some(
                    value
                        .string()
                        .map_err(|_| usage("--signal takes a signal's name or number".into()))?,
                );
            }
            Short('f') | Long("follow") => follow = true,
            Short('n') | Long("lines") => {
                let value = parser.value().map_err(|e| usage(e.to_string()))?;
                lines = value
                    .string()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| usage("-n takes a number of lines".into()))?;
                lines_given = true;
            }
            Value(v) => {
                let word = v
                    .into_string()
                    .map_err(|v| super::not_utf8(&v, "ember ctl --help"))?;
                if verb.is_none() {
                    verb = Some(word);
                } else {
                    names.push(word);
                }
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    let socket = socket
        .or_else(|| std::env::var_os("EMBER_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET));
    // `timeline` is `ember analyze`'s; `hello` is for programs.
    let commands = || {
        Verb::ALL
            .into_iter()
            .filter(|v| !matches!(v, Verb::Timeline | Verb::Hello))
    };
    let listed = || commands().map(cli_word).collect::<Vec<_>>().join(", ");
    let Some(verb) = verb else {
        return Err(usage(format!("name a command: {}", listed())));
    };
    let verb = commands().find(|v| cli_word(*v) == verb).ok_or_else(|| {
        usage(format!(
            "unknown command \"{}\"; commands are {}",
            ember_ipc::text::shortened(&verb),
            listed()
        ))
    })?;
    let takes = |option: bool, name: &str, verbs: &str| {
        if option {
            Err(usage(format!("{name} applies to {verbs} only")))
        } else {
            Ok(())
        }
    };
    if verb != Verb::Logs {
        takes(follow, "--follow", "logs")?;
        takes(lines_given, "--lines (-n)", "logs")?;
    }
    // What prints no reply (poweroff, reexec) or only JSON (subscribe) has no --json.
    if !matches!(
        verb,
        Verb::Status
            | Verb::Start
            | Verb::Stop
            | Verb::Restart
            | Verb::ResetFailed
            | Verb::Kill
            | Verb::Reload
            | Verb::Logs
    ) {
        takes(
            json,
            "--json",
            "status, start, stop, restart, kill, reset-failed, reload and logs",
        )?;
    }
    if verb != Verb::Subscribe {
        takes(with_logs, "--logs", "subscribe")?;
        takes(with_metrics, "--metrics", "subscribe")?;
    }
    if verb != Verb::Reexec {
        takes(binary.is_some(), "--binary", "reexec")?;
    }
    if verb != Verb::Kill {
        takes(signal.is_some(), "--signal", "kill")?;
        takes(main, "--main", "kill")?;
    }
    if !matches!(verb, Verb::Start | Verb::Stop | Verb::Restart) {
        takes(wait, "--wait", "start, stop and restart")?;
    }
    if !matches!(
        verb,
        Verb::Status
            | Verb::Start
            | Verb::Stop
            | Verb::Restart
            | Verb::ResetFailed
            | Verb::Kill
            | Verb::Logs
    ) && !names.is_empty()
    {
        return Err(usage(format!("`{verb}` takes no service names")));
    }
    let targets = |names: Vec<String>| {
        if names.is_empty() {
            Err(usage(format!("`{verb}` needs at least one service name")))
        } else {
            Ok(Targets { names, wait })
        }
    };
    let command = match verb {
        Verb::Status => Command::Status(StatusArgs {
            details: !names.is_empty(),
            names,
        }),
        Verb::Start => Command::Start(targets(names)?),
        Verb::Stop => Command::Stop(targets(names)?),
        Verb::Restart => Command::Restart(targets(names)?),
        Verb::ResetFailed => Command::ResetFailed(ember_ipc::ResetFailedArgs { names }),
        Verb::Kill => {
            if names.is_empty() {
                return Err(usage("`kill` needs at least one service name".into()));
            }
            Command::Kill(ember_ipc::KillArgs {
                names,
                signal: signal.unwrap_or_else(|| "SIGTERM".into()),
                main,
            })
        }
        Verb::Logs => {
            if names.len() != 1 {
                return Err(usage("`logs` takes exactly one service name".into()));
            }
            // No service is named so (a name holds no * or ?): it was meant as a pattern.
            if names[0].contains(['*', '?']) {
                return Err(usage(format!(
                    "`logs` takes one service name, not a pattern (\"{}\"); `ember ctl status` lists the services",
                    ember_ipc::text::shortened(&names[0])
                )));
            }
            Command::Logs(LogsArgs {
                name: names.remove(0),
                lines,
                follow,
            })
        }
        Verb::Subscribe => Command::Subscribe(ember_ipc::SubscribeArgs {
            logs: with_logs,
            metrics: with_metrics,
        }),
        Verb::Reload => Command::Reload,
        Verb::Poweroff => Command::Poweroff,
        Verb::Reboot => Command::Reboot,
        Verb::Reexec => Command::Reexec(ember_ipc::ReexecArgs { binary }),
        Verb::Halt | Verb::Timeline | Verb::Hello => Command::Halt,
    };
    Ok(Invocation {
        socket,
        command: Ctl::Request { command, json },
    })
}

/// A command as typed: the protocol's word with a dash (`reset-failed`, as systemctl
/// spells it, for `reset_failed`).
fn cli_word(verb: Verb) -> String {
    verb.word().replace('_', "-")
}

/// The `[control] socket` of a configuration file. Only its `[control]` table has to be
/// right: a configuration that does not load (the one ember fell back from) still names
/// its socket.
fn socket_of(path: &std::path::Path) -> Result<PathBuf, String> {
    let loaded = crate::config::load(path);
    loaded
        .config
        .or(loaded.settings)
        .map(|c| c.control.socket)
        .ok_or_else(|| {
            format!(
                "cannot read {}, so its socket is unknown; run `ember check --config {}`",
                path.display(),
                path.display()
            )
        })
}

/// Service names with `*` or `?` are patterns, matched against the services ember has
/// now (as systemctl matches its patterns against the loaded units): `stop 'worker@*'`
/// stops every instance there is. A pattern that matches nothing is an error, but for a
/// stop or a reset (`nothing_to` that: said, not failed).
fn expand(
    client: &mut Client,
    names: Vec<String>,
    nothing_to: Option<&str>,
) -> Result<Vec<String>, String> {
    expand_among(client, names, nothing_to, None)
}

/// Which of the services a pattern matches it is meant for, when not every one: a
/// `kill`'s pattern is for those with processes to signal (as `systemctl kill 'worker@*'`
/// signals the instances that run). Found by a hostile review: `kill 'worker@*'` matched
/// an instance between two runs, or one not started, and the kill, refused whole,
/// signalled none.
struct Among {
    /// What the services are, for "no running service matches".
    what: &'static str,
    takes: fn(&ServiceStatus) -> bool,
}

/// A service that has processes to signal: running, not waiting out a restart delay
/// (what ember refuses to signal, as "not running"), and not a oneshot that has run
/// (what it left is signalled when it is named).
fn has_processes(s: &ServiceStatus) -> bool {
    matches!(
        s.state,
        State::Activating | State::Active | State::Deactivating
    ) && !matches!(
        s.sub_state,
        ember_ipc::Sub::AutoRestart | ember_ipc::Sub::Exited
    )
}

/// One with a main process to signal (`kill --main`).
fn has_main_process(s: &ServiceStatus) -> bool {
    has_processes(s) && s.pid.is_some()
}

fn expand_among(
    client: &mut Client,
    names: Vec<String>,
    nothing_to: Option<&str>,
    among: Option<Among>,
) -> Result<Vec<String>, String> {
    let Some(pattern) = names.iter().find(|n| n.contains(['*', '?'])) else {
        return Ok(names);
    };
    let everyone = match client.call(&Command::Status(StatusArgs::default()))? {
        Reply::Status(status) => status,
        // A client whose rules grant this command but not `status` (found by a hostile
        // review: a `restart 'web*'` was refused with a bare "status is not allowed").
        Reply::Error(e) if e.kind == ember_ipc::ErrorKind::AccessDenied => {
            return Err(format!(
                "the pattern \"{}\" is matched against the services ember lists, and listing them takes the status right: {}; name the services instead",
                ember_ipc::text::shortened(pattern),
                e.message
            ))
        }
        other => return unexpected(other),
    };
    let mut expanded = Vec::new();
    for name in names {
        if !name.contains(['*', '?']) {
            expanded.push(name);
            continue;
        }
        let before = expanded.len();
        expanded.extend(
            everyone
                .services
                .iter()
                .filter(|s| ember_ipc::glob::glob_match(&name, &s.name))
                .filter(|s| among.as_ref().is_none_or(|a| (a.takes)(s)))
                .map(|s| s.name.clone()),
        );
        if expanded.len() == before {
            let none = format!(
                "no {}service matches \"{}\"",
                among.as_ref().map_or("", |a| a.what),
                ember_ipc::text::shortened(&name)
            );
            let Some(verb) = nothing_to else {
                return Err(format!("{none}; `ember ctl status` lists the services"));
            };
            eprintln!("ember ctl: {}: nothing to {verb}", terminal::escape(&none));
        }
    }
    // Each once, where first named: a name and a pattern may both name it.
    let mut seen = std::collections::BTreeSet::new();
    expanded.retain(|n| seen.insert(n.clone()));
    Ok(expanded)
}

/// A start, stop or restart as requests that each fit in what ember reads: one, unless
/// the names are many and long. Each part is done as it is sent.
fn parts(command: &Command) -> Vec<Command> {
    let names = match command {
        Command::Start(t) | Command::Stop(t) | Command::Restart(t) => &t.names,
        Command::ResetFailed(args) => &args.names,
        Command::Kill(args) => &args.names,
        _ => return vec![command.clone()],
    };
    let groups = name_groups(names);
    if groups.len() < 2 {
        return vec![command.clone()];
    }
    groups
        .into_iter()
        .map(|names| match command {
            Command::Start(t) => Command::Start(Targets {
                names,
                wait: t.wait,
            }),
            Command::Stop(t) => Command::Stop(Targets {
                names,
                wait: t.wait,
            }),
            Command::Restart(t) => Command::Restart(Targets {
                names,
                wait: t.wait,
            }),
            Command::Kill(k) => Command::Kill(ember_ipc::KillArgs { names, ..k.clone() }),
            _ => Command::ResetFailed(ember_ipc::ResetFailedArgs { names }),
        })
        .collect()
}

/// `names` in groups whose requests each fit in what ember reads (each name as a JSON
/// string with its comma, and room for the rest of the request).
fn name_groups(names: &[String]) -> Vec<Vec<String>> {
    let budget = ember_ipc::socket::MAX_REQUEST - 4096;
    let cost = |n: &String| serde_json::to_string(n).map_or(n.len() * 6, |j| j.len()) + 1;
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    let mut used = 0;
    for name in names {
        let c = cost(name);
        if used + c > budget && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            used = 0;
        }
        used += c;
        if let Some(group) = groups.last_mut() {
            group.push(name.clone());
        }
    }
    groups
}

/// Runs one ctl command; returns the exit code.
pub fn run(invocation: Invocation) -> i32 {
    let Ctl::Request { command, json } = invocation.command else {
        out!("{HELP}");
        return 0;
    };
    let mut client = match Client::connect(&invocation.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ember ctl: {e}");
            return 1;
        }
    };
    match execute(&mut client, command, json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ember ctl: {}", terminal::escape(&e));
            1
        }
    }
}

fn execute(client: &mut Client, command: Command, json: bool) -> Result<i32, String> {
    let color = terminal::stdout_is_terminal() && std::env::var_os("NO_COLOR").is_none();
    match command {
        Command::Status(mut args) if args.details => {
            let names = expand(client, std::mem::take(&mut args.names), None)?;
            // In parts, as a start's names are (see `parts`).
            let mut status: Option<StatusReply> = None;
            for names in name_groups(&names) {
                let part = Command::Status(StatusArgs {
                    names,
                    ..args.clone()
                });
                let part = expect_status(client.call(&part)?)?;
                match &mut status {
                    Some(status) => status.services.extend(part.services),
                    None => status = Some(part),
                }
            }
            let Some(status) = status else {
                return Err("name at least one service".into());
            };
            if json {
                outln!("{}", pretty(&status.services)?);
                return Ok(fallback_code(&status.system));
            }
            // The states of the services each depends on, and each one's last lines.
            let everyone = expect_status(client.call(&Command::Status(StatusArgs::default()))?)?;
            let mut blocks = Vec::new();
            for service in &status.services {
                let logs = LogsArgs {
                    name: service.name.clone(),
                    lines: ember_ipc::LOG_LINES_DEFAULT,
                    follow: false,
                };
                let logs = match client.call(&Command::Logs(logs))? {
                    Reply::Logs { lines } => lines,
                    _ => Vec::new(),
                };
                blocks.push(render_block(
                    service,
                    &everyone.services,
                    &logs,
                    now_usec(),
                    color,
                ));
            }
            out!(
                "{}{}",
                render_fallback(&status.system, color),
                blocks.join("\n")
            );
            Ok(fallback_code(&status.system))
        }
        Command::Status(args) => {
            let status = expect_status(client.call(&Command::Status(args))?)?;
            if json {
                outln!("{}", pretty(&status.services)?);
            } else {
                out!(
                    "{}{}{}",
                    render_fallback(&status.system, color),
                    render_watchdog(&status.system, now_usec(), color),
                    render_table(&status.services, now_usec(), color)
                );
            }
            Ok(fallback_code(&status.system))
        }
        mut command @ (Command::Start(_) | Command::Stop(_) | Command::Restart(_)) => {
            let stop = matches!(command, Command::Stop(_));
            let mut wait = false;
            if let Command::Start(t) | Command::Stop(t) | Command::Restart(t) = &mut command {
                wait = t.wait;
                t.names = expand(client, std::mem::take(&mut t.names), stop.then_some("stop"))?;
                if t.names.is_empty() {
                    return Ok(0); // a stop of a pattern that matches nothing: nothing to do
                }
            }
            // In parts when one request would be longer than ember reads: a pattern may
            // match 1,024 instances of 64 characters (found by a hostile review: `stop
            // 'worker@*'`, the remedy a busy start advises, was then refused whole).
            let mut services = Vec::new();
            for part in parts(&command) {
                services.extend(expect_services(client.call(&part)?)?);
            }
            if json {
                outln!("{}", pretty(&services)?);
            } else if wait {
                for s in &services {
                    outln!("{}: {}", s.name, state_words(s));
                }
            }
            Ok(0)
        }
        Command::ResetFailed(mut args) => {
            // No name: every failed service, as ember finds them; a pattern matching
            // nothing: nothing to reset.
            let every = args.names.is_empty();
            args.names = expand(client, args.names, Some("reset"))?;
            if args.names.is_empty() && !every {
                return Ok(0);
            }
            let names = args.names.clone();
            let mut services = Vec::new();
            for part in parts(&Command::ResetFailed(args)) {
                services.extend(expect_services(client.call(&part)?)?);
            }
            if json {
                outln!("{}", pretty(&services)?);
            } else if every && services.is_empty() {
                outln!("no service has failed");
            } else {
                for s in &services {
                    outln!("{}: {}", s.name, state_words(s));
                }
                // A failed instance made by a start is forgotten by its reset, as by a
                // stop: it is not in the reply, and is said so rather than left unsaid.
                for name in names
                    .iter()
                    .filter(|n| !services.iter().any(|s| s.name == **n))
                {
                    outln!(
                        "{}: not there (an instance made by a start is forgotten once reset)",
                        terminal::escape(name)
                    );
                }
            }
            Ok(0)
        }
        Command::Kill(mut args) => {
            let among = if args.main {
                Among {
                    what: "running service with a main process ",
                    takes: has_main_process,
                }
            } else {
                Among {
                    what: "running ",
                    takes: has_processes,
                }
            };
            args.names = expand_among(client, args.names, None, Some(among))?;
            let mut services = Vec::new();
            for part in parts(&Command::Kill(args)) {
                services.extend(expect_services(client.call(&part)?)?);
            }
            if json {
                outln!("{}", pretty(&services)?);
            }
            Ok(0)
        }
        Command::Reload => match client.call(&Command::Reload)? {
            Reply::Reloaded(report) if json => {
                outln!("{}", pretty(&report)?);
                Ok(0)
            }
            Reply::Reloaded(report) => {
                out!("{}", render_reload(&report));
                Ok(0)
            }
            other => unexpected(other),
        },
        Command::Logs(args) => {
            let follow = args.follow;
            // Asked again after a reexec: every line kept, less those already printed.
            let again = Command::Logs(LogsArgs {
                lines: ember_ipc::LOG_LINES_KEPT,
                ..args.clone()
            });
            // At least the last line, to know where the stream stands (`-n 0 -f` too).
            let shown = args.lines;
            let mut reply = client.call(&Command::Logs(LogsArgs {
                lines: shown.max(1),
                ..args
            }))?;
            let (mut seen, mut skip_to) = (0, None);
            let mut first = true;
            loop {
                let Reply::Logs { lines } = reply else {
                    return unexpected(reply);
                };
                seen = lines.iter().map(|l| l.seq).fold(seen, u64::max);
                let from = if first {
                    lines.len().saturating_sub(shown)
                } else {
                    0
                };
                first = false;
                let mut text = String::new();
                for line in lines[from..]
                    .iter()
                    .filter(|l| skip_to.is_none_or(|s| l.seq > s))
                {
                    if json {
                        text += &serde_json::to_string(line)
                            .map(terminal::escape_json)
                            .map_err(|e| e.to_string())?;
                    } else {
                        text += &render_log_line(line);
                    }
                    text.push('\n');
                }
                out!("{text}");
                skip_to = None;
                if !follow {
                    return Ok(0);
                }
                reply = match client.next_reply()? {
                    Some(next) => next,
                    None => {
                        skip_to = Some(seen);
                        resume(client, &again)?
                    }
                };
            }
        }
        command @ Command::Subscribe(_) => {
            // The stream as it comes, a JSON line each: for scripts, and to watch a board.
            let mut reply = client.call(&command)?;
            loop {
                if let Reply::Error(e) = &reply {
                    return Err(e.message.clone());
                }
                outln!(
                    "{}",
                    serde_json::to_string(&reply)
                        .map(terminal::escape_json)
                        .map_err(|e| e.to_string())?
                );
                reply = match client.next_reply()? {
                    Some(next) => next,
                    // From the new binary, a snapshot first: `seq` says what changed.
                    None => resume(client, &command)?,
                };
            }
        }
        command @ Command::Reexec(_) => match client.call_or_closed(&command)? {
            Some(Reply::Error(e)) => Err(e.message),
            Some(other) => unexpected(other),
            // Closed: the old binary is gone. The new one answers on a new connection.
            None => {
                let hello = reconnect(client.path())?;
                outln!(
                    "reexec: ember {} took over (protocol {})",
                    hello.ember,
                    hello.protocol
                );
                Ok(0)
            }
        },
        command @ (Command::Poweroff
        | Command::Reboot
        | Command::Halt
        | Command::Timeline
        | Command::Hello(_)) => {
            let verb = command.verb();
            expect_services(client.call(&command)?)?;
            outln!("{verb}: ember is stopping every service");
            Ok(0)
        }
    }
}

/// A stream (`logs -f`, `subscribe`) that ember closed: a reexec closes every connection,
/// and the new binary answers on the same socket (the listener is handed over), so the
/// stream is asked for again there. An ember that no longer answers has stopped: said,
/// and exit 1 (the stream did not end because it was interrupted).
fn resume(client: &mut Client, command: &Command) -> Result<Reply, String> {
    let ended = |e: String| format!("the stream ended: ember stopped ({e})");
    *client = Client::connect(client.path()).map_err(ended)?;
    client.call(command).map_err(ended)
}

/// After a reexec: the new binary's hello, once it answers on the socket (within a
/// minute: it adopts every service first).
fn reconnect(socket: &std::path::Path) -> Result<ember_ipc::Hello, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let hello = Command::Hello(ember_ipc::HelloArgs {
            protocol: ember_ipc::PROTOCOL,
            client: Some("ember ctl".into()),
        });
        let answer = Client::connect(socket).and_then(|mut c| c.call(&hello));
        match answer {
            Ok(Reply::Hello(hello)) => return Ok(hello),
            Ok(other) => return unexpected(other),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(format!("the new ember did not answer within a minute: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(terminal::escape_json)
        .map_err(|e| e.to_string())
}

fn unexpected<T>(reply: Reply) -> Result<T, String> {
    match reply {
        Reply::Error(e) => Err(e.message),
        _ => Err("ember answered the request with the wrong kind of reply".into()),
    }
}

fn expect_services(reply: Reply) -> Result<Vec<ServiceStatus>, String> {
    match reply {
        Reply::Ok { services } => Ok(services),
        other => unexpected(other),
    }
}

fn expect_status(reply: Reply) -> Result<ember_ipc::StatusReply, String> {
    match reply {
        Reply::Status(status) => Ok(status),
        other => unexpected(other),
    }
}

/// Running a fallback configuration is an error for scripts: `ember ctl status` exits 1.
fn fallback_code(system: &SystemStatus) -> i32 {
    i32::from(system.config.fallback)
}

/// What an admin must see first when the configuration was rejected at start-up.
pub fn render_fallback(system: &SystemStatus, color: bool) -> String {
    if !system.config.fallback {
        return String::new();
    }
    let mut out = paint(
        &format!(
            "ember is running a fallback configuration: {} has errors, so no service of it runs",
            terminal::escape(&system.config.path)
        ),
        State::Failed,
        color,
    );
    out.push('\n');
    for problem in &system.config.problems {
        out.push_str(&format!("  {}\n", terminal::escape(problem)));
    }
    out.push_str("fix them (`ember check` lists them), then run `ember ctl reload`\n\n");
    out
}

/// The hardware watchdog, above the table when one is configured: armed and when it was
/// last petted, or why it is not armed.
pub fn render_watchdog(system: &SystemStatus, now_usec: u64, color: bool) -> String {
    let Some(w) = &system.watchdog else {
        return String::new();
    };
    let seconds = |ms: u64| format!("{}.{}s", ms / 1000, ms % 1000 / 100);
    let name = match &w.identity {
        Some(identity) => format!("{} ({})", w.device, terminal::escape(identity)),
        None => w.device.clone(),
    };
    let mut out = if w.armed {
        let last = match w.last_pet_usec {
            Some(at) => format!(", last {} ago", seconds(now_usec.saturating_sub(at) / 1000)),
            None => String::new(),
        };
        format!(
            "watchdog {name}: {}, timeout {}s, petted every {}{last} ({} pets); on shutdown: {}\n",
            paint("armed", State::Active, color),
            w.timeout_sec,
            seconds(w.pet_interval_ms),
            w.pets,
            w.on_shutdown
        )
    } else {
        let why = w.error.as_deref().unwrap_or("not open");
        format!(
            "watchdog {name}: {}: {}\n",
            paint("NOT ARMED", State::Failed, color),
            terminal::escape(why)
        )
    };
    if w.reset_by_watchdog {
        out.push_str("         └ it reset the board last time\n");
    }
    out.push('\n');
    out
}

/// What a reload did, a line per service that it touched.
pub fn render_reload(report: &ember_ipc::ReloadReport) -> String {
    let mut out = String::new();
    let keys = |c: &ember_ipc::SpecChange| c.keys.join(", ");
    for name in &report.added {
        out.push_str(&format!("added     {name}\n"));
    }
    for name in &report.removed {
        out.push_str(&format!("removed   {name}\n"));
    }
    for change in &report.restarted {
        out.push_str(&format!(
            "restarted {} ({} changed)\n",
            change.name,
            keys(change)
        ));
    }
    for change in &report.updated {
        out.push_str(&format!(
            "updated   {} ({} changed; applied without a restart)\n",
            change.name,
            keys(change)
        ));
    }
    for warning in &report.warnings {
        out.push_str(&format!("warning: {}\n", terminal::escape(warning)));
    }
    if out.is_empty() {
        out.push_str("reloaded: nothing changed\n");
    }
    out
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn state_words(s: &ServiceStatus) -> String {
    format!("{} ({})", s.state, s.sub_state)
}

/// "3s", "2m 13s", "1h 4m", "2d 3h": the two largest units are enough to read.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn paint(text: &str, state: State, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match state {
        State::Active => "32",
        State::Activating | State::Deactivating => "33",
        State::Failed => "1;31",
        State::Inactive => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// When a scheduled oneshot runs next: "in 42m (2026-12-05 10:00:00 UTC)".
fn next_run_words(at_usec: u64, now_usec: u64) -> String {
    let when = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(at_usec))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC");
    if at_usec <= now_usec {
        format!("now ({when})")
    } else {
        let wait = short_duration(Duration::from_micros(at_usec - now_usec));
        format!("in {wait} ({when})")
    }
}

/// The widest the NAME column grows: a longer name (they may have 64 characters) has a
/// line of its own above its row, so that one long name does not widen every row past a
/// terminal's 80 or 100 columns (found by a hostile review: one 64-character name made
/// every row 140 columns, and each wrapped).
const NAME_COLUMN_MOST: usize = 24;

/// The status table: one line per service, and the reason under the ones that need one.
pub fn render_table(services: &[ServiceStatus], now_usec: u64, color: bool) -> String {
    let name_width = services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, NAME_COLUMN_MOST);
    let mut out = format!(
        "{:name_width$}  {:28}  {:>7}  {:>8}  {:>8}  {}\n",
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
    );
    for s in services {
        let state = state_words(s);
        let state_cell = paint(&format!("{state:28}"), s.state, color);
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = if s.state == State::Active {
            short_duration(Duration::from_micros(now_usec.saturating_sub(s.since_usec)))
        } else {
            "-".into()
        };
        let last_exit = match (&s.exit_code, &s.exit_signal) {
            (Some(code), _) => format!("code {code}"),
            (None, Some(sig)) => sig.clone(),
            _ => "-".into(),
        };
        let name = if s.name.len() > name_width {
            out.push_str(&format!("{}\n", s.name));
            ""
        } else {
            &*s.name
        };
        out.push_str(&format!(
            "{name:name_width$}  {state_cell}  {pid:>7}  {uptime:>8}  {:>8}  {last_exit}\n",
            s.restarts
        ));
        let note = match (&s.reason, &s.status_text) {
            (Some(reason), _) if s.state != State::Active => Some(terminal::escape(reason)),
            (_, Some(text)) => Some(terminal::escape(text)),
            _ => s
                .next_run_usec
                .map(|at| format!("next run {}", next_run_words(at, now_usec))),
        };
        if let Some(note) = note {
            out.push_str(&format!("{:name_width$}  └ {note}\n", ""));
        }
    }
    out
}

/// `ember ctl status NAME`: one service in full, as `systemctl status` shows a unit.
pub fn render_block(
    s: &ServiceStatus,
    everyone: &[ServiceStatus],
    logs: &[LogLine],
    now_usec: u64,
    color: bool,
) -> String {
    let mut out = String::new();
    let dot = paint("●", s.state, color);
    let ago = short_duration(Duration::from_micros(now_usec.saturating_sub(s.since_usec)));
    let since = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(s.since_usec))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC");
    out.push_str(&format!(
        "{dot} {} - {} since {since}; {ago} ago\n",
        s.name,
        paint(&state_words(s), s.state, color)
    ));
    let mut row = |label: &str, value: String| out.push_str(&format!("{label:>10}: {value}\n"));
    row("Want", s.want.to_string());
    if let Some(reason) = s.reason.as_ref().filter(|_| s.state != State::Active) {
        row("Reason", terminal::escape(reason));
    }
    if let Some(text) = &s.status_text {
        row("Status", terminal::escape(text));
    }
    row("Ready", s.ready.to_string());
    if let Some(at) = s.next_run_usec {
        row("Next run", next_run_words(at, now_usec));
    }
    if let Some(pid) = s.pid {
        row("Main PID", pid.to_string());
    }
    let last_exit = match (&s.exit_code, &s.exit_signal) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(sig)) => sig.clone(),
        _ => "none yet".into(),
    };
    let result = s.result.map(|r| format!(" ({r})")).unwrap_or_default();
    row(
        "Restarts",
        format!("{} · last exit: {last_exit}{result}", s.restarts),
    );
    let details = s.details.as_deref().cloned().unwrap_or_default();
    for (label, names) in [
        ("Requires", &details.requires),
        ("Wants", &details.wants),
        ("After", &details.after),
    ] {
        if names.is_empty() {
            continue;
        }
        let states: Vec<String> = names
            .iter()
            .map(|n| {
                let state = everyone
                    .iter()
                    .find(|o| &o.name == n)
                    .map(|o| paint(o.state.word(), o.state, color))
                    .unwrap_or_else(|| "unknown".into());
                format!("{n} ({state})")
            })
            .collect();
        row(label, states.join(", "));
    }
    if let (Some(memory), Some(cpu), Some(tasks)) = (s.memory_bytes, s.cpu_usec, s.tasks) {
        row("Memory", size_words(memory));
        row("CPU", cpu_words(cpu));
        row("Tasks", tasks.to_string());
    }
    if let Some(cgroup) = &details.cgroup {
        row("CGroup", cgroup.clone());
    }
    for line in process_tree(&details.processes) {
        out.push_str(&format!("{:>10}  {line}\n", ""));
    }
    if !logs.is_empty() {
        out.push('\n');
        for l in logs {
            out.push_str(&render_log_line(l));
            out.push('\n');
        }
    }
    out
}

/// "12.4M", "1.5G", "512.0K", "900B": 1024-based, as systemd and free -h print memory.
/// Integer arithmetic: float formatting would add kilobytes to PID 1's binary.
pub fn size_words(bytes: u64) -> String {
    let units = [(30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in units {
        if bytes >= 1 << shift {
            let tenths = bytes.saturating_mul(10) >> shift;
            return format!("{}.{}{unit}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes}B")
}

/// "250ms", "1.250s", "2min 3.1s".
pub fn cpu_words(usec: u64) -> String {
    let ms = usec / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{}.{:03}s", ms / 1000, ms % 1000),
        _ => format!(
            "{}min {}.{}s",
            ms / 60_000,
            (ms % 60_000) / 1000,
            (ms % 1000) / 100
        ),
    }
}

/// The processes as a tree under their parents: "├─1290 /usr/bin/web", "│ └─1301 worker".
fn process_tree(processes: &[ember_ipc::Process]) -> Vec<String> {
    let known = |pid: u32| processes.iter().any(|p| p.pid == pid);
    let roots: Vec<&ember_ipc::Process> = processes
        .iter()
        .filter(|p| !known(p.ppid) || p.ppid == p.pid)
        .collect();
    let mut lines = Vec::new();
    fn walk(
        node: &ember_ipc::Process,
        all: &[ember_ipc::Process],
        prefix: &str,
        last: bool,
        depth: usize,
        lines: &mut Vec<String>,
    ) {
        let branch = if last { "└─" } else { "├─" };
        let command = terminal::escape(&node.command);
        lines.push(format!("{prefix}{branch}{} {command}", node.pid));
        if depth > 32 {
            return;
        }
        let children: Vec<&ember_ipc::Process> = all
            .iter()
            .filter(|c| c.ppid == node.pid && c.pid != node.pid)
            .collect();
        let prefix = format!("{prefix}{}", if last { "  " } else { "│ " });
        for (i, child) in children.iter().enumerate() {
            walk(
                child,
                all,
                &prefix,
                i + 1 == children.len(),
                depth + 1,
                lines,
            );
        }
    }
    for (i, root) in roots.iter().enumerate() {
        walk(root, processes, "", i + 1 == roots.len(), 0, &mut lines);
    }
    lines
}

fn render_log_line(l: &LogLine) -> String {
    let time = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(l.time_usec))
        .to_string();
    let clock = time.get(11..19).unwrap_or(&time);
    let marker = match l.stream {
        Stream::Stderr => " [stderr]",
        Stream::Stdout | Stream::Ember => "",
    };
    format!("{clock}{marker} {}", terminal::escape(&l.line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_to_logs_and_a_huge_command_are_usage_errors_in_a_line() {
        let parsed = |args: &[&str]| parse(lexopt::Parser::from_args(args.iter().copied()));
        let Err(e) = parsed(&["logs", "worker@*"]) else {
            panic!("parsed");
        };
        assert!(e.contains("not a pattern"), "{e}");
        let huge = "x".repeat(100_000);
        let Err(e) = parsed(&[huge.as_str()]) else {
            panic!("parsed");
        };
        assert!(e.len() < 400 && e.contains("unknown command"), "{e}");
    }

    #[test]
    fn an_option_for_another_command_is_a_usage_error() {
        let parsed = |args: &[&str]| parse(lexopt::Parser::from_args(args.iter().copied()));
        for (args, option) in [
            (&["status", "-n", "5"][..], "--lines"),
            (&["reexec", "--json"], "--json"),
            (&["poweroff", "--json"], "--json"),
            (&["subscribe", "--json"], "--json"),
        ] {
            let Err(e) = parsed(args) else {
                panic!("{args:?} parsed");
            };
            assert!(e.contains(option) && e.contains("applies to"), "{e}");
        }
        assert!(parsed(&["logs", "web", "-n", "5", "--json"]).is_ok());
        assert!(parsed(&["status", "--json"]).is_ok());
    }

    /// `subscribe --metrics` asks for the metrics rounds, as the protocol's `metrics`
    /// does (found by a hostile review: the README's stream has them, `ember ctl
    /// subscribe` could not ask for them).
    #[test]
    fn subscribe_asks_for_what_the_protocol_offers() {
        let parsed = |args: &[&str]| parse(lexopt::Parser::from_args(args.iter().copied()));
        let Ok(Invocation {
            command: Ctl::Request { command, .. },
            ..
        }) = parsed(&["subscribe", "--metrics", "--logs"])
        else {
            panic!("not parsed");
        };
        assert_eq!(
            command,
            Command::Subscribe(ember_ipc::SubscribeArgs {
                logs: true,
                metrics: true
            })
        );
        let Err(e) = parsed(&["status", "--metrics"]) else {
            panic!("parsed");
        };
        assert!(e.contains("--metrics applies to subscribe only"), "{e}");
        assert!(HELP.contains("subscribe [--logs] [--metrics]"));
    }

    #[test]
    fn an_argument_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let args = [b"status".to_vec(), b"web\xff\x1b".to_vec()].map(std::ffi::OsString::from_vec);
        let Err(e) = parse(lexopt::Parser::from_args(args)) else {
            panic!("parsed");
        };
        assert!(
            e.contains(r#""web\xff\x1b""#) && e.contains("--help"),
            "{e}"
        );
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(short_duration(Duration::from_secs(5)), "5s");
        assert_eq!(short_duration(Duration::from_secs(133)), "2m 13s");
        assert_eq!(short_duration(Duration::from_secs(3840)), "1h 4m");
        assert_eq!(
            short_duration(Duration::from_secs(2 * 86400 + 3 * 3600)),
            "2d 3h"
        );
    }

    #[test]
    fn the_watchdog_shows_above_the_table() {
        let mut system = SystemStatus {
            state: ember_ipc::SystemState::Running,
            config: Default::default(),
            seq: 1,
            watchdog: None,
        };
        assert_eq!(render_watchdog(&system, 0, false), "");
        system.watchdog = Some(Box::new(ember_ipc::WatchdogStatus {
            device: "/dev/watchdog0".into(),
            identity: Some("i6300ESB timer".into()),
            armed: true,
            timeout_sec: 30,
            pet_interval_ms: 15_000,
            pets: 12,
            last_pet_usec: Some(10_000_000),
            on_shutdown: "auto".into(),
            reset_by_watchdog: true,
            error: None,
        }));
        assert_eq!(
            render_watchdog(&system, 12_345_678, false),
            "watchdog /dev/watchdog0 (i6300ESB timer): armed, timeout 30s, petted every 15.0s, last 2.3s ago (12 pets); on shutdown: auto\n         └ it reset the board last time\n\n"
        );
        system.watchdog = Some(Box::new(ember_ipc::WatchdogStatus {
            device: "/dev/watchdog0".into(),
            timeout_sec: 30,
            on_shutdown: "auto".into(),
            error: Some(
                "cannot open /dev/watchdog0: No such file or directory (os error 2)".into(),
            ),
            ..Default::default()
        }));
        assert_eq!(
            render_watchdog(&system, 0, false),
            "watchdog /dev/watchdog0: NOT ARMED: cannot open /dev/watchdog0: No such file or directory (os error 2)\n\n"
        );
    }

    #[test]
    fn a_scheduled_oneshot_shows_its_next_run() {
        let s = ServiceStatus {
            name: "upload".into(),
            state: "inactive".parse().unwrap(),
            sub_state: "scheduled".parse().unwrap(),
            want: "up".parse().unwrap(),
            next_run_usec: Some(3_600_000_000),
            ..Default::default()
        };
        let table = render_table(std::slice::from_ref(&s), 1_080_000_000, false);
        assert!(
            table.ends_with("└ next run in 42m 0s (1970-01-01 01:00:00 UTC)\n"),
            "{table}"
        );
        let block = render_block(&s, &[], &[], 1_080_000_000, false);
        assert!(
            block.contains("  Next run: in 42m 0s (1970-01-01 01:00:00 UTC)\n"),
            "{block}"
        );
    }

    #[test]
    fn table_shows_reason_under_failed() {
        let s = ServiceStatus {
            name: "web".into(),
            state: "failed".parse().unwrap(),
            sub_state: "start-limit".parse().unwrap(),
            want: "up".parse().unwrap(),
            pid: None,
            restarts: 4,
            exit_code: Some(1),
            exit_signal: None,
            result: None,
            since: String::new(),
            since_usec: 0,
            reason: Some("5 failures within 10s".into()),
            status_text: None,
            ready: "none".parse().unwrap(),
            seq: 1,
            ..Default::default()
        };
        let table = render_table(&[s], 0, false);
        assert!(table.contains("failed (start-limit)"), "{table}");
        assert!(table.contains("code 1"), "{table}");
        assert!(table.contains("└ 5 failures within 10s"), "{table}");
    }

    #[test]
    fn a_long_name_has_a_line_of_its_own_and_the_rows_stay_narrow() {
        let service = |name: &str| ServiceStatus {
            name: name.into(),
            state: "active".parse().unwrap(),
            sub_state: "running".parse().unwrap(),
            want: "up".parse().unwrap(),
            pid: Some(4321),
            ready: "none".parse().unwrap(),
            ..Default::default()
        };
        let long = "n".repeat(64);
        let table = render_table(&[service("web"), service(&long)], 0, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[1].starts_with("web "), "{table}");
        assert_eq!(lines[2], long, "{table}");
        assert!(
            lines[3].trim_start().starts_with("active (running)"),
            "{table}"
        );
        for line in [lines[0], lines[1], lines[3]] {
            assert!(line.len() <= 100, "{} columns: {line:?}", line.len());
        }
    }

    #[test]
    fn a_block_shows_one_service_in_full() {
        let process = |pid, ppid, command: &str| ember_ipc::Process {
            pid,
            ppid,
            command: command.into(),
        };
        let web = ServiceStatus {
            name: "web".into(),
            state: "active".parse().unwrap(),
            sub_state: "running".parse().unwrap(),
            want: "up".parse().unwrap(),
            pid: Some(100),
            restarts: 2,
            exit_signal: Some("SIGKILL".into()),
            result: Some("oom-kill".parse().unwrap()),
            since_usec: 1_000_000,
            ready: "log".parse().unwrap(),
            cpu_usec: Some(1_250_000),
            memory_bytes: Some(13 << 20),
            tasks: Some(3),
            details: Some(Box::new(ember_ipc::Details {
                requires: vec!["db".into()],
                after: vec!["migrate".into()],
                cgroup: Some("/sys/fs/cgroup/ember/web".into()),
                processes: vec![
                    process(100, 1, "/usr/bin/web --serve"),
                    process(101, 100, "worker"),
                    process(102, 101, "helper"),
                    process(103, 100, "worker"),
                ],
                ..Default::default()
            })),
            ..Default::default()
        };
        let db = ServiceStatus {
            name: "db".into(),
            state: "active".parse().unwrap(),
            ..Default::default()
        };
        let logs = [LogLine {
            service: "web".into(),
            stream: "stdout".parse().unwrap(),
            line: "listening on :80".into(),
            time_usec: 0,
            seq: 1,
        }];
        let block = render_block(&web, &[web.clone(), db], &logs, 134_000_000, false);
        for expected in [
            "● web - active (running) since 1970-01-01 00:00:01 UTC; 2m 13s ago",
            "      Want: up",
            "     Ready: log",
            "  Main PID: 100",
            "  Restarts: 2 · last exit: SIGKILL (oom-kill)",
            "  Requires: db (active)",
            "     After: migrate (unknown)",
            "    Memory: 13.0M",
            "       CPU: 1.250s",
            "     Tasks: 3",
            "    CGroup: /sys/fs/cgroup/ember/web",
            "            └─100 /usr/bin/web --serve",
            "              ├─101 worker",
            "              │ └─102 helper",
            "              └─103 worker",
            "00:00:00 listening on :80",
        ] {
            assert!(block.contains(expected), "{expected:?} not in:\n{block}");
        }
        assert_eq!(size_words(900), "900B");
        assert_eq!(cpu_words(2_500), "2ms");
        assert_eq!(cpu_words(123_400_000), "2min 3.4s");
    }
}
