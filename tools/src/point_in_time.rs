//! `ledgerstack replay --at` and `ledgerstack state --at`: the read models as they were at a
//! moment of the past, summed up or answered in the API's own JSON (`docs/auditors.md`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use audit::{At, Moment, ReplaySummary};
use engine::secrets::MasterKeys;
use engine::time::Timestamp;
use indicatif::{ProgressBar, ProgressStyle};
use projections::State;

/// Which moment: shared by `replay` and `state`.
#[derive(clap::Args)]
pub(crate) struct MomentArgs {
    /// The data directory (its segment files are only read: the server may be running).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// The moment: an RFC 3339 time (events that occurred by then) or a log position (events
    /// up to it) [default: the whole log].
    #[arg(long)]
    at: Option<At>,
    /// Only what the log had recorded by this RFC 3339 time: the answer before a later
    /// backfill or correction was imported.
    #[arg(long, value_name = "TIME")]
    as_known_at: Option<Timestamp>,
}

impl MomentArgs {
    fn moment(&self) -> Moment {
        Moment {
            at: self.at,
            known_at: self.as_known_at,
        }
    }
}

/// Arguments of `ledgerstack replay`.
#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    moment: MomentArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ledgerstack state`.
#[derive(clap::Args)]
pub(crate) struct StateArgs {
    #[command(flatten)]
    moment: MomentArgs,
    /// What to list: vms, volumes, ips, accounts, users, domains, networks, events, jobs,
    /// snapshots, templates, isos, hosts, zones, routers, vpcs, firewall, portforwarding,
    /// loadbalancers, securitygroups, alerts; or any list command's name (listUsageRecords,
    /// quotaBalance, ...).
    kind: String,
    /// The command's parameters as key=value (account=alice, state=Running, type=VM.START,
    /// ...), as the API takes them.
    params: Vec<String>,
    /// Print a table instead of the API's JSON.
    #[arg(long)]
    table: bool,
}

/// Replays the log to the moment with a progress bar.
fn replay_to(moment: &MomentArgs) -> Result<(State, ReplaySummary)> {
    if !moment.data_dir.join("log").is_dir() {
        bail!(
            "no event log in {} (no log/ directory)",
            moment.data_dir.display()
        );
    }
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "replaying [{bar:40}] {bytes}/{total_bytes} of the log ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    let result = audit::point_in_time::replay(
        &moment.data_dir,
        moment.moment(),
        usage::model::read_models,
        &mut |read, total| {
            bar.set_length(total);
            bar.set_position(read);
        },
    );
    bar.finish_and_clear();
    result.with_context(|| format!("replaying the log of {}", moment.data_dir.display()))
}

/// Runs `ledgerstack replay`: prints what the read models held at the moment, and their digest.
pub(crate) async fn replay(args: ReplayArgs) -> Result<()> {
    let started = Instant::now();
    let moment = args.moment.moment();
    let json = args.json;
    let (mut state, summary) = tokio::task::spawn_blocking(move || replay_to(&args.moment))
        .await
        .context("the replay task failed")??;
    let digest = state.digest().context("hashing the read models")?;
    let counts = counts(&state);
    if json {
        let mut out = serde_json::json!({
            "at": moment.at.map(|a| a.to_string()),
            "as_known_at": moment.known_at.map(|t| t.to_string()),
            "applied": summary.applied,
            "skipped": summary.skipped,
            "last_applied_position": summary.last_applied,
            "last_read_position": summary.last_read,
            "digest": digest,
        });
        for (name, count) in &counts {
            out["counts"][*name] = (*count).into();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let at = moment
        .at
        .map_or_else(|| "the end of the log".to_owned(), |a| a.to_string());
    let known = moment
        .known_at
        .map_or_else(String::new, |t| format!(", as known at {t}"));
    println!(
        "Replayed to {at}{known}: applied {} events (last position {}), left out {} later ones, in {:.1?}.",
        summary.applied,
        summary.last_applied,
        summary.skipped,
        started.elapsed()
    );
    for (name, count) in &counts {
        println!("  {name:16} {count}");
    }
    println!("digest {digest}");
    Ok(())
}

/// Rows of the read models an operator recognises, for the replay summary.
fn counts(state: &State) -> Vec<(&'static str, usize)> {
    let mut counts = vec![
        ("domains", state.identity.domains.len()),
        ("accounts", state.identity.accounts.len()),
        ("users", state.identity.users.len()),
        ("vms", state.compute.vms.len()),
        ("volumes", state.storage.volumes.len()),
        ("networks", state.compute.networks.len()),
        ("public ips", state.network.public_ips.len()),
        ("async jobs", state.jobs.jobs.len()),
    ];
    if let Some(usage) = usage::model::of(state) {
        counts.push(("quota accounts", usage.quota.accounts.len()));
    }
    counts
}

/// Runs `ledgerstack state`: the API's answer at the moment, as JSON (or a table).
pub(crate) async fn state(args: StateArgs) -> Result<()> {
    // Refuse an unknown kind before reading the whole log.
    api::historical::resolve_kind(&args.kind).map_err(|e| anyhow::anyhow!("{}", e.text))?;
    let params = args
        .params
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{pair:?} is not key=value"))
        })
        .collect::<Result<Vec<_>>>()?;
    let keys = open_keys(&args.moment.data_dir)?;
    let moment = args.moment.moment();
    let data_dir = args.moment.data_dir.clone();
    let (state, summary) = tokio::task::spawn_blocking(move || replay_to(&args.moment))
        .await
        .context("the replay task failed")??;
    let now = moment
        .now(summary.last_recorded)
        .unwrap_or_else(|| Timestamp::from_millis(0));
    let rendered = api::historical::answer(state, now, keys, &args.kind, &params)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{} ({}) answering from the log of {}",
                e.text,
                e.code,
                data_dir.display()
            )
        })?;
    let response: serde_json::Value =
        serde_json::from_str(&rendered).context("reading back the rendered answer")?;
    if args.table {
        let inner = response
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or_default();
        print!("{}", client::output::render(&inner, None));
    } else {
        println!("{}", serde_json::to_string_pretty(&response)?);
    }
    Ok(())
}

/// The master keys of the data directory, read-only: a list may show the root admin a secret
/// (a VPN's pre-shared key). An auditor's copy without `master.key` is answered all the same,
/// with such secrets left out.
fn open_keys(data_dir: &Path) -> Result<MasterKeys> {
    if !data_dir.join("master.key").exists() {
        eprintln!(
            "note: {} has no master.key; sealed secrets (VPN pre-shared keys) are left out of the answer",
            data_dir.display()
        );
        return Ok(MasterKeys::ephemeral());
    }
    MasterKeys::open(data_dir)
        .with_context(|| format!("reading the master key of {}", data_dir.display()))
}
