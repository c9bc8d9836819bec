//! `ember [--config PATH]`: the supervisor, and as PID 1 the init.
//!
//! Start-up order: as PID 1, /proc first and the role (machine, namespace); then the
//! configuration, the early-boot steps and logging; the control socket; the runtime. A
//! broken configuration does not stop a boot: PID 1 comes up with no services (and the
//! rescue shell, if configured) so that `ember ctl reload` can repair it. If the main
//! loop dies, PID 1 falls back to the emergency loop instead of exiting.

use crate::config::{
    self, Config, ControlConfig, LogConfig, Output, ServiceSpec, Severity, SystemConfig,
};
use crate::pid1::{self, early, emergency, shutdown, Role};
use crate::supervisor::runtime::{Ended, Links, Outcome, Runtime};
use ember_ipc::broadcast::Broadcast;
use ember_ipc::{socket, Control};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tokio::sync::mpsc;

/// Runs the supervisor until it is told to stop; returns the process exit code. As PID 1
/// it never returns.
pub fn run(config_path: &Path, handover: Option<std::os::fd::RawFd>) -> i32 {
    // Before any thread starts (each takes the mask of the one that starts it): the
    // signals ember acts on are read from a signalfd, and must reach no thread as a signal.
    pid1::block_signals();
    // Started by `ember ctl reexec`: the previous binary's services to take over.
    let handover = handover.map(crate::supervisor::handover::read);
    let started = Instant::now();
    let uptime = pid1::uptime_text();
    let mut notes = Vec::new();
    if std::process::id() == 1 && handover.is_none() {
        match early::mount_proc() {
            Ok(true) => notes.push("mounted proc on /proc".to_owned()),
            Ok(false) => {}
            Err(e) => notes.push(e),
        }
    }
    // Before anything could start a child: what ember inherited stays ember's.
    crate::supervisor::low_fds::close_inherited_on_exec();
    let role = pid1::detect_role();
    let kernel_hostname = config::hostname();
    let mut loaded = config::load_at_boot(config_path);
    // What early boot and the log need (the system and log tables), before the device
    // name is settled: the settings, which hold no services (a copy of those here lived
    // as long as ember: 2.7 KB a service, massif).
    let settings = loaded
        .settings
        .clone()
        .unwrap_or_else(|| fallback(config_path));
    // After a reexec the early boot is done already.
    if handover.is_none() {
        notes.extend(early::boot(role, settings.system.hostname.as_deref()));
    }
    // While ember's lowest fds are free (and /dev is mounted): where a child's fds wait.
    crate::supervisor::low_fds::reserve();
    // The device name defaults to the hostname, which early boot may just have set.
    let hostname = config::hostname();
    if hostname != kernel_hostname {
        for config in [&mut loaded.config, &mut loaded.settings]
            .into_iter()
            .flatten()
        {
            if config.system.device == kernel_hostname {
                config.system.device = hostname.clone();
            }
        }
    }
    crate::log::init(settings.log.level.as_deref(), settings.log.output, role);
    crate::log::install_panic_hook();
    match role {
        Role::Supervisor => crate::log::info!("ember {} starting", env!("CARGO_PKG_VERSION")),
        _ => crate::log::info!(
            "ember {} starting as PID 1 ({role:?}) at uptime {uptime}",
            env!("CARGO_PKG_VERSION")
        ),
    }
    for note in notes {
        crate::log::info!("{note}");
    }
    let handover = match handover {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            // The services of the previous binary run on, unknown to this one: they are
            // stopped, and the configuration starts afresh, so that nothing runs twice.
            crate::log::error!("reexec: cannot take over ({e}); stopping what was left running and starting afresh");
            crate::pid1::shutdown::stop_leftovers(role, std::time::Duration::from_secs(5));
            None
        }
        None => None,
    };
    for problem in &loaded.problems {
        match problem.severity {
            Severity::Error => crate::log::error!("{problem}"),
            _ => crate::log::warn!("{problem}"),
        }
    }
    let mut config_status = ember_ipc::ConfigStatus {
        path: config_path.display().to_string(),
        fallback: false,
        problems: Vec::new(),
    };
    let config = match loaded.config {
        Some(config) => config,
        None if role.is_pid1() => {
            crate::log::error!(
                "the configuration has errors: booting with no services; fix {} and run `ember ctl reload`",
                config_path.display()
            );
            config_status.fallback = true;
            config_status.problems = crate::config::shown(loaded.errors());
            with_rescue_shell(settings)
        }
        None => {
            crate::log::error!(
                "not starting: fix the configuration (`ember check --config {}` lists every problem)",
                config_path.display()
            );
            return 1;
        }
    };
    if !role.is_pid1() {
        // Orphans of our services are reparented to us, so we can reap them.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            crate::log::warn!("cannot become a child subreaper ({e}); orphaned grandchildren will not be reaped by ember");
        }
    }
    crate::log::debug!("start-up took {} ms", started.elapsed().as_millis());
    let socket_path = config.control.socket.clone();
    let mut rescue_shell = config.system.rescue_shell.clone();
    let mut shutdown_timeout = config.system.shutdown_timeout;
    let mut ctrl_alt_del = config.system.ctrl_alt_del;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        supervise(config, config_status, role, handover)
    }));
    // The services' last lines, still queued for their files, before the exit or the
    // shutdown's sync.
    crate::supervisor::logfiles::flush(std::time::Duration::from_secs(5));
    let why = match (result, role) {
        (Ok(Some((ended, bound))), Role::Supervisor) => {
            if bound {
                let _ = std::fs::remove_file(&socket_path);
            }
            return match ended.outcome {
                Outcome::Exit(code) => code,
                Outcome::Power(_) => 0,
            };
        }
        (Ok(None), Role::Supervisor) => return 1,
        (Err(_), Role::Supervisor) => {
            crate::log::error!("the main loop panicked; exiting");
            return 1;
        }
        (
            Ok(Some((
                Ended {
                    outcome: Outcome::Power(power),
                    system,
                    watchdog,
                },
                _,
            ))),
            _,
        ) => {
            // A reload may have changed them.
            shutdown_timeout = system.shutdown_timeout;
            rescue_shell = system.rescue_shell;
            ctrl_alt_del = system.ctrl_alt_del;
            // Contained too: PID 1 must not unwind out of main.
            let finish = std::panic::AssertUnwindSafe(|| {
                shutdown::finish(role, power, shutdown_timeout, watchdog)
            });
            match std::panic::catch_unwind(finish) {
                Ok(()) => "reboot(2) failed".to_owned(),
                Err(_) => "the shutdown sequence panicked".to_owned(),
            }
        }
        (Ok(Some((ended, _))), _) => format!("the main loop ended with {:?}", ended.outcome),
        (Ok(None), _) => "the async runtime could not start".to_owned(),
        (Err(_), _) => "the main loop panicked".to_owned(),
    };
    emergency::run(
        &why,
        &socket_path,
        rescue_shell.as_deref(),
        role,
        shutdown_timeout,
        ctrl_alt_del,
    )
}

/// Runs the control socket and the runtime; `None` when they could not start. The bool
/// says whether we bound the socket (and so should remove it).
fn supervise(
    config: Config,
    config_status: ember_ipc::ConfigStatus,
    role: Role,
    handover: Option<crate::supervisor::handover::Handover>,
) -> Option<(Ended, bool)> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // tokio's own epoll carries few fds (the output pipes have an epoll set of their
        // own: output.rs): 64 events a turn, not its default 1,024 (12 KiB kept for good).
        .max_io_events_per_tick(64)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::log::error!("cannot start the async runtime: {e}");
            return None;
        }
    };
    let socket_path = config.control.socket.clone();
    Some(runtime.block_on(async move {
        let (requests_tx, requests_rx) = mpsc::channel(64);
        let events = Broadcast::new(1024);
        let lines = Broadcast::new(1024);
        let control = Control {
            requests: requests_tx,
            events: events.clone(),
            lines: lines.clone(),
        };
        let pending = socket::Pending::default();
        // The adapters ([mqtt], [dbus]) are services of their own, admitted by rules.
        let (config, rules) = crate::adapters::with_adapters(config);
        let mut policy = config.control.policy();
        policy.rules.extend(rules);
        let open = policy.opens_the_socket();
        let (policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
        let mut control_fd = None;
        // After a reexec the socket is the one the previous binary listened on: clients
        // never find it missing.
        let listener = match handover.as_ref().and_then(|h| h.control) {
            Some(fd) => socket::adopt(fd),
            None => socket::bind(&socket_path, open),
        };
        let bound = match listener {
            Ok(listener) => {
                control_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&listener));
                crate::log::info!("control socket at {}", socket_path.display());
                tokio::spawn(socket::serve(listener, control, pending.clone(), policy_rx));
                true
            }
            // As PID 1 a missing socket must not stop the boot; signals still work.
            Err(e) if role.is_pid1() => {
                crate::log::error!(
                    "cannot open the control socket {}: {e}; carrying on without it",
                    socket_path.display()
                );
                false
            }
            Err(e) => {
                crate::log::error!(
                    "cannot open the control socket {}: {e}",
                    socket_path.display()
                );
                let ended = Ended {
                    outcome: Outcome::Exit(1),
                    system: config.system,
                    watchdog: None,
                };
                return (ended, false);
            }
        };
        crate::log::info!(
            "supervising {} services from {}",
            config.services.len(),
            config.path.display()
        );
        let links = Links {
            requests: requests_rx,
            events,
            lines,
            policy: policy_tx,
            control_fd,
            // The path it was started from (a replaced file's new contents, after an
            // update), resolved now, before anything can replace it.
            binary: std::env::current_exe().unwrap_or_else(|_| "/sbin/init".into()),
            socket: pending.clone(),
        };
        // The main loop is a task of its own, not the future that block_on polls: that
        // one is polled again after every 61 tasks, so during a boot (each spawn adds its
        // output readers' tasks) the control socket's tasks waited behind a queue that
        // grew by a 10 ms spawn slice per 61 tasks (a status request during a boot of
        // 3,000 took 233 ms). A task takes its turn after those queued before it.
        let main_loop = tokio::spawn(Runtime::run(config, config_status, role, links, handover));
        let ended = match main_loop.await {
            Ok(ended) => ended,
            // Its panic goes on to run()'s catch_unwind, as when it was polled here.
            Err(e) => std::panic::resume_unwind(
                e.try_into_panic()
                    .unwrap_or_else(|e| Box::new(format!("the main loop ended: {e}"))),
            ),
        };
        // The last replies (a `poweroff` that had nothing to stop) reach their clients.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pending.drained()).await;
        (ended, bound)
    }))
}

/// The settings PID 1 uses when not even the main file could be read.
fn fallback(path: &Path) -> Config {
    let base = path.parent().unwrap_or(Path::new("/"));
    Config {
        path: path.to_owned(),
        system: SystemConfig::defaults(config::hostname(), base.join("services.d")),
        log: LogConfig::default(),
        control: ControlConfig::default(),
        mqtt: None,
        dbus: None,
        services: BTreeMap::new(),
        templates: BTreeMap::new(),
    }
}

/// No services, but the rescue shell when one is configured, supervised like a service
/// (restarted when it exits) so the console always offers one.
fn with_rescue_shell(mut config: Config) -> Config {
    config.services.clear();
    config.templates.clear();
    if let Some(shell) = &config.system.rescue_shell {
        let mut spec = ServiceSpec::new("rescue-shell", &[&shell.to_string_lossy()]);
        spec.console = true;
        spec.stdout = Output::Console;
        spec.stderr = Output::Console;
        spec.restart = config::RestartPolicy::Always;
        spec.restart_delay = std::time::Duration::from_secs(1);
        spec.restart_delay_max = std::time::Duration::from_secs(1);
        spec.start_limit = 0;
        // An interactive shell ignores SIGTERM: a hangup is what ends a shell on a
        // terminal (with SIGTERM every shutdown from here waited out the stop timeout).
        spec.stop_signal = nix::sys::signal::Signal::SIGHUP;
        crate::log::warn!(
            "starting the rescue shell {} on the console",
            shell.display()
        );
        config.services.insert(spec.name.to_string(), spec);
    }
    config
}
