//! `ledgerstack bench append`: the embedded log's throughput, each figure beside a baseline
//! measured in the same run on the same disk (machines are noisy; only ratios travel).
//!
//! - Baseline A, the fsync limit: a loop of `write` + `fdatasync` of the very record bytes an
//!   append writes. One appender should reach at least 0.9× of it.
//! - Appends of one event by 1, 8 and 64 concurrent appenders, with the mean events per fsync
//!   (group commit at work). 64 appenders should reach at least 20× one appender.
//! - Batched appends (many events per call) by one appender.
//! - Baseline B, the read limit: a sequential read of the segment files. Replay (`read_all` plus
//!   decoding every event, through the `EventStore` trait) should be within 3× of it.
//!
//! After measuring, the bench reads the log back and verifies the hash chain, so a fast but wrong
//! build cannot report numbers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::event::chain::ChainVerifier;
use crate::event::vm::{VmFacts, VmStarted};
use crate::event::{EventBody, NewEvent, Position, StreamId, VmEvent};
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore, log_dir};
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// What to run.
#[derive(Debug, Clone)]
pub struct AppendBenchConfig {
    /// A scratch directory on the disk to measure (emptied first, left with the logs).
    pub dir: PathBuf,
    /// How long each timed append phase runs.
    pub phase: Duration,
    /// Concurrency levels for single-event appends (the first is the reference for ratios).
    pub appenders: Vec<usize>,
    /// Events per call in the batched phase.
    pub batch_size: usize,
    /// Events in the log that replay reads back.
    pub replay_events: u64,
}

/// Reports a long run's progress (the binary draws progress bars with it).
pub trait BenchProgress: Send + Sync {
    /// A phase begins; `total` units of work if known.
    fn phase(&self, name: &str, total: Option<u64>);
    /// `done` units are finished in the current phase.
    fn progress(&self, done: u64);
    /// The current phase ended.
    fn finish(&self);
}

/// One timed figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Events (or event-equivalents) processed.
    pub events: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// fsyncs performed, where the figure involves the log writer.
    pub fsyncs: Option<u64>,
}

impl Figure {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean events per fsync, where known.
    pub fn events_per_fsync(&self) -> Option<f64> {
        self.fsyncs
            .filter(|&f| f > 0)
            .map(|f| self.events as f64 / f as f64)
    }
}

/// Everything `bench append` measured.
#[derive(Debug, Clone)]
pub struct AppendBenchReport {
    /// Bytes of one appended record (what the raw loop writes).
    pub record_bytes: usize,
    /// Baseline A: write + fdatasync of one record per iteration.
    pub raw_fsync: Figure,
    /// Single-event appends per concurrency level, in the order configured.
    pub appends: Vec<(usize, Figure)>,
    /// Batched appends by one appender.
    pub batched: Figure,
    /// Baseline B: sequential read of the segment files, in event-equivalents.
    pub raw_read: Figure,
    /// Bytes in the segment files read by both read figures.
    pub log_bytes: u64,
    /// `read_all` + decode of the whole log.
    pub replay: Figure,
}

impl AppendBenchReport {
    /// One appender against the fsync loop (target ≥ 0.9).
    pub fn single_vs_raw(&self) -> Option<f64> {
        let single = self.appends.iter().find(|(n, _)| *n == 1)?;
        Some(single.1.rate() / self.raw_fsync.rate())
    }

    /// The most concurrent level against one appender (target ≥ 20 at 64).
    pub fn concurrency_speedup(&self) -> Option<(usize, f64)> {
        let single = self.appends.iter().find(|(n, _)| *n == 1)?.1.rate();
        let (n, top) = self.appends.iter().max_by_key(|(n, _)| *n)?;
        Some((*n, top.rate() / single))
    }

    /// How many times slower replay is than the raw read (target ≤ 3).
    pub fn replay_slowdown(&self) -> f64 {
        self.raw_read.rate() / self.replay.rate()
    }
}

/// Why the bench could not run or found the log wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation of a baseline failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The log read back differs from what was appended.
    #[error("verification failed: {0}")]
    Verification(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |e| BenchError::Io(what, e)
}

/// A realistic event: a VM start with the facts usage needs (~250 bytes on disk).
fn vm_start(vm: Uuid) -> NewEvent {
    let id = |n: u128| Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0000 | n);
    NewEvent::new(EventBody::Vm(VmEvent::Start(VmStarted {
        vm: VmFacts {
            vm_id: vm,
            name: "bench-vm".into(),
            instance_name: "i-2-17-VM".into(),
            display_name: None,
            account_id: id(1),
            domain_id: id(2),
            zone_id: id(3),
            service_offering_id: id(4),
            template_id: id(5),
            hypervisor: "Simulator".into(),
            cpu_number: 2,
            cpu_speed: 2000,
            memory: 4096,
        },
        host_id: Some(id(6)),
    })))
}

fn vm_stream(n: u64) -> StreamId {
    StreamId::new("vm", Uuid::from_u128(n as u128 + 1)).expect("\"vm\" is a valid category")
}

/// Runs the whole append benchmark.
pub async fn run_append_bench(
    config: &AppendBenchConfig,
    progress: &dyn BenchProgress,
) -> Result<AppendBenchReport, BenchError> {
    if config.dir.exists() {
        std::fs::remove_dir_all(&config.dir).map_err(io_error("clear bench directory"))?;
    }
    std::fs::create_dir_all(&config.dir).map_err(io_error("create bench directory"))?;

    let record = sample_record(&config.dir.join("sample")).await?;
    progress.phase("baseline: write + fdatasync loop", None);
    let raw_fsync = raw_fsync_loop(&config.dir.join("raw-fsync.dat"), &record, config.phase)?;
    progress.finish();

    let mut appends = Vec::new();
    for &n in &config.appenders {
        progress.phase(&format!("append: {n} concurrent appender(s)"), None);
        let dir = config.dir.join(format!("appenders-{n}"));
        appends.push((n, timed_appends(&dir, n, config.phase).await?));
        progress.finish();
    }

    progress.phase("append: batched", None);
    let batched =
        timed_batches(&config.dir.join("batched"), config.batch_size, config.phase).await?;
    progress.finish();

    let replay_dir = config.dir.join("replay");
    progress.phase("build the replay log", Some(config.replay_events));
    build_log(&replay_dir, config.replay_events, progress).await?;
    progress.finish();
    progress.phase("baseline: sequential read of the segment files", None);
    // Read once untimed so both read figures start from the same warm page cache.
    raw_read(&log_dir(&replay_dir))?;
    let (log_bytes, elapsed) = raw_read(&log_dir(&replay_dir))?;
    let raw_read = Figure {
        name: "sequential read of segment files".into(),
        events: config.replay_events,
        elapsed,
        fsyncs: None,
    };
    progress.finish();
    progress.phase("replay: read_all + decode", Some(config.replay_events));
    let replay = replay(&replay_dir, config.replay_events, progress).await?;
    progress.finish();

    Ok(AppendBenchReport {
        record_bytes: record.len(),
        raw_fsync,
        appends,
        batched,
        raw_read,
        log_bytes,
        replay,
    })
}

/// The bytes one single-event append writes: appended once, read back from the segment file.
async fn sample_record(dir: &Path) -> Result<Vec<u8>, BenchError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    store
        .append(
            &vm_stream(0),
            ExpectedVersion::Any,
            vec![vm_start(Uuid::nil())],
        )
        .await?;
    store.close();
    let segment = std::fs::read_dir(log_dir(dir))
        .map_err(io_error("list sample log"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .ok_or_else(|| BenchError::Verification("sample log has no segment".into()))?;
    let bytes = std::fs::read(&segment).map_err(io_error("read sample segment"))?;
    Ok(bytes[crate::store::embedded::SEGMENT_HEADER_BYTES as usize..].to_vec())
}

fn raw_fsync_loop(path: &Path, record: &[u8], phase: Duration) -> Result<Figure, BenchError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io_error("create raw fsync file"))?;
    let start = Instant::now();
    let mut events = 0;
    while start.elapsed() < phase {
        file.write_all(record).map_err(io_error("raw write"))?;
        file.sync_data().map_err(io_error("raw fdatasync"))?;
        events += 1;
    }
    Ok(Figure {
        name: "write + fdatasync loop".into(),
        events,
        elapsed: start.elapsed(),
        fsyncs: Some(events),
    })
}

/// `appenders` tasks appending one event per call to their own streams for `phase`; then the
/// log is read back and checked.
async fn timed_appends(
    dir: &Path,
    appenders: usize,
    phase: Duration,
) -> Result<Figure, BenchError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let fsyncs_before = store
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + phase;
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = vm_stream(a as u64);
            let mut done = 0u64;
            while Instant::now() < deadline {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![vm_start(Uuid::from_u128(a as u128))],
                    )
                    .await?;
                done += 1;
            }
            Ok::<u64, StoreError>(done)
        }));
    }
    let mut events = 0;
    for task in tasks {
        events += task
            .await
            .map_err(|e| BenchError::Verification(format!("appender task failed: {e}")))??;
    }
    let elapsed = start.elapsed();
    let fsyncs = store
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed)
        - fsyncs_before;
    verify_log(&store, events).await?;
    store.close();
    Ok(Figure {
        name: format!("{appenders} appender(s), 1 event per append"),
        events,
        elapsed,
        fsyncs: Some(fsyncs),
    })
}

async fn timed_batches(dir: &Path, batch: usize, phase: Duration) -> Result<Figure, BenchError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let stream = vm_stream(0);
    let start = Instant::now();
    let mut events = 0u64;
    while start.elapsed() < phase {
        let events_in_call = (0..batch).map(|_| vm_start(Uuid::nil())).collect();
        store
            .append(&stream, ExpectedVersion::Any, events_in_call)
            .await?;
        events += batch as u64;
    }
    let elapsed = start.elapsed();
    let fsyncs = store
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    verify_log(&store, events).await?;
    store.close();
    Ok(Figure {
        name: format!("1 appender, {batch} events per append"),
        events,
        elapsed,
        fsyncs: Some(fsyncs),
    })
}

/// Fills a log with `events` events from 16 concurrent batching appenders.
async fn build_log(
    dir: &Path,
    events: u64,
    progress: &dyn BenchProgress,
) -> Result<(), BenchError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_task = events.div_ceil(16);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        let written = written.clone();
        let mine = per_task.min(events.saturating_sub(t * per_task));
        tasks.push(tokio::spawn(async move {
            let mut left = mine;
            while left > 0 {
                let n = left.min(500);
                let batch = (0..n)
                    .map(|_| vm_start(Uuid::from_u128(t as u128)))
                    .collect();
                store
                    .append(&vm_stream(t), ExpectedVersion::Any, batch)
                    .await?;
                left -= n;
                written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<(), StoreError>(())
        }));
    }
    for task in tasks {
        while !task.is_finished() {
            progress.progress(written.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.await
            .map_err(|e| BenchError::Verification(format!("writer task failed: {e}")))??;
    }
    progress.progress(events);
    store.close();
    Ok(())
}

/// Reads every segment file start to end in 1 MiB reads; returns bytes read and time taken.
fn raw_read(log: &Path) -> Result<(u64, Duration), BenchError> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log)
        .map_err(io_error("list segments"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    let start = Instant::now();
    for path in segments {
        let mut file = File::open(&path).map_err(io_error("open segment"))?;
        loop {
            let n = file.read(&mut buf).map_err(io_error("read segment"))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok((bytes, start.elapsed()))
}

/// Reads the whole log through `EventStore::read_all`, decoding every event; then verifies it.
async fn replay(
    dir: &Path,
    expected: u64,
    progress: &dyn BenchProgress,
) -> Result<Figure, BenchError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let start = Instant::now();
    let mut next = Position::START;
    let mut events = 0u64;
    loop {
        let batch = store.read_all(next, 8192).await?;
        let Some(last) = batch.last() else { break };
        next = last.envelope.position.next();
        events += batch.len() as u64;
        progress.progress(events);
    }
    let elapsed = start.elapsed();
    if events != expected {
        return Err(BenchError::Verification(format!(
            "replay read {events} events, {expected} were appended"
        )));
    }
    verify_log(&store, expected).await?;
    store.close();
    Ok(Figure {
        name: "read_all + decode through EventStore".into(),
        events,
        elapsed,
        fsyncs: None,
    })
}

/// Reads the log back (untimed) and checks its length and hash chain.
async fn verify_log(store: &EmbeddedStore, expected: u64) -> Result<(), BenchError> {
    let mut verifier = ChainVerifier::new();
    let mut next = Position::START;
    let mut count = 0u64;
    loop {
        let batch = store.read_all(next, 8192).await?;
        let Some(last) = batch.last() else { break };
        next = last.envelope.position.next();
        for event in &batch {
            verifier
                .check(event)
                .map_err(|v| BenchError::Verification(v.to_string()))?;
        }
        count += batch.len() as u64;
    }
    if count != expected {
        return Err(BenchError::Verification(format!(
            "log holds {count} events, {expected} were acknowledged"
        )));
    }
    Ok(())
}
