//! Service names: the one rule every name follows, shared by ember and its clients.

/// The rule every service name follows, checked here and nowhere else (by ember on its
/// configuration and its requests, by a client such as `ember fleet` before it sends). A name becomes a
/// path component (its cgroup directory, its notify socket, a services.d file), an MQTT
/// topic level, a D-Bus object path label and a command-line argument, so it must be
/// something each of those carries as itself:
///
/// - 1 to 64 characters: ASCII letters, digits and `. _ @ -`. No `/` (a path separator,
///   an MQTT level separator), no `+ #` (MQTT wildcards), no `$`, no NUL, no control
///   characters, no spaces;
/// - starting with a letter, a digit or `_`: not `.` (so never `.` or `..`, which name a
///   directory itself or its parent, nor a hidden file), not `-` (it would read as an
///   option to `ember ctl`), not `@`;
/// - not `cgroup.*`, `cpu.*`, `memory.*`, `pids.*`... : a cgroup's own files are named
///   so, and a service's cgroup directory sits beside them.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let shortened = crate::text::shortened(name);
    let shown = shortened.escape_debug();
    if name.is_empty() {
        return Err("a service name cannot be empty".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "invalid service name \"{shown}\": it is {} characters long; the longest is 64 (it becomes a socket path, whose length the kernel limits)",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        let why = match bad {
            '/' => "a name becomes a file name and an MQTT topic level, which '/' would split",
            '+' | '#' => "a name becomes an MQTT topic level, where it is a wildcard",
            c if c.is_control() => "a control character cannot be shown or stored safely",
            _ => "a name becomes a file name, an MQTT topic level and a D-Bus path",
        };
        return Err(format!(
            "invalid service name \"{shown}\": {:?} is not allowed ({why}); use letters, digits and . _ @ -",
            bad
        ));
    }
    if let Some(first) = name
        .chars()
        .next()
        .filter(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        let why = match first {
            '.' => "\".\" and \"..\" name a directory itself and its parent, and a leading dot hides a file",
            '-' => "it would read as an option on a command line",
            _ => "a name must start with a letter, a digit or _",
        };
        return Err(format!(
            "invalid service name \"{shown}\": it starts with {first:?} ({why}); start it with a letter, a digit or _"
        ));
    }
    if let Some((prefix, _)) = name.split_once('.') {
        if CGROUP_FILE_PREFIXES.contains(&prefix) {
            return Err(format!(
                "invalid service name \"{shown}\": a cgroup's own files are named {prefix}.*, and each service's cgroup directory sits beside them; choose a name that does not start with \"{prefix}.\""
            ));
        }
    }
    Ok(())
}

/// Checks the name of a template's instance (`42` of `worker@42`): the whole name is a
/// service name (see [`check_service_name`]), and the instance starts with a letter, a
/// digit or `_`, as a name does: `{instance}` goes into paths (the command, workdir,
/// output files), where `.` and `..` would name other directories (`/srv/{instance}` as
/// `/srv/..`), and a leading `-` would read as an option. It does not end with `@`: the
/// whole name would then be a template's.
pub fn check_instance(template: &str, instance: &str) -> Result<(), String> {
    let full = format!("{template}{instance}");
    // Shown shortened, as a service's name is: a request may hold a name of 60 KB.
    let shown = crate::text::shortened(instance);
    let shown = shown.escape_debug();
    match instance.chars().next() {
        None => Err(format!("\"{}\" names no instance: write {template}NAME", full.escape_debug())),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => Err(format!(
            "invalid instance \"{shown}\" of {template}: it starts with {c:?}; an instance goes into paths ({{instance}}), so it starts with a letter, a digit or _",
        )),
        // A name ending with @ is a template's (`worker@a@` would be one, of `a@`'s
        // instances), so no instance is named so (found by a hostile review: one in
        // `instances` was taken for a template, and never ran).
        Some(_) => check_service_name(&full).and_then(|()| match instance.ends_with('@') {
            true => Err(format!(
                "invalid instance \"{shown}\" of {template}: it ends with @, and \"{}\" would be a template's name; end it with a letter, a digit or . _ -",
                full.escape_debug()
            )),
            false => Ok(()),
        }),
    }
}

/// The longest topic level ember takes for a prefix, a device or a group: every topic
/// it makes (prefix, device, a service's name of at most 64 characters and a few words)
/// then stays far under MQTT's 65,535 bytes, past which its client writes a length that
/// wraps around, and the broker reads garbage.
pub const MAX_TOPIC_LEVEL: usize = 256;

/// Checks text ember sends as an MQTT string (a client id, a user name; and every topic
/// level, see [`check_topic_level`]): MQTT forbids U+0000 in it (the broker closes the
/// connection, and ember would retry for good) and advises against the other control
/// characters; at most 65,535 bytes. `what` names it in the error, e.g. "client_id".
pub fn check_mqtt_string(what: &str, text: &str) -> Result<(), String> {
    let shown = crate::text::shortened(text);
    let shown = shown.escape_debug();
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} \"{shown}\" has the control character {bad:?}, which MQTT does not carry (U+0000 makes the broker close the connection); remove it"
        ));
    }
    if text.len() > 65_535 {
        return Err(format!(
            "{what} \"{shown}\" is {} bytes long; MQTT carries at most 65535",
            text.len()
        ));
    }
    Ok(())
}

/// Checks one level of the topics ember publishes and subscribes to: an `[mqtt]`
/// prefix (`first`: the topic's first level), a device, a fleet group, whether from
/// ember.toml or from `ember fleet`'s command line. Not empty; no `/` (it would make two
/// levels), no `+` or `#` (wildcards in a subscription); an MQTT string (see
/// [`check_mqtt_string`]) of at most [`MAX_TOPIC_LEVEL`] bytes; and a first level does
/// not start with `$`, which names the broker's own topics (mosquitto takes a publish to
/// `$SYS/...` and drops it without a word, and `#` never matches a `$` topic).
pub fn check_topic_level(what: &str, text: &str, first: bool) -> Result<(), String> {
    let shown = crate::text::shortened(text);
    let shown = shown.escape_debug();
    if text.is_empty() || text.contains(['/', '+', '#']) {
        return Err(format!(
            "{what} \"{shown}\" must be one MQTT topic level: not empty, without / + #"
        ));
    }
    check_mqtt_string(what, text)?;
    if text.len() > MAX_TOPIC_LEVEL {
        return Err(format!(
            "{what} \"{shown}\" is {} bytes long; a topic level here is at most {MAX_TOPIC_LEVEL}",
            text.len()
        ));
    }
    if first && text.starts_with('$') {
        return Err(format!(
            "{what} \"{shown}\" starts with $, which names the broker's own topics (a broker drops what clients publish under $SYS, and # never matches them); choose e.g. \"ember\""
        ));
    }
    Ok(())
}

/// What the files of a cgroup2 directory start with: its core files and each controller's.
const CGROUP_FILE_PREFIXES: [&str; 10] = [
    "cgroup", "cpu", "cpuset", "io", "memory", "pids", "rdma", "hugetlb", "misc", "irq",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "web-1.x@y_z",
            "_private",
            "9lives",
            "a",
            "memoryhog",
            "web.service",
            &"x".repeat(64),
        ] {
            assert!(check_service_name(good).is_ok(), "{good}");
        }
        let refused = |name: &str| check_service_name(name).unwrap_err();
        assert!(refused("").contains("empty"));
        assert!(refused("a/b").contains("'/'"));
        assert!(refused(&"x".repeat(65)).contains("64"));
        // Path components that are not a service's own.
        assert!(refused(".").contains("starts with '.'"));
        assert!(refused("..").contains("starts with '.'"));
        assert!(refused(".hidden").contains("starts with '.'"));
        assert!(refused("-rf").contains("option"));
        assert!(refused("@x").contains("start it with"));
        // MQTT wildcards, controls, NUL, spaces, non-ASCII.
        for bad in [
            "a+b", "a#", "$SYS", "a\0b", "a\nb", "a\u{1b}b", "a b", "wéb", "a\\b",
        ] {
            assert!(refused(bad).contains("is not allowed"), "{bad:?}");
        }
        // A control character is shown escaped, so the message stays one line.
        assert!(!refused("a\nb").contains('\n'));
        // An instance's name is shown shortened, as a service's is, whatever is wrong with
        // it (found by a hostile review: a 60 KB name refused for its first character
        // was echoed whole, in the reply and over MQTT).
        for bad in [
            format!(".{}", "x".repeat(60_000)),
            format!("{}@", "x".repeat(60_000)),
            format!("-{}", "\n".repeat(60_000)),
        ] {
            let why = check_instance("worker@", &bad).unwrap_err();
            assert!(why.len() < 400, "{} bytes: {}", why.len(), &why[..200]);
        }
        // A cgroup's own files.
        for bad in [
            "cgroup.procs",
            "cgroup.kill",
            "memory.max",
            "cpu.weight",
            "pids.max",
            "io.x",
        ] {
            assert!(refused(bad).contains("cgroup's own files"), "{bad}");
        }
    }
}
