//! What PID 1 hands to the next binary at `ember ctl reexec`: written as JSON into a
//! memfd whose number the new binary gets on its command line, with the fds it must keep
//! (the control socket's listener, the output pipes, the watchdog) left open across the
//! exec. The format is versioned: a binary that reads another format is not exec'd (the
//! old one asks first: `ember --handover-format`), so the board is never left with an
//! init that cannot take over.

use super::model::Pid;
use super::output::OpenPipe;
use ember_ipc::{ConfigStatus, LogLine};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The format this binary writes and reads.
pub const FORMAT: u32 = 1;

/// Everything the next binary takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub format: u32,
    /// The version of the binary that wrote it, for the new one's log.
    pub from: String,
    /// Time since the runtime's origin: the new one's origin is as far back, so that
    /// every time in the engine's records stays valid.
    pub elapsed: Duration,
    /// The counters of published changes: they go on, never back.
    pub seq: u64,
    pub system_seq: u64,
    pub engine: ember_engine::carry::Carried,
    /// Each main process and the service it is of (exits are still reaped and counted).
    pub children: Vec<(Pid, String)>,
    pub procs: Vec<CarriedProc>,
    pub pipes: Vec<OpenPipe>,
    /// The control socket's listening fd, when there is one.
    pub control: Option<RawFd>,
    /// The open watchdog device's fd (closing it would fire, or stop, the watchdog).
    pub watchdog: Option<RawFd>,
    /// Each service's last lines, for `ember ctl logs`.
    pub logs: Vec<(String, Vec<LogLine>)>,
    pub boot_complete: bool,
    pub config_status: ConfigStatus,
    /// The seq of each service's last published change: what its status reads.
    pub published: Vec<(String, u64)>,
    /// Each service's transitions this boot, for `ember analyze`.
    pub timeline: super::timeline::Recorder,
}

/// The effects of one service's current run that the new binary needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarriedProc {
    pub name: String,
    pub pgid: Option<Pid>,
    pub session: Option<Pid>,
    pub cgroup: Option<std::path::PathBuf>,
    pub oom_kills_before: u64,
    pub cpu_before: u64,
}

/// Whether an fd is closed at exec: cleared for what the next binary takes over.
pub fn close_on_exec(fd: RawFd, close: bool) -> Result<(), String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: only the flags of an fd this process holds are changed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = if close {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(|e| format!("fd {fd:?}: {e}"))
}

/// Writes `handover` into a memfd that the exec keeps open; returns it.
pub fn write(handover: &Handover) -> Result<OwnedFd, String> {
    let text = serde_json::to_vec(handover).map_err(|e| e.to_string())?;
    let fd = nix::sys::memfd::memfd_create(c"ember-handover", nix::sys::memfd::MFdFlags::empty())
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&text)
        .map_err(|e| format!("cannot write the handover: {e}"))?;
    Ok(OwnedFd::from(file))
}

/// Reads the handover from the memfd `fd` (given on the command line), and closes it.
/// `Err` says why it cannot be taken over: not a handover, or another format.
pub fn read(fd: RawFd) -> Result<Handover, String> {
    if nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_err()
    {
        return Err(format!("fd {fd} is not open"));
    }
    // SAFETY: the fd was handed to this process for this alone, and is checked open.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut text))
        .map_err(|e| format!("cannot read the handover: {e}"))?;
    // The format first, alone (every other field ignored): read straight from the text,
    // as the whole is, not through a `serde_json::Value` (whose deserializer would be
    // one more copy of every type's code in PID 1).
    #[derive(Deserialize)]
    struct Format {
        format: Option<u64>,
    }
    let format = serde_json::from_slice::<Format>(&text)
        .map_err(|e| format!("not a handover: {e}"))?
        .format;
    if format != Some(u64::from(FORMAT)) {
        return Err(format!(
            "the handover is in format {}, this binary reads format {FORMAT}",
            format.map_or("(none)".to_owned(), |f| f.to_string())
        ));
    }
    serde_json::from_slice(&text).map_err(|e| format!("a handover this binary cannot read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    fn sample() -> Handover {
        Handover {
            format: FORMAT,
            from: "0.1.0".into(),
            elapsed: Duration::from_millis(1234),
            seq: 42,
            system_seq: 7,
            engine: ember_engine::carry::Carried {
                booted_at: Duration::ZERO,
                units: Vec::new(),
            },
            children: vec![(12, "web".into())],
            procs: vec![CarriedProc {
                name: "web".into(),
                pgid: Some(12),
                session: Some(12),
                cgroup: None,
                oom_kills_before: 0,
                cpu_before: 0,
            }],
            pipes: Vec::new(),
            control: Some(3),
            watchdog: None,
            logs: Vec::new(),
            boot_complete: true,
            config_status: ConfigStatus::default(),
            published: vec![("web".into(), 41)],
            timeline: super::super::timeline::Recorder::new(Duration::from_millis(5)),
        }
    }

    #[test]
    fn a_handover_reads_back_as_written_and_another_format_is_refused() {
        let fd = write(&sample()).expect("write").into_raw_fd();
        assert_eq!(read(fd).expect("read"), sample());
        assert!(read(fd).unwrap_err().contains("not open"), "read closes it");

        let mut newer = sample();
        newer.format = FORMAT + 1;
        let fd = write(&newer).expect("write").into_raw_fd();
        let e = read(fd).unwrap_err();
        assert!(e.contains(&format!("format {}", FORMAT + 1)), "{e}");
    }
}
