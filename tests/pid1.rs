//! ember as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc --uts`), where
//! reboot(2) ends the namespace instead of the machine: a safe stand-in for a board.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

const SIGHUP: i32 = 1; // what reboot(2) RESTART does to a namespace's PID 1
const SIGINT: i32 = 2; // what POWER_OFF and HALT do

#[test]
fn ten_thousand_orphans_are_reaped_and_no_exit_status_is_lost() {
    if !can_unshare() {
        return;
    }
    // The exits of five services land while PID 1 reaps the 10,000 orphans: they wait
    // for the forker's last moment and exit with it.
    let mut services = String::from(
        r#"
[service.forker]
command = ["/usr/bin/python3", "-c", "import os\nfor i in range(10000):\n    if os.fork() == 0:\n        os._exit(0)\nopen('$DIR/go', 'w').close()\nos._exit(7)"]
restart = "never"
"#,
    );
    for code in 1..=5 {
        services.push_str(&format!(
            "\n[service.exit{code}]\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e $DIR/go ]; do sleep 0.01; done; exit {code}\"]\nrestart = \"never\"\n"
        ));
    }
    let ember = Ember::start("reap10k", &services);
    // 10,000 forks take seconds even on a quiet machine (python's fork is not cheap):
    // twice the usual deadline, scaled like every other.
    let forks = 2 * LONG;
    let forker = ember.wait_state("forker", "failed", None, forks);
    assert_eq!(forker["exit_code"], 7, "{forker}");
    for code in 1..=5 {
        let s = ember.wait_state(&format!("exit{code}"), "failed", Some("exit-code"), forks);
        assert_eq!(s["exit_code"], code, "{s}");
    }
    let pid1 = ember.host_pid();
    let children = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default()
    };
    assert!(
        wait_for(forks, || children(pid1).trim().is_empty()),
        "ember still has {} children",
        children(pid1).split_whitespace().count()
    );
    assert!(zombies_of(pid1).is_empty());
}

fn shutdown_config(marker: u32, extra: &str) -> String {
    format!(
        r#"[control]
socket = "$DIR/control.sock"

[system]
shutdown_timeout = "700ms"
{extra}

[service.base]
command = ["/bin/sh", "-c", "trap 'echo base >> $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait"]
ready = {{ log = "trapped" }}

[service.top]
command = ["/bin/sh", "-c", "trap 'echo top >> $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait"]
ready = {{ log = "trapped" }}
requires = ["base"]

# Leaves behind a process that ignores SIGTERM, in a session of its own and moved out of
# the service's cgroup into ember's (only root can): no service holds it, so only the
# final SIGKILL of the shutdown sequence ends it.
[service.leaver]
command = ["/bin/sh", "-c", """
mnt=$(grep ' - cgroup2 ' /proc/self/mountinfo | head -1 | cut -d' ' -f5)
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
setsid /bin/sh -c 'trap "" TERM; exec sleep {marker}1' &
echo $! > "$mnt$(dirname "$(dirname "$own")")/cgroup.procs"
touch $DIR/stray-moved
exec sleep {marker}2
"""]
"#
    )
}

/// ember as PID 1 with the shutdown configuration, every service up and the stray that
/// ignores SIGTERM in place (its trap set: `sleep` runs).
fn booted(tag: &str, marker: u32, extra: &str) -> Ember {
    let ember = Ember::start_with_config(tag, &shutdown_config(marker, extra));
    ember.wait_state("top", "active", None, LONG);
    ember.wait_state("base", "active", None, LONG);
    // Moved out of the service's cgroup, not only started: until then, stopping the
    // service would end it too, and the final SIGKILL would have nothing to do.
    assert!(
        wait_for(LONG, || ember.dir.path("stray-moved").exists()
            && pids_with(&format!("{marker}1")).len() == 1),
        "the stray did not start"
    );
    ember
}

fn assert_full_shutdown(ember: &Ember, marker: u32, last: &str) {
    let log = ember.log();
    let steps = [
        "shutdown: stopping every service",
        "shutdown: services stopped in",
        "shutdown: SIGTERM to remaining processes",
        "SIGKILL to remaining processes",
        "shutdown: remaining processes gone in",
        "shutdown: sync done in",
        "shutdown: unmount skipped",
        last,
    ];
    let mut at = 0;
    for step in steps {
        match log[at..].find(step) {
            Some(i) => at += i,
            None => panic!("shutdown step {step:?} missing or out of order; log:\n{log}"),
        }
    }
    assert_eq!(
        lines(&ember.dir.path("stopped")),
        ["top", "base"],
        "reverse dependency order"
    );
    assert!(
        pids_with(&marker.to_string()).is_empty(),
        "a process survived the shutdown"
    );
}

#[test]
fn sigterm_reboots_after_the_whole_shutdown_sequence() {
    if !can_unshare() {
        return;
    }
    let mut ember = booted("pid1-term", 783001, "");
    assert!(wait_for(LONG, || pids_with("7830011").len() == 1));
    ember.signal(Signal::SIGTERM);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGHUP),
        "log:\n{}",
        ember.log()
    );
    assert_full_shutdown(&ember, 783001, "shutdown: reboot");
}

#[test]
fn sigusr2_powers_off() {
    if !can_unshare() {
        return;
    }
    let mut ember = booted("pid1-usr2", 783002, "");
    ember.signal(Signal::SIGUSR2);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "log:\n{}",
        ember.log()
    );
    assert_full_shutdown(&ember, 783002, "shutdown: power off");
}

#[test]
fn sigusr1_halts() {
    if !can_unshare() {
        return;
    }
    let mut ember = booted("pid1-usr1", 783003, "");
    ember.signal(Signal::SIGUSR1);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "log:\n{}",
        ember.log()
    );
    assert!(ember.log().contains("shutdown: halt"));
}

#[test]
fn sigint_follows_ctrl_alt_del() {
    if !can_unshare() {
        return;
    }
    // Default: reboot.
    let mut ember = booted("pid1-int", 783004, "");
    ember.signal(Signal::SIGINT);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGHUP),
        "log:\n{}",
        ember.log()
    );

    let mut ember = booted("pid1-int-off", 783005, "ctrl_alt_del = \"poweroff\"");
    ember.signal(Signal::SIGINT);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "log:\n{}",
        ember.log()
    );

    let mut ember = booted("pid1-int-ignore", 783006, "ctrl_alt_del = \"ignore\"");
    ember.signal(Signal::SIGINT);
    // Once ember says it has ignored the signal, anything it would have done is under way.
    assert!(
        wait_for(LONG, || ember.log().contains("Ctrl-Alt-Del: ignored")),
        "log:\n{}",
        ember.log()
    );
    assert_eq!(
        ember.wait_namespace_end(Duration::ZERO),
        None,
        "Ctrl-Alt-Del is ignored"
    );
    assert_eq!(ember.status("top")["state"], "active");
    assert!(
        !ember.log().contains("shutdown: stopping every service"),
        "log:\n{}",
        ember.log()
    );
}

#[test]
fn poweroff_and_reboot_commands_are_multi_call() {
    if !can_unshare() {
        return;
    }
    let mut ember = booted("pid1-multicall", 783007, "");
    let poweroff = ember.dir.path("poweroff");
    std::os::unix::fs::symlink(EMBER, &poweroff).unwrap();
    let out = std::process::Command::new(&poweroff)
        .arg("--socket")
        .arg(&ember.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "log:\n{}",
        ember.log()
    );
    assert_full_shutdown(&ember, 783007, "shutdown: power off");
}

#[test]
fn reboot_f_inside_the_namespace_reboots_at_once() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-force",
        &format!(
            r#"
[service.stayer]
command = ["/bin/sh", "-c", "trap 'echo stopped >> $DIR/stopped' TERM; sleep 1000 & wait"]

[service.rebooter]
type = "oneshot"
command = ["/bin/sh", "-c", "sleep 0.3; ln -sf {EMBER} $DIR/reboot; exec $DIR/reboot -f"]
"#
        ),
    );
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGHUP),
        "log:\n{}",
        ember.log()
    );
    assert!(
        lines(&ember.dir.path("stopped")).is_empty(),
        "-f does not stop services first"
    );
}

#[test]
fn a_panic_in_a_task_does_not_end_pid_1() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "pid1-panic",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7840001\"]\n",
    );
    let before = ember.wait_state("steady", "active", None, LONG)["pid"].clone();
    let _ = ember.ctl(&["status", "__panic_task"]);
    assert!(
        wait_for(LONG, || ember.log().contains("injected panic in a task")),
        "log:\n{}",
        ember.log()
    );
    assert_eq!(ember.status("steady")["pid"], before, "still supervising");
    assert!(ember.ctl(&["restart", "steady", "--wait"]).status.success());
}

#[test]
fn a_panic_in_the_main_loop_falls_back_to_the_emergency_loop() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-emergency",
        "[service.orphaner]\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e $DIR/go ]; do sleep 0.05; done; for i in 1 2 3; do ( (sleep 0.2; touch $DIR/orphan$i) & ); done; exec sleep 7850001\"]\n",
    );
    ember.wait_state("orphaner", "active", None, LONG);
    let _ = ember.ctl(&["status", "__panic_main"]);
    assert!(
        wait_for(LONG, || ember
            .log()
            .contains("emergency mode: the main loop panicked")),
        "log:\n{}",
        ember.log()
    );
    // Still PID 1, still reaping: the orphans made after the panic (the test says when)
    // do not stay zombies once they have ended.
    std::fs::write(ember.dir.path("go"), "").unwrap();
    assert!(
        wait_for(LONG, || (1..=3)
            .all(|i| ember.dir.path(&format!("orphan{i}")).exists())),
        "the orphans did not run"
    );
    assert!(
        wait_for(LONG, || zombies_of(ember.host_pid()).is_empty()),
        "zombies: {:?}",
        zombies_of(ember.host_pid())
    );
    assert!(
        ember.wait_status(Duration::ZERO).is_none(),
        "PID 1 must not exit"
    );
    // The socket answers and says why; poweroff still works.
    let mut answered = String::new();
    assert!(
        wait_for(LONG, || {
            answered = String::from_utf8_lossy(&ember.ctl(&["status"]).stderr).into_owned();
            answered.contains("emergency mode")
        }),
        "{answered}"
    );
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(SIGINT));
}

#[test]
fn a_broken_config_boots_into_the_rescue_path_and_reload_repairs_it() {
    if !can_unshare() {
        return;
    }
    let broken = r#"[control]
socket = "$DIR/control.sock"

[system]
rescue_shell = "/bin/sh"

[service.app]
command = ["/bin/sleep", "7860001"]
restart = "sometimes"
"#;
    let ember = Ember::start_with_config("pid1-rescue", broken);
    let log = || ember.log();
    assert!(
        wait_for(LONG, || log().contains("booting with no services")),
        "log:\n{}",
        log()
    );
    assert!(
        log().contains("sometimes"),
        "the error is in the log:\n{}",
        log()
    );
    // With no console in a test, the shell exits at once and is started again each second.
    assert!(
        wait_for(LONG, || log().contains("rescue-shell: active (running)")),
        "log:\n{}",
        log()
    );
    // Loud where an admin looks: `ember ctl status` says the configuration fell back, why,
    // and exits 1 (the table, and --json, too).
    let out = ember.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("ember is running a fallback configuration:"),
        "{text}"
    );
    // Each error on a line of its own, at its file:line:col.
    assert!(
        text.lines()
            .any(|l| l.starts_with("  ") && l.contains("ember.toml:9:") && l.contains("sometimes")),
        "{text}"
    );
    assert!(text.contains("rescue-shell"), "{text}");
    let out = ember.ctl(&["status", "--json", "rescue-shell"]);
    assert_eq!(out.status.code(), Some(1));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["want"], "up");
    // Fix the file, reload: the real services start and the rescue shell goes.
    let fixed = std::fs::read_to_string(&ember.config)
        .unwrap()
        .replace("restart = \"sometimes\"", "restart = \"always\"");
    std::fs::write(&ember.config, fixed).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ember.wait_state("app", "active", None, LONG);
    assert!(wait_for(LONG, || ember
        .all()
        .iter()
        .all(|s| s["name"] != "rescue-shell")));
    // No longer a fallback.
    let out = ember.ctl(&["status"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("fallback"));
}

/// journald is usually one of the services: once its socket answers, ember's log (and the
/// services' output) moves there, with the service name as a field.
#[test]
fn the_log_moves_to_journald_once_its_service_is_up() {
    if !can_unshare() {
        return;
    }
    // A stand-in journald: decodes the native protocol (KEY=VALUE lines, or KEY, a
    // little-endian length and the raw value) into one line of KEY=VALUE| per record.
    let listener = r#"import socket,os,sys,struct
path,out=sys.argv[1],sys.argv[2]
os.makedirs(os.path.dirname(path),exist_ok=True)
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)
s.bind(path)
f=open(out,'ab',buffering=0)
while True:
    d=s.recv(65536)
    fields=[]
    while d:
        nl=d.find(b'\n')
        eq=d.find(b'=')
        if eq!=-1 and (nl==-1 or eq<nl):
            fields.append(d[:nl if nl!=-1 else len(d)])
            d=d[nl+1:] if nl!=-1 else b''
        else:
            key=d[:nl]
            n=struct.unpack('<Q',d[nl+1:nl+9])[0]
            fields.append(key+b'='+d[nl+9:nl+9+n])
            d=d[nl+9+n+1:]
    f.write(b'|'.join(fields)+b'\n')
"#;
    let ember = Ember::start(
        "journald",
        &format!(
            r#"
[log]
output = "journald"     # as PID 1 of a namespace, ember logs to its stderr unless told

[service.journald]
command = ["/usr/bin/python3", "-c", '''{listener}''', "/run/systemd/journal/socket", "$DIR/journal"]
ready = {{ file = "/run/systemd/journal/socket" }}

[service.talker]
command = ["/bin/sh", "-c", "sleep 0.3; echo hello journal; exec sleep 1000"]
after = ["journald"]
"#
        ),
    );
    ember.wait_state("talker", "active", None, LONG);
    let journal = || std::fs::read_to_string(ember.dir.path("journal")).unwrap_or_default();
    assert!(
        wait_for(LONG, || journal().contains("hello journal")),
        "journal:\n{}\nlog:\n{}",
        journal(),
        ember.log()
    );
    let record = journal()
        .lines()
        .find(|l| l.contains("hello journal"))
        .unwrap_or_default()
        .to_owned();
    assert!(record.contains("SYSLOG_IDENTIFIER=ember"), "{record}");
    assert!(
        record.contains("SERVICE=talker"),
        "the service name is a field: {record}"
    );
    assert!(
        ember.log().contains("the log moves to journald now"),
        "log:\n{}",
        ember.log()
    );
    assert!(
        !ember.log().contains("hello journal"),
        "once journald answers, the console no longer gets the log"
    );
}

/// The kernel drops a signal to PID 1 that has no handler yet. ember blocks its signals
/// from the first instruction of main, so a SIGTERM sent while it is still reading a big
/// configuration waits, and then reboots, instead of being lost.
#[test]
fn a_sigterm_sent_during_start_up_is_not_lost() {
    use std::os::unix::process::ExitStatusExt;
    if !can_unshare() {
        return;
    }
    let dir = TempDir::new("pid1-early-signal");
    write_sleepers(&dir, "7870");
    let mut unshare = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--uts",
            "--kill-child",
            EMBER,
            "--config",
        ])
        .arg(dir.path("ember.toml"))
        .stderr(std::fs::File::create(dir.path("ember.log")).unwrap())
        .spawn()
        .unwrap();
    // Catch ember as soon as its main has blocked SIGTERM (bit 15 of SigBlk), long before
    // it has read 3,000 services. (Between exec and main no program can protect itself:
    // the C runtime runs first.)
    let outer = unshare.id();
    let mut pid1 = None;
    // A tight loop, no sleeping: the window (reading the configuration) is milliseconds.
    let deadline = std::time::Instant::now() + LONG;
    while pid1.is_none() && std::time::Instant::now() < deadline {
        let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
            .unwrap_or_default();
        pid1 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .map(|e| e.ends_with("ember"))
                    .unwrap_or(false)
                    && sigterm_blocked(*p)
            });
    }
    assert!(
        pid1.is_some(),
        "never saw ember with SIGTERM blocked during its start-up"
    );
    let socket_existed = dir.path("control.sock").exists();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1.unwrap_or(0)),
        Signal::SIGTERM,
    )
    .unwrap();
    let mut status = None;
    wait_for(LONG, || {
        status = unshare.try_wait().ok().flatten();
        status.is_some()
    });
    let _ = unshare.kill();
    let log = std::fs::read_to_string(dir.path("ember.log")).unwrap_or_default();
    assert!(
        !socket_existed,
        "the signal was not early enough to test anything"
    );
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(SIGHUP),
        "the SIGTERM was lost; log:\n{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(
        log.contains("SIGTERM (reboot)"),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
}

/// The same for ember as a supervisor (not PID 1): the daemon blocks its signals before
/// it reads the configuration and reads them from a signalfd once its main loop runs, so
/// a SIGTERM sent meanwhile stops it cleanly (exit 0) instead of killing it (it was
/// killed by the signal, its services' start never undone, before the signalfd).
#[test]
fn a_sigterm_sent_while_a_supervisor_starts_is_not_lost() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("early-signal-supervisor");
    // The services' sleeps carry this test process's id: nothing left by another run
    // (or another test) can be taken for one of them.
    let marker = format!("9{}", std::process::id());
    write_sleepers(&dir, &marker);
    let mut ember = std::process::Command::new(EMBER)
        .arg("--config")
        .arg(dir.path("ember.toml"))
        .stderr(std::fs::File::create(dir.path("ember.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = ember.id() as i32;
    // A tight loop, no sleeping: the window (reading the configuration) is milliseconds.
    let deadline = std::time::Instant::now() + LONG;
    let mut blocked = false;
    while !blocked && std::time::Instant::now() < deadline {
        blocked = sigterm_blocked(pid);
    }
    let socket_existed = dir.path("control.sock").exists();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let mut status = None;
    wait_for(LONG, || {
        status = ember.try_wait().ok().flatten();
        status.is_some()
    });
    let _ = ember.kill();
    let _ = ember.wait();
    let log = std::fs::read_to_string(dir.path("ember.log")).unwrap_or_default();
    let tail = script::tail(&log, 30);
    assert!(
        blocked,
        "never saw ember with SIGTERM blocked during its start-up"
    );
    assert!(
        !socket_existed,
        "the signal was not early enough to test anything"
    );
    assert_eq!(
        status.map(|s| (s.code(), s.signal())),
        Some((Some(0), None)),
        "the SIGTERM killed ember instead of stopping it; log:\n{tail}"
    );
    assert!(log.contains("SIGTERM"), "{tail}");
    // Every service it started was stopped: none of the sleeps is left.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("^/bin/sleep {marker}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(left.trim().is_empty(), "left running: {left}");
}

/// Signals that whoever started ember left ignored are ember's again. An ignored SIGCHLD
/// has the kernel reap every child itself: ember would never learn an exit status (with
/// tokio's handlers, installing one undid it; a signalfd needs the default disposition
/// back). An exec keeps what is ignored; python sets it here, as a careless parent would.
#[test]
fn signals_left_ignored_by_whoever_started_ember_are_handled() {
    let dir = TempDir::new("ignored-signals");
    let socket = dir.path("control.sock");
    let config = dir.path("ember.toml");
    std::fs::write(
        &config,
        format!(
            r#"[control]
socket = "{}"

[service.fails]
command = ["/bin/sh", "-c", "sleep 0.2; exit 3"]
restart = "never"
"#,
            socket.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path("ember.log")).unwrap();
    let child = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, signal, sys\n\
             for s in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):\n    signal.signal(s, signal.SIG_IGN)\n\
             os.execv(sys.argv[1], sys.argv[1:])",
            EMBER,
            "--config",
        ])
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut ember = Ember {
        dir,
        child,
        socket,
        config,
    };
    assert!(
        wait_for(LONG, || listening(&ember.socket)),
        "ember did not open its socket; log:\n{}",
        ember.log()
    );
    let status = ember.wait_state("fails", "failed", None, LONG);
    assert_eq!(status["exit_code"], 3, "the exit status was lost: {status}");
    ember.signal(Signal::SIGHUP);
    assert!(
        wait_for(LONG, || ember.log().contains("SIGHUP: reloading")),
        "SIGHUP did not reload; log:\n{}",
        ember.log()
    );
    ember.signal(Signal::SIGTERM);
    assert_eq!(ember.wait_exit(LONG), Some(0), "log:\n{}", ember.log());
}

/// During a boot ember spawns in slices of its main loop and serves its control socket
/// between them: a status request sent while 4,000 services start is answered within a
/// few slices, with every service listed, not once most of the boot is over. Counted in
/// services started meanwhile, not in time: on a loaded machine each slice starts fewer.
/// (bench/run.sh's `ctl` figure times it: with the main loop polled as block_on's future
/// the request's tasks waited behind the output readers' tasks of every spawn, 175-233
/// ms; the debug build that this test runs spawns too slowly for that queue to grow.)
#[test]
fn a_status_request_during_a_big_boot_is_answered_between_spawns() {
    if !can_unshare() {
        return;
    }
    let mut services = String::new();
    for i in 0..4000 {
        services.push_str(&format!(
            "[service.s{i}]\ncommand = [\"/bin/sleep\", \"7872{i:04}\"]\n\n"
        ));
    }
    let ember = Ember::start("pid1-status-in-boot", &services);
    let pid1 = ember.host_pid();
    let children = || {
        std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .count()
    };
    assert!(
        wait_for(LONG, || children() >= 300),
        "300 services never ran; log:\n{}",
        ember.log()
    );
    let before = children();
    let all = ember.all();
    let started = all.iter().filter(|s| s["pid"].is_number()).count();
    assert_eq!(all.len(), 4000, "the status lists every service");
    eprintln!("status asked with {before} running; the reply had {started} started");
    assert!(
        started < before + 600,
        "the request waited for the boot: asked with {before} services running, answered with {started} started"
    );
}

/// A kernel may start init with fds 0-2 closed (no /dev/console in the initramfs), and
/// with no /dev/null either. std's own start-up aborts then; ember must come up anyway.
#[test]
fn pid1_starts_with_closed_standard_fds_and_no_dev() {
    if !can_unshare() {
        return;
    }
    let dir = TempDir::new("pid1-no-fds");
    let socket = dir.path("control.sock");
    std::fs::write(
        dir.path("ember.toml"),
        format!("[control]\nsocket = \"{}\"\n\n[service.steady]\ncommand = [\"/bin/sleep\", \"7890001\"]\n", socket.display()),
    )
    .unwrap();
    // An empty /dev in the namespace, and ember exec'd as its PID 1 with 0-2 closed.
    let script = format!(
        "mount -t tmpfs none /dev && exec {EMBER} --config {} 0<&- 1>&- 2>&-",
        dir.path("ember.toml").display()
    );
    let mut child = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--uts",
            "--kill-child",
            "/bin/sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    let up = wait_for(LONG, || listening(&socket));
    let early_exit = child.try_wait().ok().flatten();
    let status = std::process::Command::new(EMBER)
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["status", "--json", "steady"])
        .output()
        .unwrap();
    kill_ember(&mut child);
    assert!(
        up && early_exit.is_none(),
        "ember did not come up (it ended with {early_exit:?})"
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("\"state\": \"active\""),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// `dir`/ember.toml: a control socket in `dir` and 3,000 services, each a sleep whose
/// argument starts with `marker` (a configuration that takes a while to read).
fn write_sleepers(dir: &TempDir, marker: &str) {
    let mut config = format!(
        "[control]\nsocket = \"{}\"\n",
        dir.path("control.sock").display()
    );
    for i in 0..3000 {
        config.push_str(&format!(
            "\n[service.s{i}]\ncommand = [\"/bin/sleep\", \"{marker}{i:04}\"]\nstdout = \"null\"\n"
        ));
    }
    std::fs::write(dir.path("ember.toml"), config).unwrap();
}

/// Whether SIGTERM is in the process's blocked mask (/proc/PID/status SigBlk, bit 15).
fn sigterm_blocked(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("SigBlk:"))?;
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << 14) != 0)
}

/// At shutdown, processes that ember did not spawn (entered into its namespace from
/// outside with nsenter, as `docker exec` does; their parent is outside, so waitpid never
/// reports them) get SIGTERM and the grace like any other, then SIGKILL; the log names
/// them.
#[test]
fn processes_entered_from_outside_get_sigterm_the_grace_and_then_sigkill() {
    use std::os::unix::process::ExitStatusExt;
    if !can_unshare() {
        return;
    }
    // Long enough for the graceful one's half second of cleaning up on any machine; the
    // test waits it out once, for the stubborn one.
    let grace = scaled(std::time::Duration::from_secs(5));
    let mut ember = Ember::start_with_config(
        "pid1-entered",
        &format!(
            "[control]\nsocket = \"$DIR/control.sock\"\n\n[system]\nshutdown_timeout = \"{}ms\"\n\n[service.steady]\ncommand = [\"/bin/sleep\", \"7891001\"]\n",
            grace.as_millis()
        ),
    );
    ember.wait_state("steady", "active", None, LONG);
    let dir = ember.dir.0.clone();
    // Cleans up for half a second after SIGTERM, then exits 0. Its `sleep 0.1` dies of
    // the same SIGTERM; the trap's `sleep 0.5` starts after it and is not signalled.
    std::fs::write(
        dir.join("graceful-tenant.sh"),
        format!(
            "trap 'echo term > {d}/graceful.term; sleep 0.5; echo done > {d}/graceful.done; exit 0' TERM\necho $$ > {d}/graceful.pid\nwhile :; do sleep 0.1; done\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // Ignores SIGTERM (and so does its `sleep`, which inherits the disposition).
    std::fs::write(
        dir.join("stubborn-tenant.sh"),
        format!(
            "trap '' TERM\necho $$ > {d}/stubborn.pid\nwhile :; do sleep 1; done\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let target = ember.host_pid().to_string();
    let enter = |script: &str| {
        std::process::Command::new("nsenter")
            .args(["-t", &target, "-p", "--", "/bin/sh"])
            .arg(dir.join(script))
            .stdin(std::process::Stdio::null())
            // The shell says "Terminated" of the sleep that SIGTERM ends.
            .stderr(std::fs::File::create(dir.join(format!("{script}.err"))).unwrap())
            .spawn()
            .expect("nsenter (util-linux)")
    };
    let mut graceful = enter("graceful-tenant.sh");
    let mut stubborn = enter("stubborn-tenant.sh");
    let pid_in_namespace = |name: &str| {
        let mut pid = String::new();
        assert!(
            wait_for(LONG, || {
                pid = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                pid.ends_with('\n')
            }),
            "{name} was not written"
        );
        pid.trim().to_owned()
    };
    let graceful_pid = pid_in_namespace("graceful.pid");
    let stubborn_pid = pid_in_namespace("stubborn.pid");

    let out = ember.ctl(&["poweroff"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = ember.wait_namespace_end(LONG + grace);
    let graceful_status = graceful.wait().unwrap();
    let stubborn_status = stubborn.wait().unwrap();
    let log = ember.log();
    assert_eq!(ended, Some(SIGINT), "log:\n{log}");

    // The graceful one got SIGTERM, and the time to finish and exit by itself (nsenter
    // passes on its child's status).
    assert!(
        dir.join("graceful.term").exists(),
        "no SIGTERM reached it; log:\n{log}"
    );
    assert!(
        dir.join("graceful.done").exists() && graceful_status.code() == Some(0),
        "it was not given the grace ({graceful_status:?}); log:\n{log}"
    );
    // The stubborn one was SIGKILLed.
    assert_eq!(stubborn_status.signal(), Some(9), "log:\n{log}");

    // The log names them: both at SIGTERM, the stubborn one alone at SIGKILL.
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line; log:\n{log}"))
            .to_owned()
    };
    let term = line("SIGTERM to remaining processes");
    let killed = line("SIGKILL to remaining processes");
    let named = |line: &str, pid: &str, script: &str| {
        line.contains(&format!(" {pid} (/bin/sh {}", dir.join(script).display()))
    };
    assert!(
        named(&term, &graceful_pid, "graceful-tenant.sh")
            && named(&term, &stubborn_pid, "stubborn-tenant.sh"),
        "{term}"
    );
    assert!(
        named(&killed, &stubborn_pid, "stubborn-tenant.sh"),
        "{killed}"
    );
    assert!(
        !killed.contains("graceful-tenant"),
        "the graceful one ended by itself: {killed}"
    );
}

/// A service stopped (SIGSTOP: a debugger, a `kill -STOP`, a job-control shell) acts on
/// its stop signal only once it runs again. The shutdown's last step sends SIGCONT after
/// its SIGTERM; stopping a service did not, so its stop_timeout ran out whole and it was
/// SIGKILLed, its clean exit (here the trap) never run.
#[test]
fn a_stopped_service_gets_its_stop_signal_acted_on_at_the_shutdown() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-sigstopped",
        r#"[service.frozen]
command = ["/bin/sh", "-c", "trap 'echo clean >> $DIR/trapped; exit 0' TERM; touch $DIR/stopping; kill -STOP $$; exec sleep 7831011"]
# Longer than the test waits: only acting on SIGTERM ends it in time.
stop_timeout = "1h"
"#,
    );
    ember.wait_state("frozen", "active", None, LONG);
    assert!(
        wait_for(LONG, || ember.dir.path("stopping").exists()
            && stopped_shell_with(
                &ember.dir.path("trapped").display().to_string()
            )),
        "the service never stopped itself"
    );
    ember.signal(Signal::SIGUSR2);
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "the stopped service was not continued; log:\n{}",
        ember.log()
    );
    assert_eq!(lines(&ember.dir.path("trapped")), ["clean"]);
}

/// Whether a process whose command line holds `marker` is stopped (state T).
fn stopped_shell_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let pid = entry.file_name();
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.to_string_lossy()))
                .unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker)
                && stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
}

/// A second client asking for another end (a reboot while the board powers off) was
/// answered "ok" and the board powered off: whoever asked for the reboot waited for a board
/// that never came back. It is refused now, and says what is under way; asking for the same
/// end again is still fine (commands are idempotent).
#[test]
fn a_second_power_request_for_another_end_is_refused_and_says_which_is_under_way() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-two-ends",
        r#"[service.slow]
command = ["/bin/sh", "-c", "trap 'until [ -e $DIR/go ]; do sleep 0.05; done; exit 0' TERM; sleep 7831021 & wait"]
stop_timeout = "1h"
"#,
    );
    ember.wait_state("slow", "active", None, LONG);
    let first = ember.ctl(&["poweroff"]);
    assert!(first.status.success(), "{first:?}");
    ember.wait_state("slow", "deactivating", None, LONG);

    let other = ember.ctl(&["reboot"]);
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success(),
        "a reboot during a poweroff was accepted: {other:?}"
    );
    assert!(said.contains("power off"), "{said}");
    let same = ember.ctl(&["poweroff"]);
    assert!(same.status.success(), "{same:?}");
    // `reboot` on the board: refused over the socket, it does not go on to signal PID 1
    // (the signal was refused in turn, but the command said it had succeeded).
    let inside = std::process::Command::new("nsenter")
        .args(["-t", &ember.host_pid().to_string(), "-p", "-m", "--", EMBER])
        .arg("reboot")
        .arg("--socket")
        .arg(&ember.socket)
        .output()
        .expect("run nsenter");
    assert!(!inside.status.success(), "{inside:?}");
    assert!(
        String::from_utf8_lossy(&inside.stderr).contains("power off"),
        "{inside:?}"
    );

    std::fs::write(ember.dir.path("go"), "").expect("write go");
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGINT),
        "log:\n{}",
        ember.log()
    );
    let log = ember.log();
    assert!(
        log.contains("reboot: refused: ember is already stopping to power off"),
        "{log}"
    );
}

/// The signals systemd's PID 1 takes (SIGRTMIN+3/4/5: halt, power off, reboot, numbered
/// from glibc's SIGRTMIN, 34, as systemd, `docker stop` with a STOPSIGNAL of
/// SIGRTMIN+3, podman and LXC send them) and SIGPWR (what `lxc-stop` and a UPS daemon
/// send, busybox init's power failure) shut down in steps like SIGTERM; SIGRTMIN+13/14/15
/// (systemd's "immediately") skip stopping the services and go to the last steps.
/// The kernel discards a signal sent to PID 1 that it has no handler for: until
/// 2026-12-07 each of these was dropped without a word, and the board ran on.
#[test]
fn systemd_and_power_failure_signals_shut_down() {
    if !can_unshare() {
        return;
    }
    const RTMIN: i32 = 34;
    let cases: [(i32, i32, &str, bool); 7] = [
        (RTMIN + 3, SIGINT, "shutdown: halt", true),
        (RTMIN + 4, SIGINT, "shutdown: power off", true),
        (RTMIN + 5, SIGHUP, "shutdown: reboot", true),
        (nix::libc::SIGPWR, SIGINT, "shutdown: power off", true),
        (RTMIN + 13, SIGINT, "shutdown: halt", false),
        (RTMIN + 14, SIGINT, "shutdown: power off", false),
        (RTMIN + 15, SIGHUP, "shutdown: reboot", false),
    ];
    for (signal, end, last, stops_services) in cases {
        let mut ember = Ember::start(
            &format!("pid1-sig{signal}"),
            "[service.steady]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'echo stopped > $DIR/stopped; exit 0' TERM; echo trapped; sleep 1000 & wait\"]\nready = { log = \"trapped\" }\n",
        );
        ember.wait_state("steady", "active", None, LONG);
        // SAFETY: kill(2) with a pid of ours and a signal number.
        assert_eq!(
            unsafe { nix::libc::kill(ember.host_pid(), signal) },
            0,
            "kill {signal}"
        );
        assert_eq!(
            ember.wait_namespace_end(LONG),
            Some(end),
            "signal {signal}; log:\n{}",
            ember.log()
        );
        let log = ember.log();
        assert!(log.contains(last), "signal {signal}; log:\n{log}");
        assert!(
            log.contains("shutdown: SIGTERM to remaining processes"),
            "signal {signal}: the last steps ran; log:\n{log}"
        );
        assert_eq!(
            log.contains("shutdown: stopping every service"),
            stops_services,
            "signal {signal}; log:\n{log}"
        );
    }
}

/// In the emergency loop (the main loop died) the signals still end the system as they
/// do in the main loop: SIGUSR2 (what `poweroff` sends when the socket does not answer)
/// powers off, and Ctrl-Alt-Del reboots. Until 2026-12-07 they stayed pending forever:
/// blocked, and no signalfd read them any more.
#[test]
fn signals_still_shut_down_in_the_emergency_loop() {
    if !can_unshare() {
        return;
    }
    for (signal, end) in [(Signal::SIGUSR2, SIGINT), (Signal::SIGINT, SIGHUP)] {
        let mut ember = Ember::start(
            &format!("pid1-emergency-{}", signal.as_str()),
            "[service.steady]\ncommand = [\"/bin/sleep\", \"7850101\"]\n",
        );
        ember.wait_state("steady", "active", None, LONG);
        let _ = ember.ctl(&["status", "__panic_main"]);
        assert!(
            wait_for(LONG, || ember
                .log()
                .contains("emergency mode: the main loop panicked")),
            "log:\n{}",
            ember.log()
        );
        ember.signal(signal);
        assert_eq!(
            ember.wait_namespace_end(LONG),
            Some(end),
            "{signal}; log:\n{}",
            ember.log()
        );
        assert!(
            pids_with("7850101").is_empty(),
            "the service outlived the namespace"
        );
    }
}

/// The kernel hands init every word of its command line it does not know itself
/// (`splash`, `single`, `3`, `-s`, what follows `--`) as arguments. ember as PID 1 takes
/// the options it knows (`--config`) and says which it ignores; until 2026-12-07 it
/// refused them ("unknown command") and exited 2: as the machine's init, a kernel panic.
#[test]
fn pid1_ignores_the_arguments_it_does_not_know_instead_of_exiting() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start_with_args(
        "pid1-kernel-args",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7850201\"]\n",
        &["splash", "single", "-s", "3", "--bogus"],
    );
    ember.wait_state("steady", "active", None, LONG);
    let log = ember.log();
    assert!(
        log.contains("ignoring the arguments") && log.contains("splash"),
        "the ignored arguments are named; log:\n{log}"
    );
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(SIGINT));
}

/// PID 1 of a container that may not call reboot(2) (Docker drops CAP_SYS_BOOT; here a
/// seccomp filter refuses it): `docker stop`'s SIGTERM, a poweroff, stop the services and
/// end what is left, and then PID 1 exits, which ends the namespace as reboot(2) would
/// have. Until 2026-12-07 it fell into the emergency loop instead, every process gone
/// but the container still there, until the runtime's SIGKILL.
#[test]
fn pid1_of_a_namespace_that_may_not_reboot_exits_instead() {
    if !can_unshare() {
        return;
    }
    for signal in [Signal::SIGUSR2, Signal::SIGTERM] {
        let mut ember = Ember::start_refusing(
            &format!("pid1-noreboot-{}", signal.as_str()),
            "[service.steady]\ncommand = [\"/bin/sleep\", \"7850301\"]\n",
            &[nix::libc::SYS_reboot],
        );
        ember.wait_state("steady", "active", None, LONG);
        ember.signal(signal);
        let status = ember.wait_status(LONG);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{signal}: {status:?}; log:\n{}",
            ember.log()
        );
        let log = ember.log();
        assert!(log.contains("reboot(2) refused"), "{log}");
        assert!(!log.contains("emergency mode"), "{log}");
        assert!(
            pids_with("7850301").is_empty(),
            "the service outlived ember"
        );
    }
}

/// sysvinit's `telinit 6` / `init 0`, typed on a board whose /sbin/init is ember: a
/// reboot or a poweroff asked of PID 1 (until 2026-12-07: `unknown command "6"`).
#[test]
fn telinit_6_reboots() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-telinit",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7850601\"]\n",
    );
    ember.wait_state("steady", "active", None, LONG);
    let telinit = ember.dir.path("telinit");
    std::os::unix::fs::symlink(EMBER, &telinit).unwrap();
    let out = std::process::Command::new(&telinit)
        .arg("6")
        .env("EMBER_SOCKET", &ember.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ember.wait_namespace_end(LONG),
        Some(SIGHUP),
        "log:\n{}",
        ember.log()
    );
}

/// A console that takes nothing (a serial line held by flow control, Ctrl-S on a
/// terminal, a container's log pipe that nobody reads) must not stop PID 1: ember's log
/// lines to it are dropped once its queue is full, and counted; reaping, the socket and
/// the signals go on. Until 2026-12-07 each line was a blocking write(2) from the main
/// loop, and PID 1 stopped at the first one past the pipe's 64 KiB.
#[test]
fn a_console_that_takes_nothing_does_not_stop_pid1() {
    if !can_unshare() {
        return;
    }
    let dir = TempDir::new("pid1-stuck-console");
    let socket = dir.path("control.sock");
    let config = dir.path("ember.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"{}\"\n\n[log]\noutput = \"console\"\n\n\
             [service.chatty]\ncommand = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt 4000 ]; do echo line $i of forty bytes or so, to fill a pipe; i=$((i+1)); done; touch {}; exec sleep 7850701\"]\n",
            socket.display(),
            dir.path("said-all").display()
        ),
    )
    .unwrap();
    // The read end is held open, never read: the pipe fills, and a write to it blocks.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--uts", "--kill-child"])
        .arg(EMBER)
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(write_end.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(write_end))
        .spawn()
        .unwrap();
    let mut ember = Ember {
        dir,
        child,
        socket,
        config,
    };
    assert!(
        wait_for(LONG, || listening(&ember.socket)),
        "ember did not open its socket"
    );
    assert!(
        wait_for(LONG, || ember.dir.path("said-all").exists()),
        "the service did not print its lines"
    );
    let status = ember.ctl_within(&["status", "chatty"], LONG);
    assert!(
        status.as_ref().is_some_and(|o| o.status.success()),
        "PID 1 does not answer: stuck writing to its console"
    );
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(SIGINT));
    drop(read_end);
}

/// A shell on a terminal (a login on the console) ignores SIGTERM, as interactive shells
/// do, but ends on SIGHUP: at the shutdown the processes with a controlling terminal get
/// SIGHUP after the SIGTERM, as systemd sends it, and the shell is gone without waiting
/// out the grace for the SIGKILL. Until 2026-12-07 every reboot with a console login
/// open waited the whole `shutdown_timeout`.
#[test]
fn a_shell_on_a_terminal_ends_on_the_sighup_of_the_shutdown() {
    if !can_unshare() {
        return;
    }
    // Long: with no SIGHUP the test waits it out, and fails.
    let grace = scaled(Duration::from_secs(30));
    let mut ember = Ember::start_with_config(
        "pid1-tty-shell",
        &format!(
            "[control]\nsocket = \"$DIR/control.sock\"\n\n[system]\nshutdown_timeout = \"{}ms\"\n\n[service.steady]\ncommand = [\"/bin/sleep\", \"7850801\"]\n",
            grace.as_millis()
        ),
    );
    ember.wait_state("steady", "active", None, LONG);
    let dir = ember.dir.0.clone();
    std::fs::write(
        dir.join("shell.sh"),
        format!(
            "trap '' TERM\necho $$ > {d}/shell.pid\nwhile :; do sleep 1; done\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The test holds the terminal's master: it stays while the namespace ends, as a
    // serial console does.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut shell = std::process::Command::new("nsenter")
        .args(["-t", &ember.host_pid().to_string(), "-p", "--"])
        .args(["setsid", "-c", "/bin/sh"])
        .arg(dir.join("shell.sh"))
        .stdin(std::process::Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(pty.slave))
        .spawn()
        .expect("nsenter and setsid (util-linux)");
    assert!(
        wait_for(LONG, || std::fs::read_to_string(dir.join("shell.pid"))
            .is_ok_and(|p| p.ends_with('\n'))),
        "the shell did not start"
    );
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG + grace), Some(SIGINT));
    let _ = shell.wait();
    let log = ember.log();
    assert!(
        log.contains("shutdown: every remaining process ended")
            && !log.contains("SIGKILL to remaining processes"),
        "the shell was left to the SIGKILL; log:\n{log}"
    );
    drop(pty.master);
}

/// The rescue shell is an interactive shell on the console, which ignores SIGTERM: it is
/// stopped with SIGHUP, what a terminal's hangup sends, and a shutdown from the rescue
/// path does not wait out its stop timeout for the SIGKILL (until 2026-12-07 it did).
#[test]
fn the_rescue_shell_is_stopped_with_sighup() {
    if !can_unshare() {
        return;
    }
    let dir = TempDir::new("pid1-rescue-hup");
    let socket = dir.path("control.sock");
    let config = dir.path("ember.toml");
    let shell = dir.path("shell");
    // Interactive whatever its stdout: as a shell on a console is.
    std::fs::write(&shell, "#!/bin/sh\nexec /bin/sh -i\n").unwrap();
    std::fs::set_permissions(&shell, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"{}\"\n\n[system]\nrescue_shell = \"{}\"\n\n[service.app]\ncommand = [\"/bin/sleep\", \"7850901\"]\nrestart = \"sometimes\"\n",
            socket.display(),
            shell.display()
        ),
    )
    .unwrap();
    // The console: a terminal whose master the test holds, so the shell reads and waits.
    let pty = nix::pty::openpty(None, None).unwrap();
    let log = std::fs::File::create(dir.path("ember.log")).unwrap();
    let child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--uts", "--kill-child"])
        .arg(EMBER)
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::from(pty.slave))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut ember = Ember {
        dir,
        child,
        socket,
        config,
    };
    assert!(
        wait_for(LONG, || listening(&ember.socket)),
        "ember did not open its socket; log:\n{}",
        ember.log()
    );
    // (`ctl status` exits 1 on a fallback configuration: the log says it.)
    assert!(
        wait_for(LONG, || ember
            .log()
            .contains("rescue-shell: active (running)")),
        "log:\n{}",
        ember.log()
    );
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(SIGINT));
    let log = ember.log();
    assert!(
        log.contains("rescue-shell: inactive") && !log.contains("stop-sigkill"),
        "the rescue shell was left to the SIGKILL; log:\n{log}"
    );
    drop(pty.master);
}

/// A sync that never ends (a dead NFS server, a hung device) kept PID 1 from reboot(2) for
/// good: the board hung at its poweroff unless a hardware watchdog reset it. The sync is
/// waited on while the data still to write goes down, then given up on.
#[test]
fn a_sync_that_never_ends_does_not_keep_the_board_from_its_reboot() {
    if !can_unshare() {
        return;
    }
    let mut ember = Ember::start(
        "pid1-hung-sync",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7850701\"]\n",
    );
    ember.wait_state("steady", "active", None, LONG);
    let _ = ember.ctl(&["status", "__hang_sync"]);
    let _ = ember.ctl(&["reboot"]);
    assert_eq!(
        ember.wait_namespace_end(LONG * 4),
        Some(SIGHUP),
        "log:\n{}",
        ember.log()
    );
    let log = ember.log();
    assert!(log.contains("the sync has not ended after"), "{log}");
    assert!(log.contains("going on to reboot without it"), "{log}");
}

/// The console's writer thread lived for good once a line was logged, and while PID 1 has
/// a second thread, even one asleep, each spawn costs more (100 services came up in 62 ms
/// instead of 39). A console that takes the lines at once gets them from the main loop;
/// the thread is for one that is slow, and ends once it has caught up.
#[test]
fn pid1_keeps_one_thread_while_the_console_takes_its_lines() {
    if !can_unshare() {
        return;
    }
    let mut services = String::new();
    for i in 0..20 {
        services.push_str(&format!(
            "[service.s{i:02}]\ncommand = [\"/bin/sleep\", \"785080{i:02}\"]\n\n"
        ));
    }
    let ember = Ember::start("pid1-one-thread", &services);
    for i in 0..20 {
        ember.wait_state(&format!("s{i:02}"), "active", None, LONG);
    }
    assert!(
        wait_for(LONG, || ember.threads() == Some(1)),
        "PID 1 has {:?} threads; log:\n{}",
        ember.threads(),
        ember.log()
    );
}
