//! The hardware watchdog outside qemu: what happens when the configured device cannot be
//! used. (A real watchdog resetting a real kernel: tests/qemu_watchdog.rs.) No test here
//! opens a real watchdog: on this machine one would reset it.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// The raw status reply's `system`, straight from the socket.
fn system(ember: &Ember) -> Value {
    let mut stream = UnixStream::connect(&ember.socket).expect("connect");
    stream.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).expect("status JSON");
    reply["status"]["system"].clone()
}

#[test]
fn a_watchdog_that_cannot_be_used_is_a_loud_error_and_the_boot_goes_on() {
    if !can_unshare() {
        return;
    }
    let config = r#"[control]
socket = "$DIR/control.sock"

[system]
watchdog = { device = "$DIR/watchdog0", timeout = "2s" }

[service.app]
command = ["/bin/sleep", "7870001"]
"#;
    let mut ember = Ember::start_with_config("watchdog-missing", config);
    ember.wait_state("app", "active", None, LONG);
    let log = ember.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("watchdog: cannot open")
            && l.contains("No such file or directory")
            && l.contains("NO hardware watchdog")),
        "log:\n{log}"
    );
    // `ember ctl status` shows it first; not a fallback, so it exits 0.
    let out = ember.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "watchdog {}: NOT ARMED: cannot open",
            ember.dir.path("watchdog0").display()
        )),
        "{text}"
    );
    // The protocol's status carries it.
    let watchdog = &system(&ember)["watchdog"];
    assert_eq!(watchdog["armed"], false, "{watchdog}");
    assert_eq!(watchdog["timeout_sec"], 2, "{watchdog}");
    assert_eq!(watchdog["on_shutdown"], "auto", "{watchdog}");
    assert!(
        watchdog["error"]
            .as_str()
            .is_some_and(|e| e.contains("No such file")),
        "{watchdog}"
    );

    // Something that is not a character device: a reload refuses it, as `ember check`
    // does (it would have closed a running watchdog to open nothing).
    std::fs::write(ember.dir.path("plain"), "").unwrap();
    let good = std::fs::read_to_string(&ember.config).unwrap();
    std::fs::write(&ember.config, good.replace("/watchdog0\"", "/plain\"")).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("is a regular file, not a character device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&ember.config, &good).unwrap();
    // A character device that is no watchdog (a /dev/null): a reload takes it and tries,
    // as it would once a driver is loaded; one ioctl says what it is.
    nix::sys::stat::mknod(
        &ember.dir.path("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    std::fs::write(&ember.config, good.replace("/watchdog0\"", "/null\"")).unwrap();
    let out = ember.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let watchdog = &system(&ember)["watchdog"];
    assert!(
        watchdog["error"]
            .as_str()
            .is_some_and(|e| e.contains("is not a watchdog device")),
        "{watchdog}"
    );
    // Removed: no watchdog in the status at all.
    let text = std::fs::read_to_string(&ember.config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("watchdog"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&ember.config, text).unwrap();
    assert!(ember.ctl(&["reload"]).status.success());
    assert_eq!(system(&ember)["watchdog"], Value::Null);
    assert!(!String::from_utf8_lossy(&ember.ctl(&["status"]).stdout).contains("watchdog"));

    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(2));

    // At boot (not looked at by the check before /dev is mounted) a plain file is
    // refused before it is opened: nothing written to it.
    let devices = TempDir::new("watchdog-plain-dev");
    let plain = devices.path("plain");
    std::fs::write(&plain, "").unwrap();
    let config = format!(
        r#"[control]
socket = "$DIR/control.sock"

[system]
watchdog = {{ device = "{}", timeout = "2s" }}

[service.app]
command = ["/bin/sleep", "7870002"]
"#,
        plain.display()
    );
    let ember = Ember::start_with_config("watchdog-plain", &config);
    ember.wait_state("app", "active", None, LONG);
    let watchdog = &system(&ember)["watchdog"];
    assert!(
        watchdog["error"]
            .as_str()
            .is_some_and(|e| e.contains("is a regular file, not a character device")),
        "{watchdog}"
    );
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        b"",
        "nothing may be written to a device that is not a watchdog"
    );
}

/// A watchdog `device` that is a FIFO (or anything else but a character device) is
/// refused without being opened, at boot and at a reload, and ember goes on. (Opening a
/// FIFO nothing reads waited for a reader: PID 1 stopped before its first service.)
#[test]
fn a_watchdog_device_that_is_a_fifo_does_not_stop_ember() {
    if !can_unshare() {
        return;
    }
    let outside = TempDir::new("watchdog-fifo-node");
    let fifo = outside.path("watchdog0");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let config = format!(
        r#"[control]
socket = "$DIR/control.sock"

[system]
watchdog = {{ device = "{}", timeout = "2s" }}

[service.app]
command = ["/bin/sleep", "7870002"]
"#,
        fifo.display()
    );
    let mut ember = Ember::start_with_config("watchdog-fifo", &config);
    let out = ember.ctl_within(&["status"], LONG);
    let out = out.unwrap_or_else(|| panic!("ember stopped answering; log:\n{}", ember.log()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NOT ARMED") && text.contains("is a FIFO, not a character device"),
        "{text}\nlog:\n{}",
        ember.log()
    );
    ember.wait_state("app", "active", None, LONG);
    // A reload to another FIFO: refused as well, by the reload's check (as `ember check`
    // refuses it), without waiting on it.
    let again = outside.path("watchdog1");
    nix::unistd::mkfifo(&again, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let text = std::fs::read_to_string(&ember.config)
        .unwrap()
        .replace("/watchdog0\"", "/watchdog1\"");
    std::fs::write(&ember.config, text).unwrap();
    let out = ember.ctl_within(&["reload"], LONG);
    let out = out.unwrap_or_else(|| panic!("the reload never ended; log:\n{}", ember.log()));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("watchdog1") && said.contains("FIFO"),
        "{said}"
    );
    assert_eq!(ember.status("app")["state"], "active");
    assert!(ember.ctl(&["poweroff"]).status.success());
    assert_eq!(ember.wait_namespace_end(LONG), Some(2));
}
