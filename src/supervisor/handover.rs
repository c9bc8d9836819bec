//! What PID 1 hands to the next binary at `ember ctl reexec`: written (in
//! [`ember_engine::wire`]'s encoding, after a magic line and the format's number) into a
//! memfd whose number the new binary gets on its command line, with the fds it must keep
//! (the control socket's listener, the output pipes, the notify sockets, the watchdog)
//! left open across the exec. The format is versioned: a binary that reads another format
//! is not exec'd (the old one asks first: `ember --handover-accepts N`), so the board is
//! never left with an init that cannot take over.

use super::model::Pid;
use super::output::OpenPipe;
use ember_engine::wire::{Reader, Writer};
use ember_ipc::{ConfigStatus, LogLine, Stream};
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The format this binary writes. 1 was JSON (never in a release); 2 had no notify
/// sockets (the next binary bound them again).
pub const FORMAT: u32 = 3;

/// Whether this binary reads a handover in `format`: its own, and 2, which an ember
/// before it writes (an upgrade from one of those takes over too, binding the notify
/// sockets again as 2's readers did).
pub fn reads(format: u64) -> bool {
    format == 2 || format == u64::from(FORMAT)
}

/// What a handover starts with, before its format's number.
const MAGIC: &[u8] = b"ember handover\n";

/// What `ember --handover-accepts N` prints when it reads format N. The old binary takes
/// only this line as a yes: an exit status of 0 alone is what /bin/true, or a script that
/// is not ember, gives any question, and exec'ing one of those in PID 1's place ends the
/// board (it exits at once: a kernel panic).
pub fn accepting(format: u32) -> String {
    format!("ember reads handover format {format}\n")
}

/// Everything the next binary takes over.
#[derive(Debug, Clone, PartialEq)]
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
    /// Each notify socket's fd, by service (format 3).
    pub notify: Vec<(String, RawFd)>,
}

/// The effects of one service's current run that the new binary needs.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Handover {
    fn write(&self, w: &mut Writer) {
        w.raw(MAGIC);
        w.u64(u64::from(self.format));
        w.str(&self.from);
        w.duration(self.elapsed);
        w.u64(self.seq);
        w.u64(self.system_seq);
        self.engine.write(w);
        w.count(self.children.len());
        for (pid, name) in &self.children {
            w.i64(i64::from(*pid));
            w.str(name);
        }
        w.count(self.procs.len());
        for p in &self.procs {
            w.str(&p.name);
            w.opt_i64(p.pgid.map(i64::from));
            w.opt_i64(p.session.map(i64::from));
            w.opt_str(p.cgroup.as_ref().and_then(|c| c.to_str()));
            w.u64(p.oom_kills_before);
            w.u64(p.cpu_before);
        }
        w.count(self.pipes.len());
        for p in &self.pipes {
            w.i64(i64::from(p.fd));
            w.str(&p.name);
            w.u64(p.run);
            w.str(p.stream.word());
        }
        w.opt_i64(self.control.map(i64::from));
        w.opt_i64(self.watchdog.map(i64::from));
        w.count(self.logs.len());
        for (name, lines) in &self.logs {
            w.str(name);
            w.count(lines.len());
            for l in lines {
                w.str(l.stream.word());
                w.str(&l.line);
                w.u64(l.time_usec);
                w.u64(l.seq);
            }
        }
        w.bool(self.boot_complete);
        w.str(&self.config_status.path);
        w.bool(self.config_status.fallback);
        w.count(self.config_status.problems.len());
        for p in &self.config_status.problems {
            w.str(p);
        }
        w.count(self.published.len());
        for (name, seq) in &self.published {
            w.str(name);
            w.u64(*seq);
        }
        self.timeline.write(w);
        if self.format < 3 {
            return; // what 2's readers read, for the tests of an upgrade from 2
        }
        w.count(self.notify.len());
        for (name, fd) in &self.notify {
            w.str(name);
            w.i64(i64::from(*fd));
        }
    }

    /// Reads what [`Handover::write`] wrote: the magic and format checked first.
    fn read(bytes: &[u8]) -> Result<Handover, String> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err("not a handover (no magic line)".to_owned());
        };
        let Some((format, rest)) = rest.split_first_chunk::<8>() else {
            return Err("not a handover (no format after the magic line)".to_owned());
        };
        let format = u64::from_le_bytes(*format);
        if !reads(format) {
            return Err(format!(
                "the handover is in format {format}, this binary reads formats 2 and {FORMAT}"
            ));
        }
        let mut r = Reader::new(rest);
        let mut h = Handover::read_rest(&mut r);
        h.format = u32::try_from(format).unwrap_or(FORMAT);
        if format >= 3 {
            h.notify = (0..r.count())
                .map(|_| (r.str(), r.narrow_signed()))
                .collect();
        }
        r.finish()
            .map(|()| h)
            .map_err(|e| format!("a handover this binary cannot read: {e}"))
    }

    fn read_rest(r: &mut Reader) -> Handover {
        Handover {
            format: FORMAT,
            from: r.str(),
            elapsed: r.duration(),
            seq: r.u64(),
            system_seq: r.u64(),
            engine: ember_engine::carry::Carried::read(r),
            children: (0..r.count())
                .map(|_| (r.narrow_signed(), r.str()))
                .collect(),
            procs: (0..r.count())
                .map(|_| CarriedProc {
                    name: r.str(),
                    pgid: r.opt_i32(),
                    session: r.opt_i32(),
                    cgroup: r.opt_str().map(std::path::PathBuf::from),
                    oom_kills_before: r.u64(),
                    cpu_before: r.u64(),
                })
                .collect(),
            pipes: (0..r.count())
                .map(|_| OpenPipe {
                    fd: r.narrow_signed(),
                    name: r.str().into(),
                    run: r.u64(),
                    stream: r.word().unwrap_or(Stream::Stdout),
                })
                .collect(),
            control: r.opt_i32(),
            watchdog: r.opt_i32(),
            logs: (0..r.count())
                .map(|_| {
                    let service = r.str();
                    let lines = (0..r.count())
                        .map(|_| LogLine {
                            service: service.clone(),
                            stream: r.word().unwrap_or(Stream::Stdout),
                            line: r.str(),
                            time_usec: r.u64(),
                            seq: r.u64(),
                        })
                        .collect();
                    (service, lines)
                })
                .collect(),
            boot_complete: r.bool(),
            config_status: ConfigStatus {
                path: r.str(),
                fallback: r.bool(),
                problems: (0..r.count()).map(|_| r.str()).collect(),
            },
            published: (0..r.count()).map(|_| (r.str(), r.u64())).collect(),
            timeline: super::timeline::Recorder::read(r),
            notify: Vec::new(),
        }
    }
}

/// Writes `handover` into a memfd that the exec keeps open; returns it.
pub fn write(handover: &Handover) -> Result<OwnedFd, String> {
    let mut w = Writer::default();
    handover.write(&mut w);
    let bytes = w.into_bytes();
    let fd = nix::sys::memfd::memfd_create(c"ember-handover", nix::sys::memfd::MFdFlags::empty())
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&bytes)
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
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the handover: {e}"))?;
    Handover::read(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// A handover with something in every list and every optional field.
    fn sample() -> Handover {
        use super::super::model::{State, Sub, Unit, Want};
        let mut timeline = super::super::timeline::Recorder::new(Duration::from_millis(5));
        let mut unit = Unit::new(
            ember_engine::spec::ServiceSpec::new("web", &["/bin/web"]),
            Duration::ZERO,
        );
        timeline.observe(&unit, Duration::ZERO);
        unit.run = 1;
        unit.state = State::Failed;
        unit.sub = Sub::ExitCode;
        unit.reason = Some("exited 3".into());
        unit.since = Duration::from_millis(20);
        timeline.observe(&unit, unit.since);
        let carried = ember_engine::carry::CarriedUnit {
            name: "worker@1".into(),
            want: Want::Up,
            state: State::Activating,
            sub: Sub::AutoRestart,
            since: Duration::from_millis(7),
            pid: Some(-1),
            run: 3,
            deadline: Some(Duration::from_nanos(1)),
            restarts: 2,
            consecutive_failures: 1,
            failures: vec![Duration::from_secs(1), Duration::from_secs(2)],
            active_since: None,
            exit_code: Some(-3),
            exit_signal: Some(9),
            result: Some(ember_ipc::RunResult::Signal),
            reason: Some("killed by SIGKILL".into()),
            status_text: Some("".into()),
            restart_pending: true,
            failing: Some((Sub::Timeout, "no answer".into())),
            removing: false,
            next_run: Some(Duration::from_secs(60)),
            next_base: Duration::from_secs(3),
            schedule_on: true,
            due: false,
            transient: true,
            stop_signal: 15,
            stop_timeout: Duration::from_secs(5),
            ordered_after: vec!["db".into(), "net".into()],
        };
        Handover {
            format: FORMAT,
            from: "0.1.0".into(),
            elapsed: Duration::from_millis(1234),
            seq: 42,
            system_seq: 7,
            engine: ember_engine::carry::Carried {
                booted_at: Duration::from_millis(300),
                units: vec![carried],
            },
            children: vec![(12, "web".into())],
            procs: vec![CarriedProc {
                name: "web".into(),
                pgid: Some(12),
                session: None,
                cgroup: Some("/sys/fs/cgroup/ember/web".into()),
                oom_kills_before: 1,
                cpu_before: 99,
            }],
            pipes: vec![OpenPipe {
                fd: 9,
                name: "web".into(),
                run: 1,
                stream: Stream::Stderr,
            }],
            control: Some(3),
            watchdog: Some(4),
            logs: vec![(
                "web".into(),
                vec![LogLine {
                    service: "web".into(),
                    stream: Stream::Stdout,
                    line: "listening on :80 ✓".into(),
                    time_usec: 1_700_000_000_000_000,
                    seq: 5,
                }],
            )],
            boot_complete: true,
            config_status: ConfigStatus {
                path: "/etc/ember/ember.toml".into(),
                fallback: true,
                problems: vec!["ember.toml:3:1: bad".into()],
            },
            published: vec![("web".into(), 41)],
            timeline,
            notify: vec![("web".into(), 12)],
        }
    }

    fn bytes_of(h: &Handover) -> Vec<u8> {
        let mut w = Writer::default();
        h.write(&mut w);
        w.into_bytes()
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_refused() {
        let bytes = bytes_of(&sample());
        assert_eq!(Handover::read(&bytes), Ok(sample()));
        for cut in 0..bytes.len() {
            assert!(Handover::read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = Handover::read(&longer).unwrap_err();
        assert!(e.contains("1 bytes are left after its end"), "{e}");
        let e = Handover::read(b"{\"format\": 1}").unwrap_err();
        assert!(e.contains("not a handover"), "{e}");
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

    /// An upgrade from an ember that writes format 2 (no notify sockets) still takes over.
    #[test]
    fn a_handover_in_format_2_is_read_without_notify_sockets() {
        let mut older = sample();
        older.format = 2;
        older.notify.clear();
        let bytes = bytes_of(&older);
        assert_eq!(Handover::read(&bytes), Ok(older));
        assert!(reads(2) && reads(3) && !reads(1) && !reads(4));
    }
}
