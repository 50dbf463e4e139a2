//! What happened in a cell, recorded verbatim, and the stack-independent error classes that
//! name a failure. "We could not run it" (`HarnessError`) is kept apart from "it did not
//! interoperate" (`Failed`), and neither is ever rewritten after the run.

use crate::negotiated::{Negotiated, Stage};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The stack-independent name of a failure. Each has one line of explanation and one of remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    CertExpired,
    CertKeyTooSmall,
    CertNameMismatch,
    CertUntrusted,
    CertWeakSignature,
    ConnectionClosed,
    ConnectionRefused,
    DhInvalid,
    DhInvalidAccepted,
    DhTooLarge,
    DhTooSmall,
    DowngradedToPlaintext,
    EmsMissing,
    HandshakeFailure,
    InjectionAccepted,
    KeyMismatch,
    LegacySigalg,
    NoSharedCipher,
    NoSharedGroup,
    NotSmtp,
    ProtocolVersion,
    ServerConfigRejected,
    ServerTimeout,
    SmtpRejected,
    StarttlsNotOffered,
    StarttlsRefused,
    UnofferedGroup,
    Unmapped,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 28] = [
        ErrorClass::CertExpired,
        ErrorClass::CertKeyTooSmall,
        ErrorClass::CertNameMismatch,
        ErrorClass::CertUntrusted,
        ErrorClass::CertWeakSignature,
        ErrorClass::ConnectionClosed,
        ErrorClass::ConnectionRefused,
        ErrorClass::DhInvalid,
        ErrorClass::DhInvalidAccepted,
        ErrorClass::DhTooLarge,
        ErrorClass::DhTooSmall,
        ErrorClass::DowngradedToPlaintext,
        ErrorClass::EmsMissing,
        ErrorClass::HandshakeFailure,
        ErrorClass::InjectionAccepted,
        ErrorClass::KeyMismatch,
        ErrorClass::LegacySigalg,
        ErrorClass::NoSharedCipher,
        ErrorClass::NoSharedGroup,
        ErrorClass::NotSmtp,
        ErrorClass::ProtocolVersion,
        ErrorClass::ServerConfigRejected,
        ErrorClass::ServerTimeout,
        ErrorClass::SmtpRejected,
        ErrorClass::StarttlsNotOffered,
        ErrorClass::StarttlsRefused,
        ErrorClass::UnofferedGroup,
        ErrorClass::Unmapped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::CertExpired => "cert_expired",
            ErrorClass::CertKeyTooSmall => "cert_key_too_small",
            ErrorClass::CertNameMismatch => "cert_name_mismatch",
            ErrorClass::CertUntrusted => "cert_untrusted",
            ErrorClass::CertWeakSignature => "cert_weak_signature",
            ErrorClass::ConnectionClosed => "connection_closed",
            ErrorClass::ConnectionRefused => "connection_refused",
            ErrorClass::DhInvalid => "dh_invalid",
            ErrorClass::DhInvalidAccepted => "dh_invalid_accepted",
            ErrorClass::DhTooLarge => "dh_too_large",
            ErrorClass::DhTooSmall => "dh_too_small",
            ErrorClass::DowngradedToPlaintext => "downgraded_to_plaintext",
            ErrorClass::EmsMissing => "ems_missing",
            ErrorClass::HandshakeFailure => "handshake_failure",
            ErrorClass::InjectionAccepted => "injection_accepted",
            ErrorClass::KeyMismatch => "key_mismatch",
            ErrorClass::LegacySigalg => "legacy_sigalg",
            ErrorClass::NoSharedCipher => "no_shared_cipher",
            ErrorClass::NoSharedGroup => "no_shared_group",
            ErrorClass::NotSmtp => "not_smtp",
            ErrorClass::ProtocolVersion => "protocol_version",
            ErrorClass::ServerConfigRejected => "server_config_rejected",
            ErrorClass::ServerTimeout => "server_timeout",
            ErrorClass::SmtpRejected => "smtp_rejected",
            ErrorClass::StarttlsNotOffered => "starttls_not_offered",
            ErrorClass::StarttlsRefused => "starttls_refused",
            ErrorClass::UnofferedGroup => "unoffered_group",
            ErrorClass::Unmapped => "unmapped",
        }
    }

    /// One line: what happened.
    pub fn explanation(self) -> &'static str {
        match self {
            ErrorClass::CertExpired => "the server's certificate is outside its validity period",
            ErrorClass::CertKeyTooSmall => {
                "the server's certificate key is below the client's minimum (RSA 1024 at OpenSSL's security level 2)"
            }
            ErrorClass::CertNameMismatch => "the server's certificate does not name the host the client asked for",
            ErrorClass::CertUntrusted => "the server's certificate does not chain to a CA the client trusts",
            ErrorClass::CertWeakSignature => {
                "the server's certificate is signed with a digest the client no longer accepts (SHA-1)"
            }
            ErrorClass::ConnectionClosed => {
                "the peer closed the connection, reset it or broke off the handshake without a reason we can name"
            }
            ErrorClass::ConnectionRefused => {
                "nothing accepted the TCP connection: no server listening there, or a firewall refusing it"
            }
            ErrorClass::DhInvalid => "the client refused the server's DH prime as composite or of small subgroup",
            ErrorClass::DhInvalidAccepted => {
                "the client accepted a composite or small-subgroup DH prime (a security finding)"
            }
            ErrorClass::DhTooLarge => "the server's DH group is above this client's maximum",
            ErrorClass::DhTooSmall => "the server's DH group is below this client's minimum",
            ErrorClass::DowngradedToPlaintext => "the client carried on without TLS",
            ErrorClass::EmsMissing => {
                "the server negotiated TLS 1.2 without the extended master secret (RFC 7627), which the client requires (FIPS mode)"
            }
            ErrorClass::HandshakeFailure => {
                "the server ended the handshake with a bare handshake_failure alert: no cipher, group or version in common, or a setting it would not use — its own log says which"
            }
            ErrorClass::InjectionAccepted => "the client took plaintext injected before the handshake as protected",
            ErrorClass::KeyMismatch => {
                "the two sides derived different keys: the first encrypted record did not decrypt (bad record MAC, tag mismatch) — e.g. one side dropped a leading zero of the shared secret"
            }
            ErrorClass::LegacySigalg => {
                "a signature algorithm one side requires (e.g. TLS 1.0's MD5-SHA1) is refused by the other"
            }
            ErrorClass::NoSharedCipher => "client and server have no cipher suite in common",
            ErrorClass::NoSharedGroup => "client and server have no key-exchange group in common",
            ErrorClass::NotSmtp => {
                "the server does not speak SMTP: its greeting is not an SMTP reply (an SSH banner, say)"
            }
            ErrorClass::ProtocolVersion => "client and server have no TLS protocol version in common",
            ErrorClass::ServerConfigRejected => "the server refused or silently dropped its own TLS configuration",
            ErrorClass::ServerTimeout => {
                "the server stopped answering and the stack gave up waiting, on its own timer (a sender defers)"
            }
            ErrorClass::SmtpRejected => "the server answered 4xx/5xx for a reason that is not about TLS",
            ErrorClass::StarttlsNotOffered => "the server did not advertise STARTTLS",
            ErrorClass::StarttlsRefused => "the server refused the STARTTLS command (e.g. 454)",
            ErrorClass::UnofferedGroup => "the server's DH group is not an RFC 7919 group the client offered (rustls)",
            ErrorClass::Unmapped => "an error the classification tables do not know yet: read the raw text",
        }
    }

    /// One line: what a server operator can do about it.
    pub fn remedy(self) -> &'static str {
        match self {
            ErrorClass::CertExpired => "renew the certificate",
            ErrorClass::CertNameMismatch => "serve a certificate whose names include the MX host name",
            ErrorClass::CertUntrusted => "serve the full chain from a CA the senders trust",
            ErrorClass::CertKeyTooSmall => "serve a certificate with an RSA key of 2048 bits or more, or ECDSA",
            ErrorClass::CertWeakSignature => "reissue the certificate signed with SHA-256",
            ErrorClass::ConnectionClosed => "read the server's log for the cause",
            ErrorClass::ConnectionRefused => "check the host, the port and that the server is running and reachable",
            ErrorClass::DhInvalid => "serve a well-known safe prime, e.g. an RFC 7919 group",
            ErrorClass::DhInvalidAccepted => "report it to the client library: it must validate DH parameters",
            ErrorClass::DhTooLarge => "serve a DH group of at most 2048 bits, or prefer ECDHE",
            ErrorClass::DhTooSmall => "serve an RFC 7919 group of at least 2048 bits, or prefer ECDHE",
            ErrorClass::DowngradedToPlaintext => "require TLS on the client (e.g. a 'secure' or 'encrypt' policy)",
            ErrorClass::EmsMissing => {
                "update the server's TLS library (every current one offers EMS), or offer TLS 1.3"
            }
            ErrorClass::HandshakeFailure => {
                "read the server's TLS log; offer ECDHE suites, x25519/secp256r1 and TLS 1.2–1.3"
            }
            ErrorClass::InjectionAccepted => {
                "update the client: it must discard plaintext buffered before the handshake"
            }
            ErrorClass::KeyMismatch => {
                "find which side computes the secret wrongly (the rare-* profiles force each case); until it is fixed, offer a group the broken side handles (ECDHE instead of TLS 1.3 FFDHE)"
            }
            ErrorClass::LegacySigalg => "enable TLS 1.2 or later with SHA-256 signatures",
            ErrorClass::NoSharedCipher => "add ECDHE suites (and TLS 1.3) to the server's cipher list",
            ErrorClass::NoSharedGroup => "offer x25519 and secp256r1 (and ffdhe2048 for TLS 1.3 FFDHE)",
            ErrorClass::NotSmtp => "check the MX host and port: something other than a mail server answers there",
            ErrorClass::ProtocolVersion => "enable TLS 1.2 and 1.3 on the server",
            ErrorClass::ServerConfigRejected => "use parameters the server's TLS library accepts (e.g. DH ≥ 2048 bits)",
            ErrorClass::ServerTimeout => {
                "find what stalls the server: an unfinished banner or reply, a firewall dropping packets, an overloaded daemon"
            }
            ErrorClass::SmtpRejected => "read the SMTP reply; it is not a TLS problem",
            ErrorClass::StarttlsNotOffered => "enable STARTTLS on the server",
            ErrorClass::StarttlsRefused => "check the server's TLS setup; it refused to start TLS",
            ErrorClass::UnofferedGroup => {
                "serve an RFC 7919 group (ffdhe2048) instead of a private prime, or prefer ECDHE"
            }
            ErrorClass::Unmapped => "add the text to the stack's table in harness/classify/",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A family of error classes, for colouring and filtering published tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// DH sizes and validity, groups.
    KeyExchange,
    /// Protocol versions, cipher suites, signature algorithms.
    Protocol,
    Certificate,
    /// The SMTP dialogue around TLS.
    Starttls,
    /// A server refusing its own configuration.
    ServerConfig,
    /// Closed connections and unknown text.
    Other,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::KeyExchange => "key-exchange",
            Family::Protocol => "protocol",
            Family::Certificate => "certificate",
            Family::Starttls => "starttls",
            Family::ServerConfig => "server-config",
            Family::Other => "other",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Family::KeyExchange => "key exchange (DH, groups)",
            Family::Protocol => "protocol version, ciphers, signatures",
            Family::Certificate => "certificate",
            Family::Starttls => "STARTTLS / SMTP",
            Family::ServerConfig => "server refused its own configuration",
            Family::Other => "connection closed, unmapped",
        }
    }
}

impl ErrorClass {
    pub fn family(self) -> Family {
        match self {
            ErrorClass::DhInvalid
            | ErrorClass::DhInvalidAccepted
            | ErrorClass::DhTooLarge
            | ErrorClass::DhTooSmall
            | ErrorClass::KeyMismatch
            | ErrorClass::NoSharedGroup
            | ErrorClass::UnofferedGroup => Family::KeyExchange,
            ErrorClass::EmsMissing
            | ErrorClass::HandshakeFailure
            | ErrorClass::LegacySigalg
            | ErrorClass::NoSharedCipher
            | ErrorClass::ProtocolVersion => Family::Protocol,
            ErrorClass::CertExpired
            | ErrorClass::CertKeyTooSmall
            | ErrorClass::CertNameMismatch
            | ErrorClass::CertUntrusted
            | ErrorClass::CertWeakSignature => Family::Certificate,
            ErrorClass::DowngradedToPlaintext
            | ErrorClass::InjectionAccepted
            | ErrorClass::NotSmtp
            | ErrorClass::SmtpRejected
            | ErrorClass::StarttlsNotOffered
            | ErrorClass::StarttlsRefused => Family::Starttls,
            ErrorClass::ServerConfigRejected => Family::ServerConfig,
            ErrorClass::ConnectionClosed
            | ErrorClass::ConnectionRefused
            | ErrorClass::ServerTimeout
            | ErrorClass::Unmapped => Family::Other,
        }
    }
}

/// Which side refused or aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
    Unknown,
}

/// Who reported a connected cell's parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    /// The client stack itself (every stack that exposes them).
    #[default]
    Client,
    /// The built-in server's record of the same connection, because the client stack completed
    /// the handshake without exposing what it negotiated (lettre).
    Server,
}

impl Reporter {
    pub fn is_client(&self) -> bool {
        *self == Reporter::Client
    }
}

/// A completed handshake as a cell records it: what was negotiated, and who said so. It reads
/// as the [`Negotiated`] it holds; in JSON its fields sit beside `kind`, and `reported_by` is
/// there only when it is not the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    #[serde(flatten)]
    pub negotiated: Negotiated,
    #[serde(default, skip_serializing_if = "Reporter::is_client")]
    pub reported_by: Reporter,
}

impl From<Negotiated> for Connection {
    /// Parameters the client stack reported itself.
    fn from(negotiated: Negotiated) -> Connection {
        Connection { negotiated, reported_by: Reporter::Client }
    }
}

impl std::ops::Deref for Connection {
    type Target = Negotiated;
    fn deref(&self) -> &Negotiated {
        &self.negotiated
    }
}

/// What happened in one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Connected(Connection),
    Failed {
        class: ErrorClass,
        side: Side,
        stage: Stage,
        /// The client stack's own words.
        client_error: String,
        /// The server's own words, if it logged any.
        server_error: Option<String>,
    },
    /// The stack cannot express this cell (its program exited 89).
    Unsupported {
        reason: String,
    },
    /// The stack is not installed here.
    Skipped {
        reason: String,
    },
    /// The cell did not finish within its timeout; the client was killed.
    Timeout {
        after_ms: u64,
    },
    /// We failed to run it (spawn, bind, crash, no RESULT line): never an incompatibility.
    HarnessError {
        detail: String,
    },
}

impl Outcome {
    /// The short label for a table cell.
    pub fn label(&self) -> String {
        match self {
            Outcome::Connected(n) => n.label(),
            Outcome::Failed { class, .. } => class.to_string(),
            Outcome::Unsupported { .. } => "unsupported".into(),
            Outcome::Skipped { .. } => "skipped".into(),
            Outcome::Timeout { .. } => "timeout".into(),
            Outcome::HarnessError { .. } => "HARNESS ERROR".into(),
        }
    }

    /// What must stay the same for two runs of a cell to count as the same behaviour: the
    /// negotiated parameters, or the class and stage of a failure (not its text, which can
    /// hold addresses and thread ids), or the kind.
    pub fn signature(&self) -> String {
        match self {
            Outcome::Connected(n) => {
                format!(
                    "connected {} {} {} {}",
                    n.protocol.map_or("-", |p| p.as_str()),
                    n.cipher_name(),
                    n.group.as_deref().unwrap_or("-"),
                    n.dh_bits.unwrap_or(0)
                )
            }
            Outcome::Failed { class, stage, .. } => format!("failed {class} at {stage}"),
            other => other.kind().to_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Connected(_) => "connected",
            Outcome::Failed { .. } => "failed",
            Outcome::Unsupported { .. } => "unsupported",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Timeout { .. } => "timeout",
            Outcome::HarnessError { .. } => "harness_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_match_serde() {
        for c in ErrorClass::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.as_str().into()));
            assert!(!c.explanation().is_empty() && !c.remedy().is_empty());
        }
    }

    #[test]
    fn outcome_wire_shape() {
        let n = Negotiated::tls(crate::Protocol::Tls12, "X", None, Some(2048));
        let o = Outcome::Connected(n.clone().into());
        let json = r#"{"kind":"connected","protocol":"TLSv1.2","cipher":"X","group":null,"dh_bits":2048}"#;
        assert_eq!(serde_json::to_string(&o).unwrap(), json);
        assert_eq!(serde_json::from_str::<Outcome>(json).unwrap(), o);
        // Parameters a stack did not expose, taken from the server's record, say so.
        let o = Outcome::Connected(Connection { negotiated: n, reported_by: Reporter::Server });
        let json = r#"{"kind":"connected","protocol":"TLSv1.2","cipher":"X","group":null,"dh_bits":2048,"reported_by":"server"}"#;
        assert_eq!(serde_json::to_string(&o).unwrap(), json);
        assert_eq!(serde_json::from_str::<Outcome>(json).unwrap(), o);
        let f = Outcome::Failed {
            class: ErrorClass::DhTooSmall,
            side: Side::Client,
            stage: Stage::Handshake,
            client_error: "dh key too small".into(),
            server_error: None,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["kind"], "failed");
        assert_eq!(v["class"], "dh_too_small");
        assert_eq!(v["stage"], "handshake");
    }
}
