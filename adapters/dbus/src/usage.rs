//! The services' resource figures (CpuUsec, MemoryBytes, Tasks) as the adapter knows
//! them, so that what any reader on the bus makes ember (PID 1) measure stays bounded.
//!
//! - A caller's Get or GetAll of one service measures that service (one status call, as
//!   systemd reads one unit's cgroup), unless it was measured less than [`FRESH`] ago:
//!   then every caller gets that figure. One measurement runs at a time.
//! - GetManagedObjects and the adapter's own signals measure nothing: they carry the
//!   last figures of the service's current run (from a Get, or from the
//!   `[system] metrics_interval` rounds), u64::MAX when there are none.

use ember_ipc::{Command, Control, Reply, StatusArgs};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// systemd's value for a figure that is not known (the service is not running).
pub const UNKNOWN: u64 = u64::MAX;

/// How long a measurement answers every Get.
pub const FRESH: Duration = Duration::from_secs(1);

/// CPU microseconds, memory bytes, tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    pub cpu_usec: u64,
    pub memory_bytes: u64,
    pub tasks: u64,
}

impl Figures {
    pub const UNKNOWN: Figures = Figures {
        cpu_usec: UNKNOWN,
        memory_bytes: UNKNOWN,
        tasks: UNKNOWN,
    };
}

/// The last figures of each service's current run, and when they were taken.
#[derive(Default)]
pub struct Usage {
    last: Mutex<HashMap<String, (Instant, Figures)>>,
    /// Held while measuring: PID 1 measures for one caller at a time.
    measuring: tokio::sync::Mutex<()>,
    /// Counts the services forgotten: a measurement during which one was keeps nothing,
    /// or it would bring back the figures of a service gone meanwhile, for good.
    forgotten: std::sync::atomic::AtomicU64,
}

impl Usage {
    fn last_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Figures)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last figures of the current run, however old; UNKNOWN when none.
    pub fn last(&self, name: &str) -> Figures {
        self.last_map()
            .get(name)
            .map(|(_, f)| *f)
            .unwrap_or(Figures::UNKNOWN)
    }

    fn fresh(&self, name: &str, now: Instant) -> Option<Figures> {
        self.last_map()
            .get(name)
            .filter(|(at, _)| now.saturating_duration_since(*at) < FRESH)
            .map(|(_, f)| *f)
    }

    /// Figures taken now (a metrics round, or a measurement).
    pub fn record(&self, name: &str, figures: Figures, at: Instant) {
        self.last_map().insert(name.to_owned(), (at, figures));
    }

    /// The service's run ended or it is gone: its figures no longer hold.
    pub fn forget(&self, name: &str) {
        let mut last = self.last_map();
        last.remove(name);
        self.forgotten
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Figures at most [`FRESH`] old: measured now by ember unless another caller's
    /// measurement is recent enough.
    pub async fn measure(&self, control: &Control, name: &str) -> Figures {
        if let Some(f) = self.fresh(name, Instant::now()) {
            return f;
        }
        let _one = self.measuring.lock().await;
        // Measured by the caller we waited for?
        if let Some(f) = self.fresh(name, Instant::now()) {
            return f;
        }
        let forgotten = self.forgotten.load(std::sync::atomic::Ordering::Relaxed);
        let reply = control
            .call(
                Command::Status(StatusArgs {
                    names: vec![name.to_owned()],
                    details: true,
                }),
                "dbus get",
            )
            .await;
        let Reply::Status(status) = reply else {
            return Figures::UNKNOWN;
        };
        let figures = status
            .services
            .first()
            .map(|s| Figures {
                cpu_usec: s.cpu_usec.unwrap_or(UNKNOWN),
                memory_bytes: s.memory_bytes.unwrap_or(UNKNOWN),
                tasks: s.tasks.map(u64::from).unwrap_or(UNKNOWN),
            })
            .unwrap_or(Figures::UNKNOWN);
        // Under the map's lock, as a forget counts: none can come in between.
        let mut last = self.last_map();
        if self.forgotten.load(std::sync::atomic::Ordering::Relaxed) == forgotten {
            last.insert(name.to_owned(), (Instant::now(), figures));
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some() -> Figures {
        Figures {
            cpu_usec: 1,
            memory_bytes: 2,
            tasks: 3,
        }
    }

    #[test]
    fn a_figure_is_fresh_for_a_second_and_kept_until_forgotten() {
        let usage = Usage::default();
        assert_eq!(usage.last("web"), Figures::UNKNOWN);
        let at = Instant::now();
        usage.record("web", some(), at);
        assert_eq!(usage.fresh("web", at + FRESH / 2), Some(some()));
        assert_eq!(usage.fresh("web", at + FRESH), None);
        assert_eq!(usage.last("web"), some());
        usage.forget("web");
        assert_eq!(usage.last("web"), Figures::UNKNOWN);
    }

    /// A service forgotten while its measurement was on its way (an instance made on
    /// demand, stopped and gone meanwhile) is not remembered by it: no figure stays for a
    /// name that is gone (found by a hostile review: one per instance so measured stayed
    /// in the adapter for good).
    #[test]
    fn a_measurement_does_not_bring_back_a_service_forgotten_meanwhile() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let usage = std::sync::Arc::new(Usage::default());
            let (requests, mut rx) = tokio::sync::mpsc::channel::<ember_ipc::Request>(1);
            let control = Control {
                requests,
                events: ember_ipc::broadcast::Broadcast::new(1),
                lines: ember_ipc::broadcast::Broadcast::new(1),
            };
            let gone = usage.clone();
            let core = tokio::spawn(async move {
                let request = rx.recv().await.unwrap();
                // Measured, and then removed: its removal reaches the adapter first.
                gone.forget("worker@1");
                let status = ember_ipc::ServiceStatus {
                    name: "worker@1".into(),
                    cpu_usec: Some(1),
                    memory_bytes: Some(2),
                    tasks: Some(3),
                    ..Default::default()
                };
                let _ = request.reply.send(Reply::Status(ember_ipc::StatusReply {
                    seq: 0,
                    system: ember_ipc::SystemStatus {
                        state: ember_ipc::SystemState::Running,
                        config: Default::default(),
                        seq: 0,
                        watchdog: None,
                    },
                    services: vec![status],
                }));
            });
            assert_eq!(usage.measure(&control, "worker@1").await, some());
            core.await.unwrap();
            assert!(
                usage.last_map().is_empty(),
                "kept: {:?}",
                usage.last_map().keys().collect::<Vec<_>>()
            );
        });
    }
}
