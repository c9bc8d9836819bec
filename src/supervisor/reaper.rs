//! Reaping: every child, services and orphans alike, collected in one place.
//!
//! On SIGCHLD the runtime calls [`reap_all`] and dispatches each exit by pid. Nothing else
//! in ember may wait for a child, or a service's exit status could be stolen.

use super::model::{Exit, Pid};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Collects every child that has exited, without blocking.
pub fn reap_all() -> Vec<(Pid, Exit)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                reaped.push((pid.as_raw(), Exit::Signal(signal)))
            }
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children left
        }
    }
    reaped
}
