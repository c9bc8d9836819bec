//! ember-dbus: `io.ember.Init1` on D-Bus, shaped like systemd1, for the services of the
//! ember it links to over the control socket.
//!
//! - [`adapter`]: the connection to the bus and its reattaching, events to objects.
//! - [`manager`]: `io.ember.Init1.Manager` at `/io/ember/Init1` (with an ObjectManager).
//! - [`service`]: `io.ember.Init1.Service`, one object per service.
//! - [`auth`]: the errors callers see, and who may change things.
//! - [`gate`]: what a flood of calls costs: no task per call, a bound on calls that wait.
//! - [`objects`]: the ObjectManager, answered from the adapter's copy.
//! - [`usage`]: the services' resource figures, measured for a Get, shared for a second.
//! - [`readonly`]: Set of a read-only property is PropertyReadOnly.
//! - [`tree`]: Introspect of the nodes above the services: children by name only.
//! - [`label`]: object paths from service names (systemd's bus-label escaping).

pub mod adapter;
pub mod auth;
pub mod gate;
pub mod label;
pub mod manager;
pub mod objects;
pub mod readonly;
pub mod service;
pub mod tree;
pub mod usage;
