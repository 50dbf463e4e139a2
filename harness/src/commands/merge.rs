//! `merge A.json B.json … -o report.json`: shard reports of one matrix into one report.

use super::common::{Exit, Format, harness, load_report, print_report, usage};
use anyhow::Context as _;
use harness::report::{markdown, merge, write};
use std::path::PathBuf;

/// `merge`'s flags.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Also write the Markdown table here.
    #[arg(long, value_name = "FILE")]
    pub md: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn main(a: MergeArgs) -> Result<i32, Exit> {
    let (output, md, format) = (&a.output, a.md.as_deref(), a.format);
    let reports = a.reports.iter().map(|p| load_report(p)).collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge(reports).map_err(usage)?;
    let text = serde_json::to_string_pretty(&merged).context("serialise the report").map_err(harness)?;
    write::atomic(output, format!("{text}\n").as_bytes()).map_err(harness)?;
    if let Some(md) = md {
        write::atomic(md, markdown::render(&merged).as_bytes()).map_err(harness)?;
    }
    print_report(&merged, format)?;
    Ok(merged.exit_code())
}
