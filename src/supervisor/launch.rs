//! Starting a process the way posix_spawn does: `clone(CLONE_VM | CLONE_VFORK)`, so that
//! the child borrows ember's memory until its execve instead of copying it.
//!
//! Why not std's `Command`: with a `pre_exec` step (ember needs several) it forks, and a
//! fork copies the page tables of all of ember's memory, which the child's execve then
//! throws away; with 1,000 services that was most of a spawn's cost (README, "Where the
//! time and the memory go"). With `CLONE_VFORK` ember's thread waits only until the child
//! has exec'd (or failed), which on a board is a fraction of a fork.
//!
//! The price of sharing memory: between clone and execve the child may not allocate, take
//! a lock, or run a signal handler that touches ember's state. So everything is made
//! before the clone ([`Plan`]: C strings, pointer arrays, file descriptors, ids), the
//! child makes only system calls ([`child`]), ember's signals are blocked around the
//! clone (the child resets every handler before unblocking), and a step that fails writes
//! its errno into the plan, where ember reads it once the clone returns.

use nix::libc::{self, c_char, c_int, c_void};
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::low_fds;

/// Everything the child does, made before the clone.
pub struct Plan {
    /// Where to exec, tried in order: the program itself when its name has a `/`, else
    /// the program in each directory of the child's PATH (execvp's search, made here).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// What becomes fd 0, 1 and 2; `None` keeps ember's own. Each is ≥ 3 (see [`Plan::stdio`]).
    pub stdio: [Option<RawFd>; 3],
    /// Make fd 0 (a terminal) the controlling terminal of the new session.
    pub controlling_tty: bool,
    /// The cgroup the child starts in.
    pub cgroup: Option<Cgroup>,
    pub rlimits: Vec<(nix::sys::resource::Resource, libc::rlim_t)>,
    /// Written to /proc/self/oom_score_adj.
    pub oom_score_adj: Option<Vec<u8>>,
    /// uid, gid and supplementary groups to switch to.
    pub ids: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    pub workdir: Option<CString>,
}

/// What the child got to, written by the child into ember's memory (it is shared until
/// the execve), read by ember after the clone returns.
#[derive(Clone, Copy, Default)]
struct Failure {
    step: Step,
    errno: c_int,
}

impl Failure {
    /// The error as the launch reports it: the step, then the OS's reason.
    fn message(self) -> String {
        format!(
            "{}{}",
            self.step.doing(),
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Step {
    #[default]
    None,
    /// Leaving ember's fd table (close_range, else unshare): refused.
    OwnTable,
    Session,
    Stdio,
    Cgroup,
    Rlimit,
    OomScore,
    Identity,
    Workdir,
    Exec,
}

impl Step {
    /// What was being done, as the error says it (exec errors read as std's did: bare).
    fn doing(self) -> &'static str {
        match self {
            Step::None | Step::Exec => "",
            Step::OwnTable => "cannot have an fd table of its own: ",
            Step::Session => "cannot start a session: ",
            Step::Stdio => "cannot set up its stdin/stdout/stderr: ",
            Step::Cgroup => "cannot join its cgroup: ",
            Step::Rlimit => "cannot set its limits: ",
            Step::OomScore => "cannot set its oom_score_adj: ",
            Step::Identity => "cannot switch to its user and group: ",
            Step::Workdir => "cannot enter its workdir: ",
        }
    }
}

/// The cgroup a child starts in.
#[derive(Clone, Copy)]
pub struct Cgroup {
    /// Its directory (an O_PATH fd): the child is created in it ([`super::clone3`]), or,
    /// where the kernel cannot do that, moves itself there.
    pub dir: RawFd,
    /// It was emptied with cgroup.kill and not yet made again: the kernel would kill a
    /// child created in it (see [`Plan::launch`]), so the child joins it itself.
    pub killed: bool,
}

/// The environment a child starts with: ember's own, changed by name.
pub struct Environment(Vec<(OsString, OsString)>);

impl Environment {
    pub fn inherited() -> Environment {
        Environment(std::env::vars_os().collect())
    }

    /// ember's own environment without what describes ember's process to it: the
    /// variables of sd_notify, socket activation and the watchdog that whoever started
    /// ember (systemd, a container runtime) set for ember. In a child they would name a
    /// socket, fds or a pid that are not its own: a WATCHDOG_PID of ember's, for one,
    /// makes sd_watchdog_enabled() say no. A service that asks for them is given its own.
    pub fn for_children() -> Environment {
        let mut env = Environment::inherited();
        env.0.retain(|(key, _)| {
            !EMBERS_OWN
                .iter()
                .any(|own| key.as_bytes() == own.as_bytes())
        });
        env
    }

    pub fn get(&self, key: &str) -> Option<&OsStr> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Sets `key`, in its place when ember's environment had it.
    pub fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value.to_owned(),
            None => self.0.push((key.to_owned(), value.to_owned())),
        }
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.0.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

/// The variables [`Environment::for_children`] leaves out.
const EMBERS_OWN: [&str; 7] = [
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "SYSTEMD_EXEC_PID",
];

/// Turns a string into a C string; a NUL inside is the caller's error, named.
fn c_string(what: &str, bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
}

impl Plan {
    /// A plan to run `argv` with the environment `env` (the whole of it, in order), and
    /// nothing else changed: fds 0-2 and the working directory as ember's.
    pub fn new<'a>(
        argv: &[impl AsRef<OsStr>],
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> Result<Plan, String> {
        let Some(program) = argv.first() else {
            return Err("the command is empty".into());
        };
        let program = program.as_ref();
        let mut envp = Vec::new();
        let mut path = None;
        for (key, value) in env {
            if key.as_bytes() == b"PATH" {
                path = Some(value);
            }
            let mut entry = OsString::with_capacity(key.len() + value.len() + 1);
            entry.push(key);
            entry.push("=");
            entry.push(value);
            envp.push(c_string("the environment", entry.as_bytes())?);
        }
        let argv = argv
            .iter()
            .map(|arg| c_string("the command", arg.as_ref().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            candidates: candidates(program, path)?,
            argv,
            envp,
            stdio: [None; 3],
            controlling_tty: false,
            cgroup: None,
            rlimits: Vec::new(),
            oom_score_adj: None,
            ids: None,
            workdir: None,
        })
    }

    /// The program as given (the first word of the command).
    pub fn program(&self) -> &OsStr {
        self.argv
            .first()
            .map_or(OsStr::new(""), |p| OsStr::from_bytes(p.as_bytes()))
    }

    /// Starts the process; returns its pid once it has exec'd. A step that failed in the
    /// child is an error naming the step and the OS's reason (the child is reaped here).
    pub fn launch(&self) -> Result<libc::pid_t, String> {
        use std::sync::atomic::Ordering::Relaxed;
        let fast = |c: &Cgroup| !c.killed && !INTO_CGROUP_KILLS.load(Relaxed);
        if let Some(cgroup) = self.cgroup.filter(fast) {
            // Created in its cgroup where the kernel can; else, the old way below.
            match self.clone_with(Way::IntoCgroup(cgroup.dir)) {
                Ok(launched) => return launched,
                Err(KILLED_UNBORN) => {
                    INTO_CGROUP_KILLS.store(true, Relaxed);
                    crate::log::info!(
                        "this kernel kills a process created in a cgroup that cgroup.kill once emptied (a kernel bug): services are moved into their cgroups from now on"
                    );
                }
                Err(_) => {}
            }
        }
        self.clone_with(Way::Clone).unwrap_or_else(|errno| {
            Err(format!(
                "cannot start a process: {}",
                std::io::Error::from_raw_os_error(errno)
            ))
        })
    }

    /// One attempt: `Err(errno)` when no process was made, else what became of it.
    fn clone_with(&self, way: Way) -> Result<Result<libc::pid_t, String>, c_int> {
        let argv = pointers(&self.argv);
        let envp = pointers(&self.envp);
        let in_cgroup = matches!(way, Way::IntoCgroup(_));
        // The fds the child keeps: its 0-2 and, when it joins its cgroup itself, the
        // cgroup's directory. On low slots, the child shares ember's fd table and keeps
        // only what is below them (see low_fds); else it copies the table, as fork does.
        let wanted = [
            self.stdio[0],
            self.stdio[1],
            self.stdio[2],
            self.cgroup.filter(|_| !in_cgroup).map(|c| c.dir),
        ];
        let staged = match low_fds::stage(wanted) {
            Ok(staged) => staged,
            Err(failed) => {
                let step = if failed.index < 3 {
                    Step::Stdio
                } else {
                    Step::Cgroup
                };
                let errno = failed.errno;
                return Ok(Err(Failure { step, errno }.message()));
            }
        };
        let (fds, keep_below) = staged
            .as_ref()
            .map_or((wanted, None), |s| (s.fds(), Some(s.keep_below())));
        let share_files = keep_below.is_some();
        let mut child_data = Child {
            plan: self,
            argv: &argv,
            envp: &envp,
            fds,
            keep_below,
            ran: false,
            failure: Failure::default(),
        };
        // The child's stack: it only makes system calls, a page or two is plenty; 64 KiB
        // leaves room for whatever libc's wrappers use.
        // Left uninitialised: the child writes its stack before it reads it.
        let mut stack = Vec::<u8>::with_capacity(64 * 1024);
        let data = (&mut child_data as *mut Child).cast::<c_void>();
        let blocked = block_signals();
        let pid = match way {
            // SAFETY: as below; `clone3::spawn` aligns the stack itself.
            Way::IntoCgroup(dir) => unsafe {
                super::clone3::spawn(dir, share_files, stack.spare_capacity_mut(), child, data)
            },
            Way::Clone => {
                // SAFETY: the end of the buffer's allocation, aligned down to 16 bytes as
                // every ABI wants; the stack grows down on every architecture ember is
                // built for.
                let top = unsafe { stack.as_mut_ptr().add(stack.capacity()) };
                let top = ((top as usize) & !15) as *mut c_void;
                // SAFETY: CLONE_VFORK suspends this thread until the child has exec'd or
                // exited, so `child_data` and `stack` outlive every use the child makes of
                // them; the child runs only `child`, which makes system calls and touches
                // nothing but them.
                let files = if share_files { libc::CLONE_FILES } else { 0 };
                let pid = unsafe {
                    libc::clone(
                        child,
                        top,
                        libc::CLONE_VM | libc::CLONE_VFORK | files | libc::SIGCHLD,
                        data,
                    )
                };
                if pid < 0 {
                    Err(std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO))
                } else {
                    Ok(pid)
                }
            }
        };
        restore_signals(&blocked);
        // The child has exec'd or exited: the slots hold /dev/null again.
        drop(staged);
        drop(stack);
        let pid = pid?;
        // SAFETY: plain reads of values the child may have written before it exited.
        let (ran, failure) = unsafe {
            (
                std::ptr::read_volatile(&child_data.ran),
                std::ptr::read_volatile(&child_data.failure),
            )
        };
        if !ran && matches!(way, Way::IntoCgroup(_)) && reaped_dead(pid) {
            // Killed before it ran a single instruction: no one else knew its pid yet, so
            // the kernel did it. Linux 6.14 onwards (seen on 6.18) compares, for a child
            // created in a cgroup, that cgroup's count of cgroup.kill writes with the
            // parent's own cgroup's, and kills the child when they differ.
            return Err(KILLED_UNBORN);
        }
        if failure.step == Step::None {
            return Ok(Ok(pid));
        }
        // The child has exited (CLONE_VFORK returned without an exec): reap it here, so
        // the reaper never sees a pid nobody knows.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        if failure.step == Step::OwnTable && share_files {
            // Nothing of the service ran yet: again, with a copy of ember's table.
            low_fds::refused();
            return self.clone_with(way);
        }
        let mut message = self.describe(failure);
        if failure.step == Step::Exec {
            if let Some(why) = self.exec_failure_why(failure.errno) {
                message = format!("{message}; {why}");
            }
        }
        Ok(Err(message))
    }

    /// A failed step's error, naming what the step was asked to do where that helps: the
    /// workdir, the ids.
    fn describe(&self, failure: Failure) -> String {
        let reason = std::io::Error::from_raw_os_error(failure.errno);
        match (failure.step, &self.workdir, &self.ids) {
            (Step::Workdir, Some(dir), _) => {
                format!(
                    "cannot enter its workdir {}: {reason}",
                    dir.to_string_lossy()
                )
            }
            (Step::Identity, _, Some((uid, gid, _))) => {
                let own = nix::unistd::geteuid();
                let advice = if failure.errno == libc::EPERM && !own.is_root() {
                    format!("; ember runs as uid {own}, which may not switch users: run it as root, or leave out user and group")
                } else {
                    String::new()
                };
                format!("cannot switch to uid {uid}, gid {gid}: {reason}{advice}")
            }
            _ => failure.message(),
        }
    }

    /// What exec's errno means for the file it was asked to run, in words, from a look at
    /// the file (after a failure only): ENOENT for a script that is there but not its
    /// interpreter, EACCES for a directory, ENOEXEC for a script without `#!`...
    fn exec_failure_why(&self, errno: c_int) -> Option<String> {
        if errno == libc::E2BIG {
            return Some(
                "the command and its environment are more than exec takes: at most 128 KiB for each argument or variable, and a quarter of the stack limit (ulimit -s) in all".to_owned(),
            );
        }
        // The file exec tried: the first candidate that is there.
        let (path, meta) = self.candidates.iter().find_map(|c| {
            let path = Path::new(OsStr::from_bytes(c.as_bytes()));
            std::fs::metadata(path).ok().map(|meta| (path, meta))
        })?;
        let head = || crate::config::service::program_head(path).unwrap_or_default();
        let elf = |head: &[u8]| head.starts_with(b"\x7fELF");
        let not_a_program = crate::filekind::not_a_program(&meta);
        match errno {
            libc::EACCES if not_a_program.is_some() => not_a_program.map(|why| format!("it {why}")),
            libc::EACCES => {
                use std::os::unix::fs::MetadataExt;
                let noexec = nix::sys::statvfs::statvfs(path).is_ok_and(|fs| {
                    fs.flags()
                        .contains(nix::sys::statvfs::FsFlags::ST_NOEXEC)
                });
                if noexec {
                    return Some("its filesystem is mounted noexec".to_owned());
                }
                // The x bit that applies to the user it runs as (the owner's, a group's,
                // or everyone's), on the file and on each directory above it.
                let (uid, gid, groups) = self.ids.as_ref().filter(|(uid, ..)| *uid != 0)?;
                let denied = |m: &std::fs::Metadata| {
                    let bit = if m.uid() == *uid {
                        0o100
                    } else if m.gid() == *gid || groups.contains(&m.gid()) {
                        0o010
                    } else {
                        0o001
                    };
                    m.mode() & bit == 0
                };
                let said = |what: &str, m: &std::fs::Metadata| {
                    format!(
                        "uid {uid} may not {what} (mode {:o}, owner {}:{})",
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    )
                };
                // (A relative path is the workdir's, not ember's: not judged.)
                if !path.is_absolute() {
                    return None;
                }
                if let Some((dir, m)) = path
                    .ancestors()
                    .skip(1)
                    .filter_map(|dir| std::fs::metadata(dir).ok().map(|m| (dir, m)))
                    .find(|(_, m)| denied(m))
                {
                    return Some(said(&format!("enter {}", dir.display()), &m));
                }
                denied(&meta).then(|| said("run it", &meta))
            }
            libc::ENOENT => crate::config::service::missing_interpreter(path).or_else(|| {
                elf(&head()).then(|| {
                    "it is a program whose loader (the ELF interpreter it names) is not on this system: built for another C library?".to_owned()
                })
            }),
            libc::ENOEXEC => Some(if elf(&head()) {
                "it is a program built for another machine".to_owned()
            } else {
                "it is no program for this machine and has no #! line: a script starts with one, e.g. #!/bin/sh".to_owned()
            }),
            libc::ETXTBSY => Some("it is open for writing (being installed?)".to_owned()),
            _ => None,
        }
    }
}

/// Reaps `pid` if it has ended or ends within 100 ms (a child killed unborn is a zombie
/// in microseconds); `false` if it still runs: then its mark did not reach this memory
/// (valgrind, for one, makes a `CLONE_VM` child a copy), and it is a launched process.
fn reaped_dead(pid: libc::pid_t) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    for _ in 0..100 {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Ok(_) | Err(_) => return true,
        }
    }
    false
}

/// What [`Plan::clone_with`] says when the kernel killed the child before it ran (an
/// errno no system call returns).
const KILLED_UNBORN: c_int = -1;

/// Set once a child created in its cgroup was killed unborn: from then on every child
/// is cloned the old way and joins its cgroup itself.
static INTO_CGROUP_KILLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How the child is made.
#[derive(Clone, Copy)]
enum Way {
    /// clone3 into the cgroup whose directory this is (the kernel moves nothing).
    IntoCgroup(RawFd),
    /// clone(2); the child joins [`Plan::cgroup`] itself, if there is one.
    Clone,
}

/// execvp's search, made in ember: where the child will try to exec `program`.
fn candidates(program: &OsStr, path: Option<&OsStr>) -> Result<Vec<CString>, String> {
    let name = program.as_bytes();
    if name.is_empty() {
        return Err("the command's program is an empty string".into());
    }
    if name.contains(&b'/') {
        return Ok(vec![c_string("the command", name)?]);
    }
    // As execvp: no PATH means the default search path.
    let path = path.map_or(b"/bin:/usr/bin".as_slice(), |p| p.as_bytes());
    path.split(|&b| b == b':')
        .map(|dir| {
            // An empty entry is the current directory, as execvp has it.
            let full = if dir.is_empty() {
                Path::new(program).to_path_buf()
            } else {
                Path::new(OsStr::from_bytes(dir)).join(program)
            };
            c_string("PATH", full.as_os_str().as_bytes())
        })
        .collect()
}

/// A NULL-terminated array of pointers into `strings`, as execve takes.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Blocks every signal on this thread, returning the mask before: no handler of ember's
/// may run in the child while it shares ember's memory.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigfillset and pthread_sigmask on valid, initialised sigset_t values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: restores a mask pthread_sigmask returned.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// What the child reads (ember's memory, shared until the execve) and where it writes.
struct Child<'a> {
    plan: &'a Plan,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    /// Its fds 0-2 and the directory of the cgroup it joins itself (none when it was
    /// created there), where the child finds them.
    fds: [Option<RawFd>; low_fds::COUNT],
    /// Sharing ember's fd table: its own is to keep only the fds below this.
    keep_below: Option<c_int>,
    /// Set by the child first thing: a child that exits without it never ran.
    ran: bool,
    failure: Failure,
}

/// The child, from the clone to the execve. Only system calls: no allocation, no lock,
/// no panic (nothing here indexes or unwraps). A failing step records itself and its
/// errno and exits 127.
extern "C" fn child(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Child` that `launch` passed, alive while ember waits.
    let data = unsafe { &mut *data.cast::<Child>() };
    // SAFETY: a write to the `Child` above, which ember reads only once the clone returns.
    unsafe { std::ptr::write_volatile(&mut data.ran, true) };
    let step = steps(data);
    let failure = match step {
        Ok(()) => exec(data),
        Err(failure) => failure,
    };
    data.failure = failure;
    // SAFETY: _exit ends only this process (the child), without running ember's atexit
    // handlers or flushing its buffers.
    unsafe { libc::_exit(127) }
}

/// The last errno, as a failure of `step`.
fn failed(step: Step) -> Failure {
    Failure {
        step,
        errno: std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    }
}

/// The child's steps before the exec. Order matters: the session first (it also drops
/// ember's controlling terminal), the cgroup and the limits before setuid, which would
/// take away the right to raise a hard limit or lower the OOM score.
fn steps(data: &Child) -> Result<(), Failure> {
    let plan = data.plan;
    // SAFETY (this function): system calls with valid arguments made before the clone;
    // each result is checked.
    unsafe {
        if let Some(keep_below) = data.keep_below {
            // First, before any fd changes: a table of its own, of ember's fds below the
            // line only (0-2 and the slots). Before Linux 5.9 (no close_range), a copy of
            // the whole table; execve closes the rest, as after a fork.
            if !low_fds::close_range_from(keep_below, libc::CLOSE_RANGE_UNSHARE)
                && libc::unshare(libc::CLONE_FILES) < 0
            {
                return Err(failed(Step::OwnTable));
            }
        }
    }
    reset_signal_handlers();
    // SAFETY: as above.
    unsafe {
        if libc::setsid() < 0 {
            return Err(failed(Step::Session));
        }
        for (target, source) in (0..3).zip(data.fds) {
            if let Some(fd) = source {
                // dup2 clears close-on-exec on the copy; every source is ≥ 3, so no
                // earlier copy overwrote it.
                if libc::dup2(fd, target) < 0 {
                    return Err(failed(Step::Stdio));
                }
            }
        }
        if plan.controlling_tty {
            // The console becomes its controlling terminal, so a shell has job control.
            libc::ioctl(0, libc::TIOCSCTTY, 1);
        }
        if let Some(dir) = data.fds[3] {
            let fd = libc::openat(
                dir,
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(failed(Step::Cgroup));
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let failure = failed(Step::Cgroup);
            libc::close(fd);
            if written != 1 {
                return Err(failure);
            }
        }
        // A service gets fds 0-2 and nothing else of ember's: not the slots, and not an
        // fd without close-on-exec that ember inherited from whoever started it. (Before
        // Linux 5.9 this fails, and execve closes the close-on-exec ones.)
        low_fds::close_range_from(3, 0);
        for &(resource, amount) in &plan.rlimits {
            if nix::sys::resource::setrlimit(resource, amount, amount).is_err() {
                return Err(failed(Step::Rlimit));
            }
        }
        if let Some(text) = &plan.oom_score_adj {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(failed(Step::OomScore));
            }
            let written = libc::write(fd, text.as_ptr().cast(), text.len());
            let failure = failed(Step::OomScore);
            libc::close(fd);
            if written < 0 {
                return Err(failure);
            }
        }
        if let Some((uid, gid, groups)) = &plan.ids {
            // Raw system calls: libc's setuid/setgid/setgroups tell every thread of the
            // process to change too, and this child shares ember's memory, threads' list
            // included; the kernel's calls change only the caller.
            if libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) < 0
                || libc::syscall(SYS_SETGID, *gid) < 0
                || libc::syscall(SYS_SETUID, *uid) < 0
            {
                return Err(failed(Step::Identity));
            }
        }
        if let Some(dir) = &plan.workdir {
            if libc::chdir(dir.as_ptr()) < 0 {
                return Err(failed(Step::Workdir));
            }
        }
        // Every signal was blocked around the clone; a service starts with none blocked.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
    }
    Ok(())
}

// The 32-bit ids' system calls: on 32-bit ARM and x86 the plain ones take 16-bit ids.
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
use libc::{SYS_setgid as SYS_SETGID, SYS_setgroups as SYS_SETGROUPS, SYS_setuid as SYS_SETUID};
#[cfg(any(target_arch = "arm", target_arch = "x86"))]
use libc::{
    SYS_setgid32 as SYS_SETGID, SYS_setgroups32 as SYS_SETGROUPS, SYS_setuid32 as SYS_SETUID,
};

/// execvp's loop over the candidates: a missing file tries the next; "permission denied"
/// is remembered and tried past (another directory may have it), and reported if nothing
/// else was found; any other error stops the search. Returns only on failure.
fn exec(data: &Child) -> Failure {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for candidate in &data.plan.candidates {
        // SAFETY: NUL-terminated strings and NULL-terminated arrays made before the clone.
        unsafe { libc::execve(candidate.as_ptr(), data.argv.as_ptr(), data.envp.as_ptr()) };
        let errno = failed(Step::Exec).errno;
        match errno {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => {
                return Failure {
                    step: Step::Exec,
                    errno: other,
                }
            }
        }
        last = errno;
    }
    Failure {
        step: Step::Exec,
        errno: if denied { libc::EACCES } else { last },
    }
}

/// Signal dispositions set to SIG_IGN survive exec, and the handlers ember installed would
/// run on ember's memory: services start with every default, real-time signals included.
fn reset_signal_handlers() {
    // The raw system call, not libc's signal(): glibc refuses its two reserved real-time
    // signals (32, 33), yet they too may arrive ignored. An all-zero kernel sigaction is
    // SIG_DFL with no flags and an empty mask, whatever the architecture's field order.
    let default_action = [0u64; 4];
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid pointer to a zeroed kernel sigaction; the old
        // action is not asked for. The child has its own handlers (no CLONE_SIGHAND).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a OsStr, &'a OsStr)> {
        pairs.iter().map(|(k, v)| (OsStr::new(*k), OsStr::new(*v)))
    }

    /// A pipe whose write end is ≥ 3 and close-on-exec, as a plan's stdio must be.
    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
    }

    fn wait(pid: libc::pid_t) -> nix::sys::wait::WaitStatus {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("waitpid")
    }

    fn output_of(mut plan: Plan) -> (String, nix::sys::wait::WaitStatus) {
        let (read, write) = pipe();
        plan.stdio[1] = Some(write.as_raw_fd());
        let pid = plan.launch().expect("launch");
        drop(write);
        let mut text = String::new();
        std::fs::File::from(read)
            .read_to_string(&mut text)
            .expect("read");
        (text, wait(pid))
    }

    #[test]
    fn runs_the_program_with_exactly_the_environment_given_found_on_its_path() {
        let plan = Plan::new(
            &["sh", "-c", "echo \"$A|$B|$$\"; env | sort"],
            env(&[("PATH", "/nonexistent:/usr/bin:/bin"), ("A", "one two")]),
        )
        .expect("plan");
        let (text, status) = output_of(plan);
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(status.pid().unwrap(), 0)
        );
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        assert!(first.starts_with("one two||"), "{text}");
        let rest: Vec<&str> = lines
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        assert_eq!(
            rest,
            ["A=one two", "PATH=/nonexistent:/usr/bin:/bin"],
            "{text}"
        );
    }

    /// Tests whose children fail before exec run one at a time, so that one's count of
    /// zombies does not see another's child between its clone and its reaping.
    static FAILING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Zombie children of this process that never exec'd (they still have its name).
    fn unexeced_zombies() -> usize {
        let me = std::process::id().to_string();
        let own = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| {
                let dir = entry.path();
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
                let mut fields = after.split(' ');
                fields.next() == Some("Z") && fields.next() == Some(me.as_str()) && comm == own
            })
            .count()
    }

    #[test]
    fn a_missing_program_is_an_error_with_the_reason_and_leaves_no_child() {
        let not_executable =
            std::env::temp_dir().join(format!("ember-launch-plain-{}", std::process::id()));
        std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
        let not_executable = not_executable.to_string_lossy().into_owned();
        for (argv, reason) in [
            (["/nonexistent/prog"], "No such file or directory"),
            (["ember-no-such-program"], "No such file or directory"),
            ([not_executable.as_str()], "Permission denied"),
        ] {
            let _one_at_a_time = FAILING.lock();
            let plan = Plan::new(&argv, env(&[("PATH", "/usr/bin:/bin")])).expect("plan");
            let error = plan.launch().expect_err("must fail");
            assert!(
                error.contains(reason) && error.contains("os error"),
                "{argv:?}: {error}"
            );
        }
        let _ = std::fs::remove_file(&not_executable);
        // Each child that could not exec was reaped by launch itself.
        assert_eq!(unexeced_zombies(), 0);
    }

    /// The child keeps its 0-2 only: not ember's other fds, even one without
    /// close-on-exec (inherited from whoever started ember), and not the slots its 0-2
    /// waited on.
    #[test]
    fn the_child_has_its_stdio_and_no_other_fd_of_embers() {
        // SAFETY: dup of this process's stderr; the copy is closed below.
        let inherited = unsafe { libc::dup(2) };
        assert!(inherited > 2);
        let plan = Plan::new(
            // (A glob would list the fd the shell reads the directory with.)
            &[
                "sh",
                "-c",
                "for fd in $(seq 0 4096); do [ -e /proc/$$/fd/$fd ] && echo $fd; done",
            ],
            env(&[("PATH", "/usr/bin:/bin")]),
        )
        .expect("plan");
        let (text, _) = output_of(plan);
        // SAFETY: the fd dup'd above; still open in this process (the child's close
        // was its own).
        assert_eq!(unsafe { libc::close(inherited) }, 0);
        let fds: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "{text}");
    }

    /// exec's errno alone misleads: ENOENT for a script that is there (its interpreter is
    /// not), EACCES for a directory, "Exec format error" for a script without `#!`. The
    /// error says what is wrong with the file, after the OS's reason.
    #[test]
    fn an_exec_failure_says_what_is_wrong_with_the_program() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ember-launch-why-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path.to_string_lossy().into_owned()
        };
        let no_shebang = write("no-shebang", "echo hello\n", 0o755);
        let no_interpreter = write(
            "no-interpreter",
            "#!/nonexistent/python3 -u\nprint()\n",
            0o755,
        );
        let not_executable = write("plain", "#!/bin/sh\n", 0o644);
        let subdir = dir.join("subdir");
        let _ = std::fs::create_dir(&subdir);
        let subdir = subdir.to_string_lossy().into_owned();
        let huge = "x".repeat(200 * 1024);
        for (argv, reason, why) in [
            (vec![no_shebang.as_str()], "os error 8", "no #! line"),
            (
                vec![no_interpreter.as_str()],
                "os error 2",
                "its #! line names /nonexistent/python3, which does not exist",
            ),
            (vec![subdir.as_str()], "os error 13", "it is a directory"),
            (vec![not_executable.as_str()], "os error 13", "chmod +x"),
            (vec!["/bin/true", huge.as_str()], "os error 7", "128 KiB"),
        ] {
            let _one_at_a_time = FAILING.lock();
            let plan = Plan::new(&argv, env(&[("PATH", "/usr/bin:/bin")])).expect("plan");
            let error = plan.launch().expect_err("must fail");
            assert!(
                error.contains(reason) && error.contains(why),
                "{}: {error}",
                argv[0]
            );
        }
        // Executable, but not by the user it runs as.
        if nix::unistd::geteuid().is_root() {
            let own = write("owners-only", "#!/bin/sh\n", 0o700);
            let _one_at_a_time = FAILING.lock();
            let mut plan = Plan::new(&[own.as_str()], env(&[])).expect("plan");
            plan.ids = Some((65534, 65534, vec![65534]));
            let error = plan.launch().expect_err("must fail");
            assert!(
                error.contains("os error 13") && error.contains("uid 65534 may not run it"),
                "{error}"
            );
            let locked = dir.join("locked");
            let _ = std::fs::create_dir(&locked);
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
            let inside = write("locked/prog", "#!/bin/sh\n", 0o755);
            let mut plan = Plan::new(&[inside.as_str()], env(&[])).expect("plan");
            plan.ids = Some((65534, 65534, vec![65534]));
            let error = plan.launch().expect_err("must fail");
            assert!(
                error.contains(&format!("uid 65534 may not enter {}", locked.display())),
                "{error}"
            );
        }
        // Found on PATH: the file found is the one looked at.
        let path = format!("/nonexistent:{}", dir.display());
        let plan = Plan::new(&["no-interpreter"], env(&[("PATH", path.as_str())])).expect("plan");
        let error = plan.launch().expect_err("must fail");
        assert!(error.contains("/nonexistent/python3"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_on_the_path_without_the_right_to_exec_is_tried_past() {
        let dir = std::env::temp_dir().join(format!("ember-launch-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let locked = dir.join("true");
        std::fs::write(&locked, "#!/bin/sh\nexit 3\n").expect("write");
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let plan = Plan::new(&["true"], env(&[("PATH", path.as_str())])).expect("plan");
        let pid = plan.launch().expect("the second directory's true runs");
        assert_eq!(
            wait(pid),
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_step_is_named_and_its_reason_given() {
        let _one_at_a_time = FAILING.lock();
        let mut plan = Plan::new(&["/bin/true"], env(&[])).expect("plan");
        plan.workdir = Some(CString::new("/nonexistent/dir").expect("c string"));
        let error = plan.launch().expect_err("must fail");
        assert!(
            error.starts_with("cannot enter its workdir /nonexistent/dir: No such file"),
            "{error}"
        );
        // Who it was to be, when ember may not become them.
        if !nix::unistd::geteuid().is_root() {
            let mut plan = Plan::new(&["/bin/true"], env(&[])).expect("plan");
            plan.ids = Some((0, 0, vec![0]));
            let error = plan.launch().expect_err("must fail");
            assert!(
                error.starts_with("cannot switch to uid 0, gid 0: Operation not permitted")
                    && error.contains("ember runs as uid"),
                "{error}"
            );
        }
        let mut plan = Plan::new(&["/bin/true"], env(&[])).expect("plan");
        // An fd number nothing has open in this test process.
        plan.stdio[0] = Some(987);
        let error = plan.launch().expect_err("must fail");
        assert!(
            error.starts_with("cannot set up its stdin/stdout/stderr: Bad file"),
            "{error}"
        );
    }

    /// A cgroup of this test's own under this process's, removed when dropped; `None`
    /// where there is no cgroup2 or it is not ours to write (not root).
    struct TestCgroup {
        name: String,
        dir: std::path::PathBuf,
        fd: OwnedFd,
    }

    impl TestCgroup {
        fn make(name: String) -> Option<TestCgroup> {
            let dir = crate::supervisor::cgroup::own_cgroup_dir()
                .ok()?
                .join(&name);
            std::fs::create_dir(&dir).ok()?;
            let fd = crate::supervisor::cgroup::open_dir(&dir).expect("open the cgroup");
            Some(TestCgroup { name, dir, fd })
        }

        fn cgroup(&self) -> Cgroup {
            Cgroup {
                dir: self.fd.as_raw_fd(),
                killed: false,
            }
        }

        /// Runs `cat /proc/self/cgroup` in it by `launch`: whether it exited 0, whether it
        /// ran in this cgroup, and its output.
        fn ran_in(&self, launch: impl FnOnce(&Plan) -> libc::pid_t) -> (bool, bool, String) {
            let mut plan = Plan::new(
                &["cat", "/proc/self/cgroup"],
                env(&[("PATH", "/usr/bin:/bin")]),
            )
            .expect("plan");
            plan.cgroup = Some(self.cgroup());
            let (read, write) = pipe();
            plan.stdio[1] = Some(write.as_raw_fd());
            let pid = launch(&plan);
            drop(write);
            let mut text = String::new();
            std::fs::File::from(read)
                .read_to_string(&mut text)
                .expect("read");
            let exited =
                wait(pid) == nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0);
            let unified = text.lines().find_map(|l| l.strip_prefix("0::"));
            let here = unified.is_some_and(|path| path.ends_with(&format!("/{}", self.name)));
            (exited, here, text)
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// Both ways put the child in its cgroup before it runs: created there (clone3), or
    /// moved there by itself (clone, where the kernel cannot do the former).
    #[test]
    fn the_child_starts_in_its_cgroup_created_there_or_moved_there() {
        let Some(group) = TestCgroup::make(format!("ember-launch-{}", std::process::id())) else {
            return;
        };
        for way in [Way::IntoCgroup(group.fd.as_raw_fd()), Way::Clone] {
            let (_, here, text) = group.ran_in(|plan| match plan.clone_with(way) {
                Ok(launched) => launched.expect("launched"),
                // Every kernel ember is tested on has clone3 into a cgroup (5.7).
                Err(errno) => panic!("no process made: errno {errno}"),
            });
            assert!(here, "{text}");
        }
    }

    /// Linux 6.14 onwards kills a child created in a cgroup that cgroup.kill has emptied
    /// before (when ember's own cgroup has not been): launch sees the child die unborn and
    /// starts it the old way, still in that cgroup.
    #[test]
    fn a_child_the_kernel_kills_unborn_in_a_killed_cgroup_is_started_the_old_way() {
        let Some(group) = TestCgroup::make(format!("ember-launch-killed-{}", std::process::id()))
        else {
            return;
        };
        if !group.dir.join("cgroup.kill").exists() {
            return; // before 5.14
        }
        // A process in it, killed by cgroup.kill.
        let mut victim =
            Plan::new(&["sleep", "1000"], env(&[("PATH", "/usr/bin:/bin")])).expect("plan");
        victim.cgroup = Some(group.cgroup());
        let victim = victim.launch().expect("launch the victim");
        std::fs::write(group.dir.join("cgroup.kill"), "1").expect("cgroup.kill");
        assert!(matches!(
            wait(victim),
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ));
        let (exited, here, text) = group.ran_in(|plan| plan.launch().expect("launched"));
        assert!(exited, "{text}");
        assert!(here, "{text}");
    }

    /// A child whose mark did not reach ember (valgrind runs a CLONE_VM child as a copy)
    /// but still runs is a launched process, not one to wait for: waiting would hang.
    #[test]
    fn only_a_child_that_has_ended_is_taken_for_one_killed_unborn() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("sleep");
        let pid = child.id() as libc::pid_t;
        assert!(!reaped_dead(pid));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .expect("kill");
        assert!(reaped_dead(pid));
        // Reaped already: std's wait only finds it gone.
        let _ = child.wait();
    }

    #[test]
    fn the_child_gets_a_session_default_signals_and_an_empty_mask() {
        // Ignore SIGURG in this process: the child must not inherit that. Not a signal
        // ember handles: `Signals::open`, run by other tests at the same time, gives an
        // ignored one of those its default back, and this test then checked nothing.
        // (SIGURG's default is to ignore it, so it is harmless while it is ignored.)
        // SAFETY: a disposition changed and put back in a test.
        unsafe {
            libc::signal(libc::SIGURG, libc::SIG_IGN);
        }
        let plan = Plan::new(
            &[
                "sh",
                "-c",
                "grep -E '^(SigIgn|SigBlk)' /proc/self/status; set -- $(cat /proc/$$/stat); [ \"$6\" = $$ ] && echo leader",
            ],
            env(&[("PATH", "/usr/bin:/bin")]),
        )
        .expect("plan");
        let (text, _) = output_of(plan);
        // SAFETY: as above.
        unsafe {
            libc::signal(libc::SIGURG, libc::SIG_DFL);
        }
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        };
        assert_eq!(field("SigBlk:"), Some(0), "{text}");
        assert_eq!(
            field("SigIgn:").map(|m| m & (1 << (libc::SIGURG - 1))),
            Some(0),
            "{text}"
        );
        assert!(text.contains("leader"), "{text}");
    }
}
