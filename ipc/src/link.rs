//! An adapter's link to ember: the control socket, as a [`Control`].
//!
//! The adapters (ember-mqtt, ember-dbus) are written against [`Control`]: `call` for a
//! command and its reply, `events` for every change. Out of process, two connections
//! carry them: one for requests (each line sent gets its reply line, in order) and one
//! `subscribe` stream. Each snapshot of the stream becomes events (the system, every
//! service, and a removal for each service the last snapshot had and this one has not),
//! so an adapter that applies events converges after any gap. When ember goes away,
//! [`Link::closed`] resolves: the adapter then exits, and ember, which supervises it,
//! starts it again.

use crate::protocol::{
    Command, Control, ErrorKind, Event, HelloArgs, Reply, Request, SubscribeArgs, PROTOCOL,
};
use std::collections::BTreeSet;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Requests queued for the socket: at most this many wait.
const QUEUE: usize = 64;

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
        let (requests_tx, requests_rx) = mpsc::channel(QUEUE);
        let (events, _) = broadcast::channel(1024);
        let (lines, _) = broadcast::channel(1);
        let (closed_tx, closed) = oneshot::channel();
        let (why_tx, mut why_rx) = mpsc::channel::<String>(2);
        tokio::spawn(serve_requests(requests, requests_rx, why_tx.clone()));
        tokio::spawn(read_stream(stream, events.clone(), why_tx));
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
pub async fn call_alone(socket: &Path, command: &Command, via: &str) -> Result<Reply, String> {
    let mut lines = Lines::connect(socket).await?;
    lines.call(command, Some(via)).await
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

    /// Sends a command; `via` says where it came from, for ember's log.
    async fn send(&mut self, command: &Command, via: Option<&str>) -> Result<(), String> {
        let mut value = serde_json::to_value(command).map_err(|e| e.to_string())?;
        if let (Some(via), Some(object)) = (via, value.as_object_mut()) {
            object.insert("via".into(), via.into());
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
        self.send(command, via).await?;
        self.next().await
    }
}

/// Carries requests one at a time: a line out, its reply back.
async fn serve_requests(
    mut lines: Lines,
    mut requests: mpsc::Receiver<Request>,
    closed: mpsc::Sender<String>,
) {
    while let Some(request) = requests.recv().await {
        match lines.call(&request.command, Some(&request.origin)).await {
            Ok(reply) => {
                let _ = request.reply.send(reply);
            }
            Err(why) => {
                let _ = request
                    .reply
                    .send(Reply::error(ErrorKind::Internal, why.clone()));
                let _ = closed.send(why).await;
                return;
            }
        }
    }
}

/// Turns the subscribe stream into events.
async fn read_stream(
    mut lines: Lines,
    events: broadcast::Sender<Event>,
    closed: mpsc::Sender<String>,
) {
    let mut known: BTreeSet<String> = BTreeSet::new();
    loop {
        let reply = match lines.next().await {
            Ok(reply) => reply,
            Err(why) => {
                let _ = closed.send(why).await;
                return;
            }
        };
        match reply {
            Reply::Snapshot(snapshot) => {
                let now: BTreeSet<String> =
                    snapshot.services.iter().map(|s| s.name.clone()).collect();
                for gone in known.difference(&now) {
                    let _ = events.send(Event::ServiceRemoved {
                        name: gone.clone(),
                        seq: snapshot.seq,
                    });
                }
                known = now;
                let _ = events.send(Event::System(snapshot.system));
                for service in snapshot.services {
                    let _ = events.send(Event::Service(service));
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
                let _ = events.send(*event);
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
