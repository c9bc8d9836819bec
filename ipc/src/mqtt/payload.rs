//! Command payloads and replies. A command is plain text (`restart`, trimmed, any case)
//! or JSON (`{"cmd":"restart","id":"abc","reply_to":"some/topic"}`); a reply is
//! `{"id":...,"ok":true}` or `{"id":...,"ok":false,"error":{"code":...,"message":...}}`.

use serde::Serialize;

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
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
            "list" => Verb::List,
            "reload" => Verb::Reload,
            "poweroff" => Verb::Poweroff,
            "reboot" => Verb::Reboot,
            _ => return None,
        })
    }

    pub fn is_service_verb(self) -> bool {
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
}

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
            .map(|verb| Request { verb, id: None, reply_to: None })
            .ok_or_else(|| refuse(format!("unknown command {:?}; send start, stop, restart, list, reload, poweroff or reboot", shorten(trimmed)), None, None));
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
        refuse(
            format!("malformed JSON ({e}); send e.g. {{\"cmd\":\"restart\",\"id\":\"1\"}}"),
            None,
            None,
        )
    })?;
    let id = value.get("id").cloned();
    let reply_to = match value.get("reply_to") {
        None => None,
        Some(serde_json::Value::String(t)) if valid_reply_topic(t) => Some(t.clone()),
        Some(_) => {
            return Err(refuse(
                "\"reply_to\" must be a topic name without wildcards".into(),
                id,
                None,
            ))
        }
    };
    let Some(object) = value.as_object() else {
        return Err(refuse(
            "a JSON command is an object such as {\"cmd\":\"restart\"}".into(),
            id,
            reply_to,
        ));
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "cmd" | "id" | "reply_to"))
    {
        return Err(refuse(
            format!(
                "unknown field \"{}\"; a command has cmd, id and reply_to",
                shorten(key)
            ),
            id,
            reply_to,
        ));
    }
    match object.get("cmd") {
        Some(serde_json::Value::String(word)) => match Verb::parse(word) {
            Some(verb) => Ok(Request { verb, id, reply_to }),
            None => Err(refuse(format!("unknown command {:?}; send start, stop, restart, list, reload, poweroff or reboot", shorten(word)), id, reply_to)),
        },
        _ => Err(refuse("missing \"cmd\": send e.g. {\"cmd\":\"restart\"}".into(), id, reply_to)),
    }
}

fn valid_reply_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 256 && !topic.contains(['+', '#', '\0'])
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
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
        assert!(decode(br#"{"id":1}"#)
            .unwrap_err()
            .message
            .contains("missing \"cmd\""));
        assert!(decode(br#"{"cmd":"start","reply_to":"a/#"}"#).is_err());
        assert!(decode(b"{not json")
            .unwrap_err()
            .message
            .contains("malformed JSON"));
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
