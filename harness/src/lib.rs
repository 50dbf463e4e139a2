//! starttls-matrix: runs real TLS client stacks against SMTP STARTTLS servers with chosen TLS
//! settings and records, cell by cell, what was negotiated or how and where it failed — and, for
//! real MTAs as senders, what became of a real message.
//! matrix → plan → run (evidence) → derive (outcome) → judge (verdict) → reports.

pub mod adapters;
pub mod availability;
pub mod batch;
pub mod blind;
pub mod candidate;
pub mod classify;
pub mod delivery;
pub mod derive;
pub mod diff;
pub mod evidence;
pub mod expectations;
pub mod fuzz;
pub mod judge;
pub mod matrix;
pub mod oracle;
pub mod pipeline;
pub mod plan;
pub mod rare;
pub mod rate;
pub mod report;
pub mod runner;
pub mod shard;
pub mod stack;
pub mod unmapped;
