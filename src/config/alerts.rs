//! `[alerts]` and the `[[alert]]` sinks: when a worker counts as down, and
//! where alerts go (an HTTP webhook, plain or ntfy-style, or an MQTT broker
//! with Home Assistant discovery).
//!
//! Invariant, once [`Alerts::validate`] has passed: each sink has exactly
//! one address (a `webhook` or an `mqtt` broker), `format` only on a
//! webhook, at most [`MAX_SINKS`] sinks, and the thresholds are in bounds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Interval, Plain, secs};
use crate::alerts::url::{HttpUrl, MqttUrl};

/// Most `[[alert]]` sinks.
pub const MAX_SINKS: usize = 8;
/// Shortest `worker_down_after`. Shares come at random, so a silence of a
/// few usual intervals says little; the rule's floor of five usual
/// intervals keeps a short setting from flagging slow rigs.
const MIN_DOWN_AFTER: Duration = Duration::from_secs(10);
/// Longest `worker_down_after`.
const MAX_DOWN_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// `[alerts]`: the thresholds shared by every sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// No share for this long (or five usual share intervals, when longer):
    /// the worker is down.
    pub worker_down_after: Interval,
    /// A worker whose hashrate over 30 minutes falls below this share of
    /// its 24-hour average raises `hashrate_drop`.
    pub hashrate_drop_below: f64,
    /// This gateway's name in alerts and MQTT topics.
    pub name: Plain,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { worker_down_after: secs(600), hashrate_drop_below: 0.5, name: Plain("loka-stratum".into()) }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A worker sent no share for its down time.
    WorkerDown,
    /// A worker that was down sent a share.
    WorkerBack,
    /// A worker's hashrate fell below its usual.
    HashrateDrop,
    /// A pool is down.
    PoolDown,
    /// Miners moved to another pool.
    Failover,
    /// A share met the network target.
    BlockFound,
}

impl Event {
    /// Every event, in a fixed order.
    pub const ALL: [Event; 6] = [
        Event::WorkerDown,
        Event::WorkerBack,
        Event::HashrateDrop,
        Event::PoolDown,
        Event::Failover,
        Event::BlockFound,
    ];

    /// The name in the config file and in alert bodies.
    pub fn label(self) -> &'static str {
        match self {
            Event::WorkerDown => "worker_down",
            Event::WorkerBack => "worker_back",
            Event::HashrateDrop => "hashrate_drop",
            Event::PoolDown => "pool_down",
            Event::Failover => "failover",
            Event::BlockFound => "block_found",
        }
    }
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A small JSON object (Home Assistant webhooks, scripts).
    #[default]
    Json,
    /// Plain text with a `Title` header, as ntfy servers expect.
    Ntfy,
}

/// A webhook address: `http://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook(pub HttpUrl);

impl FromStr for Webhook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HttpUrl::parse(s).map(Webhook)
    }
}

impl fmt::Display for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A broker address: `mqtt://[user[:password]@]host[:port]`; shows its
/// password masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker(pub MqttUrl);

impl FromStr for Broker {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        MqttUrl::parse(s).map(Broker)
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

super::values::via_str!(Webhook, Broker);

/// `[[alert]]`: one place alerts go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// POST each alert here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// The webhook's body: `json` (default) or `ntfy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Publish alerts, worker state and Home Assistant discovery to this broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<Broker>,
    /// The events this sink wants; every event when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

impl Sink {
    /// Whether this sink wants `event`.
    pub fn wants(&self, event: Event) -> bool {
        self.events.as_ref().is_none_or(|events| events.contains(&event))
    }
}

impl Alerts {
    /// Checks the thresholds and the sinks (`sinks` are the `[[alert]]` tables).
    pub(super) fn validate(&self, sinks: &[Sink]) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        let down = self.worker_down_after.0;
        if !(MIN_DOWN_AFTER..=MAX_DOWN_AFTER).contains(&down) {
            return invalid(
                "alerts.worker_down_after".into(),
                format!("must be between {} and {}", Interval(MIN_DOWN_AFTER), Interval(MAX_DOWN_AFTER)),
            );
        }
        let drop = self.hashrate_drop_below;
        if !(drop > 0.0 && drop < 1.0) {
            return invalid("alerts.hashrate_drop_below".into(), "must be between 0 and 1, e.g. 0.5".into());
        }
        if sinks.len() > MAX_SINKS {
            return invalid(
                "alert".into(),
                format!("at most {MAX_SINKS} [[alert]] sinks, not {}", sinks.len()),
            );
        }
        for (i, sink) in sinks.iter().enumerate() {
            match (&sink.webhook, &sink.mqtt) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return invalid(
                        format!("alert[{i}]"),
                        "needs exactly one of webhook = \"http://…\" or mqtt = \"mqtt://…\"".into(),
                    );
                }
            }
            if sink.format.is_some() && sink.webhook.is_none() {
                return invalid(format!("alert[{i}].format"), "only a webhook has a format".into());
            }
            if sink.events.as_ref().is_some_and(Vec::is_empty) {
                return invalid(
                    format!("alert[{i}].events"),
                    "lists no event; leave it out for every event".into(),
                );
            }
        }
        Ok(())
    }
}
