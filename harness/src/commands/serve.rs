//! `serve`: one server profile on 127.0.0.1, kept running until Ctrl-C, one JSON line per
//! connection on stdout.

use super::common::{Exit, harness, load_matrix, usage};
use anyhow::Context as _;
use harness::classify::Tables;
use std::path::Path;

pub async fn main(matrix_path: &Path, id: &str, port: u16, tables: &Tables) -> Result<i32, Exit> {
    let matrix = load_matrix(matrix_path, tables)?;
    let entry = matrix
        .server(id)
        .ok_or_else(|| {
            let known: Vec<&str> = matrix.servers.iter().map(|s| s.profile.id.as_str()).collect();
            usage(anyhow::anyhow!(
                "find server profile {id:?} in {}: known profiles are {}",
                matrix_path.display(),
                known.join(", ")
            ))
        })?
        .clone();
    let dir = tempfile::Builder::new()
        .prefix("starttls-matrix-serve-")
        .tempdir()
        .context("create a work directory")
        .map_err(harness)?;
    let pki = servers::TestPki::generate(dir.path()).context("make the test PKI").map_err(harness)?;
    if entry.profile.backend.mta().is_some() {
        return serve_mta(matrix_path, &entry.profile, &pki, dir.path()).await;
    }
    let options =
        servers::ServeOptions { bind: std::net::SocketAddr::from(([127, 0, 0, 1], port)), ..Default::default() };
    let mut server = servers::start(&entry.profile, &pki, options)
        .await
        .with_context(|| format!("start server profile {id}"))
        .map_err(harness)?;
    let addr = server.addr();
    eprintln!("serving profile {id} on {addr} as {}; trust {}", servers::SERVER_NAME, pki.ca_cert.display());
    eprintln!(
        "try: starttls-matrix client openssl-client --connect {addr} --servername {} --cafile {}",
        servers::SERVER_NAME,
        pki.ca_cert.display()
    );
    eprintln!("one JSON line per connection follows; Ctrl-C stops");
    loop {
        tokio::select! {
            record = server.next_record() => match record {
                Some(r) => println!("{}", serde_json::to_string(&r).context("serialise a connection record").map_err(harness)?),
                None => return Ok(0),
            },
            _ = super::common::stop_signal() => {
                server.stop().await;
                return Ok(0);
            }
        }
    }
}

/// A real MTA: started by its launcher (on a free port), its settings shown, its server-side
/// errors printed as they appear; Ctrl-C stops it and shows how the stop went.
async fn serve_mta(
    matrix_path: &Path,
    profile: &servers::ServerProfile,
    pki: &servers::TestPki,
    dir: &Path,
) -> Result<i32, Exit> {
    let root = servers::mta::extracted_roots(matrix_path.parent().unwrap_or(Path::new(".")));
    let options = servers::MtaOptions { root, work: dir.join("mta").join(&profile.id), base: dir.to_path_buf() };
    let mut mta = servers::RunningMta::start(profile, pki, &options)
        .await
        .with_context(|| format!("start server profile {}", profile.id))
        .map_err(harness)?;
    let addr = mta.addr();
    let info = mta.info().clone();
    eprintln!(
        "serving profile {} with {} {} ({}) on {addr}, ready in {} ms; trust {}",
        profile.id,
        info.mta.name(),
        info.version,
        info.tls_library,
        info.ready_ms,
        pki.ca_cert.display()
    );
    for (k, v) in &info.settings {
        eprintln!("  {k} = {v}");
    }
    for w in &info.config_warnings {
        eprintln!("  warning about its own configuration: {w}");
    }
    eprintln!("its files are in {}; server-side errors follow; Ctrl-C stops", options.work.display());
    loop {
        tokio::select! {
            _ = mta.quiesce(std::time::Duration::from_millis(200)) => {
                for r in mta.take_records() {
                    println!("{}", serde_json::to_string(&r).context("serialise a connection record").map_err(harness)?);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ = super::common::stop_signal() => {
                let report = mta.stop().await;
                eprintln!("stopped in {} ms; port free: {}; processes left: {:?}", report.stop_ms, report.port_free, report.leftovers);
                return Ok(0);
            }
        }
    }
}
