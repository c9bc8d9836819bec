//! The signals the runtime acts on (SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2),
//! read from a signalfd, as s6-svscan and dinit read theirs.
//!
//! They are blocked from the start of the daemon (as PID 1, from the first instruction of
//! main) and never unblocked: no handler ever runs inside PID 1, one sent at any moment
//! (while the configuration is read, across a reexec) waits, pending, until the main loop
//! reads it, and a burst of exits is one readable signalfd. With handlers, each SIGCHLD
//! that arrived while ember reaped interrupted it for a handler and a write to a pipe.
//!
//! The services start with an empty mask: the launch clears it in the child.

use nix::sys::signal::Signal;
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
        // An ignored signal is discarded when it is sent, never pending, so a signalfd
        // never sees it; and an ignored SIGCHLD makes the kernel reap every child itself,
        // its exit status lost. Whoever started ember may have left them ignored (`nohup`
        // ignores SIGHUP; `trap '' CHLD` in a script). Blocked first, so the default
        // action of none can run meanwhile.
        for signal in set.iter() {
            // SAFETY: SIG_DFL installs no handler code.
            let _ =
                unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
        }
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        // SAFETY: the SignalFd owns its fd, which stays open (and the same) until the
        // AsyncFd, its only owner, is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| format!("signalfd: cannot watch it: {e}"))?;
        Ok(Signals { fd })
    }

    /// The next signal. Cancel-safe: a signal is taken from the signalfd only when it is
    /// returned.
    pub async fn recv(&mut self) -> Signal {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                // The reactor is gone (the runtime is shutting down): nothing comes.
                return std::future::pending().await;
            };
            match ready.get_inner().read_signal() {
                Ok(Some(info)) => {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        return signal;
                    }
                }
                // Read empty (EAGAIN), or an error a signalfd does not give: wait again.
                Ok(None) | Err(_) => ready.clear_ready(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals sent before the main loop waits are read, in the order of their
    /// numbers, and the mask stays as it was: blocked.
    #[test]
    fn signals_are_read_from_the_signalfd_and_stay_blocked() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Only this thread's mask is set: the test harness's other threads would take a
        // process-directed signal, so it is sent to this thread (tgkill).
        let thread = nix::unistd::gettid();
        let tgkill = |signal: Signal| unsafe {
            nix::libc::syscall(
                nix::libc::SYS_tgkill,
                std::process::id() as nix::libc::c_int,
                thread.as_raw(),
                signal as nix::libc::c_int,
            )
        };
        runtime.block_on(async {
            let mut signals = Signals::open().unwrap();
            tgkill(Signal::SIGHUP);
            tgkill(Signal::SIGUSR2);
            assert_eq!(signals.recv().await, Signal::SIGHUP);
            assert_eq!(signals.recv().await, Signal::SIGUSR2);
            tgkill(Signal::SIGCHLD);
            assert_eq!(signals.recv().await, Signal::SIGCHLD);
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
}
