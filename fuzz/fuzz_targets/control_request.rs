//! The control socket's request decoder: one line (what the server reads up to '\n',
//! at most MAX_REQUEST bytes) -> a command, or an error reply.
//!
//! Properties: no panic; a decoded request, encoded again as JSON (as `ember ctl` sends
//! it, from the same types), decodes to the same command; a refused one gets an error
//! reply of the kinds a bad request may get, which is one line of JSON that reads back the
//! same; a line with a key given twice is never taken.

#![no_main]

use ember_ipc::socket::{decode_request, MAX_REQUEST};
use ember_ipc::{Command, ErrorKind, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server splits on '\n' and bounds the length: a line never holds either.
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() > MAX_REQUEST {
        return;
    }
    match decode_request(line) {
        Ok(ember_ipc::socket::Incoming { command, .. }) => {
            assert!(
                ember_ipc::json::parse(line).is_ok(),
                "taken, though not strict JSON (a key twice?)"
            );
            round_trip(&command)
        }
        Err(error) => {
            let reply = Reply::Error(error.clone());
            assert!(
                matches!(
                    error.kind,
                    ErrorKind::BadRequest | ErrorKind::UnknownCommand
                ),
                "{error:?}"
            );
            let wire = serde_json::to_vec(&reply).expect("a reply encodes");
            assert!(!wire.contains(&b'\n'), "one reply, one line");
            let back: Reply = serde_json::from_slice(&wire).expect("the client reads it");
            assert_eq!(back, reply);
        }
    }
});

fn round_trip(command: &Command) {
    let line = serde_json::to_vec(command).expect("a command encodes");
    assert!(!line.contains(&b'\n'));
    let request: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
    assert_eq!(
        request.get("cmd").and_then(|c| c.as_str()),
        Some(command.verb().word())
    );
    match decode_request(&line) {
        Ok(c) => assert_eq!(&c.command, command),
        Err(error) => panic!("{command:?} re-encoded as {request} is refused: {error:?}"),
    }
}
