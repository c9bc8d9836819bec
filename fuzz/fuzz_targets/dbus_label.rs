//! The D-Bus object-path escaping of service names (systemd's bus_label_escape).
//!
//! Properties, for any name: the escaped label is a valid object-path element, the
//! service's path a valid object path (by the D-Bus specification), the label unescapes
//! to the name and the path maps back to it; for any label: `unescape` accepts only what
//! `escape` makes, so one service has one path and one path one service.

#![no_main]

use label::{escape, service_name, service_path, unescape, MANAGER_PATH};
use libfuzzer_sys::fuzz_target;

// ember-ipc's own file, compiled here without the `dbus` feature's dependencies (see
// Cargo.toml). It must stay pure: no `crate::` or `super::` paths.
#[allow(dead_code)]
#[path = "../../adapters/dbus/src/label.rs"]
mod label;

/// The D-Bus specification's object path: "/", or "/" followed by elements of
/// [A-Za-z0-9_], each non-empty, separated by "/", no trailing "/".
fn valid_object_path(path: &str) -> bool {
    path == "/"
        || path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|element| {
                !element.is_empty()
                    && element
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
}

fuzz_target!(|data: &[u8]| {
    // Names are strings: the input as text, and as text again with invalid bytes replaced.
    let lossy = String::from_utf8_lossy(data);
    let name: &str = &lossy;

    let label = escape(name);
    assert!(!label.is_empty());
    assert!(
        label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{label:?}"
    );
    assert!(!label.as_bytes()[0].is_ascii_digit(), "{label:?}");
    assert_eq!(unescape(&label).as_deref(), Some(name), "{label:?}");
    let path = service_path(name);
    assert!(valid_object_path(&path), "{path:?}");
    assert!(path.starts_with(&format!("{MANAGER_PATH}/")));
    assert_eq!(service_name(&path).as_deref(), Some(name));

    // The input as a label (a path element a caller sent): only escape's own output is
    // read back, and then it is exactly the label escape makes.
    if let Ok(label) = std::str::from_utf8(data) {
        if let Some(name) = unescape(label) {
            assert_eq!(escape(&name), label, "{label:?} read as {name:?}");
        }
    }
});
