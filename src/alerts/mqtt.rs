//! The MQTT sink: a minimal MQTT 3.1.1 client for a LAN broker (the
//! Mosquitto that Home Assistant users run). It connects with a clean
//! session, publishes at QoS 1 and waits for each `PUBACK`, pings, and
//! disconnects; it never subscribes.
//!
//! The wire format is pure functions over byte slices ([`decode`] and the
//! private encoders); [`Client`] is the thin async loop around them.
//!
//! Invariant: nothing the broker sends can panic the client or grow its
//! buffer past one packet of [`MAX_INCOMING_BYTES`]; every wait is bounded
//! by the timeout given to [`Client::connect`]. After any error the
//! connection is in an unknown state: drop the client and connect again.

use std::future::Future;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::SinkError;
use super::url::MqttUrl;

/// Longest incoming packet accepted (its remaining length), in bytes; the
/// broker answers this client in a few bytes each.
pub const MAX_INCOMING_BYTES: usize = 64 * 1024;
/// Longest remaining length MQTT can encode, in bytes.
pub const MAX_REMAINING_BYTES: usize = 268_435_455;
/// Longest MQTT string or binary field (a two-byte length), in bytes.
pub const MAX_FIELD_BYTES: usize = 65_535;
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 512;

/// `PINGREQ`, whole.
const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// `DISCONNECT`, whole.
const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// The message the broker publishes for this client when its connection
/// ends without a `DISCONNECT` (delivered at QoS 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// Where it is published.
    pub topic: &'a str,
    /// What is published.
    pub payload: &'a [u8],
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
}

/// A packet from the broker, as far as this client cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to `CONNECT`: 0 accepted, else the refusal's code.
    ConnAck {
        /// Whether the broker kept a session (never, with a clean session).
        session_present: bool,
        /// The return code ([`refusal`] puts it in words).
        return_code: u8,
    },
    /// A QoS 1 publish was received.
    PubAck {
        /// The id of that publish.
        packet_id: u16,
    },
    /// The answer to `PINGREQ`.
    PingResp,
    /// Any other packet, skipped whole.
    Other {
        /// Its type, the high four bits of its first byte.
        packet_type: u8,
    },
}

/// The first complete packet of `buf` and the bytes it takes, `None` while
/// it is not all there, or what is wrong with it.
pub fn decode(buf: &[u8]) -> Result<Option<(Incoming, usize)>, &'static str> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((length, length_bytes)) = decode_remaining_length(rest)? else {
        return Ok(None);
    };
    if length > MAX_INCOMING_BYTES {
        return Err("the broker sent a packet longer than 64 KiB");
    }
    let Some(body) = rest.get(length_bytes..length_bytes + length) else {
        return Ok(None);
    };
    // CONNACK, PUBACK and PINGRESP have no flags and a fixed length.
    let packet = match (first >> 4, first & 0x0F, body) {
        (2, 0, &[flags, return_code]) if flags & 0xFE == 0 => {
            Incoming::ConnAck { session_present: flags == 1, return_code }
        }
        (4, 0, &[high, low]) => Incoming::PubAck { packet_id: u16::from_be_bytes([high, low]) },
        (13, 0, []) => Incoming::PingResp,
        (2, ..) => return Err("the broker sent a malformed CONNACK"),
        (4, ..) => return Err("the broker sent a malformed PUBACK"),
        (13, ..) => return Err("the broker sent a malformed PINGRESP"),
        (packet_type, ..) => Incoming::Other { packet_type },
    };
    Ok(Some((packet, 1 + length_bytes + length)))
}

/// The remaining length at the start of `bytes` and how many bytes encode
/// it, `None` while it is not all there.
pub fn decode_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let mut value = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 { Err("the broker sent a remaining length longer than 4 bytes") } else { Ok(None) }
}

/// The remaining length `length`, appended to `out`.
fn encode_remaining_length(length: usize, out: &mut Vec<u8>) -> Result<(), SinkError> {
    if length > MAX_REMAINING_BYTES {
        return Err(SinkError::TooLong {
            what: "MQTT packet",
            bytes: length,
            max_bytes: MAX_REMAINING_BYTES,
        });
    }
    let mut rest = length;
    loop {
        let digit = (rest % 128) as u8;
        rest /= 128;
        if rest == 0 {
            out.push(digit);
            return Ok(());
        }
        out.push(digit | 0x80);
    }
}

/// `bytes` with its two-byte length, appended to `out`.
fn put_field(what: &'static str, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), SinkError> {
    let length = u16::try_from(bytes.len()).map_err(|_| SinkError::TooLong {
        what,
        bytes: bytes.len(),
        max_bytes: MAX_FIELD_BYTES,
    })?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Refuses what cannot be published to: an empty topic, a wildcard, NUL.
fn check_topic(topic: &str) -> Result<(), SinkError> {
    let reason = if topic.is_empty() {
        "a topic cannot be empty"
    } else if topic.contains(['+', '#']) {
        "'+' and '#' are wildcards for subscribing; a publish names one topic"
    } else if topic.contains('\0') {
        "a topic cannot hold NUL"
    } else {
        return Ok(());
    };
    Err(SinkError::Invalid { what: "MQTT topic", value: topic.to_string(), reason })
}

/// The fixed header (`first` and the remaining length) then `body`.
fn packet(first: u8, body: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    encode_remaining_length(body.len(), &mut out)?;
    out.extend_from_slice(body);
    Ok(out)
}

/// A `CONNECT` with a clean session, keep-alive `keep_alive_secs` (0: off),
/// `credentials` (a user name and maybe a password) and maybe a `will`.
fn encode_connect(
    client_id: &str,
    keep_alive_secs: u16,
    credentials: Option<(&str, Option<&str>)>,
    will: Option<Will<'_>>,
) -> Result<Vec<u8>, SinkError> {
    if client_id.contains('\0') {
        let reason = "a client id cannot hold NUL";
        return Err(SinkError::Invalid { what: "MQTT client id", value: client_id.into(), reason });
    }
    let clean_session = 0x02;
    let will_flags = will.map_or(0, |w| 0x04 | if w.retain { 0x20 } else { 0 });
    let user_flags = credentials.map_or(0, |(_, password)| 0x80 | if password.is_some() { 0x40 } else { 0 });
    let flags = clean_session | will_flags | user_flags;
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags];
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    put_field("MQTT client id", client_id.as_bytes(), &mut body)?;
    if let Some(will) = will {
        check_topic(will.topic)?;
        put_field("MQTT will topic", will.topic.as_bytes(), &mut body)?;
        put_field("MQTT will payload", will.payload, &mut body)?;
    }
    if let Some((username, password)) = credentials {
        put_field("MQTT user name", username.as_bytes(), &mut body)?;
        if let Some(password) = password {
            put_field("MQTT password", password.as_bytes(), &mut body)?;
        }
    }
    packet(0x10, &body)
}

/// A QoS 1 `PUBLISH` with `packet_id`.
fn encode_publish(
    topic: &str,
    payload: &[u8],
    retain: bool,
    packet_id: NonZeroU16,
) -> Result<Vec<u8>, SinkError> {
    check_topic(topic)?;
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_field("MQTT topic", topic.as_bytes(), &mut body)?;
    body.extend_from_slice(&packet_id.get().to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x32 | u8::from(retain), &body)
}

/// The packet id after `previous`: 1 to 65535 in turn, never 0.
fn next_packet_id(previous: u16) -> NonZeroU16 {
    NonZeroU16::new(previous.wrapping_add(1)).unwrap_or(NonZeroU16::MIN)
}

/// A `CONNACK` return code in words.
pub fn refusal(return_code: u8) -> String {
    match return_code {
        1 => "unacceptable protocol version (the broker does not speak MQTT 3.1.1)".into(),
        2 => "identifier rejected (the client id)".into(),
        3 => "server unavailable".into(),
        4 => "bad user name or password".into(),
        5 => "not authorized".into(),
        code => format!("unknown return code {code}"),
    }
}

/// `work`, or [`SinkError::TimedOut`] once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    address: &str,
    work: impl Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    crate::net::within(timeout, work, || SinkError::TimedOut { address: address.to_string(), after: timeout })
        .await
}

/// A connection to a broker, accepted with a clean session.
#[derive(Debug)]
pub struct Client {
    stream: crate::rt::TcpStream,
    /// `host:port`, for errors.
    address: String,
    /// How long each exchange may take.
    timeout: Duration,
    last_packet_id: u16,
    last_sent: Instant,
    /// Bytes read and not yet decoded: less than one packet.
    inbox: Vec<u8>,
}

impl Client {
    /// Connects to the broker at `url` as `client_id` (its user and
    /// password if it names them), with a clean session and maybe a
    /// `will`, and waits for its `CONNACK`, all within `timeout`, which
    /// also bounds every later exchange. `keep_alive` is sent in whole
    /// seconds (at most 65535; 0 turns it off): send something at least
    /// that often ([`idle_for`](Self::idle_for), [`ping`](Self::ping)).
    pub async fn connect(
        url: &MqttUrl,
        client_id: &str,
        will: Option<Will<'_>>,
        keep_alive: Duration,
        timeout: Duration,
    ) -> Result<Client, SinkError> {
        let keep_alive_secs = u16::try_from(keep_alive.as_secs()).unwrap_or(u16::MAX);
        let credentials = url.username().map(|user| (user, url.password()));
        let connect = encode_connect(client_id, keep_alive_secs, credentials, will)?;
        let address = url.address().to_string();
        within(timeout, &address, async {
            let stream = crate::rt::connect_host(url.address().host(), url.address().port())
                .await
                .map_err(|source| SinkError::Connect { address: address.clone(), source })?;
            let mut client = Client {
                stream,
                address: address.clone(),
                timeout,
                last_packet_id: 0,
                last_sent: Instant::now(),
                inbox: Vec::new(),
            };
            client.send(&connect).await?;
            match client.receive().await? {
                Incoming::ConnAck { return_code: 0, .. } => Ok(client),
                Incoming::ConnAck { return_code, .. } => {
                    Err(SinkError::Refused { address: address.clone(), reason: refusal(return_code) })
                }
                _ => Err(client.protocol("the broker's first packet is not a CONNACK")),
            }
        })
        .await
    }

    /// Publishes `payload` to `topic` at QoS 1 (`retain`: the broker keeps
    /// it for later subscribers) and waits for its `PUBACK`.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), SinkError> {
        let packet_id = next_packet_id(self.last_packet_id);
        let publish = encode_publish(topic, payload, retain, packet_id)?;
        self.last_packet_id = packet_id.get();
        let address = self.address.clone();
        within(self.timeout, &address, async {
            self.send(&publish).await?;
            loop {
                // A PUBACK of an earlier publish that timed out is skipped.
                if self.receive().await? == (Incoming::PubAck { packet_id: packet_id.get() }) {
                    return Ok(());
                }
            }
        })
        .await
    }

    /// Sends `PINGREQ` and waits for `PINGRESP`.
    pub async fn ping(&mut self) -> Result<(), SinkError> {
        let address = self.address.clone();
        within(self.timeout, &address, async {
            self.send(&PINGREQ).await?;
            while self.receive().await? != Incoming::PingResp {}
            Ok(())
        })
        .await
    }

    /// Sends `DISCONNECT`, so the broker drops the will, and waits (within
    /// the timeout) for the broker to close. Errors are only logged: the
    /// connection is over either way.
    pub async fn disconnect(mut self) {
        let address = self.address.clone();
        let closed = within(self.timeout, &address, async {
            self.send(&DISCONNECT).await?;
            let mut sink = [0u8; READ_CHUNK_BYTES];
            while self.stream.read(&mut sink).await.map_err(|source| self.io(source))? > 0 {}
            Ok(())
        });
        if let Err(e) = closed.await {
            log::debug!("MQTT disconnect: {e}");
        }
    }

    /// Time since this client last sent a packet; the broker expects one
    /// within the keep-alive.
    pub fn idle_for(&self) -> Duration {
        self.last_sent.elapsed()
    }

    /// Writes `bytes` whole.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.stream.write_all(bytes).await.map_err(|source| self.io(source))?;
        self.stream.flush().await.map_err(|source| self.io(source))?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next packet from the broker.
    async fn receive(&mut self) -> Result<Incoming, SinkError> {
        loop {
            if let Some((packet, used)) = decode(&self.inbox).map_err(|what| self.protocol(what))? {
                // `decode` never reports more bytes than it was given.
                self.inbox.drain(..used.min(self.inbox.len()));
                return Ok(packet);
            }
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let n = self.stream.read(&mut chunk).await.map_err(|source| self.io(source))?;
            if n == 0 {
                return Err(self.protocol("the broker closed the connection"));
            }
            self.inbox.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    fn io(&self, source: std::io::Error) -> SinkError {
        SinkError::Io { address: self.address.clone(), source }
    }

    fn protocol(&self, what: &'static str) -> SinkError {
        SinkError::Protocol { address: self.address.clone(), what }
    }
}

#[cfg(test)]
mod tests;
