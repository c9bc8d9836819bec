//! `ready = { log }`: a starting service's lines matched against its pattern in PID 1's
//! one loop, so within a bound. A line costs about the pattern's compiled size times the
//! line's length (regex-lite has no DFA); the size is bounded at check
//! ([`crate::config::ready_log_regex`]), and here the time: a pattern that costs more than
//! [`BUDGET`] of every [`WINDOW`] is not matched against the rest of that window's lines,
//! which are counted and said. Otherwise a chatty service with a costly pattern kept
//! ember from answering, reaping or restarting anything else for minutes.

use regex_lite::Regex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
const BUDGET: Duration = Duration::from_millis(100);

pub(super) struct LogReady {
    /// The run whose lines it matches.
    run: u64,
    re: Regex,
    window: Instant,
    spent: Duration,
    /// Lines not matched in this window, said when the next begins.
    skipped: u64,
}

impl LogReady {
    pub(super) fn new(run: u64, re: Regex) -> LogReady {
        LogReady {
            run,
            re,
            window: Instant::now(),
            spent: Duration::ZERO,
            skipped: 0,
        }
    }

    /// Whether `line`, of run `run` of `name`, says it is ready; false for a line not
    /// matched because the pattern has used its time.
    pub(super) fn matches(&mut self, name: &str, run: u64, line: &str) -> bool {
        if run != self.run {
            return false;
        }
        let now = Instant::now();
        if now.duration_since(self.window) >= WINDOW {
            self.tell_skipped(name);
            self.window = now;
            self.spent = Duration::ZERO;
        }
        if self.spent >= BUDGET {
            self.skipped += 1;
            return false;
        }
        let matched = self.re.is_match(line);
        self.spent += now.elapsed();
        matched
    }

    fn tell_skipped(&mut self, name: &str) {
        if self.skipped > 0 {
            crate::log::warn!(
                "{name}: ready log pattern took more than {}ms a second of ember's time; {} lines were not matched (one of them may have been the line it waits for): simplify the pattern (a leading or repeated .* and large counted repetitions cost most)",
                BUDGET.as_millis(),
                self.skipped
            );
            self.skipped = 0;
        }
    }
}
