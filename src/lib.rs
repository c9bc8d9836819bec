//! ember: an init system and service supervisor for embedded Linux boards.
//!
//! The crate is the core; `src/main.rs` is the `ember` binary on top of it.

pub mod adapters;
#[cfg(feature = "analyze")]
pub mod analyze;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod filekind;
pub mod log;
pub mod mailbox;
pub mod pid1;
pub mod supervisor;
