//! The subcommands of the `starttls-matrix` binary, one file each, and what they share.

pub mod candidate;
pub mod common;
pub mod compare;
pub mod diff;
pub mod expectations;
pub mod fuzz;
pub mod list;
pub mod merge;
pub mod probe;
pub mod publish;
pub mod report;
pub mod run;
pub mod serve;
