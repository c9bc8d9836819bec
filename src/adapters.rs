//! The adapters ember runs for `[mqtt]` and `[dbus]`: separate executables (ember-mqtt,
//! ember-dbus) beside ember's own, each a service of ember's like any other (visible in
//! `ember ctl status`, restarted whenever it ends), running as an unprivileged user of
//! its own, and a client of the control socket with the rights its table implies. PID 1
//! then parses no broker's packets and no bus's messages: s6's principle.
//!
//! The user is the table's `user` (by default `ember-mqtt` / `ember-dbus`, which the Yocto
//! recipe creates). Where no such account exists, ember picks a fixed uid of its own for
//! the adapter (as systemd's DynamicUser does): an adapter needs no file of the system,
//! since ember hands it its settings, secrets included, on standard input.

use crate::config::{Config, RestartPolicy, ServiceSpec};
use ember_ipc::adapter::{DbusSettings, MqttSettings, Secret};
use ember_ipc::rights::{Rule, Who, READ_VERBS};
use ember_ipc::Verb;
use std::path::PathBuf;
use std::time::Duration;

pub const MQTT: &str = ember_ipc::adapter::ADAPTERS[0];
pub const DBUS: &str = ember_ipc::adapter::ADAPTERS[1];

/// The names taken by the adapters: no service of the configuration may have them.
pub const NAMES: [&str; 2] = ember_ipc::adapter::ADAPTERS;

/// An adapter to run: its service, and the rule its uid is admitted to the socket by.
pub struct Adapter {
    pub spec: ServiceSpec,
    pub rule: Option<Rule>,
}

/// The adapters `config` asks for.
pub fn plan(config: &Config) -> Vec<Adapter> {
    let mut adapters = Vec::new();
    if let Some(mqtt) = &config.mqtt {
        let settings = mqtt_settings(config, mqtt);
        // Reading, and what [mqtt] lets the network do: start, stop, restart, kill and
        // reset-failed of the allowed services; reload, poweroff and reboot with
        // allow_system.
        let mut verbs = read_verbs();
        verbs.extend([
            Verb::Start,
            Verb::Stop,
            Verb::Restart,
            Verb::Kill,
            Verb::ResetFailed,
        ]);
        if mqtt.allow_system {
            verbs.extend([Verb::Reload, Verb::Poweroff, Verb::Reboot, Verb::Halt]);
        }
        let services = (!mqtt.allow.iter().any(|g| g == "*")).then(|| mqtt.allow.clone());
        let brokers = broker_services(config, &mqtt.host, mqtt.port);
        let json = settings.and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string()));
        adapters.push(adapter(MQTT, &mqtt.user, json, verbs, services, brokers));
    }
    if let Some(dbus) = &config.dbus {
        let settings = DbusSettings {
            socket: config.control.socket.clone(),
            bus: match &dbus.bus {
                crate::config::dbus::Bus::System => "system".into(),
                crate::config::dbus::Bus::Session => "session".into(),
                crate::config::dbus::Bus::Address(a) => a.clone(),
            },
            control_group: dbus.control_group.clone(),
            device: config.system.device.clone(),
            log: config.log.level.clone(),
        };
        // Its callers' credentials decide (root for the system verbs, the control group
        // for services): the adapter itself may ask everything.
        let verbs = all_verbs();
        let json = serde_json::to_string(&settings).map_err(|e| e.to_string());
        adapters.push(adapter(
            DBUS,
            &dbus.user,
            json,
            verbs,
            None,
            bus_services(config, &settings.bus),
        ));
    }
    adapters
}

fn all_verbs() -> Vec<Verb> {
    Verb::ALL.to_vec()
}

/// Reading, plus what the table allows.
pub fn read_verbs() -> Vec<Verb> {
    READ_VERBS.to_vec()
}

fn adapter(
    name: &str,
    user: &str,
    settings: Result<String, String>,
    verbs: Vec<Verb>,
    services: Option<Vec<String>>,
    after: Vec<String>,
) -> Adapter {
    let program = beside_ember(name);
    let mut spec = ServiceSpec::new(name, &[&program.to_string_lossy()]);
    spec.restart = RestartPolicy::Always;
    spec.restart_delay = Duration::from_millis(100);
    spec.restart_delay_max = Duration::from_secs(2);
    spec.start_limit = 0;
    spec.after = after;
    spec.linger = true;
    match settings {
        Ok(json) => spec.input = Some(Secret::new(json)),
        // The files are read with the configuration: starting it again cannot help (it
        // was started every 2 s for good, three log lines each time). It fails once,
        // saying what to do; the reload that reads the fixed file starts it.
        Err(e) => {
            spec.load_error = Some(format!(
                "{e}; fix it, then `ember ctl reload` reads it again"
            ));
            spec.restart = RestartPolicy::Never;
        }
    }
    // Only root can run it as another user; otherwise it runs as ember does, and has
    // ember's rights.
    let uid = if nix::unistd::geteuid().is_root() {
        let (uid, exists) = account(user);
        spec.user = Some(uid.to_string());
        // An account's own group (and its memberships); an id without an account, the
        // group of the same number. Never the uid's number as the gid of an account: that
        // may be another group altogether.
        spec.group = (!exists).then(|| uid.to_string());
        // Root would have every right on the socket: the adapter does not run (`ember
        // check` says so; at boot the other services run, as for a file it cannot read).
        if uid == 0 {
            spec.load_error = root_user_problem(user, name);
            spec.restart = RestartPolicy::Never;
        }
        Some(uid)
    } else {
        None
    };
    let rule = uid.map(|uid| Rule {
        who: Who::Uid(uid),
        verbs,
        services,
        except: ember_ipc::adapter::ADAPTERS.map(str::to_owned).to_vec(),
        source: format!("the {name} adapter"),
    });
    Adapter { spec, rule }
}

/// The adapter's executable: beside ember's own (`/sbin/ember` → `/sbin/ember-mqtt`; in
/// a build, `target/release/`).
fn beside_ember(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(format!("/sbin/{name}")))
}

/// Why the adapter `name` cannot be run from beside ember, if it cannot (a plain `cargo
/// run` builds ember alone; an image may leave an adapter's package out).
pub fn program_problem(name: &str) -> Option<String> {
    let program = beside_ember(name);
    let why = crate::config::service::resolve_program(&program.to_string_lossy(), None).err()?;
    let dir = program.parent().unwrap_or(&program);
    Some(format!(
        "{name} cannot be run: {}; ember runs it for this table from beside its own executable, so install it in {}",
        why.split(';').next().unwrap_or(&why),
        dir.display()
    ))
}

/// Why `user` is not a user name an adapter can run as, if it is not.
pub fn user_name_problem(user: &str, adapter: &str) -> Option<String> {
    (user.is_empty() || user.contains([':', ' ', '/', '\0'])).then(|| {
        format!(
            "user \"{}\" must be a user name, e.g. \"{adapter}\"",
            user.escape_debug()
        )
    })
}

/// Why `user` may not run the adapter `adapter`, if it may not: an account with uid 0
/// would have every right on the control socket whatever its table allows (a
/// compromised ember-mqtt could reboot with `allow_system = false`). The account is
/// looked up here: it is the board's, so the adapter fails where it is root, not the
/// configuration.
pub fn root_user_problem(user: &str, adapter: &str) -> Option<String> {
    let root = matches!(nix::unistd::User::from_name(user), Ok(Some(u)) if u.uid.is_root());
    root.then(|| {
        format!(
            "user \"{user}\" is root: {adapter} would have every right on the control socket, whatever its table allows; leave user out (an account or uid of its own, \"{adapter}\")"
        )
    })
}

/// The uid of `user`, or where there is no such account one of ember's: the same every
/// time for the same name (in systemd's dynamic range, 61184–65519), skipping uids that
/// have an account; and whether it is an account's.
fn account(user: &str) -> (u32, bool) {
    if let Ok(Some(found)) = nix::unistd::User::from_name(user) {
        return (found.uid.as_raw(), true);
    }
    const FIRST: u32 = 61184;
    const COUNT: u32 = 65519 - 61184 + 1;
    // FNV-1a: stable across builds and machines.
    let hash = user.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x01000193)
    });
    let uid = (0..COUNT)
        .map(|i| FIRST + (hash.wrapping_add(i) % COUNT))
        .find(|uid| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
                .map(|u| u.is_none())
                .unwrap_or(true)
        })
        .unwrap_or(FIRST);
    (uid, false)
}

/// ember-mqtt's settings: what `[mqtt]` says, with the files it names read here, by
/// ember, so that the adapter needs no access to them. A file that cannot be read is the
/// adapter's failure, with the reason, not ember's.
fn mqtt_settings(
    config: &Config,
    mqtt: &crate::config::mqtt::MqttConfig,
) -> Result<MqttSettings, String> {
    let read = |what: &str, path: &Option<PathBuf>| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| {
                // A regular file, bounded: PID 1 reads it (a FIFO would stop it).
                crate::filekind::read_small_file(p)
                    .map_err(|e| format!("cannot read [mqtt] {what} {}: {e}", p.display()))
            })
            .transpose()
    };
    let password = read("password_file", &mqtt.password_file)?
        .map(|text| Secret::new(text.trim_end_matches(['\n', '\r']).to_owned()));
    let device = config.system.device.clone();
    Ok(MqttSettings {
        socket: config.control.socket.clone(),
        host: mqtt.host.clone(),
        port: mqtt.port,
        tls: mqtt.tls,
        client_id: mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("ember-{device}")),
        username: mqtt.username.clone(),
        password,
        ca: read("ca_file", &mqtt.ca_file)?,
        cert: read("cert_file", &mqtt.cert_file)?,
        key: read("key_file", &mqtt.key_file)?.map(Secret::new),
        prefix: mqtt.prefix.clone(),
        device,
        keep_alive_secs: mqtt.keep_alive.as_secs(),
        allow: mqtt.allow.clone(),
        allow_system: mqtt.allow_system,
        groups: mqtt.groups.clone(),
        homeassistant: mqtt.homeassistant,
        metrics: config.system.metrics_interval.is_some(),
        log: config.log.level.clone(),
    })
}

/// The services that are the broker the MQTT adapter connects to, when ember runs it: a
/// service ready when the broker's port answers, or a mosquitto. The adapter starts after
/// them (and stops before them).
fn broker_services(config: &Config, host: &str, port: u16) -> Vec<String> {
    let local = matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]");
    config
        .services
        .values()
        .filter(|s| {
            let program = s
                .command
                .first()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .unwrap_or_default();
            let answers_on_port = match &s.ready {
                crate::config::Readiness::Tcp(address) => address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| p == port.to_string() && (h == host || local)),
                _ => false,
            };
            answers_on_port || (local && program == "mosquitto")
        })
        .map(|s| s.name.to_string())
        .collect()
}

/// The services that are the bus the D-Bus adapter connects to, when ember runs it: the
/// adapter starts after them (and stops before them).
fn bus_services(config: &Config, bus: &str) -> Vec<String> {
    let path = bus
        .strip_prefix("unix:path=")
        .map(|p| p.split(',').next().unwrap_or(p).to_owned())
        .or_else(|| (bus == "system").then(|| "/run/dbus/system_bus_socket".to_owned()));
    config
        .services
        .values()
        .filter(|s| {
            let program = s
                .command
                .first()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .unwrap_or_default();
            let waits_for_socket = matches!(
                (&s.ready, &path),
                (crate::config::Readiness::File(f), Some(p)) if f.as_os_str() == p.as_str()
            );
            waits_for_socket || program == "dbus-daemon" || program.starts_with("dbus-broker")
        })
        .map(|s| s.name.to_string())
        .collect()
}

/// `config` with its adapters as services, and the rules that admit them; what boots and
/// what a reload applies.
pub fn with_adapters(mut config: Config) -> (Config, Vec<Rule>) {
    let mut rules = Vec::new();
    for adapter in plan(&config) {
        rules.extend(adapter.rule);
        config
            .services
            .insert(adapter.spec.name.to_string(), adapter.spec);
    }
    (config, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adapter that runs as an account runs with that account's group, not with a gid
    /// numbered like its uid, which may be another group altogether (ember-mqtt, uid 999,
    /// ran with gid 999: systemd-journal on a Debian host, with the right to read the
    /// journal). Only an id made up for want of an account uses its uid as its gid.
    #[test]
    fn an_adapter_runs_with_its_accounts_own_group() {
        if !nix::unistd::geteuid().is_root() {
            return; // not root: adapters run as ember does
        }
        // An account whose gid is not its uid (Debian has several: sync, games, man).
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let Some((name, gid)) = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (uid, gid) = (fields.get(2)?, fields.get(3)?);
            (uid != gid).then(|| (fields[0].to_owned(), gid.parse::<u32>().ok()))
        }) else {
            return;
        };
        let made = adapter(
            "ember-test",
            &name,
            Ok("{}".into()),
            Vec::new(),
            None,
            Vec::new(),
        );
        let group = made.spec.group.as_deref();
        assert!(
            group.is_none() || group == gid.map(|g| g.to_string()).as_deref(),
            "{name}: runs with group {group:?}, its own is {gid:?}"
        );
        // No account: a uid of ember's, and the same number as its group.
        let made = adapter(
            "ember-test",
            "ember-no-such-account",
            Ok("{}".into()),
            Vec::new(),
            None,
            Vec::new(),
        );
        assert_eq!(made.spec.group, made.spec.user);
    }
}
