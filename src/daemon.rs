//! The daemon: binds the listeners, runs every task on one `LocalExecutor`,
//! and stops cleanly on SIGTERM or SIGINT.
//!
//! Shutdown: stop accepting, let sessions finish the answers in flight (each
//! waits at most [`DRAIN_TIMEOUT`](crate::proxy::DRAIN_TIMEOUT)), and return
//! within [`SHUTDOWN_GRACE`] whatever is still open.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use smol::LocalExecutor;

use crate::rt::{Signals, Timer};

use crate::config::{Config, StoreMode};
use crate::history::Restored;
use crate::metrics::Process;
use crate::proxy::Proxy;
use crate::sd_notify::Notifier;
use crate::stats::Stats;
use crate::store::control;
use crate::store::db::{BlockRow, Books, PoolSetting, Setting, StoreError};
use crate::store::queue::{self, Recorder};
use crate::store::ram::Keeper;
use crate::store::writer::{self, Saving, WriterStats};
use crate::web::Endpoint;
use crate::worker::display_login;

/// Longest time from SIGTERM to exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);

/// Why the daemon could not run.
#[derive(Debug)]
pub enum RunError {
    /// A listener could not bind.
    Bind {
        /// What the listener is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The sockets systemd passed cannot be used.
    Listen(crate::listen::ListenError),
    /// Signal handlers could not be installed.
    Signals(io::Error),
    /// The Stratum listener failed.
    Accept(io::Error),
    /// The books are not ours, or another daemon holds them.
    Books(StoreError),
    /// The books' writer thread could not be started.
    Writer(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Bind { what, addr, .. } => write!(f, "cannot listen for {what} on {addr}"),
            RunError::Listen(e) => write!(f, "cannot use the sockets systemd passed: {e}"),
            RunError::Signals(_) => f.write_str("cannot install signal handlers"),
            RunError::Accept(_) => f.write_str("stratum listener failed"),
            RunError::Books(_) => f.write_str("cannot use the books"),
            RunError::Writer(_) => f.write_str("cannot start the books' writer thread"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Bind { source, .. }
            | RunError::Signals(source)
            | RunError::Accept(source)
            | RunError::Writer(source) => Some(source),
            RunError::Books(e) => Some(e),
            RunError::Listen(e) => Some(e),
        }
    }
}

/// Pings the systemd watchdog and refreshes the one-line STATUS, from the
/// executor itself: if the executor stalls, the pings stop and systemd
/// restarts the service.
async fn watchdog(notifier: Rc<Notifier>, stats: Rc<Stats>) {
    if !notifier.is_enabled() {
        return;
    }
    let every = notifier.watchdog_interval().unwrap_or(STATUS_EVERY).min(STATUS_EVERY);
    loop {
        if notifier.watchdog_interval().is_some() {
            let _ = notifier.watchdog();
        }
        let status = format!(
            "{} miners, {} upstream; shares {} accepted, {} rejected, {} stale",
            stats.connections_active.get(),
            stats.upstream_connected.get(),
            stats.shares_accepted.get(),
            stats.shares_rejected.get(),
            stats.shares_stale.get()
        );
        let _ = notifier.status(&status);
        Timer::after(every).await;
    }
}

/// The variable that, set to `1`, arms the SIGUSR2 stall (a test of
/// systemd's watchdog); unset in any real deployment.
pub const DEBUG_STALL: &str = "LOKA_DEBUG_STALL";

/// SIGUSR2 under `LOKA_DEBUG_STALL=1`, for testing systemd's watchdog only:
/// blocks the executor thread for good, as a deadlock would, so the watchdog
/// pings stop and systemd kills and restarts the daemon. Without the
/// variable (any real deployment) the daemon does not catch SIGUSR2.
fn stall() {
    log::warn!("SIGUSR2 with {DEBUG_STALL}=1: blocking the executor");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The socket systemd passed for `addr`, or one bound here.
async fn listen_on(
    passed: Option<std::net::TcpListener>,
    addr: SocketAddr,
) -> io::Result<crate::rt::TcpListener> {
    match passed {
        Some(l) => crate::rt::TcpListener::new(l),
        None => crate::rt::TcpListener::bind(addr),
    }
}

/// How often STATUS is refreshed when there is no faster watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// The books' settings from the config.
pub fn books_setting(config: &Config) -> Setting {
    // An event's pool index is its position here (0 is the primary).
    let pools = config
        .pools()
        .into_iter()
        .map(|p| PoolSetting { name: p.name.0, address: p.address.to_string(), username: p.username.0 })
        .collect();
    Setting {
        pools,
        settlement: config.pool.settlement.0,
        keep_raw_secs: config.limiter.submissions.0.as_secs(),
        max_new_workers_per_day: config.store.max_new_workers_per_day,
    }
}

/// What the daemon takes from the books before the writer thread owns them.
struct FromBooks {
    /// Where events for the books go.
    recorder: Recorder,
    /// The writer's counters.
    writer: Arc<WriterStats>,
    /// Each worker's best share ever, for the metrics.
    best: Vec<(String, f64)>,
    /// The last block found, so the page and `status` show it after a restart.
    last_block: Option<BlockRow>,
    /// Each worker's last day, and since when the books' recent shares reach
    /// back, so the page's charts survive a restart.
    history: (Vec<Restored>, Option<u64>),
}

/// Runs the proxy until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), RunError> {
    // systemd's sockets first, while no descriptor of our own is open yet
    // (the logger's and the config's came and went): a wrong $LISTEN_FDS can
    // then only name descriptors that are not ours.
    let passed = crate::listen::inherited().map_err(RunError::Listen)?;
    // The mappings the loader made, while no thread of ours runs yet: the
    // only ones trimmed once serving (see crate::trim).
    let startup = crate::trim::Startup::record().unwrap_or_else(|e| {
        log::debug!("cannot read this process's mappings: {e}");
        crate::trim::Startup::default()
    });
    // The books first: they lock the file, so a second daemon stops here, and
    // so does a file that is not ours. Storage that fails (read-only, full)
    // does not stop the proxy: the writer keeps trying to open it.
    let (path, setting) = (config.store.path.clone(), books_setting(&config));
    let writer_stats = Arc::new(WriterStats::default());
    let io = writer_stats.io.clone();
    let (mut open, saving): (writer::Opener, _) = match config.store.mode {
        StoreMode::File => (Box::new(move || Books::open_counted(&path, setting.clone(), io.clone())), None),
        StoreMode::Ram => {
            // The file is read into memory once, when it can be (as in file
            // mode, storage that fails is tried again; nothing is saved over
            // it before it was read).
            let slot = Arc::new(std::sync::Mutex::new(None::<Keeper>));
            let keeper = slot.clone();
            let open = move || {
                let mut keeper = keeper.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let ram = match keeper.as_ref() {
                    Some(k) => k.ram().clone(),
                    None => keeper.insert(Keeper::load(&path, io.clone())?).ram().clone(),
                };
                let books = Books::with_backend(ram, setting.clone(), &path)?;
                if let (true, Some(keeper)) = (books.changed_at_open(), keeper.as_mut()) {
                    // Saved like a commit: a migration is written to the file
                    // even if no share comes before the next stop.
                    keeper.committed();
                }
                Ok(books)
            };
            let saving = Saving::new(slot, config.store.flush_interval.0, config.store.commit_interval.0);
            (Box::new(open), Some(saving))
        }
    };
    let first = match open() {
        Err(e) if !e.is_storage() => return Err(RunError::Books(e)),
        first => first,
    };
    // Each worker's best share ever, for the metrics (read once, before the
    // writer thread takes the books).
    let best = first.as_ref().ok().and_then(|b| b.best_shares().ok()).unwrap_or_default();
    let best = best.into_iter().map(|(login, difficulty, _)| (login, difficulty)).collect();
    let last_block = first.as_ref().ok().and_then(|b| b.last_block().ok()).flatten();
    let read = Instant::now();
    let since = crate::clock::unix_secs().saturating_sub(crate::history::SPAN_SECS);
    let history = first.as_ref().ok().and_then(|b| b.recent_history(since).ok()).unwrap_or_default();
    log::debug!("read the last day of {} workers from the books in {:?}", history.0.len(), read.elapsed());
    let (recorder, inbox) = queue::new();
    let interval = config.store.commit_interval.0;
    let writer = writer::spawn(first, open, inbox, interval, writer_stats.clone(), saving)
        .map_err(RunError::Writer)?;
    match config.store.mode {
        StoreMode::File => log::info!("books at {}", config.store.path.display()),
        StoreMode::Ram => log::info!(
            "books in memory, written to {} every {:?} and at shutdown (store.mode = \"ram\")",
            config.store.path.display(),
            config.store.flush_interval.0
        ),
    }
    let ex = Rc::new(LocalExecutor::new());
    let books = FromBooks { recorder: recorder.clone(), writer: writer_stats, best, last_block, history };
    let result = crate::rt::block_on(ex.run(serve(config, ex.clone(), books, passed, startup)));
    // Tasks still parked on the executor may hold recorders; stop the writer
    // explicitly, after it has committed everything queued.
    recorder.stop();
    // RAM mode's last save failing loses books: the exit status says so.
    let saved = writer.join().unwrap_or(false);
    match result {
        Ok(()) if !saved => Err(RunError::Books(StoreError::Refused(
            "the books could not be written at shutdown (see the log above)".into(),
        ))),
        result => result,
    }
}

async fn serve(
    config: Config,
    ex: Rc<LocalExecutor<'static>>,
    books: FromBooks,
    passed: Vec<std::net::TcpListener>,
    startup: crate::trim::Startup,
) -> Result<(), RunError> {
    // SIGUSR2 only when armed: unarmed, it keeps its default action.
    let stall_armed = std::env::var_os(DEBUG_STALL).is_some_and(|v| v == "1");
    let wanted = [Signal::TERM, Signal::INT, Signal::USR2].map(Signal::as_raw);
    let mut signals = Signals::new(&wanted[..if stall_armed { 3 } else { 2 }]).map_err(RunError::Signals)?;
    if stall_armed {
        log::warn!("{DEBUG_STALL}=1: SIGUSR2 will block the executor (a test of the watchdog)");
    }
    let (addr, maddr) = (config.server.bind_address.0, config.metrics.bind_address.0);
    let sockets = crate::listen::assign(passed, addr, maddr);
    if !sockets.unused.is_empty() {
        return Err(RunError::Listen(crate::listen::ListenError::Unused(sockets.unused)));
    }
    let note = |l: &Option<std::net::TcpListener>| if l.is_some() { " (socket from systemd)" } else { "" };
    let (stratum_note, metrics_note) = (note(&sockets.stratum), note(&sockets.metrics));
    sockets.warnings.iter().for_each(|w| log::warn!("{w}"));
    let bind = |source| RunError::Bind { what: "miners", addr, source };
    let listener = listen_on(sockets.stratum, addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    log::info!("listening on {local}{stratum_note}, pool {}", config.pool.address);
    crate::net::log_descriptor_budget(config.server.max_connections);

    let stats = Rc::new(Stats::default());
    stats.workers.set_settlement(config.pool.settlement.0);
    stats.workers.seed_best(books.best);
    stats.workers.set_down_after(config.alerts.worker_down_after.0);
    let (history, oldest) = books.history;
    let unix = crate::clock::unix_secs();
    stats.workers.restore(history, oldest.unwrap_or(unix), Instant::now(), unix);
    if let Some(b) = books.last_block
        && let Ok(hash) = heapless::String::try_from(b.hash.as_str())
    {
        *stats.last_block.borrow_mut() = Some((display_login(&b.login), hash, b.at_ms as f64 / 1000.0));
    }
    let socket = control::socket_path(&config.store.path);
    // Without the socket (a read-only state directory) the proxy still runs;
    // only the CLI cannot reach the books while it does.
    match control::bind(&socket) {
        Ok(listener) => ex.spawn(control::serve(listener, books.recorder.clone(), ex.clone())).detach(),
        Err(e) => log::error!(
            "cannot listen on control socket {}: {e}; the CLI cannot reach the books",
            socket.display()
        ),
    }
    *stats.recorder.borrow_mut() = Some(books.recorder);
    let _ = stats.store.set(books.writer);
    let mbind = |source| RunError::Bind { what: "metrics", addr: maddr, source };
    let metrics_listener = listen_on(sockets.metrics, maddr).await.map_err(mbind)?;
    log::info!("metrics on http://{}/metrics{metrics_note}", metrics_listener.local_addr().map_err(mbind)?);
    let start_time = crate::clock::unix_f64();
    let process = Process { start_time };
    let (stop, stopping) = smol::channel::bounded::<()>(1);
    let (alerts_config, alert_sinks) = (config.alerts.clone(), config.alert.clone());
    let proxy = Rc::new(Proxy::new(config, stats.clone(), stopping));
    let outbox =
        crate::alerts::watch::start(&alerts_config, &alert_sinks, stats.clone(), proxy.pools().clone(), &ex);
    let name = alerts_config.name.0.clone();
    let endpoint = Rc::new(Endpoint::new(stats.clone(), process, proxy.pools().clone(), outbox, name));
    ex.spawn(endpoint.serve(metrics_listener, ex.clone())).detach();
    // Tell systemd (when it started us) that we serve, and keep telling it.
    let notifier = Rc::new(Notifier::from_env());
    if let Err(e) = notifier.ready() {
        log::warn!("cannot notify systemd: {e}");
    }
    ex.spawn(watchdog(notifier.clone(), stats.clone())).detach();

    // The executor polls its main future whenever any task wakes, so the main
    // future only waits on a channel; accepting and signals run as tasks.
    let (done, finished) = smol::channel::bounded::<Result<(), RunError>>(2);
    let accept = proxy.clone().accept(listener, ex.clone());
    let failed = done.clone();
    let accept_task = ex.spawn(async move {
        let result = accept.await.map_err(RunError::Accept);
        let _ = failed.send(result).await;
    });
    let stopping_note = notifier.clone();
    // Kept until the end: a second SIGTERM or SIGINT during the grace time
    // stops waiting for sessions (the books are still committed).
    let hurry = Rc::new(std::cell::Cell::new(false));
    let hurried = hurry.clone();
    let signal_task = ex.spawn(async move {
        let name = loop {
            match signals.next().await {
                Ok(s) if s == Signal::USR2.as_raw() => stall(),
                Ok(s) if s == Signal::INT.as_raw() => break "SIGINT",
                _ => break "SIGTERM",
            }
        };
        log::info!("received {name}: no new connections, finishing answers in flight");
        let _ = stopping_note.stopping();
        let _ = done.send(Ok(())).await;
        loop {
            match signals.next().await {
                Ok(s) if s == Signal::USR2.as_raw() => continue,
                Ok(_) => break,
                // No more signals can come: nothing to hurry.
                Err(_) => return,
            }
        }
        log::info!("received a second stop signal: not waiting for open sessions");
        hurried.set(true);
    });
    // The executor's queue is first in, first out: when this task runs,
    // every task above has run to its first wait, and what only starting
    // ran (config, store open, migrations) is given back (see crate::trim).
    ex.spawn(async move {
        smol::future::yield_now().await;
        match startup.trim() {
            Ok(kib) => log::debug!("unmapped {kib} KiB of program and library pages that starting used"),
            Err(e) => log::debug!("cannot unmap the pages starting used: {e}"),
        }
    })
    .detach();
    let outcome = finished.recv().await.unwrap_or(Ok(()));
    drop(accept_task);
    outcome?;
    drop(proxy);
    stop.close();

    let deadline = Instant::now() + SHUTDOWN_GRACE;
    // Sessions end on their own once their answers are in; poll coarsely.
    while stats.connections_active.get() > 0 && Instant::now() < deadline && !hurry.get() {
        Timer::after(Duration::from_millis(20)).await;
    }
    drop(signal_task);
    log::info!("stopped with {} sessions still open", stats.connections_active.get());
    stats.recorder.borrow_mut().take();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
