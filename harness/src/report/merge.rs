//! Merging shard reports into one: only reports of the same matrix, and no cell twice.

use report_format::{Report, SCHEMA_VERSION};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("merge reports: none given")]
    Empty,
    #[error("merge report {run}: schema version {found}, this tool writes {SCHEMA_VERSION}")]
    Schema { run: String, found: u32 },
    #[error("merge reports {a} and {b}: they come from different matrices (digest {da} vs {db})")]
    DifferentMatrix { a: String, b: String, da: String, db: String },
    #[error("merge reports: cell {cell} is in both {a} and {b}")]
    Overlap { cell: String, a: String, b: String },
}

/// Combine shard reports (in any order) into one report.
pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    let mut iter = reports.into_iter();
    let mut merged = iter.next().ok_or(MergeError::Empty)?;
    let first_run = merged.run.id.clone();
    if merged.schema_version != SCHEMA_VERSION {
        return Err(MergeError::Schema { run: first_run, found: merged.schema_version });
    }
    merged.run.merged_from = vec![first_run.clone()];
    let mut owner: std::collections::BTreeMap<String, String> =
        merged.cells.keys().map(|k| (k.clone(), first_run.clone())).collect();
    for r in iter {
        if r.schema_version != SCHEMA_VERSION {
            return Err(MergeError::Schema { run: r.run.id, found: r.schema_version });
        }
        if r.run.matrix_digest != merged.run.matrix_digest {
            return Err(MergeError::DifferentMatrix {
                a: first_run,
                b: r.run.id,
                da: merged.run.matrix_digest,
                db: r.run.matrix_digest,
            });
        }
        for (cell, c) in r.cells {
            if let Some(a) = owner.get(&cell) {
                return Err(MergeError::Overlap { cell, a: a.clone(), b: r.run.id });
            }
            owner.insert(cell.clone(), r.run.id.clone());
            merged.cells.insert(cell, c);
        }
        merged.servers.extend(r.servers);
        merged.clients.extend(r.clients);
        for s in r.run.server_order {
            if !merged.run.server_order.contains(&s) {
                merged.run.server_order.push(s);
            }
        }
        for c in r.run.client_order {
            if !merged.run.client_order.contains(&c) {
                merged.run.client_order.push(c);
            }
        }
        merged.run.started = merged.run.started.min(r.run.started);
        merged.run.finished = merged.run.finished.max(r.run.finished);
        merged.run.wall_ms = merged.run.wall_ms.max(r.run.wall_ms);
        merged.run.merged_from.push(r.run.id);
    }
    merged.run.id = format!("merged-{}", merged.run.merged_from.join("+"));
    merged.run.shard = None;
    // A forced profile's finding in one shard speaks for the stack's cells in another.
    crate::rare::annotate(&mut merged, None);
    Ok(merged)
}
