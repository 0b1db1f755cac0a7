//! The listening sockets: handed over by systemd (socket activation,
//! `sd_listen_fds(3)`), or bound by the daemon itself.
//!
//! Under `loka-stratum.socket`, systemd binds the Stratum and metrics ports
//! and passes them as descriptors 3, 4, … with `$LISTEN_PID` (our pid),
//! `$LISTEN_FDS` (their count) and `$LISTEN_FDNAMES`. systemd keeps its own
//! copy open while the service restarts or is upgraded, so a miner that
//! connects meanwhile waits in the kernel's backlog for the next process
//! instead of being refused.
//!
//! Which socket serves what: the one whose address is the config's
//! `server.bind_address` serves miners and the one at `metrics.bind_address`
//! serves HTTP (`0.0.0.0` is matched by a dual-stack `[::]`, never by an
//! IPv6-only one). When an address matches none (the config was edited, the
//! socket unit not), the sockets are taken in the unit's order, Stratum
//! first, with a warning naming both addresses: a port that systemd holds
//! must be served, or connections to it would wait forever. For the same
//! reason a socket left over (more than two) stops the daemon with a message
//! naming it.
//!
//! Invariant: descriptors are taken only when `$LISTEN_PID` is this process,
//! each exactly once, and only after checking that each is a listening TCP
//! socket; anything else stops the daemon with a message naming it, without
//! closing a descriptor it does not own.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// At most this many descriptors are accepted: the Stratum and metrics
/// ports, with room for a unit that lists each on IPv4 and IPv6.
pub const MAX_FDS: usize = 8;

/// Why the sockets systemd passed cannot be used.
#[derive(Debug)]
pub enum ListenError {
    /// `$LISTEN_FDS` is not a number between 1 and [`MAX_FDS`].
    Count(String),
    /// Sockets the config names for nothing: nobody would accept on them.
    Unused(Vec<SocketAddr>),
    /// Descriptor `fd` is not a listening TCP socket.
    NotListening {
        /// The descriptor.
        fd: RawFd,
        /// Its name from `$LISTEN_FDNAMES`, when given.
        name: String,
        /// What was wrong with it.
        source: io::Error,
    },
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Count(v) => write!(f, "LISTEN_FDS={v:?} is not a count between 1 and {MAX_FDS}"),
            ListenError::Unused(addrs) => {
                f.write_str("systemd passed more sockets than loka-stratum serves (one for Stratum, one for metrics):")?;
                for a in addrs {
                    write!(f, " {a}")?;
                }
                f.write_str(" would be served by nobody; keep one ListenStream= each in loka-stratum.socket")
            }
            ListenError::NotListening { fd, name, .. } => {
                write!(f, "descriptor {fd} ({name}) passed by systemd is not a listening TCP socket")
            }
        }
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenError::Count(_) | ListenError::Unused(_) => None,
            ListenError::NotListening { source, .. } => Some(source),
        }
    }
}

/// A descriptor systemd passed: its number and its name
/// (`FileDescriptorName=`, `unknown` when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The descriptor number.
    pub fd: RawFd,
    /// Its name.
    pub name: String,
}

/// The descriptors passed to process `pid`, from variables looked up by
/// `lookup`: none when `$LISTEN_PID` is absent or names another process
/// (the variables were inherited, not meant for us).
pub fn passed<F, V>(lookup: F, pid: u32) -> Result<Vec<Passed>, ListenError>
where
    F: Fn(&str) -> Option<V>,
    V: AsRef<OsStr>,
{
    let text = |name: &str| lookup(name).map(|v| v.as_ref().to_string_lossy().into_owned());
    let for_us = text("LISTEN_PID").and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid);
    let Some(count) = text("LISTEN_FDS").filter(|_| for_us) else { return Ok(Vec::new()) };
    let n = match count.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_FDS).contains(&n) => n,
        _ => return Err(ListenError::Count(count)),
    };
    let names = text("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    Ok((0..n)
        .map(|i| Passed {
            fd: FIRST_FD + i as RawFd,
            name: names.next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_string(),
        })
        .collect())
}

/// The sockets systemd passed to this process, checked and owned; empty when
/// the daemon was not socket-activated.
pub fn inherited() -> Result<Vec<TcpListener>, ListenError> {
    let lookup = |name: &str| std::env::var_os(name);
    passed(lookup, std::process::id())?.into_iter().map(take).collect()
}

/// Takes ownership of one passed descriptor, once checked to be a listening
/// TCP socket; marks it close-on-exec (systemd passes it inheritable).
fn take(p: Passed) -> Result<TcpListener, ListenError> {
    let wrong = |source| ListenError::NotListening { fd: p.fd, name: p.name.clone(), source };
    // SAFETY: systemd passed descriptors FIRST_FD.. to this very process
    // (`passed` checked $LISTEN_PID), nothing else in the process knows of
    // them, and `inherited` is called once, first thing at start, so each is
    // owned once. One that fails the checks is released, not closed: with a
    // wrong $LISTEN_FDS it may be a descriptor that is not ours.
    let fd = unsafe { OwnedFd::from_raw_fd(p.fd) };
    match check(&fd) {
        Ok(()) => Ok(TcpListener::from(fd)),
        Err(e) => {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
            Err(wrong(e))
        }
    }
}

/// Whether `fd` is a listening TCP socket; marks it close-on-exec.
fn check(fd: &OwnedFd) -> io::Result<()> {
    use rustix::net::{SocketType, sockopt};
    let kind = sockopt::socket_type(fd)?;
    let listening = sockopt::socket_acceptconn(fd)?;
    if kind != SocketType::STREAM || !listening {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a listening stream socket"));
    }
    // A Unix stream socket passes the checks above; only TCP has an IP address.
    match rustix::net::getsockname(fd)? {
        a if SocketAddr::try_from(a.clone()).is_ok() => {}
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a TCP socket")),
    }
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

/// What each passed socket serves.
#[derive(Debug, Default)]
pub struct Assigned {
    /// The Stratum listener, when systemd passed one.
    pub stratum: Option<TcpListener>,
    /// The metrics listener, when systemd passed one.
    pub metrics: Option<TcpListener>,
    /// Sockets left over once both roles are served; the daemon refuses to
    /// run with any ([`ListenError::Unused`]).
    pub unused: Vec<SocketAddr>,
    /// Warnings to log: a configured address systemd does not listen on.
    pub warnings: Vec<String>,
}

/// Whether a socket bound at `bound` serves the configured address `want`:
/// the same port, and the same IP, or `want` is `0.0.0.0` and `bound` a
/// dual-stack `[::]` (not `v6_only`), which takes IPv4 connections too.
pub fn serves(bound: SocketAddr, v6_only: bool, want: SocketAddr) -> bool {
    let dual_stack_for_v4 = bound.ip().is_unspecified() && bound.is_ipv6() && !v6_only && want.is_ipv4();
    bound.port() == want.port()
        && (bound.ip() == want.ip() || (dual_stack_for_v4 && want.ip().is_unspecified()))
}

/// Whether `l` is an IPv6 socket that takes IPv6 connections only.
fn v6_only(l: &TcpListener) -> bool {
    rustix::net::sockopt::ipv6_v6only(l).unwrap_or(false)
}

/// Sorts `sockets` into the Stratum and metrics listeners: by address first,
/// then, for a role whose configured address none of them has, the first
/// one left (the socket unit's order: Stratum, then metrics).
pub fn assign(sockets: Vec<TcpListener>, stratum: SocketAddr, metrics: SocketAddr) -> Assigned {
    let mut left: Vec<(SocketAddr, TcpListener)> =
        sockets.into_iter().filter_map(|l| Some((l.local_addr().ok()?, l))).collect();
    let mut take_matching = |want: SocketAddr| {
        let i = left.iter().position(|(a, l)| serves(*a, a.is_ipv6() && v6_only(l), want))?;
        Some(left.remove(i))
    };
    let stratum_match = take_matching(stratum);
    let metrics_match = take_matching(metrics);
    let mut out = Assigned::default();
    let mut fallback = |found: Option<(SocketAddr, TcpListener)>, what: &str, key: &str, want: SocketAddr| {
        if found.is_some() || left.is_empty() {
            return found.map(|(_, l)| l);
        }
        let (addr, l) = left.remove(0);
        out.warnings.push(format!(
            "{key} is {want}, but systemd passed no socket there; serving {what} on {addr}, \
             which the socket unit holds (change its ListenStream= with `systemctl edit loka-stratum.socket`)"
        ));
        Some(l)
    };
    let stratum_l = fallback(stratum_match, "miners", "server.bind_address", stratum);
    let metrics_l = fallback(metrics_match, "metrics", "metrics.bind_address", metrics);
    out.stratum = stratum_l;
    out.metrics = metrics_l;
    out.unused = left.iter().map(|(a, _)| *a).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn nothing_without_listen_pid_or_for_another_process() {
        assert!(passed(env(&[]), 42).unwrap().is_empty());
        assert!(passed(env(&[("LISTEN_FDS", "2")]), 42).unwrap().is_empty());
        assert!(passed(env(&[("LISTEN_PID", "41"), ("LISTEN_FDS", "2")]), 42).unwrap().is_empty());
        assert!(passed(env(&[("LISTEN_PID", "42")]), 42).unwrap().is_empty());
    }

    #[test]
    fn descriptors_from_three_with_names() {
        let got =
            passed(env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "a:b")]), 42).unwrap();
        assert_eq!(got, vec![Passed { fd: 3, name: "a".into() }, Passed { fd: 4, name: "b".into() }]);
        let got =
            passed(env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "3"), ("LISTEN_FDNAMES", "a")]), 42).unwrap();
        assert_eq!(got.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a", "unknown", "unknown"]);
        assert_eq!(got[2].fd, 5);
    }

    #[test]
    fn a_bad_count_is_an_error_naming_it() {
        for bad in ["0", "-1", "x", "9", "99999999999999999999"] {
            let e = passed(env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", bad)]), 42).unwrap_err();
            assert!(e.to_string().contains(&format!("LISTEN_FDS={bad:?}")), "{e}");
        }
    }

    fn bound() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[test]
    fn sockets_are_matched_by_address_whatever_their_order() {
        let ((s, sa), (m, ma)) = (bound(), bound());
        let got = assign(vec![m, s], sa, ma);
        assert_eq!(got.stratum.unwrap().local_addr().unwrap(), sa);
        assert_eq!(got.metrics.unwrap().local_addr().unwrap(), ma);
        assert!(got.warnings.is_empty() && got.unused.is_empty());
    }

    #[test]
    fn an_unmatched_address_takes_the_unit_order_and_warns() {
        let ((s, sa), (m, ma)) = (bound(), bound());
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let got = assign(vec![s, m], elsewhere, ma);
        assert_eq!(got.stratum.unwrap().local_addr().unwrap(), sa);
        assert_eq!(got.metrics.unwrap().local_addr().unwrap(), ma);
        assert_eq!(got.warnings.len(), 1);
        assert!(got.warnings[0].contains("server.bind_address is 127.0.0.1:1"), "{}", got.warnings[0]);
        assert!(got.warnings[0].contains(&sa.to_string()), "{}", got.warnings[0]);
    }

    #[test]
    fn one_socket_serves_miners_and_the_daemon_binds_metrics() {
        let (s, sa) = bound();
        let got = assign(vec![s], sa, "127.0.0.1:1".parse().unwrap());
        assert!(got.stratum.is_some() && got.metrics.is_none() && got.warnings.is_empty());
    }

    #[test]
    fn extra_sockets_are_reported_unused() {
        let ((s, sa), (m, ma), (_x, xa)) = (bound(), bound(), bound());
        let got = assign(vec![s, m, _x], sa, ma);
        assert_eq!(got.unused, vec![xa]);
    }

    #[test]
    fn wildcard_addresses_match_by_family_and_dual_stack() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(a("0.0.0.0:3333"), false, a("0.0.0.0:3333")));
        // A dual-stack [::] takes IPv4 connections too; an IPv6-only one not.
        assert!(serves(a("[::]:3333"), false, a("0.0.0.0:3333")));
        assert!(!serves(a("[::]:3333"), true, a("0.0.0.0:3333")));
        // 0.0.0.0 never takes IPv6 connections.
        assert!(!serves(a("0.0.0.0:3333"), false, a("[::]:3333")));
        assert!(serves(a("[::]:3333"), true, a("[::]:3333")));
        assert!(!serves(a("0.0.0.0:3334"), false, a("0.0.0.0:3333")));
        assert!(!serves(a("127.0.0.1:3333"), false, a("0.0.0.0:3333")));
    }

    #[test]
    fn v6_only_reads_the_socket_option() {
        let Ok(any) = TcpListener::bind("[::]:0") else { return }; // no IPv6 on this host
        let system_default = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").unwrap_or_default();
        assert_eq!(v6_only(&any), system_default.trim() == "1");
        let (v4, _) = bound();
        assert!(!v6_only(&v4));
    }

    #[test]
    fn an_ipv6_only_socket_for_an_ipv4_config_is_served_with_a_warning() {
        let Ok(v6) = TcpListener::bind("[::1]:0") else { return }; // no IPv6 on this host
        let port = v6.local_addr().unwrap().port();
        let want: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let got = assign(vec![v6], want, "127.0.0.1:1".parse().unwrap());
        assert!(got.stratum.is_some());
        assert!(got.warnings[0].contains("server.bind_address is 127.0.0.1"), "{:?}", got.warnings);
    }
}
