//! The queue on its own, with the test's thread standing in for the writer:
//! its bound both ways, one wake-up per crossing of the high-water mark, and
//! what wakes the writer besides.

use super::*;
use crate::stats::Stats;

fn event() -> Event {
    Event::PoolConnected { pool: 0, at: 0 }
}

/// Events below the mark wake no one; the one that reaches it wakes the
/// writer once, and so do none of those after it; a full queue drops and the
/// proxy counts the drop; once the writer took the queue, the next crossing
/// wakes it again.
#[test]
fn the_queue_is_bounded_and_wakes_the_writer_once_per_crossing() {
    let (tx, rx) = new();
    rx.attach().to(std::thread::current());
    let stats = Stats::default();
    *stats.recorder.borrow_mut() = Some(tx.clone());
    for _ in 0..HIGH_WATER - 1 {
        stats.record(event());
    }
    assert_eq!(tx.unparks(), 0, "an event below the high-water mark woke the writer");
    stats.record(event());
    assert_eq!(tx.unparks(), 1, "the high-water mark did not wake the writer");
    for _ in HIGH_WATER..EVENT_QUEUE {
        stats.record(event());
    }
    assert_eq!(tx.unparks(), 1, "events past the mark woke the writer again");
    assert_eq!(stats.store_dropped.get(), 0, "the queue holds {EVENT_QUEUE} events");
    stats.record(event());
    stats.record(event());
    assert_eq!(stats.store_dropped.get(), 2, "a full queue drops and counts");

    rx.rearm();
    let taken = std::iter::from_fn(|| rx.event()).count();
    assert_eq!(taken, EVENT_QUEUE);
    for _ in 0..HIGH_WATER - 1 {
        assert!(tx.record(event()));
    }
    assert_eq!(tx.unparks(), 1);
    assert!(tx.record(event()));
    assert_eq!(tx.unparks(), 2, "the next crossing did not wake the writer");
    assert_eq!(stats.store_dropped.get(), 2);
}

/// A message wakes the writer each time; a dropped recorder wakes it after
/// its sender is gone, so the writer finds the channel closed when it was
/// the last; a closed queue turns events away and keeps those it holds.
#[test]
fn messages_drops_and_closing() {
    let (tx, rx) = new();
    rx.attach().to(std::thread::current());
    assert!(tx.record(event()));
    assert!(tx.send(Msg::Shutdown));
    assert_eq!(tx.unparks(), 1);
    let other = tx.clone();
    drop(other);
    assert_eq!(tx.unparks(), 2);
    assert!(matches!(rx.message(), Ok(Msg::Shutdown)));
    assert!(matches!(rx.message(), Err(TryRecvError::Empty)));

    rx.close();
    assert!(!tx.record(event()), "a closed queue took an event");
    assert!(rx.event().is_some(), "closing lost a queued event");
    assert!(rx.event().is_none());

    let unparks = tx.wake.0.clone();
    drop(tx);
    assert_eq!(unparks.unparks.load(Ordering::Relaxed), 3);
    assert!(matches!(rx.message(), Err(TryRecvError::Disconnected)));
}

/// Before the writer is named there is no one to wake (naming it wakes it
/// once, for what was queued before); after, every message does.
#[test]
fn recorders_wake_the_writer_once_it_is_named() {
    let (tx, rx) = new();
    assert!(tx.send(Msg::Shutdown));
    assert_eq!(tx.unparks(), 0);
    rx.attach().to(std::thread::current());
    assert!(tx.send(Msg::Shutdown));
    assert_eq!(tx.unparks(), 1);
}
