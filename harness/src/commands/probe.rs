//! `probe`: every client stack against a server that is already running (loopback unless
//! `--allow-remote`).

use super::common::{
    Exit, Format, harness, load_matrix, or_interrupt, print_report, record_unmapped, spawn_progress, usage,
    write_results,
};
use anyhow::Context as _;
use harness::adapters::Target;
use harness::classify::Tables;
use harness::judge::Judge;
use harness::report::build::{RunSummary, build};
use harness::runner::schedule::Politeness;
use harness::runner::{self, Context};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `probe`'s flags.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The server, HOST:PORT.
    pub target: String,
    /// The name to send as SNI and verify (default: the host).
    #[arg(long)]
    pub servername: Option<String>,
    /// CA certificates to trust (default: the system bundle).
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// The matrix whose client stacks to use.
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// Only client stacks whose id matches this glob (repeatable).
    #[arg(long = "client", value_name = "GLOB")]
    pub clients: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write report.json and README.md here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Allow a target outside the loopback range (only for servers you run).
    #[arg(long)]
    pub allow_remote: bool,
    /// Connections to the server at once (1–16; default 4 on loopback, 2 for a remote server).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub max_connections: Option<u16>,
    /// Milliseconds between starting two connections (default 0 on loopback, 500 for a remote
    /// server).
    #[arg(long, value_name = "MS")]
    pub pause_ms: Option<u64>,
    /// Write every error text no classification table knew here, as draft rules with the stack,
    /// the table, the stage and the cells (ready to be given a class and moved into a table).
    #[arg(long, value_name = "FILE")]
    pub record_unmapped: Option<PathBuf>,
}

/// How many connections at once, and the pause between them: gentle with a server on another
/// machine (someone's real MX, whose rate limits and logs we do not own), quick on loopback.
pub fn politeness(remote: bool, max_connections: Option<u16>, pause_ms: Option<u64>) -> Politeness {
    let (connections, pause) = if remote { (2, 500) } else { (4, 0) };
    Politeness {
        max_connections: max_connections.map_or(connections, usize::from),
        pause: Duration::from_millis(pause_ms.unwrap_or(pause)),
    }
}

pub async fn main(a: ProbeArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    let addrs: Vec<_> = a
        .target
        .to_socket_addrs()
        .with_context(|| format!("resolve {} (write HOST:PORT)", a.target))
        .map_err(usage)?
        .collect();
    let remote = addrs.iter().any(|s| !s.ip().is_loopback());
    if !a.allow_remote && remote {
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
    let (reporters, progress) = spawn_progress();
    let (events, from_runner) = tokio::sync::mpsc::unbounded_channel();
    let judge =
        Arc::new(Judge { matrix: None, baseline: None, tables: tables.clone(), view: harness::judge::View::Blind });
    let judging = tokio::spawn(harness::pipeline::judging(from_runner, judge, reporters));
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = Arc::new(
        or_interrupt(Context::prepare_trusting(&matrix, &clients, tables, &exe, &events, Some(&cafile)))
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
    let polite = politeness(remote, a.max_connections, a.pause_ms);
    eprintln!(
        "probe {}: {} stacks, at most {} connection{} at once, {} ms between starts{}",
        a.target,
        clients.len(),
        polite.max_connections,
        if polite.max_connections == 1 { "" } else { "s" },
        polite.pause.as_millis(),
        if remote { " (a remote server: polite by default; --max-connections, --pause-ms)" } else { "" }
    );
    or_interrupt(runner::probe(ctx.clone(), &clients, target, polite, events)).await?;
    let records = judging.await.context("judge the cells").map_err(harness)?;
    let _ = progress.await;
    let report = build(RunSummary {
        mode: "probe",
        matrix: &matrix,
        plan_servers: vec![a.target.clone()],
        plan_clients: clients,
        ctx: &ctx,
        records: &records,
        started,
        wall: clock.elapsed(),
        jobs: polite.max_connections,
        shard: None,
        repeat: 1,
        blind: true,
    });
    write_results(&report, a.out.as_deref(), a.junit.as_deref(), None)?;
    record_unmapped(&report, a.record_unmapped.as_deref())?;
    print_report(&report, a.format)?;
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_server_gets_two_connections_at_once_with_a_pause_unless_told() {
        let remote = politeness(true, None, None);
        assert_eq!((remote.max_connections, remote.pause), (2, Duration::from_millis(500)));
        let local = politeness(false, None, None);
        assert_eq!((local.max_connections, local.pause), (4, Duration::ZERO));
        let told = politeness(true, Some(1), Some(2000));
        assert_eq!((told.max_connections, told.pause), (1, Duration::from_secs(2)));
    }
}
