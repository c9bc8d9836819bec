//! ember's control protocol and its adapters.
//!
//! The core owns one command channel and one event broadcast ([`Control`]). An adapter
//! turns its transport into [`Command`]s (each with a one-shot reply sender) and the
//! core's [`Event`]s into its transport. Adapters never touch processes: a command only
//! changes what the core *wants*, and the core reconciles.
//!
//! - [`protocol`]: the transport-neutral types: commands, replies with typed errors, events.
//! - [`mqtt`] (feature `mqtt`): state out and commands in over MQTT.
//! - [`dbus`] (feature `dbus`): `io.ember.Init1` on D-Bus, shaped like systemd1.
//! - [`json`]: strict JSON (no key twice; type errors name their field) for every input.
//! - [`socket`]: the local control socket (newline-delimited JSON over a Unix socket),
//!   server side and the client used by `ember ctl`.
//! - [`throttle`]: a token bucket for what must not flood a log.

pub mod adapter;
pub mod glob;
pub mod json;
#[cfg(feature = "link")]
pub mod link;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod protocol;
pub mod rights;
pub mod socket;
pub mod throttle;

pub use protocol::*;
