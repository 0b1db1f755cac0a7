//! The control socket: how the CLI reaches the books while the daemon holds
//! the redb file's lock. A Unix socket beside the store file, mode 0600, so
//! only the local host (and the daemon's user or root) can reach it. One
//! command line in, the answer text out, then the connection closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::{LocalExecutor, Timer};

use super::Recorder;
use super::writer::{Command, Msg};

/// Longest command line read, in bytes.
const MAX_COMMAND_BYTES: u64 = 1024;
/// Time a client has, and the writer has to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The control socket's path for the store at `store`.
pub fn socket_path(store: &Path) -> PathBuf {
    store.with_extension("sock")
}

/// Binds the control socket, replacing a stale one.
pub fn bind(path: &Path) -> io::Result<async_net::unix::UnixListener> {
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
    let bound = async_net::unix::UnixListener::bind(path);
    rustix::process::umask(previous);
    bound
}

/// Answers CLI commands until the listener fails.
pub async fn serve(
    listener: async_net::unix::UnixListener,
    recorder: Recorder,
    ex: Rc<LocalExecutor<'static>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
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

async fn answer(stream: async_net::unix::UnixStream, recorder: Recorder) -> io::Result<()> {
    let mut line = String::new();
    smol::io::BufReader::new(stream.clone()).take(MAX_COMMAND_BYTES).read_line(&mut line).await?;
    let reply = match Command::from_line(line.trim()) {
        Err(e) => Err(e),
        Ok(cmd) => {
            let (tx, rx) = smol::channel::bounded(1);
            if recorder.send(Msg::Command(cmd, tx)) {
                rx.recv().await.unwrap_or_else(|_| Err("the books are closed".into()))
            } else {
                Err("the books are busy; try again".into())
            }
        }
    };
    let text = match reply {
        Ok(text) => format!("ok\n{text}"),
        Err(e) => format!("error\n{e}\n"),
    };
    let mut stream = stream;
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await
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
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Ok(Asked::NotRunning);
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    writeln!(stream, "{}", command.to_line())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    Ok(Asked::Answer(match status.trim() {
        "ok" => Ok(rest),
        _ => Err(rest.trim().to_string()),
    }))
}
