//! The I/O layer: one epoll reactor per thread, driven by [`block_on`], under
//! smol's `LocalExecutor`.
//!
//! Why not async-io (async-net's reactor): whenever the executor has idled
//! for a few milliseconds (a gateway's normal state between shares),
//! async-io's helper thread takes its epoll and keeps it, so every readiness
//! event is a cross-thread hand-off (7–10 `futex` calls per share, measured
//! with `strace -f -c`). Why not `polling` on its own: its `wait` arms a
//! timerfd, re-arms it and its notifier with two `epoll_ctl`, and reads its
//! eventfd on every call — four system calls besides `epoll_wait`, eight per
//! share round trip. This layer makes none of those:
//!
//! - every socket is registered once, edge-triggered for reading and
//!   writing, and kept armed until it is dropped (no `epoll_ctl` per event);
//! - readiness is a flag per direction: set by an event, cleared when a read
//!   or write through [`Async`] meets `EAGAIN` or comes back short (a short
//!   read means the socket was drained; new bytes bring a new edge);
//! - timers live in a `BTreeMap` and become `epoll_wait`'s timeout (rounded
//!   up to the millisecond), so re-arming one is no system call;
//! - a wake-up from another thread (the books' answers, a DNS lookup, a
//!   signal) writes an eventfd, and only while this thread sleeps in
//!   `epoll_wait`; a wake-up from this thread sets a flag.
//!
//! So a forwarded share and its answer cost two `epoll_wait`, two reads and
//! two writes, as a bare relay does.
//!
//! Invariants: a source's readiness flag is cleared only by the operation
//! that saw the socket drained or full, and set by every event, so no edge is
//! lost; everything here lives on the thread that made it (`Rc`, not `Send`),
//! and only the reactor's notifier (an eventfd and two flags) crosses
//! threads.

mod reactor;
mod signal;
mod socket;
mod timer;

pub use reactor::Direction;
pub use signal::Signals;
pub use socket::{Async, TcpListener, TcpStream, UnixListener, UnixStream, connect, connect_host, resolve};
pub use timer::Timer;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs `future` to completion on this thread, waiting on this thread's
/// reactor whenever nothing is ready. Tasks of a `LocalExecutor` run when
/// `future` is `executor.run(…)`.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    reactor::with(|reactor| {
        let notify = reactor.notify();
        let waker = Waker::from(notify.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            notify.take();
            if let Poll::Ready(t) = future.as_mut().poll(&mut cx) {
                return t;
            }
            // Polled again at once when woken meanwhile (after a look at the
            // sockets, so a busy executor never starves them).
            reactor.wait();
        }
    })
}

#[cfg(test)]
mod tests;
