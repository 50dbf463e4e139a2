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
            _ = tokio::signal::ctrl_c() => {
                server.stop().await;
                return Ok(0);
            }
        }
    }
}
