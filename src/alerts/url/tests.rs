use super::*;

/// Parses `input` as an MQTT address when it starts with `mqtt`, else as a
/// webhook address. `Ok(shown)`: a webhook's `Display`, or a broker's
/// `Display` then its decoded user and password; `Err(part)`: part of the
/// error. No error may show a password (the tables use "secret" for one),
/// and a webhook address prints as it parses.
fn check(input: &str, expect: Result<&str, &str>) {
    let got = if input.to_ascii_lowercase().starts_with("mqtt") {
        MqttUrl::parse(input).map(|u| format!("{u} user={:?} password={:?}", u.username(), u.password()))
    } else {
        HttpUrl::parse(input).map(|url| {
            let again = HttpUrl::parse(&url.to_string());
            assert_eq!(again.as_ref(), Ok(&url), "{input:?} does not print as it parses");
            url.to_string()
        })
    };
    match (&got, expect) {
        (Ok(shown), Ok(want)) => assert_eq!(shown, want, "{input:?}"),
        (Err(err), Err(part)) => {
            assert!(err.contains(part), "{input:?}: error {err:?} should contain {part:?}");
            assert!(!err.contains("secret"), "{input:?}: error {err:?} shows the password");
        }
        _ => panic!("{input:?}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn webhook_addresses_parse_with_defaults() {
    check("http://192.168.1.10:8123/api/webhook/abc", Ok("http://192.168.1.10:8123/api/webhook/abc"));
    check("http://example.lan", Ok("http://example.lan:80/"));
    check("http://example.lan/", Ok("http://example.lan:80/"));
    check("http://example.lan?token=x&y=1", Ok("http://example.lan:80/?token=x&y=1"));
    check("http://example.lan:8080/a/b?c=d", Ok("http://example.lan:8080/a/b?c=d"));
    check("HTTP://Host.Lan/a", Ok("http://Host.Lan:80/a"));
    check("http://[::1]:8080/hook", Ok("http://[::1]:8080/hook"));
    check("http://[fe80::1]/x", Ok("http://[fe80::1]:80/x"));
    check("http://gateway_1.lan:65535/%20x", Ok("http://gateway_1.lan:65535/%20x"));
    check("http://h/a@b:c", Ok("http://h:80/a@b:c"));
}

#[test]
fn webhook_addresses_that_cannot_be_sent_are_refused() {
    check(
        "https://example.com/",
        Err("https is not supported (no TLS in the gateway); use http:// on the LAN"),
    );
    check("HTTPS://example.com/", Err("https is not supported"));
    check("ftp://h/", Err("scheme \"ftp\" is not supported for a webhook: use http://"));
    check("example.com/hook", Err("a webhook address starts with http://"));
    check("", Err("a webhook address starts with http://"));
    check("http://user:secret@h/", Err("user:password@ is not supported"));
    check("http://user@h/", Err("user:password@ is not supported"));
    check("http:///path", Err("has no host"));
    check("http://", Err("has no host"));
    check("http://:80/", Err("has no host"));
    check("http://::1/", Err("has no host"));
    for port in ["0", "65536", "", "+80", "8o", "-1", "99999999999"] {
        check(&format!("http://h:{port}/"), Err("the port must be a number from 1 to 65535"));
    }
    check("http://h/a b", Err("contains ' '"));
    check("http://h/a\r\nX-Injected: y", Err("contains '\\r'"));
    check("http://h/a\tb", Err("contains '\\t'"));
    check("http://h/\0", Err("contains '\\0'"));
    check("http://hé.lan/", Err("contains 'é'"));
    check("http://h/a#frag", Err("a fragment (#...) is never sent"));
    check("http://h#frag", Err("a fragment (#...) is never sent"));
    check("http://[::1/", Err("misses its ']'"));
    check("http://[nothost]:80/", Err("\"nothost\" is not an IPv6 address"));
    check("http://[::1]x/", Err("expected ':port' after the IPv6 address"));
    check("http://exa%6Dple/", Err("is not a host name"));
    check("http://a,b/", Err("is not a host name"));
}

#[test]
fn broker_addresses_parse_with_user_and_password() {
    check("mqtt://broker.lan", Ok("mqtt://broker.lan:1883 user=None password=None"));
    check("mqtt://broker.lan:1884/", Ok("mqtt://broker.lan:1884 user=None password=None"));
    check("MQTT://h", Ok("mqtt://h:1883 user=None password=None"));
    check("mqtt://[::1]:1883", Ok("mqtt://[::1]:1883 user=None password=None"));
    check(
        "mqtt://ha:s3cret@192.168.1.5",
        Ok("mqtt://ha:***@192.168.1.5:1883 user=Some(\"ha\") password=Some(\"s3cret\")"),
    );
    check("mqtt://ha@h", Ok("mqtt://ha@h:1883 user=Some(\"ha\") password=None"));
    check("mqtt://ha:@h", Ok("mqtt://ha:***@h:1883 user=Some(\"ha\") password=Some(\"\")"));
    check(
        "mqtt://me%40home:p%40ss%3Aw%2Ford@h:1884",
        Ok("mqtt://me%40home:***@h:1884 user=Some(\"me@home\") password=Some(\"p@ss:w/ord\")"),
    );
    // Everything up to the last '@' is user and password.
    check("mqtt://u:p@s/s#@h", Ok("mqtt://u:***@h:1883 user=Some(\"u\") password=Some(\"p@s/s#\")"));
    check("mqtt://u:a:b@h", Ok("mqtt://u:***@h:1883 user=Some(\"u\") password=Some(\"a:b\")"));
    check("mqtt://%C3%A9mile@h", Ok("mqtt://émile@h:1883 user=Some(\"émile\") password=None"));
}

#[test]
fn broker_addresses_that_cannot_be_used_are_refused() {
    check("mqtts://h", Err("mqtts is not supported (no TLS in the gateway); use mqtt:// on the LAN"));
    check("mqtts://u:secret@h", Err("mqtts is not supported"));
    // (check takes anything not starting with "mqtt" for a webhook.)
    let other = MqttUrl::parse("tcp://h:1883").unwrap_err();
    assert_eq!(other, "scheme \"tcp\" is not supported for a broker: use mqtt://");
    check("mqtt://h/alerts", Err("the topic is set separately"));
    check("mqtt://u:secret@h/alerts", Err("the topic is set separately"));
    check("mqtt://h?x", Err("the topic is set separately"));
    check("mqtt://:secret@h", Err("the user name before '@' is empty"));
    check("mqtt://u:secret%zz@h", Err("the password has a '%' not followed by two hex digits"));
    check("mqtt://u:secret%4@h", Err("the password has a '%' not followed by two hex digits"));
    check("mqtt://u%00:secret@h", Err("the user name holds a control character"));
    check("mqtt://u:secret%ff@h", Err("the password is not UTF-8"));
    check("mqtt://u:secret@h:99999", Err("the port must be a number from 1 to 65535"));
    check("mqtt://u:sec ret@h", Err("contains ' '"));
    check("mqtt://u:secret\n@h", Err("contains '\\n'"));
    check("mqtt://", Err("has no host"));
    check("mqtt://u:secret@", Err("has no host"));
    check("mqtt://u:secret@:1883", Err("has no host"));
}

#[test]
fn a_broker_password_never_prints() {
    let url = MqttUrl::parse("mqtt://ha:secret@broker.lan").unwrap();
    assert_eq!(url.to_string(), "mqtt://ha:***@broker.lan:1883");
    assert_eq!(format!("{url:?}"), "MqttUrl(mqtt://ha:***@broker.lan:1883)");
    assert_eq!(url.password(), Some("secret"));
    assert_eq!((url.address().host(), url.address().port()), ("broker.lan", 1883));
    assert_eq!(url.address().to_string(), "broker.lan:1883");
}

#[test]
fn webhook_accessors_give_the_parts() {
    let url = HttpUrl::parse("http://[::1]:8123/api/webhook/x?y=1").unwrap();
    assert_eq!(
        (url.address().host(), url.address().port(), url.path_and_query()),
        ("::1", 8123, "/api/webhook/x?y=1")
    );
    assert_eq!(url.address().to_string(), "[::1]:8123");
}
