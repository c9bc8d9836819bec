//! The command line: `ember`, `ember check`, `ember ctl ...`, `ember analyze ...`, `ember fleet ...`.
//! Parsing with lexopt and help text written by hand, to keep the binary small.

pub mod analyze;
pub mod check;
pub mod ctl;
pub mod fleet;
pub mod out;
pub mod terminal;

use std::path::PathBuf;

pub const HELP: &str = "\
ember — init system and service supervisor for embedded Linux boards

Usage:
  ember [--config PATH]             supervise the configured services (as init when PID 1)
  ember check [--config PATH]       validate the configuration; print every problem
  ember ctl [OPTIONS] COMMAND ...   control a running ember (see `ember ctl --help`)
  ember analyze COMMAND ...         how the boot went, from a running ember: blame,
                                    critical-chain [NAME], plot (SVG), dump; and verify
                                    [--config PATH]: check plus warnings (see `ember
                                    analyze --help`)
  ember fleet COMMAND ...           many boards over MQTT: status, start|stop|restart SERVICE
                                    [--wait], kill SERVICE [--signal SIG], reset-failed
                                    SERVICE, watch (runs ember-fleet, installed beside
                                    ember; see `ember fleet --help`)
  ember poweroff|reboot|halt [-f]   ask PID 1 to stop every service and power off,
                                    reboot or halt (-f: reboot(2) at once, no stopping);
                                    also reached as `poweroff`, `reboot`, `halt` symlinks,
                                    and as `shutdown -P|-r|-H now` (see `shutdown --help`)

Options:
  -c, --config PATH   configuration file (default /etc/ember/ember.toml); services also
                      come from *.toml files in [system] services_dir (default services.d
                      beside it)
  -h, --help          print this help
  -V, --version       print the version

Environment:
  EMBER_LOG      log filter: a default level and target=level directives, e.g. \"debug\" or
                 \"info,ember::service=warn\"; overrides [log] level (one that is not
                 valid is logged and ignored; as PID 1 it may come from the kernel's
                 command line)
  EMBER_SOCKET   control socket `ember ctl` talks to (default /run/ember/control.sock)

As PID 1 (the kernel's init, or init of a PID namespace) ember mounts /proc, /sys,
/dev, /dev/pts, /dev/shm, /run and cgroup2 when missing, sets the hostname, reaps every
orphan, and at shutdown stops the services in reverse order, then SIGTERM/SIGKILL to
what is left, sync, unmount, reboot(2). A broken configuration still boots (no services,
[system] rescue_shell on the console; `ember ctl status`, MQTT and D-Bus say it is a
fallback, and why) so `ember ctl reload` can repair it. In services_dir, only regular
NAME.toml files are services; editors' leftovers (.#x.toml, x.toml~, *.bak, *.dpkg-*)
are skipped, and a file that cannot be read fails only its own service.

Service names: 1-64 ASCII letters, digits and . _ @ -, starting with a letter, a digit
or _, not named like a cgroup's files (cgroup.*, memory.*...); `ember check` says why.
A name ending in @ is a template (worker@): worker@NAME is made from it with NAME for
each {instance}, at boot for its `instances`, or by `ember ctl start worker@NAME`.

Each service runs in a cgroup of its own when cgroup2 is mounted (/sys/fs/cgroup/ember/NAME
as the machine's init): a stop kills all of it, and memory_max, pids_max, cpu_weight,
limits and oom_score_adjust apply to it; without cgroup2, its process group.

As PID 1, arguments ember does not know (the words of the kernel's command line it
passes on to init: splash, single, 3...) are named on stderr and ignored.

Signals as PID 1 (sysvinit, busybox and systemd conventions):
  SIGTERM   reboot            SIGUSR1   halt            SIGUSR2   poweroff
  SIGPWR    poweroff
  SIGINT    Ctrl-Alt-Del: [system] ctrl_alt_del = \"reboot\" | \"poweroff\" | \"ignore\"
  SIGHUP    reload the configuration (rejected whole if it has any error)
  SIGRTMIN+3/4/5     halt, poweroff, reboot (systemd's; SIGRTMIN counted from 34)
  SIGRTMIN+13/14/15  the same at once: no service stopped first
Signals otherwise:
  SIGTERM, SIGINT   stop every service in reverse dependency order, then exit 0
  SIGHUP            reload the configuration

Exit status: 0 after a clean stop; 1 when the configuration is invalid, the control
socket cannot be opened, or a service with on_failure ended failed. `ember check`: 0
when ember would run the configuration as it is (warnings are printed, and do not count),
1 when it has a problem.
";

pub enum Mode {
    Daemon {
        config: PathBuf,
        /// `--handover FD`: started by `ember ctl reexec`, which left the state of every
        /// service in this memfd (not for people: the old binary writes it).
        handover: Option<std::os::fd::RawFd>,
    },
    /// `--handover-accepts N`: exit 0 when this binary reads handover format N (what
    /// the old binary asks before it execs this one).
    HandoverAccepts(u32),
    Power {
        power: crate::pid1::Power,
        force: bool,
        socket: PathBuf,
    },
    Check {
        config: PathBuf,
    },
    Ctl(ctl::Invocation),
    Analyze(analyze::Invocation),
    /// `ember fleet ARGS...`: handed to ember-fleet as they are.
    Fleet(Vec<std::ffi::OsString>),
    Help(&'static str),
    Version,
}

/// Parses argv into what to do; errors read like advice. `argv0` selects the multi-call
/// personalities (`poweroff`, `reboot`, `halt`).
pub fn parse(argv0: &str, args: Vec<std::ffi::OsString>) -> Result<Mode, String> {
    use lexopt::prelude::*;
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("ember");
    if let Some(power) = crate::pid1::system::parse_power(name) {
        return parse_power(power, lexopt::Parser::from_args(args));
    }
    if name == "shutdown" {
        return parse_shutdown(args);
    }
    if matches!(name, "init" | "telinit") {
        if let Some(mode) = runlevel(&args) {
            return mode;
        }
    }
    let mut parser = lexopt::Parser::from_args(args);
    let mut config = PathBuf::from(crate::config::DEFAULT_CONFIG);
    let mut subcommand: Option<String> = None;
    let mut handover: Option<std::os::fd::RawFd> = None;
    loop {
        let arg = parser.next().map_err(|e| e.to_string())?;
        match arg {
            None => break,
            Some(Short('c') | Long("config")) => {
                config = parser.value().map_err(|e| e.to_string())?.into()
            }
            Some(Short('h') | Long("help")) => return Ok(Mode::Help(HELP)),
            Some(Long("handover")) => {
                let fd = parser.value().map_err(|e| e.to_string())?;
                handover = Some(
                    fd.string()
                        .ok()
                        .and_then(|f| f.parse().ok())
                        .ok_or("--handover takes an fd number")?,
                );
            }
            Some(Long("handover-accepts")) => {
                let format = parser.value().map_err(|e| e.to_string())?;
                return format
                    .string()
                    .ok()
                    .and_then(|f| f.parse().ok())
                    .map(Mode::HandoverAccepts)
                    .ok_or_else(|| "--handover-accepts takes a format number".to_owned());
            }
            Some(Short('V') | Long("version")) => return Ok(Mode::Version),
            Some(Value(v)) if subcommand.is_none() => {
                let word = v.into_string().map_err(|v| not_utf8(&v, "ember --help"))?;
                match word.as_str() {
                    "ctl" => return ctl::parse(parser).map(Mode::Ctl),
                    "analyze" => return analyze::parse(parser).map(Mode::Analyze),
                    "fleet" => {
                        let rest = parser.raw_args().map_err(|e| e.to_string())?;
                        return Ok(Mode::Fleet(rest.collect()));
                    }
                    "poweroff" | "reboot" | "halt" => {
                        let power = crate::pid1::system::parse_power(&word).ok_or("unreachable")?;
                        return parse_power(power, parser);
                    }
                    "check" => subcommand = Some(word),
                    "help" => return Ok(Mode::Help(HELP)),
                    other => {
                        return Err(format!("unknown command \"{other}\"; try `ember --help`"))
                    }
                }
            }
            Some(other) => return Err(format!("{}; try `ember --help`", other.unexpected())),
        }
    }
    Ok(match subcommand.as_deref() {
        Some("check") => Mode::Check { config },
        _ => Mode::Daemon { config, handover },
    })
}

/// sysvinit's `init N` / `telinit N` (one word, a runlevel): 0 powers off, 6 reboots,
/// q reloads; ember has no other runlevel, and says what to type instead. `None` when
/// argv is not a runlevel: init's own options then.
fn runlevel(args: &[std::ffi::OsString]) -> Option<Result<Mode, String>> {
    let [word] = args else { return None };
    let word = word.to_str()?;
    let power = |power| parse_power(power, lexopt::Parser::from_args(Vec::<String>::new()));
    Some(match word {
        "0" => power(crate::pid1::Power::Poweroff),
        "6" => power(crate::pid1::Power::Reboot),
        "q" | "Q" => ctl::parse(lexopt::Parser::from_args(["reload"])).map(Mode::Ctl),
        "1" | "2" | "3" | "4" | "5" | "s" | "S" | "a" | "b" | "c" | "A" | "B" | "C" | "u"
        | "U" => Err(format!(
            "ember has no runlevel \"{word}\": `init 0` powers off, `init 6` reboots, `init q` reloads the configuration; start or stop services with `ember ctl start|stop NAME`"
        )),
        _ => return None,
    })
}

/// As PID 1, when [`parse`] refused argv (or, as the machine's init, asked for anything
/// but the supervisor): the supervisor all the same, with the `--config` and `--handover`
/// that argv holds; returns it and the arguments it ignores. The kernel passes init every
/// word of its command line it does not know itself (`splash`, `single`, `3`, what
/// follows `--`), and an init that exits on them is a kernel panic.
pub fn parse_as_init(args: Vec<std::ffi::OsString>) -> (Mode, Vec<String>) {
    let mut config = PathBuf::from(crate::config::DEFAULT_CONFIG);
    let mut handover = None;
    let mut ignored = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let (option, inline) = match text.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value)),
            _ => (text.as_str(), None),
        };
        match option {
            "--" => {}
            "-c" | "--config" | "--handover" => {
                let value = match inline {
                    Some(value) => Some(std::ffi::OsString::from(value)),
                    None => args.next(),
                };
                let Some(value) = value else {
                    ignored.push(text.clone());
                    continue;
                };
                if option == "--handover" {
                    match value.to_str().and_then(|v| v.parse().ok()) {
                        Some(fd) => handover = Some(fd),
                        None => ignored.push(format!("{text} {}", value.to_string_lossy())),
                    }
                } else {
                    config = value.into();
                }
            }
            _ => ignored.push(text.clone()),
        }
    }
    (Mode::Daemon { config, handover }, ignored)
}

fn parse_power(power: crate::pid1::Power, mut parser: lexopt::Parser) -> Result<Mode, String> {
    use lexopt::prelude::*;
    let mut force = false;
    let mut socket = std::env::var_os("EMBER_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET));
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('f') | Long("force") => force = true,
            Short('s') | Long("socket") => {
                socket = parser.value().map_err(|e| e.to_string())?.into()
            }
            Short('h') | Long("help") => return Ok(Mode::Help(crate::pid1::system::HELP)),
            other => return Err(format!("{}; try --help", other.unexpected())),
        }
    }
    Ok(Mode::Power {
        power,
        force,
        socket,
    })
}

/// `shutdown [-P|-r|-H|-h] now [MESSAGE...]`, as sysvinit's and systemd's are typed on a
/// board: a poweroff (`-P`, `-h`, the default), a reboot (`-r`) or a halt (`-H`), now.
/// ember has no shutdown at a later time (`+5`, `22:00`: systemd's default, without a
/// time, is a minute from now), nor a message sent to the terminals first: those are
/// refused, saying what to type, rather than done at once when asked for later.
fn parse_shutdown(args: Vec<std::ffi::OsString>) -> Result<Mode, String> {
    use crate::pid1::Power;
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut power = Power::Poweroff;
    let mut when: Option<String> = None;
    let mut message = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('P') | Long("poweroff") | Short('h') => power = Power::Poweroff,
            Short('r') | Long("reboot") => power = Power::Reboot,
            Short('H') | Long("halt") => power = Power::Halt,
            Long("no-wall") => {}
            Long("help") => return Ok(Mode::Help(crate::pid1::system::SHUTDOWN_HELP)),
            Short('c') => {
                return Err(
                    "shutdown -c: ember has no shutdown at a later time, so none to cancel"
                        .to_owned(),
                )
            }
            Value(word) if when.is_none() => {
                when = Some(
                    word.into_string()
                        .map_err(|w| not_utf8(&w, "shutdown --help"))?,
                )
            }
            Value(_) => message = true,
            other => return Err(format!("{}; try `shutdown --help`", other.unexpected())),
        }
    }
    let word = power.word();
    match when.as_deref() {
        Some("now" | "+0") if !message => {}
        Some("now" | "+0") => {
            return Err(format!(
                "shutdown: ember sends no message to the terminals first; type `shutdown {} now` without one",
                short(power)
            ))
        }
        Some(later) => {
            return Err(format!(
                "shutdown: ember has no shutdown at a later time (\"{later}\"); type `shutdown {} now`, or `sleep SECONDS; {word}`",
                short(power)
            ))
        }
        None => {
            return Err(format!(
                "shutdown: say when: `shutdown {} now` (ember has no shutdown at a later time, and systemd's, without a time, is a minute from now)",
                short(power)
            ))
        }
    }
    parse_power(power, lexopt::Parser::from_args(Vec::<String>::new()))
}

/// The option of `shutdown` that asks for `power`.
fn short(power: crate::pid1::Power) -> &'static str {
    match power {
        crate::pid1::Power::Poweroff => "-P",
        crate::pid1::Power::Reboot => "-r",
        crate::pid1::Power::Halt => "-H",
    }
}

/// A command-line argument that is not UTF-8, named (its bytes, escaped, and not all of a
/// huge one): which one of several was meant is not left to guess.
pub(crate) fn not_utf8(arg: &std::ffi::OsStr, help: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = arg.as_bytes();
    let shown = bytes[..bytes.len().min(80)].escape_ascii();
    let more = if bytes.len() > 80 { "..." } else { "" };
    format!(
        "argument \"{shown}{more}\" is not valid UTF-8 (names and commands are text); try `{help}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<std::ffi::OsString> {
        words.iter().map(Into::into).collect()
    }

    /// `shutdown -h now`, `shutdown -r now`...: what sysvinit and systemd users type; a
    /// shutdown at a later time, a message and a cancel are refused with what to type.
    #[test]
    fn shutdown_takes_now_and_refuses_later() {
        use crate::pid1::Power;
        for (words, want) in [
            (&["-h", "now"][..], Power::Poweroff),
            (&["now"][..], Power::Poweroff),
            (&["-P", "+0"][..], Power::Poweroff),
            (&["-r", "now"][..], Power::Reboot),
            (&["--reboot", "--no-wall", "now"][..], Power::Reboot),
            (&["-H", "now"][..], Power::Halt),
        ] {
            match parse("/sbin/shutdown", args(words)) {
                Ok(Mode::Power { power, force, .. }) => {
                    assert!(power == want && !force, "{words:?}")
                }
                Ok(_) => panic!("{words:?}: not a power request"),
                Err(e) => panic!("{words:?}: {e}"),
            }
        }
        for (words, said) in [
            (&[][..], "say when: `shutdown -P now`"),
            (&["-r"][..], "say when: `shutdown -r now`"),
            (
                &["-r", "+5"][..],
                "no shutdown at a later time (\"+5\"); type `shutdown -r now`",
            ),
            (&["-h", "22:00"][..], "at a later time (\"22:00\")"),
            (&["now", "bye"][..], "no message to the terminals"),
            (&["-c"][..], "none to cancel"),
            (&["-x", "now"][..], "try `shutdown --help`"),
        ] {
            match parse("shutdown", args(words)) {
                Err(e) => assert!(e.contains(said), "{words:?}: {e}"),
                Ok(_) => panic!("{words:?}: taken"),
            }
        }
        assert!(matches!(
            parse("shutdown", args(&["--help"])),
            Ok(Mode::Help(_))
        ));
    }

    /// sysvinit's `init 0`, `telinit 6`, `init q`: power off, reboot, reload; the other
    /// runlevels, which ember has none of, are refused with what to type instead.
    #[test]
    fn init_and_telinit_take_sysvinit_runlevels() {
        use crate::pid1::Power;
        for (argv0, word, want) in [
            ("/sbin/init", "0", Power::Poweroff),
            ("telinit", "6", Power::Reboot),
            ("init", "0", Power::Poweroff),
        ] {
            match parse(argv0, args(&[word])) {
                Ok(Mode::Power { power, force, .. }) => assert!(power == want && !force),
                Ok(_) => panic!("{argv0} {word}: not a power request"),
                Err(e) => panic!("{argv0} {word}: {e}"),
            }
        }
        for word in ["q", "Q"] {
            assert!(matches!(parse("telinit", args(&[word])), Ok(Mode::Ctl(_))));
        }
        for word in ["1", "3", "S", "s", "5", "U"] {
            let e = parse("init", args(&[word])).err().unwrap_or_default();
            assert!(e.contains("runlevel") && e.contains("init 0"), "{e}");
        }
        // ember's own name keeps its own commands; init keeps its options.
        assert!(parse("ember", args(&["0"])).is_err());
        assert!(matches!(
            parse("init", args(&["--config", "/x.toml"])),
            Ok(Mode::Daemon { .. })
        ));
    }

    /// What a kernel passes init (its unknown words, what follows `--`): the supervisor,
    /// the options it knows taken, the rest named.
    #[test]
    fn as_init_the_kernels_words_are_ignored_and_the_options_taken() {
        let (mode, ignored) = parse_as_init(args(&[
            "splash",
            "--",
            "--config=/etc/x.toml",
            "single",
            "--handover",
            "7",
            "-s",
        ]));
        match mode {
            Mode::Daemon { config, handover } => {
                assert_eq!(config, PathBuf::from("/etc/x.toml"));
                assert_eq!(handover, Some(7));
            }
            _ => panic!("not the supervisor"),
        }
        assert_eq!(ignored, ["splash", "single", "-s"]);
        let (mode, ignored) = parse_as_init(args(&["-c", "/a.toml", "--handover", "x", "-c"]));
        assert!(
            matches!(mode, Mode::Daemon { ref config, handover: None } if config == &PathBuf::from("/a.toml"))
        );
        assert_eq!(ignored, ["--handover x", "-c"]);
        assert!(
            parse("ember", args(&["splash"])).is_err(),
            "not PID 1: refused"
        );
    }
}
