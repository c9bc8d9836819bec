//! `ember fleet ...`: runs `ember-fleet`, the operator's tool for many boards over MQTT,
//! found beside this executable (as git finds its subcommands). It is a program of its
//! own because it links an MQTT client and TLS (rumqttc, rustls, ring), which the ember
//! that runs as PID 1 must not carry.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// `ember-fleet` beside this executable (`/usr/sbin/ember` → `/usr/sbin/ember-fleet`).
pub fn executable() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot tell where ember is installed: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    Ok(dir.join("ember-fleet"))
}

/// Runs `ember-fleet ARGS...` in place of this process; returns only if it cannot.
pub fn run(args: Vec<OsString>) -> i32 {
    let path = match executable() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ember fleet: {e}");
            return 2;
        }
    };
    let error = std::process::Command::new(&path).args(args).exec();
    if error.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "ember fleet: {} is not installed; `ember fleet` runs it from beside ember. \
             Install the ember-fleet package (or `cargo build -p ember-fleet` and copy \
             target/*/ember-fleet there)",
            path.display()
        );
    } else {
        eprintln!("ember fleet: cannot run {}: {error}", path.display());
    }
    // 127: what a shell says of a command it cannot find or run.
    127
}
