//! Harness for the integration tests: the real ember binary, run as PID 1 of a fresh PID
//! namespace (`unshare --pid --fork --mount-proc`) or as a plain child, with real processes.
#![allow(dead_code)]

pub mod broker;
pub mod bus;
pub mod script;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EMBER: &str = env!("CARGO_BIN_EXE_ember");

/// How much slower than a quiet machine this one is, measured once per test binary: the
/// median of a few runs of `ember --version` (a spawn, an exec of the debug binary, an
/// exit: the round trip every `ember ctl` pays) against what it takes on a quiet 2-core
/// machine. Never below 1. EMBER_TEST_SLOWNESS=N sets it (a slower emulator, valgrind).
pub fn slowness() -> f64 {
    static SLOWNESS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *SLOWNESS.get_or_init(|| {
        if let Some(set) = std::env::var("EMBER_TEST_SLOWNESS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        {
            return set.max(1.0);
        }
        // Measured on the 2-core build machines when nothing else ran: 1.6-2.4 ms.
        const QUIET: Duration = Duration::from_millis(2);
        let mut runs: Vec<Duration> = (0..7)
            .map(|_| {
                let start = Instant::now();
                let _ = Command::new(EMBER)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                start.elapsed()
            })
            .collect();
        runs.sort();
        let median = runs[runs.len() / 2];
        let slowness = (median.as_secs_f64() / QUIET.as_secs_f64()).clamp(1.0, 50.0);
        eprintln!(
            "test timeouts: a spawn round trip takes {} us here, slowness {slowness:.1}",
            median.as_micros()
        );
        slowness
    })
}

/// The ordinary deadline on a quiet machine: a state change, a socket, a message, a log
/// line. Generous on purpose: a deadline only decides how long a failing test takes to
/// say so (every wait ends as soon as its condition holds). The helpers below scale every
/// timeout they are given by [`slowness`], so a busy machine gets more.
pub const LONG: Duration = Duration::from_secs(30);

/// `quiet` (what a quiet machine needs) times [`slowness`]: every deadline and every
/// window the helpers wait, and a grace a test gives ember on purpose.
pub fn scaled(quiet: Duration) -> Duration {
    quiet.mul_f64(slowness())
}

/// Tests that need a PID namespace need root; CI is root. Elsewhere they say so and pass.
pub fn can_unshare() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // CI runs as root: there, not being able to is a failure, not a skip.
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the tests as root"
    );
    eprintln!("skipped: needs root for unshare --pid (CI runs as root)");
    false
}

/// Tests that look at a rendered picture need Debian's chromium; tests/run.sh installs it.
pub fn have_chromium() -> bool {
    let ok = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // In CI a missing browser is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed in CI"
        );
        eprintln!("skipped: chromium is not installed (tests/run.sh installs it)");
    }
    ok
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ember-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // EMBER_KEEP_TMP=1 keeps them, to read the logs of a failed test.
        if std::env::var_os("EMBER_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How a test runs ember.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// PID 1 of a fresh PID namespace.
    Pid1,
    /// In a fresh PID namespace whose PID 1 is a shell.
    NamespaceChild,
    /// A plain child of the test.
    Plain,
    /// PID 1 of a fresh PID namespace, exec'd by a shell that first runs this script in
    /// the namespace (its own mount namespace: unmounting there leaves the host alone).
    Pid1After(&'static str),
    /// PID 1 of a fresh PID namespace, with these arguments after `--config PATH` (what
    /// a kernel passes on to init from its command line).
    Pid1Args(&'static [&'static str]),
}

pub struct Ember {
    pub dir: TempDir,
    pub child: Child,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Ember {
    /// Writes `services` (TOML service tables) below a [control] section and starts ember
    /// as PID 1 of a new PID namespace; waits for its control socket.
    pub fn start(tag: &str, services: &str) -> Ember {
        Self::launch(tag, services, true)
    }

    /// The same, as an ordinary child process (not PID 1: a child subreaper).
    pub fn start_plain(tag: &str, services: &str) -> Ember {
        Self::launch(tag, services, false)
    }

    /// ember in a PID namespace of its own, but not as its PID 1 (a shell is): how it runs
    /// in a container whose init is something else.
    pub fn start_in_namespace_not_pid1(tag: &str, services: &str) -> Ember {
        Self::launch_raw(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::NamespaceChild,
        )
    }

    /// ember as PID 1 of a new namespace, after `script` ran there (e.g. unmounting).
    pub fn start_after(tag: &str, script: &'static str, services: &str) -> Ember {
        Self::launch_raw(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::Pid1After(script),
        )
    }

    /// Starts ember as PID 1 of a namespace with a whole configuration file of the test's.
    pub fn start_with_config(tag: &str, config: &str) -> Ember {
        Self::launch_raw(tag, config, Mode::Pid1)
    }

    /// ember as PID 1 of a new namespace, given `args` after its `--config PATH`.
    pub fn start_with_args(tag: &str, services: &str, args: &'static [&'static str]) -> Ember {
        Self::launch_raw(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::Pid1Args(args),
        )
    }

    fn launch(tag: &str, services: &str, namespace: bool) -> Ember {
        let mode = if namespace { Mode::Pid1 } else { Mode::Plain };
        Self::launch_raw(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            mode,
        )
    }

    /// ember (PID 1 of a namespace, or plain) started inside the cgroup `parent` instead
    /// of the test's: what it does there is seen by no other test's ember.
    pub fn start_in_cgroup(tag: &str, services: &str, parent: &Path, pid1: bool) -> Ember {
        let mode = if pid1 { Mode::Pid1 } else { Mode::Plain };
        Self::launch_in(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            mode,
            Some(parent),
            &[],
            &[],
        )
    }

    /// ember as a plain child under a seccomp filter that refuses `syscalls` (EPERM), as a
    /// container's profile may: ember and everything it starts inherit the filter.
    pub fn start_plain_refusing(tag: &str, services: &str, syscalls: &[i64]) -> Ember {
        Self::launch_in(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::Plain,
            None,
            syscalls,
            &[],
        )
    }

    /// A plain ember (not PID 1) started with `env` added to its environment: what a
    /// supervisor under systemd, a container runtime or a shell is given.
    pub fn start_plain_with_env(tag: &str, services: &str, env: &[(&str, &str)]) -> Ember {
        Self::launch_in(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::Plain,
            None,
            &[],
            env,
        )
    }

    /// ember as PID 1 of a new namespace whose system calls `syscalls` fail with EPERM
    /// (a seccomp filter, as a container runtime sets one).
    pub fn start_refusing(tag: &str, services: &str, syscalls: &[i64]) -> Ember {
        Self::launch_in(
            tag,
            &format!("[control]\nsocket = \"$DIR/control.sock\"\n\n{services}"),
            Mode::Pid1,
            None,
            syscalls,
            &[],
        )
    }

    fn launch_raw(tag: &str, text: &str, mode: Mode) -> Ember {
        Self::launch_in(tag, text, mode, None, &[], &[])
    }

    fn launch_in(
        tag: &str,
        text: &str,
        mode: Mode,
        cgroup: Option<&Path>,
        refused: &[i64],
        env: &[(&str, &str)],
    ) -> Ember {
        let dir = TempDir::new(tag);
        let socket = dir.path("control.sock");
        let config = dir.path("ember.toml");
        let text = text.replace("$DIR", &dir.0.display().to_string());
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::File::create(dir.path("ember.log")).expect("log file");
        // --uts too: as PID 1 ember may set the hostname, which must stay in the namespace.
        let unshare = ["--pid", "--fork", "--mount-proc", "--uts", "--kill-child"];
        let mut command = match mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(unshare).arg(EMBER).arg("--config").arg(&config);
                c
            }
            Mode::Pid1Args(args) => {
                let mut c = Command::new("unshare");
                c.args(unshare)
                    .arg(EMBER)
                    .arg("--config")
                    .arg(&config)
                    .args(args);
                c
            }
            Mode::NamespaceChild => {
                // "; exit" keeps the shell from exec'ing ember: the shell stays PID 1.
                let mut c = Command::new("unshare");
                c.args(unshare).args([
                    "/bin/sh",
                    "-c",
                    &format!("{EMBER} --config {}; exit $?", config.display()),
                ]);
                c
            }
            Mode::Pid1After(script) => {
                let mut c = Command::new("unshare");
                c.args(unshare).args([
                    "/bin/sh",
                    "-c",
                    &format!("{script}\nexec {EMBER} --config {}", config.display()),
                ]);
                c
            }
            Mode::Plain => {
                let mut c = Command::new(EMBER);
                c.arg("--config").arg(&config);
                c
            }
        };
        // Kept open until the child has written to it.
        let mut procs_file = None;
        if let Some(cgroup) = cgroup {
            let procs = std::fs::OpenOptions::new()
                .write(true)
                .open(cgroup.join("cgroup.procs"))
                .expect("open cgroup.procs");
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = procs.as_raw_fd();
            // SAFETY: write(2) is async-signal-safe; `procs` outlives the spawn.
            unsafe {
                command.pre_exec(move || {
                    if nix::libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            procs_file = Some(procs);
        }
        if !refused.is_empty() {
            let filter = refusing_filter(refused);
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl(2) only, on a filter that lives in this process until the
            // spawn returns.
            unsafe {
                command.pre_exec(move || {
                    let program = nix::libc::sock_fprog {
                        len: filter.len() as u16,
                        filter: filter.as_ptr().cast_mut(),
                    };
                    if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                        || nix::libc::prctl(
                            nix::libc::PR_SET_SECCOMP,
                            nix::libc::SECCOMP_MODE_FILTER,
                            &program as *const nix::libc::sock_fprog,
                        ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command.envs(env.iter().copied());
        command
            .env("EMBER_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = command.spawn().expect("spawn ember");
        drop(procs_file);
        let mut ember = Ember {
            dir,
            child,
            socket,
            config,
        };
        // Not past ember's end: a test whose service stops ember at once must make the
        // service wait for the test (it could be over before its socket was seen).
        let mut ended = None;
        let up = wait_for(LONG, || {
            ended = ember.child.try_wait().ok().flatten();
            ended.is_some() || listening(&ember.socket)
        }) && ended.is_none();
        assert!(
            up,
            "ember did not open its socket{}; log:\n{}",
            ended.map_or(String::new(), |s| format!(" (it ended first: {s})")),
            ember.log()
        );
        ember
    }

    /// ember's pid on the host (the namespace's PID 1, or the plain child).
    /// How many threads ember's process has (its PID 1 as the host sees it).
    pub fn threads(&self) -> Option<u32> {
        std::fs::read_to_string(format!("/proc/{}/status", self.host_pid()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()
    }

    pub fn host_pid(&self) -> i32 {
        let pid = self.child.id() as i32;
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            Some(inner) if Path::new(&format!("/proc/{pid}/exe")).exists() && is_unshare(pid) => {
                inner
            }
            _ => pid,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("ember.log")).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(EMBER)
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run ember ctl")
    }

    /// `ember ctl ARGS`, or `None` if ember has not answered within `timeout` ([`scaled`]):
    /// for a test of what could make ember stop answering (the ctl is then killed).
    pub fn ctl_within(&self, args: &[&str], timeout: Duration) -> Option<Output> {
        let mut child = Command::new(EMBER)
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ember ctl");
        if wait_for(timeout, || child.try_wait().ok().flatten().is_some()) {
            return Some(child.wait_with_output().expect("ember ctl output"));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `ember ctl status --json` of one service.
    pub fn status(&self, name: &str) -> Value {
        let out = self.ctl(&["status", "--json", name]);
        assert!(
            out.status.success(),
            "status {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        v[0].clone()
    }

    pub fn all(&self) -> Vec<Value> {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .expect("status JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `name` is in `state` (and, if given, `sub_state`); panics with the log if not.
    pub fn wait_state(
        &self,
        name: &str,
        state: &str,
        sub: Option<&str>,
        timeout: Duration,
    ) -> Value {
        let mut last = Value::Null;
        let ok = wait_for(timeout, || {
            last = self.status(name);
            last["state"] == state && sub.is_none_or(|s| last["sub_state"] == s)
        });
        assert!(
            ok,
            "{name} never reached {state} {sub:?}; last {last}\nlog:\n{}",
            self.log()
        );
        last
    }

    /// Sends a signal to ember itself.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.host_pid()), signal)
            .expect("signal ember");
    }

    /// Waits for ember (or the unshare around it) to end; `None` if it is still running.
    pub fn wait_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + scaled(timeout);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// How the namespace ended: reboot(2) in a PID namespace kills its PID 1 with SIGHUP
    /// (restart) or SIGINT (power off, halt), and unshare dies of the same signal.
    pub fn wait_namespace_end(&mut self, timeout: Duration) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.wait_status(timeout)?;
        Some(
            status
                .signal()
                .unwrap_or_else(|| status.code().map(|c| c - 128).unwrap_or(-1)),
        )
    }

    /// Waits for ember to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + scaled(timeout);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn is_unshare(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.ends_with("unshare"))
        .unwrap_or(false)
}

impl Drop for Ember {
    fn drop(&mut self) {
        // A plain ember has no namespace to take its services down with it: SIGTERM, so it
        // stops them, before the SIGKILL. (SIGKILL alone left them running, to be found by
        // later tests looking for their markers.)
        let pid = self.child.id() as i32;
        if !is_unshare(pid) && matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.wait_status(LONG);
        }
        // --kill-child: killing unshare kills the namespace's PID 1, and with it everything.
        kill_ember(&mut self.child);
    }
}

/// SIGKILL to `child` (ember, or the unshare around it), and then what a SIGKILLed ember
/// cannot do itself: remove its cgroup. (Left behind, they piled up by the hundred.)
pub fn kill_ember(child: &mut Child) {
    // Named only while ember runs: the name of one that ended earlier may since be
    // another's (namespace inode numbers are reused). The namespace is held open until
    // the directory is gone, so that its number cannot go to a new one meanwhile.
    let cgroup = match child.try_wait() {
        Ok(None) => ember_in(child.id() as i32).and_then(|pid| {
            let held = std::fs::File::open(format!("/proc/{pid}/ns/pid")).ok()?;
            Some((ember_cgroup(pid)?, held))
        }),
        _ => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Some((cgroup, _held)) = cgroup {
        remove_cgroup(&cgroup);
    }
}

/// A cgroup of the test's own (next to the test process's), removed with everything
/// below it when dropped: embers started in it with [`Ember::start_in_cgroup`] see no
/// other test's embers, and none sees theirs.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let parent = cgroup_dir_of(std::process::id() as i32).expect("a cgroup2 hierarchy");
        // Not of the shape ember-<number>-<number>: no ember takes it for a stale one.
        let dir = parent.join(format!("ember-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).expect("create a test cgroup");
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Whatever a failed test left in it goes first (cgroup.kill: Linux 5.14).
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        remove_cgroup(&self.0);
    }
}

/// The host pid of the ember process at or below `pid` (unshare, a shell, ember itself).
pub fn ember_in(pid: i32) -> Option<i32> {
    let mut look = vec![pid];
    let mut seen = 0;
    while let Some(p) = look.pop() {
        // By name: a rebuilt binary shows as "ember (deleted)".
        let exe = std::fs::read_link(format!("/proc/{p}/exe")).ok();
        if exe.is_some_and(|e| {
            e.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ember"))
        }) {
            return Some(p);
        }
        seen += 1;
        if seen > 100 {
            break;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        look.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    None
}

/// The cgroup2 directory a process is in: its "0::" line of /proc/PID/cgroup under the
/// cgroup2 mount (on a hybrid host that is /sys/fs/cgroup/unified, not /sys/fs/cgroup).
pub fn cgroup_dir_of(pid: i32) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, point) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        Some((fields.get(3)?.to_string(), PathBuf::from(fields.get(4)?)))
    })?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let own = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let relative = own
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(own)
        .trim_start_matches('/');
    Some(point.join(relative))
}

/// The `ember-<pid namespace>-<pid>` directory that the running ember with host pid
/// `pid` makes for its services (see src/supervisor/cgroup.rs).
pub fn ember_cgroup(pid: i32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let namespace = std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?.ino();
    // NSpid lists the pid in each namespace, ember's own last.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let inner = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .to_owned();
    let dir = format!("ember-{namespace}-{inner}");
    let at = cgroup_dir_of(pid)?;
    // An ember alone in its cgroup, where there are controllers to pass on, moves itself
    // into `.ember` of its directory (src/supervisor/cgroup.rs, make_room).
    if at.ends_with(Path::new(&dir).join(".ember")) {
        return at.parent().map(Path::to_path_buf);
    }
    Some(at.join(dir))
}

/// Removes the cgroup a killed ember left, once the processes in it are gone (the
/// kernel ends a namespace's processes with its PID 1, not at once): rmdir only, deepest
/// first; what still has processes stays.
pub fn remove_cgroup(path: &Path) {
    if !path.exists() {
        return;
    }
    let populated = || {
        std::fs::read_to_string(path.join("cgroup.events"))
            .is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
    };
    wait_for(Duration::from_secs(5), || !populated());
    fn rmdir_tree(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    rmdir_tree(path);
}

/// Whether something listens on the Unix socket `path`. Its file alone says less: a
/// server binds (the file appears) before it listens, and a client that connects in
/// between is refused; a CPU hog stretches that moment enough to hit it.
pub fn listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Polls `check` until it holds (true) or `timeout`, [`scaled`], has passed (false).
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + scaled(timeout);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Host pids of `sleep` processes whose arguments contain `marker` (a unique number).
pub fn pids_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline
            .split(|b| *b == 0)
            .next()
            .unwrap_or_default()
            .to_vec();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if String::from_utf8_lossy(&argv0).ends_with("sleep") && cmdline.contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Host pids of the zombie children of `parent`.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    // Unreadable would mean the check checks nothing: fail instead.
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_else(|e| panic!("cannot read the children of {parent}: {e}"));
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Lines of a file the services append to.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A seccomp program that makes each of `syscalls` fail with EPERM and allows the rest.
fn refusing_filter(syscalls: &[i64]) -> Vec<nix::libc::sock_filter> {
    use nix::libc::{
        sock_filter, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, EPERM,
        SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO,
    };
    let statement = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // The system call's number: the first field of struct seccomp_data.
    let mut program = vec![statement(BPF_LD | BPF_W | BPF_ABS, 0)];
    for &nr in syscalls {
        program.push(sock_filter {
            code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: nr as u32,
        });
        program.push(statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM as u32));
    }
    program.push(statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    program
}
