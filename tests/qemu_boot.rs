//! ember boots a real Linux kernel as PID 1: a Debian kernel under qemu (TCG), for x86_64
//! and aarch64, with an initramfs in which ember is /sbin/init and busybox the rest
//! (tests/qemu/). The guest (tests/qemu/guest/ember.toml) starts services with
//! dependencies and readiness, a crash loop, orphans, then counts zombies, runs `ember
//! analyze` and powers off through `ember ctl poweroff`.
//!
//! qemu exits 0 on a power-off and on a kernel panic alike: the console log is the
//! verdict. Needs root (apt-get, dpkg): as another user, or with EMBER_SKIP_QEMU=1, each
//! test says why it skipped and passes.

mod common;

use common::script::{repo, run_script, tail};
use std::path::Path;
use std::sync::Mutex;

/// One boot at a time: setup.sh uses apt and dpkg, and the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn boots_x86_64() {
    boot_and_check("x86_64");
}

#[test]
fn boots_aarch64() {
    boot_and_check("aarch64");
}

/// The verdict itself, on a real console log (tests/qemu/sample-console.log, from an
/// x86_64 boot) and on broken copies of it: runs everywhere, root or not.
#[test]
fn verdict_accepts_a_good_boot_and_rejects_broken_ones() {
    let good = std::fs::read_to_string(repo().join("tests/qemu/sample-console.log")).unwrap();
    assert_eq!(verdict(&Console::new(&good)), Vec::<String>::new());

    let broken = |what: &str, text: String, expect: &str| {
        let problems = verdict(&Console::new(&text));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: want a problem containing {expect:?}, got {problems:?}"
        );
    };
    let panic = good.replace(
        "reboot: Power down",
        "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000",
    );
    broken(
        "a panic instead of a power-off",
        panic.clone(),
        "Power down",
    );
    broken("a panic instead of a power-off", panic, "a kernel panic");
    broken(
        "zombies",
        good.replace("zombies: 0", "zombies: 2"),
        "zombies: 2",
    );
    broken(
        "stray not reparented to PID 1",
        good.replace(", ppid 1", ", ppid 42"),
        "not PID 1",
    );
    let without = |needle: &str| -> String {
        good.lines()
            .filter(|l| !l.contains(needle))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    broken("no sync", without("shutdown: sync"), "\"sync\"");
    broken("no unmount", without("shutdown: unmount"), "\"unmount\"");
    broken(
        "the OOM score handed down",
        good.replace("report 0", "report -1000"),
        "OOM scores",
    );
    broken("no OOM kill", without("failed (oom-kill)"), "glutton");
    broken(
        "no crash loop",
        without("failed (start-limit)"),
        "crash loop",
    );
    // web before db: swap the lines that say they are active.
    let swapped = good
        .replace("ember: db: active (running)", "ember: XX")
        .replace(
            "ember: web: active (running)",
            "ember: db: active (running)",
        )
        .replace("ember: XX", "ember: web: active (running)");
    broken("web before db", swapped, "before db");
}

/// The analysis check, on what the report printed in a real x86_64 boot
/// (tests/qemu/sample-analysis.log) and on broken copies of it.
#[test]
fn analysis_accepts_a_real_report_and_rejects_broken_ones() {
    let good = std::fs::read_to_string(repo().join("tests/qemu/sample-analysis.log")).unwrap();
    assert_eq!(analysis(&Console::new(&good)), Vec::<String>::new());
    for (what, text, expect) in [
        (
            "blame without web",
            good.replace("ms web", "ms wbe"),
            "ember analyze blame: web",
        ),
        (
            "web too quick",
            good.replace(" 314ms web", " 114ms web"),
            "ember analyze blame: web took Some(114.0)",
        ),
        (
            "no chain",
            good.replace("└─db @", "└─xx @"),
            "critical-chain web",
        ),
        (
            "not the machine",
            good.replace("\"role\": \"machine\"", "\"role\": \"namespace\""),
            "role \"namespace\"",
        ),
        (
            "no timeline",
            good.replace("--- timeline", "--- nothing"),
            "no timeline JSON",
        ),
    ] {
        let problems = analysis(&Console::new(&text));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: want a problem containing {expect:?}, got {problems:?}"
        );
    }
}

fn skip_reason() -> Option<&'static str> {
    if std::env::var_os("EMBER_SKIP_QEMU").is_some_and(|v| v == "1") {
        return Some("EMBER_SKIP_QEMU=1");
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to install qemu and download kernels (CI runs as root)");
    }
    None
}

fn boot_and_check(arch: &str) {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let setup = run_script("tests/qemu/setup.sh", &[], &[]).unwrap_or_else(|e| panic!("{e}"));
    let console_path = repo().join("target/qemu").join(arch).join("console.log");
    let _ = std::fs::remove_file(&console_path);
    let boot = run_script("tests/qemu/boot.sh", &[arch], &[]).unwrap_or_else(|e| {
        // A guest that never powered off (timeout): its console tells where it stopped.
        let console = std::fs::read(&console_path)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default();
        panic!(
            "{e}\nthe console log ({}) ends with:\n{}",
            console_path.display(),
            tail(&console, 60)
        )
    });
    println!("{arch}: setup.sh took {setup:.1} s, boot.sh (build, pack, boot) {boot:.1} s");

    let console = read_console(&console_path);
    let log = Console::new(&console);
    println!("{arch}: boot timing:");
    for line in log.lines.iter().filter(|l| l.contains("uptime")) {
        println!("  {line}");
    }
    let mut problems = verdict(&log);
    // `ember analyze` on the machine: blame and critical-chain, and the timeline with the
    // kernel's handover.
    problems.extend(analysis(&log));
    // "boot complete" comes once every service has settled, so after web is active.
    match (
        log.find(&["ember: boot complete"]),
        log.find(&["ember: web: active (running)"]),
    ) {
        (Some(done), Some(web)) if done > web => {}
        (done, _) => problems.push(format!(
            "\"boot complete\" must follow web's activation: {:?}",
            done.map(|i| &log.lines[i])
        )),
    }
    if !problems.is_empty() {
        panic!(
            "{arch}: the boot did not go as it should:\n  - {}\nthe console log ({}) ends with:\n{}",
            problems.join("\n  - "),
            console_path.display(),
            tail(&console, 60)
        );
    }
    println!("{arch}: ember booted, supervised, reaped and powered the machine off");
}

/// What the report service printed (one logged line each), without the log's framing.
fn report_lines<'a>(log: &Console<'a>) -> Vec<&'a str> {
    log.ember_messages()
        .filter_map(|(_, m)| m.strip_prefix("report: "))
        // journald-style fields follow the message on some outputs.
        .map(|m| {
            m.strip_suffix(" service=report stream=\"stdout\"")
                .unwrap_or(m)
        })
        .collect()
}

/// `ember analyze` as the machine's init: what blame, critical-chain and dump showed.
fn analysis(log: &Console<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    let lines = report_lines(log);
    // Blame: "  812ms db", each at least its readiness wait.
    let took = |name: &str| {
        lines.iter().find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() >= 2 && words[1] == name).then(|| span_ms(words[0]))?
        })
    };
    for (name, at_least) in [("db", 500.0), ("web", 300.0)] {
        match took(name) {
            Some(ms) if ms >= at_least * 0.98 => {}
            other => problems.push(format!(
                "ember analyze blame: {name} took {other:?} ms (at least {at_least} ms)"
            )),
        }
    }
    // The chain of web: web, then db, which it requires.
    let web = lines.iter().position(|l| l.starts_with("web @"));
    if web
        .and_then(|i| lines.get(i + 1))
        .is_none_or(|l| !l.starts_with("└─db @"))
    {
        problems.push("ember analyze critical-chain web did not show web, then db".into());
    }
    // The timeline: the machine's init, and when the kernel handed over. ember's own lines
    // about report ("deactivating (stop-sigterm)" once it asked for the power-off) may come
    // between the lines it printed: the dump's lines are "{", "}" and indented ones.
    let json: String = lines
        .iter()
        .skip_while(|l| **l != "--- timeline")
        .skip(1)
        .take_while(|l| **l != "--- end")
        .filter(|l| l.starts_with(' ') || **l == "{" || **l == "}")
        .map(|l| format!("{l}\n"))
        .collect();
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(t) if t["role"] == "machine" && t["uptime_at_start_usec"].as_u64() > Some(0) => {}
        Ok(t) => problems.push(format!(
            "ember analyze dump: role {} and uptime at start {} (want machine and the kernel's handover)",
            t["role"], t["uptime_at_start_usec"]
        )),
        Err(e) => problems.push(format!("ember analyze dump: no timeline JSON ({e})")),
    }
    problems
}

/// "734us", "4.21ms", "502ms", "1.503s" in milliseconds.
fn span_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else {
        (text.strip_suffix('s')?, 1000.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The console log as text. Firmware and the kernel write escape sequences and, on a bad
/// day, bytes that are not UTF-8: read bytes and keep what is readable.
fn read_console(path: &Path) -> String {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read the console log {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes)
        .replace('\r', "")
        .replace('\u{1b}', "^[")
}

struct Console<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Console<'a> {
    fn new(text: &'a str) -> Console<'a> {
        Console {
            lines: text.lines().collect(),
        }
    }

    /// The index of the first line from `from` on that contains every one of `words`.
    fn find_from(&self, from: usize, words: &[&str]) -> Option<usize> {
        self.lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| words.iter().all(|w| l.contains(w)))
            .map(|(i, _)| i)
    }

    fn find(&self, words: &[&str]) -> Option<usize> {
        self.find_from(0, words)
    }

    /// The kernel's timestamp of line `i` ("[    2.002311] ..."), in seconds.
    fn stamp(&self, i: usize) -> Option<f64> {
        let line = self.lines[i].trim_start();
        let inner = line.strip_prefix('[')?.split_once(']')?.0;
        inner.trim().parse().ok()
    }

    /// What ember logged on a line ("ember: " and what follows), if it is one of ember's.
    fn ember_messages(&self) -> impl Iterator<Item = (usize, &'a str)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.find("ember: ").map(|at| (i, &l[at + 7..])))
    }
}

/// Everything that is wrong with the boot, one entry each; empty when it went well.
fn verdict(log: &Console<'_>) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    fn need(problems: &mut Vec<String>, what: &str, found: Option<usize>) -> Option<usize> {
        if found.is_none() {
            problems.push(format!("no line shows {what}"));
        }
        found
    }

    need(
        &mut problems,
        "the kernel starting /sbin/init",
        log.find(&["Run /sbin/init"]),
    );
    need(
        &mut problems,
        "ember starting as PID 1 of the machine",
        log.find(&["ember: ", "starting as PID 1 (Machine)"]),
    );

    // Dependencies and readiness: web requires db, which is ready on a log line.
    let db_ready = need(
        &mut problems,
        "db's readiness line",
        log.find(&["db: ", "db accepting connections"]),
    );
    let db_active = need(
        &mut problems,
        "db active",
        log.find(&["ember: db: active (running)"]),
    );
    let web_starting = need(
        &mut problems,
        "web activating",
        log.find(&["ember: web: activating"]),
    );
    let web_active = need(
        &mut problems,
        "web active",
        log.find(&["ember: web: active (running)"]),
    );
    if let (Some(ready), Some(active)) = (db_ready, db_active) {
        if active < ready {
            problems.push("db was active before its readiness line".to_owned());
        }
    }
    if let (Some(db), Some(web)) = (db_active, web_starting) {
        if web < db {
            problems.push("web started before db was active (web requires db)".to_owned());
        }
    }
    if let (Some(db), Some(web)) = (db_active, web_active) {
        if web < db {
            problems.push("web was active before db".to_owned());
        }
    }
    // web is ready after `delay = "300ms"`: the kernel's timestamps show the wait.
    if let (Some(start), Some(ready)) = (web_starting, web_active) {
        if let (Some(t0), Some(t1)) = (log.stamp(start), log.stamp(ready)) {
            if t1 - t0 < 0.29 {
                problems.push(format!(
                    "web was active {:.0} ms after it started; its readiness delay is 300 ms",
                    (t1 - t0) * 1000.0
                ));
            }
        }
    }

    // The crash loop ends failed; the orphan maker ran.
    need(
        &mut problems,
        "the crash loop ending failed (start-limit)",
        log.find(&["ember: flaky: failed (start-limit)"]),
    );
    need(
        &mut problems,
        "the orphan maker finishing",
        log.find(&["ember: orphans: active (exited)"]),
    );

    // Limits in the services' cgroups: OOM kills inside them, told apart; forks refused
    // past pids_max; ember's OOM score of -1000 not handed down.
    need(
        &mut problems,
        "hog OOM-killed and restarted by policy",
        log.find(&[
            "ember: hog: activating (auto-restart): killed by the kernel's OOM killer",
            "memory_max (16M)",
        ]),
    );
    need(
        &mut problems,
        "glutton failed (oom-kill)",
        log.find(&["ember: glutton: failed (oom-kill)"]),
    );
    need(
        &mut problems,
        "forker's own OOM score",
        log.find(&["forker: oom_score_adj -500"]),
    );
    let report = |prefix: &str| -> Option<&str> {
        log.lines
            .iter()
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.trim()))
    };
    match report("limits: forker pids ") {
        Some(rest) if rest.contains(" of 4, refused ") && !rest.ends_with("refused 0") => {}
        other => problems.push(format!("pids_max did not refuse forks: {other:?}")),
    }
    match report("limits: hog oom_kill ") {
        Some(rest) if !rest.starts_with('0') && rest.ends_with("memory.max 16777216") => {}
        other => problems.push(format!(
            "hog's cgroup shows no OOM kill under memory.max: {other:?}"
        )),
    }
    // Resource figures from the cgroup's own files (memory.current, pids.current).
    match report("metrics: db ") {
        Some(rest)
            if rest
                .strip_prefix("\"memory_bytes\":")
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
                && rest.ends_with("\"tasks\":1") => {}
        other => problems.push(format!("db's figures are missing or wrong: {other:?}")),
    }
    match report("limits: oom_score_adj ") {
        Some("ember -1000, report 0") => {}
        other => problems.push(format!(
            "OOM scores: want ember -1000, report 0; got {other:?}"
        )),
    }

    // The stray orphan was reparented to PID 1 (ember), not left to anyone else.
    match log.lines.iter().find_map(|l| l.split_once("stray: pid ")) {
        Some((_, rest)) if rest.split_whitespace().nth(2) == Some("1") => {}
        Some((_, rest)) => problems.push(format!("the stray orphan's parent is not PID 1: {rest}")),
        None => problems.push("the report never showed the stray orphan's parent".to_owned()),
    }

    // No zombies, counted over every process in the guest after the orphans exited.
    let zombies = log
        .lines
        .iter()
        .find_map(|l| l.split_once("zombies: ").map(|(_, rest)| rest))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned());
    match zombies.as_deref() {
        Some("0") => {}
        Some(other) => {
            let listed: Vec<&str> = log
                .lines
                .iter()
                .filter(|l| l.contains("zombie: "))
                .copied()
                .collect();
            problems.push(format!(
                "zombies: {other} (want 0): {}",
                if listed.is_empty() {
                    "none listed".to_owned()
                } else {
                    listed.join("; ")
                }
            ));
        }
        None => problems.push("the report never counted zombies".to_owned()),
    }

    // The shutdown sequence, step by step and in order: the services stop (in reverse),
    // then what remains gets SIGTERM, sync, unmount, power off; then the kernel powers down.
    // ember's words for each step (src/pid1/shutdown.rs, src/supervisor/runtime.rs); a
    // step matches on any of its alternatives, "shutdown:"-prefixed ones included.
    let steps: [(&str, &[&str]); 6] = [
        (
            "stopping the services",
            &["stopping every service", "shutdown: stopping"],
        ),
        (
            "the services stopped",
            &["every service has stopped", "shutdown: services stopped"],
        ),
        ("SIGTERM to the remaining processes", &["shutdown: SIGTERM"]),
        ("sync", &["shutdown: sync"]),
        ("unmount", &["shutdown: unmount"]),
        ("power off", &["shutdown: power off"]),
    ];
    let mut from = 0;
    for (what, alternatives) in steps {
        let found = log
            .ember_messages()
            .skip_while(|(i, _)| *i < from)
            .find(|(_, m)| {
                alternatives
                    .iter()
                    .any(|a| m.starts_with(a) || m.contains(a))
            })
            .map(|(i, _)| i);
        match found {
            Some(i) => from = i + 1,
            None => problems.push(format!(
                "shutdown step \"{what}\" missing or out of order (looked for {alternatives:?})"
            )),
        }
    }
    if log.find_from(from, &["reboot: Power down"]).is_none() {
        problems
            .push("the kernel never said \"reboot: Power down\" after ember's power off".into());
    }

    // Nothing went badly wrong on the way.
    for (what, words) in [
        ("a kernel panic", &["Kernel panic"][..]),
        ("ember panicking", &["ember: ", "panic in thread"][..]),
        (
            "ember in emergency mode",
            &["ember: ", "emergency mode"][..],
        ),
        (
            "dropped /dev/kmsg lines",
            &["suppressed due to ratelimiting"][..],
        ),
    ] {
        if let Some(i) = log.find(words) {
            problems.push(format!("{what}: {}", log.lines[i]));
        }
    }

    problems
}
