//! Issue 13: the executable that runs as PID 1 carries no network parser. `ember` (with
//! every one of its features) must not depend on the MQTT client, TLS or D-Bus crates:
//! those live in the adapters, separate processes that ember supervises.

use std::process::Command;

/// Crates that parse what a network peer sends: never in PID 1.
const NETWORK_CRATES: [&str; 6] = [
    "rumqttc",
    "rustls",
    "ring",
    "zbus",
    "zvariant",
    "tokio-rustls",
];

fn dependencies(package: &str, features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(features)
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_init_links_no_network_parser() {
    for features in [&["--all-features"][..], &["--no-default-features"][..]] {
        let deps = dependencies("ember", features);
        assert!(
            deps.iter().any(|d| d == "tokio"),
            "cargo tree read nothing: {deps:?}"
        );
        let found: Vec<&String> = deps
            .iter()
            .filter(|d| NETWORK_CRATES.contains(&d.as_str()))
            .collect();
        assert!(found.is_empty(), "ember {features:?} depends on {found:?}");
    }
}

/// The check itself can fail: the MQTT adapter does carry them.
#[test]
fn the_mqtt_adapter_does_carry_them() {
    let deps = dependencies("ember-mqtt", &[]);
    assert!(deps.iter().any(|d| d == "rumqttc"), "{deps:?}");
    assert!(deps.iter().any(|d| d == "rustls"), "{deps:?}");
}
