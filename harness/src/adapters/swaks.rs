//! `swaks --tls` (Perl, Net::SSLeay on OpenSSL), quitting after EHLO over TLS: `=== TLS started
//! with cipher TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256` on success, `*** …` lines (and `<** ` for a
//! server's refusal) on failure.

use super::dialogue::{Exchange, first_refusal};
use super::{Adapter, Located, Target, VersionProbe, first_line, on_path};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Protocol, Stage};

/// `swaks`.
pub struct Swaks;

impl Adapter for Swaks {
    fn name(&self) -> &'static str {
        "swaks"
    }

    fn error_table(&self) -> &'static str {
        "swaks"
    }

    fn locate(&self, _stack: &ClientStack) -> Result<Located, Availability> {
        on_path("swaks")
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        let (host, port) = target.host_port();
        let mut args: Vec<OsString> = [
            "--server",
            host,
            "--port",
            port,
            "--tls",
            "--tls-verify",
            "--tls-sni",
            &target.servername,
            "--helo",
            &target.ehlo,
            // EHLO again over TLS, then QUIT.
            "--quit-after",
            "HELO",
            "--tls-ca-path",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(target.cafile.clone().into_os_string());
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
        (first_line(out), serde_json::json!({ "tls": "Net::SSLeay on the system OpenSSL, its default security level" }))
    }
}

/// `swaks` prints `=== TLS started with cipher TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256` on success
/// and `*** …` lines (and `<** ` for a server's refusal) on failure.
fn parse(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let started = all.iter().find_map(|l| l.strip_prefix("=== TLS started with cipher "));
    let problems: Vec<&str> =
        all.iter().filter(|l| l.starts_with("*** ") || l.starts_with("<** ")).map(|l| l.trim()).collect();
    let words = problems.join("\n");
    if started.is_none()
        && let Some(refused) = first_refusal(&dialogue(&all))
    {
        return Ok(refused);
    }
    match (exit_code, started) {
        (Some(0), Some(session)) => {
            // TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256
            let mut parts = session.split(':');
            let protocol = parts.next().unwrap_or_default().trim();
            let protocol =
                Protocol::parse(protocol).ok_or_else(|| format!("swaks named an unknown protocol {protocol:?}"))?;
            let cipher = parts.next().unwrap_or_default().trim();
            Ok(ClientResult::Ok(Negotiated::tls(protocol, cipher, None, None)))
        }
        // Killed by a signal (SIGPIPE) after the server hung up on it.
        (None, None) if words.is_empty() && stdout.contains("=== Connected to") => Ok(ClientResult::error(
            Stage::Handshake,
            "connection closed: swaks was ended by a signal after the server hung up",
        )),
        _ if words.is_empty() => Err(format!("swaks ended with {exit_code:?} and said nothing we know")),
        (_, Some(_)) => Ok(ClientResult::error(Stage::PostTls, words)),
        (_, None) => {
            let stage = if words.contains("TLS startup failed") {
                if words.contains("certificate verify failed") { Stage::Verify } else { Stage::Handshake }
            } else if words.contains("STARTTLS") {
                Stage::Starttls
            } else if words.contains("Error connecting") || words.contains("Connection refused") {
                Stage::Connect
            } else {
                Stage::Smtp
            };
            Ok(ClientResult::error(stage, words))
        }
    }
}

/// The dialogue swaks prints before TLS: ` -> EHLO x`, `<-  250 …`, `<** 550 …` (a refusal).
fn dialogue(lines: &[&str]) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    let mut command: Option<String> = None;
    let mut reply: Vec<&str> = Vec::new();
    for line in lines {
        if let Some(sent) = line.strip_prefix(" -> ") {
            if !reply.is_empty() || command.is_some() {
                out.push(Exchange { command: command.take(), reply: reply.join("\n") });
                reply.clear();
            }
            command = Some(sent.trim().to_string());
        } else if let Some(read) = line.strip_prefix("<-  ").or_else(|| line.strip_prefix("<** ")) {
            reply.push(read.trim());
        } else if line.starts_with("=== TLS started") || line.starts_with(" ~> ") {
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
    fn parses_swaks() {
        let ok = "=== TLS started with cipher TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256\n";
        assert!(matches!(parse(Some(0), ok, "").unwrap(), ClientResult::Ok(n) if n.protocol == Some(Protocol::Tls12)));
        let bad = "*** TLS startup failed (connect(): error:0A00018A:SSL routines::dh key too small)\n*** STARTTLS attempted but failed\n";
        assert!(matches!(parse(Some(29), bad, "").unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
        // swaks 20201014 against a server that rejects EHLO (it tries HELO, then gives up on TLS).
        let ehlo = "=== Connected to 127.0.0.1.\n<-  220 mx.test ESMTP starttls-matrix\n -> EHLO client.test\n<** 550 5.7.1 EHLO rejected by policy\n -> HELO client.test\n<-  250 mx.test\n*** Host did not advertise STARTTLS\n -> QUIT\n<-  221 2.0.0 Bye\n";
        assert_eq!(
            parse(Some(29), ehlo, "").unwrap(),
            ClientResult::error(Stage::Smtp, "EHLO: 550 5.7.1 EHLO rejected by policy")
        );
    }
}
