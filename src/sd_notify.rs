//! systemd's service notification protocol (`sd_notify(3)`) with `std` alone.
//!
//! Under a `Type=notify` unit, systemd passes a datagram socket in
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and, with
//! `WatchdogSec=`, the watchdog period in `$WATCHDOG_USEC`. Each notification is
//! one datagram of `KEY=VALUE` lines: `READY=1`, `STOPPING=1`, `WATCHDOG=1`,
//! `STATUS=...`.
//!
//! Invariant: without `$NOTIFY_SOCKET` (not under systemd, or a unit of another
//! type) a [`Notifier`] does nothing and every call succeeds. Sends never block
//! the executor: the socket is non-blocking and a full queue is an error the
//! caller may ignore.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends notifications to systemd; a no-op when not started by it.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

/// Where the datagrams go, and the unbound socket that sends them.
#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

/// Why `$NOTIFY_SOCKET` could not be used.
#[derive(Debug)]
pub enum NotifyError {
    /// The value is neither an absolute path nor `@name`.
    Address(String),
    /// The sending socket could not be created.
    Socket(io::Error),
}

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyError::Address(value) => write!(f, "NOTIFY_SOCKET={value:?} is not a socket address"),
            NotifyError::Socket(_) => f.write_str("cannot create the notification socket"),
        }
    }
}

impl std::error::Error for NotifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyError::Address(_) => None,
            NotifyError::Socket(e) => Some(e),
        }
    }
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    ///
    /// A notifier that does nothing when the socket is absent; an unusable
    /// socket is logged once, here, and also gives one that does nothing.
    pub fn from_env() -> Notifier {
        let lookup = |name: &str| std::env::var_os(name);
        Notifier::from_lookup(lookup, std::process::id()).unwrap_or_else(|e| {
            log::warn!("systemd notifications off: {e}");
            Notifier::disabled()
        })
    }

    /// One that does nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None, watchdog: None }
    }

    /// Builds a notifier from variables looked up by `lookup`, for process `pid`.
    pub fn from_lookup<F, V>(lookup: F, pid: u32) -> Result<Notifier, NotifyError>
    where
        F: Fn(&str) -> Option<V>,
        V: AsRef<OsStr>,
    {
        let Some(socket) = lookup("NOTIFY_SOCKET") else { return Ok(Notifier::disabled()) };
        let addr = parse_address(socket.as_ref())?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        let text = |name: &str| lookup(name).and_then(|v| v.as_ref().to_str().map(str::to_owned));
        let watchdog =
            watchdog_interval(text("WATCHDOG_USEC").as_deref(), text("WATCHDOG_PID").as_deref(), pid);
        Ok(Notifier { target: Some(Target { socket, addr }), watchdog })
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state`: one or more `KEY=VALUE` lines, as one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else { return Ok(()) };
        target.socket.send_to_addr(state.as_bytes(), &target.addr).map(drop)
    }

    /// `READY=1`: the listeners are bound and the service is up.
    pub fn ready(&self) -> io::Result<()> {
        self.notify("READY=1")
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }

    /// `STATUS=...`: a one-line summary that `systemctl status` shows.
    /// Line breaks in `line` become spaces, so it stays one line.
    pub fn status(&self, line: &str) -> io::Result<()> {
        if self.target.is_none() {
            return Ok(());
        }
        self.notify(&format!("STATUS={}", line.replace(['\n', '\r'], " ")))
    }

    /// How often to send [`watchdog`](Self::watchdog): half of
    /// `$WATCHDOG_USEC`, or `None` when systemd watches no watchdog for us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `WATCHDOG=1` every [`watchdog_interval`](Self::watchdog_interval),
    /// forever; returns at once when there is no watchdog.
    ///
    /// Spawn it on the daemon's executor: if the executor stops running tasks,
    /// the pings stop and systemd restarts the service.
    pub async fn watchdog_pings(&self) {
        let Some(every) = self.watchdog else { return };
        loop {
            if let Err(e) = self.watchdog() {
                log::debug!("watchdog ping not sent: {e}");
            }
            crate::rt::Timer::after(every).await;
        }
    }
}

/// `/path` or `@abstract-name` as a socket address.
fn parse_address(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = value.as_bytes();
    let bad = |_| NotifyError::Address(value.to_string_lossy().into_owned());
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value).map_err(bad),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).map_err(bad),
        _ => Err(NotifyError::Address(value.to_string_lossy().into_owned())),
    }
}

/// Half of `usec` microseconds, if the watchdog is meant for process `pid`.
fn watchdog_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if let Some(owner) = watchdog_pid
        && owner.trim().parse::<u32>().ok()? != pid
    {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    const PID: u32 = 4242;

    fn notifier(vars: &[(&str, &str)]) -> Notifier {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Notifier::from_lookup(|name| vars.get(name).cloned(), PID).unwrap()
    }

    /// A fresh, unique name for a socket of this test process.
    fn unique(what: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("loka-sd-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    /// Binds a receiving socket at a temporary path; removes the directory on drop.
    struct PathSocket {
        dir: PathBuf,
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl PathSocket {
        fn new() -> PathSocket {
            let dir = std::env::temp_dir().join(unique("dir"));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            PathSocket { dir, path, socket }
        }
    }

    impl Drop for PathSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn absent_socket_is_a_quiet_no_op() {
        let n = notifier(&[("WATCHDOG_USEC", "1000000")]);
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.status("1 miner").unwrap();
        n.watchdog().unwrap();
        n.stopping().unwrap();
        assert_eq!(n.watchdog_interval(), None);
        crate::rt::block_on(n.watchdog_pings()); // returns at once
    }

    #[test]
    fn sends_each_state_to_a_path_socket() {
        let rx = PathSocket::new();
        let n = notifier(&[("NOTIFY_SOCKET", rx.path.to_str().unwrap())]);
        assert!(n.is_enabled());
        n.ready().unwrap();
        assert_eq!(recv(&rx.socket), "READY=1");
        n.status("3 miners, pool up").unwrap();
        assert_eq!(recv(&rx.socket), "STATUS=3 miners, pool up");
        n.watchdog().unwrap();
        assert_eq!(recv(&rx.socket), "WATCHDOG=1");
        n.stopping().unwrap();
        assert_eq!(recv(&rx.socket), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = unique("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = notifier(&[("NOTIFY_SOCKET", &format!("@{name}"))]);
        n.notify("READY=1\nSTATUS=listening").unwrap();
        assert_eq!(recv(&rx), "READY=1\nSTATUS=listening");
    }

    #[test]
    fn status_stays_one_line() {
        let rx = PathSocket::new();
        let n = notifier(&[("NOTIFY_SOCKET", rx.path.to_str().unwrap())]);
        n.status("a\nb\r\nc").unwrap();
        assert_eq!(recv(&rx.socket), "STATUS=a b  c");
    }

    #[test]
    fn watchdog_pings_come_from_the_executor() {
        let rx = PathSocket::new();
        let n = notifier(&[("NOTIFY_SOCKET", rx.path.to_str().unwrap()), ("WATCHDOG_USEC", "20000")]);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(10)));
        let ex = smol::LocalExecutor::new();
        let _pings = ex.spawn(n.watchdog_pings());
        rx.socket.set_nonblocking(true).unwrap();
        // Three pings need the executor to run the task through two timer waits.
        let count = async {
            let (mut pings, deadline) = (0, std::time::Instant::now() + Duration::from_secs(10));
            let mut buf = [0u8; 64];
            while pings < 3 && std::time::Instant::now() < deadline {
                match rx.socket.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(&buf[..n], b"WATCHDOG=1");
                        pings += 1;
                    }
                    Err(_) => drop(crate::rt::Timer::after(Duration::from_millis(2)).await),
                }
            }
            pings
        };
        assert_eq!(crate::rt::block_on(ex.run(count)), 3);
    }

    #[test]
    fn a_missing_listener_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(unique("gone"));
        let n = notifier(&[("NOTIFY_SOCKET", dir.join("nobody").to_str().unwrap())]);
        assert!(n.ready().is_err());
    }

    #[test]
    fn bad_addresses_are_refused() {
        for value in ["", "relative/path", "notify"] {
            let r = Notifier::from_lookup(|_| Some(value), PID);
            assert!(matches!(r, Err(NotifyError::Address(_))), "{value:?}");
        }
    }

    #[test]
    fn watchdog_interval_is_half_the_period_for_our_pid_only() {
        let pid = PID.to_string();
        let check = |usec, owner, expect: Option<u64>| {
            let got = watchdog_interval(usec, owner, PID);
            assert_eq!(got, expect.map(Duration::from_micros), "{usec:?} {owner:?}");
        };
        check(Some("30000000"), None, Some(15_000_000));
        check(Some("30000000"), Some(&pid), Some(15_000_000));
        check(Some("30000000"), Some("1"), None);
        check(Some("30000000"), Some("not-a-pid"), None);
        check(Some("0"), None, None);
        check(Some("soon"), None, None);
        check(Some("-5"), None, None);
        check(None, Some(&pid), None);
    }
}
