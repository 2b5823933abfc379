//! `ledgerstack inspect` and `ledgerstack tail`: arguments, signals and output over the
//! `audit` library's `inspect` and `tail` (`docs/auditors.md`). Both read the segment files
//! read-only, so the server may be running.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit::{Filter, Format, TailOptions, Target, TypePattern};

/// The log viewing subcommands (flattened into the top level).
#[derive(clap::Subcommand)]
pub(crate) enum LogViewCommand {
    /// Show one event of the log by position or id: its envelope, hashes, the segment file and
    /// byte offset of its record, its data, and the other events of the same request or job.
    Inspect(InspectArgs),
    /// Print the last events of the log (filtered by type or stream), and with --follow the
    /// events a running server appends, as they are committed.
    Tail(TailArgs),
}

/// Arguments of `ledgerstack inspect`.
#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// A log position (1, 2, ...) or an event id (UUID).
    target: Target,
    /// The data directory (its segment files are only read: the server may be running).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Print a JSON object (the event in its external form, its hash, its record's place and
    /// the correlated events) instead of a readable block.
    #[arg(long)]
    json: bool,
    /// Look for events with the same correlation id this many events before and after it.
    #[arg(long, default_value_t = 10_000)]
    window: usize,
}

/// Arguments of `ledgerstack tail`.
#[derive(clap::Args)]
pub(crate) struct TailArgs {
    /// The data directory (its segment files are only read: the server may be running).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// How many of the last matching events to print.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    lines: usize,
    /// Only events of this type: an exact name (VM.START) or a prefix ending in `*` (VM.*).
    /// May be given several times.
    #[arg(long = "type", value_name = "PATTERN")]
    types: Vec<TypePattern>,
    /// Only events of this stream (vm-<uuid>) or stream category (vm). May be given several
    /// times.
    #[arg(long = "stream", value_name = "STREAM")]
    streams: Vec<String>,
    /// Keep printing events as they are appended, until Ctrl-C, SIGTERM or the reader of the
    /// output goes away.
    #[arg(short = 'f', long)]
    follow: bool,
    /// How often --follow looks at the log, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
    /// One JSON object per line: the external form, exactly as `export` writes it.
    #[arg(long)]
    json: bool,
}

/// Runs a log viewing subcommand.
pub(crate) async fn run(command: LogViewCommand) -> Result<()> {
    match command {
        LogViewCommand::Inspect(args) => {
            // A scan of the segment files: keep it off the async workers.
            tokio::task::spawn_blocking(move || inspect(args))
                .await
                .context("the inspect task failed")?
        }
        LogViewCommand::Tail(args) => tail(args).await,
    }
}

/// Refuses a data directory without a log, naming it (rather than an empty answer).
fn require_log(data_dir: &Path) -> Result<()> {
    if !data_dir.join("log").is_dir() {
        bail!("no event log in {} (no log/ directory)", data_dir.display());
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    require_log(&args.data_dir)?;
    let found = audit::inspect(&args.data_dir, args.target, args.window)
        .with_context(|| format!("inspecting the log in {}", args.data_dir.display()))?;
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&found.to_json()?)?;
        text.push('\n');
        text
    } else {
        found.to_text()?
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing the output"),
        _ => Ok(()),
    }
}

async fn tail(args: TailArgs) -> Result<()> {
    require_log(&args.data_dir)?;
    let options = TailOptions {
        filter: Filter {
            types: args.types,
            streams: args.streams,
        },
        last: args.lines,
        format: if args.json {
            Format::Json
        } else {
            Format::Line
        },
        follow: args.follow.then(|| Duration::from_millis(args.poll_ms)),
    };
    // Handled from here on, so that Ctrl-C or SIGTERM ends a follow cleanly (exit 0, output
    // flushed) instead of killing the process mid-line.
    let signals = crate::shutdown::ShutdownSignals::listen()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let data_dir = args.data_dir.clone();
    let mut task = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::new(io::stdout().lock());
        audit::tail(&data_dir, &options, &mut out, &|| {
            stopped.load(Ordering::Relaxed)
        })
    });
    let result = tokio::select! {
        result = &mut task => result,
        () = signals.received() => {
            stop.store(true, Ordering::Relaxed);
            task.await
        }
    };
    match result.context("the tail task failed")? {
        Ok(_) => Ok(()),
        Err(e) if e.is_closed_output() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading the log in {}", args.data_dir.display())),
    }
}
