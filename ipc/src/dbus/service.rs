//! One object per service: `io.ember.Init1.Service` at `/io/ember/Init1/service/<label>`.

use super::auth::{Ctx, Error};
use crate::protocol::{Command, ServiceStatus};
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

impl Service {
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
        self.command(conn, &header, |names| Command::Start { names })
            .await
    }

    async fn stop(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| Command::Stop { names })
            .await
    }

    async fn restart(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.command(conn, &header, |names| Command::Restart { names })
            .await
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.status.name.clone()
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.status.state.clone()
    }

    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.status.sub_state.clone()
    }

    #[zbus(property)]
    fn want(&self) -> String {
        self.status.want.clone()
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
}

/// Every property that differs between two statuses, for one PropertiesChanged signal.
pub fn changed(old: &ServiceStatus, new: &ServiceStatus) -> HashMap<&'static str, Value<'static>> {
    let mut map = HashMap::new();
    let mut text = |key, a: &String, b: &String| {
        if a != b {
            map.insert(key, Value::from(b.clone()));
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
    if old.since_usec != new.since_usec {
        map.insert("Since", Value::from(new.since_usec));
    }
    map
}
