//! A profile's delivery cells: every sender of the run hands its message to the profile's
//! server at the same time — each sender's connections come from a loopback address of its
//! own — and once all have settled the server's records are shared out by that address, so each
//! delivery cell holds what the server saw of its sender, whatever else was connected.

use super::context::{BUILTIN_SETTLE, Context, MTA_SETTLE, ServerState, builtin_table};
use crate::evidence::{CellRun, Evidence, ServerKind};
use report_format::{CellId, ConnectionRecord};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The address a record's peer (`127.0.0.5:41234`, `127.0.0.5`) connected from.
pub fn peer_ip(record: &ConnectionRecord) -> Option<IpAddr> {
    let peer = record.peer.as_deref()?;
    peer.parse::<std::net::SocketAddr>().map(|a| a.ip()).ok().or_else(|| peer.parse().ok())
}

impl Context {
    /// Run these sender cells against one server, all at once, `repeat` rounds.
    pub async fn run_deliveries(&self, ids: &[CellId], server: &mut ServerState, repeat: u32) -> Vec<CellRun> {
        let mut runs: Vec<CellRun> =
            ids.iter().map(|id| CellRun { id: id.clone(), runs: Vec::new(), duration: Duration::ZERO }).collect();
        for _ in 0..repeat.max(1) {
            for (run, (evidence, took)) in runs.iter_mut().zip(self.delivery_round(ids, server).await) {
                run.runs.push(evidence);
                run.duration += took;
            }
        }
        runs
    }

    /// One message per sender, concurrently; then the server's records, shared out.
    async fn delivery_round(&self, ids: &[CellId], server: &mut ServerState) -> Vec<(Evidence, Duration)> {
        let target = match &*server {
            ServerState::Builtin { server, .. } => Some(self.target(server.addr())),
            ServerState::Mta(m) => Some(self.target(m.addr())),
            ServerState::External(t) => Some(t.clone()),
            ServerState::NotStarted(_) => None,
        };
        let mut out: Vec<(Evidence, Duration)> = Vec::with_capacity(ids.len());
        let mut set = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (evidence, stack) = self.skeleton(id, server);
            out.push((evidence, Duration::ZERO));
            let Some(stack) = stack else { continue };
            let Some(target) = target.clone() else { continue };
            let bound = stack.stack.cell_timeout.unwrap_or(self.cell_timeout);
            let stack = stack.clone();
            set.spawn(async move {
                let started = Instant::now();
                let run = stack.run(&target, bound).await;
                (i, run, started.elapsed())
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, run, took)) => {
                    out[i].0.client = Some(run);
                    out[i].1 = took;
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        let (kind, records, warnings) = match server {
            ServerState::Builtin { server, backend, invalid_dh } => {
                server.quiesce(BUILTIN_SETTLE).await;
                let kind = ServerKind::Own { table: builtin_table(*backend).into(), invalid_dh: *invalid_dh };
                (kind, server.take_records(), Vec::new())
            }
            ServerState::Mta(m) => {
                m.settle(MTA_SETTLE).await;
                let kind = ServerKind::Own { table: m.table().into(), invalid_dh: None };
                (kind, m.take_records(), m.info().config_warnings.clone())
            }
            ServerState::External(_) | ServerState::NotStarted(_) => (ServerKind::External, Vec::new(), Vec::new()),
        };
        for (id, (evidence, _)) in ids.iter().zip(out.iter_mut()).filter(|(_, (e, _))| e.client.is_some()) {
            let source = self.stacks.get(&id.client).and_then(|s| s.sender.as_ref()).map(|s| s.source);
            evidence.server.kind = kind.clone();
            evidence.server.config_warnings = warnings.clone();
            evidence.server.records =
                records.iter().filter(|r| source.is_some_and(|s| peer_ip(r) == Some(IpAddr::V4(s)))).cloned().collect();
        }
        out
    }
}
