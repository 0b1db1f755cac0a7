//! Runs the binary's one-shot verbs (`init`, `config`, `status`, the books
//! commands) the way a user does from a shell, with none of the test
//! runner's own `LOKA_*` settings leaking in.

use std::path::PathBuf;
use std::process::Output;

use super::daemon::bin_command;

/// Runs the binary with `args` and exactly the `LOKA_*` settings in `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = bin_command();
    cmd.args(args);
    for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("LOKA_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run loka-stratum")
}

/// Everything a run printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A fresh, empty directory of this test process's own under the temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loka-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// The accepted column of `login`'s row in `loka-stratum workers` output.
pub fn accepted(table: &str, login: &str) -> Option<u64> {
    let row = table.lines().find(|l| l.split_whitespace().next() == Some(login))?;
    row.split_whitespace().nth(2)?.parse().ok()
}
