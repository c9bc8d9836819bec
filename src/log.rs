//! Logging: tracing to stderr, filtered by EMBER_LOG or `[log] level`.
//! (journald and /dev/kmsg as PID 1 come with the PID-1 work.)

use tracing_subscriber::EnvFilter;

pub fn init(config_level: Option<&str>) {
    let filter = std::env::var("EMBER_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .or_else(|| config_level.and_then(|s| EnvFilter::try_new(s).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let ansi = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
