//! The client side of the SMTP dialogue, blocking, shared by every built-in client: connect,
//! banner, EHLO, STARTTLS before the handshake; EHLO and QUIT after it. Failures carry the stage
//! and the server's own reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wire::{ClientResult, Reply, ReplyParser, Stage};

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

/// Connect, read the banner, EHLO, and STARTTLS. Returns the TCP stream ready for the
/// handshake; plaintext the server sent after its 220 is discarded unread.
pub fn before_tls(connect: &str, ehlo: &str, timeout: Duration) -> Result<TcpStream, Failure> {
    let tcp = TcpStream::connect(connect).map_err(|e| fail(Stage::Connect, format!("connect to {connect}: {e}")))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
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
        return Err(fail(Stage::Starttls, format!("STARTTLS not offered: {reply}")));
    }
    let reply = command(&mut reader, "STARTTLS", Stage::Starttls)?;
    if reply.code != 220 {
        return Err(fail(Stage::Starttls, format!("STARTTLS refused: {reply}")));
    }
    Ok(reader.into_inner())
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
