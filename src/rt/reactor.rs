//! One epoll instance per thread: the sources registered on it, its timers,
//! and the eventfd other threads wake it with. See the module above for the
//! design; the invariants are kept here.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, Timespec, epoll};

/// The key of the eventfd in epoll; sources use slot and generation.
const NOTIFY_KEY: u64 = u64::MAX;
/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;
/// The longest single wait (the loop simply waits again).
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

thread_local! {
    static REACTOR: Reactor = Reactor::new();
}

/// This thread's reactor.
pub(super) fn with<R>(f: impl FnOnce(&Reactor) -> R) -> R {
    REACTOR.with(f)
}

/// This thread's reactor, unless the thread is ending (for drops).
pub(super) fn try_with<R>(f: impl FnOnce(&Reactor) -> R) -> Option<R> {
    REACTOR.try_with(f).ok()
}

/// Wakes the thread that owns a reactor: a flag while it runs, its eventfd
/// (or an unpark, without epoll) while it sleeps. The only part of the
/// reactor other threads touch.
pub(super) struct Notify {
    woken: AtomicBool,
    sleeping: AtomicBool,
    eventfd: Option<OwnedFd>,
    thread: Thread,
}

impl Notify {
    /// Clears the flag before the owner polls; true when it was set.
    pub(super) fn take(&self) -> bool {
        self.woken.swap(false, SeqCst)
    }
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Paired with `wait`: it sets `sleeping` before it reads `woken`, we
        // set `woken` before we read `sleeping`, so one of us sees the other.
        if !self.woken.swap(true, SeqCst) && self.sleeping.load(SeqCst) {
            match &self.eventfd {
                Some(fd) => drop(rustix::io::write(fd, &1u64.to_ne_bytes())),
                None => self.thread.unpark(),
            }
        }
    }
}

/// A registered descriptor's readiness and the tasks waiting on it.
pub(super) struct Source {
    key: u64,
    readable: Cell<bool>,
    writable: Cell<bool>,
    /// The peer closed its side (or the socket failed): no edge comes
    /// after that, so reading stays ready for good.
    hung_up: Cell<bool>,
    readers: RefCell<Waiters>,
    writers: RefCell<Waiters>,
}

/// The tasks waiting on one direction of a source: nearly always one (the
/// session's), kept inline, so an idle connection allocates nothing for
/// its waits; any more go to a `Vec`.
#[derive(Default)]
pub(super) struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    /// Adds `waker` unless a waker that wakes the same task is there.
    fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) if self.more.iter().any(|w| w.will_wake(waker)) => {}
            Some(_) => self.more.push(waker.clone()),
        }
    }

    /// Moves every waker to `due`.
    fn drain_into(&mut self, due: &mut Vec<Waker>) {
        due.extend(self.first.take());
        due.append(&mut self.more);
    }

    fn clear(&mut self) {
        self.first = None;
        self.more.clear();
    }
}

/// Reading or writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Reading (or end of file, or an error).
    Read,
    /// Writing (or an error).
    Write,
}

impl Source {
    fn flag(&self, d: Direction) -> &Cell<bool> {
        match d {
            Direction::Read => &self.readable,
            Direction::Write => &self.writable,
        }
    }

    /// Ready when an event came since the last [`Source::clear`]; else the
    /// task waits for the next event.
    pub(super) fn poll_ready(&self, d: Direction, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag(d).get() {
            return Poll::Ready(());
        }
        match d {
            Direction::Read => self.readers.borrow_mut().add(cx.waker()),
            Direction::Write => self.writers.borrow_mut().add(cx.waker()),
        }
        Poll::Pending
    }

    /// The socket was seen drained (or full): wait for its next edge.
    /// Not after a hang-up: its end of file (maybe behind the bytes just
    /// read) gets no edge of its own.
    pub(super) fn clear(&self, d: Direction) {
        if d == Direction::Write || !self.hung_up.get() {
            self.flag(d).set(false);
        }
    }
}

/// Sources by slot; a slot's generation tells a stale event from a new
/// source in the same slot.
#[derive(Default)]
struct Slots {
    sources: Vec<Option<Rc<Source>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
}

impl Slots {
    fn insert(&mut self) -> Rc<Source> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.sources.push(None);
            self.generations.push(0);
            (self.sources.len() - 1) as u32
        });
        let i = slot as usize;
        self.generations[i] = self.generations[i].wrapping_add(1);
        let source = Rc::new(Source {
            key: (u64::from(self.generations[i]) << 32) | u64::from(slot),
            // Optimistic: the first read or write finds out, and an event
            // comes for whatever is ready already.
            readable: Cell::new(true),
            writable: Cell::new(true),
            hung_up: Cell::new(false),
            readers: RefCell::default(),
            writers: RefCell::default(),
        });
        self.sources[i] = Some(source.clone());
        source
    }

    fn get(&self, key: u64) -> Option<&Rc<Source>> {
        let slot = (key & u64::from(u32::MAX)) as usize;
        self.sources.get(slot)?.as_ref().filter(|s| s.key == key)
    }

    fn remove(&mut self, key: u64) {
        let slot = (key & u64::from(u32::MAX)) as u32;
        if let Some(entry) = self.sources.get_mut(slot as usize)
            && entry.as_ref().is_some_and(|s| s.key == key)
        {
            *entry = None;
            self.free.push(slot);
        }
    }
}

/// One thread's epoll, sources, timers and notifier.
pub(super) struct Reactor {
    /// An error only when epoll or its eventfd could not be made: then
    /// sockets cannot be registered and waits fall back to parking the
    /// thread.
    epoll: Result<OwnedFd, io::ErrorKind>,
    sources: RefCell<Slots>,
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
    notify: Arc<Notify>,
    events: RefCell<Vec<epoll::Event>>,
    /// Wakers taken out of their lists, woken once no list is borrowed.
    due: RefCell<Vec<Waker>>,
}

impl Reactor {
    fn new() -> Reactor {
        // Both or neither: without the eventfd, a wake-up from another
        // thread could not end an epoll_wait.
        let made = epoll::create(epoll::CreateFlags::CLOEXEC).and_then(|ep| {
            let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            epoll::add(&ep, &fd, epoll::EventData::new_u64(NOTIFY_KEY), epoll::EventFlags::IN)?;
            Ok((ep, fd))
        });
        let (epoll, eventfd) = match made {
            Ok((ep, fd)) => (Ok(ep), Some(fd)),
            Err(e) => {
                log::error!(
                    "cannot create an epoll instance and its eventfd: {e}; sockets cannot be used on this thread"
                );
                (Err(io::Error::from(e)), None)
            }
        };
        let notify = Arc::new(Notify {
            woken: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            eventfd,
            thread: std::thread::current(),
        });
        Reactor {
            epoll: epoll.map_err(|e| e.kind()),
            sources: RefCell::default(),
            timers: RefCell::default(),
            next_timer: Cell::new(0),
            notify,
            events: RefCell::new(Vec::with_capacity(EVENTS_PER_WAIT)),
            due: RefCell::default(),
        }
    }

    /// Slots in the source table (open sources and free slots).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.sources.borrow().sources.len()
    }

    /// What wakes this thread.
    pub(super) fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    fn epoll(&self) -> io::Result<&OwnedFd> {
        self.epoll.as_ref().map_err(|&kind| io::Error::new(kind, "no epoll instance on this thread"))
    }

    /// Registers `fd` for both directions, edge-triggered, for good.
    pub(super) fn register(&self, fd: BorrowedFd<'_>) -> io::Result<Rc<Source>> {
        let epoll = self.epoll()?;
        let source = self.sources.borrow_mut().insert();
        let flags =
            epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(epoll, fd, epoll::EventData::new_u64(source.key), flags) {
            self.sources.borrow_mut().remove(source.key);
            return Err(e.into());
        }
        Ok(source)
    }

    /// Forgets `source` (before its descriptor is closed).
    pub(super) fn deregister(&self, source: &Source, fd: BorrowedFd<'_>) {
        if let Ok(epoll) = self.epoll() {
            let _ = epoll::delete(epoll, fd);
        }
        self.sources.borrow_mut().remove(source.key);
        source.readers.borrow_mut().clear();
        source.writers.borrow_mut().clear();
    }

    /// Adds a timer; its id, for [`Reactor::remove_timer`].
    pub(super) fn add_timer(&self, at: Instant, waker: &Waker) -> u64 {
        let id = self.next_timer.get();
        self.next_timer.set(id.wrapping_add(1));
        self.timers.borrow_mut().insert((at, id), waker.clone());
        id
    }

    /// Replaces a timer's waker when the task polling it changed.
    pub(super) fn update_timer(&self, at: Instant, id: u64, waker: &Waker) {
        if let Some(w) = self.timers.borrow_mut().get_mut(&(at, id))
            && !w.will_wake(waker)
        {
            *w = waker.clone();
        }
    }

    /// Removes a timer (fired or not).
    pub(super) fn remove_timer(&self, at: Instant, id: u64) {
        self.timers.borrow_mut().remove(&(at, id));
    }

    /// Waits for events (not at all when this thread was woken meanwhile),
    /// until the next timer at the latest, then wakes whoever they are for.
    pub(super) fn wait(&self) {
        let next = self.timers.borrow().first_key_value().map(|(&(at, _), _)| at);
        let notify = &self.notify;
        notify.sleeping.store(true, SeqCst);
        let timeout = if notify.woken.load(SeqCst) {
            Some(Duration::ZERO)
        } else {
            next.map(|at| at.saturating_duration_since(Instant::now()).min(LONGEST_WAIT))
        };
        match &self.epoll {
            Ok(epoll) => self.poll_events(epoll, timeout),
            Err(_) => match timeout {
                Some(t) => std::thread::park_timeout(t),
                None => std::thread::park(),
            },
        }
        notify.sleeping.store(false, SeqCst);
        self.fire_timers();
        // Woken with no list borrowed; the list goes back with its
        // capacity, so an event allocates nothing.
        let mut wakers = std::mem::take(&mut *self.due.borrow_mut());
        for w in wakers.drain(..) {
            w.wake();
        }
        *self.due.borrow_mut() = wakers;
    }

    fn poll_events(&self, epoll: &OwnedFd, timeout: Option<Duration>) {
        // Rounded up to the millisecond (by rustix), so a timer never wakes
        // the thread early and spins.
        let timeout = timeout.map(|t| Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
        let mut events = self.events.borrow_mut();
        events.clear();
        if let Err(e) = epoll::wait(epoll, rustix::buffer::spare_capacity(&mut events), timeout.as_ref()) {
            if e != rustix::io::Errno::INTR {
                log::error!("epoll_wait failed: {e}");
            }
            return;
        }
        let sources = self.sources.borrow();
        let mut due = self.due.borrow_mut();
        for event in events.iter() {
            let key = event.data.u64();
            if key == NOTIFY_KEY {
                if let Some(fd) = &self.notify.eventfd {
                    let _ = rustix::io::read(fd, &mut [0u8; 8]);
                }
                continue;
            }
            let Some(source) = sources.get(key) else { continue };
            let flags = event.flags;
            let trouble = epoll::EventFlags::ERR | epoll::EventFlags::HUP;
            if flags.intersects(trouble | epoll::EventFlags::RDHUP) {
                source.hung_up.set(true);
            }
            if flags.intersects(
                epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::PRI | trouble,
            ) {
                source.readable.set(true);
                source.readers.borrow_mut().drain_into(&mut due);
            }
            if flags.intersects(epoll::EventFlags::OUT | trouble) {
                source.writable.set(true);
                source.writers.borrow_mut().drain_into(&mut due);
            }
        }
    }

    fn fire_timers(&self) {
        let mut timers = self.timers.borrow_mut();
        if timers.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut due = self.due.borrow_mut();
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
    }
}
