//! `org.freedesktop.DBus.ObjectManager` at `/io/ember/Init1`, in place of zbus's.
//!
//! zbus's GetManagedObjects calls every property getter of every object: for each
//! service, three measurements by ember (PID 1) of CpuUsec, MemoryBytes and Tasks, at
//! the call of any user (about 190 ms of PID 1's CPU per call with 1,000 services). This
//! one answers from the adapter's copy of the states and the last figures it has (see
//! [`crate::usage`]): it makes ember do nothing. It runs in zbus's dispatching task
//! (`spawn = false`): one reply is built at a time, and a flood waits in zbus's bounded
//! queue. InterfacesAdded and InterfacesRemoved are still sent by zbus, which sends them
//! for any interface of this name.

use crate::label::service_path;
use crate::manager::Shared;
use crate::service::{self, INTERFACE};
use crate::usage::Usage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zbus::fdo::ManagedObjects;
use zbus::names::{InterfaceName, OwnedInterfaceName};
use zbus::object_server::SignalEmitter;
use zbus::{interface, ObjectPath, OwnedObjectPath, Variant};

pub struct Objects {
    pub shared: Arc<Mutex<Shared>>,
    pub usage: Arc<Usage>,
}

#[interface(
    name = "org.freedesktop.DBus.ObjectManager",
    introspection_docs = false,
    spawn = false
)]
impl Objects {
    /// Every service's object with its properties, as GetAll would give them, except
    /// that the resource figures are the last ones known rather than measured now.
    fn get_managed_objects(&self) -> ManagedObjects {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let iface = OwnedInterfaceName::from(InterfaceName::from_static_str_unchecked(INTERFACE));
        shared
            .services
            .values()
            .filter_map(|status| {
                let path = OwnedObjectPath::try_from(service_path(&status.name)).ok()?;
                let properties = service::properties(status, self.usage.last(&status.name));
                Some((path, HashMap::from([(iface.clone(), properties)])))
            })
            .collect()
    }

    /// Sent by zbus when a service's object is added.
    #[zbus(signal)]
    pub async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<InterfaceName<'_>, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<()>;

    /// Sent by zbus when a service's object is removed.
    #[zbus(signal)]
    pub async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Vec<InterfaceName<'_>>,
    ) -> zbus::Result<()>;
}
