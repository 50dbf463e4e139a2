//! Rates: how often the repeats of one cell failed (`run --repeat N`), with a 95 % interval, for
//! what no profile can force (a TLS 1.2 secret's leading zero is the client's draw); a known rare
//! failure an expectation tolerates; and, per connected cell, the rare encodings its stack is
//! known to fail (a forced profile's finding) that its handshakes are exposed to.

use crate::encoding::RareCase;
use crate::outcome::ErrorClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Failures over the repeats of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Times the cell ran.
    pub runs: u32,
    /// Runs that did not connect (a sender's: whose message did not go over TLS).
    pub failed: u32,
    /// The 95 % interval of the failure rate (Clopper–Pearson), as fractions.
    pub low: f64,
    pub high: f64,
    /// Failed runs by class (`timeout`, `harness_error` for those outcomes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_class: BTreeMap<String, u32>,
}

impl Rate {
    /// `3/1000 failed (95 %: 0.06–0.87 %)`, or `0/1000 failed (95 %: 0–0.37 %)`.
    pub fn summary(&self) -> String {
        let pct = |x: f64| {
            let p = x * 100.0;
            if p == 0.0 {
                "0".to_string()
            } else if p < 0.1 {
                format!("{p:.3}")
            } else if p < 10.0 {
                format!("{p:.2}")
            } else {
                format!("{p:.1}")
            }
        };
        let mut out = format!("{}/{} failed (95 %: {}–{} %)", self.failed, self.runs, pct(self.low), pct(self.high));
        if !self.by_class.is_empty() {
            let classes: Vec<String> = self.by_class.iter().map(|(c, n)| format!("{c} {n}")).collect();
            out.push_str(&format!(": {}", classes.join(", ")));
        }
        out
    }

    /// A short label for a table cell: `3/1000 failed`.
    pub fn short(&self) -> String {
        format!("{}/{} failed", self.failed, self.runs)
    }
}

/// A known rare failure an expectation tolerates: the cell is expected to connect, but may
/// fail with `class` about once in `one_in` runs (`rare = "1/256"`, `class = "key_mismatch"`).
/// A run goes red when its rate of that failure is far above it — or far below (the bug went).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tolerance {
    pub class: ErrorClass,
    pub one_in: u32,
}

impl Tolerance {
    /// Parse `1/256` (or `1/2`).
    pub fn parse_rate(text: &str) -> Result<u32, String> {
        let bad = || format!("rare = {text:?}: write the tolerated rate as 1/N, e.g. \"1/256\"");
        let (one, n) = text.split_once('/').ok_or_else(bad)?;
        if one.trim() != "1" {
            return Err(bad());
        }
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if n < 2 {
            return Err(bad());
        }
        Ok(n)
    }

    pub fn rate(&self) -> f64 {
        1.0 / f64::from(self.one_in)
    }
}

/// Where a cell's handshake stood on a rare case: the server kept it out, or nobody chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Here {
    /// The built-in server chose its keys or signatures so that the case did not happen.
    Avoided,
    /// Nobody chose: the case happens by chance in this configuration.
    Sampled,
}

/// Whose word the finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// This run's cell of the forced profile failed.
    ThisRun,
    /// The forced profile did not run here; the matrix's expectation for it says it fails.
    Expected,
}

/// A rare encoding a connected cell's stack fails, as the matching forced profile showed: the
/// cell's verdict stands, and it fails about one handshake in `one_in` against a server that
/// does not choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RareNote {
    pub case: RareCase,
    /// The forced profile that shows it.
    pub profile: String,
    pub one_in: u32,
    /// How the stack fails there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    pub seen: Seen,
    pub here: Here,
}

impl RareNote {
    /// `fails about 1 handshake in 256 (see rare-…: key_mismatch)`, and what this cell's server did.
    pub fn summary(&self) -> String {
        let class = self.class.map(|c| format!(": {c}")).unwrap_or_default();
        let seen = match self.seen {
            Seen::ThisRun => "",
            Seen::Expected => ", as the matrix expects (not run here)",
        };
        let here = match self.here {
            Here::Avoided => "here the server kept it out",
            Here::Sampled => "here it was left to chance",
        };
        format!(
            "fails about 1 handshake in {} when {} (see {}{class}{seen}); {here}",
            self.one_in,
            self.case.words(),
            self.profile
        )
    }

    /// For a table cell: `fails 1/256`.
    pub fn short(&self) -> String {
        format!("fails 1/{}", self.one_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let r = Rate {
            runs: 1000,
            failed: 3,
            low: 0.000619,
            high: 0.00874,
            by_class: BTreeMap::from([("key_mismatch".into(), 3)]),
        };
        assert_eq!(r.summary(), "3/1000 failed (95 %: 0.062–0.87 %): key_mismatch 3");
        assert_eq!(r.short(), "3/1000 failed");
        let n = RareNote {
            case: RareCase::SecretLeadingZero,
            profile: "rare-x".into(),
            one_in: 256,
            class: Some(ErrorClass::KeyMismatch),
            seen: Seen::ThisRun,
            here: Here::Avoided,
        };
        assert_eq!(
            n.summary(),
            "fails about 1 handshake in 256 when the shared secret starts with 00 (see rare-x: key_mismatch); here the server kept it out"
        );
    }

    #[test]
    fn tolerated_rates_parse() {
        assert_eq!(Tolerance::parse_rate("1/256"), Ok(256));
        assert_eq!(Tolerance::parse_rate(" 1 / 2 "), Ok(2));
        for bad in ["256", "2/256", "1/1", "1/x", ""] {
            assert!(Tolerance::parse_rate(bad).is_err(), "{bad}");
        }
    }
}
