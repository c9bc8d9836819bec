//! Command payloads and replies. A command is plain text (`restart`, trimmed, any case)
//! or JSON (`{"cmd":"restart","id":"abc","reply_to":"some/topic"}`); a reply is
//! `{"id":...,"ok":true}` or `{"id":...,"ok":false,"error":{"code":...,"message":...}}`.
//! A start, stop or restart with `"wait":true` (and optionally `"timeout"`, whole
//! seconds) is answered once the core says the service has settled: up (a new run, for
//! a restart) or down; or failed, with the reason; or not within the timeout.

use serde::{Deserialize, Serialize};

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    /// Forget the service's failures (systemd's reset-failed).
    ResetFailed,
    /// A signal to the service's processes (systemctl kill).
    Kill,
    List,
    Reload,
    Poweroff,
    Reboot,
}

impl Verb {
    fn parse(word: &str) -> Option<Verb> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "restart" => Verb::Restart,
            "reset-failed" | "reset_failed" => Verb::ResetFailed,
            "kill" => Verb::Kill,
            "list" => Verb::List,
            "reload" => Verb::Reload,
            "poweroff" => Verb::Poweroff,
            "reboot" => Verb::Reboot,
            _ => return None,
        })
    }

    pub fn is_service_verb(self) -> bool {
        matches!(
            self,
            Verb::Start | Verb::Stop | Verb::Restart | Verb::ResetFailed | Verb::Kill
        )
    }

    /// Has a state to wait for (`"wait":true`): up or down.
    pub fn settles(self) -> bool {
        matches!(self, Verb::Start | Verb::Stop | Verb::Restart)
    }

    /// Changes the whole system: only with `allow_system`.
    pub fn is_system_change(self) -> bool {
        matches!(self, Verb::Reload | Verb::Poweroff | Verb::Reboot)
    }

    pub fn word(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::ResetFailed => "reset-failed",
            Verb::Kill => "kill",
            Verb::List => "list",
            Verb::Reload => "reload",
            Verb::Poweroff => "poweroff",
            Verb::Reboot => "reboot",
        }
    }
}

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub id: Option<serde_json::Value>,
    pub reply_to: Option<String>,
    /// `"wait":true`: answer once settled, waiting at most this long.
    pub wait: Option<std::time::Duration>,
    /// A kill's `"signal"` (ember reads it: "SIGHUP", "HUP" or a number); SIGTERM when
    /// not given.
    pub signal: Option<String>,
}

/// How long a `wait` waits when the command does not say.
pub const DEFAULT_WAIT_SECS: u64 = 30;
/// The longest `timeout` a `wait` takes: a waiting command holds one of the commands
/// that may execute at once.
pub const MAX_WAIT_SECS: u64 = 3600;

/// Why a command was refused, with the id to answer to when one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub id: Option<serde_json::Value>,
    pub reply_to: Option<String>,
}

pub const BAD_PAYLOAD: &str = "bad-payload";
pub const UNKNOWN_SERVICE: &str = "unknown-service";
pub const NOT_ALLOWED: &str = "not-allowed";
pub const BUSY: &str = "busy";
/// A `wait` that ended before the service settled.
pub const TIMEOUT: &str = "timeout";
/// A `wait` whose service failed (the message says why).
pub const FAILED: &str = "failed";
/// A reload whose new configuration ember refused.
pub const INVALID_CONFIG: &str = "invalid-config";
/// A reply that does not fit in one message: `list` with about 1,000 allowed services, or
/// any reply over the broker's Maximum Packet Size (the README says what to do).
pub const TOO_LARGE: &str = "too-large";

/// The strict JSON reader that every input of ember goes through (a key given twice is
/// refused at any depth, a value of the wrong type names its field).
use ember_ipc::json as strict;

/// The fields of a JSON command, typed: what a wrong type is reported against.
#[derive(Deserialize)]
struct Fields {
    cmd: String,
    /// Any JSON value; it is read (and kept as sent) before the fields are typed.
    #[serde(default)]
    #[allow(dead_code)]
    id: serde::de::IgnoredAny,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "ember_ipc::signal_field::read_option")]
    signal: Option<String>,
}

/// Decodes a payload.
pub fn decode(payload: &[u8]) -> Result<Request, Refusal> {
    let refuse = |message: String, id, reply_to| Refusal {
        code: BAD_PAYLOAD,
        message,
        id,
        reply_to,
    };
    let text = std::str::from_utf8(payload)
        .map_err(|_| refuse("the payload is not UTF-8 text".into(), None, None))?;
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Verb::parse(trimmed)
            .map(|verb| Request { verb, id: None, reply_to: None, wait: None, signal: None })
            .ok_or_else(|| refuse(format!("unknown command {:?}; send start, stop, restart, kill, reset-failed, list, reload, poweroff or reboot", shorten(trimmed)), None, None));
    }
    // One reading of the JSON: with a key given twice, which one counts would depend on
    // the reader (`{"cmd":"restart","cmd":"stop"}`), so nothing is read from it at all.
    let value = strict::parse(trimmed.as_bytes()).map_err(|e| {
        refuse(
            format!(
                "malformed JSON ({}); send e.g. {{\"cmd\":\"restart\",\"id\":\"1\"}}",
                shorten_message(&e)
            ),
            None,
            None,
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(refuse(
            "a JSON command is an object such as {\"cmd\":\"restart\"}".into(),
            None,
            None,
        ));
    };
    // The id and a usable reply_to first: a refusal still reaches its sender with its id.
    let id = object.get("id").cloned();
    let reply_to = match object.get("reply_to") {
        None => None,
        Some(serde_json::Value::String(t)) if valid_reply_topic(t) => Some(t.clone()),
        Some(serde_json::Value::String(_)) => {
            return Err(refuse(
                "\"reply_to\" must be a topic name without wildcards".into(),
                id,
                None,
            ))
        }
        Some(_) => None, // a wrong type: reported below, naming the field
    };
    if let Some(key) = object.keys().find(|k| {
        !matches!(
            k.as_str(),
            "cmd" | "id" | "reply_to" | "wait" | "timeout" | "signal"
        )
    }) {
        return Err(refuse(
            format!(
                "unknown field \"{}\"; a command has cmd, id, reply_to, wait, timeout and (a kill) signal",
                shorten(key)
            ),
            id,
            reply_to,
        ));
    }
    let fields: Fields = strict::from_value(value).map_err(|e| {
        refuse(
            format!("{}; send e.g. {{\"cmd\":\"restart\"}}", shorten_message(&e)),
            id.clone(),
            reply_to.clone(),
        )
    })?;
    match Verb::parse(&fields.cmd) {
        Some(verb) => {
            let wait = match (fields.wait, fields.timeout) {
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(refuse(
                        "\"timeout\" goes with \"wait\":true".into(),
                        id,
                        fields.reply_to,
                    ))
                }
                (true, _) if !verb.settles() => {
                    return Err(refuse(
                        format!(
                            "\"wait\" goes with start, stop and restart, not {}",
                            verb.word()
                        ),
                        id,
                        fields.reply_to,
                    ))
                }
                (true, Some(secs)) if secs == 0 || secs > MAX_WAIT_SECS => {
                    return Err(refuse(
                        format!(
                            "\"timeout\" is whole seconds from 1 to {MAX_WAIT_SECS}; got {secs}"
                        ),
                        id,
                        fields.reply_to,
                    ))
                }
                (true, secs) => Some(std::time::Duration::from_secs(
                    secs.unwrap_or(DEFAULT_WAIT_SECS),
                )),
            };
            if fields.signal.is_some() && verb != Verb::Kill {
                return Err(refuse(
                    format!("\"signal\" goes with kill, not {}", verb.word()),
                    id,
                    fields.reply_to,
                ));
            }
            Ok(Request {
                verb,
                id,
                reply_to: fields.reply_to,
                wait,
                signal: fields.signal.map(|s| shorten(&s)),
            })
        }
        None => Err(refuse(
            format!(
                "unknown command {:?}; send start, stop, restart, kill, reset-failed, list, reload, poweroff or reboot",
                shorten(&fields.cmd)
            ),
            id,
            reply_to,
        )),
    }
}

fn valid_reply_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 256 && !topic.contains(['+', '#', '\0'])
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A reader's message, cut to at most 300 bytes: it may quote the payload.
fn shorten_message(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 297;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[derive(Debug, Serialize)]
struct ReplyError<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Debug, Serialize)]
struct Reply<'a, T: Serialize> {
    id: &'a Option<serde_json::Value>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ReplyError<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
}

/// `{"id":...,"ok":true}` with an optional result.
pub fn ok_reply<T: Serialize>(id: &Option<serde_json::Value>, result: Option<T>) -> Vec<u8> {
    serde_json::to_vec(&Reply {
        id,
        ok: true,
        error: None,
        result,
    })
    .unwrap_or_default()
}

/// `{"id":...,"ok":false,"error":{"code":...,"message":...}}`.
pub fn error_reply(id: &Option<serde_json::Value>, code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Reply::<()> {
        id,
        ok: false,
        error: Some(ReplyError { code, message }),
        result: None,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply code the adapter sends is in the README's MQTT section, with what it
    /// means (found by review: `list` with ~1,000 allowed services answered `too-large`,
    /// which the README did not mention).
    #[test]
    fn the_readme_names_every_reply_code() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let section = readme
            .split("\n### MQTT\n")
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .expect("the MQTT section");
        for code in [
            BAD_PAYLOAD,
            UNKNOWN_SERVICE,
            NOT_ALLOWED,
            BUSY,
            TIMEOUT,
            FAILED,
            INVALID_CONFIG,
            TOO_LARGE,
        ] {
            assert!(
                section.contains(&format!("`{code}`")),
                "the README's MQTT section lacks `{code}`"
            );
        }
    }

    #[test]
    fn plain_text_commands() {
        assert_eq!(decode(b"  Restart \n").unwrap().verb, Verb::Restart);
        assert_eq!(decode(b"STOP").unwrap().verb, Verb::Stop);
        let r = decode(b"explode").unwrap_err();
        assert_eq!(r.code, BAD_PAYLOAD);
        assert!(
            r.message.contains("unknown command \"explode\""),
            "{}",
            r.message
        );
        assert_eq!(decode(&[0xff, 0xfe]).unwrap_err().code, BAD_PAYLOAD);
    }

    #[test]
    fn json_commands() {
        let r = decode(br#"{"cmd":"restart","id":"abc","reply_to":"me/replies"}"#).unwrap();
        assert_eq!(r.verb, Verb::Restart);
        assert_eq!(r.id, Some(serde_json::json!("abc")));
        assert_eq!(r.reply_to.as_deref(), Some("me/replies"));
        let e = decode(br#"{"cmd":"fly","id":7}"#).unwrap_err();
        assert_eq!(
            e.id,
            Some(serde_json::json!(7)),
            "the id is kept for the reply"
        );
        assert!(decode(br#"{"cmd":"start","x":1}"#)
            .unwrap_err()
            .message
            .contains("unknown field"));
        let e = decode(br#"{"id":1}"#).unwrap_err();
        assert!(
            e.message.starts_with("missing field `cmd`"),
            "{}",
            e.message
        );
        assert_eq!(e.id, Some(serde_json::json!(1)));
        assert!(decode(br#"{"cmd":"start","reply_to":"a/#"}"#).is_err());
        assert!(decode(b"{not json")
            .unwrap_err()
            .message
            .contains("malformed JSON"));
    }

    /// Issue 12: `{"cmd":"restart","cmd":"stop"}` stopped the service (serde_json keeps
    /// the last of two equal keys). A key given twice, at any depth, refuses the command.
    #[test]
    fn a_key_given_twice_refuses_the_command() {
        for text in [
            r#"{"cmd":"restart","cmd":"stop"}"#,
            r#"{"cmd":"stop","id":1,"id":2}"#,
            r#"{"cmd":"stop","reply_to":"a/b","reply_to":"c/d"}"#,
            r#"{"cmd":"stop","id":{"a":1,"a":2}}"#,
            r#"{"cmd":"stop","id":[{"a":1},{"b":1,"b":2}]}"#,
            r#"{"cmd":"restart","\u0063md":"stop"}"#,
        ] {
            let e = decode(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, BAD_PAYLOAD, "{text}");
            assert!(e.message.contains("given twice"), "{text}: {}", e.message);
            assert_eq!(e.id, None, "{text}: which id would it be?");
            assert_eq!(e.reply_to, None, "{text}");
        }
    }

    /// Issue 12: `{"cmd":5}` said "missing cmd". A wrong type names the field and the type
    /// it must have, for every field; the id still comes back when it could be read.
    #[test]
    fn a_wrong_type_names_the_field_and_its_type() {
        for (text, field, got) in [
            (r#"{"cmd":5,"id":"w1"}"#, "cmd", "integer `5`"),
            (r#"{"cmd":["stop"],"id":"w1"}"#, "cmd", ""),
            (r#"{"cmd":null,"id":"w1"}"#, "cmd", "null"),
            (r#"{"cmd":{"a":1},"id":"w1"}"#, "cmd", ""),
            (
                r#"{"cmd":"stop","reply_to":5,"id":"w1"}"#,
                "reply_to",
                "integer `5`",
            ),
            (
                r#"{"cmd":"stop","reply_to":true,"id":"w1"}"#,
                "reply_to",
                "boolean `true`",
            ),
        ] {
            let e = decode(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, BAD_PAYLOAD, "{text}");
            let expect = format!("\"{field}\": invalid type: {got}");
            assert!(e.message.starts_with(&expect), "{text}: {}", e.message);
            assert!(
                e.message.contains("expected a string"),
                "{text}: {}",
                e.message
            );
            assert_eq!(e.id, Some(serde_json::json!("w1")), "{text}");
        }
        // Any JSON value is an id.
        for id in ["null", "7", "\"x\"", "[1,2]", "{\"a\":{\"b\":1}}", "true"] {
            let text = format!(r#"{{"cmd":"stop","id":{id}}}"#);
            let r = decode(text.as_bytes()).unwrap();
            assert_eq!(r.id.map(|v| v.to_string()).as_deref(), Some(id), "{text}");
        }
    }

    /// A refusal's message stays short, whatever the payload quotes.
    #[test]
    fn refusals_stay_short() {
        let long = format!(r#"{{"cmd":"{}"}}"#, "é".repeat(5000));
        assert!(decode(long.as_bytes()).unwrap_err().message.len() <= 512);
        let long = format!(r#"{{"cmd":"stop","{}":1}}"#, "k".repeat(5000));
        assert!(decode(long.as_bytes()).unwrap_err().message.len() <= 512);
        let long = format!(r#"{{"cmd":"stop" {}"#, "€".repeat(5000));
        assert!(decode(long.as_bytes()).unwrap_err().message.len() <= 512);
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/mqtt_command.rs): serde_json's default float
    /// parsing is not correctly rounded, so a numeric id that is not an integer of 64 bits
    /// could come back as another number than the one sent: one in ten ids made with
    /// JavaScript's Math.random(), such as 0.9856906946328695.
    #[test]
    fn a_float_id_comes_back_as_sent() {
        for (text, sent) in [
            ("55555555500001440578463", 55555555500001440578463.0),
            (
                "428888888888888888888888888888888888888888888.888888",
                428888888888888888888888888888888888888888888.888888,
            ),
            ("0.30000000000000004", 0.30000000000000004),
            ("0.9856906946328695", 0.9856906946328695),
        ] {
            let payload = format!(r#"{{"cmd":"stop","id":{text}}}"#);
            let id = decode(payload.as_bytes()).unwrap().id;
            assert_eq!(id.as_ref().and_then(|v| v.as_f64()), Some(sent), "{text}");
            let reply: serde_json::Value =
                serde_json::from_slice(&ok_reply::<()>(&id, None)).unwrap();
            assert_eq!(Some(&reply["id"]), id.as_ref(), "{text}");
        }
    }

    #[test]
    fn wait_and_timeout() {
        // A kill's signal as a name or as JSON's number (found by a hostile review:
        // `"signal":9` was a bad-payload, "expected a string").
        let r = decode(br#"{"cmd":"kill","signal":9}"#).unwrap();
        assert_eq!(r.signal.as_deref(), Some("9"));
        let r = decode(br#"{"cmd":"kill","signal":" HUP "}"#).unwrap();
        assert_eq!(r.signal.as_deref(), Some(" HUP "));
        assert_eq!(
            decode(br#"{"cmd":"kill","signal":null}"#).unwrap().signal,
            None
        );
        let e = decode(br#"{"cmd":"kill","signal":[9]}"#).unwrap_err();
        assert!(e.message.contains("a signal name"), "{e:?}");
        let r = decode(br#"{"cmd":"restart","id":1,"wait":true}"#).unwrap();
        assert_eq!(
            r.wait,
            Some(std::time::Duration::from_secs(DEFAULT_WAIT_SECS))
        );
        let r = decode(br#"{"cmd":"stop","wait":true,"timeout":5}"#).unwrap();
        assert_eq!(r.wait, Some(std::time::Duration::from_secs(5)));
        assert_eq!(
            decode(br#"{"cmd":"stop","wait":false}"#).unwrap().wait,
            None
        );
        for (text, says) in [
            (r#"{"cmd":"stop","timeout":5}"#, "goes with \"wait\":true"),
            (r#"{"cmd":"list","wait":true}"#, "not list"),
            (
                r#"{"cmd":"stop","wait":true,"timeout":0}"#,
                "from 1 to 3600",
            ),
            (
                r#"{"cmd":"stop","wait":true,"timeout":3601}"#,
                "from 1 to 3600",
            ),
            (
                r#"{"cmd":"stop","wait":true,"timeout":1.5}"#,
                "\"timeout\": invalid type",
            ),
            (r#"{"cmd":"stop","wait":"yes"}"#, "\"wait\": invalid type"),
        ] {
            let e = decode(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, BAD_PAYLOAD, "{text}");
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }

    #[test]
    fn replies() {
        let id = Some(serde_json::json!("abc"));
        assert_eq!(
            String::from_utf8(ok_reply::<()>(&id, None)).unwrap(),
            r#"{"id":"abc","ok":true}"#
        );
        assert_eq!(
            String::from_utf8(error_reply(&None, NOT_ALLOWED, "no")).unwrap(),
            r#"{"id":null,"ok":false,"error":{"code":"not-allowed","message":"no"}}"#
        );
    }
}
