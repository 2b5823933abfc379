//! `ledgerstack backup` and `ledgerstack restore`: arguments, progress bars and summary lines
//! over `audit::backup` (docs/operators.md, "Backups").

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use audit::backup::{Manifest, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// The backup subcommands (flattened into the top level).
#[derive(clap::Subcommand)]
pub(crate) enum BackupCommand {
    /// Copy a consistent, checked prefix of the log with master.key and admin-credentials.json
    /// and a manifest into DIR (new or empty); reads the segment files only, so the server may
    /// be running.
    Backup(BackupArgs),
    /// Check a backup against its manifest and copy it into a new data directory; the next
    /// `ledgerstack serve` on it rebuilds the read models from the log.
    Restore(RestoreArgs),
}

/// Arguments of `ledgerstack backup`.
#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    /// Where to write the backup: a directory that does not exist yet, or is empty.
    dir: PathBuf,
    /// The data directory to back up (the server on it may keep running).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Leave master.key out, for operators who keep the key's backups apart from the log's.
    #[arg(long)]
    without_master_key: bool,
}

/// Arguments of `ledgerstack restore`.
#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// A directory `ledgerstack backup` wrote.
    backup: PathBuf,
    /// The data directory to restore into: new, or without a log, read models or keys.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Runs a backup subcommand.
pub(crate) async fn run(command: BackupCommand) -> Result<()> {
    // Both read and write files synchronously from start to end: keep them off the async workers.
    let task = tokio::task::spawn_blocking(move || match command {
        BackupCommand::Backup(args) => backup(args),
        BackupCommand::Restore(args) => restore(args),
    });
    task.await.context("the backup or restore task failed")?
}

/// One bar on stderr that shows bytes while files are copied or hashed and a count while the
/// log is checked; hidden when stderr is not a terminal.
struct Bar {
    bar: ProgressBar,
    /// Whether the bar shows events (rather than bytes) now.
    counting_events: bool,
}

impl Bar {
    fn new(verb: &str) -> Bar {
        let bar = if io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(style(&format!(
            "{verb} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}})"
        )));
        Bar {
            bar,
            counting_events: false,
        }
    }

    fn update(&mut self, progress: Progress) {
        match progress {
            Progress::Bytes { done, total } => {
                self.bar.set_length(total);
                self.bar.set_position(done);
            }
            Progress::Events(events) => {
                if !self.counting_events {
                    self.counting_events = true;
                    self.bar.set_style(style(
                        "{spinner} checking CRCs and the hash chain: {pos} events ({per_sec})",
                    ));
                }
                self.bar.set_position(events);
            }
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// "N events (positions 1..P, chain head H)".
fn describe(manifest: &Manifest) -> String {
    let range = if manifest.events == 0 {
        "an empty log".to_owned()
    } else {
        format!(
            "positions {}..{}",
            manifest.head_position + 1 - manifest.events,
            manifest.head_position
        )
    };
    format!(
        "{} events ({range}, chain head {})",
        manifest.events, manifest.chain_head
    )
}

fn backup(args: BackupArgs) -> Result<()> {
    let mut bar = Bar::new("copying");
    let started = Instant::now();
    let result = audit::backup(
        &args.data_dir,
        &args.dir,
        !args.without_master_key,
        &mut |p| bar.update(p),
    );
    bar.bar.finish_and_clear();
    let summary = result.with_context(|| {
        format!(
            "backing up {} into {} (the destination was left as it was)",
            args.data_dir.display(),
            args.dir.display()
        )
    })?;
    let m = &summary.manifest;
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    let names: Vec<&str> = m
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| !p.starts_with("log/"))
        .collect();
    println!(
        "Backed up {} of {} into {}: {} files, {bytes} bytes ({}), verified and synced in {:.1?}; manifest {}.",
        describe(m),
        args.data_dir.display(),
        args.dir.display(),
        m.files.len(),
        if names.is_empty() {
            "the log only".to_owned()
        } else {
            format!("the log, {}", names.join(", "))
        },
        started.elapsed(),
        args.dir.join(audit::backup::MANIFEST_FILE).display()
    );
    if summary.left_out > 0 {
        println!(
            "Left out {} bytes at the end of the log that the server had not committed when they were read.",
            summary.left_out
        );
    }
    if !summary.has_master_key {
        println!(
            "The backup holds no master.key: keep the data directory's master.key backed up apart; without it the sealed API secret keys in this log cannot be opened."
        );
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> Result<()> {
    let mut bar = Bar::new("checking");
    let started = Instant::now();
    let result = audit::restore(&args.backup, &args.data_dir, &mut |p| bar.update(p));
    bar.bar.finish_and_clear();
    let summary = result.with_context(|| {
        format!(
            "restoring {} into {} (nothing was restored)",
            args.backup.display(),
            args.data_dir.display()
        )
    })?;
    println!(
        "Restored {} from {} into {}, checked against its manifest (sizes, SHA-256, record CRCs, hash chain) in {:.1?}. Start it with `ledgerstack serve --data-dir {}`: it rebuilds the read models from the log.",
        describe(&summary.manifest),
        args.backup.display(),
        args.data_dir.display(),
        started.elapsed(),
        args.data_dir.display()
    );
    if !summary.has_master_key {
        println!(
            "The backup holds no master.key: copy the master.key of the original data directory (from your key backup) into {} before starting, or the API keys of its users will not authenticate.",
            args.data_dir.display()
        );
    }
    Ok(())
}
