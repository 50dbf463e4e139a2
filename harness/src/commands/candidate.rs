//! `compare --candidate openssl=DIR`: every stack that declares the library runs twice against
//! every server profile — as it is, and with the candidate swapped in — and the grid shows what
//! the candidate breaks, newly broken first, under headers that say which library each side's
//! processes really loaded (the dynamic loader's record), with the stacks not swapped and why.

use super::common::{Exit, Format, harness, usage};
use super::compare::CompareArgs;
use anyhow::Context as _;
use harness::candidate::{self, Candidate, LoaderRecord, Proof};
use harness::classify::Tables;
use harness::diff::Diff;
use harness::plan::Plan;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// One swapped stack: what it loaded as it is and on the candidate.
#[derive(Debug, serde::Serialize)]
struct Swapped {
    stack: String,
    system: String,
    candidate: Proof,
    system_record: LoaderRecord,
}

pub async fn main(a: &CompareArgs, candidate: &str, tables: Arc<Tables>) -> Result<i32, Exit> {
    let candidate = Candidate::parse(candidate).map_err(|e| usage(anyhow::anyhow!("compare: {e}")))?;
    let mut matrix = super::common::load_matrix(&a.matrix, &tables)?;
    let globs = super::common::client_globs(&a.client)?;
    let records = tempfile::Builder::new()
        .prefix("starttls-matrix-candidate-")
        .tempdir()
        .context("make a directory for the loader's records")
        .map_err(harness)?;
    let selected = |id: &str| globs.is_empty() || globs.iter().any(|g| g.is_match(id));
    let built = match candidate.library {
        report_format::Library::Rustls => Some(build_rustls(&matrix.path, &candidate).await?),
        _ => None,
    };
    let plan = candidate::plan(&mut matrix, &candidate, &selected, records.path(), built.as_deref());
    if plan.pairs.is_empty() {
        let reasons: Vec<String> = plan.not_swapped.iter().map(|n| format!("{}: {}", n.what, n.reason)).collect();
        return Err(usage(anyhow::anyhow!(
            "compare --candidate: no stack of {} takes a {} candidate{}",
            a.matrix.display(),
            candidate.library.as_str(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) }
        )));
    }
    let matrix = Arc::new(matrix);
    let all = Plan::new(&matrix, &a.servers, &[]).context("select server profiles").map_err(usage)?;
    // The stacks on the library, as they are and on the candidate, against every profile (the
    // twins aside); and every client program against each MTA profile and its twin.
    let profiles: Vec<String> = all.servers.iter().filter(|s| !s.ends_with(candidate::SUFFIX)).cloned().collect();
    let stack_ids: Vec<String> = plan.pairs.iter().flat_map(|(s, v)| [s.clone(), v.clone()]).collect();
    let server_pairs: Vec<(String, String)> =
        plan.server_pairs.iter().filter(|(p, _)| profiles.contains(p)).cloned().collect();
    let programs: Vec<String> = matrix
        .clients
        .iter()
        .filter(|c| !c.is_sender() && !c.id.ends_with(candidate::SUFFIX))
        .map(|c| c.id.clone())
        .collect();
    let mut cells: Vec<report_format::CellId> = profiles
        .iter()
        .flat_map(|s| stack_ids.iter().map(move |c| report_format::CellId::new(c.clone(), s.clone())))
        .collect();
    for (p, twin) in &server_pairs {
        for c in &programs {
            for s in [p, twin] {
                let id = report_format::CellId::new(c.clone(), s.clone());
                if !cells.contains(&id) {
                    cells.push(id);
                }
            }
        }
    }
    let mut servers = profiles.clone();
    servers.extend(server_pairs.iter().map(|(_, t)| t.clone()));
    let mut clients = stack_ids.clone();
    clients.extend(programs.iter().filter(|c| !stack_ids.contains(c)).cloned());
    let run_plan = Plan { servers, clients, cells };
    let started = std::time::Instant::now();
    let report = super::compare::run_both(&matrix, &run_plan, tables, a.jobs).await?;

    // Each side's cells under the stack's own id, so the grid pairs them.
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    let mut swapped = Vec::new();
    for (stack, variant) in &plan.pairs {
        for c in report.cells.values().filter(|c| !c.server.ends_with(candidate::SUFFIX)) {
            let seen = harness::diff::Seen::cell(c);
            if &c.client == stack {
                old.insert(format!("{stack}/{}", c.server), seen);
            } else if &c.client == variant {
                new.insert(format!("{stack}/{}", c.server), seen);
            }
        }
        let system_record = candidate::read_records(&records.path().join(stack));
        let sender = matrix.client(stack).is_some_and(|c| c.is_sender());
        let said = |id: &str| report.clients.get(id).and_then(|c| c.version.clone()).unwrap_or_default();
        // A sender's TLS program as the dynamic loader resolves it under the sender's environment.
        let resolved = |id: &str| {
            report
                .clients
                .get(id)
                .and_then(|c| c.policy["tls_library_loaded"][0].as_str().map(str::to_string))
                .unwrap_or_else(|| "not resolved".into())
        };
        let (system, proof) = match &built {
            _ if sender => {
                let words = resolved(variant);
                let inside = words.contains(&candidate.dir.display().to_string());
                let proof = if inside {
                    Proof::Swapped { processes: 0, path: candidate.dir.clone(), version: Some(words) }
                } else {
                    Proof::Ignored { processes: 0, other: std::path::PathBuf::from(&words), version: None }
                };
                (format!("{} ({})", resolved(stack), said(stack)), proof)
            }
            // A rebuilt program: what it says of itself, and the checkout's paths inside it.
            Some(program) => {
                let mut proof = candidate::built_from(program, &candidate.dir);
                if let Proof::Swapped { version, .. } = &mut proof {
                    *version = Some(format!("{} ({})", said(variant), version.as_deref().unwrap_or("")));
                }
                (format!("{} (the workspace's Cargo.lock)", said(stack)), proof)
            }
            None => (
                candidate::system_line(&system_record, candidate.library),
                Proof::of(&candidate::read_records(&records.path().join(variant)), &candidate),
            ),
        };
        swapped.push(Swapped { stack: stack.clone(), system, candidate: proof, system_record });
    }
    // The MTA servers: every client against the profile as it is and against its twin.
    let (mut old_servers, mut new_servers) = (BTreeMap::new(), BTreeMap::new());
    let mut served = Vec::new();
    for (p, twin) in &server_pairs {
        for c in report.cells.values() {
            if !programs.contains(&c.client) {
                continue;
            }
            if &c.server == p {
                old_servers.insert(format!("{}/{p}", c.client), harness::diff::Seen::cell(c));
            } else if &c.server == twin {
                new_servers.insert(format!("{}/{p}", c.client), harness::diff::Seen::cell(c));
            }
        }
        served.push(ServedBy::of(p, report.server_runs.get(p), report.server_runs.get(twin), &candidate));
    }
    // A rustls candidate: the built-in server's rustls backend, served by our starttls-matrix and
    // by the one rebuilt against the checkout, each probed by every client program.
    let mut backend = None;
    if let Some(client) = &built {
        let rebuilt = client.with_file_name("starttls-matrix");
        let rows: Vec<String> = profiles
            .iter()
            .filter(|p| {
                matrix.servers.iter().any(|s| {
                    &s.profile.id == *p
                        && s.profile.backend == report_format::Backend::Builtin(report_format::TlsBackend::Rustls)
                })
            })
            .cloned()
            .collect();
        let ours = harness::runner::builtin_exe().map_err(harness)?;
        let (mut old_backend, mut new_backend) = (BTreeMap::new(), BTreeMap::new());
        for p in &rows {
            old_backend.extend(served_by(&ours, &matrix.path, p, &programs).await?);
            new_backend.extend(served_by(&rebuilt, &matrix.path, p, &programs).await?);
        }
        let proof = candidate::built_from(&rebuilt, &candidate.dir);
        backend = Some((rows, old_backend, new_backend, proof));
    }
    let wall = started.elapsed();
    let version = candidate.version().unwrap_or_else(|| "version not readable".into());
    let system_name = format!("system {}", candidate.library.as_str());
    let candidate_name = format!("candidate {version}");
    let stacks: Vec<String> = plan.pairs.iter().map(|(s, _)| s.clone()).collect();
    let diff = Diff::between((&system_name, &old), (&candidate_name, &new), profiles.clone(), stacks);
    let server_rows: Vec<String> = server_pairs.iter().map(|(p, _)| p.clone()).collect();
    let server_diff = (!server_pairs.is_empty()).then(|| {
        Diff::between((&system_name, &old_servers), (&candidate_name, &new_servers), server_rows, programs.clone())
    });
    let backend_diff = backend.as_ref().filter(|(rows, ..)| !rows.is_empty()).map(|(rows, old, new, _)| {
        Diff::between((&system_name, old), (&candidate_name, new), rows.clone(), programs.clone())
    });
    let backend_proof = backend.as_ref().map(|(.., proof)| proof.clone());

    match a.format {
        Format::Json => {
            let out = serde_json::json!({
                "candidate": { "library": candidate.library.as_str(), "dir": candidate.dir, "version": version },
                "swapped": swapped,
                "servers": served,
                "not_swapped": plan.not_swapped,
                "cells": report.cells.len(),
                "wall_ms": wall.as_millis() as u64,
                "diff": serde_json::to_value(&diff).map_err(harness)?,
                "servers_diff": server_diff.as_ref().map(serde_json::to_value).transpose().map_err(harness)?,
                "builtin_server": backend_proof,
                "builtin_server_diff": backend_diff.as_ref().map(serde_json::to_value).transpose().map_err(harness)?,
            });
            println!("{}", serde_json::to_string_pretty(&out).map_err(harness)?);
        }
        Format::Table | Format::Md => {
            print!("{}", headers(&candidate, &version, &swapped, &served, &plan.not_swapped));
            println!(
                "{} cells ({} stacks × {} server profiles, twice; {} client programs × {} MTA profiles, twice) in {:.1} s\n",
                report.cells.len(),
                plan.pairs.len(),
                profiles.len(),
                programs.len(),
                server_pairs.len(),
                wall.as_secs_f64()
            );
            println!("The stacks on the library, each as it is and on the candidate:");
            super::diff::print(&diff, a.format)?;
            if let Some(d) = &server_diff {
                println!(
                    "\nThe MTAs on the library as servers, each as it is and on the candidate, against every client:"
                );
                super::diff::print(d, a.format)?;
            }
            if let (Some(d), Some(proof)) = (&backend_diff, &backend_proof) {
                println!(
                    "\nThe built-in server's rustls backend, served by this starttls-matrix and by one rebuilt against the checkout ({}), each probed by every client (read from the clients' words):",
                    proof.line()
                );
                super::diff::print(d, a.format)?;
            }
        }
    }
    let harness_errors = report.cells.values().any(|c| c.verdict == report_format::Verdict::HarnessError);
    let code = [Some(&diff), server_diff.as_ref(), backend_diff.as_ref()]
        .into_iter()
        .flatten()
        .map(Diff::exit_code)
        .max()
        .unwrap_or(0);
    Ok(if harness_errors { report_format::exit::HARNESS_ERROR } else { code })
}

/// An MTA profile's server as it is and on the candidate, as /proc/PID/maps of its daemons said.
#[derive(Debug, serde::Serialize)]
struct ServedBy {
    profile: String,
    system: String,
    candidate: String,
    swapped: bool,
}

impl ServedBy {
    fn of(
        profile: &str,
        system: Option<&report_format::MtaRun>,
        twin: Option<&report_format::MtaRun>,
        candidate: &Candidate,
    ) -> ServedBy {
        let line = |run: Option<&report_format::MtaRun>| match run.and_then(|r| r.info.loaded.as_ref()) {
            Some(l) => format!("{} ({})", l.version, l.path.as_deref().unwrap_or("path not read")),
            None => "not measured (no process of it had the library mapped)".to_string(),
        };
        let swapped = twin
            .and_then(|r| r.info.loaded.as_ref())
            .and_then(|l| l.path.as_deref())
            .is_some_and(|p| std::fs::canonicalize(p).is_ok_and(|p| p.starts_with(&candidate.dir)));
        let candidate_line = if swapped { line(twin) } else { format!("NOT SWAPPED: {}", line(twin)) };
        ServedBy { profile: profile.to_string(), system: line(system), candidate: candidate_line, swapped }
    }
}

/// The headers: the candidate, each swapped stack's library on either side as its processes
/// loaded it, and the stacks not swapped with the reason.
fn headers(
    candidate: &Candidate,
    version: &str,
    swapped: &[Swapped],
    served: &[ServedBy],
    not: &[candidate::NotSwapped],
) -> String {
    let mut out = String::new();
    let lib = candidate.library.as_str();
    let _ = writeln!(out, "candidate {lib}: {version} ({})\n", candidate.dir.display());
    let how = match candidate.library {
        report_format::Library::Rustls => {
            "what each side's program says of itself, and the checkout's source paths in the rebuilt one"
        }
        _ => "what each side's processes loaded, from the dynamic loader's record",
    };
    let _ = writeln!(out, "swapped ({how}):");
    let width = swapped.iter().map(|s| s.stack.len()).max().unwrap_or(0);
    for s in swapped {
        let _ = writeln!(out, "  {:width$}  system:    {}", s.stack, s.system);
        let _ = writeln!(out, "  {:width$}  candidate: {}", "", s.candidate.line());
    }
    if !served.is_empty() {
        let _ = writeln!(out, "MTA servers (what their daemons mapped, from /proc/PID/maps):");
        let width = served.iter().map(|s| s.profile.len()).max().unwrap_or(0);
        for s in served {
            let _ = writeln!(out, "  {:width$}  system:    {}", s.profile, s.system);
            let _ = writeln!(out, "  {:width$}  candidate: {}", "", s.candidate);
        }
    }
    if !not.is_empty() {
        let _ = writeln!(out, "not swapped:");
        for n in not {
            let _ = writeln!(out, "  {}: {}", n.what, n.reason);
        }
    }
    out.push('\n');
    out
}

/// Build the rustls client program against a checkout (`scripts/build-candidate rustls`, beside
/// the matrix), bounded at 30 minutes: the program's path.
async fn build_rustls(matrix: &std::path::Path, candidate: &Candidate) -> Result<std::path::PathBuf, Exit> {
    let dir = matrix.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let script = dir.join("scripts/build-candidate");
    if !script.exists() {
        return Err(usage(anyhow::anyhow!(
            "compare --candidate rustls=…: {} is missing (it builds the rustls client against the checkout)",
            script.display()
        )));
    }
    eprintln!("compare: building the rustls client against {} (minutes the first time) …", candidate.dir.display());
    let spec = procs::Spec {
        program: script,
        args: vec!["rustls".into(), candidate.dir.clone().into_os_string()],
        env: vec![],
        stdin: None,
        stdin_then: None,
        timeout: std::time::Duration::from_secs(30 * 60),
        confine: procs::Confine::Group,
    };
    match procs::run(&spec).await.map_err(harness)? {
        procs::Exit::Finished { status, stdout, .. } if status.success() => {
            let program = stdout.lines().last().and_then(|l| l.split_whitespace().next()).unwrap_or_default();
            Ok(std::path::PathBuf::from(program))
        }
        procs::Exit::Finished { stderr, .. } => {
            Err(harness(anyhow::anyhow!("build the rustls client against {}: {stderr}", candidate.dir.display())))
        }
        procs::Exit::TimedOut { .. } => {
            Err(harness(anyhow::anyhow!("building the rustls client took over 30 minutes")))
        }
    }
}

/// The built-in server's rustls backend serving `profile`, once by `harness` (ours or one rebuilt
/// against a checkout) through `serve`, probed by our own `probe` with every client program:
/// each client's outcome, keyed `client/profile`. Both sides are read the same way (from the
/// clients' words: `probe` is blind), so only the server differs.
async fn served_by(
    harness_exe: &std::path::Path,
    matrix: &std::path::Path,
    profile: &str,
    programs: &[String],
) -> Result<BTreeMap<String, harness::diff::Seen>, Exit> {
    use tokio::io::AsyncBufReadExt;
    let args: Vec<std::ffi::OsString> =
        vec!["serve".into(), profile.into(), "--matrix".into(), matrix.as_os_str().to_owned()];
    let mut server = procs::LongLived::spawn(harness_exe, &args, &[]).map_err(harness)?;
    let stderr = server.take_stderr().ok_or_else(|| harness(anyhow::anyhow!("serve {profile}: no stderr")))?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    // "serving profile P on 127.0.0.1:PORT as mx.test; trust /…/ca.pem", within 30 s.
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("serving profile") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let parsed = first.as_deref().and_then(|l| {
        let addr = l.split(" on ").nth(1)?.split(' ').next()?.to_string();
        let ca = l.rsplit("; trust ").next()?.to_string();
        Some((addr, ca))
    });
    let Some((addr, ca)) = parsed else {
        server.end(std::time::Duration::ZERO).await;
        return Err(harness(anyhow::anyhow!("{} serve {profile} did not say where it listens", harness_exe.display())));
    };
    let exe = harness::runner::builtin_exe().map_err(harness)?;
    let mut args: Vec<std::ffi::OsString> = vec![
        "probe".into(),
        addr.into(),
        "--servername".into(),
        servers::SERVER_NAME.into(),
        "--cafile".into(),
        ca.into(),
        "--matrix".into(),
        matrix.as_os_str().to_owned(),
        "--format".into(),
        "json".into(),
    ];
    for p in programs {
        args.extend(["--client".into(), p.into()]);
    }
    let spec = procs::Spec {
        program: exe,
        args,
        env: vec![],
        stdin: None,
        stdin_then: None,
        timeout: std::time::Duration::from_secs(300),
        confine: procs::Confine::Group,
    };
    let probed = procs::run(&spec).await;
    server.end(std::time::Duration::ZERO).await;
    let stdout = match probed.map_err(harness)? {
        procs::Exit::Finished { stdout, .. } => stdout,
        procs::Exit::TimedOut { .. } => return Err(harness(anyhow::anyhow!("probe of {profile} took over 300 s"))),
    };
    let report: report_format::Report =
        serde_json::from_str(&stdout).map_err(|e| harness(anyhow::anyhow!("read the probe of {profile}: {e}")))?;
    Ok(report.cells.values().map(|c| (format!("{}/{profile}", c.client), harness::diff::Seen::cell(c))).collect())
}
