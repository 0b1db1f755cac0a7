//! The control socket: how the CLI reaches the books while the daemon holds
//! the redb file's lock. A Unix socket beside the store file, mode 0600, so
//! only the local host (and the daemon's user or root) can reach it. One
//! command line in, the answer text out, then the connection closes.
//!
//! An answer is `ok` or `error` on a line, then the text. The one binary
//! answer, to [`BACKUP`], is `ok LENGTH` on a line, then that many bytes:
//! the books file (a reader can tell a whole copy from a cut one).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use smol::LocalExecutor;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::rt::Timer;

use super::queue::Recorder;
use super::writer::{Command, Msg};

/// Longest command line read, in bytes.
const MAX_COMMAND_BYTES: u64 = 1024;
/// Time a client has, and the writer has to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The command line asking for a copy of the books file.
pub const BACKUP: &str = "backup";

/// The control socket's path for the store at `store`.
pub fn socket_path(store: &Path) -> PathBuf {
    store.with_extension("sock")
}

/// Binds the control socket, replacing a stale one.
pub fn bind(path: &Path) -> io::Result<crate::rt::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    // bind() creates the socket with the umask's mode: with 0177 it is 0600
    // from its first instant, where a chmod after bind would leave a moment
    // in which anyone could connect. The umask is per process; no other
    // thread creates files at this point (the writer only writes the books).
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = crate::rt::UnixListener::bind_unix(path);
    rustix::process::umask(previous);
    bound
}

/// Answers CLI commands until the listener fails.
pub async fn serve(listener: crate::rt::UnixListener, recorder: Recorder, ex: Rc<LocalExecutor<'static>>) {
    loop {
        let Ok(stream) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let recorder = recorder.clone();
        ex.spawn(async move {
            let work = answer(stream, recorder);
            let timed = crate::net::within(TIMEOUT, work, || io::ErrorKind::TimedOut.into());
            if let Err(e) = timed.await {
                log::debug!("control client: {e}");
            }
        })
        .detach();
    }
}

async fn answer(stream: crate::rt::UnixStream, recorder: Recorder) -> io::Result<()> {
    let mut line = String::new();
    smol::io::BufReader::new(&stream).take(MAX_COMMAND_BYTES).read_line(&mut line).await?;
    // The status line, then the text (or the books file's bytes).
    let reply = match line.trim() {
        BACKUP => {
            ask_writer(&recorder, Msg::Snapshot).await.map(|image| (format!("ok {}\n", image.len()), image))
        }
        line => match Command::from_line(line) {
            Err(e) => Err(e),
            Ok(cmd) => ask_writer(&recorder, |tx| Msg::Command(cmd, tx))
                .await
                .map(|text| ("ok\n".to_string(), text.into_bytes())),
        },
    };
    let (head, body) = reply.unwrap_or_else(|e| (format!("error\n{e}\n"), Vec::new()));
    let mut stream = stream;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await
}

/// Sends the writer the message `make` builds around a reply channel; its
/// answer.
async fn ask_writer<T>(
    recorder: &Recorder,
    make: impl FnOnce(smol::channel::Sender<Result<T, String>>) -> Msg,
) -> Result<T, String> {
    let (tx, rx) = smol::channel::bounded(1);
    if recorder.send(make(tx)) {
        rx.recv().await.unwrap_or_else(|_| Err("the books are closed".into()))
    } else {
        Err("the books are busy; try again".into())
    }
}

/// Outcome of asking a running daemon.
#[derive(Debug)]
pub enum Asked {
    /// No daemon listens on the socket.
    NotRunning,
    /// The daemon's answer: the text, or its error message.
    Answer(Result<String, String>),
}

/// Sends `command` to the daemon behind `socket` (blocking, for the CLI).
pub fn ask(socket: &Path, command: &Command) -> io::Result<Asked> {
    let Some((status, mut reader)) = send(socket, &command.to_line())? else { return Ok(Asked::NotRunning) };
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    Ok(Asked::Answer(match status.trim() {
        "ok" => Ok(rest),
        _ => Err(rest.trim().to_string()),
    }))
}

/// Asks the daemon behind `socket` for a copy of the books file (blocking,
/// for the CLI): `None` when no daemon listens, else its bytes or the
/// daemon's error. A copy cut short is an error.
pub fn fetch_backup(socket: &Path) -> io::Result<Option<Result<Vec<u8>, String>>> {
    let Some((status, mut reader)) = send(socket, BACKUP)? else { return Ok(None) };
    let Some(len) = status.trim().strip_prefix("ok ") else {
        let mut rest = String::new();
        reader.read_to_string(&mut rest)?;
        return Ok(Some(Err(rest.trim().to_string())));
    };
    let len: u64 = len.parse().map_err(|_| io::Error::other(format!("bad answer {status:?}")))?;
    let mut image = Vec::new();
    reader.take(len).read_to_end(&mut image)?;
    if image.len() as u64 != len {
        return Err(io::Error::other(format!("the copy was cut short: {} of {len} bytes", image.len())));
    }
    Ok(Some(Ok(image)))
}

/// Sends one command line; the answer's status line and the rest, or
/// `None` when no daemon listens on `socket`.
fn send(socket: &Path, line: &str) -> io::Result<Option<(String, BufReader<UnixStream>)>> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    writeln!(stream, "{line}")?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if status.is_empty() {
        return Err(io::Error::other("the daemon closed the connection without an answer (busy for 30 s?)"));
    }
    Ok(Some((status, reader)))
}
