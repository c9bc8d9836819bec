//! `ember [--config PATH]`: load the configuration, open the control socket, supervise.

use crate::config::{self, Severity};
use crate::supervisor::runtime::{Outcome, Runtime};
use ember_ipc::{socket, Control};
use std::path::Path;
use tokio::sync::{broadcast, mpsc};

/// Runs the supervisor until it is told to stop; returns the process exit code.
pub fn run(config_path: &Path) -> i32 {
    let loaded = config::load(config_path);
    let level = loaded.config.as_ref().and_then(|c| c.log.level.clone());
    crate::log::init(level.as_deref());
    for problem in &loaded.problems {
        match problem.severity {
            Severity::Error => tracing::error!("{problem}"),
            _ => tracing::warn!("{problem}"),
        }
    }
    let Some(config) = loaded.config else {
        tracing::error!(
            "not starting: fix the configuration (`ember check --config {}` lists every problem)",
            config_path.display()
        );
        return 1;
    };
    if std::process::id() != 1 {
        // Orphans of our services are reparented to us, so we can reap them.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper ({e}); orphaned grandchildren will not be reaped by ember");
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    let socket_path = config.control.socket.clone();
    let cleanup_path = socket_path.clone();
    let (outcome, bound) = runtime.block_on(async move {
        let (requests_tx, requests_rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(1024);
        let control = Control {
            requests: requests_tx,
            events: events.clone(),
        };
        match socket::bind(&socket_path) {
            Ok(listener) => {
                tracing::info!("control socket at {}", socket_path.display());
                tokio::spawn(socket::serve(listener, control));
            }
            Err(e) => {
                tracing::error!(
                    "cannot open the control socket {}: {e}",
                    socket_path.display()
                );
                return (Outcome::Exit(1), false);
            }
        }
        tracing::info!(
            "ember {} supervising {} services from {}",
            env!("CARGO_PKG_VERSION"),
            config.services.len(),
            config.path.display()
        );
        (Runtime::run(config, requests_rx, events).await, true)
    });
    if bound {
        let _ = std::fs::remove_file(&cleanup_path);
    }
    match outcome {
        Outcome::Exit(code) => code,
        Outcome::Poweroff | Outcome::Reboot => 0,
    }
}
