//! Cell ids: `client/server`, which parse back.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One (client stack, server profile) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CellId {
    pub client: String,
    pub server: String,
}

impl CellId {
    pub fn new(client: impl Into<String>, server: impl Into<String>) -> CellId {
        CellId { client: client.into(), server: server.into() }
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client, self.server)
    }
}

/// A cell id that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cell id {0:?} is not of the form client/server")]
pub struct BadCellId(pub String);

impl FromStr for CellId {
    type Err = BadCellId;
    fn from_str(s: &str) -> Result<CellId, BadCellId> {
        match s.split_once('/') {
            Some((c, sv)) if !c.is_empty() && !sv.is_empty() && !sv.contains('/') => Ok(CellId::new(c, sv)),
            _ => Err(BadCellId(s.into())),
        }
    }
}

impl TryFrom<String> for CellId {
    type Error = BadCellId;
    fn try_from(s: String) -> Result<CellId, BadCellId> {
        s.parse()
    }
}

impl From<CellId> for String {
    fn from(id: CellId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ids_round_trip(client in "[a-z0-9@._-]{1,12}", server in "[a-z0-9._-]{1,12}") {
            let id = CellId::new(client, server);
            prop_assert_eq!(id.to_string().parse::<CellId>(), Ok(id.clone()));
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<CellId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn malformed_ids() {
        for bad in ["", "a", "/b", "a/", "a/b/c"] {
            assert!(bad.parse::<CellId>().is_err(), "{bad}");
        }
    }
}
