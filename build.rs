//! Size flags for the aarch64 release binary that cannot live in
//! `.cargo/config.toml`, where they would reach test binaries too (tests
//! unwind to report a failure). The release profile aborts on panic and our
//! code has no unwind tables, so nothing in that binary unwinds: it is linked
//! without `.eh_frame_hdr` (the index an unwinder searches unwind tables by)
//! and without `.eh_frame` and `.gcc_except_table` (std's unwind tables and
//! the landing-pad tables they point to), about 150 KiB of the 2 MiB budget
//! in `.ci/arm`. A panic still prints its message and location; under
//! `RUST_BACKTRACE=1` it prints no frames.

use std::io::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let Some(out) = std::env::var_os("OUT_DIR") else { return };
    if !target.starts_with("aarch64-") || profile != "release" {
        return;
    }
    // Added to GNU ld's default script (INSERT), not replacing it.
    let script = std::path::Path::new(&out).join("discard-unwind-tables.ld");
    let text = "SECTIONS\n{\n  /DISCARD/ : { *(.eh_frame) *(.gcc_except_table .gcc_except_table.*) }\n}\nINSERT AFTER .text;\n";
    let written = std::fs::File::create(&script).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        println!("cargo:warning=cannot write {}: {e}; the unwind tables stay", script.display());
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
