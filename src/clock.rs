//! The wall clock, in one place: unix time as the books, the metrics and the
//! page count it. A clock before 1970 reads as 0 (the books refuse events
//! stamped before their floor, so such a clock books nothing).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds with a fraction.
pub fn unix_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time now, in whole seconds.
pub fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
