//! What a flood of calls costs: bounded, for every method any caller can reach.
//!
//! zbus gives each call of an interface a task of its own unless the interface says
//! otherwise (`spawn = false`); nothing bounds those tasks, and each holds its message and,
//! once built, its reply. A flood from any user (the policy lets everyone read) grew
//! ember-dbus by hundreds of MiB: ListServices replies waiting side by side for the
//! socket, Gets waiting for a measurement, Peer and Properties calls of zbus's own.
//!
//! So no interface of ours spawns per call, zbus's own Properties, Peer and
//! Introspectable included (replaced at every node, see [`crate::tree`]). A call is either
//!
//! - answered in zbus's dispatching task, one at a time, from the adapter's copy of the
//!   states: its queue holds at most 64 incoming calls, and a full queue makes the bus
//!   daemon hold the rest (ListServices, GetService, Introspect, GetManagedObjects,
//!   Ping, GetMachineId, a Get of a property other than a resource figure), or
//! - one that waits: for ember (a Get of CpuUsec, MemoryBytes or Tasks, GetAll of a
//!   service: a measurement) or for the bus daemon (Start, Stop, Restart and the
//!   manager's changes ask it who is calling). Waiting in the dispatching task would stop
//!   every other caller, and waiting there for the bus would deadlock once the queue is
//!   full (the reply would queue behind the calls). Such a call runs in a task of its
//!   own while one of a fixed number of places is free ([`Gate`]), and otherwise gets
//!   `org.freedesktop.DBus.Error.LimitsExceeded` at once.
//!
//! Nothing the dispatching task awaits can wait for the bus: no interface of ours is ever
//! locked for writing (the objects read the adapter's copy), so the locks it takes are
//! never held up behind a task that waits for the bus.

use std::sync::Arc;
use tokio::sync::Semaphore;
use zbus::message::{Header, Message};
use zbus::names::MemberName;
use zbus::object_server::{DispatchResult, Interface};
use zbus::{BoxDBusError, Connection, ObjectServer};

/// Places for calls that wait, of one kind; a call finding none is refused.
pub type Gate = Arc<Semaphore>;

/// Calls that wait for a measurement by ember, at once.
pub const MAX_WAITING_READS: usize = 32;
/// Calls that change something (each first asks the bus daemon who calls), at once.
pub const MAX_WAITING_CHANGES: usize = 64;

pub fn gate(places: usize) -> Gate {
    Arc::new(Semaphore::new(places))
}

/// An interface of ours that wraps another and decides, for each call, whether it waits.
pub trait Gated: Interface + Sized {
    /// The gate of a call that waits, `None` for one answered at once.
    fn gate_of(&self, msg: &Message, member: &str) -> Option<&Gate>;

    /// The wrapped interface's handling of the call.
    fn forward<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call>;
}

/// `Interface::call` of a [`Gated`] interface: at once, in zbus's dispatching task, or in
/// a task of its own holding a place of its gate, or refused when there is none.
pub fn call<'call, G: Gated>(
    this: &'call G,
    server: &'call ObjectServer,
    connection: &'call Connection,
    msg: &'call Message,
    name: MemberName<'call>,
) -> DispatchResult<'call> {
    let Some(gate) = this.gate_of(msg, name.as_str()) else {
        return this.forward(server, connection, msg, name);
    };
    let Ok(place) = gate.clone().try_acquire_owned() else {
        let refusal = zbus::fdo::Error::LimitsExceeded(format!(
            "too many calls waiting at {}; try again in a moment",
            G::name()
        ));
        return DispatchResult::Async(Box::pin(
            async move { Err(Box::new(refusal) as BoxDBusError) },
        ));
    };
    let connection = connection.clone();
    let msg = msg.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let hdr = msg.header();
        let result = waiting::<G>(&connection, &msg, &hdr, name).await;
        if let Err(e) = result {
            if !hdr
                .primary()
                .flags()
                .contains(zbus::message::Flags::NO_REPLY_EXPECTED)
            {
                let _ = connection.reply_dbus_error(&hdr, e).await;
            }
        }
        drop(place);
    });
    // Answered by the task.
    DispatchResult::Async(Box::pin(async { Ok(()) }))
}

/// A waiting call, in its task: the interface found again at the call's path (the object
/// may have gone meanwhile), then handled as zbus would.
async fn waiting<G: Gated>(
    connection: &Connection,
    msg: &Message,
    hdr: &Header<'_>,
    name: MemberName<'static>,
) -> Result<(), BoxDBusError> {
    let server = connection.object_server();
    let path = hdr
        .path()
        .ok_or_else(|| zbus::fdo::Error::Failed("the call has no path".into()))?;
    let object = server
        .interface::<_, G>(path)
        .await
        .map_err(|_| zbus::fdo::Error::UnknownObject(format!("no object at {path} any more")))?;
    let object = object.get().await;
    let member = name.to_string();
    let outcome = match object.forward(server, connection, msg, name) {
        DispatchResult::Async(future) => future.await,
        DispatchResult::NotFound | DispatchResult::RequiresMut => Err(Box::new(
            zbus::fdo::Error::UnknownMethod(format!("Unknown method '{member}'")),
        ) as BoxDBusError),
    };
    outcome
}

/// `org.freedesktop.DBus.Properties` at one node: zbus's own, whose Get and GetAll route
/// to the node's interfaces, without a task per call. A Get of a resource figure of a
/// service, or a GetAll of a service, has ember measure it: it waits (see the module).
pub struct Properties {
    inner: zbus::fdo::Properties,
    reads: Gate,
}

impl Properties {
    pub fn new(reads: Gate) -> Properties {
        Properties {
            inner: zbus::fdo::Properties,
            reads,
        }
    }
}

impl Gated for Properties {
    fn gate_of(&self, msg: &Message, member: &str) -> Option<&Gate> {
        let body = msg.body();
        let measures = match member {
            "Get" => body
                .deserialize::<(&str, &str)>()
                .is_ok_and(|(iface, property)| {
                    iface == crate::service::INTERFACE
                        && crate::service::MEASURED.contains(&property)
                }),
            "GetAll" => body
                .deserialize::<(&str,)>()
                .is_ok_and(|(iface,)| iface == crate::service::INTERFACE),
            _ => false,
        };
        measures.then_some(&self.reads)
    }

    fn forward<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.inner.call(server, connection, msg, name)
    }
}

#[async_trait::async_trait]
impl Interface for Properties {
    fn name() -> zbus::names::InterfaceName<'static> {
        <zbus::fdo::Properties as Interface>::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        false
    }

    async fn get(
        &self,
        _property_name: &str,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&Header<'_>>,
        _emitter: &zbus::object_server::SignalEmitter<'_>,
    ) -> Option<Result<zbus::OwnedVariant, BoxDBusError>> {
        None
    }

    /// None: nothing for a caller, not announced by zbus (see [`crate::tree`]).
    async fn get_all(
        &self,
        _server: &ObjectServer,
        _connection: &Connection,
        header: Option<&Header<'_>>,
        _emitter: &zbus::object_server::SignalEmitter<'_>,
    ) -> zbus::fdo::Result<std::collections::HashMap<String, zbus::OwnedVariant>> {
        crate::tree::standard_get_all(header)
    }

    fn set<'call>(
        &'call self,
        _property_name: &'call str,
        _value: &'call zbus::Variant<'_>,
        _server: &'call ObjectServer,
        _connection: &'call Connection,
        _header: Option<&'call Header<'_>>,
        _emitter: &'call zbus::object_server::SignalEmitter<'_>,
    ) -> DispatchResult<'call> {
        DispatchResult::NotFound
    }

    async fn set_mut(
        &mut self,
        _property_name: &str,
        _value: &zbus::Variant<'_>,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&Header<'_>>,
        _emitter: &zbus::object_server::SignalEmitter<'_>,
    ) -> Option<Result<(), BoxDBusError>> {
        None
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        call(self, server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        _server: &'call ObjectServer,
        _connection: &'call Connection,
        _msg: &'call Message,
        _name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        DispatchResult::NotFound
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.inner.introspect_to_writer(writer, level)
    }
}

/// `org.freedesktop.DBus.Peer`, which zbus answers at `/` for every path: Ping and
/// GetMachineId, without a task per call.
pub struct Peer;

#[zbus::interface(
    name = "org.freedesktop.DBus.Peer",
    introspection_docs = false,
    spawn = false
)]
impl Peer {
    fn ping(&self) {}

    /// As zbus's: the D-Bus machine id, else systemd's.
    fn get_machine_id(&self) -> zbus::fdo::Result<String> {
        ["/var/lib/dbus/machine-id", "/etc/machine-id"]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
            .map(|id| id.trim_end().to_owned())
            .ok_or_else(|| {
                zbus::fdo::Error::IOError(
                    "cannot read /var/lib/dbus/machine-id or /etc/machine-id".into(),
                )
            })
    }
}
