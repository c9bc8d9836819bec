//! ember-mqtt on its own: ember runs it with its settings on standard input; run by hand
//! without them, it says so and exits 2. (Building this test also builds the executable,
//! beside ember's, where ember and the integration tests of the workspace find it.)

use std::io::Write;
use std::process::{Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_ember-mqtt");

#[test]
fn without_settings_it_says_what_it_is_and_exits_2() {
    let out = Command::new(EXE)
        .stdin(Stdio::null())
        .output()
        .expect("run the adapter");
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no settings on standard input"), "{said}");
    let help = Command::new(EXE)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("ember starts it"));
}

#[test]
fn bad_settings_are_refused_with_the_field() {
    let mut child = Command::new(EXE)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the adapter");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"socket":"/nowhere","socket":"/twice"}"#)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
}
