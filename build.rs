//! One size flag that cannot live in `.cargo/config.toml`, where it would
//! reach test binaries too: the aarch64 release binary is linked without
//! `.eh_frame_hdr`, the index an unwinder searches std's unwind tables by
//! (about 26 KiB of the 2 MiB budget in `.ci/arm`). The release profile
//! aborts on panic and our code has no unwind tables, so nothing unwinds; a
//! panic under `RUST_BACKTRACE=1` prints its message and location and no
//! frames. Tests, which unwind to report a failure, keep the index.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if target.starts_with("aarch64-") && profile == "release" {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
