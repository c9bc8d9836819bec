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
