//! The alerting task: looks at the workers, the pools and the blocks every
//! [`LOOK_EVERY`] (and at once when a pool changes state), turns what
//! changed into alerts through [`Rules`], logs each one, and hands it to
//! the sinks' queues without waiting.

use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use smol::future::FutureExt;

use crate::rt::Timer;

use super::home::{self, Feed};
use super::outbox::{self, Outbox};
use super::rules::{Alert, Rules};
use crate::config::{Alerts, Event, Sink};
use crate::pools::Pools;
use crate::stats::Stats;

/// Time between two looks at the workers.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Starts the rules and one task per `[[alert]]` sink on `ex`; returns the
/// outbox, whose counts the metrics show.
pub fn start(
    config: &Alerts,
    sinks: &[Sink],
    stats: Rc<Stats>,
    pools: Rc<Pools>,
    ex: &Rc<LocalExecutor<'static>>,
) -> Rc<Outbox> {
    let mut outbox = Outbox::default();
    let name = config.name.0.clone();
    let mut nudges = Vec::new();
    for sink in sinks {
        let (queue, counts) = outbox.add(sink.clone());
        if let Some(url) = sink.webhook.clone() {
            let format = sink.format.unwrap_or_default();
            ex.spawn(outbox::serve_webhook(url, format, name.clone(), queue, counts)).detach();
        } else if let Some(broker) = sink.mqtt.clone() {
            let (nudge, nudged) = smol::channel::bounded(1);
            nudges.push(nudge);
            let stats = stats.clone();
            let workers = Box::new(move || stats.workers.view(Instant::now(), crate::clock::unix_secs()));
            let feed = Feed { name: name.clone(), workers, nudge: nudged };
            ex.spawn(home::serve_mqtt(broker, feed, queue, counts)).detach();
        }
    }
    let outbox = Rc::new(outbox);
    let drop_below = config.hashrate_drop_below;
    ex.spawn(look(stats, pools, outbox.clone(), drop_below, nudges)).detach();
    outbox
}

/// Logs `alert`: trouble as a warning, good news as information.
fn log_alert(alert: &Alert) {
    match alert.event {
        Event::WorkerDown | Event::PoolDown | Event::HashrateDrop => log::warn!("alert: {}", alert.message),
        Event::WorkerBack | Event::Failover | Event::BlockFound => log::info!("alert: {}", alert.message),
    }
}

async fn look(
    stats: Rc<Stats>,
    pools: Rc<Pools>,
    outbox: Rc<Outbox>,
    drop_below: f64,
    nudges: Vec<smol::channel::Sender<()>>,
) {
    let started = Instant::now();
    let mut rules = Rules::new(&pools, stats.blocks_found.get());
    let mut alerts = Vec::new();
    let mut known = 0;
    loop {
        let changed = pools.changed();
        let at = crate::clock::unix_secs();
        let views = stats.workers.view(Instant::now(), at);
        let covered = Duration::from_secs(at.saturating_sub(stats.workers.covered_since()));
        rules.workers(&views, (covered, started.elapsed()), drop_below, at, &mut alerts);
        // A new worker needs its discovery message, a changed one its state.
        let workers_changed = !alerts.is_empty() || views.len() != known;
        known = views.len();
        rules.pools(&pools, at, &mut alerts);
        {
            let last = stats.last_block.borrow();
            let last = last.as_ref().map(|(login, hash, _)| (login.as_str(), hash.as_str()));
            rules.blocks(stats.blocks_found.get(), last, at, &mut alerts);
        }
        for alert in alerts.drain(..) {
            log_alert(&alert);
            outbox.raise(alert);
        }
        if workers_changed {
            for nudge in &nudges {
                let _ = nudge.try_send(());
            }
        }
        // A pool's change is alerted at once; the workers' at the next look.
        async {
            let _ = changed.recv().await;
        }
        .or(async {
            Timer::after(LOOK_EVERY).await;
        })
        .await;
    }
}
