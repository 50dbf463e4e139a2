//! The server side of one connection, logged as one JSON line when the connection ends.

use serde::{Deserialize, Serialize};
use wire::{Negotiated, Stage};

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection (or reset it).
    ClientClosed,
    /// The TLS handshake failed.
    HandshakeFailed,
    /// A read or write failed after the handshake.
    IoError,
    /// The per-connection timeout passed.
    Timeout,
    /// A limit was hit (line length, command count, connection count).
    Limit,
    /// The server ended it as its fault prescribes.
    Fault,
}

/// What the server saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The client's address, e.g. `127.0.0.1:40312`.
    pub peer: String,
    /// The EHLO/HELO name the client gave last.
    pub client_name: Option<String>,
    /// The STARTTLS command was accepted (220 sent).
    pub starttls: bool,
    /// Plaintext bytes the client sent after STARTTLS before the handshake, discarded unread
    /// (CVE-2011-0411).
    pub pipelined_plaintext_bytes: usize,
    /// What the handshake negotiated, if it completed.
    pub tls: Option<Negotiated>,
    /// The stage the connection was in when it ended.
    pub stage: Stage,
    pub end: End,
    /// The server's own error, in its library's words (e.g. OpenSSL's `no shared cipher`).
    pub error: Option<String>,
    pub commands: usize,
    pub messages: usize,
    pub duration_ms: u64,
    /// A refusal the server sent before TLS (a 4xx/5xx to the banner, EHLO or STARTTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// An SMTP refusal and the stage it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub stage: Stage,
    /// The reply as sent, on one line.
    pub reply: String,
}
