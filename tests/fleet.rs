//! `ember fleet` (ember-fleet, run by `ember fleet ...`) against real mosquitto brokers and
//! real boards: each an ember in a PID namespace of its own with its MQTT adapter, as
//! the MQTT tests run them. A fleet with a board offline, one that refuses, one whose
//! service fails; a live view with a board that missed changes; two brokers joined by a
//! bridge, driven from one side.

mod common;

use common::broker::{have_mosquitto, Broker};
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(15);

/// ember-fleet, beside ember (where `ember fleet` looks for it): built by `cargo test
/// --workspace` (or `cargo build -p ember-fleet`).
fn have_fleet() -> bool {
    let path = PathBuf::from(EMBER).with_file_name("ember-fleet");
    assert!(
        path.exists(),
        "{} is missing: run the tests with --workspace, or `cargo build -p ember-fleet` first",
        path.display()
    );
    true
}

/// `ember fleet ARGS... --broker URL`.
fn fleet(broker: &Broker, args: &[&str]) -> Output {
    Command::new(EMBER)
        .arg("fleet")
        .args(args)
        .args(["--broker", &broker.url()])
        .output()
        .expect("run ember fleet")
}

/// The same with --json: the exit status and the document.
fn fleet_json(broker: &Broker, args: &[&str]) -> (Option<i32>, Value) {
    let out = fleet(broker, &[args, &["--json"]].concat());
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ember fleet {args:?} --json: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), value)
}

/// A deadline for ember fleet's --timeout, scaled to this machine.
fn timeout(quiet: Duration) -> String {
    format!("{}s", scaled(quiet).as_secs().max(1))
}

/// A board: ember as PID 1 of a namespace, with `[mqtt]` on `broker`.
fn board(broker: &Broker, device: &str, mqtt: &str, services: &str) -> Ember {
    Ember::start(
        &format!("fleet-{device}"),
        &format!(
            "[system]\ndevice = \"{device}\"\n\n[mqtt]\nurl = \"{}\"\nkeep_alive = \"5s\"\n{mqtt}\n{services}",
            broker.url()
        ),
    )
}

fn web_and_db(marker: u32) -> String {
    format!(
        "[service.web]\ncommand = [\"/bin/sleep\", \"{marker}\"]\n\n[service.db]\ncommand = [\"/bin/sleep\", \"{}\"]\n",
        marker + 1
    )
}

/// The boards of a status document, by device.
fn boards(status: &Value) -> Vec<(String, Value)> {
    status["boards"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|b| (b["device"].as_str().unwrap_or("").to_owned(), b.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `ember fleet status` shows every device of `online` online and every one of
/// `offline` offline; returns that status.
fn wait_status(broker: &Broker, online: &[&str], offline: &[&str]) -> Value {
    let mut last = Value::Null;
    let seen = wait_for(LONG, || {
        let (_, status) = fleet_json(broker, &["status"]);
        last = status;
        let list = boards(&last);
        let is = |device: &str, word: &str| {
            list.iter()
                .any(|(d, b)| d == device && b["status"] == word && b["system"].is_object())
        };
        online.iter().all(|d| is(d, "online")) && offline.iter().all(|d| is(d, "offline"))
    });
    assert!(
        seen,
        "never online {online:?}, offline {offline:?}: {last:#}"
    );
    last
}

/// The outcome of each board in a command's document.
fn outcome(report: &Value, device: &str) -> Value {
    report["boards"]
        .as_array()
        .and_then(|list| list.iter().find(|b| b["device"] == device).cloned())
        .unwrap_or_else(|| panic!("no outcome for {device}: {report:#}"))
}

#[test]
fn a_fleet_with_an_offline_board_a_refusal_and_a_failure() {
    if !can_unshare() || !have_mosquitto() || !have_fleet() {
        return;
    }
    let broker = Broker::start("fleet", "");
    let lab = "groups = [\"lab\"]";
    let f1 = board(&broker, "f1", lab, &web_and_db(7960001));
    let f2 = board(&broker, "f2", lab, &web_and_db(7960011));
    // Takes commands for db only: web gets not-allowed.
    let f3 = board(
        &broker,
        "f3",
        "groups = [\"lab\"]\nallow = [\"db\"]",
        &web_and_db(7960021),
    );
    // web's program is not there: it fails at every start, with the OS error.
    let f4 = board(
        &broker,
        "f4",
        lab,
        "[service.web]\ncommand = [\"/nonexistent/ember-test-web\"]\nrestart = \"never\"\n\n[service.db]\ncommand = [\"/bin/sleep\", \"7960032\"]\n",
    );
    let f5 = board(&broker, "f5", lab, &web_and_db(7960041));
    for ember in [&f1, &f2, &f3, &f5] {
        ember.wait_state("web", "active", None, LONG);
    }
    f4.wait_state("web", "failed", None, LONG);
    wait_status(&broker, &["f1", "f2", "f3", "f4", "f5"], &[]);

    // f5 goes away without a word: the broker publishes its last will.
    drop(f5);
    let status = wait_status(&broker, &["f1", "f2", "f3", "f4"], &["f5"]);
    assert_eq!(status["complete"], true, "{status:#}");
    assert_eq!(status["counts"]["boards"], 5, "{status:#}");
    assert_eq!(status["services"]["web"]["failed"][0], "f4", "{status:#}");
    assert_eq!(status["services"]["web"]["offline"][0], "f5", "{status:#}");
    let f4_web = &boards(&status)[3].1["services"]["web"];
    assert!(
        f4_web["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{f4_web}"
    );
    // The same as a table, in words.
    let out = fleet(&broker, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("5 boards answered (4 online, 1 offline)"),
        "{text}"
    );
    assert!(
        text.contains("\nweb: 3 active, 1 failed (f4), 1 offline (f5)\n"),
        "{text}"
    );
    assert!(text.contains("\nf5 "), "offline boards are listed: {text}");

    // One restart for the group, waited for: two boards do it, one refuses, one fails,
    // one is offline. Exit 1: a refusal or a failure comes first.
    let (p1, p2) = (
        f1.status("web")["pid"].clone(),
        f2.status("web")["pid"].clone(),
    );
    let (code, report) = fleet_json(
        &broker,
        &[
            "restart",
            "web",
            "--group",
            "lab",
            "--wait",
            "--timeout",
            &timeout(LONG),
        ],
    );
    assert_eq!(code, Some(1), "{report:#}");
    for device in ["f1", "f2"] {
        assert_eq!(outcome(&report, device)["outcome"], "done", "{report:#}");
    }
    let f3_out = outcome(&report, "f3");
    assert_eq!(f3_out["outcome"], "refused", "{report:#}");
    assert_eq!(f3_out["code"], "not-allowed", "{report:#}");
    let f4_out = outcome(&report, "f4");
    assert_eq!(f4_out["outcome"], "failed", "{report:#}");
    assert!(
        f4_out["message"]
            .as_str()
            .is_some_and(|m| m.contains("web failed")),
        "the reason: {report:#}"
    );
    assert_eq!(outcome(&report, "f5")["outcome"], "offline", "{report:#}");
    assert_eq!(report["exit"], 1);
    // Done means done: the new runs are up when ember fleet says so.
    for (ember, before) in [(&f1, p1), (&f2, p2)] {
        let now = ember.status("web");
        assert_eq!(now["state"], "active", "{now}");
        assert_ne!(now["pid"], before, "{now}");
    }
    assert_eq!(f3.status("web")["restarts"], 0);

    // The same in words: a line for each board that did not do it.
    let out = fleet(
        &broker,
        &[
            "restart",
            "web",
            "--group",
            "lab",
            "--wait",
            "-t",
            &timeout(LONG),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("2 done, 1 refused, 1 failed, 1 offline"),
        "{text}"
    );
    assert!(text.contains("\n  f3  refused (not-allowed): "), "{text}");
    assert!(text.contains("\n  f4  failed: web failed"), "{text}");
    assert!(text.contains("\n  f5  offline: "), "{text}");

    // Board by board, not waited for: db stops on f1 alone.
    let (code, report) = fleet_json(&broker, &["stop", "db", "--device", "f1"]);
    assert_eq!(code, Some(0), "{report:#}");
    f1.wait_state("db", "inactive", None, LONG);
    assert_eq!(f2.status("db")["state"], "active");
    let (code, report) = fleet_json(&broker, &["start", "db", "--device", "f1", "--wait"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(f1.status("db")["state"], "active");
    // Only the offline board selected: exit 4, and it is listed.
    let (code, report) = fleet_json(&broker, &["restart", "db", "--device", "f5", "--wait"]);
    assert_eq!(code, Some(4), "{report:#}");
    assert_eq!(outcome(&report, "f5")["outcome"], "offline");
    // Nobody selected: exit 5, nothing sent.
    let out = fleet(&broker, &["restart", "web", "--group", "nobody"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing sent"));
}

#[test]
fn watch_shows_each_change_and_a_board_that_missed_some() {
    if !can_unshare() || !have_mosquitto() || !have_fleet() {
        return;
    }
    let broker = Broker::start("fleet-watch", "");
    let w1 = board(&broker, "w1", "groups = [\"lab\"]", &web_and_db(7960101));
    w1.wait_state("web", "active", None, LONG);
    wait_status(&broker, &["w1"], &[]);
    let dir = TempDir::new("fleet-watch-out");
    let (out, err) = (dir.path("out"), dir.path("err"));
    let mut watch = Command::new(EMBER)
        .args(["fleet", "watch", "--lines", "--broker", &broker.url()])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("ember fleet watch");
    // It says so once it has read the retained states.
    assert!(
        wait_for(LONG, || lines(&err)
            .iter()
            .any(|l| l.starts_with("watching 1 boards"))),
        "{:?}",
        lines(&err)
    );
    let seen = |needle: &str| wait_for(LONG, || lines(&out).iter().any(|l| l.contains(needle)));
    // A change as it happens.
    assert!(w1.ctl(&["restart", "web"]).status.success());
    assert!(seen("w1 web active (running) pid"), "{:?}", lines(&out));
    // Changes while the board's adapter is away: it comes back with the latest states
    // only, and the numbers between are missed.
    assert!(w1.ctl(&["stop", "ember-mqtt"]).status.success());
    assert!(seen("w1 offline"), "{:?}", lines(&out));
    assert!(w1.ctl(&["restart", "db"]).status.success());
    assert!(w1.ctl(&["start", "ember-mqtt"]).status.success());
    assert!(seen("w1 online"), "{:?}", lines(&out));
    assert!(seen("w1 missed "), "{:?}", lines(&out));
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn two_bridged_brokers_are_one_fleet_from_either_side() {
    if !can_unshare() || !have_mosquitto() || !have_fleet() {
        return;
    }
    let a = Broker::start("fleet-bridge-a", "");
    // The bridge of the README: broker B carries ember/# both ways to broker A.
    let b = Broker::start(
        "fleet-bridge-b",
        &format!(
            "connection fleet-a\naddress 127.0.0.1:{}\ntopic ember/# both 1\ncleansession true\nrestart_timeout 1\n",
            a.port
        ),
    );
    let all = "groups = [\"all\"]";
    let boards = [
        ("a1", board(&a, "a1", all, &web_and_db(7960201))),
        ("a2", board(&a, "a2", all, &web_and_db(7960211))),
        ("b1", board(&b, "b1", all, &web_and_db(7960221))),
        ("b2", board(&b, "b2", all, &web_and_db(7960231))),
    ];
    for (_, ember) in &boards {
        ember.wait_state("web", "active", None, LONG);
    }
    let names = ["a1", "a2", "b1", "b2"];
    // Each side sees every board.
    wait_status(&a, &names, &[]);
    wait_status(&b, &names, &[]);
    let before: Vec<Value> = boards
        .iter()
        .map(|(_, e)| e.status("web")["pid"].clone())
        .collect();
    // One restart from A's side reaches the boards behind the bridge, and their answers
    // come back.
    let (code, report) = fleet_json(
        &a,
        &[
            "restart",
            "web",
            "--group",
            "all",
            "--wait",
            "-t",
            &timeout(LONG),
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["counts"]["done"], 4, "{report:#}");
    for ((device, ember), pid) in boards.iter().zip(before) {
        let now = ember.status("web");
        assert_eq!(now["state"], "active", "{device}: {now}");
        assert_ne!(now["pid"], pid, "{device} was not restarted: {now}");
    }
    // And one board behind the bridge, from A, waited for.
    let (code, report) = fleet_json(&a, &["stop", "db", "--device", "b2", "--wait"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(boards[3].1.status("db")["state"], "inactive");
    // A board behind the bridge that goes away is offline on A's side too.
    let [_, _, _, (_, b2)] = boards;
    drop(b2);
    wait_status(&a, &["a1", "a2", "b1"], &["b2"]);
}

/// What boards publish reaches the operator's terminal with its control characters
/// escaped, never raw: a state, a group or a reason holding an escape sequence would
/// otherwise clear, retitle or recolour the terminal of whoever runs `ember fleet`.
/// Anyone who may publish under the prefix can write them. (mosquitto itself refuses
/// control characters in topics, so board and service names are not tried here.)
#[test]
fn escape_sequences_from_a_board_do_not_reach_the_terminal_raw() {
    if !have_mosquitto() || !have_fleet() {
        return;
    }
    let broker = Broker::start("fleet-escape", "");
    let device = "evil";
    let publish = |topic: String, message: &str| {
        let out = broker.publish(&topic, message, &["-r"]);
        assert!(out.status.success(), "{out:?}");
    };
    publish(format!("ember/{device}/status"), "online");
    publish(
        format!("ember/{device}/system"),
        r#"{"seq":1,"state":"running\u001b]0;owned\u0007","groups":["g\u001b[31m"]}"#,
    );
    publish(
        format!("ember/{device}/service/web/state"),
        r#"{"seq":2,"state":"failed","sub_state":"exit\u009bcode","reason":"boom\u001b[2J\rgone"}"#,
    );
    // `script` gives ember fleet a terminal, as an operator's would be.
    let on_terminal = |args: &str| {
        let out = Command::new("script")
            .arg("-qec")
            .arg(format!("{EMBER} fleet {args} --broker {}", broker.url()))
            .arg("/dev/null")
            .output()
            .expect("script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_terminal("status");
    assert!(shown.contains("running\\u{1b}]0;owned\\u{7}"), "{shown:?}");
    assert!(shown.contains("g\\u{1b}[31m"), "{shown:?}");
    assert!(
        !shown.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "raw: {shown:?}"
    );
    // A change as it happens, in watch's lines.
    let watch = std::thread::scope(|scope| {
        let watch = scope.spawn(|| on_terminal(&format!("watch --lines -t {}", timeout(LONG))));
        // The change is published once the watch has had time to read the retained
        // states, and again until the watch ends, so a slow start cannot miss it.
        while !watch.is_finished() {
            publish(
                format!("ember/{device}/service/db/state"),
                r#"{"seq":3,"state":"failed","sub_state":"exit-code","reason":"late\u001b[2J"}"#,
            );
            publish(format!("ember/{device}/service/db/state"), "");
            std::thread::sleep(Duration::from_millis(200));
        }
        watch.join().expect("watch")
    });
    assert!(watch.contains("late\\u{1b}[2J"), "{watch:?}");
    assert!(
        !watch.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "raw: {watch:?}"
    );
}

/// Whatever a board's retained topics say, and whatever deadline the operator gives,
/// `ember fleet` answers instead of panicking (found by a hostile review: one retained
/// state with `since_usec` past the year 9999, which anyone who may publish under the
/// prefix can leave, made `status` and every command panic for the whole fleet; and
/// `--timeout 18000000000000000000s` panicked adding it to the clock).
#[test]
fn no_retained_state_or_timeout_makes_ember_fleet_panic() {
    if !have_mosquitto() || !have_fleet() {
        return;
    }
    let broker = Broker::start("fleet-far", "");
    let publish = |topic: &str, message: &str| {
        let out = broker.publish(topic, message, &["-r"]);
        assert!(out.status.success(), "{out:?}");
    };
    for (device, online) in [("far-on", "online"), ("far-off", "offline")] {
        publish(&format!("ember/{device}/status"), online);
        publish(
            &format!("ember/{device}/system"),
            r#"{"seq":1,"state":"running","groups":["far"]}"#,
        );
        publish(
            &format!("ember/{device}/service/web/state"),
            r#"{"seq":2,"name":"web","state":"active","sub_state":"running","want":"up","since_usec":18446744073709551615}"#,
        );
    }
    let said = |out: &Output| {
        format!(
            "{:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let quick = timeout(LONG);
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["watch", "--lines", "-t", "1s"],
        vec!["restart", "web", "--group", "far", "-t", &quick],
        vec!["stop", "web", "--device", "far-off", "--json"],
    ] {
        let out = fleet(&broker, &args);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", said(&out));
        assert!(!said(&out).contains("panicked"), "{args:?}: {}", said(&out));
        // (watch prints changes only: the retained states are its starting point.)
        if args[0] != "watch" {
            assert!(said(&out).contains("far-"), "{args:?}: {}", said(&out));
        }
    }
    for args in [
        vec!["status"],
        vec!["watch"],
        vec!["restart", "web", "--group", "far", "--wait"],
    ] {
        let out = fleet(
            &broker,
            &[&args[..], &["--timeout", "18000000000000000000s"]].concat(),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", said(&out));
        assert!(said(&out).contains("--timeout"), "{args:?}: {}", said(&out));
    }
}

/// `ember fleet kill` and `ember fleet reset-failed`: the signal and the reset reach each
/// board of the group, each board's outcome said; a board where the service does not run
/// says so.
#[test]
fn kill_and_reset_failed_reach_every_board_of_a_group() {
    if !can_unshare() || !have_mosquitto() || !have_fleet() {
        return;
    }
    let broker = Broker::start("fleet-kill", "");
    let services = |marker: u32| {
        format!(
            "{}\n[service.broken]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\nrestart = \"never\"\n",
            web_and_db(marker)
        )
    };
    let k1 = board(&broker, "k1", "groups = [\"ops\"]", &services(7960201));
    let k2 = board(&broker, "k2", "groups = [\"ops\"]", &services(7960211));
    let before: Vec<Value> = [&k1, &k2]
        .iter()
        .map(|b| {
            b.wait_state("broken", "failed", None, LONG);
            b.wait_state("web", "active", None, LONG)["pid"].clone()
        })
        .collect();
    wait_status(&broker, &["k1", "k2"], &[]);

    let t = timeout(LONG);
    let (code, report) = fleet_json(
        &broker,
        &[
            "kill",
            "web",
            "--group",
            "ops",
            "--signal",
            "HUP",
            "--timeout",
            &t,
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    for (board, pid) in [&k1, &k2].iter().zip(&before) {
        assert!(wait_for(LONG, || {
            let web = board.status("web");
            web["state"] == "active" && web["pid"] != *pid
        }));
    }
    let (code, report) = fleet_json(
        &broker,
        &["kill", "broken", "--device", "k1", "--timeout", &t],
    );
    assert_eq!(code, Some(1), "{report:#}");
    let k1_out = outcome(&report, "k1");
    assert!(
        k1_out.to_string().contains("broken is not running"),
        "{report:#}"
    );

    let (code, report) = fleet_json(
        &broker,
        &["reset-failed", "broken", "--group", "ops", "--timeout", &t],
    );
    assert_eq!(code, Some(0), "{report:#}");
    for board in [&k1, &k2] {
        board.wait_state("broken", "inactive", Some("dead"), LONG);
    }
    // What goes with other commands only is a usage error, before anything is sent.
    for args in [
        &["reset-failed", "broken", "--group", "ops", "--wait"][..],
        &["restart", "web", "--group", "ops", "--signal", "HUP"][..],
    ] {
        assert_eq!(fleet(&broker, args).status.code(), Some(2), "{args:?}");
    }
}
