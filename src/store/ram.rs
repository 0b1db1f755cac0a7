//! `store.mode = "ram"`: the books live in memory ([`Ram`]) and are written
//! whole to `store.path` every `store.flush_interval` and on shutdown, never
//! page by page: for a read-only root, or books kept on a USB SSD.
//!
//! Invariants: the file at `store.path` is always a whole redb file, the
//! last one saved (a save is a rename over it); while the daemon runs it
//! holds the file's lock, so no second daemon and no CLI opens it behind its
//! back; a save only happens between commits, so the image is consistent.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::{Ram, StoreIo, save};
use super::db::{StoreError, open_private};

/// The file behind books in memory, and its lock.
#[derive(Debug)]
pub struct Keeper {
    path: PathBuf,
    /// The file as last loaded or saved, kept open for its lock.
    held: File,
    /// The books in memory.
    ram: Ram,
    io: Arc<StoreIo>,
    /// Whether a commit landed since the last save.
    dirty: bool,
}

impl Keeper {
    /// Reads the books at `path` into memory (none yet: empty books) and
    /// locks the file. A file another process holds is refused; one that
    /// cannot be read (missing directory, no permission) is an error that
    /// [`StoreError::is_storage`] calls worth retrying. A symlink is
    /// followed once, so that saves replace the file it points to (books on
    /// a USB SSD stay there), not the link.
    pub fn load(path: &Path, io: Arc<StoreIo>) -> Result<Keeper, StoreError> {
        let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut file = open_private(path)?;
        let image = read_under_lock(&mut file, path, " (another loka-stratum, or the CLI)")?;
        Ok(Keeper { path: path.into(), held: file, ram: Ram::new(image), io, dirty: false })
    }

    /// The books in memory.
    pub fn ram(&self) -> &Ram {
        &self.ram
    }

    /// The file the books are saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notes that a commit landed: the next [`Keeper::save`] writes.
    pub fn committed(&mut self) {
        self.dirty = true;
    }

    /// Writes the books to their file if a commit landed since the last
    /// save; `Ok(false)` when there was nothing to write. Call between
    /// commits only.
    pub fn save(&mut self) -> Result<bool, StoreError> {
        if !self.dirty {
            return Ok(false);
        }
        let saved = self.ram.with_image(|image| save(&self.path, image, &self.io));
        let file = saved.map_err(|e| StoreError::Save { path: self.path.clone(), source: e })?;
        self.held = file;
        self.dirty = false;
        Ok(true)
    }
}

/// Takes `file`'s lock (the one redb takes: no daemon commits to it while
/// held) and reads it whole. A lock held elsewhere is refused, naming `path`
/// and then `holders` (who may hold it).
pub(super) fn read_under_lock(file: &mut File, path: &Path, holders: &str) -> Result<Vec<u8>, StoreError> {
    let failed = |e: io::Error| StoreError::Open { path: path.into(), source: e.into() };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Refused(format!(
                "{} is held by another process{holders}",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
    }
    let mut image = Vec::new();
    file.read_to_end(&mut image).map_err(failed)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{Books, PoolSetting, Setting};
    use crate::store::{Day, Event, Outcome};

    fn setting() -> Setting {
        let pool =
            PoolSetting { name: "p".into(), address: "p.example:3333".into(), username: "acct".into() };
        Setting { pools: vec![pool], settlement: 0, keep_raw_secs: 172_800, max_new_workers_per_day: 64 }
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loka-ram-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const T0: u64 = 1_764_000_000;

    fn share(login: &str, at: u64) -> Event {
        let login = crate::worker::display_login(login);
        Event::Share { login, outcome: Outcome::Accepted(2.0), check: None, pool: 0, at_ms: at * 1000 }
    }

    /// Books in memory touch the file only when saved; the saved file opens
    /// as ordinary books with everything committed before the save, and a
    /// save with nothing new writes nothing.
    #[test]
    fn books_in_memory_are_written_only_when_saved() {
        let dir = dir("save");
        let path = dir.join("books.redb");
        let io = Arc::new(StoreIo::default());
        let mut keeper = Keeper::load(&path, io.clone()).unwrap();
        let mut books = Books::with_backend(keeper.ram().clone(), setting(), &path).unwrap();
        books.commit(&[share("a.rig", T0)], T0).unwrap();
        keeper.committed();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "nothing written before a save");
        assert!(keeper.save().unwrap());
        let written = io.bytes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(written, std::fs::metadata(&path).unwrap().len());
        assert!(!keeper.save().unwrap(), "nothing new: no write");
        books.commit(&[share("a.rig", T0 + 1)], T0).unwrap();
        // The lock is held: neither a second daemon nor redb opens the file.
        assert!(matches!(Keeper::load(&path, Default::default()), Err(StoreError::Refused(_))));
        assert!(Books::open(&path, setting()).is_err());
        drop((books, keeper));
        // Only what was saved is on the file.
        let books = Books::open(&path, setting()).unwrap();
        let day = Day::of(T0, 0);
        assert_eq!(books.day_totals(day).unwrap()[0].2.accepted, 1);
        drop(books);
        // And it loads back into memory, as it was.
        let keeper = Keeper::load(&path, Default::default()).unwrap();
        let books = Books::with_backend(keeper.ram().clone(), setting(), &path).unwrap();
        assert_eq!(books.day_totals(day).unwrap()[0].2.accepted, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A daemon in file mode holds the file: RAM mode refuses it, and the
    /// other way round.
    #[test]
    fn file_and_ram_mode_exclude_each_other() {
        let dir = dir("lock");
        let path = dir.join("books.redb");
        let books = Books::open(&path, setting()).unwrap();
        assert!(matches!(Keeper::load(&path, Default::default()), Err(StoreError::Refused(_))));
        drop(books);
        let keeper = Keeper::load(&path, Default::default()).unwrap();
        assert!(Books::open(&path, setting()).is_err());
        drop(keeper);
        assert!(Books::open(&path, setting()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
