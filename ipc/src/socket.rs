//! The local control socket: newline-delimited JSON over a Unix stream socket.
//!
//! A request is one JSON object per line, a [`Command`]. `"wait": true` on start, stop
//! and restart makes the core reply once the services have settled; `"follow": true` on
//! `logs` keeps streaming lines after the reply (this adapter does that); with
//! `"taken": true` too, a [`Reply::Taken`] line comes first, once the command is in the
//! core's queue. Every other request
//! gets exactly one reply line; a bad request gets an error reply and the connection stays
//! usable. A `subscribe` or a `logs --follow` makes its connection a stream: what the
//! client sends on it after is read and dropped. Only root and the daemon's own uid may connect (checked with SO_PEERCRED).
//!
//! Bounded per connection and in all: at most [`MAX_CONNECTIONS`] at once (more get
//! `busy`), request lines of at most [`MAX_REQUEST`] bytes (longer ones get `too_large`
//! and are skipped, never kept), a whole request line within [`REQUEST_TIMEOUT`], every
//! reply written within [`WRITE_TIMEOUT`]; a `--wait` or a `logs --follow` ends when its
//! client goes away.

use crate::protocol::*;
use crate::rights::Policy;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, Semaphore};

/// Longest request line accepted; longer ones get a `too_large` error (and are skipped, not
/// kept: a line without end costs no memory).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once, each a task and a descriptor; more get a `busy` error and
/// are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Of those, the slots only root (and ember's own uid) may take: the users of
/// `[[control.allow]]` share the others, so that none of them can keep root out (a
/// status-only user holding every slot with idle connections did).
pub const KEPT_FOR_ROOT: usize = 8;
/// Connections one user of `[[control.allow]]` may hold at once: one user cannot take
/// the others' (an adapter's) slots either.
pub const PER_USER: usize = 16;
/// Time a client has to send a whole request line, after connecting or after its previous
/// reply; then the connection is closed, so an idle or slow client cannot keep its slot.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time one reply may take to be written; a client that does not read its replies is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the control socket: creates its directory, replaces a stale socket file, refuses
/// to steal the socket of a live daemon, and sets the socket's mode (see [`set_open`]).
pub fn bind(path: &Path, open: bool) -> std::io::Result<UnixListener> {
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
    set_open(path, open)?;
    Ok(listener)
}

/// The listening socket a previous binary handed over at a reexec (by fd): the same
/// socket, so a client never finds it missing. Closed at the next exec again.
pub fn adopt(fd: std::os::fd::RawFd) -> std::io::Result<UnixListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: the fd was handed to this process for this alone.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(
        borrowed,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// 0600 when only root (and ember's own uid) may connect, so the kernel refuses anyone
/// else's connect; 0666 when rules let others in, whom their credentials then decide.
pub fn set_open(path: &Path, open: bool) -> std::io::Result<()> {
    let mode = if open { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The supplementary groups of the peer (SO_PEERGROUPS), for rules by group.
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut groups: Vec<u32> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<u32>()) as nix::libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of u32s that the kernel fills; len is updated
        // to what it wrote (or, with ERANGE, to what it needs).
        let rc = unsafe {
            nix::libc::getsockopt(
                fd,
                nix::libc::SOL_SOCKET,
                nix::libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<u32>();
        if rc == 0 {
            groups.truncate(count);
            return groups;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(nix::libc::ERANGE) {
            break;
        }
        groups.resize(count.max(groups.len() * 2), 0);
    }
    Vec::new()
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
struct Peer {
    uid: u32,
    gids: Vec<u32>,
}

/// An admitted client, as its task takes it over.
struct Connection {
    stream: UnixStream,
    peer: Peer,
    arrival: Arrival,
}

/// What the socket has still to do that the core should know of: the replies still to
/// write, and the clients that have connected and not yet sent their first request.
///
/// Before ember stops (a `poweroff` with nothing left to stop is over at once) it waits
/// for the replies, so that every client learns that its request was taken. A client
/// that has just connected is let in ahead of the spawns (see [`Pending::arriving`]).
#[derive(Clone, Default)]
pub struct Pending(Arc<PendingCount>);

#[derive(Default)]
struct PendingCount {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// When each admitted client whose first request is still to be read connected.
    arrivals: std::sync::Mutex<Vec<Instant>>,
}

/// How long after its connect a client that has not yet sent its request counts as
/// arriving. A client sends its request as it connects; one that stays silent (an idle
/// connection, kept open on purpose or not) must not hold back a boot for long: with 60
/// of them open, a boot of 3,000 took twice as long when they counted until they spoke.
pub const ARRIVAL_GRACE: Duration = Duration::from_millis(10);

/// A client admitted whose first request has not been read yet; dropped once it has (or
/// the connection ended without one).
struct Arrival {
    pending: Pending,
    at: Instant,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        let mut arrivals = self.pending.arrivals();
        // Two clients may have come at the same instant: either entry is this one's.
        if let Some(i) = arrivals.iter().position(|&at| at == self.at) {
            arrivals.swap_remove(i);
        }
    }
}

/// One reply on its way; dropped once written (or given up).
struct PendingReply(Pending);

impl Pending {
    fn begin(&self) -> PendingReply {
        self.0
            .count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        PendingReply(self.clone())
    }

    /// Whether a client that connected in the last [`ARRIVAL_GRACE`] has not yet had its
    /// first request read. During a boot the core spawns for a slice at a time between
    /// its turns; while a client is arriving it does not, so that the request is read
    /// before the next slice (a connection's first bytes can be read only after the
    /// runtime's driver has seen it: a status during a boot of 3,000 waited a slice for
    /// its accept and another before its request was read).
    pub fn arriving(&self) -> bool {
        self.arriving_at(Instant::now())
    }

    fn arriving_at(&self, now: Instant) -> bool {
        self.arrivals()
            .iter()
            .any(|&at| now.saturating_duration_since(at) < ARRIVAL_GRACE)
    }

    fn arrivals(&self) -> std::sync::MutexGuard<'_, Vec<Instant>> {
        self.0
            .arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn arrive(&self) -> Arrival {
        let at = Instant::now();
        self.arrivals().push(at);
        Arrival {
            pending: self.clone(),
            at,
        }
    }

    /// Resolves once no reply is waiting to be written.
    pub async fn drained(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.0.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        let inner = &(self.0).0;
        if inner
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            inner.idle.notify_waiters();
        }
    }
}

/// Serves the control socket until the listener fails. Who connects, and whether there is
/// room, is decided here before a task is spent on it: a refused connection gets one
/// reply line and is closed. Each accepted connection runs in its own task.
pub async fn serve(
    listener: UnixListener,
    control: Control,
    pending: Pending,
    policy: tokio::sync::watch::Receiver<Policy>,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let users = UserSlots::default();
    let streams = Streams::default();
    let mut refusals = Refusals::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => {
                let mut gids = peer_groups(&stream);
                gids.push(cred.gid());
                Peer {
                    uid: cred.uid(),
                    gids,
                }
            }
            Err(e) => {
                tracing::warn!("control socket: cannot read peer credentials: {e}");
                continue;
            }
        };
        let uid = peer.uid;
        if policy.borrow().rights(own_uid, uid, &peer.gids).is_none() {
            refusals.warn(ErrorKind::AccessDenied, || {
                format!(
                    "control socket: refused uid {uid} (root, uid {own_uid} and what [[control.allow]] admits may connect)"
                )
            });
            refuse(
                stream,
                ErrorKind::AccessDenied,
                format!(
                    "uid {uid} may not control ember: only root, uid {own_uid} and the users and groups of [[control.allow]] may; try sudo"
                ),
            );
            continue;
        }
        // A user other than root: within its own share first.
        let user_slot = if uid == 0 || uid == own_uid {
            None
        } else {
            match users.take(uid) {
                Ok(slot) => Some(slot),
                Err(why) => {
                    refusals.warn(ErrorKind::Busy, || {
                        format!("control socket: refused uid {uid}: {why}")
                    });
                    refuse(stream, ErrorKind::Busy, format!("{why}{NO_ROOM}"));
                    continue;
                }
            }
        };
        let control = control.clone();
        let pending = pending.clone();
        let streams = streams.clone();
        let policy = policy.clone();
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Full, and root (or ember's own uid, root's equal everywhere) asks: the
            // oldest long-lived connection (a `logs -f`, a `--wait`) makes room, so that
            // followers can never lock root out (not even of `poweroff`). Its slot comes
            // free once its task has ended.
            Err(_) if (uid == 0 || uid == own_uid) && streams.evict_oldest() => {
                let slots = slots.clone();
                tokio::spawn(async move {
                    let permit =
                        tokio::time::timeout(Duration::from_secs(5), slots.acquire_owned()).await;
                    let Ok(Ok(permit)) = permit else { return };
                    let _permit = permit;
                    let connection = Connection {
                        stream,
                        peer,
                        arrival: pending.arrive(),
                    };
                    serve_connection(connection, control, pending, streams, policy).await;
                });
                continue;
            }
            Err(_) => {
                refusals.warn(ErrorKind::Busy, || {
                    format!(
                        "control socket: {MAX_CONNECTIONS} connections open already; refusing more"
                    )
                });
                refuse(
                    stream,
                    ErrorKind::Busy,
                    format!(
                        "ember is serving {MAX_CONNECTIONS} control connections already{NO_ROOM}"
                    ),
                );
                continue;
            }
        };
        // Counted from here, with its slot: a connection refused for want of one is
        // not a client the core waits for.
        let arrival = pending.arrive();
        tokio::spawn(async move {
            let _permit = (permit, user_slot);
            let connection = Connection {
                stream,
                peer,
                arrival,
            };
            serve_connection(connection, control, pending, streams, policy).await;
        });
    }
}

/// Whether `error` is ember's refusal of a connection for want of room (its own, or
/// its user's share, full): nothing was read from it, and the same request may be sent
/// again in a moment.
pub fn refused_for_room(error: &Error) -> bool {
    error.kind == ErrorKind::Busy && error.message.ends_with(NO_ROOM)
}

/// How each refusal of a connection for want of room ends (and no other message).
pub(crate) const NO_ROOM: &str = "; try again in a moment";

/// The connections each user other than root holds, and all of them together: bounded so
/// that root always has [`KEPT_FOR_ROOT`] slots and each user at most [`PER_USER`].
#[derive(Clone, Default)]
struct UserSlots(Arc<std::sync::Mutex<std::collections::HashMap<u32, usize>>>);

/// One connection of a user's, given back when dropped.
struct UserSlot {
    users: UserSlots,
    uid: u32,
}

impl UserSlots {
    fn take(&self, uid: u32) -> Result<UserSlot, String> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let all: usize = held.values().sum();
        if all >= MAX_CONNECTIONS - KEPT_FOR_ROOT {
            return Err(format!(
                "the users of [[control.allow]] hold {all} control connections, all they may ({KEPT_FOR_ROOT} of {MAX_CONNECTIONS} are kept for root)"
            ));
        }
        let own = held.entry(uid).or_default();
        if *own >= PER_USER {
            return Err(format!(
                "uid {uid} holds {PER_USER} control connections already, the most one user may"
            ));
        }
        *own += 1;
        Ok(UserSlot {
            users: self.clone(),
            uid,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut held = self.users.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(own) = held.get_mut(&self.uid) {
            *own = own.saturating_sub(1);
            if *own == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// The long-lived connections (following logs, waiting for services), oldest first: the
/// ones root's connections may take the slot of when every slot is taken.
#[derive(Clone, Default)]
struct Streams(Arc<std::sync::Mutex<StreamList>>);

#[derive(Default)]
struct StreamList {
    next: u64,
    open: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// One registered long-lived connection; it leaves the list when dropped.
struct Follower {
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
    streams: Streams,
}

impl Streams {
    fn list(&self) -> std::sync::MutexGuard<'_, StreamList> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self) -> Follower {
        let evicted = Arc::new(tokio::sync::Notify::new());
        let mut list = self.list();
        let id = list.next;
        list.next += 1;
        list.open.push_back((id, evicted.clone()));
        Follower {
            id,
            evicted,
            streams: self.clone(),
        }
    }

    /// Tells the oldest long-lived connection to end; false when there is none.
    fn evict_oldest(&self) -> bool {
        match self.list().open.pop_front() {
            Some((_, evicted)) => {
                evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Follower {
    async fn evicted(&self) {
        self.evicted.notified().await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.streams.list().open.retain(|(id, _)| *id != self.id);
    }
}

/// Answers a refused connection with one line, without waiting (a new connection's
/// buffer has room for it), and closes it.
fn refuse(stream: UnixStream, kind: ErrorKind, message: String) {
    let Ok(mut bytes) = serde_json::to_vec(&Reply::error(kind, message)) else {
        return;
    };
    bytes.push(b'\n');
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(&bytes);
    }
}

/// Refusals logged at most once per [`Throttle::EVERY`], with the count of the others: a
/// client retrying in a loop must not flood the log.
/// The refusals of connections ember logs: at most one every 10 s of each kind (a client
/// retrying in a loop must not flood the log), with the count of the rest of that kind,
/// never of another (found by a hostile review: 436 `busy` refusals were counted beside
/// the next refused uid, as if it had tried 436 times).
#[derive(Default)]
struct Refusals {
    denied: Throttle,
    busy: Throttle,
}

impl Refusals {
    fn warn(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        if let Some(line) = self.line(kind, std::time::Instant::now(), message) {
            tracing::warn!("{line}");
        }
    }

    /// The line to log for this refusal now, if one is due.
    fn line(
        &mut self,
        kind: ErrorKind,
        now: std::time::Instant,
        message: impl FnOnce() -> String,
    ) -> Option<String> {
        let throttle = match kind {
            ErrorKind::AccessDenied => &mut self.denied,
            _ => &mut self.busy,
        };
        let quiet = throttle.due(now)?;
        let message = message();
        Some(match quiet {
            0 => message,
            n => format!("{message} ({n} more like it in the last 10 s were not logged)"),
        })
    }
}

#[derive(Default)]
struct Throttle {
    last: Option<std::time::Instant>,
    quiet: u32,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// `Some(how many were kept quiet since)` when one is due now; else counts it.
    fn due(&mut self, now: std::time::Instant) -> Option<u32> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::EVERY)
        {
            self.quiet = self.quiet.saturating_add(1);
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }
}

async fn serve_connection(
    connection: Connection,
    control: Control,
    pending: Pending,
    streams: Streams,
    policy: tokio::sync::watch::Receiver<Policy>,
) {
    let Connection {
        stream,
        peer,
        arrival,
    } = connection;
    let mut arrival = Some(arrival);
    let uid = peer.uid;
    let (read, mut write) = stream.into_split();
    let origin = format!("socket uid={uid}");
    let mut lines = Lines::new(read);
    loop {
        let next = tokio::time::timeout(REQUEST_TIMEOUT, lines.next()).await;
        // Its first request is in (or it never came): the core spawns on.
        arrival.take();
        let next = match next {
            Ok(Ok(next)) => next,
            Ok(Err(_)) => return,
            Err(_) => {
                let reply = Reply::error(
                    ErrorKind::BadRequest,
                    format!(
                        "no whole request line within {} s; closing the connection",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                );
                let _ = write_line(&mut write, &reply).await;
                return;
            }
        };
        match next {
            Next::Eof => return,
            Next::TooLong => {
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
            Next::Line(line) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let context = Context {
                    control: &control,
                    origin: &origin,
                    pending: &pending,
                    streams: &streams,
                    peer: &peer,
                    policy: &policy,
                };
                let keep_going = handle_request(&line, &context, &mut lines, &mut write).await;
                if !keep_going {
                    return;
                }
            }
        }
    }
}

/// What a client sent next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Line(Vec<u8>),
    /// A line over [`MAX_REQUEST`] bytes, skipped.
    TooLong,
    /// The client sends no more (it closed the connection or shut down its sending side).
    Eof,
}

/// A client's request lines, at most [`MAX_REQUEST`] bytes each. Cancel-safe: what was
/// read of an unfinished line stays here, so reading can be raced against a timeout or a
/// `--wait` without losing bytes.
struct Lines<R> {
    reader: AsyncBufReader<R>,
    line: Vec<u8>,
    too_long: bool,
    ready: Option<Next>,
}

impl<R: tokio::io::AsyncRead + Unpin> Lines<R> {
    fn new(read: R) -> Lines<R> {
        Lines {
            reader: AsyncBufReader::new(read),
            line: Vec::new(),
            too_long: false,
            ready: None,
        }
    }

    /// Reads until the next line (or the end of a too-long one, or the end of the stream)
    /// is at hand; [`Lines::next`] then takes it.
    async fn fill(&mut self) -> std::io::Result<()> {
        while self.ready.is_none() {
            let buf = self.reader.fill_buf().await?;
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let at_end = buf.is_empty();
            if !self.too_long {
                if self.line.len() + chunk.len() > MAX_REQUEST {
                    self.too_long = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let used = done.unwrap_or(buf.len());
            self.reader.consume(used);
            if done.is_some() || at_end {
                self.ready = Some(if std::mem::take(&mut self.too_long) {
                    Next::TooLong
                } else if at_end && self.line.is_empty() {
                    Next::Eof
                } else {
                    Next::Line(std::mem::take(&mut self.line))
                });
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> std::io::Result<Next> {
        self.fill().await?;
        Ok(self.ready.take().unwrap_or(Next::Eof))
    }
}

/// Resolves once the client has gone: it closed the connection (`ember ctl` after Ctrl-C).
/// A client that only shut down its sending side (`socat` at the end of its input) still
/// waits for its reply; it is told apart by the socket hanging up both ways, looked at
/// once a second from then on. `keep` says whether a request sent meanwhile is kept for
/// later (after a `--wait`) or dropped (while following logs, the connection's last act).
async fn client_gone(lines: &mut Lines<OwnedReadHalf>, keep: bool) {
    loop {
        if lines.fill().await.is_err() {
            return;
        }
        match &lines.ready {
            Some(Next::Eof) => break,
            Some(_) if keep => break,
            _ => lines.ready = None,
        }
    }
    loop {
        match lines.reader.get_ref().ready(Interest::WRITABLE).await {
            Ok(ready) if !ready.is_write_closed() => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One request line: a command, and where the client says it came from (`"via"`: an
/// adapter names the topic or the D-Bus caller, for ember's log; never trusted for rights).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub command: Command,
    pub via: Option<String>,
    /// `"taken":true` on a start, stop or restart with `wait`: a first line,
    /// [`Reply::Taken`], once the command is in the core's queue (an adapter that keeps
    /// its commands in order sends the next one then).
    pub taken: bool,
}

/// Longest `via` kept.
const VIA_MAX: usize = 256;

/// Decodes one request line, or says precisely what is wrong with it (see
/// [`Command::from_json`]).
pub fn decode_request(line: &[u8]) -> Result<Incoming, Error> {
    let mut value = crate::json::parse(line).map_err(|e| {
        Error::new(
            ErrorKind::BadRequest,
            format!("malformed JSON ({e}); send one JSON object per line"),
        )
    })?;
    let via = match value.as_object_mut().and_then(|o| o.remove("via")) {
        None => None,
        // Only a label for the log: a long one is shortened, never a reason to refuse the
        // request (found by a hostile review: the MQTT adapter names the topic, and with
        // a long prefix every command of the board was refused).
        Some(serde_json::Value::String(via)) => Some(shortened_via(via)),
        Some(other) => {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "\"via\" must be a string (where the request came from), not {}",
                    json_type(&other)
                ),
            ))
        }
    };
    let taken = match value.as_object_mut().and_then(|o| o.remove("taken")) {
        None => false,
        Some(serde_json::Value::Bool(taken)) => taken,
        Some(_) => {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "\"taken\" must be true or false".to_owned(),
            ))
        }
    };
    let command = Command::from_value(value)?;
    // What belongs to another request is refused, not ignored (see Command::from_json).
    let waits = matches!(
        &command,
        Command::Start(t) | Command::Stop(t) | Command::Restart(t) if t.wait
    );
    if taken && !waits {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "\"taken\" goes with a start, stop or restart with \"wait\":true".to_owned(),
        ));
    }
    Ok(Incoming {
        command,
        via,
        taken,
    })
}

/// `via` cut to its first [`VIA_MAX`] bytes (at a character's boundary), marked `...`.
fn shortened_via(mut via: String) -> String {
    if via.len() <= VIA_MAX {
        return via;
    }
    let end = (0..=VIA_MAX)
        .rev()
        .find(|&i| via.is_char_boundary(i))
        .unwrap_or(0);
    via.truncate(end);
    via.push_str("...");
    via
}

/// What a connection's requests are served with.
struct Context<'a> {
    control: &'a Control,
    origin: &'a str,
    pending: &'a Pending,
    streams: &'a Streams,
    peer: &'a Peer,
    policy: &'a tokio::sync::watch::Receiver<Policy>,
}

/// Handles one request line; returns false when the connection should close.
async fn handle_request(
    line: &[u8],
    context: &Context<'_>,
    lines: &mut Lines<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
) -> bool {
    let Context {
        control,
        origin,
        pending,
        streams,
        peer,
        policy,
    } = context;
    let _pending = pending.begin();
    let (command, origin, taken) = match decode_request(line) {
        Ok(Incoming {
            command,
            via,
            taken,
        }) => {
            let origin = match via {
                None => origin.to_string(),
                Some(via) => format!("{origin} via {}", via.escape_debug()),
            };
            (command, origin, taken)
        }
        Err(e) => return write_line(write, &Reply::Error(e)).await.is_ok(),
    };
    let origin = origin.as_str();
    // Against the rules in force now: a reload may have changed them since it connected.
    let checked = allowed(&policy.borrow(), peer, &command);
    if let Err(why) = checked {
        tracing::warn!("{origin}: refused {}: {why}", command.verb());
        let reply = Reply::error(ErrorKind::AccessDenied, why);
        return write_line(write, &reply).await.is_ok();
    }
    // A stream lasts as long as the client's right to it: a reload of [[control.allow]]
    // that takes the right away ends it (found by a hostile review: a revoked user kept
    // reading events).
    if let Command::Subscribe(args) = command {
        drop(_pending);
        let revoked = revoked(policy, peer, Command::Subscribe(args.clone()));
        return subscribe(args, control, origin, streams, lines, write, revoked).await;
    }
    // Following: its name, and the request again, to check the right against later rules.
    let follow = match &command {
        Command::Logs(args) if args.follow => Some((args.name.clone(), command.clone())),
        _ => None,
    };
    let wait = matches!(
        &command,
        Command::Start(t) | Command::Stop(t) | Command::Restart(t) if t.wait
    );
    // Subscribe before the command reaches the core, so no line after it is missed.
    let events = follow.as_ref().map(|_| control.lines.subscribe());
    // Waiting (decided by the core) and following end when the client goes: its slot is
    // free again at once, and the core drops a wait nobody reads.
    let reply = if wait {
        let stream = streams.register();
        let queued = match control.enqueue(command, origin).await {
            Ok(queued) => queued,
            Err(reply) => return write_line(write, &reply).await.is_ok(),
        };
        if taken && write_line(write, &Reply::Taken {}).await.is_err() {
            return false;
        }
        tokio::select! {
            reply = crate::protocol::answer(queued) => reply,
            () = client_gone(lines, true) => return false,
            () = stream.evicted() => {
                let _ = write_line(write, &evicted()).await;
                return false;
            }
        }
    } else {
        control.call(command, origin).await
    };
    match (events, follow, reply) {
        (Some(events), Some((name, asked)), Reply::Logs { lines: logged }) => {
            let last_seq = logged.last().map(|l| l.seq).unwrap_or(0);
            if write_line(write, &Reply::Logs { lines: logged })
                .await
                .is_err()
            {
                return false;
            }
            drop(_pending);
            let stream = streams.register();
            let last = tokio::select! {
                () = follow_logs(events, name, last_seq, write) => None,
                () = client_gone(lines, false) => None,
                () = stream.evicted() => Some(self::evicted()),
                why = revoked(policy, peer, asked) => Some(Reply::error(ErrorKind::AccessDenied, why)),
            };
            if let Some(last) = last {
                let _ = write_line(write, &last).await;
            }
            false
        }
        (_, _, reply) => write_line(write, &reply).await.is_ok(),
    }
}

/// Streams every change to a subscriber: a snapshot, then each event after it (those
/// already in the snapshot are left out by their seq), and after falling behind a
/// `lagged` line and a fresh snapshot. Ends when the client goes (or must make room for
/// root); returns false: a stream is a connection's last act.
async fn subscribe(
    args: SubscribeArgs,
    control: &Control,
    origin: &str,
    streams: &Streams,
    lines: &mut Lines<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    revoked: impl std::future::Future<Output = String>,
) -> bool {
    let follower = streams.register();
    // Before the snapshot is asked for, so nothing falls between the two.
    let mut events = control.events.subscribe();
    // The services' lines only when asked for: a receiver makes the core copy each line
    // into the channel and keep the last of them there (every adapter subscribes, and
    // none reads lines).
    let mut log_lines = args.logs.then(|| control.lines.subscribe());
    let Some(mut seen) = send_snapshot(control, origin, write).await else {
        return false;
    };
    let outcome = async {
        loop {
            let event = tokio::select! {
                // Owned here (a copy only while another subscriber still holds it).
                event = events.recv() => event.map(Arc::unwrap_or_clone),
                line = next_line(&mut log_lines) => match line {
                    Ok(line) => Ok(Event::Log(Arc::unwrap_or_clone(line))),
                    // Lines are a stream, not state: what was missed is said in the
                    // stream, and no snapshot can bring it back.
                    Err(broadcast::error::RecvError::Lagged(n)) => Ok(Event::Log(LogLine {
                        service: String::new(),
                        stream: Stream::Ember,
                        line: format!("... {n} lines skipped: this subscriber fell behind"),
                        time_usec: 0,
                        seq: 0,
                    })),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let event = match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let lagged = Reply::Lagged { missed };
                    if write_line(write, &lagged).await.is_err() {
                        return;
                    }
                    match send_snapshot(control, origin, write).await {
                        Some(seq) => seen = seq,
                        None => return,
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let seq = match &event {
                Event::Service(status) => Some(status.seq),
                Event::ServiceRemoved { seq, .. } => Some(*seq),
                Event::System(system) => Some(system.seq),
                Event::Metrics(_) if !args.metrics => continue,
                Event::Log(_) | Event::Metrics(_) => None,
            };
            if let Some(seq) = seq {
                if seq <= seen {
                    continue; // already in the snapshot
                }
                seen = seq;
            }
            if write_line(write, &Reply::Event(Box::new(event)))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        () = outcome => {}
        () = client_gone(lines, false) => {}
        () = follower.evicted() => {
            let _ = write_line(write, &evicted()).await;
        }
        why = revoked => {
            let _ = write_line(write, &Reply::error(ErrorKind::AccessDenied, why)).await;
        }
    }
    false
}

/// The next of the services' lines, for a subscriber that asked for them; never, for one
/// that did not.
async fn next_line(
    lines: &mut Option<broadcast::Receiver<Arc<LogLine>>>,
) -> Result<Arc<LogLine>, broadcast::error::RecvError> {
    match lines {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether `peer` may ask `command` under `policy`, and if not why.
fn allowed(policy: &Policy, peer: &Peer, command: &Command) -> Result<(), String> {
    let own_uid = nix::unistd::geteuid().as_raw();
    match policy.rights(own_uid, peer.uid, &peer.gids) {
        Some(rights) => rights.check(command),
        None => Err("this client is no longer admitted by [[control.allow]]".to_owned()),
    }
}

/// Resolves, with why, once a reload of `[[control.allow]]` takes from `peer` the right
/// to `command` (never, for root and ember's own uid, whose rights no rule decides).
async fn revoked(
    policy: &tokio::sync::watch::Receiver<Policy>,
    peer: &Peer,
    command: Command,
) -> String {
    let mut policy = policy.clone();
    loop {
        if policy.changed().await.is_err() {
            // The rules can no longer change.
            return std::future::pending().await;
        }
        let checked = allowed(&policy.borrow_and_update(), peer, &command);
        if let Err(why) = checked {
            return format!("a reload took this right away: {why}");
        }
    }
}

/// Writes a snapshot of everything; returns the seq it is up to, or None when it could
/// not (the core is gone, or the client does not read).
async fn send_snapshot(control: &Control, origin: &str, write: &mut OwnedWriteHalf) -> Option<u64> {
    match control
        .call(Command::Status(StatusArgs::default()), origin)
        .await
    {
        Reply::Status(status) => {
            let seq = status.seq;
            write_line(write, &Reply::Snapshot(status)).await.ok()?;
            Some(seq)
        }
        Reply::Error(e) => {
            let _ = write_line(write, &Reply::Error(e)).await;
            None
        }
        _ => None,
    }
}

/// The last line of a long-lived connection that had to make room for root.
fn evicted() -> Reply {
    Reply::error(
        ErrorKind::Busy,
        format!("every one of the {MAX_CONNECTIONS} control connections was taken, and root needed one: this one, the oldest that follows or waits, was closed; reconnect"),
    )
}

async fn follow_logs(
    mut lines: broadcast::Receiver<Arc<LogLine>>,
    name: String,
    mut last_seq: u64,
    write: &mut OwnedWriteHalf,
) {
    loop {
        match lines.recv().await {
            Ok(line) if line.service == name && line.seq > last_seq => {
                last_seq = line.seq;
                let lines = vec![Arc::unwrap_or_clone(line)];
                if write_line(write, &Reply::Logs { lines }).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let note = LogLine {
                    service: name.clone(),
                    stream: Stream::Ember,
                    line: format!("... {n} lines skipped: this reader fell behind"),
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

/// The most a reply may hold in the kernel's buffer of its socket (the status of 3,000
/// services is about 800 KB).
const MAX_SEND_BUFFER: usize = 4 << 20;

/// Lets the kernel take a large reply (a status of thousands of services) in one write.
/// With the default buffer (about 200 KB) the reply went out in pieces, one each time
/// this task's turn came, and during a boot the main loop spends 10 ms between turns
/// spawning: the status of 3,000 services took 85 ms to send instead of one write. The
/// memory is the kernel's, and only until the client has read it. Forced as root (past
/// `net.core.wmem_max`); otherwise as large as that allows.
fn make_room_for(write: &OwnedWriteHalf, len: usize) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let stream: &UnixStream = write.as_ref();
    // The kernel counts its own overhead against the buffer too: ask for twice as much.
    let wanted = len.saturating_mul(2).min(MAX_SEND_BUFFER);
    if getsockopt(stream, sockopt::SndBuf).is_ok_and(|now| now >= wanted) {
        return;
    }
    if setsockopt(stream, sockopt::SndBufForce, &wanted).is_err() {
        let _ = setsockopt(stream, sockopt::SndBuf, &wanted);
    }
}

async fn write_line(write: &mut OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    make_room_for(write, bytes.len());
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await {
        Ok(written) => written,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client does not read its replies",
        )),
    }
}

/// The blocking client `ember ctl` uses: one request, one reply (and, when following
/// logs, more replies until the connection ends).
pub struct Client {
    reader: BufReader<StdUnixStream>,
    writer: StdUnixStream,
    path: PathBuf,
}

impl Client {
    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connect(path: &Path) -> Result<Client, String> {
        let stream = StdUnixStream::connect(path).map_err(|e| match e.kind() {
            // "Is ember running?" would send one looking at the wrong thing.
            _ if path.as_os_str().is_empty() => {
                "the control socket's path is empty; pass --socket PATH".to_owned()
            }
            // sun_path holds 108 bytes, with the NUL that ends them.
            _ if path.as_os_str().len() > 107 => format!(
                "cannot reach ember at {}: the path is {} bytes, and a Unix socket's is at most 107 (ember could not have made it there)",
                crate::text::shortened(&path.to_string_lossy()),
                path.as_os_str().len()
            ),
            _ if not_a_socket(path).is_some() => format!(
                "cannot reach ember at {}: it is {}, not a socket; pass ember's control socket with --socket PATH (`socket` of [control] in ember.toml)",
                path.display(),
                not_a_socket(path).unwrap_or_default(),
            ),
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

    /// Sends one request and reads its reply.
    pub fn call(&mut self, request: &Command) -> Result<Reply, String> {
        if let Some(reply) = self.call_or_closed(request)? {
            return Ok(reply);
        }
        // Closed unanswered: a reexec closes every connection, and the next binary answers
        // on the same socket. What only reads is asked again there; a change is not (a
        // restart would be done twice, if the old binary had done it).
        if crate::rights::READ_VERBS.contains(&request.verb()) {
            *self = Client::connect(&self.path)?;
            if let Some(reply) = self.call_or_closed(request)? {
                return Ok(reply);
            }
        }
        Err(format!(
            "ember at {} closed the connection before it answered (it re-executed, or stopped); `ember ctl status` tells what was done, then ask again",
            self.path.display()
        ))
    }

    /// Sends one request and reads its reply; `None` when ember closed the connection
    /// instead of replying (what a successful `reexec` does: the new binary answers on a
    /// new connection).
    pub fn call_or_closed(&mut self, request: &Command) -> Result<Option<Reply>, String> {
        let mut bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        // Said here, in words for the person who typed it: ember would refuse it whole.
        if bytes.len() > MAX_REQUEST {
            return Err(format!(
                "the request is {} bytes, more than the {MAX_REQUEST} ember reads; a service name is at most 64 characters, a path at most 4096",
                bytes.len()
            ));
        }
        if let Err(e) = self.writer.write_all(&bytes) {
            // ember may have refused the connection (busy, access denied) and closed it
            // before the request was sent: its reason is waiting to be read.
            if let Ok(Some(reply)) = self.next_reply() {
                return Ok(Some(reply));
            }
            return Err(format!(
                "cannot send to ember at {}: {e}",
                self.path.display()
            ));
        }
        self.next_reply()
    }

    /// Reads the next reply line; `None` at the end of the connection.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, String> {
        // Bytes, not a String: the parser checks the UTF-8 of every string it reads, and
        // a String checked the whole line again first (8% of a status of 3,000).
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read from ember at {}: {e}", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            return Err(format!(
                "ember at {} closed the connection in the middle of its reply; did it stop? (ask again: `ember ctl status`)",
                self.path.display()
            ));
        }
        crate::json::from_slice(&line).map(Some).map_err(|e| {
            format!(
                "{} answered what this client cannot read ({e}); is it ember's control socket, of an ember no newer than this client?",
                self.path.display()
            )
        })
    }
}

/// What `path` is when it exists and is not a socket: "a regular file", "a directory".
fn not_a_socket(path: &Path) -> Option<&'static str> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(match () {
        _ if kind.is_socket() => return None,
        _ if kind.is_dir() => "a directory",
        _ if kind.is_file() => "a regular file",
        _ => "a device or a pipe",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of the test's own, removed at the end.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ember-ipc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_socket_path_that_is_no_socket_is_said_so() {
        let dir = scratch("no-socket");
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        for (path, what) in [(&file, "a regular file"), (&dir, "a directory")] {
            let Err(e) = Client::connect(path) else {
                panic!("connected to {what}");
            };
            assert!(
                e.contains(&format!("is {what}, not a socket")) && e.contains("--socket"),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_or_too_long_socket_path_is_said_so() {
        let e = Client::connect(Path::new("")).err().unwrap();
        assert!(e.contains("path is empty"), "{e}");
        let e = Client::connect(&PathBuf::from("/".repeat(200)))
            .err()
            .unwrap();
        assert!(e.contains("at most 107"), "{e}");
    }

    /// A server that answers each connection with `answer`, then closes it.
    fn answering(tag: &str, answer: &'static [u8]) -> (PathBuf, PathBuf) {
        let dir = scratch(tag);
        let path = dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = String::new();
                let _ = BufReader::new(&stream).read_line(&mut request);
                let _ = stream.write_all(answer);
            }
        });
        (dir, path)
    }

    /// What a reexec does to a request in flight: its connection closes unanswered, and
    /// the next binary answers on the same socket.
    #[test]
    fn a_request_that_only_reads_is_asked_again_when_its_connection_closes_unanswered() {
        let dir = scratch("closed");
        let path = dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut request = String::new();
                let _ = BufReader::new(&stream).read_line(&mut request);
                // Every other connection is closed unanswered.
                if n % 2 == 1 {
                    let _ = stream.write_all(
                        br#"{"hello":{"protocol":1,"ember":"9.9.9","device":"d","role":"machine"}}
"#,
                    );
                }
            }
        });
        let hello = Command::Hello(HelloArgs {
            protocol: PROTOCOL,
            client: None,
        });
        let reply = Client::connect(&path).and_then(|mut c| c.call(&hello));
        assert!(matches!(reply, Ok(Reply::Hello(_))), "{reply:?}");
        // A change is not sent twice (a restart would be done twice): said instead.
        let e = Client::connect(&path)
            .and_then(|mut c| c.call(&Command::Reload))
            .unwrap_err();
        assert!(e.contains("ask again"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reply_cut_short_or_not_ember_s_is_said_so() {
        let (dir, path) = answering("cut", br#"{"status":{"seq":1,"sys"#);
        let e = Client::connect(&path)
            .and_then(|mut c| c.call(&Command::Reload))
            .unwrap_err();
        assert!(e.contains("in the middle of its reply"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let (dir, path) = answering("http", b"HTTP/1.0 400 Bad Request\r\n\r\n");
        let e = Client::connect(&path)
            .and_then(|mut c| c.call(&Command::Reload))
            .unwrap_err();
        assert!(e.contains("is it ember's control socket"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_are_counted_by_their_kind() {
        let mut refusals = Refusals::default();
        let start = std::time::Instant::now();
        let line = |r: &mut Refusals, kind, at| {
            r.line(kind, start + Duration::from_secs(at), || "x".into())
        };
        assert_eq!(
            line(&mut refusals, ErrorKind::Busy, 0).as_deref(),
            Some("x")
        );
        for _ in 0..436 {
            assert_eq!(line(&mut refusals, ErrorKind::Busy, 1), None);
        }
        // The first refused uid is told without the busy ones' count.
        assert_eq!(
            line(&mut refusals, ErrorKind::AccessDenied, 2).as_deref(),
            Some("x")
        );
        assert_eq!(line(&mut refusals, ErrorKind::AccessDenied, 3), None);
        let busy = line(&mut refusals, ErrorKind::Busy, 11).unwrap_or_default();
        assert!(busy.contains("436 more like it"), "{busy}");
        let denied = line(&mut refusals, ErrorKind::AccessDenied, 12).unwrap_or_default();
        assert!(denied.contains("1 more like it"), "{denied}");
    }

    /// Found by a hostile review: a status-only user held every slot with idle
    /// connections, and root's `ember ctl status` (and `poweroff`) got `busy`.
    #[test]
    fn users_leave_root_its_slots_and_one_user_leaves_the_others_theirs() {
        let users = UserSlots::default();
        let mut held: Vec<UserSlot> = (0..PER_USER)
            .map(|_| users.take(1000).expect("within one user's share"))
            .collect();
        let e = users.take(1000).err().expect("one user's share is full");
        assert!(e.contains("uid 1000 holds 16"), "{e}");
        for uid in 1001.. {
            match users.take(uid) {
                Ok(slot) => held.push(slot),
                Err(e) => {
                    assert!(e.contains("kept for root"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(held.len(), MAX_CONNECTIONS - KEPT_FOR_ROOT);
        // Dropped, given back: uid 1000 at 15 may take one more, not two.
        held.truncate(PER_USER - 1);
        let sixteenth = users.take(1000).expect("given back when dropped");
        assert!(users.take(1000).is_err());
        drop(sixteenth);
    }

    #[test]
    fn decodes_requests() {
        let c = decode_request(br#"{"cmd":"start","names":["a"],"wait":true}"#)
            .unwrap()
            .command;
        assert_eq!(
            c,
            Command::Start(Targets {
                names: vec!["a".into()],
                wait: true
            })
        );
        let c = decode_request(br#"{"cmd":"stop","names":["a"],"wait":true,"taken":true}"#);
        assert!(c.is_ok_and(|c| c.taken));
        let c = decode_request(br#"{"cmd":"logs","name":"a","follow":true,"via":"x"}"#).unwrap();
        assert_eq!(c.via.as_deref(), Some("x"));
        // A long via is shortened (at a character's boundary), not refused.
        let long = format!(r#"{{"cmd":"status","via":"{}"}}"#, "é".repeat(200));
        let via = decode_request(long.as_bytes()).unwrap().via.unwrap();
        assert!(via.len() <= VIA_MAX + 3 && via.ends_with("é..."), "{via}");
        let e = decode_request(br#"{"cmd":"status","via":5}"#).unwrap_err();
        assert!(e.message.contains("\"via\" must be a string"), "{e}");
        let c = c.command;
        assert!(matches!(c, Command::Logs(LogsArgs { follow: true, .. })));
        // What belongs to another verb is refused, not ignored.
        for line in [
            &br#"{"cmd":"status","wait":true}"#[..],
            br#"{"cmd":"start","names":["a"],"follow":true}"#,
            br#"{"cmd":"status","cmd":"reboot"}"#,
            br#"{"cmd":"start","names":["a"],"wait":true,"taken":"yes"}"#,
            br#"{"cmd":"start","names":["a"],"taken":true}"#,
            br#"{"cmd":"status","taken":true}"#,
        ] {
            match decode_request(line) {
                Err(e) => assert_eq!(e.kind, ErrorKind::BadRequest),
                other => panic!("expected bad_request, got {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_lines() {
        let mut input = vec![b'x'; MAX_REQUEST + 10];
        input.extend_from_slice(b"\n{\"cmd\":\"status\"}\n");
        input.extend_from_slice(&vec![b'y'; 3 * MAX_REQUEST]);
        input.extend_from_slice(b"\nlast");
        let mut lines = Lines::new(&input[..]);
        assert_eq!(lines.next().await.unwrap(), Next::TooLong);
        assert_eq!(
            lines.next().await.unwrap(),
            Next::Line(br#"{"cmd":"status"}"#.to_vec())
        );
        assert_eq!(lines.next().await.unwrap(), Next::TooLong);
        assert!(
            lines.line.capacity() <= MAX_REQUEST,
            "a long line is not kept"
        );
        assert_eq!(lines.next().await.unwrap(), Next::Line(b"last".to_vec()));
        assert_eq!(lines.next().await.unwrap(), Next::Eof);
    }

    /// A core that answers a start with "activating", or, with `wait`, `settle_after`
    /// later with "active" (never, without it); logs with nothing, anything else with ok.
    fn fake_core(settle_after: Option<Duration>) -> Control {
        let (requests, mut asked) = tokio::sync::mpsc::channel::<Request>(8);
        let events = crate::broadcast::Broadcast::new(16);
        let lines = crate::broadcast::Broadcast::new(16);
        tokio::spawn(async move {
            let mut unanswered = Vec::new();
            while let Some(request) = asked.recv().await {
                let reply = match &request.command {
                    Command::Start(t) if t.wait => {
                        match settle_after {
                            Some(after) => {
                                tokio::spawn(async move {
                                    tokio::time::sleep(after).await;
                                    let up = status(State::Active, Sub::Running, Want::Up);
                                    let _ = request.reply.send(Reply::Ok { services: vec![up] });
                                });
                            }
                            None => unanswered.push(request),
                        }
                        continue;
                    }
                    Command::Start(_) => Reply::Ok {
                        services: vec![status(State::Activating, Sub::Start, Want::Up)],
                    },
                    Command::Logs(_) => Reply::Logs { lines: Vec::new() },
                    _ => Reply::ok(),
                };
                let _ = request.reply.send(reply);
            }
        });
        Control {
            requests,
            events,
            lines,
        }
    }

    /// A connection served as ember serves one, and the client's end of it.
    fn connect(control: Control) -> (tokio::task::JoinHandle<()>, UnixStream) {
        let (task, client, _) = connect_counted(control);
        (task, client)
    }

    /// [`connect`], and the pending work it counts in.
    fn connect_counted(control: Control) -> (tokio::task::JoinHandle<()>, UnixStream, Pending) {
        let (server, client) = UnixStream::pair().unwrap();
        let pending = Pending::default();
        let connection = Connection {
            stream: server,
            peer: Peer {
                uid: 0,
                gids: Vec::new(),
            },
            arrival: pending.arrive(),
        };
        (
            tokio::spawn(serve_connection(
                connection,
                control,
                pending.clone(),
                Streams::default(),
                tokio::sync::watch::channel(Policy::default()).1,
            )),
            client,
            pending,
        )
    }

    impl Pending {
        /// Whether a client would count as arriving at the moment the last one came
        /// (the grace is the other test's; this machine may be slow).
        fn arriving_when_the_last_came(&self) -> bool {
            let last = self.arrivals().iter().max().copied();
            last.is_some_and(|at| self.arriving_at(at))
        }
    }

    #[tokio::test]
    async fn a_client_is_arriving_until_its_first_request_is_read() {
        let (_task, mut client, pending) = connect_counted(fake_core(None));
        // Its task has begun to read, and found nothing yet.
        tokio::task::yield_now().await;
        assert!(pending.arriving_when_the_last_came());
        // Half a line is not a request yet.
        client.write_all(br#"{"cmd":"#).await.unwrap();
        tokio::task::yield_now().await;
        assert!(pending.arriving_when_the_last_came());
        client
            .write_all(b"\"start\",\"names\":[\"a\"]}\n")
            .await
            .unwrap();
        assert!(read_reply(&mut client).await.contains("services"));
        assert!(!pending.arriving_when_the_last_came());
        // And one that leaves without a word is no longer arriving either.
        let (task, client, pending) = connect_counted(fake_core(None));
        drop(client);
        task.await.unwrap();
        assert!(!pending.arriving_when_the_last_came());
    }

    /// One that stays silent counts as arriving for a moment only: an idle connection
    /// must not hold the core's spawns back. Nor does it lend its count to a client
    /// that came after it and has been served.
    #[test]
    fn a_silent_client_is_arriving_for_a_moment_only() {
        let pending = Pending::default();
        let silent = pending.arrive();
        assert!(pending.arriving_at(silent.at + ARRIVAL_GRACE / 2));
        assert!(!pending.arriving_at(silent.at + ARRIVAL_GRACE));
        let next = pending.arrive();
        assert!(pending.arriving_at(next.at));
        let served = next.at;
        drop(next);
        assert!(
            !pending.arriving_at(served.max(silent.at + ARRIVAL_GRACE)),
            "a served client still counted, by the silent one's count"
        );
        drop(silent);
        assert!(!pending.arriving_at(served));
    }

    async fn read_reply(client: &mut UnixStream) -> String {
        let mut reader = AsyncBufReader::new(client);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        line
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_idle_or_slow_client_is_closed_after_the_request_timeout() {
        let (served, mut idle) = connect(fake_core(None));
        let started = tokio::time::Instant::now();
        let reply = read_reply(&mut idle).await;
        assert!(
            reply.contains("no whole request line within 30 s"),
            "{reply}"
        );
        assert!(reply.contains("bad_request"), "{reply}");
        served.await.unwrap();
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);

        // A byte every few seconds does not keep a slot either.
        let (served, mut slow) = connect(fake_core(None));
        let started = tokio::time::Instant::now();
        let dribble = async {
            for b in br#"{"cmd":"status"}"# {
                if slow.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        };
        tokio::select! {
            _ = served => {}
            () = dribble => panic!("the slow request was read to its end"),
        }
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_client_that_leaves_during_a_wait_or_a_follow_frees_its_slot() {
        for request in [
            &br#"{"cmd":"start","names":["a"],"wait":true}"#[..],
            br#"{"cmd":"logs","name":"a","follow":true}"#,
        ] {
            let (served, mut client) = connect(fake_core(None));
            client.write_all(request).await.unwrap();
            client.write_all(b"\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(
                !served.is_finished(),
                "it gave up on a client that is there"
            );
            drop(client);
            tokio::time::timeout(Duration::from_secs(1), served)
                .await
                .expect("the connection outlived its client")
                .unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_client_that_only_stopped_sending_still_gets_its_reply() {
        // `echo '{...,"wait":true}' | socat -t 100 - UNIX-CONNECT:...` shuts down its
        // sending side, then waits for the reply.
        let (served, mut client) = connect(fake_core(Some(Duration::from_secs(5))));
        client
            .write_all(b"{\"cmd\":\"start\",\"names\":[\"a\"],\"wait\":true}\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let reply = read_reply(&mut client).await;
        assert!(reply.contains("\"state\":\"active\""), "{reply}");
        served.await.unwrap();
    }

    #[test]
    fn the_client_reads_why_a_connection_was_refused_before_its_request() {
        let dir = std::env::temp_dir().join(format!("ember-ipc-refused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = serde_json::to_vec(&Reply::error(ErrorKind::Busy, "full")).unwrap();
            line.push(b'\n');
            stream.write_all(&line).unwrap();
        });
        let mut client = Client::connect(&path).unwrap();
        server.join().unwrap();
        let reply = client.call(&Command::Status(StatusArgs::default()));
        let _ = std::fs::remove_dir_all(&dir);
        match reply {
            Ok(Reply::Error(e)) => assert_eq!(e.kind, ErrorKind::Busy),
            other => panic!("expected the busy reply, got {other:?}"),
        }
    }

    fn status(state: State, sub_state: Sub, want: Want) -> ServiceStatus {
        ServiceStatus {
            name: "a".into(),
            state,
            sub_state,
            want,
            ..Default::default()
        }
    }

    /// A core whose status says "a" at seq 5; events are sent by the test.
    fn snapshot_core() -> Control {
        let (requests, mut asked) = tokio::sync::mpsc::channel::<Request>(8);
        let events = crate::broadcast::Broadcast::new(4);
        let lines = crate::broadcast::Broadcast::new(4);
        tokio::spawn(async move {
            while let Some(request) = asked.recv().await {
                let mut a = status(State::Active, Sub::Running, Want::Up);
                a.seq = 5;
                let _ = request.reply.send(Reply::Status(StatusReply {
                    seq: 5,
                    system: SystemStatus {
                        state: SystemState::Running,
                        config: ConfigStatus::default(),
                        seq: 1,
                        watchdog: None,
                    },
                    services: vec![a],
                }));
            }
        });
        Control {
            requests,
            events,
            lines,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_subscriber_gets_a_snapshot_then_every_later_change_and_is_told_when_it_lags() {
        let control = snapshot_core();
        let (served, client) = connect(control.clone());
        let (read, mut write) = client.into_split();
        let mut read = AsyncBufReader::new(read);
        write.write_all(b"{\"cmd\":\"subscribe\"}\n").await.unwrap();
        async fn next_of(read: &mut AsyncBufReader<OwnedReadHalf>) -> Reply {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            crate::json::from_slice::<Reply>(line.as_bytes()).unwrap()
        }
        let Reply::Snapshot(first) = next_of(&mut read).await else {
            panic!("a snapshot first")
        };
        assert_eq!(first.seq, 5);
        // An event already in the snapshot is left out; a later one comes through.
        let change = |seq| {
            let mut s = status(State::Activating, Sub::Start, Want::Up);
            s.seq = seq;
            Event::Service(s)
        };
        assert!(control.events.send(Arc::new(change(4))) > 0);
        assert!(control.events.send(Arc::new(change(6))) > 0);
        match next_of(&mut read).await {
            Reply::Event(event) => match *event {
                Event::Service(s) => assert_eq!(s.seq, 6),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // More than the channel holds before the subscriber reads: it is told, and gets
        // a fresh snapshot; never a silent gap.
        for seq in 7..20 {
            assert!(control.events.send(Arc::new(change(seq))) > 0);
        }
        match next_of(&mut read).await {
            Reply::Lagged { missed } => assert!(missed > 0),
            other => panic!("{other:?}"),
        }
        assert!(matches!(next_of(&mut read).await, Reply::Snapshot(_)));
        drop(write);
        drop(read);
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the stream ends with its client")
            .unwrap();
    }

    /// A subscriber without `logs` holds no receiver of the services' lines (found by a
    /// hostile review: every adapter's subscription made ember copy each line a service
    /// wrote into the lines' channel, and keep the last 1,024 there, for nobody).
    #[tokio::test(flavor = "current_thread")]
    async fn a_subscriber_without_logs_takes_no_lines() {
        let control = snapshot_core();
        for logs in [false, true] {
            let (served, client) = connect(control.clone());
            let (read, mut write) = client.into_split();
            let mut read = AsyncBufReader::new(read);
            let request = format!("{{\"cmd\":\"subscribe\",\"logs\":{logs}}}\n");
            write.write_all(request.as_bytes()).await.unwrap();
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("{\"snapshot\""), "{line}");
            assert_eq!(
                control.lines.receiver_count(),
                usize::from(logs),
                "logs {logs}"
            );
            if logs {
                let said = LogLine {
                    service: "a".into(),
                    stream: Stream::Stdout,
                    line: "hello".into(),
                    time_usec: 1,
                    seq: 1,
                };
                assert_eq!(control.lines.send(Arc::new(said)), 1);
                line.clear();
                read.read_line(&mut line).await.unwrap();
                assert!(line.contains("\"log\"") && line.contains("hello"), "{line}");
            }
            drop((write, read));
            tokio::time::timeout(Duration::from_secs(5), served)
                .await
                .expect("the stream ends with its client")
                .unwrap();
        }
    }
}
