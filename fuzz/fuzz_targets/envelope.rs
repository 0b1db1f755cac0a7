//! Any bytes through the envelope scanner and every typed accessor: no panic,
//! and every span it reports is a value that parses again on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loka_stratum::stratum::{self, Envelope};

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::parse(data) else { return };
    let _ = env.method();
    let _ = env.has_id();
    let _ = stratum::error_code(env.error());
    for part in [env.id(), env.params(), env.result(), env.error()].into_iter().flatten() {
        // A reported span is a complete JSON value: wrapped in an object it parses.
        let mut wrapped = b"{\"v\":".to_vec();
        wrapped.extend_from_slice(part);
        wrapped.push(b'}');
        assert!(Envelope::parse(&wrapped).is_ok());
        for (_, item) in stratum::items(part) {
            let _ = stratum::plain_str(item);
            let _ = stratum::text(item);
            let _ = stratum::number(item);
            let _ = stratum::boolean(item);
        }
        stratum::members(part, |_, _| {});
    }
});
