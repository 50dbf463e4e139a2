//! Whether a participant (a client stack, a server profile's server, a sender) can take part
//! in a run here, and if not, what its cells become.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a participant can run here. One type for stacks, servers and senders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Availability {
    Ready,
    /// Not installed or not built here: its cells are skipped, never failed.
    Skipped(String),
    /// It cannot express what is asked (an MTA without such a setting): its cells are
    /// `unsupported`, with this reason.
    Unsupported(String),
    /// It refused its own configuration (a TLS library or MTA refusing a profile): a finding
    /// for every cell, `server_config_rejected`.
    Rejected(String),
    /// Installed but we could not prepare or start it (contract broken, bind failure): its cells
    /// are harness errors.
    Broken(String),
}

impl Availability {
    pub fn is_ready(&self) -> bool {
        *self == Availability::Ready
    }

    /// The reason it is not ready.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Availability::Ready => None,
            Availability::Skipped(r)
            | Availability::Unsupported(r)
            | Availability::Rejected(r)
            | Availability::Broken(r) => Some(r),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Availability::Ready => "ready",
            Availability::Skipped(_) => "skipped",
            Availability::Unsupported(_) => "unsupported",
            Availability::Rejected(_) => "rejected",
            Availability::Broken(_) => "broken",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{}: {r}", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_the_old_readiness() {
        assert_eq!(serde_json::to_string(&Availability::Ready).unwrap(), r#"{"status":"ready"}"#);
        let s = Availability::Skipped("not installed".into());
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"status":"skipped","reason":"not installed"}"#);
    }
}
