//! `run`: the matrix (or a selection, or a shard of it) against the built-in servers.

use super::common::{
    Exit, Format, harness, load_matrix, load_report, or_interrupt, print_report, record_unmapped, spawn_progress,
    usage, write_results,
};
use anyhow::Context as _;
use harness::classify::Tables;
use harness::diff::Diff;
use harness::judge::{Judge, View};
use harness::plan::Plan;
use harness::report::build::{RunSummary, build};
use harness::report::history;
use harness::runner::{self, Context, RunOptions};
use harness::shard::Shard;
use report_format::Report;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Which cells: a matrix, narrowed by globs.
#[derive(Debug, clap::Args)]
pub struct Select {
    /// The matrix file.
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// Only server profiles whose id matches this glob (repeatable).
    #[arg(long = "server", value_name = "GLOB")]
    pub servers: Vec<String>,
    /// Only client stacks whose id matches this glob (repeatable).
    #[arg(long = "client", value_name = "GLOB")]
    pub clients: Vec<String>,
}

/// `run`'s flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: Select,
    /// Where to write report.json and README.md.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Server profiles to serve at once (default: two per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Judge each cell against this earlier report's outcome (cells it lacks: against the
    /// matrix's expectations).
    #[arg(long, value_name = "REPORT")]
    pub baseline: Option<PathBuf>,
    /// Also write JUnit XML here (one test case per cell).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Run only shard I of N (deterministic: every cell is in exactly one shard).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Run each cell N times; a cell whose outcomes differ is reported flaky.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// Classify every cell from the client's (or sender's) own words only, as `probe` must
    /// against a server we do not control; our servers' records stay in the report, unused.
    #[arg(long)]
    pub blind: bool,
    /// Write every error text no classification table knew here, as draft rules with the stack,
    /// the table, the stage and the cells (ready to be given a class and moved into a table).
    #[arg(long, value_name = "FILE")]
    pub record_unmapped: Option<PathBuf>,
}

/// Run the plan and build its report (shared with `compare` and `expectations --check`).
pub async fn execute(
    matrix: Arc<harness::matrix::Matrix>,
    plan: &Plan,
    full_plan: &Plan,
    tables: Arc<Tables>,
    judge: Arc<Judge>,
    options: RunOptions,
    shard: Option<Shard>,
) -> Result<Report, Exit> {
    let exe = runner::builtin_exe().context("find the starttls-matrix binary").map_err(harness)?;
    let (reporters, progress) = spawn_progress();
    let (events, from_runner) = tokio::sync::mpsc::unbounded_channel();
    let blind_view = judge.view == View::Blind;
    let judging = tokio::spawn(harness::pipeline::judging(from_runner, judge, reporters));
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = or_interrupt(Context::prepare(&matrix, &plan.clients, tables, &exe, &events))
        .await?
        .context("prepare the run")
        .map_err(harness)?;
    let ctx = Arc::new(ctx);
    or_interrupt(runner::run(matrix.clone(), plan, ctx.clone(), options, events)).await?;
    let records = judging.await.context("judge the cells").map_err(harness)?;
    let _ = progress.await;
    Ok(build(RunSummary {
        mode: "run",
        matrix: &matrix,
        plan_servers: full_plan.servers.clone(),
        plan_clients: full_plan.clients.clone(),
        ctx: &ctx,
        records: &records,
        started,
        wall: clock.elapsed(),
        jobs: options.jobs,
        shard: shard.map(|s| s.to_string()),
        repeat: options.repeat,
        blind: blind_view,
    }))
}

/// The number of server profiles to serve at once: by default two per core, since a cell mostly
/// waits (for a client process to start, for a peer) rather than computes (measured on 2 cores:
/// the default matrix in 7.3 s with 2, 3.5 s with 4).
pub fn jobs(flag: Option<usize>, matrix: &harness::matrix::Matrix) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    flag.filter(|j| *j > 0).unwrap_or(if matrix.run.jobs > 0 { matrix.run.jobs } else { 2 * cores })
}

pub async fn main(a: RunArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    let matrix = Arc::new(load_matrix(&a.select.matrix, &tables)?);
    let full = Plan::new(&matrix, &a.select.servers, &a.select.clients).context("select cells").map_err(usage)?;
    let plan = a.shard.map_or_else(|| full.clone(), |s| s.apply(&full));
    let baseline = a.baseline.as_deref().map(load_report).transpose()?;
    if a.repeat == 0 {
        return Err(usage(anyhow::anyhow!("run: --repeat must be at least 1")));
    }
    let view = if a.blind { View::Blind } else { View::Informed };
    let judge = Arc::new(Judge { matrix: Some(matrix.clone()), baseline, tables: tables.clone(), view });
    let options = RunOptions { jobs: jobs(a.jobs, &matrix), repeat: a.repeat };
    // Only a whole run of the whole matrix is published into the history.
    let whole = a.shard.is_none() && a.select.servers.is_empty() && a.select.clients.is_empty();
    let previous = if whole { history::previous(&a.out) } else { None };
    let report = execute(matrix, &plan, &full, tables, judge, options, a.shard).await?;
    let since = previous.map(|p| Diff::reports(&p, &report));
    write_results(&report, Some(&a.out), a.junit.as_deref(), since.as_ref())?;
    if whole {
        history::record(&a.out, &report).map_err(harness)?;
    }
    record_unmapped(&report, a.record_unmapped.as_deref())?;
    print_report(&report, a.format)?;
    if a.format == Format::Table {
        let files = ["report.json", "README.md", "index.html"].map(|f| a.out.join(f).display().to_string());
        println!("wrote {}", files.join(", "));
    }
    Ok(report.exit_code())
}
