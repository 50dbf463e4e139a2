//! `openssl s_client -starttls smtp`: the session on stdout, OpenSSL's error queue on stderr.
//! EHLO is typed into the TLS session, QUIT once its reply is in.

use super::{Adapter, Located, Target, VersionProbe, env_value, first_line, on_path};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Protocol, Stage};

/// `openssl s_client`.
pub struct SClient;

impl Adapter for SClient {
    fn name(&self) -> &'static str {
        "openssl-s_client"
    }

    fn error_table(&self) -> &'static str {
        "openssl-s_client"
    }

    fn locate(&self, _stack: &ClientStack) -> Result<Located, Availability> {
        on_path("openssl")
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        let mut args: Vec<OsString> = [
            "s_client",
            "-starttls",
            "smtp",
            "-name",
            &target.ehlo,
            "-connect",
            &target.connect,
            "-servername",
            &target.servername,
            "-verify_hostname",
            &target.servername,
            "-verify_return_error",
            "-crlf",
            // Keep reading after our input ends, until the server closes after QUIT.
            "-ign_eof",
            "-CAfile",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(target.cafile.clone().into_os_string());
        args.extend(extra.iter().map(OsString::from));
        // EHLO again over TLS, then QUIT: the replies show the post-TLS stage worked.
        (args, format!("EHLO {}\n", target.ehlo).into_bytes())
    }

    /// The last line of the EHLO reply over TLS (the dialogue before TLS is not printed).
    fn paced_quit(&self) -> Option<(&'static [&'static str], &'static [u8])> {
        Some((&["\n250 "], b"QUIT\n"))
    }

    fn parse(&self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        parse(exit_code, stdout, stderr)
    }

    fn version_probe(&self, located: &Located) -> VersionProbe {
        VersionProbe { program: located.program.clone(), args: vec!["version", "-a"] }
    }

    /// `openssl version -a` names the library it runs on and the level compiled in; the
    /// configuration file is the one the stack's environment names.
    fn describe(&self, out: &str, _located: &Located, env: &[(String, String)]) -> (String, serde_json::Value) {
        let level = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("-DOPENSSL_TLS_SECURITY_LEVEL="))
            .map(|l| format!("{l} (compiled in)"))
            .unwrap_or_else(|| "1 (library default)".into());
        let policy = serde_json::json!({
            "security_level": level,
            "openssl_conf": env_value(env, "OPENSSL_CONF"),
        });
        (first_line(out), policy)
    }
}

/// `openssl s_client` prints the session to stdout and OpenSSL's error queue to stderr.
fn parse(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let errors: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains(":error:") || l.starts_with("verify error:") || l.contains("errno="))
        .collect();
    let words = if errors.is_empty() {
        stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
    } else {
        errors.join("\n")
    };
    let starttls_missing = stdout.contains("Didn't find STARTTLS") || stderr.contains("Didn't find STARTTLS");
    let new_line = stdout.lines().find_map(|l| l.strip_prefix("New, "));
    let handshake_done = new_line.is_some_and(|l| !l.contains("(NONE)"));
    if starttls_missing && !handshake_done {
        let text = if words.is_empty() {
            "Didn't find STARTTLS in server response".to_string()
        } else {
            format!("Didn't find STARTTLS in server response; {words}")
        };
        return Ok(ClientResult::error(Stage::Starttls, text));
    }
    if !stdout.contains("CONNECTED(") {
        if words.is_empty() {
            return Err(format!("s_client printed neither CONNECTED nor an error (exit {exit_code:?})"));
        }
        return Ok(ClientResult::error(Stage::Connect, words));
    }
    if !handshake_done {
        let stage = if words.contains("verify error:") || words.contains("certificate verify failed") {
            Stage::Verify
        } else {
            Stage::Handshake
        };
        if words.is_empty() {
            return Ok(ClientResult::error(stage, "handshake did not complete and s_client said nothing more"));
        }
        return Ok(ClientResult::error(stage, words));
    }
    let line = new_line.unwrap_or_default();
    // "New, TLSv1.2, Cipher is DHE-RSA-AES128-GCM-SHA256"
    let mut parts = line.splitn(2, ", Cipher is ");
    // "New, TLSv1/SSLv3, …" names the cipher's version; the session block names the protocol.
    let new_protocol = parts.next().unwrap_or_default().trim();
    let protocol = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Protocol  :").or_else(|| l.trim().strip_prefix("Protocol :")))
        .map_or(new_protocol, str::trim)
        .to_string();
    let cipher = parts.next().unwrap_or_default().trim().to_string();
    let (mut group, dh_bits) =
        stdout.lines().find_map(|l| l.strip_prefix("Server Temp Key: ")).map_or((None, None), temp_key);
    // TLS 1.3 allows only named finite-field groups (RFC 8446 §4.2.7), one per prime size, so
    // s_client's bare "DH, 2048 bits" there can only be ffdhe2048.
    if protocol == "TLSv1.3"
        && group.is_none()
        && let Some(bits) = dh_bits
    {
        group = Some(format!("ffdhe{bits}"));
    }
    let after: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("New, ")).collect();
    let ehlo_ok = after.iter().any(|l| l.starts_with("250 ") || l.starts_with("250-"));
    let quit_ok = after.iter().any(|l| l.starts_with("221"));
    // A server that closes TCP after its 221 without a TLS close_notify (OpenSMTPD) makes
    // OpenSSL 3 report an "unexpected eof": the SMTP session was already complete.
    let only_eof_after_quit = !errors.is_empty() && errors.iter().all(|e| e.contains("unexpected eof while reading"));
    if !(ehlo_ok && quit_ok) || (exit_code != Some(0) && !only_eof_after_quit) {
        let text = if words.is_empty() { "no 250/221 reply over TLS".to_string() } else { words };
        return Ok(ClientResult::error(Stage::PostTls, text));
    }
    let protocol =
        Protocol::parse(&protocol).ok_or_else(|| format!("s_client named an unknown protocol {protocol:?}"))?;
    Ok(ClientResult::Ok(Negotiated::tls(protocol, cipher, group, dh_bits)))
}

/// `DH, 2048 bits` / `X25519, 253 bits` / `ECDH, prime256v1, 256 bits` / `ffdhe2048, 2048 bits`.
fn temp_key(text: &str) -> (Option<String>, Option<u32>) {
    let parts: Vec<&str> = text.split(", ").map(str::trim).collect();
    let bits = || parts.last().and_then(|b| b.strip_suffix(" bits")).and_then(|b| b.parse().ok());
    match parts.as_slice() {
        ["DH", _] => (None, bits()),
        ["ECDH", curve, _] => (Some(openssl_ext::iana_group_name(curve)), None),
        [name, _] if name.starts_with("ffdhe") => (Some(name.to_string()), bits()),
        [name, _] => (Some(openssl_ext::iana_group_name(name)), None),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_an_array_with_the_target() {
        let t = Target {
            connect: "127.0.0.1:2525".into(),
            servername: "mx.test".into(),
            cafile: "/tmp/ca.pem".into(),
            ehlo: "c.test".into(),
        };
        let (args, stdin) = SClient.command(&t, &["-tls1_2".into()]);
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(&args[..3], ["s_client", "-starttls", "smtp"]);
        assert!(args.windows(2).any(|w| w == ["-connect", "127.0.0.1:2525"]));
        assert_eq!(args.last().unwrap(), "-tls1_2");
        assert_eq!(stdin, b"EHLO c.test\n", "QUIT waits for the EHLO reply: see paced_quit");
        assert_eq!(SClient.paced_quit(), Some((&["\n250 "][..], &b"QUIT\n"[..])));
    }

    #[test]
    fn an_eof_after_the_221_is_not_a_failure() {
        // OpenSMTPD closes TCP after its 221 without a TLS close_notify.
        let out = "CONNECTED(00000003)\n---\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n250 HELP\n221 2.0.0 Bye\n";
        let eof = "40471737CA7F0000:error:0A000126:SSL routines:ssl3_read_n:unexpected eof while reading:../ssl/record/rec_layer_s3.c:318:\n";
        assert!(matches!(parse(Some(1), out, eof).unwrap(), ClientResult::Ok(_)));
        let no_quit = "CONNECTED(00000003)\n---\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n250 HELP\n";
        assert!(matches!(parse(Some(1), no_quit, eof).unwrap(), ClientResult::Error { stage: Stage::PostTls, .. }));
    }

    #[test]
    fn parses_a_success() {
        let out = "CONNECTED(00000003)\n---\nServer Temp Key: DH, 2048 bits\n---\nNew, TLSv1.2, Cipher is DHE-RSA-AES128-GCM-SHA256\n250-mx.test greets c\n250 8BITMIME\n221 2.0.0 Bye\n";
        match parse(Some(0), out, "").unwrap() {
            ClientResult::Ok(n) => {
                assert_eq!(
                    (n.protocol, n.cipher.as_deref()),
                    (Some(Protocol::Tls12), Some("DHE-RSA-AES128-GCM-SHA256"))
                );
                assert_eq!((n.group, n.dh_bits), (None, Some(2048)));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn parses_failures_by_stage() {
        let err =
            "40C7:error:0A00018A:SSL routines:tls_process_ske_dhe:dh key too small:../ssl/statem/statem_clnt.c:2092:\n";
        let out = "CONNECTED(00000003)\n---\nNew, (NONE), Cipher is (NONE)\n";
        assert!(
            matches!(parse(Some(1), out, err).unwrap(), ClientResult::Error { stage: Stage::Handshake, error } if error.contains("dh key too small"))
        );
        assert!(matches!(
            parse(Some(1), "", "connect:errno=111\n").unwrap(),
            ClientResult::Error { stage: Stage::Connect, .. }
        ));
        assert!(matches!(
            parse(Some(1), "CONNECTED(00000003)\nDidn't find STARTTLS in server response, trying anyway...\n", "")
                .unwrap(),
            ClientResult::Error { stage: Stage::Starttls, .. }
        ));
        assert!(parse(None, "", "").is_err(), "no output at all is ours to explain");
    }

    /// The policy names the OPENSSL_CONF the stack's cells run with, not the harness's own.
    #[test]
    fn the_policy_comes_from_the_stacks_environment() {
        let located = Located { program: "/usr/bin/openssl".into(), env: vec![], root: None, workdir: None };
        let env = vec![("OPENSSL_CONF".to_string(), "/policy/level1.cnf".to_string())];
        let out = "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)\ncompiler: gcc -DOPENSSL_TLS_SECURITY_LEVEL=2\n";
        let (version, policy) = SClient.describe(out, &located, &env);
        assert!(version.starts_with("OpenSSL 3.0.19"), "{version}");
        assert_eq!(policy["openssl_conf"], "/policy/level1.cnf");
        assert_eq!(policy["security_level"], "2 (compiled in)");
        let (_, policy) = SClient.describe(out, &located, &[]);
        assert_eq!(policy["openssl_conf"], serde_json::Value::Null, "not the harness's environment");
    }

    #[test]
    fn temp_keys() {
        assert_eq!(temp_key("X25519, 253 bits"), (Some("x25519".into()), None));
        assert_eq!(temp_key("ECDH, prime256v1, 256 bits"), (Some("secp256r1".into()), None));
        assert_eq!(temp_key("DH, 1024 bits"), (None, Some(1024)));
    }
}
