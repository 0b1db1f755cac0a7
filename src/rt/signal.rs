//! Signals as a stream on the reactor: each handler writes its signal's
//! number to a socket pair (a write is async-signal-safe), read here.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use smol::io::AsyncReadExt;

use super::Async;

/// The signals asked for, delivered in order of arrival.
pub struct Signals {
    reader: Async<UnixStream>,
    ids: Vec<signal_hook_registry::SigId>,
}

impl Signals {
    /// Catches `signals` (raw numbers, `rustix::process::Signal::as_raw`)
    /// from now on, until dropped.
    pub fn new(signals: &[i32]) -> io::Result<Signals> {
        let (reader, writer) = UnixStream::pair()?;
        writer.set_nonblocking(true)?;
        let writer = Arc::new(writer);
        let mut caught = Signals { reader: Async::new(reader)?, ids: Vec::new() };
        for &signal in signals {
            let writer = writer.clone();
            let byte = u8::try_from(signal)
                .map_err(|_| io::Error::other(format!("signal {signal} out of range")))?;
            let action = move || {
                // A full socket drops the signal's byte: the ones already
                // queued are enough to act on.
                let _ = (&*writer).write(&[byte]);
            };
            // SAFETY: the action only calls write(2) on a nonblocking socket,
            // which is async-signal-safe, and touches no lock or allocation.
            let id = unsafe { signal_hook_registry::register(signal, action) }?;
            caught.ids.push(id);
        }
        Ok(caught)
    }

    /// The next signal caught.
    pub async fn next(&mut self) -> io::Result<i32> {
        let mut byte = [0u8; 1];
        match (&self.reader).read(&mut byte).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(i32::from(byte[0])),
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
}
