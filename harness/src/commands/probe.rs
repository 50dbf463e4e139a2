//! `probe`: every client stack against a server that is already running (loopback unless
//! `--allow-remote`).

use super::common::{
    Exit, Format, harness, load_matrix, or_interrupt, print_report, spawn_progress, usage, write_results,
};
use anyhow::Context as _;
use harness::adapters::Target;
use harness::classify::Tables;
use harness::report::model::{Report, RunSummary};
use harness::runner::{self, Context};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What `probe` was asked.
pub struct ProbeArgs {
    pub target: String,
    pub servername: Option<String>,
    pub cafile: Option<PathBuf>,
    pub matrix: PathBuf,
    pub clients: Vec<String>,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub allow_remote: bool,
}

pub async fn main(a: ProbeArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    let addrs: Vec<_> = a
        .target
        .to_socket_addrs()
        .with_context(|| format!("resolve {} (write HOST:PORT)", a.target))
        .map_err(usage)?
        .collect();
    if !a.allow_remote && addrs.iter().any(|s| !s.ip().is_loopback()) {
        return Err(usage(anyhow::anyhow!(
            "probe {}: it is not a loopback address; pass --allow-remote for a server you run",
            a.target
        )));
    }
    let host = a.target.rsplit_once(':').map_or(a.target.as_str(), |(h, _)| h).trim_matches(['[', ']']).to_string();
    let cafile = a.cafile.unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let matrix = load_matrix(&a.matrix, &tables)?;
    let globs = super::common::client_globs(&a.clients)?;
    let clients: Vec<String> = matrix
        .clients
        .iter()
        .map(|c| c.id.clone())
        .filter(|id| globs.is_empty() || globs.iter().any(|m| m.is_match(id)))
        .collect();
    if clients.is_empty() {
        return Err(usage(anyhow::anyhow!("select client stacks: none matches {:?}", a.clients)));
    }
    let exe = runner::builtin_exe().context("find the starttls-matrix binary").map_err(harness)?;
    let (events, progress) = spawn_progress();
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = Arc::new(
        or_interrupt(Context::prepare(&matrix, &clients, tables, &exe, &events))
            .await?
            .context("prepare the probe")
            .map_err(harness)?,
    );
    let target = Target {
        connect: a.target.clone(),
        servername: a.servername.unwrap_or(host),
        cafile,
        ehlo: runner::CLIENT_EHLO.into(),
    };
    let records = or_interrupt(runner::probe(ctx.clone(), &clients, target, events.clone())).await?;
    drop(events);
    let _ = progress.await;
    let report = Report::build(RunSummary {
        mode: "probe",
        matrix: &matrix,
        plan_servers: vec![a.target.clone()],
        plan_clients: clients,
        ctx: &ctx,
        records: &records,
        started,
        wall: clock.elapsed(),
        jobs: 1,
        shard: None,
        repeat: 1,
    });
    write_results(&report, a.out.as_deref(), a.junit.as_deref(), None)?;
    print_report(&report, a.format)?;
    Ok(report.exit_code())
}
