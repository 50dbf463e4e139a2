//! Where results go. A run writes its own: `target/starttls-matrix/latest/` (relative to the
//! current directory, as cargo's `target/`; git ignores it), its history beside it in
//! `target/starttls-matrix/history/`. The published table — `results/` beside the matrix, which
//! is committed — is written only when asked (`publish`, or `run --out results`), with its own
//! history in `results/history/`, and never from a run that skipped stacks unless
//! `--allow-skipped`: a run on a machine without the external stacks must not replace it.

use std::path::{Path, PathBuf};

/// A run's own results, by default.
pub const LATEST: &str = "target/starttls-matrix/latest";
/// The published table, beside the matrix (and `publish`'s default destination).
pub const PUBLISHED: &str = "results";
/// The report `publish` takes by default: the latest run's.
pub const LATEST_REPORT: &str = "target/starttls-matrix/latest/report.json";

/// Where the history of the results written to `out` is kept: beside a `latest/` directory
/// (`target/starttls-matrix/history/`), else `out/history` (`results/history/`).
pub fn history_dir(out: &Path) -> PathBuf {
    match (out.file_name(), out.parent()) {
        (Some(name), Some(parent)) if name == "latest" => parent.join("history"),
        _ => out.join("history"),
    }
}

/// A directory as messages name it: `results/`.
pub fn shown(dir: &Path) -> String {
    format!("{}/", dir.display().to_string().trim_end_matches('/'))
}

/// Whether writing to `out` would replace the published table of the matrix in `matrix_dir`
/// (its `results/`), however either is spelt.
pub fn is_published(out: &Path, matrix_dir: &Path) -> bool {
    resolved(out) == resolved(&matrix_dir.join(PUBLISHED))
}

/// A path made absolute, its symbolic links resolved as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(real) = abs.canonicalize() {
        return real;
    }
    match (abs.parent().and_then(|p| p.canonicalize().ok()), abs.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => abs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_history_is_beside_latest_and_the_published_one_inside_results() {
        assert_eq!(history_dir(Path::new(LATEST)), Path::new("target/starttls-matrix/history"));
        assert_eq!(history_dir(Path::new("results")), Path::new("results/history"));
        assert_eq!(history_dir(Path::new("/tmp/out")), Path::new("/tmp/out/history"));
    }

    #[test]
    fn the_published_table_is_results_beside_the_matrix_however_spelt() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("results")).unwrap();
        std::fs::create_dir_all(repo.join("target")).unwrap();
        assert!(is_published(&repo.join("results"), &repo));
        assert!(is_published(&repo.join("results/"), &repo));
        assert!(is_published(&repo.join("./target/../results"), &repo));
        assert!(!is_published(&repo.join(LATEST), &repo));
        assert!(!is_published(&dir.path().join("results"), &repo), "another directory's results/ is not it");
        // Before the first publication `results/` does not exist yet.
        std::fs::remove_dir(repo.join("results")).unwrap();
        assert!(is_published(&repo.join("results"), &repo));
    }
}
