//! Any text as a config file: an error or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loka_stratum::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::from_toml(text) {
            let _ = config.validate();
            let _ = config.to_toml();
        }
    }
});
