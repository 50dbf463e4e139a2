//! The runner gathers evidence; it does not judge. It prepares a run ([`Context`]), starts each
//! server profile once, runs its cells one after another while profiles run in parallel
//! (bounded), and emits [`Event`]s: what it ran ([`Event::CellRan`]) goes to the judging stage,
//! which emits [`Event::CellFinished`] for the reporters. It never prints.

pub mod context;
pub mod deliveries;
pub mod schedule;

pub use context::{CLIENT_EHLO, Context, RunError, ServerState, builtin_table, server_table};
pub use schedule::{RunOptions, probe, run};

use crate::evidence::CellRun;
use crate::judge::CellRecord;
use report_format::{Availability, CellId};

/// What the runner (and the judging stage after it) tell reporters.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        cells: usize,
    },
    StackResolved {
        id: String,
        availability: Availability,
    },
    ServerStarted {
        id: String,
        addr: String,
    },
    /// A profile's server did not start; every cell of it says why.
    ServerNotStarted {
        id: String,
        why: Availability,
    },
    CellStarted {
        id: CellId,
    },
    /// A cell's evidence, not yet judged (the runner's last word on it).
    CellRan(Box<CellRun>),
    /// A cell judged (the judging stage's word on it).
    CellFinished(Box<CellRecord>),
}

/// Where the built-in client programs live: the `starttls-matrix` binary itself.
pub fn builtin_exe() -> std::io::Result<std::path::PathBuf> {
    std::env::current_exe()
}
