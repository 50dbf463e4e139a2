//! The `starttls-matrix` command line: run a matrix, list its cells, probe a running server,
//! serve one profile by hand, diff and compare runs, check expectations, merge shards, or act
//! as a built-in client program.

mod commands;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use commands::common::{Exit, Format, harness, json, load_matrix, usage};
use harness::classify::Tables;
use harness::plan::Plan;
use harness::shard::Shard;
use std::path::PathBuf;
use std::sync::Arc;

const EXIT_CODES: &str = "Exit codes:
  0  every verdict as expected (pass, expected failure, skipped); a diff with nothing broken
  1  some unexpected verdict (unexpected failure or success, wrong error, flaky), a diff with
     newly broken cells, or stale expectations
  2  usage or configuration error (bad flag, malformed matrix: file and line are named)
  3  harness error (we could not run a cell: spawn, bind, crash) — never an incompatibility
130  interrupted (Ctrl-C); every child process is ended, nothing is written

Colour only on a terminal; NO_COLOR is honoured.";

#[derive(Debug, Parser)]
#[command(
    name = "starttls-matrix",
    version,
    about = "Run real TLS client stacks against SMTP STARTTLS servers and record what breaks",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
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
        /// Server profiles to serve at once (default: two per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Judge each cell against this earlier report's outcome (cells it lacks: against the
        /// matrix's expectations).
        #[arg(long, value_name = "REPORT")]
        baseline: Option<PathBuf>,
        /// Also write JUnit XML here (one test case per cell).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run only shard I of N (deterministic: every cell is in exactly one shard).
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
        /// Run each cell N times; a cell whose outcomes differ is reported flaky.
        #[arg(long, value_name = "N", default_value_t = 1)]
        repeat: u32,
    },
    /// List the cells of the matrix, one id (`client/server`) per line.
    List {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
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
        /// Also write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
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
    /// What changed between two runs: newly broken first, then fixed, then changed.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// What a policy variant of a client stack breaks: run both against every server profile
    /// and print the diff.
    Compare {
        /// The client stack as it is.
        #[arg(long)]
        client: String,
        /// A variant declared in the matrix (e.g. `openssl@seclevel1`).
        #[arg(long, visible_alias = "client-variant")]
        variant: Option<String>,
        /// Or a variant made here: add KEY=VALUE to the stack's environment (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        with_env: Vec<String>,
        /// Or a variant made here: add an argument to the stack's program (repeatable).
        #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
        with_arg: Vec<String>,
        /// Or a variant made here: another program speaking the client contract.
        #[arg(long, value_name = "PATH")]
        with_program: Option<PathBuf>,
        #[arg(long, default_value = "matrix.toml")]
        matrix: PathBuf,
        /// Only server profiles whose id matches this glob (repeatable).
        #[arg(long = "server", value_name = "GLOB")]
        servers: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Check expectations for stale entries, or write expectations from a run.
    Expectations {
        #[arg(long, default_value = "matrix.toml")]
        matrix: PathBuf,
        /// List entries that match no cell, never apply, or that the cells contradict.
        #[arg(long)]
        check: bool,
        /// With --check: judge this report instead of running the matrix.
        #[arg(long, value_name = "REPORT")]
        report: Option<PathBuf>,
        /// Write [[expect]] entries recorded from this report.
        #[arg(long, value_name = "REPORT", conflicts_with = "check")]
        from: Option<PathBuf>,
        /// With --from: write here instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Render the published tables (HTML page, Markdown) from a report.
    Report {
        report: PathBuf,
        /// Write the HTML page here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the Markdown table here.
        #[arg(long, value_name = "FILE")]
        md: Option<PathBuf>,
        /// Mark what changed since this earlier report.
        #[arg(long, value_name = "REPORT")]
        previous: Option<PathBuf>,
        /// What to print when no file is asked for.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Generate server profiles, run client stacks against them, and check each stack's
    /// declared policy; findings are shrunk and written as replayable matrices.
    Fuzz {
        #[arg(long, default_value = "matrix.toml")]
        matrix: PathBuf,
        /// Only client stacks whose id matches this glob (repeatable); default: all with a policy.
        #[arg(long = "client", value_name = "GLOB")]
        clients: Vec<String>,
        /// Generated profiles per client stack.
        #[arg(long, default_value_t = 100)]
        cases: u32,
        /// The seed: the same seed generates the same profiles.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Judge CLIENT by this policy file instead of its declared one (repeatable).
        #[arg(long = "policy", value_name = "CLIENT=FILE")]
        policies: Vec<String>,
        /// Where replayable findings are written.
        #[arg(long, default_value = "results/fuzz")]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Merge shard reports of one matrix into one report.
    Merge {
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        /// Also write the Markdown table here.
        #[arg(long, value_name = "FILE")]
        md: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Act as a built-in client program (the client contract): `client openssl-client --connect …`.
    Client {
        /// openssl-client, rustls-client or lettre-client.
        name: String,
        /// The program's own flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
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
        Cmd::Run { select, out, format, jobs, baseline, junit, shard, repeat } => {
            let args = commands::run::RunArgs {
                matrix: select.matrix,
                servers: select.servers,
                clients: select.clients,
                out,
                format,
                jobs,
                baseline,
                junit,
                shard,
                repeat,
            };
            rt.block_on(commands::run::main(args, tables))
        }
        Cmd::List { select, shard, format } => {
            let matrix = load_matrix(&select.matrix, &tables)?;
            let plan = Plan::new(&matrix, &select.servers, &select.clients).context("select cells").map_err(usage)?;
            let plan = shard.map_or(plan.clone(), |s| s.apply(&plan));
            let ids: Vec<String> = plan.cells.iter().map(ToString::to_string).collect();
            match format {
                Format::Json => println!("{}", json(&ids)?),
                Format::Table | Format::Md => ids.iter().for_each(|id| println!("{id}")),
            }
            Ok(0)
        }
        Cmd::Probe { target, servername, cafile, matrix, clients, format, out, junit, allow_remote } => {
            let args = commands::probe::ProbeArgs {
                target,
                servername,
                cafile,
                matrix,
                clients,
                format,
                out,
                junit,
                allow_remote,
            };
            rt.block_on(commands::probe::main(args, tables))
        }
        Cmd::Serve { profile, port, matrix } => rt.block_on(commands::serve::main(&matrix, &profile, port, &tables)),
        Cmd::Diff { old, new, format } => commands::diff::main(&old, &new, format),
        Cmd::Compare { client, variant, with_env, with_arg, with_program, matrix, servers, format, jobs } => {
            let args = commands::compare::CompareArgs {
                matrix,
                client,
                variant,
                with_env,
                with_args: with_arg,
                with_program,
                servers,
                format,
                jobs,
            };
            rt.block_on(commands::compare::main(args, tables))
        }
        Cmd::Expectations { matrix, check, report, from, output, format } => {
            let args = commands::expectations::ExpectationsArgs { matrix, check, report, from, output, format };
            rt.block_on(commands::expectations::main(args, tables))
        }
        Cmd::Report { report, html, md, previous, format } => {
            commands::report::main(commands::report::ReportArgs { report, html, md, previous, format })
        }
        Cmd::Fuzz { matrix, clients, cases, seed, policies, out, format } => {
            drop(rt);
            commands::fuzz::main(
                commands::fuzz::FuzzArgs { matrix, clients, cases, seed, policies, out, format },
                tables,
            )
        }
        Cmd::Merge { reports, output, md, format } => commands::merge::main(&reports, &output, md.as_deref(), format),
        Cmd::Client { name, .. } => {
            Err(usage(anyhow::anyhow!("run client {name:?}: the built-in clients are {}", clients::BUILTIN.join(", "))))
        }
    }
}
