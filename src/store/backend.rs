//! Where redb's pages go: the books' file, counted, or memory.
//!
//! [`Counted`] wraps any storage and counts what the books cost the medium
//! under them: bytes handed to the kernel and `fdatasync` calls, the two
//! figures an SD card wears out by. They are shown in the metrics
//! (`stratum_store_bytes_written_total`, `stratum_store_syncs_total`).
//!
//! [`Ram`] keeps the whole database in one buffer, for `store.mode = "ram"`:
//! the books are written to their file whole ([`save`]), never page by page.

use std::fs::File;
use std::io::{self, Write as _};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{BackendError, StorageBackend};

/// The error type of a backend's I/O methods (redb without `experimental-api-5`).
type BackendIoError = io::Error;

/// What the books wrote to their storage since the daemon started.
#[derive(Debug, Default)]
pub struct StoreIo {
    /// Bytes written.
    pub bytes: AtomicU64,
    /// `fdatasync` calls (durable commits, and snapshots in RAM mode).
    pub syncs: AtomicU64,
}

impl StoreIo {
    /// Counts `n` bytes written.
    pub fn wrote(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one sync.
    pub fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// A storage backend whose writes and syncs are counted in a [`StoreIo`].
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    io: Arc<StoreIo>,
}

impl<B: StorageBackend> Counted<B> {
    /// Counts `inner`'s writes and syncs in `io`.
    pub fn new(inner: B, io: Arc<StoreIo>) -> Self {
        Counted { inner, io }
    }
}

impl<B: StorageBackend> StorageBackend for Counted<B> {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        self.io.synced();
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.io.wrote(data.len() as u64);
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// The whole database in memory, shareable with the writer so that it can
/// write the image ([`Ram::with_image`]) between commits.
#[derive(Debug, Clone, Default)]
pub struct Ram {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Ram {
    /// Memory holding `image` (a database file read whole, or nothing).
    pub fn new(image: Vec<u8>) -> Ram {
        Ram { bytes: Arc::new(Mutex::new(image)) }
    }

    /// Runs `f` on the database as it stands. Between commits these bytes
    /// are the file redb would have written: they open as that last commit.
    pub fn with_image<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        f(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while the lock was held cannot leave a torn buffer that
        // matters more than losing the books: take it as it is.
        self.bytes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn out_of_range() -> BackendIoError {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the books in memory")
}

impl StorageBackend for Ram {
    fn len(&self) -> Result<u64, BackendIoError> {
        Ok(self.lock().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        let bytes = self.lock();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(out.len()).ok_or_else(out_of_range)?;
        out.copy_from_slice(bytes.get(start..end).ok_or_else(out_of_range)?);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.lock().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let mut bytes = self.lock();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(data.len()).ok_or_else(out_of_range)?;
        bytes.get_mut(start..end).ok_or_else(out_of_range)?.copy_from_slice(data);
        Ok(())
    }
}

/// Writes `image` to `path` so that a power cut leaves either the old file
/// or the new one, never a mix: a temporary file beside it, synced, locked
/// (as the old one was), renamed over it, and the directory synced. The new
/// file is created 0600; it is returned so that its lock stays held. Once
/// the rename is done the save stands (a failed directory sync is logged).
pub fn save(path: &Path, image: &[u8], io: &StoreIo) -> io::Result<File> {
    // Nobody else knows the temporary file: the lock cannot be taken
    // elsewhere, and if it could not be taken the save still stands.
    let lock = |file: &mut File, _: &Path| {
        let _ = file.try_lock();
        Ok(())
    };
    replace(path, image, io, lock).map(|(file, ())| file)
}

/// [`save`]'s steps, with `ready` run on the synced temporary file (and its
/// path) before the rename: its error leaves `path` as it was.
pub fn replace<T>(
    path: &Path,
    image: &[u8],
    io: &StoreIo,
    ready: impl FnOnce(&mut File, &Path) -> io::Result<T>,
) -> io::Result<(File, T)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A file of that name left by an earlier run goes (a symlink is removed,
    // not followed); then the file is ours alone: created here, 0600.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let renamed = file.write_all(image).and_then(|()| file.sync_data()).and_then(|()| {
        io.wrote(image.len() as u64);
        io.synced();
        let made = ready(&mut file, &tmp)?;
        std::fs::rename(&tmp, path).map(|()| made)
    });
    let made = match renamed {
        Ok(made) => made,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => io.synced(),
        Err(e) => log::warn!("books: saved, but syncing {} failed: {e}", dir.display()),
    }
    Ok((file, made))
}
