//! The command line: `init`, `config`, `--version`, and bad settings.

mod common;

use common::cli::{run, temp_dir, text};

#[test]
fn init_writes_a_config_that_config_accepts() {
    let dir = temp_dir("init");
    let file = dir.join("loka.toml");
    let f = file.to_str().unwrap();
    let out = run(&["init", "-o", f], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["config", f], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok"));
    // init never overwrites.
    let out = run(&["init", "-o", f], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains(f), "{}", text(&out));
}

#[test]
fn show_prints_effective_settings_with_env_over_file() {
    let dir = temp_dir("show");
    let file = dir.join("loka.toml");
    std::fs::write(&file, "[pool]\naddress = \"pool.example:3333\"\nusername = \"acct\"\n").unwrap();
    let out = run(&["config", file.to_str().unwrap(), "--show"], &[("LOKA_POOL_ADDRESS", "127.0.0.1:4444")]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("address = \"127.0.0.1:4444\""), "{shown}");
    assert!(shown.contains("username = \"acct\""), "{shown}");
    assert!(shown.contains("jobs = \"600s\""), "{shown}");
    assert!(shown.contains("[limiter]") && shown.contains("[metrics]") && shown.contains("[store]"));
}

#[test]
fn bad_files_name_file_line_and_key() {
    let dir = temp_dir("bad");
    for (content, want) in [
        ("[pool]\nname = \"x\"\naddress = \"pool.example\"\n", "line 3, key pool.address"),
        ("[server]\nmax_conections = 5\n", "line 2, key server.max_conections"),
        ("[limiter]\njobs = \"10\"\n", "line 2, key limiter.jobs"),
        ("[server]\nbind_address = \"0.0.0.0\"\n", "no port"),
        ("[pool\n", "line 1"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, content).unwrap();
        let out = run(&["config", file.to_str().unwrap()], &[]);
        assert!(!out.status.success(), "{content}");
        let msg = text(&out);
        assert!(msg.contains(file.to_str().unwrap()) && msg.contains(want), "{content}: {msg}");
    }
    let out = run(&["config", "/nonexistent/loka.toml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/loka.toml"));
}

#[test]
fn bad_env_and_flags_are_named() {
    let out = run(&["start", "-p", "pool-without-port"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--pool") && text(&out).contains("no port"), "{}", text(&out));
    let out = run(&["start"], &[("LOKA_SERVER_MAX_LINE_BYTES", "lots")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("LOKA_SERVER_MAX_LINE_BYTES"), "{}", text(&out));
    let out = run(&["start"], &[("LOKA_POOL_ADRESS", "127.0.0.1:1")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown setting pool.adress"), "{}", text(&out));
    let out = run(&["start"], &[("LOKA_SERVER_MAX_LINE_BYTES", "10")]);
    assert!(text(&out).contains("server.max_line_bytes"), "{}", text(&out));
}

#[test]
fn version_and_help_on_every_verb() {
    let version = format!("loka-stratum {}", env!("CARGO_PKG_VERSION"));
    for args in
        [&["--version"][..], &["start", "--version"], &["config", "--version"], &["init", "--version"]]
    {
        let out = run(args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    }
    for args in [&["--help"][..], &["start", "--help"], &["config", "--help"], &["init", "--help"]] {
        let out = run(args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out).contains("Usage"));
    }
}

/// The man page the .deb ships describes every command `--help` lists, and
/// the package's conffile is the config `init` writes, which `config` accepts.
#[test]
fn the_packages_man_page_and_config_keep_up_with_the_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let man = std::fs::read_to_string(root.join("systemd/debian/loka-stratum.1")).unwrap();
    let help = text(&run(&["--help"], &[]));
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("a command list")
        .lines()
        .filter_map(|l| l.strip_prefix("  ").filter(|rest| !rest.starts_with(' '))?.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 8, "{help}");
    for c in commands {
        assert!(man.contains(&format!("\n.B {c}")), "the man page lacks `{c}`");
    }
    let dir = temp_dir("package-config");
    let written = dir.join("init.toml");
    assert!(run(&["init", "-o", written.to_str().unwrap()], &[]).status.success());
    let shipped = root.join("src/config/example.toml");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), std::fs::read_to_string(&shipped).unwrap());
    assert!(run(&["config", shipped.to_str().unwrap()], &[]).status.success());
}
