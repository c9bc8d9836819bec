//! Text from elsewhere (a service's output, its sd_notify STATUS=, a failure reason) shown
//! on a terminal. A service may print escape sequences: raw, they would recolour, move the
//! cursor, retitle the window or worse on the admin's terminal. Printed to a terminal,
//! control characters are shown escaped (`\u{1b}[2J`); piped into a file or another
//! program, the text stays as the service wrote it.

use std::sync::OnceLock;

/// Whether standard output is a terminal (asked once).
pub fn stdout_is_terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| nix::unistd::isatty(std::io::stdout()).unwrap_or(false))
}

/// `text` as it may be printed: see the module's documentation.
pub fn escape(text: &str) -> String {
    if stdout_is_terminal() {
        escape_controls(text)
    } else {
        text.to_owned()
    }
}

/// Every control character but tab written as an escape: ESC as `\u{1b}`, CR as `\r`.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// C0 and C1 controls (C1's CSI, U+009B, starts a sequence on many terminals too).
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_is_kept() {
        assert_eq!(escape_controls("plain\ttext é"), "plain\ttext é");
        assert_eq!(escape_controls("\x1b[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(escape_controls("a\rb\u{9b}c\x07"), "a\\rb\\u{9b}c\\u{7}");
        assert_eq!(escape_controls("line\nnext"), "line\\nnext");
    }
}
