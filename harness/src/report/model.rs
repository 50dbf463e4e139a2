//! `report.json`: schema version 1. Cells are keyed and sorted by cell id; every outcome is
//! recorded as it happened, with its expectation and verdict.

use crate::matrix::{Expected, Matrix, StackKind};
use crate::outcome::Outcome;
use crate::runner::{CellRecord, Context, MtaRun};
use crate::stack::Readiness;
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};
use servers::{ConnectionRecord, ServerProfile};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub run: RunInfo,
    /// The server profiles that ran, by id.
    pub servers: BTreeMap<String, ServerProfile>,
    /// The real MTAs among them, by profile id: package version, TLS library, the settings
    /// written into their configuration, warnings about it, start and stop times.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_runs: BTreeMap<String, MtaRun>,
    /// The client stacks, by id: what ran, its version and effective policy.
    pub clients: BTreeMap<String, ClientInfo>,
    /// Every cell, keyed `client/server`.
    pub cells: BTreeMap<String, CellReport>,
}

/// About the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: String,
    /// `run` (the matrix's own servers) or `probe` (a server someone else runs).
    pub mode: String,
    pub started: String,
    pub finished: String,
    pub wall_ms: u64,
    pub matrix: String,
    pub tool_versions: BTreeMap<String, String>,
    /// Rows and columns in matrix order, for tables.
    pub server_order: Vec<String>,
    pub client_order: Vec<String>,
    /// Server profiles served at once, and the machine's cores.
    pub jobs: usize,
    pub cores: usize,
    /// A digest of the matrix (and its expectation files): shards of one matrix share it.
    #[serde(default)]
    pub matrix_digest: String,
    /// `I/N` when this report is one shard of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The runs this report was merged from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// Times each cell was run (`--repeat`).
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

/// One client stack as it was on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `builtin`, `program` or `adapter`.
    pub kind: String,
    /// The built-in's name, the program's path or the adapter's name.
    pub program: String,
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub version: Option<String>,
    pub policy: serde_json::Value,
    pub readiness: Readiness,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    pub client: String,
    pub server: String,
    pub outcome: Outcome,
    pub expected: Expected,
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// What the server logged for the cell's connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_log: Vec<ConnectionRecord>,
    /// Every repeat's outcome, when the cell ran more than once (`--repeat`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<Outcome>,
}

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
}

impl Report {
    pub fn build(s: RunSummary<'_>) -> Report {
        let mut tool_versions = BTreeMap::new();
        tool_versions.insert("starttls-matrix".to_string(), env!("CARGO_PKG_VERSION").to_string());
        tool_versions.insert("server backend openssl".to_string(), servers::openssl_version().to_string());
        tool_versions.insert("server backend rustls".to_string(), format!("rustls {}", clients::RUSTLS_VERSION));
        let servers = s
            .plan_servers
            .iter()
            .filter_map(|id| s.matrix.server(id).map(|e| (id.clone(), e.profile.clone())))
            .collect();
        let clients = s
            .plan_clients
            .iter()
            .filter_map(|id| s.ctx.stacks.get(id))
            .map(|r| {
                let (kind, program) = match &r.stack.kind {
                    StackKind::Builtin(name) => ("builtin", name.clone()),
                    StackKind::Program(_) => ("program", r.program.display().to_string()),
                    StackKind::Adapter(a) => ("adapter", format!("{} ({})", a.name(), r.program.display())),
                };
                let info = ClientInfo {
                    kind: kind.into(),
                    program,
                    args: r.stack.args.clone(),
                    env: r.stack.env.clone(),
                    description: r.stack.description.clone(),
                    version: r.version.clone(),
                    policy: r.policy.clone(),
                    readiness: r.readiness.clone(),
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
                };
                (r.id.to_string(), cell)
            })
            .collect();
        Report {
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
            },
            servers,
            server_runs: s.ctx.mta_runs.lock().map(|m| m.clone()).unwrap_or_default(),
            clients,
            cells,
        }
    }

    /// One line about the MTA behind a profile, if one ran: what, on which TLS library, its
    /// settings as written, and what it said about them.
    pub fn server_run_summary(&self, id: &str) -> Option<String> {
        let MtaRun { info, stop } = self.server_runs.get(id)?;
        let mut parts = vec![
            format!("{} {} on {}", info.mta.name(), info.version, info.tls_library),
            format!("ready in {} ms, stopped in {} ms", info.ready_ms, stop.stop_ms),
        ];
        parts.push(info.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("; "));
        for w in &info.config_warnings {
            parts.push(format!("warning about its own configuration: {w}"));
        }
        Some(parts.join(" — "))
    }

    /// Count of cells per verdict.
    pub fn verdict_counts(&self) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for c in self.cells.values() {
            *counts.entry(c.verdict).or_insert(0) += 1;
        }
        counts
    }

    /// The process exit code the run earns: 3 harness error, 1 unexpected verdict, else 0.
    pub fn exit_code(&self) -> i32 {
        let verdicts: Vec<Verdict> = self.cells.values().map(|c| c.verdict).collect();
        if verdicts.contains(&Verdict::HarnessError) {
            3
        } else if verdicts.iter().any(|v| !v.is_as_expected()) {
            1
        } else {
            0
        }
    }

    /// The slowest cells, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.cells.iter().map(|(id, c)| (id.as_str(), c.duration_ms)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// Rows grouped for tables: TLS configurations, then STARTTLS behaviour (profiles with a
    /// fault); empty groups are left out.
    pub fn sections(&self) -> Vec<(&'static str, Vec<&String>)> {
        let hostile = |s: &String| self.servers.get(s).is_some_and(|p| p.fault.is_some());
        let (faults, plain): (Vec<&String>, Vec<&String>) = self.run.server_order.iter().partition(|s| hostile(s));
        [("TLS configurations", plain), ("STARTTLS behaviour (hostile servers)", faults)]
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
            .collect()
    }

    /// The cell for a (server, client) pair.
    pub fn cell(&self, server: &str, client: &str) -> Option<&CellReport> {
        self.cells.get(&format!("{client}/{server}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::ExpectedKind;
    use crate::outcome::{Connection, ErrorClass, Reporter, Side};
    use proptest::prelude::*;
    use wire::{Negotiated, Stage};

    fn outcome() -> impl Strategy<Value = Outcome> {
        let text = "\\PC{0,30}";
        prop_oneof![
            (text, text, proptest::option::of(text), proptest::option::of(512u32..9000), any::<bool>()).prop_map(
                |(protocol, cipher, group, dh_bits, by_server)| Outcome::Connected(Connection {
                    negotiated: Negotiated { protocol, cipher, group, dh_bits },
                    reported_by: if by_server { Reporter::Server } else { Reporter::Client },
                })
            ),
            (0..ErrorClass::ALL.len(), text, proptest::option::of(text)).prop_map(|(i, client_error, server_error)| {
                Outcome::Failed {
                    class: ErrorClass::ALL[i],
                    side: Side::Server,
                    stage: Stage::Handshake,
                    client_error,
                    server_error,
                }
            }),
            text.prop_map(|reason| Outcome::Unsupported { reason }),
            text.prop_map(|reason| Outcome::Skipped { reason }),
            any::<u64>().prop_map(|after_ms| Outcome::Timeout { after_ms }),
            text.prop_map(|detail| Outcome::HarnessError { detail }),
        ]
    }

    fn cell() -> impl Strategy<Value = CellReport> {
        (outcome(), 0..Verdict::ALL.len(), any::<u64>(), "[a-z]{1,8}", "[a-z]{1,8}").prop_map(
            |(outcome, v, ms, client, server)| CellReport {
                client,
                server,
                outcome,
                expected: Expected {
                    outcome: ExpectedKind::Failed,
                    class: Some(ErrorClass::DhTooSmall),
                    reason: "r".into(),
                    link: None,
                },
                verdict: Verdict::ALL[v],
                duration_ms: ms,
                server_log: Vec::new(),
                repeats: Vec::new(),
            },
        )
    }

    proptest! {
        #[test]
        fn report_round_trips_through_json(cells in proptest::collection::vec(cell(), 0..6)) {
            let report = Report {
                schema_version: SCHEMA_VERSION,
                run: RunInfo {
                    id: "x".into(), mode: "run".into(), started: "s".into(), finished: "f".into(), wall_ms: 1,
                    matrix: "m".into(), tool_versions: BTreeMap::new(), server_order: vec![], client_order: vec![], jobs: 1, cores: 2,
                    matrix_digest: "d".into(), shard: Some("1/2".into()), merged_from: vec![], repeat: 1,
                },
                servers: BTreeMap::new(),
                server_runs: BTreeMap::new(),
                clients: BTreeMap::new(),
                cells: cells.into_iter().map(|c| (format!("{}/{}", c.client, c.server), c)).collect(),
            };
            let text = serde_json::to_string_pretty(&report).unwrap();
            let back: Report = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, report);
        }
    }

    #[test]
    fn run_ids_are_compact() {
        let id = run_id(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        assert!(id.starts_with("20270115T080000Z-"), "{id}");
    }
}
