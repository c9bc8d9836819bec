//! A real dbus-daemon on a private socket, with a system-style configuration that
//! includes ember's shipped policy file, and busctl as the client.

use super::TempDir;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub fn have_dbus() -> bool {
    let ok = ["dbus-daemon", "busctl", "setpriv"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        eprintln!(
            "skipped: needs dbus-daemon, busctl and setpriv (apt install dbus systemd util-linux)"
        );
    }
    ok
}

pub struct Bus {
    pub dir: TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Bus {
    /// `extra` is more policy XML, e.g. a test's own `<policy>`.
    pub fn start(tag: &str, extra: &str) -> Bus {
        let dir = TempDir::new(&format!("bus-{tag}"));
        let socket = dir.path("bus.sock");
        let policy = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/dbus-1/io.ember.Init1.conf"
        );
        // The system bus's own defaults (as /usr/share/dbus-1/system.conf): deny by default.
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy}</include>
  {extra}
</busconfig>
"#,
            socket.display()
        );
        std::fs::write(dir.path("bus.conf"), config).expect("bus config");
        let mut bus = Bus {
            dir,
            socket,
            child: None,
        };
        bus.restart();
        bus
    }

    /// (Re)starts the daemon on the same socket.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                self.dir.path("bus.conf").display()
            ))
            .args(["--nofork", "--nopidfile", "--nosyslog"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path("bus.log")).expect("bus log"))
            .spawn()
            .expect("spawn dbus-daemon");
        self.child = Some(child);
        assert!(
            super::wait_for(super::LONG, || super::listening(&self.socket)),
            "dbus-daemon did not listen"
        );
    }

    /// Kills the daemon outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// `busctl --address=... ARGS`, as root.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address()))
            .args(args)
            .output()
            .expect("run busctl")
    }

    /// `data` of `busctl --json=short ARGS`; None when busctl fails.
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["--json=short"];
        all.extend_from_slice(args);
        let out = self.busctl(&all);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .map(|v| v["data"].clone())
    }

    /// A property of the object of `service` (io.ember.Init1.Service).
    pub fn service_property(&self, service: &str, name: &str) -> Option<serde_json::Value> {
        let path = format!("/io/ember/Init1/service/{service}");
        self.json(&[
            "get-property",
            "io.ember.Init1",
            &path,
            "io.ember.Init1.Service",
            name,
        ])
    }

    /// The same as uid and gid 65534 with no supplementary groups.
    pub fn busctl_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
            .arg(format!("--address={}", self.address()))
            .args(args)
            .output()
            .expect("run setpriv busctl")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.kill();
    }
}
