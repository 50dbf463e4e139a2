//! The run's work directories (`starttls-matrix-*` in the temporary directory) name their owner:
//! a marker inside holds the owning process's PID, its start time, the boot and the PID
//! namespace, so that a later run removes those whose owner is gone (a run killed with SIGKILL
//! cannot remove its own) — never one whose owner lives or that it cannot judge (another boot's
//! is gone; another PID namespace's is not ours to judge), nor anything without the marker.

use crate::registry::process;
use std::path::{Path, PathBuf};

/// What every work directory's name starts with.
pub const PREFIX: &str = "starttls-matrix-";
/// The marker file inside a work directory: `PID START BOOT_ID PID_NAMESPACE`.
pub const MARKER: &str = ".starttls-matrix-owner";

/// Why a work directory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    #[error("create a work directory in {dir}: {source}")]
    Create { dir: PathBuf, source: std::io::Error },
    #[error("write its owner marker {path}: {source}")]
    Mark { path: PathBuf, source: std::io::Error },
}

/// Who a marker says owns its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: i32,
    start: u64,
    boot: String,
    namespace: String,
}

impl Owner {
    fn this_process() -> Option<Owner> {
        let pid = std::process::id() as i32;
        Some(Owner { pid, start: process(pid)?.start, boot: boot_id(), namespace: pid_namespace() })
    }

    fn parse(text: &str) -> Option<Owner> {
        let mut f = text.split_whitespace();
        let owner = Owner {
            pid: f.next()?.parse().ok()?,
            start: f.next()?.parse().ok()?,
            boot: f.next()?.to_string(),
            namespace: f.next()?.to_string(),
        };
        f.next().is_none().then_some(owner)
    }

    fn text(&self) -> String {
        format!("{} {} {} {}\n", self.pid, self.start, self.boot, self.namespace)
    }

    /// The owner is gone: another boot's, or no process of ours with its PID and start time.
    fn gone(&self) -> bool {
        self.boot != boot_id()
            || (self.namespace == pid_namespace()
                && process(self.pid).is_none_or(|p| p.zombie || p.start != self.start))
    }
}

/// Our PID namespace (`pid:[4026531836]`): PIDs name processes only within one.
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid").map_or_else(|_| "-".into(), |l| l.to_string_lossy().replace(' ', "_"))
}

/// This boot's id: a PID and a start time name a process only within one boot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(|_| "-".into(), |b| b.trim().to_string())
}

/// Make a new work directory `PREFIX…` (`prefix` must start with [`PREFIX`]) in the temporary
/// directory, marked as this process's; removed when the returned value is dropped.
pub fn create(prefix: &str) -> Result<tempfile::TempDir, WorkDirError> {
    create_in(&std::env::temp_dir(), prefix)
}

fn create_in(tmp: &Path, prefix: &str) -> Result<tempfile::TempDir, WorkDirError> {
    debug_assert!(prefix.starts_with(PREFIX));
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(tmp)
        .map_err(|source| WorkDirError::Create { dir: tmp.to_path_buf(), source })?;
    let path = dir.path().join(MARKER);
    let owner = Owner::this_process().ok_or_else(|| WorkDirError::Mark {
        path: path.clone(),
        source: std::io::Error::other("this process is not in /proc"),
    })?;
    std::fs::write(&path, owner.text()).map_err(|source| WorkDirError::Mark { path, source })?;
    Ok(dir)
}

/// Remove the work directories in `tmp` whose marker names an owner that is gone; those without
/// a marker, with a live owner, or with a mount inside are left. Returns what was removed.
pub fn remove_stale(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else { return Vec::new() };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX))
            && entry.file_type().is_ok_and(|t| t.is_dir());
        let marker = path.join(MARKER);
        let owner = ours
            .then(|| std::fs::symlink_metadata(&marker).ok().filter(|m| m.is_file()))
            .flatten()
            .and_then(|_| std::fs::read_to_string(&marker).ok())
            .and_then(|text| Owner::parse(&text));
        let Some(owner) = owner else { continue };
        // A mount point's path is the 5th field of a mountinfo line.
        let mounted = mounts.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(m).starts_with(&path));
        if owner.gone() && !mounted && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(tmp: &Path, name: &str, text: Option<&str>) -> PathBuf {
        let dir = tmp.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("spool"), "x").unwrap();
        if let Some(text) = text {
            std::fs::write(dir.join(MARKER), text).unwrap();
        }
        dir
    }

    #[test]
    fn only_directories_whose_owner_is_gone_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::this_process().unwrap();
        let live = marked(tmp.path(), "starttls-matrix-live", Some(&me.text()));
        // Our PID with another start time: the PID was reused, the owner is gone.
        let reused = Owner { start: me.start + 1, ..me.clone() };
        let stale = marked(tmp.path(), "starttls-matrix-stale", Some(&reused.text()));
        let other_boot =
            marked(tmp.path(), "starttls-matrix-boot", Some(&Owner { boot: "x".into(), ..me.clone() }.text()));
        // Another PID namespace's: its PID means nothing here.
        let elsewhere = Owner { namespace: "pid:[1]".into(), ..reused.clone() };
        let other_namespace = marked(tmp.path(), "starttls-matrix-elsewhere", Some(&elsewhere.text()));
        let unmarked = marked(tmp.path(), "starttls-matrix-unmarked", None);
        let garbled = marked(tmp.path(), "starttls-matrix-garbled", Some("not a marker"));
        let not_ours = marked(tmp.path(), "something-else", Some(&reused.text()));
        let mut removed = remove_stale(tmp.path());
        removed.sort();
        assert_eq!(removed, vec![other_boot.clone(), stale.clone()]);
        assert!(!stale.exists() && !other_boot.exists());
        for kept in [live, unmarked, garbled, not_ours, other_namespace] {
            assert!(kept.join("spool").exists(), "{} must stay", kept.display());
        }
    }

    #[test]
    fn a_new_work_directory_is_marked_as_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = create_in(tmp.path(), "starttls-matrix-test-").unwrap();
        let owner = Owner::parse(&std::fs::read_to_string(dir.path().join(MARKER)).unwrap()).unwrap();
        assert_eq!(owner.pid, std::process::id() as i32);
        assert!(!owner.gone());
        assert_eq!(remove_stale(tmp.path()), Vec::<PathBuf>::new());
        assert!(dir.path().join(MARKER).exists());
    }
}
