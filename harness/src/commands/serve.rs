//! `serve`: one server profile on 127.0.0.1, kept running until Ctrl-C or SIGTERM, one JSON
//! line per connection on stdout (for an MTA, one per connection its log shows, and with
//! `--raw-log` every line of that log on stderr as it comes).

use super::common::{Exit, harness, load_matrix, usage};
use anyhow::Context as _;
use harness::classify::Tables;
use report_format::{Backend, Mta, ServerProfile};
use std::path::{Path, PathBuf};

/// `serve`'s flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The server profile id from the matrix.
    pub profile: String,
    /// The port (default: any free one; an MTA always takes a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// For an MTA: also print every line of its log on stderr as it comes.
    #[arg(long)]
    pub raw_log: bool,
}

pub async fn main(a: ServeArgs, tables: &Tables) -> Result<i32, Exit> {
    let matrix = load_matrix(&a.matrix, tables)?;
    let id = &a.profile;
    let entry = matrix
        .server(id)
        .ok_or_else(|| {
            let known: Vec<&str> = matrix.servers.iter().map(|s| s.profile.id.as_str()).collect();
            usage(anyhow::anyhow!(
                "find server profile {id:?} in {}: known profiles are {}",
                a.matrix.display(),
                known.join(", ")
            ))
        })?
        .clone();
    procs::workdir::remove_stale(&std::env::temp_dir());
    let dir = procs::workdir::create(&format!("{}serve-", procs::workdir::PREFIX))
        .context("create a work directory")
        .map_err(harness)?;
    let pki = servers::TestPki::generate(dir.path()).context("make the test PKI").map_err(harness)?;
    let backend = match entry.profile.backend {
        Backend::Mta(m) => return serve_mta(&a, m, &entry.profile, &pki, dir.path()).await,
        Backend::Builtin(b) => b,
    };
    let options =
        servers::ServeOptions { bind: std::net::SocketAddr::from(([127, 0, 0, 1], a.port)), ..Default::default() };
    let mut server = servers::start(backend, &entry.profile, &pki, options)
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
    // One signal listener for the whole loop: one made anew each turn misses a signal that
    // arrives between turns.
    let stop = super::common::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            record = server.next_record() => match record {
                Some(r) => println!("{}", serde_json::to_string(&r).context("serialise a connection record").map_err(harness)?),
                None => return Ok(0),
            },
            _ = &mut stop => {
                server.stop().await;
                return Ok(0);
            }
        }
    }
}

/// A real MTA: started by its launcher (on a free port), its settings shown, the connections its
/// log shows printed as they end; Ctrl-C stops it and shows how the stop went.
async fn serve_mta(
    a: &ServeArgs,
    mta: Mta,
    profile: &ServerProfile,
    pki: &servers::TestPki,
    dir: &Path,
) -> Result<i32, Exit> {
    use servers::DhParams;
    let roots = ::mta::extracted_roots(a.matrix.parent().unwrap_or(Path::new(".")));
    let options = ::mta::ServerOptions {
        roots,
        work: dir.join("mta").join(&profile.id),
        base: dir.to_path_buf(),
        candidate: None,
    };
    let creds = ::mta::Credentials {
        ca_cert: pki.ca_cert.clone(),
        cert: pki.cert(profile.cert),
        key: pki.key(profile.cert),
        dh: profile.dh.map(|d| (d.name().to_string(), d.pem().to_string())),
        server_name: servers::SERVER_NAME.into(),
    };
    let mut server = ::mta::MtaServer::start(mta, profile, &creds, &options)
        .await
        .with_context(|| format!("start server profile {}", profile.id))
        .map_err(harness)?;
    if a.raw_log {
        server.keep_raw();
    }
    let addr = server.addr();
    let info = server.info().clone();
    eprintln!(
        "serving profile {} with {} {} ({}) on {addr}, ready in {} ms; trust {}",
        profile.id,
        info.mta.name(),
        info.version,
        info.loaded.as_ref().map_or(info.tls_library.clone(), |l| format!(
            "{} at {}",
            l.version,
            l.path.as_deref().unwrap_or("?")
        )),
        info.ready_ms,
        pki.ca_cert.display()
    );
    for (k, v) in &info.settings {
        eprintln!("  {k} = {v}");
    }
    for w in &info.config_warnings {
        eprintln!("  warning about its own configuration: {w}");
    }
    eprintln!("its files are in {}; one JSON line per connection follows; Ctrl-C stops", options.work.display());
    let stop = super::common::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = server.quiesce(std::time::Duration::from_millis(200)) => {
                for line in server.take_raw() {
                    eprintln!("log: {line}");
                }
                for r in server.take_records() {
                    println!("{}", serde_json::to_string(&r).context("serialise a connection record").map_err(harness)?);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ = &mut stop => {
                let report = server.stop().await;
                eprintln!("stopped in {} ms; port free: {}; processes left: {:?}", report.stop_ms, report.port_free, report.leftovers);
                return Ok(0);
            }
        }
    }
}
