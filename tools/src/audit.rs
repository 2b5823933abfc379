//! `ledgerstack export`, `ledgerstack verify` and `ledgerstack bench export`: arguments, output
//! and progress bars over the `audit` library (`docs/auditors.md`).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use audit::{Bound, Range, VerifySummary};
use engine::event::{EventBody, EventType, NewEvent, Position, StreamId};
use engine::store::EventStore;
use engine::store::ExpectedVersion;
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

/// Exit status when the export or log was read and does not check out.
const EXIT_FINDING: i32 = 1;
/// Exit status when the export or log could not be read at all.
const EXIT_UNREADABLE: i32 = 2;

/// The auditor subcommands (flattened into the top level).
#[derive(clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the event log as JSON Lines (docs/events.md), ending with a chain_head line; reads
    /// the segment files only, so the server may be running.
    Export(ExportArgs),
    /// Check an export or a data directory: record CRCs, the hash chain, event schema and the
    /// log's invariants; exits 1 naming the first bad line or position, 2 if unreadable.
    Verify(VerifyArgs),
}

/// Runs an auditor subcommand.
pub(crate) async fn run(command: AuditCommand) -> Result<()> {
    // Both read files synchronously from start to end: keep them off the async workers.
    let task = tokio::task::spawn_blocking(move || match command {
        AuditCommand::Export(args) => export(args),
        AuditCommand::Verify(args) => verify(args),
    });
    task.await.context("the export or verify task failed")?
}

/// Arguments of `ledgerstack export`.
#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// The data directory (its segment files are only read: the server may be running).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// First event to export: a log position, or an RFC 3339 time compared with recorded-at
    /// (inclusive).
    #[arg(long)]
    from: Option<Bound>,
    /// Last event to export: a log position, or an RFC 3339 time compared with recorded-at
    /// (inclusive).
    #[arg(long)]
    to: Option<Bound>,
    /// Compress the output with zstd.
    #[arg(long)]
    zstd: bool,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

/// Arguments of `ledgerstack verify`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["file", "data_dir"]))]
pub(crate) struct VerifyArgs {
    /// An export (JSON Lines, or zstd-compressed JSON Lines).
    file: Option<PathBuf>,
    /// Verify the log of this data directory instead (record CRCs included).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Arguments of `ledgerstack bench export`.
#[derive(clap::Args)]
pub(crate) struct BenchExportArgs {
    /// Divide the full size (1,000,000 events) by this: `--scale 1000` is a smoke test.
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Scratch directory, emptied first and removed afterwards [default: a temporary one].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A progress bar on stderr over `len` units (a spinner when `len` is unknown); hidden when
/// `shown` is false.
fn bar(len: Option<u64>, template: &str, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    let bar = bar.with_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs `ledgerstack export`.
pub(crate) fn export(args: ExportArgs) -> Result<()> {
    if !args.data_dir.join("log").is_dir() {
        bail!(
            "no event log in {} (no log/ directory)",
            args.data_dir.display()
        );
    }
    let to_file = args.output.is_some() || !io::stdout().is_terminal();
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out: Box<dyn Write> = if args.zstd {
        Box::new(
            zstd::Encoder::new(BufWriter::with_capacity(1 << 20, sink), 3)
                .context("starting zstd")?
                .auto_finish(),
        )
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, sink))
    };
    let range = Range {
        from: args.from,
        to: args.to,
    };
    let progress = bar(
        Some(0),
        "exporting [{bar:40}] {bytes}/{total_bytes} of the log ({bytes_per_sec}, {eta})",
        to_file,
    );
    let started = Instant::now();
    let summary = audit::export(&args.data_dir, range, out.as_mut(), &mut |read, total| {
        progress.set_length(total);
        progress.set_position(read);
    });
    progress.finish_and_clear();
    let summary = summary.with_context(|| format!("exporting {}", args.data_dir.display()))?;
    out.flush().context("writing the export")?;
    drop(out);
    let t = summary.trailer;
    let first = summary
        .first_position
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    eprintln!(
        "Exported {} events (positions {first}..{}) of {} read in {:.1?}; chain head {}.",
        t.events,
        t.position,
        summary.scanned,
        started.elapsed(),
        t.chain_head
    );
    if summary.ignored_tail > 0 {
        eprintln!(
            "Left out {} bytes of a torn, never acknowledged tail at the end of the log.",
            summary.ignored_tail
        );
    }
    Ok(())
}

/// Runs `ledgerstack verify`; exits with [`EXIT_FINDING`] or [`EXIT_UNREADABLE`] on failure.
pub(crate) fn verify(args: VerifyArgs) -> Result<()> {
    let shown = io::stderr().is_terminal();
    let progress = bar(None, "{spinner} verifying: {pos} events ({per_sec})", shown);
    let started = Instant::now();
    let (what, result) = match (&args.file, &args.data_dir) {
        (Some(file), _) => (
            file.display().to_string(),
            audit::open_export(file).and_then(|mut input| {
                audit::verify_export(input.as_mut(), file, &mut |n| progress.set_position(n))
            }),
        ),
        (None, Some(dir)) => (
            format!("the log in {}", dir.display()),
            audit::verify_data_dir(dir, &mut |n| progress.set_position(n)),
        ),
        (None, None) => bail!("give an export FILE or --data-dir DIR"),
    };
    progress.finish_and_clear();
    match result {
        Ok(summary) => {
            print_summary(&what, &summary, started.elapsed());
            Ok(())
        }
        Err(e) => {
            eprintln!("verify: {what} does NOT verify: {e}");
            std::process::exit(if e.is_finding() {
                EXIT_FINDING
            } else {
                EXIT_UNREADABLE
            });
        }
    }
}

fn print_summary(what: &str, s: &VerifySummary, elapsed: Duration) {
    let range = match s.first_position {
        Some(first) => format!("positions {first}..{}", s.last_position),
        None => "no events".to_owned(),
    };
    println!(
        "{what} verifies: {} events ({range}) in {} streams, checked in {elapsed:.1?}; chain head {}.",
        s.events, s.streams, s.chain_head
    );
    if !s.from_genesis() {
        println!(
            "The export starts at position {}: its first prev_hash is taken as given (compare it with the chain head of an export that ends just before it).",
            s.first_position.unwrap_or(0)
        );
    }
    if s.ignored_tail > 0 {
        println!(
            "{} bytes of a torn, never acknowledged tail at the end of the log were ignored (the server cuts them at its next start).",
            s.ignored_tail
        );
    }
}

/// Events in the full-size benchmark log.
const FULL_EVENTS: u64 = 1_000_000;

/// Runs `ledgerstack bench export`: builds a log of VM.START events, then measures raw replay
/// (`read_all` + decode through the store), export, verification of the export and
/// verification of the data directory, in events per second.
pub(crate) async fn bench_export(args: BenchExportArgs) -> Result<()> {
    anyhow::ensure!(args.scale > 0, "--scale must be positive");
    let events = (FULL_EVENTS / u64::from(args.scale)).max(1);
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ledgerstack-bench-export-{}", std::process::id()))
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = bench_in(&dir, events).await;
    let _ = std::fs::remove_dir_all(&dir);
    let rates = result?;
    let rate = |d: Duration| events as f64 / d.as_secs_f64().max(1e-9);
    let replay = rate(rates.replay);
    println!("bench export: {events} events");
    for (name, elapsed) in [
        ("raw replay (read_all + decode, baseline)", rates.replay),
        ("export (segments -> JSON Lines file)", rates.export),
        ("verify the export", rates.verify_file),
        ("verify the data directory", rates.verify_dir),
    ] {
        println!(
            "  {name:42} {:>9.2} s {:>12.0} events/s  {:.2} x replay",
            elapsed.as_secs_f64(),
            rate(elapsed),
            rate(elapsed) / replay.max(1e-9)
        );
    }
    println!("  export size {} bytes", rates.export_bytes);
    Ok(())
}

/// Durations of the measured phases.
struct BenchTimes {
    replay: Duration,
    export: Duration,
    verify_file: Duration,
    verify_dir: Duration,
    export_bytes: u64,
}

async fn bench_in(dir: &Path, events: u64) -> Result<BenchTimes> {
    let data_dir = dir.join("data");
    let build = bar(
        Some(events),
        "building the log [{bar:40}] {pos}/{len} ({per_sec})",
        true,
    );
    let store = EmbeddedStore::open(&data_dir, EmbeddedOptions::default())?;
    let start_type = EventType::from_name("VM.START").context("VM.START is in the catalogue")?;
    let mut written = 0u64;
    let mut stream_no = 0u128;
    while written < events {
        let n = (events - written).min(500);
        stream_no += 1;
        let vm = Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0000 | stream_no);
        let batch = (0..n)
            .map(|_| vm_start(start_type, vm))
            .collect::<Result<Vec<_>>>()?;
        store
            .append(&StreamId::new("vm", vm)?, ExpectedVersion::Any, batch)
            .await?;
        written += n;
        build.set_position(written);
    }
    build.finish_and_clear();
    store.close();

    let store = EmbeddedStore::open(&data_dir, EmbeddedOptions::default())?;
    let started = Instant::now();
    let mut next = Position::START;
    let mut read = 0u64;
    loop {
        let batch = store.read_all(next, 8192).await?;
        let Some(last) = batch.last() else { break };
        next = last.envelope.position.next();
        read += batch.len() as u64;
    }
    let replay = started.elapsed();
    store.close();
    anyhow::ensure!(
        read == events,
        "replay read {read} events, {events} were written"
    );

    let file = dir.join("export.jsonl");
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&file)?);
    let summary = audit::export(&data_dir, Range::default(), &mut out, &mut |_, _| {})?;
    out.flush()?;
    drop(out);
    let export = started.elapsed();
    anyhow::ensure!(
        summary.trailer.events == events,
        "export wrote too few events"
    );

    let started = Instant::now();
    let mut input = audit::open_export(&file)?;
    let checked = audit::verify_export(input.as_mut(), &file, &mut |_| {})?;
    let verify_file = started.elapsed();
    anyhow::ensure!(checked.events == events, "verify checked too few events");

    let started = Instant::now();
    let checked = audit::verify_data_dir(&data_dir, &mut |_| {})?;
    let verify_dir = started.elapsed();
    anyhow::ensure!(checked.events == events, "verify checked too few events");
    Ok(BenchTimes {
        replay,
        export,
        verify_file,
        verify_dir,
        export_bytes: std::fs::metadata(&file)?.len(),
    })
}

/// A realistic event: a VM start with the facts usage needs (as `bench append` writes).
fn vm_start(event_type: EventType, vm: Uuid) -> Result<NewEvent> {
    let id = |n: u128| Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0000 | n);
    let data = serde_json::json!({
        "vm": {
            "vm_id": vm, "name": "bench-vm", "instance_name": "i-2-17-VM",
            "account_id": id(1), "domain_id": id(2), "zone_id": id(3),
            "service_offering_id": id(4), "template_id": id(5), "hypervisor": "Simulator",
            "cpu_number": 2, "cpu_speed": 2000, "memory": 4096,
        },
        "host_id": id(6),
    });
    Ok(NewEvent::new(EventBody::from_data_json(event_type, data)?))
}
