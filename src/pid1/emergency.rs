//! The emergency loop: when the main loop cannot go on as PID 1, ember must not exit
//! (the kernel would panic). It keeps reaping, keeps a minimal control socket that
//! answers and still powers off or reboots, and keeps a rescue shell on the console.

use super::{shutdown, Power, Role};
use ember_ipc::broadcast::Broadcast;
use ember_ipc::{Command, Control, ErrorKind, Reply};
use nix::sys::wait::{waitpid, WaitStatus};
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
) -> ! {
    crate::log::error!(
        "emergency mode: {reason}; reaping continues, `ember ctl poweroff|reboot` still work"
    );
    let socket = socket.to_owned();
    let why = reason.to_owned();
    let _ = std::thread::Builder::new()
        .name("emergency-socket".into())
        .spawn(move || serve_socket(socket, why, role, shutdown_timeout));
    let mut shell = rescue_shell.and_then(start_shell);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))
                if Some(pid.as_raw()) == shell =>
            {
                std::thread::sleep(Duration::from_secs(1));
                shell = rescue_shell.and_then(start_shell);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // No children: nothing to reap until something forks; do not spin.
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
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
                    shutdown::finish(role, power, shutdown_timeout, None);
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
