//! `report REPORT.json [--html FILE] [--md FILE] [--previous OLD.json]`: the published tables
//! from a report, without running anything.

use super::common::{Exit, Format, harness, load_report, print_report};
use harness::diff::Diff;
use harness::report::{html, markdown, write};
use std::path::PathBuf;

/// `report`'s flags.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    pub report: PathBuf,
    /// Write the HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the Markdown table here.
    #[arg(long, value_name = "FILE")]
    pub md: Option<PathBuf>,
    /// Mark what changed since this earlier report.
    #[arg(long, value_name = "REPORT")]
    pub previous: Option<PathBuf>,
    /// What to print when no file is asked for.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn main(a: ReportArgs) -> Result<i32, Exit> {
    let report = load_report(&a.report)?;
    let since = a.previous.as_deref().map(load_report).transpose()?.map(|p| Diff::reports(&p, &report));
    if let Some(path) = &a.html {
        write::atomic(path, html::render(&report, since.as_ref()).as_bytes()).map_err(harness)?;
    }
    if let Some(path) = &a.md {
        write::atomic(path, markdown::render(&report).as_bytes()).map_err(harness)?;
    }
    if a.html.is_none() && a.md.is_none() {
        print_report(&report, a.format)?;
    }
    Ok(0)
}
