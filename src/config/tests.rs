use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
}

#[test]
fn example_is_the_defaults() {
    let parsed = Config::from_toml(EXAMPLE).unwrap();
    assert_eq!(parsed, Config::default());
    parsed.validate().unwrap();
}

#[test]
fn file_errors_name_line_and_key() {
    let err = Config::from_toml("[pool]\nname = \"x\"\naddress = \"pool.example\"\n").unwrap_err();
    assert!(err.contains("line 3, key pool.address"), "{err}");
    assert!(err.contains("no port"), "{err}");
    let err = Config::from_toml("[pool]\nadress = \"a:1\"\n").unwrap_err();
    assert!(err.contains("line 2, key pool.adress") && err.contains("unknown field"), "{err}");
    let err = Config::from_toml("[limiter]\njobs = \"10\"\n").unwrap_err();
    assert!(err.contains("jobs") && err.contains("unit"), "{err}");
    let err = Config::from_toml("[sever]\n").unwrap_err();
    assert!(err.contains("sever"), "{err}");
}

#[test]
fn env_overrides_file() {
    let c = Config::load(
        None,
        env(&[("LOKA_POOL_ADDRESS", "127.0.0.1:4444"), ("LOKA_SERVER_IDLE_TIMEOUT", "5m")]),
    )
    .unwrap();
    assert_eq!(c.pool.address.to_string(), "127.0.0.1:4444");
    assert_eq!(c.server.idle_timeout.0, Duration::from_secs(300));
    let err = Config::load(None, env(&[("LOKA_POOL_ADRESS", "x")])).unwrap_err().to_string();
    assert!(err.contains("LOKA_POOL_ADRESS") && err.contains("unknown"), "{err}");
    let err = Config::load(None, env(&[("LOKA_POOL_ADDRESS", "host")])).unwrap_err().to_string();
    assert!(err.contains("no port"), "{err}");
    assert!(Config::load(None, env(&[("LOKA_LOG", "x")])).is_ok());
}

#[test]
fn allow_list_from_file_and_env() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(Config::default().server.allows(ip("203.0.113.9")), "empty lets anyone in");
    let c =
        Config::from_toml("[server]\nallow = [\"192.168.0.0/16\", \"fd00::/8\", \"10.0.0.1\"]\n").unwrap();
    assert!(c.server.allows(ip("192.168.1.2")) && c.server.allows(ip("::ffff:192.168.1.2")));
    assert!(c.server.allows(ip("10.0.0.1")) && !c.server.allows(ip("10.0.0.2")));
    assert!(c.server.allows(ip("fd00::5")) && !c.server.allows(ip("127.0.0.1")));
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    let e = Config::load(None, env(&[("LOKA_SERVER_ALLOW", "192.168.0.0/16, 10.0.0.0/8")])).unwrap();
    assert_eq!(e.server.allow, [c.server.allow[0], "10.0.0.0/8".parse().unwrap()]);
    let e = Config::load(None, env(&[("LOKA_SERVER_ALLOW", "")])).unwrap();
    assert!(e.server.allow.is_empty());
    let err = Config::load(None, env(&[("LOKA_SERVER_ALLOW", "10.0.0.0/8,10.0.0.0/33")])).unwrap_err();
    assert!(err.to_string().starts_with("LOKA_SERVER_ALLOW: \"10.0.0.0/33\": prefix length"), "{err}");
}

#[test]
fn allow_list_errors_name_line_and_key() {
    let err = Config::from_toml("[server]\nallow = [\"10.0.0.1/8\"]\n").unwrap_err();
    assert!(err.contains("line 2, key server.allow") && err.contains("host bits"), "{err}");
    let text = "[server]\nallow = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\nmax_connections = 5\n";
    let err = Config::from_toml(text).unwrap_err();
    assert!(
        err.contains("line 2, key server.allow")
            && err.contains("\"10.0.0.0/33\": prefix length must be 0 to 32"),
        "{err}"
    );
    // A syntax error inside a multi-line array is on a line of its own.
    let err = Config::from_toml("[server]\nallow = [\n  \"10.0.0.0/8\",\n  10.0.0.0/8,\n]\n").unwrap_err();
    assert!(err.contains("line 4, key server.allow"), "{err}");
    // A stray line after a closed array is not blamed on the array.
    let err = Config::from_toml("[server]\nallow = [\n  \"10.0.0.0/8\",\n]\nstray\n").unwrap_err();
    assert!(err.contains("line 5") && !err.contains("server.allow"), "{err}");
}

#[test]
fn addresses() {
    assert!("[::1]:3333".parse::<HostPort>().is_ok());
    assert!("::1:3333".parse::<HostPort>().is_err());
    assert!("host:0".parse::<HostPort>().is_err());
    assert!("host:".parse::<HostPort>().is_err());
    assert!("0.0.0.0".parse::<BindAddr>().is_err());
    assert!("127.0.0.1:0".parse::<BindAddr>().is_ok());
    let p: HostPort = "Pool.Example:3333".parse().unwrap();
    assert!(p.matches("pool.example:3333"));
    assert!(!p.matches("pool.example:3334"));
}

#[test]
fn show_round_trips_with_the_password_masked() {
    let mut c = Config::load(None, env(&[("LOKA_POOL_PASSWORD", "d=1024")])).unwrap();
    assert_eq!(c.pool.password.as_ref().map(|p| p.0.as_str()), Some("d=1024"));
    let shown = c.to_toml();
    assert!(!shown.contains("d=1024") && shown.contains("password = \"********\""), "{shown}");
    assert!(!format!("{c:?}").contains("d=1024"));
    c.pool.password = Some(Secret(MASK.into()));
    assert_eq!(Config::from_toml(&shown).unwrap(), c);
    let err = Config::load(None, env(&[("LOKA_POOL_PASSWORD", "d=1024 x")])).unwrap_err().to_string();
    assert!(err.contains("LOKA_POOL_PASSWORD") && !err.contains("d=1024"), "{err}");
}

/// `[pool]` named "main" and two fallbacks, "b" and "c"; the second table
/// starts at line 11 with `address = "{c_address}"` at line 12, `name` at
/// line 13 and `extra` from line 14.
fn two_fallbacks(c_address: &str, extra: &str) -> String {
    format!(
        "[pool]\nname = \"main\"\naddress = \"a.example:3333\"\n\n\
         [[pool.fallback]]\naddress = \"b.example:3333\"\nname = \"b\"\n\
         username = \"acct\"\npassword = \"pw-b\"\n\n\
         [[pool.fallback]]\naddress = \"{c_address}\"\nname = \"c\"\n{extra}"
    )
}

/// Parses and validates `text`, as the commands do with a file.
fn checked(text: &str) -> Result<Config, String> {
    let config = Config::from_toml(text)?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// `text` is refused with a message containing each of `expect`.
fn refused(text: &str, expect: &[&str]) {
    let Err(err) = checked(text) else { panic!("accepted:\n{text}") };
    for part in expect {
        assert!(err.contains(part), "{part:?} not in {err:?}\nfor:\n{text}");
    }
}

#[test]
fn fallbacks_parse_in_order() {
    let c = checked(&two_fallbacks("c.example:3334", "")).unwrap();
    let pools = c.pools();
    let found: Vec<_> = pools.iter().map(|p| format!("{} {}", p.name, p.address)).collect();
    assert_eq!(found, ["main a.example:3333", "b b.example:3333", "c c.example:3334"]);
    assert_eq!(pools[1].username.0, "acct");
    assert_eq!(pools[1].password.as_ref().map(|p| p.0.as_str()), Some("pw-b"));
    // Left out: logins pass through, with the miner's password.
    assert_eq!((pools[2].username.0.as_str(), &pools[2].password), ("", &None));
    assert_eq!(pools[2].separator, [Plain(".".into()), Plain("_".into())]);
    assert_eq!(c.pool.fallback.len(), 2);
    // Without fallbacks, the one target is [pool].
    let d = Config::default();
    let only = d.pools();
    assert_eq!(only.len(), 1);
    assert_eq!(
        (&only[0].address, &only[0].name, &only[0].separator),
        (&d.pool.address, &d.pool.name, &d.pool.separator)
    );
}

#[test]
fn fallback_errors_name_the_table_key_and_line() {
    refused(&two_fallbacks("c.example", ""), &["line 12, key pool.fallback[1].address:", "no port"]);
    refused(
        &two_fallbacks("c.example:3334", "adress = \"x:1\"\n"),
        &["line 14, key pool.fallback[1].adress:", "unknown field `adress`"],
    );
    refused(
        &two_fallbacks("c.example:3334", "notify_timeout = \"1s\"\n"),
        &["line 14, key pool.fallback[1].notify_timeout:", "unknown field"],
    );
    refused(
        &two_fallbacks("c.example:3334", "separator = [\n  \".\",\n  \"a b\",\n]\n"),
        &["line 14, key pool.fallback[1].separator:", "\"a b\" contains ' '"],
    );
    // A missing key is reported at the table's header.
    let no_address =
        "[[pool.fallback]]\nname = \"b\"\naddress = \"b:1\"\n\n[[pool.fallback]]\nname = \"c\"\n";
    refused(no_address, &["line 5, key pool.fallback[1]:", "missing field `address`"]);
    refused(
        "[[pool.fallback]]\naddress = \"b:1\"\n",
        &["line 1, key pool.fallback[0]:", "missing field `name`"],
    );
    // Spaces in the header, and [pool] again after its fallbacks.
    refused("[[ pool . fallback ]]\nname = \"b\"\naddress = 3\n", &["line 3, key pool.fallback[0].address:"]);
    refused(
        "[[pool.fallback]]\nname = \"b\"\naddress = \"b:1\"\n[pool]\nretry_max = \"60\"\n",
        &["line 5, key pool.retry_max:", "unit"],
    );
    // One table instead of a list of them.
    refused("[pool.fallback]\nname = \"b\"\naddress = \"b:1\"\n", &["line 1, key pool.fallback:"]);
}

#[test]
fn pool_names_are_unique() {
    refused(
        &two_fallbacks("c.example:3334", "").replace("name = \"c\"", "name = \"main\""),
        &["setting pool.fallback[1].name:", "\"main\" is already the name of pool.name"],
    );
    refused(
        &two_fallbacks("c.example:3334", "").replace("name = \"c\"", "name = \"b\""),
        &["setting pool.fallback[1].name:", "of pool.fallback[0].name"],
    );
    // LOKA_POOL_NAME renames the primary into a clash too.
    let mut c = checked(&two_fallbacks("c.example:3334", "")).unwrap();
    c.apply_env(env(&[("LOKA_POOL_NAME", "b")])).unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.starts_with("setting pool.fallback[0].name: \"b\" is already the name of pool.name"),
        "{err}"
    );
}

#[test]
fn fallback_values_are_checked_like_the_primary() {
    refused(
        &two_fallbacks("c.example:3334", "separator = [\".\", \"_____\"]\n"),
        &["setting pool.fallback[1].separator:", "at most 4"],
    );
    assert!(checked(&two_fallbacks("c.example:3334", "separator = [\"-\", \"____\"]\n")).is_ok());
    refused(&two_fallbacks("c.example:3334", "password = \"a b\"\n"), &["pool.fallback[1].password"]);
    let table = |n: usize| format!("[[pool.fallback]]\nname = \"p{n}\"\naddress = \"p{n}.example:3333\"\n");
    let eight: String = (0..8).map(table).collect();
    assert_eq!(checked(&eight).unwrap().pools().len(), 9);
    refused(&format!("{eight}{}", table(8)), &["setting pool.fallback:", "at most 8"]);
}

#[test]
fn failover_knobs_have_bounds() {
    let c = Config::default();
    assert_eq!(c.pool.notify_timeout.0, Duration::from_secs(180));
    assert_eq!(c.pool.failover_after, 2);
    assert_eq!(c.pool.retry_max.0, Duration::from_secs(60));
    assert_eq!(c.pool.switch_back_after.0, Duration::from_secs(120));
    for (setting, ok, bad) in [
        ("failover_after = 1", true, ""),
        ("failover_after = 100", true, ""),
        ("failover_after = 0", false, "setting pool.failover_after: must be between 1 and 100"),
        ("failover_after = 101", false, "setting pool.failover_after: must be between 1 and 100"),
        ("failover_after = -1", false, "line 2, key pool.failover_after"),
        ("notify_timeout = \"500ms\"", true, ""),
        ("notify_timeout = \"1h\"", true, ""),
        ("notify_timeout = \"3601s\"", false, "setting pool.notify_timeout: must be at most 3600s"),
        ("notify_timeout = \"0s\"", false, "setting pool.notify_timeout: must be longer than 0"),
        ("notify_timeout = \"180\"", false, "line 2, key pool.notify_timeout"),
        ("retry_max = \"1h\"", true, ""),
        ("retry_max = \"61m\"", false, "setting pool.retry_max: must be at most 3600s"),
        ("retry_max = \"0ms\"", false, "setting pool.retry_max: must be longer than 0"),
        ("switch_back_after = \"1d\"", true, ""),
        ("switch_back_after = \"25h\"", false, "setting pool.switch_back_after: must be at most 86400s"),
        ("switch_back_after = \"0s\"", false, "setting pool.switch_back_after: must be longer than 0"),
    ] {
        let result = checked(&format!("[pool]\n{setting}\n"));
        match ok {
            true => assert!(result.is_ok(), "{setting}: {result:?}"),
            false => assert!(result.as_ref().is_err_and(|e| e.contains(bad)), "{setting}: {result:?}"),
        }
    }
}

#[test]
fn env_sets_the_primary_only() {
    let mut c = checked(&two_fallbacks("c.example:3334", "")).unwrap();
    let fallbacks = c.pool.fallback.clone();
    c.apply_env(env(&[
        ("LOKA_POOL_ADDRESS", "d.example:1"),
        ("LOKA_POOL_USERNAME", "me"),
        ("LOKA_POOL_PASSWORD", "pw-d"),
        ("LOKA_POOL_SEPARATOR", "-,-"),
        ("LOKA_POOL_NOTIFY_TIMEOUT", "2m"),
        ("LOKA_POOL_FAILOVER_AFTER", "3"),
        ("LOKA_POOL_RETRY_MAX", "30s"),
        ("LOKA_POOL_SWITCH_BACK_AFTER", "10m"),
    ]))
    .unwrap();
    c.validate().unwrap();
    let primary = &c.pools()[0];
    assert_eq!((primary.address.to_string(), primary.username.0.as_str()), ("d.example:1".into(), "me"));
    assert_eq!(primary.password.as_ref().map(|p| p.0.as_str()), Some("pw-d"));
    assert_eq!(primary.separator, [Plain("-".into()), Plain("-".into())]);
    assert_eq!(c.pool.fallback, fallbacks, "fallbacks keep what the file says");
    let knobs =
        (c.pool.notify_timeout.0, c.pool.failover_after, c.pool.retry_max.0, c.pool.switch_back_after.0);
    let expect = (Duration::from_secs(120), 3, Duration::from_secs(30), Duration::from_secs(600));
    assert_eq!(knobs, expect);
    let err = Config::load(None, env(&[("LOKA_POOL_FAILOVER_AFTER", "two")])).unwrap_err().to_string();
    assert!(err.contains("LOKA_POOL_FAILOVER_AFTER") && err.contains("whole number"), "{err}");
    let err = Config::load(None, env(&[("LOKA_POOL_RETRY_MAX", "60")])).unwrap_err().to_string();
    assert!(err.contains("LOKA_POOL_RETRY_MAX") && err.contains("unit"), "{err}");
    let err = Config::load(None, env(&[("LOKA_POOL_FALLBACK_ADDRESS", "e:1")])).unwrap_err().to_string();
    assert!(err.contains("LOKA_POOL_FALLBACK_ADDRESS") && err.contains("[[pool.fallback]]"), "{err}");
}

#[test]
fn show_round_trips_fallbacks_with_passwords_masked() {
    let mut c =
        checked(&two_fallbacks("c.example:3334", "password = \"pw-c\"\nseparator = [\"+\", \"-\"]\n"))
            .unwrap();
    c.apply_env(env(&[("LOKA_POOL_PASSWORD", "pw-main")])).unwrap();
    let shown = c.to_toml();
    for secret in ["pw-main", "pw-b", "pw-c"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    assert_eq!(shown.matches("password = \"********\"").count(), 3, "{shown}");
    assert_eq!(shown.matches("[[pool.fallback]]").count(), 2, "{shown}");
    let masked = || Some(Secret(MASK.into()));
    c.pool.password = masked();
    for fallback in &mut c.pool.fallback {
        fallback.password = masked();
    }
    assert_eq!(Config::from_toml(&shown).unwrap(), c);
    // No fallbacks: no trace of them.
    assert!(!Config::default().to_toml().contains("fallback"));
}

#[test]
fn example_fallback_parses_once_uncommented() {
    let start = EXAMPLE.find("# [[pool.fallback]]").unwrap();
    let (head, tail) = EXAMPLE.split_at(start);
    let block = tail.split("\n\n").next().unwrap();
    let uncommented: String = block.lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
    let text = format!("{head}{uncommented}{}", &tail[block.len()..]);
    let pools = checked(&text).unwrap().pools();
    assert_eq!(pools.len(), 2, "{text}");
    assert_eq!(pools[1].name.0, "example");
}
