//! Size flags for the aarch64 release binary that cannot live in
//! `.cargo/config.toml`, where they would reach test binaries too (tests
//! unwind to report a failure). The release profile aborts on panic and our
//! code has no unwind tables, so nothing in that binary unwinds: it is linked
//! without `.eh_frame_hdr` (the index an unwinder searches unwind tables by)
//! and, when it links against glibc dynamically, without `.eh_frame` and
//! `.gcc_except_table` either (std's unwind tables and the landing-pad tables
//! they point to), about 150 KiB of the 2 MiB budget in `.ci/arm`. Static
//! and musl builds keep `.eh_frame`: their `crtbegin.o` registers it. A
//! panic still prints its message and location; under `RUST_BACKTRACE=1` it
//! prints no frames. Only binaries get the flags, and only in the release
//! profile (`cargo bench` and `cargo test --release` too, whose binaries
//! abort on panic as well); a custom profile that inherits `release` and
//! unwinds would need them gone.

use std::io::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if !var("TARGET").starts_with("aarch64-") || var("PROFILE") != "release" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    let dynamic_glibc = var("CARGO_CFG_TARGET_ENV") == "gnu"
        && !var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static");
    let Some(out) = std::env::var_os("OUT_DIR").filter(|_| dynamic_glibc) else { return };
    // Added to GNU ld's default script (INSERT), not replacing it.
    let script = std::path::Path::new(&out).join("discard-unwind-tables.ld");
    let text = "SECTIONS\n{\n  /DISCARD/ : { *(.eh_frame) *(.gcc_except_table .gcc_except_table.*) }\n}\nINSERT AFTER .text;\n";
    let written = std::fs::File::create(&script).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        println!("cargo:warning=cannot write {}: {e}; the unwind tables stay", script.display());
        return;
    }
    // The driver's -T and the path as two arguments: a comma in the path
    // would split a -Wl, list.
    println!("cargo:rustc-link-arg-bins=-T");
    println!("cargo:rustc-link-arg-bins={}", script.display());
}
