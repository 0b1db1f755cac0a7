//! Giving back the pages that only starting used.
//!
//! Most of an idle daemon's resident memory is not its own data but pages of
//! the program file and the shared libraries, mapped in while it started:
//! the config parser, the store's open and migrations, the logger, the CLI.
//! A fault maps a whole window of the file around the page it needs (64 KiB
//! by default, a whole large folio on newer kernels), so touching scattered
//! startup code maps nearly all of a 2 MiB program. Those pages are clean
//! copies of the file.
//!
//! Once the daemon serves, [`Startup::trim`] unmaps the clean file pages of
//! the program and the libraries it was started with: `madvise(DONTNEED)`
//! on each private, read-only mapping of a file that holds no page of its
//! own (no copy-on-write page, which `DONTNEED` would throw away). Nothing
//! is lost: a page that is needed again is mapped back from the page cache
//! on first use (a minor fault, no disk read while the kernel keeps it), so
//! after a trim the resident set holds what serving runs, not what starting
//! ran. Pages of libc that other processes map stay in memory for them;
//! only this process stops counting them.
//!
//! Only mappings recorded by [`Startup::record`] (before any thread of ours
//! runs) are trimmed, at the address they had then: those are mapped by
//! the loader at exec, never written, moved or unmapped afterwards. A
//! mapping made later (a library another thread loads, a file a backtrace
//! maps and unmaps) could change between reading `/proc/self/smaps` and the
//! `madvise`; it is left alone.

use std::collections::HashSet;
use std::io;

/// A mapping that may be unmapped: its address range and file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trimmable {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// The file's device (`major:minor` as one number) and inode.
    pub file: (u64, u64),
    /// Resident KiB when it was read.
    pub resident_kib: u64,
}

impl Trimmable {
    fn key(&self) -> (usize, usize, (u64, u64)) {
        (self.start, self.end, self.file)
    }
}

/// The mappings of `smaps` (the text of `/proc/self/smaps`) that hold only
/// unmodified pages of a file: private, not writable, backed by a path, and
/// with no anonymous (copied-on-write), swapped or locked page. Mappings
/// with nothing resident are left out.
pub fn trimmable(smaps: &str) -> Vec<Trimmable> {
    let mut found = Vec::new();
    let mut current: Option<Entry> = None;
    for line in smaps.lines() {
        if let Some(next) = Entry::parse(line) {
            found.extend(current.replace(next).and_then(Entry::done));
            continue;
        }
        let (Some(entry), Some((key, kib))) = (current.as_mut(), field_kib(line)) else { continue };
        match key {
            "Rss" => entry.range.resident_kib = kib,
            "Anonymous" => {
                entry.anonymous_seen = true;
                entry.eligible &= kib == 0;
            }
            // Locked pages are wanted resident; swapped ones are anonymous.
            "Locked" | "Swap" => entry.eligible &= kib == 0,
            _ => {}
        }
    }
    found.extend(current.and_then(Entry::done));
    found
}

/// One mapping of `smaps` while its fields are read.
struct Entry {
    range: Trimmable,
    /// What the header allows; the fields may still forbid it.
    eligible: bool,
    /// Without an `Anonymous` field nothing shows that no page was copied.
    anonymous_seen: bool,
}

impl Entry {
    /// `start-end perms offset dev inode path` (the path may hold spaces
    /// and end in ` (deleted)`).
    fn parse(line: &str) -> Option<Entry> {
        let mut parts = line.splitn(6, ' ');
        let (start, end) = parts.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let perms = parts.next()?.as_bytes();
        if perms.len() != 4 || end <= start {
            return None;
        }
        let _offset = u64::from_str_radix(parts.next()?, 16).ok()?;
        let (major, minor) = parts.next()?.split_once(':')?;
        let dev = (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?;
        let inode: u64 = parts.next()?.parse().ok()?;
        let path = parts.next().unwrap_or("").trim_start();
        let eligible = perms[1] == b'-'
            && perms[3] == b'p'
            && inode != 0
            && path.starts_with('/')
            && !path.ends_with(" (deleted)");
        let range = Trimmable { start, end, file: (dev, inode), resident_kib: 0 };
        Some(Entry { range, eligible, anonymous_seen: false })
    }

    /// The range, when the whole mapping may be trimmed and something of it
    /// is resident.
    fn done(self) -> Option<Trimmable> {
        (self.eligible && self.anonymous_seen && self.range.resident_kib > 0).then_some(self.range)
    }
}

/// `Key:   123 kB`.
fn field_kib(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let value = rest.trim().strip_suffix("kB")?.trim();
    Some((key, value.parse().ok()?))
}

/// `/proc/self/<name>` as text (a path that is not UTF-8 is replaced, not
/// an error: only its first byte, `/`, matters here).
fn proc_self(name: &str) -> io::Result<String> {
    let bytes = std::fs::read(format!("/proc/self/{name}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The read-only private file mappings a process had when it started: the
/// only ones [`Startup::trim`] touches.
#[derive(Debug, Default)]
pub struct Startup {
    mappings: HashSet<(usize, usize, (u64, u64))>,
}

impl Startup {
    /// Records the mappings now. Call it before starting any thread, so
    /// every mapping recorded is one the loader made at exec.
    pub fn record() -> io::Result<Startup> {
        let maps = proc_self("maps")?;
        let mappings =
            maps.lines().filter_map(Entry::parse).filter(|e| e.eligible).map(|e| e.range.key()).collect();
        Ok(Startup { mappings })
    }

    /// Mappings recorded.
    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// Unmaps the resident pages of the recorded mappings that still only
    /// mirror their file ([`trimmable`]); returns the KiB resident in them.
    pub fn trim(&self) -> io::Result<u64> {
        let smaps = proc_self("smaps")?;
        let mut kib = 0;
        for t in trimmable(&smaps).into_iter().filter(|t| self.mappings.contains(&t.key())) {
            // SAFETY: the range is a whole mapping the loader made at exec
            // (recorded before any other thread ran, and found again at the
            // same address with the same file), private and not writable,
            // and it held no anonymous page just now. No code of ours
            // changes the protection of, writes to, or unmaps such a mapping,
            // so every resident page is an unmodified page of its file,
            // which DONTNEED unmaps and the next access maps back with the
            // same contents. No Rust reference is invalidated: the memory
            // keeps its contents.
            let result = unsafe {
                rustix::mm::madvise(
                    t.start as *mut core::ffi::c_void,
                    t.end - t.start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
            match result {
                Ok(()) => kib += t.resident_kib,
                Err(e) => log::debug!("madvise {:#x}-{:#x}: {e}", t.start, t.end),
            }
        }
        Ok(kib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55e00000-55e60000 r--p 00000000 fe:00 5406914                    /usr/bin/loka-stratum
Rss:                 256 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
55e60000-56060000 r-xp 00060000 fe:00 5406914                    /usr/bin/loka-stratum
Rss:                1892 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
56060000-56070000 r--p 00260000 fe:00 5406914                    /usr/bin/loka-stratum
Rss:                  52 kB
Anonymous:            52 kB
Swap:                  0 kB
Locked:                0 kB
56070000-56072000 rw-p 00270000 fe:00 5406914                    /usr/bin/loka-stratum
Rss:                   8 kB
Anonymous:             8 kB
56100000-56200000 rw-p 00000000 00:00 0                          [heap]
Rss:                 144 kB
Anonymous:           144 kB
7f000000-7f100000 r-xp 00028000 fe:00 1234                       /usr/lib/libc.so.6
Rss:                 884 kB
Anonymous:             4 kB
7f200000-7f300000 r--s 00000000 fe:00 99                         /var/lib/shared.db
Rss:                  64 kB
Anonymous:             0 kB
7f400000-7f410000 r-xp 00000000 fe:00 77                         /opt/old (deleted)
Rss:                  64 kB
Anonymous:             0 kB
7f500000-7f510000 r-xp 00000000 fe:00 78                         /opt/unread
Rss:                   0 kB
Anonymous:             0 kB
7f600000-7f610000 r-xp 00000000 fe:00 79                         /opt/locked
Rss:                  64 kB
Anonymous:             0 kB
Locked:               64 kB
7f700000-7f710000 r-xp 00000000 fe:00 80                         /opt/no-anonymous-field
Rss:                  64 kB
7f800000-7f810000 r-xp 00000000 fe:01 81                         /opt/with space/lib.so
Rss:                  16 kB
Anonymous:             0 kB
7ffc0000-7ffc2000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_unmodified_private_read_only_file_pages_are_trimmed() {
        let found = trimmable(SMAPS);
        assert_eq!(
            found,
            [
                Trimmable {
                    start: 0x55e00000,
                    end: 0x55e60000,
                    file: (0xfe << 32, 5406914),
                    resident_kib: 256
                },
                Trimmable {
                    start: 0x55e60000,
                    end: 0x56060000,
                    file: (0xfe << 32, 5406914),
                    resident_kib: 1892
                },
                Trimmable {
                    start: 0x7f800000,
                    end: 0x7f810000,
                    file: (0xfe << 32 | 1, 81),
                    resident_kib: 16
                },
            ]
        );
    }

    #[test]
    fn garbage_and_empty_input_trim_nothing() {
        assert!(trimmable("").is_empty());
        assert!(trimmable("not smaps\nRss: 4 kB\nAnonymous: 0 kB\n").is_empty());
        assert!(trimmable("zz-10 r-xp 0 fe:00 1 /x\nRss: 4 kB\nAnonymous: 0 kB\n").is_empty());
    }
}
