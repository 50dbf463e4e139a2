//! The `starttls-matrix` command line: run a matrix, list its cells, probe a running server,
//! serve one profile by hand, or act as a built-in client program.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use harness::adapters::Target;
use harness::classify::Tables;
use harness::matrix::Matrix;
use harness::plan::Plan;
use harness::report::model::{Report, RunSummary};
use harness::report::{markdown, progress::Progress, terminal, write};
use harness::runner::{self, Context, Event};
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

const EXIT_CODES: &str = "Exit codes:
  0  every verdict as expected (pass, expected failure, skipped)
  1  some unexpected verdict (unexpected failure or success, wrong error)
  2  usage or configuration error (bad flag, malformed matrix: file and line are named)
  3  harness error (we could not run a cell: spawn, bind, crash) — never an incompatibility
130  interrupted (Ctrl-C); every child process is ended, nothing is written";

#[derive(Debug, Parser)]
#[command(name = "starttls-matrix", version, about = "Run real TLS client stacks against SMTP STARTTLS servers and record what breaks", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct Select {
    /// The matrix file.
    #[arg(long, default_value = "matrix.toml")]
    matrix: PathBuf,
    /// Only server profiles whose id matches this glob (repeatable).
    #[arg(long = "server", value_name = "GLOB")]
    servers: Vec<String>,
    /// Only client stacks whose id matches this glob (repeatable).
    #[arg(long = "client", value_name = "GLOB")]
    clients: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the matrix: start each server profile, run every client stack against it, print the
    /// table and write results/report.json and results/README.md.
    Run {
        #[command(flatten)]
        select: Select,
        /// Where to write report.json and README.md.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// What to print on stdout.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Server profiles to serve at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// List the cells of the matrix, one id (`client/server`) per line.
    List {
        #[command(flatten)]
        select: Select,
    },
    /// Run every client stack against a server that is already running.
    Probe {
        /// The server, HOST:PORT.
        target: String,
        /// The name to send as SNI and verify (default: the host).
        #[arg(long)]
        servername: Option<String>,
        /// CA certificates to trust (default: the system bundle).
        #[arg(long)]
        cafile: Option<PathBuf>,
        /// The matrix whose client stacks to use.
        #[arg(long, default_value = "matrix.toml")]
        matrix: PathBuf,
        /// Only client stacks whose id matches this glob (repeatable).
        #[arg(long = "client", value_name = "GLOB")]
        clients: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also write report.json and README.md here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Allow a target outside the loopback range (only for servers you run).
        #[arg(long)]
        allow_remote: bool,
    },
    /// Start one server profile on 127.0.0.1 and keep it running, printing one JSON line per
    /// connection, until Ctrl-C.
    Serve {
        /// The server profile id from the matrix.
        profile: String,
        /// The port (default: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value = "matrix.toml")]
        matrix: PathBuf,
    },
    /// Act as a built-in client program (the client contract): `client openssl-client --connect …`.
    Client {
        /// openssl-client or rustls-client.
        name: String,
        /// The program's own flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// An error with the exit code it earns.
struct Exit(i32, anyhow::Error);

fn usage(e: impl Into<anyhow::Error>) -> Exit {
    Exit(2, e.into())
}

fn harness(e: impl Into<anyhow::Error>) -> Exit {
    Exit(3, e.into())
}

fn main() {
    // A built-in client: its own flags and exit codes, before our parser sees anything.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "client")
        && let Some(name) = argv.get(2).and_then(|n| n.to_str())
        && let Some(code) = clients::run_builtin(name, argv[3..].to_vec())
    {
        std::process::exit(code);
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        harness::process::kill_all();
        default_hook(info);
    }));
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(Exit(code, e)) => {
            eprintln!("starttls-matrix: failed to {e:#}");
            code
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> Result<i32, Exit> {
    let rt = tokio::runtime::Runtime::new().context("start the async runtime").map_err(harness)?;
    let tables = Arc::new(Tables::builtin().context("load the classification tables").map_err(harness)?);
    match cli.command {
        Cmd::Run { select, out, format, jobs } => rt.block_on(run(select, out, format, jobs, tables)),
        Cmd::List { select } => {
            let matrix = Matrix::load(&select.matrix, &tables).context("load the matrix").map_err(usage)?;
            let plan = Plan::new(&matrix, &select.servers, &select.clients).context("select cells").map_err(usage)?;
            for cell in plan.cells {
                println!("{cell}");
            }
            Ok(0)
        }
        Cmd::Probe { target, servername, cafile, matrix, clients, format, out, allow_remote } => rt.block_on(probe(
            ProbeArgs { target, servername, cafile, matrix, clients, format, out, allow_remote },
            tables,
        )),
        Cmd::Serve { profile, port, matrix } => rt.block_on(serve(&matrix, &profile, port, &tables)),
        Cmd::Client { name, .. } => {
            Err(usage(anyhow::anyhow!("run client {name:?}: the built-in clients are {}", clients::BUILTIN.join(", "))))
        }
    }
}

/// Feed events to the progress display until the channel closes.
fn spawn_progress(quiet: bool) -> (mpsc::UnboundedSender<Event>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let mut progress = Progress::new(quiet);
        while let Some(ev) = rx.recv().await {
            progress.on_event(&ev);
        }
        progress.finish();
    });
    (tx, task)
}

/// Await `work`, or end every child and leave on Ctrl-C.
async fn or_interrupt<T>(work: impl std::future::Future<Output = T>) -> Result<T, Exit> {
    tokio::select! {
        v = work => Ok(v),
        _ = tokio::signal::ctrl_c() => {
            harness::process::kill_all();
            Err(Exit(130, anyhow::anyhow!("finish the run: interrupted; every child process was ended and nothing was written")))
        }
    }
}

fn write_results(report: &Report, out: &Path) -> Result<(), Exit> {
    let json = serde_json::to_string_pretty(report).context("serialise the report").map_err(harness)?;
    write::atomic(&out.join("report.json"), format!("{json}\n").as_bytes()).map_err(harness)?;
    write::atomic(&out.join("README.md"), markdown::render(report).as_bytes()).map_err(harness)?;
    Ok(())
}

fn print(report: &Report, format: Format) -> Result<(), Exit> {
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(report).context("serialise the report").map_err(harness)?)
        }
        Format::Table => {
            println!("{}", terminal::table(report));
            print!("{}", terminal::summary(report));
        }
    }
    Ok(())
}

async fn run(
    select: Select,
    out: PathBuf,
    format: Format,
    jobs: Option<usize>,
    tables: Arc<Tables>,
) -> Result<i32, Exit> {
    let matrix = Arc::new(Matrix::load(&select.matrix, &tables).context("load the matrix").map_err(usage)?);
    let plan = Plan::new(&matrix, &select.servers, &select.clients).context("select cells").map_err(usage)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = jobs.filter(|j| *j > 0).unwrap_or(if matrix.run.jobs > 0 { matrix.run.jobs } else { cores });
    let exe = runner::builtin_exe().context("find the starttls-matrix binary").map_err(harness)?;
    let (events, progress) = spawn_progress(false);
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = or_interrupt(Context::prepare(&matrix, &plan.clients, tables, &exe, &events))
        .await?
        .context("prepare the run")
        .map_err(harness)?;
    let ctx = Arc::new(ctx);
    let records = or_interrupt(runner::run(matrix.clone(), &plan, ctx.clone(), jobs, events.clone())).await?;
    drop(events);
    let _ = progress.await;
    let report = Report::build(RunSummary {
        mode: "run",
        matrix: &matrix,
        plan_servers: plan.servers.clone(),
        plan_clients: plan.clients.clone(),
        ctx: &ctx,
        records: &records,
        started,
        wall: clock.elapsed(),
        jobs,
    });
    write_results(&report, &out)?;
    print(&report, format)?;
    if matches!(format, Format::Table) {
        println!("wrote {} and {}", out.join("report.json").display(), out.join("README.md").display());
    }
    Ok(report.exit_code())
}

struct ProbeArgs {
    target: String,
    servername: Option<String>,
    cafile: Option<PathBuf>,
    matrix: PathBuf,
    clients: Vec<String>,
    format: Format,
    out: Option<PathBuf>,
    allow_remote: bool,
}

async fn probe(a: ProbeArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    let addrs: Vec<_> = a
        .target
        .to_socket_addrs()
        .with_context(|| format!("resolve {} (write HOST:PORT)", a.target))
        .map_err(usage)?
        .collect();
    if !a.allow_remote && addrs.iter().any(|s| !s.ip().is_loopback()) {
        return Err(usage(anyhow::anyhow!(
            "probe {}: it is not a loopback address; pass --allow-remote for a server you run",
            a.target
        )));
    }
    let host = a.target.rsplit_once(':').map_or(a.target.as_str(), |(h, _)| h).trim_matches(['[', ']']).to_string();
    let cafile = a.cafile.unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let matrix = Matrix::load(&a.matrix, &tables).context("load the matrix").map_err(usage)?;
    let plan_clients: Vec<String> = {
        let all: Vec<String> = matrix.clients.iter().map(|c| c.id.clone()).collect();
        if a.clients.is_empty() {
            all
        } else {
            let set = a
                .clients
                .iter()
                .map(|g| globset::Glob::new(g).map(|g| g.compile_matcher()))
                .collect::<Result<Vec<_>, _>>()
                .context("parse --client")
                .map_err(usage)?;
            all.into_iter().filter(|id| set.iter().any(|m| m.is_match(id))).collect()
        }
    };
    if plan_clients.is_empty() {
        return Err(usage(anyhow::anyhow!("select client stacks: none matches {:?}", a.clients)));
    }
    let exe = runner::builtin_exe().context("find the starttls-matrix binary").map_err(harness)?;
    let (events, progress) = spawn_progress(false);
    let started = SystemTime::now();
    let clock = Instant::now();
    let ctx = Arc::new(
        or_interrupt(Context::prepare(&matrix, &plan_clients, tables, &exe, &events))
            .await?
            .context("prepare the probe")
            .map_err(harness)?,
    );
    let target = Target {
        connect: a.target.clone(),
        servername: a.servername.unwrap_or(host),
        cafile,
        ehlo: runner::CLIENT_EHLO.into(),
    };
    let records = or_interrupt(runner::probe(ctx.clone(), &plan_clients, target, events.clone())).await?;
    drop(events);
    let _ = progress.await;
    let report = Report::build(RunSummary {
        mode: "probe",
        matrix: &matrix,
        plan_servers: vec![a.target.clone()],
        plan_clients,
        ctx: &ctx,
        records: &records,
        started,
        wall: clock.elapsed(),
        jobs: 1,
    });
    if let Some(out) = &a.out {
        write_results(&report, out)?;
    }
    print(&report, a.format)?;
    Ok(report.exit_code())
}

async fn serve(matrix_path: &Path, id: &str, port: u16, tables: &Tables) -> Result<i32, Exit> {
    let matrix = Matrix::load(matrix_path, tables).context("load the matrix").map_err(usage)?;
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
