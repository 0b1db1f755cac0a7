//! Log lines for journald: a syslog priority prefix (`<3>`..`<7>`) instead of
//! a timestamp, so `journalctl -p warning` filters by level and the journal's
//! own timestamps are not doubled.
//!
//! Invariant: every line written carries a prefix, including the second and
//! later lines of a multi-line message (journald reads its stream line by
//! line and would file them at the default priority otherwise).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use log::Level;

/// The syslog priority journald reads from a `<N>` prefix: error is `3`
/// (LOG_ERR), warn `4` (LOG_WARNING), info `6` (LOG_INFO), debug and trace
/// `7` (LOG_DEBUG).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `msg` as journal lines: each line prefixed with the priority of `level`,
/// ending in a newline, no timestamp.
pub fn format_for_journal(level: Level, msg: impl fmt::Display) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_journal_line(&mut out, level, msg);
    out
}

/// Like [`format_for_journal`], into any `fmt::Write`.
pub fn write_journal_line(out: &mut impl fmt::Write, level: Level, msg: impl fmt::Display) -> fmt::Result {
    let text = msg.to_string();
    let p = priority(level);
    for line in text.split('\n') {
        writeln!(out, "<{p}>{line}")?;
    }
    Ok(())
}

/// Like [`format_for_journal`], into an `io::Write` such as env_logger's
/// formatter: `builder.format(|buf, r| journal::write_record(buf, r.level(), r.args()))`.
pub fn write_record(out: &mut impl io::Write, level: Level, msg: &fmt::Arguments<'_>) -> io::Result<()> {
    out.write_all(format_for_journal(level, msg).as_bytes())
}

/// A terminal log line: `[2026-11-25T18:49:00Z INFO  target] message`.
/// Written by hand so the binary carries no date-time library.
pub fn write_terminal_record(out: &mut impl io::Write, record: &log::Record<'_>) -> io::Result<()> {
    let secs = crate::clock::unix_secs();
    let day = crate::store::Day((secs / 86_400) as u32);
    let t = secs % 86_400;
    writeln!(
        out,
        "[{day}T{:02}:{:02}:{:02}Z {:<5} {}] {}",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        record.level(),
        record.target(),
        record.args()
    )
}

/// Whether stderr is connected to journald: `$JOURNAL_STREAM` is set and names
/// the device and inode of our stderr (a redirected stderr under a unit keeps
/// the variable but not the stream).
pub fn under_journald() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else { return false };
    var.to_str().is_some_and(|var| is_stream(io::stderr().as_fd(), var))
}

/// Whether `fd` is the stream that `$JOURNAL_STREAM`'s value `var` names.
fn is_stream(fd: BorrowedFd<'_>, var: &str) -> bool {
    let Ok(fd) = fd.try_clone_to_owned() else { return false };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => stream_matches(var, meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names this stream.
pub fn stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else { return false };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        let check = |level, expect| assert_eq!(format_for_journal(level, "pool up"), expect);
        check(Level::Error, "<3>pool up\n");
        check(Level::Warn, "<4>pool up\n");
        check(Level::Info, "<6>pool up\n");
        check(Level::Debug, "<7>pool up\n");
        check(Level::Trace, "<7>pool up\n");
    }

    #[test]
    fn every_line_of_a_message_is_prefixed() {
        let msg = format_args!("listening on {}\npool {}", "0.0.0.0:3333", "pool.example:3333");
        assert_eq!(
            format_for_journal(Level::Warn, msg),
            "<4>listening on 0.0.0.0:3333\n<4>pool pool.example:3333\n"
        );
    }

    #[test]
    fn no_timestamp_and_exact_text() {
        let line = format_for_journal(Level::Info, r#"{"id":1,"method":"mining.subscribe","params":[]}"#);
        assert_eq!(line, "<6>{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n");
    }

    #[test]
    fn write_record_matches_format() {
        let mut buf = Vec::new();
        write_record(&mut buf, Level::Error, &format_args!("cannot listen on {}", 3333)).unwrap();
        assert_eq!(buf, b"<3>cannot listen on 3333\n");
    }

    #[test]
    fn journal_stream_names_device_and_inode() {
        assert!(stream_matches("8:12345", 8, 12345));
        assert!(stream_matches("8:12345\n", 8, 12345));
        assert!(!stream_matches("8:12346", 8, 12345));
        assert!(!stream_matches("9:12345", 8, 12345));
        assert!(!stream_matches("", 8, 12345));
        assert!(!stream_matches("8", 8, 12345));
        assert!(!stream_matches("x:y", 8, 12345));
    }

    #[test]
    fn the_named_stream_is_recognised_by_its_descriptor() {
        let path = std::env::temp_dir().join(format!("loka-journal-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let var = format!("{}:{}", meta.dev(), meta.ino());
        assert!(is_stream(file.as_fd(), &var));
        assert!(!is_stream(file.as_fd(), &format!("{}:{}", meta.dev(), meta.ino() + 1)));
        // Our stderr is a terminal or a pipe, not this file.
        assert!(!is_stream(io::stderr().as_fd(), &var));
        drop(file);
        let _ = std::fs::remove_file(&path);
    }
}
