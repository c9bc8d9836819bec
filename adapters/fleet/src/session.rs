//! ember fleet's MQTT session: one connection, the boards' topics, and the end of the
//! retained states.
//!
//! The event loop runs in a task of its own that polls without pause (rumqttc does
//! nothing otherwise) and sleeps a growing backoff after an error (rumqttc would retry
//! at once); the session resubscribes after every CONNACK (rumqttc does not).
//!
//! **The end of the retained states.** MQTT has no marker for it. A broker sends a
//! client's messages in order, and the retained ones of a subscription before anything
//! published after its SUBACK: so ember fleet publishes a message of its own (QoS 1, on
//! `ember-fleet/<client id>/sync`, which it also subscribes to) once subscribed, and
//! when that comes back every retained state is in. Where the broker's ACL forbids that
//! topic (an MQTT 5 broker says so in the PUBACK), it falls back to 500 ms without a
//! message.
//!
//! **Many boards.** ember fleet subscribes at QoS 1 and announces a Receive Maximum of
//! 65,535: mosquitto then counts the retained states of a thousand boards (thousands of
//! messages at once) as in flight, not queued, and its `max_queued_messages` (1,000 by
//! default) does not drop any of them.

use ember_mqtt::connect::{describe, install_crypto, Broker};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, EventLoop};
use rumqttc::Outgoing;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

/// The most a board's message may be (a state with a long reason is a few KiB).
const MAX_INCOMING: u32 = 1024 * 1024;
/// How long the broker may stay quiet before the retained states count as all in, when
/// the end-of-retained message is forbidden.
pub const QUIET: Duration = Duration::from_millis(500);

/// What a publish was for: its PUBACK says whether the broker took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// The end-of-retained message.
    Sync,
    /// A command, to this topic.
    Command(String),
}

/// What the session hands its user.
#[derive(Debug)]
pub enum Event {
    Message {
        topic: String,
        payload: Vec<u8>,
        /// Sent because of a subscription (a retained state), not as it happened.
        retained: bool,
    },
    /// The end-of-retained message came back: every retained state before it is in.
    Synced,
    /// The broker answered a publish: `Ok` it took it (`true`: someone subscribes to
    /// the topic), `Err` why not.
    Acked {
        label: Label,
        taken: Result<bool, String>,
    },
    /// Filters the broker refused (its ACL).
    Refused(Vec<String>),
    /// Connected again after a loss.
    Reconnected,
    /// The connection broke: it is being made again.
    Lost(String),
}

enum FromLoop {
    Connected,
    Lost(String),
    Message {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
    SubAck(Vec<bool>),
    Sent(u16),
    PubAck(u16, PubAckReason),
}

pub struct Session {
    client: AsyncClient,
    from_loop: mpsc::Receiver<FromLoop>,
    filters: Vec<String>,
    sync_topic: String,
    /// Publishes handed to the client whose packet id is not known yet, in order.
    labels: VecDeque<Label>,
    /// Publishes the broker has not acknowledged yet, by packet id.
    unacked: HashMap<u16, Label>,
    /// Events to hand out before reading more.
    ready: VecDeque<Event>,
    _poller: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Session {
    /// Connects (within `within`), subscribes to `filters` and to its own sync topic,
    /// and publishes the end-of-retained message once the broker has the subscriptions.
    pub async fn open(
        broker: &Broker,
        client_id: &str,
        filters: Vec<String>,
        within: Duration,
    ) -> Result<Session, String> {
        install_crypto()?;
        let mut options = broker.options(client_id, Duration::from_secs(30))?;
        options.set_max_packet_size(Some(MAX_INCOMING));
        options.set_receive_maximum(Some(u16::MAX));
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (to_session, from_loop) = mpsc::channel(4096);
        let poller = tokio::spawn(poll(eventloop, to_session, client_id.to_owned()));
        let mut session = Session {
            client,
            from_loop,
            filters,
            sync_topic: format!("ember-fleet/{client_id}/sync"),
            labels: VecDeque::new(),
            unacked: HashMap::new(),
            ready: VecDeque::new(),
            _poller: AbortOnDrop(poller.abort_handle()),
        };
        let first = tokio::time::timeout(within, session.from_loop.recv()).await;
        match first {
            Ok(Some(FromLoop::Connected)) => {}
            Ok(Some(FromLoop::Lost(why))) => return Err(why),
            Ok(_) => return Err("the MQTT client stopped".into()),
            Err(_) => {
                return Err(format!(
                    "no answer from the broker within {} s",
                    within.as_secs_f64()
                ))
            }
        }
        session.subscribe().await?;
        Ok(session)
    }

    async fn subscribe(&mut self) -> Result<(), String> {
        let filters = self
            .filters
            .iter()
            .chain(std::iter::once(&self.sync_topic))
            .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
        self.client
            .subscribe_many(filters)
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))
    }

    /// Publishes at QoS 1 (never retained); the broker's PUBACK comes as [`Event::Acked`].
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        label: Label,
    ) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| format!("cannot publish on {topic}: {e}"))?;
        self.labels.push_back(label);
        Ok(())
    }

    /// The next event; `None` when the client has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            match self.from_loop.recv().await? {
                FromLoop::Message {
                    topic,
                    payload,
                    retained,
                } => {
                    if topic == self.sync_topic {
                        return Some(Event::Synced);
                    }
                    return Some(Event::Message {
                        topic,
                        payload,
                        retained,
                    });
                }
                FromLoop::SubAck(codes) => {
                    let refused: Vec<String> = self
                        .filters
                        .iter()
                        .chain(std::iter::once(&self.sync_topic))
                        .zip(codes)
                        .filter(|(_, ok)| !ok)
                        .map(|(f, _)| f.clone())
                        .collect();
                    // Subscribed: the end-of-retained message goes after the SUBACK.
                    let sync = self.sync_topic.clone();
                    if !refused.contains(&sync) {
                        let _ = self.publish(&sync, b"sync".to_vec(), Label::Sync).await;
                    }
                    if !refused.is_empty() {
                        return Some(Event::Refused(refused));
                    }
                }
                FromLoop::Sent(pkid) => {
                    if let Some(label) = self.labels.pop_front() {
                        self.unacked.insert(pkid, label);
                    }
                }
                FromLoop::PubAck(pkid, reason) => {
                    let Some(label) = self.unacked.remove(&pkid) else {
                        continue;
                    };
                    let taken = match reason {
                        PubAckReason::Success => Ok(true),
                        PubAckReason::NoMatchingSubscribers => Ok(false),
                        PubAckReason::NotAuthorized => {
                            Err("the broker's ACL does not allow it".to_owned())
                        }
                        other => Err(format!("the broker refused it ({other:?})")),
                    };
                    return Some(Event::Acked { label, taken });
                }
                FromLoop::Connected => {
                    // A new session: unacknowledged publishes are gone with the old one.
                    self.labels.clear();
                    self.unacked.clear();
                    if let Err(e) = self.subscribe().await {
                        return Some(Event::Lost(e));
                    }
                    return Some(Event::Reconnected);
                }
                FromLoop::Lost(why) => return Some(Event::Lost(why)),
            }
        }
    }

    /// Ends the session cleanly (a DISCONNECT), giving the client a moment to send it.
    pub async fn close(self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            let mut s = self;
            while s.from_loop.recv().await.is_some() {}
        })
        .await;
    }
}

/// Polls the event loop until the session is gone; a growing backoff after each error.
async fn poll(mut eventloop: EventLoop, to_session: mpsc::Sender<FromLoop>, client_id: String) {
    let mut backoff = Duration::from_millis(100);
    let mut accepted = false;
    loop {
        let message = match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                accepted = true;
                backoff = Duration::from_millis(100);
                FromLoop::Connected
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => FromLoop::Message {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                retained: p.retain,
            },
            Ok(MqttEvent::Incoming(Packet::SubAck(s))) => FromLoop::SubAck(
                s.return_codes
                    .iter()
                    .map(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    .collect(),
            ),
            Ok(MqttEvent::Incoming(Packet::PubAck(a))) => FromLoop::PubAck(a.pkid, a.reason),
            Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => FromLoop::Sent(pkid),
            Ok(MqttEvent::Incoming(Packet::Disconnect(_))) | Ok(_) => continue,
            Err(e) => {
                let lost = describe(&e, &client_id, accepted, "ember fleet");
                accepted = false;
                if to_session.send(FromLoop::Lost(lost.why)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if to_session.send(message).await.is_err() {
            return;
        }
    }
}
