//! `ember ctl reexec` with a real ember as PID 1 of a PID namespace: every service handed
//! to a second binary, which takes over with the same pids, reaps and counts on, and
//! keeps reading their output.

mod common;

use common::*;
use serde_json::Value;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Zombies among the namespace's processes (children of its PID 1, seen from the host).
fn zombies(init: i32) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&init.to_string().as_str())
        })
        .count()
}

#[test]
fn a_second_binary_takes_over_every_service_with_the_same_pids() {
    if !can_unshare() {
        return;
    }
    let mut services = String::new();
    for i in 0..20 {
        services.push_str(&format!(
            "[service.s{i:02}]\ncommand = [\"/bin/sleep\", \"7930{i:03}\"]\nstdout = \"null\"\n\n"
        ));
    }
    services.push_str(
        r#"
[service."worker@"]
command = ["/bin/sleep", "7930300"]

[service.chatty]
command = ["/bin/sh", "-c", "while true; do echo tick; sleep 0.1; done"]

[service.crasher]
command = ["/bin/sh", "-c", "sleep 0.3; exit 1"]
restart = "always"
restart_delay = "100ms"
start_limit = 0
"#,
    );
    let ember = Ember::start("reexec", &services);
    for i in 0..20 {
        ember.wait_state(&format!("s{i:02}"), "active", None, LONG);
    }
    ember.wait_state("chatty", "active", None, LONG);
    assert!(wait_for(LONG, || ember.status("crasher")["restarts"]
        .as_u64()
        .is_some_and(|r| r >= 2)));
    // One made on demand: handed over too, not stopped as one the configuration lacks.
    let out = ember.ctl(&["start", "worker@x", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let before: Vec<Value> = ember.all();
    let pid_of = |all: &[Value], name: &str| {
        all.iter()
            .find(|s| s["name"] == name)
            .map(|s| s["pid"].clone())
            .unwrap_or(Value::Null)
    };
    let restarts_before = ember.status("crasher")["restarts"].as_u64().unwrap_or(0);
    let seq_before = ember.status("chatty")["seq"].as_u64().unwrap_or(0);

    // A second binary: a copy of this one, at another path.
    let second = ember.dir.path("ember-second");
    std::fs::copy(EMBER, &second).expect("copy ember");
    let out = ember.ctl(&["reexec", "--binary", &second.display().to_string()]);
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        text(&out),
        ember.log()
    );
    assert!(text(&out).contains("took over"), "{}", text(&out));

    let init = ember.host_pid();
    let exe = std::fs::read_link(format!("/proc/{init}/exe")).expect("exe");
    assert_eq!(exe, second, "PID 1 is not the second binary");
    let after = ember.all();
    for i in 0..20 {
        let name = format!("s{i:02}");
        assert_eq!(
            pid_of(&before, &name),
            pid_of(&after, &name),
            "{name}'s pid changed"
        );
        assert_eq!(ember.status(&name)["state"], "active");
    }
    assert_eq!(pid_of(&before, "chatty"), pid_of(&after, "chatty"));
    assert_eq!(pid_of(&before, "worker@x"), pid_of(&after, "worker@x"));
    // ... and is still one made on demand: a stop forgets it.
    let out = ember.ctl(&["stop", "worker@x", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!ember.all().iter().any(|s| s["name"] == "worker@x"));
    // The crash-looper is still reaped and restarted, its count going on.
    assert!(
        wait_for(LONG, || ember.status("crasher")["restarts"]
            .as_u64()
            .is_some_and(|r| r >= restarts_before + 2)),
        "the crasher's restarts stopped at {restarts_before}; log:\n{}",
        ember.log()
    );
    // Its output is still read: new lines reach `ctl logs`.
    let lines = |ember: &Ember| {
        text(&ember.ctl(&["logs", "chatty", "-n", "200"]))
            .lines()
            .count()
    };
    let seen = lines(&ember);
    assert!(
        wait_for(LONG, || lines(&ember) > seen || seen >= 200),
        "no new line from chatty"
    );
    assert!(
        ember.status("chatty")["seq"].as_u64().unwrap_or(0) >= seq_before,
        "seq went back"
    );
    assert!(wait_for(LONG, || zombies(init) == 0), "zombies left");
    // Still in charge: a stop works, and a clean exit at the end.
    let out = ember.ctl(&["stop", "s00", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A binary that cannot take over (not ember, or one that reads another handover
/// format) is refused before any exec: the old PID 1 runs on, as it was.
#[test]
fn a_binary_that_cannot_take_over_is_refused_and_the_old_one_runs_on() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-refused",
        "[service.web]\ncommand = [\"/bin/sleep\", \"7930100\"]\n",
    );
    let web = ember.wait_state("web", "active", None, LONG);
    let init = ember.host_pid();
    let exe = std::fs::read_link(format!("/proc/{init}/exe")).expect("exe");
    // Binaries that exit 0 when asked, without being ember: /bin/true, a script, one that
    // prints something else. exec'd in PID 1's place, each would end the namespace.
    let script = |name: &str, body: &str| {
        let path = ember.dir.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.display().to_string()
    };
    let says_yes = script("says-yes", "exit 0");
    let not_executable = ember.dir.path("not-executable").display().to_string();
    std::fs::copy(EMBER, &not_executable).unwrap();
    std::fs::set_permissions(
        &not_executable,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let says_other = script("says-other", "echo yes; exit 0");
    let says_too_much = script("says-too-much", "yes | head -c 100000; exit 0");
    for (binary, why) in [
        ("/bin/false", "cannot take over"),
        ("/bin/true", "without saying so"),
        (&says_yes, "without saying so"),
        (&says_other, "without saying so"),
        (&says_too_much, "without saying so"),
        ("/nonexistent/ember", "no such file"),
        ("/", "it is a directory"),
        (&not_executable, "not executable"),
        ("relative/ember", "absolute path"),
    ] {
        let out = ember.ctl(&["reexec", "--binary", binary]);
        assert!(!out.status.success(), "{binary} was taken");
        assert!(text(&out).contains(why), "{binary}: {}", text(&out));
    }
    // The next binary reads the configuration again: one with errors is refused first.
    let good = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(
        &ember.config,
        format!(
            "{good}
[service.broken]
"
        ),
    )
    .unwrap();
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("fails `ember check`") && text(&out).contains("broken"),
        "{}",
        text(&out)
    );
    std::fs::write(&ember.config, good).unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/exe")).ok(),
        Some(exe)
    );
    assert_eq!(ember.status("web")["pid"], web["pid"]);
}

/// The adapters carry on through a reexec: ember-mqtt keeps its pid and its broker
/// connection (the broker never says offline), connects to the new binary, and takes
/// commands from it.
#[test]
fn the_mqtt_adapter_carries_on_through_a_reexec() {
    if !can_unshare() || !common::broker::have_mosquitto() {
        return;
    }
    let broker = common::broker::Broker::start("reexec", "");
    let ember = Ember::start(
        "reexec-mqtt",
        &format!(
            "[system]\ndevice = \"rx\"\n\n[mqtt]\nurl = \"{}\"\n\n[service.web]\ncommand = [\"/bin/sleep\", \"7930200\"]\n",
            broker.url()
        ),
    );
    ember.wait_state("web", "active", None, LONG);
    let adapter = ember.wait_state("ember-mqtt", "active", None, LONG);
    assert!(wait_for(LONG, || broker.collect(
        "ember/rx/status",
        1,
        std::time::Duration::from_secs(1)
    ) == ["ember/rx/status online"]));
    let status = broker.subscribe("ember/rx/status");
    let states = broker.subscribe("ember/rx/service/web/state");

    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        text(&out),
        ember.log()
    );
    // The adapter is the same process, still active, and the board never went offline.
    assert_eq!(ember.status("ember-mqtt")["pid"], adapter["pid"]);
    let replies = broker.subscribe_with("ember/rx/reply", &["-q", "1"]);
    broker.publish(
        "ember/rx/service/web/cmd",
        r#"{"cmd":"restart","id":"after-reexec"}"#,
        &[],
    );
    let reply = replies
        .wait_for("\"after-reexec\"", LONG)
        .unwrap_or_else(|| panic!("no reply after the reexec; log:\n{}", ember.log()));
    assert!(reply.contains(r#""ok":true"#), "{reply}");
    assert!(
        !status.lines().iter().any(|l| l.contains("offline")),
        "the board said offline: {:?}",
        status.lines()
    );
    // Only web's own restart shows on its state topic: no transient state of the reexec.
    let seen: Vec<String> = states.lines();
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("\"inactive\"") && !l.contains("restart")),
        "{seen:?}"
    );
}

/// A slow binary: asked whether it takes over, it answers (as ember) only once the test
/// has made the file `gate`; run otherwise, it is ember.
fn gated_ember(ember: &Ember, name: &str) -> (String, std::path::PathBuf) {
    let gate = ember.dir.path(&format!("{name}.gate"));
    let path = ember.dir.path(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --handover-accepts ]; then\n  while [ ! -e {} ]; do sleep 0.02; done\nfi\nexec {EMBER} \"$@\"\n",
            gate.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (path.display().to_string(), gate)
}

/// `ember ctl reexec` in a thread: its output once it returns.
fn reexec_in_background(
    ember: &Ember,
    binary: &str,
) -> std::thread::JoinHandle<std::process::Output> {
    let (socket, binary) = (ember.socket.clone(), binary.to_owned());
    std::thread::spawn(move || {
        std::process::Command::new(EMBER)
            .arg("ctl")
            .arg("--socket")
            .arg(socket)
            .args(["reexec", "--binary", &binary])
            .output()
            .expect("run ember ctl")
    })
}

/// What comes while the new binary is being asked is not lost by the exec that follows:
/// a poweroff then refuses the reexec (exec'd, the next binary knew nothing of the
/// shutdown, and the board never powered off), and a second reexec is refused at once
/// (it would have been told that a binary it did not ask for took over).
#[test]
fn a_poweroff_or_a_second_reexec_while_the_binary_is_asked_is_not_lost() {
    if !can_unshare() {
        return;
    }
    let release = std::env::temp_dir().join(format!("ember-reexec-release-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    let ember = Ember::start(
        "reexec-meanwhile",
        &format!(
            "[service.slow]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'while [ ! -e {} ]; do sleep 0.02; done; exit 0' TERM; while :; do sleep 0.1; done\"]\nstop_timeout = \"10m\"\n",
            release.display()
        ),
    );
    ember.wait_state("slow", "active", None, LONG);
    let init = ember.host_pid();
    let exe = std::fs::read_link(format!("/proc/{init}/exe")).expect("exe");

    // Two at once: the second is refused while the first is asked.
    let (gated, gate) = gated_ember(&ember, "gated");
    let first = reexec_in_background(&ember, &gated);
    assert!(
        wait_for(LONG, || ember.log().contains("asking")),
        "{}",
        ember.log()
    );
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already under way"), "{}", text(&out));
    std::fs::write(&gate, "").unwrap();
    let out = first.join().unwrap();
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        text(&out),
        ember.log()
    );

    // A poweroff while the next binary is asked: the reexec is refused, the poweroff done.
    let (gated, gate) = gated_ember(&ember, "gated-again");
    let asked = ember.log().matches("asking").count();
    let reexec = reexec_in_background(&ember, &gated);
    assert!(wait_for(LONG, || ember.log().matches("asking").count() > asked));
    let out = ember.ctl(&["poweroff"]);
    assert!(out.status.success(), "{}", text(&out));
    ember.wait_state("slow", "deactivating", None, LONG);
    std::fs::write(&gate, "").unwrap();
    let out = reexec.join().unwrap();
    assert!(
        !out.status.success(),
        "taken over during a shutdown: {}",
        text(&out)
    );
    assert!(text(&out).contains("shutting down"), "{}", text(&out));
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/exe")).ok(),
        Some(exe),
        "exec'd during the shutdown"
    );
    std::fs::write(&release, "").unwrap();
    let mut ember = ember;
    let ended = ember.wait_namespace_end(LONG);
    let _ = std::fs::remove_file(&release);
    assert!(
        ended.is_some(),
        "the poweroff was lost; log:\n{}",
        ember.log()
    );
}

/// A binary that never answers whether it takes over is refused after a while, and does
/// not stay behind as a child of PID 1.
#[test]
fn a_binary_that_never_answers_is_refused_and_does_not_stay() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-silent",
        "[service.web]\ncommand = [\"/bin/sleep\", \"7930400\"]\n",
    );
    let web = ember.wait_state("web", "active", None, LONG);
    let silent = ember.dir.path("silent");
    std::fs::write(&silent, "#!/bin/sh\nexec /bin/sleep 7930401\n").unwrap();
    std::fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ember.ctl(&["reexec", "--binary", &silent.display().to_string()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("did not answer"), "{}", text(&out));
    assert!(
        wait_for(LONG, || pids_with("7930401").is_empty()),
        "the binary asked is still running"
    );
    assert_eq!(ember.status("web")["pid"], web["pid"]);
}

/// A service's lines keep their numbers through a reexec, and new ones go on from there:
/// a follower skips the lines it has by their `seq` (it went back to 1 when the ring was
/// handed over with more than it keeps).
#[test]
fn log_lines_keep_their_numbers_through_a_reexec() {
    if !can_unshare() {
        return;
    }
    let go = std::env::temp_dir().join(format!("ember-reexec-lines-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let ember = Ember::start(
        "reexec-lines",
        &format!(
            "[service.talker]\ncommand = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; while [ ! -e {} ]; do sleep 0.02; done; echo after; exec sleep 7930500\"]\n",
            go.display()
        ),
    );
    let last = |ember: &Ember| -> Value {
        let out = ember.ctl(&["logs", "talker", "-n", "1", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    assert!(wait_for(LONG, || last(&ember)["line"] == "line 299"));
    let before = last(&ember)["seq"].as_u64().expect("a seq");
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        last(&ember)["seq"].as_u64(),
        Some(before),
        "the line's number changed"
    );
    std::fs::write(&go, "").unwrap();
    assert!(wait_for(LONG, || last(&ember)["line"] == "after"));
    let _ = std::fs::remove_file(&go);
    assert!(
        last(&ember)["seq"].as_u64().is_some_and(|s| s > before),
        "a new line's number went back: {}",
        last(&ember)
    );
}

/// `ember ctl logs -f` and `ember ctl subscribe` go on through a reexec (they ended, with
/// exit status 0, when the old binary closed their connection): the new binary answers
/// on the same socket, and no line is printed twice or left out.
#[test]
fn followers_and_subscribers_go_on_through_a_reexec() {
    use std::io::BufRead;
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-follow",
        "[service.ticker]\ncommand = [\"/bin/sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done\"]\n",
    );
    ember.wait_state("ticker", "active", None, LONG);
    let spawn = |args: &[&str]| {
        std::process::Command::new(EMBER)
            .arg("ctl")
            .arg("--socket")
            .arg(&ember.socket)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ember ctl")
    };
    let mut follower = spawn(&["logs", "ticker", "-n", "1", "-f"]);
    let mut subscriber = spawn(&["subscribe"]);
    let (lines, seen) = std::sync::mpsc::channel();
    let follower_out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(follower_out)
            .lines()
            .map_while(Result::ok)
        {
            let n = line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
            if lines.send(n.unwrap_or(0)).is_err() {
                break;
            }
        }
    });
    let (snapshots, snapshot_seen) = std::sync::mpsc::channel();
    let subscriber_out = subscriber.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(subscriber_out)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("{\"snapshot\"") && snapshots.send(()).is_err() {
                break;
            }
        }
    });
    let within = scaled(LONG);
    let mut numbers = vec![seen.recv_timeout(within).expect("a first line")];
    snapshot_seen
        .recv_timeout(within)
        .expect("a first snapshot");
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(out.status.success(), "{}", text(&out));
    // Lines written after the reexec reach the follower, and the subscriber gets a
    // snapshot from the new binary.
    let after: u64 = text(&ember.ctl(&["logs", "ticker", "-n", "1"]))
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("ticker's last line");
    while numbers.last().is_some_and(|n| *n <= after + 2) {
        match seen.recv_timeout(within) {
            Ok(n) => numbers.push(n),
            Err(_) => {
                let _ = follower.kill();
                let out = follower.wait_with_output().unwrap();
                panic!(
                    "the follower stopped at {numbers:?} ({}): {}",
                    out.status,
                    text(&out)
                );
            }
        }
    }
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines twice or left out: {numbers:?}"
    );
    assert!(
        snapshot_seen.recv_timeout(within).is_ok(),
        "the subscriber stopped at the reexec"
    );
    // Once ember has stopped, each says so, and exits 1 (it was not interrupted).
    let mut ember = ember;
    let out = ember.ctl(&["poweroff"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(ember.wait_namespace_end(LONG).is_some());
    for child in [follower, subscriber] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("ember stopped"), "{}", text(&out));
    }
}

/// A notify service that connected its socket once (as a daemon may: sd_notify clients
/// that keep the socket), and says READY=1 only after a reexec. Each binary bound the
/// notify sockets afresh, so the old socket was gone: the service's READY=1 was refused
/// (ECONNREFUSED) and it never became ready. Now the socket itself is handed over, and so
/// is whatever was sent to it while the binaries changed.
#[test]
fn a_notify_socket_is_the_same_socket_after_a_reexec() {
    if !can_unshare() {
        return;
    }
    let script = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"STATUS=waiting for go")
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
s.send(b"READY=1\nSTATUS=ready after the reexec")
time.sleep(7930801)
"#;
    let dir = TempDir::new("reexec-notify-files");
    let script_path = dir.path("keeper.py");
    std::fs::write(&script_path, script).expect("write the script");
    let go = dir.path("go");
    let ember = Ember::start(
        "reexec-notify",
        &format!(
            "[service.keeper]\ncommand = [\"/usr/bin/python3\", \"{}\", \"{}\"]\ntype = \"notify\"\nready_timeout = \"1h\"\n",
            script_path.display(),
            go.display()
        ),
    );
    assert!(
        wait_for(LONG, || ember.status("keeper")["status_text"]
            == "waiting for go"),
        "keeper never said it waits; log:\n{}",
        ember.log()
    );
    let pid = ember.status("keeper")["pid"].clone();
    let second = ember.dir.path("ember-second");
    std::fs::copy(EMBER, &second).expect("copy ember");
    let out = ember.ctl(&["reexec", "--binary", &second.display().to_string()]);
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        text(&out),
        ember.log()
    );
    std::fs::write(&go, "").expect("write the go file");
    ember.wait_state("keeper", "active", None, LONG);
    assert_eq!(ember.status("keeper")["pid"], pid, "keeper was restarted");
    assert_eq!(
        ember.status("keeper")["status_text"],
        "ready after the reexec"
    );
}

/// Lines queued for a rotated file when the reexec comes are written, by the first binary
/// before its exec (they were lost with its writer thread). Its writer made slow (5 ms a
/// line, a test hook), so that lines still wait when the reexec is asked.
#[test]
fn the_lines_queued_for_files_at_a_reexec_are_written() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-files",
        r#"
[service.f]
command = ["/bin/sh", "-c", "while [ ! -e $DIR/go ]; do sleep 0.05; done; seq 1 200; echo the-end; exec sleep 7830301"]
stdout = { file = "$DIR/f.log", max_size = "1M", keep = 2 }
"#,
    );
    ember.wait_state("f", "active", None, LONG);
    let _ = ember.ctl(&["status", "__slow_files"]);
    std::fs::write(ember.dir.path("go"), "").expect("write go");
    assert!(wait_for(LONG, || {
        let out = ember.ctl(&["logs", "f", "-n", "1"]);
        String::from_utf8_lossy(&out.stdout).contains("the-end")
    }));
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(out.status.success(), "{}", text(&out));
    let expected: String = (1..=200)
        .map(|n| format!("{n}\n"))
        .chain(["the-end\n".to_owned()])
        .collect();
    let file = ember.dir.path("f.log");
    // Lines lost at the exec never come; those written are all there once the flush is.
    assert!(
        wait_for(LONG, || std::fs::read_to_string(&file).unwrap_or_default()
            == expected),
        "f.log: {:?}",
        std::fs::read_to_string(&file).unwrap_or_default()
    );
}

/// `ember analyze`'s timeline after a reexec still says when ember started: its
/// `uptime_at_start_usec` (as the machine's init, when the kernel handed over, which the
/// plot draws) was the new binary's, so that a reexec three days after boot made the
/// plot say the kernel took three days. Now, as before the reexec, the uptime at start
/// plus the time since the start (`now_usec`) is the uptime when the timeline was taken.
#[test]
fn the_uptime_at_start_is_the_boots_after_a_reexec() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-uptime",
        "[service.s]\ncommand = [\"/bin/sleep\", \"7930600\"]\n",
    );
    let dump = |ember: &Ember| -> Value {
        let out = std::process::Command::new(EMBER)
            .args(["analyze", "--socket"])
            .arg(&ember.socket)
            .arg("dump")
            .output()
            .expect("run ember analyze");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    // The uptime (CLOCK_MONOTONIC: after a reexec, the time since the start is on it).
    let uptime = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0)
    };
    assert!(wait_for(LONG, || dump(&ember)["now_usec"]
        .as_u64()
        .is_some_and(|n| n > 1_000_000)));
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(out.status.success(), "{}", text(&out));
    let asked = uptime();
    let timeline = dump(&ember);
    let answered = uptime();
    let at_start = timeline["uptime_at_start_usec"]
        .as_u64()
        .expect("an uptime at start");
    let now = timeline["now_usec"].as_u64().expect("a now");
    // A millisecond either side for the rounding to microseconds of each figure.
    assert!(
        at_start + now + 1000 >= asked && at_start + now <= answered + 1000,
        "uptime at start {at_start} us + {now} us since is not the uptime when asked, between {asked} and {answered} us"
    );
}

/// A configuration edited since it was loaded, then a reexec: the new binary took over
/// each service as it ran, with the spec it read, so a changed command went on running
/// the old one (status showed the new), a changed schedule kept its old next run, and a
/// reload afterwards saw nothing to change. Such a reexec is now refused, naming what
/// changed, until a reload has applied it; then it goes.
#[test]
fn a_reexec_with_changes_a_reload_has_not_applied_is_refused() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reexec-unapplied",
        r#"
[service.app]
command = ["/bin/sleep", "7930700"]

[service.job]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h" }

[service.same]
command = ["/bin/sleep", "7930702"]
"#,
    );
    let app = ember.wait_state("app", "active", None, LONG);
    let same = ember.wait_state("same", "active", None, LONG);
    let path = ember.dir.path("ember.toml");
    let written = std::fs::read_to_string(&path).unwrap();
    let edited = written
        .replace("7930700", "7930701")
        .replace("every = \"1h\"", "every = \"2h\"");
    std::fs::write(&path, edited).unwrap();
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("app (command)") && said.contains("job (schedule)"),
        "{said}"
    );
    assert!(said.contains("ember ctl reload"), "{said}");
    assert!(!said.contains("same"), "{said}");
    assert_eq!(ember.status("app")["pid"], app["pid"]);

    let out = ember.ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_for(LONG, || {
        let s = ember.status("app");
        s["state"] == "active" && s["pid"] != app["pid"]
    }));
    let out = ember.ctl(&["reexec", "--binary", EMBER]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ember.status("same")["pid"], same["pid"]);
}
