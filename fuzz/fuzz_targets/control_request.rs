//! The control socket's request decoder: one line (what the server reads up to '\n',
//! at most MAX_REQUEST bytes) -> a command and its options, or an error reply.
//!
//! Properties: no panic; a decoded request, encoded again as JSON (as `ember ctl` would
//! send it), decodes to the same command and options; a refused one gets an error reply
//! of the kinds a bad request may get, which is one line of JSON that reads back the same.

#![no_main]

use ember_ipc::socket::{decode_request, RequestOptions, MAX_REQUEST};
use ember_ipc::{Command, ErrorKind, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server splits on '\n' and bounds the length: a line never holds either.
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() > MAX_REQUEST {
        return;
    }
    match decode_request(line) {
        Ok((command, options)) => round_trip(&command, &options),
        Err(reply) => {
            let Reply::Error(error) = &reply else {
                panic!("a refused request gets an error reply, not {reply:?}");
            };
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

fn round_trip(command: &Command, options: &RequestOptions) {
    let mut request = serde_json::to_value(command).expect("a command encodes");
    let object = request.as_object_mut().expect("a command is an object");
    assert_eq!(
        object.get("cmd").and_then(|c| c.as_str()),
        Some(command.verb())
    );
    // As `ember ctl` sends them: the options always present, true or false.
    object.insert("wait".into(), options.wait.into());
    object.insert("follow".into(), options.follow.into());
    let line = serde_json::to_vec(&request).expect("a request encodes");
    assert!(!line.contains(&b'\n'));
    match decode_request(&line) {
        Ok((c, o)) => {
            assert_eq!(&c, command);
            assert_eq!(&o, options);
        }
        Err(reply) => {
            panic!("{command:?} {options:?} re-encoded as {request} is refused: {reply:?}")
        }
    }
    if !options.wait && !options.follow {
        // And without the options at all: the command alone.
        let line = serde_json::to_vec(command).expect("a command encodes");
        let (c, o) = decode_request(&line).expect("the command alone decodes");
        assert_eq!(&c, command);
        assert_eq!(o, RequestOptions::default());
    }
}
