//! The D-Bus object-path escaping of service names (systemd's bus_label_escape).
//!
//! Properties, for any name: the escaped label is a valid object-path element (checked
//! with zbus's own ObjectPath parser), unescapes to the name, and the service's path maps
//! back to it; for any label: `unescape` accepts only what `escape` makes, so one service
//! has one path and one path one service.

#![no_main]

use ember_ipc::dbus::label::{escape, service_name, service_path, unescape, MANAGER_PATH};
use libfuzzer_sys::fuzz_target;
use zbus::ObjectPath;

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
    assert!(ObjectPath::try_from(path.as_str()).is_ok(), "{path:?}");
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
