//! The `starttls-matrix` command line: run a matrix, publish a run, list its cells, probe a
//! running server, serve one profile by hand, diff and compare runs, check expectations, merge
//! shards, or act as a built-in client program.

mod commands;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use commands::common::{Exit, harness, usage};
use harness::classify::Tables;
use std::sync::Arc;

const EXIT_CODES: &str = "Exit codes:
  0  every verdict as expected (pass, expected failure, skipped); a diff with nothing broken
  1  some unexpected verdict (unexpected failure or success, wrong error, flaky), a diff with
     newly broken cells, or stale expectations
  2  usage or configuration error (bad flag, malformed matrix: file and line are named), or a
     publication refused (a run that skipped stacks, without --allow-skipped)
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

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the matrix: start each server profile, run every client stack against it, print the
    /// table and write report.json, README.md and index.html into target/starttls-matrix/latest/
    /// (the published results/ only with --out results).
    Run(commands::run::RunArgs),
    /// Make a run's report the published table in results/ (report.json, README.md, index.html,
    /// history/); refused for a run that skipped stacks unless --allow-skipped.
    Publish(commands::publish::PublishArgs),
    /// List the cells of the matrix, one id (`client/server`) per line.
    List(commands::list::ListArgs),
    /// Run every client stack against a server that is already running.
    Probe(commands::probe::ProbeArgs),
    /// Start one server profile on 127.0.0.1 and keep it running, printing one JSON line per
    /// connection, until Ctrl-C.
    Serve(commands::serve::ServeArgs),
    /// What changed between two runs: newly broken first, then fixed, then changed.
    Diff(commands::diff::DiffArgs),
    /// What a policy variant of a client stack breaks: run both against every server profile
    /// and print the diff.
    Compare(commands::compare::CompareArgs),
    /// Check expectations for stale entries, or write expectations from a run.
    Expectations(commands::expectations::ExpectationsArgs),
    /// Render the published tables (HTML page, Markdown) from a report.
    Report(commands::report::ReportArgs),
    /// Generate server profiles, run client stacks against them, and check each stack's
    /// declared policy; findings are shrunk and written as replayable matrices.
    Fuzz(commands::fuzz::FuzzArgs),
    /// Merge shard reports of one matrix into one report.
    Merge(commands::merge::MergeArgs),
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
        procs::kill_all();
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
        Cmd::Run(a) => rt.block_on(commands::run::main(a, tables)),
        Cmd::Publish(a) => commands::publish::main(a),
        Cmd::List(a) => commands::list::main(a, &tables),
        Cmd::Probe(a) => rt.block_on(commands::probe::main(a, tables)),
        Cmd::Serve(a) => rt.block_on(commands::serve::main(a, &tables)),
        Cmd::Diff(a) => commands::diff::main(a),
        Cmd::Compare(a) => rt.block_on(commands::compare::main(a, tables)),
        Cmd::Expectations(a) => rt.block_on(commands::expectations::main(a, tables)),
        Cmd::Report(a) => commands::report::main(a),
        Cmd::Fuzz(a) => {
            drop(rt);
            commands::fuzz::main(a, tables)
        }
        Cmd::Merge(a) => commands::merge::main(a),
        Cmd::Client { name, .. } => {
            Err(usage(anyhow::anyhow!("run client {name:?}: the built-in clients are {}", clients::BUILTIN.join(", "))))
        }
    }
}
