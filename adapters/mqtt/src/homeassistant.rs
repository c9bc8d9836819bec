//! Home Assistant MQTT discovery: each allowed service becomes a `switch` (on = start,
//! off = stop, state from its state topic) and a restart `button`, both available while
//! the device's status topic says `online`.

use crate::topics::Topics;
use serde_json::json;

/// Discovery ids allow [a-zA-Z0-9_-] only. Letters, digits and `-` stay; `_` becomes
/// `__` and every other byte `_` and two lowercase hex digits (`web@2` → `web_402`,
/// `board.1` → `board_2e1`, `worker_77` → `worker__77`). Injective: after a `_` comes
/// either `_` or two hex digits, so each id reads back one way only ([`unescape`]);
/// the old mapping (every other character → `_`) gave `worker_77` and `worker@77` one
/// id. Names of letters, digits and `-` keep the ids they had.
pub fn object_id(text: &str) -> String {
    let mut id = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'_' => id.push_str("__"),
            b if b.is_ascii_alphanumeric() || b == b'-' => id.push(char::from(b)),
            b => id.push_str(&format!("_{b:02x}")),
        }
    }
    id
}

/// The name an [`object_id`] was made from, if it is one.
pub fn unescape(id: &str) -> Option<String> {
    let bytes = id.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'_' if bytes.get(at + 1) == Some(&b'_') => {
                out.push(b'_');
                at += 2;
            }
            b'_' => {
                let hex = id.get(at + 1..at + 3)?;
                if !hex.bytes().all(|h| matches!(h, b'0'..=b'9' | b'a'..=b'f')) {
                    return None;
                }
                let byte = u8::from_str_radix(hex, 16).ok()?;
                // Only what object_id escapes: one id, one name.
                if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                    return None;
                }
                out.push(byte);
                at += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                at += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The device's node id: `ember_` and its escaped name.
fn node(topics: &Topics) -> String {
    format!("ember_{}", object_id(topics.device()))
}

/// The ids of the mapping before [`object_id`]: every character other than a letter, a
/// digit or `-` became `_` (one `_` for each character, whatever its length in bytes).
fn legacy_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The node this device had under the old mapping, when it is not its node now: a name
/// with any character other than a letter, a digit or `-` (`board.1`, `board_1` and
/// `board@1` were all `ember_board_1`). Its entities there, of every service, are stale
/// (ember announces under [`node`] only), but the node may hold other boards' too:
/// boards whose names differ only in those characters shared it, and one may still run
/// an older ember, and it may even be another board's node now (`a.2e1` had
/// `ember_a_2e1`, the node of `a.1` today). So only a config that names this board as
/// its device ([`announced_by`]) is cleared there.
fn legacy_node(topics: &Topics) -> Option<String> {
    let legacy = legacy_id(&format!("ember_{}", topics.device()));
    (legacy != node(topics)).then_some(legacy)
}

/// The discovery topics of this device's entities, whatever their service: subscribed
/// to after each connect to find retained entities of services ember no longer has,
/// under its node and under its old node, if it had another one (see [`legacy_node`]).
pub fn filters(topics: &Topics) -> Vec<String> {
    std::iter::once(node(topics))
        .chain(legacy_node(topics))
        .flat_map(|node| {
            [
                format!("homeassistant/switch/{node}/+/config"),
                format!("homeassistant/button/{node}/+/config"),
            ]
        })
        .collect()
}

/// Whether `topic` is a discovery topic under this device's old node (see
/// [`legacy_node`]): stale if this board announced it ([`announced_by`]).
pub fn legacy(topics: &Topics, topic: &str) -> bool {
    legacy_node(topics).is_some_and(|node| {
        under(topic, &node).is_some_and(|(component, _)| matches!(component, "switch" | "button"))
    })
}

/// The component and the object id of a discovery topic under `node`.
fn under<'a>(topic: &'a str, node: &str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix("homeassistant/")?;
    let (component, rest) = rest.split_once('/')?;
    let object = rest
        .strip_prefix(node)?
        .strip_prefix('/')?
        .strip_suffix("/config")?;
    (!object.contains('/')).then_some((component, object))
}

/// Whether a discovery config names this board as its device (`device.name`, in every
/// config ember has published).
pub fn announced_by(topics: &Topics, body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|config| config["device"]["name"].as_str() == Some(topics.device()))
}

/// What a discovery topic of this device's announces: `None` when it is not one (another
/// device's, or not discovery), `Some(None)` when it is under this device's node but no
/// service has that id now (an id of the old mapping, see [`object_id`]), else the
/// service whose entity it is.
pub fn discovered(topics: &Topics, topic: &str) -> Option<Option<String>> {
    let (component, object) = under(topic, &node(topics))?;
    match component {
        "switch" => Some(unescape(object)),
        "button" => Some(object.strip_suffix("_restart").and_then(unescape)),
        _ => None,
    }
}

/// An entity's unique id, which Home Assistant needs unique over every device:
/// `<node>_<object>` when the device's name is of letters, digits and `-` (its escape has
/// no `_`, so the first `_` after `ember_` ends it: the ids such boards always had), else
/// `<node>/<object>` (the ids of those boards changed with the escape anyway). A single
/// `_` after an escaped name with `_` in it could be read two ways: board `a` with
/// service `2e@x` and board `a.` with service `40x` would both be `ember_a_2e_40x`.
fn unique_id(topics: &Topics, node: &str, object: &str) -> String {
    let plain = topics
        .device()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain {
        format!("{node}_{object}")
    } else {
        format!("{node}/{object}")
    }
}

/// The (topic, retained payload) pairs announcing one service.
pub fn announce(topics: &Topics, service: &str) -> Vec<(String, Vec<u8>)> {
    let device = topics.device();
    let node = node(topics);
    let object = object_id(service);
    let unique = unique_id(topics, &node, &object);
    let device_block = json!({
        "identifiers": [node],
        "name": device,
        "manufacturer": "ember",
        "model": "ember init",
    });
    let availability = json!({
        "topic": topics.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
    });
    let switch = json!({
        "name": service,
        "unique_id": unique,
        "object_id": format!("{node}_{object}"),
        "command_topic": topics.service_cmd(service),
        "payload_on": "start",
        "payload_off": "stop",
        "state_topic": topics.state(service),
        "value_template": "{{ 'ON' if value_json.want == 'up' else 'OFF' }}",
        "state_on": "ON",
        "state_off": "OFF",
        "json_attributes_topic": topics.state(service),
        "availability": [availability],
        "device": device_block,
    });
    let button = json!({
        "name": format!("{service} restart"),
        "unique_id": format!("{unique}_restart"),
        "object_id": format!("{node}_{object}_restart"),
        "command_topic": topics.service_cmd(service),
        "payload_press": "restart",
        "availability": [availability],
        "device": device_block,
    });
    vec![
        (
            format!("homeassistant/switch/{node}/{object}/config"),
            serde_json::to_vec(&switch).unwrap_or_default(),
        ),
        (
            format!("homeassistant/button/{node}/{object}_restart/config"),
            serde_json::to_vec(&button).unwrap_or_default(),
        ),
    ]
}

/// Empty retained payloads remove a service's entities (after a reload removed it).
pub fn retract(topics: &Topics, service: &str) -> Vec<(String, Vec<u8>)> {
    let node = node(topics);
    let object = object_id(service);
    vec![
        (
            format!("homeassistant/switch/{node}/{object}/config"),
            Vec::new(),
        ),
        (
            format!("homeassistant/button/{node}/{object}_restart/config"),
            Vec::new(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_a_switch_and_a_button() {
        let topics = Topics::new("ember", "board.1", &[]);
        let pairs = announce(&topics, "web@2");
        assert_eq!(
            pairs[0].0,
            "homeassistant/switch/ember_board_2e1/web_402/config"
        );
        let switch: serde_json::Value = serde_json::from_slice(&pairs[0].1).unwrap();
        assert_eq!(switch["command_topic"], "ember/board.1/service/web@2/cmd");
        assert_eq!(switch["payload_on"], "start");
        assert_eq!(switch["availability"][0]["topic"], "ember/board.1/status");
        let button: serde_json::Value = serde_json::from_slice(&pairs[1].1).unwrap();
        assert_eq!(button["payload_press"], "restart");
        assert_eq!(retract(&topics, "web@2")[1].1, Vec::<u8>::new());
    }

    /// Found by review: `.`, `@` and `_` all became `_`, so worker_77 and worker@77 had
    /// one switch (starting one repointed the other's, stopping one deleted both), and
    /// boards board.1 and board_1 one node.
    #[test]
    fn ids_of_different_names_differ() {
        let names = [
            "worker_77",
            "worker@77",
            "worker.77",
            "worker77",
            "worker__77",
            "worker_5f77",
            "w_",
            "w__",
            "_w",
            "a-b",
            "a_2db",
            "board.1",
            "board_1",
            "board@1",
            "b\u{e9}",
        ];
        let ids: Vec<String> = names.iter().map(|n| object_id(n)).collect();
        for (i, a) in ids.iter().enumerate() {
            assert!(
                a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{a}"
            );
            assert_eq!(unescape(a).as_deref(), Some(names[i]), "{a} reads back");
            for (j, b) in ids.iter().enumerate() {
                assert!(i == j || a != b, "{} and {} share {a}", names[i], names[j]);
            }
        }
        // Names of letters, digits and - keep the ids they had.
        assert_eq!(object_id("web-2"), "web-2");
        assert_eq!(object_id("worker@77"), "worker_4077");
        assert_eq!(object_id("worker_77"), "worker__77");
        let one = announce(&Topics::new("ember", "b1", &[]), "worker_77");
        let other = announce(&Topics::new("ember", "b1", &[]), "worker@77");
        assert_ne!(one[0].0, other[0].0);
        assert_ne!(one[1].0, other[1].0);
        let dot = announce(&Topics::new("ember", "board.1", &[]), "web");
        let underscore = announce(&Topics::new("ember", "board_1", &[]), "web");
        assert_ne!(dot[0].0, underscore[0].0);
        // Unique ids over boards: each (board, service) its own, and the ids boards with
        // plain names always had.
        let pairs = [
            ("a", "2e@x"),
            ("a.", "40x"),
            ("a", "_b"),
            ("a_", "b"),
            ("a", "b"),
            ("a-b", "c"),
            ("a", "b-c"),
        ];
        let mut unique = std::collections::BTreeSet::new();
        for (device, service) in pairs {
            for (_, body) in announce(&Topics::new("ember", device, &[]), service) {
                let entity: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let id = entity["unique_id"].as_str().unwrap().to_owned();
                assert!(unique.insert(id.clone()), "{device} {service}: {id} twice");
            }
        }
        assert!(unique.contains("ember_a_b") && unique.contains("ember_a_b_restart"));
        assert!(unique.contains("ember_a-b_c"));
        // What no name maps to.
        for id in ["_", "a_", "a_4", "a_41", "a_2D", "a_5f", "a.b", "a__"] {
            assert!(
                unescape(id).is_none() || object_id(&unescape(id).unwrap()) == id,
                "{id}"
            );
        }
        assert_eq!(unescape("a__"), Some("a_".into()));
        assert_eq!(unescape("a_41"), None, "A is never escaped");
    }

    /// What the sweep after a connect reads from a retained discovery topic.
    #[test]
    fn discovery_topics_read_back() {
        let topics = Topics::new("ember", "board.1", &[]);
        for service in ["web", "worker@77", "worker_77", "a_restart"] {
            for (topic, _) in announce(&topics, service) {
                assert_eq!(
                    discovered(&topics, &topic),
                    Some(Some(service.into())),
                    "{topic}"
                );
            }
        }
        let node = "homeassistant/switch/ember_board_2e1";
        // An id of the old mapping: this device's, of no service now.
        assert_eq!(
            discovered(&topics, &format!("{node}/worker_77/config")),
            Some(None)
        );
        assert_eq!(
            discovered(&topics, "homeassistant/button/ember_board_2e1/web/config"),
            Some(None),
            "a button's id ends in _restart"
        );
        // Not this device's.
        assert_eq!(
            discovered(&topics, "homeassistant/switch/ember_board_1/web/config"),
            None
        );
        assert_eq!(
            discovered(&topics, "homeassistant/light/ember_board_2e1/web/config"),
            None
        );
        assert_eq!(discovered(&topics, &format!("{node}/web/x/config")), None);
        assert_eq!(
            filters(&topics),
            [
                "homeassistant/switch/ember_board_2e1/+/config",
                "homeassistant/button/ember_board_2e1/+/config",
                "homeassistant/switch/ember_board_1/+/config",
                "homeassistant/button/ember_board_1/+/config"
            ]
        );
    }

    /// The topics an ember of the old mapping announced a service under (its
    /// `announce`, as it was).
    fn announced_before(device: &str, service: &str) -> [String; 2] {
        let node = legacy_id(&format!("ember_{device}"));
        let object = legacy_id(service);
        [
            format!("homeassistant/switch/{node}/{object}/config"),
            format!("homeassistant/button/{node}/{object}_restart/config"),
        ]
    }

    /// Found by review: a board whose name the escape changes got a new node, and the
    /// sweep read that one only, so whatever the board had announced under its old node
    /// stayed. Every character the escape changes, in the board's name and in the
    /// services': what the old mapping announced is found again, and only what names
    /// this board is taken.
    #[test]
    fn the_old_node_of_a_board_is_swept_for_its_own_entities() {
        for device in [
            "b_1", "b.1", "b@1", "b 1", "b\u{e9}1", "b:1", "b__1", "_b", "b.",
        ] {
            let topics = Topics::new("ember", device, &[]);
            let old = legacy_node(&topics).expect(device);
            assert_ne!(old, node(&topics), "{device}");
            assert_eq!(filters(&topics).len(), 4, "{device}");
            let body = serde_json::json!({"device": {"name": device}}).to_string();
            for service in ["web", "web_1", "web.1", "web@1", "web-1"] {
                for topic in announced_before(device, service) {
                    assert!(legacy(&topics, &topic), "{device} {service}: {topic}");
                    assert_eq!(discovered(&topics, &topic), None, "{topic}");
                }
                // Today's topics are not the old node's.
                for (topic, _) in announce(&topics, service) {
                    assert!(!legacy(&topics, &topic), "{topic}");
                }
            }
            assert!(announced_by(&topics, body.as_bytes()));
            let other = serde_json::json!({"device": {"name": "b-other"}}).to_string();
            assert!(!announced_by(&topics, other.as_bytes()));
            assert!(!announced_by(&topics, b"not json"));
            assert!(!announced_by(&topics, b""));
            assert!(!legacy(
                &topics,
                &format!("homeassistant/light/{old}/web/config")
            ));
            assert!(!legacy(
                &topics,
                &format!("homeassistant/switch/{old}/a/b/config")
            ));
            assert!(!legacy(
                &topics,
                &format!("homeassistant/switch/{old}x/web/config")
            ));
        }
        // Names of letters, digits and - kept their node: there is no other.
        for device in ["b1", "board-1", "B"] {
            let topics = Topics::new("ember", device, &[]);
            assert_eq!(legacy_node(&topics), None, "{device}");
            assert_eq!(filters(&topics).len(), 2);
            assert!(!legacy(&topics, &announced_before(device, "web@1")[0]));
        }
        // The old node of a.2e1 is the node of a.1 now: a.1's entities there name a.1.
        let old = Topics::new("ember", "a.2e1", &[]);
        let now = Topics::new("ember", "a.1", &[]);
        let (topic, body) = announce(&now, "web").remove(0);
        assert!(legacy(&old, &topic));
        assert!(!announced_by(&old, &body));
        assert!(announced_by(&now, &body));
    }
}
