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

/// Whether this process is the machine's init, before /proc may be mounted: PID 1, and
/// either no /proc to tell (the kernel starts init with none) or one that says
/// [`Role::Machine`].
pub fn kernel_init() -> bool {
    std::process::id() == 1
        && (std::fs::read_link("/proc/self").is_err() || detect_role() == Role::Machine)
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

/// SIGRTMIN as glibc numbers it, from which systemd, `docker stop` (a STOPSIGNAL of
/// SIGRTMIN+3), podman and LXC count their real-time signals: fixed, whatever libc ember
/// is built with (musl's SIGRTMIN is 35, and SIGRTMIN+4 would be read as a reboot).
pub const SYSTEMD_RTMIN: i32 = 34;

/// What a signal sent to ember means. One table ([`SIGNALS`]) for the main loop and the
/// emergency loop alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A child ended: reap.
    Reap,
    /// Read the configuration again.
    Reload,
    /// Stop every service in reverse order, then the last steps and reboot(2).
    Shutdown(Power),
    /// Ctrl-Alt-Del: what `[system] ctrl_alt_del` says.
    CtrlAltDel,
    /// systemd's "immediately": the last steps (every process ended, sync, unmount,
    /// reboot(2)) at once, no service stopped first.
    Immediate(Power),
}

/// Every signal ember acts on, by sysvinit's, busybox's and systemd's conventions.
pub const SIGNALS: [(i32, Meaning); 13] = {
    use nix::libc;
    [
        (libc::SIGCHLD, Meaning::Reap),
        (libc::SIGHUP, Meaning::Reload),
        (libc::SIGTERM, Meaning::Shutdown(Power::Reboot)),
        (libc::SIGINT, Meaning::CtrlAltDel),
        (libc::SIGUSR1, Meaning::Shutdown(Power::Halt)),
        (libc::SIGUSR2, Meaning::Shutdown(Power::Poweroff)),
        (libc::SIGPWR, Meaning::Shutdown(Power::Poweroff)),
        (SYSTEMD_RTMIN + 3, Meaning::Shutdown(Power::Halt)),
        (SYSTEMD_RTMIN + 4, Meaning::Shutdown(Power::Poweroff)),
        (SYSTEMD_RTMIN + 5, Meaning::Shutdown(Power::Reboot)),
        (SYSTEMD_RTMIN + 13, Meaning::Immediate(Power::Halt)),
        (SYSTEMD_RTMIN + 14, Meaning::Immediate(Power::Poweroff)),
        (SYSTEMD_RTMIN + 15, Meaning::Immediate(Power::Reboot)),
    ]
};

/// What `signal` (its number) means to ember; `None` for one it does not act on.
pub fn meaning(signal: i32) -> Option<Meaning> {
    SIGNALS
        .iter()
        .find(|(number, _)| *number == signal)
        .map(|(_, meaning)| *meaning)
}

/// "SIGTERM", or "SIGRTMIN+4" counted as systemd counts it.
pub fn signal_name(signal: i32) -> String {
    if signal >= SYSTEMD_RTMIN {
        return format!("SIGRTMIN+{}", signal - SYSTEMD_RTMIN);
    }
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The signals ember acts on ([`SIGNALS`]). The kernel drops a signal sent to PID 1 that
/// has no handler, so as PID 1 they are blocked from the first instruction of main, and
/// in any role from the start of the daemon; they are never unblocked: the runtime reads
/// them from a signalfd ([`crate::supervisor::signals`]), the emergency loop with
/// sigwaitinfo, and one sent early stays pending until one of them does.
pub fn handled_signals() -> nix::sys::signal::SigSet {
    let mut set = std::mem::MaybeUninit::<nix::libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset initialises the set; sigaddset only adds valid signal numbers
    // (the table's, all below the kernel's 64) to it.
    unsafe {
        nix::libc::sigemptyset(set.as_mut_ptr());
        for (signal, _) in SIGNALS {
            nix::libc::sigaddset(set.as_mut_ptr(), signal);
        }
        nix::sys::signal::SigSet::from_sigset_t_unchecked(set.assume_init())
    }
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

/// Time since boot less any time suspended (CLOCK_MONOTONIC, which `Instant` reads).
pub fn monotonic() -> Option<std::time::Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
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
