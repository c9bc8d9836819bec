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
        ember_ipc::text::escape_controls(text).into_owned()
    } else {
        text.to_owned()
    }
}

/// JSON `text` as it may be printed: on a terminal, what [`escape`] escapes is written as
/// JSON's `\uXXXX` (the same JSON: JSON leaves DEL, the C1 controls and the direction
/// marks raw); piped, as it is.
pub fn escape_json(text: String) -> String {
    if stdout_is_terminal() {
        ember_ipc::text::escape_json_controls(&text).into_owned()
    } else {
        text
    }
}
