//! fork/exec of a service: its own session and process group, the requested uid, gid and
//! supplementary groups, env and cwd, signal dispositions reset, stdio wired.
//!
//! We use std's Command (its CLOEXEC error pipe reports exec failures with the real OS
//! error) but never wait on the child: every exit is reaped in one place (reaper.rs).

use crate::config::{Output, ServiceSpec};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::model::Pid;

/// A spawned process and the read ends of its output pipes (for `Output::Log`).
pub struct Spawned {
    pub pid: Pid,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Who a process runs as, resolved before fork (NSS lookups are not safe after it).
struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: Option<String>,
    name: Option<String>,
}

fn resolve_identity(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let mut identity = Identity {
        uid: Uid::current(),
        gid: Gid::current(),
        groups: Vec::new(),
        home: None,
        name: None,
    };
    if let Some(user) = user {
        let found = match user.parse::<u32>() {
            Ok(n) => User::from_uid(Uid::from_raw(n)).ok().flatten(),
            Err(_) => {
                User::from_name(user).map_err(|e| format!("cannot look up user \"{user}\": {e}"))?
            }
        };
        match (found, user.parse::<u32>()) {
            (Some(u), _) => {
                identity.uid = u.uid;
                identity.gid = u.gid;
                let cname = CString::new(u.name.clone())
                    .map_err(|_| format!("bad user name \"{user}\""))?;
                identity.groups =
                    nix::unistd::getgrouplist(&cname, u.gid).unwrap_or_else(|_| vec![u.gid]);
                identity.home = Some(u.dir.to_string_lossy().into_owned());
                identity.name = Some(u.name);
            }
            (None, Ok(n)) => {
                identity.uid = Uid::from_raw(n);
                identity.gid = Gid::from_raw(n);
                identity.groups = vec![identity.gid];
            }
            (None, Err(_)) => return Err(format!("user \"{user}\" does not exist")),
        }
    }
    if let Some(group) = group {
        identity.gid = match group.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(group)
                .map_err(|e| format!("cannot look up group \"{group}\": {e}"))?
            {
                Some(g) => g.gid,
                None => return Err(format!("group \"{group}\" does not exist")),
            },
        };
        if user.is_none() {
            identity.groups = vec![identity.gid];
        } else if !identity.groups.contains(&identity.gid) {
            identity.groups.push(identity.gid);
        }
    }
    Ok(Some(identity))
}

/// /dev/null opened here, so that a missing /dev is reported as such, not as the
/// program being missing.
fn dev_null() -> Result<Stdio, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(Stdio::from)
        .map_err(|e| format!("cannot open /dev/null: {e}; is /dev mounted?"))
}

/// stdin: /dev/null, or where there is none (an init started before /dev exists) an
/// empty pipe, which reads as end-of-file just the same.
fn empty_stdin() -> Result<Stdio, String> {
    dev_null().or_else(|e| {
        let (read, write) = nix::unistd::pipe().map_err(|_| e)?;
        drop(write);
        Ok(Stdio::from(read))
    })
}

fn stdio_for(output: &Output) -> Result<Stdio, String> {
    Ok(match output {
        Output::Log => Stdio::piped(),
        Output::Console => Stdio::inherit(),
        Output::Null => dev_null()?,
        Output::File(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map(Stdio::from)
            .map_err(|e| format!("cannot open {} for output: {e}", path.display()))?,
    })
}

/// Spawns a service's command. `notify_socket` is set as NOTIFY_SOCKET when given.
pub fn spawn_service(spec: &ServiceSpec, notify_socket: Option<&Path>) -> Result<Spawned, String> {
    let identity = resolve_identity(spec.user.as_deref(), spec.group.as_deref())?;
    let Some((program, args)) = spec.command.split_first() else {
        return Err("the command is empty".into());
    };
    let mut command = Command::new(program);
    command.args(args);
    command
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", crate::config::service::default_path());
    }
    if let Some(id) = &identity {
        if let Some(home) = &id.home {
            command.env("HOME", home);
        }
        if let Some(name) = &id.name {
            command.env("USER", name).env("LOGNAME", name);
        }
    }
    command.envs(&spec.env);
    if let Some(path) = notify_socket {
        command.env("NOTIFY_SOCKET", path);
        // What sd_watchdog_enabled() reads: how often to send WATCHDOG=1.
        if let Some(period) = spec.watchdog {
            command.env("WATCHDOG_USEC", period.as_micros().to_string());
        }
    }
    if let Some(dir) = &spec.workdir {
        // Checked here: exec would report a missing directory as a missing program.
        if !dir.is_dir() {
            return Err(format!(
                "workdir {} is not a directory that exists",
                dir.display()
            ));
        }
        command.current_dir(dir);
    }
    if spec.console {
        command
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    } else {
        command
            .stdin(empty_stdin()?)
            .stdout(stdio_for(&spec.stdout)?)
            .stderr(stdio_for(&spec.stderr)?);
    }
    let spawned = launch(command, identity, spec.console)?;
    Ok(spawned)
}

/// Spawns a helper command (a readiness `exec` check) with no output.
pub fn spawn_helper(argv: &[String]) -> Result<Pid, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the check command is empty".into());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(empty_stdin()?)
        .stdout(dev_null()?)
        .stderr(dev_null()?);
    launch(command, None, false).map(|s| s.pid)
}

fn launch(
    mut command: Command,
    identity: Option<Identity>,
    console: bool,
) -> Result<Spawned, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (setsid, sigaction, setgroups, setgid, setuid).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if console {
                // The console becomes its controlling terminal, so a shell has job control.
                nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 1);
            }
            reset_signal_dispositions();
            if let Some(id) = &identity {
                nix::unistd::setgroups(&id.groups).map_err(std::io::Error::from)?;
                nix::unistd::setgid(id.gid).map_err(std::io::Error::from)?;
                nix::unistd::setuid(id.uid).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    // std panics if the child it could not exec was reaped by someone else first; our
    // reaper runs on this same thread, so it cannot, but PID 1 takes no chances.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command.spawn()));
    let mut child = match result {
        Ok(Ok(child)) => child,
        Ok(Err(e)) => return Err(format!("{program}: {e}")),
        Err(_) => return Err(format!("{program}: spawn panicked")),
    };
    let pid = child.id() as Pid;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // Dropping a std Child neither kills nor waits: the reaper owns its exit status.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// Signal dispositions set to SIG_IGN survive exec; services start with every default,
/// real-time signals included, and an empty signal mask.
fn reset_signal_dispositions() {
    use nix::libc;
    // The raw system call, not glibc's signal(): glibc refuses its two reserved real-time
    // signals (32, 33), yet they too may arrive ignored. An all-zero kernel sigaction is
    // SIG_DFL with no flags and an empty mask, whatever the architecture's field order.
    let default_action = [0u64; 4];
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid pointer to a zeroed kernel sigaction; the old
        // action is not asked for. Runs in the child between fork and exec.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}
