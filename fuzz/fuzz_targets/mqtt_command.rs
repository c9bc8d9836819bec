//! The MQTT command decoder: which of ember's topics a message arrived on (`Topics::route`)
//! and what its payload asks (`payload::decode`), plus the `allow` globs.
//!
//! Input: a first line `PREFIX DEVICE [GROUP...]` (the board's [mqtt] settings; skipped
//! when the configuration would refuse them), a second line with the topic, the payload
//! after it.
//!
//! Properties: no panic; a routed topic is exactly a command topic of this board or one
//! of its groups; every command topic routes back to its target and none of ember's own
//! topics (state, status, reply) routes anywhere; a decoded payload, encoded again as JSON
//! or as plain text, decodes to the same request; a refusal is well formed; replies are
//! JSON that read back; `glob_match` agrees with a plain recursive matcher.

#![no_main]

use libfuzzer_sys::fuzz_target;
use payload::{decode, Request, Verb, BAD_PAYLOAD};
use topics::{glob_match, Target, Topics, HOMEASSISTANT_STATUS};

// ember-ipc's own files, compiled here without the `mqtt` feature's dependencies (see
// Cargo.toml). They must stay pure: no `crate::` or `super::` paths.
#[allow(dead_code)]
#[path = "../../adapters/mqtt/src/payload.rs"]
mod payload;
#[allow(dead_code)]
#[path = "../../adapters/mqtt/src/topics.rs"]
mod topics;

const VERBS: [Verb; 9] = [
    Verb::Start,
    Verb::Stop,
    Verb::Restart,
    Verb::ResetFailed,
    Verb::Kill,
    Verb::List,
    Verb::Reload,
    Verb::Poweroff,
    Verb::Reboot,
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let settings = parts.next().unwrap_or_default();
    let topic = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    check_payload(body);
    let (Ok(settings), Ok(topic)) = (std::str::from_utf8(settings), std::str::from_utf8(topic))
    else {
        return;
    };
    let mut words = settings.split(' ');
    let prefix = words.next().unwrap_or_default();
    let device = words.next().unwrap_or_default();
    let groups: Vec<String> = words.map(str::to_owned).collect();
    // What `[system] device`, `[mqtt] prefix` and `groups` may be (config/mod.rs, mqtt.rs).
    let level = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
    if !level(prefix)
        || !level(device)
        || device.starts_with('$')
        || device == "group"
        || !groups.iter().all(|g| level(g))
    {
        return;
    }
    let topics = Topics::new(prefix, device, &groups);
    check_route(&topics, prefix, &groups, topic);
    if let Ok(pattern) = std::str::from_utf8(body) {
        check_glob(pattern, topic);
    }
});

fn check_route(topics: &Topics, prefix: &str, groups: &[String], topic: &str) {
    let device = topics.device();
    let system_topics: Vec<String> = std::iter::once(format!("{prefix}/{device}/cmd"))
        .chain(groups.iter().map(|g| format!("{prefix}/group/{g}/cmd")))
        .collect();
    let service_topics = |name: &str| -> Vec<String> {
        std::iter::once(topics.service_cmd(name))
            .chain(
                groups
                    .iter()
                    .map(|g| format!("{prefix}/group/{g}/service/{name}/cmd")),
            )
            .collect()
    };
    match topics.route(topic) {
        None => {}
        Some(Target::HomeAssistantStatus) => assert_eq!(topic, HOMEASSISTANT_STATUS),
        Some(Target::System) => assert!(system_topics.iter().any(|t| t == topic), "{topic}"),
        Some(Target::Service(name)) => {
            assert!(!name.is_empty() && !name.contains('/'), "{name:?}");
            assert!(
                service_topics(&name).iter().any(|t| t == topic),
                "{topic} -> {name}"
            );
        }
    }
    // Every command topic routes back to its target, whatever the names are.
    for t in &system_topics {
        if t != HOMEASSISTANT_STATUS {
            assert_eq!(topics.route(t), Some(Target::System), "{t}");
        }
    }
    // A name from the topic's last levels, so that the names vary with the input.
    let name = topic.rsplit('/').find(|l| !l.is_empty()).unwrap_or("web");
    for t in service_topics(name) {
        assert_eq!(
            topics.route(&t),
            Some(Target::Service(name.to_owned())),
            "{t}"
        );
    }
    // What ember publishes never comes back as a command.
    for own in [topics.state(name), topics.status(), topics.reply()] {
        if own != HOMEASSISTANT_STATUS {
            assert_eq!(topics.route(&own), None, "ember's own topic {own} routes");
        }
    }
}

fn check_payload(body: &[u8]) {
    match decode(body) {
        Ok(request) => {
            if let Some(t) = &request.reply_to {
                assert!(valid_reply_topic(t), "{t:?}");
            }
            // The same request as JSON, as a client would build it...
            let mut json = serde_json::json!({ "cmd": request.verb.word() });
            if let Some(id) = &request.id {
                json["id"] = id.clone();
            }
            if let Some(t) = &request.reply_to {
                json["reply_to"] = t.clone().into();
            }
            if let Some(within) = request.wait {
                assert!(request.verb.settles(), "{request:?}");
                assert!((1..=payload::MAX_WAIT_SECS).contains(&within.as_secs()));
                json["wait"] = true.into();
                json["timeout"] = within.as_secs().into();
            }
            if let Some(signal) = &request.signal {
                assert_eq!(request.verb, Verb::Kill, "{request:?}");
                json["signal"] = signal.clone().into();
            }
            let again = decode(json.to_string().as_bytes());
            assert_eq!(again.as_ref(), Ok(&request), "{json}");
            // ...and as plain text, when it has no id, reply_to, wait or signal.
            if request.id.is_none()
                && request.reply_to.is_none()
                && request.wait.is_none()
                && request.signal.is_none()
            {
                let plain = decode(request.verb.word().as_bytes());
                assert_eq!(plain, Ok(request.clone()));
            }
            let reply = payload::ok_reply::<()>(&request.id, None);
            let read: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
            assert_eq!(read["ok"], true);
            assert_eq!(read["id"], request.id.clone().unwrap_or_default());
        }
        Err(refusal) => {
            assert_eq!(refusal.code, BAD_PAYLOAD);
            if let Some(t) = &refusal.reply_to {
                assert!(valid_reply_topic(t), "{t:?}");
            }
            // An excerpt of the payload at most, not all of it.
            assert!(
                refusal.message.len() <= 512,
                "{} bytes",
                refusal.message.len()
            );
            let reply = payload::error_reply(&refusal.id, refusal.code, &refusal.message);
            let read: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
            assert_eq!(read["ok"], false);
            assert_eq!(read["error"]["code"], refusal.code);
            assert_eq!(read["error"]["message"], refusal.message.as_str());
            assert_eq!(read["id"], refusal.id.clone().unwrap_or_default());
        }
    }
    // Every verb's word decodes to it, whatever the case and the spaces around.
    if let Some(&first) = body.first() {
        let verb = VERBS[usize::from(first) % VERBS.len()];
        let word = format!(" {} \n", verb.word().to_ascii_uppercase());
        assert_eq!(decode(word.as_bytes()).map(|r: Request| r.verb), Ok(verb));
    }
}

fn valid_reply_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 256 && !topic.contains(['+', '#', '\0'])
}

/// Globs are short service names and patterns: keep the reference's work small.
fn check_glob(pattern: &str, text: &str) {
    if pattern.chars().count() > 64 || text.chars().count() > 64 {
        return;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    assert_eq!(
        glob_match(pattern, text),
        reference(&p, &t),
        "{pattern:?} {text:?}"
    );
    if !pattern.contains(['*', '?']) {
        assert_eq!(glob_match(pattern, text), pattern == text);
    }
    assert!(glob_match("*", text));
}

/// Matching by the definition, with memoisation so that stars stay polynomial.
fn reference(p: &[char], t: &[char]) -> bool {
    let mut memo = vec![vec![None; t.len() + 1]; p.len() + 1];
    fn go(p: &[char], t: &[char], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(known) = memo[i][j] {
            return known;
        }
        let result = match p.get(i) {
            None => j == t.len(),
            Some('*') => go(p, t, i + 1, j, memo) || (j < t.len() && go(p, t, i, j + 1, memo)),
            Some('?') => j < t.len() && go(p, t, i + 1, j + 1, memo),
            Some(c) => t.get(j) == Some(c) && go(p, t, i + 1, j + 1, memo),
        };
        memo[i][j] = Some(result);
        result
    }
    go(p, t, 0, 0, &mut memo)
}
