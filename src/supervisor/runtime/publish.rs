//! What the runtime tells the world: each service's change and the board's state as
//! events (for `subscribe`, and so the adapters), the system status, and the metrics.

use super::kept::Said;
use super::{give_back_freed_memory, Runtime};
use crate::supervisor::model::{Pid, State, Sub};
use crate::supervisor::{status, usage};
use ember_ipc::{Event, SystemState, SystemStatus};
use std::sync::Arc;

impl Runtime {
    pub(super) fn publish(&mut self, name: &str) {
        let Some(unit) = self.engine.unit(name) else {
            return;
        };
        self.timeline.observe(unit, self.origin.elapsed());
        let said = self
            .services
            .get(name)
            .and_then(|k| k.said.as_ref())
            .map(|(said, _)| said);
        if said.is_some_and(|said| said.same_as(unit)) {
            return;
        }
        // A change of want alone is published but not logged again.
        let before = said.map(|said| (said.state, said.sub));
        let was_active = before.is_some_and(|(state, _)| state == State::Active);
        if (unit.state == State::Active) != was_active {
            // journald is often one of our services: move the log there once it answers,
            // and away from it once it stops.
            crate::log::reprobe();
        }
        self.seq += 1;
        self.services.entry(&unit.spec.name).said = Some((Said::of(unit), self.seq));
        let status = status::service_status(unit, self.now(), self.seq);
        if before != Some((unit.state, unit.sub)) {
            let kept = self.services.entry(&unit.spec.name);
            if super::restarts::log_change(kept.restart_lines.as_deref_mut(), unit) {
                let name = unit.spec.name.clone();
                self.restart_notes_later(&name);
            }
        }
        self.events.send(Arc::new(Event::Service(status)));
    }

    pub(super) fn publish_system_state(&mut self) {
        let tally = self.engine.tally();
        let mut state = status::system_state(tally, self.engine.shutting_down());
        // As systemd: "starting" is the boot. A restart later leaves the system running
        // (or degraded, while something has failed).
        if self.boot_complete && state == SystemState::Starting {
            state = if tally.failed > 0 {
                SystemState::Degraded
            } else {
                SystemState::Running
            };
        }
        if !self.boot_complete && matches!(state, SystemState::Running | SystemState::Degraded) {
            self.boot_complete = true;
            self.timeline.boot_complete(self.now());
            crate::log::info!(
                "boot complete: every service settled {} ms after ember started (uptime {})",
                crate::pid1::since_start().as_millis(),
                crate::pid1::uptime_text()
            );
            give_back_freed_memory();
        }
        if self.system_state != Some(state) {
            self.system_state = Some(state);
            match state {
                SystemState::Degraded => crate::log::warn!("system is degraded"),
                _ => crate::log::debug!("system is {state}"),
            }
            self.publish_system();
        }
    }

    /// Tells the system's state and its configuration's, as a change of its own.
    pub(super) fn publish_system(&mut self) {
        self.seq += 1;
        self.system_seq = self.seq;
        let _ = self
            .events
            .send(Arc::new(Event::System(self.system_status(false))));
    }

    /// The board's state and its configuration's, as status replies and events carry it.
    /// `reply`: for a status reply (the watchdog's last pet), not an event.
    pub(super) fn system_status(&self, reply: bool) -> SystemStatus {
        SystemStatus {
            state: self.system_state.unwrap_or(SystemState::Starting),
            config: self.config_status.clone(),
            seq: self.system_seq,
            watchdog: self.watchdog_status(reply),
        }
    }

    /// A running service's processes and what they use; None when it is not running.
    pub(super) fn measure(&self, name: &str) -> Option<(Vec<Pid>, usage::Usage)> {
        let unit = self.engine.unit(name)?;
        // A oneshot that exited is active with nothing left to measure.
        if !unit.is_running() || unit.sub == Sub::Exited {
            return None;
        }
        let proc = self.services.get(name).map(|k| &k.proc);
        let cgroup = self.cgroup_path(name);
        let cgroup = cgroup.as_deref();
        let pids = usage::processes(cgroup, proc.and_then(|p| p.pgid), unit.pid);
        let figures = usage::measure(cgroup, proc.map(|p| p.cpu_before).unwrap_or(0), &pids);
        Some((pids, figures))
    }

    /// One metrics round: every running service's figures, to MQTT and D-Bus.
    pub(super) fn publish_metrics(&mut self) {
        let metrics: Vec<ember_ipc::Metrics> = self
            .engine
            .units()
            .filter_map(|u| {
                let (_, figures) = self.measure(&u.spec.name)?;
                Some(ember_ipc::Metrics {
                    name: u.spec.name.to_string(),
                    cpu_usec: figures.cpu_usec,
                    memory_bytes: figures.memory_bytes,
                    tasks: figures.tasks,
                })
            })
            .collect();
        if !metrics.is_empty() {
            self.events.send(Arc::new(Event::Metrics(metrics)));
        }
    }
}
