//! Service output to files that ember writes and rotates, bounded.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn on_disk(dir: &std::path::Path, stem: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(stem))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// 50 MB written at full speed: at most keep × max_size on disk, every line through
/// ember (its last lines in `ember ctl logs`), and no copy in ember's own log.
#[test]
fn a_flood_to_a_rotated_file_stays_within_its_bound() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-rotate",
        r#"
[system]
log_dir = "$DIR/logs"

[service.flood]
command = ["/bin/sh", "-c", "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 50000000; echo last-line; exec sleep 7830001"]
stdout = { file = "flood.log", max_size = "1M", keep = 3 }
stderr = { file = "/dev/null/nope/err.log" }
"#,
    );
    let seen_last = wait_for(LONG * 2, || {
        let out = ember.ctl(&["logs", "flood", "-n", "1"]);
        String::from_utf8_lossy(&out.stdout).contains("last-line")
    });
    assert!(seen_last, "the last line never came; log:\n{}", ember.log());
    let logs = ember.dir.path("logs");
    // The writer thread may still be behind the ring: wait for the file to have it.
    assert!(wait_for(LONG, || std::fs::read_to_string(
        logs.join("flood.log")
    )
    .unwrap_or_default()
    .contains("last-line")));
    let total = on_disk(&logs, "flood.log");
    assert!(total <= 3 * 1024 * 1024, "{total} bytes on disk");
    assert!(total > 2 * 1024 * 1024, "{total} bytes: nothing rotated?");
    assert!(logs.join("flood.log.1").exists());
    assert!(logs.join("flood.log.2").exists());
    assert!(!logs.join("flood.log.3").exists());
    // Not copied to ember's own log.
    assert!(
        !ember.log().contains("flood: 0123456789"),
        "copied to ember's log"
    );
    // A file that cannot be written is said once, and costs nothing else.
    assert!(ember.status("flood")["state"] == "active");
}

/// What a service prints before it asks ember to stop (a report that ends with `ember ctl
/// poweroff`, as the qemu guest's does) is in ember's log whole: the lines queued when the
/// request comes are served first, and those still in the pipe are read before ember
/// exits. (The qemu boot lost the end of its report once requests were served before the
/// feed of lines.) 900 lines: within what one service may copy to the log at once. The
/// service begins once the test has seen ember's socket: done at once, it could be over
/// before (a busy machine did that).
#[test]
fn the_lines_a_service_prints_before_it_asks_for_a_poweroff_are_all_logged() {
    let mut ember = Ember::start_plain(
        "last-lines",
        &format!(
            r#"
[service.report]
restart = "never"
command = ["/bin/sh", "-c", "while [ ! -e $DIR/go ]; do sleep 0.05; done; i=0; while [ $i -lt 900 ]; do i=$((i+1)); echo \"report line $i\"; done; echo 'report: the end'; exec {EMBER} ctl --socket $DIR/control.sock poweroff"]
"#
        ),
    );
    std::fs::write(ember.dir.path("go"), "").expect("write go");
    let code = ember.wait_exit(LONG);
    let log = ember.log();
    assert_eq!(
        code,
        Some(0),
        "ember did not stop; log tail:\n{}",
        script::tail(&log, 40)
    );
    let missing: Vec<u32> = (1..=900)
        .filter(|i| !log.contains(&format!("report: report line {i}\n")))
        .collect();
    assert!(
        missing.is_empty() && log.contains("report: report: the end"),
        "{} lines missing (first {:?}); log tail:\n{}",
        missing.len(),
        missing.first(),
        script::tail(&log, 40)
    );
}
