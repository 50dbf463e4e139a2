//! Builds starttls-guard (`guard/main.rs`, std only) with the same compiler, into OUT_DIR: the
//! procs crate embeds it and execs it (`procs::launch`), so every binary that uses procs carries
//! the guard it needs and nothing has to be installed beside it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = PathBuf::from("guard/main.rs");
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("starttls-guard");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition=2024",
            "--crate-type=bin",
            "--crate-name=starttls_guard",
            "--target",
            &target,
            "-D",
            "warnings",
        ])
        .args(["-C", "opt-level=2", "-C", "panic=abort", "-C", "debuginfo=0", "-C", "strip=symbols"])
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("run rustc for starttls-guard");
    assert!(status.success(), "starttls-guard did not build: {status}");
}
