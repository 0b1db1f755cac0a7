//! Where alerts wait: one bounded queue per sink, one task per sink that
//! sends and retries, and the counts of what was sent, failed and dropped.
//!
//! Invariant: [`Outbox::raise`] never waits and never allocates more than
//! the alert itself: a sink whose queue is full (its endpoint is down and
//! retries are pending) drops the new alert and counts it. A sink retries an
//! alert with back-off, at most [`MAX_ATTEMPTS`] times, then counts it as
//! failed and takes the next; nothing a sink does can stall the proxy.

use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use smol::channel::{Receiver, Sender, TrySendError};

use super::rules::Alert;
use super::webhook;
use crate::config::{Event, Format, Sink, Webhook};
use crate::stats::Counter;

/// Alerts waiting per sink, at most.
pub const QUEUE_ALERTS: usize = 32;
/// Tries per alert before it counts as failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// First wait before a retry; it doubles up to [`MAX_RETRY_WAIT`].
pub const FIRST_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Longest wait before a retry.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);
/// Time one attempt may take (connect, send, answer).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest alert body, in bytes (a login is at most 128 bytes).
pub const MAX_BODY_BYTES: usize = 2048;

/// What became of one sink's alerts.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Alerts the endpoint took.
    pub sent: Counter,
    /// Alerts given up after [`MAX_ATTEMPTS`].
    pub failed: Counter,
    /// Alerts dropped because the queue was full.
    pub dropped: Counter,
}

/// One sink as the outbox knows it.
struct Queue {
    /// Which events it wants.
    sink: Sink,
    tx: Sender<Rc<Alert>>,
    counts: Rc<SinkCounts>,
}

/// The queues of every sink.
#[derive(Default)]
pub struct Outbox {
    queues: Vec<Queue>,
}

impl Outbox {
    /// Adds `sink`, returning the receiving end of its queue and its counts
    /// for the task that serves it.
    pub fn add(&mut self, sink: Sink) -> (Receiver<Rc<Alert>>, Rc<SinkCounts>) {
        let (tx, rx) = smol::channel::bounded(QUEUE_ALERTS);
        let counts = Rc::new(SinkCounts::default());
        self.queues.push(Queue { sink, tx, counts: counts.clone() });
        (rx, counts)
    }

    /// Hands `alert` to every sink that wants it, without waiting.
    pub fn raise(&self, alert: Alert) {
        let alert = Rc::new(alert);
        for q in self.queues.iter().filter(|q| q.sink.wants(alert.event)) {
            match q.tx.try_send(alert.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => q.counts.dropped.inc(),
                // The sink's task is gone (shutting down): nobody will send it.
                Err(TrySendError::Closed(_)) => q.counts.failed.inc(),
            }
        }
    }

    /// Each sink's label (`webhook` or `mqtt` and its index) and counts.
    pub fn counts(&self) -> impl Iterator<Item = (String, &SinkCounts)> {
        self.queues.iter().enumerate().map(|(i, q)| {
            let kind = if q.sink.mqtt.is_some() { "mqtt" } else { "webhook" };
            (format!("{i}-{kind}"), &*q.counts)
        })
    }
}

/// The JSON body of a webhook alert.
#[derive(Serialize)]
struct JsonBody<'a> {
    event: &'a str,
    gateway: &'a str,
    subject: &'a str,
    message: &'a str,
    at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hashrate: Option<f64>,
}

/// The JSON of `alert`, from gateway `name`, into `buf`; its length.
pub fn json(alert: &Alert, name: &str, buf: &mut [u8]) -> Result<usize, super::SinkError> {
    let body = JsonBody {
        event: alert.event.label(),
        gateway: name,
        subject: &alert.subject,
        message: &alert.message,
        at: alert.at,
        hashrate: alert.hashrate,
    };
    serde_json_core::to_slice(&body, buf).map_err(|_| super::SinkError::TooLong {
        what: "alert body",
        bytes: buf.len(),
        max_bytes: buf.len(),
    })
}

/// An ntfy title for `alert`: short, ASCII (a header value).
fn title(alert: &Alert, name: &str) -> String {
    let what = match alert.event {
        Event::WorkerDown => "worker down",
        Event::WorkerBack => "worker back",
        Event::HashrateDrop => "hashrate drop",
        Event::PoolDown => "pool down",
        Event::Failover => "failover",
        Event::BlockFound => "block found",
    };
    format!("{name}: {what}")
}

/// ntfy's priority and tags for `alert`.
fn ntfy_headers(event: Event) -> (&'static str, &'static str) {
    match event {
        Event::WorkerDown | Event::PoolDown => ("high", "warning"),
        Event::HashrateDrop | Event::Failover => ("default", "chart_with_downwards_trend"),
        Event::WorkerBack => ("default", "white_check_mark"),
        Event::BlockFound => ("max", "tada"),
    }
}

/// Sends one alert to a webhook once.
async fn post(url: &Webhook, format: Format, alert: &Alert, name: &str) -> Result<(), super::SinkError> {
    let mut buf = [0u8; MAX_BODY_BYTES];
    match format {
        Format::Json => {
            let n = json(alert, name, &mut buf)?;
            webhook::post(&url.0, "application/json", &[], &buf[..n], SEND_TIMEOUT).await?;
        }
        Format::Ntfy => {
            let title = title(alert, name);
            let (priority, tags) = ntfy_headers(alert.event);
            let headers = [("Title", title.as_str()), ("Priority", priority), ("Tags", tags)];
            let body = alert.message.as_bytes();
            webhook::post(&url.0, "text/plain; charset=utf-8", &headers, body, SEND_TIMEOUT).await?;
        }
    }
    Ok(())
}

/// The wait before retry `attempt` (from 1).
pub fn retry_wait(attempt: u32) -> Duration {
    FIRST_RETRY_WAIT.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_RETRY_WAIT)
}

/// Serves one webhook sink until its queue closes: each alert is tried up
/// to [`MAX_ATTEMPTS`] times. A failing endpoint is logged once when it
/// starts failing and once when it works again.
pub async fn serve_webhook(
    url: Webhook,
    format: Format,
    name: String,
    queue: Receiver<Rc<Alert>>,
    counts: Rc<SinkCounts>,
) {
    let mut failing = false;
    while let Ok(alert) = queue.recv().await {
        let mut attempt = 1;
        loop {
            match post(&url, format, &alert, &name).await {
                Ok(()) => {
                    if failing {
                        log::info!("alert webhook {url} works again");
                        failing = false;
                    }
                    counts.sent.inc();
                    break;
                }
                Err(e) => {
                    if !failing {
                        log::warn!("alert webhook {url}: {}; retrying with back-off", super::Chain(&e));
                        failing = true;
                    }
                    if attempt >= MAX_ATTEMPTS {
                        log::debug!("alert {} to {url} given up after {attempt} tries", alert.event.label());
                        counts.failed.inc();
                        break;
                    }
                    crate::rt::Timer::after(retry_wait(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
