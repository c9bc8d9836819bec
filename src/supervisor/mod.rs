//! The supervisor: a pure engine that decides, and a runtime that does.
//!
//! - [`model`], [`engine`]: the pure engine, a crate of its own (`engine/`).
//! - [`runtime`]: the one task that executes actions and feeds events back.
//! - [`spawn`], [`launch`], [`reaper`]: what a service is started with, starting it
//!   (clone and exec, sharing ember's memory until the exec), reaping every child in one place.
//! - [`low_fds`]: low fds a child's stdio waits on, so that it copies none of ember's others.
//! - `clone3`: the system call that creates a process in its cgroup (the one piece of
//!   assembly in ember).
//! - [`readiness`], [`notify`], [`output`]: probes, the sd_notify socket, service output.
//! - [`logfiles`]: service output written to files by ember, rotated by size.
//! - [`cgroup`]: a cgroup per service: containment, limits, OOM kills.
//! - [`sig`]: a signal `kill` sends, the real-time ones too.
//! - [`status`]: a service's record as adapters show it.
//! - [`usage`]: a service's processes and their CPU, memory and tasks.
//! - [`timeline`]: each service's transitions this boot, for `ember analyze`.

pub mod cgroup;
mod clone3;
pub mod handover;
// The engine and its model are a crate of their own (engine/); their old paths stay.
pub use ember_engine::{engine, model};
pub mod launch;
pub mod logfiles;
pub mod low_fds;
pub mod notify;
pub mod output;
pub mod readiness;
pub mod reaper;
pub mod runtime;
pub mod sig;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod timeline;
pub mod usage;
