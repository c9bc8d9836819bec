//! PID-1 duties: early boot, the final shutdown sequence, the emergency loop, and the
//! `poweroff`/`reboot`/`halt` commands.
//!
//! - [`early`]: mounts, console, hostname, Ctrl-Alt-Del; nothing that waits on a service.
//! - [`mounts`]: /proc/self/mountinfo, mounting and unmounting.
//! - [`shutdown`]: after the services have stopped: kill what is left, sync, unmount,
//!   reboot(2).
//! - [`emergency`]: when the main loop cannot go on: keep reaping, keep the socket.
//! - [`system`]: the client side of `ember poweroff|reboot|halt` and the multi-call names.
//! - [`watchdog`]: the hardware watchdog the main loop pets.

pub mod console;
pub mod early;
pub mod emergency;
pub mod mounts;
pub mod shutdown;
pub mod system;
pub mod watchdog;

/// Where ember runs (the protocol's enum: timelines carry it as it is).
pub use ember_ipc::Role;

/// Tells which role is ours. Needs /proc: as PID 1 call [`early::mount_proc`] first.
///
/// In the initial PID namespace PID 2 is always the kernel's kthreadd; in any other
/// namespace it is not (or /proc is another namespace's, and /proc/self is not "1").
pub fn detect_role() -> Role {
    if std::process::id() != 1 {
        return Role::Supervisor;
    }
    let own_proc = std::fs::read_link("/proc/self")
        .map(|p| p.as_os_str() == "1")
        .unwrap_or(false);
    let kthreadd = std::fs::read_to_string("/proc/2/comm")
        .map(|c| c.trim() == "kthreadd")
        .unwrap_or(false);
    if own_proc && kthreadd {
        Role::Machine
    } else {
        Role::Namespace
    }
}

/// What the system does after every service has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Poweroff,
    Reboot,
    Halt,
}

impl Power {
    pub fn word(self) -> &'static str {
        match self {
            Power::Poweroff => "power off",
            Power::Reboot => "reboot",
            Power::Halt => "halt",
        }
    }
}

/// When ember's main began, the origin of its start-up timings.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
/// The uptime then (as PID 1 of the machine: when the kernel handed over).
static STARTED_UPTIME: std::sync::OnceLock<Option<std::time::Duration>> =
    std::sync::OnceLock::new();

/// Marks the start of ember; call first thing in main.
pub fn mark_start() {
    let _ = STARTED.set(std::time::Instant::now());
    let _ = STARTED_UPTIME.set(uptime());
}

/// What /proc/uptime read when [`mark_start`] ran.
pub fn uptime_at_start() -> Option<std::time::Duration> {
    STARTED_UPTIME.get().copied().flatten()
}

/// The signals ember acts on. The kernel drops a signal sent to PID 1 that has no
/// handler, so as PID 1 they are blocked from the first instruction of main, and in any
/// role from the start of the daemon; they are never unblocked: the runtime reads them
/// from a signalfd ([`crate::supervisor::signals`]), and one sent early stays pending
/// until it does.
pub fn handled_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

pub fn block_signals() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&handled_signals()),
        None,
    );
}

/// Time since [`mark_start`].
pub fn since_start() -> std::time::Duration {
    STARTED.get().map(|t| t.elapsed()).unwrap_or_default()
}

/// Time since boot on the clock /proc/uptime reads (CLOCK_BOOTTIME), to the microsecond.
pub fn uptime() -> Option<std::time::Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(std::time::Duration::new(
        t.tv_sec() as u64,
        t.tv_nsec() as u32,
    ))
}

/// Uptime as "12.345678 s", for boot timing lines.
pub fn uptime_text() -> String {
    uptime()
        .map(|u| format!("{:.6} s", u.as_secs_f64()))
        .unwrap_or_else(|| "unknown".into())
}
