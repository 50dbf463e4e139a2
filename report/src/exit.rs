//! The process exit codes of `starttls-matrix`, and the client contract's one.

/// Every verdict as expected (pass, expected failure, skipped); a diff with nothing broken.
pub const AS_EXPECTED: i32 = 0;
/// Some unexpected verdict, a diff with newly broken cells, stale expectations.
pub const UNEXPECTED: i32 = 1;
/// Usage or configuration error: a malformed matrix names the file, line and fix.
pub const USAGE: i32 = 2;
/// Harness error: we could not run a cell (spawn failure, crash, no RESULT line, bind failure).
pub const HARNESS_ERROR: i32 = 3;
/// Interrupted (Ctrl-C, SIGTERM): every child process is ended, nothing is written.
pub const INTERRUPTED: i32 = 130;
/// The client contract: a client program that cannot express a requested option or flag.
pub const CLIENT_UNSUPPORTED: i32 = 89;
