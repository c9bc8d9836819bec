//! ember fleet: the operator's side of a fleet of boards that run ember with `[mqtt]`.
//! One view of every board (from the retained topics), one command with a known outcome
//! (from each board's reply), and a live view of the changes. Where one broker is not
//! enough, the broker scales it (mosquitto bridges, a clustered broker): ember fleet
//! talks to one broker, and sees what reaches it.
//!
//! An executable of its own (`ember-fleet`, run by `ember fleet ...`): the `ember` that
//! runs as PID 1 links neither rumqttc, rustls nor ring.
//!
//! - [`options`]: the command line and its help.
//! - [`session`]: the MQTT connection, the subscriptions, the end of the retained states.
//! - [`fleet`]: the boards as their topics show them; missed changes from seq jumps.
//! - [`view`]: `status`, and the reading of the retained states every command starts with.
//! - [`command`]: `start`, `stop`, `restart`.
//! - [`watch`]: the changes as they come (`watch`).

pub mod command;
pub mod fleet;
pub mod options;
pub mod session;
pub mod view;
pub mod watch;
