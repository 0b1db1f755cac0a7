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
