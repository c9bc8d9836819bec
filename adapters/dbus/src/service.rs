//! One object per service: `io.ember.Init1.Service` at `/io/ember/Init1/service/<label>`.

use crate::auth::{Ctx, Error};
use ember_ipc::{Command, Metrics, Reply, ServiceStatus, StatusArgs, Targets};
use std::collections::HashMap;
use zbus::message::Header;
use zbus::Variant as Value;
use zbus::{interface, Connection};

pub const INTERFACE: &str = "io.ember.Init1.Service";

/// The object; its status is replaced by the adapter on every event.
pub struct Service {
    pub status: ServiceStatus,
    pub ctx: Ctx,
}

/// systemd's value for a figure that is not known (the service is not running).
pub const UNKNOWN: u64 = u64::MAX;

impl Service {
    /// The service's resource use measured now: a Get of CpuUsec, MemoryBytes or Tasks is
    /// a status call, so no timer is needed for the figures to be fresh.
    async fn measured(&self) -> (u64, u64, u64) {
        let reply = self
            .ctx
            .control
            .call(
                Command::Status(StatusArgs {
                    names: vec![self.status.name.clone()],
                    details: true,
                }),
                "dbus get",
            )
            .await;
        match reply {
            Reply::Status(status) => status
                .services
                .first()
                .map(|s| {
                    (
                        s.cpu_usec.unwrap_or(UNKNOWN),
                        s.memory_bytes.unwrap_or(UNKNOWN),
                        s.tasks.map(u64::from).unwrap_or(UNKNOWN),
                    )
                })
                .unwrap_or((UNKNOWN, UNKNOWN, UNKNOWN)),
            _ => (UNKNOWN, UNKNOWN, UNKNOWN),
        }
    }

    async fn command(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        make: fn(Vec<String>) -> Command,
    ) -> Result<(), Error> {
        self.ctx
            .act(conn, header, make(vec![self.status.name.clone()]))
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

    #[zbus(property)]
    fn name(&self) -> String {
        self.status.name.clone()
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.status.state.to_string()
    }

    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.status.sub_state.to_string()
    }

    #[zbus(property)]
    fn want(&self) -> String {
        self.status.want.to_string()
    }

    /// 0 when nothing runs, as systemd's MainPID.
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> u32 {
        self.status.pid.unwrap_or(0)
    }

    #[zbus(property)]
    fn restarts(&self) -> u32 {
        self.status.restarts
    }

    /// The last run's exit code; 0 before any run exited (systemd's ExecMainStatus).
    #[zbus(property)]
    fn exit_code(&self) -> i32 {
        self.status.exit_code.unwrap_or(0)
    }

    /// When the current state was entered, microseconds since the epoch.
    #[zbus(property)]
    fn since(&self) -> u64 {
        self.status.since_usec
    }

    /// How the last run that ended went (systemd's Result): success, exit-code, signal,
    /// oom-kill, timeout, watchdog, spawn; "" before any run ended.
    #[zbus(property)]
    fn result(&self) -> String {
        self.status
            .result
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    /// CPU time of the current run, microseconds; u64::MAX when not running.
    #[zbus(property)]
    async fn cpu_usec(&self) -> u64 {
        self.measured().await.0
    }

    /// Memory charged to the service now, bytes; u64::MAX when not running.
    #[zbus(property)]
    async fn memory_bytes(&self) -> u64 {
        self.measured().await.1
    }

    /// Tasks (threads) it has now; u64::MAX when not running.
    #[zbus(property)]
    async fn tasks(&self) -> u64 {
        self.measured().await.2
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
