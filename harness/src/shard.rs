//! Sharding: `--shard I/N` keeps a deterministic slice of the cells, chosen by a stable hash of
//! each cell id, so every cell is in exactly one shard whatever the matrix order or the machine.

use crate::matrix::Fnv;
use crate::plan::{CellId, Plan};
use std::fmt;
use std::str::FromStr;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// A `--shard` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard {0:?}: write I/N with 1 ≤ I ≤ N, e.g. 2/4")]
pub struct BadShard(pub String);

impl FromStr for Shard {
    type Err = BadShard;
    fn from_str(s: &str) -> Result<Shard, BadShard> {
        let bad = || BadShard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether a cell belongs to this shard.
    pub fn contains(&self, cell: &CellId) -> bool {
        let mut h = Fnv::new();
        h.write(cell.to_string().as_bytes());
        (h.finish() % self.count as u64) as usize == self.index - 1
    }

    /// The plan narrowed to this shard (possibly empty); servers without cells are dropped.
    pub fn apply(&self, plan: &Plan) -> Plan {
        let cells: Vec<CellId> = plan.cells.iter().filter(|c| self.contains(c)).cloned().collect();
        let servers = plan.servers.iter().filter(|s| cells.iter().any(|c| &c.server == *s)).cloned().collect();
        Plan { servers, clients: plan.clients.clone(), cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn plan(servers: &[String], clients: &[String]) -> Plan {
        let cells = servers
            .iter()
            .flat_map(|s| clients.iter().map(move |c| CellId { client: c.clone(), server: s.clone() }))
            .collect();
        Plan { servers: servers.to_vec(), clients: clients.to_vec(), cells }
    }

    proptest! {
        #[test]
        fn shards_partition_the_cells(
            servers in proptest::collection::btree_set("[a-z0-9-]{1,12}", 1..12),
            clients in proptest::collection::btree_set("[a-z0-9@-]{1,12}", 1..8),
            count in 1usize..9,
        ) {
            let (servers, clients): (Vec<String>, Vec<String>) = (servers.into_iter().collect(), clients.into_iter().collect());
            let full = plan(&servers, &clients);
            let mut seen = BTreeSet::new();
            for index in 1..=count {
                for cell in (Shard { index, count }).apply(&full).cells {
                    prop_assert!(seen.insert(cell), "a cell in two shards");
                }
            }
            let all: BTreeSet<CellId> = full.cells.into_iter().collect();
            prop_assert_eq!(seen, all);
        }
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "x/2", "3", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn membership_does_not_depend_on_order() {
        let a = plan(&["s1".into(), "s2".into()], &["c1".into(), "c2".into()]);
        let b = plan(&["s2".into(), "s1".into()], &["c2".into(), "c1".into()]);
        let shard = Shard { index: 1, count: 3 };
        let (x, y): (BTreeSet<_>, BTreeSet<_>) =
            (shard.apply(&a).cells.into_iter().collect(), shard.apply(&b).cells.into_iter().collect());
        assert_eq!(x, y);
    }
}
