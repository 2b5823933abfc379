//! `ledgerstack usage export`: the usage records of a stopped server's data directory as CSV or
//! JSON Lines (`usage::export`; the columns are documented in docs/usage.md, "Exports").

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::{EventStore, StoreError};
use projections::runner::{self, StartMode};
use tracing::info;
use usage::export::{Bound, ExportFormat, date_bound, write_views};
use usage::view::{DomainFilter, RecordQuery};
use uuid::Uuid;

/// `ledgerstack usage ...`.
#[derive(clap::Subcommand)]
pub(crate) enum UsageCommand {
    /// Write the published usage records of a stopped server as CSV or JSON Lines.
    Export(ExportArgs),
}

/// Arguments of `ledgerstack usage export`.
#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Records whose period starts at or after this: a day (yyyy-MM-dd, in the global
    /// aggregation time zone) or an RFC 3339 time.
    #[arg(long)]
    from: String,
    /// Records whose period's last second is at or before this: a day (its last second) or an
    /// RFC 3339 time. `--from D --to D` gives day D's daily records.
    #[arg(long)]
    to: String,
    /// Only this account's records: its id, or its name (with --domain-id if several domains
    /// have an account by that name).
    #[arg(long)]
    account: Option<String>,
    /// Only the records of this domain's accounts.
    #[arg(long)]
    domain_id: Option<Uuid>,
    /// With --domain-id: its subdomains' accounts too.
    #[arg(long)]
    recursive: bool,
    /// `csv` (a header row, then one row per record) or `jsonl` (one object per line).
    #[arg(long, value_parser = parse_format)]
    format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The data directory of a stopped server (the log is locked while one runs).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

fn parse_format(text: &str) -> Result<ExportFormat, String> {
    text.parse()
        .map_err(|e: usage::export::UnknownFormat| e.to_string())
}

/// Runs a `usage` subcommand.
pub(crate) async fn run(which: UsageCommand) -> Result<()> {
    match which {
        UsageCommand::Export(args) => export(args).await,
    }
}

async fn export(args: ExportArgs) -> Result<()> {
    if !args.data_dir.is_dir() {
        bail!("no data directory at {}", args.data_dir.display());
    }
    let store = match EmbeddedStore::open(&args.data_dir, EmbeddedOptions::default()) {
        Ok(store) => store,
        Err(StoreError::Locked { path }) => bail!(
            "the event log in {} is locked ({}): a ledgerstack server is running on this data directory; stop it, or download the export from the server at /client/usage/export",
            args.data_dir.display(),
            path.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("opening the event log in {}", args.data_dir.display()));
        }
    };
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let loaded = runner::start(
        log,
        &args.data_dir.join("read-models"),
        StartMode::Resume,
        usage::model::read_models,
    )
    .await;
    let result = match loaded {
        Ok((models, handle)) => {
            handle.stop().await;
            let state = models.read();
            write_export(&args, &state)
        }
        Err(e) => Err(e).context("loading the read models"),
    };
    store.close();
    let (count, position) = result?;
    let target = args
        .output
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    info!(records = count, position = position, "exported");
    eprintln!("Exported {count} usage records to {target} (read models at position {position}).");
    Ok(())
}

/// Selects the records and writes them; returns how many, and the log position they reflect.
fn write_export(args: &ExportArgs, state: &projections::State) -> Result<(usize, u64)> {
    let Some(usage) = usage::model::of(state) else {
        bail!("the usage read model is not loaded");
    };
    let zone = api::commands::usage::aggregation_zone(state);
    let start = date_bound(&args.from, zone, Bound::From).context("--from")?;
    let end = date_bound(&args.to, zone, Bound::To).context("--to")?;
    if start > end {
        bail!("--from ({start}) is after --to ({end})");
    }
    if args.recursive && args.domain_id.is_none() {
        bail!("--recursive needs --domain-id");
    }
    if let Some(domain) = args.domain_id
        && state.identity.domains.get(&domain).is_none()
    {
        bail!("no domain {domain}");
    }
    let account_id = match args.account.as_deref() {
        None => None,
        Some(text) => Some(account_id(state, text, args.domain_id)?),
    };
    let query = RecordQuery {
        account_id,
        domain: args.domain_id.map(|domain_id| DomainFilter {
            domain_id,
            recursive: args.recursive,
        }),
        ..RecordQuery::between(start, end)
    };
    let (_, views) = usage::view::query(state, usage, &query);
    let count = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_views(args.format, &views, file)
                .with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let stdout = std::io::stdout().lock();
            let count =
                write_views(args.format, &views, stdout).context("writing standard output")?;
            std::io::stdout()
                .flush()
                .context("writing standard output")?;
            count
        }
    };
    Ok((count, state.position.0))
}

/// The account `text` names: an id (also of a deleted account, whose records stay), or a name
/// in `domain` or, without one, in the only domain that has an account by that name.
fn account_id(state: &projections::State, text: &str, domain: Option<Uuid>) -> Result<Uuid> {
    if let Ok(id) = Uuid::try_parse(text.trim()) {
        return Ok(id);
    }
    if let Some(domain) = domain {
        return state
            .identity
            .account_by_name(domain, text)
            .map(|row| row.facts.account_id)
            .with_context(|| format!("no account {text:?} in domain {domain}"));
    }
    let matches: Vec<Uuid> = state
        .identity
        .accounts
        .values()
        .filter(|row| row.facts.name.eq_ignore_ascii_case(text))
        .map(|row| row.facts.account_id)
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no account {text:?}"),
        _ => bail!(
            "{} domains have an account {text:?}: give --domain-id",
            matches.len()
        ),
    }
}
