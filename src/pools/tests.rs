//! The pools' state machine, step by step on a made-up clock.

use std::time::{Duration, Instant};

use super::*;

fn pools(n: usize, failover: Failover) -> (Pools, Instant) {
    let now = Instant::now();
    let targets = (0..n)
        .map(|i| Target {
            name: format!("p{i}"),
            address: HostPort::new("127.0.0.1", 3000 + i as u16),
            rewriter: Rewriter::new("", [".", "_"]),
            password: None,
        })
        .collect();
    (Pools::new(targets, failover, now), now)
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn new_sessions_go_to_the_first_usable_pool() {
    let (p, now) = pools(3, Failover::default());
    assert_eq!(p.pick(), Choice::Use(0));
    assert_eq!(p.active(), Some(0));
    p.failed(0, Loss::Refused, now, None);
    assert_eq!(p.get(0).health(), Health::Down, "a refusal moves at once");
    assert_eq!(p.pick(), Choice::Use(1));
    assert_eq!(p.get(0).failovers.get(), 1);
    p.failed(1, Loss::NoWork, now, None);
    p.failed(2, Loss::Stalled, now, None);
    assert_eq!(p.pick(), Choice::Wait, "every pool down");
    assert_eq!(p.get(1).failovers.get(), 1, "moved on to pool 2");
    assert_eq!(p.get(2).failovers.get(), 0, "no pool to move to: no failover");
    assert_eq!(p.active(), None);
}

#[test]
fn lost_connections_move_after_failover_after_in_a_row() {
    let (p, now) = pools(2, Failover { failover_after: 3, ..Failover::default() });
    let made = Some(now - SECOND);
    p.failed(0, Loss::Closed, now, made);
    // Every session the pool dropped at once: one failure.
    for _ in 0..10 {
        p.failed(0, Loss::Closed, now + SECOND / 10, made);
    }
    assert_eq!(p.get(0).health(), Health::Failing);
    // A connection made since, lost at once, is a new failure: a pool that
    // accepts and closes goes down, however fast it does so.
    p.failed(0, Loss::Closed, now + SECOND / 5, Some(now + SECOND / 10));
    let now = now + 4 * SECOND;
    assert_eq!(p.get(0).health(), Health::Failing);
    assert_eq!(p.pick(), Choice::Use(0), "a failing pool is still tried");
    // Work in between starts the count over.
    p.working(0, now);
    assert_eq!(p.get(0).health(), Health::Up);
    p.failed(0, Loss::Closed, now, None);
    p.failed(0, Loss::Unreachable, now + 2 * SECOND, None);
    assert_eq!(p.get(0).health(), Health::Failing);
    p.failed(0, Loss::Garbage, now + 4 * SECOND, None);
    assert_eq!(p.get(0).health(), Health::Down);
    assert_eq!(p.pick(), Choice::Use(1));
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap_and_never_gives_up() {
    let retry_max = Duration::from_secs(8);
    let (p, now) = pools(1, Failover { retry_max, ..Failover::default() });
    p.failed(0, Loss::Refused, now, None);
    let mut waits = Vec::new();
    let mut at = now;
    for _ in 0..10 {
        let wait = p.get(0).retry_at().saturating_duration_since(at);
        waits.push(wait);
        at = p.get(0).retry_at();
        p.probe_failed(0, at);
    }
    // The first wait is half to all of a second; each cap-free wait is half
    // to all of the doubled backoff; the cap holds from then on.
    assert!(waits[0] >= SECOND / 2 && waits[0] <= SECOND, "{waits:?}");
    assert!(waits[1] >= SECOND && waits[1] <= 2 * SECOND, "{waits:?}");
    assert!(waits[2] >= 2 * SECOND && waits[2] <= 4 * SECOND, "{waits:?}");
    for w in &waits[4..] {
        assert!(*w >= retry_max / 2 && *w <= retry_max, "{waits:?}");
    }
    // Jitter: not every capped wait is the same.
    assert!(waits[4..].iter().any(|w| *w != waits[4]), "{waits:?}");
    assert_eq!(p.get(0).health(), Health::Down);
}

#[test]
fn a_recovering_pool_is_used_only_when_nothing_is_up_and_up_after_the_window() {
    let (p, now) = pools(2, Failover::default());
    p.failed(0, Loss::Refused, now, None);
    p.working(1, now);
    p.recovering(0, now + SECOND);
    assert_eq!(p.get(0).health(), Health::Recovering);
    assert_eq!(p.pick(), Choice::Use(1), "the fallback stays in use while the primary recovers");
    assert_eq!(p.better_than(1), None, "no move before the window");
    p.recovered(0, now + 3 * SECOND);
    assert_eq!(p.pick(), Choice::Use(0));
    assert_eq!(p.better_than(1), Some(0));
    assert_eq!(p.better_than(0), None);
    // With nothing up, a recovering pool is better than none.
    let (p, now) = pools(2, Failover::default());
    p.failed(0, Loss::Refused, now, None);
    p.failed(1, Loss::Refused, now, None);
    p.recovering(1, now);
    assert_eq!(p.pick(), Choice::Use(1));
    // A recovering pool that fails again is down at once.
    p.failed(1, Loss::Closed, now, None);
    assert_eq!(p.get(1).health(), Health::Down);
}

#[test]
fn sessions_move_back_spread_over_a_share_of_the_window() {
    let window = Duration::from_secs(8);
    let (p, now) = pools(2, Failover { switch_back_after: window, ..Failover::default() });
    p.failed(0, Loss::Refused, now, None);
    p.recovering(0, now);
    p.recovered(0, now + window);
    let up = p.get(0).since();
    let times: Vec<Instant> = (0..64u64).map(|seed| p.switch_at(0, seed)).collect();
    assert!(times.iter().all(|t| *t >= up && *t < up + window / 4), "within a quarter of the window");
    let distinct: std::collections::HashSet<_> = times.iter().collect();
    assert!(distinct.len() > 32, "spread, not all at once");
}

#[test]
fn every_change_wakes_the_waiters_and_time_on_each_pool_adds_up() {
    let (p, now) = pools(2, Failover::default());
    let rx = p.changed();
    assert!(!rx.is_closed());
    p.failed(0, Loss::Refused, now + 10 * SECOND, None);
    assert!(rx.is_closed(), "a change closes the receiver handed out before it");
    assert!(!p.changed().is_closed());
    let later = now + 25 * SECOND;
    assert!((p.active_seconds(0, later) - 10.0).abs() < 1e-6);
    assert!((p.active_seconds(1, later) - 15.0).abs() < 1e-6);
}

#[test]
fn a_connect_names_a_pool_by_address() {
    let (p, _) = pools(3, Failover::default());
    assert_eq!(p.by_address("127.0.0.1:3002"), Some(2));
    assert_eq!(p.by_address("127.0.0.1:4000"), None);
}

#[test]
fn a_pool_that_accepts_and_closes_goes_down_however_fast() {
    let (p, now) = pools(2, Failover::default());
    // Each reconnect is made after the last loss and lost within
    // milliseconds: each is a failure of its own.
    p.failed(0, Loss::Closed, now, Some(now - SECOND));
    assert_eq!(p.get(0).health(), Health::Failing);
    let ms = Duration::from_millis(1);
    p.failed(0, Loss::Closed, now + 3 * ms, Some(now + ms));
    assert_eq!(p.get(0).health(), Health::Down);
    assert_eq!(p.pick(), Choice::Use(1));
}
