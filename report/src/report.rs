//! `report.json`, schema version 1: a run's profiles, stacks and cells. Cells are keyed and
//! sorted by cell id; every outcome is recorded as it happened, with its expectation and verdict.

use crate::availability::Availability;
use crate::blind::BlindCheck;
use crate::delivery::Delivery;
use crate::exit;
use crate::expected::Expected;
use crate::outcome::Outcome;
use crate::profile::ServerProfile;
use crate::record::ConnectionRecord;
use crate::server_run::MtaRun;
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// The real MTAs that ran as senders, by client stack id: the same facts, and how long each
    /// took to be ready and to stop.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sender_runs: BTreeMap<String, MtaRun>,
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
    /// Every cell was classified from the client's (or sender's) own words only (`run --blind`,
    /// `probe`); the servers' records in `server_log` did not decide.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blind: bool,
}

fn one() -> u32 {
    1
}

/// One client stack as it was on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `builtin`, `program`, `adapter` or `sender`.
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
    /// Whether it could run here (the field keeps its first name).
    pub readiness: Availability,
    /// The classification table of its words (`harness/classify/NAME.toml`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub errors: String,
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
    /// What became of the message, for a sender (a real MTA given one message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// In a blind run, where the blind finding differs from the informed one: that one, and
    /// whether the difference is an allowed coarsening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_check: Option<BlindCheck>,
    /// How often the repeats failed, when the cell ran more than once (`--repeat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::rate::Rate>,
    /// The rare encodings this connected cell's stack is known to fail (a forced profile's
    /// finding) that its handshakes are exposed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rare: Vec<crate::rate::RareNote>,
    /// The rare encodings a forced profile tests that this connected cell's handshakes met by
    /// chance: its server did not choose (OpenSSL, an MTA) — whether or not its stack fails them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_to_chance: Vec<crate::encoding::RareCase>,
}

impl Report {
    /// One line about the MTA behind a profile, if one ran: what, on which TLS library, its
    /// settings as written, and what it said about them.
    pub fn server_run_summary(&self, id: &str) -> Option<String> {
        self.server_runs.get(id).map(MtaRun::summary)
    }

    /// Count of cells per verdict.
    pub fn verdict_counts(&self) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for c in self.cells.values() {
            *counts.entry(c.verdict).or_insert(0) += 1;
        }
        counts
    }

    /// The process exit code the run earns: 3 harness error, 1 unexpected verdict (or, in a blind
    /// run, a cell whose blind finding disagrees with the informed one), else 0.
    pub fn exit_code(&self) -> i32 {
        let verdicts: Vec<Verdict> = self.cells.values().map(|c| c.verdict).collect();
        if verdicts.contains(&Verdict::HarnessError) {
            exit::HARNESS_ERROR
        } else if verdicts.iter().any(|v| !v.is_as_expected())
            || self.cells.values().any(|c| c.blind_check.as_ref().is_some_and(BlindCheck::disagrees))
        {
            exit::UNEXPECTED
        } else {
            exit::AS_EXPECTED
        }
    }

    /// The slowest cells, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.cells.iter().map(|(id, c)| (id.as_str(), c.duration_ms)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// Rows grouped for tables: TLS configurations, client updates that break servers, STARTTLS
    /// behaviour (see [`crate::profile::Section`]); empty groups are left out, and a row without
    /// a profile (a foreign server) goes with the TLS configurations.
    pub fn sections(&self) -> Vec<(&'static str, Vec<&String>)> {
        let of = |s: &String| self.servers.get(s).map_or(crate::profile::Section::Tls, |p| p.section());
        crate::profile::Section::ALL
            .into_iter()
            .map(|section| (section.title(), self.run.server_order.iter().filter(|s| of(s) == section).collect()))
            .filter(|(_, rows): &(&str, Vec<&String>)| !rows.is_empty())
            .collect()
    }

    /// The ClientHello a client stack sends, as the built-in server read it in the stack's cells
    /// of the "Client updates" section (the most frequent size and key shares of the complete
    /// hellos): `1538 B X25519MLKEM768+x25519`. `None` when no such cell recorded one.
    pub fn client_hello_line(&self, client: &str) -> Option<String> {
        let mut seen: BTreeMap<(usize, Vec<String>), usize> = BTreeMap::new();
        for cell in self.cells.values() {
            let in_section =
                self.servers.get(&cell.server).is_some_and(|p| p.section() == crate::profile::Section::ClientUpdates);
            if cell.client != client || !in_section {
                continue;
            }
            for h in cell.server_log.iter().filter_map(|r| r.client_hello.as_ref()).filter(|h| h.read_only.is_none()) {
                *seen.entry((h.length, h.key_shares.clone())).or_default() += 1;
            }
        }
        let ((length, shares), _) = seen.into_iter().max_by_key(|(k, n)| (*n, k.0))?;
        let shares = if shares.is_empty() { "no key share".to_string() } else { shares.join("+") };
        Some(format!("{length} B {shares}"))
    }

    /// The cell for a (server, client) pair.
    pub fn cell(&self, server: &str, client: &str) -> Option<&CellReport> {
        self.cells.get(&format!("{client}/{server}"))
    }

    /// Whether a client stack is a sender (a real MTA delivering a message).
    pub fn is_sender(&self, client: &str) -> bool {
        self.clients.get(client).is_some_and(|c| c.kind == "sender")
    }

    /// The client programs' columns, in matrix order (senders have a table of their own).
    pub fn program_columns(&self) -> Vec<&String> {
        self.run.client_order.iter().filter(|c| !self.is_sender(c)).collect()
    }

    /// The senders' columns, in matrix order: the "Mail delivery" table.
    pub fn sender_columns(&self) -> Vec<&String> {
        self.run.client_order.iter().filter(|c| self.is_sender(c)).collect()
    }
}

impl CellReport {
    /// What the server read of the client's ClientHello(s) in this cell, one line each
    /// (connections that sent none are left out).
    pub fn client_hellos(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.server_log.iter().filter_map(|r| r.client_hello.as_ref()).map(|h| h.summary()).collect();
        out.dedup();
        out
    }

    /// The server's choices of its keys and signatures in this cell, one line per kind of
    /// choice (`key exchange: forced secret-leading-zero after 212 tries (1.9 ms)`; over repeats,
    /// `… 50 times, tries median 212, max 1173, median 1.5 ms`); a secret's luck only where it
    /// was a rare case.
    pub fn encodings(&self) -> Vec<String> {
        let records = self
            .server_log
            .iter()
            .chain(self.delivery.iter().flat_map(|d| d.attempts.iter().filter_map(|a| a.server.as_ref())));
        let mut kinds: Vec<(&crate::encoding::EncodingChoice, Vec<(u32, u64)>)> = Vec::new();
        for e in records.flat_map(|r| &r.encodings) {
            if e.forced.is_none() && e.avoided.is_empty() && e.by_chance.is_empty() {
                continue;
            }
            let same = |k: &crate::encoding::EncodingChoice| {
                (&k.what, k.forced, &k.avoided, &k.by_chance) == (&e.what, e.forced, &e.avoided, &e.by_chance)
            };
            match kinds.iter_mut().find(|(k, _)| same(k)) {
                Some((_, costs)) => costs.push((e.tries, e.micros)),
                None => kinds.push((e, vec![(e.tries, e.micros)])),
            }
        }
        kinds
            .into_iter()
            .map(|(e, mut costs)| {
                if costs.len() == 1 {
                    return e.summary();
                }
                let n = costs.len();
                costs.sort_by_key(|c| c.0);
                let (median_tries, max_tries) = (costs[n / 2].0, costs[n - 1].0);
                costs.sort_by_key(|c| c.1);
                let median_ms = costs[n / 2].1 as f64 / 1000.0;
                let head = e.summary();
                let head = head.split(" after ").next().unwrap_or(&head);
                format!("{head}, {n} times: tries median {median_tries}, max {max_tries}; median {median_ms:.1} ms")
            })
            .collect()
    }

    /// What a table shows: a sender's delivery (`deferred: dh_too_small`), else the outcome.
    /// A client's connected cell whose handshake needed a HelloRetryRequest says so
    /// (`TLSv1.3 secp384r1 after HRR`), as the built-in server recorded it; repeats that failed
    /// add their count (`· 3/1000 failed`), and a rare encoding the stack fails its odds
    /// (`· fails 1/256`).
    pub fn label(&self) -> String {
        let mut label = self.outcome_label();
        if let Some(rate) = self.rate.as_ref().filter(|r| r.failed > 0) {
            label.push_str(&format!(" · {}", rate.short()));
        }
        if let Some(note) = self.rare.first() {
            label.push_str(&format!(" · {}", note.short()));
        }
        label
    }

    /// The outcome (or a sender's delivery) alone, without a rate or rare-encoding note.
    pub fn outcome_label(&self) -> String {
        match &self.delivery {
            Some(d)
                if d.result == crate::delivery::DeliveryResult::Tls
                    && d.attempts
                        .iter()
                        .filter_map(|a| a.server.as_ref())
                        .any(ConnectionRecord::needed_hello_retry) =>
            {
                format!("{} after HRR", d.label())
            }
            Some(d) => d.label(),
            None if self.needed_hello_retry() && matches!(self.outcome, Outcome::Connected(_)) => {
                format!("{} after HRR", self.outcome.label())
            }
            None => self.outcome.label(),
        }
    }

    /// Whether the server recorded a handshake of this cell that needed a HelloRetryRequest.
    pub fn needed_hello_retry(&self) -> bool {
        self.server_log.iter().any(ConnectionRecord::needed_hello_retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expected::ExpectedOutcome;
    use crate::negotiated::{Negotiated, Protocol, Stage};
    use crate::outcome::{Connection, ErrorClass, Reporter, Side};
    use proptest::prelude::*;

    fn outcome() -> impl Strategy<Value = Outcome> {
        let text = "\\PC{0,30}";
        prop_oneof![
            (
                0..Protocol::ALL.len(),
                proptest::option::of("\\PC{1,30}"),
                proptest::option::of(text),
                proptest::option::of(512u32..9000),
                any::<bool>()
            )
                .prop_map(|(p, cipher, group, dh_bits, by_server)| Outcome::Connected(Connection {
                    negotiated: Negotiated { protocol: Some(Protocol::ALL[p]), cipher, group, dh_bits },
                    reported_by: if by_server { Reporter::Server } else { Reporter::Client },
                })),
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
                expected: Expected::new(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall }, "r"),
                verdict: Verdict::ALL[v],
                duration_ms: ms,
                server_log: Vec::new(),
                repeats: Vec::new(),
                delivery: None,
                blind_check: None,
                rate: None,
                rare: Vec::new(),
                left_to_chance: Vec::new(),
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
                    matrix_digest: "d".into(), shard: Some("1/2".into()), merged_from: vec![], repeat: 1, blind: false,
                },
                servers: BTreeMap::new(),
                server_runs: BTreeMap::new(),
                sender_runs: BTreeMap::new(),
                clients: BTreeMap::new(),
                cells: cells.into_iter().map(|c| (format!("{}/{}", c.client, c.server), c)).collect(),
            };
            let text = serde_json::to_string_pretty(&report).unwrap();
            let back: Report = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, report);
        }
    }
}
