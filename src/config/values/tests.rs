use super::*;

fn prefix(s: &str) -> Prefix {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `prefix` contains each of `inside` and none of `outside`.
fn check(p: &str, inside: &[&str], outside: &[&str]) {
    let p = prefix(p);
    for a in inside {
        assert!(p.contains(ip(a)), "{p} should contain {a}");
    }
    for a in outside {
        assert!(!p.contains(ip(a)), "{p} should not contain {a}");
    }
}

#[test]
fn prefixes_match_their_addresses() {
    check("192.168.0.0/16", &["192.168.0.1", "192.168.255.255"], &["192.169.0.0", "10.0.0.1", "::1"]);
    check("10.0.0.0/8", &["10.0.0.0", "10.255.255.255"], &["11.0.0.0", "9.255.255.255"]);
    check("192.168.1.7/32", &["192.168.1.7"], &["192.168.1.6", "192.168.1.8"]);
    check("192.168.1.7", &["192.168.1.7"], &["192.168.1.6"]);
    check("0.0.0.0/0", &["0.0.0.0", "255.255.255.255", "127.0.0.1"], &["::1", "fe80::1"]);
    check("::/0", &["::1", "fe80::1", "2001:db8::1"], &["127.0.0.1"]);
    check("fd00::/8", &["fd12:3456::1"], &["fe80::1", "fc00::1"]);
    check("2001:db8::1/128", &["2001:db8::1"], &["2001:db8::2"]);
    check("2001:db8::1", &["2001:db8::1"], &["2001:db8::2"]);
    check("2001:db8::/33", &["2001:db8:7fff::1"], &["2001:db8:8000::1"]);
    check("10.1.2.0/23", &["10.1.2.1", "10.1.3.255"], &["10.1.4.0", "10.1.1.255"]);
}

#[test]
fn ipv4_mapped_peers_match_ipv4_prefixes() {
    // How a dual-stack listener reports an IPv4 peer.
    check("192.168.0.0/16", &["::ffff:192.168.4.2"], &["::ffff:10.0.0.1"]);
    check("127.0.0.1", &["::ffff:127.0.0.1"], &["::ffff:127.0.0.2"]);
    check("0.0.0.0/0", &["::ffff:8.8.8.8"], &[]);
    // A mapped prefix is the IPv4 prefix it names.
    assert_eq!(prefix("::ffff:10.0.0.0/104"), prefix("10.0.0.0/8"));
    assert_eq!(prefix("::ffff:0.0.0.0/96"), prefix("0.0.0.0/0"));
    check("::ffff:10.0.0.0/104", &["10.9.8.7", "::ffff:10.9.8.7"], &["11.0.0.1"]);
    // An IPv6 prefix other than the mapped range never matches an IPv4 peer.
    check("::/1", &["::2"], &["::ffff:1.2.3.4", "1.2.3.4"]);
}

#[test]
fn bad_prefixes_are_refused_with_a_reason() {
    for (text, want) in [
        ("10.0.0.0/33", "prefix length must be 0 to 32"),
        ("::/129", "prefix length must be 0 to 128"),
        ("10.0.0.0/", "prefix length"),
        ("10.0.0.0/+8", "prefix length"),
        ("10.0.0.0/08x", "prefix length"),
        ("10.0.0.0/-1", "prefix length"),
        ("10.0.0.1/8", "host bits set: write \"10.0.0.0/8\" for the network or \"10.0.0.1/32\""),
        ("2001:db8::1/32", "write \"2001:db8::/32\" for the network or \"2001:db8::1/128\""),
        ("10.0.0/8", "not an IP address"),
        ("lan", "not an IP address"),
        ("", "not an IP address"),
        ("[::1]/128", "not an IP address"),
        ("192.168.0.0/16/1", "prefix length"),
    ] {
        let err = text.parse::<Prefix>().unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn prefixes_print_as_they_parse() {
    for (text, shown) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.0.0.7", "10.0.0.7/32"),
        ("fd00::/8", "fd00::/8"),
        ("::1", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ] {
        assert_eq!(prefix(text).to_string(), shown);
        assert_eq!(prefix(shown), prefix(text));
    }
}
