//! The startup trim on a live process (this test's own): it unmaps resident
//! pages of the program and libraries, what it unmapped still runs, and a
//! mapping with a page of its own (copied on write) keeps that page. One
//! test in its own binary, so no other test thread maps pages back between
//! the readings.

use std::io::Write;

use loka_stratum::trim::{self, Startup};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

fn resident_kib() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    trim::trimmable(&smaps).iter().map(|t| t.resident_kib).sum()
}

/// A private mapping of `file`'s first page: read-only, or written once
/// (one byte set to `b'W'`, so the page is copied) and made read-only.
fn map(file: &std::fs::File, written: bool) -> &'static [u8] {
    let prot = if written { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
    // SAFETY: a new private mapping of a 4 KiB file we own, never unmapped
    // (leaked for the test); only this test touches it.
    unsafe {
        let at =
            rustix::mm::mmap(std::ptr::null_mut(), 4096, prot, MapFlags::PRIVATE, file, 0).expect("mmap");
        if written {
            *(at as *mut u8) = b'W';
            rustix::mm::mprotect(at, 4096, MprotectFlags::READ).expect("mprotect");
        }
        std::slice::from_raw_parts(at as *const u8, 4096)
    }
}

#[test]
fn trimming_unmaps_file_pages_keeps_copied_ones_and_the_code_still_runs() {
    let work = || format!("{:?} {}", loka_stratum::worker::display_login("rig.1\u{7f}"), 1.5f64.sqrt());
    let expected = work();
    let dir = std::env::temp_dir().join(format!("loka-trim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("page");
    std::fs::File::create(&path).unwrap().write_all(&[b'f'; 4096]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let (clean, copied) = (map(&file, false), map(&file, true));
    assert_eq!((clean[0], copied[0]), (b'f', b'W'));

    // Both mappings exist when the mappings are recorded: only what smaps
    // shows at the trim tells the copied one apart.
    let startup = Startup::record().expect("record");
    assert!(!startup.is_empty());
    let before = resident_kib();
    assert!(before > 0, "a running test has resident pages of its program");
    let unmapped = startup.trim().expect("trim");
    assert!(unmapped > 0 && unmapped <= before + 1024, "unmapped {unmapped} KiB of {before}");
    let after = resident_kib();
    assert!(after < before, "resident file pages: {before} KiB before the trim, {after} KiB after");

    // The copied page keeps what was written; the clean one reads the file.
    assert_eq!((clean[0], copied[0]), (b'f', b'W'));
    // Code and read-only data that were unmapped come back on use.
    assert_eq!(work(), expected);
    let _ = std::fs::remove_dir_all(&dir);
}
