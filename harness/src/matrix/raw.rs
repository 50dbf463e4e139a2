//! The matrix file as serde reads it (unknown keys refused), before validation, and where in
//! the text a table or key is written, for error messages that name the line.

use report_format::{ErrorClass, ServerProfile};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub cell_timeout: Option<String>,
    pub jobs: Option<usize>,
    #[serde(default)]
    pub expectations: Vec<PathBuf>,
}

/// An expectations file: `[[expect]]` entries only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpectations {
    #[serde(default, rename = "expect")]
    pub expects: Vec<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub builtin: Option<String>,
    pub program: Option<PathBuf>,
    pub adapter: Option<String>,
    /// A policy variant of an earlier stack: same program, more args or env.
    pub variant_of: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub errors: Option<String>,
    /// The declared policy for the fuzzing oracle (`harness/policies/<name>.toml`).
    pub policy: Option<String>,
    /// The TLS library the stack uses (openssl, gnutls, rustls, go, jsse) and how it links it
    /// (dynamic, static, built): which stacks `compare --candidate` swaps a build under.
    pub library: Option<report_format::Library>,
    pub linkage: Option<report_format::Linkage>,
    /// A shorter (or longer) cell timeout for this stack than `[run] cell_timeout`.
    pub cell_timeout: Option<String>,
    /// Programs that must be on PATH for the stack to run (else it is skipped).
    #[serde(default)]
    pub requires: Vec<String>,
    /// The program also runs many cells in one process (`--batch`): one worker per run.
    pub batch: Option<bool>,
    /// The script that builds the program, named when it is missing.
    pub build: Option<String>,
    /// A real MTA as a sender (`postfix`, `exim`, `sendmail`, `opensmtpd`): each cell gives it
    /// one message for the cell's server and follows the message to its fate.
    pub sender: Option<report_format::Mta>,
    /// A sender's TLS policy: `may` (STARTTLS when offered) or `encrypt` (never in clear).
    pub tls: Option<mta::TlsPolicy>,
    /// A sender delivers in clear on a new connection after a failed handshake.
    pub fallback_to_clear: Option<bool>,
    /// Delivery attempts a sender's cell forces before it says the message is stuck (1–5).
    pub attempts: Option<u32>,
}

/// What an `[[expect]]` says a cell does, as written (`class` goes with `failed` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOutcome {
    Connected,
    Failed,
    Timeout,
    Unsupported,
    /// A sender's message meets the fate `result` (with `class` where a TLS failure is behind it).
    Delivery,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub cell: String,
    pub outcome: RawOutcome,
    pub class: Option<ErrorClass>,
    /// A sender's fate: `tls`, `plaintext`, `plaintext_fallback`, `deferred`, `bounced`.
    pub result: Option<report_format::DeliveryResult>,
    /// A known rare failure of a cell expected to connect: `rare = "1/256"` with its `class`.
    pub rare: Option<String>,
    pub reason: String,
    pub link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    #[serde(default)]
    pub run: RawRun,
    #[serde(default, rename = "server")]
    pub servers: Vec<Spanned<ServerProfile>>,
    #[serde(default, rename = "client")]
    pub clients: Vec<Spanned<RawClient>>,
    #[serde(default, rename = "expect")]
    pub expects: Vec<Spanned<RawExpect>>,
}

/// Line number (1-based) of a byte offset.
pub fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The line where `key = …` is written in the table that starts at `span` (up to the next
/// table header), else the table's first line.
pub fn key_line(source: &str, span: &Range<usize>, key: &str) -> usize {
    let start = source[..span.start.min(source.len())].rfind('\n').map_or(0, |i| i + 1);
    let mut offset = start;
    for (i, line) in source[start..].split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') && is_header(t) {
            break;
        }
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return line_of(source, offset);
        }
        offset += line.len();
    }
    line_of(source, span.start)
}

/// `[run]`, `[[server]]`: a table header line (not an array value on its own line).
fn is_header(line: &str) -> bool {
    let t = line.trim_end();
    t.ends_with(']') && !t.contains('=') && !t.starts_with("[\"") && !t.starts_with("['")
}
