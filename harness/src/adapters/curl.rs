//! `curl --ssl-reqd smtp://…` (libcurl), sending one message: `-v` says `* SSL connection using
//! TLSv1.2 / DHE-RSA-AES256-GCM-SHA384` on success and `curl: (35) …` on failure, the number
//! telling the stage.

use super::{Adapter, Located, Target, VersionProbe, first_line, on_path};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Protocol, Stage};

/// `curl`.
pub struct Curl;

impl Adapter for Curl {
    fn name(&self) -> &'static str {
        "curl"
    }

    fn error_table(&self) -> &'static str {
        "curl"
    }

    fn locate(&self, _stack: &ClientStack) -> Result<Located, Availability> {
        on_path("curl")
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        let (host, port) = target.host_port();
        let name = &target.servername;
        let mut args: Vec<OsString> = [
            "-sS",
            "-v",
            "--ssl-reqd",
            "--mail-from",
            "probe@client.test",
            "--mail-rcpt",
            "postmaster@mx.test",
            "--upload-file",
            "-",
            "--cacert",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(target.cafile.clone().into_os_string());
        // The URL names the server (SNI, verification); --connect-to says where it is.
        args.push("--connect-to".into());
        args.push(format!("{name}:{port}:{host}:{port}").into());
        args.extend(extra.iter().map(OsString::from));
        args.push(format!("smtp://{name}:{port}/{}", target.ehlo).into());
        (args, b"Subject: starttls-matrix probe\r\n\r\nsent by curl\r\n".to_vec())
    }

    fn parse(&self, exit_code: Option<i32>, _stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        parse(exit_code, stderr)
    }

    fn version_probe(&self, located: &Located) -> VersionProbe {
        VersionProbe { program: located.program.clone(), args: vec!["--version"] }
    }

    /// `curl --version`'s first line names libcurl's TLS library as it runs.
    fn describe(&self, out: &str, _located: &Located, _env: &[(String, String)]) -> (String, serde_json::Value) {
        (first_line(out), serde_json::json!({ "tls": "libcurl's defaults on its TLS library (see the version line)" }))
    }
}

/// `curl -v` says `* SSL connection using TLSv1.2 / DHE-RSA-AES256-GCM-SHA384` on success and
/// `curl: (35) …` on failure, the number telling the stage.
fn parse(exit_code: Option<i32>, stderr: &str) -> Result<ClientResult, String> {
    let error = stderr.lines().find(|l| l.starts_with("curl: (")).map(str::trim);
    let session = stderr.lines().find_map(|l| l.strip_prefix("* SSL connection using "));
    match (exit_code, error, session) {
        (Some(0), _, Some(session)) => {
            let (protocol, cipher) = session.split_once(" / ").unwrap_or((session, ""));
            let protocol =
                Protocol::parse(protocol).ok_or_else(|| format!("curl named an unknown protocol {protocol:?}"))?;
            Ok(ClientResult::Ok(Negotiated::tls(protocol, cipher.trim(), None, None)))
        }
        (Some(0), _, None) => Err("curl exited 0 without saying it used TLS".into()),
        (_, Some(line), _) => {
            let code: u32 =
                line.trim_start_matches("curl: (").split(')').next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let stage = match code {
                6 | 7 => Stage::Connect,
                64 => Stage::Starttls,
                60 => Stage::Verify,
                35 | 53 | 54 | 58 | 59 | 66 | 80 => Stage::Handshake,
                _ if session.is_some() => Stage::PostTls,
                _ if stderr.contains("TLS handshake") => Stage::Handshake,
                _ => Stage::Smtp,
            };
            Ok(ClientResult::error(stage, line))
        }
        (code, None, _) => Err(format!("curl ended with {code:?} and no error line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl() {
        let ok = "* SSL connection using TLSv1.2 / DHE-RSA-AES256-GCM-SHA384\n< 250 2.0.0 Ok\n";
        assert!(
            matches!(parse(Some(0), ok).unwrap(), ClientResult::Ok(n) if n.cipher.as_deref() == Some("DHE-RSA-AES256-GCM-SHA384"))
        );
        let bad = "* TLSv1.2 (IN), TLS handshake, Server key exchange (12):\ncurl: (35) OpenSSL/3.0.19: error:0A00018A:SSL routines::dh key too small\n";
        assert!(matches!(parse(Some(35), bad).unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
        assert!(matches!(
            parse(Some(64), "curl: (64) Requested SSL level failed\n").unwrap(),
            ClientResult::Error { stage: Stage::Starttls, .. }
        ));
    }
}
