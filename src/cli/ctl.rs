//! `ember ctl`: the client of the control socket, and how its answers look on a terminal.

use ember_ipc::socket::Client;
use ember_ipc::{LogLine, Reply, ServiceStatus};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HELP: &str = "\
ember ctl — control a running ember over its local socket

Usage: ember ctl [--socket PATH | --config PATH] COMMAND [ARGS]

Commands:
  status [--json]             every service, a line each: state, pid, uptime, restarts,
                              last exit; --json prints a JSON array instead
  status NAME... [--json]     NAME in full: state since when, main pid and the process
                              tree, restarts and last exit, readiness, dependencies and
                              their states, memory, CPU and tasks, the last 10 log lines
  start NAME... [--wait]      want NAME up; --wait returns once it is active, or fails
                              with the reason when it ends failed
  stop NAME... [--wait]       want NAME down; --wait returns once it has stopped
  restart NAME... [--wait]    stop, then start again
  reload                      re-read the configuration: added services start, removed
                              ones stop, changed ones restart; any error rejects it whole
  logs NAME [-n N] [-f]       the last N lines NAME wrote (default 10; 200 are kept);
                              -f keeps printing new lines until interrupted
  poweroff | reboot | halt    stop every service in reverse order; as PID 1 then power
                              off, reboot or halt, otherwise ember exits

Options:
  -s, --socket PATH   the control socket (default $EMBER_SOCKET, else /run/ember/control.sock)
  -c, --config PATH   use the [control] socket of this configuration file
  -h, --help          print this help

Only root and the user ember runs as may use the socket.
Exit status: 0 on success, 1 when ember refused or a service did not reach the state
asked for (the reason is printed), 2 for a usage error.
";

pub struct Invocation {
    pub socket: PathBuf,
    pub command: Ctl,
}

pub enum Ctl {
    Status {
        names: Vec<String>,
        json: bool,
    },
    Change {
        verb: &'static str,
        names: Vec<String>,
        wait: bool,
    },
    Reload,
    Logs {
        name: String,
        lines: usize,
        follow: bool,
    },
    System {
        verb: &'static str,
    },
    Help,
}

pub fn parse(mut parser: lexopt::Parser) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut socket: Option<PathBuf> = None;
    let mut verb: Option<String> = None;
    let mut names = Vec::new();
    let (mut json, mut wait, mut follow, mut lines) =
        (false, false, false, ember_ipc::LOG_LINES_DEFAULT);
    let usage = |m: String| format!("{m}; try `ember ctl --help`");
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('s') | Long("socket") => {
                socket = Some(parser.value().map_err(|e| usage(e.to_string()))?.into())
            }
            Short('c') | Long("config") => {
                let path: PathBuf = parser.value().map_err(|e| usage(e.to_string()))?.into();
                let loaded = crate::config::load(&path);
                let config = loaded.config.ok_or_else(|| {
                    format!(
                        "{} has errors, so its socket is unknown; run `ember check --config {}`",
                        path.display(),
                        path.display()
                    )
                })?;
                socket = Some(config.control.socket);
            }
            Short('h') | Long("help") => {
                return Ok(Invocation {
                    socket: PathBuf::new(),
                    command: Ctl::Help,
                })
            }
            Long("json") => json = true,
            Short('w') | Long("wait") => wait = true,
            Short('f') | Long("follow") => follow = true,
            Short('n') | Long("lines") => {
                let value = parser.value().map_err(|e| usage(e.to_string()))?;
                lines = value
                    .string()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| usage("-n takes a number of lines".into()))?;
            }
            Value(v) => {
                let word = v
                    .string()
                    .map_err(|_| "arguments must be valid UTF-8".to_string())?;
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
    let Some(verb) = verb else {
        return Err(usage(
            "name a command: status, start, stop, restart, reload, logs, poweroff, reboot".into(),
        ));
    };
    let need_names = |names: &Vec<String>, verb: &str| {
        if names.is_empty() {
            Err(usage(format!("`{verb}` needs at least one service name")))
        } else {
            Ok(())
        }
    };
    let command = match verb.as_str() {
        "status" => Ctl::Status { names, json },
        "start" | "stop" | "restart" => {
            need_names(&names, &verb)?;
            let verb = match verb.as_str() {
                "start" => "start",
                "stop" => "stop",
                _ => "restart",
            };
            Ctl::Change { verb, names, wait }
        }
        "reload" => Ctl::Reload,
        "logs" => {
            if names.len() != 1 {
                return Err(usage("`logs` takes exactly one service name".into()));
            }
            Ctl::Logs { name: names.remove(0), lines, follow }
        }
        "poweroff" => Ctl::System { verb: "poweroff" },
        "reboot" => Ctl::System { verb: "reboot" },
        "halt" => Ctl::System { verb: "halt" },
        other => {
            return Err(usage(format!(
                "unknown command \"{other}\"; commands are status, start, stop, restart, reload, logs, poweroff, reboot, halt"
            )))
        }
    };
    Ok(Invocation { socket, command })
}

/// Runs one ctl command; returns the exit code.
pub fn run(invocation: Invocation) -> i32 {
    if let Ctl::Help = invocation.command {
        print!("{HELP}");
        return 0;
    }
    let mut client = match Client::connect(&invocation.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ember ctl: {e}");
            return 1;
        }
    };
    match execute(&mut client, invocation.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ember ctl: {e}");
            1
        }
    }
}

fn execute(client: &mut Client, command: Ctl) -> Result<i32, String> {
    let color = nix::unistd::isatty(std::io::stdout()).unwrap_or(false)
        && std::env::var_os("NO_COLOR").is_none();
    match command {
        Ctl::Help => Ok(0),
        Ctl::Status { names, json } if !names.is_empty() => {
            let services = expect_services(
                client.call(&json!({"cmd": "status", "names": names, "details": true}))?,
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&services).map_err(|e| e.to_string())?
                );
                return Ok(0);
            }
            // The states of the services each depends on, and each one's last lines.
            let everyone = expect_services(client.call(&json!({"cmd": "status"}))?)?;
            let mut blocks = Vec::new();
            for service in &services {
                let logs = match client.call(&json!({"cmd": "logs", "name": service.name}))? {
                    Reply::Logs { lines } => lines,
                    _ => Vec::new(),
                };
                blocks.push(render_block(service, &everyone, &logs, now_usec(), color));
            }
            print!("{}", blocks.join("\n"));
            Ok(0)
        }
        Ctl::Status { names, json } => {
            let services =
                expect_services(client.call(&json!({"cmd": "status", "names": names}))?)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&services).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", render_table(&services, now_usec(), color));
            }
            Ok(0)
        }
        Ctl::Change { verb, names, wait } => {
            let services =
                expect_services(client.call(&json!({"cmd": verb, "names": names, "wait": wait}))?)?;
            if wait {
                for s in &services {
                    println!("{}: {}", s.name, state_words(s));
                }
            }
            Ok(0)
        }
        Ctl::Reload => {
            expect_services(client.call(&json!({"cmd": "reload"}))?)?;
            println!("reloaded");
            Ok(0)
        }
        Ctl::Logs {
            name,
            lines,
            follow,
        } => {
            let mut reply = client
                .call(&json!({"cmd": "logs", "name": name, "lines": lines, "follow": follow}))?;
            loop {
                match reply {
                    Reply::Logs { lines } => lines
                        .iter()
                        .for_each(|l| println!("{}", render_log_line(l))),
                    Reply::Error(e) => return Err(e.message),
                    Reply::Ok { .. } | Reply::Timeline(_) => {}
                }
                if !follow {
                    return Ok(0);
                }
                match client.next_reply()? {
                    Some(next) => reply = next,
                    None => return Ok(0),
                }
            }
        }
        Ctl::System { verb } => {
            expect_services(client.call(&json!({"cmd": verb}))?)?;
            println!("{verb}: stopping every service");
            Ok(0)
        }
    }
}

fn expect_services(reply: Reply) -> Result<Vec<ServiceStatus>, String> {
    match reply {
        Reply::Ok { services } => Ok(services),
        Reply::Error(e) => Err(e.message),
        Reply::Logs { .. } | Reply::Timeline(_) => {
            Err("ember answered a request with the wrong kind of reply".into())
        }
    }
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

fn paint(text: &str, state: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match state {
        "active" => "32",
        "activating" | "deactivating" => "33",
        "failed" => "1;31",
        _ => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The status table: one line per service, and the reason under the ones that need one.
pub fn render_table(services: &[ServiceStatus], now_usec: u64, color: bool) -> String {
    let name_width = services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:name_width$}  {:28}  {:>7}  {:>8}  {:>8}  {}\n",
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
    );
    for s in services {
        let state = state_words(s);
        let state_cell = paint(&format!("{state:28}"), &s.state, color);
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = if s.state == "active" {
            short_duration(Duration::from_micros(now_usec.saturating_sub(s.since_usec)))
        } else {
            "-".into()
        };
        let last_exit = match (&s.exit_code, &s.exit_signal) {
            (Some(code), _) => format!("code {code}"),
            (None, Some(sig)) => sig.clone(),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:name_width$}  {state_cell}  {pid:>7}  {uptime:>8}  {:>8}  {last_exit}\n",
            s.name, s.restarts
        ));
        let note = match (&s.reason, &s.status_text) {
            (Some(reason), _) if s.state != "active" => Some(reason.as_str()),
            (_, Some(text)) => Some(text.as_str()),
            _ => None,
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
    let dot = paint("●", &s.state, color);
    let ago = short_duration(Duration::from_micros(now_usec.saturating_sub(s.since_usec)));
    let since = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(s.since_usec))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC");
    out.push_str(&format!(
        "{dot} {} - {} since {since}; {ago} ago\n",
        s.name,
        paint(&state_words(s), &s.state, color)
    ));
    let mut row = |label: &str, value: String| out.push_str(&format!("{label:>10}: {value}\n"));
    row("Want", s.want.clone());
    if let Some(reason) = s.reason.as_ref().filter(|_| s.state != "active") {
        row("Reason", reason.clone());
    }
    if let Some(text) = &s.status_text {
        row("Status", text.clone());
    }
    row("Ready", s.ready.clone());
    if let Some(pid) = s.pid {
        row("Main PID", pid.to_string());
    }
    let last_exit = match (&s.exit_code, &s.exit_signal) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(sig)) => sig.clone(),
        _ => "none yet".into(),
    };
    let result = s
        .result
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
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
                    .map(|o| paint(&o.state, &o.state, color))
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
        lines.push(format!("{prefix}{branch}{} {}", node.pid, node.command));
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
    let marker = if l.stream == "stderr" {
        " [stderr]"
    } else {
        ""
    };
    format!("{clock}{marker} {}", l.line)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn table_shows_reason_under_failed() {
        let s = ServiceStatus {
            name: "web".into(),
            state: "failed".into(),
            sub_state: "start-limit".into(),
            want: "up".into(),
            pid: None,
            restarts: 4,
            exit_code: Some(1),
            exit_signal: None,
            result: None,
            since: String::new(),
            since_usec: 0,
            reason: Some("5 failures within 10s".into()),
            status_text: None,
            ready: "none".into(),
            seq: 1,
            ..Default::default()
        };
        let table = render_table(&[s], 0, false);
        assert!(table.contains("failed (start-limit)"), "{table}");
        assert!(table.contains("code 1"), "{table}");
        assert!(table.contains("└ 5 failures within 10s"), "{table}");
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
            state: "active".into(),
            sub_state: "running".into(),
            want: "up".into(),
            pid: Some(100),
            restarts: 2,
            exit_signal: Some("SIGKILL".into()),
            result: Some("oom-kill".into()),
            since_usec: 1_000_000,
            ready: "log".into(),
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
            state: "active".into(),
            ..Default::default()
        };
        let logs = [LogLine {
            service: "web".into(),
            stream: "stdout".into(),
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
