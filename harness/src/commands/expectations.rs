//! `expectations --check` (stale entries: matching nothing, shadowed, or contradicted by a
//! run) and `expectations --from REPORT` (entries recorded from a run, to edit).

use super::common::{Exit, Format, harness, json, load_matrix, load_report, usage};
use super::run::{execute, jobs};
use anyhow::Context as _;
use harness::classify::Tables;
use harness::expectations;
use harness::judge::Judge;
use harness::plan::Plan;
use harness::runner::RunOptions;
use std::path::PathBuf;
use std::sync::Arc;

/// `expectations`'s flags.
#[derive(Debug, clap::Args)]
pub struct ExpectationsArgs {
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// List entries that match no cell, never apply, or that the cells contradict.
    #[arg(long)]
    pub check: bool,
    /// With --check: judge this report instead of running the matrix.
    #[arg(long, value_name = "REPORT")]
    pub report: Option<PathBuf>,
    /// Write [[expect]] entries recorded from this report.
    #[arg(long, value_name = "REPORT", conflicts_with = "check")]
    pub from: Option<PathBuf>,
    /// With --from: write here instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub async fn main(a: ExpectationsArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    if let Some(from) = &a.from {
        let text = expectations::from_report(&load_report(from)?);
        match &a.output {
            Some(path) => harness::report::write::atomic(path, text.as_bytes()).map_err(harness)?,
            None => print!("{text}"),
        }
        return Ok(0);
    }
    if !a.check {
        return Err(usage(anyhow::anyhow!("expectations: say --check or --from REPORT")));
    }
    let matrix = Arc::new(load_matrix(&a.matrix, &tables)?);
    let report = match &a.report {
        Some(path) => load_report(path)?,
        None => {
            let plan = Plan::new(&matrix, &[], &[]).context("plan the matrix").map_err(usage)?;
            let judge = Arc::new(Judge {
                matrix: Some(matrix.clone()),
                baseline: None,
                tables: tables.clone(),
                view: harness::judge::View::Informed,
            });
            let options = RunOptions { jobs: jobs(None, &matrix), repeat: 1 };
            execute(matrix.clone(), &plan, &plan, tables, judge, options, None).await?
        }
    };
    let stale = expectations::check(&matrix, Some(&report));
    match a.format {
        Format::Json => println!("{}", json(&stale)?),
        Format::Table | Format::Md => print!("{}", expectations::render(&stale)),
    }
    Ok(i32::from(!stale.is_empty()))
}
