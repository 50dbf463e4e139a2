//! The guard program (`guard/main.rs`, built by procs' build script) as an executable this
//! process can start: its bytes are embedded, written once into an anonymous memory file, and
//! run as `/proc/self/fd/N` — nothing installed beside the binary, nothing written to disk.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The guard's bytes, as the build script made them.
const GUARD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/starttls-guard"));

/// Why the guard cannot be run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("make the guard program runnable: {0}")]
pub struct GuardUnavailable(String);

/// The path that runs the guard, made once per process.
pub fn path() -> Result<PathBuf, GuardUnavailable> {
    static PATH: OnceLock<Result<(OwnedFd, PathBuf), GuardUnavailable>> = OnceLock::new();
    PATH.get_or_init(|| {
        // SAFETY: memfd_create with a NUL-terminated name; the descriptor is owned from here on.
        let fd = unsafe { libc::memfd_create(c"starttls-guard".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(GuardUnavailable(format!("memfd_create: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: a descriptor just made, ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(fd.try_clone().map_err(|e| GuardUnavailable(e.to_string()))?);
        file.write_all(GUARD).map_err(|e| GuardUnavailable(format!("write it: {e}")))?;
        // A child resolves its own /proc/self/fd/N before exec closes N (close-on-exec).
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok((fd, path))
    })
    .as_ref()
    .map(|(_, p)| p.clone())
    .map_err(Clone::clone)
}
