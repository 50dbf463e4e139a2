//! `msmtp --serverinfo` with STARTTLS required (msmtp on GnuTLS): `TLS session parameters:` and
//! the GnuTLS session line on success, `msmtp: …` on failure.

use super::dialogue::{Exchange, first_refusal};
use super::gnutls_cli::gnutls_session;
use super::{Adapter, Located, Target, VersionProbe, first_line, on_path};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use wire::{ClientResult, Stage};

/// `msmtp`.
pub struct Msmtp;

impl Adapter for Msmtp {
    fn name(&self) -> &'static str {
        "msmtp"
    }

    fn error_table(&self) -> &'static str {
        "msmtp"
    }

    fn locate(&self, _stack: &ClientStack) -> Result<Located, Availability> {
        on_path("msmtp")
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        let (host, port) = target.host_port();
        let mut args: Vec<OsString> = vec![
            "--serverinfo".into(),
            // The dialogue (`<-- 550 …`): msmtp's own words hide a rejected EHLO behind HELO.
            "--debug".into(),
            format!("--host={host}").into(),
            format!("--port={port}").into(),
            "--tls=on".into(),
            "--tls-starttls=on".into(),
            format!("--tls-host-override={}", target.servername).into(),
            format!("--domain={}", target.ehlo).into(),
        ];
        let mut trust = OsString::from("--tls-trust-file=");
        trust.push(&target.cafile);
        args.push(trust);
        args.extend(extra.iter().map(OsString::from));
        (args, Vec::new())
    }

    fn parse(&self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        parse(exit_code, stdout, stderr)
    }

    fn version_probe(&self, located: &Located) -> VersionProbe {
        VersionProbe { program: located.program.clone(), args: vec!["--version"] }
    }

    fn describe(&self, out: &str, _located: &Located, _env: &[(String, String)]) -> (String, serde_json::Value) {
        let library = out.lines().find(|l| l.starts_with("TLS/SSL library:")).unwrap_or_default().trim();
        let policy = serde_json::json!({ "tls_library": library, "priority": "GnuTLS default unless --tls-priorities is given" });
        (first_line(out), policy)
    }
}

/// `msmtp --serverinfo` prints `TLS session parameters:` and the GnuTLS session line on
/// success, `msmtp: …` on failure.
fn parse(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let session = stdout.lines().skip_while(|l| !l.starts_with("TLS session parameters:")).nth(1);
    if let (Some(0), Some(line)) = (exit_code, session) {
        return Ok(ClientResult::Ok(gnutls_session(line)?));
    }
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    if let Some(refused) = first_refusal(&dialogue(&all)) {
        return Ok(refused);
    }
    let words: Vec<&str> = stderr.lines().filter(|l| l.starts_with("msmtp: ")).map(str::trim).collect();
    let words = words.join("\n");
    if words.is_empty() {
        return Err(format!("msmtp ended with {exit_code:?} and said nothing"));
    }
    let stage = if words.contains("cannot connect") || words.contains("Connection refused") {
        Stage::Connect
    } else if words.contains("certificate") {
        Stage::Verify
    } else if words.contains("TLS handshake failed") || (words.contains("TLS") && !words.contains("STARTTLS")) {
        Stage::Handshake
    } else if words.contains("STARTTLS") {
        Stage::Starttls
    } else {
        Stage::Smtp
    };
    Ok(ClientResult::error(stage, words))
}

/// `--debug`'s dialogue: `--> EHLO x`, `<-- 550 5.7.1 …`, up to the TLS handshake.
fn dialogue(lines: &[&str]) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    let mut command: Option<String> = None;
    let mut reply: Vec<&str> = Vec::new();
    for line in lines {
        if let Some(sent) = line.strip_prefix("--> ") {
            if !reply.is_empty() || command.is_some() {
                out.push(Exchange { command: command.take(), reply: reply.join("\n") });
                reply.clear();
            }
            command = Some(sent.trim().to_string());
        } else if let Some(read) = line.strip_prefix("<-- ") {
            reply.push(read.trim());
        } else if line.starts_with("TLS session parameters:") {
            break;
        }
    }
    if !reply.is_empty() {
        out.push(Exchange { command, reply: reply.join("\n") });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msmtp() {
        let ok = "TLS session parameters:\n    (TLS1.2)-(DHE-CUSTOM1024)-(RSA-SHA256)-(AES-256-GCM)\n";
        assert!(matches!(parse(Some(0), ok, "").unwrap(), ClientResult::Ok(n) if n.dh_bits == Some(1024)));
        let bad = "msmtp: TLS handshake failed: The Diffie-Hellman prime sent by the server is not acceptable (not long enough).\n";
        assert!(matches!(parse(Some(69), "", bad).unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
        // msmtp 1.8 --debug against a server that rejects EHLO: it says only that STARTTLS is
        // not supported (it fell back to HELO), the dialogue has the 550.
        let debug = "<-- 220 mx.test ESMTP starttls-matrix\n--> EHLO localhost\n<-- 550 5.7.1 EHLO rejected by policy\n--> HELO localhost\n<-- 250 mx.test\n--> QUIT\n<-- 221 2.0.0 Bye\n";
        let said = "msmtp: the server does not support TLS via the STARTTLS command\n";
        assert_eq!(
            parse(Some(69), debug, said).unwrap(),
            ClientResult::error(Stage::Smtp, "EHLO: 550 5.7.1 EHLO rejected by policy")
        );
    }
}
