//! Hostile STARTTLS servers: what the built-in server does for each named fault a profile can
//! carry (`fault = "…"`, the names in `report_format::Fault`). The dialogue
//! ([`crate::session`]) and the connection driver ([`crate::server`]) each have one match on it.

use crate::hello::{Read, Short};
use report_format::ClientHelloInfo;
pub use report_format::Fault;
pub use report_format::fault::REFUSAL_BOUND;
use std::time::Duration;
use wire::Negotiated;

/// What [`Fault::ClienthelloOneSegment`] parses: one TCP segment's payload behind a 1,500-byte
/// Ethernet MTU (1,500 − 20 IPv4 − 20 TCP).
pub const ONE_SEGMENT: usize = 1460;

/// The ClientHello record sizes [`Fault::ClienthelloLengthIntolerant`] stalls on (RFC 7685 §1).
pub const INTOLERANT_LENGTHS: std::ops::RangeInclusive<usize> = 256..=511;

/// The delay of [`Fault::SlowBanner`].
pub const SLOW_BANNER_DELAY: Duration = Duration::from_millis(300);

/// What [`Fault::NotSmtp`] greets with: an OpenSSH server's identification string (RFC 4253 §4.2).
pub const SSH_BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
/// How long [`Fault::NotSmtp`] waits for a client that says nothing before it closes.
pub const NOT_SMTP_GRACE: Duration = Duration::from_secs(1);
/// What OpenSSH answers a first line that is not an SSH identification string, then closes.
pub const SSH_REFUSAL: &str = "Invalid SSH identification string.\r\n";

/// The plaintext [`Fault::InjectAfterStarttlsResponse`] sends after its 220; the token
/// `INJECTED` in a client's words means the client took it as a reply over TLS.
pub const INJECTED_REPLY: &str = "554 5.7.0 INJECTED plaintext sent before the TLS handshake\r\n";

/// What the connection driver does once `220 Ready to start TLS` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStarttls {
    Handshake,
    /// Write these bytes (with the 220, in one segment), then do the handshake.
    InjectThenHandshake(&'static str),
    /// Write these bytes instead of TLS, then close.
    SendThenClose(&'static [u8]),
    Close,
}

/// A fatal handshake_failure alert record (TLS 1.2 framing).
pub const ALERT_HANDSHAKE_FAILURE: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// The driver's part of the fault after the STARTTLS reply.
pub fn after_starttls(fault: Option<Fault>) -> AfterStarttls {
    match fault {
        Some(Fault::InjectAfterStarttlsResponse) => AfterStarttls::InjectThenHandshake(INJECTED_REPLY),
        Some(Fault::GarbageInsteadOfTls) => {
            AfterStarttls::SendThenClose(b"this is not TLS at all, just plaintext garbage\r\n")
        }
        Some(Fault::TlsAlertAfterStarttls) => AfterStarttls::SendThenClose(ALERT_HANDSHAKE_FAILURE),
        Some(Fault::CloseAfterStarttls) => AfterStarttls::Close,
        Some(
            Fault::NoStarttls
            | Fault::Starttls454
            | Fault::Starttls421
            | Fault::Banner421
            | Fault::Ehlo5xx
            | Fault::PipelinedPlaintext
            | Fault::CapabilitiesChangeAfterTls
            | Fault::MultilineOddities
            | Fault::SlowBanner
            | Fault::Stall
            | Fault::ClienthelloOneSegment
            | Fault::ClienthelloLengthIntolerant
            | Fault::Tls13Intolerant
            | Fault::NoEms
            | Fault::NoHrr
            | Fault::NotSmtp
            | Fault::StripsSecretLeadingZero,
        )
        | None => AfterStarttls::Handshake,
    }
}

/// How many bytes after STARTTLS the server reads looking for the ClientHello.
pub fn hello_read_limit(fault: Option<Fault>) -> usize {
    match fault {
        Some(Fault::ClienthelloOneSegment) => ONE_SEGMENT,
        _ => usize::MAX,
    }
}

/// What the server does once it has read the ClientHello (or as much as it reads of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloVerdict {
    /// Hand the bytes to the TLS library.
    Proceed,
    /// Close the connection at once.
    Close(String),
    /// Send a handshake_failure alert, then close.
    Alert(String),
    /// Never answer.
    Stall(String),
}

/// The handshake faults, acting on what the client sent: `groups` are the server's key-exchange
/// groups (for [`Fault::NoHrr`]).
pub fn on_client_hello(fault: Option<Fault>, read: &Read, short: Option<&Short>, groups: &[String]) -> HelloVerdict {
    let info = read.info.as_ref();
    match fault {
        Some(Fault::ClienthelloOneSegment) => match short {
            Some(Short::Limit(n)) => {
                // The record header says how much more was coming.
                let declared = first_record_length(&read.bytes).map_or(0, |len| len + 5);
                HelloVerdict::Close(format!(
                    "fault clienthello-one-segment: the ClientHello ({declared} bytes with its record header) did not fit in the first {n} bytes; the server parsed a truncated hello and closed"
                ))
            }
            _ => HelloVerdict::Proceed,
        },
        Some(Fault::ClienthelloLengthIntolerant) => match first_record_length(&read.bytes) {
            Some(len) if INTOLERANT_LENGTHS.contains(&len) => HelloVerdict::Stall(format!(
                "fault clienthello-length-intolerant: a ClientHello record of {len} bytes (256–511, RFC 7685); the server never answered"
            )),
            _ => HelloVerdict::Proceed,
        },
        Some(Fault::Tls13Intolerant) if info.is_some_and(|h| h.max_version == "TLSv1.3") => HelloVerdict::Close(
            "fault tls13-intolerant: the ClientHello offered TLS 1.3; the server closed the connection".into(),
        ),
        Some(Fault::NoHrr) => match info {
            Some(h)
                if h.max_version == "TLSv1.3"
                    && !h.key_shares.iter().any(|k| groups.iter().any(|g| g.eq_ignore_ascii_case(k))) =>
            {
                HelloVerdict::Alert(format!(
                    "fault no-hrr: no key share for the server's groups ({}) among the client's ({}), and the server cannot ask for one (no HelloRetryRequest): handshake_failure",
                    groups.join(" "),
                    if h.key_shares.is_empty() { "none".to_string() } else { h.key_shares.join(" ") }
                ))
            }
            _ => HelloVerdict::Proceed,
        },
        Some(
            Fault::Tls13Intolerant
            | Fault::NoEms
            | Fault::NoStarttls
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
            | Fault::Stall
            | Fault::NotSmtp
            | Fault::StripsSecretLeadingZero,
        )
        | None => HelloVerdict::Proceed,
    }
}

/// The payload length of the first TLS record, from its header.
fn first_record_length(bytes: &[u8]) -> Option<usize> {
    bytes.get(3..5).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
}

/// Whether a finished handshake needed a HelloRetryRequest: TLS 1.3 on a group the first
/// ClientHello sent no key share for (RFC 8446 §4.1.4). `None` when that cannot be said.
pub fn needed_hello_retry(hello: &ClientHelloInfo, negotiated: &Negotiated) -> Option<bool> {
    if negotiated.protocol != Some(report_format::Protocol::Tls13) {
        return None;
    }
    let group = negotiated.group.as_ref()?;
    Some(!hello.key_shares.iter().any(|k| k.eq_ignore_ascii_case(group)))
}
