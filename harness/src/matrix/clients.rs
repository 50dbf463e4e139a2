//! Client stacks (`[[client]]`): how each is run — a built-in client, a contract program (one
//! process per cell or a batch worker), an external program behind an adapter, or a real MTA as
//! a sender — with its policy, environment and classification table, all resolved when the
//! matrix is loaded.

use super::MatrixError;
use super::raw::{RawClient, key_line, line_of};
use crate::adapters::Adapter;
use crate::classify::Tables;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An adapter, resolved from its name when the matrix is loaded.
#[derive(Clone, Copy)]
pub struct AdapterRef(pub &'static dyn Adapter);

impl std::fmt::Debug for AdapterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Adapter({})", self.0.name())
    }
}

impl PartialEq for AdapterRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for AdapterRef {}

impl Serialize for AdapterRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl std::ops::Deref for AdapterRef {
    type Target = dyn Adapter;
    fn deref(&self) -> &(dyn Adapter + 'static) {
        self.0
    }
}

/// How a client stack is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StackKind {
    /// A built-in client program, run as `starttls-matrix client NAME`.
    Builtin(String),
    /// Any program that speaks the client contract; with `batch`, many cells run in one
    /// long-lived worker (`program --batch`, see `batch.rs`), not a process each.
    Program { path: PathBuf, batch: bool },
    /// An external program wrapped by an adapter of ours.
    Adapter(AdapterRef),
    /// A real MTA as a sender: each cell gives it one message for the cell's server, forces at
    /// most `attempts` delivery attempts and reads what became of the message.
    Sender { mta: report_format::Mta, policy: mta::SenderPolicy, attempts: u32 },
}

/// Delivery attempts a sender's cell forces unless its stack says otherwise: enough for
/// Postfix's fallback, which comes on the second.
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// At most this many, so that a cell stays bounded in time.
pub const MAX_ATTEMPTS: u32 = 5;

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
    /// The classification table for its error text (checked to exist when loaded).
    pub errors: String,
    /// The stack this is a policy variant of.
    pub variant_of: Option<String>,
    /// Its declared policy, for the fuzzing oracle (checked to exist when loaded).
    pub policy: Option<String>,
    /// Its TLS library and linkage, as declared (a sender: its MTA's, dynamic); `None` when
    /// the matrix does not say.
    pub library: Option<report_format::LinkedLibrary>,
    /// A sender on a candidate library: its directory, first on the MTA's `LD_LIBRARY_PATH`
    /// (set by `compare --candidate`; never read from a matrix).
    #[serde(skip)]
    pub library_dir: Option<PathBuf>,
    /// Its own cell timeout, if it has one.
    #[serde(skip)]
    pub cell_timeout: Option<Duration>,
    /// Programs that must be on PATH (a wrapper's toolchain); missing ones skip the stack.
    pub requires: Vec<String>,
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

/// The built-in clients whose cells run in a batch worker (`clients::batch`).
pub const BATCH_BUILTINS: &[&str] = &["openssl-client", "rustls-client", "lettre-client"];

impl ClientStack {
    /// Whether its cells run in a batch worker: a program that says so, and the built-in clients
    /// (every one of which has a batch mode).
    pub fn batch(&self) -> bool {
        match &self.kind {
            StackKind::Program { batch, .. } => *batch,
            StackKind::Builtin(name) => BATCH_BUILTINS.contains(&name.as_str()),
            StackKind::Adapter(_) | StackKind::Sender { .. } => false,
        }
    }

    /// Whether it is a sender (its cells are deliveries).
    pub fn is_sender(&self) -> bool {
        matches!(self.kind, StackKind::Sender { .. })
    }
}

/// The keys that make a sender, as written.
#[derive(Clone, Copy)]
struct SenderKeys {
    sender: Option<report_format::Mta>,
    tls: Option<mta::TlsPolicy>,
    fallback_to_clear: Option<bool>,
    attempts: Option<u32>,
}

/// A sender's kind from its `[[client]]` keys, over its base's where it is a variant.
fn sender_kind(
    id: &str,
    c: SenderKeys,
    base: Option<(report_format::Mta, mta::SenderPolicy, u32)>,
    invalid: &dyn Fn(&str, String) -> MatrixError,
) -> Result<StackKind, MatrixError> {
    let (mta, mut policy, mut attempts) = match (c.sender, base) {
        (Some(m), _) => (m, mta::SenderPolicy::default(), DEFAULT_ATTEMPTS),
        (None, Some(b)) => b,
        (None, None) => unreachable!("called for senders only"),
    };
    if let Some(tls) = c.tls {
        policy.tls = tls;
    }
    if c.fallback_to_clear.is_some() {
        policy.fallback_to_clear = c.fallback_to_clear;
    }
    if let Some(n) = c.attempts {
        if !(1..=MAX_ATTEMPTS).contains(&n) {
            return Err(invalid(
                "attempts",
                format!("client {id:?}: attempts = {n}: a sender's cell forces 1 to {MAX_ATTEMPTS} attempts"),
            ));
        }
        attempts = n;
    }
    Ok(StackKind::Sender { mta, policy, attempts })
}

/// What a sender cannot take: a program's arguments, environment, batch mode or fuzzing policy.
fn refuse_program_keys(c: &RawClient, invalid: &dyn Fn(&str, String) -> MatrixError) -> Result<(), MatrixError> {
    let refused = [
        ("args", !c.args.is_empty()),
        ("env", !c.env.is_empty()),
        ("batch", c.batch.is_some()),
        ("policy", c.policy.is_some()),
        ("requires", !c.requires.is_empty()),
        ("build", c.build.is_some()),
    ];
    match refused.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(invalid(
            key,
            format!(
                "client {:?}: `{key}` is for client programs; a sender is a real MTA configured by `tls`, `fallback_to_clear` and `attempts` (remove it)",
                c.id
            ),
        )),
        None => Ok(()),
    }
}

/// Validate one `[[client]]` written at `span`, given the stacks declared before it.
pub fn parse(
    path: &Path,
    source: &str,
    span: Range<usize>,
    c: RawClient,
    earlier: &[ClientStack],
    tables: &Tables,
) -> Result<ClientStack, MatrixError> {
    let invalid = |line: usize, message: String| MatrixError::Invalid { path: path.to_path_buf(), line, message };
    let at = |key: &str| key_line(source, &span, key);
    let at_key = |key: &str, message: String| invalid(at(key), message);
    // Said now, used if it turns out to be a sender (the keys are taken apart below).
    let program_keys = refuse_program_keys(&c, &at_key);
    let keys =
        SenderKeys { sender: c.sender, tls: c.tls, fallback_to_clear: c.fallback_to_clear, attempts: c.attempts };
    if c.id.is_empty() || c.id.contains('/') || c.id.chars().any(char::is_whitespace) {
        return Err(invalid(at("id"), format!("client id {:?} must be non-empty, without '/' or spaces", c.id)));
    }
    if earlier.iter().any(|b| b.id == c.id) {
        return Err(invalid(at("id"), format!("duplicate client id {:?}: ids must be unique", c.id)));
    }
    let mut args = c.args;
    // `${MATRIX_DIR}` in an environment value is the matrix file's directory, so a policy
    // file shipped beside the matrix (OPENSSL_CONF=…) is found from any working directory.
    let matrix_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let matrix_dir = std::fs::canonicalize(matrix_dir).unwrap_or_else(|_| matrix_dir.to_path_buf());
    let mut env: BTreeMap<String, String> =
        c.env.into_iter().map(|(k, v)| (k, v.replace("${MATRIX_DIR}", &matrix_dir.display().to_string()))).collect();
    let mut description = c.description.clone();
    // A variant inherits from a stack declared before it: program, table, args, env, policy,
    // cell timeout, requirements and batch mode, each unless it sets its own.
    let base: Option<ClientStack> = match &c.variant_of {
        Some(base_id) => match earlier.iter().find(|b| &b.id == base_id) {
            Some(b) => Some(b.clone()),
            None => {
                let message = format!("client {:?}: variant_of {base_id:?} names no client declared before it", c.id);
                return Err(invalid(at("variant_of"), message));
            }
        },
        None => None,
    };
    let base_sender = base.as_ref().and_then(|b| match b.kind {
        StackKind::Sender { mta, policy, attempts } => Some((mta, policy, attempts)),
        _ => None,
    });
    if c.sender.is_some() || base_sender.is_some() {
        if c.sender.is_some() && (c.builtin.is_some() || c.program.is_some() || c.adapter.is_some() || base.is_some()) {
            return Err(invalid(
                at("sender"),
                format!(
                    "client {:?}: set exactly one of `builtin`, `program`, `adapter`, `sender` or `variant_of`",
                    c.id
                ),
            ));
        }
        if base_sender.is_some() && (c.builtin.is_some() || c.program.is_some() || c.adapter.is_some()) {
            let message = format!(
                "client {:?}: a variant takes its program from `variant_of`; remove builtin/program/adapter",
                c.id
            );
            return Err(invalid(at("variant_of"), message));
        }
        program_keys?;
        let kind = sender_kind(&c.id, keys, base_sender, &at_key)?;
        let StackKind::Sender { mta, policy, attempts } = &kind else { unreachable!() };
        // Debian's MTAs link their TLS library dynamically.
        let sender_library =
            report_format::LinkedLibrary { library: mta.library(), linkage: report_format::Linkage::Dynamic };
        let errors = match c.errors.clone().or_else(|| base.as_ref().map(|b| b.errors.clone())) {
            Some(t) if tables.contains(&t) => t,
            Some(t) => return Err(invalid(at("errors"), format!("client {:?}: unknown error table {t:?}", c.id))),
            None => format!("sender-{}", mta.name()),
        };
        if !tables.contains(&errors) {
            return Err(invalid(at("sender"), format!("client {:?}: no error table {errors:?} for this sender", c.id)));
        }
        let description = match (description.is_empty(), &base) {
            (false, _) => description,
            (true, Some(b)) => format!("{} with {policy}", b.id),
            (true, None) => format!("{} as a sender ({policy}, {attempts} attempts)", mta.name()),
        };
        let cell_timeout = match &c.cell_timeout {
            Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
                invalid(at("cell_timeout"), format!("client {:?}: cell_timeout {t:?}: {e} (write e.g. \"3s\")", c.id))
            })?),
            None => base.as_ref().and_then(|b| b.cell_timeout),
        };
        return Ok(ClientStack {
            cell_timeout,
            requires: Vec::new(),
            build: None,
            id: c.id,
            description,
            kind,
            args: Vec::new(),
            env: BTreeMap::new(),
            errors,
            policy: None,
            // Debian's MTAs link their TLS library dynamically.
            library: Some(sender_library),
            library_dir: None,
            variant_of: c.variant_of,
            matrix_dir,
            line: line_of(source, span.start),
        });
    }
    if let Some(key) = [
        ("tls", c.tls.is_some()),
        ("fallback_to_clear", c.fallback_to_clear.is_some()),
        ("attempts", c.attempts.is_some()),
    ]
    .iter()
    .find_map(|(k, set)| set.then_some(*k))
    {
        return Err(invalid(
            at(key),
            format!(
                "client {:?}: `{key}` is a sender's setting; add `sender = \"postfix\"` (or exim, sendmail, opensmtpd) or remove it",
                c.id
            ),
        ));
    }
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
            (StackKind::Program { path: path.parent().unwrap_or(Path::new("")).join(p), batch: false }, None)
        }
        (None, Some(p), None, None) => (StackKind::Program { path: p, batch: false }, None),
        (None, None, Some(a), None) => match crate::adapters::by_name(&a) {
            Some(adapter) => (StackKind::Adapter(AdapterRef(adapter)), Some(adapter.error_table().to_string())),
            None => {
                let known = crate::adapters::names().join(", ");
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
                    "client {:?}: set exactly one of `builtin`, `program`, `adapter`, `sender` or `variant_of`",
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
            return Err(invalid(at("policy"), format!("client {:?}: unknown policy {p:?}; known: {known}", c.id)));
        }
        None => base.as_ref().and_then(|b| b.policy.clone()),
    };
    let cell_timeout = match &c.cell_timeout {
        Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
            invalid(at("cell_timeout"), format!("client {:?}: cell_timeout {t:?}: {e} (write e.g. \"3s\")", c.id))
        })?),
        None => base.as_ref().and_then(|b| b.cell_timeout),
    };
    let requires = match (c.requires.is_empty(), &base) {
        (true, Some(b)) => b.requires.clone(),
        _ => c.requires,
    };
    let build = c.build.or_else(|| base.as_ref().and_then(|b| b.build.clone()));
    let library = match (c.library, c.linkage) {
        (Some(library), Some(linkage)) => Some(report_format::LinkedLibrary { library, linkage }),
        (None, None) => base.as_ref().and_then(|b| b.library),
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                at(if c.library.is_some() { "library" } else { "linkage" }),
                format!(
                    "client {:?}: set `library` and `linkage` together (e.g. library = \"openssl\", linkage = \"dynamic\")",
                    c.id
                ),
            ));
        }
    };
    // Batch mode belongs to programs: `batch` on anything else cannot mean anything.
    let kind = match (kind, c.batch) {
        (StackKind::Program { path, batch }, wanted) => StackKind::Program { path, batch: wanted.unwrap_or(batch) },
        (other, None | Some(false)) => other,
        (_, Some(true)) => {
            return Err(invalid(
                at("batch"),
                format!(
                    "client {:?}: `batch` is for a `program` that has a --batch mode; the built-in clients always run in one, adapter stacks run a process per cell (remove it)",
                    c.id
                ),
            ));
        }
    };
    Ok(ClientStack {
        cell_timeout,
        requires,
        build,
        id: c.id,
        description,
        kind,
        args,
        env,
        errors,
        policy,
        library,
        library_dir: None,
        variant_of: c.variant_of,
        matrix_dir,
        line: line_of(source, span.start),
    })
}

#[cfg(test)]
mod tests {
    use crate::classify::Tables;
    use crate::matrix::{Matrix, MatrixError, StackKind};
    use report_format::{DeliveryResult, ExpectedOutcome, Mta};
    use std::path::Path;

    const SENDERS: &str = r#"[[server]]
id = "dhe512"
backend = "openssl"

[[client]]
id = "openssl"
builtin = "openssl-client"

[[client]]
id = "sendmail-smtp"
sender = "sendmail"
tls = "may"

[[client]]
id = "sendmail-smtp@fallback"
variant_of = "sendmail-smtp"
fallback_to_clear = true
attempts = 3

[[expect]]
cell = "*/dhe512"
outcome = "failed"
class = "dh_too_small"
reason = "for client programs"

[[expect]]
cell = "sendmail-smtp/dhe512"
outcome = "delivery"
result = "deferred"
class = "dh_too_small"
reason = "2015"
"#;

    fn parse(text: &str) -> Result<Matrix, MatrixError> {
        Matrix::parse(Path::new("m.toml"), text, &Tables::builtin().unwrap())
    }

    fn error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(MatrixError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_sender_and_its_variant_with_their_own_expectations() {
        let m = parse(SENDERS).unwrap();
        let base = m.client("sendmail-smtp").unwrap();
        assert_eq!(base.errors, "sender-sendmail");
        let StackKind::Sender { mta, policy, attempts } = &m.client("sendmail-smtp@fallback").unwrap().kind else {
            panic!("a variant of a sender is a sender")
        };
        assert_eq!((*mta, policy.fallback_to_clear, *attempts), (Mta::Sendmail, Some(true), 3));
        // `*/dhe512` speaks for the client program only; the delivery entry for the sender.
        assert_eq!(m.expected_for("openssl/dhe512").outcome.kind(), "failed");
        assert_eq!(
            m.expected_for("sendmail-smtp/dhe512").outcome,
            ExpectedOutcome::Delivery {
                result: DeliveryResult::Deferred,
                class: Some(report_format::ErrorClass::DhTooSmall)
            }
        );
        // No entry for the variant: it is expected to deliver over TLS.
        assert_eq!(m.expected_for("sendmail-smtp@fallback/dhe512").outcome, ExpectedOutcome::Connected);
    }

    #[test]
    fn what_a_sender_cannot_take_is_refused_on_its_line() {
        let (line, m) = error(&SENDERS.replace("tls = \"may\"", "tls = \"may\"\nargs = [\"-v\"]"));
        assert_eq!(line, 13, "{m}");
        assert!(m.contains("`args` is for client programs"), "{m}");
        let (line, m) = error(&SENDERS.replace("attempts = 3", "attempts = 9"));
        assert_eq!(line, 18, "{m}");
        assert!(m.contains("1 to 5"), "{m}");
        let (_, m) =
            error(&SENDERS.replace("builtin = \"openssl-client\"", "builtin = \"openssl-client\"\ntls = \"encrypt\""));
        assert!(m.contains("`tls` is a sender's setting"), "{m}");
        let (_, m) = error(&SENDERS.replace("sender = \"sendmail\"", "sender = \"qmail\""));
        assert!(m.contains("qmail"), "{m}");
        let (_, m) = error(&SENDERS.replace("result = \"deferred\"\n", ""));
        assert!(m.contains("needs the message's fate"), "{m}");
        let (_, m) = error(&SENDERS.replace(
            "class = \"dh_too_small\"\nreason = \"for",
            "result = \"tls\"\nclass = \"dh_too_small\"\nreason = \"for",
        ));
        assert!(m.contains("`result` goes only with outcome \"delivery\""), "{m}");
    }
}
