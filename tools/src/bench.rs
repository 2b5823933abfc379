//! `ledgerstack bench ...`: runs a library benchmark with progress bars and prints its figures
//! beside their same-run baselines, with the targets they are held to.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use api::bench::{ApiBenchConfig, ApiBenchReport, Rate, TARGET_RATIO};
use api::lifecycle_bench::{LIFECYCLE_TARGET_RATIO, LifecycleBenchConfig};
use engine::bench::{AppendBenchConfig, AppendBenchReport, BenchProgress, Figure};
use indicatif::{ProgressBar, ProgressStyle};

/// The benchmarks.
#[derive(clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Event log appends (1, 8, 64 appenders; batched) and replay, against the fsync and
    /// sequential-read limits of the same disk.
    Append(AppendArgs),
    /// Signed `listZones` requests per second through the real server (in-process, demo data),
    /// against an axum handler answering the same bytes without parsing or authentication.
    Api(ApiArgs),
    /// deploy → Running → destroy cycles per second through the HTTP API (simulator at zero
    /// latency), and the state projection's rebuild rate against raw replay of the same log.
    Lifecycle(LifecycleArgs),
    /// A synthetic year of VM churn folded into usage records (against raw replay of the same
    /// log), one more daily close against the whole year, persisting the records, and DuckDB
    /// computing the same records from the same events (which must be equal).
    Usage(UsageArgs),
    /// Export and verify (of the export and of the data directory) in events per second,
    /// against raw replay of the same log.
    Export(crate::audit::BenchExportArgs),
}

/// Arguments of `ledgerstack bench usage`.
#[derive(clap::Args)]
pub(crate) struct UsageArgs {
    /// Divide the full size (20,000 VMs, 365 days) by this: `--scale 100` is a quick check.
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// VMs live at any time (overrides --scale).
    #[arg(long)]
    resources: Option<u32>,
    /// Days of churn, one USAGE.CLOSE after each (overrides --scale).
    #[arg(long)]
    days: Option<u32>,
    /// Aggregation time zone (IANA name).
    #[arg(long, default_value = "America/New_York")]
    zone: String,
    /// Scratch directory, emptied first and removed afterwards [default: a temporary one].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Python with duckdb installed [default: $LEDGERSTACK_PYTHON, else .venv/bin/python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// The DuckDB side.
    #[arg(long, default_value = "scripts/usage_duckdb.py")]
    script: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ledgerstack bench lifecycle`.
#[derive(clap::Args)]
pub(crate) struct LifecycleArgs {
    /// Deploy → destroy cycles in all.
    #[arg(long, default_value_t = 400)]
    cycles: u32,
    /// Clients running cycles concurrently.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Seconds each replay measurement repeats for (three of each, the median counts).
    #[arg(long, default_value_t = 1.0)]
    replay_seconds: f64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ledgerstack bench api`.
#[derive(clap::Args)]
pub(crate) struct ApiArgs {
    /// Interleaved rounds: each runs both servers for one slice.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Seconds each server is measured per round.
    #[arg(long, default_value_t = 2.0)]
    slice: f64,
    /// Concurrent keep-alive connections to each server.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ledgerstack bench append`.
#[derive(clap::Args)]
pub(crate) struct AppendArgs {
    /// Scratch directory on the disk to measure (emptied first).
    #[arg(long, default_value = "ledgerstack-bench")]
    dir: PathBuf,
    /// Interleaved rounds: each runs every append figure for one slice.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Seconds each figure runs per round.
    #[arg(long, default_value_t = 0.5)]
    slice: f64,
    /// Concurrency levels for single-event appends (must include 1, the reference).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    appenders: Vec<usize>,
    /// Events per append in the batched phase.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Events in the log that replay reads.
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Append(args) => append(args).await,
        BenchCommand::Api(args) => api_bench(args).await,
        BenchCommand::Lifecycle(args) => lifecycle_bench(args).await,
        BenchCommand::Usage(args) => usage_bench(args).await,
        BenchCommand::Export(args) => crate::audit::bench_export(args).await,
    }
}

/// Progress bars on stderr: a bar when the total is known, a spinner otherwise.
struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl BenchProgress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:48} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn progress(&self, done: u64) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

async fn append(args: AppendArgs) -> Result<()> {
    anyhow::ensure!(
        args.appenders.contains(&1),
        "--appenders must include 1: the other levels are reported against it"
    );
    anyhow::ensure!(args.slice > 0.0, "--slice must be positive");
    anyhow::ensure!(args.rounds > 0, "--rounds must be positive");
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be positive");
    anyhow::ensure!(args.replay_events > 0, "--replay-events must be positive");
    let config = AppendBenchConfig {
        dir: args.dir.clone(),
        rounds: args.rounds,
        slice: Duration::from_secs_f64(args.slice),
        appenders: args.appenders,
        batch_size: args.batch_size,
        replay_events: args.replay_events,
    };
    let bars = Bars {
        current: Mutex::new(None),
    };
    let report = engine::bench::run_append_bench(&config, &bars)
        .await
        .with_context(|| format!("bench append in {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print_table(&args.dir, &report);
    }
    Ok(())
}

fn figure_json(f: &Figure) -> serde_json::Value {
    serde_json::json!({
        "name": f.name,
        "events": f.events,
        "seconds": f.elapsed.as_secs_f64(),
        "events_per_second": f.rate(),
        "fsyncs": f.fsyncs,
        "events_per_fsync": f.events_per_fsync(),
    })
}

fn report_json(r: &AppendBenchReport) -> serde_json::Value {
    serde_json::json!({
        "record_bytes": r.record_bytes,
        "raw_fsync": figure_json(&r.raw_fsync),
        "appends": r.appends.iter().map(|(n, f)| serde_json::json!({"appenders": n, "figure": figure_json(f)})).collect::<Vec<_>>(),
        "batched": figure_json(&r.batched),
        "raw_read": figure_json(&r.raw_read),
        "raw_read_warm": figure_json(&r.raw_read_warm),
        "replay_warm": figure_json(&r.replay_warm),
        "log_bytes": r.log_bytes,
        "replay": figure_json(&r.replay),
        "indexing": figure_json(&r.indexing),
        "ratios": {
            "single_appender_vs_raw_fsync": r.single_vs_raw(),
            "concurrency_speedup": r.concurrency_speedup().map(|(n, x)| serde_json::json!({"appenders": n, "speedup": x})),
            "replay_slowdown_vs_raw_read": r.replay_slowdown(),
            "warm_replay_slowdown_vs_warm_read": r.warm_replay_slowdown(),
        },
    })
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn print_table(dir: &std::path::Path, r: &AppendBenchReport) {
    println!(
        "ledgerstack bench append: {}-byte records, on {}",
        r.record_bytes,
        dir.display()
    );
    println!(
        "{:<44} {:>14} {:>14} {:>14}",
        "figure", "events/s", "ratio", "events/fsync"
    );
    let row = |name: &str, f: &Figure, ratio: String| {
        println!(
            "{:<44} {:>14} {:>14} {:>14}",
            name,
            thousands(f.rate()),
            ratio,
            f.events_per_fsync()
                .map_or(String::from("-"), |x| format!("{x:.1}"))
        );
    };
    row(
        "A: write + fdatasync loop (baseline)",
        &r.raw_fsync,
        "1.00 × A".into(),
    );
    let single = r
        .appends
        .iter()
        .find(|(n, _)| *n == 1)
        .map(|(_, f)| f.rate());
    for (n, f) in &r.appends {
        let ratio = if *n == 1 {
            format!("{:.2} × A", f.rate() / r.raw_fsync.rate())
        } else {
            single.map_or("-".into(), |s| format!("{:.1} × 1 app", f.rate() / s))
        };
        row(&format!("append, {n} appender(s)"), f, ratio);
    }
    row(
        &format!("append, batched ({})", r.batched.name),
        &r.batched,
        format!("{:.1} × A", r.batched.rate() / r.raw_fsync.rate()),
    );
    row(
        &format!(
            "B: read from disk ({:.0} MB/s, baseline)",
            r.bytes_per_second(&r.raw_read) / 1e6
        ),
        &r.raw_read,
        "1.00 × B".into(),
    );
    row(
        "replay from disk: read_all + decode",
        &r.replay,
        format!("1/{:.2} of B", r.replay_slowdown()),
    );
    row(
        &format!(
            "W: read from page cache ({:.0} MB/s)",
            r.bytes_per_second(&r.raw_read_warm) / 1e6
        ),
        &r.raw_read_warm,
        "1.00 × W".into(),
    );
    row(
        "replay from page cache",
        &r.replay_warm,
        format!("1/{:.2} of W", r.warm_replay_slowdown()),
    );
    row(
        "background indexing into sled (no target)",
        &r.indexing,
        "-".into(),
    );
    println!();
    if let Some(x) = r.single_vs_raw() {
        println!(
            "target: 1 appender >= 0.9 x A ........ {x:.2} x  {}",
            verdict(x >= 0.9)
        );
    }
    if let Some((n, x)) = r.concurrency_speedup() {
        println!(
            "target: {n} appenders >= 20 x 1 ......... {x:.1} x  {}",
            verdict(n < 64 || x >= 20.0)
        );
    }
    let slowdown = r.replay_slowdown();
    println!(
        "target: replay within 3 x of B ........ {slowdown:.2} x slower  {}",
        verdict(slowdown <= 3.0)
    );
}

async fn api_bench(args: ApiArgs) -> Result<()> {
    anyhow::ensure!(args.slice > 0.0, "--slice must be positive");
    anyhow::ensure!(args.rounds > 0, "--rounds must be positive");
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    let config = ApiBenchConfig {
        rounds: args.rounds,
        slice: Duration::from_secs_f64(args.slice),
        connections: args.connections,
    };
    let bars = Bars {
        current: Mutex::new(None),
    };
    let report = api::bench::run_api_bench(&config, &bars)
        .await
        .context("bench api")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&api_report_json(&report))?
        );
    } else {
        print_api_table(&report);
    }
    Ok(())
}

async fn lifecycle_bench(args: LifecycleArgs) -> Result<()> {
    anyhow::ensure!(
        args.replay_seconds > 0.0,
        "--replay-seconds must be positive"
    );
    let config = LifecycleBenchConfig {
        cycles: args.cycles,
        clients: args.clients,
        replay_time: Duration::from_secs_f64(args.replay_seconds),
    };
    let bars = Bars {
        current: Mutex::new(None),
    };
    let r = api::lifecycle_bench::run_lifecycle_bench(&config, &bars)
        .await
        .context("bench lifecycle")?;
    let ratio = r.ratio();
    let met = ratio >= LIFECYCLE_TARGET_RATIO;
    if args.json {
        let report = serde_json::json!({
            "cycles": r.cycles,
            "clients": args.clients,
            "cycles_per_second": r.cycles_per_second,
            "events": r.events,
            "raw_replay_events_per_second": r.replay_per_second,
            "rebuild_events_per_second": r.rebuild_per_second,
            "rebuild_vs_replay": ratio,
            "target": LIFECYCLE_TARGET_RATIO,
            "target_met": met,
            "rebuild_digests_equal": r.digests_equal,
            "network_operations_per_second": r.network_operations_per_second,
            "router_configurations_match": r.routers_match,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("lifecycle: {} cycles by {} clients", r.cycles, args.clients);
        println!(
            "  deploy → … → destroy         {:>12.1} cycles/s",
            r.cycles_per_second
        );
        println!(
            "  public IP and rule changes   {:>12.1} ops/s  (part of each cycle)",
            r.network_operations_per_second
        );
        println!("  log afterwards               {:>12} events", r.events);
        println!(
            "  raw replay (baseline)        {:>12.0} events/s",
            r.replay_per_second
        );
        println!(
            "  state rebuild                {:>12.0} events/s",
            r.rebuild_per_second
        );
        println!(
            "  rebuild / raw replay         {:>12.3}   (target ≥ {LIFECYCLE_TARGET_RATIO}: {})",
            ratio,
            if met { "met" } else { "NOT met" }
        );
        println!(
            "  two rebuilds, same digest    {:>12}",
            if r.digests_equal { "yes" } else { "NO" }
        );
        println!(
            "  routers programmed as logged {:>12}",
            if r.routers_match { "yes" } else { "NO" }
        );
    }
    anyhow::ensure!(
        r.digests_equal,
        "two rebuilds of the same log gave different digests"
    );
    anyhow::ensure!(
        r.routers_match,
        "a router's programmed configuration differs from what the log says"
    );
    Ok(())
}

fn rate_json(r: &Rate) -> serde_json::Value {
    serde_json::json!({
        "requests": r.requests,
        "seconds": r.elapsed.as_secs_f64(),
        "requests_per_second": r.per_second(),
    })
}

fn api_report_json(r: &ApiBenchReport) -> serde_json::Value {
    serde_json::json!({
        "connections": r.config.connections,
        "slice_seconds": r.config.slice.as_secs_f64(),
        "cpus": r.cpus,
        "body_bytes": r.body_bytes,
        "content_type": r.content_type,
        "zones": r.zones,
        "errors": r.errors,
        "rounds": r.rounds.iter().map(|round| serde_json::json!({
            "order": if round.signed_first { "signed, baseline" } else { "baseline, signed" },
            "signed": rate_json(&round.signed),
            "baseline": rate_json(&round.baseline),
            "ratio": round.ratio(),
        })).collect::<Vec<_>>(),
        "signed": rate_json(&r.signed_total()),
        "baseline": rate_json(&r.baseline_total()),
        "ratios": {
            "median_signed_vs_baseline": r.median_ratio(),
            "overall_signed_vs_baseline": r.overall_ratio(),
            "target": TARGET_RATIO,
            "target_met": r.target_met(),
        },
    })
}

fn print_api_table(r: &ApiBenchReport) {
    println!(
        "ledgerstack bench api: signed listZones (JSON, {} bytes, {} zone(s)), {} connections, \
         {} x {:.1} s interleaved, {} CPU(s) shared with the load generator",
        r.body_bytes,
        r.zones,
        r.config.connections,
        r.rounds.len(),
        r.config.slice.as_secs_f64(),
        r.cpus
    );
    println!(
        "{:<8} {:<18} {:>14} {:>16} {:>10}",
        "round", "order", "signed req/s", "baseline req/s", "ratio"
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "{:<8} {:<18} {:>14} {:>16} {:>10}",
            i + 1,
            if round.signed_first {
                "signed first"
            } else {
                "baseline first"
            },
            thousands(round.signed.per_second()),
            thousands(round.baseline.per_second()),
            format!("{:.2} x B", round.ratio())
        );
    }
    println!(
        "{:<8} {:<18} {:>14} {:>16} {:>10}",
        "all",
        "",
        thousands(r.signed_total().per_second()),
        thousands(r.baseline_total().per_second()),
        format!("{:.2} x B", r.overall_ratio())
    );
    println!(
        "every response checked: HTTP 200 and the expected body; {} errors",
        r.errors
    );
    println!();
    let median = r.median_ratio();
    println!(
        "target: signed >= {TARGET_RATIO} x baseline (median of rounds) ... {median:.2} x  {}",
        verdict(r.target_met())
    );
}

async fn usage_bench(args: UsageArgs) -> Result<()> {
    use usage::bench::{FULL_DAYS, FULL_RESOURCES, INCREMENTAL_TARGET, UsageBenchConfig};
    anyhow::ensure!(args.scale > 0, "--scale must be positive");
    let zone = usage::period::parse_zone(&args.zone)?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ledgerstack-bench-usage-{}", std::process::id()))
    });
    let config = UsageBenchConfig {
        dir: dir.clone(),
        resources: args.resources.unwrap_or(FULL_RESOURCES / args.scale).max(1),
        days: args.days.unwrap_or(FULL_DAYS.div_ceil(args.scale)).max(2),
        zone,
        python: args.python.clone().unwrap_or_else(|| {
            std::env::var_os("LEDGERSTACK_PYTHON")
                .map_or_else(|| PathBuf::from(".venv/bin/python"), PathBuf::from)
        }),
        script: args.script.clone(),
    };
    let bars = Bars {
        current: Mutex::new(None),
    };
    let result = usage::bench::run_usage_bench(&config, &bars).await;
    bars.finish();
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = result.context("bench usage")?;
    let s = |d: Duration| d.as_secs_f64();
    let fold_rate = r.events as f64 / s(r.fold).max(1e-9);
    let replay_rate = r.events as f64 / s(r.replay).max(1e-9);
    let incremental = s(r.fold) / s(r.last_close()).max(1e-9);
    let duckdb_wall = s(r.duckdb.wall) / s(r.fold).max(1e-9);
    let duckdb_internal = s(r.duckdb.best_internal()) / s(r.fold).max(1e-9);
    let fold_record_rate = r.records as f64 / s(r.fold).max(1e-9);
    let charge_rate = r.charging.records as f64 / s(r.charging.elapsed).max(1e-9);
    if args.json {
        let report = serde_json::json!({
            "resources": r.resources,
            "accounts": r.accounts,
            "days": r.days,
            "zone": r.zone.name(),
            "first_day": r.first_day.to_string(),
            "dst_days": r.dst_days.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "events": r.events,
            "log_bytes": r.log_bytes,
            "index_bytes": r.index_bytes,
            "append_seconds": s(r.append),
            "replay_seconds": s(r.replay),
            "replay_events_per_second": replay_rate,
            "fold_seconds": s(r.fold),
            "fold_events_per_second": fold_rate,
            "fold_vs_replay": fold_rate / replay_rate.max(1e-9),
            "records": r.records,
            "close_last_seconds": s(r.last_close()),
            "close_median_seconds": s(r.median_close()),
            "close_max_seconds": s(r.max_close()),
            "incremental_ratio": incremental,
            "incremental_target": INCREMENTAL_TARGET,
            "incremental_met": r.incremental_met(),
            "persist_seconds": s(r.persist),
            "persisted_rows": r.persisted_rows,
            "persisted_bytes": r.persisted_bytes,
            "export_seconds": s(r.export),
            "export_bytes": r.export_bytes,
            "duckdb": {
                "version": r.duckdb.version,
                "threads": r.duckdb.threads,
                "wall_seconds": s(r.duckdb.wall),
                "csv_load_seconds": s(r.duckdb.csv_load),
                "csv_compute_seconds": s(r.duckdb.csv_compute),
                "parquet_load_seconds": r.duckdb.parquet_load.map(s),
                "parquet_compute_seconds": r.duckdb.parquet_compute.map(s),
                "parquet_bytes": r.duckdb.parquet_bytes,
                "records": r.duckdb.records,
            },
            "duckdb_wall_vs_fold": duckdb_wall,
            "duckdb_best_internal_vs_fold": duckdb_internal,
            "records_compared_equal": r.compared,
            "quota_charging": {
                "records": r.charging.records,
                "seconds": s(r.charging.elapsed),
                "records_per_second": charge_rate,
                "vs_fold_records_per_second": charge_rate / fold_record_rate.max(1e-9),
                "total_charged": r.charging.total.to_string(),
            },
            "fold_records_per_second": fold_record_rate,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let dst: Vec<String> = r.dst_days.iter().map(ToString::to_string).collect();
        println!(
            "usage: {} VMs of {} accounts, {} days from {} in {} (DST days: {}), {} events \
             ({:.0} MB of log, {:.0} MB of index)",
            r.resources,
            r.accounts,
            r.days,
            r.first_day,
            r.zone.name(),
            if dst.is_empty() {
                "none".into()
            } else {
                dst.join(", ")
            },
            r.events,
            r.log_bytes as f64 / 1e6,
            r.index_bytes as f64 / 1e6
        );
        println!(
            "  log generated and appended      {:>9.2} s  (untimed preparation)",
            s(r.append)
        );
        println!(
            "  raw replay (baseline)           {:>9.2} s {:>12.0} events/s",
            s(r.replay),
            replay_rate
        );
        println!(
            "  (1) full: read + fold           {:>9.2} s {:>12.0} events/s  {:.2} x replay  {} records",
            s(r.fold),
            fold_rate,
            fold_rate / replay_rate.max(1e-9),
            r.records
        );
        println!(
            "  (2) one more daily close        {:>9.2} ms (median {:.2} ms, max {:.2} ms): \
             full / close = {incremental:.0} x (target >= {INCREMENTAL_TARGET}: {})",
            s(r.last_close()) * 1e3,
            s(r.median_close()) * 1e3,
            s(r.max_close()) * 1e3,
            verdict(r.incremental_met())
        );
        println!(
            "  (3) persisting the records      {:>9.2} s  {} rows, {:.0} MB in sled  ({:.2} x the fold)",
            s(r.persist),
            r.persisted_rows,
            r.persisted_bytes as f64 / 1e6,
            s(r.persist) / s(r.fold).max(1e-9)
        );
        println!(
            "  events exported to CSV          {:>9.2} s  {:.0} MB (untimed preparation)",
            s(r.export),
            r.export_bytes as f64 / 1e6
        );
        println!(
            "  (4) DuckDB {} ({} threads), start to records in memory {:.2} s: {duckdb_wall:.2} x the fold",
            r.duckdb.version,
            r.duckdb.threads,
            s(r.duckdb.wall)
        );
        println!(
            "      inside DuckDB: CSV load {:.2} s + compute {:.2} s",
            s(r.duckdb.csv_load),
            s(r.duckdb.csv_compute)
        );
        if let (Some(load), Some(compute)) = (r.duckdb.parquet_load, r.duckdb.parquet_compute) {
            println!(
                "      inside DuckDB: Parquet load {:.2} s + compute {:.2} s",
                s(load),
                s(compute)
            );
        }
        println!(
            "      fastest inside DuckDB {:.2} s: {duckdb_internal:.2} x the fold (above 1: Ledgerstack faster)",
            s(r.duckdb.best_internal())
        );
        println!(
            "  every record equal in both ({} records, milliseconds compared)",
            r.compared
        );
        println!(
            "  (5) quota charging alone        {:>9.2} s {:>12.0} records/s  ({:.1} x the fold's {:.0} records/s; {} charged, equal to the fold's inline charges)",
            s(r.charging.elapsed),
            charge_rate,
            charge_rate / fold_record_rate.max(1e-9),
            fold_record_rate,
            r.charging.total
        );
    }
    Ok(())
}
