//! Reaching a broker: what the board's adapter (ember-mqtt) and the operator's fleet tool
//! (ember-fleet) share. The address, the login (username and password), TLS with an
//! explicit CA and an optional client certificate (rustls with ring: no C build but
//! ring's, never aws-lc, no system store), and a connection error in words naming its
//! cause. What differs stays with each: the adapter's last will, packet limits and
//! client id, the fleet tool's subscriptions.

use ember_ipc::adapter::Secret;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode};
use rumqttc::v5::mqttbytes::Error as PacketError;
use rumqttc::v5::{ConnectionError, MqttOptions, StateError};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use std::time::Duration;

/// rumqttc's MQTT 5 client refuses a keep-alive under 5 s (it panics).
pub const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A broker and how to log in to it. File contents (the password, the CA, the client
/// certificate and key) are read by whoever has the right to: ember for its adapter,
/// the operator's own ember-fleet for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// mqtts://
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The CA that signed the broker's certificate, PEM.
    pub ca: Option<String>,
    /// A client certificate and its key, PEM.
    pub cert: Option<String>,
    pub key: Option<Secret>,
}

impl Broker {
    /// The options every client of ember's uses: MQTT 5, a clean start without session
    /// expiry (what 3.1.1's clean session was: nothing sent while the client was away is
    /// replayed to it; the adapter asks for a session of its own instead), TCP_NODELAY
    /// (small messages leave at once), the login and TLS.
    pub fn options(&self, client_id: &str, keep_alive: Duration) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        options.set_keep_alive(self::keep_alive(keep_alive));
        options.set_clean_start(true);
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        if let (Some(user), password) = (&self.username, &self.password) {
            let password = password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options.set_credentials(user, password);
        }
        if self.tls {
            let ca = match &self.ca {
                Some(pem) => pem.as_bytes().to_vec(),
                None => {
                    return Err(
                        "mqtts:// needs ca_file, the CA that signed the broker's certificate"
                            .into(),
                    )
                }
            };
            let client_auth = match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    Some((cert.as_bytes().to_vec(), key.expose().as_bytes().to_vec()))
                }
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
}

/// rustls needs a process-wide crypto provider: ring (no C build, unlike aws-lc).
pub fn install_crypto() -> Result<(), String> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "cannot install the ring crypto provider".to_owned())
}

/// The keep-alive sent in the CONNECT. `0` (off) has no equivalent in rumqttc's MQTT 5
/// client, which pings at the keep-alive whatever it is: the longest MQTT has (18 h)
/// instead. Under 5 s, 5 s (rumqttc's minimum).
pub fn keep_alive(configured: Duration) -> Duration {
    if configured.is_zero() {
        Duration::from_secs(u64::from(u16::MAX))
    } else {
        configured.max(MIN_KEEP_ALIVE)
    }
}

/// Why the connection ended or could not be made, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub why: String,
    /// The broker answered the CONNECT with a refusal.
    pub refused: bool,
}

/// A connection error in words, naming its cause. `accepted`: the broker had sent its
/// CONNACK on this connection. `who` is the client, as its user knows it ("ember",
/// "ember fleet").
pub fn describe(error: &ConnectionError, client_id: &str, accepted: bool, who: &str) -> Lost {
    let lost = |why: String| Lost {
        why,
        refused: false,
    };
    let closed = || {
        if accepted {
            lost("the broker closed the connection".to_owned())
        } else {
            // A broker that only speaks MQTT 3.1.1 answers an MQTT 5 CONNECT with a
            // 3.1.1 refusal and closes: rumqttc reads that as the connection ending.
            // A refusal, said as one (a broker that is away refuses the TCP connection).
            Lost {
                why: format!(
                    "the broker closed the connection before accepting {who} (a broker \
                     that does not speak MQTT 5, such as mosquitto before 1.6, does that: \
                     {who} needs MQTT 5)"
                ),
                refused: true,
            }
        }
    };
    match error {
        ConnectionError::ConnectionRefused(code) => Lost {
            why: refusal(*code, client_id, who),
            refused: true,
        },
        ConnectionError::MqttState(state) => match state {
            StateError::ServerDisconnect {
                reason_code,
                reason_string,
            } => {
                let reason = match reason_code {
                    DisconnectReasonCode::SessionTakenOver => format!(
                        "another client connected with {who}'s client_id \"{client_id}\" \
                         and took over its session"
                    ),
                    DisconnectReasonCode::PacketTooLarge => {
                        format!("{who} sent a packet larger than the broker takes")
                    }
                    DisconnectReasonCode::KeepAliveTimeout => {
                        format!("nothing from {who} within 1.5 keep-alive periods")
                    }
                    DisconnectReasonCode::ServerShuttingDown => {
                        "the broker is shutting down".to_owned()
                    }
                    DisconnectReasonCode::NotAuthorized => {
                        format!("{who} is not authorized (the broker's ACL)")
                    }
                    DisconnectReasonCode::ReceiveMaximumExceeded => {
                        format!("{who} had more messages in flight than the broker takes")
                    }
                    other => format!("{other:?}"),
                };
                match reason_string {
                    Some(said) => lost(format!(
                        "the broker disconnected {who}: {reason} (it said: {})",
                        said.escape_debug()
                    )),
                    None => lost(format!("the broker disconnected {who}: {reason}")),
                }
            }
            StateError::Deserialization(PacketError::PayloadSizeLimitExceeded {
                pkt_size,
                max,
            }) => lost(format!(
                "the broker sent a packet of {pkt_size} bytes although {who} announced a \
                 Maximum Packet Size of {max} bytes (MQTT 5): this broker ignores the limit, \
                 so a message that large on a topic {who} subscribes to cuts it off"
            )),
            StateError::OutgoingPacketTooLarge { pkt_size, max } => lost(format!(
                "{who} tried to send a packet of {pkt_size} bytes, over the broker's maximum \
                 of {max} bytes"
            )),
            StateError::AwaitPingResp => {
                lost("the broker did not answer a ping within the keep-alive".to_owned())
            }
            StateError::ConnectionAborted => closed(),
            StateError::Deserialization(PacketError::Io(e)) if bare_close(e) => closed(),
            StateError::Io(e) if bare_close(e) => closed(),
            StateError::Io(e) => lost(format!("connection error: {e}")),
            other => lost(format!("MQTT protocol error: {other}")),
        },
        ConnectionError::Io(e) if bare_close(e) => closed(),
        ConnectionError::Io(e) => lost(format!("cannot connect: {e}")),
        ConnectionError::Timeout(_) => {
            lost("no CONNACK from the broker within 5 s of connecting".to_owned())
        }
        ConnectionError::NotConnAck(packet) => lost(format!(
            "the broker answered the CONNECT with {packet:?} instead of a CONNACK"
        )),
        ConnectionError::Tls(e) => lost(format!("TLS: {e}")),
        other => lost(other.to_string()),
    }
}

/// The connection ended without a word from the broker.
pub fn bare_close(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Whether an error is the connection ending without a word from the broker.
pub fn is_bare_close(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::MqttState(StateError::ConnectionAborted) => true,
        ConnectionError::MqttState(
            StateError::Io(io) | StateError::Deserialization(PacketError::Io(io)),
        )
        | ConnectionError::Io(io) => bare_close(io),
        _ => false,
    }
}

/// A CONNACK's refusal in words.
fn refusal(code: ConnectReturnCode, client_id: &str, who: &str) -> String {
    let reason = match code {
        ConnectReturnCode::BadUserNamePassword => "wrong username or password".to_owned(),
        ConnectReturnCode::NotAuthorized => "not authorized".to_owned(),
        ConnectReturnCode::ClientIdentifierNotValid | ConnectReturnCode::BadClientId => {
            format!("it does not accept the client_id \"{client_id}\"")
        }
        ConnectReturnCode::UnsupportedProtocolVersion
        | ConnectReturnCode::RefusedProtocolVersion => {
            format!("it does not speak MQTT 5, which {who} needs")
        }
        ConnectReturnCode::Banned => format!("{who} is banned"),
        ConnectReturnCode::ServerBusy | ConnectReturnCode::ServerUnavailable => {
            "the broker is busy or unavailable".to_owned()
        }
        other => format!("{other:?}"),
    };
    format!("{reason} (CONNACK reason code {code:?})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

    fn broker() -> Broker {
        Broker {
            host: "127.0.0.1".into(),
            port: 8883,
            tls: true,
            username: Some("b1".into()),
            password: Some(Secret::new("hunter2-7c41".into())),
            ca: None,
            cert: None,
            key: None,
        }
    }

    #[test]
    fn keep_alive_fits_the_mqtt_5_client() {
        assert_eq!(keep_alive(Duration::ZERO), Duration::from_secs(65_535));
        assert_eq!(keep_alive(Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(keep_alive(Duration::from_secs(30)), Duration::from_secs(30));
        // What rumqttc asserts (it panics otherwise), for every value `ember check` takes.
        for secs in [0, 1, 4, 5, 60, 65_535] {
            assert!(keep_alive(Duration::from_secs(secs)) >= Duration::from_secs(5));
        }
    }

    /// Each error names its cause, not a guess.
    #[test]
    fn connection_errors_name_their_cause() {
        let e = ConnectionError::MqttState(StateError::Deserialization(
            PacketError::PayloadSizeLimitExceeded {
                pkt_size: 2_000_000,
                max: 1024 * 1024,
            },
        ));
        let lost = describe(&e, "ember-b1", true, "ember");
        assert!(lost.why.contains("2000000 bytes"), "{}", lost.why);
        assert!(lost.why.contains("Maximum Packet Size"), "{}", lost.why);
        assert!(!lost.refused);
        let e = ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code: DisconnectReasonCode::SessionTakenOver,
            reason_string: None,
        });
        assert!(describe(&e, "ember-b1", true, "ember")
            .why
            .contains("\"ember-b1\""));
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        let lost = describe(&e, "ember-b1", false, "ember");
        assert!(lost.refused && lost.why.contains("wrong username or password"));
        let e = ConnectionError::MqttState(StateError::ConnectionAborted);
        let lost = describe(&e, "x", false, "ember");
        assert!(lost.refused && lost.why.contains("MQTT 5"), "{}", lost.why);
        assert_eq!(
            describe(&e, "x", true, "ember").why,
            "the broker closed the connection"
        );
    }

    #[test]
    fn tls_needs_a_ca_and_both_halves_of_a_client_certificate() {
        let mut b = broker();
        assert!(b.options("x", Duration::from_secs(30)).is_err());
        b.ca = Some("PEM".into());
        assert!(b.options("x", Duration::from_secs(30)).is_ok());
        b.cert = Some("PEM".into());
        let e = b.options("x", Duration::from_secs(30)).unwrap_err();
        assert!(e.contains("both"), "{e}");
    }

    #[test]
    fn a_broker_never_shows_its_password() {
        let shown = format!("{:?} {:#?}", broker(), broker());
        assert!(!shown.contains("hunter2-7c41"), "{shown}");
    }

    #[test]
    fn the_client_is_named_as_its_user_knows_it() {
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::Banned);
        assert_eq!(
            describe(&e, "x", false, "ember fleet").why,
            "ember fleet is banned (CONNACK reason code Banned)"
        );
    }
}
