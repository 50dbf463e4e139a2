//! An MTA's own log, read back line by line (Postfix's `maillog_file`, Exim's `mainlog`,
//! sendmail's syslog through our socket, OpenSMTPD's stderr) and sorted into what a cell needs:
//! the server's errors, the end of a connection, and warnings about its own configuration
//! (e.g. Postfix dropping a DH file that OpenSSL 3 refuses).

use super::Mta;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use tokio::sync::mpsc;

/// What one log line tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// The server refused or dropped part of its own configuration.
    ConfigWarning,
    /// A connection failed on the server's side (TLS errors and the like).
    Error,
    /// A connection ended.
    End,
    /// Anything else.
    Info,
}

/// The message of a log line without its time stamp, host and `program[pid]:` prefix.
pub fn message(mta: Mta, line: &str) -> &str {
    let line = line.trim_end();
    match mta {
        // `Nov 28 18:40:01 host postfix/smtpd[12]: …`, `<22>Nov 28 18:40:01 sm-x[12]: …`
        Mta::Postfix | Mta::Sendmail => line.find("]: ").map_or(line, |i| &line[i + 3..]),
        // `2026-11-28 18:40:01 TLS error on …`
        Mta::Exim => {
            let b = line.as_bytes();
            if b.len() > 20 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' { &line[20..] } else { line }
        }
        // `1a2b3c4d smtp disconnected reason=…` (with -d, no time stamp)
        Mta::Opensmtpd => line,
    }
}

/// Sort a message (see [`message`]) by what it tells.
pub fn kind(mta: Mta, msg: &str) -> LineKind {
    let has = |s: &str| msg.contains(s);
    match mta {
        Mta::Postfix => {
            if has("error configuring") || has("cannot load") || has("cannot get RSA") || has("disabling TLS") {
                LineKind::ConfigWarning
            } else if has("disconnect from") {
                LineKind::End
            } else if (msg.starts_with("warning:") && (has("TLS") || has("SSL")))
                || has("SSL_accept error")
                || msg.starts_with("fatal:")
                || has("lost connection after STARTTLS")
            {
                LineKind::Error
            } else {
                LineKind::Info
            }
        }
        Mta::Exim => {
            if has("cert/key setup") || has("tls_dhparam") || has("error in tls_") {
                LineKind::ConfigWarning
            } else if has("TLS error") {
                LineKind::Error
            } else if has("closed by QUIT") || has("SMTP connection from") && (has(" lost") || has("closed")) {
                LineKind::End
            } else {
                LineKind::Info
            }
        }
        Mta::Sendmail => {
            if has("STARTTLS") && (has("CERTFILE") || has("KEYFILE") || has("unsafe") || has("init failed")) {
                LineKind::ConfigWarning
            } else if has("STARTTLS=server, error") || has("STARTTLS=server: error") {
                LineKind::Error
            } else if has("did not issue") || has("lost input channel") || has("stat=") || has("ruleset=") {
                LineKind::End
            } else {
                LineKind::Info
            }
        }
        Mta::Opensmtpd => {
            if has("pki") && (has("error") || has("failed")) {
                LineKind::ConfigWarning
            } else if has("smtp disconnected") && !has("reason=quit") && !has("reason=disconnect") {
                LineKind::Error
            } else if has("smtp disconnected") {
                LineKind::End
            } else {
                LineKind::Info
            }
        }
    }
}

/// What a completed handshake negotiated, where the MTA logs it: Postfix's "… TLS connection
/// established from …: TLSv1.3 with cipher X (256/256 bits) key-exchange X25519 …", sendmail's
/// "STARTTLS=server, …, version=TLSv1.3, …, cipher=X, …", OpenSMTPD's "smtp tls
/// ciphers=TLSv1.3:X:256", and Exim's `X=` field, which it logs only with a received message.
pub fn negotiated(mta: Mta, msg: &str) -> Option<wire::Negotiated> {
    let (protocol, cipher, group) = match mta {
        Mta::Postfix => {
            let (_, rest) = msg.split_once("TLS connection established from ")?;
            let (_, rest) = rest.split_once(": ")?;
            let (protocol, rest) = rest.split_once(" with cipher ")?;
            let cipher = rest.split_whitespace().next()?;
            let group = rest.split_once("key-exchange ").and_then(|(_, k)| k.split_whitespace().next());
            (protocol, cipher, group.filter(|g| !g.starts_with("DHE") && !g.starts_with("ECDHE")))
        }
        Mta::Sendmail => {
            if !msg.contains("STARTTLS=server, relay=") {
                return None;
            }
            let field = |name: &str| msg.split(", ").find_map(|f| f.strip_prefix(name));
            (field("version=")?, field("cipher=")?, None)
        }
        Mta::Opensmtpd => {
            let (_, rest) = msg.split_once("smtp tls ciphers=")?;
            let mut parts = rest.split_whitespace().next()?.split(':');
            (parts.next()?, parts.next()?, None)
        }
        // Only a received message's line (`<= … X=TLS1.3:ECDHE_X25519__…__AES_256_GCM:256`).
        Mta::Exim => {
            let x = msg.split_whitespace().find_map(|f| f.strip_prefix("X="))?;
            let mut parts = x.split(':');
            let protocol = match parts.next()? {
                "TLS1.3" => "TLSv1.3",
                "TLS1.2" => "TLSv1.2",
                "TLS1.1" => "TLSv1.1",
                "TLS1.0" => "TLSv1",
                _ => return None,
            };
            (protocol, parts.next()?, None)
        }
    };
    let group = group.map(|g| match g {
        "X25519" => "x25519".to_string(),
        "X448" => "x448".to_string(),
        other => openssl_ext::iana_group_name(other),
    });
    Some(wire::Negotiated { protocol: protocol.into(), cipher: cipher.into(), group, dh_bits: None })
}

/// Where a running MTA's log comes from.
pub enum LogReader {
    /// A file the MTA appends to; read from where we stopped.
    File { path: PathBuf, offset: u64, partial: String },
    /// Lines pushed by a task (stderr reader, syslog socket).
    Lines(mpsc::UnboundedReceiver<String>),
}

/// The most a log may grow between two reads before we stop reading it (a runaway daemon).
const MAX_READ: u64 = 4 << 20;

impl LogReader {
    /// The complete lines written since the last call.
    pub fn read_new(&mut self) -> Vec<String> {
        match self {
            LogReader::File { path, offset, partial } => {
                let Ok(mut f) = std::fs::File::open(&*path) else { return Vec::new() };
                if f.seek(SeekFrom::Start(*offset)).is_err() {
                    return Vec::new();
                }
                let mut buf = Vec::new();
                let Ok(n) = f.take(MAX_READ).read_to_end(&mut buf) else { return Vec::new() };
                *offset += n as u64;
                partial.push_str(&String::from_utf8_lossy(&buf));
                let Some(last) = partial.rfind('\n') else { return Vec::new() };
                let complete: Vec<String> = partial[..last].lines().map(str::to_string).collect();
                *partial = partial[last + 1..].to_string();
                complete
            }
            LogReader::Lines(rx) => {
                let mut out = Vec::new();
                while let Ok(l) = rx.try_recv() {
                    out.push(l);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_words_are_sorted() {
        let m = |l| kind(Mta::Postfix, message(Mta::Postfix, l));
        assert_eq!(
            m("Nov 28 18:40:01 mx postfix/smtpd[12]: warning: error configuring explicit DH parameters"),
            LineKind::ConfigWarning
        );
        assert_eq!(
            m(
                "Nov 28 18:40:01 mx postfix/smtpd[12]: warning: TLS library problem: error:0A0000C1:SSL routines::no shared cipher:../ssl/statem/statem_srvr.c:2220:"
            ),
            LineKind::Error
        );
        assert_eq!(
            m(
                "Nov 28 18:40:01 mx postfix/smtpd[12]: disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 quit=1 commands=4"
            ),
            LineKind::End
        );
        assert_eq!(m("Nov 28 18:40:01 mx postfix/smtpd[12]: connect from localhost[127.0.0.1]"), LineKind::Info);
    }

    #[test]
    fn what_the_mtas_say_they_negotiated() {
        let p = "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256";
        let n = negotiated(Mta::Postfix, p).unwrap();
        assert_eq!(
            (n.protocol.as_str(), n.cipher.as_str(), n.group.as_deref()),
            ("TLSv1.3", "TLS_AES_256_GCM_SHA384", Some("x25519"))
        );
        let p = "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.2 with cipher DHE-RSA-AES256-GCM-SHA384 (256/256 bits)";
        assert_eq!(negotiated(Mta::Postfix, p).unwrap().label(), "TLSv1.2 DHE");
        let s = "STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.2, verify=NOT, cipher=DHE-RSA-AES128-SHA, bits=128/128";
        assert_eq!(negotiated(Mta::Sendmail, s).unwrap().cipher, "DHE-RSA-AES128-SHA");
        let o = "3a1c smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256";
        assert_eq!(negotiated(Mta::Opensmtpd, o).unwrap().protocol, "TLSv1.3");
        assert!(negotiated(Mta::Postfix, "connect from localhost[127.0.0.1]").is_none());
        let e = "1tPzLx-000Abc-0A <= probe@client.test H=(client.test) [127.0.0.1] P=esmtps X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no S=321";
        assert_eq!(negotiated(Mta::Exim, e).unwrap().protocol, "TLSv1.3");
    }

    #[test]
    fn exim_words_are_sorted() {
        let line = "2026-11-28 18:40:01 TLS error on connection from (client.test) [127.0.0.1] (gnutls_handshake): No supported cipher suites have been found.";
        assert_eq!(message(Mta::Exim, line).split_whitespace().next(), Some("TLS"));
        assert_eq!(kind(Mta::Exim, message(Mta::Exim, line)), LineKind::Error);
        let quit = "2026-11-28 18:40:01 SMTP connection from (client.test) [127.0.0.1]:4021 closed by QUIT";
        assert_eq!(kind(Mta::Exim, message(Mta::Exim, quit)), LineKind::End);
    }

    #[test]
    fn sendmail_and_opensmtpd_words_are_sorted() {
        let s = "<22>Nov 28 18:40:01 sm[12]: 5ASIe1: STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=localhost [127.0.0.1]";
        assert_eq!(kind(Mta::Sendmail, message(Mta::Sendmail, s)), LineKind::Error);
        let o = "3a1c smtp disconnected reason=\"io-error: handshake failed: error:0A0000C1:SSL routines::no shared cipher\"";
        assert_eq!(kind(Mta::Opensmtpd, o), LineKind::Error);
        assert_eq!(kind(Mta::Opensmtpd, "3a1c smtp disconnected reason=quit"), LineKind::End);
    }
}
