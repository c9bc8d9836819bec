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
//!
//! **Oversized messages.** ember speaks MQTT 5 (`rumqttc::v5`) for the Maximum Packet
//! Size ([`MAX_INCOMING`]) of its CONNECT, which MQTT 3.1.1 cannot express. A client
//! cannot skip a packet it will not hold: rumqttc (like any client that frames whole
//! packets) drops the connection on one over its limit, and a retained one comes back at
//! every subscription, so one oversized retained message on any subscribed topic cut
//! ember off for good (issue 12: a 1 MiB retained group command; the log then blamed the
//! client id). With 3.1.1 the only other way is a limit as high as the broker's own (256
//! MiB for mosquitto): a packet buffer of that size in PID 1. With MQTT 5 the broker must
//! not send ember a larger packet (MQTT 5.0, 3.1.2.11.4: "The Server MUST NOT send
//! packets exceeding Maximum Packet Size to the Client"); it discards it for ember alone
//! and carries on. mosquitto does exactly that (`send__publish` returns
//! MOSQ_ERR_OVERSIZE_PACKET, the message leaves ember's queue, its log says "Dropping too
//! large outgoing PUBLISH for <client id> (<n> bytes)"): ember never sees those, the
//! broker's log names them. What ember does receive and not take (a command over
//! [`MAX_COMMAND`], a retained command) it answers or logs, with topic and size. The same
//! holds the other way: a message larger than the broker's own Maximum Packet Size (in
//! its CONNACK) is not sent, and said once.
//!
//! **Bursts.** A command is answered or not taken. One is taken only if its reply has a
//! place ([`MAX_PENDING_REPLIES`]): then it runs (or gets `busy` at once, before running,
//! when [`MAX_INFLIGHT`] are running), and its reply is kept until the broker has it,
//! across reconnects too. One that finds no place waits for one, in order, as long as
//! the waiting commands fit in [`MAX_WAITING_BYTES`]; beyond that it is dropped before it
//! runs (and acknowledged: the broker would not send it again), and counted in the log (issue 12: a burst of 5,000 commands lost 1,234 replies, 306 of them for
//! commands that ran, when the reply queue dropped its oldest). Two ways of making the
//! broker hold a burst instead were measured and left out: not reading from the broker
//! while replies wait (rumqttc writes only while it is polled, so the replies would wait
//! forever), and MQTT 5 flow control (a small Receive Maximum, commands acknowledged once
//! answered), which mosquitto 2.0 does not keep: see [`RECEIVE_MAXIMUM`].
//!
//! **A command acknowledged is a command kept.** ember's session outlives a connection
//! and the adapter's process ([`SESSION_EXPIRY`], no clean start), and a QoS 1 command is
//! acknowledged (PUBACK) only once its reply is in the client's hands, right behind it on
//! the same connection. Whatever dies at whatever moment (the connection, the adapter by
//! SIGKILL, ember restarting it), a command the broker did not see acknowledged is sent
//! again to the next connection of the session, and runs then: at least once. A
//! redelivery (DUP) is acknowledged before it runs, so that a command that crashed the
//! adapter is not sent a third time, and is not run twice by a process that holds it
//! already. Commands
//! that arrive while ember is away are kept by the broker for [`SESSION_EXPIRY`] and
//! run when it is back. Acknowledgements go in the order the commands came (MQTT 5.0,
//! 4.6), so one slow command holds back the acknowledgements, never the commands, behind
//! it.
//!
//! Every connection error is described by its cause (a refusal's reason code, the
//! broker's DISCONNECT reason, a packet over a limit), logged when it changes, not at
//! every retry.

use crate::connect::{describe, install_crypto, is_bare_close, Broker, Lost, MIN_KEEP_ALIVE};
use crate::homeassistant;
use crate::payload::{
    self, Refusal, Verb, BAD_PAYLOAD, BUSY, FAILED, INVALID_CONFIG, NOT_ALLOWED, TIMEOUT,
    TOO_LARGE, UNKNOWN_SERVICE,
};
use crate::topics::{glob_match, Target, Topics};
use ember_ipc::link::call_alone;
use ember_ipc::{
    Command, Control, ErrorKind, Event, Reply, ServiceStatus, StatusArgs, SystemState,
    SystemStatus, Targets,
};
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, PubAck, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{
    AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Request as MqttRequest,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

/// The adapter's settings, from `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ember's control socket: a command with `wait` takes a connection of its own.
    pub socket: std::path::PathBuf,
    /// The broker and the login, TLS files included (read by ember).
    pub broker: Broker,
    pub client_id: String,
    pub prefix: String,
    pub device: String,
    pub keep_alive: Duration,
    pub allow: Vec<String>,
    pub allow_system: bool,
    pub groups: Vec<String>,
    pub homeassistant: bool,
}

pub use ember_ipc::adapter::Secret;

/// How long the broker keeps ember's session (its subscriptions, and the QoS 1 commands
/// not yet acknowledged or not yet sent) after a connection ends, in seconds: long
/// enough for a restart of the adapter (ember's backoff starts at once) or of the board's
/// network, short enough that a board gone for good does not leave a queue at the broker.
const SESSION_EXPIRY: u32 = 60;
/// Commands acknowledged lately, remembered to know a redelivery whose acknowledgement
/// the broken connection lost.
const MAX_ACKED_REMEMBERED: usize = 4096;
/// Largest MQTT packet ember sends: states of services with long reasons fit. The
/// broker's own Maximum Packet Size (in its CONNACK) when that is smaller: a message
/// over it is not sent, and logged (rumqttc would drop the connection on it, and a
/// state is published again after every connect).
const MAX_PACKET: usize = 64 * 1024;
/// The Maximum Packet Size ember announces (MQTT 5): the largest packet the broker may
/// send it, and what rumqttc holds at most for one. Far above any command, so that an
/// oversized command up to this size is answered (see [`MAX_COMMAND`]); the broker drops
/// a larger message for ember without dropping the connection (see the module's notes).
const MAX_INCOMING: u32 = 1024 * 1024;
/// Longest command payload; longer ones get a bad-payload reply.
const MAX_COMMAND: usize = 16 * 1024;
/// Commands being executed at once; more get a `busy` reply.
const MAX_INFLIGHT: usize = 32;
/// Commands with `wait` at once: each holds a connection of its own to ember's socket,
/// which gives one user at most `PER_USER` (the link takes two, and a `list` or a
/// `reload` may want a moment's more). More get `busy` before they run, saying why,
/// rather than the socket's refusal of the connection.
const MAX_WAITING: usize = ember_ipc::socket::PER_USER - 4;
/// Receive Maximum (MQTT 5): QoS 1 messages the broker may have out to ember
/// unacknowledged. Not a way to make a burst wait at the broker: mosquitto 2.0 (2.0.11
/// here) keeps to it only when it is 1 (on a PUBACK of the oldest message in flight it
/// sends up to the limit's number of queued ones, whatever is still in flight; measured
/// with PUBACKs sent at once: a limit of 4 let 287 messages out unacknowledged, 32 let
/// 252), and it does not give a unit of it back when it drops a message for being over
/// ember's Maximum Packet Size (measured: with a limit of 1, one oversized QoS 1
/// message, and the client never got another). So the most MQTT allows: without the
/// property mosquitto would take its `max_inflight_messages`, 20, and twenty oversized
/// messages would leave ember deaf until it reconnects.
const RECEIVE_MAXIMUM: u16 = u16::MAX;
/// Commands taken and not yet answered (executing, or their replies waiting for the
/// broker), and the bytes of the replies waiting: a command that finds either full is
/// not taken (dropped unanswered before it runs); a command taken is always answered.
/// At most MAX_PENDING_REPLY_BYTES of replies, plus those of the commands executing
/// (each at most the size of its command, [`MAX_COMMAND`], and a message).
const MAX_PENDING_REPLIES: usize = 1024;
const MAX_PENDING_REPLY_BYTES: usize = 256 * 1024;
/// Messages received while those limits are reached wait, in order, up to this many bytes
/// (topics and payloads): a burst, or the commands a session kept while ember was away,
/// arrives all at once (mosquitto keeps no Receive Maximum, see [`RECEIVE_MAXIMUM`]),
/// and is taken as replies leave. Only what does not fit here is dropped.
const MAX_WAITING_BYTES: usize = 512 * 1024;
/// rumqttc's request channel, and ember's QoS 1 publishes the broker has not acknowledged.
const REQUESTS: usize = 256;
const OUTGOING_INFLIGHT: u16 = 64;
/// Refusals logged per second; the rest are counted.
const MAX_REFUSALS_LOGGED: u32 = 10;
/// Stale retained topics, and services removed, waiting to be cleared (more are found at
/// the next connect).
const MAX_STALE: usize = 4096;
/// Distinct retained commands and oversized messages remembered, to log each once.
const MAX_LOGGED_ONCE: usize = 64;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The backoff cap while the broker keeps dropping ember right after accepting it.
const QUICK_DROP_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the event-loop task tells the adapter loop.
enum FromBroker {
    /// `max_packet`: the broker's Maximum Packet Size, if it gave one.
    /// `session_present`: the broker kept the session, and with it the packet ids of
    /// the commands not acknowledged yet.
    Connected {
        max_packet: Option<u32>,
        session_present: bool,
    },
    Disconnected(Lost),
    /// `payload` is empty when `length` is over [`MAX_COMMAND`]: no copy is kept.
    /// `pkid` is the packet id (QoS 1); `acknowledged`: a redelivery, acknowledged before
    /// the adapter sees it (see `redelivery_first_acknowledged`).
    Message {
        topic: String,
        payload: Vec<u8>,
        length: usize,
        retain: bool,
        pkid: Option<u16>,
        acknowledged: bool,
    },
}

/// Ask the adapter to publish `offline` and disconnect; it answers when done.
pub type Shutdown = oneshot::Sender<oneshot::Sender<()>>;

/// Runs the adapter until ember goes away, or until asked to go (then it publishes what
/// is pending and `offline`, and disconnects). A panic ends the whole process (see
/// `ember_ipc::adapter::crash_on_panic`): ember, which supervises it, starts it again.
pub async fn run(
    settings: Settings,
    control: Control,
    progress: ember_ipc::link::Progress,
    shutdown: oneshot::Receiver<oneshot::Sender<()>>,
) {
    if let Err(e) = install_crypto() {
        tracing::warn!("mqtt: {e}");
    }
    Adapter::new(settings, control, progress)
        .run(shutdown)
        .await
}

fn options(settings: &Settings) -> Result<MqttOptions, String> {
    // Keep-alive 0 turns it off; otherwise 1 s to 65,535 s, checked by `ember check`.
    // A clean start: commands sent while ember was away are not replayed to it.
    let mut options = settings
        .broker
        .options(&settings.client_id, settings.keep_alive)?;
    options.set_max_packet_size(Some(MAX_INCOMING));
    options.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    options.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    // A session that outlives the connection and the adapter, and commands acknowledged
    // once answered: see the module's notes.
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(SESSION_EXPIRY));
    options.set_manual_acks(true);
    let topics = Topics::new(&settings.prefix, &settings.device, &settings.groups);
    options.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
        None,
    ));
    Ok(options)
}

/// What ember subscribes to after every CONNACK: the commands (`Topics::subscriptions`),
/// then its own retained topics, to sweep (see [`Adapter::sweep`]).
///
/// Every filter asks for Retain As Published (MQTT 5, 3.8.3.1): without it a broker
/// hands a retained message published while ember is subscribed to ember with the
/// retain flag cleared (only the messages it sends because of a new subscription carry
/// it), so a retained `stop` ran once, at once, and was ignored only at later connects.
/// With it the flag is the publisher's, and a retained command is never run.
///
/// The sweep's filters are QoS 0 (nothing to acknowledge, nothing queued in the
/// session while ember is away) and No Local (ember's own publishes are not sent back to
/// it; the retained messages a subscription brings are, whoever published them).
fn filters(topics: &Topics, homeassistant: bool) -> Vec<Filter> {
    let commands = topics
        .subscriptions(homeassistant)
        .into_iter()
        .map(|path| Filter::new(path, QoS::AtLeastOnce));
    let mut own = vec![topics.states_filter()];
    if homeassistant {
        own.extend(homeassistant::filters(topics));
    }
    let own = own.into_iter().map(|path| {
        let mut filter = Filter::new(path, QoS::AtMostOnce);
        filter.nolocal = true;
        filter
    });
    commands
        .chain(own)
        .map(|mut filter| {
            filter.preserve_retain = true;
            filter
        })
        .collect()
}

/// The size of a PUBLISH packet (QoS 1, no properties) as MQTT 5 counts it: what the
/// broker's Maximum Packet Size is compared with.
fn publish_size(topic: &str, payload: usize) -> usize {
    // Topic length, topic, packet id, properties length (0), payload.
    let remaining = 2 + topic.len() + 2 + 1 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// A request rumqttc still held when the connection broke that must not be lost: a
/// reply (QoS 1, not retained) or the clearing of a retained message (an empty retained
/// payload). States, the status and discovery are published again after each connect.
fn worth_resending(request: MqttRequest) -> Option<MqttRequest> {
    match request {
        MqttRequest::Publish(mut publish)
            if publish.qos == QoS::AtLeastOnce
                && (!publish.retain || publish.payload.is_empty()) =>
        {
            // A new session: the old packet id means nothing to the broker.
            publish.pkid = 0;
            publish.dup = false;
            Some(MqttRequest::Publish(publish))
        }
        _ => None,
    }
}

/// Polls the event loop until the adapter is gone; sleeps a growing backoff after each
/// error. The backoff only resets once a connection has lasted: two boards with the same
/// client id would otherwise take the session from each other as fast as they can.
async fn poll_broker(
    mut eventloop: EventLoop,
    to_adapter: mpsc::Sender<FromBroker>,
    lasted: Duration,
    client_id: String,
    subscriptions: Vec<String>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut connected_at: Option<tokio::time::Instant> = None;
    let mut quick_drops = 0u32;
    // Replies rumqttc held when the connection broke: a clean start would discard them.
    let mut unsent: Vec<MqttRequest> = Vec::new();
    let most_unsent = 2 * (REQUESTS + usize::from(OUTGOING_INFLIGHT));
    // Subscriptions the broker refused, said once each.
    let mut refused_filters: BTreeSet<String> = BTreeSet::new();
    // Messages not handed to the adapter yet, in order: a redelivery waits until its
    // acknowledgement is on the wire (see `redelivery_first_acknowledged`), and what came
    // after it waits behind it.
    let mut held: VecDeque<(Option<u16>, FromBroker)> = VecDeque::new();
    loop {
        while held.front().is_some_and(|(awaiting, _)| awaiting.is_none()) {
            if let Some((_, message)) = held.pop_front() {
                if to_adapter.send(message).await.is_err() {
                    return;
                }
            }
        }
        let message = match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(connack))) => {
                connected_at = Some(tokio::time::Instant::now());
                // Pending requests go before anything the adapter sends from now on.
                eventloop.pending.extend(unsent.drain(..));
                FromBroker::Connected {
                    max_packet: connack.properties.and_then(|p| p.max_packet_size),
                    session_present: connack.session_present,
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let message = publish_message(&p);
                if redelivery_first_acknowledged(&p) {
                    eventloop
                        .pending
                        .push_back(MqttRequest::PubAck(PubAck::new(p.pkid, None)));
                    held.push_back((Some(p.pkid), message));
                    continue;
                }
                if !held.is_empty() {
                    held.push_back((None, message));
                    continue;
                }
                message
            }
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::PubAck(pkid))) => {
                if let Some(waiting) = held.iter_mut().find(|(a, _)| *a == Some(pkid)) {
                    waiting.0 = None;
                }
                continue;
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(suback))) => {
                for (filter, code) in subscriptions.iter().zip(&suback.return_codes) {
                    if !matches!(code, SubscribeReasonCode::Success(_))
                        && refused_filters.len() < MAX_LOGGED_ONCE
                        && refused_filters.insert(filter.clone())
                    {
                        tracing::warn!(
                            "mqtt: the broker refused the subscription to {filter} ({code:?}): \
                             what is published there does not reach ember (the broker's ACL?)"
                        );
                    }
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                let lost = describe(&e, &client_id, connected_at.is_some(), "ember");
                let bare = is_bare_close(&e);
                unsent.extend(eventloop.pending.drain(..).filter_map(worth_resending));
                // A redelivery whose acknowledgement may not have gone out comes again;
                // what came after it goes to the adapter.
                held.retain(|(awaiting, _)| awaiting.is_none());
                if unsent.len() > most_unsent {
                    // Not reached: each connection adds at most what rumqttc holds.
                    let extra = unsent.len() - most_unsent;
                    unsent.drain(..extra);
                    tracing::error!("mqtt: {extra} replies dropped during an outage");
                }
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
                        if quick_drops == 3 && bare {
                            // No reason given (an MQTT 5 broker says "session taken over"
                            // when that is the cause): a guess, said as one.
                            tracing::error!(
                                "mqtt: the broker keeps closing the connection right after \
                                 accepting ember, without a reason; is another client using \
                                 the client id \"{client_id}\"?"
                            );
                        }
                    }
                    None => {}
                }
                if to_adapter
                    .send(FromBroker::Disconnected(lost))
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

/// Whether a message is acknowledged before the adapter sees it: a QoS 1 message the
/// broker sends again (DUP) went to an earlier connection of the session, and may have
/// been what ended it (a panic of the adapter's): acknowledged first, it is not sent a
/// third time, whatever it does. Such a message runs at most once more, and is lost only
/// if the adapter dies again while it runs. Its acknowledgement goes ahead of those of
/// earlier messages that wait for their replies (MQTT 5.0, 4.6 asks for their order;
/// brokers look acknowledgements up by packet id).
fn redelivery_first_acknowledged(p: &Publish) -> bool {
    p.dup && p.qos == QoS::AtLeastOnce
}

/// A start, stop or restart with `wait`: sent on a connection of its own to ember's
/// socket (the link carries one request at a time, and this one is answered only once
/// the core says the service has settled), for at most `within`. `Err` with what to say
/// when it has not settled by then: where the service is, read over the link.
async fn wait_for(
    control: &Control,
    socket: &std::path::Path,
    command: Command,
    origin: &str,
    service: &str,
    within: Duration,
    taken: oneshot::Sender<()>,
) -> Result<Reply, String> {
    match tokio::time::timeout(within, call_alone(socket, &command, origin, taken)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(why)) => Ok(Reply::error(
            ErrorKind::Busy,
            format!("cannot wait for the outcome ({why}); send it again, or without wait"),
        )),
        Err(_) => {
            let status = StatusArgs {
                names: vec![service.to_owned()],
                details: false,
            };
            let now = match control.call(Command::Status(status), origin).await {
                Reply::Status(status) => status
                    .services
                    .first()
                    .map(|s| {
                        let state = serde_json::to_value(s.state).unwrap_or_default();
                        let sub = serde_json::to_value(s.sub_state).unwrap_or_default();
                        format!(
                            "; it is {} ({})",
                            state.as_str().unwrap_or("?"),
                            sub.as_str().unwrap_or("?")
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            Err(format!(
                "{service} did not settle within {} s{now}; its want stays as the command set it",
                within.as_secs()
            ))
        }
    }
}

/// A received PUBLISH as the adapter takes it: an oversized payload is not copied.
fn publish_message(p: &Publish) -> FromBroker {
    let length = p.payload.len();
    FromBroker::Message {
        // MQTT requires UTF-8 topic names, and brokers check: a lossy reading only
        // matters for a broken broker, and then routes nowhere.
        topic: String::from_utf8_lossy(&p.topic).into_owned(),
        payload: if length > MAX_COMMAND {
            Vec::new()
        } else {
            p.payload.to_vec()
        },
        length,
        retain: p.retain,
        pkid: (p.qos != QoS::AtMostOnce).then_some(p.pkid),
        acknowledged: redelivery_first_acknowledged(p),
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

/// A reply to send, and the command's acknowledgement that waits for it.
struct Answer {
    topic: String,
    body: Vec<u8>,
    ack: Option<AckToken>,
}

/// What a command's task hands back: its reply, its permit, which it holds until the
/// reply is queued (until then the command counts as executing, and its reply as owed),
/// and its acknowledgement.
type Done = (
    String,
    Vec<u8>,
    Option<tokio::sync::OwnedSemaphorePermit>,
    Option<AckToken>,
);

/// A message received and not taken yet (see [`MAX_WAITING_BYTES`]).
struct Received {
    topic: String,
    body: Vec<u8>,
    length: usize,
    retain: bool,
    ack: AckToken,
}

impl Received {
    fn size(&self) -> usize {
        self.topic.len() + self.body.len()
    }
}

/// Names a received message's place in [`Acks`]: the order it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AckToken(u64);

/// One received message waiting for its acknowledgement.
struct PendingAck {
    token: AckToken,
    /// The packet id to acknowledge; `None` for a QoS 0 message, and once the broker
    /// has forgotten the session (a packet id of it means nothing now).
    pkid: Option<u16>,
    fingerprint: u64,
    /// Nothing more is owed for it: its reply is in the client's hands, or it needs none.
    ready: bool,
}

/// The acknowledgements of received messages, kept in the order the messages came (MQTT
/// 5.0, 4.6: PUBACKs go in that order) and sent as far as they are ready.
#[derive(Default)]
struct Acks {
    pending: VecDeque<PendingAck>,
    next: u64,
    /// (packet id, fingerprint) of commands acknowledged lately: an acknowledgement the
    /// connection lost as it broke brings the command again, with DUP set.
    sent: VecDeque<(u16, u64)>,
}

impl Acks {
    /// A place in the queue for a message just received.
    fn receive(&mut self, pkid: Option<u16>, fingerprint: u64) -> AckToken {
        let token = AckToken(self.next);
        self.next += 1;
        self.pending.push_back(PendingAck {
            token,
            pkid,
            fingerprint,
            ready: false,
        });
        token
    }

    /// A redelivery (DUP), already acknowledged: whether this process holds it already,
    /// waiting for its reply (a packet id keeps its message within a session), or
    /// answered and acknowledged on a connection that broke before the acknowledgement
    /// went out. Its acknowledgement waiting here is then not sent again.
    fn redelivered(&mut self, pkid: u16, fingerprint: u64) -> bool {
        if let Some(waiting) = self
            .pending
            .iter_mut()
            .find(|a| a.pkid == Some(pkid) && a.fingerprint == fingerprint)
        {
            waiting.pkid = None;
            return true;
        }
        self.sent.contains(&(pkid, fingerprint))
    }

    fn ready(&mut self, token: AckToken) {
        if let Ok(at) = self.pending.binary_search_by_key(&token, |a| a.token) {
            self.pending[at].ready = true;
        }
    }

    /// The broker kept no session: the packet ids waiting mean nothing to it.
    fn forget_session(&mut self) {
        for ack in &mut self.pending {
            ack.pkid = None;
        }
        self.sent.clear();
    }

    /// Hands the ready acknowledgements at the front to the client, in order.
    fn send(&mut self, client: &AsyncClient) {
        while let Some(front) = self.pending.front() {
            if !front.ready {
                return;
            }
            if let Some(pkid) = front.pkid {
                let mut publish = Publish::new("", QoS::AtLeastOnce, Vec::new(), None);
                publish.pkid = pkid;
                if client.try_ack(&publish).is_err() {
                    return; // the channel is full: next round
                }
                if self.sent.len() >= MAX_ACKED_REMEMBERED {
                    self.sent.pop_front();
                }
                self.sent.push_back((pkid, front.fingerprint));
            }
            self.pending.pop_front();
        }
    }
}

/// What tells a redelivered command from another: its topic and payload.
fn fingerprint(topic: &str, payload: &[u8], length: usize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (topic, payload, length).hash(&mut hasher);
    hasher.finish()
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
    /// Retained topics of this device's found by the sweep after a connect, of services
    /// ember does not have (see [`Adapter::sweep`]): to clear, if still stale then.
    stale: BTreeSet<String>,
    /// Whether `states` holds a snapshot of ember's: until then nothing is stale.
    synced: bool,
    /// The board's state and its configuration's, and whether the broker has it yet.
    system: Option<SystemStatus>,
    system_dirty: bool,
    /// Replies not yet handed to the client, and their bytes. Never dropped, not even
    /// when the connection breaks: each answers a command that was taken (see
    /// [`MAX_PENDING_REPLIES`]).
    replies: VecDeque<Answer>,
    reply_bytes: usize,
    /// Received messages waiting to be acknowledged.
    acks: Acks,
    /// Messages received while there was no room for more replies, and their bytes.
    waiting: VecDeque<Received>,
    waiting_bytes: usize,
    connected: bool,
    /// The largest packet the broker takes: [`MAX_PACKET`], or less if it says so.
    max_packet: usize,
    /// After a CONNACK: `online` and the subscriptions still to hand to the client.
    greet: bool,
    /// Services whose Home Assistant discovery is still to (re)publish.
    announce: BTreeSet<String>,
    /// Refusals logged in the current second, to keep a flood from flooding the log.
    refusals_logged: (u64, u32),
    /// Commands dropped unanswered (no room for their replies) since that was last said,
    /// and when it was.
    unanswered: (u64, Option<tokio::time::Instant>),
    /// Messages logged once: retained commands (topic and size), topics whose message
    /// was too large for the broker.
    logged_once: BTreeSet<String>,
    inflight: Arc<Semaphore>,
    /// Places of the commands with `wait` (see [`MAX_WAITING`]).
    waits: Arc<Semaphore>,
    /// Told the seq of every change once it is in the adapter's hands (published, or
    /// queued for the next connection): see `Link::flush`.
    progress: ember_ipc::link::Progress,
    /// Resolves once the last command handed to a task is in ember's queue: the next
    /// waits for it (see [`Adapter::on_message`]).
    last_taken: Option<oneshot::Receiver<()>>,
}

impl Adapter {
    fn new(settings: Settings, control: Control, progress: ember_ipc::link::Progress) -> Adapter {
        let topics = Topics::new(&settings.prefix, &settings.device, &settings.groups);
        Adapter {
            settings,
            control,
            topics,
            states: BTreeMap::new(),
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            stale: BTreeSet::new(),
            synced: false,
            system: None,
            system_dirty: false,
            replies: VecDeque::new(),
            reply_bytes: 0,
            acks: Acks::default(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            connected: false,
            max_packet: MAX_PACKET,
            greet: false,
            announce: BTreeSet::new(),
            refusals_logged: (0, 0),
            unanswered: (0, None),
            logged_once: BTreeSet::new(),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            waits: Arc::new(Semaphore::new(MAX_WAITING)),
            progress,
            last_taken: None,
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
        let (client, eventloop) = AsyncClient::new(options, REQUESTS);
        let (broker_tx, mut from_broker) = mpsc::channel(64);
        // A connection that lasted this long was a real one: the backoff starts over.
        // Two boards with one client id take the session from each other within
        // milliseconds; a broker restarted by hand drops ember after seconds.
        let lasted = Duration::from_secs(1);
        let subscriptions = filters(&self.topics, self.settings.homeassistant)
            .into_iter()
            .map(|f| f.path)
            .collect();
        let _poller = AbortOnDrop(
            tokio::spawn(poll_broker(
                eventloop,
                broker_tx,
                lasted,
                self.settings.client_id.clone(),
                subscriptions,
            ))
            .abort_handle(),
        );
        let mut events = self.control.events.subscribe();
        self.resync().await;
        // Each command's task holds one of MAX_INFLIGHT permits while it runs: its reply
        // always finds room here.
        let (reply_tx, mut reply_rx) = mpsc::channel::<Done>(MAX_INFLIGHT);
        tracing::info!(
            "mqtt: connecting to {}:{} as {} (device {}), MQTT 5; the broker drops any \
             message over {} bytes for ember (mosquitto logs \"Dropping too large outgoing \
             PUBLISH\")",
            self.settings.broker.host,
            self.settings.broker.port,
            self.settings.client_id,
            self.settings.device,
            MAX_INCOMING
        );
        if !self.settings.keep_alive.is_zero() && self.settings.keep_alive < MIN_KEEP_ALIVE {
            tracing::info!(
                "mqtt: keep_alive {} s is below the MQTT client's minimum; using 5 s",
                self.settings.keep_alive.as_secs_f64()
            );
        }
        // The last loss said at warning level: the same cause again, at every retry, is
        // not news (a warning again once a connection has lasted).
        let mut last_loss: Option<Lost> = None;
        let mut connected_at = tokio::time::Instant::now();
        loop {
            // While something waits for room in the client's channel, look again shortly:
            // acknowledgements free room but do not wake this loop.
            let backlog = self.connected && self.pending();
            tokio::select! {
                message = from_broker.recv() => match message {
                    Some(FromBroker::Connected { max_packet, session_present }) => {
                        connected_at = tokio::time::Instant::now();
                        if !session_present {
                            self.acks.forget_session();
                        }
                        self.on_connect(max_packet);
                    }
                    Some(FromBroker::Disconnected(lost)) => {
                        if self.connected && connected_at.elapsed() >= Duration::from_secs(10) {
                            last_loss = None;
                        }
                        let news = last_loss.as_ref() != Some(&lost);
                        if self.connected && news {
                            tracing::warn!("mqtt: lost the broker: {}; reconnecting with backoff", lost.why);
                        } else if self.connected {
                            // Again, for the same reason: a line for each loss, not a warning.
                            tracing::info!("mqtt: lost the broker: {}; reconnecting with backoff", lost.why);
                        } else if lost.refused && news {
                            // Wrong credentials or client id: said once, not at every retry.
                            tracing::warn!("mqtt: the broker refuses ember: {}; retrying with backoff", lost.why);
                        } else if news {
                            // A wrong host or port, or a broker down: said once per cause,
                            // at the default level (the address is what to check).
                            tracing::warn!(
                                "mqtt: cannot reach the broker at {}:{}: {}; retrying with backoff",
                                self.settings.broker.host,
                                self.settings.broker.port,
                                lost.why
                            );
                        } else {
                            tracing::debug!("mqtt: cannot reach the broker: {}", lost.why);
                        }
                        last_loss = Some(lost);
                        // The replies stay: each answers a command that was taken, and goes
                        // out after the next CONNACK.
                        self.connected = false;
                    }
                    Some(FromBroker::Message { topic, payload, length, retain, pkid, acknowledged }) => {
                        self.on_acked_message(&topic, &payload, length, retain, pkid, acknowledged, &reply_tx);
                    }
                    None => break,
                },
                // The only receiver: the event itself, not a copy.
                event = events.recv() => match event.map(std::sync::Arc::unwrap_or_clone) {
                    Ok(Event::Service(status)) => {
                        if !self.states.contains_key(&status.name) && self.settings.homeassistant {
                            self.announce.insert(status.name.clone());
                        }
                        self.dirty.insert(status.name.clone());
                        self.removed.remove(&status.name);
                        self.progress.applied(status.seq);
                        self.states.insert(status.name.clone(), status);
                    }
                    Ok(Event::ServiceRemoved { name, seq }) => self.on_removed(name, seq),
                    Ok(Event::Metrics(metrics)) if self.connected => {
                        // Figures of the moment: dropped, not queued, when the link is busy.
                        for m in metrics {
                            let payload = serde_json::json!({
                                "cpu_usec": m.cpu_usec,
                                "memory_bytes": m.memory_bytes,
                                "tasks": m.tasks,
                            });
                            let _ = self.publish(&client, self.topics.metrics(&m.name), QoS::AtMostOnce, false, payload.to_string().into_bytes());
                        }
                    }
                    Ok(Event::System(system)) => {
                        // The broker may be one of the services about to stop: say offline
                        // while it can still be heard.
                        if self.connected && system.state == SystemState::Stopping {
                            let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
                        }
                        self.progress.applied(system.seq);
                        self.system = Some(system);
                        self.system_dirty = true;
                    }
                    Ok(_) => {}
                    // We fell behind: the latest of everything is one status call away.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(done) = reply_rx.recv() => self.push_reply(done),
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
            if self.take_waiting(&reply_tx) {
                self.flush(&client);
            }
            if self.unanswered.0 > 0 && self.replies.is_empty() {
                self.say_dropped(true);
            }
        }
    }

    /// Queues a command's reply (and then lets its permit go).
    fn push_reply(&mut self, (topic, body, permit, ack): Done) {
        self.reply_bytes += topic.len() + body.len();
        self.replies.push_back(Answer { topic, body, ack });
        drop(permit);
    }

    /// A service ember no longer has (an instance stopped and forgotten, a service removed
    /// by a reload): its retained state is to be cleared.
    fn on_removed(&mut self, name: String, seq: u64) {
        self.states.remove(&name);
        self.dirty.remove(&name);
        self.announce.remove(&name);
        // Bounded as `stale` is: instances made and forgotten while the broker is away
        // are not all remembered. The retained state of one not kept is a state topic
        // of a service ember does not have, cleared by the sweep at the next connect.
        if self.removed.len() < MAX_STALE {
            self.removed.insert(name);
        }
        self.progress.applied(seq);
    }

    /// Whether anything waits to be published.
    fn pending(&self) -> bool {
        self.greet
            || self.system_dirty
            || !self.dirty.is_empty()
            || !self.removed.is_empty()
            || !self.stale.is_empty()
            || !self.replies.is_empty()
            || !self.announce.is_empty()
            || self.acks.pending.front().is_some_and(|a| a.ready)
    }

    /// Commands taken and not answered yet: executing, or their replies queued.
    fn unanswered(&self) -> usize {
        self.replies.len() + (MAX_INFLIGHT - self.inflight.available_permits())
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
            let topic = ember_ipc::text::shortened(topic);
            tracing::warn!("mqtt: {topic}: refused ({code}): {message}");
        }
    }

    /// Whether `key` is said for the first time (bounded: after many, some may be said
    /// again).
    fn first_time(&mut self, key: String) -> bool {
        if self.logged_once.len() >= MAX_LOGGED_ONCE && !self.logged_once.contains(&key) {
            self.logged_once.clear();
        }
        self.logged_once.insert(key)
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
            self.synced = true;
        }
    }

    fn on_connect(&mut self, max_packet: Option<u32>) {
        tracing::info!(
            "mqtt: connected to {}:{}",
            self.settings.broker.host,
            self.settings.broker.port
        );
        self.connected = true;
        self.max_packet = max_packet.map_or(MAX_PACKET, |m| MAX_PACKET.min(m as usize));
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

    /// Hands one message to the client, unless it is larger than the broker takes: then
    /// it is left out, and said once per topic (rumqttc would drop the connection on it,
    /// and a state is published again after every connect: the reconnect loop of issue
    /// 12 the other way round). `Err` when the client's channel is full.
    fn publish(
        &mut self,
        client: &AsyncClient,
        topic: String,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
    ) -> Result<(), ()> {
        let size = publish_size(&topic, body.len());
        if size > self.max_packet {
            if self.first_time(format!("too large {topic}")) {
                tracing::warn!(
                    "mqtt: not publishing {size} bytes on {topic}: the broker takes packets \
                     of at most {} bytes",
                    self.max_packet
                );
            }
            return Ok(());
        }
        client.try_publish(topic, qos, retain, body).map_err(|_| ())
    }

    /// Publishes what is waiting, as far as the client's request channel takes it; what
    /// does not fit stays queued (coalesced) for the next round.
    fn flush(&mut self, client: &AsyncClient) {
        if !self.connected {
            return;
        }
        if self.greet {
            let filters = filters(&self.topics, self.settings.homeassistant);
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
                // With the board's groups: what `ember fleet` reads to know who answers
                // a group's command.
                let mut value = serde_json::to_value(system).unwrap_or_default();
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("groups".into(), self.settings.groups.clone().into());
                }
                let body = serde_json::to_vec(&value).unwrap_or_default();
                if self
                    .publish(client, self.topics.system(), QoS::AtLeastOnce, true, body)
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
                if self
                    .publish(client, topic, QoS::AtLeastOnce, true, body)
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
        while let Some(topic) = self.stale.first().cloned() {
            // Looked at again: a service that appeared since keeps its state.
            if self.stale_topic(&topic) == Some(true)
                && client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, true, Vec::new())
                    .is_err()
            {
                return;
            }
            self.stale.remove(&topic);
        }
        while let Some(name) = self.dirty.first().cloned() {
            let Some(status) = self.states.get(&name) else {
                self.dirty.remove(&name);
                continue;
            };
            let body = serde_json::to_vec(status).unwrap_or_default();
            if self
                .publish(
                    client,
                    self.topics.state(&name),
                    QoS::AtLeastOnce,
                    true,
                    body,
                )
                .is_err()
            {
                return; // the channel is full: the rest waits, coalesced
            }
            self.dirty.remove(&name);
        }
        while let Some(answer) = self.replies.pop_front() {
            let fits = |body: &[u8]| publish_size(&answer.topic, body.len()) <= self.max_packet;
            let body = if fits(&answer.body) {
                answer.body.clone()
            } else {
                // Still an answer, one that fits: with its id if that is not what is large.
                let id = ember_ipc::json::parse(&answer.body)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                let message =
                    "the reply is larger than the broker takes; read the state topics instead";
                let with_id = payload::error_reply(&id, TOO_LARGE, message);
                if fits(&with_id) {
                    with_id
                } else {
                    payload::error_reply(&None, TOO_LARGE, message)
                }
            };
            // (A reply that still does not fit is left out, and said.)
            if self
                .publish(client, answer.topic.clone(), QoS::AtLeastOnce, false, body)
                .is_err()
            {
                self.replies.push_front(answer);
                return;
            }
            self.reply_bytes -= answer.topic.len() + answer.body.len();
            if let Some(token) = answer.ack {
                self.acks.ready(token);
            }
        }
        // After the replies: a command's acknowledgement follows its reply on the wire.
        self.acks.send(client);
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

    /// Whether MQTT may drive `service`: an `allow` glob names it, and it is not one of
    /// ember's adapters (whose stop would cut the board off).
    fn allowed(&self, service: &str) -> bool {
        !ember_ipc::adapter::ADAPTERS.contains(&service)
            && self
                .settings
                .allow
                .iter()
                .any(|pattern| glob_match(pattern, service))
    }

    /// A command that finds no room for its reply: not taken (neither run nor
    /// answered), counted, and said at most every few seconds (see [`Self::say_dropped`]).
    fn drop_unanswered(&mut self) {
        self.unanswered.0 += 1;
        self.say_dropped(false);
    }

    /// Says how many commands were dropped unanswered since it was last said: at once
    /// for the first of a burst, then every few seconds, and once the burst is over.
    fn say_dropped(&mut self, over: bool) {
        let now = tokio::time::Instant::now();
        let due = self
            .unanswered
            .1
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(5));
        if self.unanswered.0 == 0 || !(due || over) {
            return;
        }
        tracing::warn!(
            "mqtt: {} command(s) dropped, neither run nor answered: the replies of {} earlier \
             ones still wait for the broker (a burst faster than ember can answer)",
            self.unanswered.0,
            self.unanswered()
        );
        self.unanswered = (0, Some(now));
    }

    /// A message from the broker, and its acknowledgement: sent once its reply is in the
    /// client's hands, or at once when it needs no reply. A redelivery of a message this
    /// process already holds is not run again (see the module's notes).
    #[allow(clippy::too_many_arguments)]
    fn on_acked_message(
        &mut self,
        topic: &str,
        body: &[u8],
        length: usize,
        retain: bool,
        pkid: Option<u16>,
        acknowledged: bool,
        replies: &mpsc::Sender<Done>,
    ) {
        if self.sweep(topic, body, length, retain) {
            // Nothing is owed for it (a QoS 0 subscription; acknowledged all the same
            // should the broker send it at QoS 1).
            if pkid.is_some() && !acknowledged {
                let ack = self.acks.receive(pkid, 0);
                self.acks.ready(ack);
            }
            return;
        }
        let fingerprint = fingerprint(topic, body, length);
        let pkid = match pkid {
            Some(pkid) if acknowledged => {
                if self.acks.redelivered(pkid, fingerprint) {
                    return; // this process has it already: it is not run twice
                }
                None
            }
            other => other,
        };
        let ack = self.acks.receive(pkid, fingerprint);
        let received = Received {
            topic: topic.to_owned(),
            body: body.to_vec(),
            length,
            retain,
            ack,
        };
        if self.waiting.is_empty() && self.has_room() {
            self.take(received, replies);
        } else if self.waiting_bytes + received.size() <= MAX_WAITING_BYTES {
            self.waiting_bytes += received.size();
            self.waiting.push_back(received);
        } else {
            self.drop_unanswered();
            self.acks.ready(ack);
        }
    }

    /// Whether a retained topic of this device's is stale: a state topic of a service
    /// ember does not have, or a Home Assistant entity of a service ember does not have or
    /// does not announce (not allowed, or an id of the old mapping), or any entity under
    /// the device's old node (ember announces none there; [`Adapter::sweep`] takes only
    /// this board's). `None` when the topic is none of those.
    fn stale_topic(&self, topic: &str) -> Option<bool> {
        let live = |name: &str| self.states.contains_key(name);
        if let Some(name) = self.topics.state_of(topic) {
            return Some(self.synced && !live(name));
        }
        if !self.settings.homeassistant {
            return None;
        }
        if homeassistant::legacy(&self.topics, topic) {
            return Some(true);
        }
        let entity = homeassistant::discovered(&self.topics, topic)?;
        Some(self.synced && !entity.is_some_and(|name| live(&name) && self.allowed(&name)))
    }

    /// The sweep: after each connect, the subscriptions to ember's own state topics and
    /// discovery topics bring every retained one. Those of services ember no longer has
    /// (an instance stopped, a service removed or a board powered off while the broker
    /// or the adapter was away: nobody was there to clear them) are cleared: an empty
    /// retained message, published in `flush` if still stale then. The states of the
    /// services ember has are published after every connect anyway, and never cleared.
    /// Under the device's old Home Assistant node, only the entities whose config names
    /// this board are cleared: other boards' may be there too (see
    /// `homeassistant::legacy_node`).
    /// Whether `topic` is one of those topics (then there is nothing more to do).
    fn sweep(&mut self, topic: &str, body: &[u8], length: usize, retain: bool) -> bool {
        let Some(stale) = self.stale_topic(topic) else {
            return false;
        };
        let ours = !homeassistant::legacy(&self.topics, topic)
            || homeassistant::announced_by(&self.topics, body);
        // An empty message clears; a message not retained leaves nothing behind.
        if stale && ours && retain && length > 0 && self.stale.len() < MAX_STALE {
            self.stale.insert(topic.to_owned());
        }
        true
    }

    /// Whether a command taken now has room for its reply.
    fn has_room(&self) -> bool {
        self.unanswered() < MAX_PENDING_REPLIES && self.reply_bytes < MAX_PENDING_REPLY_BYTES
    }

    /// Takes the messages that waited, as far as there is room; whether it took any.
    fn take_waiting(&mut self, replies: &mpsc::Sender<Done>) -> bool {
        let mut took = false;
        while self.has_room() {
            let Some(received) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= received.size();
            self.take(received, replies);
            took = true;
        }
        took
    }

    fn take(&mut self, m: Received, replies: &mpsc::Sender<Done>) {
        if !self.on_message(&m.topic, &m.body, m.length, m.retain, m.ack, replies) {
            self.acks.ready(m.ack);
        }
    }

    /// Checks a command and hands it to a task of its own (the core's reply is awaited
    /// there, never in this loop); refusals are answered at once, `busy` before anything
    /// runs; a command with no room for its reply is not taken. Whether a reply will
    /// carry `ack`: otherwise nothing more is owed for the message.
    fn on_message(
        &mut self,
        topic: &str,
        body: &[u8],
        length: usize,
        retain: bool,
        ack: AckToken,
        replies: &mpsc::Sender<Done>,
    ) -> bool {
        let Some(target) = self.topics.route(topic) else {
            return false;
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
            return false;
        }
        if length == 0 {
            return false; // how a retained message is cleared: nothing was asked
        }
        // A fault for the tests, compiled only with the `test-hooks` feature (never in a
        // board's build, debug or not): the adapter's panic must stay the adapter's.
        #[cfg(feature = "test-hooks")]
        if body == b"__ember_test_panic" {
            panic!("injected panic in the MQTT adapter (test hook)");
        }
        if retain {
            // A retained `stop` would replay on every reconnect: commands are never
            // retained, neither those sent before ember subscribed nor those sent while
            // it is (Retain As Published: see `filters`). It comes back at every
            // connect: said once.
            if self.first_time(format!("retained {topic} {length}")) {
                tracing::warn!(
                    "mqtt: ignoring a retained message on {topic} ({length} bytes); commands \
                     must not be retained (clear it: mosquitto_pub -r -n -t '{topic}')"
                );
            }
            return false;
        }
        // Room for the reply first: a command that could not be answered is not taken.
        if !self.has_room() {
            self.drop_unanswered();
            return false;
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
                self.push_reply((reply_topic, body, None, Some(ack)));
                return true;
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
                None,
                Some(ack),
            ));
            return true;
        };
        let waiting = match request.wait {
            None => None,
            Some(_) => match self.waits.clone().try_acquire_owned() {
                Ok(place) => Some(place),
                Err(_) => {
                    let message = format!(
                        "too many commands with wait at once ({MAX_WAITING}, each waits on a \
                         connection of its own to ember); try again, or send it without wait"
                    );
                    self.log_refusal(topic, BUSY, &message);
                    let body = payload::error_reply(&request.id, BUSY, &message);
                    self.push_reply((reply_topic, body, None, Some(ack)));
                    return true;
                }
            },
        };
        // With `wait`, the core answers once the service has settled (see `wait_for`).
        let targets = |name: &String| Targets {
            names: vec![name.clone()],
            wait: request.wait.is_some(),
        };
        let command = match (&target, request.verb) {
            (Target::Service(name), Verb::Start) => Command::Start(targets(name)),
            (Target::Service(name), Verb::Stop) => Command::Stop(targets(name)),
            (Target::Service(name), Verb::Kill) => Command::Kill(ember_ipc::KillArgs {
                names: vec![name.clone()],
                signal: request.signal.clone().unwrap_or_else(|| "SIGTERM".into()),
                main: false,
            }),
            (Target::Service(name), Verb::ResetFailed) => {
                Command::ResetFailed(ember_ipc::ResetFailedArgs {
                    names: vec![name.clone()],
                })
            }
            (Target::Service(name), _) => Command::Restart(targets(name)),
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
        let socket = self.settings.socket.clone();
        let service = match &target {
            Target::Service(name) => name.clone(),
            _ => String::new(),
        };
        // In the order they came: each command goes to ember once the one before it is
        // in ember's queue. A command with `wait` goes on a connection of its own, the
        // others on the link; without this a plain `start` overtook a `stop` with
        // `wait` sent before it, and the service ended stopped.
        let (taken, now_taken) = oneshot::channel();
        let before = self.last_taken.replace(now_taken);
        tokio::spawn(async move {
            let _waiting = waiting; // its place, until answered
            if let Some(before) = before {
                let _ = before.await; // taken, or never sent: either way, this one's turn
            }
            let reply = match request.wait {
                Some(within) => {
                    match wait_for(&control, &socket, command, &origin, &service, within, taken)
                        .await
                    {
                        Ok(reply) => reply,
                        Err(message) => {
                            let body = payload::error_reply(&request.id, TIMEOUT, &message);
                            let _ = replies
                                .send((reply_topic, body, Some(permit), Some(ack)))
                                .await;
                            return;
                        }
                    }
                }
                None => {
                    // The link carries one request at a time: answered is taken.
                    let reply = control.call(command, origin).await;
                    let _ = taken.send(());
                    reply
                }
            };
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
                            TOO_LARGE,
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
                        ErrorKind::InvalidConfig => INVALID_CONFIG,
                        _ => FAILED,
                    };
                    payload::error_reply(&request.id, code, &e.message)
                }
                _ => payload::ok_reply::<()>(&request.id, None),
            };
            let _ = replies
                .send((reply_topic, body, Some(permit), Some(ack)))
                .await;
        });
        true
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
                // A topic level may be 64 KB: named shortened, as ember names services.
                let shown = ember_ipc::text::shortened(name);
                if let Some(why) = ember_ipc::adapter::refusal_for_adapter(name, "MQTT") {
                    return Err(refuse(NOT_ALLOWED, why));
                }
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
                        format!("service \"{shown}\" may not be controlled over MQTT here ([mqtt] allow)"),
                    ));
                }
                // An instance of a template (worker@42) is made by its start, and one that
                // is not there is stopped already, with no failure to forget: ember knows
                // the templates, and answers unknown-service when there is none.
                let makes_instance =
                    request.verb.is_service_verb() && ember_ipc::adapter::may_be_instance(name);
                if !self.states.contains_key(name) && !makes_instance {
                    return Err(refuse(
                        UNKNOWN_SERVICE,
                        format!("no service named \"{shown}\" on {}", self.settings.device),
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

    /// What the broker's Maximum Packet Size is compared with: rumqttc's own count.
    #[test]
    fn publish_size_is_the_packet_size() {
        for topic in ["a", "ember/b1/service/web/state", &"t".repeat(300)] {
            for payload in [
                0, 1, 90, 121, 122, 127, 128, 16_000, 16_400, 2_097_000, 2_097_200,
            ] {
                let mut publish = Publish::new(topic, QoS::AtLeastOnce, vec![b'x'; payload], None);
                publish.pkid = 7;
                assert_eq!(
                    publish_size(topic, payload),
                    Packet::Publish(publish).size(),
                    "{} {payload}",
                    topic.len()
                );
            }
        }
    }

    /// Every subscription sees the publisher's retain flag: a retained command sent
    /// while ember is connected is not run (see `filters`).
    #[test]
    fn every_subscription_asks_for_retain_as_published() {
        let topics = Topics::new("ember", "b1", &["lab".into()]);
        let all = filters(&topics, true);
        // The commands, then ember's own state and discovery topics (the sweep).
        assert_eq!(all.len(), topics.subscriptions(true).len() + 3);
        assert!(all.iter().all(|f| f.preserve_retain), "{all:?}");
        let own = &all[topics.subscriptions(true).len()..];
        assert_eq!(own[0].path, "ember/b1/service/+/state");
        assert!(own.iter().all(|f| f.nolocal && f.qos == QoS::AtMostOnce));
        assert_eq!(
            filters(&topics, false).len(),
            topics.subscriptions(false).len() + 1
        );
    }

    /// What rumqttc asserts (it panics otherwise), for every value `ember check` takes.
    #[test]
    fn every_keep_alive_makes_options() {
        for secs in [0, 1, 4, 5, 60, 65_535] {
            assert!(options(&settings_for_tests(Duration::from_secs(secs))).is_ok());
        }
    }

    fn settings_for_tests(keep_alive: Duration) -> Settings {
        Settings {
            socket: "/run/ember/control.sock".into(),
            broker: Broker {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false,
                username: Some("b1".into()),
                password: Some(Secret::new("hunter2-7c41".into())),
                ca: None,
                cert: None,
                key: None,
            },
            client_id: "ember-b1".into(),
            prefix: "ember".into(),
            device: "b1".into(),
            keep_alive,
            allow: vec!["*".into()],
            allow_system: false,
            groups: Vec::new(),
            homeassistant: false,
        }
    }

    /// Instances made and forgotten while the broker is away, by the hundred thousand:
    /// what waits to be cleared stays bounded (found by a hostile review: one name per
    /// instance ever made and gone was kept until the broker came back). The retained
    /// states of the names not kept are found by the sweep at the next connect.
    #[test]
    fn what_waits_to_be_cleared_is_bounded_while_the_broker_is_away() {
        let (requests, _rx) = tokio::sync::mpsc::channel(1);
        let control = Control {
            requests,
            events: ember_ipc::broadcast::Broadcast::new(1),
            lines: ember_ipc::broadcast::Broadcast::new(1),
        };
        let mut adapter = Adapter::new(
            settings_for_tests(Duration::from_secs(30)),
            control,
            ember_ipc::link::Progress::default(),
        );
        assert!(!adapter.connected);
        for n in 0..100_000u64 {
            adapter.on_removed(format!("worker@{n}"), n + 1);
        }
        assert!(
            adapter.removed.len() <= MAX_STALE,
            "{} names wait to be cleared",
            adapter.removed.len()
        );
    }

    #[test]
    fn settings_never_show_the_password() {
        let settings = settings_for_tests(Duration::from_secs(30));
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains("hunter2-7c41"), "{shown}");
        assert!(shown.contains("Secret(..)"), "{shown}");
    }
}
