//! ember-mqtt: every service's state out (retained, coalesced), commands in, for the ember
//! it links to over the control socket.
//!
//! - [`adapter`]: the broker connection, its reconnecting, events to topics, commands in.
//! - [`connect`]: reaching a broker (address, login, TLS, errors in words), shared with
//!   the operator's fleet tool (ember-fleet).
//! - [`topics`]: topic names and routing, allow globs.
//! - [`payload`]: command payloads and replies.
//! - [`homeassistant`]: discovery payloads.

pub mod adapter;
pub mod connect;
pub mod homeassistant;
pub mod payload;
pub mod topics;
