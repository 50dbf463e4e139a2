//! The client side of the SMTP dialogue, blocking, shared by every built-in client: connect,
//! banner, EHLO, STARTTLS before the handshake; EHLO and QUIT after it. Failures carry the stage
//! and the server's own reply.

use crate::contract::{Common, TlsPolicy};
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wire::{ClientResult, Negotiated, Reply, ReplyParser, Stage};

/// A failure at a stage, ready to print.
pub type Failure = ClientResult;

fn fail(stage: Stage, error: impl Into<String>) -> Failure {
    ClientResult::error(stage, error)
}

/// Read one complete reply.
pub fn read_reply<R: BufRead>(reader: &mut R, stage: Stage) -> Result<Reply, Failure> {
    let mut parser = ReplyParser::new();
    loop {
        let mut line = String::new();
        // Bounded: the reply parser refuses over-long lines and too many lines.
        let n = reader.by_ref().take(4096).read_line(&mut line).map_err(|e| fail(stage, format!("read reply: {e}")))?;
        if n == 0 {
            return Err(fail(stage, "connection closed by the server"));
        }
        if let Some(reply) = parser.feed(&line).map_err(|e| fail(stage, e.to_string()))? {
            return Ok(reply);
        }
    }
}

/// Send a command and read its reply.
pub fn command<S: Read + Write>(reader: &mut BufReader<S>, cmd: &str, stage: Stage) -> Result<Reply, Failure> {
    reader.get_mut().write_all(format!("{cmd}\r\n").as_bytes()).map_err(|e| fail(stage, format!("send {cmd}: {e}")))?;
    read_reply(reader, stage)
}

/// Where the plaintext part of the dialogue left us.
pub enum BeforeTls {
    /// STARTTLS was accepted: the TCP stream for the handshake, and any plaintext that arrived
    /// after the 220 (a secure client drops it).
    Upgrade { tcp: TcpStream, leftover: Vec<u8> },
    /// The server did not offer STARTTLS or refused it, and the connection is still open.
    NoTls { reader: BufReader<TcpStream>, why: Failure },
}

/// Connect, read the banner, EHLO, and STARTTLS.
pub fn before_tls(connect: &str, ehlo: &str, timeout: Duration) -> Result<BeforeTls, Failure> {
    let tcp = TcpStream::connect(connect).map_err(|e| fail(Stage::Connect, format!("connect to {connect}: {e}")))?;
    crate::batch::register(&tcp);
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        // Small SMTP writes right after a TLS flight otherwise wait ~40 ms for a delayed ACK.
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| fail(Stage::Connect, e.to_string()))?;
    let mut reader = BufReader::new(tcp);
    let banner = read_reply(&mut reader, Stage::Smtp)?;
    if banner.code != 220 {
        return Err(fail(Stage::Smtp, format!("greeting: {banner}")));
    }
    let reply = command(&mut reader, &format!("EHLO {ehlo}"), Stage::Smtp)?;
    if reply.code != 250 {
        return Err(fail(Stage::Smtp, format!("EHLO: {reply}")));
    }
    if !reply.has_keyword("STARTTLS") {
        return Ok(BeforeTls::NoTls { reader, why: fail(Stage::Starttls, format!("STARTTLS not offered: {reply}")) });
    }
    let reply = command(&mut reader, "STARTTLS", Stage::Starttls)?;
    match reply.code {
        220 => {
            let leftover = reader.buffer().to_vec();
            Ok(BeforeTls::Upgrade { tcp: reader.into_inner(), leftover })
        }
        421 => Err(fail(Stage::Starttls, format!("STARTTLS refused: {reply}"))),
        _ => Ok(BeforeTls::NoTls { reader, why: fail(Stage::Starttls, format!("STARTTLS refused: {reply}")) }),
    }
}

/// What an opportunistic client does without TLS: deliver the message in plaintext.
pub fn deliver_plaintext<S: Read + Write>(mut reader: BufReader<S>, ehlo: &str) -> ClientResult {
    let steps: [(&str, u16); 3] =
        [("MAIL FROM:<probe@client.test>", 250), ("RCPT TO:<postmaster@mx.test>", 250), ("DATA", 354)];
    for (cmd, want) in steps {
        match command(&mut reader, cmd, Stage::Smtp) {
            Ok(r) if r.code == want => {}
            Ok(r) => return fail(Stage::Smtp, format!("{cmd}: {r}")),
            Err(f) => return f,
        }
    }
    let message =
        format!("From: <probe@client.test>\r\nSubject: starttls-matrix probe from {ehlo}\r\n\r\nsent without TLS\r\n.");
    match command(&mut reader, &message, Stage::Smtp) {
        Ok(r) if r.code == 250 => {}
        Ok(r) => return fail(Stage::Smtp, format!("message: {r}")),
        Err(f) => return f,
    }
    let _ = command(&mut reader, "QUIT", Stage::Smtp);
    ClientResult::Ok(Negotiated::plaintext())
}

/// Plaintext kept from before the handshake, read first as if it had come over TLS: the
/// CVE-2011-0411 mistake, for `--unsafe-keep-plaintext-buffer` (a test fixture).
struct Prefixed<S> {
    prefix: Cursor<Vec<u8>>,
    inner: S,
}

impl<S: Read> Read for Prefixed<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.prefix.read(buf)? {
            0 => self.inner.read(buf),
            n => Ok(n),
        }
    }
}

impl<S: Write> Write for Prefixed<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The whole dialogue around one library's handshake: SMTP up to STARTTLS (or, under the
/// `may` policy, plaintext delivery when TLS is not to be had), the handshake, SMTP over TLS.
pub fn dialogue<S: Read + Write>(
    common: &Common,
    handshake: impl FnOnce(TcpStream) -> Result<(S, Negotiated), Failure>,
) -> ClientResult {
    let connect = common.connect.as_deref().unwrap_or_default();
    match before_tls(connect, &common.ehlo, common.io_timeout()) {
        Err(failure) => failure,
        Ok(BeforeTls::NoTls { reader, why }) => match common.tls_policy {
            TlsPolicy::Encrypt => why,
            TlsPolicy::May => deliver_plaintext(reader, &common.ehlo),
        },
        Ok(BeforeTls::Upgrade { tcp, leftover }) => {
            let (tls, negotiated) = match handshake(tcp) {
                Ok(done) => done,
                Err(failure) => return failure,
            };
            let after = if common.unsafe_keep_plaintext_buffer {
                after_tls(Prefixed { prefix: Cursor::new(leftover), inner: tls }, &common.ehlo)
            } else {
                after_tls(tls, &common.ehlo)
            };
            match after {
                Ok(()) => ClientResult::Ok(negotiated),
                Err(failure) => failure,
            }
        }
    }
}

/// Over TLS: EHLO again, then QUIT.
pub fn after_tls<S: Read + Write>(tls: S, ehlo: &str) -> Result<(), Failure> {
    let mut reader = BufReader::new(tls);
    let reply = command(&mut reader, &format!("EHLO {ehlo}"), Stage::PostTls)?;
    if reply.code != 250 {
        return Err(fail(Stage::PostTls, format!("EHLO over TLS: {reply}")));
    }
    let reply = command(&mut reader, "QUIT", Stage::PostTls)?;
    if reply.code != 221 {
        return Err(fail(Stage::PostTls, format!("QUIT: {reply}")));
    }
    Ok(())
}
