//! The real ember binary supervising real processes in a real PID namespace.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

#[test]
fn crash_restarts_with_doubling_backoff_until_the_start_limit() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "crash",
        r#"
[service.crashy]
command = ["/bin/sh", "-c", "date +%s%N >> $DIR/starts; exit 3"]
restart_delay = "100ms"
start_limit = 4
start_limit_interval = "30s"
"#,
    );
    let status = ember.wait_state("crashy", "failed", Some("start-limit"), LONG);
    assert_eq!(status["exit_code"], 3);
    assert_eq!(status["restarts"], 3);
    let starts: Vec<u128> = lines(&ember.dir.path("starts"))
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(starts.len(), 4, "four failed starts, then no more");
    // Backoff 100ms, 200ms, 400ms: each gap is at least its delay (lower bounds only).
    for (i, pair) in starts.windows(2).enumerate() {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        let delay_ms = 100u128 << i;
        assert!(
            gap_ms >= delay_ms * 9 / 10,
            "gap {i} was {gap_ms} ms, backoff is {delay_ms} ms"
        );
    }
    // A window in which nothing may happen, as long on a busy machine as on a quiet one.
    std::thread::sleep(scaled(Duration::from_millis(500)));
    assert_eq!(
        lines(&ember.dir.path("starts")).len(),
        4,
        "no restart after the start limit"
    );
    // An explicit start clears the limit.
    let out = ember.ctl(&["start", "crashy"]);
    assert!(out.status.success());
    assert!(wait_for(LONG, || lines(&ember.dir.path("starts")).len() > 4));
}

#[test]
fn dependencies_start_in_order_after_log_readiness() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "order",
        r#"
[service.db]
# Not ready until the test says so: no assumption about how fast anything runs.
command = ["/bin/sh", "-c", "while [ ! -e $DIR/go ]; do sleep 0.05; done; date +%s%N > $DIR/db-ready; echo 'db version 1.2 running'; exec sleep 1000"]
ready = { log = "version .* running" }

[service.web]
command = ["/bin/sh", "-c", "date +%s%N > $DIR/web-start; exec sleep 1000"]
requires = ["db"]
"#,
    );
    // While db is not ready, web waits.
    ember.wait_state("db", "activating", Some("start"), LONG);
    std::thread::sleep(scaled(Duration::from_millis(200)));
    let web = ember.status("web");
    assert_eq!(web["state"], "inactive", "{web}");
    assert_eq!(web["sub_state"], "waiting");
    std::fs::write(ember.dir.path("go"), "").unwrap();
    ember.wait_state("web", "active", Some("running"), LONG);
    assert!(wait_for(LONG, || lines(&ember.dir.path("web-start")).len() == 1));
    let db_ready: u128 = lines(&ember.dir.path("db-ready"))[0].parse().unwrap();
    let web_start: u128 = lines(&ember.dir.path("web-start"))[0].parse().unwrap();
    assert!(web_start > db_ready, "web started before db was ready");
    assert_eq!(ember.status("db")["ready"], "log");

    // db stops: web goes down with it and keeps wanting up; db back: web back.
    let out = ember.ctl(&["stop", "db", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = ember.wait_state("web", "inactive", Some("dependency"), LONG);
    assert_eq!(web["want"], "up");
    assert!(ember.ctl(&["start", "db"]).status.success());
    ember.wait_state("web", "active", None, LONG);
}

#[test]
fn sd_notify_readiness_and_status() {
    if !can_unshare() {
        return;
    }
    let notify = "import socket,os,time; [time.sleep(0.05) for _ in iter(lambda: os.path.exists('$DIR/go'), True)]; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(os.environ['NOTIFY_SOCKET']); s.send(b'READY=1\\\\nSTATUS=serving 3 clients'); time.sleep(1000)";
    let ember = Ember::start(
        "notify",
        &format!(
            r#"
[service.app]
type = "notify"
command = ["/usr/bin/python3", "-c", "{notify}"]
"#
        ),
    );
    // Not ready until the test lets it send READY=1.
    std::thread::sleep(scaled(Duration::from_millis(300)));
    assert_eq!(ember.status("app")["state"], "activating");
    std::fs::write(ember.dir.path("go"), "").unwrap();
    let status = ember.wait_state("app", "active", Some("running"), LONG);
    assert_eq!(status["status_text"], "serving 3 clients");
    assert_eq!(status["ready"], "notify");
}

/// A `stop --wait` that a start overtakes is told so at once (found by a hostile
/// review: the wait never ended while the service ran again).
#[test]
fn a_stop_wait_overtaken_by_a_start_says_so() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "stop-overtaken",
        r#"
[service.slowstop]
command = ["/bin/sh", "-c", "trap 'sleep 3; exit 0' TERM; sleep 7770011 & wait"]
"#,
    );
    ember.wait_state("slowstop", "active", None, LONG);
    let mut stop = std::process::Command::new(EMBER)
        .args(["ctl", "--socket"])
        .arg(&ember.socket)
        .args(["stop", "slowstop", "--wait"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ember ctl stop");
    assert!(wait_for(LONG, || ember.status("slowstop")["state"] == "deactivating"));
    assert!(ember.ctl(&["start", "slowstop"]).status.success());
    let answered = wait_for(LONG, || matches!(stop.try_wait(), Ok(Some(_))));
    if !answered {
        let _ = stop.kill();
    }
    let out = stop.wait_with_output().expect("ember ctl stop");
    assert!(answered, "the stop's wait was never answered");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("slowstop was started again"), "{said}");
}

#[test]
fn stop_timeout_kills_the_whole_group_with_sigkill() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "sigkill",
        r#"
[service.stubborn]
command = ["/bin/sh", "-c", "trap '' TERM; sleep 7770001 & sleep 7770002 & wait; wait"]
stop_timeout = "500ms"
"#,
    );
    ember.wait_state("stubborn", "active", None, LONG);
    assert!(wait_for(LONG, || pids_with("777000").len() == 2));
    let started = Instant::now();
    let out = ember.ctl(&["stop", "stubborn", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "it ignored SIGTERM, so only SIGKILL ended it"
    );
    assert!(
        wait_for(LONG, || pids_with("777000").is_empty()),
        "grandchildren survived: {:?}",
        pids_with("777000")
    );
    assert!(ember
        .log()
        .contains("stubborn: deactivating (stop-sigkill)"));
}

#[test]
fn orphans_of_a_double_forking_daemon_are_reaped() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "forking",
        r#"
[service.daemon]
type = "forking"
pid_file = "$DIR/daemon.pid"
command = ["/bin/sh", "-c", "setsid /bin/sh -c 'echo $$ > $DIR/daemon.pid; for i in 1 2 3; do ( (sleep 0.2; touch $DIR/orphan$i) & ); done; exec sleep 7780001' & exit 0"]
"#,
    );
    let status = ember.wait_state("daemon", "active", Some("running"), LONG);
    let ns_pid = std::fs::read_to_string(ember.dir.path("daemon.pid")).unwrap();
    assert_eq!(
        status["pid"].to_string(),
        ns_pid.trim(),
        "the main pid comes from pid_file"
    );
    // The orphans, reparented to ember, end; ember reaps them.
    assert!(
        wait_for(LONG, || (1..=3)
            .all(|i| ember.dir.path(&format!("orphan{i}")).exists())),
        "the orphans did not run"
    );
    assert!(
        wait_for(LONG, || zombies_of(ember.host_pid()).is_empty()),
        "zombies left: {:?}",
        zombies_of(ember.host_pid())
    );
    // The daemon dies: its exit reaches the service, which restarts by policy.
    for pid in pids_with("sleep 7780001") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        wait_for(LONG, || ember.status("daemon")["exit_signal"] == "SIGKILL"),
        "{}",
        ember.log()
    );
    ember.wait_state("daemon", "active", None, LONG);
    assert_eq!(ember.status("daemon")["restarts"], 1);
}

#[test]
fn a_subreaper_reaps_orphans_when_not_pid_1() {
    let ember = Ember::start_plain(
        "subreaper",
        r#"
[service.spawner]
command = ["/bin/sh", "-c", "for i in 1 2 3; do (sleep 1 &); done; exec sleep 7790001"]
"#,
    );
    ember.wait_state("spawner", "active", None, LONG);
    // The orphaned sleeps were reparented to ember (PR_SET_CHILD_SUBREAPER), not to init...
    let children = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .count()
    };
    assert!(
        wait_for(LONG, || children(ember.host_pid()) == 4),
        "children of ember: {}",
        children(ember.host_pid())
    );
    // ...and once they exit, ember reaps them.
    assert!(
        wait_for(LONG, || children(ember.host_pid()) == 1),
        "children of ember: {}",
        children(ember.host_pid())
    );
    assert!(zombies_of(ember.host_pid()).is_empty());
}

#[test]
fn reload_adds_removes_and_restarts_only_what_changed() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload",
        r#"
[service.keep]
command = ["/bin/sleep", "7800001"]

[service.change]
command = ["/bin/sleep", "7800002"]

[service.drop]
command = ["/bin/sleep", "7800003"]
"#,
    );
    for name in ["keep", "change", "drop"] {
        ember.wait_state(name, "active", None, LONG);
    }
    let keep_pid = ember.status("keep")["pid"].clone();
    let change_pid = ember.status("change")["pid"].clone();

    // A configuration with an error is rejected whole; nothing changes.
    let good = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(
        &ember.config,
        good.replace("7800001\"]", "7800001\"]\nrestart = \"sometimes\""),
    )
    .unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ember.toml:") && stderr.contains("sometimes"),
        "{stderr}"
    );
    assert_eq!(ember.status("keep")["pid"], keep_pid);

    let new = good.replace("7800002", "7800020").replace(
        "[service.drop]\ncommand = [\"/bin/sleep\", \"7800003\"]",
        "[service.added]\ncommand = [\"/bin/sleep\", \"7800004\"]",
    );
    std::fs::write(&ember.config, new).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ember.wait_state("added", "active", None, LONG);
    assert!(
        wait_for(LONG, || ember.all().iter().all(|s| s["name"] != "drop")),
        "drop was not removed"
    );
    assert!(wait_for(LONG, || pids_with("sleep 7800003").is_empty()));
    let changed = ember.wait_state("change", "active", None, LONG);
    assert_ne!(changed["pid"], change_pid, "a changed service restarts");
    assert!(!pids_with("sleep 7800020").is_empty());
    assert_eq!(
        ember.status("keep")["pid"],
        keep_pid,
        "an unchanged service is not touched"
    );
}

#[test]
fn a_missing_binary_fails_with_the_os_error() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "missing",
        r#"
[service.ghost]
command = ["/opt/nowhere/ghostd"]
restart = "never"
"#,
    );
    let status = ember.wait_state("ghost", "failed", Some("spawn"), LONG);
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("No such file or directory"), "{reason}");
    let out = ember.ctl(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("failed (spawn)") && table.contains("os error 2"),
        "{table}"
    );
}

#[test]
fn sigterm_stops_in_reverse_dependency_order_and_exits_0_when_not_pid_1() {
    let mut ember = Ember::start_plain(
        "shutdown",
        r#"
[service.base]
command = ["/bin/sh", "-c", "trap 'echo base >> $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait"]
ready = { log = "trapped" }

[service.middle]
command = ["/bin/sh", "-c", "trap 'echo middle >> $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait"]
requires = ["base"]
ready = { log = "trapped" }

[service.top]
command = ["/bin/sh", "-c", "trap 'sleep 0.2; echo top >> $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait"]
after = ["middle"]
ready = { log = "trapped" }
"#,
    );
    // Active once its trap is set (said on its output): a SIGTERM before would kill it
    // before it could write, on a busy machine.
    ember.wait_state("top", "active", None, LONG);
    ember.signal(Signal::SIGTERM);
    assert_eq!(ember.wait_exit(LONG), Some(0), "log:\n{}", ember.log());
    assert_eq!(lines(&ember.dir.path("stopped")), ["top", "middle", "base"]);
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    use std::io::{BufRead, BufReader, Write};
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "badinput",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7810001\"]\n",
    );
    let before = ember.wait_state("steady", "active", None, LONG)["pid"].clone();
    let stream = std::os::unix::net::UnixStream::connect(&ember.socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut ask = |line: &[u8]| -> serde_json::Value {
        writer.write_all(line).unwrap();
        writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{nope".to_vec(), "bad_request"),
        (b"[1,2,3]".to_vec(), "bad_request"),
        (br#"{"cmd":"explode"}"#.to_vec(), "unknown_command"),
        (
            br#"{"cmd":"stop","names":["ghost"]}"#.to_vec(),
            "unknown_service",
        ),
        (
            br#"{"cmd":"stop","names":["steady","ghost"]}"#.to_vec(),
            "unknown_service",
        ),
        (
            br#"{"cmd":"start","names":"steady"}"#.to_vec(),
            "bad_request",
        ),
        (vec![b'x'; 100_000], "too_large"),
        (vec![0xff, 0xfe, 0x00], "bad_request"),
    ];
    for (line, kind) in cases {
        let reply = ask(&line);
        assert_eq!(reply["error"]["kind"], kind, "{reply}");
        assert!(!reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
    let reply = ask(br#"{"cmd":"status","names":["steady"]}"#);
    assert_eq!(
        reply["status"]["services"][0]["pid"], before,
        "the connection still works and nothing changed"
    );

    let out = ember.ctl(&["restart", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no service named \"nosuch\""));
    let out = ember.ctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ember.status("steady")["pid"], before);
}

#[test]
fn logs_keep_the_last_200_lines() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "logs",
        "[service.talker]\ncommand = [\"/bin/sh\", \"-c\", \"for i in $(seq 1 300); do echo line $i; done; sleep 0.3; echo oops >&2; exec sleep 1000\"]\n",
    );
    assert!(wait_for(LONG, || String::from_utf8_lossy(
        &ember.ctl(&["logs", "talker", "-n", "2"]).stdout
    )
    .contains("oops")));
    let out =
        String::from_utf8_lossy(&ember.ctl(&["logs", "talker", "-n", "2"]).stdout).to_string();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 2, "{out}");
    assert!(
        got[0].ends_with(" line 300") && got[1].contains("[stderr] oops"),
        "{out}"
    );
    let all = ember.ctl(&["logs", "talker", "-n", "1000"]);
    assert_eq!(
        String::from_utf8_lossy(&all.stdout).lines().count(),
        200,
        "200 lines are kept"
    );
}

#[test]
fn logs_follow_prints_new_lines() {
    use std::io::{BufRead, BufReader};
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "follow",
        "[service.ticker]\ncommand = [\"/bin/sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done\"]\n",
    );
    ember.wait_state("ticker", "active", None, LONG);
    let mut follower = std::process::Command::new(EMBER)
        .args(["ctl", "--socket"])
        .arg(&ember.socket)
        .args(["logs", "ticker", "-n", "1", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follower.stdout.take().unwrap());
    let mut numbers = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        numbers.push(
            line.trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .parse::<u32>()
                .unwrap_or(0),
        );
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive new lines, none twice: {numbers:?}"
    );
}

#[test]
fn services_get_their_user_env_cwd_and_clean_signal_state() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "identity",
        r#"
[service.who]
command = ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g); echo greeting=$GREETING; echo cwd=$(pwd); grep -E '^Sig(Ign|Blk)' /proc/self/status; echo pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$; exec sleep 1000"]
user = "nobody"
group = "nogroup"
env = { GREETING = "hello" }
workdir = "/tmp"
"#,
    );
    ember.wait_state("who", "active", None, LONG);
    let mut out = String::new();
    assert!(wait_for(LONG, || {
        out = String::from_utf8_lossy(&ember.ctl(&["logs", "who", "-n", "20"]).stdout).into_owned();
        out.contains("pgid=")
    }));
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert!(
        out.contains(&format!("uid={} gid={}", nobody.uid, nogroup.gid)),
        "{out}"
    );
    assert!(
        out.contains("greeting=hello") && out.contains("cwd=/tmp"),
        "{out}"
    );
    assert!(
        out.contains("SigIgn:\t0000000000000000") && out.contains("SigBlk:\t0000000000000000"),
        "{out}"
    );
    let line = out.lines().find(|l| l.contains("pgid=")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words[words.len() - 2].trim_start_matches("pgid="),
        words[words.len() - 1].trim_start_matches("pid="),
        "own process group: {line}"
    );
}

#[test]
fn on_failure_stops_everything_and_exits_non_zero_when_not_pid_1() {
    let mut ember = Ember::start_plain(
        "onfailure",
        r#"
[service.critical]
command = ["/bin/sh", "-c", "sleep 0.3; exit 4"]
restart = "never"
on_failure = "reboot"

[service.bystander]
command = ["/bin/sleep", "7820001"]
"#,
    );
    assert_eq!(ember.wait_exit(LONG), Some(1), "log:\n{}", ember.log());
    assert!(pids_with("7820001").is_empty(), "everything was stopped");
    assert!(ember.log().contains("critical failed and has on_failure"));
}

#[test]
fn a_service_cannot_make_ember_signal_a_process_not_its_own() {
    if !can_unshare() {
        return;
    }
    let liar = "import socket,os,time; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(os.environ['NOTIFY_SOCKET']); s.send(b'READY=1\\\\nMAINPID=1'); time.sleep(1000)";
    let ember = Ember::start(
        "mainpid",
        &format!(
            r#"
[service.liar]
type = "notify"
command = ["/usr/bin/python3", "-c", "{liar}"]

[service.bystander]
command = ["/bin/sleep", "7880001"]
"#
        ),
    );
    let liar = ember.wait_state("liar", "active", None, LONG);
    assert_ne!(liar["pid"], 1, "MAINPID=1 is refused");
    assert!(
        wait_for(LONG, || ember.log().contains("ignoring main pid 1")),
        "log:\n{}",
        ember.log()
    );
    assert!(ember.ctl(&["stop", "liar", "--wait"]).status.success());
    assert_eq!(
        ember.status("bystander")["state"],
        "active",
        "ember did not signal itself"
    );
}

#[test]
fn a_forking_daemon_that_dies_at_once_keeps_its_exit_status() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "forking-dies",
        r#"
[service.shortlived]
type = "forking"
pid_file = "$DIR/short.pid"
restart = "never"
# The daemon writes its pid file and dies before ember has read it.
command = ["/bin/sh", "-c", "setsid /bin/sh -c 'echo $$ > $DIR/short.pid; exit 5' & exit 0"]
"#,
    );
    let status = ember.wait_state("shortlived", "failed", None, LONG);
    assert_eq!(status["exit_code"], 5, "{status}");
}

// --- The control socket: who may use it, and what one connection may cost -------------

/// `ember ctl ARGS` as user nobody (uid 65534, no groups).
fn ctl_as_nobody(ember: &Ember, args: &[&str]) -> std::process::Output {
    let as_nobody = || {
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command
    };
    // A checkout under /root is out of nobody's reach: then run a copy from /tmp.
    let reachable = as_nobody()
        .args(["/bin/sh", "-c", "test -x \"$0\"", EMBER])
        .status()
        .is_ok_and(|s| s.success());
    let program = if reachable {
        std::path::PathBuf::from(EMBER)
    } else {
        let copy = ember.dir.path("ember-for-nobody");
        if !copy.exists() {
            std::fs::copy(EMBER, &copy).expect("copy ember");
        }
        copy
    };
    as_nobody()
        .arg(program)
        .arg("ctl")
        .arg("--socket")
        .arg(&ember.socket)
        .args(args)
        .output()
        .expect("run setpriv ember ctl")
}

#[test]
fn a_user_other_than_root_cannot_use_the_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "notroot",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7810101\"]\n",
    );
    let before = ember.wait_state("steady", "active", None, LONG)["pid"].clone();
    let mode = std::fs::metadata(&ember.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // Mode 0600: the kernel refuses nobody's connection.
    for args in [&["status"][..], &["stop", "steady"]] {
        let out = ctl_as_nobody(&ember, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("Permission denied") && said.contains("try sudo"),
            "{args:?}: {said}"
        );
    }

    // Were the socket open to everyone (a wrong mode, a bind mount), ember's own
    // SO_PEERCRED check still refuses: only root and ember's own uid.
    std::fs::set_permissions(&ember.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["status"][..], &["stop", "steady"], &["poweroff"]] {
        let out = ctl_as_nobody(&ember, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("uid 65534 may not control ember: only root, uid 0 and the users and groups of [[control.allow]] may; try sudo"),
            "{args:?}: {said}"
        );
    }
    assert!(
        ember.log().contains("control socket: refused uid 65534"),
        "log:\n{}",
        ember.log()
    );
    // Nothing changed.
    let now = ember.status("steady");
    assert_eq!(now["state"], "active");
    assert_eq!(now["want"], "up");
    assert_eq!(now["pid"], before);
}

#[test]
fn the_control_socket_bounds_connections_and_request_bytes() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "sockbounds",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7810201\"]\n",
    );
    let before = ember.wait_state("steady", "active", None, LONG)["pid"].clone();
    let pid = ember.host_pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let rss_kib = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The count once it holds still: a connection just served may still be closing.
    let settled = || {
        let mut last = fds();
        loop {
            std::thread::sleep(scaled(Duration::from_millis(100)));
            let now = fds();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let baseline = settled();
    let connect = || {
        let stream = UnixStream::connect(&ember.socket).expect("connect");
        stream.set_read_timeout(Some(scaled(LONG))).unwrap();
        stream
    };
    let read_reply = |stream: &UnixStream| -> serde_json::Value {
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("a reply line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };

    // 64 idle connections take every slot (each one a descriptor in ember).
    let held: Vec<UnixStream> = (0..64).map(|_| connect()).collect();
    assert!(
        wait_for(LONG, || fds() >= baseline + 64),
        "{} descriptors, baseline {baseline}",
        fds()
    );
    // The next one is told so and closed; so is `ember ctl`.
    let extra = connect();
    let reply = read_reply(&extra);
    assert_eq!(reply["error"]["kind"], "busy", "{reply}");
    let mut rest = Vec::new();
    assert_eq!(
        std::io::Read::read_to_end(&mut &extra, &mut rest).ok(),
        Some(0),
        "the refused connection stays open"
    );
    let out = ember.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 control connections already"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ember closes the refused ones after it has answered: give it the time to.
    assert!(
        wait_for(LONG, || fds() == baseline + 64),
        "a refused connection was kept: {} descriptors, baseline {baseline}",
        fds()
    );
    drop(held);
    assert!(
        wait_for(LONG, || ember.ctl(&["status"]).status.success()),
        "ember did not serve again once the slots were free"
    );

    // An oversized line gets too_large, and the connection goes on.
    let mut big = connect();
    big.write_all(&vec![b'x'; 1024 * 1024]).unwrap();
    big.write_all(b"\n{\"cmd\":\"status\",\"names\":[\"steady\"]}\n")
        .unwrap();
    let mut reader = BufReader::new(big.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"too_large\""), "{line}");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"steady\""), "{line}");
    drop((big, reader));

    // A line that never ends is skipped as it comes, not kept: memory stays put.
    let rss_before = rss_kib();
    let mut endless = connect();
    let chunk = vec![b'y'; 64 * 1024];
    for _ in 0..256 {
        endless.write_all(&chunk).unwrap(); // 16 MiB, no newline
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 2048,
        "ember grew by {grown} KiB reading a 16 MiB line"
    );
    drop(endless);

    // Afterwards: served as before, every descriptor given back, nothing changed.
    let out = ember.ctl(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(LONG, || fds() == baseline),
        "{} descriptors, baseline {baseline}",
        fds()
    );
    assert_eq!(ember.status("steady")["pid"], before);
}

/// Spawns that wait for a turn of their own (a boot bigger than one slice of the loop) are
/// not starved by services that flood their output: the feed of lines is ready at every
/// turn, and the waiting spawns never had one (found by the soak: a stop then waited for a
/// spawn that never came, and the service ended "failed: did not exit after SIGKILL").
#[test]
fn a_flood_of_output_does_not_starve_the_spawns_that_wait() {
    const FLOODS: usize = 6;
    if !can_unshare() {
        return;
    }
    // Several floods, so that the runtime's feed of lines is never empty when the main
    // loop looks at it: a branch of the loop's select for the spawns that wait, polled
    // after the feed, then never won, and none of the 300 started.
    let mut services = String::new();
    for f in 0..FLOODS {
        services.push_str(&format!(
            "[service.flood{f}]\ncommand = [\"/usr/bin/yes\", \"a line of a service that floods its output\"]\n"
        ));
    }
    let floods: Vec<String> = (0..FLOODS).map(|f| format!("\"flood{f}\"")).collect();
    for i in 0..300 {
        services.push_str(&format!(
            "[service.s{i:03}]\ncommand = [\"/bin/sleep\", \"1000\"]\nafter = [{}]\n",
            floods.join(", ")
        ));
    }
    let ember = Ember::start("flood-spawns", &services);
    let running = || {
        String::from_utf8_lossy(&ember.ctl(&["status"]).stdout)
            .lines()
            .filter(|l| l.starts_with('s') && l.contains("active (running)"))
            .count()
    };
    assert!(
        wait_for(LONG, || running() == 300),
        "only {} of 300 started while {FLOODS} services flood their output",
        running()
    );
}

/// The whole class of the test above: while services flood their output, everything
/// else the main loop serves still gets its turn. A control request is answered, a
/// restart delay elapses (a timer), and a stop that a service ignores ends in SIGKILL at
/// its timeout (a timer again), instead of each waiting behind the feed of lines.
#[test]
fn a_flood_of_output_does_not_starve_requests_or_timers() {
    const FLOODS: usize = 6;
    if !can_unshare() {
        return;
    }
    let mut services = String::new();
    for f in 0..FLOODS {
        services.push_str(&format!(
            "[service.flood{f}]\ncommand = [\"/usr/bin/yes\", \"a line of a service that floods its output\"]\n"
        ));
    }
    services.push_str(
        "[service.blink]\ncommand = [\"/bin/false\"]\nrestart = \"always\"\n\
         restart_delay = \"50ms\"\nrestart_delay_max = \"50ms\"\nstart_limit = 0\n\
         [service.stubborn]\ncommand = [\"/bin/sh\", \"-c\", \"trap '' TERM; exec sleep 1000\"]\n\
         stop_timeout = \"200ms\"\n",
    );
    let ember = Ember::start("flood-timers", &services);
    ember.wait_state("stubborn", "active", None, LONG);
    // Requests: status answers while the floods go on (the loop reads their lines too).
    assert!(
        ember.ctl(&["status"]).status.success(),
        "log:\n{}",
        ember.log()
    );
    // Timers: blink's restart delay elapses again and again.
    assert!(
        wait_for(LONG, || ember.status("blink")["restarts"]
            .as_u64()
            .is_some_and(|n| n >= 5)),
        "blink restarted {} times while {FLOODS} services flood their output",
        ember.status("blink")["restarts"]
    );
    // And a stop's timeout: stubborn ignores SIGTERM and is killed at 200 ms.
    let stop = ember.ctl(&["stop", "stubborn", "--wait"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_eq!(ember.status("stubborn")["state"], "inactive");
}

/// A pid file that is not a regular file (made so by the service, which often owns the
/// directory) is not read: ember goes on answering. (A FIFO was opened and read from the
/// main loop, and waited for a writer: PID 1 stopped. A link to /dev/zero would have been
/// read until memory ran out: not tried before the fix, on a shared machine.)
#[test]
fn a_pid_file_that_is_a_fifo_does_not_stop_ember() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "pid-file-fifo",
        r#"
[service.other]
command = ["/bin/sleep", "7780011"]

[service.daemon]
type = "forking"
pid_file = "$DIR/daemon.pid"
command = ["/bin/sh", "-c", "mkfifo $DIR/daemon.pid; touch $DIR/made; setsid sleep 7780012 & exit 0"]

[service.zero]
type = "forking"
pid_file = "$DIR/zero.pid"
command = ["/bin/sh", "-c", "ln -s /dev/zero $DIR/zero.pid; touch $DIR/made-zero; setsid sleep 7780013 & exit 0"]
"#,
    );
    assert!(wait_for(LONG, || ember.dir.path("made").exists()
        && ember.dir.path("made-zero").exists()));
    // Long enough for the pid file to have been looked at more than once.
    for _ in 0..5 {
        let out = ember.ctl_within(&["status", "other"], LONG);
        assert!(
            out.is_some(),
            "ember stopped answering; log:\n{}",
            ember.log()
        );
    }
    assert_eq!(ember.status("other")["state"], "active");
    assert_ne!(ember.status("daemon")["state"], "active");
    assert_ne!(ember.status("zero")["state"], "active");
}

#[test]
fn a_costly_ready_log_pattern_does_not_stop_ember_answering() {
    if !can_unshare() {
        return;
    }
    // Matching this against a 4 KiB line takes tens of milliseconds, more in a debug
    // build: PID 1 matched every line of a chatty service in its one loop, and took
    // minutes to answer a status, reap or restart anything else.
    let ember = Ember::start(
        "costlylog",
        r#"
[service.chatty]
command = ["/bin/sh", "-c", "l=$(printf 'ab%.0s' $(seq 2048)); while :; do echo $l; done"]
ready = { log = "(?:.*a){150}z" }
ready_timeout = "0"

[service.steady]
command = ["/bin/sleep", "1000"]
"#,
    );
    ember.wait_state("steady", "active", Some("running"), LONG);
    let out = ember.ctl_within(&["restart", "steady", "--wait"], LONG);
    assert!(
        out.as_ref().is_some_and(|o| o.status.success()),
        "ember did not answer a restart while matching: {out:?}"
    );
    assert!(
        wait_for(LONG, || ember.log().contains("lines were not matched")),
        "no note of the lines left unmatched; log:\n{}",
        ember.log()
    );
    assert_eq!(ember.status("chatty")["state"], "activating");
}

/// ember started by systemd, a container runtime or a shell may itself have been given
/// the variables of sd_notify, socket activation and the watchdog: they describe ember's
/// process, not a service's. A service gets its own NOTIFY_SOCKET and WATCHDOG_USEC when
/// it asks for them, and otherwise none; a readiness check none either. (A WATCHDOG_PID
/// of ember's made sd_watchdog_enabled() say no in the service, which then never pinged
/// and was killed by its own watchdog.)
#[test]
fn services_do_not_inherit_embers_own_notify_listen_or_watchdog_variables() {
    let inherited = [
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_PID", "1"),
        ("LISTEN_FDNAMES", "ember.socket"),
        ("WATCHDOG_PID", "1"),
        ("WATCHDOG_USEC", "1000"),
        ("SYSTEMD_EXEC_PID", "1"),
    ];
    let dump = "env | grep -E '^(NOTIFY_SOCKET|LISTEN_|WATCHDOG_|SYSTEMD_EXEC_PID)' | sort";
    let ember = Ember::start_plain_with_env(
        "inherited-env",
        &format!(
            r#"
[service.plain]
command = ["/bin/sh", "-c", "{dump} > $DIR/plain.env.tmp; mv $DIR/plain.env.tmp $DIR/plain.env; exec sleep 1000"]
ready = {{ exec = ["/bin/sh", "-c", "{dump} > $DIR/check.env.tmp; mv $DIR/check.env.tmp $DIR/check.env"] }}

[service.watched]
command = ["/bin/sh", "-c", "{dump} > $DIR/watched.env.tmp; mv $DIR/watched.env.tmp $DIR/watched.env; exec sleep 1000"]
type = "notify"
watchdog = "1h"
ready_timeout = "0"
"#
        ),
        &inherited,
    );
    let read = |name: &str| {
        let path = ember.dir.path(name);
        assert!(wait_for(LONG, || path.exists()), "{name}: {}", ember.log());
        std::fs::read_to_string(&path).unwrap_or_default()
    };
    assert_eq!(read("plain.env"), "", "plain");
    assert_eq!(read("check.env"), "", "its readiness check");
    let socket = ember.dir.path("control.sock.notify/watched.sock");
    assert_eq!(
        read("watched.env"),
        format!(
            "NOTIFY_SOCKET={}\nWATCHDOG_USEC=3600000000\n",
            socket.display()
        ),
        "watched"
    );
}

/// `group` replaces the user's group, as systemd's Group= does: the supplementary groups
/// are the user's memberships with that group (initgroups), not also the group of the
/// user's passwd entry. And a uid that no account has gets none of ember's HOME, USER and
/// LOGNAME (root's): USER and LOGNAME are the id, and there is no HOME.
#[test]
fn a_services_groups_and_account_variables_are_its_own_not_embers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let (Ok(Some(nobody)), Ok(Some(daemon))) = (
        nix::unistd::User::from_name("nobody"),
        nix::unistd::Group::from_name("daemon"),
    ) else {
        eprintln!("skipped: needs the user nobody and the group daemon");
        return;
    };
    // An id no account has.
    let stranger = (54321..60000)
        .find(|&id| {
            matches!(
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id)),
                Ok(None)
            )
        })
        .expect("a free uid");
    let dump = "grep ^Groups: /proc/self/status; env | grep -E '^(HOME|USER|LOGNAME)=' | sort";
    let ember = Ember::start_plain_with_env(
        "identity-groups",
        &format!(
            r#"
[service.regrouped]
command = ["/bin/sh", "-c", "{dump}; echo end; exec sleep 1000"]
user = "nobody"
group = "daemon"

[service.stranger]
command = ["/bin/sh", "-c", "{dump}; echo end; exec sleep 1000"]
user = "{stranger}"
"#
        ),
        &[("HOME", "/root"), ("USER", "root"), ("LOGNAME", "root")],
    );
    // What the service printed, from `ember ctl logs` (its directory is not nobody's).
    let read = |name: &str| {
        let mut text = String::new();
        let ended = wait_for(LONG, || {
            let out = ember.ctl(&["logs", name, "-n", "20"]);
            text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().any(|l| l.ends_with(" end") || l == "end")
        });
        assert!(ended, "{name}: {text}\n{}", ember.log());
        // Each line without what `logs` puts before it.
        text.lines()
            .filter_map(|l| {
                ["Groups:", "HOME=", "USER=", "LOGNAME="]
                    .iter()
                    .find_map(|k| l.find(k).map(|at| l[at..].to_owned()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let groups_of = |text: &str| {
        let mut groups: Vec<u32> = text
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect();
        groups.sort_unstable();
        groups
    };
    let name = std::ffi::CString::new("nobody").expect("name");
    let mut expected: Vec<u32> = nix::unistd::getgrouplist(&name, daemon.gid)
        .expect("getgrouplist")
        .iter()
        .map(|g| g.as_raw())
        .collect();
    expected.sort_unstable();
    expected.dedup();
    let regrouped = read("regrouped");
    assert_eq!(groups_of(&regrouped), expected, "{regrouped}");
    let variables: Vec<&str> = regrouped
        .lines()
        .filter(|l| !l.starts_with("Groups:"))
        .collect();
    assert_eq!(
        variables,
        [
            format!("HOME={}", nobody.dir.display()),
            "LOGNAME=nobody".to_owned(),
            "USER=nobody".to_owned()
        ],
        "{regrouped}"
    );
    let text = read("stranger");
    assert_eq!(groups_of(&text), [stranger], "{text}");
    let variables: Vec<&str> = text.lines().filter(|l| !l.starts_with("Groups:")).collect();
    assert_eq!(
        variables,
        [format!("LOGNAME={stranger}"), format!("USER={stranger}")],
        "{text}"
    );
}

/// `stop` then `start` begins a service's history afresh, as `restart` does: its restart
/// count (which says "since the last explicit start"), its backoff and its start limit
/// (found by a hostile review: the count of the runs before the stop was kept).
#[test]
fn a_start_after_a_stop_counts_restarts_afresh() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "afresh",
        r#"
[service.once]
# Crashes on its first run only, then serves.
command = ["/bin/sh", "-c", "if [ ! -e $DIR/crashed ]; then touch $DIR/crashed; exit 1; fi; exec sleep 1000"]
restart_delay = "0"
"#,
    );
    let status = ember.wait_state("once", "active", Some("running"), LONG);
    assert_eq!(status["restarts"], 1, "{status}");
    let out = ember.ctl(&["stop", "--wait", "once"]);
    assert!(out.status.success(), "{out:?}");
    let out = ember.ctl(&["start", "--wait", "once"]);
    assert!(out.status.success(), "{out:?}");
    let status = ember.wait_state("once", "active", Some("running"), LONG);
    assert_eq!(status["restarts"], 0, "{status}");
}

/// A waiting service says what it waits for, and never a reason that no longer holds
/// (found by a hostile review: with db stopped by hand and started again, web read
/// "inactive (waiting)" with "requires db, which is stopped" while db was activating).
#[test]
fn a_waiting_service_says_what_it_waits_for() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "waitsfor",
        r#"
[service.db]
command = ["/bin/sleep", "1000"]
ready = { file = "$DIR/db-ready" }
ready_timeout = "0"

[service.web]
command = ["/bin/sleep", "1000"]
requires = ["db"]
"#,
    );
    let web = ember.wait_state("web", "inactive", Some("waiting"), LONG);
    assert_eq!(web["reason"], "waiting for db to start", "{web}");
    std::fs::write(ember.dir.path("db-ready"), "").unwrap();
    ember.wait_state("web", "active", Some("running"), LONG);

    let out = ember.ctl(&["stop", "--wait", "db"]);
    assert!(out.status.success(), "{out:?}");
    let web = ember.wait_state("web", "inactive", Some("dependency"), LONG);
    assert_eq!(web["reason"], "requires db, which is stopped", "{web}");
    std::fs::remove_file(ember.dir.path("db-ready")).unwrap();
    let out = ember.ctl(&["start", "db"]);
    assert!(out.status.success(), "{out:?}");
    ember.wait_state("db", "activating", Some("start"), LONG);
    let web = ember.wait_state("web", "inactive", Some("waiting"), LONG);
    assert_eq!(web["reason"], "waiting for db to start", "{web}");
    let table = String::from_utf8_lossy(&ember.ctl(&["status"]).stdout).into_owned();
    assert!(table.contains("└ waiting for db to start"), "{table}");
}

/// The raw status reply's system state, straight from the socket.
fn system_state(ember: &Ember) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(&ember.socket).expect("connect");
    stream.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).expect("status JSON");
    reply["status"]["system"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// systemd's reset-failed: a failed service becomes inactive and stays down, and the
/// board is no longer degraded; what runs is not touched.
#[test]
fn reset_failed_forgets_failures_and_starts_nothing() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reset-failed",
        r#"
[service.broken]
command = ["/bin/sh", "-c", "exit 3"]
restart = "never"

[service.flaky]
command = ["/bin/sh", "-c", "echo x >> $DIR/flaky; exit 1"]
restart_delay = "50ms"
start_limit = 2

[service.steady]
command = ["/bin/sleep", "7920301"]

[service."w@"]
command = ["/bin/sh", "-c", "exit 1"]
restart = "never"
"#,
    );
    ember.wait_state("broken", "failed", Some("exit-code"), LONG);
    ember.wait_state("flaky", "failed", Some("start-limit"), LONG);
    let steady = ember.wait_state("steady", "active", None, LONG)["pid"].clone();
    assert!(ember.ctl(&["start", "w@1", "w@2"]).status.success());
    ember.wait_state("w@1", "failed", None, LONG);
    ember.wait_state("w@2", "failed", None, LONG);
    // By name, a failed instance made by a start is forgotten, and said so.
    let out = ember.ctl(&["reset-failed", "w@2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("w@2: not there"), "{text}");
    assert!(
        !ember.ctl(&["status", "w@2"]).status.success(),
        "w@2 is forgotten"
    );
    assert_eq!(system_state(&ember), "degraded");

    // One by name: inactive, its failures forgotten, not started again.
    let out = ember.ctl(&["reset-failed", "flaky"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("flaky: inactive"), "{text}");
    let flaky = ember.status("flaky");
    assert_eq!(
        (flaky["state"].as_str(), flaky["restarts"].as_u64()),
        (Some("inactive"), Some(0))
    );
    assert_eq!(flaky["want"], "down");
    let runs = lines(&ember.dir.path("flaky")).len();
    std::thread::sleep(scaled(Duration::from_millis(500)));
    assert_eq!(
        lines(&ember.dir.path("flaky")).len(),
        runs,
        "nothing restarted it"
    );
    assert_eq!(
        system_state(&ember),
        "degraded",
        "broken and w@1 are still failed"
    );

    // Unknown names are refused; a pattern that matches nothing is nothing to do.
    let out = ember.ctl(&["reset-failed", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no service named \"nope\""));
    let out = ember.ctl(&["reset-failed", "zz*"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to reset"));

    // Every failed one: the instance made by a start is forgotten, as a stopped one is.
    let out = ember.ctl(&["reset-failed"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ember.status("broken")["state"], "inactive");
    assert!(
        !ember.ctl(&["status", "w@1"]).status.success(),
        "w@1 is forgotten"
    );
    assert_eq!(system_state(&ember), "running");
    assert_eq!(
        ember.status("steady")["pid"],
        steady,
        "what runs is not touched"
    );
    let out = ember.ctl(&["reset-failed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no service has failed"));

    // A start afterwards begins afresh.
    assert!(ember.ctl(&["start", "flaky"]).status.success());
    assert!(wait_for(LONG, || lines(&ember.dir.path("flaky")).len() > runs));
}

/// `ember ctl kill` (systemctl kill, dinitctl signal): a signal to every process of a
/// service, or to its main process only; the want does not change.
#[test]
fn kill_sends_a_signal_to_a_service_or_its_main_process() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "kill",
        r#"
[service.hupper]
command = ["/bin/sh", "-c", "trap 'echo hup >> $DIR/hups' HUP; while :; do /bin/sleep 7920401 & wait; done"]

[service.victim]
command = ["/bin/sleep", "7920402"]
restart_delay = "0"

[service.idle]
command = ["/bin/sleep", "7920403"]
enabled = false
"#,
    );
    let main = ember.wait_state("hupper", "active", None, LONG)["pid"].clone();
    let hups = || lines(&ember.dir.path("hups")).len();
    let sleeper = || pids_with("7920401");
    assert!(wait_for(LONG, || sleeper().len() == 1));
    let first = sleeper();

    // --main: the shell alone; its sleep is not signalled.
    let out = ember.ctl(&["kill", "hupper", "--main", "--signal", "hup"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(LONG, || hups() == 1), "the trap ran once");
    // The trap ends the shell's `wait`, and its loop starts another sleep: the first one
    // is still there, unsignalled (it compared all sleeps, and failed when the loop had
    // been quicker than the check).
    let now = sleeper();
    assert!(
        first.iter().all(|p| now.contains(p)),
        "the sleep was not signalled: {first:?} then {now:?}"
    );

    // Every process: the shell's trap runs, and its sleep is ended by the HUP.
    let out = ember.ctl(&["kill", "hupper", "--signal", "SIGHUP"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(LONG, || hups() == 2), "the trap ran again");
    assert!(wait_for(LONG, || !sleeper().is_empty() && sleeper() != first));
    let hupper = ember.status("hupper");
    assert_eq!(
        (&hupper["pid"], &hupper["state"]),
        (&main, &"active".into())
    );

    // SIGTERM by default: the service ends, by a signal ember did not send, and is
    // restarted as on-failure says.
    let before = ember.wait_state("victim", "active", None, LONG)["pid"].clone();
    assert!(ember.ctl(&["kill", "victim"]).status.success());
    assert!(wait_for(LONG, || {
        let s = ember.status("victim");
        s["state"] == "active" && s["pid"] != before
    }));
    assert_eq!(ember.status("victim")["want"], "up");

    // Refused whole, sending nothing: a signal that does not exist, a service that does
    // not run, an unknown one.
    for (args, why) in [
        (
            &["kill", "hupper", "--signal", "SIGNOPE"][..],
            "unknown signal",
        ),
        (&["kill", "hupper", "idle"][..], "idle is not running"),
        (&["kill", "hupper", "nope"][..], "no service named \"nope\""),
    ] {
        let out = ember.ctl(args);
        assert!(!out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(why), "{args:?}: {text}");
    }
    std::thread::sleep(scaled(Duration::from_millis(300)));
    assert_eq!(hups(), 2, "nothing was signalled by a refused kill");
    let out = ember.ctl(&["kill", "--signal", "HUP"]);
    assert_eq!(out.status.code(), Some(2), "a kill names a service");
}

/// A pattern to `kill` matches the services that have a process to signal (as
/// `systemctl kill 'worker@*'` signals the instances that run): one stopped, disabled or
/// between two runs is not there to signal. Found by a hostile review: `kill 'k*'` matched
/// a disabled service too, and the whole kill was refused, signalling nothing.
#[test]
fn a_kill_pattern_signals_the_services_that_run_and_skips_the_others() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "kill-pattern",
        r#"
[service.kone]
command = ["/bin/sh", "-c", "trap 'echo hup >> $DIR/hups' HUP; trap 'echo rt >> $DIR/rts' 35; while :; do /bin/sleep 7920411 & wait; done"]

[service.ktwo]
command = ["/bin/sleep", "7920412"]
enabled = false

[service.other]
command = ["/bin/sleep", "7920413"]
enabled = false

[service.kdone]
type = "oneshot"
command = ["/bin/true"]
"#,
    );
    ember.wait_state("kone", "active", None, LONG);
    ember.wait_state("kdone", "active", Some("exited"), LONG);

    // A oneshot that has run, with nothing left: no process to signal, said so (it was
    // "ok", having signalled nothing; systemctl kill says "No process to kill").
    let out = ember.ctl(&["kill", "kdone"]);
    assert!(!out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("kdone has no process left to signal (active (exited))"),
        "{text}"
    );
    let hups = || lines(&ember.dir.path("hups")).len();

    for (n, args) in [
        &["kill", "k*", "--signal", "HUP"][..],
        &["kill", "k*", "--main", "--signal", "HUP"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let out = ember.ctl(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            wait_for(LONG, || hups() == n + 1),
            "{args:?}: kone's trap ran"
        );
    }
    assert_eq!(ember.status("ktwo")["state"], "inactive");

    // A pattern that matches only services with nothing to signal says so, and a name
    // given as such is still refused whole.
    let out = ember.ctl(&["kill", "oth*"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("no running service matches \"oth*\""),
        "{text}"
    );
    let out = ember.ctl(&["kill", "k*", "other"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("other is not running"), "{text}");
    std::thread::sleep(scaled(Duration::from_millis(300)));
    assert_eq!(hups(), 2, "nothing was signalled by a refused kill");

    // Real-time signals, as systemctl kill takes them: by number, and as SIGRTMIN+N
    // (from 34, as systemd counts). Found by a hostile review: "unknown signal".
    let rts = || lines(&ember.dir.path("rts")).len();
    for (n, signal) in ["35", "RTMIN+1", "sigrtmin+1"].into_iter().enumerate() {
        let out = ember.ctl(&["kill", "kone", "--signal", signal]);
        assert!(out.status.success(), "{signal}: {out:?}");
        assert!(wait_for(LONG, || rts() == n + 1), "{signal}: the trap ran");
    }
    let out = ember.ctl(&["kill", "kone", "--signal", "65"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("unknown signal \"65\""), "{text}");
    assert_eq!(ember.status("kone")["state"], "active");
}
