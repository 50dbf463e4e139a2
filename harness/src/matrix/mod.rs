//! The matrix file: server profiles × client stacks plus expectations, parsed with serde
//! (unknown keys refused) and then validated into types that cannot hold nonsense. Every error
//! names the file and line and says how to fix it.

mod clients;
mod digest;
mod expect;
mod raw;

pub use clients::{AdapterRef, ClientStack, StackKind};
pub use digest::Fnv;
pub use expect::Expectation;

use crate::classify::Tables;
use raw::{RawExpectations, RawMatrix, key_line, line_of};
use report_format::{Expected, ServerProfile};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A matrix that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
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
            if let Err(e) = profile.validate().and_then(|()| servers::check_suites(&profile)) {
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
        for c in raw.clients {
            let span = c.span();
            let stack = clients::parse(path, source, span, c.into_inner(), &clients, tables)?;
            clients.push(stack);
        }

        let mut expectations = expect::parse(path, source, raw.expects)?;
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
            expectations.extend(expect::parse(&file_path, &text, raw.expects)?);
            digest.write(text.as_bytes());
        }

        if servers.is_empty() || clients.is_empty() {
            return Err(invalid(1, "a matrix needs at least one [[server]] and one [[client]]".into()));
        }
        Ok(Matrix { path: path.to_path_buf(), digest: digest.hex(), run, servers, clients, expectations })
    }

    /// The expectation for a cell: the first `[[expect]]` whose glob matches and that speaks of
    /// its kind of cell, else "connects" (for a sender: "delivers over TLS").
    pub fn expected_for(&self, cell: &str) -> Expected {
        self.deciding(cell).map_or_else(Expected::default_connected, |e| e.expected.clone())
    }

    /// The entry that decides a cell: the first whose glob matches it and which applies to it —
    /// `outcome = "delivery"` to senders' cells only, `connected`, `failed` and `timeout` to
    /// client programs' cells only, `unsupported` to both. So `*/dhe512` written for clients
    /// never decides what a sender's message does.
    pub fn deciding(&self, cell: &str) -> Option<&Expectation> {
        let client = cell.split_once('/').map_or(cell, |(c, _)| c);
        let sender = self.client(client).is_some_and(ClientStack::is_sender);
        self.expectations.iter().find(|e| e.glob.is_match(cell) && e.applies_to(sender))
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
    use report_format::{ErrorClass, ExpectedOutcome};

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
        assert_eq!(m.expected_for("openssl/dhe512").class(), Some(ErrorClass::DhTooSmall));
        assert_eq!(m.expected_for("openssl/other").outcome, ExpectedOutcome::Connected);
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
        assert!(m.clients.iter().all(|c| c.batch()), "{:?}", m.clients);
        let (line, m) =
            line_of_error(&OK.replace("builtin = \"openssl-client\"", "builtin = \"openssl-client\"\nbatch = true"));
        assert_eq!(line, 12, "the `batch` line: {m}");
        assert!(m.contains("`batch` is for a `program`"), "{m}");
        // The built-in clients always run in their batch worker.
        assert!(parse(OK).unwrap().clients[0].batch());
        let lettre = parse(&OK.replace("builtin = \"openssl-client\"", "builtin = \"lettre-client\"")).unwrap();
        assert!(lettre.clients[0].batch());
    }

    /// A known rare failure goes on a cell expected to connect, with its class; anything else
    /// is refused with the line of `rare`.
    #[test]
    fn a_rare_failure_is_tolerated_on_a_connecting_cell() {
        let rare = OK.replace("outcome = \"failed\"", "outcome = \"connected\"\nrare = \"1/256\"");
        let m = parse(&rare).unwrap();
        let e = m.expected_for("openssl/dhe512");
        assert_eq!(e.outcome, ExpectedOutcome::Connected);
        assert_eq!(e.rare, Some(report_format::Tolerance { class: ErrorClass::DhTooSmall, one_in: 256 }));
        let (line, m) = line_of_error(&OK.replace("outcome = \"failed\"", "outcome = \"failed\"\nrare = \"1/256\""));
        assert_eq!(line, 16, "the `rare` line: {m}");
        assert!(m.contains("goes with outcome \"connected\""), "{m}");
        let (_, m) = line_of_error(&rare.replace("class = \"dh_too_small\"\n", ""));
        assert!(m.contains("needs the class"), "{m}");
        let (_, m) = line_of_error(&rare.replace("1/256", "3/256"));
        assert!(m.contains("1/N"), "{m}");
    }

    #[test]
    fn unknown_stack_names_are_refused() {
        let (_, m) = line_of_error(&OK.replace("builtin = \"openssl-client\"", "builtin = \"gnutls-client\""));
        assert!(m.contains("unknown built-in client"), "{m}");
        let (_, m) = line_of_error(&OK.replace("builtin = \"openssl-client\"", "program = \"/bin/true\""));
        assert!(m.contains("needs `errors"), "{m}");
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, MatrixError> {
        Matrix::parse(Path::new("m.toml"), text, &Tables::builtin().unwrap())
    }

    /// A typo in a suite's IANA name is a configuration error at load time (exit 2), not a
    /// published `server_config_rejected` finding.
    #[test]
    fn a_typo_in_a_cipher_name_names_its_line() {
        let text = "[[server]]\nid = \"s\"\nbackend = \"openssl\"\nmax_tls = \"1.2\"\nciphers = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265\"]\n\n[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n";
        match parse(text) {
            Err(MatrixError::Invalid { line, message, .. }) => {
                assert_eq!(line, 5, "{message}");
                assert!(message.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "a suggestion: {message}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every stack and every server of the default matrix maps to a table that exists, and
    /// every stack's policy to a declared one.
    #[test]
    fn the_default_matrix_resolves_every_table() {
        let tables = Tables::builtin().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
        let m = Matrix::load(&path, &tables).unwrap();
        for c in &m.clients {
            assert!(tables.contains(&c.errors), "{}: {}", c.id, c.errors);
        }
        for s in &m.servers {
            assert!(tables.contains(crate::runner::server_table(s.profile.backend)), "{}", s.profile.id);
        }
    }
}
