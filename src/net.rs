//! Accepting connections without being knocked over: the accept loop that
//! backs off when the process runs out of descriptors, the descriptor budget
//! checked at start, and a throttle that keeps a flood to one log line; and
//! [`within`], the one timeout every exchange with a peer goes through.
//!
//! Invariant: an accept error never makes the loop spin or log per error.
//! Each run of errors (an episode) waits [`ACCEPT_BACKOFF_FIRST`], doubling
//! up to [`ACCEPT_BACKOFF_MAX`], logs one warning when it starts and one line
//! when accepting works again; every error is counted.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rt::Timer;

use crate::stats::Counter;

/// `work`, or the error `timed_out` makes once `after` has passed (then
/// `work` is dropped, and with it any socket it held).
pub async fn within<T, E>(
    after: Duration,
    work: impl Future<Output = Result<T, E>>,
    timed_out: impl FnOnce() -> E,
) -> Result<T, E> {
    use smol::future::FutureExt;
    work.or(async {
        Timer::after(after).await;
        Err(timed_out())
    })
    .await
}

/// The first pause after an accept error.
pub const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(25);
/// The longest pause between accept attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Descriptors the daemon needs besides its miners: stdio, the reactor,
/// the listeners, the books and control socket (about 16 measured), and up
/// to [`MAX_CLIENTS`](crate::web::MAX_CLIENTS) metrics clients.
pub const RESERVED_DESCRIPTORS: u64 = 32;
/// Descriptors per miner: its own socket and its pool connection.
pub const DESCRIPTORS_PER_MINER: u64 = 2;

/// The pause after `previous` (none: the first error of an episode).
fn backoff(previous: Option<Duration>) -> Duration {
    match previous {
        None => ACCEPT_BACKOFF_FIRST,
        Some(d) => (d * 2).min(ACCEPT_BACKOFF_MAX),
    }
}

/// The next connection on `listener`, for `what` ("miners"). Accept errors
/// (out of descriptors and the like) are counted in `errors` and retried
/// with back-off; see the module's invariant.
pub async fn next_connection(
    listener: &crate::rt::TcpListener,
    what: &str,
    errors: &Counter,
) -> (crate::rt::TcpStream, SocketAddr) {
    let mut pause = None;
    let mut episode: Option<(Instant, u64)> = None;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if let Some((since, failed)) = episode {
                    let secs = since.elapsed().as_secs_f64();
                    log::info!("accepting {what} again after {failed} failed attempts in {secs:.1}s");
                }
                return accepted;
            }
            Err(e) => {
                errors.inc();
                let (_, failed) = episode.get_or_insert_with(|| {
                    log::warn!(
                        "accepting {what} failed: {e}; retrying with back-off up to {}s, quietly until it works",
                        ACCEPT_BACKOFF_MAX.as_secs()
                    );
                    (Instant::now(), 0)
                });
                *failed += 1;
                let wait = backoff(pause);
                pause = Some(wait);
                Timer::after(wait).await;
            }
        }
    }
}

/// How many miners `nofile` descriptors allow.
pub fn miners_allowed(nofile: u64) -> u64 {
    nofile.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_MINER
}

/// The start-up line about the descriptor limit `nofile` (the soft
/// `RLIMIT_NOFILE`, `None` when unlimited): a warning when it cannot hold
/// `max_connections` miners, else information.
pub fn descriptor_budget(nofile: Option<u64>, max_connections: usize) -> (log::Level, String) {
    let Some(nofile) = nofile else {
        return (log::Level::Info, "descriptor limit: unlimited".into());
    };
    let allowed = miners_allowed(nofile);
    if allowed < max_connections as u64 {
        let message = format!(
            "descriptor limit {nofile} allows about {allowed} miners; server.max_connections is \
             {max_connections}: raise LimitNOFILE (or ulimit -n) to {} or more",
            max_connections as u64 * DESCRIPTORS_PER_MINER + RESERVED_DESCRIPTORS
        );
        (log::Level::Warn, message)
    } else {
        let message = format!(
            "descriptor limit {nofile} allows about {allowed} miners (server.max_connections is {max_connections})"
        );
        (log::Level::Info, message)
    }
}

/// Logs [`descriptor_budget`] for this process's soft descriptor limit.
pub fn log_descriptor_budget(max_connections: usize) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let (level, message) = descriptor_budget(limit.current, max_connections);
    log::log!(level, "{message}");
}

/// Lets one log line through per interval and counts the ones it holds
/// back, so a flood of refusals costs one line a minute, not one each.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Cell<Option<Instant>>,
    held: Cell<u64>,
}

impl Throttle {
    /// A throttle passing at most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        Throttle { every, last: Cell::new(None), held: Cell::new(0) }
    }

    /// `Some(held)` when a line may be logged at `now` (`held` lines were
    /// held back since the last one); `None` to stay quiet.
    pub fn pass(&self, now: Instant) -> Option<u64> {
        let due = self.last.get().is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            self.last.set(Some(now));
            Some(self.held.replace(0))
        } else {
            self.held.set(self.held.get() + 1);
            None
        }
    }
}

#[cfg(test)]
mod tests;
