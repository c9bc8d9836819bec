//! The MQTT adapter: every service's state out (retained, coalesced), commands in.
//!
//! - [`topics`]: topic names and routing, allow globs.
//! - [`payload`]: command payloads and replies.
//! - [`homeassistant`]: discovery payloads.
//!
//! rumqttc leaves robustness to its user, so: the event loop runs in a task of its own
//! that polls without pause (it never awaits the client, which deadlocks once the request
//! channel is full: rumqttc issue 263) and sleeps a capped exponential backoff after each
//! error (rumqttc would retry at once, forever). Everything else happens in the adapter
//! loop, which publishes with `try_publish` only while connected: while the broker is down
//! (often because ember has not started it yet) the latest state per service is kept and
//! republished after the next CONNACK, with the subscriptions, which rumqttc does not
//! restore. Memory stays bounded whatever the outage: one status per service.

pub mod homeassistant;
pub mod payload;
pub mod topics;

use crate::protocol::{
    Command, Control, ErrorKind, Event, Reply, ServiceStatus, StatusArgs, SystemState,
    SystemStatus, Targets,
};
use payload::{Refusal, Verb, BAD_PAYLOAD, BUSY, NOT_ALLOWED, UNKNOWN_SERVICE};
use rumqttc::{
    AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use topics::{glob_match, Target, Topics};

/// The adapter's settings, from `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub prefix: String,
    pub device: String,
    pub keep_alive: Duration,
    pub allow: Vec<String>,
    pub allow_system: bool,
    pub groups: Vec<String>,
    pub homeassistant: bool,
}

/// A password: its `Debug` shows no trace of it, so no log line or panic message can.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Largest MQTT packet in and out: states of services with long reasons fit, floods of
/// huge commands do not.
const MAX_PACKET: usize = 64 * 1024;
/// Largest packet accepted from the broker. Far above any command, so that an oversized
/// one is answered (see [`MAX_COMMAND`]) instead of breaking the connection: rumqttc
/// drops the connection on a packet over its limit, and a reconnect loop would follow.
const MAX_INCOMING: usize = 1024 * 1024;
/// Longest command payload; longer ones get a bad-payload reply.
const MAX_COMMAND: usize = 16 * 1024;
/// Commands being executed at once; more get a `busy` reply.
const MAX_INFLIGHT: usize = 32;
/// Replies waiting for the broker; more are dropped (and logged).
const MAX_PENDING_REPLIES: usize = 256;
/// Refusals logged per second; the rest are counted.
const MAX_REFUSALS_LOGGED: u32 = 10;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The backoff cap while the broker keeps dropping ember right after accepting it.
const QUICK_DROP_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the event-loop task tells the adapter loop.
enum FromBroker {
    Connected,
    Disconnected(String),
    /// `payload` is empty when `length` is over [`MAX_COMMAND`]: no copy is kept.
    Message {
        topic: String,
        payload: Vec<u8>,
        length: usize,
        retain: bool,
    },
}

/// Ask the adapter to publish `offline` and disconnect; it answers when done.
pub type Shutdown = oneshot::Sender<oneshot::Sender<()>>;

/// Runs the adapter until the core goes away, restarting it (with backoff) if it panics:
/// an adapter's failure never reaches the core.
pub async fn run(
    settings: Settings,
    control: Control,
    mut shutdown: oneshot::Receiver<oneshot::Sender<()>>,
) {
    if let Err(e) = install_crypto() {
        tracing::warn!("mqtt: {e}");
    }
    let mut backoff = BACKOFF_FIRST;
    loop {
        let (inner_tx, inner_rx) = oneshot::channel();
        let task = tokio::spawn(Adapter::new(settings.clone(), control.clone()).run(inner_rx));
        let abort = task.abort_handle();
        tokio::pin!(task);
        tokio::select! {
            result = &mut task => match result {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!("mqtt: the adapter panicked; restarting it in {} ms", backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(_) => return,
            },
            asked = &mut shutdown => {
                if let Ok(done) = asked {
                    let _ = inner_tx.send(done);
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut task).await;
                }
                abort.abort();
                return;
            }
        }
    }
}

/// rustls needs a process-wide crypto provider: ring (no C build, unlike aws-lc).
fn install_crypto() -> Result<(), String> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "cannot install the ring crypto provider".to_owned())
}

fn options(settings: &Settings) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    // 0 turns keep-alive off; otherwise 1 s to 65,535 s, checked by `ember check`.
    options.set_keep_alive(settings.keep_alive);
    options.set_max_packet_size(MAX_INCOMING, MAX_PACKET);
    options.set_clean_session(true);
    let topics = Topics::new(&settings.prefix, &settings.device, &settings.groups);
    options.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let (Some(user), password) = (&settings.username, &settings.password) {
        let password = password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        options.set_credentials(user, password);
    }
    if settings.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let ca = match &settings.ca_file {
            Some(path) => read(path)?,
            None => {
                return Err(
                    "mqtts:// needs ca_file, the CA that signed the broker's certificate".into(),
                )
            }
        };
        let client_auth = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => return Err("give both cert_file and key_file for a client certificate".into()),
        };
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(options)
}

/// Polls the event loop until the adapter is gone; sleeps a growing backoff after each
/// error. The backoff only resets once a connection has lasted: two boards with the same
/// client id would otherwise take the session from each other as fast as they can.
async fn poll_broker(
    mut eventloop: rumqttc::EventLoop,
    to_adapter: mpsc::Sender<FromBroker>,
    lasted: Duration,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut connected_at: Option<tokio::time::Instant> = None;
    let mut quick_drops = 0u32;
    loop {
        let message = match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                connected_at = Some(tokio::time::Instant::now());
                FromBroker::Connected
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => FromBroker::Message {
                topic: p.topic,
                // An oversized command is refused by its length: no copy of it is kept.
                payload: if p.payload.len() > MAX_COMMAND {
                    Vec::new()
                } else {
                    p.payload.to_vec()
                },
                length: p.payload.len(),
                retain: p.retain,
            },
            Ok(_) => continue,
            Err(e) => {
                match connected_at.take() {
                    Some(at) if at.elapsed() >= lasted => {
                        backoff = BACKOFF_FIRST;
                        quick_drops = 0;
                    }
                    Some(_) => {
                        // Dropped right after being accepted, again and again: back off,
                        // but only to a few seconds, since a broker restarted often
                        // (by hand, by a test) looks the same.
                        quick_drops += 1;
                        backoff = backoff.min(QUICK_DROP_BACKOFF_MAX);
                        if quick_drops == 3 {
                            tracing::error!(
                                "mqtt: the broker keeps dropping ember right after accepting it; \
                                 is another client using the same client_id?"
                            );
                        }
                    }
                    None => {}
                }
                if to_adapter
                    .send(FromBroker::Disconnected(e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff).await;
                let cap = if quick_drops > 0 {
                    QUICK_DROP_BACKOFF_MAX
                } else {
                    BACKOFF_MAX
                };
                backoff = (backoff * 2).min(cap);
                continue;
            }
        };
        if to_adapter.send(message).await.is_err() {
            return;
        }
    }
}

/// Aborts a task when dropped: the poller must not outlive its adapter (after a panic,
/// an orphaned poller would reconnect with the same client id).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Adapter {
    settings: Settings,
    control: Control,
    topics: Topics,
    /// The latest status of every service: what is republished after each CONNACK.
    states: BTreeMap<String, ServiceStatus>,
    /// Services whose latest status has not reached the broker yet.
    dirty: BTreeSet<String>,
    /// Services removed by a reload: their retained state (and discovery) to clear.
    removed: BTreeSet<String>,
    /// The board's state and its configuration's, and whether the broker has it yet.
    system: Option<SystemStatus>,
    system_dirty: bool,
    replies: VecDeque<(String, Vec<u8>)>,
    connected: bool,
    /// After a CONNACK: `online` and the subscriptions still to hand to the client.
    greet: bool,
    /// Services whose Home Assistant discovery is still to (re)publish.
    announce: BTreeSet<String>,
    /// Refusals logged in the current second, to keep a flood from flooding the log.
    refusals_logged: (u64, u32),
    inflight: Arc<Semaphore>,
}

impl Adapter {
    fn new(settings: Settings, control: Control) -> Adapter {
        let topics = Topics::new(&settings.prefix, &settings.device, &settings.groups);
        Adapter {
            settings,
            control,
            topics,
            states: BTreeMap::new(),
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            system: None,
            system_dirty: false,
            replies: VecDeque::new(),
            connected: false,
            greet: false,
            announce: BTreeSet::new(),
            refusals_logged: (0, 0),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
        }
    }

    async fn run(mut self, mut shutdown: oneshot::Receiver<oneshot::Sender<()>>) {
        let options = match options(&self.settings) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("mqtt: {e}; the adapter is off");
                return;
            }
        };
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        // States are small and should leave at once, not wait for Nagle's algorithm.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (broker_tx, mut from_broker) = mpsc::channel(64);
        // A connection that lasted this long was a real one: the backoff starts over.
        // Two boards with one client id take the session from each other within
        // milliseconds; a broker restarted by hand drops ember after seconds.
        let keep_alive = Duration::from_secs(1);
        let _poller =
            AbortOnDrop(tokio::spawn(poll_broker(eventloop, broker_tx, keep_alive)).abort_handle());
        let mut events = self.control.events.subscribe();
        self.resync().await;
        let (reply_tx, mut reply_rx) = mpsc::channel::<(String, Vec<u8>)>(MAX_PENDING_REPLIES);
        tracing::info!(
            "mqtt: connecting to {}:{} as {} (device {})",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            self.settings.device
        );
        let mut refused_logged = false;
        loop {
            // While something waits for room in the client's channel, look again shortly:
            // acknowledgements free room but do not wake this loop.
            let backlog = self.connected && self.pending();
            tokio::select! {
                message = from_broker.recv() => match message {
                    Some(FromBroker::Connected) => {
                        refused_logged = false;
                        self.on_connect();
                    }
                    Some(FromBroker::Disconnected(why)) => {
                        if self.connected {
                            tracing::warn!("mqtt: lost the broker: {why}; reconnecting with backoff");
                        } else if why.contains("return code") && !refused_logged {
                            // Wrong credentials or client id: say it once, not at every retry.
                            refused_logged = true;
                            tracing::warn!("mqtt: the broker refuses ember: {why}; retrying with backoff");
                        } else {
                            tracing::debug!("mqtt: cannot reach the broker: {why}");
                        }
                        self.connected = false;
                        // Replies are answers to the moment; after an outage they are stale.
                        self.replies.clear();
                    }
                    Some(FromBroker::Message { topic, payload, length, retain }) => {
                        self.on_message(&topic, &payload, length, retain, &reply_tx);
                    }
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(Event::Service(status)) => {
                        if !self.states.contains_key(&status.name) && self.settings.homeassistant {
                            self.announce.insert(status.name.clone());
                        }
                        self.dirty.insert(status.name.clone());
                        self.removed.remove(&status.name);
                        self.states.insert(status.name.clone(), status);
                    }
                    Ok(Event::ServiceRemoved { name, .. }) => {
                        self.states.remove(&name);
                        self.dirty.remove(&name);
                        self.announce.remove(&name);
                        self.removed.insert(name);
                    }
                    Ok(Event::Metrics(metrics)) if self.connected => {
                        // Figures of the moment: dropped, not queued, when the link is busy.
                        for m in metrics {
                            let payload = serde_json::json!({
                                "cpu_usec": m.cpu_usec,
                                "memory_bytes": m.memory_bytes,
                                "tasks": m.tasks,
                            });
                            let _ = client.try_publish(self.topics.metrics(&m.name), QoS::AtMostOnce, false, payload.to_string());
                        }
                    }
                    Ok(Event::System(system)) => {
                        // The broker may be one of the services about to stop: say offline
                        // while it can still be heard.
                        if self.connected && system.state == SystemState::Stopping {
                            let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
                        }
                        self.system = Some(system);
                        self.system_dirty = true;
                    }
                    Ok(_) => {}
                    // We fell behind: the latest of everything is one status call away.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(reply) = reply_rx.recv() => self.push_reply(reply),
                _ = tokio::time::sleep(Duration::from_millis(20)), if backlog => {}
                asked = &mut shutdown => {
                    if let Ok(done) = asked {
                        self.go_offline(&client).await;
                        let _ = done.send(());
                    }
                    break;
                }
            }
            self.flush(&client);
        }
    }

    /// Queues a reply; the oldest goes when too many wait (memory stays bounded).
    fn push_reply(&mut self, reply: (String, Vec<u8>)) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.replies.pop_front();
        }
        self.replies.push_back(reply);
    }

    /// Whether anything waits to be published.
    fn pending(&self) -> bool {
        self.greet
            || self.system_dirty
            || !self.dirty.is_empty()
            || !self.removed.is_empty()
            || !self.replies.is_empty()
            || !self.announce.is_empty()
    }

    /// Logs a refusal, at most a few a second: a flood must not flood the log.
    fn log_refusal(&mut self, topic: &str, code: &str, message: &str) {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.refusals_logged.0 != second {
            if self.refusals_logged.1 > MAX_REFUSALS_LOGGED {
                tracing::warn!(
                    "mqtt: {} more refusals in the last second were not logged",
                    self.refusals_logged.1 - MAX_REFUSALS_LOGGED
                );
            }
            self.refusals_logged = (second, 0);
        }
        self.refusals_logged.1 += 1;
        if self.refusals_logged.1 <= MAX_REFUSALS_LOGGED {
            tracing::warn!("mqtt: {topic}: refused ({code}): {message}");
        }
    }

    /// Re-reads every service's status from the core.
    async fn resync(&mut self) {
        if let Reply::Status(status) = self
            .control
            .call(Command::Status(StatusArgs::default()), "mqtt")
            .await
        {
            self.system = Some(status.system);
            self.system_dirty = true;
            let services = status.services;
            let names: BTreeSet<String> = services.iter().map(|s| s.name.clone()).collect();
            for gone in self
                .states
                .keys()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect::<Vec<_>>()
            {
                self.states.remove(&gone);
                self.removed.insert(gone);
            }
            for status in services {
                self.dirty.insert(status.name.clone());
                self.states.insert(status.name.clone(), status);
            }
        }
    }

    fn on_connect(&mut self) {
        tracing::info!(
            "mqtt: connected to {}:{}",
            self.settings.host,
            self.settings.port
        );
        self.connected = true;
        self.greet = true;
        self.system_dirty = self.system.is_some();
        // A broker restarted without persistence has forgotten every retained state.
        self.dirty.extend(self.states.keys().cloned());
        if self.settings.homeassistant {
            self.announce = self
                .states
                .keys()
                .filter(|n| self.allowed(n))
                .cloned()
                .collect();
        }
    }

    /// Publishes what is waiting, as far as the client's request channel takes it; what
    /// does not fit stays queued (coalesced) for the next round.
    fn flush(&mut self, client: &AsyncClient) {
        if !self.connected {
            return;
        }
        if self.greet {
            let subscriptions = self.topics.subscriptions(self.settings.homeassistant);
            let filters = subscriptions
                .into_iter()
                .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
            if client
                .try_publish(self.topics.status(), QoS::AtLeastOnce, true, "online")
                .is_err()
                || client.try_subscribe_many(filters).is_err()
            {
                return;
            }
            self.greet = false;
        }
        if self.system_dirty {
            if let Some(system) = &self.system {
                let body = serde_json::to_vec(system).unwrap_or_default();
                if client
                    .try_publish(self.topics.system(), QoS::AtLeastOnce, true, body)
                    .is_err()
                {
                    return;
                }
            }
            self.system_dirty = false;
        }
        while let Some(name) = self.announce.first().cloned() {
            self.announce.remove(&name);
            if !self.states.contains_key(&name) || !self.allowed(&name) {
                continue;
            }
            for (topic, body) in homeassistant::announce(&self.topics, &name) {
                if client
                    .try_publish(topic, QoS::AtLeastOnce, true, body)
                    .is_err()
                {
                    self.announce.insert(name);
                    return;
                }
            }
        }
        while let Some(name) = self.removed.first().cloned() {
            if client
                .try_publish(self.topics.state(&name), QoS::AtLeastOnce, true, Vec::new())
                .is_err()
            {
                return;
            }
            if self.settings.homeassistant {
                for (topic, body) in homeassistant::retract(&self.topics, &name) {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, true, body);
                }
            }
            self.removed.remove(&name);
        }
        while let Some(name) = self.dirty.first().cloned() {
            let Some(status) = self.states.get(&name) else {
                self.dirty.remove(&name);
                continue;
            };
            let body = serde_json::to_vec(status).unwrap_or_default();
            if client
                .try_publish(self.topics.state(&name), QoS::AtLeastOnce, true, body)
                .is_err()
            {
                return; // the channel is full: the rest waits, coalesced
            }
            self.dirty.remove(&name);
        }
        while let Some((topic, body)) = self.replies.pop_front() {
            if client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, body.clone())
                .is_err()
            {
                self.replies.push_front((topic, body));
                return;
            }
        }
    }

    async fn go_offline(&mut self, client: &AsyncClient) {
        if !self.connected {
            return;
        }
        self.flush(client);
        let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
        let _ = client.try_disconnect();
        // Give the event loop a moment to write both before the process ends.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracing::info!("mqtt: published offline and disconnected");
    }

    fn allowed(&self, service: &str) -> bool {
        self.settings
            .allow
            .iter()
            .any(|pattern| glob_match(pattern, service))
    }

    /// Checks a command and hands it to a task of its own (the core's reply is awaited
    /// there, never in this loop); refusals are answered at once.
    fn on_message(
        &mut self,
        topic: &str,
        body: &[u8],
        length: usize,
        retain: bool,
        replies: &mpsc::Sender<(String, Vec<u8>)>,
    ) {
        let Some(target) = self.topics.route(topic) else {
            return;
        };
        if target == Target::HomeAssistantStatus {
            if body == b"online" && self.settings.homeassistant {
                self.announce = self
                    .states
                    .keys()
                    .filter(|n| self.allowed(n))
                    .cloned()
                    .collect();
            }
            return;
        }
        if length == 0 {
            return; // how a retained message is cleared: nothing was asked
        }
        // A fault for the tests, compiled only with the `test-hooks` feature (never in a
        // board's build, debug or not): the adapter's panic must stay the adapter's.
        #[cfg(feature = "test-hooks")]
        if body == b"__ember_test_panic" {
            panic!("injected panic in the MQTT adapter (test hook)");
        }
        if retain {
            // A retained `stop` would replay on every reconnect: commands are never retained.
            tracing::warn!(
                "mqtt: ignoring a retained message on {topic}; commands must not be retained"
            );
            return;
        }
        let request = if length > MAX_COMMAND {
            Err(Refusal {
                code: BAD_PAYLOAD,
                message: format!("a command is at most {MAX_COMMAND} bytes; this one has {length}"),
                id: None,
                reply_to: None,
            })
        } else {
            payload::decode(body).and_then(|r| self.check(&target, r))
        };
        let request = match request {
            Ok(r) => r,
            Err(refusal) => {
                self.log_refusal(topic, refusal.code, &refusal.message);
                let reply_topic = refusal
                    .reply_to
                    .clone()
                    .unwrap_or_else(|| self.topics.reply());
                let body = payload::error_reply(&refusal.id, refusal.code, &refusal.message);
                self.push_reply((reply_topic, body));
                return;
            }
        };
        let reply_topic = request
            .reply_to
            .clone()
            .unwrap_or_else(|| self.topics.reply());
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let message = "too many commands at once; try again";
            self.log_refusal(topic, BUSY, message);
            self.push_reply((
                reply_topic,
                payload::error_reply(&request.id, BUSY, message),
            ));
            return;
        };
        let command = match (&target, request.verb) {
            (Target::Service(name), Verb::Start) => {
                Command::Start(Targets::new(vec![name.clone()]))
            }
            (Target::Service(name), Verb::Stop) => Command::Stop(Targets::new(vec![name.clone()])),
            (Target::Service(name), _) => Command::Restart(Targets::new(vec![name.clone()])),
            (_, Verb::Reload) => Command::Reload,
            (_, Verb::Poweroff) => Command::Poweroff,
            (_, Verb::Reboot) => Command::Reboot,
            _ => Command::Status(StatusArgs {
                names: Vec::new(),
                details: false,
            }),
        };
        let allowed: Vec<String> = self
            .states
            .keys()
            .filter(|n| self.allowed(n))
            .cloned()
            .collect();
        let control = self.control.clone();
        let replies = replies.clone();
        let origin = format!("mqtt {topic}");
        tokio::spawn(async move {
            let _permit = permit;
            let reply = control.call(command, origin).await;
            let body = match reply {
                Reply::Status(status) if request.verb == Verb::List => {
                    let services = status.services;
                    // Names and states only: full statuses are on the state topics, and
                    // the reply must fit in one packet however many services there are.
                    let listed: Vec<serde_json::Value> = services
                        .iter()
                        .filter(|s| allowed.contains(&s.name))
                        .map(|s| serde_json::json!({"name": s.name, "state": s.state, "sub_state": s.sub_state, "pid": s.pid}))
                        .collect();
                    let body = payload::ok_reply(&request.id, Some(listed));
                    if body.len() > MAX_PACKET - 1024 {
                        payload::error_reply(
                            &request.id,
                            "too-large",
                            "too many services for one reply; read the state topics instead",
                        )
                    } else {
                        body
                    }
                }
                Reply::Error(e) => {
                    let code = match e.kind {
                        ErrorKind::UnknownService => UNKNOWN_SERVICE,
                        ErrorKind::Busy => BUSY,
                        ErrorKind::AccessDenied => NOT_ALLOWED,
                        ErrorKind::BadRequest | ErrorKind::UnknownCommand | ErrorKind::TooLarge => {
                            BAD_PAYLOAD
                        }
                        ErrorKind::InvalidConfig => "invalid-config",
                        _ => "failed",
                    };
                    payload::error_reply(&request.id, code, &e.message)
                }
                _ => payload::ok_reply::<()>(&request.id, None),
            };
            let _ = replies.send((reply_topic, body)).await;
        });
    }

    /// Whether this command may run here: the verb fits the topic, the service is
    /// allowed, system changes are allowed.
    fn check(
        &self,
        target: &Target,
        request: payload::Request,
    ) -> Result<payload::Request, Refusal> {
        let refuse = |code, message: String| Refusal {
            code,
            message,
            id: request.id.clone(),
            reply_to: request.reply_to.clone(),
        };
        if let Some(topic) = &request.reply_to {
            let own = format!("{}/{}/reply", self.settings.prefix, self.settings.device);
            let foreign = topic.starts_with('$')
                || topic.starts_with("homeassistant/")
                || (topic.starts_with(&format!("{}/", self.settings.prefix))
                    && topic != &own
                    && !topic.starts_with(&format!("{own}/")));
            if foreign {
                // A reply must not land on a state, status, command or discovery topic.
                return Err(Refusal {
                    code: BAD_PAYLOAD,
                    message: format!("reply_to \"{topic}\" is not allowed; use a topic outside {}/ or under {own}/", self.settings.prefix),
                    id: request.id.clone(),
                    reply_to: None,
                });
            }
        }
        match target {
            Target::Service(name) => {
                if !request.verb.is_service_verb() {
                    return Err(refuse(
                        BAD_PAYLOAD,
                        format!(
                            "\"{}\" is a system command; send it to {}/{}/cmd",
                            request.verb.word(),
                            self.settings.prefix,
                            self.settings.device
                        ),
                    ));
                }
                if !self.allowed(name) {
                    return Err(refuse(
                        NOT_ALLOWED,
                        format!("service \"{name}\" may not be controlled over MQTT here ([mqtt] allow)"),
                    ));
                }
                if !self.states.contains_key(name) {
                    return Err(refuse(
                        UNKNOWN_SERVICE,
                        format!("no service named \"{name}\" on {}", self.settings.device),
                    ));
                }
            }
            Target::System => {
                if request.verb.is_service_verb() {
                    return Err(refuse(
                        BAD_PAYLOAD,
                        format!(
                            "\"{}\" needs a service: send it to {}/{}/service/NAME/cmd",
                            request.verb.word(),
                            self.settings.prefix,
                            self.settings.device
                        ),
                    ));
                }
                if request.verb.is_system_change() && !self.settings.allow_system {
                    return Err(refuse(
                        NOT_ALLOWED,
                        format!(
                            "\"{}\" over MQTT is off here ([mqtt] allow_system = false)",
                            request.verb.word()
                        ),
                    ));
                }
            }
            Target::HomeAssistantStatus => {}
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_the_password() {
        let settings = Settings {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
            client_id: "ember-b1".into(),
            username: Some("b1".into()),
            password: Some(Secret::new("hunter2-7c41".into())),
            ca_file: None,
            cert_file: None,
            key_file: None,
            prefix: "ember".into(),
            device: "b1".into(),
            keep_alive: Duration::from_secs(30),
            allow: vec!["*".into()],
            allow_system: false,
            groups: Vec::new(),
            homeassistant: false,
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains("hunter2-7c41"), "{shown}");
        assert!(shown.contains("Secret(..)"), "{shown}");
    }
}
