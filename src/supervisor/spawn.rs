//! What a service is started with: the user, group and supplementary groups it runs as
//! (looked up here: NSS lookups are not safe in the child), its limits and OOM score
//! (checked here, so that what the kernel would refuse is said in words), its environment,
//! working directory and stdin/stdout/stderr. [`super::launch`] starts it (its own
//! session, its cgroup, signal dispositions reset); nothing here waits on the child:
//! every exit is reaped in one place (reaper.rs).

use crate::config::{Output, ServiceSpec};
use nix::sys::resource::Resource;
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::launch::{Cgroup, Environment, Plan};
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
    /// Its account's home; `None` for an id without an account (no HOME then).
    home: Option<String>,
    /// Its account's name, or the id as given when no account has it (USER, LOGNAME).
    name: String,
}

/// The user's and group's ids, and the supplementary groups as systemd and initgroups(3)
/// make them: the user's memberships in the group database with the group it runs as
/// (`group` when given, else the account's own), and no other. A uid without an account
/// has that group only.
fn resolve_identity(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let gid = match group {
        None => None,
        Some(group) => Some(match group.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(group)
                .map_err(|e| format!("cannot look up group \"{group}\": {e}"))?
            {
                Some(g) => g.gid,
                None => return Err(format!("group \"{group}\" does not exist")),
            },
        }),
    };
    let Some(user) = user else {
        // Only the group changes: the uid stays ember's (root), with that one group.
        let gid = gid.unwrap_or_else(Gid::current);
        return Ok(Some(Identity {
            uid: Uid::current(),
            gid,
            groups: vec![gid],
            home: None,
            name: String::new(),
        }));
    };
    let found = match user.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)).ok().flatten(),
        Err(_) => {
            User::from_name(user).map_err(|e| format!("cannot look up user \"{user}\": {e}"))?
        }
    };
    match (found, user.parse::<u32>()) {
        (Some(u), _) => {
            let gid = gid.unwrap_or(u.gid);
            let cname =
                CString::new(u.name.clone()).map_err(|_| format!("bad user name \"{user}\""))?;
            let groups = nix::unistd::getgrouplist(&cname, gid).unwrap_or_else(|_| vec![gid]);
            Ok(Some(Identity {
                uid: u.uid,
                gid,
                groups,
                home: Some(u.dir.to_string_lossy().into_owned()),
                name: u.name,
            }))
        }
        (None, Ok(n)) => {
            let gid = gid.unwrap_or(Gid::from_raw(n));
            Ok(Some(Identity {
                uid: Uid::from_raw(n),
                gid,
                groups: vec![gid],
                home: None,
                name: user.to_owned(),
            }))
        }
        (None, Err(_)) => Err(format!("user \"{user}\" does not exist")),
    }
}

/// /dev/null opened here, so that a missing /dev is reported as such, not as the
/// program being missing.
fn dev_null() -> Result<OwnedFd, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot open /dev/null: {e}; is /dev mounted?"))
}

/// A pipe whose ends are closed on exec: the child gets its end as a copy on 0, 1 or 2.
fn pipe(what: &str) -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for its {what}: {e}"))
}

/// stdin: /dev/null, or where there is none (an init started before /dev exists) an
/// empty pipe, which reads as end-of-file just the same.
fn empty_stdin() -> Result<OwnedFd, String> {
    dev_null().or_else(|e| pipe("input").map(|(read, _)| read).map_err(|_| e))
}

/// A pipe holding `data` in full, its writing end closed: the child reads it, then
/// end-of-file. Written before the spawn, so PID 1 never waits on a child to read: the
/// pipe is made big enough first (at most 1 MiB, Linux's default pipe-max-size).
fn input_pipe(data: &[u8]) -> Result<OwnedFd, String> {
    use std::io::Write;
    let (read, write) = pipe("input")?;
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
    Ok(read)
}

/// Where a stream of output goes: the child's end (`None`: ember's own, the console) and,
/// for output ember reads, the end ember reads from.
/// `as_another_user`: the service runs as a user other than ember's, so a file ember
/// opens for it is not followed through a symbolic link (see below).
fn output_for(
    output: &Output,
    what: &str,
    as_another_user: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), String> {
    Ok(match output {
        Output::Log | Output::Rotated(_) => {
            let (read, write) = pipe(what)?;
            (Some(write), Some(read))
        }
        Output::Console => (None, None),
        Output::Null => (Some(dev_null()?), None),
        Output::File(path) => {
            // A device or a FIFO is fine here (the service writes it), but not a wait.
            // ember opens it with its own rights and hands it over: for a service of
            // another user, never through a link at the end of the path, which the service
            // may have put there in its own directory to be given any file ember can open.
            let flags = if as_another_user {
                nix::libc::O_NOFOLLOW
            } else {
                0
            };
            let file = crate::filekind::open_without_waiting(
                OpenOptions::new().create(true).append(true).mode(0o644),
                flags,
                path,
            )
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) && as_another_user {
                    format!(
                        "cannot open {} for output: it is a symbolic link, which ember does not follow for a service that runs as another user (it could point it at any file, for ember to open with its rights); name the file it points to",
                        path.display()
                    )
                } else {
                    format!("cannot open {} for output: {e}", path.display())
                }
            })?;
            (Some(OwnedFd::from(file)), None)
        }
    })
}

/// `fd` numbered 3 or above: the child copies it onto 0, 1 or 2, and a source among those
/// could be overwritten by an earlier copy (ember's own 0-2 may be closed at boot).
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, String> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| format!("cannot set up its stdin/stdout/stderr: {e}"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// What the child does to itself between the clone and the exec, prepared before.
#[derive(Default)]
struct InChild {
    /// The service's cgroup: the child starts there.
    cgroup: Option<Cgroup>,
    rlimits: Vec<(Resource, nix::libc::rlim_t)>,
    /// Written to /proc/self/oom_score_adj.
    oom_score_adj: Option<Vec<u8>>,
}

/// The limits of `spec` as the child applies them; checked here first, so that what
/// would fail after the fork (where only an errno survives) is said in words.
fn in_child(spec: &ServiceSpec, cgroup: Option<Cgroup>) -> Result<InChild, String> {
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
    let oom_score_adj = oom_step(
        spec.limits.oom_score_adjust,
        own_oom_score_adj(),
        privileged,
    )?;
    Ok(InChild {
        cgroup,
        rlimits,
        oom_score_adj,
    })
}

/// What the child writes to /proc/self/oom_score_adj (`None`: nothing, it keeps ember's
/// `own`), for `wanted` (the service's `oom_score_adjust`). ember as PID 1 runs at -1000,
/// and children inherit it: a service must not be unkillable by the OOM killer unless it
/// asks to be, so one that does not ask runs at 0. A score above 0 that whoever started
/// ember gave it (a user session's manager, a container runtime) is kept, as any child
/// keeps it: lowering it would need CAP_SYS_RESOURCE, and undo what was asked of ember.
fn oom_step(wanted: Option<i32>, own: i32, privileged: bool) -> Result<Option<Vec<u8>>, String> {
    let wanted = wanted.unwrap_or(own.max(0));
    if wanted < own && !privileged {
        return Err(format!(
            "oom_score_adjust = {wanted} is below ember's own ({own}), and ember lacks CAP_SYS_RESOURCE to lower it"
        ));
    }
    Ok((wanted != own).then(|| format!("{wanted}\n").into_bytes()))
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
/// `cgroup` is the cgroup it is to run in.
pub fn spawn_service(
    spec: &ServiceSpec,
    notify_socket: Option<&Path>,
    cgroup: Option<Cgroup>,
) -> Result<Spawned, String> {
    if let Some(why) = &spec.load_error {
        return Err(why.clone());
    }
    let identity = resolve_identity(spec.user.as_deref(), spec.group.as_deref())?;
    let in_child = in_child(spec, cgroup)?;
    let mut env = Environment::for_children();
    if env.get("PATH").is_none() {
        env.set("PATH", crate::config::service::default_path());
    }
    // The account's, not ember's (root's): with a `user`, HOME is its home (none for an
    // id without an account), USER and LOGNAME its name.
    if let (Some(id), Some(_)) = (&identity, &spec.user) {
        match &id.home {
            Some(home) => env.set("HOME", home),
            None => env.remove("HOME"),
        }
        env.set("USER", &id.name);
        env.set("LOGNAME", &id.name);
    }
    for (key, value) in &spec.env {
        env.set(key, value);
    }
    if let Some(path) = notify_socket {
        env.set("NOTIFY_SOCKET", path);
        // What sd_watchdog_enabled() reads: how often to send WATCHDOG=1.
        if let Some(period) = spec.watchdog {
            env.set("WATCHDOG_USEC", period.as_micros().to_string());
        }
    }
    let argv: Vec<&str> = spec.command.iter().collect();
    let mut plan = Plan::new(&argv, env.pairs())?;
    if let Some(dir) = &spec.workdir {
        // Checked here: exec would report a missing directory as a missing program.
        if !dir.is_dir() {
            return Err(format!(
                "workdir {} is not a directory that exists",
                dir.display()
            ));
        }
        plan.workdir = Some(
            CString::new(dir.as_os_str().as_bytes())
                .map_err(|_| "the workdir contains a NUL byte".to_string())?,
        );
    }
    // Kept open until the launch returns: the child copies them onto 0, 1 and 2.
    let mut child_ends: [Option<OwnedFd>; 3] = [None, None, None];
    let (mut stdout, mut stderr) = (None, None);
    if spec.console {
        plan.controlling_tty = true;
    } else {
        child_ends[0] = Some(match &spec.input {
            Some(input) => input_pipe(input.expose().as_bytes())?,
            None => empty_stdin()?,
        });
        let as_another_user = identity
            .as_ref()
            .is_some_and(|id| id.uid != Uid::effective());
        (child_ends[1], stdout) = output_for(&spec.stdout, "output", as_another_user)?;
        (child_ends[2], stderr) = output_for(&spec.stderr, "errors", as_another_user)?;
    }
    let pid = launch(plan, identity, in_child, child_ends)?;
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// Spawns a helper command (a readiness `exec` check) with no output.
pub fn spawn_helper(argv: &[String]) -> Result<Pid, String> {
    spawn_plain(argv, "the check command is empty", dev_null()?)
}

/// A helper whose answer is what it prints (`--handover-accepts`): its stdout is a pipe,
/// whose read end comes back with its pid.
pub fn spawn_asking(argv: &[String]) -> Result<(Pid, OwnedFd), String> {
    let (read, write) = pipe("output")?;
    spawn_plain(argv, "the command is empty", write).map(|pid| (pid, read))
}

/// A helper of ember's: its environment for children, no stdin, `stdout`, no stderr.
fn spawn_plain(argv: &[String], empty: &str, stdout: OwnedFd) -> Result<Pid, String> {
    if argv.is_empty() {
        return Err(empty.into());
    }
    let env = Environment::for_children();
    let plan = Plan::new(argv, env.pairs())?;
    let child_ends = [Some(empty_stdin()?), Some(stdout), Some(dev_null()?)];
    launch(plan, None, InChild::default(), child_ends)
}

/// Starts `plan` with the identity, the in-child steps and fds 0-2 given (`None`: ember's
/// own). Errors name the program.
fn launch(
    mut plan: Plan,
    identity: Option<Identity>,
    in_child: InChild,
    child_ends: [Option<OwnedFd>; 3],
) -> Result<Pid, String> {
    let program = plan.program().to_string_lossy().into_owned();
    let child_ends = child_ends
        .into_iter()
        .map(|end| end.map(above_stdio).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    for (slot, end) in plan.stdio.iter_mut().zip(&child_ends) {
        *slot = end.as_ref().map(|fd| fd.as_raw_fd());
    }
    plan.cgroup = in_child.cgroup;
    plan.rlimits = in_child.rlimits;
    plan.oom_score_adj = in_child.oom_score_adj;
    plan.ids = identity.map(|id| {
        (
            id.uid.as_raw(),
            id.gid.as_raw(),
            id.groups.iter().map(|g| g.as_raw()).collect(),
        )
    });
    let pid = plan.launch().map_err(|e| format!("{program}: {e}"))?;
    // The child's ends close here, in ember: the child has its copies.
    drop(child_ends);
    Ok(pid as Pid)
}

#[cfg(test)]
mod tests {
    use super::{oom_step, output_for};
    use crate::config::Output;

    /// ember opens a plain output file as root and gives the service the descriptor. For
    /// a service that runs as another user, a symbolic link there is refused: in a
    /// directory of its own (`/var/log/app/`), the service could replace its log with a
    /// link to /etc/shadow, and at its next start it was given /etc/shadow to append to.
    /// A link is followed for a service that runs as ember does (it has ember's rights).
    #[test]
    fn a_service_of_another_user_is_not_given_the_file_a_link_points_to() {
        let dir = std::env::temp_dir().join(format!("ember-spawn-link-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let target = dir.join("precious");
        std::fs::write(&target, "keep\n").expect("write");
        let link = dir.join("app.log");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let output = Output::File(link.clone());
        let error =
            output_for(&output, "output", true).expect_err("a link is refused for another user");
        assert!(
            error.contains(&link.display().to_string()) && error.contains("symbolic link"),
            "{error}"
        );
        assert!(output_for(&output, "output", false).is_ok());
        // A plain file, or none yet, is opened (made) for either.
        let plain = Output::File(dir.join("plain.log"));
        assert!(output_for(&plain, "output", true).is_ok());
        assert!(dir.join("plain.log").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn text(step: Result<Option<Vec<u8>>, String>) -> Result<Option<String>, String> {
        step.map(|bytes| bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A service without `oom_score_adjust` runs at 0, unless ember's own score is higher
    /// (a user session's manager, a container runtime, set ember at 100 or 200): then it
    /// keeps ember's, as any child would. It was refused there instead, without
    /// CAP_SYS_RESOURCE ("oom_score_adjust = 0 is below ember's own"), though none was
    /// asked for: no service could start.
    #[test]
    fn without_oom_score_adjust_a_service_is_never_below_embers_own_positive_score() {
        for privileged in [false, true] {
            assert_eq!(text(oom_step(None, 100, privileged)), Ok(None));
            assert_eq!(text(oom_step(None, 0, privileged)), Ok(None));
            // PID 1's -1000 is ember's, not its services'.
            assert_eq!(
                text(oom_step(None, -1000, privileged)),
                Ok(Some("0\n".into()))
            );
            assert_eq!(
                text(oom_step(Some(500), 100, privileged)),
                Ok(Some("500\n".into()))
            );
        }
        // Asked for, below ember's own: only with the right to lower it.
        assert_eq!(
            text(oom_step(Some(-500), 100, true)),
            Ok(Some("-500\n".into()))
        );
        let refused = oom_step(Some(0), 100, false).expect_err("below ember's own");
        assert!(refused.contains("CAP_SYS_RESOURCE"), "{refused}");
    }
}
