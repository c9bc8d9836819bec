//! Service output: pipes read line by line, and the last lines kept for `ember ctl logs`.

use super::runtime::Feed;
use ember_ipc::throttle::RateLimit;
use ember_ipc::{LogLine, Stream};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use tokio::sync::mpsc;

/// Longer lines are split: a service that never writes a newline cannot grow our memory.
pub const MAX_LINE: usize = 4096;

/// What one read takes from a pipe at most. The buffer is one per thread, shared by every
/// service: a service that writes nothing costs no buffer.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One output pipe being read: what `ember ctl reexec` hands to the next binary, whose
/// readers take over the same pipes (the services never see their output cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPipe {
    pub fd: std::os::fd::RawFd,
    pub name: String,
    pub run: u64,
    pub stream: Stream,
}

/// Every pipe a reader holds open now, by fd. A reader leaves it before it closes its
/// pipe (see [`Listed`]), so a number here is never one the kernel has given to
/// something else since.
static OPEN: std::sync::Mutex<Vec<OpenPipe>> = std::sync::Mutex::new(Vec::new());

/// The pipes being read now.
pub fn open_pipes() -> Vec<OpenPipe> {
    OPEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A reader's entry in [`OPEN`], removed when dropped: declared after the pipe, it is
/// dropped before it.
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

/// Reads one output pipe until EOF and feeds each line to the runtime. The feed channel is
/// bounded, so a service that floods its output is slowed down, not buffered without end.
/// While the pipe is quiet the task holds nothing but the pipe and a partial line, if any.
// Called from two places (a spawn, a takeover): one copy, not one inlined into each.
#[inline(never)]
pub fn read_lines(
    fd: OwnedFd,
    name: String,
    run: u64,
    stream: Stream,
    feed: mpsc::Sender<Feed>,
    mut sink: Option<super::logfiles::Sink>,
) {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let receiver = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{name}: cannot read its {stream}: {e}");
            return;
        }
    };
    let listed = Listed::new(OpenPipe {
        fd: raw,
        name: name.clone(),
        run,
        stream,
    });
    tokio::spawn(async move {
        let receiver = receiver;
        let _listed = listed;
        let mut partial: Vec<u8> = Vec::new();
        loop {
            // While lines wait for the file writer, look again shortly even when the
            // service is quiet: its last lines get written (no timer otherwise).
            let waiting = sink.as_ref().is_some_and(|s| s.waiting());
            let readable = if waiting {
                match tokio::time::timeout(FLUSH_EVERY, receiver.readable()).await {
                    Ok(readable) => readable,
                    Err(_) => {
                        if let Some(sink) = &mut sink {
                            sink.flush();
                        }
                        continue;
                    }
                }
            } else {
                receiver.readable().await
            };
            if readable.is_err() {
                break;
            }
            // Read into the shared buffer and cut lines, with no await in between: the
            // buffer is free again before anything else runs on this thread.
            let (lines, ended) = SCRATCH.with(|scratch| {
                let mut buf = scratch.borrow_mut();
                buf.resize(READ_CHUNK, 0);
                match receiver.try_read(&mut buf) {
                    Ok(0) => (Vec::new(), true),
                    Ok(n) => (split_lines(&buf[..n], &mut partial), false),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (Vec::new(), false),
                    Err(_) => (Vec::new(), true),
                }
            });
            for line in lines {
                if let Some(sink) = &mut sink {
                    sink.write(line.clone());
                }
                if feed
                    .send(Feed::Line {
                        name: name.clone(),
                        run,
                        stream,
                        line,
                        to_log: sink.is_none(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if ended {
                break;
            }
        }
        if !partial.is_empty() {
            let text = String::from_utf8_lossy(&partial).into_owned();
            if let Some(sink) = &mut sink {
                sink.write(text.clone());
            }
            let _ = feed
                .send(Feed::Line {
                    name,
                    run,
                    stream,
                    line: text,
                    to_log: sink.is_none(),
                })
                .await;
        }
        // Ended: what still waits for the file writer gets there, within a bound.
        if let Some(sink) = &mut sink {
            for _ in 0..FLUSH_TRIES {
                if sink.flush() {
                    break;
                }
                tokio::time::sleep(FLUSH_EVERY).await;
            }
        }
    });
}

/// How often a reader whose lines wait for the file writer tries again, and how many
/// times once its pipe has ended (20 s).
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
            read_lines(read, "web".into(), 3, Stream::Stdout, feed, None);
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
