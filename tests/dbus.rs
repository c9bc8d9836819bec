//! The D-Bus adapter against a real dbus-daemon on a private socket (system-style policy
//! with the shipped io.ember.Init1.conf), driven with the real busctl and dbus-send.

mod common;

use common::bus::{have_dbus, Bus};
use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

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

fn json(bus: &Bus, args: &[&str]) -> Option<Value> {
    bus.json(args)
}

fn property(bus: &Bus, path: &str, iface: &str, name: &str) -> Option<Value> {
    json(bus, &["get-property", "io.ember.Init1", path, iface, name])
}

fn service_property(bus: &Bus, service: &str, name: &str) -> Option<Value> {
    bus.service_property(service, name)
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
    // The standard interfaces as well, answered by the adapter's own (see gate.rs).
    let standard = [
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Peer",
        "org.freedesktop.DBus.Properties",
        ".GetAll",
        ".GetMachineId",
        ".PropertiesChanged",
    ];
    for want in [
        MGR_IFACE,
        "org.freedesktop.DBus.ObjectManager",
        ".ListServices",
        ".NFailed",
        ".ServiceStateChanged",
    ]
    .into_iter()
    .chain(standard)
    {
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
        ".CpuUsec",
    ]
    .into_iter()
    .chain(standard)
    {
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
    // (Monitor::start returns once busctl monitors: nothing is missed.)
    let monitor = Monitor::start(&bus, "monitor");
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
    // The signals are on their way when the properties read new: wait for them to land.
    assert!(
        monitor.wait_signal("PropertiesChanged", Some(web), |b| b[1]["State"]["data"]
            == "inactive"),
        "no change to inactive seen:\n{}",
        monitor.dump()
    );
    assert!(
        monitor.wait_signal("ServiceStateChanged", None, |_| true),
        "{}",
        monitor.dump()
    );

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
        vec!["call", "io.ember.Init1", path, SVC_IFACE, "ResetFailed"],
        vec!["call", "io.ember.Init1", MANAGER, MGR_IFACE, "ResetFailed"],
    ] {
        let out = bus.busctl_as_nobody(&args);
        assert!(!out.status.success(), "{args:?} was allowed");
        assert!(text(&out).contains("group \"ember\""), "{}", text(&out));
    }
    for method in ["Reboot", "PowerOff", "Reload"] {
        let out = bus.busctl_as_nobody(&["call", "io.ember.Init1", MANAGER, MGR_IFACE, method]);
        assert!(!out.status.success(), "{method} was allowed");
        assert!(
            text(&out).contains("over D-Bus needs root; the caller is uid 65534"),
            "{}",
            text(&out)
        );
    }
    // Refused at once; a window in which a wrongly taken command would show.
    std::thread::sleep(scaled(Duration::from_millis(300)));
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
        // ember notices the bus is gone (and starts retrying) before it is back.
        assert!(
            wait_for(LONG, || ember.log().matches("dbus: lost the bus").count()
                > round),
            "round {round}: the loss was not noticed; log:\n{}",
            ember.log()
        );
        bus.restart();
        wait_attached(&bus, &ember);
        assert!(
            wait_for(LONG, || ember.log().matches("dbus: re-attached as").count()
                > round),
            "round {round}: log:\n{}",
            ember.log()
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

// --- busctl monitor as JSON, one message a line ---------------------------------------

/// `busctl monitor --json=short io.ember.Init1`: every message to and from ember, parsed.
struct Monitor {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Monitor {
    /// Starts the monitor and waits (bounded) until busctl says it is monitoring.
    fn start(bus: &Bus, tag: &str) -> Monitor {
        let out = bus.dir.path(&format!("{tag}.json"));
        let err = bus.dir.path(&format!("{tag}.err"));
        let child = Command::new("busctl")
            .arg(format!("--address={}", bus.address()))
            .args(["monitor", "--json=short", "io.ember.Init1"])
            .stdout(std::fs::File::create(&out).expect("monitor file"))
            .stderr(std::fs::File::create(&err).expect("monitor stderr"))
            .spawn()
            .expect("busctl monitor");
        let mut monitor = Monitor { child, out };
        let ok = wait_for(LONG, || {
            std::fs::read_to_string(&err).is_ok_and(|e| e.contains("Monitoring"))
        });
        if !ok {
            let _ = monitor.child.kill();
            panic!(
                "busctl monitor never started: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        // busctl says so once BecomeMonitor returned: the match is in place.
        monitor
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The bodies of the signals `member` seen so far on `path` (any path if None).
    fn signals(&self, member: &str, path: Option<&str>) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["type"] == "signal" && m["member"] == member)
            .filter(|m| path.is_none_or(|p| m["path"] == p))
            .map(|m| m["payload"]["data"].clone())
            .collect()
    }

    /// Waits until a signal `member` whose body satisfies `check` was seen.
    fn wait_signal(
        &self,
        member: &str,
        path: Option<&str>,
        check: impl Fn(&Value) -> bool,
    ) -> bool {
        wait_for(LONG, || self.signals(member, path).iter().any(&check))
    }

    fn dump(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `busctl call io.ember.Init1 PATH IFACE METHOD ARGS...` as root.
fn call(bus: &Bus, path: &str, iface: &str, method: &str, args: &[&str]) -> Output {
    let mut all = vec!["call", "io.ember.Init1", path, iface, method];
    all.extend_from_slice(args);
    bus.busctl(&all)
}

fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

// --- a caller in the control group ------------------------------------------------------

/// A throw-away system group and a system user whose primary group it is; both removed
/// on drop (also when the test fails).
struct Throwaway {
    user: String,
    group: String,
}

impl Throwaway {
    fn create() -> Throwaway {
        // Unique per test too: tests in one process run at the same time.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let n = std::process::id() % 1_000_000;
        let group = format!("embtg{n}x{k}");
        let user = format!("embtu{n}x{k}");
        // Left over by a run that was SIGKILLed with the same pid: start clean.
        let _ = Command::new("userdel").arg(&user).output();
        let _ = Command::new("groupdel").arg(&group).output();
        let out = Command::new("groupadd")
            .args(["-r", &group])
            .output()
            .expect("run groupadd");
        assert!(out.status.success(), "groupadd: {}", text(&out));
        let made = Throwaway {
            user: user.clone(),
            group: group.clone(),
        };
        let out = Command::new("useradd")
            .args(["-r", "-M", "-N", "-g", &group, "-d", "/nonexistent"])
            .args(["-s", "/usr/sbin/nologin", &user])
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd: {}", text(&out));
        made
    }

    /// busctl as that user: its uid, its group as the real gid and its groups from the
    /// group database (`--init-groups`), i.e. a member of the group, not root.
    fn busctl(&self, bus: &Bus, args: &[&str], member: bool) -> Output {
        let mut command = Command::new("setpriv");
        command.arg(format!("--reuid={}", self.user));
        if member {
            command
                .arg(format!("--regid={}", self.group))
                .arg("--init-groups");
        } else {
            // Same uid, but neither the primary group nor a supplementary one.
            command.args(["--regid=65534", "--clear-groups"]);
        }
        command
            .arg("busctl")
            .arg(format!("--address={}", bus.address()))
            .args(args)
            .output()
            .expect("run setpriv busctl")
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).output();
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

/// The shipped policy's `<policy group="ember">` block, for another group name: the
/// policy file says to edit both together.
fn shipped_group_policy(group: &str) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dbus-1/io.ember.Init1.conf"
    ))
    .expect("read the shipped policy");
    let start = shipped
        .find("<policy group=\"ember\">")
        .expect("the shipped policy has no <policy group=\"ember\"> block");
    let end = start + shipped[start..].find("</policy>").expect("unclosed policy") + 9;
    shipped[start..end].replace("group=\"ember\"", &format!("group=\"{group}\""))
}

#[test]
fn a_member_of_the_control_group_who_is_not_root_may_stop_and_start() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let who = Throwaway::create();
    let bus = Bus::start("group", &shipped_group_policy(&who.group));
    let ember = Ember::start(
        "dbus-group",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"{}\"\n\n{SERVICES}",
            bus.address(),
            who.group
        ),
    );
    ember.wait_state("web", "active", None, LONG);
    wait_attached(&bus, &ember);
    let path = "/io/ember/Init1/service/web";

    // The same uid outside the group is refused (so membership is what lets it in).
    let out = who.busctl(
        &bus,
        &["call", "io.ember.Init1", path, SVC_IFACE, "Stop"],
        false,
    );
    assert!(!out.status.success(), "Stop allowed outside the group");
    std::thread::sleep(scaled(Duration::from_millis(300)));
    assert_eq!(ember.status("web")["want"], "up");

    // As a member: Stop (service object), then StartService and RestartService (manager).
    let out = who.busctl(
        &bus,
        &["call", "io.ember.Init1", path, SVC_IFACE, "Stop"],
        true,
    );
    assert!(out.status.success(), "Stop as a member: {}", text(&out));
    let status = ember.wait_state("web", "inactive", None, LONG);
    assert_eq!(status["want"], "down");
    assert_eq!(service_property(&bus, "web", "State").unwrap(), "inactive");

    let out = who.busctl(
        &bus,
        &[
            "call",
            "io.ember.Init1",
            MANAGER,
            MGR_IFACE,
            "StartService",
            "s",
            "web",
        ],
        true,
    );
    assert!(
        out.status.success(),
        "StartService as a member: {}",
        text(&out)
    );
    let before = ember.wait_state("web", "active", None, LONG)["pid"].clone();
    let out = who.busctl(
        &bus,
        &[
            "call",
            "io.ember.Init1",
            MANAGER,
            MGR_IFACE,
            "RestartService",
            "s",
            "web",
        ],
        true,
    );
    assert!(
        out.status.success(),
        "RestartService as a member: {}",
        text(&out)
    );
    assert!(
        wait_for(LONG, || {
            let s = ember.status("web");
            s["state"] == "active" && s["pid"] != before
        }),
        "web was not restarted; log:\n{}",
        ember.log()
    );
    // The resets of failures and signals pass the shipped policy for a member too.
    for call in [
        &["ResetFailedService", "s", "web"][..],
        &["ResetFailed"][..],
        &["KillService", "ss", "web", "SIGCONT"][..],
    ] {
        let mut args = vec!["call", "io.ember.Init1", MANAGER, MGR_IFACE];
        args.extend_from_slice(call);
        let out = who.busctl(&bus, &args, true);
        assert!(out.status.success(), "{call:?} as a member: {}", text(&out));
    }
    // PowerOff, Reboot and Reload are root's: the shipped policy stops them at the bus.
    for method in ["PowerOff", "Reboot", "Reload"] {
        let out = who.busctl(
            &bus,
            &["call", "io.ember.Init1", MANAGER, MGR_IFACE, method],
            true,
        );
        assert!(!out.status.success(), "{method} allowed to a member");
        assert!(
            text(&out).to_lowercase().contains("denied") || text(&out).contains("reject"),
            "{method}: {}",
            text(&out)
        );
    }
    // ember logged who did it: the member's uid, not root.
    let uid = Command::new("id").args(["-u", &who.user]).output().unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
    assert!(
        ember.log().contains(&format!("dbus uid={uid}")),
        "no trace of uid {uid}; log:\n{}",
        ember.log()
    );
}

#[test]
fn a_member_of_the_control_group_may_not_power_off_reboot_or_reload() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let who = Throwaway::create();
    // The bus lets this user send anything, so that ember's own check is what refuses.
    let bus = Bus::start(
        "group-system",
        &format!(
            r#"<policy user="{}"><allow send_destination="io.ember.Init1"/></policy>"#,
            who.user
        ),
    );
    let ember = Ember::start(
        "dbus-group-system",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"{}\"\n\n{SERVICES}",
            bus.address(),
            who.group
        ),
    );
    let before = ember.wait_state("web", "active", None, LONG)["pid"].clone();
    wait_attached(&bus, &ember);
    let config = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(
        &ember.config,
        format!("{config}\n[service.added]\ncommand = [\"/bin/sleep\", \"7910901\"]\n"),
    )
    .unwrap();
    for method in ["PowerOff", "Reboot", "Reload"] {
        let out = who.busctl(
            &bus,
            &["call", "io.ember.Init1", MANAGER, MGR_IFACE, method],
            true,
        );
        assert!(!out.status.success(), "{method} allowed to a member");
        assert!(
            text(&out).contains("over D-Bus needs root; the caller is uid"),
            "{method}: {}",
            text(&out)
        );
    }
    // The same member may still restart a service (so the group is what it is).
    let out = who.busctl(
        &bus,
        &[
            "call",
            "io.ember.Init1",
            MANAGER,
            MGR_IFACE,
            "RestartService",
            "s",
            "web",
        ],
        true,
    );
    assert!(out.status.success(), "RestartService: {}", text(&out));
    assert!(
        wait_for(LONG, || {
            let s = ember.status("web");
            s["state"] == "active" && s["pid"] != before
        }),
        "web was not restarted; log:\n{}",
        ember.log()
    );
    // Still running, nothing reloaded, nothing stopping.
    let log = ember.log();
    assert!(!log.contains("shutdown:"), "log:\n{log}");
    // web, web@1.x-y and the adapter itself (ember-dbus, a service of its own).
    assert_eq!(ember.all().len(), 3, "the reload happened");
    assert_eq!(ember.status("web@1.x-y")["state"], "active");
}

// --- Reload -----------------------------------------------------------------------------

#[test]
fn reload_adds_and_removes_service_objects() {
    if !can_unshare() || !have_dbus() || !have_dbus_send() {
        return;
    }
    let bus = Bus::start("reload", "");
    let ember = Ember::start(
        "dbus-reload",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            r#"
[service.web]
command = ["/bin/sleep", "7910301"]

[service."web@1.x-y"]
command = ["/bin/sleep", "7910302"]
"#
        ),
    );
    ember.wait_state("web@1.x-y", "active", None, LONG);
    wait_attached(&bus, &ember);
    let old_path = "/io/ember/Init1/service/web_401_2ex_2dy";
    let new_path = "/io/ember/Init1/service/extra_2d2";
    assert!(property(&bus, new_path, SVC_IFACE, "Name").is_none());

    let monitor = Monitor::start(&bus, "reload");
    let config = std::fs::read_to_string(&ember.config).unwrap();
    let edited = config.replace(
        "[service.\"web@1.x-y\"]\ncommand = [\"/bin/sleep\", \"7910302\"]",
        "[service.extra-2]\ncommand = [\"/bin/sleep\", \"7910303\"]",
    );
    assert_ne!(config, edited, "the test's edit did not apply");
    std::fs::write(&ember.config, edited).unwrap();
    let out = call(&bus, MANAGER, MGR_IFACE, "Reload", &[]);
    assert!(out.status.success(), "Reload: {}", text(&out));

    assert!(
        monitor.wait_signal("ServiceAdded", Some(MANAGER), |b| {
            b[0] == "extra-2" && b[1] == new_path
        }),
        "no ServiceAdded(extra-2); monitor:\n{}\nlog:\n{}",
        monitor.dump(),
        ember.log()
    );
    assert!(
        monitor.wait_signal("ServiceRemoved", Some(MANAGER), |b| {
            b[0] == "web@1.x-y" && b[1] == old_path
        }),
        "no ServiceRemoved(web@1.x-y); monitor:\n{}",
        monitor.dump()
    );
    // The object manager announced the new object and withdrew the old one, each with its
    // interface, and never a standard interface (GetManagedObjects has none either): a
    // client that followed the signals would keep an object that no longer exists.
    assert!(
        monitor
            .signals("InterfacesAdded", Some(MANAGER))
            .iter()
            .any(|b| b[0] == new_path && b[1].get(SVC_IFACE).is_some()),
        "no InterfacesAdded for {new_path}:\n{}",
        monitor.dump()
    );
    assert!(
        monitor
            .signals("InterfacesRemoved", Some(MANAGER))
            .iter()
            .any(|b| b[0] == old_path
                && b[1]
                    .as_array()
                    .is_some_and(|i| i.contains(&SVC_IFACE.into()))),
        "no InterfacesRemoved for {old_path}:\n{}",
        monitor.dump()
    );
    let standard: Vec<Value> = monitor
        .signals("InterfacesAdded", Some(MANAGER))
        .into_iter()
        .filter(|b| {
            b[1].as_object()
                .is_some_and(|i| i.keys().any(|k| k.starts_with("org.freedesktop.DBus.")))
        })
        .collect();
    assert!(
        standard.is_empty(),
        "standard interfaces announced: {standard:?}"
    );
    // The new object serves, and follows its service to active.
    assert!(
        wait_for(LONG, || property(&bus, new_path, SVC_IFACE, "State")
            .is_some_and(|s| s == "active")),
        "extra-2's object never read active; log:\n{}",
        ember.log()
    );
    assert_eq!(
        property(&bus, new_path, SVC_IFACE, "Name").unwrap(),
        "extra-2"
    );
    // The removed one is gone from the bus, from ListServices and from GetService.
    let out = bus.busctl(&[
        "get-property",
        "io.ember.Init1",
        old_path,
        SVC_IFACE,
        "Name",
    ]);
    assert!(
        !out.status.success(),
        "the removed object still answers: {}",
        text(&out)
    );
    let listed = json(
        &bus,
        &["call", "io.ember.Init1", MANAGER, MGR_IFACE, "ListServices"],
    )
    .unwrap();
    let names: Vec<&Value> = listed[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[0])
        .collect();
    assert_eq!(names, ["ember-dbus", "extra-2", "web"], "{listed}");
    let out = dbus_send(
        &bus,
        MANAGER,
        "io.ember.Init1.Manager.GetService",
        &["string:web@1.x-y"],
    );
    assert!(out.contains("io.ember.Init1.Error.UnknownService"), "{out}");
    // The object manager says the same.
    let managed = json(
        &bus,
        &[
            "call",
            "io.ember.Init1",
            MANAGER,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ],
    )
    .unwrap();
    assert!(managed[0].get(new_path).is_some(), "{managed}");
    assert!(managed[0].get(old_path).is_none(), "{managed}");
    // web was untouched by the reload: no state change signalled for it.
    assert!(
        monitor
            .signals("PropertiesChanged", Some("/io/ember/Init1/service/web"))
            .is_empty(),
        "web changed on a reload that did not touch it:\n{}",
        monitor.dump()
    );

    // A broken configuration: NotAllowed, with the problem in the message; nothing changes.
    std::fs::write(
        &ember.config,
        std::fs::read_to_string(&ember.config).unwrap() + "\n[service.broken]\ncomand = [\"x\"]\n",
    )
    .unwrap();
    let out = dbus_send(&bus, MANAGER, "io.ember.Init1.Manager.Reload", &[]);
    assert!(out.contains("io.ember.Init1.Error.NotAllowed"), "{out}");
    assert!(
        out.contains("comand"),
        "the message does not say what is wrong: {out}"
    );
    std::thread::sleep(scaled(Duration::from_millis(300)));
    assert!(property(&bus, "/io/ember/Init1/service/broken", SVC_IFACE, "Name").is_none());
    // web, extra-2 and the adapter.
    assert_eq!(ember.all().len(), 3);
}

// --- PowerOff and Reboot when ember is not PID 1 -----------------------------------------

fn power_stops_everything_and_exits_0(method: &str, word: &str, marker: u32) {
    // No namespace here (ember is a plain child), but PowerOff and Reboot are root's:
    // can_unshare() is the suite's "root, or skip (fail in CI)".
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start(&format!("power-{word}"), "");
    let (m1, m2) = (marker, marker + 1);
    let mut ember = Ember::start_plain(
        &format!("dbus-{word}"),
        &format!(
            r#"[dbus]
bus = "{}"
control_group = "ember"

[service.a]
command = ["/bin/sleep", "{m1}"]

[service.b]
command = ["/bin/sh", "-c", "trap 'echo stopped >> $DIR/b.stopped; exit 0' TERM; /bin/sleep {m2} & wait"]
"#,
            bus.address()
        ),
    );
    ember.wait_state("a", "active", None, LONG);
    ember.wait_state("b", "active", None, LONG);
    wait_attached(&bus, &ember);
    let marker1 = m1.to_string();
    let marker2 = m2.to_string();
    assert!(
        wait_for(LONG, || pids_with(&marker1).len() == 1
            && pids_with(&marker2).len() == 1),
        "the services' processes are not there"
    );
    let monitor = Monitor::start(&bus, word);

    let out = call(&bus, MANAGER, MGR_IFACE, method, &[]);
    assert!(out.status.success(), "{method}: {}", text(&out));
    let code = ember.wait_exit(LONG);
    assert_eq!(
        code,
        Some(0),
        "{method}: ember ended with {code:?}; log:\n{}",
        ember.log()
    );
    // Every service stopped, the shell one by its SIGTERM; nothing was left behind.
    assert!(pids_with(&marker1).is_empty(), "a's sleep outlived ember");
    assert!(pids_with(&marker2).is_empty(), "b's sleep outlived ember");
    let stopped = std::fs::read_to_string(ember.dir.path("b.stopped")).unwrap_or_default();
    assert_eq!(stopped.trim(), "stopped", "b was not stopped with SIGTERM");
    // The right request, from the D-Bus caller.
    let log = ember.log();
    assert!(
        log.contains(&format!("dbus uid=0: {word}")),
        "{word} not logged:\n{log}"
    );
    // The name was released: the bus no longer knows it.
    let out = bus.busctl(&["status", "io.ember.Init1"]);
    assert!(
        !out.status.success(),
        "io.ember.Init1 still owned: {}",
        text(&out)
    );
    // Subscribers saw the services go down.
    let inactive = |path: &str| {
        monitor
            .signals("PropertiesChanged", Some(path))
            .iter()
            .any(|b| b[1]["State"]["data"] != "active" && b[1].get("State").is_some())
    };
    assert!(
        inactive("/io/ember/Init1/service/a") && inactive("/io/ember/Init1/service/b"),
        "no state change seen for the stopping services:\n{}",
        monitor.dump()
    );
    assert!(
        monitor
            .signals("PropertiesChanged", Some(MANAGER))
            .iter()
            .any(|b| b[1]["SystemState"]["data"] == "stopping"),
        "SystemState never went to stopping:\n{}",
        monitor.dump()
    );
}

#[test]
fn power_off_over_dbus_stops_every_service_and_exits_0_when_not_pid1() {
    power_stops_everything_and_exits_0("PowerOff", "poweroff", 7910401);
}

#[test]
fn reboot_over_dbus_stops_every_service_and_exits_0_when_not_pid1() {
    power_stops_everything_and_exits_0("Reboot", "reboot", 7910501);
}

// --- ExitCode and Since -------------------------------------------------------------------

/// The core turns its monotonic `since` into wall time anew for every status (so that a
/// clock set late still reads right): two reads of one instant differ by microseconds.
fn close_to(dbus: u64, ctl: &Value) {
    let ctl = ctl.as_u64().expect("since_usec");
    assert!(
        dbus.abs_diff(ctl) < 2_000,
        "Since {dbus} is not the since_usec {ctl} of ember ctl"
    );
}

#[test]
fn exit_code_and_since_follow_the_last_run() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("exit", "");
    let t0 = now_usec();
    let ember = Ember::start(
        "dbus-exit",
        &format!(
            r#"[dbus]
bus = "{}"
control_group = "ember"

[service.job]
command = ["/bin/sh", "-c", "sleep 0.3; exit $(cat $DIR/code 2>/dev/null || echo 3)"]
restart = "never"
"#,
            bus.address()
        ),
    );
    wait_attached(&bus, &ember);
    let path = "/io/ember/Init1/service/job";
    assert!(
        wait_for(LONG, || service_property(&bus, "job", "State")
            .is_some_and(|s| s == "failed")),
        "job never failed; log:\n{}",
        ember.log()
    );
    let status = ember.status("job");
    assert_eq!(status["exit_code"], 3, "{status}");
    assert_eq!(service_property(&bus, "job", "ExitCode").unwrap(), 3);
    let since = service_property(&bus, "job", "Since").unwrap();
    let since = since.as_u64().unwrap();
    close_to(since, &status["since_usec"]);
    assert!(
        since >= t0 && since <= now_usec(),
        "Since {since} is not between {t0} and now"
    );

    // A second run exits 7: both properties move, in one PropertiesChanged.
    let monitor = Monitor::start(&bus, "exit");
    std::fs::write(ember.dir.path("code"), "7\n").unwrap();
    let out = call(&bus, path, SVC_IFACE, "Start", &[]);
    assert!(out.status.success(), "Start: {}", text(&out));
    assert!(
        wait_for(LONG, || service_property(&bus, "job", "ExitCode")
            .is_some_and(|c| c == 7)),
        "ExitCode never became 7; log:\n{}",
        ember.log()
    );
    let status = ember.wait_state("job", "failed", None, LONG);
    let since2 = service_property(&bus, "job", "Since").unwrap();
    close_to(since2.as_u64().unwrap(), &status["since_usec"]);
    assert!(since2.as_u64().unwrap() > since, "Since did not move");
    assert!(
        monitor.wait_signal("PropertiesChanged", Some(path), |b| {
            b[0] == SVC_IFACE
                && b[1]["ExitCode"]["data"] == 7
                && b[1]["State"]["data"] == "failed"
                && b[1]["Since"]["data"] == since2
        }),
        "no PropertiesChanged with ExitCode 7, failed and the new Since:\n{}",
        monitor.dump()
    );
}

/// `n` services that sleep, with the markers `base`, `base + 1`, ...
fn many_services(n: u32, base: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[service.s{i}]\ncommand = [\"/bin/sleep\", \"{}\"]\n\n",
                base + i
            )
        })
        .collect()
}

/// The XML of `Introspect` at `path`, called as nobody (the policy lets everyone).
fn introspect_xml(bus: &Bus, path: &str) -> String {
    let out = bus.busctl_as_nobody(&[
        "--json=short",
        "call",
        "io.ember.Init1",
        path,
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
    ]);
    assert!(out.status.success(), "Introspect {path}: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["data"][0].as_str().unwrap().to_owned()
}

#[test]
fn introspection_lists_child_nodes_by_name_only() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("introspect", "");
    let n = 60;
    let ember = Ember::start(
        "dbus-introspect",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            many_services(n, 7910500)
        ),
    );
    ember.wait_state(&format!("s{}", n - 1), "active", None, LONG);
    wait_attached(&bus, &ember);
    assert!(wait_for(LONG, || service_property(
        &bus,
        &format!("s{}", n - 1),
        "Name"
    )
    .is_some()));

    // Each node: its own interfaces, and its children as empty <node name="..."/> elements.
    for (path, child) in [
        ("/", "io"),
        ("/io", "ember"),
        ("/io/ember", "Init1"),
        (MANAGER, "service"),
    ] {
        let xml = introspect_xml(&bus, path);
        assert!(
            xml.contains(&format!("<node name=\"{child}\"/>")),
            "{path} does not list {child}:\n{xml}"
        );
        assert!(
            !xml.contains(SVC_IFACE),
            "{path} inlines the service objects:\n{xml}"
        );
        assert_eq!(
            xml.matches("<node").count(),
            2,
            "{path} lists more than its one child:\n{xml}"
        );
        // What a node says of itself does not grow with the services: systemd's manager
        // object is about 40 KiB.
        assert!(xml.len() < 16 * 1024, "{path}: {} bytes", xml.len());
    }
    let xml = introspect_xml(&bus, MANAGER);
    assert!(xml.contains(MGR_IFACE), "{xml}");
    assert!(xml.contains("org.freedesktop.DBus.ObjectManager"), "{xml}");
    // The services' node: a name per service, tens of bytes each.
    let xml = introspect_xml(&bus, "/io/ember/Init1/service");
    for i in 0..n {
        assert!(
            xml.contains(&format!("<node name=\"s{i}\"/>")),
            "s{i}:\n{xml}"
        );
    }
    assert!(!xml.contains(SVC_IFACE), "{xml}");
    assert!(xml.len() < 2048 + 64 * n as usize, "{} bytes", xml.len());
    // A service object: its interfaces, no children.
    let xml = introspect_xml(&bus, "/io/ember/Init1/service/s0");
    assert!(xml.contains(SVC_IFACE), "{xml}");
    assert_eq!(xml.matches("<node").count(), 1, "{xml}");

    // Signal arguments carry no direction (busctl warns "Unexpected signal <arg> direction").
    for path in [
        "/",
        "/io",
        "/io/ember",
        MANAGER,
        "/io/ember/Init1/service/s0",
    ] {
        let xml = introspect_xml(&bus, path);
        for signal in xml.split("<signal ").skip(1) {
            let body = signal.split("</signal>").next().unwrap();
            assert!(!body.contains("direction="), "{path}: <signal {body}");
        }
    }
    let out = bus.busctl_as_nobody(&["tree", "io.ember.Init1"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "busctl tree warned:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in 0..n {
        assert!(
            stdout.contains(&format!("/io/ember/Init1/service/s{i}\n")),
            "{stdout}"
        );
    }
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's ")": state is field 3; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn managed_objects(bus: &Bus) -> Value {
    let out = bus.busctl_as_nobody(&[
        "--json=short",
        "call",
        "io.ember.Init1",
        MANAGER,
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    ]);
    assert!(out.status.success(), "GetManagedObjects: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["data"][0].clone()
}

#[test]
fn get_managed_objects_makes_ember_measure_nothing() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("managed", "");
    let n = 60;
    let ember = Ember::start(
        "dbus-managed",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            many_services(n, 7910600)
        ),
    );
    ember.wait_state(&format!("s{}", n - 1), "active", None, LONG);
    wait_attached(&bus, &ember);
    // The services, and ember-dbus itself.
    let all = ember.all().len();
    assert!(wait_for(LONG, || managed_objects(&bus)
        .as_object()
        .is_some_and(|o| o
            .keys()
            .filter(|k| k.starts_with("/io/ember/Init1/service/"))
            .count()
            == all)));

    // Every object with every property, as GetAll gives them.
    let objects = managed_objects(&bus);
    let s1 = &objects["/io/ember/Init1/service/s1"][SVC_IFACE];
    assert_eq!(s1["Name"]["data"], "s1", "{s1}");
    assert_eq!(s1["State"]["data"], "active", "{s1}");
    assert_eq!(s1["MainPID"]["data"], ember.status("s1")["pid"], "{s1}");
    for key in [
        "SubState",
        "Want",
        "Restarts",
        "ExitCode",
        "Since",
        "Result",
        "CpuUsec",
        "MemoryBytes",
        "Tasks",
    ] {
        assert!(s1.get(key).is_some(), "{key} missing: {s1}");
    }
    // Not measured for it: unknown until something measures.
    assert_eq!(s1["CpuUsec"]["data"], u64::MAX, "{s1}");

    // Any user's GetManagedObjects costs ember (PID 1) next to nothing: it measures no
    // service (before, each call measured all 60, three times each).
    let pid = ember.host_pid();
    let before = cpu_ticks(pid);
    for _ in 0..20 {
        managed_objects(&bus);
    }
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent <= 20,
        "20 GetManagedObjects cost ember {spent} ticks of CPU"
    );

    // A Get measures the one service; its figures then show in GetManagedObjects.
    let tasks = service_property(&bus, "s0", "Tasks").unwrap();
    assert_eq!(tasks, 1, "one sleep");
    let objects = managed_objects(&bus);
    let s0 = &objects["/io/ember/Init1/service/s0"][SVC_IFACE];
    assert_eq!(s0["Tasks"]["data"], 1, "{s0}");
    assert_ne!(s0["MemoryBytes"]["data"], u64::MAX, "{s0}");
}

#[test]
fn setting_a_read_only_property_is_property_read_only() {
    if !can_unshare() || !have_dbus() || !have_dbus_send() {
        return;
    }
    let bus = Bus::start("readonly", "");
    let ember = start("dbus-readonly", &bus);
    ember.wait_state("web", "active", None, LONG);
    wait_attached(&bus, &ember);
    let web = "/io/ember/Init1/service/web";
    let set = |path: &str, iface: &str, name: &str, value: &str| {
        dbus_send(
            &bus,
            path,
            "org.freedesktop.DBus.Properties.Set",
            &[&format!("string:{iface}"), &format!("string:{name}"), value],
        )
    };
    for (path, iface, name, value) in [
        (MANAGER, MGR_IFACE, "Version", "variant:string:9"),
        (MANAGER, MGR_IFACE, "NFailed", "variant:uint32:3"),
        (web, SVC_IFACE, "State", "variant:string:failed"),
        (web, SVC_IFACE, "MainPID", "variant:uint32:1"),
        (web, SVC_IFACE, "CpuUsec", "variant:uint64:1"),
    ] {
        let out = set(path, iface, name, value);
        assert!(
            out.contains("org.freedesktop.DBus.Error.PropertyReadOnly"),
            "Set {name}: {out}"
        );
        assert!(out.contains(name), "the error names the property: {out}");
    }
    // A name that does not exist is still UnknownProperty.
    for (path, iface) in [(MANAGER, MGR_IFACE), (web, SVC_IFACE)] {
        let out = set(path, iface, "Nope", "variant:string:x");
        assert!(
            out.contains("org.freedesktop.DBus.Error.UnknownProperty"),
            "Set Nope: {out}"
        );
    }
    assert_eq!(service_property(&bus, "web", "State").unwrap(), "active");
}

/// The pid of ember's child `comm` (ember-dbus), on the host.
fn child_named(parent: i32, comm: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
        let ppid: i32 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent && name == comm).then_some(pid)
    })
}

/// A field of /proc/PID/status in KiB (VmHWM, VmRSS).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_flood_of_reads_from_anyone_keeps_the_adapter_small_and_control_responsive() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("flood", "");
    let n = 200;
    let ember = Ember::start(
        "dbus-flood",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            many_services(n, 7910800)
        ),
    );
    ember.wait_state(&format!("s{}", n - 1), "active", None, LONG);
    wait_attached(&bus, &ember);
    assert!(wait_for(LONG, || service_property(
        &bus,
        &format!("s{}", n - 1),
        "Name"
    )
    .is_some()));
    let adapter = child_named(ember.host_pid(), "ember-dbus").expect("ember-dbus runs");
    let before = status_kib(adapter, "VmHWM");

    // 160 readers at once, as nobody: Introspect of every node above the services, and
    // GetManagedObjects.
    let address = format!("--address={}", bus.address());
    let readers: Vec<std::process::Child> = (0..160)
        .map(|i| {
            let (path, iface, method) = match i % 4 {
                0 => ("/", "org.freedesktop.DBus.Introspectable", "Introspect"),
                1 => (MANAGER, "org.freedesktop.DBus.Introspectable", "Introspect"),
                2 => ("/io", "org.freedesktop.DBus.Introspectable", "Introspect"),
                _ => (
                    MANAGER,
                    "org.freedesktop.DBus.ObjectManager",
                    "GetManagedObjects",
                ),
            };
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
                .arg(&address)
                .args(["call", "io.ember.Init1", path, iface, method])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn busctl")
        })
        .collect();
    // Root's command meanwhile is answered at once.
    let started = std::time::Instant::now();
    let out = call(&bus, MANAGER, MGR_IFACE, "RestartService", &["s", "s0"]);
    let took = started.elapsed();
    for mut reader in readers {
        let _ = reader.wait();
    }
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        took < scaled(Duration::from_secs(5)),
        "RestartService took {took:?}"
    );
    let after = status_kib(adapter, "VmHWM");
    eprintln!("ember-dbus peak: {before} KiB, then {after} KiB; RestartService: {took:?}");
    assert!(
        after < before + 16 * 1024,
        "ember-dbus's peak grew from {before} KiB to {after} KiB"
    );
}

/// A client of the bus written against the wire protocol (python3, no D-Bus library):
/// CONNECTIONS connections, each sending CALLS method calls to io.ember.Init1 without
/// reading a single reply; then it says "sent" and holds the connections (every call
/// still awaiting its reply) until its stdin closes. The calls go round the LABELS of
/// the services' objects and the KINDS (all by default) of the methods any user may
/// call: 0-2 ListServices, 3 Properties Get of CpuUsec (a resource figure), 4 GetAll of
/// a service, 5 Peer Ping, 6 GetMachineId, 7 Introspect of a service.
const FLOOD: &str = r#"
import os, socket, struct, sys

address, connections, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
labels = sys.argv[4].split(",")
kinds = [int(k) for k in (sys.argv[5] if len(sys.argv) > 5 else "0,1,2,3,4,5,6,7").split(",")]

def pad(b, n):
    return b + b"\0" * ((-len(b)) % n)

def field(out, code, sig, value):
    out = pad(out, 8) + bytes([code, 1]) + sig + b"\0"
    if sig == b"g":
        return out + bytes([len(value)]) + value + b"\0"
    return pad(out, 4) + struct.pack("<I", len(value)) + value + b"\0"

def strings(*values):
    body = b""
    for v in values:
        body = pad(body, 4) + struct.pack("<I", len(v)) + v + b"\0"
    return body

def call(serial, dest, path, iface, member, sig=b"", body=b""):
    fields = field(b"", 1, b"o", path)
    fields = field(fields, 2, b"s", iface)
    fields = field(fields, 3, b"s", member)
    fields = field(fields, 6, b"s", dest)
    if sig:
        fields = field(fields, 8, b"g", sig)
    head = struct.pack("<cBBBIII", b"l", 1, 0, 1, len(body), serial, len(fields)) + fields
    return pad(head, 8) + body

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(address.split("path=", 1)[1])
    s.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
    answer = b""
    while not answer.endswith(b"\r\n"):
        answer += s.recv(1)
    assert answer.startswith(b"OK"), answer
    s.sendall(b"BEGIN\r\n")
    s.sendall(call(1, b"org.freedesktop.DBus", b"/org/freedesktop/DBus", b"org.freedesktop.DBus", b"Hello"))
    return s

ember, manager = b"io.ember.Init1", b"/io/ember/Init1"
service = b"io.ember.Init1.Service"
def nth(i, serial):
    path = manager + b"/service/" + labels[i % len(labels)].encode()
    kind = kinds[i % len(kinds)]
    if kind < 3:
        return call(serial, ember, manager, b"io.ember.Init1.Manager", b"ListServices")
    if kind == 3:
        body = strings(service, b"CpuUsec")
        return call(serial, ember, path, b"org.freedesktop.DBus.Properties", b"Get", b"ss", body)
    if kind == 4:
        body = strings(service)
        return call(serial, ember, path, b"org.freedesktop.DBus.Properties", b"GetAll", b"s", body)
    if kind == 5:
        return call(serial, ember, manager, b"org.freedesktop.DBus.Peer", b"Ping")
    if kind == 6:
        return call(serial, ember, path, b"org.freedesktop.DBus.Peer", b"GetMachineId")
    return call(serial, ember, path, b"org.freedesktop.DBus.Introspectable", b"Introspect")

def reply_serial(fields):
    i = 0
    while i < len(fields):
        i = (i + 7) & ~7
        code, n = fields[i], fields[i + 1]
        sig, i = fields[i + 2:i + 2 + n], i + 3 + n
        if sig == b"g":
            i += fields[i] + 2
            continue
        i = (i + 3) & ~3
        (value,) = struct.unpack_from("<I", fields, i)
        if sig == b"u":
            if code == 5:
                return value
            i += 4
        else:
            i += 4 + value + 1
    return None

# The bus daemon's reply to the last message: it has taken all before it, and passed
# each on to ember-dbus (or refused it at its own limits) before anything sent later.
def drained(s, serial):
    s.sendall(call(serial, b"org.freedesktop.DBus", b"/org/freedesktop/DBus", b"org.freedesktop.DBus", b"GetId"))
    buf = b""
    while True:
        while len(buf) >= 16:
            body, fields = struct.unpack_from("<II", buf, 4)[0], struct.unpack_from("<I", buf, 12)[0]
            start = 16 + fields + (-fields) % 8
            if len(buf) < start + body:
                break
            if buf[1] in (2, 3) and reply_serial(buf[16:16 + fields]) == serial:
                return
            buf = buf[start + body:]
        chunk = s.recv(1 << 16)
        assert chunk, "the bus daemon hung up"
        buf += chunk

sockets = [connect() for _ in range(connections)]
for round in range(calls):
    for n, s in enumerate(sockets):
        s.sendall(nth(round * connections + n, round + 2))
for s in sockets:
    drained(s, calls + 2)
print("sent", flush=True)
sys.stdin.read()
"#;

/// `clients` flooders (see [`FLOOD`]) as nobody, once each has sent all its calls and
/// the bus daemon has taken them.
fn start_flooders(
    bus: &Bus,
    clients: usize,
    connections: usize,
    calls: usize,
    labels: &[String],
    kinds: Option<&str>,
) -> Vec<std::process::Child> {
    let script = bus.dir.path("flood.py");
    std::fs::write(&script, FLOOD).unwrap();
    let (address, labels) = (bus.address(), labels.join(","));
    let (connections, calls) = (connections.to_string(), calls.to_string());
    let mut flooders: Vec<std::process::Child> = (0..clients)
        .map(|_| {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg("/usr/bin/python3")
                .arg(&script)
                .args([&address, &connections, &calls, &labels])
                .args(kinds)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn python3")
        })
        .collect();
    for flooder in &mut flooders {
        let mut said = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(flooder.stdout.as_mut().unwrap()),
            &mut said,
        );
        assert_eq!(said, "sent\n", "a flooder failed: {:?}", flooder.try_wait());
    }
    flooders
}

/// Ends the flooders: their connections close.
fn end_flooders(flooders: Vec<std::process::Child>) {
    for mut flooder in flooders {
        drop(flooder.stdin.take());
        let status = flooder.wait().unwrap();
        assert!(status.success(), "a flooder failed: {status}");
    }
}

/// Found by review: ListServices, Properties Get and GetAll, and org.freedesktop.DBus.Peer
/// each got a task of zbus's own per call, and a Get of a resource figure one more
/// measurement by ember to wait for, with no bound: a flood of calls from any user (the
/// policy lets everyone read) grew ember-dbus by the replies and tasks waiting side by
/// side. Now every call any user can make is answered in zbus's dispatching task, whose
/// queue is bounded, or, if it must wait for ember or the bus, in a task of its own
/// only while one of a fixed number of places is free (else LimitsExceeded at once).
#[test]
fn a_flood_of_calls_from_anyone_leaves_the_adapter_bounded_and_answering() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("call-flood", "");
    let n = 300;
    let ember = Ember::start(
        "dbus-call-flood",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            many_services(n, 7910900)
        ),
    );
    let last = format!("s{}", n - 1);
    ember.wait_state(&last, "active", None, LONG);
    wait_attached(&bus, &ember);
    assert!(wait_for(LONG, || service_property(&bus, &last, "Name").is_some()));
    let adapter = child_named(ember.host_pid(), "ember-dbus").expect("ember-dbus runs");
    let (rss, peak) = (status_kib(adapter, "VmRSS"), status_kib(adapter, "VmHWM"));

    let labels: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    // 8 clients as nobody, each 16 connections and 300 calls on each: 38,400 calls.
    let flooders = start_flooders(&bus, 8, 16, 300, &labels, None);
    // Every call of the flood is queued for ember-dbus: the flooders may go. (While they
    // stay without reading, the bus daemon soon stops reading ember-dbus's replies to
    // them, and then anyone's calls: its own bound on what it holds for a reader.)
    end_flooders(flooders);
    // Each call of the flood is ahead of the next, whose reply says that zbus has
    // dispatched them all (the bus daemon delivers in order, zbus dispatches in order).
    let timeout = format!("--timeout={}", scaled(LONG).as_secs());
    let out = bus.busctl_as_nobody(&[
        &timeout,
        "--json=short",
        "call",
        "io.ember.Init1",
        MANAGER,
        MGR_IFACE,
        "ListServices",
    ]);
    assert!(out.status.success(), "ListServices: {}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows["data"][0]
        .as_array()
        .map(|rows| rows.iter().filter_map(|row| row[0].as_str()).collect())
        .unwrap_or_default();
    assert!(
        labels.iter().all(|l| names.contains(&l.as_str())),
        "ListServices: {names:?}"
    );
    // Each interface that was flooded answers as before, to nobody. A call that waits for
    // a measurement may be refused while the flood's own hold every place: asked again.
    let busy = |out: &Output| text(out).contains("too many calls waiting");
    let service = format!("{MANAGER}/service/s1");
    for (path, iface, method, args, wanted) in [
        (MANAGER, "org.freedesktop.DBus.Peer", "Ping", &[][..], ""),
        (
            &service[..],
            "org.freedesktop.DBus.Peer",
            "GetMachineId",
            &[],
            "s ",
        ),
        (
            &service[..],
            "org.freedesktop.DBus.Properties",
            "GetAll",
            &["s", SVC_IFACE][..],
            "\"MemoryBytes\" t ",
        ),
        (
            &service[..],
            "org.freedesktop.DBus.Properties",
            "Get",
            &["ss", SVC_IFACE, "Tasks"],
            "v t ",
        ),
        (
            &service[..],
            "org.freedesktop.DBus.Properties",
            "Get",
            &["ss", SVC_IFACE, "State"],
            "v s \"active\"",
        ),
        (
            &service[..],
            "org.freedesktop.DBus.Introspectable",
            "Introspect",
            &[],
            "<interface name=\\\"io.ember.Init1.Service\\\">",
        ),
    ] {
        let mut all = vec![
            timeout.as_str(),
            "call",
            "io.ember.Init1",
            path,
            iface,
            method,
        ];
        all.extend_from_slice(args);
        let mut last = None;
        wait_for(LONG, || {
            let out = bus.busctl_as_nobody(&all);
            let again = busy(&out);
            last = Some(out);
            !again
        });
        let out = last.expect("called at least once");
        assert!(
            out.status.success() && text(&out).contains(wanted),
            "{method} at {path}: {}",
            text(&out)
        );
    }
    // And root's changes.
    let out = call(&bus, MANAGER, MGR_IFACE, "RestartService", &["s", "s0"]);
    assert!(out.status.success(), "{}", text(&out));
    // The same process all along.
    assert_eq!(
        child_named(ember.host_pid(), "ember-dbus"),
        Some(adapter),
        "ember-dbus was restarted:\n{}",
        ember.log()
    );
    let (rss_after, peak_after) = (status_kib(adapter, "VmRSS"), status_kib(adapter, "VmHWM"));
    eprintln!(
        "ember-dbus: VmRSS {rss} KiB, then {rss_after} KiB; VmHWM {peak} KiB, then {peak_after} KiB"
    );
    assert!(
        peak_after < peak + 16 * 1024,
        "ember-dbus's peak grew from {peak} KiB to {peak_after} KiB"
    );
    assert!(
        rss_after < rss + 16 * 1024,
        "ember-dbus's RSS grew from {rss} KiB to {rss_after} KiB"
    );
}

/// A call that waits (here a Get of a resource figure, which has ember measure) holds one
/// of a fixed number of places until it is answered; one that finds them all taken is
/// refused at once with LimitsExceeded, and the calls answered from the adapter's copy
/// are answered meanwhile. Measuring the service `__stall_main` stalls ember's main loop
/// for good (a test hook): the first Get of its CpuUsec is never answered, and the next
/// ones wait for it.
#[test]
fn calls_that_wait_are_bounded_and_the_others_answered_meanwhile() {
    if !can_unshare() || !have_dbus() || !have_dbus_send() {
        return;
    }
    let bus = Bus::start("gate", "");
    let ember = Ember::start(
        "dbus-gate",
        &format!(
            "[dbus]\nbus = \"{}\"\ncontrol_group = \"ember\"\n\n{}",
            bus.address(),
            "[service.__stall_main]\ncommand = [\"/bin/sleep\", \"7911001\"]\n"
        ),
    );
    // Not `ember ctl status __stall_main`: that stalls ember too.
    wait_attached(&bus, &ember);
    let mut path = String::new();
    assert!(
        wait_for(LONG, || {
            let get = ["call", "io.ember.Init1", MANAGER, MGR_IFACE, "GetService"];
            let found = json(&bus, &[&get[..], &["s", "__stall_main"]].concat());
            path = found
                .map(|f| f[0].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            property(&bus, &path, SVC_IFACE, "State").is_some_and(|s| s == "active")
        }),
        "__stall_main's object never read active; log:\n{}",
        ember.log()
    );

    // 100 Gets of CpuUsec from nobody, more than there are places (32, MAX_WAITING_READS).
    let label = path.rsplit('/').next().unwrap().to_owned();
    let flooders = start_flooders(&bus, 1, 1, 100, &[label], Some("3"));
    // Queued behind them, a Get of a figure and a GetAll find no place.
    let cpu = dbus_send(
        &bus,
        &path,
        "org.freedesktop.DBus.Properties.Get",
        &[&format!("string:{SVC_IFACE}"), "string:CpuUsec"],
    );
    assert!(
        cpu.contains("org.freedesktop.DBus.Error.LimitsExceeded"),
        "{cpu}"
    );
    let all = dbus_send(
        &bus,
        &path,
        "org.freedesktop.DBus.Properties.GetAll",
        &[&format!("string:{SVC_IFACE}")],
    );
    assert!(
        all.contains("org.freedesktop.DBus.Error.LimitsExceeded"),
        "{all}"
    );
    // Everything else is answered, to nobody, from the adapter's copy.
    for (at, iface, method, args, wanted) in [
        (
            &path[..],
            "org.freedesktop.DBus.Properties",
            "Get",
            &["ss", SVC_IFACE, "State"][..],
            "v s \"active\"",
        ),
        (MANAGER, MGR_IFACE, "ListServices", &[], "\"__stall_main\""),
        (
            MANAGER,
            MGR_IFACE,
            "GetService",
            &["s", "__stall_main"],
            &path,
        ),
        (
            MANAGER,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
            &[],
            &path,
        ),
        (
            &path,
            "org.freedesktop.DBus.Introspectable",
            "Introspect",
            &[],
            SVC_IFACE,
        ),
        (&path, "org.freedesktop.DBus.Peer", "Ping", &[], ""),
        (
            MANAGER,
            "org.freedesktop.DBus.Peer",
            "GetMachineId",
            &[],
            "s ",
        ),
    ] {
        let mut all = vec!["call", "io.ember.Init1", at, iface, method];
        all.extend_from_slice(args);
        let out = bus.busctl_as_nobody(&all);
        assert!(
            out.status.success() && text(&out).contains(wanted),
            "{method} at {at}: {}",
            text(&out)
        );
    }
    let set = dbus_send(
        &bus,
        &path,
        "org.freedesktop.DBus.Properties.Set",
        &[
            &format!("string:{SVC_IFACE}"),
            "string:State",
            "variant:string:x",
        ],
    );
    assert!(
        set.contains("org.freedesktop.DBus.Error.PropertyReadOnly"),
        "{set}"
    );
    end_flooders(flooders);
}

/// systemd's ResetFailed, ResetFailedUnit and Unit.ResetFailed: a failed service becomes
/// inactive and stays down; NFailed follows.
#[test]
fn reset_failed_over_dbus_leaves_failed_services_inactive() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("reset", "");
    let ember = Ember::start(
        "dbus-reset",
        &format!(
            "[dbus]\nbus = \"{}\"\n\n[service.web]\ncommand = [\"/bin/sleep\", \"7910031\"]\n{}",
            bus.address(),
            ["one", "two", "three"]
                .map(|n| format!("\n[service.{n}]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\nrestart = \"never\"\n"))
                .concat()
        ),
    );
    for name in ["one", "two", "three"] {
        ember.wait_state(name, "failed", None, LONG);
    }
    wait_attached(&bus, &ember);
    let out = text(&bus.busctl(&["introspect", "io.ember.Init1", MANAGER]));
    assert!(
        out.contains(".ResetFailed ") && out.contains(".ResetFailedService"),
        "{out}"
    );
    assert!(wait_for(LONG, || property(
        &bus, MANAGER, MGR_IFACE, "NFailed"
    )
    .is_some_and(|v| v == 3)));

    let out = call(
        &bus,
        "/io/ember/Init1/service/one",
        SVC_IFACE,
        "ResetFailed",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let one = ember.wait_state("one", "inactive", Some("dead"), LONG);
    assert_eq!(one["want"], "down");
    let out = call(
        &bus,
        MANAGER,
        MGR_IFACE,
        "ResetFailedService",
        &["s", "two"],
    );
    assert!(out.status.success(), "{}", text(&out));
    ember.wait_state("two", "inactive", Some("dead"), LONG);
    assert_eq!(ember.status("three")["state"], "failed");
    let out = call(
        &bus,
        MANAGER,
        MGR_IFACE,
        "ResetFailedService",
        &["s", "nope"],
    );
    assert!(
        !out.status.success() && text(&out).contains("no service named"),
        "{}",
        text(&out)
    );

    let out = call(&bus, MANAGER, MGR_IFACE, "ResetFailed", &[]);
    assert!(out.status.success(), "{}", text(&out));
    ember.wait_state("three", "inactive", Some("dead"), LONG);
    assert!(wait_for(LONG, || property(
        &bus, MANAGER, MGR_IFACE, "NFailed"
    )
    .is_some_and(|v| v == 0)));
    assert_eq!(ember.status("web")["state"], "active");

    // Kill (systemd's Kill and KillUnit): a signal to its processes; one that is not
    // running is refused, an unknown signal too.
    let before = ember.status("web")["pid"].clone();
    let path = "/io/ember/Init1/service/web";
    let out = call(&bus, path, SVC_IFACE, "Kill", &["sb", "HUP", "true"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_for(LONG, || {
        let s = ember.status("web");
        s["state"] == "active" && s["pid"] != before
    }));
    let out = call(
        &bus,
        MANAGER,
        MGR_IFACE,
        "KillService",
        &["ss", "one", "TERM"],
    );
    assert!(
        !out.status.success() && text(&out).contains("one is not running"),
        "{}",
        text(&out)
    );
    let out = call(
        &bus,
        MANAGER,
        MGR_IFACE,
        "KillService",
        &["ss", "web", "SIGWHAT"],
    );
    assert!(
        !out.status.success() && text(&out).contains("unknown signal"),
        "{}",
        text(&out)
    );
}

/// Root's StopService of ember's own adapter is refused with the reason and the way that
/// works (found by a hostile review: root was told "not allowed to this client (the
/// ember-dbus adapter); root may").
#[test]
fn embers_own_adapters_are_refused_with_the_reason_even_to_root() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("own-adapter", "");
    let ember = start("dbus-own-adapter", &bus);
    wait_attached(&bus, &ember);
    for method in ["StopService", "RestartService"] {
        let out = call(&bus, MANAGER, MGR_IFACE, method, &["s", "ember-dbus"]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains("ember's own adapters")
                && said.contains("ember ctl restart ember-dbus")
                && !said.contains("not allowed to this client"),
            "{method}: {said}"
        );
    }
    let object = "/io/ember/Init1/service/ember_2ddbus";
    let out = call(&bus, object, SVC_IFACE, "Stop", &[]);
    assert!(
        text(&out).contains("ember's own adapters"),
        "{}",
        text(&out)
    );
    assert_eq!(ember.status("ember-dbus")["state"], "active");
}

/// The manager's Device follows a reload that renames the board, as MQTT's topics do
/// (found by a hostile review: ember-dbus kept the name its first hello gave it, while
/// ember-mqtt, restarted by the reload, published under the new one).
#[test]
fn the_device_property_follows_a_reload() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("device-reload", "");
    let ember = Ember::start(
        "dbus-device-reload",
        &format!(
            "[system]\ndevice = \"before\"\n\n[dbus]\nbus = \"{}\"\n\n{SERVICES}",
            bus.address()
        ),
    );
    wait_attached(&bus, &ember);
    let device = || property(&bus, MANAGER, MGR_IFACE, "Device");
    assert_eq!(device().expect("Device"), "before");
    let config = std::fs::read_to_string(&ember.config).expect("config");
    std::fs::write(&ember.config, config.replace("\"before\"", "\"after\"")).expect("write");
    let out = ember.ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut now = None;
    assert!(
        wait_for(LONG, || {
            now = device();
            now.as_ref().is_some_and(|d| d == "after")
        }),
        "Device is {now:?}"
    );
}

/// A bus ember cannot attach to is said at the default log level, with the bus and the
/// cause, once per cause (found by a hostile review: a wrong address, or a bus whose
/// policy does not let ember own its name, was logged at debug level only, and the
/// adapter stayed silent for good).
#[test]
fn a_bus_that_cannot_be_attached_to_is_said_once_with_why() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let nowhere = TempDir::new("dbus-nowhere");
    let address = format!("unix:path={}", nowhere.path("no-bus.sock").display());
    let deny = r#"<policy context="mandatory"><deny own="io.ember.Init1"/></policy>"#;
    let denying = Bus::start("deny-own", deny);
    for (tag, address, cause) in [
        ("dbus-nowhere", address, "No such file"),
        ("dbus-deny-own", denying.address(), "io.ember.Init1"),
    ] {
        let ember = Ember::start(tag, &format!("[dbus]\nbus = \"{address}\"\n\n{SERVICES}"));
        let retries = |log: &str| log.matches("DEBUG dbus: cannot attach").count();
        assert!(
            wait_for(LONG, || retries(&ember.log()) >= 2),
            "{}",
            ember.log()
        );
        let log = ember.log();
        let said: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN dbus: cannot attach"))
            .collect();
        assert_eq!(said.len(), 1, "{log}");
        assert!(
            said[0].contains(&address) && said[0].contains(cause),
            "{}",
            said[0]
        );
    }
}

/// An unknown service is named shortened in the error, as ember's own errors do (found
/// by a hostile review: a 30 KB name came back whole).
#[test]
fn an_unknown_long_name_is_shortened_in_the_error() {
    if !can_unshare() || !have_dbus() {
        return;
    }
    let bus = Bus::start("long-name", "");
    let ember = start("dbus-long-name", &bus);
    wait_attached(&bus, &ember);
    let long = "w".repeat(30_000);
    for method in ["GetService", "StartService"] {
        let out = call(&bus, MANAGER, MGR_IFACE, method, &["s", &long]);
        let said = text(&out);
        assert!(
            said.contains("UnknownService") || said.contains("no service"),
            "{said:.300}"
        );
        assert!(said.len() < 1000, "{method}: {} bytes", said.len());
    }
}
