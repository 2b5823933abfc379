//! The `ledgerstack` command: argument parsing and glue over the library crates. Every
//! subcommand's logic lives in a library (`engine`, later `api`, `usage`); this crate only turns
//! arguments into calls and results into output.

mod admin;
mod audit;
mod bench;
mod call;
mod import;
mod serve;
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
    /// Drop the read models of a stopped server and rebuild them from the log.
    Rebuild(state::StateArgs),
    /// Print a hash of the read models (equal for equal logs: compare two rebuilds or nodes).
    Digest(state::StateArgs),
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
            Command::Import(args) => import::run(args).await,
            Command::Usage { which } => usage_export::run(which).await,
            Command::Bench { which } => bench::run(which).await,
            Command::Audit(which) => audit::run(which).await,
            Command::Client(which) => call::run(which).await,
        }
    })
}
