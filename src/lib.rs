//! ember: an init system and service supervisor for embedded Linux boards.
//!
//! The crate is the core; `src/main.rs` is the `ember` binary on top of it.

pub mod config;
pub mod supervisor;
pub mod cli;
pub mod daemon;
pub mod log;
