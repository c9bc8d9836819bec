//! What a SIGKILLed ember leaves in the cgroup2 tree, and who removes it: the next ember
//! that starts in the same cgroup, when it can tell that the owner is gone, and never
//! the directory of a live ember.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
}

/// The cgroup directory of a running ember, once it has made the cgroup of `service`.
fn cgroup_with(ember: &Ember, service: &str) -> PathBuf {
    let pid = ember_in(ember.child.id() as i32).expect("ember is running");
    let dir = ember_cgroup(pid).expect("ember's cgroup directory");
    assert!(
        wait_for(LONG, || dir.join(service).is_dir()),
        "{} has no {service}; log:\n{}",
        dir.display(),
        ember.log()
    );
    dir
}

/// SIGKILL to ember itself (not to the unshare around it), as the OOM killer or a
/// careless admin would; waits until it is gone.
fn sigkill(ember: &mut Ember) {
    let pid = ember_in(ember.child.id() as i32).expect("ember is running");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL ember");
    assert!(ember.wait_status(LONG).is_some(), "ember outlived SIGKILL");
}

#[test]
fn the_next_ember_removes_the_cgroups_of_sigkilled_embers_and_no_live_ones() {
    if !can_unshare() {
        return;
    }
    let steady =
        |marker: u32| format!("[service.steady]\ncommand = [\"/bin/sleep\", \"{marker}\"]\n");
    let once = "[service.once]\ncommand = [\"/bin/true\"]\nrestart = \"never\"\n";
    // A parent cgroup of this test's own: no other test's ember removes what these leave
    // before the test has seen it (that would be right, but would prove nothing here).
    let parent = TestCgroup::new("sweep");
    let start = |tag: &str, services: &str, pid1: bool| {
        Ember::start_in_cgroup(tag, services, &parent.0, pid1)
    };
    // Two to be SIGKILLed: PID 1 of a namespace (the namespace dies with it), and a plain
    // supervisor in the test's own namespace (its pid is what says it is gone).
    let mut dead_pid1 = start("sweep-dead-ns", &steady(7950001), true);
    let mut dead_plain = start("sweep-dead-plain", once, false);
    // Two that stay alive, in the same parent cgroup.
    let live_pid1 = start("sweep-live-ns", &steady(7950002), true);
    let live_plain = start("sweep-live-plain", &steady(7950003), false);
    let dead_pid1_dir = cgroup_with(&dead_pid1, "steady");
    let dead_plain_dir = cgroup_with(&dead_plain, "once");
    let live_pid1_dir = cgroup_with(&live_pid1, "steady");
    let live_plain_dir = cgroup_with(&live_plain, "steady");
    // Holding the dying namespace keeps its inode number from going to a namespace that
    // another test makes meanwhile (an ember there would take the directory for its own).
    // It has no process left all the same, which is what makes it stale.
    let pid = ember_in(dead_pid1.child.id() as i32).unwrap();
    let _hold = std::fs::File::open(format!("/proc/{pid}/ns/pid")).unwrap();

    sigkill(&mut dead_pid1);
    sigkill(&mut dead_plain);
    for dir in [&dead_pid1_dir, &dead_plain_dir] {
        assert!(dir.is_dir(), "{} was not left behind", dir.display());
        // The kernel ends the namespace's processes after its PID 1, not at once.
        assert!(
            wait_for(LONG, || !populated(dir)),
            "{} still has processes",
            dir.display()
        );
    }

    let next = start("sweep-next", &steady(7950004), false);
    next.wait_state("steady", "active", None, LONG);
    let removed = |dir: &Path| {
        next.log()
            .contains(&format!("removed the stale cgroup {}", dir.display()))
    };
    assert!(
        wait_for(LONG, || !dead_pid1_dir.exists() && !dead_plain_dir.exists()),
        "stale cgroups left: {} {}; log:\n{}",
        dead_pid1_dir.exists(),
        dead_plain_dir.exists(),
        next.log()
    );
    assert!(
        removed(&dead_pid1_dir) && removed(&dead_plain_dir),
        "the removals are logged; log:\n{}",
        next.log()
    );
    // The live ones are untouched, and still supervise in their cgroups.
    for (ember, dir) in [(&live_pid1, &live_pid1_dir), (&live_plain, &live_plain_dir)] {
        assert!(
            dir.join("steady").is_dir(),
            "a live ember's cgroup {} was removed; log:\n{}",
            dir.display(),
            next.log()
        );
        let out = ember.ctl(&["restart", "steady", "--wait"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let procs = std::fs::read_to_string(dir.join("steady/cgroup.procs")).unwrap_or_default();
        assert!(
            !procs.trim().is_empty(),
            "the restarted service is in its cgroup {}",
            dir.display()
        );
    }
}

#[test]
fn a_stale_cgroup_that_still_has_processes_is_left_and_nothing_in_it_is_killed() {
    if !can_unshare() {
        return;
    }
    let parent = TestCgroup::new("orphan");
    // A plain supervisor SIGKILLed: its service lives on, orphaned, in its cgroup.
    let mut dead = Ember::start_in_cgroup(
        "sweep-orphan",
        "[service.orphan]\ncommand = [\"/bin/sleep\", \"7950011\"]\n",
        &parent.0,
        false,
    );
    let dir = cgroup_with(&dead, "orphan");
    dead.wait_state("orphan", "active", None, LONG);
    sigkill(&mut dead);
    assert_eq!(pids_with("7950011").len(), 1, "the orphan runs on");

    let next = Ember::start_in_cgroup(
        "sweep-orphan-next",
        "[service.steady]\ncommand = [\"/bin/sleep\", \"7950012\"]\n",
        &parent.0,
        false,
    );
    next.wait_state("steady", "active", None, LONG);
    assert!(
        wait_for(LONG, || next.log().contains(&format!(
            "the stale cgroup {} of an ember that is gone",
            dir.display()
        ))),
        "log:\n{}",
        next.log()
    );
    assert!(next.log().contains("still has processes; left in place"));
    assert_eq!(
        pids_with("7950011").len(),
        1,
        "a process ember did not start is not ember's to kill"
    );
    assert!(dir.join("orphan").is_dir());

    // The test's own leftovers: the orphan, then the directory.
    for pid in pids_with("7950011") {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    remove_cgroup(&dir);
    assert!(!dir.exists(), "{} could not be removed", dir.display());
}

/// Host pids of the live (not zombie) nested processes of the test below with `marker`.
fn nested(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if args.get(3) == Some(&&b"nested"[..])
            && args.get(6) == Some(&marker.as_bytes())
            && !zombie
        {
            found.push(pid);
        }
    }
    found
}

/// A service may make cgroups of its own below its cgroup (a container runtime, an ember
/// supervising under ember) and run processes there. They are still the service's: a
/// stop's signal reaches them, and its main process ending kills them, as it kills the
/// rest of its cgroup. (Only the cgroup's direct members were signalled, and none at all
/// once those had gone: the nested processes outlived the service.)
#[test]
fn processes_in_cgroups_a_service_made_below_its_own_are_the_services() {
    if !can_unshare() {
        return;
    }
    // Its own cgroup's directory, a cgroup below it, and a process moved there that says
    // when SIGTERM reaches it; then the main process: until then, or, with `end`, until
    // the test says.
    let scripts = TempDir::new("nested-cgroups-script");
    let script = scripts.path("nest.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
marker=$1 out=$2 then=$3
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir "$cg/inner" || exit 1
sh -c 'echo $$ > "$1/inner/cgroup.procs" && trap "touch $2/termed-$3; exit 0" TERM; while :; do sleep 1; done' nested "$cg" "$out" "$marker" &
while [ -z "$(cat "$cg/inner/cgroup.procs")" ]; do sleep 0.1; done
touch "$out/moved-$marker"
if [ "$then" = end ]; then
    while [ ! -e "$out/end" ]; do sleep 0.1; done
else
    # Stops once the nested process has had SIGTERM (not at its own: what ends with the
    # main process is killed).
    trap '' TERM
    while [ ! -e "$out/termed-$marker" ]; do sleep 0.1; done
fi
"#,
    )
    .expect("write the script");
    let script = script.display();
    let ember = Ember::start(
        "nested-cgroups",
        &format!(
            r#"
[service.nester]
command = ["/bin/sh", "{script}", "7960002", "$DIR", "term"]
stop_timeout = "5m"

[service.ended]
command = ["/bin/sh", "{script}", "7960003", "$DIR", "end"]
restart = "never"
"#
        ),
    );
    // Their nested processes are there.
    for marker in ["7960002", "7960003"] {
        let moved = ember.dir.path(&format!("moved-{marker}"));
        assert!(
            wait_for(LONG, || moved.exists()),
            "{marker}: {}",
            ember.log()
        );
    }
    // A stop's SIGTERM reaches the nested process.
    let out = ember.ctl(&["stop", "nester"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(LONG, || ember.dir.path("termed-7960002").exists()),
        "SIGTERM did not reach the nested cgroup; log:\n{}",
        ember.log()
    );
    // The main process ends: the nested process goes with the rest.
    assert!(!nested("7960003").is_empty());
    std::fs::write(ember.dir.path("end"), "").expect("end");
    ember.wait_state("ended", "inactive", None, LONG);
    assert!(
        wait_for(LONG, || nested("7960003").is_empty()),
        "the nested process outlived its service: {:?}; log:\n{}",
        nested("7960003"),
        ember.log()
    );
}
