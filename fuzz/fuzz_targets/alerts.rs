//! What a broker or a webhook server sends back, and the sink addresses a
//! config file gives: any bytes, no panic; a decoded MQTT packet never
//! claims more bytes than it was given, and every packet the stream holds is
//! taken in turn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loka_stratum::alerts::url::{HttpUrl, MqttUrl};
use loka_stratum::alerts::{mqtt, webhook};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((_, used))) = mqtt::decode(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
    if let Ok(Some(code)) = webhook::status(data) {
        assert!((100..=599).contains(&code));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = HttpUrl::parse(text) {
            // What it prints parses again to the same address.
            assert_eq!(HttpUrl::parse(&url.to_string()).ok(), Some(url));
        }
        let _ = MqttUrl::parse(text);
    }
});
