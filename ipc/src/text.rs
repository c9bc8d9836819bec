//! Text from outside (a service's output, an MQTT payload, a D-Bus caller's string) shown
//! where a control character would do harm: a newline in a log line forges a record of
//! its own, an escape sequence on a terminal recolours it, moves the cursor, retitles the
//! window or worse; a bidirectional override shows the text after it backwards, so that a
//! status reads as another (the "Trojan Source" characters). One rule for every place
//! that shows such text: ember's log, an adapter's, `ember ctl` and `ember fleet` on a
//! terminal.

use std::borrow::Cow;

/// `text` with every control character but tab written as Rust writes it in a string
/// literal: newline as `\n`, CR as `\r`, ESC as `\u{1b}`. C1 controls count too (U+009B,
/// CSI, starts a sequence on many terminals), and so do the characters that change the
/// direction text is shown in and the line and paragraph separators (a new line to some
/// viewers). Borrowed when there is none, which is the common case.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A name quoted back in an error, shortened: a name is at most 64 characters, and one
/// of 100 KB (a client's, or a pattern's) made the error 100 KB, which no one reads.
pub fn shortened(name: &str) -> Cow<'_, str> {
    const SHOWN: usize = 64;
    if name.chars().nth(SHOWN + 16).is_none() {
        return Cow::Borrowed(name);
    }
    match name.char_indices().nth(SHOWN) {
        None => Cow::Borrowed(name),
        Some((end, _)) => Cow::Owned(format!("{}... ({} bytes)", &name[..end], name.len())),
    }
}

/// JSON `text` with what [`escape_controls`] escapes written as JSON's `\uXXXX`: the
/// same JSON, nothing raw for a terminal to act on. JSON already escapes the controls
/// below U+0020 inside strings, and has no other place for them but the whitespace
/// between tokens (kept); DEL, the C1 controls and the direction marks it leaves raw.
pub fn escape_json_controls(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| is_unsafe(c) && !c.is_ascii_whitespace();
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            // Every such character is in the Basic Multilingual Plane: one \uXXXX.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t') || reorders_or_breaks(c)
}

/// The bidirectional marks, embeddings, overrides and isolates (what rustc's
/// `text_direction_codepoint_in_literal` lint names, and the marks ALM, LRM and RLM), and
/// U+2028/U+2029, the line and paragraph separators.
fn reorders_or_breaks(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_is_kept() {
        assert!(matches!(
            escape_controls("plain\ttext é \\n"),
            Cow::Borrowed("plain\ttext é \\n")
        ));
        assert_eq!(escape_controls("\x1b[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(escape_controls("a\rb\u{9b}c\x07"), "a\\rb\\u{9b}c\\u{7}");
        assert_eq!(escape_controls("line\nnext\0"), "line\\nnext\\u{0}");
        assert_eq!(escape_controls("\u{7f}"), "\\u{7f}");
    }

    #[test]
    fn what_reorders_or_breaks_a_line_is_escaped() {
        // Shown as "failed" reversed after the override: a status that reads otherwise.
        assert_eq!(escape_controls("ok \u{202e}deliaf"), "ok \\u{202e}deliaf");
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}', '\u{202a}', '\u{2066}',
            '\u{2069}',
        ] {
            let text = format!("a{c}b");
            assert_eq!(escape_controls(&text), format!("a\\u{{{:x}}}b", c as u32));
        }
        // Other letters of right-to-left scripts are text, and stay as they are.
        assert!(matches!(escape_controls("שלום مرحبا"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_meaning_with_controls_escaped() {
        let value = serde_json::json!({"line": "a\u{9b}b\u{202e}c\u{7f}d\u{1b}e\nf"});
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let escaped = escape_json_controls(&pretty);
        assert!(
            !escaped.contains(['\u{9b}', '\u{202e}', '\u{7f}', '\u{1b}']),
            "{escaped}"
        );
        assert!(
            escaped.contains('\n'),
            "the whitespace between tokens stays"
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
        assert!(matches!(
            escape_json_controls("{\"a\":\"é\"}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(shortened("web"), "web");
        // Just too long for a name: shown whole, to see what is wrong with it.
        assert_eq!(shortened(&"x".repeat(65)), "x".repeat(65));
        let long = "é".repeat(100);
        assert_eq!(
            shortened(&long),
            format!("{}... (200 bytes)", "é".repeat(64))
        );
    }
}
