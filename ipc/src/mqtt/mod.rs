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

use crate::protocol::{Command, Control, ErrorKind, Event, Reply, ServiceStatus};
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
    pub password: Option<String>,
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
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the event-loop task tells the adapter loop.
enum FromBroker {
    Connected,
    Disconnected(String),
    Message {
        topic: String,
        payload: Vec<u8>,
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
    options.set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)));
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
        options.set_credentials(user, password.clone().unwrap_or_default());
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

/// Polls the event loop forever; sleeps a growing backoff after each error.
async fn poll_broker(mut eventloop: rumqttc::EventLoop, to_adapter: mpsc::Sender<FromBroker>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let message = match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = BACKOFF_FIRST;
                FromBroker::Connected
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => FromBroker::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
                retain: p.retain,
            },
            Ok(_) => continue,
            Err(e) => {
                let _ = to_adapter
                    .send(FromBroker::Disconnected(e.to_string()))
                    .await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if to_adapter.send(message).await.is_err() {
            return;
        }
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
    replies: VecDeque<(String, Vec<u8>)>,
    connected: bool,
    /// Home Assistant discovery to (re)publish.
    announce: bool,
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
            replies: VecDeque::new(),
            connected: false,
            announce: false,
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
        let (broker_tx, mut from_broker) = mpsc::channel(256);
        let poller = tokio::spawn(poll_broker(eventloop, broker_tx));
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
        loop {
            tokio::select! {
                message = from_broker.recv() => match message {
                    Some(FromBroker::Connected) => self.on_connect(&client),
                    Some(FromBroker::Disconnected(why)) => {
                        if self.connected {
                            tracing::warn!("mqtt: lost the broker: {why}; reconnecting with backoff");
                        } else {
                            tracing::debug!("mqtt: cannot reach the broker: {why}");
                        }
                        self.connected = false;
                    }
                    Some(FromBroker::Message { topic, payload, retain }) => {
                        self.on_message(&topic, &payload, retain, &reply_tx);
                    }
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(Event::Service(status)) => {
                        self.dirty.insert(status.name.clone());
                        self.removed.remove(&status.name);
                        self.states.insert(status.name.clone(), status);
                    }
                    Ok(Event::ServiceRemoved { name }) => {
                        self.states.remove(&name);
                        self.dirty.remove(&name);
                        self.removed.insert(name);
                    }
                    Ok(_) => {}
                    // We fell behind: the latest of everything is one status call away.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(reply) = reply_rx.recv() => {
                    if self.replies.len() >= MAX_PENDING_REPLIES {
                        tracing::warn!("mqtt: too many replies waiting for the broker; dropping one");
                        self.replies.pop_front();
                    }
                    self.replies.push_back(reply);
                }
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
        poller.abort();
    }

    /// Re-reads every service's status from the core.
    async fn resync(&mut self) {
        if let Reply::Ok { services } = self
            .control
            .call(Command::Status { names: Vec::new() }, "mqtt")
            .await
        {
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

    fn on_connect(&mut self, client: &AsyncClient) {
        tracing::info!(
            "mqtt: connected to {}:{}",
            self.settings.host,
            self.settings.port
        );
        self.connected = true;
        let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "online");
        for topic in self.topics.subscriptions(self.settings.homeassistant) {
            if let Err(e) = client.try_subscribe(&topic, QoS::AtLeastOnce) {
                tracing::warn!("mqtt: cannot subscribe to {topic}: {e}");
            }
        }
        // A broker restarted without persistence has forgotten every retained state.
        self.dirty.extend(self.states.keys().cloned());
        self.announce = self.settings.homeassistant;
    }

    /// Publishes what is waiting, as far as the client's request channel takes it.
    fn flush(&mut self, client: &AsyncClient) {
        if !self.connected {
            return;
        }
        if self.announce {
            let allowed: Vec<String> = self
                .states
                .keys()
                .filter(|n| self.allowed(n))
                .cloned()
                .collect();
            let mut all_sent = true;
            for name in allowed {
                for (topic, body) in homeassistant::announce(&self.topics, &name) {
                    all_sent &= client
                        .try_publish(topic, QoS::AtLeastOnce, true, body)
                        .is_ok();
                }
            }
            self.announce = !all_sent;
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
        retain: bool,
        replies: &mpsc::Sender<(String, Vec<u8>)>,
    ) {
        let Some(target) = self.topics.route(topic) else {
            return;
        };
        if target == Target::HomeAssistantStatus {
            if body == b"online" {
                self.announce = self.settings.homeassistant;
            }
            return;
        }
        // Test-only fault, in debug builds: the adapter's panic must stay the adapter's.
        #[cfg(debug_assertions)]
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
        let request = if body.len() > MAX_COMMAND {
            Err(Refusal {
                code: BAD_PAYLOAD,
                message: format!(
                    "a command is at most {MAX_COMMAND} bytes; this one has {}",
                    body.len()
                ),
                id: None,
                reply_to: None,
            })
        } else {
            payload::decode(body).and_then(|r| self.check(&target, r))
        };
        let request = match request {
            Ok(r) => r,
            Err(refusal) => {
                tracing::warn!(
                    "mqtt: {topic}: refused ({}): {}",
                    refusal.code,
                    refusal.message
                );
                let reply_topic = refusal
                    .reply_to
                    .clone()
                    .unwrap_or_else(|| self.topics.reply());
                self.replies.push_back((
                    reply_topic,
                    payload::error_reply(&refusal.id, refusal.code, &refusal.message),
                ));
                return;
            }
        };
        let reply_topic = request
            .reply_to
            .clone()
            .unwrap_or_else(|| self.topics.reply());
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let message = "too many commands at once; try again";
            tracing::warn!("mqtt: {topic}: refused (busy)");
            self.replies.push_back((
                reply_topic,
                payload::error_reply(&request.id, BUSY, message),
            ));
            return;
        };
        let command = match (&target, request.verb) {
            (Target::Service(name), Verb::Start) => Command::Start {
                names: vec![name.clone()],
            },
            (Target::Service(name), Verb::Stop) => Command::Stop {
                names: vec![name.clone()],
            },
            (Target::Service(name), _) => Command::Restart {
                names: vec![name.clone()],
            },
            (_, Verb::Reload) => Command::Reload,
            (_, Verb::Poweroff) => Command::Poweroff,
            (_, Verb::Reboot) => Command::Reboot,
            _ => Command::Status { names: Vec::new() },
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
                Reply::Ok { services } if request.verb == Verb::List => {
                    let listed: Vec<&ServiceStatus> = services
                        .iter()
                        .filter(|s| allowed.contains(&s.name))
                        .collect();
                    payload::ok_reply(&request.id, Some(listed))
                }
                Reply::Ok { .. } | Reply::Logs { .. } => payload::ok_reply::<()>(&request.id, None),
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
