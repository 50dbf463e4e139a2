//! The server side of one connection: what the built-in server saw (every field), or what a real
//! MTA's log said of it (only what it logged; the rest is `None`, "not known", never guessed).

use crate::negotiated::{Negotiated, Stage};
use serde::{Deserialize, Serialize};

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

/// What the server saw of one connection. `None` means the server did not say (an MTA's log
/// tells less than the built-in server's record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The client's address, e.g. `127.0.0.1:40312`.
    pub peer: Option<String>,
    /// The EHLO/HELO name the client gave last.
    pub client_name: Option<String>,
    /// The STARTTLS command was accepted (220 sent).
    pub starttls: Option<bool>,
    /// Plaintext bytes the client sent after STARTTLS before the handshake, discarded unread
    /// (CVE-2011-0411).
    pub pipelined_plaintext_bytes: Option<usize>,
    /// What the handshake negotiated, if it completed.
    pub tls: Option<Negotiated>,
    /// The stage the connection was in when it ended.
    pub stage: Option<Stage>,
    pub end: Option<End>,
    /// The server's own error, in its library's words (e.g. OpenSSL's `no shared cipher`).
    pub error: Option<String>,
    pub commands: Option<usize>,
    /// Messages the server accepted on the connection.
    pub messages: Option<usize>,
    pub duration_ms: Option<u64>,
    /// A refusal the server sent before TLS (a 4xx/5xx to the banner, EHLO or STARTTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// The client's first ClientHello as the built-in server read it off the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hello: Option<ClientHelloInfo>,
    /// The rare encodings the built-in server forced or kept out of its key exchange and
    /// signature, one choice each (the rustls backend; empty where the library chose).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<crate::encoding::EncodingChoice>,
}

/// What a client's first ClientHello offered, read by the built-in server from the bytes on the
/// wire before its TLS library saw them: how large it was, and what it offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHelloInfo {
    /// The handshake message's length with its 4-byte header, as `s_client -msg` shows it
    /// (`ClientHello, Length=…` plus 4): one record's payload when it came in one record.
    pub length: usize,
    /// TLS records it came in (more than one: the client fragmented it).
    pub records: usize,
    /// Set when the server read only this many bytes of it (with the record header): the rest
    /// of the fields are what those bytes held, `length` is the size its header declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<usize>,
    /// The highest protocol version offered (`supported_versions`, else the legacy version).
    pub max_version: String,
    /// Cipher suites offered (GREASE values not counted).
    pub cipher_suites: usize,
    /// `supported_groups`, IANA names in the client's order (GREASE left out; an unknown
    /// codepoint as `0x…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The groups of the TLS 1.3 key shares sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_shares: Vec<String>,
    /// The extended master secret extension (RFC 7627) was offered.
    pub ems: bool,
    /// TLS 1.3 was negotiated on a group the client had sent no key share for: the server
    /// needed a HelloRetryRequest. `None` when no TLS 1.3 handshake completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_retry: Option<bool>,
}

impl ClientHelloInfo {
    /// One line: `ClientHello 1559 bytes, TLSv1.3, key shares X25519MLKEM768 x25519`.
    pub fn summary(&self) -> String {
        let shares = if self.key_shares.is_empty() {
            "no key share".to_string()
        } else {
            format!("key shares {}", self.key_shares.join(" "))
        };
        let mut out = format!("ClientHello {} bytes, {}, {shares}", self.length, self.max_version);
        if let Some(n) = self.read_only {
            out.push_str(&format!(" (the server read only the first {n})"));
        }
        if self.records > 1 {
            out.push_str(&format!(", in {} records", self.records));
        }
        if self.hello_retry == Some(true) {
            out.push_str(", HelloRetryRequest needed");
        }
        out
    }
}

impl ConnectionRecord {
    /// Whether the server recorded that this connection's handshake needed a HelloRetryRequest.
    pub fn needed_hello_retry(&self) -> bool {
        self.client_hello.as_ref().is_some_and(|h| h.hello_retry == Some(true))
    }

    /// Messages the server says it accepted without TLS on this connection; `None` when it does
    /// not say how many it accepted.
    pub fn messages_in_clear(&self) -> Option<usize> {
        match (&self.tls, self.messages) {
            (Some(_), _) => Some(0),
            (None, m) => m,
        }
    }
}

/// An SMTP refusal and the stage it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub stage: Stage,
    /// The reply as sent, on one line.
    pub reply: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_stay_unknown() {
        let from_log = ConnectionRecord { error: Some("no shared cipher".into()), ..ConnectionRecord::default() };
        let json = serde_json::to_value(&from_log).unwrap();
        assert_eq!(json["messages"], serde_json::Value::Null);
        assert_eq!(json["starttls"], serde_json::Value::Null);
        assert_eq!(from_log.messages_in_clear(), None);
        let plain = ConnectionRecord { messages: Some(1), ..ConnectionRecord::default() };
        assert_eq!(plain.messages_in_clear(), Some(1));
    }

    #[test]
    fn records_of_earlier_reports_read_back() {
        let old = r#"{"peer":"127.0.0.1:1","client_name":"c","starttls":true,"pipelined_plaintext_bytes":0,"tls":null,"stage":"handshake","end":"handshake_failed","error":"x","commands":2,"messages":0,"duration_ms":3}"#;
        let r: ConnectionRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.starttls, r.messages, r.end), (Some(true), Some(0), Some(End::HandshakeFailed)));
    }
}
