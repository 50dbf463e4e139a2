//! Summaries derived from the measured cells, for published tables: per client stack, the DH
//! sizes it accepted and refused, the protocol versions and groups it negotiated; per server
//! profile, how many of the stacks that ran reached it and which did not; and for mail, what
//! became of the senders' messages, per profile and per sender.

use report_format::{DeliveryResult, ErrorClass, Outcome, Report};
use std::collections::BTreeSet;

/// What one client stack did across the server profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSummary {
    pub dh_accepted: BTreeSet<u32>,
    pub dh_refused: BTreeSet<u32>,
    pub protocols: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl ClientSummary {
    /// One line: `DHE 1024–4096 bits (refused ≤ 768) · TLSv1.2, TLSv1.3 · x25519, secp256r1`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        match (self.dh_accepted.first(), self.dh_accepted.last()) {
            (Some(lo), Some(hi)) if lo == hi => parts.push(format!("DHE {lo} bits")),
            (Some(lo), Some(hi)) => parts.push(format!("DHE {lo}–{hi} bits")),
            _ => parts.push("no DHE connection".to_string()),
        }
        if let Some(max_refused) = self.dh_refused.last() {
            parts.push(format!("refused DH ≤ {max_refused}"));
        }
        if !self.protocols.is_empty() {
            parts.push(self.protocols.iter().cloned().collect::<Vec<_>>().join(", "));
        }
        if !self.groups.is_empty() {
            parts.push(self.groups.iter().cloned().collect::<Vec<_>>().join(", "));
        }
        parts.join(" · ")
    }
}

/// Summarise one client stack's column.
pub fn client(report: &Report, client: &str) -> ClientSummary {
    let mut s = ClientSummary::default();
    for cell in report.cells.values().filter(|c| c.client == client) {
        match &cell.outcome {
            Outcome::Connected(n) => {
                s.protocols.insert(n.protocol.map_or_else(|| "TLS (not reported)".to_string(), |p| p.to_string()));
                if let Some(bits) = n.dh_bits {
                    s.dh_accepted.insert(bits);
                }
                if let Some(g) = &n.group {
                    s.groups.insert(g.clone());
                }
            }
            Outcome::Failed { class: ErrorClass::DhTooSmall | ErrorClass::DhTooLarge, .. } => {
                if let Some(bits) = report.servers.get(&cell.server).and_then(|p| p.dh).map(|d| d.bits()) {
                    s.dh_refused.insert(bits);
                }
            }
            _ => {}
        }
    }
    s
}

/// What the client stacks that ran did against one server profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSummary {
    pub connected: usize,
    /// Stacks that ran (not skipped, unsupported or harness errors).
    pub ran: usize,
    pub failing: Vec<String>,
}

impl ServerSummary {
    /// `connects 3 of 4 stacks; loses rustls`.
    pub fn line(&self) -> String {
        if self.failing.is_empty() {
            format!("{} of {} stacks connect", self.connected, self.ran)
        } else {
            format!("{} of {} stacks connect; loses {}", self.connected, self.ran, self.failing.join(", "))
        }
    }
}

/// Summarise one server profile's row.
pub fn server(report: &Report, server: &str) -> ServerSummary {
    let mut s = ServerSummary { connected: 0, ran: 0, failing: Vec::new() };
    for client in report.program_columns() {
        let Some(cell) = report.cell(server, client) else { continue };
        match cell.outcome {
            Outcome::Connected(_) => {
                s.connected += 1;
                s.ran += 1;
            }
            Outcome::Failed { .. } | Outcome::Timeout { .. } => {
                s.ran += 1;
                s.failing.push(client.clone());
            }
            Outcome::Skipped { .. } | Outcome::Unsupported { .. } | Outcome::HarnessError { .. } => {}
        }
    }
    s
}

/// What the senders' messages became, across a row (one server profile) or a column (one
/// sender): how many arrived over TLS, in clear (STARTTLS not offered), in clear after a TLS
/// failure, and how many are stuck (deferred or returned), with who or where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    pub tls: usize,
    pub plaintext: Vec<String>,
    pub fallback: Vec<String>,
    pub stuck: Vec<String>,
}

impl DeliverySummary {
    fn add(&mut self, result: DeliveryResult, who: &str) {
        match result {
            DeliveryResult::Tls => self.tls += 1,
            DeliveryResult::Plaintext => self.plaintext.push(who.to_string()),
            DeliveryResult::PlaintextFallback => self.fallback.push(who.to_string()),
            DeliveryResult::Deferred | DeliveryResult::Bounced => self.stuck.push(who.to_string()),
        }
    }

    fn ran(&self) -> usize {
        self.tls + self.plaintext.len() + self.fallback.len() + self.stuck.len()
    }

    /// The fates other than TLS that happened, with who or where.
    fn others(&self) -> impl Iterator<Item = (&'static str, &Vec<String>)> {
        [
            ("in clear (no STARTTLS)", &self.plaintext),
            ("in clear after a TLS failure", &self.fallback),
            ("stuck in the queue", &self.stuck),
        ]
        .into_iter()
        .filter(|(_, who)| !who.is_empty())
    }

    /// `over TLS 30 of 42 profiles · in clear after a TLS failure 5 · stuck in the queue 5`
    pub fn counts(&self, of: &str) -> String {
        let mut parts = vec![format!("over TLS {} of {} {of}", self.tls, self.ran())];
        parts.extend(self.others().map(|(what, who)| format!("{what} {}", who.len())));
        parts.join(" · ")
    }

    /// `over TLS 5 of 8 senders; in clear after a TLS failure: exim-smtp; stuck in the queue:
    /// sendmail-smtp` (`of` names what is counted: senders or profiles).
    pub fn line(&self, of: &str) -> String {
        let mut parts = vec![format!("over TLS {} of {} {of}", self.tls, self.ran())];
        parts.extend(self.others().map(|(what, who)| format!("{what}: {}", who.join(", "))));
        parts.join("; ")
    }
}

/// What the senders' messages to one server profile became.
pub fn deliveries_to(report: &Report, server: &str) -> DeliverySummary {
    let mut s = DeliverySummary::default();
    for sender in report.sender_columns() {
        if let Some(d) = report.cell(server, sender).and_then(|c| c.delivery.as_ref()) {
            s.add(d.result, sender);
        }
    }
    s
}

/// What one sender's messages became across the server profiles.
pub fn deliveries_from(report: &Report, sender: &str) -> DeliverySummary {
    let mut s = DeliverySummary::default();
    for server in &report.run.server_order {
        if let Some(d) = report.cell(server, sender).and_then(|c| c.delivery.as_ref()) {
            s.add(d.result, server);
        }
    }
    s
}
