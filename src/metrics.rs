//! The metrics page: every counter in Prometheus text exposition format 0.0.4.
//!
//! Rendering writes into one reused `String` with `fmt::Write`: no allocation
//! per sample (per scrape: one sorted snapshot of the workers and one read of
//! `/proc/self/status`). Label values are escaped per the format, and the
//! number of `worker` series is bounded by
//! [`MAX_WORKER_SERIES`](crate::stats::MAX_WORKER_SERIES).

use std::fmt::Write;
use std::time::Instant;

use crate::alerts::outbox::Outbox;
use crate::check::Verdict;
use crate::history::State;
use crate::pools::{Entry, Health, Pools};
use crate::stats::{Counter, Reason, SUBMIT_BUCKETS, Stats, Traffic, WorkerStats};
use crate::worker::Login;

/// Facts about the process that the page reports beside the counters.
#[derive(Debug, Clone)]
pub struct Process {
    /// Unix time the process started, in seconds.
    pub start_time: f64,
}

/// A label value with `\`, `"` and newlines escaped.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A sample value: floats as Prometheus spells them.
struct Value(f64);

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {}", Value(value));
}

fn by_peer(out: &mut String, name: &str, help: &str, stats: &Stats, pick: fn(&Traffic) -> &Counter) {
    family(out, name, "counter", help);
    for (peer, traffic) in [("miner", &stats.miner), ("pool", &stats.pool)] {
        let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", pick(traffic).get());
    }
}

/// Resident memory of this process in bytes, from `/proc/self/status`.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Renders every family into `out`.
pub fn render(out: &mut String, stats: &Stats, pools: &Pools, process: &Process, now: Instant) {
    single(
        out,
        "stratum_connections_active",
        "gauge",
        "Miner connections open now.",
        stats.connections_active.get() as f64,
    );
    for (name, help, c) in [
        ("stratum_connections_total", "Miner connections accepted.", &stats.connections_total),
        ("stratum_connection_errors_total", "Miner sessions ended by an error.", &stats.connection_errors),
        (
            "stratum_connection_timeouts_total",
            "Miner sessions ended by a timeout.",
            &stats.connection_timeouts,
        ),
        (
            "stratum_connections_refused_total",
            "Miner connections refused by a limit or server.allow.",
            &stats.connections_refused,
        ),
        (
            "stratum_connections_not_allowed_total",
            "Miner connections refused because server.allow leaves their address out.",
            &stats.connections_not_allowed,
        ),
        ("stratum_protocol_parse_errors_total", "Invalid lines or params from miners.", &stats.parse_errors),
        ("stratum_authentication_attempts_total", "mining.authorize requests.", &stats.auth_attempts),
        ("stratum_authentication_failures_total", "mining.authorize requests refused.", &stats.auth_failures),
        ("stratum_jobs_received_total", "mining.notify jobs received from pools.", &stats.jobs_received),
        (
            "stratum_shares_submitted_total",
            "mining.submit requests forwarded, or answered by the proxy with a share error.",
            &stats.shares_submitted,
        ),
        ("stratum_shares_accepted_total", "Shares the pool accepted.", &stats.shares_accepted),
        (
            "stratum_shares_rejected_total",
            "Shares the pool rejected, stale excluded.",
            &stats.shares_rejected,
        ),
        ("stratum_stale_shares_total", "Shares for an unknown or expired job.", &stats.shares_stale),
        ("stratum_duplicate_shares_total", "Shares rejected as duplicates.", &stats.shares_duplicate),
        ("stratum_shares_unanswered_total", "Shares whose answer never came.", &stats.shares_unanswered),
        (
            "stratum_requests_refused_total",
            "Miner requests the proxy answered itself.",
            &stats.requests_refused,
        ),
        (
            "stratum_pool_answers_unmatched_total",
            "Pool answers to ids the proxy never sent.",
            &stats.answers_unmatched,
        ),
        (
            "stratum_pool_bad_difficulty_total",
            "Pool difficulties that are not finite and positive.",
            &stats.pool_bad_difficulty,
        ),
        (
            "stratum_write_stalls_total",
            "Sessions closed because a peer stopped reading.",
            &stats.write_stalls,
        ),
        (
            "stratum_shares_disputed_total",
            "Shares the pool accepted that the proxy's own check found invalid; not booked.",
            &stats.shares_disputed,
        ),
        (
            "stratum_blocks_found_total",
            "Shares whose hash met the network target of their job.",
            &stats.blocks_found,
        ),
        (
            "stratum_pool_bad_jobs_total",
            "mining.notify jobs whose fields could not be parsed for the share check.",
            &stats.pool_bad_jobs,
        ),
    ] {
        single(out, name, "counter", help, c.get() as f64);
    }
    family(
        out,
        "stratum_accept_errors_total",
        "counter",
        "Failed accepts (out of descriptors and the like).",
    );
    for (listener, c) in [("miners", &stats.miner_accept_errors), ("metrics", &stats.metrics_accept_errors)] {
        let _ = writeln!(out, "stratum_accept_errors_total{{listener=\"{listener}\"}} {}", c.get());
    }
    family(
        out,
        "stratum_shares_checked_total",
        "counter",
        "Shares the proxy checked itself (sha256d of the rebuilt header), by verdict.",
    );
    for (verdict, c) in Verdict::ALL.iter().zip(&stats.shares_checked) {
        let _ = writeln!(out, "stratum_shares_checked_total{{result=\"{}\"}} {}", verdict.label(), c.get());
    }
    if let Some((worker, hash, at)) = stats.last_block.borrow().as_ref() {
        family(out, "stratum_last_block_timestamp_seconds", "gauge", "Unix time of the last block found.");
        let _ = writeln!(
            out,
            "stratum_last_block_timestamp_seconds{{worker=\"{}\",hash=\"{hash}\"}} {}",
            Escaped(worker),
            Value(*at)
        );
    }
    by_peer(out, "stratum_messages_received_total", "Lines received.", stats, |t| &t.messages_received);
    by_peer(out, "stratum_messages_sent_total", "Lines sent.", stats, |t| &t.messages_sent);
    by_peer(out, "stratum_bytes_received_total", "Bytes received.", stats, |t| &t.bytes_received);
    by_peer(out, "stratum_bytes_sent_total", "Bytes sent.", stats, |t| &t.bytes_sent);

    render_workers(out, stats, now);

    let h = &stats.submit_duration;
    family(
        out,
        "stratum_submit_duration_seconds",
        "histogram",
        "Time from forwarding a share to the pool's answer.",
    );
    let mut cumulative = 0;
    for (bound, count) in SUBMIT_BUCKETS.iter().zip(&h.buckets) {
        cumulative += count.get();
        let _ =
            writeln!(out, "stratum_submit_duration_seconds_bucket{{le=\"{}\"}} {cumulative}", Value(*bound));
    }
    let _ = writeln!(out, "stratum_submit_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count.get());
    let _ = writeln!(out, "stratum_submit_duration_seconds_sum {}", Value(h.sum.get()));
    let _ = writeln!(out, "stratum_submit_duration_seconds_count {}", h.count.get());

    render_pools(out, pools, now);
    family(
        out,
        "stratum_http_connect_requests_total",
        "counter",
        "HTTP CONNECT requests on the Stratum port.",
    );
    let _ = writeln!(
        out,
        "stratum_http_connect_requests_total{{result=\"allowed\"}} {}",
        stats.http_connect_allowed.get()
    );
    let _ = writeln!(
        out,
        "stratum_http_connect_requests_total{{result=\"refused\"}} {}",
        stats.http_connect_refused.get()
    );
    family(
        out,
        "stratum_tls_probes_total",
        "counter",
        "Miner connections that opened with a TLS ClientHello; this port speaks plain Stratum.",
    );
    let _ = writeln!(out, "stratum_tls_probes_total {}", stats.tls_probes.get());

    if let Some(w) = stats.store.get() {
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, value) in [
            ("stratum_store_commits_total", "Batched commits of the books.", &w.commits),
            ("stratum_store_events_committed_total", "Events written to the books.", &w.events),
            (
                "stratum_store_events_failed_total",
                "Events lost to failed commits or to books that could not be opened.",
                &w.failed_events,
            ),
            (
                "stratum_store_write_errors_total",
                "Commits or opens of the books that failed.",
                &w.write_errors,
            ),
            (
                "stratum_store_events_clock_unset_total",
                "Events not booked: stamped before 2024-01-01, the clock was not set.",
                &w.clock_unset,
            ),
            (
                "stratum_store_shares_bad_difficulty_total",
                "Accepted shares not booked: difficulty not finite and positive.",
                &w.bad_difficulty,
            ),
            (
                "stratum_store_shares_over_cap_total",
                "Accepted shares of new logins past store.max_new_workers_per_day, booked under _other.",
                &w.over_cap,
            ),
            (
                "stratum_store_bytes_written_total",
                "Bytes the books wrote to their storage (what an SD card wears by).",
                &w.io.bytes,
            ),
            ("stratum_store_syncs_total", "fdatasync calls on the books' storage.", &w.io.syncs),
            (
                "stratum_store_writer_wakeups_total",
                "Times the books' writer thread woke: commits due, commands, a queue half full; not per event.",
                &w.wakeups,
            ),
        ] {
            single(out, name, "counter", help, value.load(Relaxed) as f64);
        }
        single(
            out,
            "stratum_store_writable",
            "gauge",
            "1 while the books can be written, 0 while commits or opens fail.",
            f64::from(u8::from(w.writable())),
        );
    }
    let dropped = stats.store_dropped.get() as f64;
    single(
        out,
        "stratum_store_events_dropped_total",
        "counter",
        "Events the books could not take in time.",
        dropped,
    );

    if let Some(rss) = resident_memory_bytes() {
        single(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss as f64);
    }
    single(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        process.start_time,
    );
    family(out, "stratum_build_info", "gauge", "Build information; the value is always 1.");
    let _ = writeln!(out, "stratum_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
}

/// One sample per worker: `name{worker="…"} value`.
fn per_worker(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    rows: &[(Login, WorkerStats, f64)],
    value: impl Fn(&WorkerStats, f64) -> Option<f64>,
) {
    family(out, name, kind, help);
    for (login, w, rate) in rows {
        if let Some(v) = value(w, *rate) {
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", Escaped(login), Value(v));
        }
    }
}

/// The per-worker families of the proxy's own share check.
fn render_worker_checks(out: &mut String, stats: &Stats, rows: &[(Login, WorkerStats, f64)], now: Instant) {
    family(
        out,
        "stratum_worker_shares_checked_total",
        "counter",
        "Shares the proxy checked, per login and verdict.",
    );
    for (login, w, _) in rows {
        for verdict in Verdict::ALL {
            let _ = writeln!(
                out,
                "stratum_worker_shares_checked_total{{worker=\"{}\",result=\"{}\"}} {}",
                Escaped(login),
                verdict.label(),
                w.checked[verdict.index()]
            );
        }
    }
    let counter = |n: u64| Some(n as f64);
    per_worker(
        out,
        (
            "stratum_worker_shares_disputed_total",
            "counter",
            "Shares the pool accepted and the check refused.",
        ),
        rows,
        |w, _| counter(w.disputed),
    );
    per_worker(
        out,
        (
            "stratum_worker_hashrate_checked_hashes_per_second",
            "gauge",
            "True hashrate: difficulty of locally valid shares over the last 10 minutes.",
        ),
        rows,
        |w, _| Some(stats.workers.checked_hashrate(w, now)),
    );
    per_worker(
        out,
        (
            "stratum_worker_hardware_error_ratio",
            "gauge",
            "Shares the check found wrong (low difficulty, duplicate, bad version, malformed) over all checked.",
        ),
        rows,
        |w, _| Some(w.hardware_error_ratio()),
    );
    per_worker(
        out,
        ("stratum_worker_best_share_difficulty", "gauge", "Highest difficulty a share achieved, ever."),
        rows,
        |w, _| Some(w.best_ever),
    );
    let today = stats.workers.today();
    per_worker(
        out,
        (
            "stratum_worker_best_share_today_difficulty",
            "gauge",
            "Highest difficulty a share achieved on the books' day.",
        ),
        rows,
        |w, _| Some(if w.best_day.0 == today { w.best_day.1 } else { 0.0 }),
    );
    per_worker(
        out,
        ("stratum_worker_blocks_found_total", "counter", "Blocks found, per login."),
        rows,
        |w, _| counter(w.blocks),
    );
}

/// `stratum_alerts_total`: what became of each sink's alerts.
pub fn render_alerts(out: &mut String, outbox: &Outbox) {
    family(
        out,
        "stratum_alerts_total",
        "counter",
        "Alerts per sink: sent, failed after retries, or dropped (queue full).",
    );
    for (sink, counts) in outbox.counts() {
        for (result, c) in [("sent", &counts.sent), ("failed", &counts.failed), ("dropped", &counts.dropped)]
        {
            let _ = writeln!(out, "stratum_alerts_total{{sink=\"{sink}\",result=\"{result}\"}} {}", c.get());
        }
    }
}

/// `stratum_worker_state`: 1 for each worker's state, 0 for the others.
fn render_worker_states(out: &mut String, stats: &Stats, now: Instant) {
    family(
        out,
        "stratum_worker_state",
        "gauge",
        "Each worker's state (1) from the time since its last share: hashing, late or down.",
    );
    for v in stats.workers.view(now, crate::clock::unix_secs()) {
        for state in [State::Hashing, State::Late, State::Down] {
            let _ = writeln!(
                out,
                "stratum_worker_state{{worker=\"{}\",state=\"{}\"}} {}",
                Escaped(&v.login),
                state.label(),
                u8::from(v.state == state)
            );
        }
    }
}

fn render_workers(out: &mut String, stats: &Stats, now: Instant) {
    render_worker_states(out, stats, now);
    let rows = stats.workers.snapshot(now);
    single(
        out,
        "stratum_worker_series_evicted_total",
        "counter",
        "Worker series idle for a day given up to a new worker; their counts moved to worker=\"_other\".",
        stats.workers.evicted.get() as f64,
    );
    per_worker(
        out,
        ("stratum_worker_shares_accepted_total", "counter", "Shares accepted, per authorized login."),
        &rows,
        |w, _| Some(w.accepted as f64),
    );
    family(out, "stratum_worker_shares_rejected_total", "counter", "Shares rejected, per login and reason.");
    for (login, w, _) in &rows {
        for (reason, n) in Reason::ALL.iter().zip(w.rejected) {
            let _ = writeln!(
                out,
                "stratum_worker_shares_rejected_total{{worker=\"{}\",reason=\"{}\"}} {n}",
                Escaped(login),
                reason.label()
            );
        }
    }
    per_worker(
        out,
        ("stratum_worker_shares_stale_total", "counter", "Stale shares, per login."),
        &rows,
        |w, _| Some(w.stale as f64),
    );
    per_worker(
        out,
        ("stratum_worker_difficulty_accepted_total", "counter", "Sum of the difficulty of accepted shares."),
        &rows,
        |w, _| Some(w.difficulty_accepted),
    );
    per_worker(
        out,
        (
            "stratum_worker_hashrate_hashes_per_second",
            "gauge",
            "Hashrate from accepted difficulty over the last 10 minutes.",
        ),
        &rows,
        |_, rate| Some(rate),
    );
    per_worker(
        out,
        ("stratum_worker_last_share_timestamp_seconds", "gauge", "Unix time of the last share answered."),
        &rows,
        |w, _| w.last_share,
    );
    render_worker_checks(out, stats, &rows, now);
}

/// Each pool's state, connections and moves.
fn render_pools(out: &mut String, pools: &Pools, now: Instant) {
    let each = |out: &mut String, name: &str, value: &dyn Fn(usize, &Entry) -> f64| {
        for (i, e) in pools.entries().iter().enumerate() {
            let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", Escaped(&e.target.name), Value(value(i, e)));
        }
    };
    family(out, "stratum_upstream_connected", "gauge", "Live upstream connections, per pool.");
    each(out, "stratum_upstream_connected", &|_, e| e.connected.get() as f64);
    family(out, "stratum_pool_active", "gauge", "1 for the pool new sessions go to.");
    each(out, "stratum_pool_active", &|i, _| f64::from(u8::from(pools.active() == Some(i))));
    family(
        out,
        "stratum_pool_state",
        "gauge",
        "1 for each pool's state: up, failing, down, recovering, unknown.",
    );
    for e in pools.entries() {
        for state in [Health::Up, Health::Failing, Health::Down, Health::Recovering, Health::Unknown] {
            let _ = writeln!(
                out,
                "stratum_pool_state{{pool=\"{}\",state=\"{}\"}} {}",
                Escaped(&e.target.name),
                state.label(),
                u8::from(e.health() == state)
            );
        }
    }
    family(
        out,
        "stratum_upstream_reconnects_total",
        "counter",
        "Upstream connections opened after a pool connection was lost, per pool connected to.",
    );
    each(out, "stratum_upstream_reconnects_total", &|_, e| e.reconnects.get() as f64);
    family(
        out,
        "stratum_upstream_connect_failures_total",
        "counter",
        "Failed connection attempts, per pool.",
    );
    each(out, "stratum_upstream_connect_failures_total", &|_, e| e.connect_failures.get() as f64);
    family(
        out,
        "stratum_pool_failovers_total",
        "counter",
        "Times the pool went down while in use and new sessions moved to another.",
    );
    each(out, "stratum_pool_failovers_total", &|_, e| e.failovers.get() as f64);
    family(
        out,
        "stratum_pool_active_seconds_total",
        "counter",
        "Seconds each pool was the one new sessions go to.",
    );
    each(out, "stratum_pool_active_seconds_total", &|i, _| pools.active_seconds(i, now));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{OVERFLOW_WORKER, ShareOutcome};
    use std::time::Duration;

    fn test_pools() -> Pools {
        Pools::single(crate::worker::Rewriter::new("", [".", "_"]), None)
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(Escaped("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn renders_worker_series() {
        let stats = Stats::default();
        let now = Instant::now();
        stats.workers.record("al\"ice", ShareOutcome::Accepted(2.0), now, 1.0);
        stats.workers.record("al\"ice", ShareOutcome::Rejected(23), now, 2.0);
        let mut out = String::new();
        render(&mut out, &stats, &test_pools(), &Process { start_time: 1.0 }, now);
        assert!(out.contains("stratum_worker_shares_accepted_total{worker=\"al\\\"ice\"} 1\n"), "{out}");
        assert!(out.contains("reason=\"low-difficulty\"} 1\n"));
        assert!(out.contains("stratum_worker_last_share_timestamp_seconds{worker=\"al\\\"ice\"} 2\n"));
        assert!(out.contains("stratum_submit_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            // `name{labels} value`: a metric name, labels if any, a number.
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap_or_default();
            let name_ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            assert!(name_ok, "{line}");
            assert_eq!(series.contains('{'), series.ends_with('}'), "{line}");
        }
        // Twenty minutes later the worker is idle: its rates are 0, not -0.
        out.clear();
        render(
            &mut out,
            &stats,
            &test_pools(),
            &Process { start_time: 1.0 },
            now + Duration::from_secs(1200),
        );
        assert!(out.contains("stratum_worker_hashrate_hashes_per_second{worker=\"al\\\"ice\"} 0\n"), "{out}");
        assert!(!out.contains(" -0\n"), "negative zero: {out}");
    }

    /// The best share ever comes from the books at start, and shows once the
    /// worker has its series; a better share raises it, a worse one does not.
    #[test]
    fn best_shares_are_seeded_from_the_books() {
        let stats = Stats::default();
        let now = Instant::now();
        stats.workers.seed_best(vec![("rig".into(), 5e6), ("gone".into(), 1.0)]);
        stats.workers.record("rig", ShareOutcome::Accepted(1.0), now, 1.0);
        let check = |achieved| crate::stats::Checked {
            verdict: crate::check::Verdict::Valid,
            difficulty: 1.0,
            achieved: Some(achieved),
            block: false,
            day: stats.workers.today(),
        };
        stats.workers.checked("rig", &check(2e6), now);
        let mut out = String::new();
        render(&mut out, &stats, &test_pools(), &Process { start_time: 0.0 }, now);
        assert!(out.contains("stratum_worker_best_share_difficulty{worker=\"rig\"} 5000000\n"), "{out}");
        assert!(
            out.contains("stratum_worker_best_share_today_difficulty{worker=\"rig\"} 2000000\n"),
            "{out}"
        );
        stats.workers.checked("rig", &check(7e6), now);
        assert_eq!(stats.workers.snapshot(now)[0].1.best_ever, 7e6);
    }

    #[test]
    fn worker_series_are_bounded() {
        let stats = Stats::default();
        let now = Instant::now();
        for i in 0..crate::stats::MAX_WORKER_SERIES + 50 {
            stats.workers.record(&format!("w{i}"), ShareOutcome::Accepted(1.0), now, 0.0);
        }
        let rows = stats.workers.snapshot(now);
        assert_eq!(rows.len(), crate::stats::MAX_WORKER_SERIES + 1);
        let other = rows.iter().find(|r| r.0.as_str() == crate::stats::OVERFLOW_WORKER).unwrap();
        assert_eq!(other.1.accepted, 50);
    }

    /// 300 logins that only ever get shares rejected or stale take no
    /// series; the rigs that mine after them get theirs.
    #[test]
    fn series_go_to_workers_with_accepted_shares() {
        let stats = Stats::default();
        let now = Instant::now();
        for i in 0..300 {
            let login = format!("flood{i}");
            stats.workers.record(&login, ShareOutcome::Rejected(23), now, 1.0);
            stats.workers.record(&login, ShareOutcome::Stale, now, 1.0);
        }
        stats.workers.record(OVERFLOW_WORKER, ShareOutcome::Accepted(9.0), now, 1.0);
        for rig in ["ann.r1", "bob"] {
            stats.workers.record(rig, ShareOutcome::Stale, now, 2.0);
            stats.workers.record(rig, ShareOutcome::Accepted(4.0), now, 2.0);
            stats.workers.record(rig, ShareOutcome::Accepted(4.0), now, 2.0);
        }
        let rows = stats.workers.snapshot(now);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["_other", "ann.r1", "bob"]);
        assert_eq!((rows[0].1.stale, rows[0].1.rejected[1], rows[0].1.accepted), (302, 300, 1));
        assert_eq!((rows[1].1.accepted, rows[1].1.difficulty_accepted), (2, 8.0));
    }

    /// With every series taken, a worker idle for a day gives its series up
    /// to a newcomer; its counts move to `_other`, so no sum goes down.
    #[test]
    fn idle_series_move_into_other() {
        let stats = Stats::default();
        let t0 = Instant::now();
        let max = crate::stats::MAX_WORKER_SERIES;
        for i in 0..max {
            stats.workers.record(&format!("w{i}"), ShareOutcome::Accepted(1.0), t0, 1.0);
        }
        stats.workers.record("w0", ShareOutcome::Rejected(22), t0, 1.0);
        let sum = |rows: &[(crate::worker::Login, crate::stats::WorkerStats, f64)]| {
            rows.iter().map(|r| (r.1.accepted, r.1.rejected[0])).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        // Everyone active: the newcomer counts under _other.
        let t1 = t0 + crate::stats::SERIES_IDLE / 2;
        for i in 1..max {
            stats.workers.record(&format!("w{i}"), ShareOutcome::Accepted(1.0), t1, 2.0);
        }
        stats.workers.record("new1", ShareOutcome::Accepted(1.0), t1, 2.0);
        let before = stats.workers.snapshot(t1);
        assert!(before.iter().all(|r| r.0.as_str() != "new1"));
        assert_eq!(stats.workers.evicted.get(), 0);
        // A day after w0's last accepted share, a newcomer takes its series.
        let t2 = t0 + crate::stats::SERIES_IDLE;
        stats.workers.record("new2", ShareOutcome::Accepted(1.0), t2, 3.0);
        let after = stats.workers.snapshot(t2);
        assert!(after.iter().any(|r| r.0.as_str() == "new2"));
        assert!(after.iter().all(|r| r.0.as_str() != "w0"));
        assert_eq!(stats.workers.evicted.get(), 1);
        assert_eq!(after.len(), max + 1);
        let other = after.iter().find(|r| r.0.as_str() == OVERFLOW_WORKER).unwrap();
        assert_eq!((other.1.accepted, other.1.rejected[0]), (2, 1));
        let (b, a) = (sum(&before), sum(&after));
        assert_eq!((a.0, a.1), (b.0 + 1, b.1));
    }
}
