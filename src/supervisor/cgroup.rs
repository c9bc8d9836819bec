//! One cgroup (v2) per service: a stop that no grandchild escapes, whatever it does with
//! sessions and process groups; memory, task and CPU limits; OOM kills told apart from
//! other SIGKILLs; and the figures `status` shows.
//!
//! The hierarchy is found in /proc/self/mountinfo, never assumed at /sys/fs/cgroup: a
//! hybrid host keeps its v1 controllers there and a controller-less cgroup2 at
//! /sys/fs/cgroup/unified, where cgroup.procs and cgroup.kill work all the same.
//!
//! Layout: `<ember's cgroup>/ember/<service>` when ember is PID 1 of the machine (so
//! `/sys/fs/cgroup/ember/web` on a board); any other ember (a container's PID 1, a
//! supervisor under another init, a test) is one of possibly many in the same cgroup,
//! so its directory is `ember-<pid namespace>-<pid>` instead, and it removes it on exit.
//!
//! An ember that is SIGKILLed cannot remove its directory. The next ember that starts in
//! the same cgroup removes those of dead embers ([`sweep_stale`]): only when it can tell
//! that the owner is gone, and only directories that are empty.

use crate::config::limits::Limits;
use crate::pid1::mounts::{parse_mountinfo, MountEntry};
use crate::pid1::Role;
use nix::sys::signal::Signal;
use std::fs::{self, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::model::Pid;
use super::sig::AnySignal;

/// The controllers ember enables for its services, when the hierarchy has them.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// ember's part of the cgroup2 hierarchy.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
    /// The controllers services get (a subset of [`CONTROLLERS`]).
    controllers: Vec<&'static str>,
    /// Whether ember made `base` and removes it when it exits.
    owned: bool,
    /// ember's own cgroup, when ember left it for [`SELF_LEAF`] (see [`make_room`]): it
    /// goes back there before it removes `base`.
    own: Option<PathBuf>,
    /// The controllers ember enabled in its own cgroup's subtree_control.
    enabled_in_own: Vec<&'static str>,
}

/// Where ember moves itself when it is alone in a cgroup that is not the root (see
/// [`make_room`]): a leaf in its directory, beside its services' cgroups (no service
/// name starts with a dot).
const SELF_LEAF: &str = ".ember";

/// Makes ember's own cgroup able to pass controllers on to `base`: a cgroup other than
/// the root cannot have processes and controllers for its children at once. A domain
/// controller is refused (EBUSY), and a threaded one (pids, cpu) is taken, turning the
/// cgroup into a thread root whose domain children (`base`) can take no process at all
/// (EOPNOTSUPP): every service failed to start. So ember, alone there (a container's
/// PID 1, an ember under ember), moves itself into a leaf of `base`, as systemd moves
/// itself into init.scope; beside other processes, which are not ember's to move, it
/// enables nothing. `Ok(true)`: ember moved.
fn make_room(own: &Path, base: &Path) -> Result<bool, String> {
    // The root cgroup alone has no cgroup.type, and is exempt.
    if !own.join("cgroup.type").exists() {
        return Ok(false);
    }
    let members = read_words(&own.join("cgroup.procs"));
    let me = std::process::id().to_string();
    match members.as_slice() {
        [] => Ok(false),
        [only] if *only == me => {
            let leaf = base.join(SELF_LEAF);
            let moved = match fs::create_dir(&leaf) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => fs::write(leaf.join("cgroup.procs"), &me),
            };
            moved.map(|()| true).map_err(|e| {
                format!("ember cannot move itself into {}: {e}", leaf.display())
            })
        }
        _ => Err(format!(
            "{} holds other processes than ember, and a cgroup with processes cannot pass controllers on",
            own.display()
        )),
    }
}

/// A service's cgroup, ready for its next process.
pub struct Prepared {
    pub path: PathBuf,
    /// The cgroup's directory (O_PATH): the child is created in it, or joins it between
    /// the clone and the exec (launch.rs).
    pub dir: OwnedFd,
    /// Limits that could not be applied, in words, for the log.
    pub warnings: Vec<String>,
    /// Made just now: its counters (OOM kills, CPU time) are all zero.
    pub made: bool,
    /// It was emptied with cgroup.kill and could not be made again yet (a killed process
    /// was still on its way out): the kernel would kill a process created in it.
    pub killed: bool,
}

impl Cgroups {
    /// Finds the cgroup2 hierarchy and makes ember's directory in it; `Err` says why
    /// services will be contained by their process group only.
    pub fn setup(role: Role) -> Result<Cgroups, String> {
        let mut own = own_cgroup_dir()?;
        // A reexec'd ember is still where it moved itself: its own cgroup is the one
        // above its directory.
        let resumed = own.file_name().is_some_and(|n| n == SELF_LEAF);
        if resumed {
            own = own
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or(own);
        }
        let (name, owned) = match role {
            Role::Machine => ("ember".to_owned(), false),
            _ => (instance_name(), true),
        };
        let base = own.join(&name);
        sweep_stale(&own, &name);
        match fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        // Controllers reach a child only through each parent's subtree_control.
        let available = read_words(&own.join("cgroup.controllers"));
        let before = read_words(&own.join("cgroup.subtree_control"));
        let wanted: Vec<&'static str> = CONTROLLERS
            .into_iter()
            .filter(|c| available.iter().any(|a| a == c) && !before.iter().any(|b| b == c))
            .collect();
        let mut moved = resumed;
        // What the ember before the reexec enabled there, with ember in it no one else could.
        let mut enabled_in_own: Vec<&'static str> = CONTROLLERS
            .into_iter()
            .filter(|c| resumed && before.iter().any(|b| b == c))
            .collect();
        if !wanted.is_empty() {
            match make_room(&own, &base) {
                Ok(left) => {
                    moved |= left;
                    for controller in wanted {
                        if fs::write(own.join("cgroup.subtree_control"), format!("+{controller}"))
                            .is_ok()
                        {
                            enabled_in_own.push(controller);
                        }
                    }
                }
                Err(why) => crate::log::warn!(
                    "no controllers for the services' cgroups (memory_max, pids_max and cpu_weight cannot apply): {why}"
                ),
            }
        }
        let mut controllers = Vec::new();
        let offered = read_words(&base.join("cgroup.controllers"));
        for controller in CONTROLLERS {
            if offered.iter().any(|c| c == controller)
                && fs::write(
                    base.join("cgroup.subtree_control"),
                    format!("+{controller}"),
                )
                .is_ok()
            {
                controllers.push(controller);
            }
        }
        Ok(Cgroups {
            own: moved.then_some(own),
            base,
            controllers,
            enabled_in_own,
            owned,
        })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn controllers(&self) -> &[&'static str] {
        &self.controllers
    }

    pub fn path(&self, service: &str) -> PathBuf {
        self.base.join(service)
    }

    /// Makes (or reuses) the service's cgroup and writes its limits: every file is
    /// written each time, so a limit a reload removed while it was stopped is lifted.
    /// `renew`: the cgroup was emptied with cgroup.kill, and is made again when it has
    /// emptied (see launch.rs: the kernel would kill a process created in it).
    pub fn prepare(&self, service: &str, limits: &Limits, renew: bool) -> Result<Prepared, String> {
        let path = self.path(service);
        // EBUSY while a killed process is still on its way out: then it is reused.
        let killed = renew && remove_tree(&path).is_err();
        let made = match fs::create_dir(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(format!("cannot create its cgroup {}: {e}", path.display())),
        };
        // No deeper than ember's walks go: a process in a cgroup it never looked at would
        // miss the stop's SIGTERM, and a directory left there would stay for good.
        let _ = write_existing(
            &path.join("cgroup.max.depth"),
            NESTING.to_string().as_bytes(),
        );
        let warnings = self.write_limits(&path, limits);
        let dir = open_dir(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Prepared {
            path,
            dir,
            warnings,
            made,
            killed,
        })
    }

    /// Writes the limits of a service's cgroup again (a reload changed them): the
    /// processes in it keep running under the new ones. What could not be applied, in
    /// words.
    pub fn apply(&self, service: &str, limits: &Limits) -> Vec<String> {
        self.write_limits(&self.path(service), limits)
    }

    /// Writes every limit file of the cgroup at `path`, "max" (or the default) for a limit
    /// that is not set; says what could not be applied.
    fn write_limits(&self, path: &Path, limits: &Limits) -> Vec<String> {
        let mut warnings = Vec::new();
        let has = |c: &str| self.controllers.contains(&c);
        let mut write = |file: &str, value: String, key: &str, set: bool| {
            if let Err(e) = fs::write(path.join(file), &value) {
                if set {
                    warnings.push(format!(
                        "{key} not applied: cannot write {value} to {file}: {e}"
                    ));
                }
            }
        };
        if has("memory") {
            let max = limits.memory_max.map(|m| m.cgroup_text());
            let set = max.is_some();
            write(
                "memory.max",
                max.unwrap_or_else(|| "max".into()),
                "memory_max",
                set,
            );
            // An OOM kill takes the whole service, not one process of it: what is left of
            // a service that lost a process at random is rarely worth keeping.
            write("memory.oom.group", "1".into(), "memory_max", false);
        }
        if has("pids") {
            let max = limits.pids_max.map(|m| m.cgroup_text());
            let set = max.is_some();
            write(
                "pids.max",
                max.unwrap_or_else(|| "max".into()),
                "pids_max",
                set,
            );
        }
        if has("cpu") {
            let weight = limits.cpu_weight;
            write(
                "cpu.weight",
                weight.unwrap_or(100).to_string(),
                "cpu_weight",
                weight.is_some(),
            );
        }
        for (key, set, controller) in [
            ("memory_max", limits.memory_max.is_some(), "memory"),
            ("pids_max", limits.pids_max.is_some(), "pids"),
            ("cpu_weight", limits.cpu_weight.is_some(), "cpu"),
        ] {
            if set && !has(controller) {
                warnings.push(format!(
                    "{key} not applied: the {controller} controller is not available under {}",
                    self.base.display()
                ));
            }
        }
        warnings
    }

    /// Moves ember back into its own cgroup, when it left it (see [`make_room`]), so that
    /// its directory can go: first the controllers go, as a cgroup with controllers for
    /// its children takes no process.
    fn go_home(&self) {
        let Some(own) = &self.own else {
            return;
        };
        let disable = |dir: &Path, controllers: &[&str]| {
            for controller in controllers {
                let _ = fs::write(dir.join("cgroup.subtree_control"), format!("-{controller}"));
            }
        };
        disable(&self.base, &self.controllers);
        disable(own, &self.enabled_in_own);
        if let Err(e) = fs::write(own.join("cgroup.procs"), std::process::id().to_string()) {
            crate::log::warn!("cannot move ember back into {}: {e}", own.display());
        }
    }

    /// Removes a service's cgroup, and those it made below it, once empty (a reload
    /// removed the service).
    pub fn remove(&self, service: &str) {
        let _ = remove_tree(&self.path(service));
    }

    /// Removes ember's directory, when ember made it, with every service's cgroup that
    /// has emptied. Called once every service has stopped.
    pub fn teardown(&self) {
        if !self.owned {
            return;
        }
        self.go_home();
        // The last processes were just sent SIGKILL: give them a moment to be gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while populated(&self.base) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if let Ok(entries) = fs::read_dir(&self.base) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = remove_tree(&entry.path());
                }
            }
        }
        if let Err(e) = fs::remove_dir(&self.base) {
            crate::log::warn!("cannot remove {}: {e}", self.base.display());
        }
    }
}

/// What [`signal_all`] reached.
pub struct Signalled {
    /// The processes it found in the cgroup and below it (see [`procs`]).
    pub members: Vec<Pid>,
    /// SIGKILL went to processes of the cgroup.
    pub killed: bool,
}

/// Sends `signal` to every process in the cgroup and below it; SIGKILL goes through
/// cgroup.kill, which also stops a fork racing the kill.
pub fn signal_all(path: &Path, signal: impl Into<AnySignal>) -> Signalled {
    let signal = signal.into();
    let members = procs(path);
    let kill_signal = signal.is(Signal::SIGKILL);
    // Whenever any process is there, not only when the walk found one: cgroup.kill takes
    // every cgroup below, however deep (a root service may lift its cgroup.max.depth).
    if kill_signal
        && (!members.is_empty() || populated(path))
        && write_existing(&path.join("cgroup.kill"), b"1")
    {
        return Signalled {
            members,
            killed: true,
        };
    }
    if members.is_empty() {
        return Signalled {
            members,
            killed: false,
        };
    }
    // Without cgroup.kill (before Linux 5.14) a process forked meanwhile is caught by
    // going round again, a few times.
    let rounds = if kill_signal { 4 } else { 1 };
    let mut pids = members.clone();
    for round in 1..=rounds {
        for pid in &pids {
            let _ = signal.to(*pid);
        }
        if round == rounds {
            break;
        }
        pids = procs(path);
        if pids.is_empty() {
            break;
        }
    }
    Signalled {
        members,
        killed: kill_signal,
    }
}

/// Writes to a file that must already be there (a cgroup's interface file): never
/// creates one where the kernel has none.
fn write_existing(path: &Path, data: &[u8]) -> bool {
    use std::io::Write;
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .is_ok()
}

/// The processes in a cgroup and in every cgroup below it: a service may make cgroups of
/// its own in its cgroup (a container runtime, an ember under ember), and what runs there
/// is the service's too. Its own members first.
pub fn procs(path: &Path) -> Vec<Pid> {
    let mut pids = Vec::new();
    procs_below(path, 0, &mut pids);
    pids
}

fn procs_below(path: &Path, depth: usize, pids: &mut Vec<Pid>) {
    if let Ok(text) = fs::read_to_string(path.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<Pid>().ok()));
    }
    // Bounded, as remove_tree is: PID 1's stack, whatever a service nested.
    if depth >= MAX_DEPTH {
        return;
    }
    for entry in fs::read_dir(path).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            procs_below(&entry.path(), depth + 1, pids);
        }
    }
}

/// Whether any process is left in the cgroup or below it (cgroup.events).
fn populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// How many times the kernel's OOM killer has killed in this cgroup (memory.events).
pub fn oom_kills(path: &Path) -> u64 {
    fs::read_to_string(path.join("memory.events"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A cgroup's directory as a child is created in it (an O_PATH fd, close-on-exec).
pub fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// ember's own cgroup directory in the cgroup2 hierarchy.
pub(super) fn own_cgroup_dir() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (root, point) =
        cgroup2_mount(&parse_mountinfo(&mountinfo)).ok_or("cgroup2 is not mounted")?;
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = unified_path(&cgroups).ok_or("/proc/self/cgroup has no cgroup2 (\"0::\") line")?;
    Ok(join_under(&point, &root, &own))
}

/// The root and mount point of the first cgroup2 mount.
fn cgroup2_mount(mounts: &[MountEntry]) -> Option<(String, PathBuf)> {
    mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| (m.root.clone(), m.point.clone()))
}

/// The v2 path in /proc/self/cgroup text: the line "0::/path".
fn unified_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)").to_owned())
}

/// `own` is relative to the hierarchy's root; the mount shows the hierarchy from `root`.
fn join_under(point: &Path, root: &str, own: &str) -> PathBuf {
    let relative = own
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(own)
        .trim_start_matches('/');
    if relative.is_empty() {
        point.to_path_buf()
    } else {
        point.join(relative)
    }
}

/// A name no other ember in the same cgroup has: the PID namespace tells apart the
/// PID 1s of several containers or tests, the pid the embers within one.
fn instance_name() -> String {
    let namespace = fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0);
    format!("ember-{namespace}-{}", std::process::id())
}

/// An `ember-<pid namespace>-<pid>` directory: whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instance {
    namespace: u64,
    pid: i32,
}

impl Instance {
    /// Only the exact shape [`instance_name`] makes: digits, no sign, a pid above 0.
    fn parse(name: &str) -> Option<Instance> {
        let (namespace, pid) = name.strip_prefix("ember-")?.split_once('-')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(namespace) || !digits(pid) {
            return None;
        }
        let instance = Instance {
            namespace: namespace.parse().ok()?,
            pid: pid.parse().ok()?,
        };
        (instance.pid > 0).then_some(instance)
    }
}

/// What /proc shows about the processes and PID namespaces ember can see.
#[derive(Debug, Default)]
struct ProcView {
    /// ember's own PID namespace.
    own_namespace: u64,
    /// /proc is the one of ember's namespace, so its pids are ember's pids.
    own_proc: bool,
    /// ember is in the initial PID namespace with its own /proc: every process of every
    /// namespace is listed, so a namespace no process is in has no process at all.
    sees_all: bool,
    pids: std::collections::HashSet<i32>,
    /// Every PID namespace some process is in (or will fork its children into).
    namespaces: std::collections::HashSet<u64>,
}

/// The initial PID namespace's inode: a kernel constant (PROC_PID_INIT_INO).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

impl ProcView {
    fn read() -> ProcView {
        let own_namespace = namespace_of(Path::new("/proc/self/ns/pid")).unwrap_or(0);
        let own_proc = fs::read_link("/proc/self")
            .is_ok_and(|p| p.as_os_str() == std::process::id().to_string().as_str());
        let mut view = ProcView {
            own_namespace,
            own_proc,
            sees_all: own_proc && own_namespace == INITIAL_PID_NAMESPACE,
            ..ProcView::default()
        };
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            view.pids.insert(pid);
            let ns = entry.path().join("ns");
            // pid_for_children: between unshare(CLONE_NEWPID) and its fork, a namespace
            // exists that no process is in yet.
            for link in ["pid", "pid_for_children"] {
                if let Some(n) = namespace_of(&ns.join(link)) {
                    view.namespaces.insert(n);
                }
            }
        }
        view
    }

    /// Whether the ember that made `instance`'s directory may still be running. `Ok`
    /// says why it is gone; `Err` why it is (or may be) alive.
    fn judge(&self, instance: Instance) -> Result<String, String> {
        if instance.namespace == self.own_namespace {
            if !self.own_proc {
                return Err("/proc is not this PID namespace's: its pids cannot be checked".into());
            }
            // A process with that pid may be another than the ember (pids are reused):
            // then the directory is left, which is the safe mistake.
            return if self.pids.contains(&instance.pid) {
                Err(format!("pid {} is running", instance.pid))
            } else {
                Ok(format!("no process {} in this PID namespace", instance.pid))
            };
        }
        if self.namespaces.contains(&instance.namespace) {
            return Err("its PID namespace has processes".into());
        }
        if self.sees_all {
            Ok("its PID namespace has no process left".into())
        } else {
            // A sibling namespace's processes are not listed here: it may be alive.
            Err("its PID namespace cannot be seen from here".into())
        }
    }
}

/// The inode of a /proc/PID/ns/* link's namespace, from its text "pid:[4026531836]".
fn namespace_of(link: &Path) -> Option<u64> {
    let target = fs::read_link(link).ok()?;
    target
        .to_str()?
        .split_once('[')?
        .1
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// How many removals a sweep names one by one before it only counts them.
const NAMED_REMOVALS: usize = 10;

/// Removes the `ember-<pid namespace>-<pid>` directories in `parent` (other than `ours`)
/// that SIGKILLed embers left behind. A directory is removed only when its owner is
/// known to be gone: its PID namespace has no process left (seen from the initial
/// namespace, where every process is listed), or, in ember's own namespace, no process
/// has its pid. When that cannot be told (ember is itself in a child namespace and
/// cannot see its siblings), it is left alone: a live ember's cgroup is never touched.
///
/// Nothing is killed. A dead namespace has no processes (the kernel ended them all with
/// its PID 1); a directory that is still populated holds someone else's processes (a
/// dead supervisor's orphaned services, still running in a live namespace), and a
/// process ember did not start is not ember's to end: it is left, with a warning. Only
/// empty directories are removed (rmdir, deepest first), so a service cgroup that a
/// process is in cannot go.
pub fn sweep_stale(parent: &Path, ours: &str) -> Vec<PathBuf> {
    let stale: Vec<(PathBuf, Instance)> = fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let instance = Instance::parse(&name)?;
            (name != ours).then(|| (e.path(), instance))
        })
        .collect();
    if stale.is_empty() {
        return Vec::new();
    }
    let view = ProcView::read();
    let mut removed = Vec::new();
    for (path, instance) in stale {
        let why = match view.judge(instance) {
            Ok(why) => why,
            Err(alive) => {
                crate::log::debug!(
                    "cgroup {} left alone: its ember may be running ({alive})",
                    path.display()
                );
                continue;
            }
        };
        // A namespace's inode is reused once it is freed: an ember that started since
        // the look above, in a new namespace with the same number, would take this very
        // directory for its own. Look again, just before removing.
        if let Err(alive) = ProcView::read().judge(instance) {
            crate::log::debug!("cgroup {} left alone: {alive}", path.display());
            continue;
        }
        match remove_tree(&path) {
            Ok(()) => {
                if removed.len() < NAMED_REMOVALS {
                    crate::log::info!(
                        "removed the stale cgroup {} of an ember that is gone ({why})",
                        path.display()
                    );
                }
                removed.push(path);
            }
            Err(e) if populated(&path) => crate::log::warn!(
                "the stale cgroup {} of an ember that is gone ({why}) still has processes; left in place ({e})",
                path.display()
            ),
            Err(e) => crate::log::warn!(
                "cannot remove the stale cgroup {} of an ember that is gone ({why}): {e}",
                path.display()
            ),
        }
    }
    if removed.len() > NAMED_REMOVALS {
        crate::log::info!(
            "removed {} stale cgroups in all under {}",
            removed.len(),
            parent.display()
        );
    }
    removed
}

/// rmdir of a cgroup and every cgroup below it, deepest first. Stops at the first that
/// cannot go (one with processes, EBUSY): its parents cannot go either.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    remove_below(path, 0)
}

/// How deep a service may nest cgroups below its own (its cgroup.max.depth).
const NESTING: usize = 32;

/// How deep [`remove_tree`] and [`procs`] go: a bound on PID 1's stack, whatever a
/// service nested. One more than [`NESTING`]: a walk from ember's directory passes the
/// service's cgroup first.
const MAX_DEPTH: usize = NESTING + 1;

fn remove_below(path: &Path, depth: usize) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "cgroups nested deeper than {MAX_DEPTH} levels"
        )));
    }
    for entry in fs::read_dir(path)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_below(&entry.path(), depth + 1)?;
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_hybrid_hosts_cgroup2() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let (root, point) = cgroup2_mount(&parse_mountinfo(mountinfo)).unwrap();
        assert_eq!(point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            join_under(&point, &root, "/"),
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            join_under(&point, &root, "/system.slice/x.service"),
            Path::new("/sys/fs/cgroup/unified/system.slice/x.service")
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_joined_below_its_root() {
        let mountinfo = "50 1 0:40 /lxc/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let (root, point) = cgroup2_mount(&parse_mountinfo(mountinfo)).unwrap();
        assert_eq!(
            join_under(&point, &root, "/lxc/c1/app"),
            Path::new("/sys/fs/cgroup/app")
        );
        assert_eq!(
            cgroup2_mount(&parse_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n")),
            None
        );
    }

    #[test]
    fn without_cgroup_kill_every_listed_process_is_killed() {
        // A directory shaped like a cgroup of a kernel before 5.14: cgroup.procs, no
        // cgroup.kill. signal_all must fall back to killing each pid it lists.
        let dir = std::env::temp_dir().join(format!("ember-cg-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("7940051")
            .spawn()
            .unwrap();
        fs::write(dir.join("cgroup.procs"), format!("{}\n", child.id())).unwrap();
        assert!(!signal_all(&dir, Signal::SIGKILL).members.is_empty());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(nix::libc::SIGKILL));
        assert!(
            !dir.join("cgroup.kill").exists(),
            "it must not create cgroup.kill"
        );
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        assert!(
            signal_all(&dir, Signal::SIGTERM).members.is_empty(),
            "an empty cgroup has no one to signal"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_exact_instance_shape_is_an_ember_directory() {
        assert_eq!(
            Instance::parse("ember-4026532176-1"),
            Some(Instance {
                namespace: 4026532176,
                pid: 1
            })
        );
        for name in [
            "ember",
            "ember-",
            "ember-1",
            "ember-1-",
            "ember--1",
            "ember-+1-2",
            "ember-1-+2",
            "ember-1-0",
            "ember-1-2-3",
            "ember-x-2",
            "embers-1-2",
            "ember-1-99999999999",
        ] {
            assert_eq!(Instance::parse(name), None, "{name}");
        }
    }

    fn view(own_namespace: u64, sees_all: bool, pids: &[i32], namespaces: &[u64]) -> ProcView {
        ProcView {
            own_namespace,
            own_proc: true,
            sees_all,
            pids: pids.iter().copied().collect(),
            namespaces: namespaces.iter().copied().collect(),
        }
    }

    #[test]
    fn a_directory_is_stale_only_when_its_owner_is_known_to_be_gone() {
        let at = |namespace, pid| Instance { namespace, pid };
        // In the initial namespace every process is listed.
        let host = view(
            INITIAL_PID_NAMESPACE,
            true,
            &[1, 40, 41],
            &[INITIAL_PID_NAMESPACE, 7],
        );
        assert!(host.judge(at(7, 1)).is_err(), "its namespace has processes");
        assert!(host.judge(at(8, 1)).is_ok(), "no process is in namespace 8");
        assert!(
            host.judge(at(INITIAL_PID_NAMESPACE, 40)).is_err(),
            "pid 40 runs"
        );
        assert!(
            host.judge(at(INITIAL_PID_NAMESPACE, 42)).is_ok(),
            "pid 42 is gone"
        );
        // In a child namespace, siblings are invisible: never judged gone.
        let child = view(9, false, &[1, 2], &[9]);
        assert!(child.judge(at(8, 1)).is_err());
        assert!(child.judge(at(9, 2)).is_err());
        assert!(
            child.judge(at(9, 3)).is_ok(),
            "its own namespace it can see"
        );
        // A /proc of another namespace: its pids are not ember's pids.
        let foreign = ProcView {
            own_proc: false,
            ..view(9, false, &[1], &[9])
        };
        assert!(foreign.judge(at(9, 3)).is_err());
    }

    #[test]
    fn reads_a_namespace_link() {
        let own = namespace_of(Path::new("/proc/self/ns/pid")).unwrap();
        let meta = fs::metadata("/proc/self/ns/pid").unwrap().ino();
        assert_eq!(own, meta);
    }

    #[test]
    fn reads_the_unified_line() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/user.slice/a (deleted)\n";
        assert_eq!(unified_path(text).as_deref(), Some("/user.slice/a"));
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }
}
