//! One object per service: `io.ember.Init1.Service` at `/io/ember/Init1/service/<label>`.

use crate::auth::{Ctx, Error};
use crate::manager::Shared;
use crate::usage::Figures;
use ember_ipc::{Command, KillArgs, Metrics, ResetFailedArgs, ServiceStatus, Targets};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zbus::message::Header;
use zbus::OwnedVariant;
use zbus::Variant as Value;
use zbus::{interface, Connection};

pub const INTERFACE: &str = "io.ember.Init1.Service";

/// The object of the service `name`. Its properties are read from the adapter's copy
/// (`shared`), which the adapter updates on every event: the object itself is never
/// changed, so zbus never locks it for writing and a call reading it never waits
/// behind one that waits for the bus (see [`crate::gate`]).
pub struct Service {
    pub name: String,
    pub shared: Arc<Mutex<Shared>>,
    pub ctx: Ctx,
}

pub use crate::usage::UNKNOWN;

/// The properties a Get or GetAll has ember measure (see [`Service::figures`]): a call
/// that reads one waits, in a gated task (see [`crate::gate::Properties`]).
pub const MEASURED: [&str; 3] = ["CpuUsec", "MemoryBytes", "Tasks"];

/// All of the interface's methods change something: each waits, in a gated task.
impl crate::readonly::Calls for Service {
    fn gate_of(&self, _member: &str) -> Option<&crate::gate::Gate> {
        Some(&self.ctx.changes)
    }
}

impl Service {
    /// `read` of the service's status in the adapter's copy (of a default status in the
    /// moment between its removal there and its object's).
    fn status<T>(&self, read: impl FnOnce(&ServiceStatus) -> T) -> T {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match shared.services.get(&self.name) {
            Some(status) => read(status),
            None => read(&ServiceStatus::default()),
        }
    }

    /// The service's resource figures: measured for a caller's Get or GetAll (`header`
    /// is the call's), the last known ones when zbus reads the properties for a signal.
    async fn figures(&self, header: Option<Header<'_>>) -> Figures {
        if header.is_some() {
            self.ctx.usage.measure(&self.ctx.control, &self.name).await
        } else {
            self.ctx.usage.last(&self.name)
        }
    }

    async fn command(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        make: fn(Vec<String>) -> Command,
    ) -> Result<(), Error> {
        self.ctx
            .act(conn, header, make(vec![self.name.clone()]))
            .await
            .map(drop)
    }
}

#[interface(name = "io.ember.Init1.Service")]
impl Service {
    async fn start(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| Command::Start(Targets::new(names)))
            .await
    }

    async fn stop(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| Command::Stop(Targets::new(names)))
            .await
    }

    async fn restart(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| Command::Restart(Targets::new(names)))
            .await
    }

    /// Sends `signal` ("SIGHUP", "HUP", "SIGRTMIN+1" or a number) to every process of the service, or
    /// with `main_only` to its main process (systemd's Kill with whom "all" or "main").
    async fn kill(
        &self,
        signal: &str,
        main_only: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let kill = Command::Kill(KillArgs {
            names: vec![self.name.clone()],
            signal: signal.to_owned(),
            main: main_only,
        });
        self.ctx.act(conn, &header, kill).await.map(drop)
    }

    /// Forgets its failures (systemd's ResetFailed): failed, it becomes inactive and
    /// stays down; its restart count, start limit and backoff begin afresh.
    async fn reset_failed(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| {
            Command::ResetFailed(ResetFailedArgs { names })
        })
        .await
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.status(|s| s.state.to_string())
    }

    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.status(|s| s.sub_state.to_string())
    }

    #[zbus(property)]
    fn want(&self) -> String {
        self.status(|s| s.want.to_string())
    }

    /// 0 when nothing runs, as systemd's MainPID.
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> u32 {
        self.status(|s| s.pid.unwrap_or(0))
    }

    #[zbus(property)]
    fn restarts(&self) -> u32 {
        self.status(|s| s.restarts)
    }

    /// The last run's exit code; 0 before any run exited (systemd's ExecMainStatus).
    #[zbus(property)]
    fn exit_code(&self) -> i32 {
        self.status(|s| s.exit_code.unwrap_or(0))
    }

    /// When the current state was entered, microseconds since the epoch.
    #[zbus(property)]
    fn since(&self) -> u64 {
        self.status(|s| s.since_usec)
    }

    /// How the last run that ended went (systemd's Result): success, exit-code, signal,
    /// oom-kill, timeout, watchdog, spawn; "" before any run ended.
    #[zbus(property)]
    fn result(&self) -> String {
        self.status(|s| s.result.map(|r| r.to_string()).unwrap_or_default())
    }

    /// CPU time of the current run, microseconds; u64::MAX when not running.
    #[zbus(property)]
    async fn cpu_usec(&self, #[zbus(header)] header: Option<Header<'_>>) -> u64 {
        self.figures(header).await.cpu_usec
    }

    /// Memory charged to the service now, bytes; u64::MAX when not running.
    #[zbus(property)]
    async fn memory_bytes(&self, #[zbus(header)] header: Option<Header<'_>>) -> u64 {
        self.figures(header).await.memory_bytes
    }

    /// Tasks (threads) it has now; u64::MAX when not running.
    #[zbus(property)]
    async fn tasks(&self, #[zbus(header)] header: Option<Header<'_>>) -> u64 {
        self.figures(header).await.tasks
    }
}

/// The PropertiesChanged of one metrics round.
pub fn metrics_changed(m: &Metrics) -> HashMap<&'static str, Value<'static>> {
    HashMap::from([
        ("CpuUsec", Value::from(m.cpu_usec)),
        ("MemoryBytes", Value::from(m.memory_bytes)),
        ("Tasks", Value::from(u64::from(m.tasks))),
    ])
}

/// Every property of the interface, as GetAll gives them, with `figures` for the
/// resource figures (for GetManagedObjects, which measures nothing).
pub fn properties(s: &ServiceStatus, figures: Figures) -> HashMap<String, OwnedVariant> {
    let text = |v: String| OwnedVariant::try_from(Value::from(v)).ok();
    [
        ("Name", text(s.name.clone())),
        ("State", text(s.state.to_string())),
        ("SubState", text(s.sub_state.to_string())),
        ("Want", text(s.want.to_string())),
        ("MainPID", Some(OwnedVariant::from(s.pid.unwrap_or(0)))),
        ("Restarts", Some(OwnedVariant::from(s.restarts))),
        (
            "ExitCode",
            Some(OwnedVariant::from(s.exit_code.unwrap_or(0))),
        ),
        ("Since", Some(OwnedVariant::from(s.since_usec))),
        (
            "Result",
            text(s.result.map(|r| r.to_string()).unwrap_or_default()),
        ),
        ("CpuUsec", Some(OwnedVariant::from(figures.cpu_usec))),
        (
            "MemoryBytes",
            Some(OwnedVariant::from(figures.memory_bytes)),
        ),
        ("Tasks", Some(OwnedVariant::from(figures.tasks))),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
    .collect()
}

/// Every property that differs between two statuses, for one PropertiesChanged signal.
pub fn changed(old: &ServiceStatus, new: &ServiceStatus) -> HashMap<&'static str, Value<'static>> {
    let mut map = HashMap::new();
    let mut text = |key, a: &dyn ToString, b: &dyn ToString| {
        let (a, b) = (a.to_string(), b.to_string());
        if a != b {
            map.insert(key, Value::from(b));
        }
    };
    text("Name", &old.name, &new.name);
    text("State", &old.state, &new.state);
    text("SubState", &old.sub_state, &new.sub_state);
    text("Want", &old.want, &new.want);
    if old.pid != new.pid {
        map.insert("MainPID", Value::from(new.pid.unwrap_or(0)));
    }
    if old.restarts != new.restarts {
        map.insert("Restarts", Value::from(new.restarts));
    }
    if old.exit_code != new.exit_code {
        map.insert("ExitCode", Value::from(new.exit_code.unwrap_or(0)));
    }
    if old.result != new.result {
        map.insert(
            "Result",
            Value::from(new.result.map(|r| r.to_string()).unwrap_or_default()),
        );
    }
    if old.since_usec != new.since_usec {
        map.insert("Since", Value::from(new.since_usec));
    }
    map
}
