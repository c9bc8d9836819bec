//! The supervisor: a pure engine that decides, and a runtime that does.
//!
//! - [`model`]: states, wants and the per-service record: plain data.
//! - [`engine`]: (state, event) -> actions, no I/O, no clock.
//! - [`graph`]: unknown dependencies and cycles.

pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod graph;
pub mod model;
