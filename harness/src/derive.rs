//! From evidence to outcome, purely: what the client said, classified by its stack's table,
//! with the rules that let our own server's records decide where they know better. Each rule is
//! one step below, in the order it applies, and has its own tests. With no server evidence
//! (`Evidence::blind`) the same function is the client-only view `probe` must use.

use crate::classify::Tables;
use crate::delivery::derive_delivery;
use crate::evidence::{ClientRun, Evidence, ServerKind};
use report_format::{Availability, Connection, ConnectionRecord, Delivery, ErrorClass, Outcome, Reporter, Side, Stage};
use wire::ClientResult;

/// The outcome a cell's evidence shows.
pub fn derive_outcome(evidence: &Evidence, tables: &Tables) -> Outcome {
    derive_cell(evidence, tables).0
}

/// The outcome a cell's evidence shows, and for a sender what became of its message.
pub fn derive_cell(evidence: &Evidence, tables: &Tables) -> (Outcome, Option<Delivery>) {
    if let Some(ClientRun::Delivery(view)) = &evidence.client
        && evidence.stack.is_ready()
        && evidence.server.availability.is_ready()
    {
        // A sender's message: its own account decides, the server's records cross-check it
        // (the rules below are about client programs).
        let (outcome, delivery) = derive_delivery(view, &evidence.client_table, &evidence.server, tables);
        return (outcome, Some(delivery));
    }
    (client_outcome(evidence, tables), None)
}

/// A client program's outcome.
fn client_outcome(evidence: &Evidence, tables: &Tables) -> Outcome {
    // 1. A stack that is not here is skipped; one that breaks its contract is ours to fix.
    if let Some(outcome) = unavailable(&evidence.stack, false) {
        return outcome;
    }
    // 2. A server that did not start: skipped, unsupported, a finding, or ours to fix.
    if let Some(outcome) = unavailable(&evidence.server.availability, true) {
        return outcome;
    }
    let Some(run) = &evidence.client else {
        return Outcome::HarnessError { detail: "the client did not run although stack and server were ready".into() };
    };
    let server = &evidence.server;
    let own = match &server.kind {
        ServerKind::Own { table, invalid_dh } => Some((table.as_str(), *invalid_dh)),
        ServerKind::External => None,
    };
    // 3. Mail the server accepted without TLS is a downgrade, whatever the client says of it.
    if let Some(outcome) = downgraded(run, server) {
        return outcome;
    }
    match run {
        ClientRun::Result(ClientResult::Ok(n)) => {
            // 4. Parameters a client did not expose come from our server's record, marked so.
            let by_server = server.records.iter().rev().find_map(|r| r.tls.clone()).filter(|_| !n.is_reported());
            let connection = match by_server {
                Some(negotiated) => Connection { negotiated, reported_by: Reporter::Server },
                None => Connection::from(n.clone()),
            };
            // 5. A DHE handshake over a composite or small-subgroup prime should never complete.
            if let Some(dh) = own.and_then(|(_, dh)| dh)
                && connection.is_finite_field_dhe()
            {
                return Outcome::Failed {
                    class: ErrorClass::DhInvalidAccepted,
                    side: Side::Client,
                    stage: Stage::Handshake,
                    client_error: format!(
                        "the client completed the handshake ({}) over the server's {} group",
                        connection.label(),
                        dh.name()
                    ),
                    server_error: None,
                };
            }
            Outcome::Connected(connection)
        }
        ClientRun::Result(ClientResult::Error { stage, error }) => failed(*stage, error, evidence, own, tables),
        ClientRun::Unsupported(reason) => Outcome::Unsupported { reason: reason.clone() },
        ClientRun::Timeout(after) => Outcome::Timeout { after_ms: after.as_millis() as u64 },
        ClientRun::HarnessError(detail) => Outcome::HarnessError { detail: detail.clone() },
        // Read by `derive_delivery` before these rules.
        ClientRun::Delivery(_) => {
            Outcome::HarnessError { detail: "a sender's account reached the client rules".into() }
        }
    }
}

/// A participant that could not take part: what its cells are.
fn unavailable(a: &Availability, is_server: bool) -> Option<Outcome> {
    match a {
        Availability::Ready => None,
        Availability::Skipped(reason) => Some(Outcome::Skipped { reason: reason.clone() }),
        Availability::Unsupported(reason) => Some(Outcome::Unsupported { reason: reason.clone() }),
        Availability::Rejected(detail) if is_server => Some(Outcome::Failed {
            class: ErrorClass::ServerConfigRejected,
            side: Side::Server,
            stage: Stage::Connect,
            client_error: "the client did not run: the server refused its own configuration".into(),
            server_error: Some(detail.clone()),
        }),
        Availability::Rejected(detail) | Availability::Broken(detail) if is_server => {
            Some(Outcome::HarnessError { detail: format!("the server did not start: {detail}") })
        }
        Availability::Rejected(detail) | Availability::Broken(detail) => {
            Some(Outcome::HarnessError { detail: detail.clone() })
        }
    }
}

/// Rule 3: the server says it accepted mail in clear, or the client says it carried on in clear.
fn downgraded(run: &ClientRun, server: &crate::evidence::ServerEvidence) -> Option<Outcome> {
    let in_clear: usize = server.records.iter().filter_map(|r| r.messages_in_clear()).sum();
    let claims_plaintext = matches!(run, ClientRun::Result(ClientResult::Ok(n)) if n.is_plaintext());
    if in_clear == 0 && !claims_plaintext {
        return None;
    }
    let client_error = match run {
        ClientRun::Result(ClientResult::Ok(n)) => format!("the client reported success with protocol {:?}", n.label()),
        ClientRun::Result(ClientResult::Error { error, .. }) => error.clone(),
        other => format!("{other:?}"),
    };
    Some(Outcome::Failed {
        class: ErrorClass::DowngradedToPlaintext,
        side: Side::Client,
        stage: Stage::Starttls,
        client_error,
        server_error: (in_clear > 0).then(|| format!("the server accepted {in_clear} message(s) without TLS")),
    })
}

/// A client that reported a failure.
fn failed(
    stage: Stage,
    error: &str,
    evidence: &Evidence,
    own: Option<(&str, Option<report_format::DhGroup>)>,
    tables: &Tables,
) -> Outcome {
    let server = &evidence.server;
    // 6. The server refused at the SMTP level (banner, EHLO, STARTTLS): that is what happened,
    //    whatever words the client found for it afterwards ("wrong version number"…).
    if let Some(f) = refused(&server.records, tables) {
        return Outcome::Failed {
            class: f.class,
            side: f.side,
            stage,
            client_error: error.to_string(),
            server_error: f.server_words,
        };
    }
    // 7. A client that cannot reach our own server is our problem, not an interop failure.
    if stage == Stage::Connect && own.is_some() {
        return Outcome::HarnessError { detail: format!("the client could not reach our own server: {error}") };
    }
    let server_table = own.map(|(table, _)| table);
    let f =
        by_words(&evidence.client_table, stage, error, server_table, &server.records, &server.config_warnings, tables);
    Outcome::Failed {
        class: f.class,
        side: f.side,
        stage,
        client_error: error.to_string(),
        server_error: f.server_words,
    }
}

/// A failure, classified, with the server's words that went into it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub class: ErrorClass,
    pub side: Side,
    pub server_words: Option<String>,
}

/// Rule 6: a refusal at the SMTP level in the server's records decides the class.
pub(crate) fn refused(records: &[ConnectionRecord], tables: &Tables) -> Option<Failure> {
    let refusal = records.iter().find_map(|r| r.refusal.clone())?;
    let c = tables.classify("common", refusal.stage, &refusal.reply, None, &[]);
    Some(Failure { class: c.class, side: c.side, server_words: Some(refusal.reply) })
}

/// Rules 8 and 9: the stack's words by its table; where they only say the peer aborted or the
/// connection closed, the server's own words (if any) say why; and a server that dropped part of
/// its own configuration at load time (Postfix refusing a DH file) decides a failure the client
/// can only see as missing ciphers or a closed connection — never an unmapped text, which stays
/// loud.
pub(crate) fn by_words(
    table: &str,
    stage: Stage,
    error: &str,
    server_table: Option<&str>,
    records: &[ConnectionRecord],
    config_warnings: &[String],
    tables: &Tables,
) -> Failure {
    let server_errors: Vec<String> = records.iter().filter_map(|r| r.error.clone()).collect();
    let c = tables.classify(table, stage, error, server_table, &server_errors);
    let mut server_words = server_errors.join("\n");
    if let Some(t) = server_table
        && matches!(c.class, ErrorClass::NoSharedCipher | ErrorClass::ConnectionClosed)
        && tables.server_words(t, config_warnings).map(|w| w.class) == Some(ErrorClass::ServerConfigRejected)
    {
        let warnings = config_warnings.join("\n");
        server_words = if server_words.is_empty() { warnings } else { format!("{warnings}\n{server_words}") };
        return Failure {
            class: ErrorClass::ServerConfigRejected,
            side: Side::Server,
            server_words: Some(server_words),
        };
    }
    Failure { class: c.class, side: c.side, server_words: (!server_words.is_empty()).then_some(server_words) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::ServerEvidence;
    use report_format::{ConnectionRecord, DhGroup, Negotiated, Protocol, Refusal};
    use std::time::Duration;

    fn tables() -> Tables {
        Tables::builtin().unwrap()
    }

    fn own(table: &str, records: Vec<ConnectionRecord>, warnings: &[&str]) -> ServerEvidence {
        ServerEvidence {
            kind: ServerKind::Own { table: table.into(), invalid_dh: None },
            availability: Availability::Ready,
            records,
            config_warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn ran(table: &str, result: ClientResult, server: ServerEvidence) -> Evidence {
        Evidence {
            stack: Availability::Ready,
            client_table: table.into(),
            client: Some(ClientRun::Result(result)),
            server,
        }
    }

    fn error(stage: Stage, text: &str) -> ClientResult {
        ClientResult::error(stage, text)
    }

    fn class(o: &Outcome) -> Option<ErrorClass> {
        match o {
            Outcome::Failed { class, .. } => Some(*class),
            _ => None,
        }
    }

    fn record_with_error(e: &str) -> ConnectionRecord {
        ConnectionRecord { error: Some(e.into()), ..ConnectionRecord::default() }
    }

    const ALERT40: &str = "received fatal alert: HandshakeFailure";
    const POSTFIX_DH: &str = "warning: error configuring explicit DH parameters: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/ssl_lib.c:6016:";

    /// Rules 1 and 2, table-driven: participants that could not take part.
    #[test]
    fn unavailable_participants() {
        let cases: Vec<(Availability, Availability, &str)> = vec![
            (Availability::Skipped("x".into()), Availability::Ready, "skipped"),
            (Availability::Broken("x".into()), Availability::Ready, "harness_error"),
            (Availability::Ready, Availability::Skipped("x".into()), "skipped"),
            (Availability::Ready, Availability::Unsupported("x".into()), "unsupported"),
            (Availability::Ready, Availability::Rejected("x".into()), "failed"),
            (Availability::Ready, Availability::Broken("x".into()), "harness_error"),
        ];
        for (stack, server, kind) in cases {
            let mut server_ev = own("server-openssl", vec![], &[]);
            server_ev.availability = server.clone();
            let e = Evidence { stack: stack.clone(), client_table: "openssl".into(), client: None, server: server_ev };
            let o = derive_outcome(&e, &tables());
            assert_eq!(o.kind(), kind, "{stack:?} {server:?}: {o:?}");
            if kind == "failed" {
                assert_eq!(class(&o), Some(ErrorClass::ServerConfigRejected));
            }
        }
    }

    /// Rule 3: mail accepted in clear, or a client saying it went on in clear.
    #[test]
    fn downgrades_are_seen_from_either_side() {
        let t = tables();
        let plain = ConnectionRecord { messages: Some(1), ..ConnectionRecord::default() };
        let e = ran(
            "openssl",
            ClientResult::Ok(Negotiated::tls(Protocol::Tls13, "x", None, None)),
            own("server-openssl", vec![plain], &[]),
        );
        assert_eq!(class(&derive_outcome(&e, &t)), Some(ErrorClass::DowngradedToPlaintext));
        let e = ran("openssl", ClientResult::Ok(Negotiated::plaintext()), own("server-postfix", vec![], &[]));
        assert_eq!(class(&derive_outcome(&e, &t)), Some(ErrorClass::DowngradedToPlaintext));
        // An MTA that did not log how many messages it took: not a downgrade by guesswork.
        let unknown = ConnectionRecord { messages: None, ..ConnectionRecord::default() };
        let e = ran(
            "openssl",
            ClientResult::Ok(Negotiated::tls(Protocol::Tls13, "x", None, None)),
            own("server-exim", vec![unknown], &[]),
        );
        assert_eq!(derive_outcome(&e, &t).kind(), "connected");
    }

    /// Rules 4 and 5: parameters reported by the server, invalid primes accepted (also by a
    /// client that does not say what it negotiated).
    #[test]
    fn connected_cells() {
        let t = tables();
        let mut server = own("server-openssl", vec![], &[]);
        server.kind = ServerKind::Own { table: "server-openssl".into(), invalid_dh: Some(DhGroup::Composite2048) };
        let e = ran(
            "openssl",
            ClientResult::Ok(Negotiated::tls(Protocol::Tls12, "DHE-RSA-AES128-GCM-SHA256", None, Some(2048))),
            server.clone(),
        );
        assert_eq!(class(&derive_outcome(&e, &t)), Some(ErrorClass::DhInvalidAccepted));
        let e = ran(
            "openssl",
            ClientResult::Ok(Negotiated::tls(Protocol::Tls13, "TLS_AES_128_GCM_SHA256", Some("x25519".into()), None)),
            server,
        );
        assert_eq!(derive_outcome(&e, &t).kind(), "connected", "TLS 1.3 negotiates a named group, not the prime");
        let dhe = ConnectionRecord {
            tls: Some(Negotiated::tls(Protocol::Tls12, "DHE-RSA-AES128-GCM-SHA256", None, Some(2048))),
            ..ConnectionRecord::default()
        };
        let mut composite = own("server-openssl", vec![dhe], &[]);
        composite.kind =
            ServerKind::Own { table: "server-openssl".into(), invalid_dh: Some(DhGroup::SmallSubgroup2048) };
        let e = ran("lettre", ClientResult::Ok(Negotiated::unreported()), composite);
        assert_eq!(class(&derive_outcome(&e, &t)), Some(ErrorClass::DhInvalidAccepted));
        let by_server = ConnectionRecord {
            tls: Some(Negotiated::tls(Protocol::Tls13, "X", Some("x25519".into()), None)),
            ..ConnectionRecord::default()
        };
        let e = ran("lettre", ClientResult::Ok(Negotiated::unreported()), own("server-openssl", vec![by_server], &[]));
        match derive_outcome(&e, &t) {
            Outcome::Connected(c) => {
                assert_eq!((c.reported_by, c.label()), (Reporter::Server, "TLSv1.3 x25519".into()))
            }
            o => panic!("{o:?}"),
        }
    }

    /// Rule 6: the server's own refusal decides over the client's vaguer words.
    #[test]
    fn the_servers_first_refusal_decides() {
        let refused = ConnectionRecord {
            refusal: Some(Refusal { stage: Stage::Starttls, reply: "454 4.7.0 TLS not available".into() }),
            ..ConnectionRecord::default()
        };
        let e = ran(
            "openssl-s_client",
            error(Stage::Handshake, "ssl3_get_record:wrong version number"),
            own("server-openssl", vec![refused], &[]),
        );
        let o = derive_outcome(&e, &tables());
        assert_eq!(class(&o), Some(ErrorClass::StarttlsRefused));
        // Blind, the client's words alone decide: not TLS where a ServerHello was due.
        assert_eq!(class(&derive_outcome(&e.blind(), &tables())), Some(ErrorClass::ConnectionClosed));
    }

    /// Rule 7: our own server unreachable is a harness error; someone else's is a finding.
    #[test]
    fn connect_failures() {
        let e = ran("openssl", error(Stage::Connect, "Connection refused"), own("server-openssl", vec![], &[]));
        assert_eq!(derive_outcome(&e, &tables()).kind(), "harness_error");
        assert_eq!(derive_outcome(&e.blind(), &tables()).kind(), "failed");
    }

    /// Rule 8: a peer alert defers to the server's words; without them, the server refused the
    /// handshake and no more is known.
    #[test]
    fn alerts_defer_to_the_servers_words() {
        let t = tables();
        let server =
            own("server-openssl", vec![record_with_error("error:0A0000C1:SSL routines::no shared cipher")], &[]);
        let e = ran("rustls", error(Stage::Handshake, ALERT40), server);
        assert_eq!(class(&derive_outcome(&e, &t)), Some(ErrorClass::NoSharedCipher));
        assert_eq!(class(&derive_outcome(&e.blind(), &t)), Some(ErrorClass::HandshakeFailure));
    }

    /// Rule 9: a configuration the server dropped decides "no shared cipher" and "closed", and
    /// never hides an unknown text (bug: it used to rewrite `unmapped` too).
    #[test]
    fn a_dropped_configuration_decides_but_unmapped_stays_loud() {
        let t = tables();
        let closed = ran(
            "openssl",
            error(Stage::Handshake, "unexpected eof while reading"),
            own("server-postfix", vec![], &[POSTFIX_DH]),
        );
        let o = derive_outcome(&closed, &t);
        assert_eq!(class(&o), Some(ErrorClass::ServerConfigRejected));
        assert!(matches!(&o, Outcome::Failed { server_error: Some(w), .. } if w.contains("dh key too small")));
        let unknown = ran(
            "openssl",
            error(Stage::Handshake, "the moon is made of cheese"),
            own("server-postfix", vec![], &[POSTFIX_DH]),
        );
        assert_eq!(class(&derive_outcome(&unknown, &t)), Some(ErrorClass::Unmapped), "unmapped must stay loud");
        // A warning that is not about the server's own configuration decides nothing.
        let other = ran(
            "openssl",
            error(Stage::Handshake, "unexpected eof while reading"),
            own("server-postfix", vec![], &["warning: something else"]),
        );
        assert_eq!(class(&derive_outcome(&other, &t)), Some(ErrorClass::ConnectionClosed));
    }

    #[test]
    fn runs_that_are_not_results() {
        let t = tables();
        let mut e = ran("openssl", error(Stage::Smtp, "x"), own("server-openssl", vec![], &[]));
        e.client = Some(ClientRun::Unsupported("no such flag".into()));
        assert_eq!(derive_outcome(&e, &t).kind(), "unsupported");
        e.client = Some(ClientRun::Timeout(Duration::from_millis(500)));
        assert_eq!(derive_outcome(&e, &t).kind(), "timeout");
        e.client = Some(ClientRun::HarnessError("crashed".into()));
        assert_eq!(derive_outcome(&e, &t).kind(), "harness_error");
    }
}
