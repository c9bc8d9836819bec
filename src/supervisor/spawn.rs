//! fork/exec of a service: its own session and process group, its cgroup, its rlimits and
//! OOM score, the requested uid, gid and supplementary groups, env and cwd, signal
//! dispositions reset, stdio wired.
//!
//! We use std's Command (its CLOEXEC error pipe reports exec failures with the real OS
//! error) but never wait on the child: every exit is reaped in one place (reaper.rs).

use crate::config::{Output, ServiceSpec};
use nix::sys::resource::Resource;
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{OwnedFd, RawFd};
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

/// A pipe holding `data` in full, its writing end closed: the child reads it, then
/// end-of-file. Written before the spawn, so PID 1 never waits on a child to read: the
/// pipe is made big enough first (at most 1 MiB, Linux's default pipe-max-size).
fn input_pipe(data: &[u8]) -> Result<Stdio, String> {
    use std::io::Write;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for its input: {e}"))?;
    if data.len() > 65536 {
        let size = data.len().next_power_of_two().min(1 << 20) as nix::libc::c_int;
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
    }
    nix::fcntl::fcntl(
        &write,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| format!("cannot make a pipe for its input: {e}"))?;
    let mut file = std::fs::File::from(write);
    file.write_all(data)
        .map_err(|e| format!("its input ({} bytes) does not fit a pipe: {e}", data.len()))?;
    drop(file);
    Ok(Stdio::from(read))
}

fn stdio_for(output: &Output) -> Result<Stdio, String> {
    Ok(match output {
        Output::Log | Output::Rotated(_) => Stdio::piped(),
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

/// What the child does to itself between fork and exec, prepared before the fork: after
/// it, only async-signal-safe system calls are allowed.
#[derive(Default)]
struct InChild {
    /// The service's cgroup.procs (close-on-exec): writing "0" moves the child there.
    cgroup_procs: Option<RawFd>,
    rlimits: Vec<(Resource, nix::libc::rlim_t)>,
    /// Written to /proc/self/oom_score_adj.
    oom_score_adj: Option<Vec<u8>>,
}

impl InChild {
    /// Runs in the child. Order matters: the cgroup and the limits before setuid, which
    /// would take away the right to raise a hard limit or lower the OOM score.
    fn apply(&self) -> std::io::Result<()> {
        use std::io::Error;
        if let Some(fd) = self.cgroup_procs {
            // SAFETY: write(2) of a static buffer to an fd the parent keeps open.
            if unsafe { nix::libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(Error::last_os_error());
            }
        }
        for &(resource, amount) in &self.rlimits {
            nix::sys::resource::setrlimit(resource, amount, amount).map_err(Error::from)?;
        }
        if let Some(text) = &self.oom_score_adj {
            // SAFETY: open/write/close with a NUL-terminated static path and a buffer
            // made before the fork.
            unsafe {
                let fd = nix::libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    nix::libc::O_WRONLY | nix::libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return Err(Error::last_os_error());
                }
                let written = nix::libc::write(fd, text.as_ptr().cast(), text.len());
                nix::libc::close(fd);
                if written < 0 {
                    return Err(Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// The limits of `spec` as the child applies them; checked here first, so that what
/// would fail after the fork (where only an errno survives) is said in words.
fn in_child(spec: &ServiceSpec, cgroup_procs: Option<RawFd>) -> Result<InChild, String> {
    let privileged = has_cap_sys_resource();
    let mut rlimits = Vec::new();
    for limit in &spec.limits.rlimits {
        let amount = limit.amount.rlim();
        if limit.name == "nofile" {
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|t| t.trim().parse::<nix::libc::rlim_t>().ok());
            if let Some(max) = nr_open.filter(|max| amount > *max) {
                return Err(format!(
                    "limits.nofile = {} is above the kernel's fs.nr_open ({max}); give at most {max}",
                    limit.amount.human()
                ));
            }
        }
        if !privileged {
            if let Ok((_, hard)) = nix::sys::resource::getrlimit(limit.resource) {
                if amount > hard {
                    return Err(format!(
                        "limits.{} = {} is above ember's own hard limit ({hard}), and ember lacks CAP_SYS_RESOURCE to raise it",
                        limit.name,
                        limit.amount.human()
                    ));
                }
            }
        }
        rlimits.push((limit.resource, amount));
    }
    // ember as PID 1 runs at -1000, and children inherit it: a service must not be
    // unkillable by the OOM killer unless it asks to be.
    let own = own_oom_score_adj();
    let wanted = spec.limits.oom_score_adjust.unwrap_or(0);
    if wanted < own && !privileged {
        return Err(format!(
            "oom_score_adjust = {wanted} is below ember's own ({own}), and ember lacks CAP_SYS_RESOURCE to lower it"
        ));
    }
    let oom_score_adj = (wanted != own).then(|| format!("{wanted}\n").into_bytes());
    Ok(InChild {
        cgroup_procs,
        rlimits,
        oom_score_adj,
    })
}

/// Whether ember may raise hard limits and lower OOM scores: CAP_SYS_RESOURCE, which
/// root usually has, but not in every container. Read once: it does not change.
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    static PRIVILEGED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRIVILEGED.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            })
            .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
    })
}

/// ember's own OOM score, which its children would inherit. Read once, at the first
/// spawn: early boot sets it before any service starts, and nothing changes it after.
fn own_oom_score_adj() -> i32 {
    static OWN: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .unwrap_or(0)
    })
}

/// Spawns a service's command. `notify_socket` is set as NOTIFY_SOCKET when given;
/// `cgroup_procs` is the cgroup.procs of the cgroup it is to run in.
pub fn spawn_service(
    spec: &ServiceSpec,
    notify_socket: Option<&Path>,
    cgroup_procs: Option<RawFd>,
) -> Result<Spawned, String> {
    if let Some(why) = &spec.load_error {
        return Err(why.clone());
    }
    let identity = resolve_identity(spec.user.as_deref(), spec.group.as_deref())?;
    let in_child = in_child(spec, cgroup_procs)?;
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
        let stdin = match &spec.input {
            Some(input) => input_pipe(input.expose().as_bytes())?,
            None => empty_stdin()?,
        };
        command
            .stdin(stdin)
            .stdout(stdio_for(&spec.stdout)?)
            .stderr(stdio_for(&spec.stderr)?);
    }
    launch(command, identity, spec.console, in_child)
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
    launch(command, None, false, InChild::default()).map(|s| s.pid)
}

fn launch(
    mut command: Command,
    identity: Option<Identity>,
    console: bool,
    in_child: InChild,
) -> Result<Spawned, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (setsid, sigaction, write, setrlimit, open, close,
    // setgroups, setgid, setuid).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if console {
                // The console becomes its controlling terminal, so a shell has job control.
                nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 1);
            }
            reset_signal_dispositions();
            in_child.apply()?;
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
