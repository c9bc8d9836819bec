//! Service output to files that ember writes and rotates, bounded.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn on_disk(dir: &std::path::Path, stem: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(stem))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// 50 MB written at full speed: at most keep × max_size on disk, every line through
/// ember (its last lines in `ember ctl logs`), and no copy in ember's own log.
#[test]
fn a_flood_to_a_rotated_file_stays_within_its_bound() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-rotate",
        r#"
[system]
log_dir = "$DIR/logs"

[service.flood]
command = ["/bin/sh", "-c", "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 50000000; echo last-line; exec sleep 7830001"]
stdout = { file = "flood.log", max_size = "1M", keep = 3 }
stderr = { file = "/dev/null/nope/err.log" }
"#,
    );
    let seen_last = wait_for(LONG * 2, || {
        let out = ember.ctl(&["logs", "flood", "-n", "1"]);
        String::from_utf8_lossy(&out.stdout).contains("last-line")
    });
    assert!(seen_last, "the last line never came; log:\n{}", ember.log());
    let logs = ember.dir.path("logs");
    // The writer thread may still be behind the ring: wait for the file to have it.
    assert!(wait_for(LONG, || std::fs::read_to_string(
        logs.join("flood.log")
    )
    .unwrap_or_default()
    .contains("last-line")));
    let total = on_disk(&logs, "flood.log");
    assert!(total <= 3 * 1024 * 1024, "{total} bytes on disk");
    assert!(total > 2 * 1024 * 1024, "{total} bytes: nothing rotated?");
    assert!(logs.join("flood.log.1").exists());
    assert!(logs.join("flood.log.2").exists());
    assert!(!logs.join("flood.log.3").exists());
    // Not copied to ember's own log.
    assert!(
        !ember.log().contains("flood: 0123456789"),
        "copied to ember's log"
    );
    // A file that cannot be written is said once, and costs nothing else.
    assert!(ember.status("flood")["state"] == "active");
}

/// What a service prints before it asks ember to stop (a report that ends with `ember ctl
/// poweroff`, as the qemu guest's does) is in ember's log whole: the lines queued when the
/// request comes are served first, and those still in the pipe are read before ember
/// exits. (The qemu boot lost the end of its report once requests were served before the
/// feed of lines.) 900 lines: within what one service may copy to the log at once. The
/// service begins once the test has seen ember's socket: done at once, it could be over
/// before (a busy machine did that).
#[test]
fn the_lines_a_service_prints_before_it_asks_for_a_poweroff_are_all_logged() {
    let mut ember = Ember::start_plain(
        "last-lines",
        &format!(
            r#"
[service.report]
restart = "never"
command = ["/bin/sh", "-c", "while [ ! -e $DIR/go ]; do sleep 0.05; done; i=0; while [ $i -lt 900 ]; do i=$((i+1)); echo \"report line $i\"; done; echo 'report: the end'; exec {EMBER} ctl --socket $DIR/control.sock poweroff"]
"#
        ),
    );
    std::fs::write(ember.dir.path("go"), "").expect("write go");
    let code = ember.wait_exit(LONG);
    let log = ember.log();
    assert_eq!(
        code,
        Some(0),
        "ember did not stop; log tail:\n{}",
        script::tail(&log, 40)
    );
    let missing: Vec<u32> = (1..=900)
        .filter(|i| !log.contains(&format!("report: report line {i}\n")))
        .collect();
    assert!(
        missing.is_empty() && log.contains("report: report: the end"),
        "{} lines missing (first {:?}); log tail:\n{}",
        missing.len(),
        missing.first(),
        script::tail(&log, 40)
    );
}

/// The number of the last `tick-N` line of `service` that ember has read.
fn last_tick(ember: &Ember, service: &str) -> Option<u64> {
    let out = ember.ctl(&["logs", service, "-n", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.rsplit("tick-").next()?.trim().parse().ok()
}

/// A rotated `file` that is a FIFO nothing reads is refused, and said; every other file
/// is still written. (Opening the FIFO waited for a reader forever, in the one thread that
/// writes every file: no file was written again.)
#[test]
fn a_rotated_file_that_is_a_fifo_does_not_stop_the_others() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-fifo",
        r#"
[system]
log_dir = "$DIR/logs"

[service.fifo]
command = ["/bin/sh", "-c", "mkdir -p $DIR/logs; mkfifo $DIR/logs/pipe.log; echo into-the-fifo; exec sleep 7830011"]
stdout = { file = "pipe.log" }

[service.ok]
command = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done"]
stdout = { file = "ok.log" }
"#,
    );
    assert!(
        wait_for(LONG, || String::from_utf8_lossy(
            &ember.ctl(&["logs", "fifo"]).stdout
        )
        .contains("into-the-fifo")),
        "log:\n{}",
        ember.log()
    );
    // Lines ember read after the FIFO's line reach ok.log.
    let mut read = None;
    assert!(wait_for(LONG, || {
        read = last_tick(&ember, "ok");
        read.is_some()
    }));
    let later = format!("tick-{}", read.unwrap_or_default() + 5);
    let ok = ember.dir.path("logs/ok.log");
    assert!(
        wait_for(LONG, || lines(&ok).contains(&later)),
        "{later} never reached ok.log (last: {:?}); log:\n{}",
        lines(&ok).last(),
        ember.log()
    );
    let log = ember.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pipe.log") && l.contains("is a FIFO, not a regular file")),
        "log:\n{log}"
    );
    assert_eq!(ember.status("fifo")["state"], "active");
}

/// A rotated `file` that is a device, a symlink or a hard link is not written, nor
/// rotated, nor emptied: ember writes as root. (Rotating a device node renamed it away and
/// put a plain file in its place, `/dev/null` as much as one in a test's directory; a
/// link was written through, and with keep = 1 emptied, whatever it named.)
#[test]
fn a_rotated_file_that_is_a_device_or_a_link_is_left_alone() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-not-a-file",
        r#"
[system]
log_dir = "$DIR/logs"

[service.dev]
command = ["/bin/sh", "-c", "mkdir -p $DIR/logs; mknod $DIR/logs/null.log c 1 3; i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo 0123456789012345678901234567890123456789012345678901234567890123456789; done; echo dev-done; exec sleep 7830012"]
stdout = { file = "null.log", max_size = "4K", keep = 2 }

[service.link]
command = ["/bin/sh", "-c", "mkdir -p $DIR/logs; echo precious > $DIR/precious; ln -s $DIR/precious $DIR/logs/link.log; i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo 0123456789012345678901234567890123456789012345678901234567890123456789; done; echo link-done; exec sleep 7830013"]
stdout = { file = "link.log", max_size = "4K", keep = 1 }

[service.hard]
command = ["/bin/sh", "-c", "mkdir -p $DIR/logs; echo precious > $DIR/precious2; ln $DIR/precious2 $DIR/logs/hard.log; i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo 0123456789012345678901234567890123456789012345678901234567890123456789; done; echo hard-done; exec sleep 7830016"]
stdout = { file = "hard.log", max_size = "4K", keep = 1 }
"#,
    );
    let logs = ember.dir.path("logs");
    let precious = ember.dir.path("precious");
    let is_device = || {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(logs.join("null.log"))
            .is_ok_and(|m| m.file_type().is_char_device())
    };
    let precious2 = ember.dir.path("precious2");
    let intact = || std::fs::read_to_string(&precious).is_ok_and(|t| t == "precious\n");
    let intact2 = || std::fs::read_to_string(&precious2).is_ok_and(|t| t == "precious\n");
    let said = |name: &str| {
        ember
            .log()
            .lines()
            .any(|l| l.contains(name) && l.contains("not a regular file"))
    };
    // Both ran to their end (the node and the link were made first), read by ember.
    for (service, last) in [
        ("dev", "dev-done"),
        ("link", "link-done"),
        ("hard", "hard-done"),
    ] {
        assert!(
            wait_for(LONG, || String::from_utf8_lossy(
                &ember.ctl(&["logs", service, "-n", "1"]).stdout
            )
            .contains(last)),
            "{service}: log:\n{}",
            ember.log()
        );
    }
    // Said, or (as it was) written through.
    assert!(
        wait_for(LONG, || (said("null.log") || !is_device())
            && (said("link.log") || !intact())
            && (ember.log().contains("hard.log") || !intact2())),
        "log:\n{}",
        ember.log()
    );
    assert!(is_device(), "the device node was replaced");
    assert!(!logs.join("null.log.1").exists(), "the device was rotated");
    assert!(intact(), "written through the symlink");
    assert!(intact2(), "written through the hard link");
    assert!(std::fs::symlink_metadata(logs.join("link.log")).is_ok_and(|m| m.is_symlink()));
}

/// A plain output path (`stdout = "/path"`, opened by ember for the service) that is a
/// FIFO nothing reads fails that service's start, with the reason; ember goes on
/// answering. (Opening it waited for a reader: PID 1 stopped, its socket unanswered.)
#[test]
fn a_plain_output_that_is_a_fifo_nothing_reads_fails_the_start_not_ember() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-plain-fifo",
        r#"
[service.other]
command = ["/bin/sleep", "7830014"]

[service.writer]
command = ["/bin/sh", "-c", "echo hello; exec sleep 7830015"]
stdout = "$DIR/pipe"
enabled = false
restart = "never"
"#,
    );
    ember.wait_state("other", "active", None, LONG);
    nix::unistd::mkfifo(&ember.dir.path("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = ember.ctl_within(&["start", "writer"], LONG);
    assert!(
        started.is_some(),
        "ember stopped answering; log:\n{}",
        ember.log()
    );
    let status = ember.wait_state("writer", "failed", None, LONG);
    let reason = status.to_string();
    assert!(
        reason.contains("a FIFO that nothing reads"),
        "{status}\nlog:\n{}",
        ember.log()
    );
    assert_eq!(ember.status("other")["state"], "active");
}

/// A rotated file deleted (`rm` to make room) or renamed away while its service writes
/// is made again, soon, at its path. (The lines went on into the deleted file, unseen,
/// holding its room on the disk, until it reached max_size.)
#[test]
fn a_rotated_file_deleted_or_renamed_away_is_made_again() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-deleted",
        r#"
[system]
log_dir = "$DIR/logs"

[service.ok]
command = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done"]
stdout = { file = "ok.log" }
"#,
    );
    let file = ember.dir.path("logs/ok.log");
    let ticking = |path: &std::path::Path| {
        let seen = lines(path);
        wait_for(LONG, || lines(path).len() > seen.len() + 3)
    };
    assert!(ticking(&file), "log:\n{}", ember.log());
    std::fs::remove_file(&file).unwrap();
    assert!(
        ticking(&file),
        "not made again after rm; log:\n{}",
        ember.log()
    );
    let moved = ember.dir.path("logs/ok.log.moved");
    std::fs::rename(&file, &moved).unwrap();
    assert!(
        ticking(&file),
        "not made again after mv; log:\n{}",
        ember.log()
    );
    // What was moved away is no longer written (nor is it rotated as ok.log).
    let kept = lines(&moved).len();
    assert!(ticking(&file));
    assert_eq!(lines(&moved).len(), kept);
}

/// A full disk: the oldest of a file's own rotated files is removed to make room for its
/// newest lines. (Every new line was lost while the old ones filled the disk.)
#[test]
fn a_full_disk_gives_the_newest_lines_the_room_of_the_oldest() {
    if !can_unshare() {
        return;
    }
    let disk = TempDir::new("outputs-full-disk");
    let small = disk.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here: skipped");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    // 3 × 128K do not fit in 256K; 600,021 bytes are whole lines of 71.
    let ember = Ember::start(
        "outputs-full",
        &format!(
            r#"
[service.full]
command = ["/bin/sh", "-c", "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 600021; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done"]
stdout = {{ file = "{}/full.log", max_size = "128K", keep = 3 }}
"#,
            small.display()
        ),
    );
    let file = small.join("full.log");
    let ticked = || lines(&file).iter().any(|l| l.starts_with("tick-"));
    assert!(
        wait_for(LONG, ticked),
        "no tick in full.log; {:?}; log:\n{}",
        std::fs::read_dir(&small)
            .map(|d| d
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).ok()))
                .collect::<Vec<_>>())
            .ok(),
        ember.log()
    );
    // No line was left in part by a write that found the disk full.
    let yes = "0123456789012345678901234567890123456789012345678901234567890123456789";
    for name in ["full.log", "full.log.1", "full.log.2"] {
        let text = std::fs::read_to_string(small.join(name)).unwrap_or_default();
        assert!(
            text.lines().all(|l| l == yes || l.starts_with("tick-")),
            "{name} has a line in part"
        );
    }
    drop(ember);
}

/// A rotated `file` on a kernel filesystem (/proc, /sys) is refused: ember cannot make or
/// rotate a file there, and what the service prints must not reach the kernel through
/// ember. (`file = "/proc/self/comm"` named ember's main thread after the service's
/// output; `/proc/self/oom_score_adj` or `/proc/sysrq-trigger` would do worse.)
#[test]
fn a_rotated_file_on_a_kernel_filesystem_is_refused() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-proc",
        r#"
[service.p]
command = ["/bin/sh", "-c", "echo renamed; echo proc-done; exec sleep 7830017"]
stdout = { file = "/proc/self/comm" }
"#,
    );
    let comm = || std::fs::read_to_string(format!("/proc/{}/comm", ember.host_pid())).unwrap();
    // Said, or (as it was) written there.
    assert!(
        wait_for(LONG, || String::from_utf8_lossy(
            &ember.ctl(&["logs", "p"]).stdout
        )
        .contains("proc-done")
            && (ember.log().contains("/proc/self/comm")
                || comm().trim() != "ember")),
        "log:\n{}",
        ember.log()
    );
    assert_eq!(comm().trim(), "ember", "log:\n{}", ember.log());
    assert!(
        ember.log().contains("a kernel filesystem"),
        "log:\n{}",
        ember.log()
    );
}

/// Once the rotated files have their lines, PID 1 is one thread again: the writer is not
/// a thread for good (while PID 1 had a second thread, even asleep, each spawn cost more).
/// The writer comes back for the next lines.
#[test]
fn the_file_writer_is_a_thread_only_while_there_are_lines_to_write() {
    if !can_unshare() {
        return;
    }
    let mut services = String::new();
    for i in 0..10 {
        services.push_str(&format!(
            "[service.w{i}]\ncommand = [\"/bin/sh\", \"-c\", \"echo first-{i}; while [ ! -e $DIR/again ]; do sleep 0.1; done; echo second-{i}; exec sleep 7830200\"]\nstdout = {{ file = \"$DIR/w{i}.log\", max_size = \"1M\", keep = 2 }}\n\n"
        ));
    }
    let ember = Ember::start("outputs-writer-thread", &services);
    let has = |i: usize, word: &str| {
        std::fs::read_to_string(ember.dir.path(&format!("w{i}.log")))
            .unwrap_or_default()
            .contains(&format!("{word}-{i}"))
    };
    assert!(
        wait_for(LONG, || (0..10).all(|i| has(i, "first"))),
        "the first lines never reached the files; log:\n{}",
        ember.log()
    );
    assert!(
        wait_for(LONG, || ember.threads() == Some(1)),
        "PID 1 has {:?} threads once every line is written; log:\n{}",
        ember.threads(),
        ember.log()
    );
    std::fs::write(ember.dir.path("again"), "").expect("write again");
    assert!(
        wait_for(LONG, || (0..10).all(|i| has(i, "second"))),
        "the second lines never reached the files; log:\n{}",
        ember.log()
    );
}

/// What services write to their files just before ember ends is in the files: queued
/// lines are written before the exit (they were lost with the writer's thread). A plain
/// ember, whose end is an exit with nothing else between; its writer made slow (5 ms a
/// line, a test hook), so that lines still wait for it when the poweroff comes.
#[test]
fn the_lines_queued_for_files_when_ember_ends_are_written() {
    let mut services = String::new();
    for i in 0..2 {
        services.push_str(&format!(
            "[service.f{i}]\nrestart = \"never\"\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e $DIR/go ]; do sleep 0.05; done; seq 1 100; echo the-end-{i}; exec sleep 7830201\"]\nstdout = {{ file = \"$DIR/f{i}.log\", max_size = \"1M\", keep = 2 }}\n\n"
        ));
    }
    services.push_str(&format!(
        "[service.stopper]\nrestart = \"never\"\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e $DIR/seen ]; do sleep 0.01; done; exec {EMBER} ctl --socket $DIR/control.sock poweroff\"]\n\n"
    ));
    let mut ember = Ember::start_plain("outputs-flush", &services);
    let _ = ember.ctl(&["status", "__slow_files"]);
    std::fs::write(ember.dir.path("go"), "").expect("write go");
    // ember has read every line (its ring has the last) before the poweroff is asked.
    assert!(wait_for(LONG, || (0..2).all(|i| {
        let out = ember.ctl(&["logs", &format!("f{i}"), "-n", "1"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!("the-end-{i}"))
    })));
    std::fs::write(ember.dir.path("seen"), "").expect("write seen");
    let code = ember.wait_exit(LONG);
    assert_eq!(code, Some(0), "ember did not stop; log:\n{}", ember.log());
    let expected: String = (1..=100).map(|n| format!("{n}\n")).collect();
    for i in 0..2 {
        let text =
            std::fs::read_to_string(ember.dir.path(&format!("f{i}.log"))).unwrap_or_default();
        assert_eq!(text, format!("{expected}the-end-{i}\n"), "f{i}.log");
    }
}

/// Each file stays within its max_size whatever a line holds: a line as long as ember
/// reads one (4096 bytes, then its newline) went whole into a file of `max_size = "4K"`,
/// and a line of bytes that are not UTF-8, each written as U+FFFD (3 bytes), took a file
/// to three times its bound. A line longer than the file is cut to fit it.
#[test]
fn no_line_takes_a_rotated_file_past_its_max_size() {
    if !can_unshare() {
        return;
    }
    let ember = Ember::start(
        "outputs-long-lines",
        r#"
[system]
log_dir = "$DIR/logs"

[service.long]
command = ["/bin/sh", "-c", "for i in 1 2 3; do head -c 4096 /dev/zero | tr '\\0' x; echo; head -c 5000 /dev/zero | tr '\\0' '\\377'; echo; done; echo last-line; exec sleep 7830002"]
stdout = { file = "long.log", max_size = "4K", keep = 2 }

[service.once]
command = ["/bin/sh", "-c", "echo first-line; head -c 4096 /dev/zero | tr '\\0' y; echo; exec sleep 7830003"]
stdout = { file = "once.log", max_size = "4K", keep = 1 }
"#,
    );
    let logs = ember.dir.path("logs");
    for (name, last) in [("long.log", "last-line"), ("once.log", "yyyy")] {
        assert!(
            wait_for(LONG, || std::fs::read(logs.join(name))
                .map(|b| String::from_utf8_lossy(&b).contains(last))
                .unwrap_or(false)),
            "{name} never got its last line; log:\n{}",
            ember.log()
        );
    }
    for name in ["long.log", "long.log.1", "once.log"] {
        let size = std::fs::metadata(logs.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size <= 4096, "{name}: {size} bytes, past max_size 4K");
    }
    assert!(!logs.join("long.log.2").exists());
}
