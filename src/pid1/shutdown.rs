//! The end of the shutdown sequence, after every service has stopped in reverse order:
//! SIGTERM to every remaining process, SIGKILL after `shutdown_timeout`, sync, unmount
//! (or remount read-only) deepest first, reboot(2). Each step is logged with its duration.

use super::{mounts, Power, Role};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Runs the final steps. Only ever returns if reboot(2) itself failed.
pub fn finish(role: Role, power: Power, shutdown_timeout: Duration) {
    let all = Pid::from_raw(-1);
    let step = Instant::now();
    tracing::info!("shutdown: SIGTERM to remaining processes");
    let _ = kill(all, Signal::SIGTERM);
    let _ = kill(all, Signal::SIGCONT);
    if reap_until_none(shutdown_timeout) {
        tracing::info!("shutdown: every remaining process ended in {} ms", ms(step));
    } else {
        tracing::warn!(
            "shutdown: processes still running after {} ms; SIGKILL to remaining processes",
            shutdown_timeout.as_millis()
        );
        let _ = kill(all, Signal::SIGKILL);
        if !reap_until_none(Duration::from_secs(2)) {
            tracing::warn!("shutdown: some processes survived SIGKILL (stuck in the kernel)");
        }
        tracing::info!("shutdown: remaining processes gone in {} ms", ms(step));
    }

    let step = Instant::now();
    nix::unistd::sync();
    tracing::info!("shutdown: sync done in {} ms", ms(step));

    let step = Instant::now();
    if role == Role::Machine {
        let result = mounts::unmount_all();
        tracing::info!(
            "shutdown: unmounted {} filesystems, remounted {} read-only in {} ms",
            result.unmounted,
            result.remounted_read_only,
            ms(step)
        );
        for failure in &result.failed {
            tracing::warn!("shutdown: could not unmount or remount {failure}");
        }
        nix::unistd::sync();
    } else {
        // The filesystems belong to the host, or are shared with it.
        tracing::info!("shutdown: unmount skipped: not the initial PID namespace, the host owns the filesystems");
    }

    tracing::info!("shutdown: {}", power.word());
    reboot(power);
}

/// reboot(2), only ever as PID 1. In a PID namespace it ends the namespace instead.
pub fn reboot(power: Power) {
    if std::process::id() != 1 {
        tracing::error!("refusing reboot(2): ember is not PID 1");
        return;
    }
    use nix::sys::reboot::RebootMode;
    let mode = match power {
        Power::Poweroff => RebootMode::RB_POWER_OFF,
        Power::Reboot => RebootMode::RB_AUTOBOOT,
        Power::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    tracing::error!("reboot(2) failed: {e}");
}

/// Reaps children until there are none left; false when `timeout` passed first.
fn reap_until_none(timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if start.elapsed() >= timeout {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true, // ECHILD: nobody left
        }
    }
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}
