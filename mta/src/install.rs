//! Where the extracted MTAs are (`scripts/install-mtas` puts them in `.cache/mta/root`) and which
//! package versions were extracted (`.cache/mta/stamp`).

use std::path::{Path, PathBuf};

/// Where the MTAs are extracted for a project directory: `$STARTTLS_MATRIX_MTA_ROOT`, else
/// `<dir>/.cache/mta/root`; absolute, because the daemons run in work directories of their own.
pub fn extracted_roots(dir: &Path) -> PathBuf {
    let root = std::env::var_os("STARTTLS_MATRIX_MTA_ROOT").map_or_else(|| dir.join(".cache/mta/root"), PathBuf::from);
    std::path::absolute(&root).unwrap_or(root)
}

/// The version of a Debian package as `scripts/install-mtas` recorded it in `<cache>/stamp`
/// (`roots` is `<cache>/root`).
pub fn package_version(roots: &Path, package: &str) -> Option<String> {
    let stamp = std::fs::read_to_string(roots.parent()?.join("stamp")).ok()?;
    stamp.lines().find_map(|l| l.strip_prefix(&format!("{package}=")).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("stamp"), "postfix=3.7.11-0+deb12u1\nexim4-daemon-light=4.96-15\n").unwrap();
        assert_eq!(package_version(&dir.path().join("root"), "postfix").as_deref(), Some("3.7.11-0+deb12u1"));
        assert_eq!(package_version(&dir.path().join("root"), "sendmail-bin"), None);
    }
}
