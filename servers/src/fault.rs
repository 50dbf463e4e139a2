//! Hostile STARTTLS servers: what the built-in server does for each named fault a profile can
//! carry (`fault = "…"`, the names in `report_format::Fault`). The dialogue
//! ([`crate::session`]) and the connection driver ([`crate::server`]) each have one match on it.

pub use report_format::Fault;
pub use report_format::fault::REFUSAL_BOUND;
use std::time::Duration;

/// The delay of [`Fault::SlowBanner`].
pub const SLOW_BANNER_DELAY: Duration = Duration::from_millis(300);

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
const ALERT_HANDSHAKE_FAILURE: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

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
            | Fault::Stall,
        )
        | None => AfterStarttls::Handshake,
    }
}
