//! [`ReadOnly`]: an interface whose properties are all read-only, so that
//! `Properties.Set` of one says `org.freedesktop.DBus.Error.PropertyReadOnly`, and whose
//! calls are bounded (see [`crate::gate`]): answered at once in zbus's dispatching task,
//! or, for a method that waits ([`Calls::gate_of`]), in a task of their own while their
//! gate has room.
//!
//! zbus 6's `Properties.Set` says UnknownProperty for any property without a setter, as
//! for one that does not exist: the generated `Interface::set` cannot tell the two apart.
//! The wrapper passes everything to the interface and answers `Set` of a property that
//! the interface declares (in its introspection) itself; a name it does not declare
//! still gets UnknownProperty from zbus.

use crate::gate::{Gate, Gated};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt::Write;
use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult, Interface, SignalEmitter};
use zbus::{BoxDBusError, Connection, ObjectServer, OwnedVariant, Variant};

/// `I`, with `Set` of any of its properties refused as read-only.
pub struct ReadOnly<I>(pub I);

/// Which methods of an interface wait (for ember or for the bus daemon).
pub trait Calls {
    /// The gate of a method that waits; `None` for one answered at once from the
    /// adapter's copy, without awaiting anything but zbus's locks. A method not named
    /// by the interface as answered at once must wait: a new one is bounded by default.
    fn gate_of(&self, member: &str) -> Option<&Gate>;
}

impl<I: Interface + Calls> Gated for ReadOnly<I> {
    fn gate_of(&self, _msg: &Message, member: &str) -> Option<&Gate> {
        self.0.gate_of(member)
    }

    fn forward<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.0.call(server, connection, msg, name)
    }
}

impl<I: Interface> ReadOnly<I> {
    /// Whether the interface declares the property.
    fn declares(&self, property: &str) -> bool {
        let mut xml = String::new();
        self.0.introspect_to_writer(&mut xml, 0);
        let wanted = format!("<property name=\"{property}\" ");
        xml.lines()
            .any(|line| line.trim_start().starts_with(&wanted))
    }
}

#[async_trait]
impl<I: Interface + Calls> Interface for ReadOnly<I> {
    fn name() -> InterfaceName<'static> {
        I::name()
    }

    /// Never a task per call: [`crate::gate::call`] decides.
    fn spawn_tasks_for_methods(&self) -> bool {
        false
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
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> zbus::fdo::Result<HashMap<String, OwnedVariant>> {
        self.0.get_all(server, connection, header, emitter).await
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
        if !self.declares(property_name) {
            return self
                .0
                .set(property_name, value, server, connection, header, emitter);
        }
        let error = zbus::fdo::Error::PropertyReadOnly(format!(
            "property {property_name} of {} is read-only",
            I::name()
        ));
        DispatchResult::Async(Box::pin(
            async move { Err(Box::new(error) as BoxDBusError) },
        ))
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
        crate::gate::call(self, server, connection, msg, name)
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

    fn introspect_to_writer(&self, writer: &mut dyn Write, level: usize) {
        self.0.introspect_to_writer(writer, level)
    }
}

#[cfg(test)]
mod tests {
    use super::{Calls, ReadOnly};
    use crate::gate::Gate;

    struct Thing;

    impl Calls for Thing {
        fn gate_of(&self, _member: &str) -> Option<&Gate> {
            None
        }
    }

    #[zbus::interface(name = "io.ember.Test")]
    impl Thing {
        #[zbus(property)]
        fn value(&self) -> u32 {
            1
        }

        #[zbus(property, name = "MainPID")]
        fn main_pid(&self) -> u32 {
            0
        }

        fn method(&self) {}
    }

    #[test]
    fn declares_its_properties_and_nothing_else() {
        let thing = ReadOnly(Thing);
        assert!(thing.declares("Value"));
        assert!(thing.declares("MainPID"));
        assert!(!thing.declares("Valu"));
        assert!(!thing.declares("Method"));
        assert!(!thing.declares("Nope"));
    }
}
