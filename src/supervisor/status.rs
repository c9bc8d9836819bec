//! How a service's record is shown to the world: [`ember_ipc::ServiceStatus`].

use super::model::{Exit, Unit};
use ember_ipc::{ServiceStatus, SystemState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `since` on the monotonic clock becomes wall time through the offset between the two
/// clocks, taken from the wall clock now: a board that sets its clock late (no RTC, NTP
/// after boot) still reads right. The offset only moves when the wall clock has stepped by
/// more than [`CLOCK_STEP`]: the time between reading the monotonic clock and the wall
/// clock must not make the same state read differently each time.
pub fn wall_time(mono_since: Duration, mono_now: Duration) -> SystemTime {
    let wall_now = usec(SystemTime::now()) as i128;
    let candidate = wall_now - mono_now.as_micros() as i128;
    let offset = OFFSET.with(|cached| {
        let offset = stable_offset(cached.get(), candidate);
        cached.set(Some(offset));
        offset
    });
    let micros = offset + mono_since.as_micros() as i128;
    u64::try_from(micros)
        .ok()
        .and_then(|m| UNIX_EPOCH.checked_add(Duration::from_micros(m)))
        .unwrap_or(UNIX_EPOCH)
}

/// Wall-clock changes smaller than this are the clocks' jitter, not a new time.
const CLOCK_STEP: i128 = 1_000_000;

thread_local! {
    /// Wall clock minus monotonic clock, in microseconds, as last taken.
    static OFFSET: std::cell::Cell<Option<i128>> = const { std::cell::Cell::new(None) };
}

/// The offset to use, given the one in use and the one the clocks give now.
fn stable_offset(cached: Option<i128>, candidate: i128) -> i128 {
    match cached {
        Some(offset) if (candidate - offset).abs() <= CLOCK_STEP => offset,
        _ => candidate,
    }
}

pub fn usec(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn service_status(unit: &Unit, mono_now: Duration, seq: u64) -> ServiceStatus {
    let since = wall_time(unit.since, mono_now);
    let next_run = unit.next_run.map(|at| wall_time(at, mono_now));
    ServiceStatus {
        name: unit.spec.name.to_string(),
        state: unit.state,
        sub_state: unit.sub,
        want: unit.want,
        pid: unit.pid.map(|p| p as u32),
        restarts: unit.restarts,
        exit_code: match unit.last_exit {
            Some(Exit::Code(c)) => Some(c),
            _ => None,
        },
        exit_signal: match unit.last_exit {
            Some(Exit::Signal(s)) => Some(s.as_str().to_owned()),
            _ => None,
        },
        result: unit.result,
        since: humantime::format_rfc3339_millis(since).to_string(),
        since_usec: usec(since),
        reason: unit.reason.clone(),
        status_text: unit.status_text.clone(),
        ready: unit.spec.ready.kind(),
        next_run: next_run.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        next_run_usec: next_run.map(usec),
        seq,
        ..Default::default()
    }
}

/// The system as a whole, in systemd's words: starting while any service is on its way
/// up, then degraded when one has failed, else running. From the engine's tally, which it
/// keeps as states change: no scan of every service at every change.
pub fn system_state(tally: ember_engine::engine::Tally, shutting_down: bool) -> SystemState {
    if shutting_down {
        SystemState::Stopping
    } else if tally.starting > 0 {
        SystemState::Starting
    } else if tally.failed > 0 {
        SystemState::Degraded
    } else {
        SystemState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The same state read twice gives the same `since`, however long after the monotonic
    /// clock was read the wall clock is (found by the soak: a status list computed with one
    /// `now` shifted every later service's `since` by microseconds, and each D-Bus catch-up
    /// then sent a PropertiesChanged(Since) for nearly every service).
    #[test]
    fn since_does_not_move_between_reads() {
        let origin = Instant::now();
        let since = origin.elapsed();
        let first = wall_time(since, origin.elapsed());
        std::thread::sleep(Duration::from_millis(3));
        let now = origin.elapsed();
        // The wall clock is read a while after `now`, as for the last of many statuses.
        std::thread::sleep(Duration::from_millis(3));
        let second = wall_time(since, now);
        assert_eq!(usec(first), usec(second));
    }

    /// A step of the wall clock (NTP setting the time on a board without RTC) moves it.
    #[test]
    fn a_clock_step_moves_the_offset_and_jitter_does_not() {
        let base: i128 = 1_700_000_000_000_000;
        assert_eq!(stable_offset(None, base), base);
        assert_eq!(stable_offset(Some(base), base + 900_000), base);
        assert_eq!(stable_offset(Some(base), base - 900_000), base);
        assert_eq!(
            stable_offset(Some(base), base + 1_000_001),
            base + 1_000_001
        );
        assert_eq!(
            stable_offset(Some(base), base - 3_600_000_000),
            base - 3_600_000_000
        );
    }
}
