//! Logging: tracing events to journald when it answers, else /dev/kmsg as PID 1 (one
//! write per record, with its syslog priority), else the console (stderr).
//!
//! The sink sits behind a reload handle, so it can change while ember runs: journald is
//! usually a service ember itself starts, and [`reprobe`] moves the log there once its
//! socket answers (after a reload, or when a service becomes active).

use crate::config::LogOutput;
use crate::pid1::Role;
use ember_ipc::text::escape_controls;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// ember's own log calls: `log::warn!("...")` writes what `tracing::warn!("...")` writes
/// (the same callsite with its target, file and line, the same filters, the same sinks),
/// but the code at each call is a call to [`emit`] with the formatted arguments. tracing's
/// macros put the interest check, the dispatch and the value set inline at every one of
/// the init's ~150 calls; here that code is linked once, and the init is 21 KB smaller
/// (each call's static metadata stays: it is what the filter and journald read). Events
/// with fields of their own (a service's output lines) still use tracing's macros.
macro_rules! event {
    ($level:expr, $($arg:tt)+) => {{
        static CALLSITE: ::tracing::callsite::DefaultCallsite =
            ::tracing::callsite::DefaultCallsite::new(&META);
        static META: ::tracing::Metadata<'static> = ::tracing::metadata! {
            // One name for all: nothing reads it (tracing's macros spell out file:line).
            name: "event",
            target: module_path!(),
            level: $level,
            fields: &["message"],
            callsite: &CALLSITE,
            kind: ::tracing::metadata::Kind::EVENT,
        };
        $crate::log::emit(&CALLSITE, format_args!($($arg)+))
    }};
}
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::event!(::tracing::Level::ERROR, $($arg)+) };
}
macro_rules! warning {
    ($($arg:tt)+) => { $crate::log::event!(::tracing::Level::WARN, $($arg)+) };
}
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::event!(::tracing::Level::INFO, $($arg)+) };
}
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::event!(::tracing::Level::DEBUG, $($arg)+) };
}
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::event!(::tracing::Level::TRACE, $($arg)+) };
}
// `warning` is exported as `warn`, the name of a builtin attribute too.
pub(crate) use {debug, error, event, info, trace, warning as warn};

/// What tracing's `event!` does at each call site, once: the level check, the callsite's
/// interest (registered at its first use), the subscriber's filter, and the dispatch with
/// the message as its one field.
#[inline(never)]
pub fn emit(callsite: &'static tracing::callsite::DefaultCallsite, message: std::fmt::Arguments) {
    use tracing::callsite::Callsite;
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    let meta = callsite.metadata();
    let level = *meta.level();
    if level > STATIC_MAX_LEVEL || level > LevelFilter::current() {
        return;
    }
    let interest = callsite.interest();
    if interest.is_never()
        || !(interest.is_always() || tracing::dispatcher::get_default(|d| d.enabled(meta)))
    {
        return;
    }
    let fields = meta.fields();
    let Some(field) = fields.field("message") else {
        return;
    };
    let values = [(&field, Some(&message as &dyn tracing::Value))];
    tracing::Event::dispatch(meta, &fields.value_set(&values));
}

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
    filter: reload::Handle<Targets, Registry>,
    sink: Sink,
    output: LogOutput,
    role: Role,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// The filter: EMBER_LOG, else `[log] level`, else "info". `target=level` directives.
/// With what was wrong with EMBER_LOG, if anything.
fn filter(config_level: Option<&str>) -> (Targets, Option<String>) {
    let from_env = std::env::var_os("EMBER_LOG").map(|v| v.to_string_lossy().into_owned());
    filter_from(from_env.as_deref(), config_level)
}

/// The filter `EMBER_LOG` (the environment; as PID 1, a `EMBER_LOG=debug` on the kernel's
/// command line) or else `config_level` make, and what was wrong with EMBER_LOG. Checked
/// as `[log] level` is: tracing reads a bare word as a target, so a typo ("debgu") once
/// logged that target alone, and PID 1 went silent, errors included.
fn filter_from(env: Option<&str>, config_level: Option<&str>) -> (Targets, Option<String>) {
    let fallback = || {
        config_level
            .and_then(|s| Targets::from_str(s).ok())
            .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
    };
    // parse_log_level passes only what Targets reads.
    match env.map(|text| crate::config::values::parse_log_level(text).map(|_| text)) {
        None => (fallback(), None),
        Some(Ok(text)) => (Targets::from_str(text).unwrap_or_else(|_| fallback()), None),
        Some(Err(e)) => (
            fallback(),
            Some(format!(
                "EMBER_LOG: {e}; ignored (the level is [log] level's, else info)"
            )),
        ),
    }
}

/// Sets up logging once; later calls (after a reload) apply the new level and output.
pub fn init(config_level: Option<&str>, output: LogOutput, role: Role) -> Sink {
    if STATE.get().is_some() {
        with_state(|state| {
            let _ = state.filter.reload(filter(config_level).0);
            if state.output == output {
                return state.sink;
            }
            // Another output: moved now, wherever it is (reprobe below only ever moves
            // toward journald, or away from one that stopped answering).
            state.output = output;
            switch(state, open_sink(output, state.role))
        });
        return reprobe();
    }
    let (sink, layer) = open_sink(output, role);
    let (layer, handle) = reload::Layer::new(layer);
    let (targets, problem) = filter(config_level);
    let (level, filter_handle) = reload::Layer::new(targets);
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(level))
        .try_init();
    let _ = STATE.set(Mutex::new(State {
        handle,
        filter: filter_handle,
        sink,
        output,
        role,
    }));
    if let Some(problem) = problem {
        warning!("{problem}");
    }
    sink
}

/// Moves the log to a better sink when one has appeared (journald's socket answers), and
/// away from journald when it stopped answering (it is a service; tracing-journald has no
/// fallback of its own and would drop every line).
pub fn reprobe() -> Sink {
    with_state(|state| {
        let journald_wanted = match state.output {
            LogOutput::Journald => true,
            LogOutput::Auto => state.role == Role::Machine,
            _ => false,
        };
        if !journald_wanted {
            return state.sink;
        }
        if state.sink == Sink::Journald {
            if tracing_journald::layer().is_ok() {
                return state.sink;
            }
            return switch(state, open_sink(state.output, state.role));
        }
        if !std::path::Path::new(JOURNALD_SOCKET).exists() {
            return state.sink;
        }
        switch(state, open_sink(state.output, state.role))
    })
}

/// Leaves journald for the kernel log or the console: at shutdown journald stops like
/// any service, and the last steps must still be seen.
pub fn leave_journald() {
    with_state(|state| {
        if state.sink != Sink::Journald {
            return state.sink;
        }
        switch(state, open_sink_without_journald(state.output, state.role))
    });
}

fn with_state(f: impl FnOnce(&mut State) -> Sink) -> Sink {
    let Some(state) = STATE.get() else {
        return Sink::Console;
    };
    let Ok(mut state) = state.lock() else {
        return Sink::Console;
    };
    f(&mut state)
}

fn switch(state: &mut State, (sink, layer): (Sink, BoxedLayer)) -> Sink {
    if sink == state.sink {
        return sink;
    }
    // Said on the old sink, so whoever reads it knows where to look next (unless the old
    // sink is a journald that has gone).
    info!("the log moves to {} now", sink.word());
    let old = state.sink;
    if state.handle.reload(layer).is_ok() {
        state.sink = sink;
        info!("the log moved here from {}", old.word());
    }
    state.sink
}

impl Sink {
    fn word(self) -> &'static str {
        match self {
            Sink::Journald => "journald",
            Sink::Kmsg => "/dev/kmsg",
            Sink::Console => "the console",
        }
    }
}

fn open_sink(output: LogOutput, role: Role) -> (Sink, BoxedLayer) {
    // journald by default only as the machine's init: a supervisor or a container's init
    // logs where it was started (its stderr) unless told otherwise.
    let want_journald = match output {
        LogOutput::Journald => true,
        LogOutput::Auto => role == Role::Machine,
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
    open_sink_without_journald(output, role)
}

fn open_sink_without_journald(output: LogOutput, role: Role) -> (Sink, BoxedLayer) {
    let interactive = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    // The kernel log is the machine's: a PID-1 of a namespace (a container, a test) must
    // not write into its host's.
    let want_kmsg =
        matches!(output, LogOutput::Kmsg) || (output == LogOutput::Auto && role == Role::Machine);
    if want_kmsg {
        if let Ok(kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            return (
                Sink::Kmsg,
                Box::new(Lines {
                    to: Target::Kmsg(kmsg),
                }),
            );
        }
    }
    (
        Sink::Console,
        Box::new(Lines {
            to: Target::Console { ansi: interactive },
        }),
    )
}

/// One line per event, written with one write(2): to /dev/kmsg with its syslog priority
/// (the kernel adds the time), or to stderr with a timestamp and the level. Written by
/// hand rather than with tracing-subscriber's fmt layer: this is all ember needs, at a
/// fraction of the size.
struct Lines {
    to: Target,
}

enum Target {
    Kmsg(std::fs::File),
    Console { ansi: bool },
}

impl<S: tracing::Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        // Values from outside (an MQTT topic, a service's output) must not start a line
        // of their own: a newline in one would forge a record, an escape sequence would
        // drive the console.
        let text = Text {
            message: escape_controls(&text.message).into_owned(),
            fields: escape_controls(&text.fields).into_owned(),
        };
        let level = *event.metadata().level();
        let line = match &self.to {
            Target::Kmsg(_) => format!(
                "<{}>ember: {}{}",
                priority(level),
                text.message,
                text.fields
            ),
            Target::Console { ansi } => {
                let time = humantime::format_rfc3339_micros(std::time::SystemTime::now());
                let level = match (ansi, level) {
                    (true, Level::ERROR) => "\x1b[31mERROR\x1b[0m",
                    (true, Level::WARN) => "\x1b[33m WARN\x1b[0m",
                    (true, Level::INFO) => "\x1b[32m INFO\x1b[0m",
                    (_, Level::ERROR) => "ERROR",
                    (_, Level::WARN) => " WARN",
                    (_, Level::INFO) => " INFO",
                    (_, Level::DEBUG) => "DEBUG",
                    (_, Level::TRACE) => "TRACE",
                };
                format!("{time} {level} {}{}\n", text.message, text.fields)
            }
        };
        let _ = match &self.to {
            // The kernel refuses records over about 1 KiB: cut long ones instead of losing them.
            // The newline ends the record: without it the kernel holds the last one back
            // from dmesg until the next arrives.
            Target::Kmsg(file) => {
                (&*file).write(format!("{}\n", truncate(&line, KMSG_MAX)).as_bytes())
            }
            Target::Console { .. } => {
                console::write(line);
                Ok(0)
            }
        };
    }
}

/// Waits, a bounded time, until the console has taken the lines queued for it: before an
/// exit, an exec or reboot(2), which would lose them.
pub fn flush() {
    console::flush(std::time::Duration::from_secs(2));
}

/// The console (stderr). A console that takes nothing (a serial line held by flow control
/// or Ctrl-S, a container's log pipe nobody reads) blocks a write(2) to it; from the main
/// loop that stopped PID 1 whole: no reaping, no socket, no signals. So a line is written
/// at once only when the console takes it without waiting (poll(2) says so, and it is
/// within PIPE_BUF); otherwise it is queued for a thread that runs while lines wait (see
/// [`Served`](crate::mailbox::Served)). Lines past what the queue holds are dropped, and
/// the count is written once the console takes lines again.
mod console {
    use crate::mailbox::Served;
    use std::collections::VecDeque;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Lines held for a console that is slow to take them.
    const LIMIT: usize = 2048;
    /// What a pipe that polls writable takes without waiting (a line of more is queued).
    const PIPE_BUF: usize = 4096;

    static QUEUE: Served<String> = Served::new(LIMIT, "console-log", write_lines);
    /// Lines the full queue refused, not yet said.
    static DROPPED: AtomicU64 = AtomicU64::new(0);

    /// Whether a write to the console now would not wait (writable, or an error to
    /// report: closed, hung up).
    fn takes_now() -> bool {
        let mut fds = [nix::libc::pollfd {
            fd: 2,
            events: nix::libc::POLLOUT,
            revents: 0,
        }];
        // SAFETY: one pollfd of ours, and no wait.
        unsafe { nix::libc::poll(fds.as_mut_ptr(), 1, 0) == 1 }
    }

    pub fn write(line: String) {
        let at_once = |line: &String| {
            let takes = line.len() <= PIPE_BUF && takes_now();
            if takes {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            takes
        };
        if QUEUE.send(line, at_once).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All of them in one write(2), after the count of those dropped.
    fn write_lines(lines: VecDeque<String>) {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        let mut batch = Vec::with_capacity(lines.iter().map(String::len).sum::<usize>() + 80);
        if dropped > 0 {
            let _ = writeln!(
                batch,
                "ember: {dropped} log lines dropped: the console did not take them"
            );
        }
        for line in lines {
            batch.extend_from_slice(line.as_bytes());
        }
        let _ = std::io::stderr().lock().write_all(&batch);
    }

    pub fn flush(limit: Duration) {
        QUEUE.flush(limit);
    }
}

const KMSG_MAX: usize = 1000;

/// The longest prefix of `text` within `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// syslog priorities for /dev/kmsg.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An event's message, and its other fields as ` key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write as _;
        match (field.name(), value) {
            ("message", _) => self.message.push_str(value),
            // A service's output line already starts with its name; only stderr is marked.
            ("stream", "stderr") => self.fields.push_str(" [stderr]"),
            ("stream", _) => {}
            _ => {
                let _ = write!(self.fields, " {}={value}", field.name());
            }
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "service" => {}
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

/// Logs panics through tracing (the console may not be watched; the log is).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        error!("panic in thread {name}: {info}");
    }));
}

#[cfg(test)]
mod tests {

    /// A typo in EMBER_LOG is said, and the log keeps its level, not that of a target
    /// named like the typo (nothing else then).
    #[test]
    fn an_invalid_ember_log_is_reported_and_the_level_kept() {
        for typo in ["debgu", "inf", "ember=loud"] {
            let (targets, problem) = filter_from(Some(typo), None);
            assert!(
                targets.would_enable("ember::daemon", &Level::ERROR)
                    && targets.would_enable("ember::daemon", &Level::INFO),
                "{typo}: {targets:?}"
            );
            let problem = problem.unwrap_or_default();
            assert!(
                problem.contains("EMBER_LOG") && problem.contains(typo),
                "{problem}"
            );
        }
        let (targets, problem) = filter_from(Some("debug"), Some("warn"));
        assert!(targets.would_enable("ember::daemon", &Level::DEBUG) && problem.is_none());
        let (targets, problem) = filter_from(Some("nope"), Some("warn"));
        assert!(!targets.would_enable("ember::daemon", &Level::INFO) && problem.is_some());
    }

    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Each /dev/kmsg record is one write, with its priority, ending in a newline (the
    /// kernel holds back a record without one), and cut to what the kernel accepts.
    #[test]
    fn kmsg_records() {
        let path = std::env::temp_dir().join(format!("ember-kmsg-test-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(Lines {
            to: Target::Kmsg(file),
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("disk almost full");
            tracing::info!(target: "ember::service", service = "web", stream = "stderr", "web: {}", "é".repeat(800));
        });
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let records: Vec<&str> = written.split_inclusive('\n').collect();
        assert_eq!(records.len(), 2, "{written:?}");
        assert_eq!(records[0], "<4>ember: disk almost full\n");
        assert!(records[1].starts_with("<6>ember: web: é"), "{}", records[1]);
        assert!(records[1].ends_with('\n') && records[1].len() <= KMSG_MAX + 1);
    }

    /// ember's own calls (through [`emit`]) write what tracing's macros write, and the
    /// filter still sees each call's own target and level.
    #[test]
    fn own_calls_write_as_tracing_does_and_are_filtered_by_their_module() {
        let path = std::env::temp_dir().join(format!("ember-kmsg-emit-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let filter = Targets::new()
            .with_default(Level::INFO)
            .with_target("ember::log::tests", Level::WARN);
        let subscriber = tracing_subscriber::registry().with(
            Lines {
                to: Target::Kmsg(file),
            }
            .with_filter(filter),
        );
        tracing::subscriber::with_default(subscriber, || {
            info!("filtered out: this module logs warnings and worse");
            warn!("disk {} full", "almost");
            error!("{} of {}", 3, 4);
            tracing::warn!("disk {} full", "almost");
        });
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            written,
            "<4>ember: disk almost full\n<3>ember: 3 of 4\n<4>ember: disk almost full\n"
        );
    }

    /// A value from outside (a refused MQTT topic, a service's output) with a newline in
    /// it stays in its own record: it cannot forge a second one, or drive the console.
    #[test]
    fn a_newline_in_a_value_cannot_forge_a_record() {
        let path = std::env::temp_dir().join(format!("ember-kmsg-forge-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(Lines {
            to: Target::Kmsg(file),
        });
        let topic = "ember/b1/service/x\n<0>ember: forged\x1b[2J/cmd";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("mqtt: refused a command on {topic}");
            tracing::info!(origin = %topic, "field\ttab");
        });
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let records: Vec<&str> = written.split_inclusive('\n').collect();
        assert_eq!(records.len(), 2, "{written:?}");
        assert_eq!(
            records[0],
            "<4>ember: mqtt: refused a command on ember/b1/service/x\\n<0>ember: forged\\u{1b}[2J/cmd\n"
        );
        assert_eq!(
            records[1],
            "<6>ember: field\ttab origin=ember/b1/service/x\\n<0>ember: forged\\u{1b}[2J/cmd\n"
        );
    }
}
