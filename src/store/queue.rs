//! The hand-off from the proxy to the books' writer thread: a bounded
//! lock-free queue of [`Event`]s, a small channel of [`Msg`]s (commands,
//! snapshots, shutdown), and the writer's thread handle to wake it.
//!
//! Recording an event is a push onto the queue and no system call: the
//! writer sleeps (`std::thread::park_timeout`) until its next commit is due
//! and is woken only when the queue reaches [`HIGH_WATER`] (once per crossing,
//! not once per event), when a message is sent, and when a [`Recorder`] is
//! dropped (so it notices the last one going, as a closed channel).
//!
//! Invariant: no wake-up is lost. Whoever needs the writer awake makes its
//! work visible first (push, send, drop) and unparks after; the writer looks
//! for work after every wake and before every sleep, and an unpark that comes
//! while it is not parked makes its next park return at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use concurrent_queue::ConcurrentQueue;

use super::writer::Msg;
use super::{EVENT_QUEUE, Event};

/// Events queued at which the writer is woken to take them: half the queue,
/// so it drains (and, past `MAX_BATCH_EVENTS`, commits) well before the
/// queue is full and events are dropped.
pub const HIGH_WATER: usize = EVENT_QUEUE / 2;

/// Messages waiting for the writer, at most; a CLI command past them is told
/// the books are busy. Each is one CLI client waiting for its answer.
pub const MSG_QUEUE: usize = 16;

/// What the proxy's and the writer's ends share.
#[derive(Debug)]
struct Shared {
    events: ConcurrentQueue<Event>,
    /// Set by the recorder that woke the writer for the high-water mark,
    /// cleared by the writer before it takes the queue: one wake-up per
    /// crossing of the mark, however many events follow it.
    signalled: AtomicBool,
    /// The writer thread, once it runs.
    writer: OnceLock<Thread>,
    /// Wake-ups the recorders asked for.
    unparks: AtomicU64,
}

impl Shared {
    fn unpark(&self) {
        if let Some(writer) = self.writer.get() {
            self.unparks.fetch_add(1, Ordering::Relaxed);
            writer.unpark();
        }
    }
}

/// A new queue: the proxy's end and the writer's.
pub fn new() -> (Recorder, Inbox) {
    let shared = Arc::new(Shared {
        events: ConcurrentQueue::bounded(EVENT_QUEUE),
        signalled: AtomicBool::new(false),
        writer: OnceLock::new(),
        unparks: AtomicU64::new(0),
    });
    let (tx, rx) = sync_channel(MSG_QUEUE);
    (Recorder { tx, wake: WakeOnDrop(shared.clone()) }, Inbox { rx, shared })
}

/// The proxy's end of the queue. Never blocks, except [`Recorder::stop`].
#[derive(Debug, Clone)]
pub struct Recorder {
    // Fields drop in declaration order: the sender first, then the writer is
    // woken, so it finds the channel closed when this was the last sender.
    tx: SyncSender<Msg>,
    wake: WakeOnDrop,
}

/// Wakes the writer when a [`Recorder`] is dropped.
#[derive(Debug, Clone)]
struct WakeOnDrop(Arc<Shared>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.unpark();
    }
}

impl Recorder {
    /// Queues `event` without a system call; returns `false` when the queue
    /// is full or the writer has stopped taking events.
    pub fn record(&self, event: Event) -> bool {
        let shared = &self.wake.0;
        if shared.events.push(event).is_err() {
            return false;
        }
        // After the push, so the writer that clears `signalled` and takes the
        // queue sees this event; only the first recorder past the mark wakes it.
        if shared.events.len() >= HIGH_WATER && !shared.signalled.swap(true, Ordering::AcqRel) {
            shared.unpark();
        }
        true
    }

    /// Sends the writer a message without blocking and wakes it; `false`
    /// when the message queue is full or the writer has stopped.
    pub fn send(&self, msg: Msg) -> bool {
        let sent = self.tx.try_send(msg).is_ok();
        if sent {
            self.wake.0.unpark();
        }
        sent
    }

    /// Asks the writer to commit everything queued and stop, waiting for
    /// room in the message queue if need be (not for the commit).
    pub fn stop(&self) {
        if self.tx.send(Msg::Shutdown).is_ok() {
            self.wake.0.unpark();
        }
    }

    /// Wake-ups of the writer asked for so far, by every recorder of this
    /// queue: for the high-water mark, messages and drops, not for events.
    #[cfg(test)]
    pub(crate) fn unparks(&self) -> u64 {
        self.wake.0.unparks.load(Ordering::Relaxed)
    }
}

/// The writer's end of the queue.
#[derive(Debug)]
pub struct Inbox {
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
}

impl Inbox {
    /// What names the writer thread to the recorders, once it is spawned
    /// (and this inbox moved into it).
    pub fn attach(&self) -> Attach {
        Attach(self.shared.clone())
    }

    /// The next queued event, if any. Call [`Inbox::rearm`] before taking
    /// a run of them.
    pub fn event(&self) -> Option<Event> {
        self.shared.events.pop().ok()
    }

    /// Lets the next recorder past the high-water mark wake the writer again.
    /// Called before taking the queue: an event pushed after that wakes it
    /// again when it crosses the mark, and one pushed before it is taken.
    pub fn rearm(&self) {
        // A read-modify-write, so it reads the recorders' last `swap` and
        // sees every event pushed before it.
        self.shared.signalled.swap(false, Ordering::AcqRel);
    }

    /// The next message, or `Err(Disconnected)` when every recorder is gone.
    pub fn message(&self) -> Result<Msg, TryRecvError> {
        self.rx.try_recv()
    }

    /// Turns away every event recorded from now on (counted as dropped by
    /// the proxy); those already queued can still be taken.
    pub fn close(&self) {
        self.shared.events.close();
    }
}

/// Names the writer thread to the recorders: see [`Inbox::attach`].
#[derive(Debug)]
pub struct Attach(Arc<Shared>);

impl Attach {
    /// Names `writer` as the thread to wake, then wakes it once, so anything
    /// queued before it was named is taken too. Recorders that come after
    /// this returns wake it themselves.
    pub fn to(self, writer: Thread) {
        self.0.writer.get_or_init(|| writer).unpark();
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
