//! The built-in server's ESMTP dialogue as a state machine without I/O: feed it command lines
//! (and message lines while in DATA), it answers with replies and tells the connection driver
//! when to start TLS or close. RFC 5321 and RFC 3207 (STARTTLS).

use crate::fault::Fault;
use wire::{Command, CommandError, Reply};

/// Limits and names of one server's dialogue.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The host name in the banner and the EHLO reply.
    pub hostname: String,
    /// Commands accepted on one connection before the server gives up with 421.
    pub max_commands: usize,
    /// The SIZE advertised and enforced for one message.
    pub max_message_bytes: usize,
    /// How the server misbehaves, if it does.
    pub fault: Option<Fault>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: crate::pki::SERVER_NAME.to_string(),
            max_commands: 100,
            max_message_bytes: 10 * 1024 * 1024,
            fault: None,
        }
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No EHLO/HELO yet (at connect, and again right after TLS starts).
    Fresh,
    /// Greeted; no transaction.
    Ready,
    /// MAIL accepted.
    Mail,
    /// At least one RCPT accepted.
    Rcpt,
    /// Reading the message (after 354).
    Data,
}

/// What the connection driver must do after writing the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Discard any buffered plaintext, then do the TLS handshake.
    StartTls,
    Close,
}

/// A reply (if any) and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub reply: Option<Reply>,
    pub action: Action,
}

impl Step {
    fn reply(code: u16, text: &str) -> Step {
        Step { reply: Some(Reply::single(code, text)), action: Action::Continue }
    }
}

/// One connection's dialogue.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    tls_active: bool,
    commands: usize,
    message_bytes: usize,
    /// Messages accepted (counted, not stored).
    pub messages: usize,
    /// The last EHLO/HELO argument.
    pub client_name: Option<String>,
    /// A 4xx/5xx the server gave EHLO, HELO or STARTTLS before TLS.
    pub refusal: Option<report_format::Refusal>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            state: State::Fresh,
            tls_active: false,
            commands: 0,
            message_bytes: 0,
            messages: 0,
            client_name: None,
            refusal: None,
        }
    }

    /// The banner, and whether to go on.
    pub fn greeting(&self) -> Step {
        let host = &self.config.hostname;
        match self.config.fault {
            Some(Fault::Banner421) => Step {
                reply: Some(Reply::single(421, format!("4.3.2 {host} Service not available, closing"))),
                action: Action::Close,
            },
            Some(Fault::MultilineOddities) => Step {
                reply: Some(Reply::new(
                    220,
                    [format!("{host} ESMTP starttls-matrix"), "a banner".into(), "of several".into(), "lines".into()],
                )),
                action: Action::Continue,
            },
            _ => Step::reply(220, &format!("{host} ESMTP starttls-matrix")),
        }
    }

    fn ehlo_lines(&self, name: &str) -> Vec<String> {
        let host = &self.config.hostname;
        let mut lines = vec![format!("{host} greets {name}")];
        let changed = self.tls_active && self.config.fault == Some(Fault::CapabilitiesChangeAfterTls);
        if !changed {
            lines.push("PIPELINING".into());
        }
        lines.push(format!("SIZE {}", self.config.max_message_bytes));
        lines.push("8BITMIME".into());
        if changed {
            lines.push("AUTH PLAIN LOGIN".into());
            lines.push("X-CAPABILITIES-CHANGED-AFTER-TLS".into());
        }
        if self.config.fault == Some(Fault::MultilineOddities) {
            lines.extend((0..30).map(|i| format!("X-ODDITY-{i}")));
            lines.push(format!("X-OVERLONG {}", "x".repeat(600)));
        }
        if !self.tls_active && self.config.fault != Some(Fault::NoStarttls) {
            lines.push("STARTTLS".into());
        }
        lines
    }

    /// Whether the next line is message content rather than a command.
    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    /// How this server misbehaves, if it does.
    pub fn fault(&self) -> Option<Fault> {
        self.config.fault
    }

    /// Commands seen so far.
    pub fn commands(&self) -> usize {
        self.commands
    }

    /// TLS is up: forget everything learnt in plaintext (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.state = State::Fresh;
        self.client_name = None;
    }

    /// Handle one command line.
    pub fn command(&mut self, line: &[u8]) -> Step {
        let step = self.answer(line);
        let verb = line.get(..4).map(|v| v.to_ascii_uppercase());
        let stage = match verb.as_deref() {
            Some(b"EHLO" | b"HELO") => Some(wire::Stage::Smtp),
            Some(b"STAR") => Some(wire::Stage::Starttls),
            _ => None,
        };
        // The first refusal is what happened; later ones follow from it.
        if let (None, false, Some(stage), Some(reply)) = (&self.refusal, self.tls_active, stage, &step.reply) {
            if reply.code >= 400 {
                self.refusal = Some(report_format::Refusal { stage, reply: reply.to_string() });
            } else if stage == wire::Stage::Smtp && reply.code == 250 && !reply.has_keyword("STARTTLS") {
                let reply = format!("STARTTLS not offered: {reply}");
                self.refusal = Some(report_format::Refusal { stage: wire::Stage::Starttls, reply });
            }
        }
        step
    }

    fn answer(&mut self, line: &[u8]) -> Step {
        self.commands += 1;
        if self.commands > self.config.max_commands {
            return Step { reply: Some(Reply::single(421, "4.7.0 Too many commands, closing")), action: Action::Close };
        }
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(CommandError::TooLong) => return Step::reply(500, "5.5.2 Line too long"),
            Err(CommandError::Empty | CommandError::NotAscii) => {
                return Step::reply(500, "5.5.2 Syntax error, command unrecognized");
            }
            Err(CommandError::Syntax { .. }) => {
                return Step::reply(501, "5.5.4 Syntax error in parameters or arguments");
            }
        };
        match cmd {
            Command::Ehlo(_) if self.config.fault == Some(Fault::Ehlo5xx) => {
                Step::reply(550, "5.7.1 EHLO rejected by policy")
            }
            Command::Ehlo(name) => {
                self.state = State::Ready;
                let lines = self.ehlo_lines(&name);
                self.client_name = Some(name);
                Step { reply: Some(Reply::new(250, lines)), action: Action::Continue }
            }
            Command::Helo(name) => {
                self.state = State::Ready;
                self.client_name = Some(name);
                Step::reply(250, &self.config.hostname.clone())
            }
            Command::StartTls if self.tls_active => Step::reply(503, "5.5.1 TLS already active"),
            Command::StartTls if self.state == State::Fresh => Step::reply(503, "5.5.1 Send EHLO first"),
            Command::StartTls if self.config.fault == Some(Fault::NoStarttls) => {
                Step::reply(502, "5.5.2 Command not implemented")
            }
            Command::StartTls if self.config.fault == Some(Fault::Starttls454) => {
                Step::reply(454, "4.7.0 TLS not available due to temporary reason")
            }
            Command::StartTls if self.config.fault == Some(Fault::Starttls421) => Step {
                reply: Some(Reply::single(421, "4.7.0 TLS not available, closing connection")),
                action: Action::Close,
            },
            Command::StartTls => {
                Step { reply: Some(Reply::single(220, "2.0.0 Ready to start TLS")), action: Action::StartTls }
            }
            Command::Mail(_) if self.state == State::Fresh => Step::reply(503, "5.5.1 Send EHLO first"),
            Command::Mail(_) if self.state != State::Ready => Step::reply(503, "5.5.1 Nested MAIL command"),
            Command::Mail(_) => {
                self.state = State::Mail;
                Step::reply(250, "2.1.0 Ok")
            }
            Command::Rcpt(_) if !matches!(self.state, State::Mail | State::Rcpt) => {
                Step::reply(503, "5.5.1 Need MAIL first")
            }
            Command::Rcpt(_) => {
                self.state = State::Rcpt;
                Step::reply(250, "2.1.5 Ok")
            }
            Command::Data if self.state != State::Rcpt => Step::reply(503, "5.5.1 Need RCPT first"),
            Command::Data => {
                self.state = State::Data;
                self.message_bytes = 0;
                Step::reply(354, "End data with <CR><LF>.<CR><LF>")
            }
            Command::Rset => {
                if self.state != State::Fresh {
                    self.state = State::Ready;
                }
                Step::reply(250, "2.0.0 Ok")
            }
            Command::Noop => Step::reply(250, "2.0.0 Ok"),
            Command::Quit => Step { reply: Some(Reply::single(221, "2.0.0 Bye")), action: Action::Close },
            Command::Unknown(_) => Step::reply(502, "5.5.2 Command not implemented"),
        }
    }

    /// Handle one line of message content (with its CRLF). Returns the reply when the line
    /// was the final `.`.
    pub fn data_line(&mut self, line: &[u8]) -> Step {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"." {
            self.state = State::Ready;
            if self.message_bytes > self.config.max_message_bytes {
                return Step::reply(552, "5.3.4 Message too big");
            }
            self.messages += 1;
            return Step::reply(250, "2.0.0 Ok: counted, not stored");
        }
        self.message_bytes = self.message_bytes.saturating_add(line.len());
        Step { reply: None, action: Action::Continue }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &Step) -> u16 {
        s.reply.as_ref().map_or(0, |r| r.code)
    }

    #[test]
    fn full_dialogue_with_starttls() {
        let mut s = Session::new(SessionConfig::default());
        assert_eq!(code(&s.greeting()), 220);
        assert_eq!(code(&s.command(b"STARTTLS\r\n")), 503, "EHLO first");
        let ehlo = s.command(b"EHLO c.test\r\n");
        assert!(ehlo.reply.as_ref().unwrap().has_keyword("STARTTLS"));
        assert!(ehlo.reply.as_ref().unwrap().has_keyword("PIPELINING"));
        let st = s.command(b"STARTTLS\r\n");
        assert_eq!((code(&st), st.action), (220, Action::StartTls));
        s.tls_started();
        assert_eq!(code(&s.command(b"MAIL FROM:<a@b.test>\r\n")), 503, "state was reset by TLS");
        let ehlo = s.command(b"EHLO c.test\r\n");
        assert!(!ehlo.reply.as_ref().unwrap().has_keyword("STARTTLS"), "not offered again over TLS");
        assert_eq!(code(&s.command(b"STARTTLS\r\n")), 503);
        assert_eq!(code(&s.command(b"MAIL FROM:<a@b.test>\r\n")), 250);
        assert_eq!(code(&s.command(b"DATA\r\n")), 503);
        assert_eq!(code(&s.command(b"RCPT TO:<c@d.test>\r\n")), 250);
        assert_eq!(code(&s.command(b"DATA\r\n")), 354);
        assert!(s.in_data());
        assert_eq!(s.data_line(b"Subject: hi\r\n").reply, None);
        assert_eq!(s.data_line(b"..stuffed\r\n").reply, None);
        assert_eq!(code(&s.data_line(b".\r\n")), 250);
        assert_eq!(s.messages, 1);
        assert_eq!(code(&s.command(b"RSET\r\n")), 250);
        assert_eq!(code(&s.command(b"NOOP\r\n")), 250);
        assert_eq!(code(&s.command(b"VRFY x\r\n")), 502);
        let quit = s.command(b"QUIT\r\n");
        assert_eq!((code(&quit), quit.action), (221, Action::Close));
    }

    #[test]
    fn command_count_is_bounded() {
        let mut s = Session::new(SessionConfig { max_commands: 3, ..SessionConfig::default() });
        for _ in 0..3 {
            assert_eq!(code(&s.command(b"NOOP\r\n")), 250);
        }
        let last = s.command(b"NOOP\r\n");
        assert_eq!((code(&last), last.action), (421, Action::Close));
    }

    #[test]
    fn oversized_message_is_refused() {
        let mut s = Session::new(SessionConfig { max_message_bytes: 10, ..SessionConfig::default() });
        for line in ["EHLO c\r\n", "MAIL FROM:<>\r\n", "RCPT TO:<a@b>\r\n", "DATA\r\n"] {
            s.command(line.as_bytes());
        }
        s.data_line(b"0123456789abcdef\r\n");
        assert_eq!(code(&s.data_line(b".\r\n")), 552);
        assert_eq!(s.messages, 0);
    }

    fn faulty(fault: Fault) -> Session {
        Session::new(SessionConfig { fault: Some(fault), ..SessionConfig::default() })
    }

    #[test]
    fn faults_in_the_dialogue() {
        let g = faulty(Fault::Banner421).greeting();
        assert_eq!((code(&g), g.action), (421, Action::Close));
        assert_eq!(code(&faulty(Fault::Ehlo5xx).command(b"EHLO c\r\n")), 550);
        let mut s = faulty(Fault::NoStarttls);
        assert!(!s.command(b"EHLO c\r\n").reply.unwrap().has_keyword("STARTTLS"));
        assert_eq!(code(&s.command(b"STARTTLS\r\n")), 502);
        let mut s = faulty(Fault::Starttls454);
        s.command(b"EHLO c\r\n");
        assert_eq!(s.command(b"STARTTLS\r\n").action, Action::Continue);
        let mut s = faulty(Fault::Starttls421);
        s.command(b"EHLO c\r\n");
        assert_eq!(s.command(b"STARTTLS\r\n").action, Action::Close);
        let mut s = faulty(Fault::CapabilitiesChangeAfterTls);
        assert!(s.command(b"EHLO c\r\n").reply.unwrap().has_keyword("PIPELINING"));
        s.command(b"STARTTLS\r\n");
        s.tls_started();
        let after = s.command(b"EHLO c\r\n").reply.unwrap();
        assert!(after.has_keyword("AUTH") && !after.has_keyword("PIPELINING"));
        let mut s = faulty(Fault::MultilineOddities);
        assert!(s.greeting().reply.unwrap().lines.len() > 1);
        let ehlo = s.command(b"EHLO c\r\n").reply.unwrap();
        assert!(ehlo.lines.len() > 30 && ehlo.lines.iter().any(|l| l.len() > 512) && ehlo.has_keyword("STARTTLS"));
    }

    #[test]
    fn bad_syntax_gets_5xx() {
        let mut s = Session::new(SessionConfig::default());
        assert_eq!(code(&s.command(b"EHLO\r\n")), 501);
        assert_eq!(code(&s.command(b"\r\n")), 500);
    }
}
