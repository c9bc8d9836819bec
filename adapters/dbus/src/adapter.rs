//! The D-Bus adapter: `io.ember.Init1` on the system bus, shaped like systemd1.
//!
//! The bus daemon is usually one of ember's own services, so the bus comes and goes, and
//! zbus never reconnects: the adapter watches `Connection::closed()`, then builds a new
//! connection with capped backoff, re-exports every object and re-requests the name.
//! While there is no bus, it keeps nothing but a fresh status list on reconnect. Methods
//! only enqueue a command in the core and return; nothing on the bus waits for a service.

use crate::auth::Ctx;
use crate::label::{service_path, MANAGER_PATH};
use crate::manager::{self, Manager, Shared};
use crate::readonly::ReadOnly;
use crate::service::{self, Service};
use ember_ipc::{
    Command, Control, Event, Metrics, Reply, ServiceStatus, StatusArgs, SystemState, SystemStatus,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

pub const BUS_NAME: &str = "io.ember.Init1";

/// The adapter's settings, from `[dbus]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// "system", "session" or a D-Bus address.
    pub bus: String,
    pub control_group: String,
    pub device: String,
    pub version: String,
    /// The changes being carried out: answered before the adapter leaves the bus.
    pub inflight: crate::auth::Inflight,
    /// Told the seq of every change once it is on the bus.
    pub progress: ember_ipc::link::Progress,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Low: after a bus restart, callers should find ember again within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// A bus that accepts the socket but never answers must not hold the adapter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the bus until ember goes away. A panic ends the whole process (see
/// `ember_ipc::adapter::crash_on_panic`): ember, which supervises it, starts it again.
pub async fn run(settings: Settings, control: Control) {
    Adapter::new(settings, control).run().await
}

struct Adapter {
    settings: Settings,
    control: Control,
    ctx: Ctx,
    shared: Arc<Mutex<Shared>>,
}

/// Why the connected loop ended.
enum End {
    BusLost,
    CoreGone,
}

impl Adapter {
    fn new(settings: Settings, control: Control) -> Adapter {
        let ctx = Ctx::new(
            control.clone(),
            settings.control_group.clone(),
            settings.inflight.clone(),
        );
        Adapter {
            settings,
            control,
            ctx,
            shared: Arc::new(Mutex::new(Shared {
                services: BTreeMap::new(),
                system: SystemStatus {
                    state: SystemState::Starting,
                    config: Default::default(),
                    seq: 0,
                    watchdog: None,
                },
            })),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(mut self) {
        let mut backoff = BACKOFF_FIRST;
        let mut attached_before = false;
        // The last failure to attach said at warning level, as the retries repeat it.
        let mut said: Option<String> = None;
        loop {
            // Subscribe before reading the list: nothing falls between the two.
            let mut events = self.control.events.subscribe();
            if !self.resync().await {
                return; // the core is gone
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, self.attach()).await {
                Ok(Ok(conn)) => {
                    tracing::info!(
                        "dbus: {} {BUS_NAME} on the {} bus",
                        if attached_before {
                            "re-attached as"
                        } else {
                            "serving"
                        },
                        self.settings.bus
                    );
                    attached_before = true;
                    backoff = BACKOFF_FIRST;
                    said = None;
                    match self.serve(&conn, &mut events).await {
                        End::CoreGone => return,
                        End::BusLost => {
                            tracing::warn!("dbus: lost the bus; reconnecting with backoff");
                            continue;
                        }
                    }
                }
                Ok(Err(e)) => self.failed_to_attach(e.to_string(), &mut said),
                Err(_) => self.failed_to_attach("it did not answer in time".into(), &mut said),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Says why the adapter could not attach: a warning when the cause is new (a wrong
    /// address, a policy that does not let ember own its name, a bus daemon down), at
    /// debug level at each retry after. Causes are told apart without their numbers: a
    /// refusal names the connection (":1.42"), new at every retry.
    fn failed_to_attach(&self, why: String, said: &mut Option<String>) {
        let cause: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
        if said.as_ref() == Some(&cause) {
            tracing::debug!(
                "dbus: cannot attach to the {} bus: {why}",
                self.settings.bus
            );
        } else {
            tracing::warn!(
                "dbus: cannot attach to the {} bus: {why}; retrying with backoff",
                self.settings.bus
            );
            *said = Some(cause);
        }
    }

    /// Re-reads every service's status from the core; false when the core is gone.
    async fn resync(&mut self) -> bool {
        match self
            .control
            .call(
                Command::Status(StatusArgs {
                    names: Vec::new(),
                    details: false,
                }),
                "dbus",
            )
            .await
        {
            Reply::Status(status) => {
                let mut shared = self.shared();
                shared.services = status
                    .services
                    .into_iter()
                    .map(|s| (s.name.clone(), s))
                    .collect();
                shared.system = status.system;
                true
            }
            Reply::Error(e) => {
                tracing::debug!("dbus: cannot read the status list: {e}");
                !self.control.requests.is_closed()
            }
            _ => true,
        }
    }

    /// A new connection with every object exported, then the name.
    async fn attach(&self) -> zbus::Result<Connection> {
        let builder = match self.settings.bus.as_str() {
            "system" => zbus::connection::Builder::system(),
            "session" => zbus::connection::Builder::session(),
            address => zbus::connection::Builder::address(address),
        };
        let manager = Manager {
            shared: self.shared.clone(),
            ctx: self.ctx.clone(),
            version: self.settings.version.clone(),
            device: self.settings.device.clone(),
        };
        let conn = builder
            .serve_at(MANAGER_PATH, ReadOnly(manager))
            .serve_at(
                MANAGER_PATH,
                crate::objects::Objects {
                    shared: self.shared.clone(),
                    usage: self.ctx.usage.clone(),
                },
            )
            .build()
            .await?;
        let names: Vec<String> = self.shared().services.keys().cloned().collect();
        for name in names {
            self.export(&conn, name).await?;
        }
        crate::tree::own_ancestors(&conn, &self.shared, &self.ctx.reads).await?;
        if !self.shared().services.is_empty() {
            crate::tree::own_services(&conn, &self.shared, &self.ctx.reads).await?;
        }
        conn.request_name(BUS_NAME).await?;
        Ok(conn)
    }

    /// The object of a service in the adapter's copy, with our Introspectable and
    /// Properties (see [`crate::tree`]).
    async fn export(&self, conn: &Connection, name: String) -> zbus::Result<()> {
        let path = service_path(&name);
        let object = Service {
            name,
            shared: self.shared.clone(),
            ctx: self.ctx.clone(),
        };
        conn.object_server()
            .at(path.as_str(), ReadOnly(object))
            .await?;
        crate::tree::own_service(conn, &path, &self.shared, &self.ctx.reads).await
    }

    /// Turns events into objects and signals until the bus or the core goes.
    async fn serve(
        &mut self,
        conn: &Connection,
        events: &mut broadcast::Receiver<std::sync::Arc<Event>>,
    ) -> End {
        loop {
            tokio::select! {
                _ = conn.closed() => return End::BusLost,
                event = events.recv() => {
                    // The only receiver: the event itself, not a copy.
                    let result = match event.map(std::sync::Arc::unwrap_or_clone) {
                        Ok(Event::Service(status)) => {
                            let seq = status.seq;
                            let done = self.on_service(conn, status).await;
                            self.settings.progress.applied(seq);
                            done
                        }
                        Ok(Event::ServiceRemoved { name, seq }) => {
                            let done = self.on_removed(conn, &name).await;
                            self.settings.progress.applied(seq);
                            done
                        }
                        Ok(Event::System(system)) => {
                            let seq = system.seq;
                            let done = self.set_system(conn, system).await;
                            self.settings.progress.applied(seq);
                            done
                        }
                        Ok(Event::Log(_)) => Ok(()),
                        Ok(Event::Metrics(metrics)) => self.on_metrics(conn, &metrics).await,
                        // We fell behind: the latest of everything is one status call away.
                        Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(conn).await,
                        Err(broadcast::error::RecvError::Closed) => return End::CoreGone,
                    };
                    if let Err(e) = result {
                        if conn.is_closed() {
                            return End::BusLost;
                        }
                        tracing::debug!("dbus: {e}");
                    }
                }
            }
        }
    }

    /// Adds the service's object, or updates it with one PropertiesChanged.
    async fn on_service(&mut self, conn: &Connection, status: ServiceStatus) -> zbus::Result<()> {
        let failed_before = self.shared().failed();
        let previous = self.shared().services.get(&status.name).cloned();
        if previous.as_ref().is_some_and(|p| p.seq > status.seq) {
            return Ok(()); // older than what the status list gave
        }
        self.shared()
            .services
            .insert(status.name.clone(), status.clone());
        let manager = SignalEmitter::new(conn, MANAGER_PATH)?;
        let path = service_path(&status.name);
        if previous.as_ref().is_none_or(|p| p.pid != status.pid) {
            // Another run, or none: the last figures were the previous run's.
            self.ctx.usage.forget(&status.name);
        }
        let state_changed = previous
            .as_ref()
            .is_none_or(|p| p.state != status.state || p.sub_state != status.sub_state);
        match previous {
            None => {
                self.export(conn, status.name.clone()).await?;
                crate::tree::own_services(conn, &self.shared, &self.ctx.reads).await?;
                Manager::service_added(&manager, &status.name, manager::object_path(&status.name))
                    .await?;
            }
            Some(previous) => {
                // The object reads the adapter's copy, updated above.
                let changes = service::changed(&previous, &status);
                if !changes.is_empty() {
                    let object = conn
                        .object_server()
                        .interface::<_, ReadOnly<Service>>(path.as_str())
                        .await?;
                    zbus::fdo::Properties::properties_changed(
                        object.signal_emitter(),
                        service::INTERFACE.try_into()?,
                        changes.iter().map(|(k, v)| (*k, v.clone())).collect(),
                        Cow::Borrowed(&[]),
                    )
                    .await?;
                }
            }
        }
        if state_changed {
            Manager::service_state_changed(
                &manager,
                &status.name,
                status.state.word(),
                status.sub_state.word(),
            )
            .await?;
        }
        self.after_change(conn, failed_before).await
    }

    /// A metrics round: one PropertiesChanged per running service.
    async fn on_metrics(&mut self, conn: &Connection, metrics: &[Metrics]) -> zbus::Result<()> {
        let now = std::time::Instant::now();
        for m in metrics {
            let figures = crate::usage::Figures {
                cpu_usec: m.cpu_usec,
                memory_bytes: m.memory_bytes,
                tasks: u64::from(m.tasks),
            };
            self.ctx.usage.record(&m.name, figures, now);
            let path = service_path(&m.name);
            let Ok(object) = conn
                .object_server()
                .interface::<_, ReadOnly<Service>>(path.as_str())
                .await
            else {
                continue;
            };
            zbus::fdo::Properties::properties_changed(
                object.signal_emitter(),
                service::INTERFACE.try_into()?,
                service::metrics_changed(m),
                Cow::Borrowed(&[]),
            )
            .await?;
        }
        Ok(())
    }

    async fn on_removed(&mut self, conn: &Connection, name: &str) -> zbus::Result<()> {
        let failed_before = self.shared().failed();
        if self.shared().services.remove(name).is_none() {
            return Ok(());
        }
        self.ctx.usage.forget(name);
        conn.object_server()
            .remove::<ReadOnly<Service>, _>(service_path(name).as_str())
            .await?;
        let manager = SignalEmitter::new(conn, MANAGER_PATH)?;
        Manager::service_removed(&manager, name, manager::object_path(name)).await?;
        self.after_change(conn, failed_before).await
    }

    /// NFailed after a service changed.
    async fn after_change(&mut self, conn: &Connection, failed_before: u32) -> zbus::Result<()> {
        let failed = self.shared().failed();
        if failed == failed_before {
            return Ok(());
        }
        let mut changes = std::collections::HashMap::new();
        changes.insert("NFailed", zbus::Variant::from(failed));
        self.manager_changed(conn, changes).await
    }

    /// The system's state or its configuration's changed: one PropertiesChanged with what did.
    async fn set_system(&mut self, conn: &Connection, system: SystemStatus) -> zbus::Result<()> {
        let old = std::mem::replace(&mut self.shared().system, system.clone());
        let mut changes = std::collections::HashMap::new();
        if old.state != system.state {
            changes.insert("SystemState", zbus::Variant::from(system.state.word()));
        }
        if old.config.fallback != system.config.fallback {
            changes.insert(
                "ConfigFallback",
                zbus::Variant::from(system.config.fallback),
            );
        }
        if old.config.problems != system.config.problems {
            changes.insert(
                "ConfigProblems",
                zbus::Variant::from(system.config.problems),
            );
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.manager_changed(conn, changes).await
    }

    async fn manager_changed(
        &self,
        conn: &Connection,
        changes: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(conn, MANAGER_PATH)?;
        zbus::fdo::Properties::properties_changed(
            &emitter,
            manager::INTERFACE.try_into()?,
            changes,
            Cow::Borrowed(&[]),
        )
        .await
    }

    /// After lagging: apply the full list as events, and drop what is gone.
    async fn catch_up(&mut self, conn: &Connection) -> zbus::Result<()> {
        let Reply::Status(status) = self
            .control
            .call(Command::Status(StatusArgs::default()), "dbus")
            .await
        else {
            return Ok(());
        };
        self.set_system(conn, status.system).await?;
        let services = status.services;
        let listed: std::collections::BTreeSet<String> =
            services.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<String> = self
            .shared()
            .services
            .keys()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.on_removed(conn, &name).await?;
        }
        for status in services {
            self.on_service(conn, status).await?;
        }
        Ok(())
    }
}
