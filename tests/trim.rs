//! The startup trim on a live process (this test's own): it unmaps resident
//! pages of the program and libraries, and what it unmapped still runs.
//! One test in its own binary, so no other test thread maps pages back
//! between the two readings.

use loka_stratum::trim;

fn resident_kib() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    trim::trimmable(&smaps).iter().map(|t| t.resident_kib).sum()
}

#[test]
fn trimming_unmaps_file_pages_and_the_code_still_runs() {
    let work = || format!("{:?} {}", loka_stratum::worker::display_login("rig.1\u{7f}"), 1.5f64.sqrt());
    let expected = work();
    let before = resident_kib();
    assert!(before > 0, "a running test has resident pages of its program");
    let unmapped = trim::startup_pages().expect("trim");
    assert!(unmapped > 0 && unmapped <= before + 1024, "unmapped {unmapped} KiB of {before}");
    let after = resident_kib();
    assert!(after < before, "resident file pages: {before} KiB before the trim, {after} KiB after");
    // Code and read-only data that were unmapped come back on use.
    assert_eq!(work(), expected);
}
