//! A real mosquitto broker for the MQTT tests, on a free loopback port, and the real
//! mosquitto_pub / mosquitto_sub as clients.
#![allow(dead_code)]

use super::{wait_for, TempDir};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn have_mosquitto() -> bool {
    let ok = Command::new("mosquitto").arg("-h").output().is_ok()
        && Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !ok {
        // In CI a missing broker is a failure, not a skip: tests/run.sh installs it.
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto is not installed in CI"
        );
        eprintln!("skipped: mosquitto and mosquitto-clients are not installed (tests/run.sh installs them)");
    }
    ok
}

pub struct Broker {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    extra: String,
    /// Extra arguments for mosquitto_pub/sub: TLS files, credentials.
    pub client_args: Vec<String>,
}

impl Broker {
    /// Starts mosquitto with `extra` lines added to its configuration.
    pub fn start(tag: &str, extra: &str) -> Broker {
        let port = free_port();
        let mut broker = Broker {
            port,
            dir: TempDir::new(&format!("mosquitto-{tag}")),
            child: None,
            extra: extra.to_owned(),
            client_args: Vec::new(),
        };
        broker.restart();
        broker
    }

    /// A broker that is not running yet (for "broker starts after ember").
    pub fn later(tag: &str, extra: &str) -> Broker {
        Broker {
            port: free_port(),
            dir: TempDir::new(&format!("mosquitto-{tag}")),
            child: None,
            extra: extra.to_owned(),
            client_args: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        self.kill();
        let config = self.dir.path("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence_location {}/\n{}\n",
            self.port,
            self.dir.0.display(),
            self.extra
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        // mosquitto drops root for its own user: its persistence file goes here.
        let _ = std::fs::set_permissions(
            &self.dir.0,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        );
        let log = std::fs::File::create(self.dir.path("mosquitto.log")).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_for(super::LONG, || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "mosquitto did not listen on {port}"
        );
    }

    /// Stops the broker as an administrator would (SIGTERM: a persistent broker saves its
    /// retained messages), SIGKILL if it lingers.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if !wait_for(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// mosquitto_pub with extra arguments.
    pub fn publish(&self, topic: &str, message: &str, extra: &[&str]) -> Output {
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                message,
            ])
            .args(&self.client_args)
            .args(extra)
            .output()
            .expect("mosquitto_pub")
    }

    /// Collects `count` messages (or what arrives within `timeout`) from `topic` as
    /// "topic payload" lines, retained ones included.
    pub fn collect(&self, topic: &str, count: usize, timeout: Duration) -> Vec<String> {
        self.sub_once(topic, &["-C", &count.to_string()], timeout)
    }

    /// Only the retained messages on `topic` (mosquitto_sub --retained-only).
    pub fn retained(&self, topic: &str, timeout: Duration) -> Vec<String> {
        self.sub_once(topic, &["--retained-only"], timeout)
    }

    /// One mosquitto_sub run with `extra` options, ended after `timeout` (-W), [`scaled`]
    /// like every deadline and window of the helpers.
    fn sub_once(&self, topic: &str, extra: &[&str], timeout: Duration) -> Vec<String> {
        let timeout = super::scaled(timeout);
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-v",
            ])
            .args(extra)
            .args(["-W", &timeout.as_secs_f64().ceil().max(1.0).to_string()])
            .args(&self.client_args)
            .output()
            .expect("mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// mosquitto_pub of the file `path` as one message (`-f`: an argument cannot carry a
    /// payload of a megabyte).
    pub fn publish_file(&self, topic: &str, path: &std::path::Path, extra: &[&str]) -> Output {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-f"])
            .arg(path)
            .args(&self.client_args)
            .args(extra)
            .output()
            .expect("mosquitto_pub")
    }

    /// What mosquitto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("mosquitto.log")).unwrap_or_default()
    }

    /// A subscriber running in the background; read what it got with [`Subscriber::lines`].
    /// Returns once it is subscribed: it also subscribes to a probe topic of its own, and
    /// a probe is published until one comes back (one sent before the subscription took
    /// is dropped by the broker, not kept). The client must be allowed to publish there.
    pub fn subscribe(&self, topic: &str) -> Subscriber {
        self.subscribe_with(topic, &[])
    }

    /// The same with extra mosquitto_sub options (`-q 1`: nothing lost on the way to it).
    pub fn subscribe_with(&self, topic: &str, extra: &[&str]) -> Subscriber {
        let suffix = rand_suffix();
        let path = self.dir.path(&format!("sub-{suffix}"));
        let probe = format!("ember-test-probe/{suffix}");
        let out = std::fs::File::create(&path).expect("sub file");
        let child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-t",
                &probe,
                "-v",
            ])
            .args(extra)
            .args(&self.client_args)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let subscriber = Subscriber {
            child,
            path,
            probe: format!("{probe} "),
        };
        let subscribed = wait_for(super::LONG, || {
            self.publish(&probe, "probe", &[]);
            std::fs::read_to_string(&subscriber.path)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&subscriber.probe))
        });
        assert!(subscribed, "mosquitto_sub never subscribed to {topic}");
        subscriber
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Subscriber {
    child: Child,
    path: PathBuf,
    /// "TOPIC " of its probe messages, which [`Subscriber::lines`] leaves out.
    probe: String,
}

impl Subscriber {
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&self.probe))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until a line contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        wait_for(timeout, || {
            found = self.lines().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        found
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rand_suffix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}
