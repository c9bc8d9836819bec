//! Resource figures over every interface, and `ember ctl status NAME` for people: a real
//! service allocating a known amount of memory, seen through the control socket, a real
//! mosquitto and a real dbus-daemon.

mod common;

use common::broker::{have_mosquitto, Broker};
use common::bus::{have_dbus, Bus};
use common::*;
use serde_json::Value;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Holds 200 MiB it has written to (so it is resident), after ~0.3 s of CPU.
const HOG: &str = r#"
[service.hog]
command = ["/usr/bin/python3", "-c", """
import time
block = b'x' * (200 * 1024 * 1024)
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print('holding', len(block), flush=True)
time.sleep(7920001)
"""]
ready = { log = "holding" }
ready_timeout = "30s"
"#;

fn assert_near(what: &str, got: u64, want: u64) {
    let (low, high) = (want - want / 10, want + want / 10);
    assert!(
        (low..=high).contains(&got),
        "{what}: {got} is not within 10% of {want}"
    );
}

#[test]
fn status_measures_what_a_service_uses() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start("metrics", HOG);
    ember.wait_state("hog", "active", None, LONG);
    let out = ember.ctl(&["status", "hog", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hog = &all[0];
    assert_near(
        "memory_bytes",
        hog["memory_bytes"].as_u64().unwrap(),
        200 * MIB,
    );
    assert!(hog["cpu_usec"].as_u64().unwrap() >= 250_000, "{hog}");
    assert!(hog["tasks"].as_u64().unwrap() >= 1, "{hog}");
    let processes = hog["details"]["processes"].as_array().unwrap();
    assert_eq!(processes[0]["pid"], hog["pid"]);
    assert!(
        processes[0]["command"]
            .as_str()
            .unwrap()
            .starts_with("/usr/bin/python3 -c"),
        "{hog}"
    );
    // The plain status list stays lean: no figures unless asked for one service.
    let out = ember.ctl(&["status", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(all[0].get("memory_bytes").is_none(), "{all}");
    // Stopped, it has none.
    ember.ctl(&["stop", "hog", "--wait"]);
    let out = ember.ctl(&["status", "hog", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(all[0].get("memory_bytes").is_none(), "{all}");
}

#[test]
fn status_of_one_service_reads_like_systemctl_status() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "status-block",
        r#"
[service.db]
command = ["/bin/sh", "-c", "echo db ready; exec sleep 7920011"]
ready = { log = "db ready" }

[service.web]
command = ["/bin/sh", "-c", "sleep 7920012 & sleep 7920013 & for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; wait"]
requires = ["db"]
"#,
    );
    ember.wait_state("web", "active", None, LONG);
    assert!(wait_for(LONG, || pids_with("792001").len() == 3));
    assert!(wait_for(LONG, || ember.log().contains("web: line 12")));
    let out = ember.ctl(&["status", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let main = ember.status("web")["pid"].as_u64().unwrap();
    for expected in [
        "● web - active (running) since ".to_owned(),
        format!("  Main PID: {main}"),
        "  Requires: db (active)".to_owned(),
        "     Ready: none".to_owned(),
        "  Restarts: 0 · last exit: none yet".to_owned(),
        "    Memory: ".to_owned(),
        "       CPU: ".to_owned(),
        format!("└─{main} /bin/sh -c sleep 7920012"),
        "├─".to_owned(),
        " sleep 7920013".to_owned(),
        "line 3".to_owned(),
        "line 12".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    // The last 10 lines: "line 2" is older than that.
    assert!(!text.contains("line 2\n"), "{text}");
}

#[test]
fn metrics_go_to_mqtt_on_the_interval_and_never_without_one() {
    if !can_unshare() || !have_mosquitto() {
        return;
    }
    let broker = Broker::start("metrics", "");
    let config = |device: &str, interval: &str| {
        format!(
            "[system]\ndevice = \"{device}\"\n{interval}\n[mqtt]\nurl = \"{}\"\n\n[service.web]\ncommand = [\"/bin/sleep\", \"7920021\"]\n",
            broker.url()
        )
    };
    let quiet = Ember::start_with_config(
        "metrics-none",
        &format!(
            "[control]\nsocket = \"$DIR/control.sock\"\n{}",
            config("quiet", "")
        ),
    );
    let ember = Ember::start_with_config(
        "metrics-mqtt",
        &format!(
            "[control]\nsocket = \"$DIR/control.sock\"\n{}",
            config("m1", "metrics_interval = \"1s\"")
        ),
    );
    ember.wait_state("web", "active", None, LONG);
    quiet.wait_state("web", "active", None, LONG);
    let metrics = broker.subscribe("ember/+/service/+/metrics");
    let line = metrics
        .wait_for("ember/m1/service/web/metrics ", LONG)
        .expect("a metrics message within the interval");
    let figures: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert!(figures["memory_bytes"].as_u64().unwrap() > 0, "{figures}");
    assert!(figures["tasks"].as_u64().unwrap() >= 1, "{figures}");
    assert!(figures["cpu_usec"].is_u64(), "{figures}");
    // Another round a second later; never retained; none from the board without one.
    let rounds = || {
        metrics
            .lines()
            .iter()
            .filter(|l| l.starts_with("ember/m1/"))
            .count()
    };
    assert!(wait_for(LONG, || rounds() >= 2), "{:?}", metrics.lines());
    let lines = metrics.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("ember/quiet/")),
        "{lines:?}"
    );
    let retained = broker.retained("ember/m1/service/web/metrics", Duration::from_secs(2));
    assert!(
        retained.is_empty(),
        "metrics must not be retained: {retained:?}"
    );
}

#[test]
fn dbus_reads_the_figures_when_asked_and_the_result_of_the_last_run() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("metrics", "");
    let ember = Ember::start(
        "metrics-dbus",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n{HOG}\n[service.oneshot]\ntype = \"oneshot\"\ncommand = [\"/bin/true\"]\n",
            bus.address()
        ),
    );
    ember.wait_state("hog", "active", None, LONG);
    ember.wait_state("oneshot", "active", None, LONG);
    let get = |service: &str, name: &str| bus.service_property(service, name);
    assert!(wait_for(LONG, || get("hog", "State").is_some()));
    assert_near(
        "MemoryBytes",
        get("hog", "MemoryBytes").unwrap().as_u64().unwrap(),
        200 * MIB,
    );
    assert!(get("hog", "Tasks").unwrap().as_u64().unwrap() >= 1);
    assert!(get("hog", "CpuUsec").unwrap().as_u64().unwrap() >= 250_000);
    assert_eq!(get("hog", "Result").unwrap(), "");
    // Not running: systemd's "unknown", u64::MAX; a oneshot that exited 0: success.
    assert_eq!(get("oneshot", "MemoryBytes").unwrap(), u64::MAX);
    assert_eq!(get("oneshot", "Result").unwrap(), "success");
}

/// A configuration of thousands of errors: PID 1 kept every one for `ember ctl status`
/// (the table below thousands of lines, megabytes in each answer and in PID 1's memory),
/// and a reload's refusal quoted them all. The first ones are shown, and how many more
/// there are: `ember check` lists every one.
#[test]
fn thousands_of_configuration_errors_are_shown_in_part() {
    if !can_unshare() {
        return;
    }
    let bad: String = (0..3000)
        .map(|i| format!("[service.s{i}]\nrestart = 1\n"))
        .collect();
    let ember = Ember::start("observe-many-errors", &bad);
    let out = ember.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(problems.len(), 51, "{}", &text[..text.len().min(3000)]);
    assert_eq!(
        problems[50],
        "  ... and 2950 more; `ember check` lists them all"
    );
    // A reload of a file as bad is refused with as many.
    std::fs::write(
        &ember.config,
        format!(
            "[control]\nsocket = \"{}\"\n\n{bad}",
            ember.socket.display()
        ),
    )
    .unwrap();
    let out = ember.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 52, "{}", &err[..err.len().min(3000)]);
    assert!(
        err.ends_with("... and 2950 more; `ember check` lists them all\n"),
        "{}",
        &err[err.len().saturating_sub(300)..]
    );
}
