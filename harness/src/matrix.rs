//! The matrix file: server profiles × client stacks plus expectations, parsed with serde
//! (unknown keys refused) and then validated into types that cannot hold nonsense. Every error
//! names the file and line and says how to fix it.

use crate::classify::Tables;
use crate::outcome::ErrorClass;
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use servers::ServerProfile;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A matrix that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    cell_timeout: Option<String>,
    jobs: Option<usize>,
    #[serde(default)]
    expectations: Vec<PathBuf>,
}

/// An expectations file: `[[expect]]` entries only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectations {
    #[serde(default, rename = "expect")]
    expects: Vec<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    #[serde(default)]
    description: String,
    builtin: Option<String>,
    program: Option<PathBuf>,
    adapter: Option<String>,
    /// A policy variant of an earlier stack: same program, more args or env.
    variant_of: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    errors: Option<String>,
    /// The declared policy for the fuzzing oracle (`harness/policies/<name>.toml`).
    policy: Option<String>,
    /// A shorter (or longer) cell timeout for this stack than `[run] cell_timeout`.
    cell_timeout: Option<String>,
    /// Programs that must be on PATH for the stack to run (else it is skipped).
    #[serde(default)]
    requires: Vec<String>,
    /// The program also runs many cells in one process (`--batch`): one worker per run.
    batch: Option<bool>,
    /// The script that builds the program, named when it is missing.
    build: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    cell: String,
    outcome: ExpectedKind,
    class: Option<ErrorClass>,
    reason: String,
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    #[serde(default)]
    run: RawRun,
    #[serde(default, rename = "server")]
    servers: Vec<Spanned<ServerProfile>>,
    #[serde(default, rename = "client")]
    clients: Vec<Spanned<RawClient>>,
    #[serde(default, rename = "expect")]
    expects: Vec<Spanned<RawExpect>>,
}

/// How a client stack is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StackKind {
    /// A built-in client program, run as `starttls-matrix client NAME`.
    Builtin(String),
    /// Any program that speaks the client contract.
    Program(PathBuf),
    /// An external program wrapped by an adapter of ours.
    Adapter(crate::adapters::AdapterKind),
}

/// One client stack (`[[client]]`).
#[derive(Debug, Clone, Serialize)]
pub struct ClientStack {
    pub id: String,
    pub description: String,
    pub kind: StackKind,
    /// Policy flags passed after the contract flags.
    pub args: Vec<String>,
    /// Environment added for the program (e.g. OPENSSL_CONF).
    pub env: BTreeMap<String, String>,
    /// The classification table for its error text.
    pub errors: String,
    /// The stack this is a policy variant of.
    pub variant_of: Option<String>,
    /// Its declared policy, for the fuzzing oracle.
    pub policy: Option<String>,
    /// Its own cell timeout, if it has one.
    #[serde(skip)]
    pub cell_timeout: Option<Duration>,
    /// Programs that must be on PATH (a wrapper's toolchain); missing ones skip the stack.
    pub requires: Vec<String>,
    /// Cells run in one long-lived worker (`program --batch`, see `batch.rs`), not a process each.
    pub batch: bool,
    /// The script that builds a `program` we build ourselves (`scripts/build-openssl-clients`):
    /// a missing program is skipped with "run <script>".
    pub build: Option<String>,
    /// The directory of the matrix that declared it, where extracted programs are looked for
    /// (`.cache/mta/root/postfix` for posttls-finger).
    #[serde(skip)]
    pub matrix_dir: PathBuf,
    #[serde(skip)]
    pub line: usize,
}

/// What an expectation says a cell does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedKind {
    Connected,
    Failed,
    Timeout,
    Unsupported,
}

/// What we believe a cell should do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub outcome: ExpectedKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Expected {
    /// The expectation of a cell no `[[expect]]` matches: it connects.
    pub fn default_connected() -> Expected {
        Expected {
            outcome: ExpectedKind::Connected,
            class: None,
            reason: "no expectation written: a cell is expected to connect".into(),
            link: None,
        }
    }
}

/// One `[[expect]]` entry: a glob over cell ids.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub pattern: String,
    pub glob: GlobMatcher,
    pub expected: Expected,
    /// Where it is written: `file:line`.
    pub at: String,
}

/// Run settings (`[run]`).
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub cell_timeout: Duration,
    /// Server profiles served at once; 0 means two per core.
    pub jobs: usize,
}

/// One server profile and where it was written.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    pub profile: ServerProfile,
    pub line: usize,
}

/// A validated matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub path: PathBuf,
    /// A digest of the matrix text and its expectation files: reports of different matrices
    /// are never merged.
    pub digest: String,
    pub run: RunSettings,
    pub servers: Vec<ServerEntry>,
    pub clients: Vec<ClientStack>,
    pub expectations: Vec<Expectation>,
}

/// Line number (1-based) of a byte offset.
fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The line where `key = …` is written in the table that starts at `span` (up to the next
/// table header), else the table's first line.
fn key_line(source: &str, span: &Range<usize>, key: &str) -> usize {
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

/// Validate `[[expect]]` entries written in `path`.
fn parse_expectations(
    path: &Path,
    source: &str,
    raw: Vec<Spanned<RawExpect>>,
) -> Result<Vec<Expectation>, MatrixError> {
    let invalid = |line: usize, message: String| MatrixError::Invalid { path: path.to_path_buf(), line, message };
    let mut expectations = Vec::new();
    for e in raw {
        let span = e.span();
        let e = e.into_inner();
        let at = |key: &str| key_line(source, &span, key);
        let glob = Glob::new(&e.cell)
            .map_err(|err| invalid(at("cell"), format!("expect {:?}: {err}", e.cell)))?
            .compile_matcher();
        match (e.outcome, e.class) {
            (ExpectedKind::Failed, None) => {
                let message = format!(
                    "expect {:?}: outcome \"failed\" needs the error class it fails with (class = \"…\")",
                    e.cell
                );
                return Err(invalid(at("outcome"), message));
            }
            (ExpectedKind::Connected | ExpectedKind::Timeout | ExpectedKind::Unsupported, Some(_)) => {
                return Err(invalid(
                    at("class"),
                    format!("expect {:?}: `class` goes only with outcome \"failed\"", e.cell),
                ));
            }
            _ => {}
        }
        if e.reason.trim().is_empty() {
            return Err(invalid(at("reason"), format!("expect {:?}: every expectation needs a reason", e.cell)));
        }
        expectations.push(Expectation {
            pattern: e.cell,
            glob,
            expected: Expected { outcome: e.outcome, class: e.class, reason: e.reason, link: e.link },
            at: format!("{}:{}", path.display(), line_of(source, span.start)),
        });
    }
    Ok(expectations)
}

/// FNV-1a, 64 bits: a stable digest for telling matrices (and shards) apart. Not for security.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl Matrix {
    /// Read, parse and validate a matrix file.
    pub fn load(path: &Path, tables: &Tables) -> Result<Matrix, MatrixError> {
        let source =
            std::fs::read_to_string(path).map_err(|cause| MatrixError::Read { path: path.to_path_buf(), cause })?;
        Matrix::parse(path, &source, tables)
    }

    /// Parse and validate matrix text; `path` is only used in messages.
    pub fn parse(path: &Path, source: &str, tables: &Tables) -> Result<Matrix, MatrixError> {
        let invalid = |line: usize, message: String| MatrixError::Invalid { path: path.to_path_buf(), line, message };
        let raw: RawMatrix = toml::from_str(source).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(source, s.start));
            invalid(line, format!("{} (see the matrix format in README.md)", e.message().trim()))
        })?;

        let cell_timeout = match &raw.run.cell_timeout {
            Some(t) => humantime::parse_duration(t).map_err(|e| {
                invalid(
                    key_line(source, &(0..source.len()), "cell_timeout"),
                    format!("cell_timeout {t:?}: {e} (write e.g. \"10s\")"),
                )
            })?,
            None => Duration::from_secs(10),
        };
        let run = RunSettings { cell_timeout, jobs: raw.run.jobs.unwrap_or(0) };

        let mut servers = Vec::new();
        let mut seen = BTreeSet::new();
        for s in raw.servers {
            let span = s.span();
            let profile = s.into_inner();
            if let Err(e) = profile.validate() {
                return Err(invalid(
                    key_line(source, &span, e.field),
                    format!("server {:?}: {}", profile.id, e.message),
                ));
            }
            if !seen.insert(profile.id.clone()) {
                return Err(invalid(
                    key_line(source, &span, "id"),
                    format!("duplicate server id {:?}: ids must be unique", profile.id),
                ));
            }
            servers.push(ServerEntry { profile, line: line_of(source, span.start) });
        }

        let mut clients = Vec::new();
        let mut seen = BTreeSet::new();
        for c in raw.clients {
            let span = c.span();
            let c = c.into_inner();
            let at = |key: &str| key_line(source, &span, key);
            if c.id.is_empty() || c.id.contains('/') || c.id.chars().any(char::is_whitespace) {
                return Err(invalid(
                    at("id"),
                    format!("client id {:?} must be non-empty, without '/' or spaces", c.id),
                ));
            }
            if !seen.insert(c.id.clone()) {
                return Err(invalid(at("id"), format!("duplicate client id {:?}: ids must be unique", c.id)));
            }
            let mut args = c.args;
            // `${MATRIX_DIR}` in an environment value is the matrix file's directory, so a policy
            // file shipped beside the matrix (OPENSSL_CONF=…) is found from any working directory.
            let matrix_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let matrix_dir = std::fs::canonicalize(matrix_dir).unwrap_or_else(|_| matrix_dir.to_path_buf());
            let mut env: BTreeMap<String, String> = c
                .env
                .into_iter()
                .map(|(k, v)| (k, v.replace("${MATRIX_DIR}", &matrix_dir.display().to_string())))
                .collect();
            let mut description = c.description;
            // A variant inherits from a stack declared before it: program, table, args, env,
            // policy, cell timeout and requirements, each unless it sets its own.
            let base: Option<ClientStack> = match &c.variant_of {
                Some(base_id) => match clients.iter().find(|b: &&ClientStack| &b.id == base_id) {
                    Some(b) => Some(b.clone()),
                    None => {
                        let message =
                            format!("client {:?}: variant_of {base_id:?} names no client declared before it", c.id);
                        return Err(invalid(at("variant_of"), message));
                    }
                },
                None => None,
            };
            let (kind, default_table) = match (c.builtin, c.program, c.adapter, &base) {
                (None, None, None, Some(base)) => {
                    args = base.args.iter().cloned().chain(args).collect();
                    env = base.env.clone().into_iter().chain(env).collect();
                    if description.is_empty() {
                        description = format!("{} with {}", base.id, args.join(" "));
                    }
                    (base.kind.clone(), Some(base.errors.clone()))
                }
                (_, _, _, Some(_)) => {
                    let message = format!(
                        "client {:?}: a variant takes its program from `variant_of`; remove builtin/program/adapter",
                        c.id
                    );
                    return Err(invalid(at("variant_of"), message));
                }
                (Some(b), None, None, None) => {
                    if !clients::BUILTIN.contains(&b.as_str()) {
                        let known = clients::BUILTIN.join(", ");
                        return Err(invalid(
                            at("builtin"),
                            format!("client {:?}: unknown built-in client {b:?}; known: {known}", c.id),
                        ));
                    }
                    let table = b.trim_end_matches("-client").to_string();
                    (StackKind::Builtin(b), Some(table))
                }
                // A relative path with a directory is relative to the matrix file, as a program
                // shipped beside it (clients/python/…) is; a bare name is looked up on PATH.
                (None, Some(p), None, None) if p.is_relative() && p.components().count() > 1 => {
                    (StackKind::Program(path.parent().unwrap_or(Path::new("")).join(p)), None)
                }
                (None, Some(p), None, None) => (StackKind::Program(p), None),
                (None, None, Some(a), None) => match crate::adapters::AdapterKind::from_name(&a) {
                    Some(kind) => (StackKind::Adapter(kind), Some(kind.error_table().to_string())),
                    None => {
                        let known = crate::adapters::AdapterKind::names().join(", ");
                        return Err(invalid(
                            at("adapter"),
                            format!("client {:?}: unknown adapter {a:?}; known: {known}", c.id),
                        ));
                    }
                },
                _ => {
                    return Err(invalid(
                        line_of(source, span.start),
                        format!(
                            "client {:?}: set exactly one of `builtin`, `program`, `adapter` or `variant_of`",
                            c.id
                        ),
                    ));
                }
            };
            let errors = match c.errors.or(default_table) {
                Some(t) if tables.contains(&t) => t,
                Some(t) => {
                    let known: Vec<&str> = tables.names().map(|(n, _)| n).collect();
                    return Err(invalid(
                        at("errors"),
                        format!("client {:?}: unknown error table {t:?}; known: {}", c.id, known.join(", ")),
                    ));
                }
                None => {
                    return Err(invalid(
                        line_of(source, span.start),
                        format!(
                            "client {:?}: a `program` stack needs `errors = \"<table>\"` naming how to read its errors",
                            c.id
                        ),
                    ));
                }
            };
            let policy = match c.policy {
                Some(p) if crate::oracle::Policy::names().contains(&p.as_str()) => Some(p),
                Some(p) => {
                    let known = crate::oracle::Policy::names().join(", ");
                    return Err(invalid(
                        at("policy"),
                        format!("client {:?}: unknown policy {p:?}; known: {known}", c.id),
                    ));
                }
                None => base.as_ref().and_then(|b| b.policy.clone()),
            };
            let cell_timeout = match &c.cell_timeout {
                Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
                    invalid(
                        at("cell_timeout"),
                        format!("client {:?}: cell_timeout {t:?}: {e} (write e.g. \"3s\")", c.id),
                    )
                })?),
                None => base.as_ref().and_then(|b| b.cell_timeout),
            };
            let requires = match (c.requires.is_empty(), &base) {
                (true, Some(b)) => b.requires.clone(),
                _ => c.requires,
            };
            let batch = c.batch.unwrap_or_else(|| base.as_ref().is_some_and(|b| b.batch));
            let build = c.build.or_else(|| base.as_ref().and_then(|b| b.build.clone()));
            if batch && !matches!(kind, StackKind::Program(_)) {
                return Err(invalid(
                    at("batch"),
                    format!(
                        "client {:?}: `batch` is for a `program` that has a --batch mode; built-in and adapter stacks run a process per cell (remove it)",
                        c.id
                    ),
                ));
            }
            clients.push(ClientStack {
                cell_timeout,
                requires,
                batch,
                build,
                id: c.id,
                description,
                kind,
                args,
                env,
                errors,
                policy,
                variant_of: c.variant_of,
                matrix_dir: matrix_dir.clone(),
                line: line_of(source, span.start),
            });
        }

        let mut expectations = parse_expectations(path, source, raw.expects)?;
        let mut digest = Fnv::new();
        digest.write(source.as_bytes());
        for file in &raw.run.expectations {
            let file_path = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&file_path)
                .map_err(|cause| MatrixError::Read { path: file_path.clone(), cause })?;
            let raw: RawExpectations = toml::from_str(&text).map_err(|e| MatrixError::Invalid {
                path: file_path.clone(),
                line: e.span().map_or(1, |s| line_of(&text, s.start)),
                message: format!("{} (an expectations file holds [[expect]] entries only)", e.message().trim()),
            })?;
            expectations.extend(parse_expectations(&file_path, &text, raw.expects)?);
            digest.write(text.as_bytes());
        }

        if servers.is_empty() || clients.is_empty() {
            return Err(invalid(1, "a matrix needs at least one [[server]] and one [[client]]".into()));
        }
        Ok(Matrix { path: path.to_path_buf(), digest: digest.hex(), run, servers, clients, expectations })
    }

    /// The expectation for a cell: the first `[[expect]]` whose glob matches, else "connects".
    pub fn expected_for(&self, cell: &str) -> Expected {
        self.expectations
            .iter()
            .find(|e| e.glob.is_match(cell))
            .map_or_else(Expected::default_connected, |e| e.expected.clone())
    }

    pub fn server(&self, id: &str) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.profile.id == id)
    }

    pub fn client(&self, id: &str) -> Option<&ClientStack> {
        self.clients.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, MatrixError> {
        Matrix::parse(Path::new("m.toml"), text, &Tables::builtin().unwrap())
    }

    const OK: &str = r#"
[[server]]
id = "dhe512"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "custom-512"

[[client]]
id = "openssl"
builtin = "openssl-client"

[[expect]]
cell = "openssl/dhe*"
outcome = "failed"
class = "dh_too_small"
reason = "level 2"
"#;

    fn line_of_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(MatrixError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_finds_expectations() {
        let m = parse(OK).unwrap();
        assert_eq!(m.servers[0].profile.id, "dhe512");
        assert_eq!(m.clients[0].errors, "openssl");
        assert_eq!(m.expected_for("openssl/dhe512").class, Some(ErrorClass::DhTooSmall));
        assert_eq!(m.expected_for("openssl/other").outcome, ExpectedKind::Connected);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let text = OK.replace("dh = \"custom-512\"", "dh = \"custom-512\"\ndh_bits = 512");
        let (line, message) = line_of_error(&text);
        assert_eq!(line, 8, "{message}");
        assert!(message.contains("dh_bits"), "{message}");
    }

    #[test]
    fn dh_on_tls13_only_names_the_dh_line() {
        let text =
            OK.replace("max_tls = \"1.2\"\nciphers = [\"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256\"]", "min_tls = \"1.3\"");
        let (line, message) = line_of_error(&text);
        assert_eq!(line, 6, "{message}");
        assert!(message.contains("TLS 1.3-only"), "{message}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let text = OK.replace("[[client]]", "[[server]]\nid = \"dhe512\"\nbackend = \"rustls\"\n\n[[client]]");
        let (line, message) = line_of_error(&text);
        assert_eq!(line, 10, "the second entry's id line: {message}");
        assert!(message.contains("duplicate server id"), "{message}");
    }

    #[test]
    fn failed_needs_a_class_and_every_expectation_a_reason() {
        let (_, m) = line_of_error(&OK.replace("class = \"dh_too_small\"\n", ""));
        assert!(m.contains("needs the error class"), "{m}");
        let (_, m) = line_of_error(&OK.replace("reason = \"level 2\"", "reason = \" \""));
        assert!(m.contains("needs a reason"), "{m}");
    }

    #[test]
    fn batch_is_for_programs_and_variants_inherit_it() {
        let program = "program = \"/bin/true\"\nerrors = \"openssl\"\nbatch = true\n[[client]]\nid = \"v\"\nvariant_of = \"openssl\"";
        let m = parse(&OK.replace("builtin = \"openssl-client\"", program)).unwrap();
        assert!(m.clients.iter().all(|c| c.batch), "{:?}", m.clients);
        let (line, m) =
            line_of_error(&OK.replace("builtin = \"openssl-client\"", "builtin = \"openssl-client\"\nbatch = true"));
        assert_eq!(line, 12, "the `batch` line: {m}");
        assert!(m.contains("`batch` is for a `program`"), "{m}");
    }

    #[test]
    fn unknown_stack_names_are_refused() {
        let (_, m) = line_of_error(&OK.replace("builtin = \"openssl-client\"", "builtin = \"gnutls-client\""));
        assert!(m.contains("unknown built-in client"), "{m}");
        let (_, m) = line_of_error(&OK.replace("builtin = \"openssl-client\"", "program = \"/bin/true\""));
        assert!(m.contains("needs `errors"), "{m}");
    }
}
