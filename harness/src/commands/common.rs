//! What the subcommands share: exit codes carried with errors, output formats, progress,
//! Ctrl-C handling, and writing results.

use anyhow::Context as _;
use clap::ValueEnum;
use harness::classify::Tables;
use harness::diff::Diff;
use harness::matrix::Matrix;
use harness::report::{html, junit, markdown, progress::Progress, terminal, write};
use harness::runner::Event;
use report_format::Report;
use std::path::Path;
use tokio::sync::mpsc;

/// An error with the exit code it earns.
pub struct Exit(pub i32, pub anyhow::Error);

/// Exit 2: usage or configuration.
pub fn usage(e: impl Into<anyhow::Error>) -> Exit {
    Exit(report_format::exit::USAGE, e.into())
}

/// Exit 3: we could not do the work.
pub fn harness(e: impl Into<anyhow::Error>) -> Exit {
    Exit(report_format::exit::HARNESS_ERROR, e.into())
}

/// What a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Md,
    Json,
}

/// Matchers for `--client` globs.
pub fn client_globs(patterns: &[String]) -> Result<Vec<globset::GlobMatcher>, Exit> {
    patterns
        .iter()
        .map(|g| globset::Glob::new(g).map(|g| g.compile_matcher()))
        .collect::<Result<Vec<_>, _>>()
        .context("parse --client")
        .map_err(usage)
}

pub fn load_matrix(path: &Path, tables: &Tables) -> Result<Matrix, Exit> {
    Matrix::load(path, tables).context("load the matrix").map_err(usage)
}

pub fn load_report(path: &Path) -> Result<Report, Exit> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read report {}", path.display())).map_err(usage)?;
    serde_json::from_str(&text)
        .with_context(|| format!("parse report {} (a report.json of this tool)", path.display()))
        .map_err(usage)
}

pub fn json(value: &impl serde::Serialize) -> Result<String, Exit> {
    serde_json::to_string_pretty(value).context("serialise JSON").map_err(harness)
}

/// Feed events to the progress display until the channel closes.
pub fn spawn_progress() -> (mpsc::UnboundedSender<Event>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let mut progress = Progress::new(false);
        while let Some(ev) = rx.recv().await {
            progress.on_event(&ev);
        }
        progress.finish();
    });
    (tx, task)
}

/// Ctrl-C (SIGINT) or SIGTERM (`timeout`, a CI runner cancelling a job).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Await `work`, or end every child and leave on Ctrl-C or SIGTERM.
pub async fn or_interrupt<T>(work: impl std::future::Future<Output = T>) -> Result<T, Exit> {
    tokio::select! {
        v = work => Ok(v),
        _ = stop_signal() => {
            procs::kill_all();
            Err(Exit(report_format::exit::INTERRUPTED, anyhow::anyhow!("finish the run: interrupted; every child process was ended and nothing was written")))
        }
    }
}

/// `report.json`, `README.md` and `index.html` into `out` (the page marking what changed
/// `since` an earlier run), and JUnit XML where asked.
pub fn write_results(
    report: &Report,
    out: Option<&Path>,
    junit_path: Option<&Path>,
    since: Option<&Diff>,
) -> Result<(), Exit> {
    if let Some(out) = out {
        write::atomic(&out.join("report.json"), format!("{}\n", json(report)?).as_bytes()).map_err(harness)?;
        write::atomic(&out.join("README.md"), markdown::render(report).as_bytes()).map_err(harness)?;
        write::atomic(&out.join("index.html"), html::render(report, since).as_bytes()).map_err(harness)?;
    }
    if let Some(path) = junit_path {
        let xml = junit::render(report).context("render JUnit XML").map_err(harness)?;
        write::atomic(path, xml.as_bytes()).map_err(harness)?;
    }
    Ok(())
}

/// `--record-unmapped FILE`: write every text no table knew as draft rules (atomically; a file
/// that says "none" when there were none) and say how many on stderr.
pub fn record_unmapped(report: &Report, path: Option<&Path>) -> Result<(), Exit> {
    let Some(path) = path else { return Ok(()) };
    let texts = harness::unmapped::collect(report);
    write::atomic(path, harness::unmapped::render(report, &texts).as_bytes()).map_err(harness)?;
    eprintln!(
        "{} unmapped error text{} written to {}",
        texts.len(),
        if texts.len() == 1 { "" } else { "s" },
        path.display()
    );
    Ok(())
}

/// Print a report in the chosen format.
pub fn print_report(report: &Report, format: Format) -> Result<(), Exit> {
    match format {
        Format::Json => println!("{}", json(report)?),
        Format::Md => print!("{}", markdown::render(report)),
        Format::Table => {
            println!("{}", terminal::table(report, terminal::colour_wanted()));
            print!("{}", terminal::summary(report));
        }
    }
    Ok(())
}
