//! `ember-dbus`: run by ember (never by hand) when ember.toml has a `[dbus]` table, as a
//! supervised service of its own under an unprivileged user. Its settings come on
//! standard input; it links to ember's control socket, and serves io.ember.Init1 until
//! SIGTERM (then it leaves the bus) or until ember goes away (then it exits, and ember
//! starts it again).

use ember_dbus::adapter::{self, Settings};
use ember_ipc::adapter::{crash_on_panic, init_logging, read_settings, DbusSettings};
use ember_ipc::link::Link;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h")
    {
        print!("{HELP}");
        return 0;
    }
    let settings: DbusSettings = match read_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ember-dbus: {e}");
            return 2;
        }
    };
    init_logging(settings.log.as_deref());
    crash_on_panic();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("dbus: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(settings))
}

async fn serve(settings: DbusSettings) -> i32 {
    let mut link = match Link::connect(&settings.socket, "ember-dbus", true).await {
        Ok(link) => link,
        Err(e) => {
            tracing::error!("dbus: {e}");
            return 1;
        }
    };
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::error!("dbus: cannot handle SIGTERM");
        return 1;
    };
    let inflight = ember_dbus::auth::inflight();
    let adapter = adapter::run(
        Settings {
            bus: settings.bus,
            control_group: settings.control_group,
            device: settings.device,
            version: link.hello.ember.clone(),
            inflight: inflight.clone(),
            progress: link.progress.clone(),
        },
        link.control.clone(),
    );
    tokio::pin!(adapter);
    tokio::select! {
        () = &mut adapter => 0,
        why = link.closed() => {
            tracing::warn!("dbus: lost ember ({why}); exiting, to be started again");
            1
        }
        _ = terminate.recv() => {
            // ember stops the adapter last: the other services' stops reach the bus
            // first, and a PowerOff or Reboot is answered (the caller is told it was
            // taken). Then dropping the connection leaves the bus.
            let last_words = async {
                link.flush(std::time::Duration::from_secs(2)).await;
                ember_dbus::auth::drain(&inflight, std::time::Duration::from_secs(2)).await;
            };
            tokio::select! {
                () = last_words => {}
                () = &mut adapter => {}
            }
            0
        }
    }
}

const HELP: &str = "\
ember-dbus — ember's D-Bus adapter (io.ember.Init1)

ember starts it when ember.toml has a [dbus] table, as the service ember-dbus, under
an unprivileged user, with its settings on standard input; it is not run by hand.
See ember's README (D-Bus) for the interface.
";
