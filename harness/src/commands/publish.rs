//! `publish [REPORT] [--to DIR] [--allow-skipped]`: make a run's report the published table —
//! `results/report.json`, `README.md`, `index.html` (marking what changed since the previous
//! publication) and an entry in `results/history/` — deliberately, and never from a run that
//! skipped stacks or profiles unless `--allow-skipped`.

use super::common::{Exit, harness, load_report, usage, write_results};
use harness::diff::Diff;
use harness::report::history;
use harness::report::outputs;
use harness::report::skipped::Skipped;
use std::path::{Path, PathBuf};

/// `publish`'s flags.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The report to publish: by default the latest run's.
    #[arg(default_value = outputs::LATEST_REPORT)]
    pub report: PathBuf,
    /// The published table's directory.
    #[arg(long, value_name = "DIR", default_value = outputs::PUBLISHED)]
    pub to: PathBuf,
    /// Publish even though stacks or profiles were skipped on the machine that ran it (their
    /// cells then read `skipped` in the published table).
    #[arg(long)]
    pub allow_skipped: bool,
}

pub fn main(a: PublishArgs) -> Result<i32, Exit> {
    let what = format!("publish {} into {}", a.report.display(), outputs::shown(&a.to));
    if !a.report.exists() {
        return Err(usage(anyhow::anyhow!(
            "{what}: there is no such report; `starttls-matrix run` writes one into {}",
            outputs::shown(Path::new(outputs::LATEST))
        )));
    }
    let report = load_report(&a.report)?;
    if let Some(shard) = &report.run.shard {
        return Err(usage(anyhow::anyhow!(
            "{what}: it is shard {shard} of a run; merge the shards first (`starttls-matrix merge … -o report.json`)"
        )));
    }
    let skipped = Skipped::of(&report);
    if !skipped.is_empty() && !a.allow_skipped {
        return Err(usage(anyhow::anyhow!(
            "{what}: {}\n{} was left as it was",
            skipped.refusal(),
            outputs::shown(&a.to)
        )));
    }
    let history_dir = outputs::history_dir(&a.to);
    let previous = history::previous(&history_dir, &report.run.id);
    let since = previous.as_ref().map(|p| Diff::reports(p, &report));
    write_results(&report, Some(&a.to), None, since.as_ref())?;
    let entry = history::record(&history_dir, &report).map_err(harness)?;
    let files = ["report.json", "README.md", "index.html"].map(|f| a.to.join(f).display().to_string());
    println!(
        "published run {} ({} cells): wrote {}, {}",
        report.run.id,
        report.cells.len(),
        files.join(", "),
        entry.display()
    );
    match (&previous, &since) {
        (Some(p), Some(d)) => println!(
            "since the previous publication (run {}): {} newly broken, {} newly fixed, {} changed, {} unchanged",
            p.run.id,
            d.newly_broken.len(),
            d.newly_fixed.len(),
            d.changed.len(),
            d.unchanged
        ),
        _ => println!("the first publication in {}", history_dir.display()),
    }
    if !skipped.is_empty() {
        println!(
            "published with {} skipped (--allow-skipped)",
            skipped.stacks.iter().chain(&skipped.servers).map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(report_format::exit::AS_EXPECTED)
}
