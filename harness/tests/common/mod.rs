//! What the command-line tests share: running the binary in a directory, writing files there.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

/// What one run of the binary did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `starttls-matrix ARGS` in `dir` (no colour).
pub fn starttls_matrix(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(EXE).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Write `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
