//! `ledgerstack bench usage`: a synthetic year of VM churn as real events in a real embedded log,
//! folded into the usage model, beside baselines measured in the same run:
//!
//! - **Replay** (the baseline of the fold): the same log read and decoded, nothing applied.
//! - **Full computation**: the log read from disk and every event applied to a fresh
//!   [`UsageModel`] (upstream read models empty: VM events carry their own facts, so only the
//!   record descriptions lack offering and template names). The records end in memory.
//! - **Incremental**: within that pass, the cost of each daily `USAGE.CLOSE` with every resource
//!   live; the last one (closing the final day) against the whole fold must be at least
//!   [`INCREMENTAL_TARGET`] times cheaper.
//! - **Persisting**: after each close, the records it published are written to a sled tree the
//!   way the runner writes tables (`PersistedTable::drain_dirty` into one `sled::Batch`,
//!   `apply_batch`) and flushed to disk, timed apart from the fold (in one sled database per 30
//!   days: sled holds several times its data in memory, and a full year would not fit).
//! - **DuckDB**: the events exported from the log to CSV; `scripts/usage_duckdb.py` pairs them
//!   into intervals and clips them into the same local days with SQL (ICU time zones), timed from
//!   its start to its records in memory (and, inside DuckDB, from CSV and from Parquet). Its
//!   records must equal the model's, millisecond for millisecond, or the bench fails.
//! - **Quota charging**: the log carries tariffs for the VM usage types, so the fold charges
//!   every record as it publishes it (as the server does); then every record is charged again by
//!   a fresh quota book, timed alone (records/s beside the fold's records/s), and the charges
//!   must equal the fold's, account for account.
//!
//! The year starts the day before the aggregation zone's first offset change after 2025-07-01,
//! so even a short run has a daylight-saving day (a 23- or 25-hour period) in it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use engine::bench::BenchProgress;
use engine::event::billing::QuotaTariffDefined;
use engine::event::infrastructure::{ConfigScope, ConfigurationChanged};
use engine::event::vm::{VmCreated, VmDestroyed, VmFacts, VmStarted, VmStopped};
use engine::event::{
    Actor, ConfigurationEvent, EventBody, NewEvent, Position, QuotaEvent, RecordedEvent, StreamId,
    UsageEvent, VmEvent,
};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore, index_dir, log_dir};
use engine::store::{EventStore, ExpectedVersion, StoreError};
use engine::time::Timestamp;
use projections::ProjectionError;
use projections::runner::DownstreamModel;
use projections::table::PersistedTable;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::ledger::Publication;
use crate::model::UsageModel;
use crate::period::AggregationRule;
use crate::quota::QuotaBook;
use crate::scheduler::{RunTimes, USAGE_STREAM, close_event};
use rust_decimal::Decimal;

/// VMs in a full-size run.
pub const FULL_RESOURCES: u32 = 20_000;
/// Days in a full-size run.
pub const FULL_DAYS: u32 = 365;
/// One more daily close must cost at most this fraction of the full computation.
pub const INCREMENTAL_TARGET: u32 = 100;

/// The quota tariffs of the run: (usage type, name, value in hundredths) per month of
/// running and of allocated VM time.
const TARIFFS: &[(u16, &str, i64)] = &[(1, "running-vm", 2_995), (2, "allocated-vm", 350)];

/// VMs per account: accounts get several VMs, as tenants do.
const VMS_PER_ACCOUNT: u32 = 10;
/// Events per append while filling the log (the store commits at most 8,192 at once).
const APPEND_BATCH: usize = 8_192;
/// Most events the log's index may trail the appends by while the log is filled.
const INDEX_BACKLOG_MAX: u64 = 250_000;
/// Events per read of the log.
const READ_BATCH: usize = 8_192;
/// One in this many stops is followed by a destroy and a replacement VM.
const REPLACE_ONE_IN: u64 = 200;
/// The generator's seed: every run writes the same log.
const SEED: u64 = 0x5eed_0f05_a6e0_2026;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// What to run.
#[derive(Debug, Clone)]
pub struct UsageBenchConfig {
    /// Scratch directory (emptied first): the log, the records' sled tree, the CSV files.
    pub dir: PathBuf,
    /// VMs live at any time.
    pub resources: u32,
    /// Days of churn; one `USAGE.CLOSE` at 00:15 after each.
    pub days: u32,
    /// `usage.aggregation.timezone` (and the zone of the closes' 00:15).
    pub zone: Tz,
    /// The Python with `duckdb` installed.
    pub python: PathBuf,
    /// `scripts/usage_duckdb.py`.
    pub script: PathBuf,
}

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
pub enum UsageBenchError {
    /// The log could not be written or read.
    #[error("event log: {0}")]
    Store(#[from] StoreError),
    /// Persisting records failed.
    #[error("{0}")]
    Projection(#[from] ProjectionError),
    /// The records' sled tree failed.
    #[error("records tree: {0}")]
    Sled(#[from] sled::Error),
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The DuckDB script could not run or failed.
    #[error("DuckDB side: {0}")]
    DuckDb(String),
    /// The two computations disagree: the bench's whole point is that they must not.
    #[error("records differ between Ledgerstack and DuckDB: {0}")]
    Mismatch(String),
    /// Charging the records again gave other charges than the fold made inline.
    #[error("quota charges differ between the fold and a second charging pass: {0}")]
    Charges(String),
    /// The configuration cannot be run.
    #[error("{0}")]
    Setup(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UsageBenchError {
    let what = what.into();
    move |e| UsageBenchError::Io(what, e)
}

/// What DuckDB measured.
#[derive(Debug, Clone)]
pub struct DuckDbFigures {
    /// From starting the Python process to its records in memory (the whole cost, as the
    /// fold's figure is).
    pub wall: Duration,
    /// Inside DuckDB: loading the events CSV into a table.
    pub csv_load: Duration,
    /// Inside DuckDB: computing the records from that table.
    pub csv_compute: Duration,
    /// Inside DuckDB: loading the events from Parquet (converted untimed), if it ran.
    pub parquet_load: Option<Duration>,
    /// Inside DuckDB: computing the records from the Parquet events.
    pub parquet_compute: Option<Duration>,
    /// Size of the Parquet file.
    pub parquet_bytes: Option<u64>,
    /// Records it computed.
    pub records: u64,
    /// DuckDB's version.
    pub version: String,
    /// Threads DuckDB used.
    pub threads: u64,
}

impl DuckDbFigures {
    /// The fastest DuckDB figure: from Parquet if it ran, else from CSV (both inside DuckDB).
    pub fn best_internal(&self) -> Duration {
        let csv = self.csv_load + self.csv_compute;
        match (self.parquet_load, self.parquet_compute) {
            (Some(load), Some(compute)) => csv.min(load + compute),
            _ => csv,
        }
    }
}

/// What the bench measured.
#[derive(Debug, Clone)]
pub struct UsageBenchReport {
    /// VMs live at any time.
    pub resources: u32,
    /// Accounts owning them.
    pub accounts: u32,
    /// Days of churn.
    pub days: u32,
    /// Aggregation zone.
    pub zone: Tz,
    /// The first local day.
    pub first_day: NaiveDate,
    /// Days among them whose period is not 24 hours (daylight saving changes).
    pub dst_days: Vec<NaiveDate>,
    /// Events in the log.
    pub events: u64,
    /// Size of the log's segment files.
    pub log_bytes: u64,
    /// Size of the log's index (sled, id filter) once caught up.
    pub index_bytes: u64,
    /// Time to generate and append the log (not a figure: preparation).
    pub append: Duration,
    /// Baseline: reading and decoding the log, nothing applied (mean of two, before and after).
    pub replay: Duration,
    /// Reading the log and folding every event into the model, persistence excluded.
    pub fold: Duration,
    /// Records in memory afterwards.
    pub records: u64,
    /// Each daily `USAGE.CLOSE`'s apply time, in log order.
    pub closes: Vec<Duration>,
    /// Writing the records each close published to sled, and the final flush.
    pub persist: Duration,
    /// Rows in the records tree afterwards.
    pub persisted_rows: u64,
    /// The records tree's size on disk afterwards.
    pub persisted_bytes: u64,
    /// Exporting the events to CSV for DuckDB (preparation).
    pub export: Duration,
    /// Size of that CSV.
    pub export_bytes: u64,
    /// DuckDB's figures.
    pub duckdb: DuckDbFigures,
    /// Records compared and found equal (every one of them).
    pub compared: u64,
    /// Quota charging of every record, alone.
    pub charging: Charging,
}

impl UsageBenchReport {
    /// The last close: one more day closed with every resource live.
    pub fn last_close(&self) -> Duration {
        self.closes.last().copied().unwrap_or_default()
    }

    /// The median daily close.
    pub fn median_close(&self) -> Duration {
        let mut closes = self.closes.clone();
        closes.sort();
        closes.get(closes.len() / 2).copied().unwrap_or_default()
    }

    /// The slowest daily close.
    pub fn max_close(&self) -> Duration {
        self.closes.iter().max().copied().unwrap_or_default()
    }

    /// Whether one more close costs at most 1/[`INCREMENTAL_TARGET`] of the full computation.
    pub fn incremental_met(&self) -> bool {
        self.last_close().saturating_mul(INCREMENTAL_TARGET) <= self.fold
    }
}

/// Runs the whole usage benchmark.
pub async fn run_usage_bench(
    config: &UsageBenchConfig,
    progress: &dyn BenchProgress,
) -> Result<UsageBenchReport, UsageBenchError> {
    if config.resources == 0 || config.days == 0 {
        return Err(UsageBenchError::Setup(
            "resources and days must be positive".into(),
        ));
    }
    check_duckdb_side(config)?;
    if config.dir.exists() {
        std::fs::remove_dir_all(&config.dir)
            .map_err(io_error(format!("empty {}", config.dir.display())))?;
    }
    std::fs::create_dir_all(&config.dir)
        .map_err(io_error(format!("create {}", config.dir.display())))?;

    let plan = Plan::new(config);
    let writing = EmbeddedStore::open(config.dir.join("data"), EmbeddedOptions::default())?;
    let started = Instant::now();
    let events = fill_log(&writing, &plan, progress).await?;
    progress.phase("waiting for the log's index (untimed)", None);
    while writing.index_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Opened again, as after a restart: what filling the log left in memory (sled's index
    // pages) is not carried into the timed phases, which then fit a full-size run.
    writing.close();
    drop(writing);
    let store = EmbeddedStore::open(config.dir.join("data"), EmbeddedOptions::default())?;
    progress.finish();
    let append = started.elapsed();
    let log_bytes = dir_bytes(&log_dir(&config.dir.join("data")))?;

    let events_csv = config.dir.join("events.csv");
    progress.phase("exporting the events to CSV (untimed)", Some(events));
    let started = Instant::now();
    export_csv(&store, &events_csv, progress).await?;
    let export = started.elapsed();
    let export_bytes = file_bytes(&events_csv)?;
    progress.finish();

    progress.phase("replay: read and decode the log", Some(events));
    let replay_before = replay(&store, progress).await?;
    progress.finish();
    progress.phase("full computation: read and fold the log", Some(events));
    let fold = fold(&store, &config.dir.join("records-tree"), progress).await?;
    progress.finish();
    progress.phase("replay again", Some(events));
    let replay_after = replay(&store, progress).await?;
    progress.finish();
    store.close();
    if fold.events != events {
        return Err(UsageBenchError::Setup(format!(
            "the fold read {} events, the log holds {events}",
            fold.events
        )));
    }
    // A full-size run needs tens of gigabytes: free what is measured before the next step.
    let index_bytes = dir_bytes(&index_dir(&config.dir.join("data")))?;
    remove_dir(&config.dir.join("data"))?;
    remove_dir(&config.dir.join("records-tree"))?;

    progress.phase("DuckDB: the same records with SQL", None);
    let records_csv = config.dir.join("duckdb-records.csv");
    let duckdb = run_duckdb(config, &events_csv, &records_csv)?;
    progress.finish();
    for done in [events_csv, config.dir.join("events.parquet")] {
        if done.exists() {
            std::fs::remove_file(&done).map_err(io_error(format!("remove {}", done.display())))?;
        }
    }

    progress.phase("comparing every record", Some(fold.records.len() as u64));
    let theirs = read_records(&records_csv)?;
    let compared = compare(&fold.records, &theirs)?;
    progress.finish();

    Ok(UsageBenchReport {
        resources: config.resources,
        accounts: plan.accounts,
        days: config.days,
        zone: config.zone,
        first_day: plan.first_day,
        dst_days: plan.dst_days(),
        events,
        log_bytes,
        index_bytes,
        append,
        replay: (replay_before + replay_after) / 2,
        fold: fold.elapsed,
        records: fold.record_rows,
        closes: fold.closes,
        persist: fold.persist,
        persisted_rows: fold.persisted_rows,
        persisted_bytes: fold.persisted_bytes,
        export,
        export_bytes,
        duckdb,
        compared,
        charging: fold.charging,
    })
}

/// Fails early, with what to do, when the DuckDB side cannot run.
fn check_duckdb_side(config: &UsageBenchConfig) -> Result<(), UsageBenchError> {
    if !config.script.is_file() {
        return Err(UsageBenchError::DuckDb(format!(
            "no script at {} (run from the repository root, or pass --script)",
            config.script.display()
        )));
    }
    let output = Command::new(&config.python)
        .args(["-c", "import duckdb"])
        .output()
        .map_err(|e| {
            UsageBenchError::DuckDb(format!(
                "cannot run {}: {e} (create the venv with scripts/test, or pass --python)",
                config.python.display()
            ))
        })?;
    if !output.status.success() {
        return Err(UsageBenchError::DuckDb(format!(
            "{} cannot import duckdb: install it with `{} -m pip install -r \
             tests/python/requirements.txt` (scripts/test does)",
            config.python.display(),
            config.python.display()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The synthetic year

/// A small deterministic generator (SplitMix64): the same log on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n.max(1) as u64) as i64
    }

    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The calendar of the run: days, their periods, the closes.
struct Plan {
    zone: Tz,
    resources: u32,
    accounts: u32,
    days: u32,
    first_day: NaiveDate,
    /// First instant of each local day, and of the day after the last (`days + 1` entries).
    day_starts: Vec<i64>,
}

impl Plan {
    fn new(config: &UsageBenchConfig) -> Plan {
        let daily = AggregationRule {
            range_minutes: 1440,
            zone: config.zone,
        };
        let first_day = first_day(daily);
        let day_starts = (0..=config.days)
            .map(|d| day_start(daily, first_day + chrono::Days::new(u64::from(d))))
            .collect();
        Plan {
            zone: config.zone,
            resources: config.resources,
            accounts: config.resources.div_ceil(VMS_PER_ACCOUNT),
            days: config.days,
            first_day,
            day_starts,
        }
    }

    /// The end of churn: the first instant after the last day.
    fn end(&self) -> i64 {
        self.day_starts[self.days as usize]
    }

    /// `USAGE.CLOSE` of day `d` (0-based): at 00:15 of the next day, as the scheduler runs it.
    fn close_at(&self, d: u32) -> Timestamp {
        let times = RunTimes {
            time_of_day: NaiveTime::from_hms_opt(0, 15, 0).unwrap_or(NaiveTime::MIN),
            zone: self.zone,
            range_minutes: 1440,
        };
        times.latest_run(Timestamp::from_millis(
            self.day_starts[d as usize + 1] + 2 * HOUR,
        ))
    }

    fn dst_days(&self) -> Vec<NaiveDate> {
        self.day_starts
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] - w[0] != 24 * HOUR)
            .map(|(d, _)| self.first_day + chrono::Days::new(d as u64))
            .collect()
    }
}

/// The first instant of local date `date`.
fn day_start(daily: AggregationRule, date: NaiveDate) -> i64 {
    let noon = date.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(NaiveTime::MIN));
    let at = daily
        .zone
        .from_local_datetime(&noon)
        .earliest()
        .map_or_else(
            || noon.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        );
    daily
        .period_containing(Timestamp::from_millis(at))
        .start
        .millis()
}

/// The day before the zone's first offset change on or after 2025-07-01 (2025-11-01 for a zone
/// without one within a year).
fn first_day(daily: AggregationRule) -> NaiveDate {
    let base = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap_or_default();
    (1..=366u64)
        .map(|d| base + chrono::Days::new(d))
        .find(|date| {
            let next = *date + chrono::Days::new(1);
            day_start(daily, next) - day_start(daily, *date) != 24 * HOUR
        })
        .map(|date| date - chrono::Days::new(1))
        .unwrap_or_else(|| NaiveDate::from_ymd_opt(2025, 11, 1).unwrap_or(base))
}

/// What a VM slot does next.
#[derive(Debug, Clone, Copy)]
enum Step {
    Create,
    Start,
    Stop,
    Destroy,
}

/// One of the `resources` VMs live at any time; a destroyed VM's slot gets a new VM.
struct Slot {
    vm: VmFacts,
    step: Step,
}

/// The synthetic VM facts of a new VM of `account`.
fn new_vm(rng: &mut Rng, account: (Uuid, Uuid), zone_id: Uuid, offerings: &[Uuid]) -> VmFacts {
    let vm_id = rng.uuid();
    let shape = rng.below(offerings.len() as i64) as usize;
    let short = &vm_id.simple().to_string()[..8];
    VmFacts {
        vm_id,
        name: format!("bench-{short}").into(),
        instance_name: format!("i-2-{short}-VM").into(),
        display_name: None,
        account_id: account.0,
        domain_id: account.1,
        zone_id,
        service_offering_id: offerings[shape],
        template_id: Uuid::from_u128(0x7e3d_0000_0000_4000_8000_0000_0000_0001),
        hypervisor: "Simulator".into(),
        cpu_number: 1 << shape,
        cpu_speed: 1000,
        memory: 1024 << shape,
    }
}

/// Generates the year in time order and appends it; returns the number of events.
async fn fill_log(
    store: &EmbeddedStore,
    plan: &Plan,
    progress: &dyn BenchProgress,
) -> Result<u64, UsageBenchError> {
    let mut rng = Rng(SEED);
    let domain = rng.uuid();
    let zone_id = rng.uuid();
    let offerings: Vec<Uuid> = (0..3).map(|_| rng.uuid()).collect();
    let accounts: Vec<(Uuid, Uuid)> = (0..plan.accounts).map(|_| (rng.uuid(), domain)).collect();
    let bench_stream = stream("usage_bench")?;
    let usage_stream = stream(USAGE_STREAM)?;
    let estimate = u64::from(plan.resources) * u64::from(plan.days) * 2;
    progress.phase(
        "generating and appending a synthetic year (untimed)",
        Some(estimate),
    );

    let start = plan.day_starts[0];
    let mut appended = 0u64;
    // The zone is set two days before the first VM: a global change takes effect at the next
    // boundary of the old (GMT) rule.
    let setting = NewEvent::new(EventBody::Configuration(ConfigurationEvent::ValueEdit(
        ConfigurationChanged {
            name: "usage.aggregation.timezone".into(),
            value: Some(plan.zone.name().to_owned()),
            previous_value: None,
            scope: ConfigScope::Global,
            scope_id: None,
        },
    )))
    .occurred_at(Timestamp::from_millis(start - 48 * HOUR));
    // Quota tariffs for the two VM usage types, in force from before the first VM: the fold
    // charges every record it publishes, as the server does.
    let tariffs = TARIFFS.iter().map(|&(usage_type, name, value)| {
        NewEvent::new(EventBody::Quota(QuotaEvent::TariffCreate(
            QuotaTariffDefined {
                // Not drawn from `rng`: the rest of the log stays what it was before tariffs.
                tariff_id: Uuid::from_u128(0x7a41_ff00 + u128::from(usage_type)),
                name: name.into(),
                description: None,
                usage_type,
                value: Decimal::new(value, 2),
                effective_on: Timestamp::from_millis(start - 48 * HOUR),
                end_date: None,
                position: None,
            },
        )))
        .occurred_at(Timestamp::from_millis(start - 48 * HOUR))
    });
    let opening: Vec<NewEvent> = std::iter::once(setting).chain(tariffs).collect();
    appended += opening.len() as u64;
    store
        .append(&bench_stream, ExpectedVersion::Any, opening)
        .await?;

    // The timeline: (instant, tie-breaker, what). What < CLOSE is a slot; CLOSE + d is day d's
    // close.
    const CLOSE: u64 = 1 << 40;
    let mut slots: Vec<Slot> = (0..plan.resources)
        .map(|i| Slot {
            vm: new_vm(
                &mut rng,
                accounts[(i / VMS_PER_ACCOUNT) as usize],
                zone_id,
                &offerings,
            ),
            step: Step::Create,
        })
        .collect();
    let mut timeline = BinaryHeap::new();
    let mut seq = 0u64;
    for i in 0..plan.resources {
        timeline.push(Reverse((start + rng.below(24 * HOUR), seq, u64::from(i))));
        seq += 1;
    }
    for d in 0..plan.days {
        timeline.push(Reverse((
            plan.close_at(d).millis(),
            seq,
            CLOSE + u64::from(d),
        )));
        seq += 1;
    }

    let mut batch: Vec<NewEvent> = Vec::with_capacity(APPEND_BATCH);
    while let Some(Reverse((at, _, what))) = timeline.pop() {
        if what >= CLOSE {
            if !batch.is_empty() {
                appended += batch.len() as u64;
                store
                    .append(
                        &bench_stream,
                        ExpectedVersion::Any,
                        std::mem::take(&mut batch),
                    )
                    .await?;
            }
            store
                .append(
                    &usage_stream,
                    ExpectedVersion::Any,
                    vec![close_event(Timestamp::from_millis(at))],
                )
                .await?;
            appended += 1;
            progress.progress(appended);
            continue;
        }
        if at >= plan.end() {
            continue; // the slot's churn ends with the year: what runs keeps running
        }
        let slot = &mut slots[what as usize];
        let vm = slot.vm.clone();
        let (body, next_in, next) = match slot.step {
            Step::Create => (
                VmEvent::Create(VmCreated {
                    vm,
                    host_id: None,
                    disk_offering_id: None,
                    root_disk_size: None,
                    user_data: None,
                    ssh_keypairs: Vec::new(),
                    affinity_group_ids: Vec::new(),
                }),
                MINUTE + rng.below(6 * HOUR),
                Step::Start,
            ),
            Step::Start => (
                VmEvent::Start(VmStarted { vm, host_id: None }),
                2 * HOUR + rng.below(20 * HOUR),
                Step::Stop,
            ),
            Step::Stop => {
                let replace = rng.below(REPLACE_ONE_IN as i64) == 0;
                (
                    VmEvent::Stop(VmStopped { vm, forced: false }),
                    if replace {
                        MINUTE + rng.below(HOUR)
                    } else {
                        2 * HOUR + rng.below(20 * HOUR)
                    },
                    if replace { Step::Destroy } else { Step::Start },
                )
            }
            Step::Destroy => {
                let account = (slot.vm.account_id, slot.vm.domain_id);
                slot.vm = new_vm(&mut rng, account, zone_id, &offerings);
                (
                    VmEvent::Destroy(VmDestroyed { vm, expunge: true }),
                    MINUTE + rng.below(2 * HOUR),
                    Step::Create,
                )
            }
        };
        slot.step = next;
        batch.push(NewEvent::new(EventBody::Vm(body)).occurred_at(Timestamp::from_millis(at)));
        timeline.push(Reverse((at + next_in, seq, what)));
        seq += 1;
        if batch.len() >= APPEND_BATCH {
            appended += batch.len() as u64;
            store
                .append(
                    &bench_stream,
                    ExpectedVersion::Any,
                    std::mem::take(&mut batch),
                )
                .await?;
            progress.progress(appended);
            // The index trails the appends and holds what it has not indexed yet in memory:
            // bounded here, or a full-size run would not fit in memory.
            while store.index_backlog() > INDEX_BACKLOG_MAX {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if !batch.is_empty() {
        appended += batch.len() as u64;
        store
            .append(&bench_stream, ExpectedVersion::Any, batch)
            .await?;
    }
    progress.progress(appended);
    progress.finish();
    Ok(appended)
}

fn stream(category: &str) -> Result<StreamId, UsageBenchError> {
    StreamId::singleton(category).map_err(|e| UsageBenchError::Setup(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Reading the log

/// Reads the whole log in batches on another task, one batch ahead of the consumer (as a
/// catch-up reads while the fold applies).
fn read_ahead(store: &EmbeddedStore) -> mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>> {
    let (tx, rx) = mpsc::channel(2);
    let store = store.clone();
    tokio::spawn(async move {
        let mut next = Position(1);
        loop {
            match store.read_all(next, READ_BATCH).await {
                Ok(batch) => {
                    let Some(last) = batch.last() else {
                        return;
                    };
                    next = last.envelope.position.next();
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// The baseline: reads and decodes the whole log, applying nothing.
async fn replay(
    store: &EmbeddedStore,
    progress: &dyn BenchProgress,
) -> Result<Duration, UsageBenchError> {
    let started = Instant::now();
    let mut batches = read_ahead(store);
    let mut events = 0u64;
    while let Some(batch) = batches.recv().await {
        events += batch?.len() as u64;
        progress.progress(events);
    }
    Ok(started.elapsed())
}

/// One record as both sides report it: local day, account, usage type id, entity, milliseconds.
type Row = (NaiveDate, Uuid, u8, Uuid, u64);

/// What the fold produced and cost.
struct Folded {
    events: u64,
    elapsed: Duration,
    closes: Vec<Duration>,
    persist: Duration,
    persisted_rows: u64,
    persisted_bytes: u64,
    record_rows: u64,
    /// The records, sorted, one per (day, account, type, entity).
    records: Vec<Row>,
    /// Charging every record again in a fresh quota book.
    charging: Charging,
}

/// The quota charging pass: every record of the fold charged again by a fresh [`QuotaBook`]
/// holding the log's tariffs, timed alone, and checked against what the fold charged inline.
#[derive(Debug, Clone, Copy)]
pub struct Charging {
    /// Records charged.
    pub records: u64,
    /// Time to charge them.
    pub elapsed: Duration,
    /// The sum of every account's charges (equal in both, or the bench fails).
    pub total: Decimal,
}

/// Reads the log and folds every event into a fresh model; after each close, persists the
/// records it published to a sled tree (timed apart).
async fn fold(
    store: &EmbeddedStore,
    tree_dir: &Path,
    progress: &dyn BenchProgress,
) -> Result<Folded, UsageBenchError> {
    let mut shards = RecordShards::new(tree_dir);
    let upstream = projections::State::default();
    let mut model = UsageModel::default();
    let mut closes = Vec::new();
    let mut persist = Duration::ZERO;
    let mut events = 0u64;
    let mut tariffs = Vec::new();

    let started = Instant::now();
    let mut batches = read_ahead(store);
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        for event in &batch {
            if let EventBody::Quota(tariff) = &*event.body {
                tariffs.push(tariff.clone());
            }
            if matches!(&*event.body, EventBody::Usage(UsageEvent::Close(_))) {
                let close = Instant::now();
                model.apply(event, &upstream);
                closes.push(close.elapsed());
                let persisting = Instant::now();
                shards.persist(&mut model.ledger.records)?;
                persist += persisting.elapsed();
            } else {
                model.apply(event, &upstream);
            }
        }
        events += batch.len() as u64;
        progress.progress(events);
    }
    let elapsed = started.elapsed().saturating_sub(persist);
    let (persisted_rows, persisted_bytes) = shards.finish()?;

    let ledger = &model.ledger;
    let mut records: Vec<Row> = ledger
        .records
        .iter()
        .map(|(key, row)| {
            let start = Timestamp::from_millis(key.period_start);
            let zone = ledger.schedule_of(key.track.account_id).rule_at(start).zone;
            (
                start.to_datetime().with_timezone(&zone).date_naive(),
                key.track.account_id,
                key.track.usage_type.id(),
                key.track.entity_id,
                row.quantity,
            )
        })
        .collect();
    let record_rows = records.len() as u64;
    let charging = charge_again(&model, &tariffs)?;
    records.sort_unstable();
    // Variants of one track in one day are separate records; DuckDB knows no variants.
    records.dedup_by(|later, kept| {
        let same = (later.0, later.1, later.2, later.3) == (kept.0, kept.1, kept.2, kept.3);
        if same {
            kept.4 += later.4;
        }
        same
    });
    Ok(Folded {
        events,
        elapsed,
        closes,
        persist,
        persisted_rows,
        persisted_bytes,
        record_rows,
        records,
        charging,
    })
}

/// Where the fold persists the records: a sled database per [`CLOSES_PER_SHARD`] closes, each
/// batch flushed to disk. Sharded because sled 0.34 holds several times a tree's size on disk
/// in memory: one database of a full year's records does not fit in 24 GiB beside the model.
/// The writes, their batching and the flushes are the runner's; only the database is split.
struct RecordShards {
    dir: PathBuf,
    open: Option<(sled::Db, sled::Tree)>,
    closes: u32,
    done: u32,
    rows: u64,
    bytes: u64,
}

/// Closes (days) persisted into one sled database.
const CLOSES_PER_SHARD: u32 = 30;

impl RecordShards {
    fn new(dir: &Path) -> Self {
        RecordShards {
            dir: dir.to_owned(),
            open: None,
            closes: 0,
            done: 0,
            rows: 0,
            bytes: 0,
        }
    }

    /// Writes the rows changed since the last call in one batch, and flushes.
    fn persist(&mut self, records: &mut dyn PersistedTable) -> Result<(), UsageBenchError> {
        if self.open.is_none() {
            let db = sled::Config::new()
                .path(self.dir.join(format!("shard-{:03}", self.done)))
                .flush_every_ms(None)
                .open()?;
            let tree = db.open_tree("read-models")?;
            self.open = Some((db, tree));
        }
        if let Some((db, tree)) = &self.open {
            let mut rows = sled::Batch::default();
            records.drain_dirty(&mut rows)?;
            tree.apply_batch(rows)?;
            db.flush()?;
        }
        self.closes += 1;
        if self.closes == CLOSES_PER_SHARD {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), UsageBenchError> {
        if let Some((db, tree)) = self.open.take() {
            db.flush()?;
            self.rows += tree.len() as u64;
            self.bytes += db.size_on_disk()?;
            self.done += 1;
            self.closes = 0;
        }
        Ok(())
    }

    /// Rows written and bytes on disk over every shard.
    fn finish(mut self) -> Result<(u64, u64), UsageBenchError> {
        self.close_shard()?;
        Ok((self.rows, self.bytes))
    }
}

/// Charges every record of `model` again in a fresh quota book with `tariffs`, and checks each
/// account's charges equal those the fold made inline.
fn charge_again(model: &UsageModel, tariffs: &[QuotaEvent]) -> Result<Charging, UsageBenchError> {
    let ledger = &model.ledger;
    let at = Timestamp::from_millis(0);
    let mut book = QuotaBook::default();
    for tariff in tariffs {
        book.apply(tariff, at, &Actor::SYSTEM);
    }
    let publications: Vec<Publication> = ledger
        .records
        .iter()
        .map(|(key, row)| Publication {
            key: *key,
            period_end: row.period_end,
            quantity: row.quantity,
        })
        .collect();
    let started = Instant::now();
    book.charge_publications(&publications, ledger, at);
    let elapsed = started.elapsed();
    let mut total = Decimal::ZERO;
    for (account_id, inline) in model.quota.accounts.iter() {
        let again = book.accounts.get(account_id).map(|a| a.charges);
        if again != Some(inline.charges) {
            return Err(UsageBenchError::Charges(format!(
                "account {account_id}: charged {} in the fold, {again:?} charging again",
                inline.charges
            )));
        }
        total += inline.charges;
    }
    if total.is_zero() && !publications.is_empty() {
        return Err(UsageBenchError::Charges(
            "the records were charged nothing: the tariffs did not apply".into(),
        ));
    }
    Ok(Charging {
        records: publications.len() as u64,
        elapsed,
        total,
    })
}

// ---------------------------------------------------------------------------------------------
// DuckDB

/// Writes every event as one CSV row: position, occurred_ms, type, state, account, vm, until_ms.
async fn export_csv(
    store: &EmbeddedStore,
    path: &Path,
    progress: &dyn BenchProgress,
) -> Result<(), UsageBenchError> {
    let file =
        std::fs::File::create(path).map_err(io_error(format!("create {}", path.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write = io_error(format!("write {}", path.display()));
    let mut text = String::with_capacity(256);
    text.push_str("position,occurred_ms,type,state,account,vm,until_ms\n");
    let mut batches = read_ahead(store);
    let mut events = 0u64;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        for event in &batch {
            use std::fmt::Write as _;
            let envelope = &event.envelope;
            let (vm, until) = match &*event.body {
                EventBody::Vm(VmEvent::Create(e)) => (Some(&e.vm), None),
                EventBody::Vm(VmEvent::Start(e)) => (Some(&e.vm), None),
                EventBody::Vm(VmEvent::Stop(e)) => (Some(&e.vm), None),
                EventBody::Vm(VmEvent::Destroy(e)) => (Some(&e.vm), None),
                EventBody::Usage(UsageEvent::Close(c)) => (None, Some(c.until.millis())),
                _ => (None, None),
            };
            let _ = write!(
                text,
                "{},{},{},{:?},",
                envelope.position.0,
                envelope.occurred_at.millis(),
                event.body.event_type().name(),
                envelope.state
            );
            if let Some(vm) = vm {
                let _ = write!(text, "{},{}", vm.account_id, vm.vm_id);
            } else {
                text.push(',');
            }
            text.push(',');
            if let Some(until) = until {
                let _ = write!(text, "{until}");
            }
            text.push('\n');
            out.write_all(text.as_bytes())
                .map_err(|e| UsageBenchError::Io(format!("write {}", path.display()), e))?;
            text.clear();
        }
        events += batch.len() as u64;
        progress.progress(events);
    }
    out.flush().map_err(write)?;
    Ok(())
}

/// Runs the DuckDB script; its time from start to records in memory, and its own figures.
fn run_duckdb(
    config: &UsageBenchConfig,
    events_csv: &Path,
    records_csv: &Path,
) -> Result<DuckDbFigures, UsageBenchError> {
    let parquet = config.dir.join("events.parquet");
    let started = Instant::now();
    let mut child = Command::new(&config.python)
        .arg(&config.script)
        .arg("--events")
        .arg(events_csv)
        .arg("--zone")
        .arg(config.zone.name())
        .arg("--out")
        .arg(records_csv)
        .arg("--parquet")
        .arg(&parquet)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            UsageBenchError::DuckDb(format!("cannot run {}: {e}", config.python.display()))
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| UsageBenchError::DuckDb("no stdout from the script".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| UsageBenchError::DuckDb("no stderr from the script".into()))?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut wall = None;
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(io_error("read the script's output"))?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match value["event"].as_str() {
            Some("records_in_memory") => wall = Some(started.elapsed()),
            Some("summary") => summary = Some(value),
            _ => {}
        }
    }
    let status = child.wait().map_err(io_error("wait for the script"))?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(UsageBenchError::DuckDb(format!(
            "{} exited with {status}: {}",
            config.script.display(),
            errors.trim()
        )));
    }
    let (Some(wall), Some(summary)) = (wall, summary) else {
        return Err(UsageBenchError::DuckDb(format!(
            "the script reported no records: {}",
            errors.trim()
        )));
    };
    let micros = |v: &serde_json::Value| v.as_u64().map(Duration::from_micros);
    let csv = &summary["csv"];
    let parquet = &summary["parquet"];
    Ok(DuckDbFigures {
        wall,
        csv_load: micros(&csv["load_us"]).unwrap_or_default(),
        csv_compute: micros(&csv["compute_us"]).unwrap_or_default(),
        parquet_load: micros(&parquet["load_us"]),
        parquet_compute: micros(&parquet["compute_us"]),
        parquet_bytes: parquet["bytes"].as_u64(),
        records: summary["records"].as_u64().unwrap_or_default(),
        version: summary["duckdb_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        threads: summary["threads"].as_u64().unwrap_or_default(),
    })
}

/// DuckDB's records, sorted.
fn read_records(path: &Path) -> Result<Vec<Row>, UsageBenchError> {
    let file = std::fs::File::open(path).map_err(io_error(format!("open {}", path.display())))?;
    let mut rows = Vec::new();
    for (n, line) in BufReader::with_capacity(1 << 20, file).lines().enumerate() {
        let line = line.map_err(io_error(format!("read {}", path.display())))?;
        let bad = || UsageBenchError::DuckDb(format!("line {} of its records: {line:?}", n + 1));
        let mut fields = line.split(',');
        let mut next = || fields.next().ok_or_else(bad);
        let day = NaiveDate::parse_from_str(next()?, "%Y-%m-%d").map_err(|_| bad())?;
        let account = Uuid::parse_str(next()?).map_err(|_| bad())?;
        let usage_type = next()?.parse().map_err(|_| bad())?;
        let entity = Uuid::parse_str(next()?).map_err(|_| bad())?;
        let ms = next()?.parse().map_err(|_| bad())?;
        rows.push((day, account, usage_type, entity, ms));
    }
    rows.sort_unstable();
    Ok(rows)
}

/// Compares the two sorted record lists; the number of records, or what differs.
fn compare(ours: &[Row], theirs: &[Row]) -> Result<u64, UsageBenchError> {
    let (mut i, mut j) = (0, 0);
    let (mut only_ours, mut only_theirs, mut different) = (0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let mut note = |text: String| {
        if examples.len() < 5 {
            examples.push(text);
        }
    };
    let show = |r: &Row| format!("{} {} type {} {}: {} ms", r.0, r.1, r.2, r.3, r.4);
    while i < ours.len() || j < theirs.len() {
        let key = |r: &Row| (r.0, r.1, r.2, r.3);
        match (ours.get(i), theirs.get(j)) {
            (Some(a), Some(b)) if key(a) == key(b) => {
                if a.4 != b.4 {
                    different += 1;
                    note(format!("{} (DuckDB: {} ms)", show(a), b.4));
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if key(a) < key(b) => {
                only_ours += 1;
                note(format!("only Ledgerstack: {}", show(a)));
                i += 1;
            }
            (Some(a), None) => {
                only_ours += 1;
                note(format!("only Ledgerstack: {}", show(a)));
                i += 1;
            }
            (_, Some(b)) => {
                only_theirs += 1;
                note(format!("only DuckDB: {}", show(b)));
                j += 1;
            }
            (None, None) => break,
        }
    }
    if only_ours + only_theirs + different > 0 {
        return Err(UsageBenchError::Mismatch(format!(
            "{different} with other milliseconds, {only_ours} only in Ledgerstack, \
             {only_theirs} only in DuckDB (of {} and {}); for example: {}",
            ours.len(),
            theirs.len(),
            examples.join("; ")
        )));
    }
    Ok(ours.len() as u64)
}

fn file_bytes(path: &Path) -> Result<u64, UsageBenchError> {
    Ok(std::fs::metadata(path)
        .map_err(io_error(format!("stat {}", path.display())))?
        .len())
}

fn remove_dir(dir: &Path) -> Result<(), UsageBenchError> {
    std::fs::remove_dir_all(dir).map_err(io_error(format!("remove {}", dir.display())))
}

/// Bytes in the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> Result<u64, UsageBenchError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io_error(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io_error(format!("list {}", dir.display())))?;
        let metadata = entry
            .metadata()
            .map_err(io_error(format!("stat {}", entry.path().display())))?;
        total += if metadata.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_new_york_run_starts_the_day_before_fall_back() {
        let daily = AggregationRule {
            range_minutes: 1440,
            zone: chrono_tz::America::New_York,
        };
        assert_eq!(
            first_day(daily),
            NaiveDate::from_ymd_opt(2025, 11, 1).unwrap()
        );
    }

    #[test]
    fn closes_run_at_a_quarter_past_midnight_local() {
        let config = UsageBenchConfig {
            dir: PathBuf::new(),
            resources: 1,
            days: 3,
            zone: chrono_tz::America::New_York,
            python: PathBuf::new(),
            script: PathBuf::new(),
        };
        let plan = Plan::new(&config);
        // Day 0 is 2025-11-01 (EDT): its close is 2025-11-02 00:15 EDT.
        assert_eq!(plan.close_at(0), "2025-11-02T04:15:00Z".parse().unwrap());
        // Day 1 is the 25-hour fall-back day: closed 2025-11-03 00:15 EST.
        assert_eq!(plan.close_at(1), "2025-11-03T05:15:00Z".parse().unwrap());
        assert_eq!(
            plan.dst_days(),
            vec![NaiveDate::from_ymd_opt(2025, 11, 2).unwrap()]
        );
    }

    #[test]
    fn comparison_names_every_kind_of_difference() {
        let day = NaiveDate::from_ymd_opt(2025, 11, 2).unwrap();
        let a = Uuid::from_u128(1);
        let ours = vec![(day, a, 1, a, 10), (day, a, 2, a, 20)];
        assert_eq!(compare(&ours, &ours).unwrap(), 2);
        let theirs = vec![(day, a, 1, a, 11), (day, a, 30, a, 5)];
        let err = compare(&ours, &theirs).unwrap_err().to_string();
        assert!(err.contains("1 with other milliseconds, 1 only in Ledgerstack, 1 only in DuckDB"));
    }
}
