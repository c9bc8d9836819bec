//! `[system] watchdog = { device = "/dev/watchdog0", timeout = "30s", on_shutdown = "auto" }`:
//! the hardware watchdog that PID 1's main loop pets (see `crate::pid1::watchdog`).

use super::walk::{self, FromToml, Issue};
use super::{Problem, Severity, Source};
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

pub const DEFAULT_DEVICE: &str = "/dev/watchdog0";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    pub device: PathBuf,
    /// A whole number of seconds (what the driver takes), at least 1.
    pub timeout: Duration,
    pub on_shutdown: OnShutdown,
}

/// What happens to the watchdog at a clean poweroff, reboot or halt, once everything
/// else is done, just before reboot(2). Until then ember pets it in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnShutdown {
    /// systemd's way: keep it armed for a reboot (a reboot that hangs is reset), close it
    /// for a poweroff or a halt (a board that was switched off stays off).
    #[default]
    Auto,
    /// Write the magic close 'V' and close it: the watchdog stops.
    Close,
    /// Leave it armed: the board is reset if reboot(2) does not finish in time.
    Keep,
}

impl OnShutdown {
    pub fn word(self) -> &'static str {
        match self {
            OnShutdown::Auto => "auto",
            OnShutdown::Close => "close",
            OnShutdown::Keep => "keep",
        }
    }
}

impl FromToml for OnShutdown {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let words = [
            ("auto", OnShutdown::Auto),
            ("close", OnShutdown::Close),
            ("keep", OnShutdown::Keep),
        ];
        walk::keyword(value, &words, issues)
    }
}

/// The table as written.
#[derive(Debug)]
pub struct RawWatchdog {
    /// Where the table starts: where a problem of the default device is reported.
    at: usize,
    device: Option<Spanned<PathBuf>>,
    timeout: Option<Spanned<Duration>>,
    on_shutdown: Option<OnShutdown>,
}

impl FromToml for RawWatchdog {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let expected = "a table such as { device = \"/dev/watchdog0\", timeout = \"30s\" }";
        let at = value.span().start;
        walk::table(value, expected, issues, |t| RawWatchdog {
            at,
            device: t.take("device"),
            timeout: t.take("timeout"),
            on_shutdown: t.take("on_shutdown"),
        })
    }
}

impl RawWatchdog {
    /// Checks the values; `None` when one is wrong (each problem is reported). Whether
    /// the device exists is looked at (a `Runtime` problem: the driver may not be loaded
    /// on this machine, or this is not the board), but it is never opened here: opening a
    /// watchdog arms it.
    pub fn check(self, source: &Source, problems: &mut Vec<Problem>) -> Option<WatchdogConfig> {
        let mut ok = true;
        let mut problem = |offset: usize, severity: Severity, message: String| {
            ok &= severity != Severity::Error;
            problems.push(source.problem(Some(offset), severity, message));
        };
        // At boot, as PID 1, the configuration is read before /dev is mounted, and
        // opening the device at start says loudly enough when it is not there.
        let look = !source.offline && !source.at_boot;
        let device = match self.device {
            Some(d) => {
                let path = d.get_ref();
                let wrong = super::values::nul_in("watchdog device", path.as_os_str(), "path")
                    .or_else(|| {
                        path.is_relative().then(|| {
                            format!(
                                "watchdog device \"{}\" must be an absolute path, e.g. \"{DEFAULT_DEVICE}\"",
                                path.display()
                            )
                        })
                    });
                if let Some(why) = wrong {
                    problem(d.span().start, Severity::Error, why);
                    PathBuf::new()
                } else {
                    if let Some(why) = look.then(|| not_a_device(path, "")).flatten() {
                        problem(d.span().start, Severity::Runtime, why);
                    }
                    d.into_inner()
                }
            }
            None => {
                let default = PathBuf::from(DEFAULT_DEVICE);
                let said = " (the default: no device is set)";
                if let Some(why) = look.then(|| not_a_device(&default, said)).flatten() {
                    problem(self.at, Severity::Runtime, why);
                }
                default
            }
        };
        let timeout = match self.timeout {
            Some(t) if t.get_ref().as_secs() == 0 || t.get_ref().subsec_nanos() != 0 => {
                problem(
                    t.span().start,
                    Severity::Error,
                    "watchdog timeout must be a whole number of seconds, at least 1 (drivers take seconds), e.g. \"30s\"".into(),
                );
                DEFAULT_TIMEOUT
            }
            Some(t) => t.into_inner(),
            None => DEFAULT_TIMEOUT,
        };
        ok.then_some(WatchdogConfig {
            device,
            timeout,
            on_shutdown: self.on_shutdown.unwrap_or_default(),
        })
    }
}

/// Why `path` is not a character device here, if it is not; `said` follows its path.
fn not_a_device(path: &std::path::Path, said: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_char_device() => None,
        Ok(meta) => Some(format!(
            "watchdog device {}{said} is {}, not a character device",
            path.display(),
            crate::filekind::kind(meta.file_type())
        )),
        Err(e) => Some(format!(
            "watchdog device {}{said}: {e} (on the board its driver must be loaded before ember starts)",
            path.display()
        )),
    }
}
