//! `report.json` built from a run: the profiles and stacks as they ran here, every cell's
//! outcome with its expectation and verdict. The types are `report_format`'s.

use crate::judge::CellRecord;
use crate::matrix::{Matrix, StackKind};
use crate::runner::Context;
use report_format::{CellReport, ClientInfo, Report, RunInfo, SCHEMA_VERSION};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A run id: the start time and a few hex digits, e.g. `20261128T162113Z-3fa2`.
pub fn run_id(started: SystemTime) -> String {
    let stamp: String =
        humantime::format_rfc3339_seconds(started).to_string().chars().filter(|c| *c != '-' && *c != ':').collect();
    let nanos = started.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}

/// Everything a report is built from.
pub struct RunSummary<'a> {
    pub mode: &'a str,
    pub matrix: &'a Matrix,
    pub plan_servers: Vec<String>,
    pub plan_clients: Vec<String>,
    pub ctx: &'a Context,
    pub records: &'a [CellRecord],
    pub started: SystemTime,
    pub wall: Duration,
    pub jobs: usize,
    pub shard: Option<String>,
    pub repeat: u32,
    /// Classified from the clients' words only.
    pub blind: bool,
}

/// The report of a run.
pub fn build(s: RunSummary<'_>) -> Report {
    let mut tool_versions = BTreeMap::new();
    tool_versions.insert("starttls-matrix".to_string(), env!("CARGO_PKG_VERSION").to_string());
    tool_versions.insert("server backend openssl".to_string(), servers::openssl_version().to_string());
    tool_versions.insert("server backend rustls".to_string(), format!("rustls {}", clients::RUSTLS_VERSION));
    let servers =
        s.plan_servers.iter().filter_map(|id| s.matrix.server(id).map(|e| (id.clone(), e.profile.clone()))).collect();
    let clients = s
        .plan_clients
        .iter()
        .filter_map(|id| s.ctx.stacks.get(id))
        .map(|r| {
            let (kind, program) = match &r.stack.kind {
                StackKind::Builtin(name) => ("builtin", name.clone()),
                StackKind::Program { .. } => ("program", r.program.display().to_string()),
                StackKind::Adapter(a) => ("adapter", format!("{} ({})", a.name(), r.program.display())),
                StackKind::Sender { mta, .. } => ("sender", format!("{} ({})", mta.name(), r.program.display())),
            };
            let info = ClientInfo {
                kind: kind.into(),
                program,
                args: r.stack.args.clone(),
                env: r.stack.env.clone(),
                description: r.stack.description.clone(),
                version: r.version.clone(),
                policy: r.policy.clone(),
                readiness: r.availability.clone(),
                errors: r.stack.errors.clone(),
            };
            (r.stack.id.clone(), info)
        })
        .collect();
    let cells = s
        .records
        .iter()
        .map(|r| {
            let cell = CellReport {
                client: r.id.client.clone(),
                server: r.id.server.clone(),
                outcome: r.outcome.clone(),
                expected: r.expected.clone(),
                verdict: r.verdict,
                duration_ms: r.duration.as_millis() as u64,
                server_log: r.server_log.clone(),
                repeats: r.repeats.clone(),
                delivery: r.delivery.clone(),
                blind_check: r.blind_check.clone(),
                rate: r.rate.clone(),
                rare: Vec::new(),
                left_to_chance: Vec::new(),
            };
            (r.id.to_string(), cell)
        })
        .collect();
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        run: RunInfo {
            id: run_id(s.started),
            mode: s.mode.into(),
            started: rfc3339(s.started),
            finished: rfc3339(s.started + s.wall),
            wall_ms: s.wall.as_millis() as u64,
            matrix: s.matrix.path.display().to_string(),
            tool_versions,
            server_order: s.plan_servers,
            client_order: s.plan_clients,
            jobs: s.jobs,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            matrix_digest: s.matrix.digest.clone(),
            shard: s.shard,
            merged_from: Vec::new(),
            repeat: s.repeat,
            blind: s.blind,
        },
        servers,
        server_runs: s.ctx.mta_runs.lock().map(|m| m.clone()).unwrap_or_default(),
        sender_runs: s.ctx.sender_runs.lock().map(|m| m.clone()).unwrap_or_default(),
        clients,
        cells,
    };
    crate::rare::annotate(&mut report, Some(s.matrix));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_compact() {
        let id = run_id(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        assert!(id.starts_with("20270115T080000Z-"), "{id}");
    }
}
