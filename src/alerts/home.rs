//! The MQTT sink: alerts, each worker's state and hashrate, and Home
//! Assistant MQTT discovery, so every rig appears as a device with a
//! hashrate sensor and an online binary sensor, with no YAML.
//!
//! Topics, under `loka-stratum/<gateway>` (the gateway is `[alerts] name`
//! with anything but `[A-Za-z0-9_-]` made `_`):
//! - `…/status`: `online`, retained; the broker publishes `offline` (the
//!   last will) when the gateway goes away;
//! - `…/event`: each alert as JSON, as a webhook gets it;
//! - `…/worker/<id>`: a worker's state as JSON, retained, every
//!   [`STATE_EVERY`] and at each change;
//! - `homeassistant/sensor/<gateway>/<id>_hashrate/config` and
//!   `homeassistant/binary_sensor/<gateway>/<id>_online/config`: discovery,
//!   retained, once per worker per connection.
//!
//! A worker's `<id>` is its login with anything but `[A-Za-z0-9_-]` made
//! `_`, shortened in the middle, and followed by a hash of the whole login,
//! so two logins never share an id and no login can reach another topic.

use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::mqtt::{Client, Will};
use super::outbox::{MAX_ATTEMPTS, MAX_BODY_BYTES, SEND_TIMEOUT, SinkCounts, json, retry_wait};
use super::rules::Alert;
use crate::config::Broker;
use crate::stats::WorkerView;

/// How often every worker's state is published.
pub const STATE_EVERY: Duration = Duration::from_secs(30);
/// Keep-alive asked of the broker.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Longest worker id in a topic, before its hash.
const MAX_ID_CHARS: usize = 40;

/// Where the MQTT sink gets what it publishes.
pub struct Feed {
    /// The gateway's name (`[alerts] name`).
    pub name: String,
    /// Every worker now.
    pub workers: Box<dyn Fn() -> Vec<WorkerView>>,
    /// Nudged when a worker's state changed: publish now.
    pub nudge: Receiver<()>,
}

/// `s` with anything but `[A-Za-z0-9_-]` made `_`.
fn topic_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The topic id of a worker `login` (see the module doc).
pub fn worker_id(login: &str) -> String {
    let safe = topic_safe(login);
    let short = if safe.len() > MAX_ID_CHARS {
        // ASCII only now, so byte offsets are character boundaries.
        format!("{}_{}", &safe[..12], &safe[safe.len() - (MAX_ID_CHARS - 13)..])
    } else {
        safe
    };
    let hash =
        login.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{short}_{hash:016x}")
}

/// A worker's state message.
#[derive(Serialize)]
struct StateBody<'a> {
    login: &'a str,
    state: &'a str,
    online: &'a str,
    hashrate: f64,
    hashrate_1h: f64,
    hashrate_24h: f64,
    accepted: u64,
    rejected: u64,
    stale: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_share: Option<u64>,
}

/// Home Assistant's device block.
#[derive(Serialize)]
struct Device<'a> {
    identifiers: [&'a str; 1],
    name: &'a str,
    manufacturer: &'a str,
    model: &'a str,
}

/// A Home Assistant discovery message.
#[derive(Serialize)]
struct Discovery<'a> {
    name: &'a str,
    unique_id: &'a str,
    state_topic: &'a str,
    value_template: &'a str,
    availability_topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_of_measurement: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_display_precision: Option<u8>,
    device: Device<'a>,
}

/// Topics of one gateway.
struct Topics {
    gateway: String,
    base: String,
}

impl Topics {
    fn new(name: &str) -> Topics {
        let gateway = topic_safe(name);
        Topics { base: format!("loka-stratum/{gateway}"), gateway }
    }

    fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    fn worker(&self, id: &str) -> String {
        format!("{}/worker/{id}", self.base)
    }
}

/// Publishes `payload` serialized as JSON.
async fn publish_json(
    client: &mut Client,
    topic: &str,
    payload: &impl Serialize,
    retain: bool,
) -> Result<(), super::SinkError> {
    let mut buf = [0u8; MAX_BODY_BYTES];
    let n = serde_json_core::to_slice(payload, &mut buf).map_err(|_| super::SinkError::TooLong {
        what: "MQTT payload",
        bytes: MAX_BODY_BYTES,
        max_bytes: MAX_BODY_BYTES,
    })?;
    client.publish(topic, &buf[..n], retain).await
}

/// Publishes the discovery messages of worker `v` (id `id`).
async fn discover(client: &mut Client, t: &Topics, v: &WorkerView, id: &str) -> Result<(), super::SinkError> {
    let state_topic = t.worker(id);
    let status = t.status();
    let device_id = format!("loka_{}_{id}", t.gateway);
    let device = || Device {
        identifiers: [&device_id],
        name: &v.login,
        manufacturer: "loka-stratum",
        model: "mining rig",
    };
    let unique = format!("{device_id}_hashrate");
    let sensor = Discovery {
        name: "Hashrate",
        unique_id: &unique,
        state_topic: &state_topic,
        value_template: "{{ value_json.hashrate }}",
        availability_topic: &status,
        unit_of_measurement: Some("H/s"),
        state_class: Some("measurement"),
        device_class: None,
        suggested_display_precision: Some(0),
        device: device(),
    };
    let topic = format!("homeassistant/sensor/{}/{id}_hashrate/config", t.gateway);
    publish_json(client, &topic, &sensor, true).await?;
    let unique = format!("{device_id}_online");
    let online = Discovery {
        name: "Online",
        unique_id: &unique,
        state_topic: &state_topic,
        value_template: "{{ value_json.online }}",
        availability_topic: &status,
        unit_of_measurement: None,
        state_class: None,
        device_class: Some("connectivity"),
        suggested_display_precision: None,
        device: device(),
    };
    let topic = format!("homeassistant/binary_sensor/{}/{id}_online/config", t.gateway);
    publish_json(client, &topic, &online, true).await
}

/// Publishes `online` (again: a will left by an earlier run of the gateway
/// may have said `offline` since; it also keeps the connection alive),
/// every worker's state, and discovery for the ones this connection has not
/// announced yet. `announced` keeps only the workers shown now.
async fn publish_states(
    client: &mut Client,
    t: &Topics,
    feed: &Feed,
    announced: &mut Vec<String>,
) -> Result<(), super::SinkError> {
    client.publish(&t.status(), b"online", true).await?;
    let views = (feed.workers)();
    let ids: Vec<String> = views.iter().map(|v| worker_id(&v.login)).collect();
    announced.retain(|id| ids.contains(id));
    for (v, id) in views.iter().zip(ids) {
        if !announced.contains(&id) {
            discover(client, t, v, &id).await?;
            announced.push(id.clone());
        }
        let body = StateBody {
            login: &v.login,
            state: v.state.label(),
            online: if v.state == crate::history::State::Down { "OFF" } else { "ON" },
            hashrate: v.hashrate_10m,
            hashrate_1h: v.hashrate_1h,
            hashrate_24h: v.hashrate_24h,
            accepted: v.accepted,
            rejected: v.rejected,
            stale: v.stale,
            last_share: v.last_share.map(|t| t as u64),
        };
        publish_json(client, &t.worker(&id), &body, true).await?;
    }
    Ok(())
}

/// What woke the connected loop.
enum Wake {
    Alert(Option<Rc<Alert>>),
    States,
    Ping,
}

/// Counts one more try of the alert `held`, if any: past [`MAX_ATTEMPTS`]
/// it is given up and counted as failed.
fn use_try(held: &mut Option<(Rc<Alert>, u32)>, counts: &SinkCounts) {
    if let Some((alert, tries)) = held.take() {
        if tries + 1 >= MAX_ATTEMPTS {
            counts.failed.inc();
        } else {
            *held = Some((alert, tries + 1));
        }
    }
}

/// Serves one MQTT sink until its queue closes. While the broker is away
/// the sink reconnects with back-off; each alert still gets at most
/// [`MAX_ATTEMPTS`] tries before it counts as failed.
pub async fn serve_mqtt(broker: Broker, feed: Feed, queue: Receiver<Rc<Alert>>, counts: Rc<SinkCounts>) {
    let t = Topics::new(&feed.name);
    let client_id = format!("loka-stratum-{}-{}", t.gateway, std::process::id());
    let mut held: Option<(Rc<Alert>, u32)> = None;
    let mut failures = 0u32;
    loop {
        let status = t.status();
        let will = Will { topic: &status, payload: b"offline", retain: true };
        let connected = Client::connect(&broker.0, &client_id, Some(will), KEEP_ALIVE, SEND_TIMEOUT).await;
        let mut client = match connected {
            Ok(client) => client,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    log::warn!("alert broker {broker}: {}; retrying with back-off", super::Chain(&e));
                }
                // An alert waiting for the broker uses up its tries.
                if held.is_some() {
                    use_try(&mut held, &counts);
                } else if let Ok(alert) = queue.try_recv() {
                    held = Some((alert, 1));
                } else if queue.is_closed() {
                    return;
                }
                crate::rt::Timer::after(retry_wait(failures)).await;
                continue;
            }
        };
        if failures > 0 {
            log::info!("alert broker {broker} reachable again");
        }
        // At most one id per worker shown: bounded like the workers.
        let mut announced = Vec::new();
        let result: Result<(), super::SinkError> = async {
            publish_states(&mut client, &t, &feed, &mut announced).await?;
            loop {
                if let Some((alert, _)) = &held {
                    let mut buf = [0u8; MAX_BODY_BYTES];
                    let n = json(alert, &feed.name, &mut buf)?;
                    client.publish(&format!("{}/event", t.base), &buf[..n], false).await?;
                    counts.sent.inc();
                    held = None;
                }
                let wake = async { Wake::Alert(queue.recv().await.ok()) }
                    .or(async {
                        let _ = feed.nudge.recv().await;
                        Wake::States
                    })
                    .or(async {
                        // Within the keep-alive, so the states double as pings.
                        crate::rt::Timer::after(STATE_EVERY.min(KEEP_ALIVE / 2)).await;
                        Wake::Ping
                    })
                    .await;
                match wake {
                    Wake::Alert(Some(alert)) => held = Some((alert, 1)),
                    Wake::Alert(None) => return Ok(()),
                    Wake::States | Wake::Ping => {
                        publish_states(&mut client, &t, &feed, &mut announced).await?
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => {
                client.disconnect().await;
                return;
            }
            Err(e) => {
                log::warn!("alert broker {broker}: {}; reconnecting", super::Chain(&e));
                // The alert being published when it failed used a try.
                use_try(&mut held, &counts);
                failures = 1;
                crate::rt::Timer::after(retry_wait(1)).await;
            }
        }
    }
}
