//! From a sender's account of its message to a delivery and an outcome, purely. The result comes
//! from the sender's own view — its log and its queue, classified by its table — so it holds
//! against a server we do not control; our server's records are a cross-check, and where the
//! two disagree the cell is a harness error carrying both views, never a guess.

use crate::classify::Tables;
use crate::derive::{by_words, refused};
use crate::evidence::{ServerEvidence, ServerKind};
use mta::SenderView;
use report_format::{
    Connection, ConnectionRecord, Delivery, DeliveryAttempt, DeliveryResult, ErrorClass, Fate, Negotiated, Outcome,
    Reporter, Side, Stage,
};

/// A sender cell's delivery and its outcome (what the usual outcome fields say of it).
pub fn derive_delivery(
    view: &SenderView,
    table: &str,
    server: &ServerEvidence,
    tables: &Tables,
) -> (Outcome, Delivery) {
    let mut attempts = view.attempts.clone();
    let server_table = match &server.kind {
        ServerKind::Own { table, .. } => Some(table.as_str()),
        ServerKind::External => None,
    };
    let own = server_table.is_some();
    let connected: Vec<usize> = (0..attempts.len()).filter(|&i| attempts[i].connected).collect();
    // A sender still trying when the cell ended may have a connection open that its log does
    // not show yet: the server's last record.
    let in_flight = usize::from(!view.settled && server.records.len() == connected.len() + 1);
    let counts_agree = connected.len() + in_flight == server.records.len();
    if own && counts_agree {
        for (i, record) in connected.iter().zip(&server.records) {
            attempts[*i].server = Some(record.clone());
        }
    }
    // Each failed attempt's words by the sender's table; where our server kept a record of the
    // same connection, its refusal or its own words refine them as they do a client's.
    let mut sides = vec![Side::Unknown; attempts.len()];
    for (a, side) in attempts.iter_mut().zip(&mut sides) {
        let Some(words) = &a.error else { continue };
        let stage = if a.tls_tried == Some(true) { Stage::Handshake } else { Stage::Smtp };
        let records: Vec<ConnectionRecord> = a.server.iter().cloned().collect();
        let f = refused(&records, tables)
            .unwrap_or_else(|| by_words(table, stage, words, server_table, &records, &server.config_warnings, tables));
        a.class = Some(f.class);
        *side = f.side;
        // A refused connection was never made, whatever the sender's log counts as an attempt.
        if f.class == ErrorClass::ConnectionRefused {
            a.connected = false;
        }
    }
    // A sender that went on in clear on the same connection after the server refused STARTTLS
    // may say nothing of it (Postfix, Exim and sendmail at `may` do not): our server's record of
    // that connection names the refusal, and makes the clear delivery a fallback.
    let mut refused_starttls = None;
    if view.fate == Fate::Sent
        && let Some(&i) = connected.last()
        && attempts[i].tls.is_none()
        && attempts[i].error.is_none()
        && let Some(record) = attempts[i].server.clone()
        && record.refusal.as_ref().is_some_and(|r| r.stage == Stage::Starttls)
        && let Some(f) = refused(std::slice::from_ref(&record), tables)
        && f.class == ErrorClass::StarttlsRefused
    {
        attempts[i].tls_tried = Some(true);
        attempts[i].class = Some(f.class);
        sides[i] = f.side;
        refused_starttls = Some(i);
    }
    let delivering = connected.last().map(|&i| &attempts[i]);
    let failed_tls = attempts.iter().find(|a| a.tls_tried == Some(true) && a.error.is_some());
    let result = match view.fate {
        Fate::Sent => match delivering {
            Some(a) if a.tls.is_some() => DeliveryResult::Tls,
            _ if failed_tls.is_some() || refused_starttls.is_some() => DeliveryResult::PlaintextFallback,
            _ => DeliveryResult::Plaintext,
        },
        Fate::Queued => DeliveryResult::Deferred,
        Fate::Bounced => DeliveryResult::Bounced,
    };
    // The failure behind the result: the first failed handshake, else the last words of a
    // failed attempt.
    let failure = failed_tls
        .or_else(|| refused_starttls.map(|i| &attempts[i]))
        .or_else(|| attempts.iter().rev().find(|a| a.error.is_some()));
    let mut class = match result {
        DeliveryResult::Tls | DeliveryResult::Plaintext => None,
        DeliveryResult::PlaintextFallback | DeliveryResult::Deferred | DeliveryResult::Bounced => {
            failure.and_then(|a| a.class)
        }
    };
    let negotiated = (result == DeliveryResult::Tls).then(|| delivering.map(merged)).flatten();
    // A DHE handshake over a composite or small-subgroup prime should never complete.
    let invalid_dh = match &server.kind {
        ServerKind::Own { invalid_dh, .. } => *invalid_dh,
        ServerKind::External => None,
    };
    if invalid_dh.is_some() && negotiated.as_ref().is_some_and(|n| Connection::from(n.clone()).is_finite_field_dhe()) {
        class = Some(ErrorClass::DhInvalidAccepted);
    }
    let side = failure.and_then(|f| delivery_index(&attempts, f)).map_or(Side::Unknown, |i| sides[i]);
    let failure = failure.cloned();
    let delivery = Delivery {
        result,
        negotiated: negotiated.clone(),
        class,
        attempts,
        sender_log: view.log.clone(),
        queue: view.queue.clone(),
        timeline: view.timeline.clone(),
        settled: view.settled,
    };
    if own && let Some(disagreement) = disagreement(&delivery, server, counts_agree, in_flight) {
        let detail = format!(
            "the sender and the server disagree: {disagreement}. The sender: {} ({} attempt(s)): {}. The server: {}",
            delivery.label(),
            delivery.attempts.len(),
            delivery.sender_log.join(" | "),
            server.records.iter().map(record_summary).collect::<Vec<_>>().join(" | ")
        );
        return (Outcome::HarnessError { detail }, delivery);
    }
    let outcome = outcome_of(&delivery, failure.as_ref(), side, invalid_dh, view.took);
    (outcome, delivery)
}

/// Where an attempt is in the list.
fn delivery_index(attempts: &[DeliveryAttempt], a: &DeliveryAttempt) -> Option<usize> {
    attempts.iter().position(|x| std::ptr::eq(x, a))
}

/// What the delivering connection negotiated: the sender's words, with what its log leaves out
/// (group, DH size) from the server's record of the same connection.
fn merged(a: &DeliveryAttempt) -> Negotiated {
    let mut n = a.tls.clone().unwrap_or_default();
    if let Some(s) = a.server.as_ref().and_then(|r| r.tls.as_ref()) {
        n.group = n.group.take().or_else(|| s.group.clone());
        n.dh_bits = n.dh_bits.or(s.dh_bits);
        n.protocol = n.protocol.or(s.protocol);
        n.cipher = n.cipher.take().or_else(|| s.cipher.clone());
    }
    n
}

/// Where the server's records contradict the sender's account, if they do (only what both
/// sides know is compared).
fn disagreement(d: &Delivery, server: &ServerEvidence, counts_agree: bool, in_flight: usize) -> Option<String> {
    let connected = d.attempts.iter().filter(|a| a.connected).count();
    if !counts_agree {
        return Some(format!(
            "the sender made {connected} connection(s), the server recorded {} from it",
            server.records.len()
        ));
    }
    let accepted: usize = server.records.iter().filter_map(|r| r.messages).sum();
    let accepted_known = server.records.iter().all(|r| r.messages.is_some());
    let last = server.records.iter().rev().nth(in_flight);
    match d.result {
        DeliveryResult::Deferred | DeliveryResult::Bounced if accepted > 0 => {
            Some(format!("the sender still holds the message, the server accepted {accepted}"))
        }
        DeliveryResult::Tls | DeliveryResult::Plaintext | DeliveryResult::PlaintextFallback
            if accepted_known && accepted == 0 =>
        {
            Some("the sender says it delivered, the server accepted no message".into())
        }
        DeliveryResult::Tls if last.is_some_and(|r| r.tls.is_none() && r.starttls == Some(false)) => {
            Some("the sender says it delivered over TLS, the server saw no TLS on that connection".into())
        }
        DeliveryResult::Plaintext | DeliveryResult::PlaintextFallback if last.is_some_and(|r| r.tls.is_some()) => {
            Some("the sender says it delivered in clear, the server saw TLS on that connection".into())
        }
        _ => None,
    }
}

fn record_summary(r: &ConnectionRecord) -> String {
    let tls = r.tls.as_ref().map_or_else(|| "no TLS".to_string(), Negotiated::label);
    let messages = r.messages.map_or_else(|| "messages unknown".to_string(), |m| format!("{m} message(s)"));
    let error = r.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default();
    format!("{} {tls}, {messages}{error}", r.peer.as_deref().unwrap_or("?"))
}

/// The usual outcome fields of a delivery.
fn outcome_of(
    d: &Delivery,
    failure: Option<&DeliveryAttempt>,
    side: Side,
    invalid_dh: Option<report_format::DhGroup>,
    took: std::time::Duration,
) -> Outcome {
    let words = |a: Option<&DeliveryAttempt>| {
        a.map(|a| a.error.clone().unwrap_or_else(|| a.status.clone())).unwrap_or_else(|| d.queue.clone())
    };
    let server_words = |a: Option<&DeliveryAttempt>| {
        let record = a.and_then(|a| a.server.as_ref())?;
        record.error.clone().or_else(|| record.refusal.as_ref().map(|r| r.reply.clone()))
    };
    match d.result {
        DeliveryResult::Tls => match (d.class, invalid_dh) {
            (Some(ErrorClass::DhInvalidAccepted), Some(dh)) => Outcome::Failed {
                class: ErrorClass::DhInvalidAccepted,
                side: Side::Client,
                stage: Stage::Handshake,
                client_error: format!(
                    "the sender delivered over TLS ({}) with the server's {} group",
                    d.label(),
                    dh.name()
                ),
                server_error: None,
            },
            _ => Outcome::Connected(Connection {
                negotiated: d.negotiated.clone().unwrap_or_default(),
                reported_by: Reporter::Client,
            }),
        },
        DeliveryResult::Plaintext => Outcome::Failed {
            class: ErrorClass::StarttlsNotOffered,
            side: Side::Server,
            stage: Stage::Starttls,
            client_error: d.attempts.last().map(|a| a.status.clone()).unwrap_or_default(),
            server_error: None,
        },
        // Still waiting on a server that said nothing when the cell ended.
        DeliveryResult::Deferred if !d.settled && d.class.is_none() => {
            Outcome::Timeout { after_ms: took.as_millis() as u64 }
        }
        DeliveryResult::PlaintextFallback | DeliveryResult::Deferred | DeliveryResult::Bounced => Outcome::Failed {
            class: d.class.unwrap_or(ErrorClass::Unmapped),
            side,
            stage: if failure.is_some_and(|a| a.tls_tried == Some(true)) { Stage::Handshake } else { Stage::Smtp },
            client_error: words(failure),
            server_error: server_words(failure),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::ServerKind;
    use report_format::{Availability, DhGroup, End, Protocol, Refusal};

    fn tables() -> Tables {
        Tables::builtin().unwrap()
    }

    fn record(peer: &str, tls: bool, messages: Option<usize>) -> ConnectionRecord {
        ConnectionRecord {
            peer: Some(peer.into()),
            starttls: Some(tls),
            tls: tls.then(|| Negotiated::tls(Protocol::Tls12, "DHE-RSA-AES128-GCM-SHA256", None, Some(2048))),
            messages,
            end: Some(End::Quit),
            ..ConnectionRecord::default()
        }
    }

    fn own(records: Vec<ConnectionRecord>) -> ServerEvidence {
        ServerEvidence {
            kind: ServerKind::Own { table: "server-openssl".into(), invalid_dh: None },
            availability: Availability::Ready,
            records,
            config_warnings: vec![],
        }
    }

    fn failed_tls(words: &str) -> DeliveryAttempt {
        DeliveryAttempt { tls_tried: Some(true), error: Some(words.into()), ..DeliveryAttempt::default() }
    }

    fn clear(status: &str) -> DeliveryAttempt {
        DeliveryAttempt { tls_tried: Some(false), status: status.into(), ..DeliveryAttempt::default() }
    }

    fn view(attempts: Vec<DeliveryAttempt>, fate: Fate) -> SenderView {
        SenderView {
            queue_id: Some("Q1".into()),
            attempts,
            fate,
            settled: true,
            log: vec!["a line".into()],
            queue: "Q1: not in the queue".into(),
            took: std::time::Duration::from_millis(100),
            timeline: vec![],
        }
    }

    const DH_SMALL: &str = "STARTTLS=client, error: connect failed=-1, reason=dh key too small";

    /// The sender's own account decides, the server's records are attached to each connection.
    #[test]
    fn a_fallback_is_a_failed_handshake_then_a_delivery_in_clear() {
        let v = view(vec![failed_tls(DH_SMALL), clear("stat=Sent")], Fate::Sent);
        let server = own(vec![record("127.0.0.2:1", false, Some(0)), record("127.0.0.2:2", false, Some(1))]);
        let (outcome, d) = derive_delivery(&v, "sender-sendmail", &server, &tables());
        assert_eq!((d.result, d.class), (DeliveryResult::PlaintextFallback, Some(ErrorClass::DhTooSmall)));
        assert_eq!(d.label(), "plaintext after dh_too_small");
        assert!(d.attempts.iter().all(|a| a.server.is_some()));
        assert!(matches!(outcome, Outcome::Failed { class: ErrorClass::DhTooSmall, .. }), "{outcome:?}");
        // The same account, blind (no server of ours): the same result.
        let (_, blind) = derive_delivery(&v, "sender-sendmail", &ServerEvidence::external(), &tables());
        assert_eq!((blind.result, blind.class), (DeliveryResult::PlaintextFallback, Some(ErrorClass::DhTooSmall)));
    }

    #[test]
    fn a_message_left_queued_is_deferred_with_the_class_of_its_failure() {
        let v = view(vec![failed_tls(DH_SMALL), failed_tls(DH_SMALL)], Fate::Queued);
        let server = own(vec![record("127.0.0.2:1", false, Some(0)), record("127.0.0.2:2", false, Some(0))]);
        let (outcome, d) = derive_delivery(&v, "sender-sendmail", &server, &tables());
        assert_eq!(d.label(), "deferred: dh_too_small");
        assert!(matches!(outcome, Outcome::Failed { class: ErrorClass::DhTooSmall, stage: Stage::Handshake, .. }));
    }

    /// At `may`, Postfix, Exim and sendmail say nothing of a 454 to STARTTLS: our server's record
    /// names the refusal; blind, the delivery is plaintext.
    #[test]
    fn a_refused_starttls_the_sender_is_silent_about_is_named_by_the_server() {
        let v = view(vec![clear("status=sent (250 2.0.0 Ok)")], Fate::Sent);
        let mut r = record("127.0.0.2:1", false, Some(1));
        r.refusal = Some(Refusal { stage: Stage::Starttls, reply: "454 4.7.0 TLS not available".into() });
        let (_, d) = derive_delivery(&v, "sender-postfix", &own(vec![r]), &tables());
        assert_eq!((d.result, d.class), (DeliveryResult::PlaintextFallback, Some(ErrorClass::StarttlsRefused)));
        assert_eq!(d.attempts[0].error, None, "the sender's words stay the sender's");
        let (_, blind) = derive_delivery(&v, "sender-postfix", &ServerEvidence::external(), &tables());
        assert_eq!((blind.result, blind.class), (DeliveryResult::Plaintext, None));
    }

    #[test]
    fn when_the_two_sides_disagree_it_is_a_harness_error_with_both_views() {
        let tls = DeliveryAttempt {
            tls_tried: Some(true),
            tls: Some(Negotiated::tls(Protocol::Tls13, "TLS_AES_256_GCM_SHA384", None, None)),
            ..DeliveryAttempt::default()
        };
        // The sender says delivered, the server accepted nothing.
        let v = view(vec![tls.clone()], Fate::Sent);
        let (outcome, d) =
            derive_delivery(&v, "sender-postfix", &own(vec![record("127.0.0.2:1", true, Some(0))]), &tables());
        let Outcome::HarnessError { detail } = outcome else { panic!("{outcome:?}") };
        assert!(detail.contains("accepted no message") && detail.contains("a line"), "{detail}");
        assert_eq!(d.result, DeliveryResult::Tls, "the sender's view is kept for the page");
        // One connection the sender does not account for.
        let two = own(vec![record("127.0.0.2:1", true, Some(1)), record("127.0.0.2:2", false, Some(0))]);
        let (outcome, _) = derive_delivery(&v, "sender-postfix", &two, &tables());
        assert!(matches!(outcome, Outcome::HarnessError { .. }), "{outcome:?}");
        // Unless the sender was still trying: its last connection is in flight.
        let mut unsettled =
            view(vec![failed_tls("timed out while receiving the initial server greeting")], Fate::Queued);
        unsettled.settled = false;
        let stalled = own(vec![record("127.0.0.2:1", false, Some(0)), record("127.0.0.2:2", false, None)]);
        let (outcome, d) = derive_delivery(&unsettled, "sender-postfix", &stalled, &tables());
        assert!(matches!(outcome, Outcome::Failed { class: ErrorClass::ServerTimeout, .. }), "{outcome:?}");
        assert_eq!(d.label(), "deferred: server_timeout, still trying");
        assert!(d.attempts[0].server.is_some());
        // Fields the server did not log are not compared.
        let unknown = own(vec![record("127.0.0.2:1", true, None)]);
        assert!(matches!(derive_delivery(&v, "sender-postfix", &unknown, &tables()).0, Outcome::Connected(_)));
    }

    #[test]
    fn a_delivery_over_an_invalid_prime_is_a_finding_and_unknown_words_stay_loud() {
        let dhe = DeliveryAttempt {
            tls_tried: Some(true),
            tls: Some(Negotiated::tls(Protocol::Tls12, "DHE-RSA-AES128-GCM-SHA256", None, None)),
            ..DeliveryAttempt::default()
        };
        let mut server = own(vec![record("127.0.0.2:1", true, Some(1))]);
        server.kind = ServerKind::Own { table: "server-openssl".into(), invalid_dh: Some(DhGroup::Composite2048) };
        let (outcome, d) = derive_delivery(&view(vec![dhe], Fate::Sent), "sender-postfix", &server, &tables());
        assert_eq!((d.result, d.class), (DeliveryResult::Tls, Some(ErrorClass::DhInvalidAccepted)));
        assert!(d.label().ends_with("(dh_invalid_accepted)"), "{}", d.label());
        assert!(matches!(outcome, Outcome::Failed { class: ErrorClass::DhInvalidAccepted, .. }));
        let v = view(vec![failed_tls("a sentence no table has")], Fate::Queued);
        let (outcome, d) = derive_delivery(&v, "sender-postfix", &ServerEvidence::external(), &tables());
        assert_eq!(d.class, Some(ErrorClass::Unmapped));
        assert!(matches!(outcome, Outcome::Failed { class: ErrorClass::Unmapped, .. }));
    }
}
