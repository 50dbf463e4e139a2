//! `gnutls-cli --starttls-proto=smtp` (GnuTLS): its progress on stdout, `- Description:
//! (TLS1.2-X.509)-(DHE-FFDHE2048)-…` on success, `*** Fatal error: …` on failure. EHLO is typed
//! into the TLS session, QUIT once its reply is in.

use super::dialogue::{Exchange, first_refusal};
use super::{Adapter, Located, Target, VersionProbe, first_line, on_path};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Protocol, Stage};

/// `gnutls-cli`.
pub struct GnutlsCli;

impl Adapter for GnutlsCli {
    fn name(&self) -> &'static str {
        "gnutls-cli"
    }

    fn error_table(&self) -> &'static str {
        "gnutls"
    }

    fn locate(&self, _stack: &ClientStack) -> Result<Located, Availability> {
        on_path("gnutls-cli")
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        let (host, port) = target.host_port();
        let mut args: Vec<OsString> = vec![
            // -V: its STARTTLS helper prints the server's replies ("starttls: received: …").
            "-V".into(),
            "--starttls-proto=smtp".into(),
            "--port".into(),
            port.into(),
            "--verify-hostname".into(),
            target.servername.clone().into(),
            "--sni-hostname".into(),
            target.servername.clone().into(),
            "--x509cafile".into(),
            target.cafile.clone().into_os_string(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args.push(host.into());
        // Sent as typed: gnutls-cli's --crlf mangles the last line.
        (args, format!("EHLO {}\r\n", target.ehlo).into_bytes())
    }

    fn paced_quit(&self) -> Option<(&'static [&'static str], &'static [u8])> {
        // With -V each TLS record it reads is a "- Received[N]: " line: a server that writes
        // each reply line in a record of its own (aiosmtpd) ends its EHLO reply as
        // "- Received[10]: 250 HELP".
        Some((&["\n250 ", "]: 250 "], b"QUIT\r\n"))
    }

    fn parse(&self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        parse(exit_code, stdout, stderr)
    }

    fn version_probe(&self, located: &Located) -> VersionProbe {
        VersionProbe { program: located.program.clone(), args: vec!["--version"] }
    }

    fn describe(&self, out: &str, _located: &Located, _env: &[(String, String)]) -> (String, serde_json::Value) {
        let policy = serde_json::json!({
            "priority": "the library default (NORMAL, or the system's GnuTLS configuration) unless args say otherwise",
        });
        (first_line(out), policy)
    }
}

/// `gnutls-cli` prints its progress on stdout, `- Description: (TLS1.2-X.509)-(DHE-FFDHE2048)-…`
/// on success, and `*** Fatal error: …` on failure.
fn parse(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let words: Vec<&str> = all
        .iter()
        // Not the -V dialogue's own lines (`starttls: …`, replies naming STARTTLS, its
        // "Negotiating SMTP STARTTLS" progress line).
        .filter(|l| !l.starts_with("starttls: ") && !l.starts_with("250") && !l.contains("Negotiating SMTP STARTTLS"))
        .filter(|l| {
            l.starts_with("*** ")
                || l.contains("NOT trusted")
                || l.contains("Could not connect")
                || l.contains("STARTTLS")
                || l.starts_with("error receiving")
                || l.starts_with("error sending")
        })
        .map(|l| l.trim())
        .collect();
    let words = words.join("\n");
    let completed = stdout.contains("- Handshake was completed");
    if !completed {
        let dialogue = starttls_dialogue(&all);
        // A refusal it read before giving up ("error receiving '220 '") is what happened.
        if let Some(refused) = first_refusal(&dialogue) {
            return Ok(refused);
        }
        // The server said 220 to STARTTLS: whatever failed next failed in the handshake.
        let handshake_began = dialogue.iter().any(|e| {
            e.command.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("STARTTLS")) && e.reply.starts_with("220")
        });
        if words.is_empty() {
            return Err(format!("gnutls-cli printed neither a completed handshake nor an error (exit {exit_code:?})"));
        }
        let stage = if all.iter().any(|l| l.contains("Could not connect") || l.contains("Connection refused")) {
            Stage::Connect
        } else if words.contains("NOT trusted") {
            Stage::Verify
        } else if handshake_began {
            Stage::Handshake
        } else if words.contains("error receiving '220 '") && !stdout.contains("- Certificate type") {
            // Its STARTTLS helper waits for the banner's or STARTTLS's 220; the server's own log
            // says which was refused.
            Stage::Starttls
        } else if words.contains("STARTTLS") || words.starts_with("error ") {
            Stage::Starttls
        } else {
            Stage::Handshake
        };
        return Ok(ClientResult::error(stage, words));
    }
    let description = stdout.lines().find_map(|l| l.strip_prefix("- Description: ")).unwrap_or_default();
    let negotiated = gnutls_session(description)?;
    // With -V a reply's first line comes as `- Received[15]: 221 2.0.0 Bye`.
    let after: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("- Handshake was completed"))
        .map(|l| l.strip_prefix("- Received[").and_then(|r| r.split_once("]: ")).map_or(l, |(_, reply)| reply))
        .collect();
    let ehlo_ok = after.iter().any(|l| l.starts_with("250"));
    let quit_ok = after.iter().any(|l| l.starts_with("221"));
    if !(ehlo_ok && quit_ok) {
        let text = if words.is_empty() { "no 250/221 reply over TLS".to_string() } else { words };
        return Ok(ClientResult::error(Stage::PostTls, text));
    }
    Ok(ClientResult::Ok(negotiated))
}

/// The dialogue its STARTTLS helper prints with `-V`: `starttls: sending: EHLO x`, then
/// `starttls: received: 250-…` and the reply's further lines up to a blank line.
fn starttls_dialogue(lines: &[&str]) -> Vec<Exchange> {
    let mut out = Vec::new();
    let mut command: Option<String> = None;
    let mut reading: Option<Vec<String>> = None;
    let flush = |reading: &mut Option<Vec<String>>, command: &mut Option<String>, out: &mut Vec<Exchange>| {
        if let Some(reply) = reading.take() {
            out.push(Exchange { command: command.take(), reply: reply.join("\n") });
        }
    };
    for line in lines {
        if let Some(sent) = line.strip_prefix("starttls: sending: ") {
            flush(&mut reading, &mut command, &mut out);
            command = Some(sent.trim().to_string());
        } else if let Some(first) = line.strip_prefix("starttls: received: ") {
            flush(&mut reading, &mut command, &mut out);
            reading = Some(vec![first.trim().to_string()]);
        } else if line.starts_with("starttls: ") || line.trim().is_empty() {
            flush(&mut reading, &mut command, &mut out);
        } else if let Some(r) = &mut reading {
            r.push(line.trim().to_string());
        }
    }
    flush(&mut reading, &mut command, &mut out);
    out
}

/// A GnuTLS session line, `(TLS1.2)-(DHE-FFDHE2048)-(RSA-SHA256)-(AES-256-GCM)` (gnutls-cli adds
/// `-X.509` to the first part), as negotiated parameters.
pub(super) fn gnutls_session(description: &str) -> Result<Negotiated, String> {
    let parts: Vec<&str> = description.trim().split(")-(").map(|p| p.trim_matches(['(', ')'])).collect();
    let name = parts.first().and_then(|p| p.split('-').next()).unwrap_or_default();
    let protocol = Protocol::parse(name).ok_or_else(|| format!("GnuTLS named an unknown protocol {name:?}"))?;
    let kx = parts.get(1).copied().unwrap_or_default();
    let bits = |s: &str| s.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok();
    let (group, dh_bits) = match kx.split_once('-') {
        Some(("DHE", g)) if protocol == Protocol::Tls13 => (Some(g.to_ascii_lowercase()), bits(g)),
        Some(("DHE", g)) => (None, bits(g)),
        Some(("ECDHE", g)) => (Some(g.to_ascii_lowercase()), None),
        _ => (None, None),
    };
    let cipher = parts.get(1..).map(|p| p.join(" ")).unwrap_or_default();
    Ok(Negotiated::tls(protocol, cipher, group, dh_bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gnutls_success_and_failure() {
        let ok = "- Description: (TLS1.2-X.509)-(DHE-CUSTOM1024)-(RSA-SHA256)-(AES-256-GCM)\n- Handshake was completed\n\n- Simple Client Mode:\n\n- Sent: 8 bytes\n- Received[71]: 250-mx.test greets x\n250 8BITMIME\n- Sent: 6 bytes\n- Received[15]: 221 2.0.0 Bye\n";
        match parse(Some(0), ok, "").unwrap() {
            ClientResult::Ok(n) => {
                assert_eq!((n.protocol, n.dh_bits, n.group), (Some(Protocol::Tls12), Some(1024), None))
            }
            e => panic!("{e:?}"),
        }
        let tls13 = "- Description: (TLS1.3-X.509)-(DHE-FFDHE2048)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)\n- Handshake was completed\n250 ok\n221 bye\n";
        match parse(Some(0), tls13, "").unwrap() {
            ClientResult::Ok(n) => assert_eq!((n.group.as_deref(), n.dh_bits), (Some("ffdhe2048"), Some(2048))),
            e => panic!("{e:?}"),
        }
        // A 421 banner, as gnutls-cli 3.7.9 -V printed it (on stderr) before giving up.
        let stderr = "starttls: waiting for: \"220 \"\nstarttls: received: 421 4.3.2 mx.test Service not available, closing\n\nerror receiving '220 ': Timeout\n";
        assert_eq!(
            parse(Some(1), "Processed 0 CA certificate(s).\n", stderr).unwrap(),
            ClientResult::error(Stage::Smtp, "greeting: 421 4.3.2 mx.test Service not available, closing")
        );
        let stderr = "starttls: received: 220 mx.test ESMTP\n\nstarttls: sending: EHLO 127.0.0.1\n\nstarttls: waiting for: \"250 \"\nstarttls: received: 250-mx.test greets 127.0.0.1\n250 STARTTLS\n\nstarttls: sending: STARTTLS\n\nstarttls: waiting for: \"220 \"\nstarttls: received: 454 4.7.0 TLS not available due to temporary reason\n\n";
        assert_eq!(
            parse(None, "", stderr).unwrap(),
            ClientResult::error(
                Stage::Starttls,
                "STARTTLS refused: 454 4.7.0 TLS not available due to temporary reason"
            )
        );
        let bad = "Connecting to '127.0.0.1:1'...\n- Certificate type: X.509\n*** Fatal error: The Diffie-Hellman prime sent by the server is not acceptable (not long enough).\n";
        match parse(Some(1), bad, "").unwrap() {
            ClientResult::Error { stage, error } => {
                assert_eq!(stage, Stage::Handshake);
                assert!(error.contains("not long enough"));
            }
            ok => panic!("{ok:?}"),
        }
    }
}
