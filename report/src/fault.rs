//! Hostile STARTTLS servers by name: the faults a server profile can carry (`fault = "…"`),
//! after the attack classes of "NO STARTTLS" (USENIX Security 2021). What each does is the
//! built-in server's (`servers::fault`); how long a client may take against it is here.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A way for the server to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// EHLO does not advertise STARTTLS; the command is answered 502.
    NoStarttls,
    /// STARTTLS is answered `454 4.7.0 TLS not available`.
    #[serde(rename = "starttls-454")]
    Starttls454,
    /// STARTTLS is answered `421` and the connection closed.
    #[serde(rename = "starttls-421")]
    Starttls421,
    /// The banner is `421` and the connection closed.
    #[serde(rename = "banner-421")]
    Banner421,
    /// EHLO is answered `550`.
    #[serde(rename = "ehlo-5xx")]
    Ehlo5xx,
    /// Plaintext lines follow `220 Ready to start TLS` in the same segment (response
    /// injection): a client that reads them as replies over TLS is vulnerable.
    InjectAfterStarttlsResponse,
    /// The server waits before answering STARTTLS and records whether the client sent more
    /// plaintext after it (a client must not pipeline past STARTTLS).
    PipelinedPlaintext,
    /// The EHLO reply over TLS differs from the one before (AUTH appears, PIPELINING goes).
    CapabilitiesChangeAfterTls,
    /// Bytes that are not TLS follow the 220, then the connection closes.
    GarbageInsteadOfTls,
    /// A fatal TLS alert (handshake_failure) follows the 220 instead of a ServerHello.
    TlsAlertAfterStarttls,
    /// The connection closes right after the 220.
    CloseAfterStarttls,
    /// A multiline banner, and an EHLO reply of many continuation lines, one longer than
    /// RFC 5321's 512 octets.
    MultilineOddities,
    /// The banner comes after a delay (within any client's timeout).
    SlowBanner,
    /// The banner starts and never finishes: the client waits until someone gives up.
    Stall,
    /// The server parses only the first 1,460 bytes it receives after STARTTLS, as a server
    /// doing one `read()` behind a 1,500-byte MTU would: a ClientHello that does not fit makes
    /// it close the connection (tldr.fail; Postfix 3.11's reason for deferring the hybrid key
    /// share).
    ClienthelloOneSegment,
    /// The server stalls on a ClientHello record of 256 to 511 bytes (RFC 7685 §1: F5's bug).
    ClienthelloLengthIntolerant,
    /// The server closes the connection when the ClientHello offers TLS 1.3 (version
    /// intolerance).
    Tls13Intolerant,
    /// TLS 1.2 without the extended master secret extension (RFC 7627): what FIPS-mode clients
    /// refuse.
    NoEms,
    /// A TLS 1.3 server that cannot send a HelloRetryRequest: when no key share the client sent
    /// is one of its groups, it answers with a handshake_failure alert.
    NoHrr,
    /// Not an SMTP server at all: an SSH banner where the SMTP greeting was due, and OpenSSH's
    /// words for the client's first line (a wrong port in a relay map, a redirected port).
    NotSmtp,
    /// With `force = "secret-leading-zero"`: the server drops the zero byte from the TLS 1.3
    /// secret as TLS 1.2 does, deriving other keys than a correct client (the bug of OpenSSL's
    /// TLS 1.3 FFDHE before PR 8178's fix, and the mirror of JDK-8328046): what each stack says
    /// when the two sides' keys differ.
    StripsSecretLeadingZero,
}

impl Fault {
    pub const ALL: [Fault; 21] = [
        Fault::NoStarttls,
        Fault::Starttls454,
        Fault::Starttls421,
        Fault::Banner421,
        Fault::Ehlo5xx,
        Fault::InjectAfterStarttlsResponse,
        Fault::PipelinedPlaintext,
        Fault::CapabilitiesChangeAfterTls,
        Fault::GarbageInsteadOfTls,
        Fault::TlsAlertAfterStarttls,
        Fault::CloseAfterStarttls,
        Fault::MultilineOddities,
        Fault::SlowBanner,
        Fault::Stall,
        Fault::ClienthelloOneSegment,
        Fault::ClienthelloLengthIntolerant,
        Fault::Tls13Intolerant,
        Fault::NoEms,
        Fault::NoHrr,
        Fault::NotSmtp,
        Fault::StripsSecretLeadingZero,
    ];

    /// The name used in matrix files.
    pub fn name(self) -> &'static str {
        match self {
            Fault::NoStarttls => "no-starttls",
            Fault::Starttls454 => "starttls-454",
            Fault::Starttls421 => "starttls-421",
            Fault::Banner421 => "banner-421",
            Fault::Ehlo5xx => "ehlo-5xx",
            Fault::InjectAfterStarttlsResponse => "inject-after-starttls-response",
            Fault::PipelinedPlaintext => "pipelined-plaintext",
            Fault::CapabilitiesChangeAfterTls => "capabilities-change-after-tls",
            Fault::GarbageInsteadOfTls => "garbage-instead-of-tls",
            Fault::TlsAlertAfterStarttls => "tls-alert-after-starttls",
            Fault::CloseAfterStarttls => "close-after-starttls",
            Fault::MultilineOddities => "multiline-oddities",
            Fault::SlowBanner => "slow-banner",
            Fault::Stall => "stall",
            Fault::ClienthelloOneSegment => "clienthello-one-segment",
            Fault::ClienthelloLengthIntolerant => "clienthello-length-intolerant",
            Fault::Tls13Intolerant => "tls13-intolerant",
            Fault::NoEms => "no-ems",
            Fault::NoHrr => "no-hrr",
            Fault::NotSmtp => "not-smtp",
            Fault::StripsSecretLeadingZero => "strips-secret-leading-zero",
        }
    }

    /// Whether the fault is in the TLS handshake (a server that a client update breaks) rather
    /// than in the SMTP dialogue around STARTTLS.
    pub fn in_handshake(self) -> bool {
        match self {
            Fault::ClienthelloOneSegment
            | Fault::ClienthelloLengthIntolerant
            | Fault::Tls13Intolerant
            | Fault::NoEms
            | Fault::NoHrr
            | Fault::StripsSecretLeadingZero => true,
            Fault::NoStarttls
            | Fault::NotSmtp
            | Fault::Starttls454
            | Fault::Starttls421
            | Fault::Banner421
            | Fault::Ehlo5xx
            | Fault::InjectAfterStarttlsResponse
            | Fault::PipelinedPlaintext
            | Fault::CapabilitiesChangeAfterTls
            | Fault::GarbageInsteadOfTls
            | Fault::TlsAlertAfterStarttls
            | Fault::CloseAfterStarttls
            | Fault::MultilineOddities
            | Fault::SlowBanner
            | Fault::Stall => false,
        }
    }

    /// How long a harness should give a client against this fault, when the fault exists to
    /// make the client wait: long enough to show it waits, short enough to keep runs fast.
    pub fn cell_timeout(self) -> Option<Duration> {
        match self {
            Fault::Stall => Some(Duration::from_millis(500)),
            // The server never answers the ClientHello: show that the client waits, then end it.
            Fault::ClienthelloLengthIntolerant => Some(Duration::from_secs(2)),
            // The server refuses TLS or the session: a client has nothing left to wait for, and
            // one that is still waiting after this (gnutls-cli's STARTTLS helper) hangs.
            Fault::NoStarttls
            | Fault::Starttls454
            | Fault::Starttls421
            | Fault::Banner421
            | Fault::Ehlo5xx
            | Fault::NotSmtp => Some(REFUSAL_BOUND),
            Fault::InjectAfterStarttlsResponse
            | Fault::PipelinedPlaintext
            | Fault::CapabilitiesChangeAfterTls
            | Fault::GarbageInsteadOfTls
            | Fault::TlsAlertAfterStarttls
            | Fault::CloseAfterStarttls
            | Fault::MultilineOddities
            | Fault::SlowBanner
            | Fault::ClienthelloOneSegment
            | Fault::Tls13Intolerant
            | Fault::NoEms
            | Fault::NoHrr
            | Fault::StripsSecretLeadingZero => None,
        }
    }
}

/// How long a client may take to give up once the server refused TLS or the session.
pub const REFUSAL_BOUND: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for f in Fault::ALL {
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::Value::String(f.name().into()));
        }
    }
}
