//! `ember ctl reexec` on a real kernel: ember as the machine's PID 1 under qemu (x86_64,
//! tests/qemu/boot.sh) with the guest tests/qemu/guest/reexec.toml, which hands twenty
//! services and a crash-looper to a second binary, then powers off. The console log is
//! the verdict: the same pids before and after, PID 1's executable the second binary,
//! the crash-looper still restarted and counted, no zombie, a clean power-off (a PID 1
//! that died would panic the kernel). Needs root; EMBER_SKIP_QEMU=1 skips.

mod common;

use common::script::{run_script, tail};
use std::time::Duration;

#[test]
fn a_machines_init_hands_every_service_to_a_second_binary() {
    if std::env::var_os("EMBER_SKIP_QEMU").is_some_and(|v| v == "1") {
        println!("skipped: EMBER_SKIP_QEMU=1");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to install qemu and download the kernel (CI runs as root)");
        return;
    }
    run_script("tests/qemu/setup.sh", &["x86_64"], &[]).unwrap_or_else(|e| panic!("{e}"));
    let console = common::script::repo().join("target/qemu/x86_64/reexec/console.log");
    let _ = std::fs::remove_file(&console);
    let limit = common::scaled(Duration::from_secs(180)).as_secs();
    let env = [
        ("EMBER_QEMU_NAME", "reexec".to_owned()),
        (
            "EMBER_QEMU_GUEST",
            "tests/qemu/guest/reexec.toml".to_owned(),
        ),
        ("EMBER_QEMU_TIMEOUT", limit.to_string()),
    ];
    let outcome = run_script("tests/qemu/boot.sh", &["x86_64"], &env);
    let log = std::fs::read(&console)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    if let Err(e) = outcome {
        panic!("{e}\nthe console log ends with:\n{}", tail(&log, 60));
    }
    let problems = verdict(&log);
    assert!(
        problems.is_empty(),
        "the reexec did not go as it should:\n  - {}\nthe console log ends with:\n{}",
        problems.join("\n  - "),
        tail(&log, 80)
    );
}

/// What the guest printed, after `prefix` on its line.
fn after<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.trim()))
}

fn verdict(log: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !log.contains("took over") {
        problems.push("`ember ctl reexec` did not say the new binary took over".to_owned());
    }
    match after(log, "reexec exe: ") {
        Some("/run/ember-second") => {}
        other => problems.push(format!("PID 1's executable after the reexec: {other:?}")),
    }
    let pids = |what: &str| -> Vec<u32> {
        after(log, what)
            .map(|p| {
                p.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after_pids) = (pids("reexec before: pids"), pids("reexec after: pids"));
    if before.len() != 20 || before != after_pids {
        problems.push(format!("pids before {before:?}, after {after_pids:?}"));
    }
    let restarts = after(log, "reexec crasher restarts: ").map(|r| {
        r.split_whitespace()
            .filter_map(|n| n.parse::<u64>().ok())
            .collect::<Vec<_>>()
    });
    match restarts.as_deref() {
        Some([before, after]) if after > before => {}
        other => problems.push(format!("the crash-looper's restarts: {other:?}")),
    }
    match after(log, "reexec zombies: ") {
        Some("0") => {}
        other => problems.push(format!("zombies: {other:?}")),
    }
    if !log.contains("reboot: Power down") {
        problems.push("no clean power-off (reboot: Power down)".to_owned());
    }
    if log.contains("Kernel panic") {
        problems.push("a kernel panic".to_owned());
    }
    problems
}
