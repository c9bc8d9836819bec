//! Early boot, as PID 1: the mounts every service expects, the hostname, and Ctrl-Alt-Del
//! as a signal (the console on stdin/out/err is main's first step: pid1/console.rs). Each step is quick and none waits on a
//! service; a step that fails is logged and the boot goes on.

use super::mounts::ensure;
use super::Role;
use nix::mount::MsFlags;

/// /proc first: everything else (mountinfo, role detection) reads it.
pub fn mount_proc() -> Result<bool, String> {
    if std::path::Path::new("/proc/self/stat").exists() {
        return Ok(false);
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    std::fs::create_dir_all("/proc").map_err(|e| format!("cannot create /proc: {e}"))?;
    nix::mount::mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
        .map_err(|e| format!("cannot mount proc on /proc: {e}"))?;
    Ok(true)
}

/// Runs the early-boot steps for `role`; returns lines to log once logging is up.
pub fn boot(role: Role, hostname: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    if role == Role::Supervisor {
        return notes;
    }
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mounts: [(&str, &str, MsFlags, &str); 6] = [
        ("sysfs", "/sys", nosuid_nodev | MsFlags::MS_NOEXEC, ""),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "gid=5,mode=620,ptmxmode=000",
        ),
        ("tmpfs", "/dev/shm", nosuid_nodev, "mode=1777"),
        ("tmpfs", "/run", nosuid_nodev, "mode=0755"),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            nosuid_nodev | MsFlags::MS_NOEXEC,
            "",
        ),
    ];
    for (fstype, point, flags, data) in mounts {
        if fstype == "cgroup2" && !kernel_has("cgroup2") {
            notes.push("the kernel has no cgroup2; not mounting /sys/fs/cgroup".into());
            continue;
        }
        match ensure(fstype, point, flags, data) {
            Ok(true) => notes.push(format!("mounted {fstype} on {point}")),
            Ok(false) => {}
            Err(e) => notes.push(e),
        }
    }
    if role == Role::Machine {
        notes.extend(set_hostname(hostname));
        // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot.
        if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
            notes.push(format!("cannot route Ctrl-Alt-Del to ember: {e}"));
        }
        // ember logs to /dev/kmsg: lift the kernel's rate limit on userspace writes.
        let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
        // PID 1 is the last process the OOM killer should pick.
        let _ = std::fs::write("/proc/self/oom_score_adj", "-1000\n");
    }
    notes
}

fn kernel_has(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)))
        .unwrap_or(false)
}

fn set_hostname(configured: Option<&str>) -> Vec<String> {
    let from_file = std::fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()));
    let name = configured
        .map(str::to_owned)
        .or(from_file)
        .filter(|n| !n.is_empty());
    match name {
        None => vec![],
        Some(name) => match nix::unistd::sethostname(&name) {
            Ok(()) => vec![format!("hostname set to {name}")],
            Err(e) => vec![format!("cannot set the hostname to {name}: {e}")],
        },
    }
}
