//! `ledgerstack rebuild` and `ledgerstack digest`: the read models of a stopped server's data
//! directory, dropped and rebuilt from the log, or summed up as one hash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::store::EventStore;
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use indicatif::{ProgressBar, ProgressStyle};
use projections::runner;

/// Arguments of `digest`.
#[derive(clap::Args)]
pub(crate) struct StateArgs {
    /// The data directory of a stopped server (sled locks the read-model store while one runs).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

/// Arguments of `rebuild`.
#[derive(clap::Args)]
pub(crate) struct RebuildArgs {
    #[command(flatten)]
    dir: StateArgs,
    /// Rebuild only these read models, leaving the others as stored: `state` (domains to
    /// routers: everything the API lists), `usage` (usage records, quota, alerts, thresholds,
    /// alert deliveries), or a table name or its first part (`identity`, `compute`,
    /// `usage_records`, `quota`, `alerts`, ...). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Whether the table `name` (owned by a downstream model or not) is one of `only`'s picks.
fn selected(only: &[String], name: &str, downstream: bool) -> bool {
    only.iter().any(|pick| match pick.as_str() {
        "state" => !downstream,
        "usage" => downstream,
        pick => {
            name == pick
                || name
                    .strip_prefix(pick)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('_'))
        }
    })
}

fn open_log(dir: &Path) -> Result<EmbeddedStore> {
    EmbeddedStore::open(dir, EmbeddedOptions::default())
        .with_context(|| format!("opening the event log in {}", dir.display()))
}

/// A progress bar over the log's `head` events.
fn rebuild_bar(head: u64) -> ProgressBar {
    let bar = ProgressBar::new(head).with_style(
        ProgressStyle::with_template(
            "rebuilding read models [{bar:40}] {pos}/{len} events ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Drops the read models (or those `--only` picks) and rebuilds them from the log with a
/// progress bar; prints a summary with the digest.
pub(crate) async fn rebuild(args: RebuildArgs) -> Result<()> {
    if !args.only.is_empty() {
        return rebuild_only(args).await;
    }
    let args = args.dir;
    let store = open_log(&args.data_dir)?;
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let head = log.head().await?.0;
    let bar = rebuild_bar(head);
    let started = Instant::now();
    let summary = runner::rebuild(
        log,
        &args.data_dir.join("read-models"),
        usage::model::read_models,
        |done, _| bar.set_position(done.0),
    )
    .await
    .context("rebuilding the read models")?;
    bar.finish_and_clear();
    store.close();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Rebuilt the read models from {} events in {seconds:.2} s ({:.0} events/s); now at position {}.",
        summary.events,
        summary.events as f64 / seconds.max(1e-9),
        summary.position.0
    );
    println!("digest {}", summary.digest);
    Ok(())
}

/// `rebuild --only`: drops and rebuilds the picked tables, the others stay as stored.
async fn rebuild_only(args: RebuildArgs) -> Result<()> {
    let store = open_log(&args.dir.data_dir)?;
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let bar = rebuild_bar(log.head().await?.0);
    let started = Instant::now();
    let only = args.only.clone();
    let summary = runner::rebuild_only(
        log,
        &args.dir.data_dir.join("read-models"),
        usage::model::read_models,
        &|name, downstream| selected(&only, name, downstream),
        |done, _| bar.set_position(done.0),
    )
    .await;
    bar.finish_and_clear();
    store.close();
    let summary = match summary {
        Err(projections::ProjectionError::NothingSelected) => anyhow::bail!(
            "--only {} names no read-model table: use state, usage, or a table name such as identity, compute, usage_records, quota, alerts",
            args.only.join(",")
        ),
        other => other.context("rebuilding the read models")?,
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Rebuilt {} tables ({}) from {} events in {seconds:.2} s; every read model at position {}.",
        summary.tables.len(),
        summary.tables.join(", "),
        summary.events,
        summary.position.0
    );
    println!("digest {}", summary.digest);
    Ok(())
}

/// Prints the digest of the read models (caught up with the log first).
pub(crate) async fn digest(args: StateArgs) -> Result<()> {
    let store = open_log(&args.data_dir)?;
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let summary = runner::load_current(
        log,
        &args.data_dir.join("read-models"),
        usage::model::read_models,
    )
    .await
    .context("loading the read models")?;
    store.close();
    println!(
        "{} (read models at position {})",
        summary.digest, summary.position.0
    );
    Ok(())
}
