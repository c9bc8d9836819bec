//! `org.freedesktop.DBus.Introspectable` for the nodes that have children: `/`, `/io`,
//! `/io/ember`, the manager and `/io/ember/Init1/service`.
//!
//! zbus's own Introspect writes a node's whole subtree inline, every descendant with all
//! its interfaces (3.7 MB for `/` with 1,000 services, built for each call, and nested
//! XML that busctl misreads: "Unexpected signal <arg> direction value 'in'"). As the D-Bus
//! specification and systemd do, a node here says what it implements and names its
//! children, nothing more: `<node name="service"/>`. Its size does not grow with the
//! services, except the services' node, which names each (about 30 bytes a service).
//! Introspect runs in zbus's dispatching task rather than a task of its own per call
//! (`spawn = false`), so a flood of calls waits in zbus's bounded queue instead of
//! building replies side by side.
//!
//! Every node ember serves, each service's object too, gets ours in place of zbus's
//! Introspectable and Properties, and `/` ours in place of zbus's Peer (zbus answers Peer
//! at `/` for every path): zbus's spawn a task per call (see [`crate::gate`]).

use crate::gate::{Gate, Peer, Properties};
use crate::label::{escape, MANAGER_PATH};
use crate::manager::{Manager, Shared};
use crate::objects::Objects;
use crate::readonly::ReadOnly;
use crate::service::Service;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult, Interface, SignalEmitter};
use zbus::{interface, BoxDBusError, Connection, ObjectServer, OwnedVariant, Variant};

/// The parent of every service's object.
pub const SERVICES_PATH: &str = "/io/ember/Init1/service";

/// The nodes ember serves above the services, each with its one child.
const ANCESTORS: [(&str, &str); 3] = [("/", "io"), ("/io", "ember"), ("/io/ember", "Init1")];

/// What a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A path element only: its one child.
    Ancestor(&'static str),
    /// The manager: its interfaces, and the services' node when there are services.
    Manager,
    /// Every service's object, by label.
    Services,
    /// A service's object: its interfaces, no children.
    Service,
}

/// Introspectable at one node.
pub struct Introspect {
    kind: Kind,
    shared: Arc<Mutex<Shared>>,
}

/// What zbus writes for `org.freedesktop.DBus.Peer`, which it does not export.
const PEER: &str = r#"  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping">
    </method>
    <method name="GetMachineId">
      <arg type="s" direction="out"/>
    </method>
  </interface>
"#;

const HEAD: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
"#;

impl Introspect {
    /// The names of the node's children.
    fn children(&self) -> Vec<String> {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match self.kind {
            Kind::Ancestor(child) => vec![child.to_owned()],
            Kind::Manager if shared.services.is_empty() => Vec::new(),
            Kind::Manager => vec!["service".to_owned()],
            Kind::Services => shared.services.keys().map(|n| escape(n)).collect(),
            Kind::Service => Vec::new(),
        }
    }
}

#[interface(
    name = "org.freedesktop.DBus.Introspectable",
    introspection_docs = false,
    spawn = false
)]
impl Introspect {
    /// The node's interfaces and the names of its children.
    async fn introspect(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(header)] header: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let mut xml = String::with_capacity(4096);
        xml.push_str(HEAD);
        xml.push_str(PEER);
        self.introspect_to_writer(&mut xml, 2);
        zbus::fdo::Properties.introspect_to_writer(&mut xml, 2);
        if self.kind == Kind::Manager {
            if let Ok(manager) = server.interface::<_, ReadOnly<Manager>>(MANAGER_PATH).await {
                manager.get().await.introspect_to_writer(&mut xml, 2);
            }
            if let Ok(objects) = server.interface::<_, Objects>(MANAGER_PATH).await {
                objects.get().await.introspect_to_writer(&mut xml, 2);
            }
        }
        if let (Kind::Service, Some(path)) = (self.kind, header.path()) {
            if let Ok(service) = server.interface::<_, ReadOnly<Service>>(path).await {
                service.get().await.introspect_to_writer(&mut xml, 2);
            }
        }
        for child in self.children() {
            // Labels are [A-Za-z0-9_]: nothing to escape in XML.
            let _ = writeln!(xml, "  <node name=\"{child}\"/>");
        }
        xml.push_str("</node>\n");
        Ok(xml)
    }
}

/// What an error of ours says when zbus asks a standard interface of ours for the
/// properties to announce (see [`replace`]).
const UNANNOUNCED: &str = "a standard interface is not announced";

/// `get_all` of a standard interface of ours (none has properties): nothing for a
/// caller's GetAll, and an error for zbus's InterfacesAdded (no caller), so that zbus
/// announces nothing (see [`replace`]).
pub fn standard_get_all(
    header: Option<&Header<'_>>,
) -> zbus::fdo::Result<HashMap<String, OwnedVariant>> {
    match header {
        Some(_) => Ok(HashMap::new()),
        None => Err(zbus::fdo::Error::Failed(UNANNOUNCED.into())),
    }
}

/// A standard interface of ours whose `Interface` zbus's macro writes (`Introspect`),
/// with [`standard_get_all`] for its `get_all`.
pub struct Unannounced<I>(pub I);

#[async_trait::async_trait]
impl<I: Interface> Interface for Unannounced<I> {
    fn name() -> InterfaceName<'static> {
        I::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.0.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<Result<OwnedVariant, BoxDBusError>> {
        self.0
            .get(property_name, server, connection, header, emitter)
            .await
    }

    async fn get_all(
        &self,
        _server: &ObjectServer,
        _connection: &Connection,
        header: Option<&Header<'_>>,
        _emitter: &SignalEmitter<'_>,
    ) -> zbus::fdo::Result<HashMap<String, OwnedVariant>> {
        standard_get_all(header)
    }

    fn set<'call>(
        &'call self,
        property_name: &'call str,
        value: &'call Variant<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult<'call> {
        self.0
            .set(property_name, value, server, connection, header, emitter)
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Variant<'_>,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<Result<(), BoxDBusError>> {
        self.0
            .set_mut(property_name, value, server, connection, header, emitter)
            .await
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.0.call(server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.0.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.0.introspect_to_writer(writer, level)
    }
}

/// zbus's standard interface of `iface`'s name at `path` replaced by `iface`, unless it
/// is there already.
///
/// zbus announces every interface added below an ObjectManager with an InterfacesAdded
/// (withdrawing its own with an InterfacesRemoved first), reading the properties to send
/// with `get_all` for no caller. A standard interface is no object's in the
/// ObjectManager's sense: GetManagedObjects leaves them out, as zbus's does, and a client
/// that followed the signals would keep a service's object after its removal (which
/// withdraws io.ember.Init1.Service only). So ours refuse that read
/// ([`standard_get_all`]): zbus has added the interface by then, and gives up announcing
/// it with the error, taken here as done. What zbus still sends is an InterfacesRemoved of
/// each standard interface at a node it makes below the ObjectManager: of an interface
/// no client was told of, which it ignores.
async fn replace<I: Interface>(server: &ObjectServer, path: &str, iface: I) -> zbus::Result<()> {
    if server.interface::<_, I>(path).await.is_ok() {
        return Ok(());
    }
    // The node keeps its other interfaces or its children: removing one destroys nothing.
    server.remove_named(path, I::name()).await?;
    match server.at(path, iface).await {
        Err(zbus::Error::FDO(e)) if matches!(&*e, zbus::fdo::Error::Failed(m) if m == UNANNOUNCED) => {
            Ok(())
        }
        added => added.map(drop),
    }
}

/// zbus's Introspectable and Properties at `path` replaced by ours, unless ours are there
/// already.
async fn own(
    conn: &Connection,
    path: &str,
    introspect: Introspect,
    reads: &Gate,
) -> zbus::Result<()> {
    let server = conn.object_server();
    replace(server, path, Unannounced(introspect)).await?;
    replace(server, path, Properties::new(reads.clone())).await
}

/// Ours at every node above the services, and Peer at `/`; call once the manager is
/// exported.
pub async fn own_ancestors(
    conn: &Connection,
    shared: &Arc<Mutex<Shared>>,
    reads: &Gate,
) -> zbus::Result<()> {
    for (path, child) in ANCESTORS {
        let introspect = Introspect {
            kind: Kind::Ancestor(child),
            shared: shared.clone(),
        };
        own(conn, path, introspect, reads).await?;
    }
    // Above the ObjectManager: nothing is announced.
    replace(conn.object_server(), "/", Peer).await?;
    let introspect = Introspect {
        kind: Kind::Manager,
        shared: shared.clone(),
    };
    own(conn, MANAGER_PATH, introspect, reads).await
}

/// Ours at a service's object; call after adding it.
pub async fn own_service(
    conn: &Connection,
    path: &str,
    shared: &Arc<Mutex<Shared>>,
    reads: &Gate,
) -> zbus::Result<()> {
    let introspect = Introspect {
        kind: Kind::Service,
        shared: shared.clone(),
    };
    own(conn, path, introspect, reads).await
}

/// Ours at the services' node; call after adding a service's object (zbus makes the node
/// anew, with its own Introspectable and Properties, when the first service comes after
/// none). The node is below the ObjectManager, so zbus sends an InterfacesRemoved of
/// each for `/io/ember/Init1/service` (see [`replace`]): once at attach, and again only
/// when services come after there were none. [`own_service`] makes it send the same two
/// for each service's object when it is added, after its InterfacesAdded.
pub async fn own_services(
    conn: &Connection,
    shared: &Arc<Mutex<Shared>>,
    reads: &Gate,
) -> zbus::Result<()> {
    let introspect = Introspect {
        kind: Kind::Services,
        shared: shared.clone(),
    };
    own(conn, SERVICES_PATH, introspect, reads).await
}
