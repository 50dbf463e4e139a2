//! The client contract's output: exactly one `RESULT {json}` line on stdout, and the exit code
//! 89 for "this program cannot express the requested option". Shared by every client program,
//! the adapters that wrap external programs, and the runner that reads them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The exit code of a client program that cannot express a requested option or flag.
pub const EXIT_UNSUPPORTED: i32 = 89;

const PREFIX: &str = "RESULT ";

/// Where in the dialogue a client stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// TCP connect.
    Connect,
    /// Banner, EHLO: SMTP before STARTTLS.
    Smtp,
    /// The STARTTLS command and its reply (including "not advertised").
    Starttls,
    /// The TLS handshake.
    Handshake,
    /// Certificate or name verification.
    Verify,
    /// SMTP over TLS: EHLO again, QUIT.
    PostTls,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Smtp => "smtp",
            Stage::Starttls => "starttls",
            Stage::Handshake => "handshake",
            Stage::Verify => "verify",
            Stage::PostTls => "post-tls",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a completed TLS handshake negotiated. Names follow the IANA TLS registries where the
/// stack exposes them (`TLS_DHE_RSA_WITH_AES_128_GCM_SHA256`, `x25519`, `ffdhe2048`); `group` is
/// `None` for a TLS 1.2 DHE exchange (the server sent a bare prime) and for RSA key transport.
///
/// A stack that completes the handshake but exposes none of this (lettre) reports
/// [`Negotiated::unreported`]: `protocol` and `cipher` are then empty, and left out of the line
/// (`RESULT {"status":"ok","group":null,"dh_bits":null}`); a missing field reads back as empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// `TLSv1`, `TLSv1.1`, `TLSv1.2` or `TLSv1.3`; empty when the stack does not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Empty when the stack does not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cipher: String,
    #[serde(default)]
    pub group: Option<String>,
    /// The size of the finite-field DH prime, when the key exchange was DHE.
    #[serde(default)]
    pub dh_bits: Option<u32>,
}

impl Negotiated {
    /// A completed handshake whose parameters the stack does not expose.
    pub fn unreported() -> Negotiated {
        Negotiated { protocol: String::new(), cipher: String::new(), group: None, dh_bits: None }
    }

    /// Whether the stack named the protocol it negotiated (see [`Negotiated::unreported`]).
    pub fn is_reported(&self) -> bool {
        !self.protocol.is_empty()
    }

    /// The short label a table shows: `TLSv1.2 DHE-2048`, `TLSv1.3 x25519`, `TLSv1.2 RSA`, or
    /// `TLS (not reported)` for a stack that does not say.
    pub fn label(&self) -> String {
        if !self.is_reported() {
            return "TLS (not reported)".to_string();
        }
        let kx = match (&self.group, self.dh_bits) {
            (Some(g), _) if g.starts_with("ffdhe") => g.clone(),
            (_, Some(bits)) => format!("DHE-{bits}"),
            (Some(g), None) => g.clone(),
            // A stack that names neither group nor prime size: say what its cipher implies.
            (None, None) if self.cipher.contains("ECDHE") => "ECDHE".to_string(),
            (None, None) if self.cipher.contains("DHE") => "DHE".to_string(),
            (None, None) if self.protocol != "TLSv1.3" => "RSA".to_string(),
            // TLS 1.3 from a stack that does not name the group.
            (None, None) => return self.protocol.clone(),
        };
        format!("{} {}", self.protocol, kx)
    }
}

/// The one line a client program prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClientResult {
    Ok(Negotiated),
    Error {
        stage: Stage,
        /// The library's or the server's own words, verbatim.
        error: String,
    },
}

/// Why a program's stdout does not hold a usable RESULT line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultLineError {
    #[error("read the client's RESULT line: there is none")]
    Missing,
    #[error("read the client's RESULT line: there are {0}, the contract allows one")]
    Several(usize),
    #[error("read the client's RESULT line: {0}")]
    Malformed(String),
}

impl ClientResult {
    /// A failure at `stage` in the stack's own words.
    pub fn error(stage: Stage, error: impl Into<String>) -> Self {
        ClientResult::Error { stage, error: error.into() }
    }

    /// The line to print: `RESULT {json}` (no newline).
    pub fn to_line(&self) -> String {
        format!("{PREFIX}{}", serde_json::to_string(self).expect("a RESULT always serialises"))
    }

    /// Find and parse the single RESULT line in a program's stdout.
    pub fn from_stdout(stdout: &str) -> Result<ClientResult, ResultLineError> {
        let lines: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix(PREFIX)).collect();
        match lines.as_slice() {
            [] => Err(ResultLineError::Missing),
            [one] => serde_json::from_str(one).map_err(|e| ResultLineError::Malformed(e.to_string())),
            many => Err(ResultLineError::Several(many.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_shape_is_the_contract() {
        let ok = ClientResult::Ok(Negotiated {
            protocol: "TLSv1.2".into(),
            cipher: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            group: None,
            dh_bits: Some(2048),
        });
        assert_eq!(
            ok.to_line(),
            r#"RESULT {"status":"ok","protocol":"TLSv1.2","cipher":"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256","group":null,"dh_bits":2048}"#
        );
        let err = ClientResult::error(Stage::PostTls, "eof");
        assert_eq!(err.to_line(), r#"RESULT {"status":"error","stage":"post-tls","error":"eof"}"#);
    }

    #[test]
    fn finds_exactly_one_line() {
        assert_eq!(ClientResult::from_stdout("noise\n"), Err(ResultLineError::Missing));
        let line = ClientResult::error(Stage::Smtp, "421").to_line();
        assert!(ClientResult::from_stdout(&format!("a\n{line}\nb\n")).is_ok());
        assert_eq!(ClientResult::from_stdout(&format!("{line}\n{line}\n")), Err(ResultLineError::Several(2)));
        assert!(matches!(ClientResult::from_stdout("RESULT {nope"), Err(ResultLineError::Malformed(_))));
    }

    #[test]
    fn unreported_parameters_are_left_out_and_read_back() {
        let line = ClientResult::Ok(Negotiated::unreported()).to_line();
        assert_eq!(line, r#"RESULT {"status":"ok","group":null,"dh_bits":null}"#);
        assert_eq!(ClientResult::from_stdout(&line), Ok(ClientResult::Ok(Negotiated::unreported())));
        assert_eq!(
            ClientResult::from_stdout(r#"RESULT {"status":"ok"}"#),
            Ok(ClientResult::Ok(Negotiated::unreported()))
        );
        assert!(!Negotiated::unreported().is_reported());
        assert_eq!(Negotiated::unreported().label(), "TLS (not reported)");
    }

    #[test]
    fn labels() {
        let n = |p: &str, g: Option<&str>, b: Option<u32>| Negotiated {
            protocol: p.into(),
            cipher: String::new(),
            group: g.map(Into::into),
            dh_bits: b,
        };
        assert_eq!(n("TLSv1.2", None, Some(2048)).label(), "TLSv1.2 DHE-2048");
        assert_eq!(n("TLSv1.3", Some("ffdhe2048"), Some(2048)).label(), "TLSv1.3 ffdhe2048");
        assert_eq!(n("TLSv1.3", Some("x25519"), None).label(), "TLSv1.3 x25519");
        assert_eq!(n("TLSv1.2", None, None).label(), "TLSv1.2 RSA");
    }

    fn stage() -> impl Strategy<Value = Stage> {
        prop_oneof![
            Just(Stage::Connect),
            Just(Stage::Smtp),
            Just(Stage::Starttls),
            Just(Stage::Handshake),
            Just(Stage::Verify),
            Just(Stage::PostTls),
        ]
    }

    proptest! {
        #[test]
        fn result_line_round_trips(
            ok in any::<bool>(),
            text in "\\PC{0,60}",
            bits in proptest::option::of(512u32..9000),
            stage in stage(),
        ) {
            let r = if ok {
                ClientResult::Ok(Negotiated { protocol: text.clone(), cipher: text.clone(), group: Some(text.clone()), dh_bits: bits })
            } else {
                ClientResult::error(stage, text)
            };
            prop_assert_eq!(ClientResult::from_stdout(&format!("x\n{}\n", r.to_line())), Ok(r));
        }

        #[test]
        fn arbitrary_output_never_panics(
            lines in proptest::collection::vec(prop_oneof!["\\PC{0,80}", "RESULT \\PC{0,80}", "RESULT \\{[\"a-z:,0-9 ]{0,60}\\}?"], 0..8)
        ) {
            // Either a parsed result or an error naming what is wrong; nothing else.
            let _ = ClientResult::from_stdout(&lines.join("\n"));
        }
    }
}
