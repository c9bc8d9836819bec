//! ember's engine: every service's *want* and *state*, reconciled. Pure: inputs (commands,
//! exits, readiness, time, reloads) go in with `now`, actions (spawn, signal, probe,
//! publish) come out, and [`engine::Engine::next_deadline`] says when to call again. No
//! I/O, no clock, no threads: a crate of its own so that the compiler holds it to that
//! (its dependencies cannot do I/O on their own), and tests drive it on a simulated
//! clock.
//!
//! - [`spec`]: a service as checked from the configuration.
//! - [`model`]: the per-service record, exits.
//! - [`engine`]: the decisions.
//! - [`carry`]: the records handed to the next binary at `ember ctl reexec`.
//! - [`wire`]: their byte encoding.

pub mod carry;
pub mod engine;
pub mod model;
pub mod spec;
pub mod wire;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
