//! A signal that `kill` sends: any the kernel delivers, by name or by number, the
//! real-time ones too (`SIGRTMIN+N`, counted from 34 as systemd and [`crate::pid1`] count
//! them), which nix's `Signal` has no name for. Found by a hostile review: `ember ctl
//! kill app --signal 35` (or `RTMIN+1`, as `systemctl kill` takes) was "unknown signal",
//! though the README says any number.

use crate::pid1::SYSTEMD_RTMIN;
use nix::errno::Errno;
use nix::sys::signal::Signal;

/// The kernel's last signal on Linux (`_NSIG - 1`).
const LAST: i32 = 64;

/// A signal's number, one the kernel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnySignal(i32);

impl From<Signal> for AnySignal {
    fn from(signal: Signal) -> AnySignal {
        AnySignal(signal as i32)
    }
}

impl AnySignal {
    /// `"HUP"`, `"SIGHUP"`, `"1"`, `"RTMIN+2"`, `"SIGRTMAX-1"`, `"36"` (any case, spaces
    /// around ignored); what a stop_signal takes, and the real-time signals besides.
    pub fn parse(text: &str) -> Result<AnySignal, String> {
        if let Ok(signal) = crate::config::values::parse_signal(text) {
            return Ok(signal.into());
        }
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let number = if let Ok(n) = upper.parse::<i32>() {
            // 32 and 33 have no name (glibc keeps them for its threads), but exist.
            Some(n)
        } else if let Some(rest) = name.strip_prefix("RTMIN") {
            offset(rest, '+').map(|n| SYSTEMD_RTMIN + n)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            offset(rest, '-').map(|n| LAST - n)
        } else {
            None
        };
        number
            .filter(|n| (32..=LAST).contains(n))
            .map(AnySignal)
            .ok_or_else(|| {
                format!(
                    "unknown signal \"{}\"; write a name such as \"HUP\" or \"SIGTERM\", a number from 1 to {LAST}, or a real-time one as \"SIGRTMIN+N\" (SIGRTMIN is {SYSTEMD_RTMIN})",
                    text.trim()
                )
            })
    }

    /// "SIGHUP", "SIGRTMIN+1", or "signal 32".
    pub fn name(self) -> String {
        crate::pid1::signal_name(self.0)
    }

    pub fn is(self, signal: Signal) -> bool {
        self.0 == signal as i32
    }

    /// Sends it to `pid` (a negative one: a process group), as kill(2) does.
    pub fn to(self, pid: i32) -> Result<(), Errno> {
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        Errno::result(unsafe { nix::libc::kill(pid, self.0) }).map(drop)
    }
}

/// `""` (0), or `+N` / `-N` with `sign`.
fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix(sign)?
        .parse::<i32>()
        .ok()
        .filter(|n| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_real_time_signals() {
        let n = |t: &str| AnySignal::parse(t).map(|s| s.0);
        assert_eq!(n("hup"), Ok(1));
        assert_eq!(n(" SIGTERM "), Ok(15));
        assert_eq!(n("9"), Ok(9));
        assert_eq!(n("35"), Ok(35));
        assert_eq!(n("32"), Ok(32));
        assert_eq!(n("RTMIN"), Ok(34));
        assert_eq!(n("sigrtmin+1"), Ok(35));
        assert_eq!(n("SIGRTMAX"), Ok(64));
        assert_eq!(n("RTMAX-2"), Ok(62));
        for bad in [
            "0",
            "-9",
            "65",
            "2147483648",
            "RTMIN+31",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+",
            "nope",
            "",
        ] {
            let e = AnySignal::parse(bad).unwrap_err();
            assert!(e.contains("unknown signal"), "{bad}: {e}");
        }
        assert_eq!(AnySignal(35).name(), "SIGRTMIN+1");
        assert_eq!(AnySignal::from(Signal::SIGHUP).name(), "SIGHUP");
    }
}
