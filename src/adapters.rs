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
use ember_ipc::adapter::{DbusSettings, Secret};
use ember_ipc::rights::{Rule, Who, READ_VERBS};
use ember_ipc::Verb;
use std::path::PathBuf;
use std::time::Duration;

pub const DBUS: &str = "ember-dbus";
pub const MQTT: &str = "ember-mqtt";

/// The names taken by the adapters: no service of the configuration may have them.
pub const NAMES: [&str; 2] = [MQTT, DBUS];

/// An adapter to run: its service, and the rule its uid is admitted to the socket by.
pub struct Adapter {
    pub spec: ServiceSpec,
    pub rule: Option<Rule>,
}

/// The adapters `config` asks for.
pub fn plan(config: &Config) -> Vec<Adapter> {
    let mut adapters = Vec::new();
    if let Some(dbus) = &config.dbus {
        let settings = DbusSettings {
            socket: config.control.socket.clone(),
            bus: match &dbus.bus {
                crate::config::dbus::Bus::System => "system".into(),
                crate::config::dbus::Bus::Session => "session".into(),
                crate::config::dbus::Bus::Address(a) => a.clone(),
            },
            control_group: dbus.control_group.clone(),
            log: config.log.level.clone(),
        };
        // Its callers' credentials decide (root for the system verbs, the control group
        // for services): the adapter itself may ask everything.
        let verbs = all_verbs();
        adapters.push(adapter(
            DBUS,
            &dbus.user,
            serde_json::to_string(&settings),
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
    settings: serde_json::Result<String>,
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
        Err(e) => spec.load_error = Some(format!("cannot write its settings: {e}")),
    }
    // Only root can run it as another user; otherwise it runs as ember does, and has
    // ember's rights.
    let uid = if nix::unistd::geteuid().is_root() {
        let uid = account(user);
        spec.user = Some(uid.to_string());
        spec.group = Some(uid.to_string());
        Some(uid)
    } else {
        None
    };
    let rule = uid.map(|uid| Rule {
        who: Who::Uid(uid),
        verbs,
        services,
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

/// The uid of `user`, or where there is no such account one of ember's: the same every
/// time for the same name (in systemd's dynamic range, 61184–65519), skipping uids that
/// have an account.
fn account(user: &str) -> u32 {
    if let Ok(Some(found)) = nix::unistd::User::from_name(user) {
        return found.uid.as_raw();
    }
    const FIRST: u32 = 61184;
    const COUNT: u32 = 65519 - 61184 + 1;
    // FNV-1a: stable across builds and machines.
    let hash = user.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x01000193)
    });
    (0..COUNT)
        .map(|i| FIRST + (hash.wrapping_add(i) % COUNT))
        .find(|uid| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
                .map(|u| u.is_none())
                .unwrap_or(true)
        })
        .unwrap_or(FIRST)
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
        .map(|s| s.name.clone())
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
            .insert(adapter.spec.name.clone(), adapter.spec);
    }
    (config, rules)
}
