//! Which cells run when: each server profile starts once and serves its client cells one after
//! another (every connection its log shows then belongs to the running cell) — a built-in server
//! whose cells wait by design from a few instances at once, each serving its share the same way —
//! then its delivery cells all at once (each sender's connections come from its own address);
//! profiles run in parallel, `jobs` at a time, those whose cells wait longest first. `probe` runs
//! every stack against one server someone else runs, a bounded few at once.

use super::{Context, Event, ServerState};
use crate::evidence::CellRun;
use crate::matrix::Matrix;
use crate::plan::Plan;
use report_format::{CellId, ServerProfile};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// How to run a plan.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Server profiles served at once.
    pub jobs: usize,
    /// Times each cell runs; differing outcomes make the cell flaky.
    pub repeat: u32,
}

/// How long one cell of a profile takes beyond the usual, for scheduling: faults that make
/// clients wait, and large finite-field groups (measured on 2 cores, the default matrix's
/// ffdhe8192 row takes about 0.4 s a cell, ffdhe4096 0.14 s: some clients refuse at once).
pub fn expected_wait(profile: &ServerProfile) -> Duration {
    let dh_bits = profile.dh.map_or(0, |d| d.bits());
    match profile.fault {
        // Most clients give up at once on a refusal; a hanging one or two wait out the bound.
        Some(f) if f.cell_timeout() == Some(servers::fault::REFUSAL_BOUND) => Duration::from_millis(400),
        Some(f) => f.cell_timeout().unwrap_or(match f {
            servers::Fault::SlowBanner => servers::fault::SLOW_BANNER_DELAY,
            _ => Duration::ZERO,
        }),
        None if dh_bits >= 8192 => Duration::from_millis(450),
        None if dh_bits >= 6144 => Duration::from_millis(250),
        None if dh_bits >= 4096 => Duration::from_millis(150),
        None => Duration::ZERO,
    }
}

/// How long a profile's cells take beyond the usual, for scheduling: its client cells one after
/// another, then its deliveries at once (a stalled server keeps them for the whole cell bound, a
/// sender's retry about two seconds).
pub fn expected_time(profile: &ServerProfile, client_cells: usize, deliveries: bool, bound: Duration) -> Duration {
    let clients = expected_wait(profile) * client_cells as u32;
    let delivering = match (deliveries, profile.fault) {
        (false, _) => Duration::ZERO,
        (true, Some(servers::Fault::Stall | servers::Fault::ClienthelloLengthIntolerant)) => bound,
        (true, _) => Duration::from_millis(2200),
    };
    clients + delivering
}

/// Run a cell `repeat` times against the same server.
async fn run_repeated(
    ctx: &Context,
    id: &CellId,
    profile: &ServerProfile,
    state: &mut ServerState,
    repeat: u32,
) -> CellRun {
    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        runs.push(ctx.run_cell(id, Some(profile), state).await);
    }
    CellRun { id: id.clone(), runs, duration: started.elapsed() }
}

/// How many instances of a profile serve its client cells at once: a built-in server whose cells
/// mostly wait by design (a stall, a refusal most clients give up on, a slow banner), or whose
/// cells each run many times (`--repeat`), gets up to `jobs` of them — each starts in
/// milliseconds, and each still serves its cells one at a time, so every connection its records
/// show belongs to its running cell. Every other profile (an MTA, a cell that computes once)
/// serves its cells from one instance.
pub fn lanes(profile: &ServerProfile, client_cells: usize, jobs: usize, repeat: u32) -> usize {
    let waits = expected_wait(profile) >= Duration::from_millis(300);
    match profile.backend {
        report_format::Backend::Builtin(_) if (waits && profile.fault.is_some()) || repeat > 1 => {
            jobs.min(client_cells).max(1)
        }
        _ => 1,
    }
}

/// A profile's client cells split round-robin over `lanes` instances of its server, each started
/// for its lane and stopped after it.
async fn run_in_lanes(
    ctx: &Arc<Context>,
    profile: &ServerProfile,
    cells: Vec<CellId>,
    lanes: usize,
    repeat: u32,
    events: &mpsc::UnboundedSender<Event>,
) {
    let mut split: Vec<Vec<CellId>> = vec![Vec::new(); lanes];
    for (i, id) in cells.into_iter().enumerate() {
        split[i % lanes].push(id);
    }
    let mut set = tokio::task::JoinSet::new();
    for lane in split {
        let (ctx, profile, events) = (ctx.clone(), profile.clone(), events.clone());
        set.spawn(async move {
            let mut state = ctx.start_server(&profile).await;
            for id in lane {
                let _ = events.send(Event::CellStarted { id: id.clone() });
                let run = run_repeated(&ctx, &id, &profile, &mut state, repeat).await;
                let _ = events.send(Event::CellRan(Box::new(run)));
            }
            ctx.stop_server(&profile.id, state).await;
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Run a plan: each server profile once, its cells in order, profiles `jobs` at a time. Every
/// cell's evidence is sent as [`Event::CellRan`].
pub async fn run(
    matrix: Arc<Matrix>,
    plan: &Plan,
    ctx: Arc<Context>,
    options: RunOptions,
    events: mpsc::UnboundedSender<Event>,
) {
    let RunOptions { jobs, repeat } = options;
    let _ = events.send(Event::RunStarted { cells: plan.cells.len() });
    let permits = Arc::new(Semaphore::new(jobs.max(1)));
    // A profile's delivery cells mostly wait (for a sender's retry timer, for a server that
    // says nothing): while they do, the profile gives its place to the next one, and at most
    // this many profiles are in their delivery phase at once.
    let delivering = Arc::new(Semaphore::new(2 * jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    // Profiles that take longest start first, so they overlap the rest instead of trailing at
    // the end; each takes its place here, in this order, before its task starts.
    let cells_of =
        |server: &String| -> Vec<CellId> { plan.cells.iter().filter(|c| &c.server == server).cloned().collect() };
    let mut order: Vec<(Duration, &String)> = plan
        .servers
        .iter()
        .filter_map(|id| {
            let entry = matrix.server(id)?;
            let (deliveries, cells): (Vec<CellId>, Vec<CellId>) =
                cells_of(id).into_iter().partition(|c| ctx.is_sender(c));
            Some((expected_time(&entry.profile, cells.len(), !deliveries.is_empty(), ctx.cell_timeout), id))
        })
        .collect();
    order.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    for (_, server_id) in order {
        let Some(entry) = matrix.server(server_id).cloned() else { continue };
        let cells = cells_of(server_id);
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (ctx, delivering, events) = (ctx.clone(), delivering.clone(), events.clone());
        set.spawn(async move {
            let mut state = ctx.start_server(&entry.profile).await;
            let id = entry.profile.id.clone();
            let _ = events.send(match (state.addr(), state.availability()) {
                (Some(addr), _) => Event::ServerStarted { id, addr },
                (None, why) => Event::ServerNotStarted { id, why },
            });
            let (deliveries, cells): (Vec<CellId>, Vec<CellId>) = cells.into_iter().partition(|c| ctx.is_sender(c));
            let lanes = lanes(&entry.profile, cells.len(), jobs, repeat);
            if lanes > 1 && state.availability().is_ready() {
                run_in_lanes(&ctx, &entry.profile, cells, lanes, repeat, &events).await;
            } else {
                for id in cells {
                    let _ = events.send(Event::CellStarted { id: id.clone() });
                    let run = run_repeated(&ctx, &id, &entry.profile, &mut state, repeat).await;
                    let _ = events.send(Event::CellRan(Box::new(run)));
                }
            }
            if !deliveries.is_empty() {
                let _delivering = delivering.acquire_owned().await.expect("the semaphore is never closed");
                drop(permit);
                for id in &deliveries {
                    let _ = events.send(Event::CellStarted { id: id.clone() });
                }
                for run in ctx.run_deliveries(&deliveries, &mut state, repeat).await {
                    let _ = events.send(Event::CellRan(Box::new(run)));
                }
            }
            ctx.stop_server(&entry.profile.id, state).await;
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    crate::stack::stop_batch_workers(ctx.stacks.values()).await;
    ctx.stop_senders().await;
}

/// How `probe` treats a server someone else runs: how many connections at once, and how long
/// to wait between starting two of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Politeness {
    pub max_connections: usize,
    pub pause: Duration,
}

/// Run every given client stack against a server that is already running (`probe`): at most
/// `max_connections` of them at once, each started at least `pause` after the one before;
/// senders (each one connection or two) in groups of that size after the client stacks.
pub async fn probe(
    ctx: Arc<Context>,
    clients: &[String],
    target: crate::adapters::Target,
    politeness: Politeness,
    events: mpsc::UnboundedSender<Event>,
) {
    let server_id = target.connect.clone();
    let _ = events.send(Event::RunStarted { cells: clients.len() });
    let ids: Vec<CellId> = clients.iter().map(|c| CellId::new(c.clone(), server_id.clone())).collect();
    let (deliveries, cells): (Vec<CellId>, Vec<CellId>) = ids.into_iter().partition(|c| ctx.is_sender(c));
    let permits = Arc::new(Semaphore::new(politeness.max_connections.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let mut last_start: Option<Instant> = None;
    for id in cells {
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        if let Some(last) = last_start {
            tokio::time::sleep_until((last + politeness.pause).into()).await;
        }
        last_start = Some(Instant::now());
        let (ctx, events, target) = (ctx.clone(), events.clone(), target.clone());
        set.spawn(async move {
            let _permit = permit;
            let _ = events.send(Event::CellStarted { id: id.clone() });
            let started = Instant::now();
            let evidence = ctx.run_cell(&id, None, &mut ServerState::External(target)).await;
            let _ = events.send(Event::CellRan(Box::new(CellRun {
                id,
                runs: vec![evidence],
                duration: started.elapsed(),
            })));
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    for group in deliveries.chunks(politeness.max_connections.max(1)) {
        if let Some(last) = last_start {
            tokio::time::sleep_until((last + politeness.pause).into()).await;
        }
        for id in group {
            let _ = events.send(Event::CellStarted { id: id.clone() });
        }
        let mut state = ServerState::External(target.clone());
        for run in ctx.run_deliveries(group, &mut state, 1).await {
            let _ = events.send(Event::CellRan(Box::new(run)));
        }
        last_start = Some(Instant::now());
    }
    crate::stack::stop_batch_workers(ctx.stacks.values()).await;
    ctx.stop_senders().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> ServerProfile {
        serde_json::from_value(json).unwrap()
    }

    /// Profiles whose cells wait by design start first, large DH groups next, then refusals
    /// (most clients give up on those at once).
    #[test]
    fn waiting_profiles_are_scheduled_first() {
        let stall = profile(serde_json::json!({"id": "a", "backend": "openssl", "fault": "stall"}));
        let refused = profile(serde_json::json!({"id": "b", "backend": "openssl", "fault": "starttls-454"}));
        let dh8192 = profile(serde_json::json!({"id": "c", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": "ffdhe8192"}));
        let plain = profile(serde_json::json!({"id": "d", "backend": "openssl"}));
        let mut all = [&plain, &refused, &stall, &dh8192];
        all.sort_by_key(|p| std::cmp::Reverse(expected_wait(p)));
        let order: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, ["a", "c", "b", "d"]);
    }

    /// Waiting built-in profiles are served by several instances at once; MTAs and profiles
    /// whose cells compute by one.
    #[test]
    fn only_waiting_builtin_profiles_get_lanes() {
        let stall = profile(serde_json::json!({"id": "a", "backend": "openssl", "fault": "stall"}));
        let refused = profile(serde_json::json!({"id": "b", "backend": "rustls", "fault": "starttls-454"}));
        let plain = profile(serde_json::json!({"id": "d", "backend": "openssl"}));
        let dh8192 = profile(serde_json::json!({"id": "c", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": "ffdhe8192"}));
        let postfix = profile(serde_json::json!({"id": "p", "backend": "postfix"}));
        assert_eq!(lanes(&stall, 18, 4, 1), 4);
        assert_eq!(lanes(&stall, 2, 4, 1), 2);
        assert_eq!(lanes(&refused, 18, 4, 1), 4);
        assert_eq!(lanes(&plain, 18, 4, 1), 1);
        assert_eq!(lanes(&dh8192, 18, 4, 1), 1);
        assert_eq!(lanes(&plain, 18, 4, 1000), 4, "repeats spread over instances");
        assert_eq!(lanes(&postfix, 18, 4, 1000), 1);
    }

    /// A whole profile's time decides when it starts: 18 stalled client cells and senders that
    /// wait out the cell bound come before one slow DHE-8192 profile.
    #[test]
    fn a_profile_is_scheduled_by_its_whole_time() {
        let stall = profile(serde_json::json!({"id": "a", "backend": "openssl", "fault": "stall"}));
        let dh8192 = profile(serde_json::json!({"id": "c", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": "ffdhe8192"}));
        let bound = Duration::from_secs(10);
        let with_senders = expected_time(&stall, 18, true, bound);
        assert_eq!(with_senders, Duration::from_millis(500) * 18 + bound);
        assert!(with_senders > expected_time(&dh8192, 18, true, bound));
        assert_eq!(expected_time(&stall, 0, false, bound), Duration::ZERO);
    }
}
