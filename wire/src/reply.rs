//! SMTP replies: a code and one or more text lines; multiline replies use `NNN-` on every line
//! but the last (`NNN `). Parsing is incremental, one line at a time, and bounded.

use std::fmt;

/// The most lines one reply may have before the parser gives up (a hostile server could
/// otherwise stream continuation lines forever).
pub const MAX_REPLY_LINES: usize = 100;
/// The longest reply line accepted, without CRLF (RFC 5321 §4.5.3.1.5 says 512 octets; we allow more
/// because real servers exceed it, but not without bound).
pub const MAX_REPLY_LINE: usize = 2048;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without the code, the separator and CRLF. Never empty.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with one or more lines. An empty `lines` becomes one empty line.
    pub fn new(code: u16, lines: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut lines: Vec<String> = lines.into_iter().map(Into::into).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply { code, lines }
    }

    /// A one-line reply.
    pub fn single(code: u16, text: impl Into<String>) -> Self {
        Reply::new(code, [text.into()])
    }

    /// The reply as it goes on the wire, CRLF-terminated lines.
    pub fn to_wire(&self) -> String {
        let last = self.lines.len() - 1;
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.push_str(&format!("{:03}{}{}\r\n", self.code, sep, line));
        }
        out
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether any line (after the first, which is the greeting or domain) names this EHLO
    /// keyword, case-insensitively, e.g. `STARTTLS`.
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
    }
}

impl fmt::Display for Reply {
    /// One line for humans and logs: `250 first line / second line`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Why a reply line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("parse SMTP reply line {line:?}: it does not start with a three-digit code")]
    NoCode { line: String },
    #[error("parse SMTP reply line {line:?}: the code is followed by {found:?}, not ' ' or '-'")]
    BadSeparator { line: String, found: char },
    #[error("parse SMTP reply: line with code {found} inside a reply with code {expected}")]
    CodeChanged { expected: u16, found: u16 },
    #[error("parse SMTP reply: more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("parse SMTP reply: a line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
}

/// Incremental reply parser: feed one line at a time (CRLF or LF already stripped or not).
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line. Returns `Ok(Some(reply))` when the line completed a reply (the parser is
    /// then ready for the next one), `Ok(None)` when more lines are needed.
    pub fn feed(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[0] == b'0' {
            return Err(ReplyError::NoCode { line: line.to_string() });
        }
        let code: u16 = line[..3].parse().expect("three ASCII digits");
        let (last, text) = match line[3..].chars().next() {
            None => (true, ""),
            Some(' ') => (true, &line[4..]),
            Some('-') => (false, &line[4..]),
            Some(found) => {
                return Err(ReplyError::BadSeparator { line: line.to_string(), found });
            }
        };
        match self.code {
            Some(expected) if expected != code => {
                return Err(ReplyError::CodeChanged { expected, found: code });
            }
            _ => self.code = Some(code),
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.lines.push(text.to_string());
        if last {
            self.code = None;
            Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(wire: &str) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        for line in wire.split_inclusive("\r\n") {
            if let Some(r) = p.feed(line)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn multiline_ehlo() {
        let r = parse_all("250-mx.test greets you\r\n250-PIPELINING\r\n250 STARTTLS\r\n").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, 250);
        assert!(r[0].has_keyword("starttls"));
        assert!(!r[0].has_keyword("mx.test"), "the greeting line is not a keyword");
    }

    #[test]
    fn bare_code_is_a_complete_reply() {
        assert_eq!(parse_all("354\r\n").unwrap(), vec![Reply::single(354, "")]);
    }

    #[test]
    fn errors() {
        assert!(matches!(parse_all("hello\r\n"), Err(ReplyError::NoCode { .. })));
        assert!(matches!(parse_all("250_x\r\n"), Err(ReplyError::BadSeparator { .. })));
        assert!(matches!(parse_all("250-a\r\n251 b\r\n"), Err(ReplyError::CodeChanged { expected: 250, found: 251 })));
        let long = format!("250-x\r\n{}", "250-y\r\n".repeat(MAX_REPLY_LINES + 1));
        assert_eq!(parse_all(&long), Err(ReplyError::TooManyLines));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            code in 200u16..600,
            lines in proptest::collection::vec("[ -~]{0,80}", 1..8),
        ) {
            let reply = Reply::new(code, lines);
            let parsed = parse_all(&reply.to_wire()).unwrap();
            prop_assert_eq!(parsed, vec![reply]);
        }

        #[test]
        fn parser_never_panics(input in "[ -~\r\n]{0,200}") {
            let _ = parse_all(&input);
        }
    }
}
