//! Scheduled oneshots (`schedule = { every, after_boot, jitter }`) run by a real ember as
//! PID 1 of a PID namespace: periodic runs, never two at once, start and stop, status.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Runs every second from boot; each run writes a line. It keeps running on time, shows
/// as inactive (scheduled) with its next run between runs, and a stop ends the runs.
#[test]
fn a_scheduled_oneshot_runs_periodically_until_stopped() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "schedule-every",
        r#"
[service.tick]
type = "oneshot"
command = ["/bin/sh", "-c", "echo run >> $DIR/runs"]
schedule = { every = "1s", after_boot = "0s" }
"#,
    );
    let runs = ember.dir.path("runs");
    assert!(
        wait_for(LONG, || lines(&runs).len() >= 3),
        "fewer than 3 runs: {:?}\nlog:\n{}",
        lines(&runs),
        ember.log()
    );
    let status = ember.wait_state("tick", "inactive", Some("scheduled"), LONG);
    assert_eq!(status["want"], "up");
    assert!(status["next_run_usec"].as_u64().is_some(), "{status}");
    let table = String::from_utf8_lossy(&ember.ctl(&["status"]).stdout).to_string();
    assert!(table.contains("next run in "), "{table}");

    let out = ember.ctl(&["stop", "tick"]);
    assert!(out.status.success(), "{out:?}");
    let status = ember.wait_state("tick", "inactive", Some("dead"), LONG);
    assert!(status.get("next_run_usec").is_none(), "{status}");
    let count = lines(&runs).len();
    // Three periods with no run: the schedule is off.
    std::thread::sleep(scaled(Duration::from_secs(3)));
    assert_eq!(lines(&runs).len(), count, "ran after a stop");

    // start runs it at once, and arms it again; --wait returns when that run is done.
    let out = ember.ctl(&["start", "tick", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        lines(&runs).len() > count,
        "start --wait returned before the run"
    );
    assert!(
        wait_for(LONG, || lines(&runs).len() >= count + 2),
        "start did not run it and arm it again; log:\n{}",
        ember.log()
    );
}

/// A run that takes longer than the period is never started a second time while it
/// runs: each run's start and end alternate in its file.
#[test]
fn a_slow_run_is_not_started_twice() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "schedule-overlap",
        r#"
[service.slow]
type = "oneshot"
command = ["/bin/sh", "-c", "echo start >> $DIR/runs; sleep 2.5; echo end >> $DIR/runs"]
schedule = { every = "1s", after_boot = "0s" }
"#,
    );
    let runs = ember.dir.path("runs");
    assert!(
        wait_for(LONG * 2, || lines(&runs)
            .iter()
            .filter(|l| *l == "end")
            .count()
            >= 3),
        "fewer than 3 runs ended: {:?}\nlog:\n{}",
        lines(&runs),
        ember.log()
    );
    let seen = lines(&runs);
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "two runs at once: {seen:?}");
    }
}

/// A failed run does not end the schedule: the next time runs it again.
#[test]
fn a_failed_run_does_not_end_the_schedule() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "schedule-fail",
        r#"
[service.flaky]
type = "oneshot"
command = ["/bin/sh", "-c", "echo run >> $DIR/runs; exit 3"]
restart = "never"
schedule = { every = "1s", after_boot = "0s" }
"#,
    );
    let runs = ember.dir.path("runs");
    assert!(
        wait_for(LONG, || lines(&runs).len() >= 3),
        "a failed run ended the schedule: {:?}\nlog:\n{}",
        lines(&runs),
        ember.log()
    );
}

/// `start --wait` of a scheduled oneshot whose run fails says so.
#[test]
fn start_wait_of_a_failing_scheduled_run_says_it_failed() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "schedule-wait",
        r#"
[service.nightly]
type = "oneshot"
command = ["/bin/sh", "-c", "exit 4"]
restart = "never"
schedule = { every = "24h" }
"#,
    );
    ember.wait_state("nightly", "inactive", Some("scheduled"), LONG);
    let out = ember.ctl(&["start", "nightly", "--wait"]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit-code") || err.contains("code 4"), "{err}");
}

/// `after_boot = "0s"` is a run at boot, alone (once) or before an hourly period: ember
/// gets to its schedules some milliseconds after it started, and that is not a time
/// missed. The hourly job's next run is then about an hour after boot.
#[test]
fn after_boot_zero_runs_at_boot() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "schedule-boot",
        r#"
[service.once]
type = "oneshot"
command = ["/bin/sh", "-c", "echo run >> $DIR/once"]
schedule = { after_boot = "0s" }

[service.hourly]
type = "oneshot"
command = ["/bin/sh", "-c", "echo run >> $DIR/hourly"]
schedule = { after_boot = "0s", every = "1h" }
"#,
    );
    for name in ["once", "hourly"] {
        let runs = ember.dir.path(name);
        assert!(
            wait_for(LONG, || lines(&runs).len() == 1),
            "{name} did not run at boot\nlog:\n{}",
            ember.log()
        );
        ember.wait_state(name, "inactive", Some("scheduled"), LONG);
    }
    let status = ember.wait_state("hourly", "inactive", Some("scheduled"), LONG);
    let next = status["next_run_usec"].as_u64().expect("a next run");
    let table = String::from_utf8_lossy(&ember.ctl(&["status"]).stdout).to_string();
    assert!(
        table.contains("next run in 59m") || table.contains("next run in 1h"),
        "{next} {table}"
    );
}
