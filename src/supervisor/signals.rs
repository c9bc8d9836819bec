//! The signals the runtime acts on ([`crate::pid1::SIGNALS`]: SIGCHLD, SIGTERM, SIGINT,
//! SIGHUP, SIGUSR1, SIGUSR2, SIGPWR and systemd's real-time ones), read from a signalfd,
//! as s6-svscan and dinit read theirs.
//!
//! They are blocked from the start of the daemon (as PID 1, from the first instruction of
//! main) and never unblocked: no handler ever runs inside PID 1, one sent at any moment
//! (while the configuration is read, across a reexec) waits, pending, until the main loop
//! reads it, and a burst of exits is one readable signalfd. With handlers, each SIGCHLD
//! that arrived while ember reaped interrupted it for a handler and a write to a pipe.
//!
//! The services start with an empty mask: the launch clears it in the child.

use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// Blocks the signals (again: as PID 1 they already are), gives them their default
    /// disposition, and opens the signalfd.
    pub fn open() -> Result<Signals, String> {
        let set = crate::pid1::handled_signals();
        crate::pid1::block_signals();
        restore_ignored();
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        // SAFETY: the SignalFd owns its fd, which stays open (and the same) until the
        // AsyncFd, its only owner, is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| format!("signalfd: cannot watch it: {e}"))?;
        Ok(Signals { fd })
    }

    /// The next signal's number (real-time ones have no [`nix::sys::signal::Signal`]).
    /// Cancel-safe: a signal is taken from the signalfd only when it is returned.
    pub async fn recv(&mut self) -> i32 {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                // The reactor is gone (the runtime is shutting down): nothing comes.
                return std::future::pending().await;
            };
            match ready.get_inner().read_signal() {
                Ok(Some(info)) => return info.ssi_signo as i32,
                // Read empty (EAGAIN), or an error a signalfd does not give: wait again.
                Ok(None) | Err(_) => ready.clear_ready(),
            }
        }
    }
}

/// Gives the signals ember acts on that are ignored their default action back (they must
/// be blocked first).
pub fn restore_ignored() {
    // An ignored signal is discarded when it is sent, never pending, so a signalfd
    // never sees it; and an ignored SIGCHLD makes the kernel reap every child itself,
    // its exit status lost. Whoever started ember may have left them ignored (`nohup`
    // ignores SIGHUP; `trap '' CHLD` in a script). Blocked first, so the default
    // action of none can run meanwhile. Only the ignored ones: setting SIGCHLD's
    // default action (which is to ignore it) discards one that is pending, as POSIX
    // says, and after a reexec a pending SIGCHLD is a service that ended during the
    // exec: its exit was never read, and it stayed a zombie.
    for (signal, _) in crate::pid1::SIGNALS {
        if ignored(signal) {
            // SAFETY: SIG_DFL installs no handler code.
            unsafe { nix::libc::signal(signal, nix::libc::SIG_DFL) };
        }
    }
}

/// Whether `signal`'s disposition is to ignore it (SIG_IGN).
fn ignored(signal: i32) -> bool {
    let mut current = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: with no new action, sigaction only writes the current one into `current`,
    // which is zeroed memory of its type.
    let rc = unsafe { nix::libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) };
    // SAFETY: zeroed, and filled in by the kernel when rc is 0.
    rc == 0 && unsafe { current.assume_init() }.sa_sigaction == nix::libc::SIG_IGN
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Sends `signal` to the calling thread. Only this thread's mask is set: the test
    /// harness's other threads would take a process-directed signal.
    fn tgkill(signal: i32) {
        // SAFETY: tgkill with this process's id and the calling thread's id.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_tgkill,
                std::process::id() as nix::libc::c_int,
                nix::unistd::gettid().as_raw(),
                signal,
            );
        }
    }

    /// Signals sent before the main loop waits are read, in the order of their
    /// numbers, and the mask stays as it was: blocked.
    #[test]
    fn signals_are_read_from_the_signalfd_and_stay_blocked() {
        let runtime = runtime();
        runtime.block_on(async {
            let mut signals = Signals::open().unwrap();
            tgkill(nix::libc::SIGHUP);
            tgkill(nix::libc::SIGUSR2);
            assert_eq!(signals.recv().await, nix::libc::SIGHUP);
            assert_eq!(signals.recv().await, nix::libc::SIGUSR2);
            tgkill(nix::libc::SIGCHLD);
            assert_eq!(signals.recv().await, nix::libc::SIGCHLD);
            // systemd's poweroff: a real-time signal, which nix has no name for.
            let poweroff = crate::pid1::SYSTEMD_RTMIN + 4;
            tgkill(poweroff);
            assert_eq!(signals.recv().await, poweroff);
        });
        let mut mask = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            None,
            Some(&mut mask),
        )
        .unwrap();
        assert!(mask.contains(Signal::SIGTERM) && mask.contains(Signal::SIGCHLD));
    }

    /// A SIGCHLD already pending when the signalfd opens is read from it (after a
    /// reexec, it is a service that ended during the exec), while an ignored signal gets
    /// its default action back.
    #[test]
    fn a_sigchld_pending_before_the_signalfd_opens_is_read_and_ignored_signals_are_reset() {
        let runtime = runtime();
        crate::pid1::block_signals();
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn) }
            .unwrap();
        tgkill(nix::libc::SIGCHLD);
        runtime.block_on(async {
            let mut signals = Signals::open().unwrap();
            assert!(!ignored(nix::libc::SIGINT), "SIGINT is still ignored");
            // Bounded only so that a lost signal fails the test instead of hanging it.
            let read = tokio::time::timeout(std::time::Duration::from_secs(60), signals.recv());
            assert_eq!(
                read.await.ok(),
                Some(nix::libc::SIGCHLD),
                "the SIGCHLD was lost"
            );
        });
    }
}
