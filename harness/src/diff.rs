//! Run-to-run diff: which cells broke (connected → failed; a sender's message no longer over
//! TLS), which were fixed, which changed error class, negotiated parameters or the message's
//! fate, and which exist in one run only. Compared by outcome signature and delivery fate, never
//! by error text (it holds ports and thread ids).

use report_format::{CellReport, DeliveryResult, ErrorClass, Outcome, Report};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a cell changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It connected before and fails (or times out) now.
    Broken,
    /// It failed before and connects now.
    Fixed,
    /// Another class, other negotiated parameters, or another kind of outcome.
    Changed,
}

/// What is compared of a cell: its outcome and, for a sender, what became of its message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    /// The outcome's own fields (`kind`, `class`, …), as in a report.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// A sender's delivery: its result and the class behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fate: Option<(DeliveryResult, Option<ErrorClass>)>,
    /// What a table shows of it (`deferred: dh_too_small`).
    pub label: String,
}

impl Seen {
    /// A client program's cell.
    pub fn outcome(outcome: Outcome) -> Seen {
        Seen { label: outcome.label(), outcome, fate: None }
    }

    /// A cell of a report, a sender's with its delivery.
    pub fn cell(cell: &CellReport) -> Seen {
        Seen {
            outcome: cell.outcome.clone(),
            fate: cell.delivery.as_ref().map(|d| (d.result, d.class)),
            label: cell.label(),
        }
    }

    /// Whether it ended well: connected, or the message delivered over TLS.
    fn good(&self) -> bool {
        match self.fate {
            Some((result, class)) => result == DeliveryResult::Tls && class.is_none(),
            None => matches!(self.outcome, Outcome::Connected(_)),
        }
    }

    /// Whether it ended badly (not a skip, an unsupported cell or a harness error).
    fn bad(&self) -> bool {
        match self.fate {
            Some(_) => !self.good(),
            None => matches!(self.outcome, Outcome::Failed { .. } | Outcome::Timeout { .. }),
        }
    }
}

/// One changed cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub cell: String,
    pub kind: ChangeKind,
    pub old: Seen,
    pub new: Seen,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_run: String,
    pub new_run: String,
    pub newly_broken: Vec<Change>,
    pub newly_fixed: Vec<Change>,
    pub changed: Vec<Change>,
    pub only_in_old: Vec<String>,
    pub only_in_new: Vec<String>,
    pub unchanged: usize,
    /// Rows and columns for the table (union, old order first).
    pub server_order: Vec<String>,
    pub client_order: Vec<String>,
    /// The new run's labels of unchanged cells, for the table.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

fn kind_of(old: &Seen, new: &Seen) -> Option<ChangeKind> {
    if old.outcome.signature() == new.outcome.signature() && old.fate == new.fate {
        return None;
    }
    Some(if old.good() && new.bad() {
        ChangeKind::Broken
    } else if old.bad() && new.good() {
        ChangeKind::Fixed
    } else {
        ChangeKind::Changed
    })
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
    out
}

impl Diff {
    /// Compare two sets of cells keyed by cell id.
    pub fn between(
        (old_run, old): (&str, &BTreeMap<String, Seen>),
        (new_run, new): (&str, &BTreeMap<String, Seen>),
        server_order: Vec<String>,
        client_order: Vec<String>,
    ) -> Diff {
        let mut d = Diff {
            old_run: old_run.into(),
            new_run: new_run.into(),
            newly_broken: vec![],
            newly_fixed: vec![],
            changed: vec![],
            only_in_old: old.keys().filter(|k| !new.contains_key(*k)).cloned().collect(),
            only_in_new: new.keys().filter(|k| !old.contains_key(*k)).cloned().collect(),
            unchanged: 0,
            server_order,
            client_order,
            labels: new.iter().map(|(k, v)| (k.clone(), v.label.clone())).collect(),
        };
        for (cell, o) in old {
            let Some(n) = new.get(cell) else { continue };
            let change = |kind| Change { cell: cell.clone(), kind, old: o.clone(), new: n.clone() };
            match kind_of(o, n) {
                None => d.unchanged += 1,
                Some(ChangeKind::Broken) => d.newly_broken.push(change(ChangeKind::Broken)),
                Some(ChangeKind::Fixed) => d.newly_fixed.push(change(ChangeKind::Fixed)),
                Some(ChangeKind::Changed) => d.changed.push(change(ChangeKind::Changed)),
            }
        }
        d
    }

    /// Compare two reports cell by cell.
    pub fn reports(old: &Report, new: &Report) -> Diff {
        let outcomes = |r: &Report| r.cells.iter().map(|(k, c)| (k.clone(), Seen::cell(c))).collect::<BTreeMap<_, _>>();
        Diff::between(
            (&old.run.id, &outcomes(old)),
            (&new.run.id, &outcomes(new)),
            union(&old.run.server_order, &new.run.server_order),
            union(&old.run.client_order, &new.run.client_order),
        )
    }

    /// 1 if anything broke, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.newly_broken.is_empty())
    }

    /// The change of a cell, if it changed.
    pub fn change(&self, cell: &str) -> Option<&Change> {
        self.newly_broken.iter().chain(&self.newly_fixed).chain(&self.changed).find(|c| c.cell == cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::Side;
    use wire::{Negotiated, Stage};

    fn ok(bits: u32) -> Seen {
        Seen::outcome(Outcome::Connected(Negotiated::tls(report_format::Protocol::Tls12, "c", None, Some(bits)).into()))
    }

    fn failed(class: ErrorClass, text: &str) -> Seen {
        Seen::outcome(Outcome::Failed {
            class,
            side: Side::Client,
            stage: Stage::Handshake,
            client_error: text.into(),
            server_error: None,
        })
    }

    fn delivered(result: DeliveryResult, class: Option<ErrorClass>) -> Seen {
        let mut s = failed(class.unwrap_or(ErrorClass::StarttlsNotOffered), "x");
        s.fate = Some((result, class));
        s
    }

    /// A sender's message that waited before and now goes in clear has the same outcome class
    /// (`dh_too_small`): the fate tells them apart; losing TLS is a break.
    #[test]
    fn a_change_of_fate_is_a_change() {
        use DeliveryResult as R;
        let small = Some(ErrorClass::DhTooSmall);
        let old: BTreeMap<String, Seen> = [
            ("s/downgraded", delivered(R::Deferred, small)),
            ("s/lost-tls", {
                let mut s = ok(2048);
                s.fate = Some((R::Tls, None));
                s
            }),
            ("s/same", delivered(R::Deferred, small)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let new: BTreeMap<String, Seen> = [
            ("s/downgraded", delivered(R::PlaintextFallback, small)),
            ("s/lost-tls", delivered(R::Deferred, small)),
            ("s/same", delivered(R::Deferred, small)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let d = Diff::between(("o", &old), ("n", &new), vec![], vec![]);
        assert_eq!(d.newly_broken.iter().map(|c| c.cell.as_str()).collect::<Vec<_>>(), ["s/lost-tls"]);
        assert_eq!(d.changed.iter().map(|c| c.cell.as_str()).collect::<Vec<_>>(), ["s/downgraded"]);
        assert_eq!(d.unchanged, 1);
    }

    #[test]
    fn sorts_changes_into_kinds() {
        let old: BTreeMap<String, Seen> = [
            ("a/broken", ok(1024)),
            ("a/fixed", failed(ErrorClass::DhTooSmall, "x")),
            ("a/class", failed(ErrorClass::DhTooSmall, "x")),
            ("a/params", ok(2048)),
            ("a/same", failed(ErrorClass::NoSharedCipher, "port 1")),
            ("a/gone", ok(2048)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let new: BTreeMap<String, Seen> = [
            ("a/broken", failed(ErrorClass::DhTooSmall, "x")),
            ("a/fixed", ok(1024)),
            ("a/class", failed(ErrorClass::NoSharedCipher, "x")),
            ("a/params", ok(4096)),
            ("a/same", failed(ErrorClass::NoSharedCipher, "port 2: words differ, signature does not")),
            ("a/new", ok(2048)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let d = Diff::between(("o", &old), ("n", &new), vec![], vec![]);
        let cells = |v: &[Change]| v.iter().map(|c| c.cell.clone()).collect::<Vec<_>>();
        assert_eq!(cells(&d.newly_broken), ["a/broken"]);
        assert_eq!(cells(&d.newly_fixed), ["a/fixed"]);
        assert_eq!(cells(&d.changed), ["a/class", "a/params"]);
        assert_eq!(
            (d.only_in_old.as_slice(), d.only_in_new.as_slice()),
            (&["a/gone".to_string()][..], &["a/new".to_string()][..])
        );
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.exit_code(), 1);
    }
}
