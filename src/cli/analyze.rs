//! `ember analyze`: the boot's timings from a running ember, and `verify`.

#[cfg(feature = "analyze")]
use crate::analyze::{blame, chain, plot, verify};
use ember_ipc::socket::Client;
use ember_ipc::{Reply, Timeline};
use std::path::PathBuf;

pub const HELP: &str = "\
ember analyze — how the boot went, from a running ember; and a deeper check

Usage: ember analyze [--socket PATH | --config PATH] COMMAND [ARGS]

Commands:
  blame                   services by the time from their spawn to active, slowest
                          first; then the ones that never became active
  critical-chain [NAME]   the dependencies that decided when NAME (default: the last
                          service to become active) became active: at each step the
                          one active last before the service was spawned, with
                          @when it became active and +how long it took to start
  plot                    an SVG timeline of the boot on stdout, for a browser:
                          ember analyze plot > boot.svg
  dump                    the timeline itself as JSON, to keep or to read elsewhere
                          with --from FILE
  verify                  `ember check` plus warnings: a service others require that
                          has no readiness check, a oneshot with restart = \"always\",
                          a service that cannot start because something it requires
                          is disabled

Options:
  -s, --socket PATH   the control socket (default $EMBER_SOCKET, else /run/ember/control.sock)
  -c, --config PATH   verify: the configuration (default /etc/ember/ember.toml);
                      the others: use the [control] socket of this configuration
  -f, --from FILE     blame, critical-chain, plot: read a timeline saved earlier with
                      `ember analyze dump` instead of asking ember
  -h, --help          print this help

Times are since ember started (as the machine's init: when the kernel handed over) and
cover this boot: ember keeps each service's first start and its last 16 transitions.
Exit status: 0 on success, 1 when ember cannot be asked or verify finds errors, 2 for
a usage error.
";

const COMMANDS: &str = "blame, critical-chain, plot, dump, verify";

pub struct Invocation {
    pub socket: PathBuf,
    /// A saved timeline to read instead of asking the socket.
    pub from: Option<PathBuf>,
    /// For verify.
    pub config: PathBuf,
    pub command: Analyze,
}

pub enum Analyze {
    Blame,
    CriticalChain { name: Option<String> },
    Plot,
    Dump,
    Verify,
    Help,
}

pub fn parse(mut parser: lexopt::Parser) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let usage = |m: String| format!("{m}; try `ember analyze --help`");
    let mut socket: Option<PathBuf> = None;
    let mut config: Option<PathBuf> = None;
    let mut from: Option<PathBuf> = None;
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('s') | Long("socket") => {
                socket = Some(parser.value().map_err(|e| usage(e.to_string()))?.into())
            }
            Short('c') | Long("config") => {
                config = Some(parser.value().map_err(|e| usage(e.to_string()))?.into())
            }
            Short('f') | Long("from") => {
                from = Some(parser.value().map_err(|e| usage(e.to_string()))?.into())
            }
            Short('h') | Long("help") => {
                return Ok(Invocation {
                    socket: PathBuf::new(),
                    from: None,
                    config: PathBuf::new(),
                    command: Analyze::Help,
                })
            }
            Value(v) => words.push(
                v.into_string()
                    .map_err(|v| super::not_utf8(&v, "ember analyze --help"))?,
            ),
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    let mut words = words.into_iter();
    let Some(verb) = words.next() else {
        return Err(usage(format!("name a command: {COMMANDS}")));
    };
    let command = match verb.as_str() {
        "blame" => Analyze::Blame,
        "critical-chain" => Analyze::CriticalChain { name: words.next() },
        "plot" => Analyze::Plot,
        "dump" => Analyze::Dump,
        "verify" => Analyze::Verify,
        "help" => Analyze::Help,
        other => {
            return Err(usage(format!(
                "unknown command \"{other}\"; commands are {COMMANDS}"
            )))
        }
    };
    if let Some(extra) = words.next() {
        return Err(usage(format!(
            "unexpected argument \"{extra}\" after {verb}"
        )));
    }
    let config_path = config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    let socket = match (socket, config, &command) {
        (Some(socket), _, _) => socket,
        (None, _, Analyze::Verify | Analyze::Help) => PathBuf::new(),
        (None, _, _) if from.is_some() => PathBuf::new(),
        // As `ember ctl --config`: the socket that configuration names.
        (None, Some(path), _) => {
            let loaded = crate::config::load(&path);
            let settings = loaded.config.or(loaded.settings).ok_or_else(|| {
                format!(
                    "{} cannot be read, so its socket is unknown; run `ember check --config {}`",
                    path.display(),
                    path.display()
                )
            })?;
            settings.control.socket
        }
        (None, None, _) => std::env::var_os("EMBER_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET)),
    };
    Ok(Invocation {
        socket,
        from,
        config: config_path,
        command,
    })
}

/// Runs one analyze command; returns the exit code.
pub fn run(invocation: Invocation) -> i32 {
    let result = match &invocation.command {
        Analyze::Help => {
            super::out::out!("{HELP}");
            return 0;
        }
        // One value a line: readable, and each line short enough for a kernel log.
        Analyze::Dump => timeline(&invocation).and_then(|t| {
            serde_json::to_string_pretty(&t)
                .map(|text| write_out(&format!("{}\n", super::terminal::escape_json(text))))
                .map_err(|e| e.to_string())
        }),
        _ => analysis(&invocation),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ember analyze: {e}");
            1
        }
    }
}

/// The smallest builds (without the `analyze` feature) keep the timeline and can dump
/// it; the analysis itself then runs on another machine, with `--from FILE`.
#[cfg(not(feature = "analyze"))]
fn analysis(_: &Invocation) -> Result<i32, String> {
    Err("this ember was built without the analyze feature, to be small; run `ember analyze dump > boot.json` here and `ember analyze --from boot.json blame` (or critical-chain, plot) where ember has it".into())
}

#[cfg(feature = "analyze")]
fn analysis(invocation: &Invocation) -> Result<i32, String> {
    match &invocation.command {
        Analyze::Help | Analyze::Dump => Ok(0),
        Analyze::Verify => Ok(super::check::run_with(&invocation.config, verify::warnings)),
        Analyze::Blame => timeline(invocation)
            .map(|t| blame::render(&blame::blame(&t)))
            .map(|text| write_out(&text)),
        Analyze::CriticalChain { name } => timeline(invocation).and_then(|t| {
            let links = chain::critical_chain(&t, name.as_deref())?;
            Ok(write_out(&format!(
                "{}\n{}",
                chain::LEGEND,
                chain::render(&links)
            )))
        }),
        Analyze::Plot => timeline(invocation).map(|t| write_out(&plot::svg(&t))),
    }
}

/// The running ember's timeline, or the one saved in `--from FILE`.
fn timeline(invocation: &Invocation) -> Result<Timeline, String> {
    if let Some(path) = &invocation.from {
        let text = read_saved(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // The reply as the socket sends it, or the timeline alone.
        let timeline = match ember_ipc::json::from_slice::<Reply>(text.as_bytes()) {
            Ok(Reply::Timeline(t)) => t,
            _ => ember_ipc::json::from_slice::<Timeline>(text.as_bytes()).map_err(|e| {
                format!(
                    "{} is not a timeline ({e}); save one with `ember analyze dump > FILE`",
                    path.display()
                )
            })?,
        };
        return names_ember_writes(&timeline)
            .and_then(|()| times_ember_writes(&timeline))
            .map(|()| timeline)
            .map_err(|e| {
                format!(
                "{} is not a timeline ember wrote ({e}); save one with `ember analyze dump > FILE`",
                path.display()
            )
            });
    }
    let socket = &invocation.socket;
    let mut client = Client::connect(socket)?;
    match client.call(&ember_ipc::Command::Timeline)? {
        Reply::Timeline(t) => Ok(t),
        Reply::Error(e) if e.kind == ember_ipc::ErrorKind::UnknownCommand => Err(format!(
            "the ember at {} is older and keeps no timeline; restart it with this version",
            socket.display()
        )),
        Reply::Error(e) => Err(e.message),
        _ => Err("ember answered the timeline request with something else".into()),
    }
}

/// The most read of a saved timeline: a dump of 1,000 services is about 2 MiB.
const MAX_SAVED: u64 = 64 << 20;

/// A saved timeline's text, up to [`MAX_SAVED`]: `--from /dev/zero` was read until the
/// memory ran out and the kernel killed the tool.
fn read_saved(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SAVED + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SAVED {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "larger than {} MiB, the most ember reads of a timeline",
                MAX_SAVED >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// Every name in a timeline from a file follows the rule ember's names follow. The file
/// may come from anywhere (a board's dump mailed in): blame and critical-chain print its
/// names as they are, where an escape sequence would reach the terminal and a newline
/// would forge a row.
fn names_ember_writes(timeline: &Timeline) -> Result<(), String> {
    timeline
        .services
        .iter()
        .flat_map(|s| {
            let deps = s.requires.iter().chain(&s.wants).chain(&s.after);
            std::iter::once(&s.name).chain(deps)
        })
        .try_for_each(|name| ember_ipc::names::check_service_name(name))
}

/// The latest time a timeline may hold, in microseconds (since ember started, since the
/// machine booted, or since 1970): about 570 years, past anything a board writes, and far
/// enough from 2^64 that the sums of the analyses cannot overflow (a file with times
/// near it made `plot` die of a panic).
const LATEST_TIME_USEC: u64 = 1 << 54;

/// Every time in a timeline from a file is one ember could have written.
fn times_ember_writes(timeline: &Timeline) -> Result<(), String> {
    let services = timeline.services.iter().flat_map(|s| {
        let transitions = s.transitions.iter().map(|t| Some(t.at_usec));
        [s.first_spawn_usec, s.first_active_usec]
            .into_iter()
            .chain(transitions)
    });
    let late = [
        timeline.uptime_at_start_usec,
        Some(timeline.started_usec),
        Some(timeline.now_usec),
        timeline.boot_complete_usec,
    ]
    .into_iter()
    .chain(services)
    .flatten()
    .find(|t| *t > LATEST_TIME_USEC);
    match late {
        Some(t) => Err(format!(
            "a time of {t} us, later than any ember writes ({LATEST_TIME_USEC} us)"
        )),
        None => Ok(()),
    }
}

/// Prints `text` (see [`super::out`]).
fn write_out(text: &str) -> i32 {
    super::out::print(text);
    0
}
