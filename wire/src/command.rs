//! SMTP commands: parse a command line from a client, and format one for a server.

use std::fmt;

/// The longest command line accepted, including CRLF (RFC 5321 §4.5.3.1.4: 512 octets).
pub const MAX_COMMAND_LINE: usize = 512;

/// One SMTP command, as the built-in server understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    /// `MAIL FROM:<path> [params]`: the reverse path without brackets.
    Mail(String),
    /// `RCPT TO:<path> [params]`: the forward path without brackets.
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    /// A verb the server does not implement (VRFY, EXPN, AUTH, …): answered 502.
    Unknown(String),
}

/// Why a command line could not be parsed; each maps to a 5xx reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("parse SMTP command: the line is longer than {MAX_COMMAND_LINE} bytes")]
    TooLong,
    #[error("parse SMTP command: the line is empty")]
    Empty,
    #[error("parse SMTP command: the line is not printable ASCII")]
    NotAscii,
    #[error("parse SMTP command {verb}: {problem}")]
    Syntax { verb: &'static str, problem: &'static str },
}

impl Command {
    /// Parse one line (with or without its CRLF). Verbs are case-insensitive.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        if line.len() > MAX_COMMAND_LINE {
            return Err(CommandError::TooLong);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t') {
            return Err(CommandError::NotAscii);
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotAscii)?.trim();
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        let (verb, rest) = match line.split_once(' ') {
            Some((v, r)) => (v, r.trim()),
            None => (line, ""),
        };
        let no_arg = |cmd: Command, name: &'static str| {
            if rest.is_empty() {
                Ok(cmd)
            } else {
                Err(CommandError::Syntax { verb: name, problem: "takes no argument" })
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if rest.is_empty() => Err(CommandError::Syntax {
                verb: if verb.eq_ignore_ascii_case("EHLO") { "EHLO" } else { "HELO" },
                problem: "needs a domain",
            }),
            "EHLO" => Ok(Command::Ehlo(rest.to_string())),
            "HELO" => Ok(Command::Helo(rest.to_string())),
            "STARTTLS" => no_arg(Command::StartTls, "STARTTLS"),
            "MAIL" => path_after(rest, "FROM:", "MAIL").map(Command::Mail),
            "RCPT" => path_after(rest, "TO:", "RCPT").map(Command::Rcpt),
            "DATA" => no_arg(Command::Data, "DATA"),
            "RSET" => no_arg(Command::Rset, "RSET"),
            "NOOP" => Ok(Command::Noop),
            "QUIT" => no_arg(Command::Quit, "QUIT"),
            _ => Ok(Command::Unknown(verb.to_ascii_uppercase())),
        }
    }
}

/// `FROM:<a@b> SIZE=10` → `a@b` (the path between brackets; `<>` is the null path).
fn path_after(rest: &str, prefix: &str, verb: &'static str) -> Result<String, CommandError> {
    let bad = CommandError::Syntax { verb, problem: "expects FROM:<path> or TO:<path>" };
    if rest.len() < prefix.len() || !rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return Err(bad);
    }
    let path = rest[prefix.len()..].trim_start();
    let inner = path.strip_prefix('<').and_then(|p| p.split_once('>')).map(|(p, _)| p);
    match inner {
        Some(p) if verb == "RCPT" && p.is_empty() => Err(bad),
        Some(p) => Ok(p.to_string()),
        None => Err(bad),
    }
}

impl fmt::Display for Command {
    /// The command as a client sends it, without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(d) => write!(f, "EHLO {d}"),
            Command::Helo(d) => write!(f, "HELO {d}"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Mail(p) => write!(f, "MAIL FROM:<{p}>"),
            Command::Rcpt(p) => write!(f, "RCPT TO:<{p}>"),
            Command::Data => f.write_str("DATA"),
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            Command::Unknown(v) => f.write_str(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_dialogue() {
        assert_eq!(Command::parse(b"ehlo client.test\r\n"), Ok(Command::Ehlo("client.test".into())));
        assert_eq!(Command::parse(b"STARTTLS\r\n"), Ok(Command::StartTls));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b.test> SIZE=100\r\n"), Ok(Command::Mail("a@b.test".into())));
        assert_eq!(Command::parse(b"MAIL FROM:<>\r\n"), Ok(Command::Mail(String::new())));
        assert_eq!(Command::parse(b"rcpt to:<c@d.test>\r\n"), Ok(Command::Rcpt("c@d.test".into())));
        assert_eq!(Command::parse(b"VRFY x\r\n"), Ok(Command::Unknown("VRFY".into())));
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(Command::parse(b"\r\n"), Err(CommandError::Empty));
        assert_eq!(Command::parse(b"EHLO\r\n"), Err(CommandError::Syntax { verb: "EHLO", problem: "needs a domain" }));
        assert!(matches!(Command::parse(b"STARTTLS now\r\n"), Err(CommandError::Syntax { .. })));
        assert!(matches!(Command::parse(b"RCPT TO:<>\r\n"), Err(CommandError::Syntax { .. })));
        assert_eq!(Command::parse(b"EHLO \xff\r\n"), Err(CommandError::NotAscii));
        assert_eq!(Command::parse(&[b'A'; MAX_COMMAND_LINE + 1]), Err(CommandError::TooLong));
    }

    fn command() -> impl Strategy<Value = Command> {
        let word = "[a-z][a-z0-9.-]{0,30}";
        let path = "[a-z0-9]{1,10}@[a-z0-9]{1,10}\\.test";
        prop_oneof![
            word.prop_map(Command::Ehlo),
            word.prop_map(Command::Helo),
            Just(Command::StartTls),
            path.prop_map(Command::Mail),
            path.prop_map(Command::Rcpt),
            Just(Command::Data),
            Just(Command::Rset),
            Just(Command::Noop),
            Just(Command::Quit),
            "X[A-Z]{2,8}".prop_map(Command::Unknown),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(cmd in command()) {
            let wire = format!("{cmd}\r\n");
            prop_assert_eq!(Command::parse(wire.as_bytes()), Ok(cmd));
        }

        #[test]
        fn parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Command::parse(&line);
        }
    }
}
