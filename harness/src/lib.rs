//! starttls-matrix: runs real TLS client stacks against SMTP STARTTLS servers with chosen TLS
//! settings and records, cell by cell, what was negotiated or how and where it failed.
//! matrix → plan → run → outcome → verdict → reports.

pub mod adapters;
pub mod batch;
pub mod classify;
pub mod diff;
pub mod expectations;
pub mod fuzz;
pub mod matrix;
pub mod oracle;
pub mod outcome;
pub mod plan;
pub mod process;
pub mod report;
pub mod runner;
pub mod shard;
pub mod stack;
pub mod verdict;
