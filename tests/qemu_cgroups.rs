//! Containment where the controllers are: a Debian x86_64 kernel under qemu (TCG) boots
//! the guest tests/qemu/guest/cgroups.toml, in which ember mounts a pure cgroup2 and
//! enables memory, pids and cpu (the build machines' hybrid cgroup2 has none of them).
//! One boot, read by each test; the console log is the verdict. Needs root;
//! EMBER_SKIP_QEMU=1 skips.

mod common;

use common::script::{repo, run_script, tail};

use std::sync::OnceLock;
use std::time::Duration;

/// An ember under ember (a supervisor alone in its service's cgroup, as the PID 1 of a
/// container is alone in the container's cgroup) enabled what controllers its cgroup took
/// while it was in it: memory was refused (EBUSY: a cgroup with processes cannot pass
/// controllers on), and pids and cpu, threaded controllers, were taken, which made its
/// cgroup a thread root whose domain children take no process. Every service it had
/// failed to start ("cannot join its cgroup: Not supported (os error 95)"), and a
/// memory_max would not have applied anyway. A reexec keeps it where it is, and once it
/// has stopped, nothing of it is left.
#[test]
fn an_ember_alone_in_its_cgroup_gets_controllers_for_its_services() {
    let Some(log) = console() else {
        return;
    };
    let problems = [
        "report: cgroups: iglutton ● iglutton - failed (oom-kill)",
        "report: cgroups: inner runs in /ember/inner/ember-",
        "report: cgroups: after inner's reexec, its leaf holds 1 process",
        "report: cgroups: left in inner's cgroup: []",
    ]
    .iter()
    .filter(|line| !log.contains(*line))
    .map(|line| format!("no line with {line:?}"))
    .chain(
        // Once before the inner ember's reexec, once after.
        (log.matches("ERROR iglutton: failed (oom-kill)").count() < 2)
            .then(|| "iglutton was not OOM-killed again after the reexec".to_owned()),
    )
    .chain(
        log.lines()
            .filter(|l| l.contains("not applied") || l.contains("cannot join its cgroup"))
            .map(|l| format!("a limit was not applied: {l}")),
    )
    .collect();
    report(log, problems);
}

/// A reload that changes a service's memory_max, pids_max and cpu_weight writes them to
/// its cgroup in place, as systemd applies MemoryMax= and the like to a running unit; it
/// restarted the service, as for a change of its command.
#[test]
fn a_reload_applies_new_cgroup_limits_without_a_restart() {
    let Some(log) = console() else {
        return;
    };
    let problems = [
        "report: reload: updated   resized (memory_max, cpu_weight, pids_max changed; applied without a restart)",
        "report: cgroups: resized: the same pid, memory.max 33554432, pids.max 16, cpu.weight 200",
    ]
    .iter()
    .filter(|line| !log.contains(*line))
    .map(|line| format!("no line with {line:?}"))
    .collect();
    report(log, problems);
}

/// The console log of the boot, once for every test; None when skipped.
fn console() -> Option<&'static str> {
    static LOG: OnceLock<Option<String>> = OnceLock::new();
    LOG.get_or_init(boot).as_deref()
}

fn boot() -> Option<String> {
    if std::env::var_os("EMBER_SKIP_QEMU").is_some_and(|v| v == "1") {
        println!("skipped: EMBER_SKIP_QEMU=1");
        return None;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to install qemu and download the kernel (CI runs as root)");
        return None;
    }
    run_script("tests/qemu/setup.sh", &["x86_64"], &[]).unwrap_or_else(|e| panic!("{e}"));
    let name = "cgroups";
    let console = repo()
        .join("target/qemu/x86_64")
        .join(name)
        .join("console.log");
    let _ = std::fs::remove_file(&console);
    let limit = common::scaled(Duration::from_secs(180)).as_secs();
    let env = [
        ("EMBER_QEMU_NAME", name.to_owned()),
        (
            "EMBER_QEMU_GUEST",
            "tests/qemu/guest/cgroups.toml".to_owned(),
        ),
        ("EMBER_QEMU_TIMEOUT", limit.to_string()),
    ];
    let outcome = run_script("tests/qemu/boot.sh", &["x86_64"], &env);
    // Without the serial line's CRs.
    let log = std::fs::read(&console)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    if let Err(e) = outcome {
        panic!(
            "{e}\nthe console log ({}) ends with:\n{}",
            console.display(),
            tail(&log, 60)
        );
    }
    println!("console log {}", console.display());
    Some(log)
}

fn report(log: &str, problems: Vec<String>) {
    if !problems.is_empty() {
        panic!(
            "the boot did not go as it should:\n  - {}\nthe console log ends with:\n{}",
            problems.join("\n  - "),
            tail(log, 80)
        );
    }
}
