//! ember's control protocol, shared by the core and every client of it.
//!
//! The core owns one command channel and the broadcasts of changes and lines
//! ([`Control`]); the control socket ([`socket`]) carries them to clients as
//! newline-delimited JSON. An adapter (ember-mqtt, ember-dbus: executables of their own)
//! turns its transport into [`Command`]s and the core's [`Event`]s into its transport,
//! over the socket ([`link`]). Adapters never touch processes: a command only changes
//! what the core *wants*, and the core reconciles.
//!
//! - [`protocol`]: the transport-neutral types: commands, replies with typed errors, events.
//! - [`adapter`]: what ember hands an adapter it runs (settings on its standard input).
//! - [`link`] (feature `link`): an adapter's connection to ember, as a [`Control`].
//! - [`rights`]: who may ask what over the socket.
//! - [`glob`]: service-name globs.
//! - [`names`]: the rule every service name follows.
//! - [`json`]: strict JSON (no key twice; type errors name their field) for every input.
//! - [`socket`]: the local control socket (newline-delimited JSON over a Unix socket),
//!   server side and the client used by `ember ctl`.
//! - [`throttle`]: a token bucket for what must not flood a log.
//! - [`text`]: control characters of text from outside escaped, for logs and terminals.
//! - [`broadcast`]: the channels of [`Control`], their rings made at the first subscriber.

pub mod adapter;
pub mod broadcast;
pub mod glob;
pub mod json;
#[cfg(feature = "link")]
pub mod link;
pub mod names;
pub mod protocol;
pub mod rights;
pub mod socket;
pub mod text;
pub mod throttle;

pub use protocol::*;
