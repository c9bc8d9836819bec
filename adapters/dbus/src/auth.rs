//! Errors as callers see them, who may change things, and running a command for a caller.

use crate::gate::Gate;
use ember_ipc::{Command, Control, ErrorKind, Reply};
use std::sync::Arc;
use tokio::sync::Semaphore;
use zbus::fdo::ConnectionCredentials;
use zbus::message::Header;
use zbus::Connection;

/// Commands being executed at once; more get `Busy`.
const MAX_INFLIGHT: usize = 32;

/// The errors of `io.ember.Init1`, each with a message a person can act on.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.ember.Init1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownService(String),
    AccessDenied(String),
    NotAllowed(String),
    Busy(String),
    Failed(String),
}

impl From<ember_ipc::Error> for Error {
    fn from(e: ember_ipc::Error) -> Error {
        match e.kind {
            ErrorKind::UnknownService => Error::UnknownService(e.message),
            ErrorKind::AccessDenied => Error::AccessDenied(e.message),
            ErrorKind::Busy => Error::Busy(e.message),
            // The core refused this command as it stands (e.g. a reload of a broken config).
            ErrorKind::InvalidConfig | ErrorKind::BadRequest | ErrorKind::Failed => {
                Error::NotAllowed(e.message)
            }
            _ => Error::Failed(e.message),
        }
    }
}

/// What every object needs to act for a caller.
#[derive(Clone)]
pub struct Ctx {
    pub control: Control,
    pub control_group: String,
    inflight: Arc<Semaphore>,
    /// The services' resource figures, shared by every object.
    pub usage: Arc<crate::usage::Usage>,
    /// Places for calls waiting for a measurement (see [`crate::gate`]).
    pub reads: Gate,
    /// Places for calls of the methods that change something, while they ask the bus
    /// daemon who calls and then ember (see [`crate::gate`]).
    pub changes: Gate,
}

/// The changes being carried out for callers: before the adapter leaves the bus, they
/// are answered.
pub type Inflight = Arc<Semaphore>;

/// A fresh count of changes in flight.
pub fn inflight() -> Inflight {
    Arc::new(Semaphore::new(MAX_INFLIGHT))
}

/// Waits (at most `within`) until every change in flight has its answer.
pub async fn drain(inflight: &Inflight, within: std::time::Duration) {
    let _ = tokio::time::timeout(within, inflight.acquire_many(MAX_INFLIGHT as u32)).await;
}

impl Ctx {
    pub fn new(control: Control, control_group: String, inflight: Inflight) -> Ctx {
        Ctx {
            control,
            control_group,
            inflight,
            usage: Arc::default(),
            reads: crate::gate::gate(crate::gate::MAX_WAITING_READS),
            changes: crate::gate::gate(crate::gate::MAX_WAITING_CHANGES),
        }
    }

    /// Checks the caller, then hands the command to the core; the core only records the
    /// want, so this returns at once whatever the service does next.
    pub async fn act(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        command: Command,
    ) -> Result<Reply, Error> {
        // Reload, power-off and reboot change the whole system: root's alone, as on the
        // control socket. The control group starts, stops and restarts services.
        let system = matches!(
            command,
            Command::Reload | Command::Poweroff | Command::Reboot | Command::Halt
        );
        let who = self.authorize(conn, header, command.verb(), system).await?;
        if let Command::Start(t) | Command::Stop(t) | Command::Restart(t) = &command {
            let adapter = |n: &String| ember_ipc::adapter::refusal_for_adapter(n, "D-Bus");
            if let Some(why) = t.names.iter().find_map(adapter) {
                return Err(Error::NotAllowed(why));
            }
        }
        let Ok(_permit) = self.inflight.try_acquire() else {
            return Err(Error::Busy(
                "too many D-Bus commands at once; try again in a moment".into(),
            ));
        };
        match self.control.call(command, format!("dbus {who}")).await {
            Reply::Error(e) => Err(e.into()),
            reply => Ok(reply),
        }
    }

    /// Allows uid 0, and for a service command members of `control_group`, from what the
    /// bus daemon knows of the caller (never from anything the caller says). Returns
    /// "uid=N" for the log.
    async fn authorize(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        verb: ember_ipc::Verb,
        system: bool,
    ) -> Result<String, Error> {
        let denied = |why: &str| {
            Error::AccessDenied(if system {
                format!("{verb} over D-Bus needs root; {why}")
            } else {
                format!(
                    "{verb} over D-Bus needs root or membership of group \"{}\"; {why}",
                    self.control_group
                )
            })
        };
        let sender = header
            .sender()
            .ok_or_else(|| denied("the call has no sender"))?;
        let credentials: ConnectionCredentials = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "GetConnectionCredentials",
                &(sender.as_str(),),
            )
            .await
            .and_then(|reply| reply.body().deserialize())
            .map_err(|e| denied(&format!("cannot learn who is calling: {e}")))?;
        let uid = credentials
            .unix_user_id()
            .ok_or_else(|| denied("the bus does not know the caller's uid"))?;
        if uid == 0 || (!system && in_group(uid, credentials.unix_group_ids(), &self.control_group))
        {
            Ok(format!("uid={uid}"))
        } else {
            Err(denied(&format!("the caller is uid {uid}")))
        }
    }
}

/// Whether `uid` belongs to `group`: from the caller's groups when the bus reports them
/// (dbus-daemon 1.15+, exact), else from the group database.
fn in_group(uid: u32, gids: Option<&Vec<u32>>, group: &str) -> bool {
    use nix::unistd::{Group, Uid, User};
    let Ok(Some(group)) = Group::from_name(group) else {
        return false;
    };
    if let Some(gids) = gids {
        return gids.contains(&group.gid.as_raw());
    }
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.gid == group.gid || group.mem.contains(&user.name),
        _ => false,
    }
}
