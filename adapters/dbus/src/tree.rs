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

use crate::label::{escape, MANAGER_PATH};
use crate::manager::{Manager, Shared};
use crate::objects::Objects;
use crate::readonly::ReadOnly;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use zbus::names::InterfaceName;
use zbus::object_server::Interface;
use zbus::{interface, Connection, ObjectServer};

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
        for child in self.children() {
            // Labels are [A-Za-z0-9_]: nothing to escape in XML.
            let _ = writeln!(xml, "  <node name=\"{child}\"/>");
        }
        xml.push_str("</node>\n");
        Ok(xml)
    }
}

/// zbus's Introspectable at `path` replaced by ours, unless ours is there already.
async fn own(conn: &Connection, path: &str, introspect: Introspect) -> zbus::Result<()> {
    let server = conn.object_server();
    if server.interface::<_, Introspect>(path).await.is_ok() {
        return Ok(());
    }
    let name = InterfaceName::from_static_str_unchecked("org.freedesktop.DBus.Introspectable");
    // The node keeps its other interfaces or its children: removing it destroys nothing.
    server.remove_named(path, name).await?;
    server.at(path, introspect).await?;
    Ok(())
}

/// Ours at every node above the services; call once the manager is exported.
pub async fn own_ancestors(conn: &Connection, shared: &Arc<Mutex<Shared>>) -> zbus::Result<()> {
    for (path, child) in ANCESTORS {
        let introspect = Introspect {
            kind: Kind::Ancestor(child),
            shared: shared.clone(),
        };
        own(conn, path, introspect).await?;
    }
    let introspect = Introspect {
        kind: Kind::Manager,
        shared: shared.clone(),
    };
    own(conn, MANAGER_PATH, introspect).await
}

/// Ours at the services' node; call after adding a service's object (zbus makes the node
/// anew, with its own Introspectable, when the first service comes after none). The node
/// is below the ObjectManager, so replacing its Introspectable makes zbus send an
/// InterfacesRemoved and an InterfacesAdded of org.freedesktop.DBus.Introspectable for
/// `/io/ember/Init1/service`: once at attach, and again only when services come after
/// there were none.
pub async fn own_services(conn: &Connection, shared: &Arc<Mutex<Shared>>) -> zbus::Result<()> {
    let introspect = Introspect {
        kind: Kind::Services,
        shared: shared.clone(),
    };
    own(conn, SERVICES_PATH, introspect).await
}
