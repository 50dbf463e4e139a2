//! What crosses a process or network boundary: SMTP replies (`250-…`) and commands (`EHLO`, …)
//! per RFC 5321, and the client contract's `RESULT {json}` line with the negotiated parameters.
//! No I/O here: callers feed lines and write what this formats.

pub mod command;
pub mod reply;
pub mod result;

pub use command::{Command, CommandError, MAX_COMMAND_LINE};
pub use reply::{MAX_REPLY_LINES, Reply, ReplyError, ReplyParser};
pub use report_format::{Negotiated, Protocol, Stage};
pub use result::{ClientResult, EXIT_UNSUPPORTED, ResultLineError};
