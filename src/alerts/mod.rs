//! Alerts: the sinks that carry an alert off the gateway, a webhook
//! ([`webhook`], one HTTP POST) and an MQTT broker ([`mqtt`]), and the
//! addresses they are configured with ([`url`]).
//!
//! Invariant: a sink never panics on what a server sends and never waits
//! unbounded; every failure is a [`SinkError`] naming the address involved.

use std::fmt;
use std::io;
use std::time::Duration;

pub mod home;
pub mod mqtt;
pub mod outbox;
pub mod rules;
pub mod url;
pub mod watch;
pub mod webhook;

/// Why a sink could not deliver, one variant per failing step.
#[derive(Debug)]
pub enum SinkError {
    /// The TCP connection could not be opened.
    Connect {
        /// The address dialled, `host:port`.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// The server did not finish answering in time.
    TimedOut {
        /// The server's address, `host:port`.
        address: String,
        /// The time allowed.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    Io {
        /// The server's address, `host:port`.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// The webhook answered with a status other than 2xx.
    Status {
        /// The URL posted to.
        url: String,
        /// The HTTP status code.
        code: u16,
    },
    /// The MQTT broker refused the connection (its CONNACK return code).
    Refused {
        /// The broker's address, `host:port`.
        address: String,
        /// The return code in words, e.g. "not authorized".
        reason: String,
    },
    /// The server sent something this client does not understand, or
    /// closed the connection early.
    Protocol {
        /// The server's address, `host:port`.
        address: String,
        /// What was wrong.
        what: &'static str,
    },
    /// Something to send is longer than the protocol allows.
    TooLong {
        /// What is too long, e.g. "MQTT topic".
        what: &'static str,
        /// Its length, in bytes.
        bytes: usize,
        /// The longest allowed, in bytes.
        max_bytes: usize,
    },
    /// A header given for the webhook cannot be sent as it is.
    Header {
        /// The header's name.
        name: String,
        /// Why not.
        reason: &'static str,
    },
    /// A value given by the caller cannot be sent, e.g. a topic with a
    /// wildcard.
    Invalid {
        /// What the value is, e.g. "MQTT topic".
        what: &'static str,
        /// The value.
        value: String,
        /// Why not.
        reason: &'static str,
    },
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Connect { address, .. } => write!(f, "cannot connect to {address}"),
            SinkError::TimedOut { address, after } => {
                write!(f, "{address} did not answer within {} ms", after.as_millis())
            }
            SinkError::Io { address, .. } => write!(f, "connection to {address} failed"),
            SinkError::Status { url, code } => write!(f, "{url} answered with HTTP status {code}"),
            SinkError::Refused { address, reason } => write!(f, "{address} refused the connection: {reason}"),
            SinkError::Protocol { address, what } => write!(f, "{address}: {what}"),
            SinkError::TooLong { what, bytes, max_bytes } => {
                write!(f, "{what} is {bytes} bytes long, more than the {max_bytes} allowed")
            }
            SinkError::Header { name, reason } => write!(f, "header {name:?}: {reason}"),
            SinkError::Invalid { what, value, reason } => write!(f, "{what} {value:?}: {reason}"),
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Connect { source, .. } | SinkError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An error and its causes, `: `-separated, for the one log line a failing
/// sink gets.
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}
