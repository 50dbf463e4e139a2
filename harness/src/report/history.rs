//! A history of runs: each kept as `<date>-<run id>.json`, the newest [`KEEP`], so the page can
//! show what changed since the previous one. Two histories, never mixed (see
//! [`super::outputs`]): the published table's, `results/history/`, written by `publish` (and
//! `run --out results`), so the published page compares with the previous publication; and
//! ordinary runs', `target/starttls-matrix/history/`, so a run's own page compares with the
//! previous run on the same machine.

use super::write::{WriteError, atomic};
use report_format::Report;
use std::path::{Path, PathBuf};

/// How many runs are kept.
pub const KEEP: usize = 30;

fn entries(history: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(history)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // Names start with the date and the run id, which starts with the start time.
    files.sort();
    files
}

/// The newest run recorded in the directory `history` other than the run `except` (a report
/// published twice is not compared with itself), if any can be read.
pub fn previous(history: &Path, except: &str) -> Option<Report> {
    entries(history)
        .iter()
        .rev()
        .filter_map(|p| serde_json::from_str::<Report>(&std::fs::read_to_string(p).ok()?).ok())
        .find(|r| r.run.id != except)
}

/// Keep `report` in the directory `history` and drop all but the newest [`KEEP`].
pub fn record(history: &Path, report: &Report) -> Result<PathBuf, WriteError> {
    let date = report.run.started.get(..10).unwrap_or("undated");
    let path = history.join(format!("{date}-{}.json", report.run.id));
    let text = serde_json::to_string_pretty(report).expect("a report serialises");
    atomic(&path, format!("{text}\n").as_bytes())?;
    let all = entries(history);
    for old in &all[..all.len().saturating_sub(KEEP)] {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str) -> Report {
        let mut r: Report = serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "run": {"id": id, "mode": "run", "started": "2026-11-28T10:00:00.000Z", "finished": "f", "wall_ms": 1,
                    "matrix": "m", "tool_versions": {}, "server_order": [], "client_order": [], "jobs": 1, "cores": 1},
            "servers": {}, "clients": {}, "cells": {}
        }))
        .unwrap();
        r.run.id = id.to_string();
        r
    }

    #[test]
    fn keeps_the_newest_runs_and_finds_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(previous(dir.path(), "").is_none());
        for i in 0..KEEP + 2 {
            record(dir.path(), &report(&format!("20261128T1000{i:02}Z-0000"))).unwrap();
        }
        let kept = entries(dir.path());
        assert_eq!(kept.len(), KEEP);
        assert!(kept[0].to_string_lossy().contains("T100002Z"), "the two oldest are gone: {:?}", kept[0]);
        let newest = format!("20261128T1000{:02}Z-0000", KEEP + 1);
        assert_eq!(previous(dir.path(), "").unwrap().run.id, newest);
        assert_eq!(
            previous(dir.path(), &newest).unwrap().run.id,
            format!("20261128T1000{KEEP:02}Z-0000"),
            "a run recorded again is compared with the one before it"
        );
    }
}
