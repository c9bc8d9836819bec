//! The end of the shutdown sequence, after every service has stopped in reverse order:
//! SIGTERM to every remaining process, SIGKILL after `shutdown_timeout`, sync, unmount
//! (or remount read-only) deepest first, reboot(2). Each step is logged with its duration.
//!
//! "Every remaining process" is every process in ember's PID namespace, not only ember's
//! children: a process entered from outside (`nsenter`, `docker exec`) has its parent
//! outside the namespace, so waitpid(2) never reports it. The grace is therefore measured
//! by looking at /proc, and what is signalled and what is killed is named in the log.

use super::watchdog::Petting;
use super::{mounts, Power, Role};
use crate::supervisor::usage;
use ember_ipc::text::escape_controls;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How many processes a log line names before it only counts the rest.
const NAMED: usize = 10;
/// How long SIGKILLed processes get to be gone (they only need the kernel's time).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How long the watchdog is petted through these steps beyond `shutdown_timeout`: a
/// shutdown stuck longer than that (a sync or an unmount that never ends) is reset.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(120);

/// Runs the final steps. Only ever returns if reboot(2) itself failed. The watchdog is
/// petted meanwhile, and closed or left armed just before reboot(2).
pub fn finish(role: Role, power: Power, shutdown_timeout: Duration, watchdog: Option<Petting>) {
    end_remaining_processes(shutdown_timeout);

    let step = Instant::now();
    if while_it_gets_somewhere("the sync", power, sync).is_some() {
        crate::log::info!("shutdown: sync done in {} ms", ms(step));
    }

    let step = Instant::now();
    if role == Role::Machine {
        if let Some(result) = while_it_gets_somewhere("unmounting", power, mounts::unmount_all) {
            crate::log::info!(
                "shutdown: unmounted {} filesystems, remounted {} read-only in {} ms",
                result.unmounted,
                result.remounted_read_only,
                ms(step)
            );
            for failure in &result.failed {
                crate::log::warn!("shutdown: could not unmount or remount {failure}");
            }
            while_it_gets_somewhere("the last sync", power, sync);
        }
    } else {
        // The filesystems belong to the host, or are shared with it.
        crate::log::info!("shutdown: unmount skipped: not the initial PID namespace, the host owns the filesystems");
    }

    if let Some(watchdog) = watchdog {
        watchdog.finish(power);
    }
    crate::log::info!("shutdown: {}", power.word());
    reboot(power);
}

/// How long a step of the shutdown may go without the kernel's dirty pages going down,
/// and how many such stretches in a row end the wait (systemd-shutdown's rule for its sync).
const STRETCH: Duration = Duration::from_secs(10);
const STRETCHES: u32 = 3;

/// A sync that never ends, for the tests (set by a status request for `__hang_sync`): it
/// blocks for good and the dirty pages never go down, as with a dead NFS server.
#[cfg(feature = "test-hooks")]
pub static HANG_SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn sync() {
    #[cfg(feature = "test-hooks")]
    if HANG_SYNC.load(std::sync::atomic::Ordering::Relaxed) {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    nix::unistd::sync();
}

/// Runs `step` (a sync, the unmounts) on a thread of its own and waits for it as long as
/// it gets somewhere. A filesystem that does not answer (a dead NFS server, a hung USB
/// stick) blocks sync(2) and umount(2) for good, and PID 1 waiting on it never reached
/// reboot(2): the board hung, unless a hardware watchdog reset it. The wait ends after
/// STRETCHES stretches in a row in which the kernel's dirty and writeback pages did not
/// go down; the thread is left blocked, and the shutdown goes on without it. None then.
fn while_it_gets_somewhere<T: Send + 'static>(
    what: &str,
    power: super::Power,
    step: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let done = std::sync::Arc::new(crate::mailbox::Mailbox::new(1));
    let tell = done.clone();
    let started = std::thread::Builder::new()
        .name("shutdown-step".into())
        .spawn(move || {
            let _ = tell.try_send(step());
        });
    if let Err(e) = started {
        crate::log::warn!("shutdown: no thread for {what} ({e}); waiting on it here");
        return None;
    }
    let begun = Instant::now();
    let mut unwritten = unwritten_kib();
    let mut stuck = 0;
    loop {
        if let Some(result) = done.recv_timeout(STRETCH) {
            return Some(result);
        }
        let now = unwritten_kib();
        match (unwritten, now) {
            (Some(before), Some(after)) if after < before => stuck = 0,
            _ => stuck += 1,
        }
        unwritten = now;
        if stuck >= STRETCHES {
            crate::log::warn!(
                "shutdown: {what} has not ended after {} s, and the data still to write has not gone down for {} s (a filesystem that does not answer: a dead network server or a hung device); going on to {} without it",
                begun.elapsed().as_secs(),
                STRETCH.as_secs() * u64::from(STRETCHES),
                power.word()
            );
            return None;
        }
    }
}

/// The kernel's dirty and writeback pages, in KiB (/proc/meminfo): what a sync has left.
fn unwritten_kib() -> Option<u64> {
    #[cfg(feature = "test-hooks")]
    if HANG_SYNC.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(field("Dirty:")? + field("Writeback:")?)
}

/// reboot(2), only ever as PID 1. In a PID namespace it ends the namespace instead.
pub fn reboot(power: Power) {
    if std::process::id() != 1 {
        crate::log::error!("refusing reboot(2): ember is not PID 1");
        return;
    }
    use nix::sys::reboot::RebootMode;
    let mode = match power {
        Power::Poweroff => RebootMode::RB_POWER_OFF,
        Power::Reboot => RebootMode::RB_AUTOBOOT,
        Power::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    crate::log::flush();
    let Err(e) = nix::sys::reboot::reboot(mode);
    // PID 1 of a PID namespace that may not reboot (a container without CAP_SYS_BOOT,
    // Docker's default, or a seccomp filter): its exit ends the namespace as reboot(2)
    // would have. Not the machine's init (or one that cannot tell: no /proc), whose
    // exit is a kernel panic: the emergency loop keeps it.
    // (As PID 1, not the machine's init is PID 1 of a namespace.)
    if !super::kernel_init() {
        crate::log::warn!(
            "reboot(2) refused ({e}: this PID namespace may not reboot, as in a container without CAP_SYS_BOOT); PID 1 exits instead, which ends the namespace"
        );
        crate::log::flush();
        std::process::exit(0);
    }
    crate::log::error!("reboot(2) failed: {e}");
}

/// After a reexec whose handover could not be read: the previous binary's services run
/// on, unknown to this one; as PID 1 they are ended (SIGTERM, the grace, SIGKILL) so that
/// the configuration starts afresh with nothing running twice. Not as PID 1: kill(-1)
/// would reach the whole machine, so they are left running, and said.
pub fn stop_leftovers(role: Role, grace: Duration) {
    if role.is_pid1() {
        end_remaining_processes(grace);
    } else {
        crate::log::error!("reexec: not PID 1: the previous binary's services are left running, unsupervised; stop them by hand");
    }
}

/// SIGTERM to every process left in the namespace; the grace; SIGKILL to what is still
/// there. kill(-1) reaches every process ember may signal but itself, whoever its parent.
fn end_remaining_processes(grace: Duration) {
    let all = Pid::from_raw(-1);
    let step = Instant::now();
    reap_children();
    let before = remaining();
    match &before {
        Some(left) if left.is_empty() => {
            crate::log::info!("shutdown: SIGTERM to remaining processes: none left")
        }
        Some(left) => crate::log::info!(
            "shutdown: SIGTERM to remaining processes: {}",
            describe(left)
        ),
        None => crate::log::info!("shutdown: SIGTERM to remaining processes"),
    }
    let _ = kill(all, Signal::SIGTERM);
    // A stopped process acts on SIGTERM only once it runs again.
    let _ = kill(all, Signal::SIGCONT);
    // An interactive shell (a login on the console) ignores SIGTERM and ends on SIGHUP:
    // as systemd does, what has a controlling terminal gets SIGHUP too, after the
    // SIGTERM. Not the rest: to a daemon SIGHUP means "reload".
    for process in before.iter().flatten().filter(|p| p.terminal) {
        let _ = kill(Pid::from_raw(process.pid), Signal::SIGHUP);
    }
    let left = wait_until_gone(grace, None);
    if left.is_empty() {
        crate::log::info!("shutdown: every remaining process ended in {} ms", ms(step));
        return;
    }
    crate::log::warn!(
        "shutdown: still running after {} ms; SIGKILL to remaining processes: {}",
        grace.as_millis(),
        describe(&left)
    );
    let _ = kill(all, Signal::SIGKILL);
    let stuck = wait_until_gone(AFTER_KILL, Some(Signal::SIGKILL));
    if !stuck.is_empty() {
        crate::log::warn!(
            "shutdown: survived SIGKILL (stuck in the kernel): {}",
            describe(&stuck)
        );
    }
    crate::log::info!("shutdown: remaining processes gone in {} ms", ms(step));
}

/// A process that is still there, as the log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remaining {
    pid: i32,
    command: String,
    /// It has a controlling terminal.
    terminal: bool,
}

/// Reaps and polls until no process but ember is left or `timeout` has passed; returns
/// what is left. `again` is sent to every process at each look (SIGKILL: one forked
/// after the first kill(-1) is caught too).
fn wait_until_gone(timeout: Duration, again: Option<Signal>) -> Vec<Remaining> {
    let start = Instant::now();
    // Short looks first (most processes end at once), then no more than 10 a second:
    // each look reads /proc/*/stat, which is not free with thousands of processes.
    let mut pause = Duration::from_millis(5);
    loop {
        let children = reap_children();
        let left = match remaining() {
            Some(left) => left,
            // No /proc to look at: ember's own children are all it can wait for.
            None if children == Children::None => Vec::new(),
            None => vec![Remaining {
                pid: 0,
                command: "(children of ember; /proc is not readable)".into(),
                terminal: false,
            }],
        };
        if left.is_empty() || start.elapsed() >= timeout {
            return left;
        }
        if let Some(signal) = again {
            let _ = kill(Pid::from_raw(-1), signal);
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Children {
    None,
    Running,
}

/// Reaps every child that has ended; says whether any is left.
fn reap_children() -> Children {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Children::Running,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Children::None, // ECHILD: nobody left
        }
    }
}

/// The processes of ember's PID namespace still alive, ember aside; `None` when /proc
/// cannot be read.
fn remaining() -> Option<Vec<Remaining>> {
    let me = std::fs::read_link("/proc/self").ok()?;
    // A /proc of this namespace shows exactly its processes (and those of the namespaces
    // below it). One of another namespace (ember was not given its own) shows others
    // too: keep only those in ember's namespace then.
    let own_proc = me.as_os_str() == std::process::id().to_string().as_str();
    let own_namespace = std::fs::read_link("/proc/self/ns/pid").ok();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if name.as_os_str() == me.as_os_str() {
            continue;
        }
        // Gone meanwhile, or not ours to wait for: skip.
        let Some((stat, command)) = usage::stat_and_name(pid) else {
            continue;
        };
        if stat.kernel_thread() || !stat.alive() {
            continue;
        }
        if !own_proc && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != own_namespace {
            continue;
        }
        left.push(Remaining {
            pid,
            terminal: stat.tty != 0,
            command,
        });
    }
    // pids are unique: unstable is the same order, and a smaller sort.
    left.sort_unstable_by_key(|r| r.pid);
    Some(left)
}

/// "3 processes: 12 (sh -c ...), 40 (sleep 5), 41 (sleep 5)", naming at most [`NAMED`]
/// and counting the rest, so that a fork bomb's leftovers make one line, not thousands.
fn describe(left: &[Remaining]) -> String {
    let mut text = format!("{}:", count(left.len()));
    for (i, process) in left.iter().take(NAMED).enumerate() {
        let separator = if i == 0 { " " } else { ", " };
        text.push_str(&format!(
            "{separator}{} ({})",
            process.pid,
            command_of(process)
        ));
    }
    if left.len() > NAMED {
        text.push_str(&format!(" and {} more", left.len() - NAMED));
    }
    text
}

fn count(n: usize) -> String {
    match n {
        1 => "1 process".into(),
        n => format!("{n} processes"),
    }
}

/// The command line (cut at 100 characters, control characters as '?'), or the short
/// name in brackets when there is none to read (gone meanwhile, or exiting).
fn command_of(process: &Remaining) -> String {
    const MAX: usize = 100;
    let argv = std::fs::read(format!("/proc/{}/cmdline", process.pid)).unwrap_or_default();
    let text = String::from_utf8_lossy(&argv);
    let text = text.trim_end_matches('\0');
    if text.is_empty() {
        return format!("[{}]", escape_controls(&process.command));
    }
    let mut line = escape_controls(&text.replace('\0', " ")).into_owned();
    if line.chars().count() > MAX {
        line = line.chars().take(MAX).collect::<String>() + "...";
    }
    line
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_processes_make_one_bounded_line() {
        // Beyond any pid_max (2^22), so that no real process lends its cmdline.
        let left: Vec<Remaining> = (900_001_000..900_001_500)
            .map(|pid| Remaining {
                pid,
                command: "sleep".into(),
                terminal: false,
            })
            .collect();
        let line = describe(&left);
        assert!(line.starts_with("500 processes: 900001000 ("), "{line}");
        assert!(line.ends_with(" and 490 more"), "{line}");
        assert!(line.len() < 500, "{line}");
        assert_eq!(
            describe(&left[..1]),
            "1 process: 900001000 ([sleep])",
            "a pid with no readable cmdline is named by its comm"
        );
    }
}
