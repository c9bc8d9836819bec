//! The configuration parser and validator: any text as a main file (`config::check_text`,
//! which reads nothing from disk).
//!
//! Properties: no panic; the same text gives the same answer; every problem points inside
//! the text and prints as one line without control characters; a configuration comes back exactly when no problem is
//! an error; and a configuration that comes back keeps every promise the validator makes
//! (the engine relies on them: names, dependencies, no cycles, durations in range...).

#![no_main]

use ember::config::{
    check_text, values, Config, Loaded, Readiness, RestartPolicy, ServiceType, Severity,
};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    // `load` reads files as UTF-8 and reports anything else as unreadable.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/ember/ember.toml");
    let loaded = check_text(path, text);

    let again = check_text(path, text);
    assert_eq!(loaded.problems, again.problems, "same text, same problems");
    assert_eq!(loaded.config, again.config, "same text, same configuration");

    check_problems(&loaded, text, path);
    let has_errors = loaded.errors().next().is_some();
    assert_eq!(
        loaded.config.is_some(),
        !has_errors,
        "{:?}",
        loaded.problems
    );
    let settings = loaded
        .settings
        .as_ref()
        .expect("check_text always has settings");
    if has_errors {
        assert!(
            settings.services.is_empty(),
            "a broken configuration runs no services"
        );
    }
    if let Some(config) = &loaded.config {
        // The settings are the configuration without its services (a copy of those
        // would live as long as ember).
        assert_eq!(Some(&config.settings()), loaded.settings.as_ref());
        check_config(config);
    }
});

fn check_problems(loaded: &Loaded, text: &str, path: &Path) {
    let lines: Vec<&str> = text.split('\n').collect();
    for p in &loaded.problems {
        assert_eq!(p.file, path);
        assert_ne!(
            p.severity,
            Severity::Runtime,
            "check_text looks nothing up: {p:?}"
        );
        if let Some((line, col)) = p.position {
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} outside the text: {p:?}"
            );
            let width = lines[line - 1].chars().count();
            assert!(
                col >= 1 && col <= width + 1,
                "column {col} outside line {line}: {p:?}"
            );
        }
        // `ember check` prints one problem a line, and PID 1 logs it as one record (to
        // /dev/kmsg, where a newline starts another): no newline, nor any other control
        // character a value could bring (a tab, ESC for the terminal).
        let shown = p.to_string();
        assert!(
            !shown.chars().any(char::is_control),
            "a control character in {shown:?}"
        );
    }
}

fn check_config(config: &Config) {
    let names: BTreeSet<&str> = config.services.keys().map(String::as_str).collect();
    for (name, spec) in &config.services {
        assert_eq!(&*spec.name, name.as_str());
        assert!(values::check_service_name(name).is_ok(), "{name:?}");
        assert!(
            spec.command
                .first()
                .is_some_and(|program| !program.is_empty()),
            "{spec:?}"
        );
        assert!(!spec.console, "not settable from TOML");
        for dep in &spec.requires {
            assert!(
                names.contains(dep.as_str()),
                "{name} requires undefined {dep}"
            );
        }
        for dep in spec.ordered_after() {
            assert_ne!(dep, name, "{name} depends on itself");
        }
        for d in [
            spec.restart_delay,
            spec.restart_delay_max,
            spec.start_limit_interval,
            spec.stop_timeout,
        ]
        .into_iter()
        .chain(spec.ready_timeout)
        .chain(spec.watchdog)
        {
            assert!(d <= values::MAX_DURATION, "{d:?} in {spec:?}");
        }
        if let Readiness::Delay(d) = &spec.ready {
            assert!(*d <= values::MAX_DURATION);
        }
        assert!(spec.restart_delay <= spec.restart_delay_max, "{spec:?}");
        assert!(
            spec.ready_timeout != Some(Duration::ZERO),
            "zero means none"
        );
        if let Some(w) = spec.watchdog {
            assert!(!w.is_zero());
            assert_eq!(spec.ready, Readiness::Notify, "a watchdog needs sd_notify");
        }
        assert_eq!(
            spec.kind == ServiceType::Forking,
            spec.pid_file.is_some(),
            "pid_file exactly for forking: {spec:?}"
        );
        if let Some(p) = &spec.pid_file {
            assert!(p.is_absolute());
        }
        match (spec.kind, &spec.ready) {
            (ServiceType::Oneshot, r) => assert_eq!(r, &Readiness::Exit),
            (ServiceType::Forking, r) => assert_eq!(r, &Readiness::PidFile),
            (ServiceType::Notify, r) => assert_eq!(r, &Readiness::Notify),
            (ServiceType::Simple, r) => {
                assert!(!matches!(r, Readiness::Exit | Readiness::PidFile), "{r:?}")
            }
        }
        if spec.kind == ServiceType::Oneshot {
            assert_ne!(spec.restart, RestartPolicy::Always);
        }
        match &spec.ready {
            Readiness::Log(pattern) => assert!(regex_lite::Regex::new(pattern).is_ok()),
            Readiness::Tcp(addr) => assert!(addr.parse::<std::net::SocketAddr>().is_ok()),
            Readiness::Exec(argv) => assert!(!argv.is_empty()),
            _ => {}
        }
        for output in [&spec.stdout, &spec.stderr] {
            if let ember::config::Output::File(p) = output {
                assert!(p.is_absolute(), "{p:?}");
            }
        }
    }
    assert_no_cycle(config);
    assert!(config.system.shutdown_timeout <= values::MAX_DURATION);
    if let Some(level) = &config.log.level {
        assert!(values::parse_log_level(level).is_ok());
    }
    if let Some(mqtt) = &config.mqtt {
        let level = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
        let device = &config.system.device;
        assert!(level(device) && !device.starts_with('$') && device != "group");
        assert!(level(&mqtt.prefix), "{:?}", mqtt.prefix);
        assert!(mqtt.groups.iter().all(|g| level(g)), "{:?}", mqtt.groups);
        assert!(!mqtt.host.is_empty());
        assert!(!mqtt.tls || mqtt.ca_file.is_some());
        assert_eq!(mqtt.cert_file.is_some(), mqtt.key_file.is_some());
        let k = mqtt.keep_alive;
        assert!(k.is_zero() || (k >= Duration::from_secs(1) && k <= Duration::from_secs(65_535)));
    }
    if let Some(dbus) = &config.dbus {
        assert!(!dbus.control_group.is_empty());
    }
}

/// Kahn's algorithm over requires, wants and after (among defined services): a graph the
/// validator accepted sorts completely, or services on a cycle would wait for ever.
fn assert_no_cycle(config: &Config) {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, spec) in &config.services {
        let deps: BTreeSet<&str> = spec
            .ordered_after()
            .map(String::as_str)
            .filter(|d| config.services.contains_key(*d))
            .collect();
        waiting.insert(name, deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(name);
        }
    }
    let mut ready: Vec<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(s, _)| *s)
        .collect();
    let mut sorted = 0;
    while let Some(next) = ready.pop() {
        sorted += 1;
        for dependent in dependents.get(next).into_iter().flatten() {
            let n = waiting.get_mut(dependent).expect("a defined service");
            *n -= 1;
            if *n == 0 {
                ready.push(dependent);
            }
        }
    }
    assert_eq!(
        sorted,
        config.services.len(),
        "a dependency cycle was accepted"
    );
}
