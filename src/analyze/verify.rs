//! `ember analyze verify`: `ember check`, plus warnings about configurations that load
//! but do not do what they seem to:
//!
//! - a service that others `require` with no readiness check: they start as soon as it
//!   is spawned, not once it can serve them;
//! - a oneshot with `restart = "always"`: it is not run again after it exits 0 (it stays
//!   active (exited)), so this reads as a loop but means "on-failure";
//! - a service that cannot start at boot because something it requires, directly or
//!   through others, is disabled (`enabled = false`).
//!
//! Each warning points at the line to change, found by reading the files again (the
//! checked [`Config`] keeps no positions).

use crate::config::{Config, Problem, Readiness, ServiceType, Severity, Source};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use toml::de::{DeTable, DeValue};

/// Every warning for a configuration that loaded.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let files = Files::read(config);
    let mut warnings = Vec::new();
    let services = &config.services;
    for (name, spec) in services {
        // 1. Required, but ready as soon as it is spawned.
        if spec.ready == Readiness::Spawned {
            let requirers: Vec<&str> = services
                .values()
                .filter(|s| s.requires.contains(name))
                .map(|s| &*s.name)
                .collect();
            if !requirers.is_empty() {
                let who = words(&requirers);
                let (verb, them) = if requirers.len() == 1 {
                    ("starts", "it")
                } else {
                    ("start", "them")
                };
                warnings.push(files.warning(
                    name,
                    None,
                    None,
                    format!(
                        "service \"{name}\" is required by {who} but has no readiness check, so {who} {verb} as soon as {name} is spawned, maybe before {name} can serve {them}; give {name} a ready = {{ tcp = \"ip:port\" }} (or log, file, exec, notify)"
                    ),
                ));
            }
        }
        // 2. A oneshot told to restart always (loading makes that "on-failure": it is
        // read from the file).
        if spec.kind == ServiceType::Oneshot
            && files.string(name, "restart").as_deref() == Some("always")
        {
            warnings.push(files.warning(
                name,
                Some("restart"),
                None,
                format!(
                    "service \"{name}\": a oneshot is not run again after it exits 0 (it stays active (exited)), so restart = \"always\" means \"on-failure\" here; write restart = \"on-failure\", or type = \"simple\" for a service that runs again"
                ),
            ));
        }
        // 3. Requires something disabled, directly or further down.
        if spec.enabled {
            if let Some(path) = disabled_requirement(config, name) {
                let mut chain = String::new();
                for (i, hop) in path.iter().enumerate() {
                    let which = if i == 0 {
                        "it requires"
                    } else {
                        ", which requires"
                    };
                    chain.push_str(&format!("{which} \"{hop}\""));
                }
                let off = path.last().map(String::as_str).unwrap_or_default();
                warnings.push(files.warning(
                    name,
                    Some("requires"),
                    path.first().map(String::as_str),
                    format!(
                        "service \"{name}\" cannot start at boot: {chain}, which is disabled (enabled = false); enable {off}, start it by hand (`ember ctl start {off}`), or drop the requirement"
                    ),
                ));
            }
        }
    }
    warnings
}

/// The shortest `requires` path from `name` to a disabled service, without `name`. A
/// breadth-first search that keeps each service's predecessor instead of each path, and
/// what it has seen in a set: linear in the services and requirements (a chain of 1,000
/// took 23 s with a list of paths and a list of seen names).
fn disabled_requirement(config: &Config, name: &str) -> Option<Vec<String>> {
    use std::collections::{HashMap, HashSet};
    let mut queue = VecDeque::from([name]);
    let mut seen = HashSet::from([name]);
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    while let Some(current) = queue.pop_front() {
        let spec = config.services.get(current)?;
        for dep in &spec.requires {
            let dep = dep.as_str();
            if !seen.insert(dep) {
                continue;
            }
            let Some(dep_spec) = config.services.get(dep) else {
                continue;
            };
            came_from.insert(dep, current);
            if !dep_spec.enabled {
                let mut path = vec![dep.to_owned()];
                let mut at = dep;
                while let Some(&before) = came_from.get(at) {
                    if before == name {
                        break;
                    }
                    path.push(before.to_owned());
                    at = before;
                }
                path.reverse();
                return Some(path);
            }
            queue.push_back(dep);
        }
    }
    None
}

/// "a", "a and b", "a, b and c".
fn words(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The configuration's files, read again to find where each service and key was written.
struct Files {
    main: Source,
    services_dir: PathBuf,
    /// Services defined in services_dir, by name.
    dir: BTreeMap<String, Source>,
}

impl Files {
    fn read(config: &Config) -> Files {
        let read = |path: PathBuf| Source {
            text: std::fs::read_to_string(&path).unwrap_or_default(),
            path,
            offline: false,
            at_boot: false,
            positions: Default::default(),
        };
        let main = read(config.path.clone());
        let services_dir = config.system.services_dir.clone();
        let dir = config
            .services
            .keys()
            .chain(config.templates.keys())
            .map(|name| (name, services_dir.join(format!("{name}.toml"))))
            .filter(|(_, path)| path.is_file())
            .map(|(name, path)| (name.clone(), read(path)))
            .collect();
        Files {
            main,
            services_dir,
            dir,
        }
    }

    /// The string value of `service`'s `key` as written.
    fn string(&self, service: &str, key: &str) -> Option<String> {
        let text = match self.dir.get(service) {
            Some(source) => &source.text,
            None => &self.main.text,
        };
        let root = parse(text)?;
        let mut table = root.get_ref();
        if !self.dir.contains_key(service) {
            let DeValue::Table(services) = table.get("service")?.get_ref() else {
                return None;
            };
            let DeValue::Table(own) = services.get(service)?.get_ref() else {
                return None;
            };
            table = own;
        }
        match table.get(key)?.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        }
    }

    /// A warning about `service`, at the value of `key` (at `item` in it, for an array),
    /// else at the service itself.
    fn warning(
        &self,
        service: &str,
        key: Option<&str>,
        item: Option<&str>,
        message: String,
    ) -> Problem {
        if let Some(offset) = in_main(&self.main.text, service, key, item) {
            return self.main.problem(Some(offset), Severity::Warning, message);
        }
        if let Some(source) = self.dir.get(service) {
            let offset = parse(&source.text).and_then(|root| in_table(root.get_ref(), key, item));
            return source.problem(offset, Severity::Warning, message);
        }
        // An instance is written as its template (a key of its own is the template's).
        if let Some((template, _)) = ember_engine::spec::template_of(service) {
            return self.warning(template, key, item, message);
        }
        // Neither file has it as expected (changed since it was loaded?): no position.
        Problem {
            file: self.services_dir.join(format!("{service}.toml")),
            position: None,
            severity: Severity::Warning,
            message,
        }
    }
}

/// A whole file, parsed as loading parses it (the same code in the binary).
fn parse(text: &str) -> Option<toml::Spanned<DeTable<'_>>> {
    let (table, errors) = DeTable::parse_recoverable(text);
    errors.is_empty().then_some(table)
}

/// The offset of `[service.NAME]` in the main file, or of its `key` (or `item`) there.
fn in_main(text: &str, service: &str, key: Option<&str>, item: Option<&str>) -> Option<usize> {
    let root = parse(text)?;
    let DeValue::Table(services) = root.get_ref().get("service")?.get_ref() else {
        return None;
    };
    let (name, table) = services.iter().find(|(k, _)| k.get_ref() == service)?;
    match (key, table.get_ref()) {
        (Some(_), DeValue::Table(table)) => in_table(table, key, item).or(Some(name.span().start)),
        _ => Some(name.span().start),
    }
}

/// The offset of `key`'s value in `table` (of `item` when the value is an array that
/// holds it); for no key, the table's first key.
fn in_table(table: &DeTable<'_>, key: Option<&str>, item: Option<&str>) -> Option<usize> {
    let Some(key) = key else {
        return table.keys().map(|k| k.span().start).min();
    };
    let value = table.get(key)?;
    if let (Some(item), DeValue::Array(items)) = (item, value.get_ref()) {
        let found = items
            .iter()
            .find(|v| matches!(v.get_ref(), DeValue::String(s) if s.as_ref() == item));
        if let Some(found) = found {
            return Some(found.span().start);
        }
    }
    Some(value.span().start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(main: &str, files: &[(&str, &str)]) -> (Config, PathBuf) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ember-verify-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("services.d")).unwrap();
        std::fs::write(dir.join("ember.toml"), main).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join("services.d").join(name), text).unwrap();
        }
        let loaded = crate::config::load(&dir.join("ember.toml"));
        let errors: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        (loaded.config.unwrap(), dir)
    }

    #[test]
    fn each_warning_points_at_what_to_change() {
        let (config, dir) = load(
            r#"[service.db]
command = ["/bin/sleep", "1000"]

[service.web]
command = ["/bin/sleep", "1000"]
requires = ["db", "cache"]

[service.cache]
command = ["/bin/sleep", "1000"]
ready = { delay = "1s" }
enabled = false

[service.init]
command = ["/bin/true"]
type = "oneshot"
restart = "always"
"#,
            &[(
                "app.toml",
                "command = [\"/bin/sleep\", \"1000\"]\nrequires = [\"web\"]\nready = { delay = \"1s\" }\n",
            )],
        );
        let found = sorted_warnings(&config, &dir);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].starts_with("DIR/ember.toml:1:10: warning: service \"db\" is required by web but has no readiness check, so web starts as soon as db is spawned, maybe before db can serve it; give db a ready"), "{found:#?}");
        assert!(
            found[1]
                .starts_with("DIR/ember.toml:4:10: warning: service \"web\" is required by app"),
            "{found:#?}"
        );
        assert!(found[2].starts_with("DIR/ember.toml:6:19: warning: service \"web\" cannot start at boot: it requires \"cache\", which is disabled (enabled = false); enable cache"), "{found:#?}");
        assert!(
            found[3].starts_with(
                "DIR/ember.toml:16:11: warning: service \"init\": a oneshot is not run again"
            ),
            "{found:#?}"
        );
        assert!(found[4].starts_with("DIR/services.d/app.toml:2:13: warning: service \"app\" cannot start at boot: it requires \"web\", which requires \"cache\", which is disabled"), "{found:#?}");
    }

    /// The warnings of `config`, in order, with `dir` (removed) written DIR.
    fn sorted_warnings(config: &Config, dir: &std::path::Path) -> Vec<String> {
        let mut problems = warnings(config);
        crate::config::sort_problems(&mut problems);
        let _ = std::fs::remove_dir_all(dir);
        problems
            .iter()
            .map(|p| p.to_string().replace(&dir.display().to_string(), "DIR"))
            .collect()
    }

    /// A warning about an instance points at its template, where it is written (in the
    /// main file or in services.d): it named `services.d/worker@1.toml`, a file that is
    /// not there, with no line.
    #[test]
    fn a_warning_about_an_instance_points_at_its_template() {
        let (config, dir) = load(
            r#"[service."worker@"]
command = ["/bin/sleep", "{instance}"]
instances = 2

[service.web]
command = ["/bin/sleep", "1000"]
requires = ["worker@1", "worker@7", "pool@a"]
"#,
            &[("pool@.toml", "command = [\"/bin/sleep\", \"{instance}\"]\n")],
        );
        let found = sorted_warnings(&config, &dir);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with(
                "DIR/ember.toml:1:10: warning: service \"worker@1\" is required by web"
            ),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with(
                "DIR/ember.toml:1:10: warning: service \"worker@7\" is required by web"
            ),
            "{found:#?}"
        );
        assert!(
            found[2].starts_with(
                "DIR/services.d/pool@.toml:1:1: warning: service \"pool@a\" is required by web"
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn a_sound_configuration_has_none() {
        let (config, dir) = load(
            r#"[service.db]
command = ["/bin/sleep", "1000"]
ready = { delay = "1s" }

[service.web]
command = ["/bin/sleep", "1000"]
requires = ["db"]

[service.once]
command = ["/bin/true"]
type = "oneshot"
"#,
            &[],
        );
        let found = warnings(&config);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn lists_read_as_words() {
        assert_eq!(words(&["a"]), "a");
        assert_eq!(words(&["a", "b"]), "a and b");
        assert_eq!(words(&["a", "b", "c"]), "a, b and c");
    }
}
