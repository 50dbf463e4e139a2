//! The client contract's output: exactly one `RESULT {json}` line on stdout, and the exit code
//! 89 for "this program cannot express the requested option". Shared by every client program,
//! the adapters that wrap external programs, and the runner that reads them.

use report_format::{Negotiated, Stage};
use serde::{Deserialize, Serialize};

/// The exit code of a client program that cannot express a requested option or flag.
pub const EXIT_UNSUPPORTED: i32 = report_format::exit::CLIENT_UNSUPPORTED;

const PREFIX: &str = "RESULT ";

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
        let ok = ClientResult::Ok(Negotiated::tls(
            report_format::Protocol::Tls12,
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            None,
            Some(2048),
        ));
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
        // A client that carried on without TLS says so explicitly.
        let plain = ClientResult::Ok(Negotiated::plaintext()).to_line();
        assert_eq!(plain, r#"RESULT {"status":"ok","protocol":"plaintext","group":null,"dh_bits":null}"#);
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
            p in 0..report_format::Protocol::ALL.len(),
            bits in proptest::option::of(512u32..9000),
            stage in stage(),
        ) {
            let r = if ok {
                ClientResult::Ok(Negotiated::tls(report_format::Protocol::ALL[p], text.clone(), Some(text.clone()), bits))
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
