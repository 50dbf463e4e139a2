//! Writing results atomically: a temporary file in the same directory, then a rename, so a
//! reader never sees half a report and an interrupted run leaves the old one in place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a result file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("write {path}: {cause}")]
pub struct WriteError {
    pub path: PathBuf,
    pub cause: std::io::Error,
}

/// Write `contents` to `path` atomically, creating the directory if needed.
pub fn atomic(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let err = |cause| WriteError { path: path.to_path_buf(), cause };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    // Published files are for everyone to read (a temporary file starts private).
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/report.json");
        super::atomic(&path, b"one").unwrap();
        super::atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary left behind");
    }
}
