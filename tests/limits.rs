//! Containment and limits on the host's own cgroup2 hierarchy: a service's cgroup holds
//! every process it makes, a stop takes all of them, and rlimits and the OOM score reach
//! the service. (memory_max and pids_max need controllers, which a hybrid host keeps in
//! v1: the qemu boot test, where ember mounts a pure cgroup2, checks those.)

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::PathBuf;

/// The directory ember says its services' cgroups are under.
fn cgroup_base(ember: &Ember) -> PathBuf {
    let log = ember.log();
    let line = log
        .lines()
        .find(|l| l.contains("services run in cgroups under "))
        .unwrap_or_else(|| panic!("ember did not say where its cgroups are; log:\n{log}"));
    let rest = line.split("services run in cgroups under ").nth(1).unwrap();
    PathBuf::from(rest.split(" (controllers").next().unwrap())
}

fn members(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn a_grandchild_in_a_session_of_its_own_is_stopped_with_its_service() {
    if !can_unshare() {
        return;
    }
    // The grandchild leaves the service's session and process group and ignores SIGTERM:
    // only the cgroup still knows it is the service's.
    let mut ember = Ember::start(
        "escape",
        r#"
[service.escaper]
command = ["/bin/sh", "-c", "setsid /bin/sh -c 'trap \"\" TERM; exec sleep 7940001' & exec sleep 7940002"]
stop_timeout = "2s"
"#,
    );
    ember.wait_state("escaper", "active", None, LONG);
    assert!(wait_for(LONG, || pids_with("794000").len() == 2));
    let base = cgroup_base(&ember);
    let group = base.join("escaper");
    let inside = members(&group);
    for pid in pids_with("794000") {
        assert!(
            inside.contains(&pid),
            "{pid} is not in {}: {inside:?}",
            group.display()
        );
    }
    let out = ember.ctl(&["stop", "escaper", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(LONG, || pids_with("794000").is_empty()),
        "the grandchild escaped the stop: {:?}",
        pids_with("794000")
    );
    assert!(wait_for(LONG, || members(&group).is_empty()));

    // Started again, it runs in the same cgroup; when ember exits, it removes its own.
    let out = ember.ctl(&["start", "escaper", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_for(LONG, || pids_with("794000").len() == 2));
    // Held until the check: once the namespace is freed, the next one made anywhere gets
    // its inode number, and an ember there the same directory name.
    let _namespace = std::fs::File::open(format!("/proc/{}/ns/pid", ember.host_pid())).unwrap();
    ember.signal(Signal::SIGTERM);
    assert!(ember.wait_namespace_end(LONG).is_some(), "{}", ember.log());
    assert!(pids_with("794000").is_empty());
    assert!(
        !base.exists(),
        "{} is left behind; log:\n{}",
        base.display(),
        ember.log()
    );
}

#[test]
fn a_plain_supervisor_contains_its_services_in_a_cgroup_of_its_own() {
    let mut ember = Ember::start_plain(
        "escape-plain",
        r#"
[service.escaper]
command = ["/bin/sh", "-c", "setsid /bin/sh -c 'trap \"\" TERM; exec sleep 7940011' & exec sleep 7940012"]
"#,
    );
    ember.wait_state("escaper", "active", None, LONG);
    assert!(wait_for(LONG, || pids_with("794001").len() == 2));
    let base = cgroup_base(&ember);
    let name = base.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("ember-") && name.ends_with(&format!("-{}", ember.child.id())),
        "not the cgroup of this ember: {name}"
    );
    ember.signal(Signal::SIGTERM);
    assert_eq!(ember.wait_exit(LONG), Some(0), "{}", ember.log());
    assert!(
        wait_for(LONG, || pids_with("794001").is_empty()),
        "left running: {:?}",
        pids_with("794001")
    );
    assert!(
        !base.exists(),
        "{} is left behind; log:\n{}",
        base.display(),
        ember.log()
    );
}

#[test]
fn without_cgroup2_services_fall_back_to_their_process_group() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start_after(
        "no-cgroup",
        "for m in $(grep ' - cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5); do umount -l \"$m\" || exit 1; done",
        r#"
[service.worker]
command = ["/bin/sh", "-c", "sleep 7940021 & exec sleep 7940022"]
[service.other]
command = ["/bin/sh", "-c", "exec sleep 7940023"]
"#,
    );
    ember.wait_state("worker", "active", None, LONG);
    ember.wait_state("other", "active", None, LONG);
    assert!(wait_for(LONG, || pids_with("794002").len() == 3));
    let out = ember.ctl(&["stop", "worker", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(LONG, || pids_with("794002").len() == 1),
        "{:?}",
        pids_with("794002")
    );
    let log = ember.log();
    assert_eq!(
        log.matches("no cgroups (cgroup2 is not mounted)").count(),
        1,
        "said once, not per service:\n{log}"
    );
    assert!(!log.contains("services run in cgroups"));
}

#[test]
fn rlimits_and_the_oom_score_reach_the_service() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "limits",
        r#"
[service.limited]
command = ["/bin/sh", "-c", "echo nofile=$(ulimit -n) core=$(ulimit -c) oom=$(cat /proc/self/oom_score_adj); exec sleep 7940031"]
ready = { log = "nofile=" }
limits = { nofile = 1000, core = 0, memlock = "4M" }
oom_score_adjust = 250
memory_max = "64M"
pids_max = 32
cpu_weight = 50
[service.plain]
command = ["/bin/sh", "-c", "echo oom=$(cat /proc/self/oom_score_adj); exec sleep 7940032"]
ready = { log = "oom=" }
"#,
    );
    ember.wait_state("limited", "active", None, LONG);
    ember.wait_state("plain", "active", None, LONG);
    let log = ember.log();
    assert!(log.contains("limited: nofile=1000 core=0 oom=250"), "{log}");
    assert!(log.contains("plain: oom=0"), "{log}");
    let pid = pids_with("7940031")[0];
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("Max open files"), ["1000", "1000"]);
    assert_eq!(row("Max locked memory"), ["4194304", "4194304"]);
    // The cgroup limits: applied where the controllers are; said so where they are not.
    let group = cgroup_base(&ember).join("limited");
    for (file, value, key) in [
        ("memory.max", "67108864", "memory_max"),
        ("pids.max", "32", "pids_max"),
        ("cpu.weight", "50", "cpu_weight"),
    ] {
        match std::fs::read_to_string(group.join(file)) {
            Ok(text) => assert_eq!(text.trim(), value, "{file}"),
            Err(_) => assert!(
                log.contains(&format!("limited: {key} not applied: the")),
                "{key} neither applied nor reported:\n{log}"
            ),
        }
    }
}

#[test]
fn a_limit_the_kernel_refuses_fails_the_start_with_the_reason() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "bad-limit",
        r#"
[service.greedy]
command = ["/bin/sh", "-c", "exec sleep 7940041"]
limits = { nofile = "infinity" }
restart = "never"
[service.fine]
command = ["/bin/sh", "-c", "exec sleep 7940042"]
"#,
    );
    let status = ember.wait_state("greedy", "failed", Some("spawn"), LONG);
    let reason = status["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("limits.nofile") && reason.contains("fs.nr_open"),
        "{reason}"
    );
    ember.wait_state("fine", "active", None, LONG);
}

/// What a oneshot that succeeded started lives on while it is active (exited), as with
/// systemd's RemainAfterExit, and goes when it stops, by hand or for a restart (found by a
/// hostile review: the daemon outlived `ember ctl stop`, and each restart added one).
#[test]
fn what_an_exited_oneshot_left_goes_with_its_stop() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "oneshot-left",
        r#"
[service.setup]
type = "oneshot"
# Exits once the daemon is in a session of its own (the oneshot's process group goes
# when it exits).
command = ["/bin/sh", "-c", "rm -f $DIR/up; setsid /bin/sh -c 'touch $DIR/up; exec /bin/sleep 7940061' </dev/null >/dev/null 2>&1 & while [ ! -e $DIR/up ]; do sleep 0.01; done"]
"#,
    );
    ember.wait_state("setup", "active", Some("exited"), LONG);
    assert!(wait_for(LONG, || pids_with("7940061").len() == 1));
    let out = ember.ctl(&["restart", "setup", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(LONG, || pids_with("7940061").len() == 1),
        "a restart left the last run's daemon: {:?}",
        pids_with("7940061")
    );
    let out = ember.ctl(&["stop", "setup", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(LONG, || pids_with("7940061").is_empty()),
        "the daemon outlived the stop: {:?}",
        pids_with("7940061")
    );
}

/// A service nests cgroups 40 levels deep below its own and leaves a process there that
/// ignores SIGTERM, in a session of its own. ember's walks of a service's cgroups go 32
/// levels deep: past them, the stop's SIGKILL went nowhere (cgroup.kill was written only
/// when the walk had found a process) and the process outlived its service. `deep` only
/// nests; `raiser` first lifts the depth limit of its own cgroup, as root may.
#[test]
fn a_process_nested_past_the_walks_depth_is_stopped_with_its_service() {
    if !can_unshare() {
        return;
    }
    let scripts = TempDir::new("deep-cgroups-script");
    let script = scripts.path("deep.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
marker=$1 raise=$2
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)$(sed -n 's/^0:://p' /proc/self/cgroup)
[ "$raise" = raise ] && echo max > "$cg/cgroup.max.depth"
depth=0
while [ $depth -lt 40 ] && mkdir "$cg/d" 2>/dev/null; do cg=$cg/d; depth=$((depth + 1)); done
echo "nested $depth deep"
setsid sh -c 'echo $$ > "$1/cgroup.procs" && trap "" TERM && exec sleep "$2"' deep "$cg" "$marker" &
exec sleep 7940060
"#,
    )
    .expect("write the script");
    let script = script.display();
    let ember = Ember::start(
        "deep-cgroups",
        &format!(
            r#"
[service.deep]
command = ["/bin/sh", "{script}", "7940061", "keep"]
ready = {{ log = "nested" }}
stop_timeout = "1s"

[service.raiser]
command = ["/bin/sh", "{script}", "7940062", "raise"]
ready = {{ log = "nested" }}
stop_timeout = "1s"
"#
        ),
    );
    for (service, marker) in [("deep", "7940061"), ("raiser", "7940062")] {
        ember.wait_state(service, "active", None, LONG);
        assert!(
            wait_for(LONG, || pids_with(marker).len() == 1),
            "{service}: {}",
            ember.log()
        );
        let out = ember.ctl(&["stop", service, "--wait"]);
        assert!(out.status.success(), "{out:?}");
        let depth = if service == "deep" { 32 } else { 40 };
        assert!(
            ember
                .log()
                .contains(&format!("{service}: nested {depth} deep")),
            "cgroup.max.depth of {service}'s cgroup; log:\n{}",
            ember.log()
        );
        assert!(
            wait_for(LONG, || pids_with(marker).is_empty()),
            "{service}'s nested process outlived the stop: {:?}; log:\n{}",
            pids_with(marker),
            ember.log()
        );
    }
}
