//! Object paths for services: systemd's bus-label escaping (`bus_label_escape`), so
//! `web@1.x-y` lives at `/io/ember/Init1/service/web_401_2ex_2dy`.

/// The manager's object, and the parent of every service's.
pub const MANAGER_PATH: &str = "/io/ember/Init1";
const SERVICE_PREFIX: &str = "/io/ember/Init1/service/";

/// One path element from any name: bytes outside [A-Za-z0-9] become `_` and two
/// lowercase hex digits; a leading digit is escaped too; the empty name is `_`.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len() * 3);
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The name back from a path element; `None` when it is not one [`escape`] makes, so
/// that a name has one path and a path one name (not `_2D`, `_+f`, `1st`, `_61` or "").
pub fn unescape(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i].is_ascii_alphanumeric() {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (escape(&name) == label).then_some(name)
}

/// The object path of a service.
pub fn service_path(name: &str) -> String {
    format!("{SERVICE_PREFIX}{}", escape(name))
}

/// The service name of an object path, if it is a service's.
pub fn service_name(path: &str) -> Option<String> {
    unescape(path.strip_prefix(SERVICE_PREFIX)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("web@1.x-y"), "web_401_2ex_2dy");
        assert_eq!(escape("getty@tty1"), "getty_40tty1");
        assert_eq!(escape("1st"), "_31st");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_eq!(escape(""), "_");
        assert_eq!(escape("é"), "_c3_a9");
        assert_eq!(service_path("db"), "/io/ember/Init1/service/db");
    }

    #[test]
    fn round_trips() {
        for name in [
            "web",
            "web@1.x-y",
            "1st",
            "a_b",
            "",
            "é-ü",
            "x y/z",
            "__",
            "9",
        ] {
            assert_eq!(unescape(&escape(name)).as_deref(), Some(name), "{name}");
            assert_eq!(service_name(&service_path(name)).as_deref(), Some(name));
        }
        assert_eq!(unescape("_zz"), None);
        assert_eq!(unescape("_4"), None);
        assert_eq!(unescape("a-b"), None);
        assert_eq!(service_name("/io/ember/Init1"), None);
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/dbus_label.rs): one service, one path.
    #[test]
    fn only_what_escape_makes_is_read_back() {
        for label in ["", "_2D", "_2E", "_+f", "_-0", "1st", "_61", "a_5Fb", "_3"] {
            assert_eq!(unescape(label), None, "{label:?}");
        }
        assert_eq!(service_name("/io/ember/Init1/service/"), None);
        assert_eq!(service_name("/io/ember/Init1/service/_77eb"), None);
        assert_eq!(unescape("_31st").as_deref(), Some("1st"));
        assert_eq!(unescape("a_5fb").as_deref(), Some("a_b"));
    }
}
