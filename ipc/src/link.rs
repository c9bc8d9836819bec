//! An adapter's link to ember: the control socket, as a [`Control`].
//!
//! The adapters (ember-mqtt, ember-dbus) are written against [`Control`]: `call` for a
//! command and its reply, `events` for every change. Out of process, two connections
//! carry them: one for requests (each line sent gets its reply line, in order) and one
//! `subscribe` stream. Each snapshot of the stream becomes events (the system, every
//! service, and a removal for each service the last snapshot had and this one has not),
//! so an adapter that applies events converges after any gap. When the connections
//! close, the link connects again for up to [`COME_BACK`]: an `ember ctl reexec` replaces
//! ember's binary under its adapters, which carry on (their broker and bus never see
//! them go). When ember does not come back, [`Link::closed`] resolves: the adapter then
//! exits, and ember, which supervises it, starts it again.

use crate::broadcast::Broadcast;
use crate::protocol::{
    Command, Control, ErrorKind, Event, HelloArgs, Reply, Request, SubscribeArgs, PROTOCOL,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Requests queued for the socket: at most this many wait.
const QUEUE: usize = 64;

/// How long a link tries to reach ember again after its connections closed before it
/// gives up: the new binary of a reexec answers within a second or two.
pub const COME_BACK: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Link {
    pub control: Control,
    /// What the `hello` said: who ember is.
    pub hello: crate::protocol::Hello,
    /// How far the adapter has applied the changes: see [`Link::flush`].
    pub progress: Progress,
    closed: oneshot::Receiver<String>,
}

/// The seq of the last change an adapter has applied (told to its broker, its bus).
#[derive(Clone, Default, Debug)]
pub struct Progress(std::sync::Arc<(std::sync::atomic::AtomicU64, tokio::sync::Notify)>);

impl Progress {
    /// The adapter has applied every change up to `seq`.
    pub fn applied(&self, seq: u64) {
        let (done, moved) = &*self.0;
        done.fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
        moved.notify_waiters();
    }

    fn reached(&self, seq: u64) -> bool {
        self.0 .0.load(std::sync::atomic::Ordering::SeqCst) >= seq
    }

    async fn wait_for(&self, seq: u64) {
        loop {
            let moved = self.0 .1.notified();
            if self.reached(seq) {
                return;
            }
            moved.await;
        }
    }
}

impl Link {
    /// Connects both ways, says hello as `client`, and subscribes (with the metrics rounds
    /// when `metrics`).
    pub async fn connect(socket: &Path, client: &str, metrics: bool) -> Result<Link, String> {
        let (requests, hello) = Lines::greet(socket, client).await?;
        let stream = Lines::subscribe(socket, metrics).await?;
        let (requests_tx, requests_rx) = mpsc::channel(QUEUE);
        let events = Broadcast::new(1024);
        let lines = Broadcast::new(1);
        let (closed_tx, closed) = oneshot::channel();
        let (why_tx, mut why_rx) = mpsc::channel::<String>(2);
        let again = Again {
            socket: socket.to_owned(),
            client: client.to_owned(),
            metrics,
        };
        tokio::spawn(serve_requests(
            again.clone(),
            requests,
            requests_rx,
            why_tx.clone(),
        ));
        tokio::spawn(read_stream(again, stream, events.clone(), why_tx));
        tokio::spawn(async move {
            let why = why_rx
                .recv()
                .await
                .unwrap_or_else(|| "the link ended".to_owned());
            let _ = closed_tx.send(why);
        });
        Ok(Link {
            control: Control {
                requests: requests_tx,
                events,
                lines,
            },
            hello,
            progress: Progress::default(),
            closed,
        })
    }

    /// Before an adapter goes (SIGTERM: ember stops it last, after every other service):
    /// waits, at most `within`, until it has applied every change published so far, so
    /// that the stops before its own reach its broker or bus. The adapter must keep
    /// running meanwhile.
    pub async fn flush(&self, within: std::time::Duration) {
        let flushed = async {
            let status = crate::protocol::StatusArgs::default();
            if let Reply::Status(status) = self.control.call(Command::Status(status), "flush").await
            {
                self.progress.wait_for(status.seq).await;
            }
        };
        let _ = tokio::time::timeout(within, flushed).await;
    }

    /// Resolves when ember can no longer be reached, with why.
    pub async fn closed(&mut self) -> String {
        (&mut self.closed)
            .await
            .unwrap_or_else(|_| "the link ended".to_owned())
    }
}

/// One command on a connection of its own, for a command that may take long (a start,
/// stop or restart with `wait`, answered once the core says the service has settled): on
/// the link's connection it would hold up every request after it. Dropping the future
/// closes the connection, and the core forgets the wait.
///
/// `taken` is told once the command is in ember's queue, so that a command sent after
/// that, on any connection, runs after it (an adapter keeps its commands in the order
/// they came: found by a hostile review, a plain `start` on the link overtook a `stop`
/// with `wait` sent before it); or, when it never got there, once that is known
/// (dropped). Meanwhile the command waits for its answer.
pub async fn call_alone(
    socket: &Path,
    command: &Command,
    via: &str,
    taken: oneshot::Sender<()>,
) -> Result<Reply, String> {
    // Each connection counts against the adapter's share of ember's socket until ember
    // has seen it close, which on a busy PID 1 may come after the adapter's next one
    // arrives: a refusal at the door for want of room (nothing ran) is tried again, after
    // a short pause, for as long as the caller waits (found when a suite under load had
    // waited commands refused "uid N holds 16 control connections already", though the
    // adapter held 12).
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let mut lines = Lines::connect(socket).await?;
        let sent = lines.send_taken(command, Some(via)).await;
        // Read even when the write failed: ember may have refused and closed first, and
        // its reason says more than "Broken pipe".
        let first = match (sent, lines.next().await) {
            (_, Ok(Reply::Error(e))) if crate::socket::refused_for_room(&e) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
                continue;
            }
            (_, Ok(reply)) => reply,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => {
                let _ = taken.send(());
                return Err(e);
            }
        };
        let _ = taken.send(());
        return match first {
            Reply::Taken {} => lines.next().await,
            // Refused before the queue (a malformed line, a right missing): its answer.
            other => Ok(other),
        };
    }
}

/// What a link needs to connect again.
#[derive(Clone)]
struct Again {
    socket: std::path::PathBuf,
    client: String,
    metrics: bool,
}

impl Again {
    /// Retries `connect` until it works or [`COME_BACK`] has passed since `why` (the
    /// reason the last connection ended), which is then the answer.
    async fn until_back<T, F: std::future::Future<Output = Result<T, String>>>(
        &self,
        why: String,
        connect: impl Fn() -> F,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + COME_BACK;
        loop {
            if let Ok(lines) = connect().await {
                tracing::info!("ember is back ({why} before)");
                return Ok(lines);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{why}, and ember did not come back within {} s",
                    COME_BACK.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A new connection for requests, once ember is back (see [`Again::until_back`]).
    async fn requests(&self, why: String) -> Result<Lines, String> {
        self.until_back(why, || Lines::greet(&self.socket, &self.client))
            .await
            .map(|(lines, _)| lines)
    }
}

/// One connection to the socket, line by line.
struct Lines {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Lines {
    async fn connect(socket: &Path) -> Result<Lines, String> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot reach ember at {}: {e}", socket.display()))?;
        let (read, writer) = stream.into_split();
        Ok(Lines {
            reader: BufReader::new(read),
            writer,
        })
    }

    /// A connection for requests, after a `hello` as `client`; and the hello's answer.
    async fn greet(socket: &Path, client: &str) -> Result<(Lines, crate::protocol::Hello), String> {
        let mut requests = Lines::connect(socket).await?;
        let hello = Command::Hello(HelloArgs {
            protocol: PROTOCOL,
            client: Some(client.to_owned()),
        });
        let hello = match requests.call(&hello, None).await? {
            Reply::Hello(hello) => hello,
            Reply::Error(e) => return Err(format!("ember refused the hello: {}", e.message)),
            other => return Err(format!("ember answered the hello with {other:?}")),
        };
        if hello.protocol != PROTOCOL {
            return Err(format!(
                "ember speaks protocol {}, this adapter {PROTOCOL}: install the ember-{{mqtt,dbus}} of the same version as ember",
                hello.protocol
            ));
        }
        Ok((requests, hello))
    }

    /// A connection subscribed to every change.
    async fn subscribe(socket: &Path, metrics: bool) -> Result<Lines, String> {
        let mut stream = Lines::connect(socket).await?;
        stream
            .send(
                &Command::Subscribe(SubscribeArgs {
                    logs: false,
                    metrics,
                }),
                None,
            )
            .await?;
        Ok(stream)
    }

    /// Sends a command; `via` says where it came from, for ember's log.
    async fn send(&mut self, command: &Command, via: Option<&str>) -> Result<(), String> {
        self.send_with(command, via, false).await
    }

    /// Sends a command that is answered [`Reply::Taken`] first.
    async fn send_taken(&mut self, command: &Command, via: Option<&str>) -> Result<(), String> {
        self.send_with(command, via, true).await
    }

    async fn send_with(
        &mut self,
        command: &Command,
        via: Option<&str>,
        taken: bool,
    ) -> Result<(), String> {
        let mut value = serde_json::to_value(command).map_err(|e| e.to_string())?;
        if let (Some(via), Some(object)) = (via, value.as_object_mut()) {
            object.insert("via".into(), via.into());
        }
        if let (true, Some(object)) = (taken, value.as_object_mut()) {
            object.insert("taken".into(), true.into());
        }
        let mut line = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| format!("cannot write to ember: {e}"))
    }

    async fn next(&mut self) -> Result<Reply, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).await {
            Ok(0) => Err("ember closed the connection".to_owned()),
            Ok(_) => crate::json::from_slice(line.as_bytes())
                .map_err(|e| format!("ember sent a line this adapter cannot read: {e}")),
            Err(e) => Err(format!("cannot read from ember: {e}")),
        }
    }

    async fn call(&mut self, command: &Command, via: Option<&str>) -> Result<Reply, String> {
        if let Err(e) = self.send(command, via).await {
            // ember may have refused the connection (busy, access denied) and closed it
            // before the request was sent: its reason is waiting to be read, and says
            // more than "Broken pipe".
            return match self.next().await {
                Ok(refused @ Reply::Error(_)) => Ok(refused),
                _ => Err(e),
            };
        }
        self.next().await
    }
}

/// Carries requests one at a time: a line out, its reply back. A request whose
/// connection closes is answered with why (it may or may not have run); the next goes
/// on a new connection once ember is back.
async fn serve_requests(
    again: Again,
    mut lines: Lines,
    mut requests: mpsc::Receiver<Request>,
    closed: mpsc::Sender<String>,
) {
    while let Some(request) = requests.recv().await {
        // A request that could not even be written never reached ember (its connection
        // closed while idle, as at a reexec): it goes again once ember is back.
        if let Err(why) = lines.send(&request.command, Some(&request.origin)).await {
            match again.requests(why).await {
                Ok(back) => lines = back,
                Err(why) => {
                    let _ = request
                        .reply
                        .send(Reply::error(ErrorKind::Internal, why.clone()));
                    let _ = closed.send(why).await;
                    return;
                }
            }
            if let Err(why) = lines.send(&request.command, Some(&request.origin)).await {
                let _ = request.reply.send(Reply::error(ErrorKind::Internal, why));
                continue;
            }
        }
        match lines.next().await {
            Ok(reply) => {
                let _ = request.reply.send(reply);
            }
            Err(why) => {
                let _ = request
                    .reply
                    .send(Reply::error(ErrorKind::Internal, why.clone()));
                match again.requests(why).await {
                    Ok(back) => lines = back,
                    Err(why) => {
                        let _ = closed.send(why).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Turns the subscribe stream into events. A stream that ends is subscribed again once
/// ember is back: its snapshot brings every change missed meanwhile.
async fn read_stream(
    again: Again,
    mut lines: Lines,
    events: Broadcast<Arc<Event>>,
    closed: mpsc::Sender<String>,
) {
    let mut known: BTreeSet<String> = BTreeSet::new();
    loop {
        let reply = match lines.next().await {
            Ok(reply) => reply,
            Err(why) => {
                match again
                    .until_back(why, || Lines::subscribe(&again.socket, again.metrics))
                    .await
                {
                    Ok(back) => {
                        lines = back;
                        continue;
                    }
                    Err(why) => {
                        let _ = closed.send(why).await;
                        return;
                    }
                }
            }
        };
        match reply {
            Reply::Snapshot(snapshot) => {
                let now: BTreeSet<String> =
                    snapshot.services.iter().map(|s| s.name.clone()).collect();
                for gone in known.difference(&now) {
                    let _ = events.send(Arc::new(Event::ServiceRemoved {
                        name: gone.clone(),
                        seq: snapshot.seq,
                    }));
                }
                known = now;
                let _ = events.send(Arc::new(Event::System(snapshot.system)));
                for service in snapshot.services {
                    let _ = events.send(Arc::new(Event::Service(service)));
                }
            }
            Reply::Event(event) => {
                match &*event {
                    Event::Service(s) => {
                        known.insert(s.name.clone());
                    }
                    Event::ServiceRemoved { name, .. } => {
                        known.remove(name);
                    }
                    _ => {}
                }
                let _ = events.send(Arc::from(event));
            }
            // A snapshot follows: nothing to do until it comes.
            Reply::Lagged { .. } => {}
            Reply::Error(e) => {
                let _ = closed
                    .send(format!("ember refused the subscription: {}", e.message))
                    .await;
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Hello, Role, ServiceStatus, StatusReply, SystemState, SystemStatus};
    use tokio::net::UnixListener;

    /// A stand-in for ember on `socket`: answers a hello, and a subscribe with a snapshot of
    /// one service named `service`; then closes every connection after `connections`.
    async fn fake_ember(socket: &Path, service: &str, connections: usize) {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        // Held open until this stand-in goes (its task is aborted): the link then sees
        // every connection close at once, as when a process execs.
        let mut open = Vec::new();
        for _ in 0..connections {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await.unwrap();
            let reply = if line.contains("\"hello\"") {
                Reply::Hello(Hello {
                    protocol: PROTOCOL,
                    ember: "test".into(),
                    device: "d".into(),
                    role: Role::Supervisor,
                })
            } else {
                Reply::Snapshot(StatusReply {
                    seq: 1,
                    system: SystemStatus {
                        state: SystemState::Running,
                        config: Default::default(),
                        seq: 1,
                        watchdog: None,
                    },
                    services: vec![ServiceStatus {
                        name: service.into(),
                        ..Default::default()
                    }],
                })
            };
            let mut text = serde_json::to_vec(&reply).unwrap();
            text.push(b'\n');
            write.write_all(&text).await.unwrap();
            open.push(write);
        }
        std::future::pending::<()>().await;
    }

    /// A stand-in for ember that refuses its first `refusals` connections as ember does
    /// for want of room, then answers a waited command with `taken` and `ok`; returns
    /// the requests it read.
    async fn crowded_ember(listener: UnixListener, refusals: usize, refusal: Reply) -> Vec<String> {
        let mut read_lines = Vec::new();
        for n in 0.. {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let reply = |r: &Reply| {
                let mut text = serde_json::to_vec(r).unwrap();
                text.push(b'\n');
                text
            };
            if n < refusals {
                // As ember's socket does: the refusal, then the connection closed,
                // whatever the client sends.
                write.write_all(&reply(&refusal)).await.unwrap();
                continue;
            }
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await.unwrap();
            read_lines.push(line);
            write.write_all(&reply(&Reply::Taken {})).await.unwrap();
            let ok = Reply::Ok {
                services: Vec::new(),
            };
            write.write_all(&reply(&ok)).await.unwrap();
            return read_lines;
        }
        unreachable!()
    }

    /// A connection refused for want of room (nothing ran) is tried again: on a busy
    /// PID 1 the adapter's closed connections are still counted when its next arrives
    /// (found by a suite under load: waited MQTT commands refused "uid N holds 16 control
    /// connections already"). Any other refusal is the answer at once.
    #[tokio::test]
    async fn a_waited_call_refused_for_room_is_tried_again() {
        let dir = std::env::temp_dir().join(format!("ember-link-room-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let socket = dir.join("control.sock");
        let no_room = Reply::error(
            ErrorKind::Busy,
            format!(
                "uid 7 holds 16 control connections already, the most one user may{}",
                crate::socket::NO_ROOM
            ),
        );
        let command = Command::Restart(crate::protocol::Targets {
            names: vec!["web".into()],
            wait: true,
        });
        for (refusal, tried_again) in [
            (no_room, true),
            (
                Reply::error(ErrorKind::Busy, "ember is shutting down"),
                false,
            ),
        ] {
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).unwrap();
            let ember = tokio::spawn(crowded_ember(listener, 3, refusal.clone()));
            let (taken, was_taken) = oneshot::channel();
            let reply = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                call_alone(&socket, &command, "test", taken),
            )
            .await
            .expect("an answer");
            if tried_again {
                assert_eq!(
                    reply,
                    Ok(Reply::Ok {
                        services: Vec::new()
                    })
                );
                let read = ember.await.unwrap();
                assert!(read[0].contains("\"restart\""), "{read:?}");
            } else {
                assert_eq!(reply, Ok(refusal));
                ember.abort();
            }
            assert_eq!(was_taken.await, Ok(()));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Waits for an event of the service `name`.
    async fn seen(events: &mut tokio::sync::broadcast::Receiver<Arc<Event>>, name: &str) {
        loop {
            if let Event::Service(s) = &*events.recv().await.unwrap() {
                if s.name == name {
                    return;
                }
            }
        }
    }

    /// The connections close (as at a reexec) and ember comes back: the link connects
    /// again and its events go on, from the new snapshot; it does not say closed.
    #[tokio::test]
    async fn a_link_outlives_ember_going_and_coming_back() {
        let dir = std::env::temp_dir().join(format!("ember-link-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let socket = dir.join("control.sock");
        let first = tokio::spawn({
            let socket = socket.clone();
            async move { fake_ember(&socket, "old", 2).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut link = Link::connect(&socket, "test", false)
            .await
            .expect("connect");
        let mut events = link.control.events.subscribe();
        seen(&mut events, "old").await;
        // ember goes: its connections close with the process.
        first.abort();
        let _ = first.await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // ... and comes back: the link subscribes again and reads the new snapshot.
        tokio::spawn({
            let socket = socket.clone();
            async move { fake_ember(&socket, "new", 2).await }
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), seen(&mut events, "new"))
            .await
            .expect("no snapshot from the ember that came back");
        let closed = tokio::time::timeout(std::time::Duration::from_millis(300), link.closed());
        assert!(closed.await.is_err(), "the link said closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// ember goes and does not come back: the link says so once [`COME_BACK`] has passed
    /// (the adapter then exits, and the next ember starts it again).
    #[tokio::test(start_paused = true)]
    async fn a_link_says_closed_when_ember_does_not_come_back() {
        let dir = std::env::temp_dir().join(format!("ember-link-gone-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let socket = dir.join("control.sock");
        let ember = tokio::spawn({
            let socket = socket.clone();
            async move { fake_ember(&socket, "old", 2).await }
        });
        let mut link = loop {
            if let Ok(link) = Link::connect(&socket, "test", false).await {
                break link;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        ember.abort();
        let _ = ember.await;
        let _ = std::fs::remove_file(&socket);
        let started = tokio::time::Instant::now();
        let why = link.closed().await;
        assert!(why.contains("did not come back within 30 s"), "{why}");
        assert!(
            started.elapsed() >= COME_BACK,
            "gave up after {:?}",
            started.elapsed()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
