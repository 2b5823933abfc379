//! `ledgerstack serve`: opens the embedded log (recovering it if the last run crashed) and
//! keeps it open until interrupted. The CloudStack API is served from here once it lands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::clock::SystemClock;
use engine::store::EventStore;
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use tracing::info;

/// Arguments of `ledgerstack serve`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Where the event log and its index live (created if missing).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let data_dir = args.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(
            &data_dir,
            EmbeddedOptions {
                clock: Arc::new(SystemClock),
                ..EmbeddedOptions::default()
            },
        )
    })
    .await?
    .with_context(|| format!("opening the event log in {}", args.data_dir.display()))?;
    let head = store.head().await?;
    info!(data_dir = %args.data_dir.display(), events = head.0, "event log open");
    println!(
        "Ledgerstack is running on {} ({} events in the log). Press Ctrl-C to stop.",
        args.data_dir.display(),
        head.0
    );

    shutdown_signal().await?;
    info!("shutting down");
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    println!(
        "Stopped. {} events in the log, {} appended in this run.",
        store.head().await.map(|p| p.0).unwrap_or(head.0),
        store
            .stats()
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
