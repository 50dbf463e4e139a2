//! Classification: a stack's own error text (and the server's) → an [`ErrorClass`], through one
//! data table per stack in `harness/classify/*.toml`. Unknown text is `unmapped`, loudly. A
//! server's table also says which of its start-up words are a refusal of its own configuration
//! (`[[startup]]`): a finding, not a harness error.

use regex::Regex;
use report_format::{ErrorClass, Side, Stage};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The tables compiled into the binary: (name, TOML text).
const BUILTIN: &[(&str, &str)] = &[
    ("common", include_str!("../classify/common.toml")),
    ("curl", include_str!("../classify/curl.toml")),
    ("gnutls", include_str!("../classify/gnutls.toml")),
    ("go", include_str!("../classify/go.toml")),
    ("java", include_str!("../classify/java.toml")),
    ("lettre", include_str!("../classify/lettre.toml")),
    ("msmtp", include_str!("../classify/msmtp.toml")),
    ("openssl", include_str!("../classify/openssl.toml")),
    ("openssl-s_client", include_str!("../classify/openssl-s_client.toml")),
    ("posttls-finger", include_str!("../classify/posttls-finger.toml")),
    ("python", include_str!("../classify/python.toml")),
    ("rustls", include_str!("../classify/rustls.toml")),
    ("server-openssl", include_str!("../classify/server-openssl.toml")),
    ("server-exim", include_str!("../classify/server-exim.toml")),
    ("server-opensmtpd", include_str!("../classify/server-opensmtpd.toml")),
    ("server-postfix", include_str!("../classify/server-postfix.toml")),
    ("server-sendmail", include_str!("../classify/server-sendmail.toml")),
    ("swaks", include_str!("../classify/swaks.toml")),
    ("server-rustls", include_str!("../classify/server-rustls.toml")),
    ("sender-exim", include_str!("../classify/sender-exim.toml")),
    ("sender-opensmtpd", include_str!("../classify/sender-opensmtpd.toml")),
    ("sender-postfix", include_str!("../classify/sender-postfix.toml")),
    ("sender-sendmail", include_str!("../classify/sender-sendmail.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    description: String,
    #[serde(default)]
    extends: Vec<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
    /// What a server says when it will not start.
    #[serde(default, rename = "startup")]
    startup: Vec<RawStartup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStartup {
    pattern: String,
    class: ErrorClass,
    /// Words a real server said that this rule is meant for, verbatim (see [`RawRule::examples`]).
    #[serde(default)]
    examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: String,
    class: Option<ErrorClass>,
    side: Side,
    #[serde(default)]
    peer: bool,
    #[serde(default)]
    stage: Vec<Stage>,
    /// Texts a real stack or server printed that this rule is meant to match, verbatim (trimmed
    /// to the lines that matter at most). A unit test classifies each through the table and
    /// expects this rule to decide it: an example an earlier rule takes is a bug in the table.
    #[serde(default)]
    examples: Vec<String>,
}

/// One rule: text matching `pattern` (case-insensitive) at one of `stages` means `class`.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    class: Option<ErrorClass>,
    side: Side,
    /// The text only says the peer aborted (an alert received): the peer's words decide.
    peer: bool,
    stages: Vec<Stage>,
    /// Real texts this rule is meant to match (for the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    examples: Vec<String>,
}

impl Rule {
    fn matches(&self, stage: Stage, text: &str) -> bool {
        (self.stages.is_empty() || self.stages.contains(&stage)) && self.pattern.is_match(text)
    }
}

/// A `[[startup]]` rule: start-up words matching `pattern` mean `class`.
#[derive(Debug)]
struct StartupRule {
    pattern: Regex,
    class: ErrorClass,
    /// Real start-up words this rule is meant to match (for the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    examples: Vec<String>,
}

#[derive(Debug)]
struct Table {
    description: String,
    extends: Vec<String>,
    rules: Vec<Rule>,
    startup: Vec<StartupRule>,
}

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("parse classification table {name}: {message}")]
    Parse { name: String, message: String },
    #[error("classification table {name}: rule {index}: {message}")]
    Rule { name: String, index: usize, message: String },
    #[error("classification table {name} extends unknown table {missing}")]
    UnknownExtends { name: String, missing: String },
}

/// Every classification table, by name.
#[derive(Debug)]
pub struct Tables {
    tables: BTreeMap<String, Table>,
}

/// A classification and the rule text that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: ErrorClass,
    pub side: Side,
}

impl Tables {
    /// The tables shipped with the binary.
    pub fn builtin() -> Result<Tables, TableError> {
        let mut tables = BTreeMap::new();
        for (name, text) in BUILTIN {
            let raw: RawTable = toml::from_str(text)
                .map_err(|e| TableError::Parse { name: name.to_string(), message: e.to_string() })?;
            let mut rules = Vec::new();
            for (index, r) in raw.rules.into_iter().enumerate() {
                let pattern = Regex::new(&format!("(?i){}", r.pattern)).map_err(|e| TableError::Rule {
                    name: name.to_string(),
                    index,
                    message: e.to_string(),
                })?;
                if r.class.is_none() && !r.peer {
                    let message = "a rule needs a class unless it is a peer rule".to_string();
                    return Err(TableError::Rule { name: name.to_string(), index, message });
                }
                rules.push(Rule {
                    pattern,
                    class: r.class,
                    side: r.side,
                    peer: r.peer,
                    stages: r.stage,
                    examples: r.examples,
                });
            }
            let mut startup = Vec::new();
            for (index, r) in raw.startup.into_iter().enumerate() {
                let pattern = Regex::new(&format!("(?i){}", r.pattern)).map_err(|e| TableError::Rule {
                    name: name.to_string(),
                    index,
                    message: format!("startup rule: {e}"),
                })?;
                startup.push(StartupRule { pattern, class: r.class, examples: r.examples });
            }
            tables
                .insert(name.to_string(), Table { description: raw.description, extends: raw.extends, rules, startup });
        }
        for (name, t) in &tables {
            if let Some(missing) = t.extends.iter().find(|e| !tables.contains_key(*e)) {
                return Err(TableError::UnknownExtends { name: name.clone(), missing: missing.clone() });
            }
        }
        Ok(Tables { tables })
    }

    /// Whether a table of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    /// Table names with their descriptions.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables.iter().map(|(n, t)| (n.as_str(), t.description.as_str()))
    }

    /// The tables of a chain: the table, then those it extends (not `common`).
    fn lineage<'a>(&'a self, name: &str) -> Vec<&'a Table> {
        let mut out = Vec::new();
        let mut queue = vec![name.to_string()];
        let mut seen = Vec::new();
        while let Some(n) = queue.pop() {
            if seen.contains(&n) {
                continue;
            }
            if let Some(t) = self.tables.get(&n) {
                out.push(t);
                queue.extend(t.extends.iter().rev().cloned());
            }
            seen.push(n);
        }
        out
    }

    /// What a server's words when it would not start mean: the class of the first
    /// `[[startup]]` rule of its table (or one it extends) that matches, else `None` (not a
    /// refusal of its configuration we know: a harness error, with the words).
    pub fn startup(&self, table: &str, words: &str) -> Option<ErrorClass> {
        self.startup_rule(table, words).map(|r| r.class)
    }

    /// The first `[[startup]]` rule of a table's lineage that matches the words.
    fn startup_rule<'a>(&'a self, table: &str, words: &str) -> Option<&'a StartupRule> {
        self.lineage(table).into_iter().flat_map(|t| t.startup.iter()).find(|r| r.pattern.is_match(words))
    }

    /// The class of the first of a server's texts its table knows (peer rules aside: those
    /// only say the client aborted).
    pub fn server_words(&self, table: &str, texts: &[String]) -> Option<Classified> {
        let rules = self.chain(table);
        texts.iter().find_map(|text| {
            rules
                .iter()
                .find(|r| r.matches(Stage::Handshake, text))
                .filter(|r| !r.peer)
                .and_then(|r| r.class.map(|class| Classified { class, side: r.side }))
        })
    }

    /// The rules of a table, then of the tables it extends, then `common`.
    fn chain<'a>(&'a self, name: &str) -> Vec<&'a Rule> {
        let mut out: Vec<&Rule> = self.lineage(name).into_iter().flat_map(|t| t.rules.iter()).collect();
        if name != "common"
            && let Some(common) = self.tables.get("common")
        {
            out.extend(common.rules.iter());
        }
        out
    }

    /// Classify a failure from the client's words at `stage`, helped by the server's words
    /// (`server_table` names the server's table; `server_errors` are its per-connection errors).
    pub fn classify(
        &self,
        client_table: &str,
        stage: Stage,
        client_error: &str,
        server_table: Option<&str>,
        server_errors: &[String],
    ) -> Classified {
        let from_server = || -> Option<Classified> {
            let rules = self.chain(server_table?);
            server_errors.iter().find_map(|text| {
                rules
                    .iter()
                    .find(|r| r.matches(Stage::Handshake, text) || r.matches(stage, text))
                    .filter(|r| !r.peer)
                    .and_then(|r| r.class.map(|class| Classified { class, side: r.side }))
            })
        };
        match self.chain(client_table).into_iter().find(|r| r.matches(stage, client_error)) {
            Some(rule) if rule.peer => from_server()
                .or(rule.class.map(|class| Classified { class, side: rule.side }))
                .unwrap_or(Classified { class: ErrorClass::Unmapped, side: rule.side }),
            // "The connection closed" is all a client can say when the server hung up; the
            // server's own words, if it has any, say why.
            Some(rule) if rule.class == Some(ErrorClass::ConnectionClosed) => {
                from_server().unwrap_or(Classified { class: ErrorClass::ConnectionClosed, side: rule.side })
            }
            Some(rule) => Classified { class: rule.class.expect("checked at load"), side: rule.side },
            None => from_server().unwrap_or(Classified { class: ErrorClass::Unmapped, side: Side::Unknown }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start-up words decide finding or harness error through the tables, not a keyword guess
    /// in the launcher.
    #[test]
    fn startup_words() {
        let t = tables();
        // What OpenSMTPD 7.4 said at security level 5, where its RSA 2048 key is refused.
        let opensmtpd = "opensmtpd exited at start (exit status: 1):  info: OpenSMTPD 7.4.0-portable starting | dispatcher: tls_configure: failed to load certificate | smtpd: process control socket closed";
        assert_eq!(t.startup("server-opensmtpd", opensmtpd), Some(ErrorClass::ServerConfigRejected));
        let no_user = "smtpd: unknown user opensmtpd";
        assert_eq!(t.startup("server-opensmtpd", no_user), None, "our nss_wrapper set-up is ours to fix");
        let exim = "2026-11-29 12:00:00 Exim configuration error in line 14 of /w/exim.conf: tls_require_ciphers: GnuTLS priority string rejected";
        assert_eq!(t.startup("server-exim", exim), Some(ErrorClass::ServerConfigRejected));
        let queue = "postfix/master[12]: fatal: open lock file /w/spool/pid/master.pid: Permission denied";
        assert_eq!(t.startup("server-postfix", queue), None, "a queue directory is ours to fix");
        assert_eq!(t.startup("server-openssl", "anything"), None);
    }

    /// Rules for which no stack or server on the recording machine could be made to print a text,
    /// after trying: `(kind, table, pattern, why)`. Each has `examples = []` in its table; the
    /// test below fails if one of them gets an example (drop it here then) or if another rule
    /// has none.
    const NO_REAL_EXAMPLE: &[(&str, &str, &str, &str)] = &[
        (
            "rule",
            "curl",
            r"\(64\) Requested SSL level failed",
            "curl 7.88.1 always names the failure (\"STARTTLS not supported.\", \"STARTTLS denied, code 454\"); libcurl's bare text for CURLE_USE_SSL_FAILED never came",
        ),
        (
            "rule",
            "gnutls",
            "No supported cipher suites|Could not negotiate a supported cipher suite|no common cipher",
            "GnuTLS says this as a server; gnutls-cli, msmtp and Exim as clients get alert 40 (\"Received alert [40]: Handshake failed\") when no suite is shared",
        ),
        (
            "rule",
            "go",
            "tls: no cipher suite supported by both|no supported versions",
            "crypto/tls's server words, and a client configuration error the go-client cannot have; it reads the server's alert instead",
        ),
        (
            "rule",
            "java",
            "No appropriate protocol|protocol is disabled",
            "JSSE's words when its own configuration leaves nothing to offer; on the JDK's defaults against TLS 1.0 it says \"The server selected protocol version TLS10 is not accepted by client preferences\"",
        ),
        (
            "rule",
            "java",
            "no cipher suites in common",
            "a JSSE server's words; the java client reads \"Received fatal alert: handshake_failure\"",
        ),
        (
            "rule",
            "openssl",
            "dh key too large|modulus too large|dh_key_too_large",
            "no server here sends a DH group above OpenSSL's 10000-bit limit: with a 10240-bit group the Python/OpenSSL server answers internal_error; JSSE stops at 8192, Go and rustls serve no custom group",
        ),
        (
            "rule",
            "python",
            "NO_SHARED_CIPHER|NO_CIPHERS_AVAILABLE",
            "NO_SHARED_CIPHER is an OpenSSL server reason, and smtplib's default context always has suites; with none in common Python reads the alert (SSLV3_ALERT_HANDSHAKE_FAILURE)",
        ),
        (
            "rule",
            "rustls",
            "NoCipherSuitesInCommon",
            "raised only by rustls 0.23's server code; the client reads the server's alert",
        ),
        (
            "rule",
            "rustls",
            "NoKxGroupsInCommon",
            "raised only by rustls 0.23's server code; the client reads the server's alert",
        ),
        (
            "rule",
            "server-exim",
            "No supported signature algorithm|signature algorithm",
            "GnuTLS 3.7 in Exim logs a client with no usable signature scheme (openssl s_client -sigalgs rsa_pss_rsae_sha256:RSA+SHA256 against an ECDSA Exim) as \"No supported cipher suites have been found.\"",
        ),
        (
            "rule",
            "server-exim",
            "cert/key setup",
            "Exim loaded the harness's certificate and key for every profile tried (RSA, ECDSA, TLS 1.0 to 1.3)",
        ),
        (
            "rule",
            "server-opensmtpd",
            "pki .*(error|failed)",
            "OpenSMTPD 7.4 does not start on a pki it cannot load (its [[startup]] example) rather than serving with a warning",
        ),
        (
            "startup",
            "server-exim",
            "tls_(certificate|privatekey|require_ciphers|dhparam)|GnuTLS|gnutls",
            "no profile made Exim 4.96 exit at start over a TLS option",
        ),
        (
            "startup",
            "server-postfix",
            "fatal: .*(TLS|SSL|certificate|private key|cipher|DH param)",
            "Postfix's master starts without reading TLS settings; smtpd reads them per connection and warns",
        ),
        (
            "startup",
            "server-sendmail",
            "STARTTLS|TLS|SSL|CipherList|certificate",
            "sendmail 8.17 does not exit over TLS: at security level 5 it logs \"STARTTLS=server, error: SSL_CTX_use_certificate_file(…) failed\" and serves without STARTTLS",
        ),
    ];

    /// Every rule carries the text a real stack printed that it is meant for, and decides it: at
    /// every stage the rule allows, classifying the example through the rule's own table (with
    /// no server words) ends at this rule — no earlier rule of the chain takes it — and gives
    /// its class and side (a peer rule without a class: unmapped, on its side). A `[[startup]]`
    /// rule's examples are decided by it through `Tables::startup`.
    #[test]
    fn every_rule_has_a_real_example_that_it_decides() {
        let t = tables();
        let source = |re: &Regex| re.as_str().strip_prefix("(?i)").unwrap_or(re.as_str()).to_string();
        let allowed = |kind: &str, table: &str, pattern: &str| {
            NO_REAL_EXAMPLE.iter().any(|(k, tb, p, _)| *k == kind && *tb == table && *p == pattern)
        };
        // Which table and index a rule is, for the messages.
        let locate = |rule: &Rule| -> String {
            t.tables
                .iter()
                .find_map(|(n, tb)| {
                    tb.rules.iter().position(|r| std::ptr::eq(r, rule)).map(|i| format!("{n} rule {i}"))
                })
                .unwrap_or_default()
        };
        let mut failures = Vec::new();
        let mut rules = 0;
        let mut examples = 0;
        for (name, table) in &t.tables {
            let chain = t.chain(name);
            for (i, rule) in table.rules.iter().enumerate() {
                rules += 1;
                let pattern = source(&rule.pattern);
                let here = format!("{name} rule {i} /{pattern}/");
                match (rule.examples.is_empty(), allowed("rule", name, &pattern)) {
                    (true, false) => failures.push(format!("{here}: no example")),
                    (false, true) => failures.push(format!("{here}: has examples now: drop it from NO_REAL_EXAMPLE")),
                    _ => {}
                }
                let stages = if rule.stages.is_empty() { Stage::ALL.to_vec() } else { rule.stages.clone() };
                let expected = Classified { class: rule.class.unwrap_or(ErrorClass::Unmapped), side: rule.side };
                for example in &rule.examples {
                    examples += 1;
                    // What went wrong, with the stages it went wrong at.
                    let mut wrong: BTreeMap<String, Vec<Stage>> = BTreeMap::new();
                    for &stage in &stages {
                        match chain.iter().find(|r| r.matches(stage, example)) {
                            Some(r) if std::ptr::eq(*r, rule) => {}
                            Some(r) => wrong
                                .entry(format!("{} /{}/ takes it", locate(r), source(&r.pattern)))
                                .or_default()
                                .push(stage),
                            None => wrong.entry("nothing matches it".into()).or_default().push(stage),
                        }
                        let got = t.classify(name, stage, example, None, &[]);
                        if got != expected {
                            wrong.entry(format!("it is {got:?}, not {expected:?}")).or_default().push(stage);
                        }
                    }
                    for (what, at) in wrong {
                        failures.push(format!("{here}: example {example:?} at {at:?}: {what}"));
                    }
                }
            }
            for (i, rule) in table.startup.iter().enumerate() {
                rules += 1;
                let pattern = source(&rule.pattern);
                let here = format!("{name} startup rule {i} /{pattern}/");
                match (rule.examples.is_empty(), allowed("startup", name, &pattern)) {
                    (true, false) => failures.push(format!("{here}: no example")),
                    (false, true) => failures.push(format!("{here}: has examples now: drop it from NO_REAL_EXAMPLE")),
                    _ => {}
                }
                for example in &rule.examples {
                    examples += 1;
                    if !t.startup_rule(name, example).is_some_and(|r| std::ptr::eq(r, rule)) {
                        failures.push(format!("{here}: another startup rule (or none) takes {example:?}"));
                    }
                    if t.startup(name, example) != Some(rule.class) {
                        failures.push(format!("{here}: {example:?} is not {:?}", rule.class));
                    }
                }
            }
        }
        for (kind, table, pattern, _) in NO_REAL_EXAMPLE {
            let exists = t.tables.get(*table).is_some_and(|tb| match *kind {
                "rule" => tb.rules.iter().any(|r| source(&r.pattern) == *pattern),
                _ => tb.startup.iter().any(|r| source(&r.pattern) == *pattern),
            });
            if !exists {
                failures.push(format!("NO_REAL_EXAMPLE names no {kind} of {table}: /{pattern}/"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} problems in {rules} rules ({examples} examples):\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(rules > 100 && examples > rules, "{rules} rules, {examples} examples");
    }

    #[test]
    fn every_table_a_participant_names_exists() {
        let t = tables();
        for m in report_format::Mta::ALL {
            assert!(t.contains(mta::of(m).table()), "{m}: {}", mta::of(m).table());
        }
        for b in report_format::TlsBackend::ALL {
            assert!(t.contains(crate::runner::builtin_table(b)), "{}", b.as_str());
        }
    }

    fn tables() -> Tables {
        Tables::builtin().unwrap()
    }

    #[test]
    fn openssl_dh_key_too_small() {
        let c = tables().classify(
            "openssl",
            Stage::Handshake,
            "error:0A00018A:SSL routines:tls_process_ske_dhe:dh key too small:../ssl/statem/statem_clnt.c:2092:",
            Some("server-openssl"),
            &["error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40".into()],
        );
        assert_eq!(c, Classified { class: ErrorClass::DhTooSmall, side: Side::Client });
    }

    #[test]
    fn mta_logs_decide_for_a_client_that_only_saw_an_alert() {
        // Words recorded from the real MTAs (Exim's mainlog, OpenSMTPD's stderr, sendmail's syslog).
        let t = tables();
        let alert = "received fatal alert: HandshakeFailure";
        let exim = "TLS error on connection from (client.test) [127.0.0.1] (gnutls_handshake): No supported cipher suites have been found.";
        let c = t.classify("rustls", Stage::Handshake, alert, Some("server-exim"), &[exim.into()]);
        assert_eq!(c, Classified { class: ErrorClass::NoSharedCipher, side: Side::Server });
        let opensmtpd = "dbfaeaa58bfd43ab smtp disconnected reason=\"io-error: handshake failed: error:0A0000C1:SSL routines::no shared cipher\"";
        let c = t.classify("rustls", Stage::Handshake, alert, Some("server-openssl"), &[opensmtpd.into()]);
        assert_eq!(c.class, ErrorClass::NoSharedCipher);
        let sendmail = "STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=localhost [127.0.0.1]";
        let c = t.classify("rustls", Stage::Handshake, alert, Some("server-openssl"), &[sendmail.into()]);
        assert_eq!(c.class, ErrorClass::NoSharedCipher);
    }

    #[test]
    fn an_alert_defers_to_the_server_log() {
        let c = tables().classify(
            "rustls",
            Stage::Handshake,
            "received fatal alert: HandshakeFailure",
            Some("server-openssl"),
            &["error:0A0000C1:SSL routines:tls_post_process_client_hello:no shared cipher:../ssl/statem/statem_srvr.c:2220:".into()],
        );
        assert_eq!(c, Classified { class: ErrorClass::NoSharedCipher, side: Side::Server });
        let silent = tables().classify("rustls", Stage::Handshake, "received fatal alert: HandshakeFailure", None, &[]);
        assert_eq!(
            silent,
            Classified { class: ErrorClass::HandshakeFailure, side: Side::Server },
            "without the server's words: the server refused the handshake, no more"
        );
    }

    #[test]
    fn smtp_stages() {
        let t = tables();
        assert_eq!(
            t.classify("openssl", Stage::Starttls, "STARTTLS refused: 454 4.7.0 TLS not available", None, &[]).class,
            ErrorClass::StarttlsRefused
        );
        assert_eq!(
            t.classify("rustls", Stage::Starttls, "STARTTLS not offered: 250 mx.test", None, &[]).class,
            ErrorClass::StarttlsNotOffered
        );
        assert_eq!(
            t.classify("openssl", Stage::Smtp, "greeting: 421 4.3.2 busy", None, &[]).class,
            ErrorClass::SmtpRejected
        );
    }

    #[test]
    fn unknown_text_is_unmapped() {
        assert_eq!(
            tables().classify("openssl", Stage::Handshake, "the moon is made of cheese", None, &[]).class,
            ErrorClass::Unmapped
        );
    }

    #[test]
    fn gnutls_and_python_words() {
        let t = tables();
        let gnutls =
            "*** Fatal error: The Diffie-Hellman prime sent by the server is not acceptable (not long enough).";
        assert_eq!(t.classify("gnutls", Stage::Handshake, gnutls, None, &[]).class, ErrorClass::DhTooSmall);
        let python = "SSLError: [SSL: DH_KEY_TOO_SMALL] dh key too small (_ssl.c:1006)";
        assert_eq!(t.classify("python", Stage::Handshake, python, None, &[]).class, ErrorClass::DhTooSmall);
        let python = "SSLError: [SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version (_ssl.c:1006)";
        assert_eq!(t.classify("python", Stage::Handshake, python, None, &[]).class, ErrorClass::ProtocolVersion);
        let java = "SSLHandshakeException: DH ServerKeyExchange does not comply to algorithm constraints";
        assert_eq!(t.classify("java", Stage::Handshake, java, None, &[]).class, ErrorClass::DhTooSmall);
        let rustls = "peer misbehaved: SelectedUnofferedKxGroup";
        assert_eq!(t.classify("rustls", Stage::Handshake, rustls, None, &[]).class, ErrorClass::UnofferedGroup);
    }

    /// lettre's words as its client printed them against the built-in server (the last two
    /// against a scratch server that closed or reset the connection after the banner).
    #[test]
    fn lettre_words() {
        let t = tables();
        let c = |stage, text: &str, server: &[&str]| {
            let server: Vec<String> = server.iter().map(|s| s.to_string()).collect();
            t.classify("lettre", stage, text, Some("server-openssl"), &server)
        };
        use ErrorClass::*;
        use Stage::*;
        let dh = "Connection error: error:0A00018A:SSL routines:tls_process_ske_dhe:dh key too small:../ssl/statem/statem_clnt.c:2092:";
        let alert40 = "error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40";
        assert_eq!(c(Handshake, dh, &[alert40]), Classified { class: DhTooSmall, side: Side::Client });
        let version = "Connection error: error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1601:SSL alert number 70";
        let unsupported = "error:0A000102:SSL routines:tls_early_post_process_client_hello:unsupported protocol:../ssl/statem/statem_srvr.c:1664:";
        assert_eq!(c(Handshake, version, &[unsupported]).class, ProtocolVersion);
        let name = "Connection error: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (hostname mismatch)";
        assert_eq!(c(Verify, name, &[]).class, CertNameMismatch);
        let issuer = "Connection error: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (unable to get local issuer certificate)";
        assert_eq!(c(Verify, issuer, &[]).class, CertUntrusted);
        // An alert received: the server's own words decide; without them, the server refused the
        // handshake and no more is known.
        let alert = "Connection error: error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40";
        assert_eq!(c(Handshake, alert, &[]), Classified { class: HandshakeFailure, side: Side::Server });
        let garbage = "Connection error: error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl/record/ssl3_record.c:350:";
        assert_eq!(
            c(Handshake, garbage, &[]),
            Classified { class: ConnectionClosed, side: Side::Server },
            "not TLS where a ServerHello was due: the server broke off the handshake"
        );
        assert_eq!(c(Handshake, "Connection error: unexpected EOF", &[]).class, ConnectionClosed);
        let not_offered = "internal client error: STARTTLS is not supported on this server";
        assert_eq!(c(Starttls, not_offered, &[]), Classified { class: StarttlsNotOffered, side: Side::Server });
        let refused = "transient error (454): 4.7.0 TLS not available due to temporary reason";
        assert_eq!(c(Starttls, refused, &[]).class, StarttlsRefused);
        assert_eq!(
            c(Starttls, "transient error (421): 4.7.0 TLS not available, closing connection", &[]).class,
            StarttlsRefused
        );
        assert_eq!(
            c(Smtp, "transient error (421): 4.3.2 mx.test Service not available, closing", &[]).class,
            SmtpRejected
        );
        assert_eq!(c(Smtp, "permanent error (550): 5.7.1 EHLO rejected by policy", &[]).class, SmtpRejected);
        let injected = "permanent error (554): 5.7.0 INJECTED plaintext sent before the TLS handshake";
        assert_eq!(c(PostTls, injected, &[]), Classified { class: InjectionAccepted, side: Side::Client });
        assert_eq!(c(Connect, "Connection error: Connection refused (os error 111)", &[]).class, ConnectionRefused);
        assert_eq!(c(Smtp, "response error: incomplete response", &[]).class, ConnectionClosed);
        assert_eq!(c(Smtp, "network error: Connection reset by peer (os error 104)", &[]).class, ConnectionClosed);
    }

    #[test]
    fn extends_reaches_the_parent_table() {
        let c = tables().classify(
            "openssl-s_client",
            Stage::Handshake,
            "80EB:error:0A00018A:SSL routines:tls_process_ske_dhe:dh key too small:x",
            None,
            &[],
        );
        assert_eq!(c.class, ErrorClass::DhTooSmall);
    }
}
