//! The D-Bus adapter against a real dbus-daemon on a private socket (system-style policy
//! with the shipped io.ember.Init1.conf), driven with the real busctl and dbus-send.

mod common;

use common::bus::{have_dbus, Bus};
use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(15);
const MANAGER: &str = "/io/ember/Init1";
const MGR_IFACE: &str = "io.ember.Init1.Manager";
const SVC_IFACE: &str = "io.ember.Init1.Service";

const SERVICES: &str = r#"
[service.web]
command = ["/bin/sleep", "7910001"]

[service."web@1.x-y"]
command = ["/bin/sleep", "7910002"]
"#;

fn start(tag: &str, bus: &Bus) -> Ember {
    Ember::start(
        tag,
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{SERVICES}",
            bus.address()
        ),
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `data` of `busctl --json=short ...`.
fn json(bus: &Bus, args: &[&str]) -> Option<Value> {
    let mut all = vec!["--json=short"];
    all.extend_from_slice(args);
    let out = bus.busctl(&all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .map(|v| v["data"].clone())
}

fn property(bus: &Bus, path: &str, iface: &str, name: &str) -> Option<Value> {
    json(bus, &["get-property", "io.ember.Init1", path, iface, name])
}

fn service_property(bus: &Bus, service: &str, name: &str) -> Option<Value> {
    let path = format!("/io/ember/Init1/service/{service}");
    property(bus, &path, SVC_IFACE, name)
}

/// Waits until ember owns the name and answers.
fn wait_attached(bus: &Bus, ember: &Ember) {
    let ok = wait_for(LONG, || {
        property(bus, MANAGER, MGR_IFACE, "Version").is_some()
    });
    assert!(
        ok,
        "ember never served io.ember.Init1; log:\n{}",
        ember.log()
    );
}

/// dbus-send, to see an error's name (busctl prints only its message).
fn dbus_send(bus: &Bus, path: &str, method: &str, args: &[&str]) -> String {
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address()))
        .args(["--print-reply", "--dest=io.ember.Init1", path, method])
        .args(args)
        .output()
        .expect("dbus-send");
    text(&out)
}

fn have_dbus_send() -> bool {
    Command::new("dbus-send").arg("--help").output().is_ok()
}

#[test]
fn introspect_read_control_and_signals() {
    if !can_unshare() || !have_dbus() || !have_dbus_send() {
        return;
    }
    let bus = Bus::start("basic", "");
    let ember = start("dbus-basic", &bus);
    ember.wait_state("web", "active", None, LONG);
    wait_attached(&bus, &ember);

    // Introspection: both interfaces, the properties, systemd's spelling of MainPID.
    let out = text(&bus.busctl(&["introspect", "io.ember.Init1", MANAGER]));
    for want in [
        MGR_IFACE,
        "org.freedesktop.DBus.ObjectManager",
        ".ListServices",
        ".NFailed",
        ".ServiceStateChanged",
    ] {
        assert!(
            out.contains(want),
            "manager introspection lacks {want}:\n{out}"
        );
    }
    let out = text(&bus.busctl(&[
        "introspect",
        "io.ember.Init1",
        "/io/ember/Init1/service/web",
    ]));
    for want in [
        SVC_IFACE,
        ".MainPID",
        ".SubState",
        ".Want",
        ".ExitCode",
        ".Since",
        ".Restart",
    ] {
        assert!(
            out.contains(want),
            "service introspection lacks {want}:\n{out}"
        );
    }

    // Properties read what `ember ctl status` says.
    let status = ember.status("web");
    assert_eq!(service_property(&bus, "web", "State").unwrap(), "active");
    assert_eq!(service_property(&bus, "web", "Name").unwrap(), "web");
    assert_eq!(
        service_property(&bus, "web", "MainPID").unwrap(),
        status["pid"]
    );
    assert_eq!(property(&bus, MANAGER, MGR_IFACE, "NFailed").unwrap(), 0);

    // ListServices matches `ember ctl status --json`.
    let listed = json(
        &bus,
        &["call", "io.ember.Init1", MANAGER, MGR_IFACE, "ListServices"],
    )
    .unwrap();
    let rows = listed[0].as_array().unwrap().clone();
    let all = ember.all();
    assert_eq!(rows.len(), all.len(), "{listed} vs {all:?}");
    for (row, s) in rows.iter().zip(&all) {
        assert_eq!(row[0], s["name"]);
        assert_eq!(row[1], s["state"]);
        assert_eq!(row[2], s["sub_state"]);
        assert_eq!(row[3], s["pid"].as_u64().unwrap_or(0));
        assert_eq!(row[4], s["restarts"]);
    }

    // Odd names escape as systemd does and round-trip.
    let path = json(
        &bus,
        &[
            "call",
            "io.ember.Init1",
            MANAGER,
            MGR_IFACE,
            "GetService",
            "s",
            "web@1.x-y",
        ],
    )
    .unwrap();
    assert_eq!(path[0], "/io/ember/Init1/service/web_401_2ex_2dy");
    assert_eq!(
        service_property(&bus, "web_401_2ex_2dy", "Name").unwrap(),
        "web@1.x-y"
    );
    assert!(rows
        .iter()
        .any(|r| r[5] == "/io/ember/Init1/service/web_401_2ex_2dy"));

    // Stop, Start, Restart change the state; each transition is one PropertiesChanged.
    let mut monitor = bus.monitor("monitor.txt");
    std::thread::sleep(Duration::from_millis(500));
    let web = "/io/ember/Init1/service/web";
    let out = bus.busctl(&["call", "io.ember.Init1", web, SVC_IFACE, "Stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_for(LONG, || service_property(&bus, "web", "State")
        .is_some_and(|s| s == "inactive")));
    assert_eq!(service_property(&bus, "web", "Want").unwrap(), "down");
    assert_eq!(service_property(&bus, "web", "MainPID").unwrap(), 0);
    let out = bus.busctl(&["call", "io.ember.Init1", web, SVC_IFACE, "Start"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_for(LONG, || service_property(&bus, "web", "State")
        .is_some_and(|s| s == "active")));
    let pid = service_property(&bus, "web", "MainPID").unwrap();
    let out = bus.busctl(&[
        "call",
        "io.ember.Init1",
        MANAGER,
        MGR_IFACE,
        "RestartService",
        "s",
        "web",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_for(LONG, || {
        service_property(&bus, "web", "MainPID").is_some_and(|p| p != pid && p != 0)
    }));
    std::thread::sleep(Duration::from_millis(500));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let seen = std::fs::read_to_string(bus.dir.path("monitor.txt")).unwrap_or_default();
    assert!(
        seen.contains("PropertiesChanged"),
        "no PropertiesChanged seen:\n{seen}"
    );
    assert!(
        seen.contains("\"inactive\""),
        "no change to inactive seen:\n{seen}"
    );
    assert!(seen.contains("ServiceStateChanged"), "{seen}");

    // An unknown service is UnknownService, by name and with a message.
    let out = dbus_send(
        &bus,
        MANAGER,
        "io.ember.Init1.Manager.StartService",
        &["string:nope"],
    );
    assert!(out.contains("io.ember.Init1.Error.UnknownService"), "{out}");
    assert!(out.contains("nope"), "{out}");
}

#[test]
fn a_caller_neither_root_nor_in_the_group_reads_but_cannot_change() {
    if !can_unshare() || !have_dbus() || !have_dbus_send() {
        return;
    }
    // Let nobody past the bus's policy, so that ember's own check is what refuses.
    let bus = Bus::start(
        "auth",
        r#"<policy user="nobody"><allow send_destination="io.ember.Init1"/></policy>"#,
    );
    let ember = start("dbus-auth", &bus);
    ember.wait_state("web", "active", None, LONG);
    wait_attached(&bus, &ember);
    let path = "/io/ember/Init1/service/web";
    let out = bus.busctl_as_nobody(&["get-property", "io.ember.Init1", path, SVC_IFACE, "State"]);
    assert!(out.status.success(), "a read was refused: {}", text(&out));
    assert!(text(&out).contains("active"), "{}", text(&out));
    let out = bus.busctl_as_nobody(&["call", "io.ember.Init1", MANAGER, MGR_IFACE, "ListServices"]);
    assert!(
        out.status.success(),
        "ListServices was refused: {}",
        text(&out)
    );
    for args in [
        vec!["call", "io.ember.Init1", path, SVC_IFACE, "Stop"],
        vec![
            "call",
            "io.ember.Init1",
            MANAGER,
            MGR_IFACE,
            "StopService",
            "s",
            "web",
        ],
        vec!["call", "io.ember.Init1", MANAGER, MGR_IFACE, "Reboot"],
    ] {
        let out = bus.busctl_as_nobody(&args);
        assert!(!out.status.success(), "{args:?} was allowed");
        assert!(text(&out).contains("group \"ember\""), "{}", text(&out));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ember.status("web")["state"], "active");
    assert_eq!(ember.status("web")["want"], "up");
}

#[test]
fn the_shipped_policy_alone_refuses_others_at_the_bus() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("policy", "");
    let ember = start("dbus-policy", &bus);
    wait_attached(&bus, &ember);
    let path = "/io/ember/Init1/service/web";
    let out = bus.busctl_as_nobody(&["introspect", "io.ember.Init1", path]);
    assert!(out.status.success(), "{}", text(&out));
    let out = bus.busctl_as_nobody(&["call", "io.ember.Init1", path, SVC_IFACE, "Stop"]);
    assert!(!out.status.success(), "Stop was allowed");
    assert!(
        text(&out).to_lowercase().contains("denied") || text(&out).contains("reject"),
        "{}",
        text(&out)
    );
}

#[test]
fn reattaches_after_the_bus_daemon_dies_three_times() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let mut bus = Bus::start("restart", "");
    let ember = start("dbus-restart", &bus);
    ember.wait_state("web", "active", None, LONG);
    wait_attached(&bus, &ember);
    for round in 0..3 {
        bus.kill();
        std::thread::sleep(Duration::from_millis(300));
        bus.restart();
        let started = std::time::Instant::now();
        wait_attached(&bus, &ember);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "round {round}: {:?}",
            started.elapsed()
        );
        // It serves again: a call changes the state.
        let verb = if round % 2 == 0 { "Stop" } else { "Start" };
        let want = if round % 2 == 0 { "inactive" } else { "active" };
        let out = bus.busctl(&[
            "call",
            "io.ember.Init1",
            "/io/ember/Init1/service/web",
            SVC_IFACE,
            verb,
        ]);
        assert!(out.status.success(), "round {round}: {}", text(&out));
        assert!(
            wait_for(LONG, || service_property(&bus, "web", "State")
                .is_some_and(|s| s == want)),
            "round {round}: web never {want}"
        );
    }
    // Supervision never noticed: the other service ran on untouched.
    assert_eq!(ember.status("web@1.x-y")["state"], "active");
}

#[test]
fn check_reports_a_bad_dbus_table() {
    let dir = TempDir::new("dbus-check");
    let config = dir.path("ember.toml");
    std::fs::write(&config, "[dbus]\nbus = \"systen\"\ncontrol_group = \"\"\n").unwrap();
    let out = Command::new(EMBER)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("ember check");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("bus \"systen\" must be"), "{said}");
    assert!(
        said.contains("control_group \"\" must be a group name"),
        "{said}"
    );
}
