//! The floor: a bare 1:1 relay. One thread, one epoll set, `read` then
//! `write`; each accepted connection gets its own upstream connection, as
//! each miner gets its own pool connection in the proxy. Nothing else: no
//! parsing, no buffering beyond one read, no timers.
//!
//! `relay --relay TARGET` listens on 127.0.0.1 port 0, prints the address on
//! stdout and relays until killed. The bench runs it by executing itself;
//! for aarch64 this file builds alone, with std only (so `rustc` needs no
//! crates):
//!
//! ```sh
//! rustc --edition 2024 -C opt-level=3 --target aarch64-unknown-linux-gnu \
//!     -C linker=aarch64-linux-gnu-gcc benches/floor/relay.rs -o floor-relay
//! ```
//!
//! Sockets stay blocking: epoll (level-triggered) says when a read will not
//! block, so each readiness event costs exactly one `read` and one `write`.
//! A write blocks only if the other side stops reading, which stalls the
//! whole relay: backpressure by construction, and fine for a bench.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// The kernel's `struct epoll_event`: packed on x86_64 only.
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
pub struct Event {
    pub events: u32,
    pub token: u64,
}

unsafe extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut Event) -> i32;
    fn epoll_wait(epfd: i32, events: *mut Event, max_events: i32, timeout_ms: i32) -> i32;
    fn close(fd: i32) -> i32;
}

const EPOLL_CLOEXEC: i32 = 0o2_000_000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLLIN: u32 = 0x001;

/// An epoll set whose events carry a caller's token; level-triggered reads.
pub struct Epoll(i32);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers.
        let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(Epoll(fd)) }
    }

    /// Watches `fd` for reads. A closed fd leaves the set by itself.
    pub fn add(&self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut event = Event { events: EPOLLIN, token };
        // SAFETY: `event` outlives the call, which only reads it.
        match unsafe { epoll_ctl(self.0, EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Waits up to `timeout_ms` (-1: for ever); returns the ready events.
    pub fn wait<'a>(&self, events: &'a mut [Event], timeout_ms: i32) -> io::Result<&'a [Event]> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `max` events into `events`.
        let n = unsafe { epoll_wait(self.0, events.as_mut_ptr(), max, timeout_ms) };
        match n {
            0.. => Ok(&events[..n as usize]),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => Ok(&[]),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { close(self.0) };
    }
}

/// The listener's token; a connection's is `2 * slot + side`.
const LISTENER: u64 = u64::MAX;
/// Bytes moved per read: a share and its answer are ~150 B, a job ~1 KiB.
const BUFFER_BYTES: usize = 16 * 1024;

/// Entry point of the relay process: `--relay TARGET`.
pub fn main() {
    let target = std::env::args().skip_while(|a| a != "--relay").nth(1).unwrap_or_default();
    if let Err(e) = run(&target) {
        eprintln!("relay to {target:?}: {e}");
        std::process::exit(1);
    }
}

fn run(target: &str) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    io::stdout().flush()?;
    let epoll = Epoll::new()?;
    epoll.add(&listener, LISTENER)?;
    // Slot i holds [miner, upstream]. Slots are never reused, so an event
    // still queued for a pair closed earlier in the batch finds `None`.
    let mut pairs: Vec<Option<[TcpStream; 2]>> = Vec::new();
    let mut events = [Event { events: 0, token: 0 }; 64];
    let mut buf = [0u8; BUFFER_BYTES];
    loop {
        for &Event { token, .. } in epoll.wait(&mut events, -1)? {
            if token == LISTENER {
                let (miner, _) = listener.accept()?;
                let upstream = TcpStream::connect(target)?;
                miner.set_nodelay(true)?;
                upstream.set_nodelay(true)?;
                let slot = pairs.len() as u64;
                epoll.add(&miner, 2 * slot)?;
                epoll.add(&upstream, 2 * slot + 1)?;
                pairs.push(Some([miner, upstream]));
                continue;
            }
            let (slot, side) = ((token / 2) as usize, (token % 2) as usize);
            let Some(Some(pair)) = pairs.get_mut(slot) else { continue };
            let [from, to] = if side == 0 { [&pair[0], &pair[1]] } else { [&pair[1], &pair[0]] };
            let moved = match (&*from).read(&mut buf) {
                Ok(0) | Err(_) => false,
                Ok(n) => (&*to).write_all(&buf[..n]).is_ok(),
            };
            if !moved {
                // Either side ending ends both; dropping closes the fds.
                pairs[slot] = None;
            }
        }
    }
}
