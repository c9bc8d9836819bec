//! The hardware watchdog on a real kernel: a Debian x86_64 kernel under qemu (TCG) with an
//! emulated i6300ESB (`-device i6300esb -action watchdog=reset`), its driver loaded by the
//! initramfs's /init before it hands over to ember (tests/qemu/boot.sh), and the guest
//! tests/qemu/guest/watchdog.toml. Three boots:
//!
//! - petted: the guest stays up past 3x the watchdog's timeout, and a clean poweroff (with
//!   a shutdown longer than the timeout) is not cut short by it: it is closed with the
//!   magic 'V' just before reboot(2);
//! - reboot: the same with a reboot, which leaves it armed across reboot(2);
//! - stall: ember's main loop is stalled (the test hook `__stall_main`); the watchdog
//!   resets the machine, and the second boot sees from the driver that it was the
//!   watchdog's reset and powers off.
//!
//! The timeout is 3 s on a quiet machine, scaled by tests/common's slowness up to 12 s
//! (the guest's clock runs at the host's pace; a loaded host delays the guest's main loop
//! too). Each boot takes about 20 s of qemu at 3 s. The console log is the verdict. Needs
//! root; EMBER_SKIP_QEMU=1 skips.

mod common;

use common::script::{repo, run_script, tail};

use std::sync::Mutex;
use std::time::Duration;

/// One boot at a time: the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_petted_watchdog_keeps_the_guest_up_and_a_clean_poweroff_closes_it() {
    let Some(log) = boot("petted", false) else {
        return;
    };
    let problems = petted(&Console::new(&log), timeout(), "poweroff");
    report("petted", &log, problems);
}

#[test]
fn a_clean_reboot_leaves_the_watchdog_armed_and_is_not_cut_short() {
    let Some(log) = boot("reboot", false) else {
        return;
    };
    let problems = petted(&Console::new(&log), timeout(), "reboot");
    report("reboot", &log, problems);
}

#[test]
fn a_stalled_main_loop_is_reset_by_the_watchdog() {
    let Some(log) = boot("stall", true) else {
        return;
    };
    let problems = stalled(&Console::new(&log), timeout());
    report("stall", &log, problems);
}

/// The verdicts on real console logs of these boots (tests/qemu/sample-watchdog-*.log)
/// and on broken copies: runs everywhere, root or not.
#[test]
fn verdicts_accept_real_boots_and_reject_broken_ones() {
    // Kept as the serial console wrote them (CRLF, the firmware's escapes), read as a boot's.
    let sample = |name: &str| {
        let path = repo().join(format!("tests/qemu/sample-watchdog-{name}.log"));
        console_text(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    };
    let broken = |what: &str, problems: Vec<String>, expect: &str| {
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: want a problem containing {expect:?}, got {problems:?}"
        );
    };
    // The samples were taken with a timeout of 3 s.
    let good = sample("petted");
    assert_eq!(
        petted(&Console::new(&good), 3, "poweroff"),
        Vec::<String>::new()
    );
    let reset = good.replacen(
        "reboot: Power down",
        "Linux version 6.1.0 (a second boot)",
        1,
    );
    broken(
        "a reset instead of a poweroff",
        petted(&Console::new(&reset), 3, "poweroff"),
        "booted 2 times",
    );
    broken(
        "no magic close",
        petted(
            &Console::new(&good.replace("closed (magic close)", "whatever")),
            3,
            "poweroff",
        ),
        "closed (magic close)",
    );
    broken(
        "not up long enough",
        // Up 3 x 3 s and 1, not 3 x 4 s.
        petted(
            &Console::new(&good.replace("armed: timeout 3 s", "armed: timeout 4 s")),
            4,
            "poweroff",
        ),
        "3 x the timeout",
    );
    let unexpected = good.replacen(
        "reboot: Power down",
        "watchdog: watchdog0: watchdog did not stop!\nreboot: Power down",
        1,
    );
    broken(
        "an unexpected close",
        petted(&Console::new(&unexpected), 3, "poweroff"),
        "did not stop",
    );
    broken(
        "too few pets",
        petted(
            &Console::new(&good.replace("(8 pets)", "(2 pets)")),
            3,
            "poweroff",
        ),
        "at least 6 pets",
    );
    let good = sample("reboot");
    assert_eq!(
        petted(&Console::new(&good), 3, "reboot"),
        Vec::<String>::new()
    );
    broken(
        "closed on reboot",
        petted(
            &Console::new(&good.replace("left armed for the reboot", "whatever")),
            3,
            "reboot",
        ),
        "left armed for the reboot",
    );
    let good = sample("stall");
    assert_eq!(stalled(&Console::new(&good), 3), Vec::<String>::new());
    broken(
        "no reset",
        stalled(
            &Console::new(&good.replace("Linux version", "Linux kernel")),
            3,
        ),
        "booted 0 times",
    );
    broken(
        "not told apart",
        stalled(
            &Console::new(&good.replace("says that it reset the board", "says nothing")),
            3,
        ),
        "says that it reset the board",
    );
    let dead = good.replace("heartbeat: ", "");
    broken(
        "the guest died with ember",
        stalled(&Console::new(&dead), 3),
        "heartbeat",
    );
}

/// The watchdog's timeout in seconds: 3 on a quiet machine, more on a slow one (the
/// guest's clock follows the host's, and a loaded host delays the guest's main loop), at
/// most 12: a petted boot lasts about 5 timeouts and the boot itself, under a minute and a
/// half at 12 s (about 20 s at 3 s), and a pet may then come 6 s late.
fn timeout() -> u32 {
    (3.0 * common::slowness()).ceil().clamp(3.0, 12.0) as u32
}

fn skip_reason() -> Option<&'static str> {
    if std::env::var_os("EMBER_SKIP_QEMU").is_some_and(|v| v == "1") {
        return Some("EMBER_SKIP_QEMU=1");
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to install qemu and download the kernel (CI runs as root)");
    }
    None
}

/// Boots the guest with `watchdog_test=NAME`; its console log, or None when skipped.
fn boot(name: &str, reboots: bool) -> Option<String> {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_script("tests/qemu/setup.sh", &["x86_64"], &[]).unwrap_or_else(|e| panic!("{e}"));
    let console = repo()
        .join("target/qemu/x86_64")
        .join(name)
        .join("console.log");
    let _ = std::fs::remove_file(&console);
    let t = timeout();
    // A boot, the time it stays up and its shutdown are well within 180 s on a quiet
    // machine; the stall boots twice.
    let limit = common::scaled(Duration::from_secs(180)).as_secs() + 20 * u64::from(t);
    let mut env = vec![
        ("EMBER_QEMU_NAME", name.to_owned()),
        (
            "EMBER_QEMU_GUEST",
            "tests/qemu/guest/watchdog.toml".to_owned(),
        ),
        ("EMBER_QEMU_WATCHDOG", "1".to_owned()),
        ("EMBER_QEMU_WATCHDOG_TIMEOUT", t.to_string()),
        ("EMBER_QEMU_APPEND", format!("watchdog_test={name}")),
        ("EMBER_QEMU_TIMEOUT", limit.to_string()),
    ];
    if reboots {
        env.push(("EMBER_QEMU_REBOOT", "1".to_owned()));
    }
    let outcome = run_script("tests/qemu/boot.sh", &["x86_64"], &env);
    let log = std::fs::read(&console)
        .map(|b| console_text(&b))
        .unwrap_or_default();
    if let Err(e) = outcome {
        panic!(
            "{name}: {e}\nthe console log ({}) ends with:\n{}",
            console.display(),
            tail(&log, 60)
        );
    }
    println!(
        "{name}: watchdog timeout {t} s; console log {}",
        console.display()
    );
    Some(log)
}

/// A console log as text: without the serial line's CRs, the firmware's escapes shown.
fn console_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('\r', "")
        .replace('\u{1b}', "^[")
}

fn report(name: &str, log: &str, problems: Vec<String>) {
    if !problems.is_empty() {
        panic!(
            "{name}: the boot did not go as it should:\n  - {}\nthe console log ends with:\n{}",
            problems.join("\n  - "),
            tail(log, 80)
        );
    }
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

    /// The first line from `from` on that contains every one of `words`.
    fn find_from(&self, from: usize, words: &[&str]) -> Option<usize> {
        (from..self.lines.len()).find(|&i| words.iter().all(|w| self.lines[i].contains(w)))
    }

    fn find(&self, words: &[&str]) -> Option<usize> {
        self.find_from(0, words)
    }

    /// Where each boot starts: the kernel's banner.
    fn boots(&self) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| self.lines[i].contains("Linux version"))
            .collect()
    }

    /// The kernel's timestamp of line `i` ("[    2.002311] ..."), in seconds.
    fn stamp(&self, i: usize) -> Option<f64> {
        let line = self.lines[i].trim_start();
        let inner = line.strip_prefix('[')?.split_once(']')?.0;
        inner.trim().parse().ok()
    }
}

/// Finds `words` from `from` on, or notes that it is missing.
fn need(
    log: &Console<'_>,
    problems: &mut Vec<String>,
    from: usize,
    what: &str,
    words: &[&str],
) -> Option<usize> {
    let found = log.find_from(from, words);
    if found.is_none() {
        problems.push(format!("no line shows {what} (looked for {words:?})"));
    }
    found
}

fn no_disasters(log: &Console<'_>, problems: &mut Vec<String>) {
    for (what, words) in [
        ("a kernel panic", &["Kernel panic"][..]),
        ("ember panicking", &["ember: ", "panic in thread"][..]),
        (
            "ember in emergency mode",
            &["ember: ", "emergency mode"][..],
        ),
        ("an error of the watchdog", &["ember: watchdog: cannot"][..]),
    ] {
        if let Some(i) = log.find(words) {
            problems.push(format!("{what}: {}", log.lines[i]));
        }
    }
}

/// The petted boots: up past 3x the timeout, then a clean poweroff or reboot, with the
/// watchdog closed (poweroff) or left armed (reboot) only at the very end.
fn petted(log: &Console<'_>, timeout: u32, power: &str) -> Vec<String> {
    let mut problems = Vec::new();
    no_disasters(log, &mut problems);
    let boots = log.boots().len();
    if boots != 1 {
        problems.push(format!(
            "the guest booted {boots} times (a reset: want one boot)"
        ));
    }
    let armed = need(
        log,
        &mut problems,
        0,
        "the watchdog armed with the timeout",
        &[
            "ember: watchdog: /dev/watchdog0 (i6300ESB timer) armed: ",
            &format!("timeout {timeout} s"),
        ],
    );
    let up = need(
        log,
        &mut problems,
        armed.unwrap_or(0),
        "the guest still up",
        &["driver: up for"],
    );
    if let (Some(armed), Some(up)) = (armed, up) {
        match (log.stamp(armed), log.stamp(up)) {
            (Some(a), Some(u)) if u - a >= 3.0 * f64::from(timeout) => {}
            (a, u) => problems.push(format!(
                "the guest was up {:?} s after the watchdog was armed; want at least 3 x the timeout ({} s)",
                u.zip(a).map(|(u, a)| u - a),
                3 * timeout
            )),
        }
    }
    // `ember ctl status` shows it, petted all along: at least every half timeout.
    let status = need(
        log,
        &mut problems,
        up.unwrap_or(0),
        "ember ctl status with the watchdog",
        &[
            "watchdog /dev/watchdog0 (i6300ESB timer): armed, timeout ",
            " ago (",
        ],
    );
    if let Some(i) = status {
        let pets = log.lines[i]
            .split_once(" ago (")
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(n, _)| n.parse::<u64>().ok());
        if pets.is_none_or(|n| n < 6) {
            problems.push(format!(
                "want at least 6 pets (3 x the timeout at half the timeout each): {}",
                log.lines[i]
            ));
        }
    }
    // The shutdown takes longer than the timeout, twice: stubborn's stop_timeout while
    // the main loop runs, then shutdown_timeout for the stray in the last steps.
    let mut from = status.unwrap_or(0);
    // ember's words for its last step: "reboot", "power off".
    let (word, step, last) = match power {
        "reboot" => (
            "left armed for the reboot",
            "ember: shutdown: reboot",
            "reboot: Restarting system",
        ),
        _ => (
            "closed (magic close)",
            "ember: shutdown: power off",
            "reboot: Power down",
        ),
    };
    for (what, words) in [
        (
            "the shutdown",
            &["ember: shutdown: stopping every service"][..],
        ),
        (
            "the last steps' SIGKILL after shutdown_timeout",
            &["ember: shutdown: still running after", "SIGKILL"][..],
        ),
        ("the unmount", &["ember: shutdown: unmount"][..]),
        (
            "the watchdog closed or left armed, at the end",
            &["ember: watchdog: /dev/watchdog0 ", word][..],
        ),
        ("ember's last step", &[step][..]),
        ("the kernel's last word", &[last][..]),
    ] {
        match need(log, &mut problems, from, what, words) {
            Some(i) => from = i + 1,
            None => break,
        }
    }
    // The kernel says so when a watchdog is closed without the magic character.
    if power != "reboot" {
        if let Some(i) = log.find(&["watchdog did not stop"]) {
            problems.push(format!("closed without the magic close: {}", log.lines[i]));
        }
    }
    problems
}

/// The stalled boot: the watchdog resets the machine while the kernel still runs, and the
/// second boot knows it was the watchdog's reset.
fn stalled(log: &Console<'_>, timeout: u32) -> Vec<String> {
    let mut problems = Vec::new();
    no_disasters(log, &mut problems);
    let boots = log.boots();
    if boots.len() != 2 {
        problems.push(format!(
            "the guest booted {} times; want 2: the stall, the watchdog's reset, the second boot",
            boots.len()
        ));
        return problems;
    }
    let second = boots[1];
    let first = Console {
        lines: log.lines[..second].to_vec(),
    };
    need(
        &first,
        &mut problems,
        0,
        "the watchdog armed with the timeout",
        &[
            "ember: watchdog: /dev/watchdog0 (i6300ESB timer) armed: ",
            &format!("timeout {timeout} s"),
        ],
    );
    let stall = need(
        &first,
        &mut problems,
        0,
        "the main loop stalled",
        &["stalling the main loop for good (test hook)"],
    );
    // The kernel and the other processes ran on after the stall, until the reset.
    let beats: Vec<usize> = (stall.unwrap_or(second)..second)
        .filter(|&i| first.lines[i].contains("heartbeat: ember is stalled"))
        .collect();
    match (stall, beats.last()) {
        (Some(s), Some(&b)) => {
            if let (Some(s), Some(b)) = (first.stamp(s), first.stamp(b)) {
                println!(
                    "stall: the last heartbeat came {:.1} s after the stall (timeout {timeout} s)",
                    b - s
                );
            }
        }
        (Some(_), None) => problems.push(
            "no heartbeat after the stall: did the guest die with ember, rather than be reset?"
                .into(),
        ),
        _ => {}
    }
    if first.find(&["reboot: "]).is_some() {
        problems.push("the first boot ended by reboot(2), not by the watchdog".into());
    }
    let mut from = second;
    for (what, words) in [
        (
            "ember telling that the watchdog reset the board",
            &["ember: watchdog: /dev/watchdog0 says that it reset the board last time"][..],
        ),
        (
            "the guest seeing it in `ember ctl status`",
            &["driver: booted again after the watchdog's reset"][..],
        ),
        ("a clean poweroff", &["ember: shutdown: power off"][..]),
        ("the kernel's last word", &["reboot: Power down"][..]),
    ] {
        match need(log, &mut problems, from, what, words) {
            Some(i) => from = i + 1,
            None => break,
        }
    }
    problems
}
