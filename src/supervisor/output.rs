//! Service output: pipes read line by line, and the last lines kept for `ember ctl logs`.

use super::runtime::Feed;
use ember_ipc::throttle::RateLimit;
use ember_ipc::{LogLine, Stream};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Longer lines are split: a service that never writes a newline cannot grow our memory.
pub const MAX_LINE: usize = 4096;

/// Reads one output pipe until EOF and feeds each line to the runtime. The feed channel is
/// bounded, so a service that floods its output is slowed down, not buffered without end.
pub fn read_lines(fd: OwnedFd, name: String, run: u64, stream: Stream, feed: mpsc::Sender<Feed>) {
    let receiver = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{name}: cannot read its {stream}: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        let mut receiver = receiver;
        let mut buf = vec![0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = match receiver.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' || line.len() >= MAX_LINE {
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_owned();
                    line.clear();
                    if b != b'\n' {
                        line.push(b);
                    }
                    if feed
                        .send(Feed::Line {
                            name: name.clone(),
                            run,
                            stream,
                            line: text,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                } else {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            let text = String::from_utf8_lossy(&line).into_owned();
            let _ = feed
                .send(Feed::Line {
                    name,
                    run,
                    stream,
                    line: text,
                })
                .await;
        }
    });
}

/// The last [`ember_ipc::LOG_LINES_KEPT`] lines of one service.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<LogLine>,
    next_seq: u64,
    /// How many of its lines are copied to ember's own log (the console, /dev/kmsg,
    /// journald): a service printing 100,000 lines a second must not hold PID 1 writing
    /// to a 115,200 baud console. The ring keeps every line regardless.
    copies: Option<RateLimit>,
}

/// Lines a second one service may have copied to ember's log, and at once.
pub const COPY_RATE: u64 = 100;
pub const COPY_BURST: u64 = 1000;
/// Lines a second all services together may have copied.
pub const COPY_RATE_ALL: u64 = 500;
pub const COPY_BURST_ALL: u64 = 2000;

impl LogRing {
    pub fn push(&mut self, service: &str, stream: Stream, line: String, time_usec: u64) -> LogLine {
        self.next_seq += 1;
        let entry = LogLine {
            service: service.to_owned(),
            stream,
            line,
            time_usec,
            seq: self.next_seq,
        };
        if self.lines.len() == ember_ipc::LOG_LINES_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(entry.clone());
        entry
    }

    /// This service's limit on copies to ember's log.
    pub fn copies(&mut self, now: std::time::Instant) -> &mut RateLimit {
        self.copies
            .get_or_insert_with(|| RateLimit::new(COPY_RATE, COPY_BURST, now))
    }

    pub fn last(&self, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let mut ring = LogRing::default();
        for i in 0..250 {
            ring.push("a", Stream::Stdout, format!("line {i}"), 0);
        }
        let last = ring.last(3);
        assert_eq!(
            last.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["line 247", "line 248", "line 249"]
        );
        assert_eq!(last[2].seq, 250);
        assert_eq!(ring.last(1000).len(), ember_ipc::LOG_LINES_KEPT);
    }
}
