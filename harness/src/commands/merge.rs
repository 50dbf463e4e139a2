//! `merge A.json B.json … -o report.json`: shard reports of one matrix into one report.

use super::common::{Exit, Format, harness, load_report, print_report, usage};
use anyhow::Context as _;
use harness::report::{markdown, merge, write};
use std::path::{Path, PathBuf};

pub fn main(inputs: &[PathBuf], output: &Path, md: Option<&Path>, format: Format) -> Result<i32, Exit> {
    let reports = inputs.iter().map(|p| load_report(p)).collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge(reports).map_err(usage)?;
    let text = serde_json::to_string_pretty(&merged).context("serialise the report").map_err(harness)?;
    write::atomic(output, format!("{text}\n").as_bytes()).map_err(harness)?;
    if let Some(md) = md {
        write::atomic(md, markdown::render(&merged).as_bytes()).map_err(harness)?;
    }
    print_report(&merged, format)?;
    Ok(merged.exit_code())
}
