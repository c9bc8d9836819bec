//! `[mqtt]`: the broker to talk to and what may be done over it. No table, no MQTT.

use super::walk::{FromToml, Issue, Table};
use super::{Problem, Severity, Source};
use ember_ipc::names::{check_mqtt_string, check_topic_level};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// mqtts://: TLS with rustls.
    pub tls: bool,
    /// Default "ember-<device>": stable, so a reconnect takes over the old session.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Read at start; a password never sits in the main configuration.
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub prefix: String,
    pub keep_alive: Duration,
    /// Globs of services that may be controlled remotely.
    pub allow: Vec<String>,
    /// reload, poweroff and reboot over MQTT.
    pub allow_system: bool,
    pub groups: Vec<String>,
    pub homeassistant: bool,
    /// The user the ember-mqtt adapter runs as (default "ember-mqtt"; without such an
    /// account, a uid of ember's: see `crate::adapters`).
    pub user: String,
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`: shared with `ember fleet --broker`.
pub use ember_ipc::adapter::{parse_url, MqttUrl};

impl FromToml for MqttUrl {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        let text = String::from_toml(value, issues)?;
        parse_url(&text)
            .map_err(|message| issues.push(Issue { offset, message }))
            .ok()
    }
}

/// The keys as written, with where the ones checked together were written.
pub struct RawMqtt {
    url: Option<Spanned<MqttUrl>>,
    client_id: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    ca_file: Option<Spanned<PathBuf>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    prefix: Option<Spanned<String>>,
    keep_alive: Option<Spanned<Duration>>,
    allow: Option<Vec<String>>,
    allow_system: Option<bool>,
    groups: Option<Vec<Spanned<String>>>,
    homeassistant: Option<bool>,
    user: Option<Spanned<String>>,
}

impl RawMqtt {
    /// Takes the keys of `[mqtt]`, in the order an unknown key's message lists them.
    pub fn take_from(t: &mut Table<'_>) -> RawMqtt {
        RawMqtt {
            url: t.take("url"),
            client_id: t.take("client_id"),
            username: t.take("username"),
            password_file: t.take("password_file"),
            ca_file: t.take("ca_file"),
            cert_file: t.take("cert_file"),
            key_file: t.take("key_file"),
            prefix: t.take("prefix"),
            keep_alive: t.take("keep_alive"),
            allow: t.take("allow"),
            allow_system: t.take("allow_system"),
            groups: t.take("groups"),
            homeassistant: t.take("homeassistant"),
            user: t.take("user"),
        }
    }

    /// Checks what only makes sense together, and files that must exist.
    pub fn check(
        self,
        table_offset: usize,
        source: &Source,
        problems: &mut Vec<Problem>,
    ) -> MqttConfig {
        let mut problem = |offset: usize, severity, message: String| {
            problems.push(source.problem(Some(offset), severity, message))
        };
        let url = self.url.map(Spanned::into_inner).unwrap_or(MqttUrl {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
        });
        for (key, file) in [
            ("password_file", &self.password_file),
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ]
        .into_iter()
        .filter_map(|(key, file)| Some((key, file.as_ref()?)))
        .filter(|_| !source.offline)
        {
            // Read as ember will read it (a regular file, bounded), so that `ember check`
            // and a reload say what the adapter's start would fail on.
            // (Not being allowed to read it is no problem of the file: `ember check` may run
            // as a user who cannot read a root's secret.)
            match crate::filekind::read_small_file(file.get_ref()) {
                Ok(text) => {
                    if let Some(why) = not_what_it_is_for(key, &text) {
                        let path = file.get_ref().display();
                        problem(
                            file.span().start,
                            Severity::Runtime,
                            format!("{key} {path}: {why}"),
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                Err(e) => problem(
                    file.span().start,
                    Severity::Runtime,
                    format!("{}: {e}", file.get_ref().display()),
                ),
            }
        }
        // A secret others can read is no longer a secret; ember runs as root, so 0600 does.
        for (key, file) in [
            ("password_file", &self.password_file),
            ("key_file", &self.key_file),
        ] {
            let Some(file) = file else { continue };
            let Ok(meta) = std::fs::metadata(file.get_ref()) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                let path = file.get_ref().display();
                problem(
                    file.span().start,
                    Severity::Warning,
                    format!(
                        "{key} {path} is open to group or others (mode {mode:04o}) and holds a secret; chmod 600 {path}"
                    ),
                );
            }
        }
        if url.tls && self.ca_file.is_none() {
            problem(
                table_offset,
                Severity::Error,
                "mqtts:// needs ca_file: the CA certificate that signed the broker's (PEM)".into(),
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problem(
                table_offset,
                Severity::Error,
                "a client certificate needs both cert_file and key_file".into(),
            );
        }
        if (self.cert_file.is_some() || self.ca_file.is_some()) && !url.tls {
            problem(
                table_offset,
                Severity::Warning,
                "ca_file and cert_file only apply to mqtts:// urls".into(),
            );
        }
        let prefix = match self.prefix {
            Some(p) => match check_topic_level("prefix", p.get_ref(), true) {
                Ok(()) => p.into_inner(),
                Err(why) => {
                    problem(
                        p.span().start,
                        Severity::Error,
                        format!("{why}; e.g. \"ember\""),
                    );
                    "ember".to_owned()
                }
            },
            None => "ember".to_owned(),
        };
        let keep_alive = match self.keep_alive {
            None => Duration::from_secs(30),
            Some(k) => {
                let d = *k.get_ref();
                if !d.is_zero() && (d < Duration::from_secs(1) || d > Duration::from_secs(65_535)) {
                    problem(
                        k.span().start,
                        Severity::Error,
                        "keep_alive must be 0 (off) or from \"1s\" to \"65535s\" (MQTT's limit)"
                            .into(),
                    );
                    Duration::from_secs(30)
                } else {
                    d
                }
            }
        };
        let mut groups = Vec::new();
        for group in self.groups.unwrap_or_default() {
            match check_topic_level("group", group.get_ref(), false) {
                Ok(()) => groups.push(group.into_inner()),
                Err(why) => problem(group.span().start, Severity::Error, why),
            }
        }
        // Sent in the CONNECT as MQTT strings: what MQTT does not carry would have the
        // broker close every connection.
        for (key, text) in [("client_id", &self.client_id), ("username", &self.username)] {
            let Some(text) = text else { continue };
            if let Err(why) = check_mqtt_string(key, text.get_ref()) {
                problem(text.span().start, Severity::Error, why);
            }
        }
        let user = super::adapter_user(self.user, crate::adapters::MQTT, source, &mut problem);
        MqttConfig {
            user,
            host: url.host,
            port: url.port,
            tls: url.tls,
            client_id: self
                .client_id
                .map(Spanned::into_inner)
                .filter(|c| !c.is_empty()),
            username: self.username.map(Spanned::into_inner),
            password_file: self.password_file.map(Spanned::into_inner),
            ca_file: self.ca_file.map(Spanned::into_inner),
            cert_file: self.cert_file.map(Spanned::into_inner),
            key_file: self.key_file.map(Spanned::into_inner),
            prefix,
            keep_alive,
            allow: self.allow.unwrap_or_else(|| vec!["*".into()]),
            allow_system: self.allow_system.unwrap_or(false),
            groups,
            homeassistant: self.homeassistant.unwrap_or(false),
        }
    }
}

/// Why a TLS file does not hold what its key is for, if it does not: the adapter would
/// fail every connection on it ("No valid CA certificate provided"). The PEM markers
/// only: rustls reads the rest, at the adapter's start.
fn not_what_it_is_for(key: &str, text: &str) -> Option<&'static str> {
    match key {
        "ca_file" | "cert_file" if !text.contains("-----BEGIN CERTIFICATE-----") => {
            Some("no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
        }
        "key_file" if !text.contains("PRIVATE KEY-----") => {
            Some("no PEM private key in it (-----BEGIN PRIVATE KEY-----, or RSA / EC PRIVATE KEY)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883"),
            Ok(MqttUrl {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            })
        );
        assert_eq!(
            parse_url("mqtts://broker.lan"),
            Ok(MqttUrl {
                host: "broker.lan".into(),
                port: 8883,
                tls: true
            })
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1884"),
            Ok(MqttUrl {
                host: "::1".into(),
                port: 1884,
                tls: false
            })
        );
        assert!(parse_url("http://x").unwrap_err().contains("mqtt://"));
        assert!(parse_url("mqtt://host:port")
            .unwrap_err()
            .contains("not a port"));
        assert!(parse_url("mqtt://").is_err());
    }
}
