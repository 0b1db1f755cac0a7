//! Timers on the reactor's map: setting or moving one is no system call.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::reactor;

/// Completes with its deadline once that has passed. It can be moved with
/// [`Timer::set_at`] and polled again; once fired it stays pending until it
/// is set again (as async-io's timer does).
#[derive(Debug)]
pub struct Timer {
    at: Option<Instant>,
    /// The entry in the reactor's map: deadline and id.
    registered: Option<(Instant, u64)>,
    /// Not `Send`: it lives in the reactor of the thread that polls it.
    _here: PhantomData<*const ()>,
}

impl Timer {
    /// Fires after `after` from now.
    pub fn after(after: Duration) -> Timer {
        Timer::at(Instant::now() + after)
    }

    /// Fires at `at`.
    pub fn at(at: Instant) -> Timer {
        Timer { at: Some(at), registered: None, _here: PhantomData }
    }

    /// Moves the deadline to `at` (also after the timer fired).
    pub fn set_at(&mut self, at: Instant) {
        self.at = Some(at);
    }

    fn unregister(&mut self) {
        if let Some((at, id)) = self.registered.take() {
            reactor::try_with(|r| r.remove_timer(at, id));
        }
    }
}

impl Future for Timer {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let this = self.get_mut();
        let Some(at) = this.at else { return Poll::Pending };
        if Instant::now() >= at {
            this.unregister();
            this.at = None;
            return Poll::Ready(at);
        }
        match this.registered {
            Some((was, id)) if was == at => reactor::with(|r| r.update_timer(at, id, cx.waker())),
            _ => {
                this.unregister();
                let id = reactor::with(|r| r.add_timer(at, cx.waker()));
                this.registered = Some((at, id));
            }
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.unregister();
    }
}
