//! `ledgerstack bench append`: the embedded log's throughput, each figure beside a baseline
//! measured in the same run on the same disk (machines are noisy; only ratios travel).
//!
//! - Baseline A, the fsync limit: a loop of `write` + `fdatasync` of the very record bytes an
//!   append writes. One appender should reach at least 0.9× of it.
//! - Appends of one event by 1, 8 and 64 concurrent appenders, with the mean events per fsync
//!   (group commit at work). 64 appenders should reach at least 20× one appender.
//! - Batched appends (many events per call) by one appender.
//! - Baseline B, the read limit: a sequential read of the segment files from the disk (their
//!   pages evicted from the page cache first, as after a restart). Replay (`read_all` plus
//!   decoding every event, through the `EventStore` trait, also from the disk) should be within
//!   3× of it. The same pair is also reported with the files already in the page cache, where the
//!   baseline is a memory copy.
//!
//! The machines are noisy (the fsync rate of the same disk drifts by tens of percent within a
//! minute), so the figures compared with each other are measured interleaved: every round runs
//! each append figure for one short slice, alternating the order from round to round, and sums
//! per figure. Between slices the bench waits (untimed) for the store's background indexer to
//! drain, so one figure's deferred work does not land in another's slice; the indexer's own
//! sustained rate is reported separately. Replay and the raw read alternate the same way.
//!
//! After measuring, the bench reads every log back and verifies the hash chain, so a fast but
//! wrong build cannot report numbers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Interleaved rounds.
    pub rounds: usize,
    /// How long each figure runs in each round.
    pub slice: Duration,
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
    /// Baseline B: sequential read of the segment files from the disk, in event-equivalents.
    pub raw_read: Figure,
    /// The same read with the files in the page cache.
    pub raw_read_warm: Figure,
    /// Bytes in the segment files of the replay log.
    pub log_bytes: u64,
    /// Events in the replay log.
    pub log_events: u64,
    /// `read_all` + decode of the whole log, from the disk.
    pub replay: Figure,
    /// The same replay with the files in the page cache.
    pub replay_warm: Figure,
    /// The background indexer catching up with the replay log (events put in sled per second).
    pub indexing: Figure,
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

    /// Bytes per second of a read figure of the replay log.
    pub fn bytes_per_second(&self, read: &Figure) -> f64 {
        read.rate() * self.log_bytes as f64 / self.log_events.max(1) as f64
    }

    /// How many times slower replay is than the raw read with both in the page cache (no
    /// target: the baseline is then a memory copy).
    pub fn warm_replay_slowdown(&self) -> f64 {
        self.raw_read_warm.rate() / self.replay_warm.rate()
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

/// One of the interleaved append figures.
enum Subject {
    Raw(File),
    Appenders(usize, EmbeddedStore),
    Batched(EmbeddedStore),
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

    let mut subjects = vec![Subject::Raw(
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(config.dir.join("raw-fsync.dat"))
            .map_err(io_error("create raw fsync file"))?,
    )];
    for &n in &config.appenders {
        let dir = config.dir.join(format!("appenders-{n}"));
        subjects.push(Subject::Appenders(
            n,
            EmbeddedStore::open(&dir, EmbeddedOptions::default())?,
        ));
    }
    subjects.push(Subject::Batched(EmbeddedStore::open(
        config.dir.join("batched"),
        EmbeddedOptions::default(),
    )?));
    let mut figures: Vec<Figure> = subjects
        .iter()
        .map(|subject| Figure {
            name: match subject {
                Subject::Raw(_) => "write + fdatasync loop".into(),
                Subject::Appenders(n, _) => format!("{n} appender(s), 1 event per append"),
                Subject::Batched(_) => {
                    format!("1 appender, {} events per append", config.batch_size)
                }
            },
            events: 0,
            elapsed: Duration::ZERO,
            fsyncs: Some(0),
        })
        .collect();

    progress.phase("interleaved append rounds", Some(config.rounds as u64));
    for round in 0..config.rounds {
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (events, elapsed, fsyncs) = match &mut subjects[i] {
                Subject::Raw(file) => raw_fsync_slice(file, &record, config.slice)?,
                Subject::Appenders(n, store) => append_slice(store, *n, 1, config.slice).await?,
                Subject::Batched(store) => {
                    append_slice(store, 1, config.batch_size, config.slice).await?
                }
            };
            let figure = &mut figures[i];
            figure.events += events;
            figure.elapsed += elapsed;
            figure.fsyncs = figure.fsyncs.map(|f| f + fsyncs);
        }
        progress.progress(round as u64 + 1);
    }
    progress.finish();
    progress.phase("verifying the logs", None);
    let mut raw_fsync = None;
    let mut appends = Vec::new();
    let mut batched = None;
    for (subject, figure) in subjects.into_iter().zip(figures) {
        match subject {
            Subject::Raw(_) => raw_fsync = Some(figure),
            Subject::Appenders(n, store) => {
                verify_log(&store, figure.events).await?;
                store.close();
                appends.push((n, figure));
            }
            Subject::Batched(store) => {
                verify_log(&store, figure.events).await?;
                store.close();
                batched = Some(figure);
            }
        }
    }
    progress.finish();

    let replay_dir = config.dir.join("replay");
    progress.phase("build the replay log", Some(config.replay_events));
    let indexing = build_log(&replay_dir, config.replay_events, progress).await?;
    progress.finish();
    progress.phase("interleaved raw read and replay", Some(12));
    let store = EmbeddedStore::open(&replay_dir, EmbeddedOptions::default())?;
    let figure = |name: &str| Figure {
        name: name.into(),
        events: 0,
        elapsed: Duration::ZERO,
        fsyncs: None,
    };
    let mut raw = figure("sequential read of segment files, from disk");
    let mut replay = figure("read_all + decode through EventStore, from disk");
    let mut raw_warm = figure("sequential read of segment files, page cache");
    let mut replay_warm = figure("read_all + decode through EventStore, page cache");
    let mut log_bytes = 0;
    let log = log_dir(&replay_dir);
    for round in 0..6 {
        // Rounds 0-2 read from the disk, 3-5 from the page cache; the order alternates.
        let cold = round < 3;
        for step in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if cold {
                evict_from_page_cache(&log)?;
            } else {
                raw_read(&log)?; // make sure every page is cached
            }
            if step == 0 {
                let (bytes, elapsed) = raw_read(&log)?;
                log_bytes = bytes;
                let target = if cold { &mut raw } else { &mut raw_warm };
                target.events += config.replay_events;
                target.elapsed += elapsed;
            } else {
                let elapsed = replay_once(&store, config.replay_events).await?;
                let target = if cold { &mut replay } else { &mut replay_warm };
                target.events += config.replay_events;
                target.elapsed += elapsed;
            }
        }
        progress.progress(2 * round as u64 + 2);
    }
    verify_log(&store, config.replay_events).await?;
    store.close();
    progress.finish();

    let missing = |what: &str| BenchError::Verification(format!("no {what} figure"));
    let batched = batched.ok_or_else(|| missing("batched"))?;
    let raw_fsync = raw_fsync.ok_or_else(|| missing("raw fsync"))?;
    Ok(AppendBenchReport {
        record_bytes: record.len(),
        raw_fsync,
        appends,
        batched,
        raw_read: raw,
        raw_read_warm: raw_warm,
        replay_warm,
        log_bytes,
        log_events: config.replay_events,
        replay,
        indexing,
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

/// One slice of the raw baseline: write + fdatasync of the record, in a loop.
fn raw_fsync_slice(
    file: &mut File,
    record: &[u8],
    slice: Duration,
) -> Result<(u64, Duration, u64), BenchError> {
    let start = Instant::now();
    let mut events = 0;
    while start.elapsed() < slice {
        file.write_all(record).map_err(io_error("raw write"))?;
        file.sync_data().map_err(io_error("raw fdatasync"))?;
        events += 1;
    }
    Ok((events, start.elapsed(), events))
}

/// Appends `per_append` events per call to stream `n` until `deadline`; returns events.
async fn append_until(
    store: EmbeddedStore,
    n: u64,
    per_append: usize,
    deadline: Instant,
) -> Result<u64, StoreError> {
    let stream = vm_stream(n);
    let mut done = 0u64;
    while Instant::now() < deadline {
        let events = (0..per_append)
            .map(|_| vm_start(Uuid::from_u128(n as u128)))
            .collect();
        store.append(&stream, ExpectedVersion::Any, events).await?;
        done += per_append as u64;
    }
    Ok(done)
}

/// One slice of `appenders` appenders appending `per_append` events per call to their own
/// streams; then waits (untimed) until the store's index has caught up. Returns events, time,
/// fsyncs.
///
/// A single appender runs on the bench's own task, as the raw fsync loop does: which CPU a
/// thread waiting in fdatasync sits on matters a lot on virtual machines (the disk's completion
/// interrupt goes to one CPU), so the two sides of the comparison must run in the same context.
async fn append_slice(
    store: &EmbeddedStore,
    appenders: usize,
    per_append: usize,
    slice: Duration,
) -> Result<(u64, Duration, u64), BenchError> {
    let fsyncs_before = store.stats().fsyncs.load(Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + slice;
    let events = if appenders == 1 {
        append_until(store.clone(), 0, per_append, deadline).await?
    } else {
        let tasks: Vec<_> = (0..appenders)
            .map(|a| tokio::spawn(append_until(store.clone(), a as u64, per_append, deadline)))
            .collect();
        let mut events = 0;
        for task in tasks {
            events += task
                .await
                .map_err(|e| BenchError::Verification(format!("appender task failed: {e}")))??;
        }
        events
    };
    let elapsed = start.elapsed();
    let fsyncs = store.stats().fsyncs.load(Ordering::Relaxed) - fsyncs_before;
    while store.index_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((events, elapsed, fsyncs))
}

/// Fills a log with `events` events from 16 concurrent batching appenders; returns how fast the
/// background indexer put them in sled (from the first append until its backlog is empty).
async fn build_log(
    dir: &Path,
    events: u64,
    progress: &dyn BenchProgress,
) -> Result<Figure, BenchError> {
    let start = Instant::now();
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let written = Arc::new(AtomicU64::new(0));
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
                written.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<(), StoreError>(())
        }));
    }
    for task in tasks {
        while !task.is_finished() {
            progress.progress(written.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.await
            .map_err(|e| BenchError::Verification(format!("writer task failed: {e}")))??;
    }
    progress.progress(events);
    while store.index_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let indexing = Figure {
        name: "background indexing into sled".into(),
        events,
        elapsed: start.elapsed(),
        fsyncs: None,
    };
    store.close();
    Ok(indexing)
}

/// Reads the whole log once through `EventStore::read_all`, decoding every event.
async fn replay_once(store: &EmbeddedStore, expected: u64) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let events = read_log(store, |_| Ok(())).await?;
    let elapsed = start.elapsed();
    if events != expected {
        return Err(BenchError::Verification(format!(
            "replay read {events} events, {expected} were appended"
        )));
    }
    Ok(elapsed)
}

/// Reads every event of the log in batches, handing each batch to `visit`; returns the count.
async fn read_log(
    store: &EmbeddedStore,
    mut visit: impl FnMut(&[crate::event::RecordedEvent]) -> Result<(), BenchError>,
) -> Result<u64, BenchError> {
    let mut next = Position::START;
    let mut events = 0u64;
    loop {
        let batch = store.read_all(next, 8192).await?;
        let Some(last) = batch.last() else {
            return Ok(events);
        };
        next = last.envelope.position.next();
        events += batch.len() as u64;
        visit(&batch)?;
    }
}

/// Drops the segment files' pages from the page cache, so the next read comes from the disk.
fn evict_from_page_cache(log: &Path) -> Result<(), BenchError> {
    for path in segment_files(log)? {
        let file = File::open(&path).map_err(io_error("open segment"))?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
            .map_err(|e| BenchError::Io("evict segment from page cache".into(), e.into()))?;
    }
    Ok(())
}

fn segment_files(log: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log)
        .map_err(io_error("list segments"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Reads every segment file start to end in 1 MiB reads; returns bytes read and time taken.
fn raw_read(log: &Path) -> Result<(u64, Duration), BenchError> {
    let segments = segment_files(log)?;
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

/// Reads the log back (untimed) and checks its length and hash chain.
async fn verify_log(store: &EmbeddedStore, expected: u64) -> Result<(), BenchError> {
    let mut verifier = ChainVerifier::new();
    let count = read_log(store, |batch| {
        batch.iter().try_for_each(|event| {
            verifier
                .check(event)
                .map_err(|v| BenchError::Verification(v.to_string()))
        })
    })
    .await?;
    if count != expected {
        return Err(BenchError::Verification(format!(
            "log holds {count} events, {expected} were acknowledged"
        )));
    }
    Ok(())
}
