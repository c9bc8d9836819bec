//! The local control socket: newline-delimited JSON over a Unix stream socket.
//!
//! A request is one JSON object per line, a [`Command`] plus two options the adapter
//! handles itself: `"wait": true` (reply once the named services have settled) and
//! `"follow": true` (for `logs`: keep streaming lines after the reply). Every request gets
//! exactly one reply line; a bad request gets an error reply and the connection stays
//! usable. Only root and the daemon's own uid may connect (checked with SO_PEERCRED).

use crate::protocol::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, Semaphore};

/// Longest request line accepted; longer ones get a `too_large` error.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// Binds the control socket: creates its directory, replaces a stale socket file, refuses
/// to steal the socket of a live daemon, and makes the socket mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; remove it or choose another [control] socket",
                    path.display()
                ),
            ));
        }
        if StdUnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another ember is already listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control socket until the listener fails. Each connection runs in its own task.
pub async fn serve(listener: UnixListener, control: Control) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let control = control.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, control, own_uid).await;
        });
    }
}

async fn serve_connection(stream: UnixStream, control: Control, own_uid: u32) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!("control socket: cannot read peer credentials: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    if uid != 0 && uid != own_uid {
        let reply = Reply::error(
            ErrorKind::AccessDenied,
            format!("uid {uid} may not control ember: only root and uid {own_uid} may; try sudo"),
        );
        let _ = write_line(&mut write, &reply).await;
        return;
    }
    let origin = format!("socket uid={uid}");
    let mut reader = AsyncBufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line).await {
            Ok(LineRead::Eof) => return,
            Ok(LineRead::TooLong) => {
                let reply = Reply::error(
                    ErrorKind::TooLarge,
                    format!(
                        "request longer than {MAX_REQUEST} bytes; send one JSON object per line"
                    ),
                );
                if write_line(&mut write, &reply).await.is_err() {
                    return;
                }
            }
            Ok(LineRead::Line) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let keep_going = handle_request(&line, &control, &origin, &mut write).await;
                if !keep_going {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line of at most [`MAX_REQUEST`] bytes; a longer one is consumed and reported.
async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<LineRead> {
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_REQUEST {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Options the adapter handles itself, taken off the request before it becomes a [`Command`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    pub wait: bool,
    pub follow: bool,
}

/// Decodes one request line into a command and the adapter's options, or a reply saying
/// precisely what is wrong with it.
pub fn decode_request(line: &[u8]) -> Result<(Command, RequestOptions), Reply> {
    let mut value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        Reply::error(
            ErrorKind::BadRequest,
            format!("malformed JSON ({e}); send one JSON object per line"),
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(Reply::error(
            ErrorKind::BadRequest,
            "a request is a JSON object such as {\"cmd\":\"status\"}",
        ));
    };
    let mut options = RequestOptions::default();
    for (key, slot) in [("wait", &mut options.wait), ("follow", &mut options.follow)] {
        match object.remove(key) {
            None => {}
            Some(serde_json::Value::Bool(b)) => *slot = b,
            Some(_) => {
                return Err(Reply::error(
                    ErrorKind::BadRequest,
                    format!("\"{key}\" must be true or false"),
                ));
            }
        }
    }
    let verb = match object.get("cmd") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(Reply::error(
                ErrorKind::BadRequest,
                "\"cmd\" must be a string",
            ))
        }
        None => {
            return Err(Reply::error(
                ErrorKind::BadRequest,
                "missing \"cmd\", e.g. {\"cmd\":\"status\"}",
            ))
        }
    };
    const VERBS: [&str; 9] = [
        "status", "start", "stop", "restart", "reload", "logs", "poweroff", "reboot", "halt",
    ];
    if !VERBS.contains(&verb.as_str()) {
        return Err(Reply::error(
            ErrorKind::UnknownCommand,
            format!(
                "unknown command \"{verb}\"; ember understands {}",
                VERBS.join(", ")
            ),
        ));
    }
    let command: Command = serde_json::from_value(value).map_err(|e| {
        Reply::error(
            ErrorKind::BadRequest,
            format!("bad \"{verb}\" request: {e}"),
        )
    })?;
    if options.follow && !matches!(command, Command::Logs { .. }) {
        return Err(Reply::error(
            ErrorKind::BadRequest,
            "\"follow\" applies to logs only",
        ));
    }
    if options.wait
        && !matches!(
            command,
            Command::Start { .. } | Command::Stop { .. } | Command::Restart { .. }
        )
    {
        return Err(Reply::error(
            ErrorKind::BadRequest,
            "\"wait\" applies to start, stop and restart only",
        ));
    }
    Ok((command, options))
}

/// Handles one request line; returns false when the connection should close.
async fn handle_request(
    line: &[u8],
    control: &Control,
    origin: &str,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> bool {
    let (command, options) = match decode_request(line) {
        Ok(decoded) => decoded,
        Err(reply) => return write_line(write, &reply).await.is_ok(),
    };
    // Subscribe before the command reaches the core, so no change after it is missed.
    let events = (options.wait || options.follow).then(|| control.events.subscribe());
    let target = match &command {
        Command::Start { .. } | Command::Restart { .. } => Some(Settle::Up),
        Command::Stop { .. } => Some(Settle::Down),
        _ => None,
    };
    let follow_name = match &command {
        Command::Logs { name, .. } if options.follow => Some(name.clone()),
        _ => None,
    };
    let reply = control.call(command, origin).await;
    match (events, reply) {
        (Some(events), Reply::Ok { services }) if options.wait => {
            let reply = wait_settled(control, events, services, target.unwrap_or(Settle::Up)).await;
            write_line(write, &reply).await.is_ok()
        }
        (Some(events), Reply::Logs { lines }) if follow_name.is_some() => {
            let last_seq = lines.last().map(|l| l.seq).unwrap_or(0);
            if write_line(write, &Reply::Logs { lines }).await.is_err() {
                return false;
            }
            follow_logs(events, follow_name.unwrap_or_default(), last_seq, write).await;
            false
        }
        (_, reply) => write_line(write, &reply).await.is_ok(),
    }
}

/// What `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Up,
    Down,
}

/// Whether a service has settled for `target`: `Some(Ok)` reached, `Some(Err(why))` it
/// never will without another command, `None` still moving.
pub fn settled(status: &ServiceStatus, target: Settle) -> Option<Result<(), String>> {
    let failed = || {
        let mut why = format!("{} is failed ({})", status.name, status.sub_state);
        if let Some(reason) = &status.reason {
            why.push_str(": ");
            why.push_str(reason);
        }
        why
    };
    match (target, status.state.as_str()) {
        (Settle::Up, "active") => Some(Ok(())),
        (Settle::Up, "failed") => Some(Err(failed())),
        (Settle::Up, "inactive") if status.sub_state == "dependency" => Some(Err(format!(
            "{} cannot start: {}",
            status.name,
            status.reason.as_deref().unwrap_or("a dependency is down")
        ))),
        (Settle::Up, "inactive") if status.want == "down" => Some(Err(format!(
            "{} stopped again ({})",
            status.name, status.sub_state
        ))),
        (Settle::Down, "inactive" | "failed") => Some(Ok(())),
        _ => None,
    }
}

async fn wait_settled(
    control: &Control,
    mut events: broadcast::Receiver<Event>,
    mut services: Vec<ServiceStatus>,
    target: Settle,
) -> Reply {
    loop {
        let outcomes: Vec<_> = services.iter().map(|s| settled(s, target)).collect();
        if outcomes.iter().all(Option::is_some) {
            let errors: Vec<String> = outcomes
                .into_iter()
                .flatten()
                .filter_map(Result::err)
                .collect();
            if errors.is_empty() {
                return Reply::Ok { services };
            }
            return Reply::error(ErrorKind::Failed, errors.join("; "));
        }
        match events.recv().await {
            Ok(Event::Service(status)) => {
                if let Some(known) = services.iter_mut().find(|s| s.name == status.name) {
                    if status.seq > known.seq {
                        *known = status;
                    }
                }
            }
            Ok(Event::ServiceRemoved { name }) if services.iter().any(|s| s.name == name) => {
                return Reply::error(
                    ErrorKind::UnknownService,
                    format!("{name} was removed by a reload"),
                );
            }
            Ok(_) => {}
            // Events were dropped (a chatty service's log lines): the change waited for
            // may be among them, so ask for the statuses again.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let names = services.iter().map(|s| s.name.clone()).collect();
                if let Reply::Ok { services: fresh } = control
                    .call(
                        Command::Status {
                            names,
                            details: false,
                        },
                        "socket --wait",
                    )
                    .await
                {
                    services = fresh;
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Reply::error(ErrorKind::Internal, "ember is shutting down");
            }
        }
    }
}

async fn follow_logs(
    mut events: broadcast::Receiver<Event>,
    name: String,
    mut last_seq: u64,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) {
    loop {
        match events.recv().await {
            Ok(Event::Log(line)) if line.service == name && line.seq > last_seq => {
                last_seq = line.seq;
                if write_line(write, &Reply::Logs { lines: vec![line] })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let note = LogLine {
                    service: name.clone(),
                    stream: "ember".into(),
                    line: format!("... {n} events skipped: this reader fell behind"),
                    time_usec: 0,
                    seq: last_seq,
                };
                if write_line(write, &Reply::Logs { lines: vec![note] })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// The blocking client `ember ctl` uses: one request, one reply (and, when following
/// logs, more replies until the connection ends).
pub struct Client {
    reader: BufReader<StdUnixStream>,
    writer: StdUnixStream,
    path: PathBuf,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, String> {
        let stream = StdUnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
                "cannot reach ember at {}: {e}. Is ember running? (start it, or pass --socket PATH)",
                path.display()
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("cannot reach ember at {}: {e}; try sudo", path.display())
            }
            _ => format!("cannot reach ember at {}: {e}", path.display()),
        })?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            path: path.to_owned(),
        })
    }

    /// Sends one request (a JSON object) and reads its reply.
    pub fn call(&mut self, request: &serde_json::Value) -> Result<Reply, String> {
        let mut bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|e| format!("cannot send to ember at {}: {e}", self.path.display()))?;
        self.next_reply()?
            .ok_or_else(|| format!("ember at {} closed the connection", self.path.display()))
    }

    /// Reads the next reply line; `None` at the end of the connection.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read from ember at {}: {e}", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| format!("ember sent a reply this client cannot read: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: Result<(Command, RequestOptions), Reply>) -> ErrorKind {
        match r {
            Err(Reply::Error(e)) => e.kind,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_requests_and_options() {
        let (c, o) = decode_request(br#"{"cmd":"start","names":["a"],"wait":true}"#).unwrap();
        assert_eq!(
            c,
            Command::Start {
                names: vec!["a".into()]
            }
        );
        assert_eq!(
            o,
            RequestOptions {
                wait: true,
                follow: false
            }
        );
        let (_, o) = decode_request(br#"{"cmd":"logs","name":"a","follow":true}"#).unwrap();
        assert!(o.follow);
    }

    #[test]
    fn rejects_bad_requests_with_the_reason() {
        assert_eq!(kind(decode_request(b"{not json")), ErrorKind::BadRequest);
        assert_eq!(kind(decode_request(b"[1,2]")), ErrorKind::BadRequest);
        assert_eq!(
            kind(decode_request(br#"{"names":[]}"#)),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(decode_request(br#"{"cmd":"explode"}"#)),
            ErrorKind::UnknownCommand
        );
        assert_eq!(
            kind(decode_request(br#"{"cmd":"start"}"#)),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(decode_request(br#"{"cmd":"status","wait":true}"#)),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(decode_request(
                br#"{"cmd":"start","names":["a"],"wait":"yes"}"#
            )),
            ErrorKind::BadRequest
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_lines() {
        let mut input = vec![b'x'; MAX_REQUEST + 10];
        input.extend_from_slice(b"\n{\"cmd\":\"status\"}\n");
        let mut reader = AsyncBufReader::new(&input[..]);
        let mut line = Vec::new();
        assert!(matches!(
            read_bounded_line(&mut reader, &mut line).await.unwrap(),
            LineRead::TooLong
        ));
        line.clear();
        assert!(matches!(
            read_bounded_line(&mut reader, &mut line).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, br#"{"cmd":"status"}"#);
        line.clear();
        assert!(matches!(
            read_bounded_line(&mut reader, &mut line).await.unwrap(),
            LineRead::Eof
        ));
    }

    fn status(state: &str, sub: &str, want: &str) -> ServiceStatus {
        ServiceStatus {
            name: "a".into(),
            state: state.into(),
            sub_state: sub.into(),
            want: want.into(),
            pid: None,
            restarts: 0,
            exit_code: None,
            exit_signal: None,
            result: None,
            since: String::new(),
            since_usec: 0,
            reason: None,
            status_text: None,
            ready: "none".into(),
            seq: 0,
            ..Default::default()
        }
    }

    #[test]
    fn settling() {
        assert_eq!(
            settled(&status("active", "running", "up"), Settle::Up),
            Some(Ok(()))
        );
        assert!(settled(&status("activating", "start", "up"), Settle::Up).is_none());
        assert!(matches!(
            settled(&status("failed", "exit-code", "up"), Settle::Up),
            Some(Err(_))
        ));
        assert!(matches!(
            settled(&status("inactive", "dependency", "up"), Settle::Up),
            Some(Err(_))
        ));
        assert!(settled(&status("inactive", "waiting", "up"), Settle::Up).is_none());
        assert_eq!(
            settled(&status("failed", "signal", "down"), Settle::Down),
            Some(Ok(()))
        );
        assert!(settled(
            &status("deactivating", "stop-sigterm", "down"),
            Settle::Down
        )
        .is_none());
    }
}
