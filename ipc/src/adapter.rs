//! What ember hands an adapter it runs (ember-mqtt, ember-dbus): its settings, as one
//! JSON document on the adapter's standard input. ember, as root, reads what the adapter
//! must not be able to read itself (a password file, a TLS key), so the adapter runs as
//! an unprivileged user of its own and needs no file of ember's.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Whether `name` has the shape of a template's instance (`worker@42`), or of a template
/// (`worker@`): a start, restart or stop of one that does not exist (yet, or any more)
/// goes to ember, which makes it from its template (a stop finds it stopped), refuses a
/// name it cannot be (`worker@`: it names no instance; `worker@..`), or answers
/// unknown-service when there is no template.
/// Adapters cannot tell: they see services, not templates; ember checks the name, with
/// one rule for every interface.
pub fn may_be_instance(name: &str) -> bool {
    name.find('@').is_some_and(|at| at > 0)
}

/// The services that are ember's own adapters. No adapter starts, stops or restarts them
/// (a `stop` of ember-mqtt over MQTT would cut the board off for good): they are
/// ember's to run, and root's over the control socket (and a `[[control.allow]]` rule's
/// that names them exactly: no glob reaches them).
pub const ADAPTERS: [&str; 2] = ["ember-mqtt", "ember-dbus"];

/// Why `name` may not be started, stopped or restarted over `via` ("MQTT", "D-Bus"), when
/// it is one of [`ADAPTERS`]: said by each adapter itself, as neither `allow` nor the
/// caller's rights are the reason (found by a hostile review: MQTT blamed `[mqtt]
/// allow`, which names it, and D-Bus told root that root may).
pub fn refusal_for_adapter(name: &str, via: &str) -> Option<String> {
    ADAPTERS.contains(&name).then(|| {
        format!(
            "{name} is one of ember's own adapters, which ember runs itself: none is started, stopped or restarted over {via} (a stop would cut this way in off); on the board, root may: ember ctl restart {name}"
        )
    })
}

/// The most settings an adapter reads: certificates and keys fit many times over.
pub const MAX_SETTINGS: usize = 1024 * 1024;

/// A secret (a password, a private key): its `Debug` shows no trace of it, so no log line
/// or panic message can.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// ember-dbus's settings, from `[dbus]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbusSettings {
    /// ember's control socket.
    pub socket: PathBuf,
    /// "system", "session" or a D-Bus address.
    pub bus: String,
    /// Members may start, stop and restart services, besides root.
    pub control_group: String,
    /// `[system] device`, the manager's Device: here rather than from the link's hello,
    /// so that a reload that renames the board restarts the adapter with the new name,
    /// as it does ember-mqtt.
    pub device: String,
    /// The log filter (EMBER_LOG's syntax), ember's own.
    #[serde(default)]
    pub log: Option<String>,
}

/// ember-mqtt's settings, from `[mqtt]`. File contents (the password, the CA, the client
/// certificate and key) are read by ember and carried here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    /// ember's control socket.
    pub socket: PathBuf,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The CA that signed the broker's certificate, PEM.
    #[serde(default)]
    pub ca: Option<String>,
    /// A client certificate and its key, PEM.
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<Secret>,
    pub prefix: String,
    pub device: String,
    /// Seconds; 0: none.
    pub keep_alive_secs: u64,
    pub allow: Vec<String>,
    pub allow_system: bool,
    pub groups: Vec<String>,
    pub homeassistant: bool,
    /// The `metrics` rounds of `[system] metrics_interval` are published too.
    #[serde(default)]
    pub metrics: bool,
    #[serde(default)]
    pub log: Option<String>,
}

/// A broker's address, `mqtt://host[:port]` or `mqtts://host[:port]`: `[mqtt] url`, and
/// `ember fleet --broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Reads a broker's URL; the error says what to write instead.
pub fn parse_url(url: &str) -> Result<MqttUrl, String> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(format!(
            "url \"{url}\" must start with mqtt:// or mqtts://, e.g. \"mqtt://127.0.0.1:1883\""
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse()
                .map_err(|_| format!("url \"{url}\": \"{port}\" is not a port number"))?;
            (host, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!(
            "url \"{url}\" has no host; write e.g. \"mqtt://127.0.0.1:1883\""
        ));
    }
    Ok(MqttUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// Reads an adapter's settings from standard input, to its end.
#[cfg(feature = "link")]
pub fn read_settings<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::io::stdin()
        .take(MAX_SETTINGS as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read the settings on standard input: {e}"))?;
    if text.len() > MAX_SETTINGS {
        return Err(format!(
            "the settings on standard input are over {MAX_SETTINGS} bytes"
        ));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "no settings on standard input: this adapter is started by ember, from the [mqtt] or [dbus] table of ember.toml".into(),
        );
    }
    crate::json::from_slice(&text).map_err(|e| format!("bad settings on standard input: {e}"))
}

/// Makes any panic, in any task, end the process with status 101: an adapter is
/// crash-only, and ember, which supervises it, starts it again in a known state (rather
/// than leaving it alive with a task gone).
#[cfg(feature = "link")]
pub fn crash_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ERROR {info}; exiting, to be started again");
        std::process::exit(101);
    }));
}

/// An adapter's log: one line per event on standard error, which ember reads and files
/// under the adapter's name with its own time, so no time here. `level` is a filter in
/// EMBER_LOG's syntax; EMBER_LOG overrides it.
#[cfg(feature = "link")]
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let wanted = std::env::var("EMBER_LOG")
        .ok()
        .or_else(|| level.map(str::to_owned))
        .unwrap_or_else(|| "info".to_owned());
    let filter: tracing_subscriber::filter::Targets = wanted
        .parse()
        .unwrap_or_else(|_| "info".parse().unwrap_or_default());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(StderrLines)
        .try_init();
}

#[cfg(feature = "link")]
struct StderrLines;

#[cfg(feature = "link")]
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StderrLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        use std::io::Write;
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0.push_str(value);
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.push_str(&format!("{value:?}"));
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let level = event.metadata().level().as_str();
        // One line a record: ember would split a newline into two. (A topic or a caller's
        // string may hold any control character: escaped as ember's own log does.)
        let text = crate::text::escape_controls(&message.0);
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("{level} {text}\n").as_bytes());
    }
}
