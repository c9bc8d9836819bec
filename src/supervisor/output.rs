//! Service output: pipes read line by line, and the last lines kept for `ember ctl logs`.

use super::runtime::Feed;
use ember_ipc::throttle::RateLimit;
use ember_ipc::{LogLine, Stream};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Longer lines are split: a service that never writes a newline cannot grow our memory.
pub const MAX_LINE: usize = 4096;

/// What one read takes from a pipe at most: one buffer for every pipe, so a service that
/// writes nothing costs no buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Ready pipes taken from the kernel at once; the others stay ready for the next round.
const EVENTS_AT_ONCE: usize = 64;

/// One output pipe being read: what `ember ctl reexec` hands to the next binary, whose
/// reader takes over the same pipes (the services never see their output cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPipe {
    pub fd: std::os::fd::RawFd,
    /// Shared by the service's pipes, their list entries and their lines.
    pub name: Arc<str>,
    pub run: u64,
    pub stream: Stream,
}

/// Every pipe being read now, by fd. A pipe leaves it before it is closed (see
/// [`Listed`]), so a number here is never one the kernel has given to something else
/// since.
static OPEN: std::sync::Mutex<Vec<OpenPipe>> = std::sync::Mutex::new(Vec::new());

/// The pipes being read now.
pub fn open_pipes() -> Vec<OpenPipe> {
    OPEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A pipe's entry in [`OPEN`], removed when dropped: declared before the pipe in
/// [`Pipe`], it is dropped before the pipe is closed.
struct Listed(std::os::fd::RawFd);

impl Listed {
    fn new(pipe: OpenPipe) -> Listed {
        let fd = pipe.fd;
        OPEN.lock().unwrap_or_else(|e| e.into_inner()).push(pipe);
        Listed(fd)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p.fd != self.0);
    }
}

/// One pipe of one service's run.
struct Pipe {
    _listed: Listed,
    fd: OwnedFd,
    name: Arc<str>,
    run: u64,
    stream: Stream,
    /// The start of a line not yet ended (released once empty).
    partial: Vec<u8>,
    /// Where its lines go when they go to files of their own (boxed: most have none).
    sink: Option<Box<super::logfiles::Sink>>,
}

/// The pipes being read, by the token their epoll entries carry: an index, and a list of
/// the free ones (a map's spare room and hashed keys cost more than a quiet pipe).
#[derive(Default)]
struct Slots {
    pipes: Vec<Option<Pipe>>,
    free: Vec<usize>,
}

impl Slots {
    /// The token the next [`Slots::insert`] gives.
    fn next_token(&self) -> usize {
        self.free.last().copied().unwrap_or(self.pipes.len())
    }

    fn insert(&mut self, pipe: Pipe) {
        match self.free.pop() {
            Some(token) => self.pipes[token] = Some(pipe),
            None => self.pipes.push(Some(pipe)),
        }
    }

    fn get_mut(&mut self, token: usize) -> Option<&mut Pipe> {
        self.pipes.get_mut(token)?.as_mut()
    }

    fn remove(&mut self, token: usize) -> Option<Pipe> {
        let pipe = self.pipes.get_mut(token)?.take()?;
        self.free.push(token);
        Some(pipe)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Pipe> {
        self.pipes.iter_mut().flatten()
    }

    fn iter(&self) -> impl Iterator<Item = &Pipe> {
        self.pipes.iter().flatten()
    }
}

/// Reads every service's output: one task and one epoll set for all of them, so that a
/// service costs its entry here while it is quiet, not a task of its own, a registration
/// with tokio's driver and a buffer (2 KB a service, massif). Lines go to the runtime on
/// the feed channel, which is bounded: a service that floods its output is slowed down,
/// not buffered without end (and while the runtime catches up, no pipe is read).
pub struct Readers {
    new: mpsc::UnboundedSender<Pipe>,
}

impl Readers {
    /// Starts the reading task (in the current tokio runtime).
    pub fn start(feed: mpsc::Sender<Feed>) -> Readers {
        let (new, pipes) = mpsc::unbounded_channel();
        tokio::spawn(read_all(pipes, feed));
        Readers { new }
    }

    /// Reads `fd` (a service's stdout or stderr) until its end, line by line.
    pub fn read(
        &self,
        fd: OwnedFd,
        name: Arc<str>,
        run: u64,
        stream: Stream,
        sink: Option<super::logfiles::Sink>,
    ) {
        use std::os::fd::AsRawFd;
        // Non-blocking, for reads from the one task: no pipe may hold up the others.
        if let Err(e) = set_nonblocking(&fd) {
            crate::log::warn!("{name}: cannot read its {stream}: {e}");
            return;
        }
        let pipe = Pipe {
            _listed: Listed::new(OpenPipe {
                fd: fd.as_raw_fd(),
                name: name.clone(),
                run,
                stream,
            }),
            fd,
            name,
            run,
            stream,
            partial: Vec::new(),
            sink: sink.map(Box::new),
        };
        let _ = self.new.send(pipe);
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// The reading task: new pipes come on `new`, ready ones from the epoll set.
/// The epoll set, registered with tokio's driver.
fn epoll_set() -> Result<tokio::io::unix::AsyncFd<EpollSet>, String> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags};
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll_create1: {e}"))?;
    // SAFETY: the set owns its fd, which stays open (and the same) until the AsyncFd,
    // its only owner, is dropped.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            EpollSet(epoll),
            tokio::io::Interest::READABLE,
        )
    }
    .map_err(|e| e.to_string())
}

async fn read_all(mut new: mpsc::UnboundedReceiver<Pipe>, feed: mpsc::Sender<Feed>) {
    use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
    let ready = match epoll_set() {
        Ok(ready) => ready,
        Err(e) => {
            // Kept open, unread: a service whose pipe fills waits, it does not die of
            // EPIPE. (This fails only without memory or fds.)
            crate::log::error!("cannot read the services' output: {e}; their output waits unread");
            let mut kept = Vec::new();
            while let Some(pipe) = new.recv().await {
                kept.push(pipe);
            }
            return;
        }
    };
    let epoll = &ready.get_ref().0;
    let mut pipes = Slots::default();
    // Pipes whose lines go to files: only these can have lines waiting for the writer.
    let mut with_sinks: usize = 0;
    // Sinks of ended pipes whose last lines still wait for the writer, and tries left.
    let mut draining: Vec<(Box<super::logfiles::Sink>, u32)> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut events = [EpollEvent::empty(); EVENTS_AT_ONCE];
    let mut accepting = true;
    loop {
        // While lines wait for the file writer, look again shortly even when every
        // service is quiet, so that their last lines get written (no timer otherwise).
        let waiting = !draining.is_empty()
            || (with_sinks > 0
                && pipes
                    .iter()
                    .any(|p| p.sink.as_ref().is_some_and(|s| s.waiting())));
        tokio::select! {
            added = new.recv(), if accepting => {
                let Some(pipe) = added else {
                    accepting = false;
                    continue;
                };
                let event = EpollEvent::new(EpollFlags::EPOLLIN, pipes.next_token() as u64);
                match epoll.add(&pipe.fd, event) {
                    Ok(()) => {
                        with_sinks += usize::from(pipe.sink.is_some());
                        pipes.insert(pipe);
                    }
                    Err(e) => crate::log::warn!("{}: cannot read its {}: {e}", pipe.name, pipe.stream),
                }
            }
            guard = ready.readable() => {
                let Ok(mut guard) = guard else {
                    crate::log::error!("the services' output can no longer be read");
                    return;
                };
                let n = match epoll.wait(&mut events, EpollTimeout::ZERO) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        crate::log::error!("the services' output can no longer be read: epoll_wait: {e}");
                        return;
                    }
                };
                if n == 0 {
                    guard.clear_ready();
                    continue;
                }
                drop(guard);
                for event in &events[..n] {
                    let token = event.data() as usize;
                    let Some(pipe) = pipes.get_mut(token) else { continue };
                    // One read per ready pipe per round: one busy service does not
                    // hold up the others' lines.
                    let (lines, ended) = match nix::unistd::read(&pipe.fd, &mut buf) {
                        Ok(0) => (Vec::new(), true),
                        Ok(n) => (split_lines(&buf[..n], &mut pipe.partial), false),
                        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => (Vec::new(), false),
                        Err(_) => (Vec::new(), true),
                    };
                    for line in lines {
                        if send(&feed, pipe, line).await.is_err() {
                            return;
                        }
                    }
                    if ended {
                        let Some(mut pipe) = pipes.remove(token) else { continue };
                        let _ = epoll.delete(&pipe.fd);
                        with_sinks -= usize::from(pipe.sink.is_some());
                        if !pipe.partial.is_empty() {
                            let text = String::from_utf8_lossy(&pipe.partial).into_owned();
                            pipe.partial = Vec::new();
                            if send(&feed, &mut pipe, text).await.is_err() {
                                return;
                            }
                        }
                        // Ended: what still waits for the file writer gets there, within a
                        // bound.
                        if let Some(mut sink) = pipe.sink.take() {
                            if !sink.flush() {
                                draining.push((sink, FLUSH_TRIES));
                            }
                        }
                    }
                }
            }
            () = tokio::time::sleep(FLUSH_EVERY), if waiting => {
                for pipe in pipes.iter_mut() {
                    if let Some(sink) = &mut pipe.sink {
                        sink.flush();
                    }
                }
                draining.retain_mut(|(sink, tries)| {
                    *tries -= 1;
                    !sink.flush() && *tries > 0
                });
            }
        }
    }
}

/// The epoll set of the output pipes, for tokio to watch: it is readable while one of
/// them is.
struct EpollSet(nix::sys::epoll::Epoll);

impl std::os::fd::AsRawFd for EpollSet {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// One line of `pipe` to its file, if it has one, and to the runtime.
async fn send(
    feed: &mpsc::Sender<Feed>,
    pipe: &mut Pipe,
    line: String,
) -> Result<(), mpsc::error::SendError<Feed>> {
    if let Some(sink) = &mut pipe.sink {
        sink.write(line.clone());
    }
    feed.send(Feed::Line {
        name: pipe.name.clone(),
        run: pipe.run,
        stream: pipe.stream,
        line,
        to_log: pipe.sink.is_none(),
    })
    .await
}

/// How often lines that wait for the file writer are tried again, and how many times
/// once their pipe has ended (20 s).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
const FLUSH_TRIES: u32 = 1000;

/// The whole lines in `bytes`, after what `partial` held; what is left of a line stays in
/// `partial` (released once empty). A line longer than [`MAX_LINE`] is split.
fn split_lines(bytes: &[u8], partial: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    for &b in bytes {
        if b == b'\n' || partial.len() >= MAX_LINE {
            let text = String::from_utf8_lossy(partial)
                .trim_end_matches('\r')
                .to_owned();
            partial.clear();
            if b != b'\n' {
                partial.push(b);
            }
            lines.push(text);
        } else {
            partial.push(b);
        }
    }
    if partial.is_empty() {
        *partial = Vec::new();
    }
    lines
}

/// The last [`ember_ipc::LOG_LINES_KEPT`] lines of one service, compactly: each line's
/// text, time, stream and number, not its service's name (the ring is the service's), and
/// nothing at all until the first line.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<Kept>,
    next_seq: u64,
    /// How many of its lines are copied to ember's own log (the console, /dev/kmsg,
    /// journald): a service printing 100,000 lines a second must not hold PID 1 writing
    /// to a 115,200 baud console. The ring keeps every line regardless.
    copies: Option<RateLimit>,
}

#[derive(Debug)]
struct Kept {
    seq: u64,
    time_usec: u64,
    stream: Stream,
    text: Box<str>,
}

/// Lines a second one service may have copied to ember's log, and at once.
pub const COPY_RATE: u64 = 100;
pub const COPY_BURST: u64 = 1000;
/// Lines a second all services together may have copied.
pub const COPY_RATE_ALL: u64 = 500;
pub const COPY_BURST_ALL: u64 = 2000;

impl LogRing {
    /// Keeps a line handed over at a reexec, with its number: the numbers go on from
    /// there, never back (a follower skips by them the lines it already has).
    pub fn push_carried(&mut self, service: &str, line: LogLine) {
        self.next_seq = self.next_seq.max(line.seq.saturating_sub(1));
        self.push(service, line.stream, line.line, line.time_usec);
    }

    /// Keeps a line; returns it as followers and subscribers get it.
    pub fn push(&mut self, service: &str, stream: Stream, line: String, time_usec: u64) -> LogLine {
        self.next_seq += 1;
        if self.lines.len() == ember_ipc::LOG_LINES_KEPT {
            self.lines.pop_front();
        }
        let entry = LogLine {
            service: service.to_owned(),
            stream,
            line,
            time_usec,
            seq: self.next_seq,
        };
        self.lines.push_back(Kept {
            seq: entry.seq,
            time_usec,
            stream,
            text: entry.line.as_str().into(),
        });
        entry
    }

    /// This service's limit on copies to ember's log.
    pub fn copies(&mut self, now: std::time::Instant) -> &mut RateLimit {
        self.copies
            .get_or_insert_with(|| RateLimit::new(COPY_RATE, COPY_BURST, now))
    }

    /// The last `n` lines, of the service `service`.
    pub fn last(&self, service: &str, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|k| LogLine {
                service: service.to_owned(),
                stream: k.stream,
                line: k.text.to_string(),
                time_usec: k.time_usec,
                seq: k.seq,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `reexec` hands over: exactly the pipes readers hold open, each left before
    /// it is closed.
    #[test]
    fn the_pipes_being_read_are_listed_until_closed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (read, write) = nix::unistd::pipe().unwrap();
            use std::os::fd::AsRawFd;
            let fd = read.as_raw_fd();
            let (feed, mut lines) = mpsc::channel(8);
            let readers = Readers::start(feed);
            readers.read(read, "web".into(), 3, Stream::Stdout, None);
            let listed = |fd| open_pipes().into_iter().find(|p| p.fd == fd);
            assert_eq!(
                listed(fd),
                Some(OpenPipe {
                    fd,
                    name: "web".into(),
                    run: 3,
                    stream: Stream::Stdout
                })
            );
            nix::unistd::write(&write, b"one\n").unwrap();
            assert!(matches!(lines.recv().await, Some(Feed::Line { .. })));
            drop(write);
            while listed(fd).is_some() {
                tokio::task::yield_now().await;
            }
        });
    }

    /// One task reads every pipe: each line reaches the runtime with its service, run and
    /// stream, while another service floods; a last line with no newline comes at the
    /// end; an ended pipe is closed.
    #[test]
    fn one_reader_serves_many_pipes_fairly() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (feed, mut lines) = mpsc::channel(1024);
            let readers = Readers::start(feed);
            let mut ends = Vec::new();
            for i in 0..100 {
                let (read, write) = nix::unistd::pipe().unwrap();
                let stream = if i % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                readers.read(read, format!("s{i}").into(), i, stream, None);
                ends.push(write);
            }
            // s0 floods: 1 MB without end while the others write one line each.
            let flood = vec![b'x'; 1 << 20];
            let flooder = std::thread::spawn({
                let write = ends[0].try_clone().unwrap();
                move || {
                    let _ = nix::unistd::write(&write, &flood);
                }
            });
            for (i, write) in ends.iter().enumerate().skip(1) {
                nix::unistd::write(write, format!("line of s{i}\nlast of s{i}").as_bytes())
                    .unwrap();
            }
            let mut seen = std::collections::BTreeSet::new();
            while seen.len() < 99 {
                match lines.recv().await {
                    Some(Feed::Line {
                        name,
                        run,
                        stream,
                        line,
                        ..
                    }) if &*name != "s0" => {
                        assert_eq!(line, format!("line of {name}"));
                        assert_eq!(format!("s{run}"), &*name);
                        let expected = if run % 2 == 0 {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        };
                        assert_eq!(stream, expected);
                        seen.insert(name);
                    }
                    Some(_) => {}
                    None => panic!("the reader ended"),
                }
            }
            let fds: Vec<_> = open_pipes()
                .into_iter()
                .filter(|p| &*p.name != "s0")
                .collect();
            assert_eq!(fds.len(), 99, "every pipe is listed while open");
            // Their ends: the unfinished last lines come, and the pipes are closed.
            drop(ends.split_off(1));
            let mut last = std::collections::BTreeSet::new();
            while last.len() < 99 {
                if let Some(Feed::Line { name, line, .. }) = lines.recv().await {
                    if &*name != "s0" {
                        assert_eq!(line, format!("last of {name}"));
                        last.insert(name);
                    }
                }
            }
            while open_pipes().iter().any(|p| &*p.name != "s0") {
                tokio::task::yield_now().await;
            }
            // The flood's end: read to its end (the flooder's write returns), then closed.
            drop(ends);
            while open_pipes().iter().any(|p| &*p.name == "s0") {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(10), lines.recv()).await;
            }
            flooder.join().unwrap();
        });
    }

    #[test]
    fn keeps_the_last_lines() {
        let mut ring = LogRing::default();
        for i in 0..250 {
            ring.push("a", Stream::Stdout, format!("line {i}"), 0);
        }
        let last = ring.last("a", 3);
        assert_eq!(
            last.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["line 247", "line 248", "line 249"]
        );
        assert_eq!(last[2].seq, 250);
        assert_eq!(ring.last("a", 1000).len(), ember_ipc::LOG_LINES_KEPT);
        assert_eq!(last[0].service, "a");
    }

    #[test]
    fn lines_are_cut_at_newlines_and_at_the_longest_line() {
        let mut partial = Vec::new();
        assert_eq!(split_lines(b"one\r\ntw", &mut partial), ["one"]);
        assert_eq!(partial, b"tw");
        assert_eq!(split_lines(b"o\n", &mut partial), ["two"]);
        assert_eq!(
            partial.capacity(),
            0,
            "no buffer kept once the line is whole"
        );
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = split_lines(&long, &mut partial);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(partial.len(), 10);
    }
}
