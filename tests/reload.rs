//! A reload refuses whole what `ember check` fails (errors, and the problems a boot
//! forgives: a services.d file that cannot be loaded, a services_dir that is not a
//! directory, an unknown user, a missing program), says why as `ember check` does, and
//! leaves every running service alone; the configuration fixed, it reloads.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A SIGHUP reload is rejected too: logged, and the services keep running with their pids.
fn refused_on_sighup(ember: &Ember, names: &[&str], pids: &[Value]) {
    ember.signal(Signal::SIGHUP);
    assert!(
        wait_for(LONG, || ember.log().contains("SIGHUP: reload rejected")),
        "{}",
        ember.log()
    );
    still_running(ember, names, pids);
}

/// Each service's pid, once every one is active.
fn running(ember: &Ember, names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| ember.wait_state(name, "active", Some("running"), LONG)["pid"].clone())
        .collect()
}

/// `ember ctl reload` is refused, naming each problem `ember check` names (the same
/// file:line:col lines) and `needle`; the services keep running with their pids.
fn refused(ember: &Ember, needle: &str, names: &[&str], pids: &[Value]) {
    let check = Command::new(EMBER)
        .arg("check")
        .arg("--config")
        .arg(&ember.config)
        .output()
        .expect("run ember check");
    assert_eq!(check.status.code(), Some(1), "check: {}", text(&check));
    let problems: Vec<String> = String::from_utf8_lossy(&check.stdout)
        .lines()
        .filter(|l| !l.contains(": warning: "))
        .map(str::to_owned)
        .collect();
    assert!(!problems.is_empty(), "check: {}", text(&check));

    let out = ember.ctl(&["reload"]);
    let said = text(&out);
    assert!(!out.status.success(), "reload was taken: {said}");
    assert!(said.contains("nothing changed"), "{said}");
    assert!(said.contains(needle), "{needle} not named: {said}");
    for problem in &problems {
        assert!(
            said.contains(problem.as_str()),
            "check's {problem:?} not in: {said}"
        );
    }
    still_running(ember, names, pids);
}

/// Every service still active with the same pid, also a while later (a stop or a
/// restart would show by then).
fn still_running(ember: &Ember, names: &[&str], pids: &[Value]) {
    std::thread::sleep(scaled(std::time::Duration::from_millis(300)));
    for (name, pid) in names.iter().zip(pids) {
        let status = ember.status(name);
        assert_eq!(
            status["state"],
            "active",
            "{name}: {status}\n{}",
            ember.log()
        );
        assert_eq!(&status["pid"], pid, "{name} was restarted: {status}");
    }
}

fn reloads(ember: &Ember) -> String {
    let out = ember.ctl(&["reload"]);
    assert!(out.status.success(), "{}\n{}", text(&out), ember.log());
    text(&out)
}

/// services.d and its files, made before ember starts.
fn services_dir(tag: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(tag);
    for (name, text) in files {
        std::fs::write(dir.path(name), text).unwrap();
    }
    dir
}

fn symlink(target: &str, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn a_services_d_file_that_cannot_be_loaded_is_refused_and_stops_nothing() {
    if !can_unshare() {
        return;
    }
    let sd = services_dir(
        "reload-unloadable-sd",
        &[
            ("broker.toml", "command = [\"/bin/sleep\", \"7910001\"]\n"),
            (
                "w@.toml",
                "command = [\"/bin/sleep\", \"7910003\"]\ninstances = [\"a\"]\n",
            ),
        ],
    );
    let ember = Ember::start(
        "reload-unloadable",
        &format!(
            r#"
[system]
services_dir = "{}"

[service.app]
command = ["/bin/sleep", "7910002"]
requires = ["broker"]
"#,
            sd.0.display()
        ),
    );
    let names = ["app", "broker", "w@a"];
    let pids = running(&ember, &names);
    let broker = sd.path("broker.toml");
    let good = std::fs::read_to_string(&broker).unwrap();

    // A dangling symlink in place of a running service's file.
    symlink("/nonexistent/broker.toml", &broker);
    refused(&ember, "symlink to nothing", &names, &pids);

    // A new file that is not UTF-8, beside the good one.
    std::fs::remove_file(&broker).unwrap();
    std::fs::write(&broker, &good).unwrap();
    std::fs::write(sd.path("Web.toml"), b"\xff").unwrap();
    refused(&ember, "Web.toml", &names, &pids);
    std::fs::remove_file(sd.path("Web.toml")).unwrap();

    // A template's file that is not UTF-8: its instance runs on.
    let template = std::fs::read(sd.path("w@.toml")).unwrap();
    std::fs::write(sd.path("w@.toml"), b"\xff").unwrap();
    refused(&ember, "w@.toml", &names, &pids);
    std::fs::write(sd.path("w@.toml"), template).unwrap();

    // A directory named *.toml.
    std::fs::create_dir(sd.path("dir.toml")).unwrap();
    refused(&ember, "not a regular file", &names, &pids);
    std::fs::remove_dir(sd.path("dir.toml")).unwrap();

    // Fixed: the same files reload and nothing restarts; a change restarts broker.
    reloads(&ember);
    still_running(&ember, &names, &pids);
    std::fs::write(&broker, good.replace("7910001", "7910011")).unwrap();
    let said = reloads(&ember);
    assert!(said.contains("restarted broker"), "{said}");
    ember.wait_state("broker", "active", Some("running"), LONG);
    ember.wait_state("app", "active", Some("running"), LONG);
    assert!(wait_for(LONG, || !pids_with("sleep 7910011").is_empty()));
}

#[test]
fn a_services_dir_that_is_not_a_directory_is_refused_and_stops_nothing() {
    if !can_unshare() {
        return;
    }
    let parent = TempDir::new("reload-notdir-sd");
    let sd = parent.path("services.d");
    std::fs::create_dir(&sd).unwrap();
    std::fs::write(
        sd.join("web.toml"),
        "command = [\"/bin/sleep\", \"7920001\"]\n",
    )
    .unwrap();
    let ember = Ember::start(
        "reload-notdir",
        &format!(
            r#"
[system]
services_dir = "{}"

[service.app]
command = ["/bin/sleep", "7920002"]
"#,
            sd.display()
        ),
    );
    let names = ["app", "web"];
    let pids = running(&ember, &names);

    let moved = parent.path("services.d.bak");
    std::fs::rename(&sd, &moved).unwrap();
    std::fs::write(&sd, "").unwrap();
    refused(&ember, "cannot read services_dir", &names, &pids);

    // By SIGHUP too: rejected, logged, nothing stopped.
    refused_on_sighup(&ember, &names, &pids);

    std::fs::remove_file(&sd).unwrap();
    std::fs::rename(&moved, &sd).unwrap();
    reloads(&ember);
    still_running(&ember, &names, &pids);
}

#[test]
fn an_unknown_user_is_refused_and_stops_nothing() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-user",
        r#"
[service.app]
command = ["/bin/sleep", "7930001"]
user = "nobody"

[service.other]
command = ["/bin/sleep", "7930002"]
"#,
    );
    let names = ["app", "other"];
    let pids = running(&ember, &names);
    let good = std::fs::read_to_string(&ember.config).unwrap();

    std::fs::write(&ember.config, good.replace("\"nobody\"", "\"nobdy\"")).unwrap();
    refused(&ember, "nobdy", &names, &pids);

    // SIGHUP: the same.
    refused_on_sighup(&ember, &names, &pids);

    std::fs::write(&ember.config, &good).unwrap();
    let said = reloads(&ember);
    assert!(!said.contains("restarted"), "{said}");
    still_running(&ember, &names, &pids);
}

#[test]
fn a_missing_command_is_refused_and_stops_nothing() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-command",
        r#"
[service.app]
command = ["/bin/sleep", "7940001"]

[service.web]
command = ["/bin/sleep", "7940002"]
requires = ["app"]
"#,
    );
    let names = ["app", "web"];
    let pids = running(&ember, &names);
    let good = std::fs::read_to_string(&ember.config).unwrap();

    std::fs::write(
        &ember.config,
        good.replace(
            "[\"/bin/sleep\", \"7940001\"]",
            "[\"/bin/nonexistent\", \"7940001\"]",
        ),
    )
    .unwrap();
    refused(&ember, "/bin/nonexistent", &names, &pids);

    // Fixed, and changed: app restarts on its new command, web with it.
    std::fs::write(&ember.config, good.replace("7940001", "7940011")).unwrap();
    let said = reloads(&ember);
    assert!(said.contains("restarted app"), "{said}");
    ember.wait_state("app", "active", Some("running"), LONG);
    ember.wait_state("web", "active", Some("running"), LONG);
    assert!(wait_for(LONG, || !pids_with("sleep 7940011").is_empty()));
}

/// A reload says what it changed beside the services, and what it could not (found by a
/// hostile review: "reloaded: nothing changed" when the socket's rules, and its mode,
/// had changed, and when a new socket path was left for the next start).
#[test]
fn a_reload_says_what_it_did_to_the_socket_and_what_it_left() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-socket",
        r#"
[service.web]
command = ["/bin/sleep", "7840041"]
"#,
    );
    running(&ember, &["web"]);
    let text_now = std::fs::read_to_string(&ember.config).unwrap();
    let with_rule = text_now.replacen(
        "[service.web]",
        "[[control.allow]]\ngroup = \"65533\"\nverbs = [\"status\"]\n\n[service.web]",
        1,
    );
    std::fs::write(&ember.config, &with_rule).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("[[control.allow]] changed") && text(&out).contains("0666"),
        "{}",
        text(&out)
    );
    let moved = with_rule.replacen("control.sock", "other.sock", 1);
    std::fs::write(&ember.config, moved).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the control socket stays at"),
        "{}",
        text(&out)
    );
}

/// `ember ctl reload` run aside: its output, or `None` if it did not answer within
/// LONG (then it is killed).
fn reload_answer(ember: &Ember) -> Option<Output> {
    let mut child = Command::new(EMBER)
        .arg("ctl")
        .arg("--socket")
        .arg(&ember.socket)
        .arg("reload")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ember ctl");
    if wait_for(LONG, || child.try_wait().ok().flatten().is_some()) {
        return Some(child.wait_with_output().expect("ctl output"));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A main file swapped for a FIFO is refused, not waited on (found by a hostile review:
/// PID 1 blocked in open(2) until something wrote to the FIFO, and answered no one).
#[test]
fn a_main_file_that_is_a_fifo_is_refused_without_blocking() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-fifo",
        r#"
[service.app]
command = ["/bin/sleep", "7950001"]
"#,
    );
    let names = ["app"];
    let pids = running(&ember, &names);
    let good = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::remove_file(&ember.config).unwrap();
    nix::unistd::mkfifo(
        &ember.config,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();

    let answer = reload_answer(&ember);
    if answer.is_none() {
        // Let ember go: a writer ends its wait.
        let _ = std::fs::write(&ember.config, &good);
    }
    let out = answer.expect("ember did not answer a reload of a FIFO");
    let said = text(&out);
    assert!(!out.status.success(), "reload was taken: {said}");
    assert!(said.contains("not a regular file"), "{said}");
    still_running(&ember, &names, &pids);

    std::fs::remove_file(&ember.config).unwrap();
    std::fs::write(&ember.config, &good).unwrap();
    reloads(&ember);
    still_running(&ember, &names, &pids);
}

/// A reload while ember stops every service is refused as a start is (found by a hostile
/// review: it was taken, said "added web" of a service that would never start, and could
/// close the hardware watchdog that guards a stuck shutdown).
#[test]
fn a_reload_during_the_shutdown_is_refused() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "reload-shutdown",
        r#"
[service.slow]
command = ["/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 7960001"]
stop_signal = "SIGTERM"
stop_timeout = "30s"
"#,
    );
    running(&ember, &["slow"]);
    let text_now = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(
        &ember.config,
        format!("{text_now}\n[service.web]\ncommand = [\"/bin/sleep\", \"7960002\"]\n"),
    )
    .unwrap();
    let out = ember.ctl(&["poweroff"]);
    assert!(out.status.success(), "{}", text(&out));
    ember.wait_state("slow", "deactivating", None, LONG);

    let out = ember.ctl(&["reload"]);
    let said = text(&out);
    assert!(!out.status.success(), "reload was taken: {said}");
    assert!(said.contains("shutting down"), "{said}");
    ember.signal(Signal::SIGHUP);
    assert!(
        wait_for(LONG, || ember.log().contains("SIGHUP: reload refused")),
        "{}",
        ember.log()
    );
    assert!(
        ember.all().iter().all(|s| s["name"] != "web"),
        "{}",
        ember.log()
    );

    // The shutdown goes on as it was: slow is killed, and ember ends.
    for pid in pids_with("sleep 7960001") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(ember.wait_status(LONG).is_some(), "{}", ember.log());
}

/// A watchdog device that is not there is refused by a reload as by `ember check` (found
/// by a hostile review: as PID 1 a reload did not look, took it, and closed the watchdog
/// that was running to open one that did not exist).
#[test]
fn a_missing_watchdog_device_is_refused_and_stops_nothing() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-watchdog",
        r#"
[service.app]
command = ["/bin/sleep", "7970001"]
"#,
    );
    let names = ["app"];
    let pids = running(&ember, &names);
    let good = std::fs::read_to_string(&ember.config).unwrap();
    let device = ember.dir.path("watchdog-typo");
    std::fs::write(
        &ember.config,
        format!(
            "[system]\nwatchdog = {{ device = \"{}\" }}\n\n{good}",
            device.display()
        ),
    )
    .unwrap();
    refused(&ember, "watchdog-typo", &names, &pids);
    refused_on_sighup(&ember, &names, &pids);

    std::fs::write(&ember.config, &good).unwrap();
    reloads(&ember);
    still_running(&ember, &names, &pids);
}

/// A readiness check still running when its service stops starting (removed by a reload,
/// stopped, or restarted on a new spec) ends with it (found by a hostile review: an
/// `exec` check that never ended outlived its service, one more with each start).
#[test]
fn a_readiness_check_ends_with_its_service() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-check",
        r#"
[service.app]
command = ["/bin/sleep", "7980001"]
ready = { exec = ["/bin/sleep", "7980002"] }

[service.other]
command = ["/bin/sleep", "7980003"]
ready = { exec = ["/bin/sleep", "7980004"] }
"#,
    );
    assert!(wait_for(LONG, || pids_with("sleep 7980002").len() == 1));
    assert!(wait_for(LONG, || pids_with("sleep 7980004").len() == 1));
    let text_now = std::fs::read_to_string(&ember.config).unwrap();
    let (kept, _) = text_now.split_once("[service.other]").unwrap();
    std::fs::write(&ember.config, kept).unwrap();
    let said = reloads(&ember);
    assert!(said.contains("removed   other"), "{said}");
    assert!(
        wait_for(LONG, || pids_with("sleep 7980004").is_empty()),
        "the check of a removed service runs on: {:?}\n{}",
        pids_with("sleep 7980004"),
        ember.log()
    );

    let out = ember.ctl(&["stop", "app", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        wait_for(LONG, || pids_with("sleep 7980002").is_empty()),
        "the check of a stopped service runs on: {:?}\n{}",
        pids_with("sleep 7980002"),
        ember.log()
    );
}

/// A reload applies a new `[log] output` (found by a hostile review: only a move to
/// journald was; from the console to the kernel log, or back, nothing changed and
/// nothing said so). The namespace gets a /dev of its own, whose kmsg is a plain file.
#[test]
fn a_reload_moves_the_log_where_log_output_says() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start_after(
        "reload-log-output",
        "mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && : > /dev/kmsg || exit 1",
        r#"
[log]
output = "console"

[service.app]
command = ["/bin/sleep", "7990001"]
"#,
    );
    running(&ember, &["app"]);
    let kmsg = std::path::PathBuf::from(format!("/proc/{}/root/dev/kmsg", ember.host_pid()));
    let read = || std::fs::read_to_string(&kmsg).unwrap_or_default();
    assert_eq!(read(), "", "the console was asked for");

    let good = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(&ember.config, good.replace("\"console\"", "\"kmsg\"")).unwrap();
    reloads(&ember);
    assert!(
        wait_for(LONG, || read()
            .contains("the log moved here from the console")),
        "kmsg: {}\nlog:\n{}",
        read(),
        ember.log()
    );

    std::fs::write(&ember.config, &good).unwrap();
    reloads(&ember);
    assert!(
        wait_for(LONG, || ember
            .log()
            .contains("the log moved here from /dev/kmsg")),
        "{}",
        ember.log()
    );
}

/// A reload that gives a running service a requirement that is not running starts it, as
/// `ember ctl start` would, and says the service restarts: it comes back once that is up
/// (found by a hostile review: web was stopped and left "inactive (dependency)" for good,
/// cache never started, and the reload said "updated web (requires changed; applied
/// without a restart)").
#[test]
fn a_reload_that_adds_a_requirement_starts_it_and_says_the_service_restarts() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "reload-requires",
        r#"
[service.web]
command = ["/bin/sleep", "7840051"]

[service.cache]
command = ["/bin/sleep", "7840052"]
enabled = false
"#,
    );
    running(&ember, &["web"]);
    let config = std::fs::read_to_string(&ember.config).unwrap();
    let required = config.replacen(
        "[service.web]\n",
        "[service.web]\nrequires = [\"cache\"]\n",
        1,
    );
    std::fs::write(&ember.config, required).unwrap();
    let said = reloads(&ember);
    assert!(said.contains("restarted web (requires changed)"), "{said}");
    ember.wait_state("cache", "active", Some("running"), LONG);
    ember.wait_state("web", "active", Some("running"), LONG);
}
