//! `ember-mqtt`: run by ember (never by hand) when ember.toml has an `[mqtt]` table, as a
//! supervised service of its own under an unprivileged user. Its settings (secrets
//! included) come on standard input; it links to ember's control socket and serves the
//! broker until SIGTERM (then it publishes what is pending and `offline`, and
//! disconnects) or until ember goes away (then it exits, and ember starts it again).

use ember_ipc::adapter::{crash_on_panic, init_logging, read_settings, MqttSettings};
use ember_ipc::link::Link;
use ember_mqtt::adapter::{self, Settings};
use ember_mqtt::connect::Broker;
use std::time::Duration;

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
    let settings: MqttSettings = match read_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ember-mqtt: {e}");
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
            tracing::error!("mqtt: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(settings))
}

async fn serve(settings: MqttSettings) -> i32 {
    let mut link = match Link::connect(&settings.socket, "ember-mqtt", settings.metrics).await {
        Ok(link) => link,
        Err(e) => {
            tracing::error!("mqtt: {e}");
            return 1;
        }
    };
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::error!("mqtt: cannot handle SIGTERM");
        return 1;
    };
    let (ask_offline, offline) = tokio::sync::oneshot::channel();
    let adapter = adapter::run(
        Settings {
            socket: settings.socket.clone(),
            broker: Broker {
                host: settings.host,
                port: settings.port,
                tls: settings.tls,
                username: settings.username,
                password: settings.password,
                ca: settings.ca,
                cert: settings.cert,
                key: settings.key,
            },
            client_id: settings.client_id,
            prefix: settings.prefix,
            device: settings.device,
            keep_alive: Duration::from_secs(settings.keep_alive_secs),
            allow: settings.allow,
            allow_system: settings.allow_system,
            groups: settings.groups,
            homeassistant: settings.homeassistant,
        },
        link.control.clone(),
        link.progress.clone(),
        offline,
    );
    tokio::pin!(adapter);
    tokio::select! {
        () = &mut adapter => return 0,
        why = link.closed() => {
            tracing::warn!("mqtt: lost ember ({why}); exiting, to be started again");
            return 1;
        }
        _ = terminate.recv() => {}
    }
    // ember stops the adapter last: the other services' stops reach the broker first,
    // then `offline`, then a clean DISCONNECT (the will is for crashes).
    let last_words = async {
        link.flush(Duration::from_secs(2)).await;
        let (done, finished) = tokio::sync::oneshot::channel();
        if ask_offline.send(done).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), finished).await;
        }
    };
    tokio::select! {
        () = last_words => {}
        () = &mut adapter => {}
    }
    0
}

const HELP: &str = "\
ember-mqtt — ember's MQTT adapter

ember starts it when ember.toml has an [mqtt] table, as the service ember-mqtt, under
an unprivileged user, with its settings on standard input; it is not run by hand.
See ember's README (MQTT) for the topics and commands.
";
