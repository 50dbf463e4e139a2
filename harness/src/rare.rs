//! The honest table: a connected cell whose stack fails the matching forced profile says so
//! ("fails about 1 handshake in 256, see rare-…"), because a server that does not choose its keys
//! hits the case by chance. The finding is this run's forced cell where it ran, else the matrix's
//! expectation for it; the exposure is the cell's negotiated parameters
//! ([`report_format::encoding::exposed`]); whether this cell's own server kept the case out is
//! read from its records.

use crate::matrix::Matrix;
use report_format::encoding::{exposed, one_in};
use report_format::{
    CellReport, DeliveryResult, ErrorClass, ExpectedOutcome, Group, Here, Negotiated, Outcome, RareCase, RareNote,
    Report, Seen, ServerProfile,
};
use std::collections::BTreeMap;

/// How a stack fares on a forced profile, if it fails it: the class, and whose word it is.
fn fails(cell: Option<&CellReport>, expected: Option<ExpectedOutcome>) -> Option<(Option<ErrorClass>, Seen)> {
    match cell {
        Some(c) => {
            let failed = match &c.delivery {
                Some(d) => d.result != DeliveryResult::Tls || d.class.is_some(),
                None => matches!(c.outcome, Outcome::Failed { .. } | Outcome::Timeout { .. }),
            };
            let class = match (&c.delivery, &c.outcome) {
                (Some(d), _) => d.class,
                (None, Outcome::Failed { class, .. }) => Some(*class),
                _ => None,
            };
            failed.then_some((class, Seen::ThisRun))
        }
        None => match expected? {
            ExpectedOutcome::Failed { class } => Some((Some(class), Seen::Expected)),
            ExpectedOutcome::Delivery { result, class } if result != DeliveryResult::Tls => {
                Some((class, Seen::Expected))
            }
            ExpectedOutcome::Timeout => Some((None, Seen::Expected)),
            ExpectedOutcome::Connected | ExpectedOutcome::Unsupported | ExpectedOutcome::Delivery { .. } => None,
        },
    }
}

/// What a connected cell negotiated (a sender's: its delivery over TLS), with the group from
/// the built-in server's record where the stack does not name it (Java).
fn negotiated(cell: &CellReport) -> Option<Negotiated> {
    let mut n = match (&cell.delivery, &cell.outcome) {
        (Some(d), _) if d.result == DeliveryResult::Tls => d.negotiated.clone()?,
        (Some(_), _) => return None,
        (None, Outcome::Connected(c)) => c.negotiated.clone(),
        (None, _) => return None,
    };
    if n.group.is_none() {
        n.group = cell.server_log.iter().rev().find_map(|r| r.tls.as_ref()?.group.clone());
    }
    Some(n)
}

/// Fill in every connected cell's rare notes. `matrix` gives the forced profiles that did not
/// run here and their expectations; without it only this run's forced cells count.
pub fn annotate(report: &mut Report, matrix: Option<&Matrix>) {
    // Forced profiles (not the bug models, which carry a fault): this run's, then the matrix's.
    let mut forced: BTreeMap<String, ServerProfile> = BTreeMap::new();
    let from_matrix = matrix.into_iter().flat_map(|m| m.servers.iter().map(|e| &e.profile));
    for p in report.servers.values().chain(from_matrix) {
        if p.force.is_some() && p.fault.is_none() {
            forced.entry(p.id.clone()).or_insert_with(|| p.clone());
        }
    }
    let mut notes: BTreeMap<String, Vec<RareNote>> = BTreeMap::new();
    let mut chance: BTreeMap<String, Vec<RareCase>> = BTreeMap::new();
    for (id, c) in &report.cells {
        let Some(profile) = report.servers.get(&c.server).filter(|p| p.force.is_none()) else { continue };
        let Some(n) = negotiated(c) else { continue };
        for f in forced.values() {
            let Some(case) = f.force else { continue };
            if exposed(f, case, &n, profile.cert, profile.backend.library()) && !avoided(c, case) {
                let list = chance.entry(id.clone()).or_default();
                if !list.contains(&case) {
                    list.push(case);
                }
            }
        }
    }
    for client in &report.run.client_order {
        for (fid, f) in &forced {
            let Some(case) = f.force else { continue };
            let cell = report.cell(fid, client);
            let expected = matrix.map(|m| m.expected_for(&format!("{client}/{fid}")).outcome);
            let Some((class, seen)) = fails(cell, expected) else { continue };
            for (id, c) in report.cells.iter().filter(|(_, c)| &c.client == client) {
                let Some(profile) = report.servers.get(&c.server) else { continue };
                if profile.force.is_some() {
                    continue;
                }
                let Some(n) = negotiated(c) else { continue };
                if !exposed(f, case, &n, profile.cert, profile.backend.library()) {
                    continue;
                }
                let group = n.group.as_deref().and_then(Group::for_name);
                notes.entry(id.clone()).or_default().push(RareNote {
                    case,
                    profile: fid.clone(),
                    one_in: one_in(case, group),
                    class,
                    seen,
                    here: if avoided(c, case) { Here::Avoided } else { Here::Sampled },
                });
            }
        }
    }
    // Without the matrix (merging shards), the notes a shard drew from the matrix's
    // expectations stand for forced profiles that ran nowhere.
    for (id, cell) in report.cells.iter_mut() {
        let kept: Vec<RareNote> = std::mem::take(&mut cell.rare)
            .into_iter()
            .filter(|n| matrix.is_none() && n.seen == Seen::Expected && !report.servers.contains_key(&n.profile))
            .collect();
        if !kept.is_empty() {
            let list = notes.entry(id.clone()).or_default();
            for n in kept {
                if !list.contains(&n) {
                    list.push(n);
                }
            }
        }
    }
    for (id, list) in notes {
        if let Some(cell) = report.cells.get_mut(&id) {
            cell.rare = list;
        }
    }
    for (id, cell) in report.cells.iter_mut() {
        cell.left_to_chance = chance.remove(id).unwrap_or_default();
    }
}

/// Whether the cell's server recorded keeping the case out (the rustls backend).
fn avoided(cell: &CellReport, case: RareCase) -> bool {
    cell.server_log
        .iter()
        .chain(cell.delivery.iter().flat_map(|d| d.attempts.iter().filter_map(|a| a.server.as_ref())))
        .flat_map(|r| &r.encodings)
        .any(|e| e.avoided.contains(&case))
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::{Expected, Protocol, RunInfo, Side, Stage, Verdict};

    fn profile(json: serde_json::Value) -> ServerProfile {
        serde_json::from_value(json).unwrap()
    }

    fn cell(client: &str, server: &str, outcome: Outcome) -> CellReport {
        CellReport {
            client: client.into(),
            server: server.into(),
            outcome,
            expected: Expected::new(ExpectedOutcome::Connected, "r"),
            verdict: Verdict::Pass,
            duration_ms: 1,
            server_log: vec![],
            repeats: vec![],
            delivery: None,
            blind_check: None,
            rate: None,
            rare: vec![],
            left_to_chance: Vec::new(),
        }
    }

    fn tls13(group: &str) -> Outcome {
        Outcome::Connected(Negotiated::tls(Protocol::Tls13, "TLS_AES_128_GCM_SHA256", Some(group.into()), None).into())
    }

    /// java-jsse fails the forced FFDHE secret: its connected TLS 1.3 ffdhe2048 cells say so,
    /// its x25519 cells and another stack's cells do not.
    #[test]
    fn a_forced_failure_marks_the_exposed_cells_of_its_stack() {
        let forced = profile(serde_json::json!({"id": "rare-ffdhe", "backend": "rustls", "min_tls": "1.3",
            "groups": ["ffdhe2048"], "force": "secret-leading-zero"}));
        let plain = profile(serde_json::json!({"id": "ffdhe2048-tls13", "backend": "openssl", "min_tls": "1.3",
            "groups": ["ffdhe2048"]}));
        let x25519 = profile(serde_json::json!({"id": "x", "backend": "openssl", "min_tls": "1.3"}));
        let mismatch = Outcome::Failed {
            class: ErrorClass::KeyMismatch,
            side: Side::Unknown,
            stage: Stage::Handshake,
            client_error: "SSLException: Tag mismatch!".into(),
            server_error: None,
        };
        let cells = [
            cell("java", "rare-ffdhe", mismatch),
            cell("java", "ffdhe2048-tls13", tls13("ffdhe2048")),
            cell("java", "x", tls13("x25519")),
            cell("openssl", "rare-ffdhe", tls13("ffdhe2048")),
            cell("openssl", "ffdhe2048-tls13", tls13("ffdhe2048")),
        ];
        let mut report = Report {
            schema_version: 1,
            run: RunInfo {
                id: "r".into(),
                mode: "run".into(),
                started: "s".into(),
                finished: "f".into(),
                wall_ms: 1,
                matrix: "m".into(),
                tool_versions: BTreeMap::new(),
                server_order: vec!["ffdhe2048-tls13".into(), "x".into(), "rare-ffdhe".into()],
                client_order: vec!["java".into(), "openssl".into()],
                jobs: 1,
                cores: 1,
                matrix_digest: String::new(),
                shard: None,
                merged_from: vec![],
                repeat: 1,
                blind: false,
            },
            servers: [forced, plain, x25519].into_iter().map(|p| (p.id.clone(), p)).collect(),
            server_runs: BTreeMap::new(),
            sender_runs: BTreeMap::new(),
            clients: BTreeMap::new(),
            cells: cells.into_iter().map(|c| (format!("{}/{}", c.client, c.server), c)).collect(),
        };
        annotate(&mut report, None);
        let notes = &report.cells["java/ffdhe2048-tls13"].rare;
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].profile.as_str(), notes[0].one_in), ("rare-ffdhe", 256));
        assert_eq!(
            (notes[0].class, notes[0].seen, notes[0].here),
            (Some(ErrorClass::KeyMismatch), Seen::ThisRun, Here::Sampled)
        );
        assert!(report.cells["java/ffdhe2048-tls13"].label().ends_with("· fails 1/256"));
        assert!(report.cells["java/x"].rare.is_empty(), "x25519 is not exposed");
        assert_eq!(report.cells["openssl/ffdhe2048-tls13"].left_to_chance, vec![RareCase::SecretLeadingZero]);
        assert!(report.cells["openssl/ffdhe2048-tls13"].rare.is_empty(), "openssl handles it");
        assert!(report.cells["java/rare-ffdhe"].rare.is_empty(), "the forced cell itself shows the failure");
    }
}
