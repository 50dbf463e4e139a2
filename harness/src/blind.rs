//! Blind against informed: the same evidence classified from the client's (or sender's) own
//! words alone — as `probe` must against a server we do not control — and with our server's
//! records. They must agree, or differ in one of the few ways listed here, each with its reason:
//! what only the server can know. Any other difference is a defect of a table or of a client
//! program, and an `unmapped` class in the blind view is one too.

use report_format::{BlindAgreement, BlindCheck, Delivery, DeliveryResult, ErrorClass, ExpectedOutcome, Outcome, Side};
use std::fmt;

/// What a verdict rests on: the kind of outcome with its class, or a message's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    Connected,
    Failed(ErrorClass),
    Timeout,
    Unsupported,
    Skipped,
    HarnessError,
    Delivery(DeliveryResult, Option<ErrorClass>),
}

impl Finding {
    pub fn of(outcome: &Outcome, delivery: Option<&Delivery>) -> Finding {
        match (outcome, delivery) {
            (Outcome::HarnessError { .. }, _) => Finding::HarnessError,
            (_, Some(d)) => Finding::Delivery(d.result, d.class),
            (Outcome::Connected(_), None) => Finding::Connected,
            (Outcome::Failed { class, .. }, None) => Finding::Failed(*class),
            (Outcome::Timeout { .. }, None) => Finding::Timeout,
            (Outcome::Unsupported { .. }, None) => Finding::Unsupported,
            (Outcome::Skipped { .. }, None) => Finding::Skipped,
        }
    }

    /// The finding an expectation names (a sender's `connected` is a delivery over TLS).
    pub fn expected(e: ExpectedOutcome, sender: bool) -> Finding {
        match e {
            ExpectedOutcome::Connected if sender => Finding::Delivery(Tls, None),
            ExpectedOutcome::Connected => Finding::Connected,
            ExpectedOutcome::Failed { class } => Finding::Failed(class),
            ExpectedOutcome::Timeout => Finding::Timeout,
            ExpectedOutcome::Unsupported => Finding::Unsupported,
            ExpectedOutcome::Delivery { result, class } => Finding::Delivery(result, class),
        }
    }

    /// Whether it is a success: a connection, or a delivery over TLS with nothing to note.
    pub fn is_success(self) -> bool {
        matches!(self, Finding::Connected | Finding::Delivery(Tls, None))
    }

    fn unmapped(self) -> bool {
        matches!(self, Finding::Failed(ErrorClass::Unmapped) | Finding::Delivery(_, Some(ErrorClass::Unmapped)))
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Connected => f.write_str("connected"),
            Finding::Failed(c) => write!(f, "failed: {c}"),
            Finding::Timeout => f.write_str("timeout"),
            Finding::Unsupported => f.write_str("unsupported"),
            Finding::Skipped => f.write_str("skipped"),
            Finding::HarnessError => f.write_str("harness error"),
            Finding::Delivery(r, Some(c)) => write!(f, "delivery {r}: {c}"),
            Finding::Delivery(r, None) => write!(f, "delivery {r}"),
        }
    }
}

/// A difference the blind view may show, and why only the server can tell them apart.
pub struct Coarsening {
    pub informed: Finding,
    pub blind: Finding,
    /// The stacks it is allowed for (empty: any).
    pub stacks: &'static [&'static str],
    pub why: &'static str,
}

use DeliveryResult::{Deferred, Plaintext, PlaintextFallback, Tls};
use ErrorClass::{
    ConnectionClosed, DhInvalidAccepted, HandshakeFailure, NoSharedCipher, NoSharedGroup, NotSmtp,
    ServerConfigRejected, SmtpRejected, StarttlsNotOffered, StarttlsRefused,
};

const ALERT: &str = "a bare handshake_failure alert is all the client sees; why the server sent it (no cipher or group in common, a setting it dropped, or a hostile server sending it on purpose) is in the server's log only";
const INVALID_PRIME: &str = "only the server knows its DH prime is composite or of small subgroup: to the client it is a handshake that completed";
const SILENT_454: &str = "at `may` the sender goes on in clear after a 454 to STARTTLS and logs nothing of it: only the server's record names the refusal";
const SILENT_421: &str = "the sender logs only that the connection closed after the 421 to STARTTLS it read (Postfix: 'lost connection … while sending MAIL FROM', Exim: 'Remote host closed connection in response to pipelined MAIL FROM', OpenSMTPD: 'Connection closed unexpectedly')";
const S_CLIENT: &str = "s_client reads the SMTP replies before TLS and prints none of them (its -debug dumps would, but they splice into the session's own output): a 421 banner is \"Didn't find STARTTLS\", a refused STARTTLS it goes past ends as \"wrong version number\" or an EOF";
const NOT_SMTP: &str = "a client that reads past a greeting without a reply code, or waits for one, sees only the server closing the connection (curl: 'response reading failed', Go: 'greeting: EOF', gnutls-cli: a timeout waiting for '220 ', Postfix: 'lost connection … while receiving the initial server greeting', sendmail: 'Connection reset'): only the server's record says it spoke SSH";
const HELO: &str = "after a rejected EHLO the sender falls back to HELO, where no extension (STARTTLS included) exists: what it reports is true of that session, and only the server's record holds the rejected EHLO";

/// The whole list: every difference between the two views that is not a defect.
pub const COARSENINGS: &[Coarsening] = &[
    Coarsening {
        informed: Finding::Failed(NoSharedCipher),
        blind: Finding::Failed(HandshakeFailure),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Failed(NoSharedGroup),
        blind: Finding::Failed(HandshakeFailure),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Failed(ServerConfigRejected),
        blind: Finding::Failed(HandshakeFailure),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Failed(ConnectionClosed),
        blind: Finding::Failed(HandshakeFailure),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Failed(DhInvalidAccepted),
        blind: Finding::Connected,
        stacks: &[],
        why: INVALID_PRIME,
    },
    Coarsening {
        informed: Finding::Delivery(Tls, Some(DhInvalidAccepted)),
        blind: Finding::Delivery(Tls, None),
        stacks: &[],
        why: INVALID_PRIME,
    },
    Coarsening {
        informed: Finding::Delivery(PlaintextFallback, Some(NoSharedGroup)),
        blind: Finding::Delivery(PlaintextFallback, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(NoSharedGroup)),
        blind: Finding::Delivery(Deferred, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(PlaintextFallback, Some(ServerConfigRejected)),
        blind: Finding::Delivery(PlaintextFallback, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(ServerConfigRejected)),
        blind: Finding::Delivery(Deferred, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(PlaintextFallback, Some(ConnectionClosed)),
        blind: Finding::Delivery(PlaintextFallback, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(ConnectionClosed)),
        blind: Finding::Delivery(Deferred, Some(HandshakeFailure)),
        stacks: &[],
        why: ALERT,
    },
    Coarsening {
        informed: Finding::Delivery(PlaintextFallback, Some(StarttlsRefused)),
        blind: Finding::Delivery(Plaintext, None),
        stacks: &["postfix-smtp", "exim-smtp", "sendmail-smtp", "sendmail-smtp@fallback", "opensmtpd-smtp"],
        why: SILENT_454,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(StarttlsRefused)),
        blind: Finding::Delivery(Deferred, Some(ConnectionClosed)),
        stacks: &[
            "postfix-smtp",
            "postfix-smtp@encrypt",
            "exim-smtp",
            "exim-smtp@require-tls",
            "opensmtpd-smtp",
            "opensmtpd-smtp@tls",
        ],
        why: SILENT_421,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(SmtpRejected)),
        blind: Finding::Delivery(Deferred, Some(StarttlsNotOffered)),
        stacks: &["postfix-smtp@encrypt", "exim-smtp@require-tls", "opensmtpd-smtp@tls"],
        why: HELO,
    },
    Coarsening {
        informed: Finding::Failed(StarttlsRefused),
        blind: Finding::Failed(ConnectionClosed),
        stacks: &["openssl-s_client"],
        why: S_CLIENT,
    },
    Coarsening {
        informed: Finding::Failed(SmtpRejected),
        blind: Finding::Failed(StarttlsNotOffered),
        stacks: &["openssl-s_client"],
        why: S_CLIENT,
    },
    Coarsening {
        informed: Finding::Failed(NotSmtp),
        blind: Finding::Failed(StarttlsNotOffered),
        stacks: &["openssl-s_client"],
        why: S_CLIENT,
    },
    Coarsening {
        informed: Finding::Failed(NotSmtp),
        blind: Finding::Failed(ConnectionClosed),
        stacks: &["curl", "gnutls-cli", "gnutls-cli@secure", "go-crypto-tls", "go-1.23", "go-1.24", "java-jsse"],
        why: NOT_SMTP,
    },
    Coarsening {
        informed: Finding::Delivery(Deferred, Some(NotSmtp)),
        blind: Finding::Delivery(Deferred, Some(ConnectionClosed)),
        stacks: &["postfix-smtp", "postfix-smtp@encrypt", "sendmail-smtp", "sendmail-smtp@fallback"],
        why: NOT_SMTP,
    },
];

/// How the two views of one cell compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreement {
    Same,
    /// An allowed coarsening, with its reason.
    Coarsened(&'static str),
}

/// The reason a blind finding may stand for an informed one for this stack, if the list allows it.
pub fn allowed(stack: &str, informed: Finding, blind: Finding) -> Option<&'static str> {
    COARSENINGS
        .iter()
        .find(|c| c.informed == informed && c.blind == blind && (c.stacks.is_empty() || c.stacks.contains(&stack)))
        .map(|c| c.why)
}

/// The comparison as a report keeps it: nothing where the views agree.
pub fn check(
    stack: &str,
    informed: (&Outcome, Option<&Delivery>),
    blind: (&Outcome, Option<&Delivery>),
) -> Option<BlindCheck> {
    let agreement = match compare(stack, informed, blind) {
        Ok(Agreement::Same) => return None,
        Ok(Agreement::Coarsened(why)) => BlindAgreement::Coarsened { why: why.into() },
        Err(why) => BlindAgreement::Disagrees { why },
    };
    let informed = Finding::of(informed.0, informed.1).to_string();
    Some(BlindCheck { informed, agreement })
}

/// Compare the two views of a cell: the same finding, or an allowed coarsening; never an
/// `unmapped` blind class; and a refusal blamed on the same side (`Unknown` in the blind view
/// only where the informed one is too).
pub fn compare(
    stack: &str,
    informed: (&Outcome, Option<&Delivery>),
    blind: (&Outcome, Option<&Delivery>),
) -> Result<Agreement, String> {
    let (i, b) = (Finding::of(informed.0, informed.1), Finding::of(blind.0, blind.1));
    if b.unmapped() {
        return Err(format!("blind: {b} (informed: {i}): an error text no table knows"));
    }
    let agreement = if i == b {
        Agreement::Same
    } else if let Some(why) = allowed(stack, i, b) {
        Agreement::Coarsened(why)
    } else {
        return Err(format!("blind: {b}, informed: {i}: not an allowed coarsening"));
    };
    if let (Outcome::Failed { side: si, .. }, Outcome::Failed { side: sb, .. }) = (informed.0, blind.0)
        && i == b
        && si != sb
        && *si != Side::Unknown
    {
        return Err(format!("{b}: blind blames {sb:?}, informed {si:?}"));
    }
    Ok(agreement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::Stage;

    fn failed(class: ErrorClass, side: Side) -> Outcome {
        Outcome::Failed { class, side, stage: Stage::Handshake, client_error: "x".into(), server_error: None }
    }

    #[test]
    fn every_coarsening_is_a_real_difference_with_a_reason() {
        for c in COARSENINGS {
            assert_ne!(c.informed, c.blind, "{}", c.informed);
            assert!(c.why.len() > 40, "{} → {}: say why", c.informed, c.blind);
            assert!(!c.blind.unmapped(), "unmapped is never an allowed blind class");
        }
    }

    #[test]
    fn a_peer_alert_may_stand_for_no_shared_cipher_on_the_servers_side() {
        let informed = failed(NoSharedCipher, Side::Server);
        let blind = failed(HandshakeFailure, Side::Server);
        let kept = check("rustls", (&informed, None), (&blind, None)).expect("they differ");
        assert_eq!(kept.informed, "failed: no_shared_cipher");
        assert!(matches!(kept.agreement, BlindAgreement::Coarsened { .. }), "{kept:?}");
        assert_eq!(check("rustls", (&informed, None), (&informed, None)), None);
    }

    #[test]
    fn an_unlisted_pair_unmapped_or_a_wrong_side_is_a_disagreement() {
        let informed = failed(DhInvalidAccepted, Side::Client);
        let unlisted = failed(NoSharedCipher, Side::Server);
        assert!(compare("openssl", (&informed, None), (&unlisted, None)).is_err());
        let unmapped = failed(ErrorClass::Unmapped, Side::Unknown);
        assert!(compare("openssl", (&informed, None), (&unmapped, None)).is_err());
        let (server, client) = (failed(NoSharedCipher, Side::Server), failed(NoSharedCipher, Side::Client));
        assert!(compare("openssl", (&server, None), (&client, None)).is_err());
    }

    #[test]
    fn a_coarsening_named_for_some_stacks_holds_for_those_only() {
        let informed = failed(StarttlsRefused, Side::Server);
        let blind = failed(ConnectionClosed, Side::Server);
        assert!(allowed("openssl-s_client", Finding::of(&informed, None), Finding::of(&blind, None)).is_some());
        assert!(allowed("openssl", Finding::of(&informed, None), Finding::of(&blind, None)).is_none());
    }

    #[test]
    fn a_senders_connected_expectation_is_a_delivery_over_tls() {
        assert_eq!(Finding::expected(ExpectedOutcome::Connected, true), Finding::Delivery(Tls, None));
        assert_eq!(Finding::expected(ExpectedOutcome::Connected, false), Finding::Connected);
        assert!(
            Finding::Delivery(Tls, None).is_success() && !Finding::Delivery(Tls, Some(DhInvalidAccepted)).is_success()
        );
    }
}
