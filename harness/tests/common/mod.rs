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

/// The repository (the default matrix, the extracted MTAs).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether all four MTAs are extracted; if not, why.
pub fn mtas_missing() -> Option<String> {
    let roots = mta::extracted_roots(&repo());
    ["postfix", "exim", "sendmail", "opensmtpd"]
        .iter()
        .find(|m| !roots.join(m).exists())
        .map(|m| format!("{m} is not extracted in {} (scripts/install-stacks)", roots.display()))
}

/// What names a process's files: its command line, environment, working directory and open
/// files, as one text.
pub fn process_paths(pid: i32) -> String {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let mut text = String::from_utf8_lossy(&std::fs::read(proc.join("cmdline")).unwrap_or_default()).replace('\0', " ");
    text.push('\n');
    text.push_str(
        &String::from_utf8_lossy(&std::fs::read(proc.join("environ")).unwrap_or_default()).replace('\0', "\n"),
    );
    let links = std::fs::read_link(proc.join("cwd")).into_iter().chain(
        std::fs::read_dir(proc.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
    );
    for link in links {
        text.push('\n');
        text.push_str(&link.to_string_lossy());
    }
    text
}

/// Every process that names `dir` in its command line, environment, working directory or open
/// files (zombies, which have ended, aside): (pid, command line).
pub fn processes_using(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !procs::registry::alive(pid) || !process_paths(pid).contains(&needle) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string()));
    }
    found
}

/// The loopback TCP ports these processes listen on (their sockets in `/proc/net/tcp`).
pub fn listening_ports(pids: &[i32]) -> Vec<u16> {
    let mut inodes = std::collections::BTreeSet::new();
    for pid in pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target.to_string_lossy().strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local address, state 0A (LISTEN), inode
            (f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.contains(*i)))
                .then(|| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// The run work directories (`starttls-matrix-*`) in `tmp`.
pub fn work_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("starttls-matrix-")))
        .collect()
}
