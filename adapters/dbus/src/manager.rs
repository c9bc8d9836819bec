//! `io.ember.Init1.Manager` at `/io/ember/Init1`: the list, the system, the signals.

use crate::auth::{Ctx, Error};
use crate::label::service_path;
use ember_ipc::{Command, KillArgs, ResetFailedArgs, ServiceStatus, SystemStatus, Targets};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;
use zbus::{interface, Connection};

pub const INTERFACE: &str = "io.ember.Init1.Manager";

/// What the adapter knows, read by the manager's methods and properties.
#[derive(Debug)]
pub struct Shared {
    pub services: BTreeMap<String, ServiceStatus>,
    pub system: SystemStatus,
}

impl Shared {
    pub fn failed(&self) -> u32 {
        self.services
            .values()
            .filter(|s| s.state == ember_ipc::State::Failed)
            .count() as u32
    }
}

pub struct Manager {
    pub shared: Arc<Mutex<Shared>>,
    pub ctx: Ctx,
    pub version: String,
    pub device: String,
}

/// One row of ListServices: name, state, sub_state, pid, restarts, object path.
type Row = (String, String, String, u32, u32, OwnedObjectPath);

fn path_of(name: &str) -> OwnedObjectPath {
    // An escaped label is always a valid path element; "/" stands in rather than a panic.
    OwnedObjectPath::try_from(service_path(name)).unwrap_or_default()
}

impl Manager {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name as the core knows it, or UnknownService.
    fn known(&self, name: &str) -> Result<String, Error> {
        if self.shared().services.contains_key(name) {
            Ok(name.to_owned())
        } else {
            Err(unknown(name))
        }
    }

    async fn service_command(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        name: &str,
        make: fn(Vec<String>) -> Command,
    ) -> Result<(), Error> {
        let name = match self.known(name) {
            Ok(name) => name,
            // Started, an instance of a template (worker@42) is made; stopped, one that is
            // not there is stopped already: ember knows the templates, and says
            // UnknownService when there is none.
            Err(_) if ember_ipc::adapter::may_be_instance(name) => name.to_owned(),
            Err(e) => return Err(e),
        };
        self.ctx.act(conn, header, make(vec![name])).await.map(drop)
    }
}

/// The manager's methods answered at once from the adapter's copy; the others (the
/// changes) ask the bus daemon who calls, then ember, and wait in a gated task.
pub const ANSWERED_AT_ONCE: [&str; 2] = ["ListServices", "GetService"];

impl crate::readonly::Calls for Manager {
    fn gate_of(&self, member: &str) -> Option<&crate::gate::Gate> {
        (!ANSWERED_AT_ONCE.contains(&member)).then_some(&self.ctx.changes)
    }
}

pub fn unknown(name: &str) -> Error {
    Error::UnknownService(format!(
        "no service named \"{}\"; ListServices() shows the services there are",
        // A caller's string of any length: named shortened, as ember names services.
        ember_ipc::text::shortened(name)
    ))
}

#[interface(name = "io.ember.Init1.Manager")]
impl Manager {
    fn list_services(&self) -> Vec<Row> {
        self.shared()
            .services
            .values()
            .map(|s| {
                (
                    s.name.clone(),
                    s.state.to_string(),
                    s.sub_state.to_string(),
                    s.pid.unwrap_or(0),
                    s.restarts,
                    path_of(&s.name),
                )
            })
            .collect()
    }

    fn get_service(&self, name: &str) -> Result<OwnedObjectPath, Error> {
        self.known(name).map(|n| path_of(&n))
    }

    async fn start_service(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.service_command(conn, &header, name, |names| {
            Command::Start(Targets::new(names))
        })
        .await
    }

    async fn stop_service(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.service_command(conn, &header, name, |names| {
            Command::Stop(Targets::new(names))
        })
        .await
    }

    async fn restart_service(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.service_command(conn, &header, name, |names| {
            Command::Restart(Targets::new(names))
        })
        .await
    }

    /// Forgets the service's failures (systemd's ResetFailedUnit): failed, it becomes
    /// inactive and stays down.
    async fn reset_failed_service(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.service_command(conn, &header, name, |names| {
            Command::ResetFailed(ResetFailedArgs { names })
        })
        .await
    }

    /// Sends `signal` ("SIGHUP", "HUP", "SIGRTMIN+1" or a number) to every process of the service
    /// (systemd's KillUnit with whom "all").
    async fn kill_service(
        &self,
        name: &str,
        signal: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let name = self.known(name)?;
        let kill = Command::Kill(KillArgs {
            names: vec![name],
            signal: signal.to_owned(),
            main: false,
        });
        self.ctx.act(conn, &header, kill).await.map(drop)
    }

    /// Forgets the failures of every failed service (systemd's ResetFailed).
    async fn reset_failed(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let every = Command::ResetFailed(ResetFailedArgs::default());
        self.ctx.act(conn, &header, every).await.map(drop)
    }

    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.ctx.act(conn, &header, Command::Reload).await.map(drop)
    }

    async fn power_off(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.ctx
            .act(conn, &header, Command::Poweroff)
            .await
            .map(drop)
    }

    async fn reboot(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.ctx.act(conn, &header, Command::Reboot).await.map(drop)
    }

    #[zbus(signal)]
    pub async fn service_state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        state: &str,
        sub_state: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn service_added(
        emitter: &SignalEmitter<'_>,
        name: &str,
        path: OwnedObjectPath,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn service_removed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        path: OwnedObjectPath,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn version(&self) -> String {
        self.version.clone()
    }

    #[zbus(property)]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// starting | running | degraded | stopping
    #[zbus(property)]
    fn system_state(&self) -> String {
        self.shared().system.state.word().to_owned()
    }

    /// True when the configuration had errors at start-up and ember runs a fallback (no
    /// services) until a reload succeeds; ConfigProblems says why.
    #[zbus(property)]
    fn config_fallback(&self) -> bool {
        self.shared().system.config.fallback
    }

    /// The errors that made the configuration fall back, file:line:col: what to change.
    #[zbus(property)]
    fn config_problems(&self) -> Vec<String> {
        self.shared().system.config.problems.clone()
    }

    /// How many services are failed.
    #[zbus(property, name = "NFailed")]
    fn n_failed(&self) -> u32 {
        self.shared().failed()
    }
}

pub fn object_path(name: &str) -> OwnedObjectPath {
    path_of(name)
}
