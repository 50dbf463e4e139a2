//! In a blind run (`run --blind`), how a cell's blind finding stands against the one our own
//! server's records give, where the two differ.

use serde::{Deserialize, Serialize};

/// The informed finding of a cell whose blind one differs, and whether the difference is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindCheck {
    /// What the cell is with our server's records (`failed: no_shared_cipher`, `delivery tls`…).
    pub informed: String,
    pub agreement: BlindAgreement,
}

/// Whether a difference between the views is one the list of coarsenings allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlindAgreement {
    /// Allowed: only the server can tell the two apart; the reason.
    Coarsened { why: String },
    /// Not allowed: a defect of an error table or of a client program.
    Disagrees { why: String },
}

impl BlindCheck {
    pub fn disagrees(&self) -> bool {
        matches!(self.agreement, BlindAgreement::Disagrees { .. })
    }
}
