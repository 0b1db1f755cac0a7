//! Sockets on the reactor: [`Async`] keeps a nonblocking descriptor and its
//! readiness; reads and writes through it keep that readiness true.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};

use super::reactor::{self, Direction, Source};

/// A nonblocking descriptor registered on this thread's reactor.
///
/// Read and write through `&Async<T>` (the [`Read`] and [`Write`] impls, or
/// the async traits), not through [`Async::get_ref`]: those calls tell the
/// reactor when the socket was drained or full.
pub struct Async<T: AsFd> {
    source: Rc<Source>,
    /// Closed when the `Async` drops, after `Drop` has deregistered it.
    io: T,
}

/// A TCP connection on the reactor.
pub type TcpStream = Async<std::net::TcpStream>;
/// A TCP listener on the reactor.
pub type TcpListener = Async<std::net::TcpListener>;
/// A Unix stream connection on the reactor.
pub type UnixStream = Async<std::os::unix::net::UnixStream>;
/// A Unix stream listener on the reactor.
pub type UnixListener = Async<std::os::unix::net::UnixListener>;

impl<T: AsFd> Async<T> {
    /// Makes `io` nonblocking and registers it.
    pub fn new(io: T) -> io::Result<Async<T>> {
        rustix::io::ioctl_fionbio(&io, true)?;
        let source = reactor::with(|r| r.register(io.as_fd()))?;
        Ok(Async { source, io })
    }

    /// The descriptor, for calls that are neither reads nor writes.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Ready for `d`: an event came since a read or write in that
    /// direction last saw the socket drained or full.
    pub fn poll_ready(&self, d: Direction, cx: &mut Context<'_>) -> Poll<()> {
        self.source.poll_ready(d, cx)
    }

    /// Ready to read (or at end of file, or failed).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_ready(Direction::Read, cx)
    }

    /// Ready to write (or failed).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_ready(Direction::Write, cx)
    }

    /// Waits until [`Async::poll_readable`] is ready.
    pub async fn readable(&self) {
        poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Waits until [`Async::poll_writable`] is ready.
    pub async fn writable(&self) {
        poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Runs a nonblocking operation in direction `d`: `EAGAIN` waits for
    /// the next edge, a short transfer clears the readiness (the socket was
    /// drained or filled), end of file keeps it.
    fn attempt(
        &self,
        d: Direction,
        want: usize,
        op: impl FnOnce(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let result = op(self.get_ref());
        match &result {
            Ok(n) if *n > 0 && *n < want => self.source.clear(d),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.source.clear(d),
            _ => {}
        }
        result
    }

    fn poll_op(
        &self,
        d: Direction,
        cx: &mut Context<'_>,
        want: usize,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.source.poll_ready(d, cx).is_pending() {
                return Poll::Pending;
            }
            match self.attempt(d, want, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        // Fields drop after this: the descriptor is still open here.
        reactor::try_with(|r| r.deregister(&self.source, self.io.as_fd()));
    }
}

impl<T: AsFd> std::fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Async").field("fd", &self.io.as_fd()).finish()
    }
}

impl<T: AsFd> Read for &Async<T>
where
    for<'a> &'a T: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.attempt(Direction::Read, buf.len(), |mut io| io.read(buf))
    }
}

impl<T: AsFd> Write for &Async<T>
where
    for<'a> &'a T: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.attempt(Direction::Write, buf.len(), |mut io| io.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let want = bufs.iter().map(|b| b.len()).sum();
        self.attempt(Direction::Write, want, |mut io| io.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: AsFd> AsyncRead for &Async<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this: &Async<T> = self.get_mut();
        this.poll_op(Direction::Read, cx, buf.len(), |mut io| io.read(buf))
    }
}

impl<T: AsFd> AsyncRead for Async<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }
}

impl<T: AsFd> AsyncWrite for &Async<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this: &Async<T> = self.get_mut();
        this.poll_op(Direction::Write, cx, buf.len(), |mut io| io.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-closes sockets; other descriptors close when dropped.
        let fd = self.get_ref().as_fd();
        Poll::Ready(match rustix::net::shutdown(fd, rustix::net::Shutdown::Write) {
            Err(rustix::io::Errno::NOTSOCK) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        })
    }
}

impl<T: AsFd> AsyncWrite for Async<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_close(cx)
    }
}

impl Async<std::net::TcpListener> {
    /// Binds a listener on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Async::new(std::net::TcpListener::bind(addr)?)
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.accept_with(|l| l.accept()).await?;
        Ok((Async::new(stream)?, peer))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().local_addr()
    }
}

impl Async<std::os::unix::net::UnixListener> {
    /// Binds a listener on the socket file `path`.
    pub fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
        Async::new(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (stream, _) = self.accept_with(|l| l.accept()).await?;
        Async::new(stream)
    }
}

impl<T: AsFd> Async<T> {
    /// Accepts with `accept` until it does not block; a listener is drained
    /// when `accept` meets `EAGAIN`.
    async fn accept_with<S>(&self, mut accept: impl FnMut(&T) -> io::Result<S>) -> io::Result<S> {
        poll_fn(|cx| {
            loop {
                if self.source.poll_ready(Direction::Read, cx).is_pending() {
                    return Poll::Pending;
                }
                match accept(self.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.source.clear(Direction::Read),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    result => return Poll::Ready(result),
                }
            }
        })
        .await
    }
}

impl Async<std::net::TcpStream> {
    /// Half-closes or closes the connection.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.get_ref().shutdown(how)
    }
}

/// Connects to `addr` without blocking the thread.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd: OwnedFd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = Async::new(std::net::TcpStream::from(fd))?;
    // Writable once the handshake is done (or failed): its first edge.
    stream.source.clear(Direction::Write);
    stream.writable().await;
    if let Some(e) = stream.get_ref().take_error()? {
        return Err(e);
    }
    stream.get_ref().peer_addr()?;
    Ok(stream)
}

/// Connects to `host` (a name or an address) and `port`, trying each
/// address the name resolves to in turn.
pub async fn connect_host(host: &str, port: u16) -> io::Result<TcpStream> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return connect(SocketAddr::new(ip, port)).await;
    }
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in resolve(host, port).await? {
        match connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Lookups that may run at once (each on a short-lived thread).
const CONCURRENT_LOOKUPS: usize = 4;
/// How long a lookup's answer is reused.
const LOOKUP_TTL: Duration = Duration::from_secs(30);
/// Answers kept, at most (one per pool name in practice).
const LOOKUPS_KEPT: usize = 16;

/// Recent answers and the lookups' semaphore, on the reactor's thread.
struct Lookups {
    kept: Vec<(String, u16, Instant, Vec<SocketAddr>)>,
    /// Held by each lookup thread until it ends, not by the task that
    /// waits for it: a task that gives up (its connect timed out) does not
    /// free a slot while its thread still hangs on a slow DNS server.
    running: std::sync::Arc<smol::lock::Semaphore>,
}

thread_local! {
    static LOOKUPS: RefCell<Lookups> = RefCell::new(Lookups {
        kept: Vec::new(),
        running: std::sync::Arc::new(smol::lock::Semaphore::new(CONCURRENT_LOOKUPS)),
    });
}

fn kept(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    LOOKUPS.with_borrow(|l| {
        l.kept
            .iter()
            .find(|(h, p, at, _)| h == host && *p == port && at.elapsed() < LOOKUP_TTL)
            .map(|(.., addrs)| addrs.clone())
    })
}

/// The addresses of `host`, looked up on a thread of its own so a slow DNS
/// server never stalls this one; at most four lookup threads at once,
/// whoever still waits for them, and an answer is reused for 30 s.
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(addrs) = kept(host, port) {
        return Ok(addrs);
    }
    let running = LOOKUPS.with_borrow(|l| l.running.clone());
    let permit = running.acquire_arc().await;
    // Another session may have looked it up while this one waited.
    if let Some(addrs) = kept(host, port) {
        return Ok(addrs);
    }
    let (tx, rx) = smol::channel::bounded(1);
    let name = host.to_owned();
    std::thread::Builder::new().name("lookup".into()).spawn(move || {
        let _ = tx.send_blocking((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        drop(permit);
    })?;
    let addrs = rx.recv().await.map_err(|_| io::Error::other("the lookup thread ended"))??;
    LOOKUPS.with_borrow_mut(|l| {
        l.kept.retain(|(h, p, at, _)| !(h == host && *p == port) && at.elapsed() < LOOKUP_TTL);
        if l.kept.len() >= LOOKUPS_KEPT {
            l.kept.remove(0);
        }
        l.kept.push((host.to_owned(), port, Instant::now(), addrs.clone()));
    });
    Ok(addrs)
}
