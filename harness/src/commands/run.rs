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
use harness::report::skipped::Skipped;
use harness::report::{history, outputs};
use harness::runner::{self, Context, RunOptions};
use harness::shard::Shard;
use report_format::Report;
use std::path::{Path, PathBuf};
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
    /// Where to write report.json, README.md and index.html: by default this run's own
    /// directory (ignored by git), its history beside it. `results`, the published table beside
    /// the matrix, is written only when no stack or profile is skipped, or with --allow-skipped.
    #[arg(long, value_name = "DIR", default_value = outputs::LATEST)]
    pub out: PathBuf,
    /// With `--out results`: publish even though stacks or profiles were skipped here (their
    /// cells then read `skipped` in the published table).
    #[arg(long)]
    pub allow_skipped: bool,
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
    // `results/` beside the matrix is the published table: a run that would skip stacks must
    // not replace it. What the files tell is checked before anything runs; what only running
    // tells (an MTA that cannot start here), after.
    let matrix_dir = a.select.matrix.parent().unwrap_or(Path::new(""));
    let guarded = outputs::is_published(&a.out, matrix_dir) && !a.allow_skipped;
    if guarded {
        let predicted = harness::availability::predicted(&matrix, &plan.clients, &plan.servers);
        if !predicted.is_empty() {
            return Err(usage(anyhow::anyhow!(
                "publish into {} (the published table): {}\nnothing was run; without --out, a run writes its own results into {}",
                outputs::shown(&a.out),
                predicted.refusal(),
                outputs::shown(Path::new(outputs::LATEST))
            )));
        }
    }
    let view = if a.blind { View::Blind } else { View::Informed };
    let judge = Arc::new(Judge { matrix: Some(matrix.clone()), baseline, tables: tables.clone(), view });
    let options = RunOptions { jobs: jobs(a.jobs, &matrix), repeat: a.repeat };
    let report = execute(matrix, &plan, &full, tables, judge, options, a.shard).await?;
    let skipped = Skipped::of(&report);
    let refused = guarded && !skipped.is_empty();
    // Refused: the run is not lost, it goes where a run's own results go.
    let out = if refused { PathBuf::from(outputs::LATEST) } else { a.out.clone() };
    // Only a whole run of the whole matrix goes into a history.
    let whole = a.shard.is_none() && a.select.servers.is_empty() && a.select.clients.is_empty();
    let history_dir = outputs::history_dir(&out);
    let previous = if whole { history::previous(&history_dir, &report.run.id) } else { None };
    let since = previous.map(|p| Diff::reports(&p, &report));
    write_results(&report, Some(&out), a.junit.as_deref(), since.as_ref())?;
    let recorded = if whole { Some(history::record(&history_dir, &report).map_err(harness)?) } else { None };
    record_unmapped(&report, a.record_unmapped.as_deref())?;
    print_report(&report, a.format)?;
    let wrote = wrote(&out, recorded.as_deref(), outputs::is_published(&out, matrix_dir));
    // The table's reader sees where the files went; stdout stays the report in other formats.
    if a.format == Format::Table {
        println!("{wrote}");
    } else {
        eprintln!("{wrote}");
    }
    if refused {
        return Err(usage(anyhow::anyhow!(
            "publish into {} (the published table): {}\n{} was left as it was; this run is in {}",
            outputs::shown(&a.out),
            skipped.refusal(),
            outputs::shown(&a.out),
            outputs::shown(&out)
        )));
    }
    Ok(report.exit_code())
}

/// Where a run's files went, and what they are.
fn wrote(out: &Path, history: Option<&Path>, published: bool) -> String {
    let mut files: Vec<String> =
        ["report.json", "README.md", "index.html"].map(|f| out.join(f).display().to_string()).into();
    files.extend(history.map(|h| h.display().to_string()));
    let what = if published {
        "the published table".to_string()
    } else {
        format!(
            "this run's own results; `starttls-matrix publish` makes them the published table in {}/",
            outputs::PUBLISHED
        )
    };
    format!("wrote {} ({what})", files.join(", "))
}
