//! Logging: tracing events to journald when it answers, else /dev/kmsg as PID 1 (one
//! write per record, with its syslog priority), else the console (stderr).
//!
//! The sink sits behind a reload handle, so it can change while ember runs: journald is
//! usually a service ember itself starts, and [`reprobe`] moves the log there once its
//! socket answers (after a reload, or when a service becomes active).

use crate::config::LogOutput;
use crate::pid1::Role;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
    Kmsg,
    Console,
}

struct State {
    handle: reload::Handle<BoxedLayer, Registry>,
    sink: Sink,
    output: LogOutput,
    role: Role,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// The filter: EMBER_LOG, else `[log] level`, else "info". `target=level` directives.
fn filter(config_level: Option<&str>) -> Targets {
    std::env::var("EMBER_LOG")
        .ok()
        .and_then(|s| Targets::from_str(&s).ok())
        .or_else(|| config_level.and_then(|s| Targets::from_str(s).ok()))
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

/// Sets up logging once; later calls only re-probe the sink.
pub fn init(config_level: Option<&str>, output: LogOutput, role: Role) -> Sink {
    if STATE.get().is_some() {
        set_output(output);
        return reprobe();
    }
    let (sink, layer) = open_sink(output, role);
    let (layer, handle) = reload::Layer::new(layer);
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter(config_level)))
        .try_init();
    let _ = STATE.set(Mutex::new(State {
        handle,
        sink,
        output,
        role,
    }));
    sink
}

fn set_output(output: LogOutput) {
    if let Some(state) = STATE.get() {
        if let Ok(mut state) = state.lock() {
            state.output = output;
        }
    }
}

/// Moves the log to a better sink when one has appeared (journald's socket answers).
pub fn reprobe() -> Sink {
    let Some(state) = STATE.get() else {
        return Sink::Console;
    };
    let Ok(mut state) = state.lock() else {
        return Sink::Console;
    };
    if state.sink == Sink::Journald
        || !matches!(state.output, LogOutput::Auto | LogOutput::Journald)
    {
        return state.sink;
    }
    if !std::path::Path::new(JOURNALD_SOCKET).exists() {
        return state.sink;
    }
    let (sink, layer) = open_sink(state.output, state.role);
    if sink == state.sink {
        return sink;
    }
    // Said on the old sink, so whoever reads it knows where to look next.
    tracing::info!("the log moves to {sink:?} now");
    if state.handle.reload(layer).is_ok() {
        state.sink = sink;
    }
    state.sink
}

fn open_sink(output: LogOutput, role: Role) -> (Sink, BoxedLayer) {
    let interactive = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let want_journald = match output {
        LogOutput::Journald => true,
        // In a terminal, a person is watching: keep the log there.
        LogOutput::Auto => role.is_pid1() || !interactive,
        _ => false,
    };
    if want_journald {
        if let Ok(layer) = tracing_journald::layer() {
            return (
                Sink::Journald,
                Box::new(
                    layer
                        .with_syslog_identifier("ember".into())
                        // SERVICE=web, not F_SERVICE=web: what `journalctl SERVICE=web` expects.
                        .with_field_prefix(None),
                ),
            );
        }
    }
    // The kernel log is the machine's: a PID-1 of a namespace (a container, a test) must
    // not write into its host's.
    let want_kmsg =
        matches!(output, LogOutput::Kmsg) || (output == LogOutput::Auto && role == Role::Machine);
    if want_kmsg {
        if let Ok(kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let layer = tracing_subscriber::fmt::layer()
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_ansi(false)
                .with_writer(Kmsg(std::sync::Arc::new(kmsg)));
            return (Sink::Kmsg, Box::new(layer));
        }
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(interactive)
        .with_target(false);
    (Sink::Console, Box::new(layer))
}

/// /dev/kmsg: each record is one write, prefixed with its syslog priority.
#[derive(Clone)]
struct Kmsg(std::sync::Arc<std::fs::File>);

struct KmsgRecord {
    file: std::sync::Arc<std::fs::File>,
    priority: u8,
}

impl Write for KmsgRecord {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The kernel takes one record per write(2): prefix and text go out together.
        let mut record = Vec::with_capacity(buf.len() + 12);
        record.extend_from_slice(format!("<{}>ember: ", self.priority).as_bytes());
        record.extend_from_slice(buf.strip_suffix(b"\n").unwrap_or(buf));
        (&*self.file).write(&record)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Kmsg {
    type Writer = KmsgRecord;
    fn make_writer(&'a self) -> KmsgRecord {
        KmsgRecord {
            file: self.0.clone(),
            priority: 6,
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> KmsgRecord {
        let priority = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        KmsgRecord {
            file: self.0.clone(),
            priority,
        }
    }
}

/// Logs panics through tracing (the console may not be watched; the log is).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!("panic in thread {name}: {info} (contained; ember carries on)");
    }));
}
