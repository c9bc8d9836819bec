//! How a service's record is shown to the world: [`ember_ipc::ServiceStatus`].

use super::model::{Exit, State, Unit};
use ember_ipc::{ServiceStatus, SystemState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `since` on the monotonic clock becomes wall time by subtracting its age from the wall
/// clock now: a board that sets its clock late (no RTC, NTP after boot) still reads right.
pub fn wall_time(mono_since: Duration, mono_now: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(mono_now.saturating_sub(mono_since))
        .unwrap_or(UNIX_EPOCH)
}

pub fn usec(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn service_status(unit: &Unit, mono_now: Duration, seq: u64) -> ServiceStatus {
    let since = wall_time(unit.since, mono_now);
    ServiceStatus {
        name: unit.spec.name.clone(),
        state: unit.state.word().to_owned(),
        sub_state: unit.sub.word().to_owned(),
        want: unit.want.word().to_owned(),
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
        result: unit.result.map(str::to_owned),
        since: humantime::format_rfc3339_millis(since).to_string(),
        since_usec: usec(since),
        reason: unit.reason.clone(),
        status_text: unit.status_text.clone(),
        ready: unit.spec.ready.kind().to_owned(),
        seq,
        ..Default::default()
    }
}

/// The system as a whole, in systemd's words: starting while any service is on its way
/// up, then degraded when one has failed, else running.
pub fn system_state<'a>(units: impl Iterator<Item = &'a Unit>, shutting_down: bool) -> SystemState {
    if shutting_down {
        return SystemState::Stopping;
    }
    let (mut starting, mut failed) = (false, false);
    for unit in units {
        match unit.state {
            State::Failed => failed = true,
            State::Activating | State::Deactivating => starting = true,
            State::Inactive
                if unit.want == super::model::Want::Up
                    && unit.sub != super::model::Sub::Dependency =>
            {
                starting = true
            }
            _ => {}
        }
    }
    match (starting, failed) {
        (true, _) => SystemState::Starting,
        (false, true) => SystemState::Degraded,
        (false, false) => SystemState::Running,
    }
}
