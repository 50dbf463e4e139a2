//! What became of a real message a sender MTA was given: delivered over TLS, delivered in clear
//! (STARTTLS not offered, or after a TLS failure), still queued, or returned — with each
//! connection it made, its own log lines for the message, and what its queue says at the end.

use crate::negotiated::Negotiated;
use crate::outcome::ErrorClass;
use crate::record::ConnectionRecord;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The fate of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryResult {
    /// Delivered over TLS.
    Tls,
    /// Delivered in clear because the server did not offer STARTTLS.
    Plaintext,
    /// Delivered in clear after a TLS failure: a silent downgrade.
    PlaintextFallback,
    /// Still in the sender's queue after the cell's attempts.
    Deferred,
    /// Returned to its sender (a permanent failure).
    Bounced,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 5] = [
        DeliveryResult::Tls,
        DeliveryResult::Plaintext,
        DeliveryResult::PlaintextFallback,
        DeliveryResult::Deferred,
        DeliveryResult::Bounced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Tls => "tls",
            DeliveryResult::Plaintext => "plaintext",
            DeliveryResult::PlaintextFallback => "plaintext_fallback",
            DeliveryResult::Deferred => "deferred",
            DeliveryResult::Bounced => "bounced",
        }
    }

    /// Whether the message reached the server.
    pub fn delivered(self) -> bool {
        matches!(self, DeliveryResult::Tls | DeliveryResult::Plaintext | DeliveryResult::PlaintextFallback)
    }

    /// One line for a mail admin.
    pub fn explanation(self) -> &'static str {
        match self {
            DeliveryResult::Tls => "delivered over TLS",
            DeliveryResult::Plaintext => "delivered in clear: the server did not offer STARTTLS",
            DeliveryResult::PlaintextFallback => {
                "delivered in clear after a TLS failure: a silent downgrade an eavesdropper can force"
            }
            DeliveryResult::Deferred => "not delivered: the message is still in the sender's queue",
            DeliveryResult::Bounced => "not delivered: the message was returned to its sender",
        }
    }
}

impl fmt::Display for DeliveryResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sender says it ended with (before judging against the attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// The server took the message.
    Sent,
    /// It is still queued.
    Queued,
    /// It was returned.
    Bounced,
}

/// One attempt the sender made for the message: a connection, or a deferral its queue manager
/// decided without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// Whether it made a connection (Postfix's queue manager can defer without one).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub connected: bool,
    /// Whether it tried STARTTLS (`None`: its log does not say).
    pub tls_tried: Option<bool>,
    /// What the handshake negotiated, if it completed.
    pub tls: Option<Negotiated>,
    /// The sender's words for what went wrong on this connection, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// That failure's class, by the sender's table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    /// The sender's status line for the connection (`status=deferred (…)`, `stat=Sent (…)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// The server's record of the same connection, where the server keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ConnectionRecord>,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

impl Default for DeliveryAttempt {
    fn default() -> Self {
        DeliveryAttempt {
            connected: true,
            tls_tried: None,
            tls: None,
            error: None,
            class: None,
            status: String::new(),
            server: None,
        }
    }
}

/// One step of a delivery cell as the harness drove and saw it: the message handed over, an
/// attempt's end read in the sender's log, a forced retry, the queue listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Since the message was handed to the sender.
    pub at_ms: u64,
    pub what: String,
}

/// A sender cell's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub result: DeliveryResult,
    /// What the delivering connection negotiated (`tls` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiated: Option<Negotiated>,
    /// The class of the TLS failure behind a `plaintext_fallback`, `deferred` or `bounced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    /// Each connection, in order.
    pub attempts: Vec<DeliveryAttempt>,
    /// The sender's own log lines for this message.
    pub sender_log: Vec<String>,
    /// What the MTA's own queue command says at the end (empty, or the deferred entry).
    pub queue: String,
    /// The cell's timeline: "deferred, then plaintext on attempt 2" and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Step>,
    /// Whether the sender had settled when the cell ended; a `deferred` that had not was still
    /// trying (waiting on a server that said nothing).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub settled: bool,
}

impl Delivery {
    /// The table label: `TLSv1.2 DHE-2048`, `plaintext`, `plaintext after dh_too_small`,
    /// `deferred: dh_too_small`, `bounced: smtp_rejected`.
    pub fn label(&self) -> String {
        let class = self.class.map_or_else(String::new, |c| c.to_string());
        let tls = || self.negotiated.as_ref().map_or_else(|| "TLS".to_string(), Negotiated::label);
        match self.result {
            // A finding about the TLS it delivered over (a DH group it should have refused).
            DeliveryResult::Tls if !class.is_empty() => format!("{} ({class})", tls()),
            DeliveryResult::Tls => tls(),
            DeliveryResult::Plaintext => "plaintext".to_string(),
            DeliveryResult::PlaintextFallback if class.is_empty() => "plaintext after a TLS failure".to_string(),
            DeliveryResult::PlaintextFallback => format!("plaintext after {class}"),
            DeliveryResult::Deferred if !self.settled && class.is_empty() => "deferred: still trying".to_string(),
            DeliveryResult::Deferred if !self.settled => format!("deferred: {class}, still trying"),
            DeliveryResult::Deferred | DeliveryResult::Bounced if class.is_empty() => self.result.to_string(),
            DeliveryResult::Deferred | DeliveryResult::Bounced => format!("{}: {class}", self.result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiated::Protocol;

    fn delivery(result: DeliveryResult, class: Option<ErrorClass>) -> Delivery {
        Delivery {
            result,
            negotiated: (result == DeliveryResult::Tls)
                .then(|| Negotiated::tls(Protocol::Tls12, "x", None, Some(2048))),
            class,
            attempts: vec![],
            sender_log: vec![],
            queue: String::new(),
            timeline: vec![],
            settled: true,
        }
    }

    #[test]
    fn labels() {
        assert_eq!(delivery(DeliveryResult::Tls, None).label(), "TLSv1.2 DHE-2048");
        assert_eq!(delivery(DeliveryResult::Plaintext, None).label(), "plaintext");
        assert_eq!(
            delivery(DeliveryResult::PlaintextFallback, Some(ErrorClass::DhTooSmall)).label(),
            "plaintext after dh_too_small"
        );
        assert_eq!(delivery(DeliveryResult::Deferred, Some(ErrorClass::DhTooSmall)).label(), "deferred: dh_too_small");
        for r in DeliveryResult::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::Value::String(r.as_str().into()));
        }
    }
}
