//! The plan: which cells run. Cells are server profiles × client stacks in matrix order,
//! narrowed by `--server`/`--client` globs; a cell's id is `client/server` and parses back.

use crate::matrix::Matrix;
use globset::{Glob, GlobSet, GlobSetBuilder};

pub use report_format::{BadCellId, CellId};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--{flag} {pattern:?} is not a valid glob: {message}")]
    BadGlob { flag: &'static str, pattern: String, message: String },
    #[error("no cell matches --server {servers:?} --client {clients:?}; `starttls-matrix list` shows them all")]
    Empty { servers: Vec<String>, clients: Vec<String> },
}

fn globs(flag: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, PlanError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| PlanError::BadGlob { flag, pattern: p.clone(), message: e.to_string() })?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| PlanError::BadGlob { flag, pattern: patterns.join(","), message: e.to_string() })
}

/// The cells to run, grouped by server profile in matrix order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub servers: Vec<String>,
    pub clients: Vec<String>,
    pub cells: Vec<CellId>,
}

impl Plan {
    /// All cells of the matrix, narrowed by globs over server and client ids.
    pub fn new(matrix: &Matrix, server_globs: &[String], client_globs: &[String]) -> Result<Plan, PlanError> {
        let (sg, cg) = (globs("server", server_globs)?, globs("client", client_globs)?);
        let keep = |set: &Option<GlobSet>, id: &str| set.as_ref().is_none_or(|s| s.is_match(id));
        let servers: Vec<String> =
            matrix.servers.iter().map(|s| s.profile.id.clone()).filter(|id| keep(&sg, id)).collect();
        let clients: Vec<String> = matrix.clients.iter().map(|c| c.id.clone()).filter(|id| keep(&cg, id)).collect();
        let cells: Vec<CellId> = servers
            .iter()
            .flat_map(|s| clients.iter().map(move |c| CellId { client: c.clone(), server: s.clone() }))
            .collect();
        if cells.is_empty() {
            return Err(PlanError::Empty { servers: server_globs.to_vec(), clients: client_globs.to_vec() });
        }
        Ok(Plan { servers, clients, cells })
    }

    /// The same server profiles with exactly these client stacks, in this order.
    pub fn with_clients(&self, clients: Vec<String>) -> Plan {
        let cells = self
            .servers
            .iter()
            .flat_map(|s| clients.iter().map(move |c| CellId { client: c.clone(), server: s.clone() }))
            .collect();
        Plan { servers: self.servers.clone(), clients, cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cell_ids_round_trip(client in "[a-z0-9@._-]{1,20}", server in "[a-z0-9@._:-]{1,20}") {
            let id = CellId { client, server };
            prop_assert_eq!(id.to_string().parse::<CellId>(), Ok(id));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<CellId>();
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "a", "/b", "a/", "a/b/c"] {
            assert!(bad.parse::<CellId>().is_err(), "{bad}");
        }
    }
}
