//! The `ledgerstack` command: argument parsing and glue over the library crates. Every
//! subcommand's logic lives in a library (`engine`, later `api`, `usage`); this crate only turns
//! arguments into calls and results into output.

mod admin;
mod audit;
mod backup;
mod bench;
mod call;
mod import;
mod log_view;
mod master_key;
mod point_in_time;
mod serve;
mod shutdown;
mod state;
mod usage_export;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A server answers each request with dozens of short-lived allocations (parameters, JSON
/// values, the rendered body); mimalloc serves them markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ledgerstack: an event-sourced cloud management engine that speaks the Apache CloudStack API.
#[derive(Parser)]
#[command(name = "ledgerstack", version)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run Ledgerstack on its embedded event log (no database to set up).
    Serve(serve::ServeArgs),
    /// Operator commands on a data directory.
    Admin {
        #[command(subcommand)]
        which: admin::AdminCommand,
    },
    /// Drop the read models of a stopped server (all, or those --only picks) and rebuild them
    /// from the log.
    Rebuild(state::RebuildArgs),
    /// Print a hash of the read models (equal for equal logs: compare two rebuilds or nodes).
    Digest(state::StateArgs),
    /// Replay the log into the read models as they were at a moment (by occurred-at or
    /// position, optionally as known at a recorded-at) and print what they held and their
    /// digest; reads the segment files only, so the server may be running.
    Replay(point_in_time::ReplayArgs),
    /// What the API would have answered at a moment: `state --at 2026-03-03T14:00:00Z vms
    /// account=alice` prints listVirtualMachines' JSON as of then.
    State(point_in_time::StateArgs),
    /// Append historical events from a JSON Lines file to a stopped server's log (checked
    /// whole first; events already in the log are skipped).
    Import(import::ImportArgs),
    /// Usage records of a stopped server.
    Usage {
        #[command(subcommand)]
        which: usage_export::UsageCommand,
    },
    /// Measure performance against baselines taken in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// `export` and `verify`: the log as JSON Lines for auditors, and checking it.
    #[command(flatten)]
    Audit(audit::AuditCommand),
    /// `inspect` and `tail`: look at the log, live, without opening the store.
    #[command(flatten)]
    LogView(log_view::LogViewCommand),
    /// `backup` and `restore`: a consistent copy of a data directory while its server runs.
    #[command(flatten)]
    Backup(backup::BackupCommand),
    /// `call` and `sign`: a CloudStack API client.
    #[command(flatten)]
    Client(call::ClientCommand),
}

/// The data directory used when `--data-dir` is not given.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("ledgerstack-data")
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Admin { which } => admin::run(which),
            Command::Rebuild(args) => state::rebuild(args).await,
            Command::Digest(args) => state::digest(args).await,
            Command::Replay(args) => point_in_time::replay(args).await,
            Command::State(args) => point_in_time::state(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Usage { which } => usage_export::run(which).await,
            Command::Bench { which } => bench::run(which).await,
            Command::Audit(which) => audit::run(which).await,
            Command::LogView(which) => log_view::run(which).await,
            Command::Backup(which) => backup::run(which).await,
            Command::Client(which) => call::run(which).await,
        }
    })
}
