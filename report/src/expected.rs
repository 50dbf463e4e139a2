//! Expectations: what we believe a cell does, always with a reason. A failure is expected with
//! its class; there is no class without a failure.

use crate::delivery::DeliveryResult;
use crate::outcome::ErrorClass;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an expectation says a cell does. In JSON: `"outcome": "failed", "class": "…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExpectedOutcome {
    Connected,
    Failed {
        class: ErrorClass,
    },
    Timeout,
    /// The stack cannot express the cell (its program exits 89): expected, with a reason.
    Unsupported,
    /// A sender's message meets this fate (with the class of the TLS failure behind a
    /// fallback, a deferral or a bounce).
    Delivery {
        result: DeliveryResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<ErrorClass>,
    },
}

impl ExpectedOutcome {
    /// The kind's name as written in matrix files: `connected`, `failed`, `timeout`, `unsupported`.
    pub fn kind(self) -> &'static str {
        match self {
            ExpectedOutcome::Connected => "connected",
            ExpectedOutcome::Failed { .. } => "failed",
            ExpectedOutcome::Timeout => "timeout",
            ExpectedOutcome::Unsupported => "unsupported",
            ExpectedOutcome::Delivery { .. } => "delivery",
        }
    }
}

impl fmt::Display for ExpectedOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedOutcome::Failed { class } => write!(f, "failed: {class}"),
            ExpectedOutcome::Delivery { result, class: Some(class) } => write!(f, "delivery {result}: {class}"),
            ExpectedOutcome::Delivery { result, class: None } => write!(f, "delivery {result}"),
            other => f.write_str(other.kind()),
        }
    }
}

/// What we believe a cell should do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    #[serde(flatten)]
    pub outcome: ExpectedOutcome,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// A known rare failure the cell may show (`rare = "1/256"`): tolerated at about that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rare: Option<crate::rate::Tolerance>,
}

impl Expected {
    pub fn new(outcome: ExpectedOutcome, reason: impl Into<String>) -> Expected {
        Expected { outcome, reason: reason.into(), link: None, rare: None }
    }

    /// The expectation of a cell no `[[expect]]` matches: it connects.
    pub fn default_connected() -> Expected {
        Expected::new(ExpectedOutcome::Connected, "no expectation written: a cell is expected to connect")
    }

    /// The class of an expected failure.
    pub fn class(&self) -> Option<ErrorClass> {
        match self.outcome {
            ExpectedOutcome::Failed { class } | ExpectedOutcome::Delivery { class: Some(class), .. } => Some(class),
            ExpectedOutcome::Connected
            | ExpectedOutcome::Timeout
            | ExpectedOutcome::Unsupported
            | ExpectedOutcome::Delivery { class: None, .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = Expected::new(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall }, "level 2");
        let json = r#"{"outcome":"failed","class":"dh_too_small","reason":"level 2"}"#;
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
        assert_eq!(serde_json::from_str::<Expected>(json).unwrap(), e);
        let c: Expected = serde_json::from_str(r#"{"outcome":"connected","reason":"r"}"#).unwrap();
        assert_eq!(c.outcome, ExpectedOutcome::Connected);
        assert!(serde_json::from_str::<Expected>(r#"{"outcome":"failed","reason":"no class"}"#).is_err());
        let d = Expected::new(
            ExpectedOutcome::Delivery { result: DeliveryResult::Deferred, class: Some(ErrorClass::DhTooSmall) },
            "2015",
        );
        let json = r#"{"outcome":"delivery","result":"deferred","class":"dh_too_small","reason":"2015"}"#;
        assert_eq!(serde_json::to_string(&d).unwrap(), json);
        assert_eq!(serde_json::from_str::<Expected>(json).unwrap(), d);
    }
}
