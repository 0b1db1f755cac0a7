//! Secrets and files: `config --show` never prints the pool password, and the
//! books and their control socket are private to the daemon's user even
//! without systemd's `UMask=`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::cli::{run, temp_dir, text};
use common::*;

const T: Duration = DEFAULT_TIMEOUT;

#[test]
fn show_masks_the_pool_password_from_file_and_env() {
    let dir = temp_dir("show");
    let file = dir.join("loka.toml");
    std::fs::write(&file, "[pool]\nusername = \"acct\"\npassword = \"file-pass-9f3e\"\n").unwrap();
    let f = file.to_str().unwrap();
    let out = run(&["config", f, "--show"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("file-pass-9f3e"), "{}", text(&out));
    assert!(text(&out).contains("password = \"********\""), "{}", text(&out));
    let out = run(&["config", f, "--show"], &[("LOKA_POOL_PASSWORD", "env-pass-7a1c")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("env-pass-7a1c") && !text(&out).contains("file-pass"), "{}", text(&out));
    assert!(text(&out).contains("password = \"********\""), "{}", text(&out));
    // A password the config refuses is not echoed in the error either.
    let out = run(&["config", f, "--show"], &[("LOKA_POOL_PASSWORD", "bad\"pass-51d0")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("LOKA_POOL_PASSWORD") && !text(&out).contains("pass-51d0"), "{}", text(&out));
    std::fs::write(&file, "[pool]\npassword = \"bad pass-51d0\"\n").unwrap();
    let out = run(&["config", f], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("pool.password") && !text(&out).contains("pass-51d0"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn books_socket_and_created_directory_are_private() {
    let dir = temp_dir("modes");
    let store = dir.join("fresh").join("state").join("books.redb");
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_STORE_PATH", store.to_str().unwrap())]);
    assert!(proxy.wait_log("books at", T).is_some());
    assert_eq!(mode(&store), 0o600, "books file");
    assert_eq!(mode(&store.with_extension("sock")), 0o600, "control socket");
    assert_eq!(mode(&dir.join("fresh").join("state")), 0o700, "created directory");
    assert_eq!(mode(&dir.join("fresh")), 0o700, "created parent directory");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
