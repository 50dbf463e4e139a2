//! What running one cell yields, before any judgement: the client's own result, the server's
//! records and state. The runner gathers it; [`crate::derive`] turns it into an outcome, and the
//! same evidence with the server's part withheld ([`Evidence::blind`]) is what a client alone
//! could say, as `probe` must against a server we do not control.

use report_format::{Availability, CellId, ConnectionRecord, DhGroup};
use std::time::Duration;
use wire::ClientResult;

/// What running one cell's client program gave, read but not classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRun {
    /// It kept the contract: its RESULT.
    Result(ClientResult),
    /// A sender's account of its message: attempts, fate, its log and queue.
    Delivery(mta::SenderView),
    /// It exited 89: it cannot express this cell.
    Unsupported(String),
    /// It did not finish within the cell's timeout and was killed.
    Timeout(Duration),
    /// We could not run it or read it (spawn failure, crash, no RESULT line).
    HarnessError(String),
}

/// Whose server a cell ran against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    /// One of ours: its records cover every connection of the cell, and a client that cannot
    /// reach it is our problem, not an interop failure.
    Own {
        /// The classification table for its own words (`server-openssl`, `server-postfix`…).
        table: String,
        /// A composite or small-subgroup DH prime it served on purpose.
        invalid_dh: Option<DhGroup>,
    },
    /// Someone else's (`probe`): nothing but the client's words.
    External,
}

/// The server's side of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEvidence {
    pub kind: ServerKind,
    /// Whether it could serve the cell at all (a profile whose server did not start).
    pub availability: Availability,
    /// Its records of the cell's connections.
    pub records: Vec<ConnectionRecord>,
    /// What it said about its own configuration (an MTA dropping a DH file it refused).
    pub config_warnings: Vec<String>,
}

impl ServerEvidence {
    /// A server someone else runs.
    pub fn external() -> ServerEvidence {
        ServerEvidence {
            kind: ServerKind::External,
            availability: Availability::Ready,
            records: Vec::new(),
            config_warnings: Vec::new(),
        }
    }
}

/// Everything one run of a cell gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Whether the client stack could run here.
    pub stack: Availability,
    /// The classification table of the stack's words.
    pub client_table: String,
    /// What its program gave; `None` when it did not run (stack or server not available).
    pub client: Option<ClientRun>,
    pub server: ServerEvidence,
}

impl Evidence {
    /// The same cell as a client alone sees it: the server's records, warnings and ownership
    /// withheld (its availability stays: a server that did not start is no cell at all).
    pub fn blind(&self) -> Evidence {
        let mut blind = self.clone();
        blind.server = ServerEvidence { availability: self.server.availability.clone(), ..ServerEvidence::external() };
        blind
    }
}

/// One cell's runs, with how long they took.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    pub id: CellId,
    /// One per repeat (`run --repeat N`), in order; at least one.
    pub runs: Vec<Evidence>,
    pub duration: Duration,
}
