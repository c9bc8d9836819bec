//! The emergency loop: when the main loop cannot go on as PID 1, ember must not exit
//! (the kernel would panic). It keeps reaping, keeps a minimal control socket that
//! answers and still powers off or reboots, and keeps a rescue shell on the console.

use super::{shutdown, Meaning, Power, Role};
use crate::config::CtrlAltDel;
use ember_ipc::broadcast::Broadcast;
use ember_ipc::{Command, Control, ErrorKind, Reply};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Never returns.
pub fn run(
    reason: &str,
    socket: &Path,
    rescue_shell: Option<&Path>,
    role: Role,
    shutdown_timeout: Duration,
    ctrl_alt_del: CtrlAltDel,
) -> ! {
    crate::log::error!(
        "emergency mode: {reason}; reaping continues, `ember ctl poweroff|reboot` and the signals (SIGUSR2, SIGTERM, Ctrl-Alt-Del...) still work"
    );
    let socket = socket.to_owned();
    let why = reason.to_owned();
    let _ = std::thread::Builder::new()
        .name("emergency-socket".into())
        .spawn(move || serve_socket(socket, why, role, shutdown_timeout));
    let mut shell = rescue_shell.and_then(start_shell);
    // The signals are blocked in every thread (since main) and the main loop's signalfd
    // is gone: they are taken here, one at a time, or they would stay pending for good.
    let handled = super::handled_signals();
    // Ignored, a signal is never pending (and an ignored SIGCHLD reaps for the kernel):
    // the main loop may never have come as far as undoing that.
    crate::supervisor::signals::restore_ignored();
    loop {
        // First what ended before (the main loop may have read its SIGCHLD and died).
        for pid in reap_all() {
            if Some(pid) == shell {
                std::thread::sleep(Duration::from_secs(1));
                shell = rescue_shell.and_then(start_shell);
            }
        }
        // SAFETY: sigwaitinfo with a valid set and no siginfo asked for.
        let signal = unsafe { nix::libc::sigwaitinfo(handled.as_ref(), std::ptr::null_mut()) };
        let power = match super::meaning(signal) {
            Some(Meaning::Shutdown(power) | Meaning::Immediate(power)) => power,
            Some(Meaning::CtrlAltDel) => match ctrl_alt_del.power() {
                Some(power) => power,
                None => continue,
            },
            Some(Meaning::Reload) => {
                crate::log::warn!("SIGHUP: ignored: ember is in emergency mode ({reason}); only poweroff, reboot and halt work");
                continue;
            }
            // SIGCHLD, or EINTR: reap, and wait again.
            Some(Meaning::Reap) | None => continue,
        };
        crate::log::info!(
            "shutdown: {} in emergency mode: {}",
            super::signal_name(signal),
            power.word()
        );
        finish_once(role, power, shutdown_timeout);
    }
}

/// The last steps, once: the socket's thread and the signals may both ask. The second
/// asker returns and goes on reaping (the first one's reboot(2) ends it all).
fn finish_once(role: Role, power: Power, shutdown_timeout: Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FINISHING: AtomicBool = AtomicBool::new(false);
    if FINISHING.swap(true, Ordering::SeqCst) {
        crate::log::info!("{}: already shutting down", power.word());
        return;
    }
    shutdown::finish(role, power, shutdown_timeout, None);
    // reboot(2) failed: let another request try again.
    FINISHING.store(false, Ordering::SeqCst);
}

/// Every child that has ended, reaped without waiting.
fn reap_all() -> Vec<i32> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                reaped.push(pid.as_raw())
            }
            Ok(WaitStatus::StillAlive) => return reaped,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return reaped, // ECHILD: no children
        }
    }
}

/// Starts the rescue shell on the console; returns its pid.
pub fn start_shell(shell: &Path) -> Option<i32> {
    use crate::supervisor::launch::{Environment, Plan};
    let env = Environment::inherited();
    let launched = Plan::new(&[shell], env.pairs()).and_then(|mut plan| {
        // Its own session, the console (fd 0) its controlling terminal: job control works.
        plan.controlling_tty = true;
        plan.launch()
    });
    match launched {
        Ok(pid) => {
            crate::log::warn!(
                "rescue shell {} started on the console (pid {pid})",
                shell.display()
            );
            Some(pid)
        }
        Err(e) => {
            crate::log::error!("cannot start the rescue shell {}: {e}", shell.display());
            None
        }
    }
}

fn serve_socket(socket: PathBuf, reason: String, role: Role, shutdown_timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let (requests, mut inbox) = mpsc::channel(8);
        let events = Broadcast::new(8);
        let lines = Broadcast::new(8);
        let control = Control {
            requests,
            events,
            lines,
        };
        // Root only: the rules of a configuration are not trusted here.
        let Ok(listener) = ember_ipc::socket::bind(&socket, false) else { return };
        let pending = ember_ipc::socket::Pending::default();
        let (_policy, rules) = tokio::sync::watch::channel(Default::default());
        tokio::spawn(ember_ipc::socket::serve(listener, control, pending.clone(), rules));
        while let Some(request) = inbox.recv().await {
            let reply = match request.command {
                Command::Poweroff | Command::Reboot | Command::Halt => {
                    let power = match request.command {
                        Command::Poweroff => Power::Poweroff,
                        Command::Halt => Power::Halt,
                        _ => Power::Reboot,
                    };
                    let _ = request.reply.send(Reply::ok());
                    // Let the reply reach the caller before the system goes.
                    let _ = tokio::time::timeout(Duration::from_secs(2), pending.drained()).await;
                    // The whole sequence: there are no services to stop, but there may
                    // be processes to end and filesystems to unmount.
                    finish_once(role, power, shutdown_timeout);
                    continue;
                }
                _ => Reply::error(
                    ErrorKind::Internal,
                    format!("ember is in emergency mode ({reason}); only poweroff and reboot work; see the console"),
                ),
            };
            let _ = request.reply.send(reply);
        }
    });
}
