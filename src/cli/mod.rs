//! The command line: `ember`, `ember check`, `ember ctl ...`. Parsing with lexopt and
//! help text written by hand, to keep the binary small.

pub mod check;
pub mod ctl;

use std::path::PathBuf;

pub const HELP: &str = "\
ember — init system and service supervisor for embedded Linux boards

Usage:
  ember [--config PATH]             supervise the configured services (as init when PID 1)
  ember check [--config PATH]       validate the configuration; print every problem
  ember ctl [OPTIONS] COMMAND ...   control a running ember (see `ember ctl --help`)

Options:
  -c, --config PATH   configuration file (default /etc/ember/ember.toml); services also
                      come from *.toml files in [system] services_dir (default services.d
                      beside it)
  -h, --help          print this help
  -V, --version       print the version

Environment:
  EMBER_LOG      log filter in tracing's EnvFilter syntax, e.g. \"debug\" or
                 \"info,ember::service=warn\"; overrides [log] level
  EMBER_SOCKET   control socket `ember ctl` talks to (default /run/ember/control.sock)

Signals, when not PID 1:
  SIGTERM, SIGINT   stop every service in reverse dependency order, then exit 0
  SIGHUP            reload the configuration (rejected whole if it has any error)

Exit status: 0 after a clean stop; 1 when the configuration is invalid, the control
socket cannot be opened, or a service with on_failure ended failed.
";

pub enum Mode {
    Daemon { config: PathBuf },
    Check { config: PathBuf },
    Ctl(ctl::Invocation),
    Help(&'static str),
    Version,
}

/// Parses argv into what to do; errors read like advice.
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Mode, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut config = PathBuf::from(crate::config::DEFAULT_CONFIG);
    let mut subcommand: Option<String> = None;
    loop {
        let arg = parser.next().map_err(|e| e.to_string())?;
        match arg {
            None => break,
            Some(Short('c') | Long("config")) => {
                config = parser.value().map_err(|e| e.to_string())?.into()
            }
            Some(Short('h') | Long("help")) => return Ok(Mode::Help(HELP)),
            Some(Short('V') | Long("version")) => return Ok(Mode::Version),
            Some(Value(v)) if subcommand.is_none() => {
                let word = v
                    .string()
                    .map_err(|_| "arguments must be valid UTF-8".to_string())?;
                match word.as_str() {
                    "ctl" => return ctl::parse(parser).map(Mode::Ctl),
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
        _ => Mode::Daemon { config },
    })
}
