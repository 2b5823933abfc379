//! `ledgerstack import FILE.jsonl`: appends historical events, in the JSON Lines form of
//! `docs/events.md`, to the log of a stopped server.
//!
//! Each event keeps its `id`, `stream`, `type`, `data`, `occurred_at`, actor, level, state and
//! correlation and causation ids; the store assigns `position`, `version`, `recorded_at` and
//! `prev_hash` (read from the file only to check they are well formed). The whole file is
//! checked before anything is appended, so a bad line leaves the log as it was:
//!
//! - every line is an event of a known type whose `data` decodes;
//! - per stream, `occurred_at` never goes backwards within the file, nor before the last event
//!   of that stream already in the log, nor beyond what the store will stamp as recorded-at;
//! - every `account_id`, `domain_id`, `service_offering_id` and `disk_offering_id` in a payload
//!   names one that exists in the log or is created earlier in the file;
//! - an id already in the log must be the same event (it is then skipped: importing a file
//!   twice appends nothing the second time).
//!
//! The final `{"chain_head": ...}` line of a `ledgerstack export` is accepted and skipped
//! (`ledgerstack verify` is what checks it), and a zstd-compressed export (`export --zstd`) is
//! read as it is.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine::clock::{Clock, ManualClock, SystemClock};
use engine::event::{
    AccountEvent, Actor, ChainHash, DiskOfferingEvent, DomainEvent, EventBody, EventState,
    EventType, Level, NewEvent, Position, RecordedEvent, ServiceOfferingEvent, StreamId,
};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::{EventStore, ExpectedVersion, StoreError};
use engine::time::Timestamp;
use indicatif::{ProgressBar, ProgressStyle};
use projections::runner::{self, StartMode};
use serde::Deserialize;
use tracing::{debug, info};
use uuid::Uuid;

/// Events appended together at most (consecutive events of one stream share an append and so
/// an fsync).
const BATCH: usize = 1000;
/// Events read per call while scanning the log.
const SCAN_CHUNK: usize = 4096;
/// Problems reported before giving up on reading further.
const MAX_PROBLEMS: usize = 20;

/// Arguments of `ledgerstack import`.
#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// A JSON Lines file of events, one per line, as `docs/events.md` describes (an export,
    /// plain or zstd-compressed, is one).
    file: PathBuf,
    /// The data directory of a stopped server (the log is locked while one runs); created if
    /// absent (a restore: copy the source's master.key beside it before serving).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

/// One line of the file: the envelope members of `docs/events.md`. The members the store
/// assigns are optional and, when present, only checked for form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    id: Uuid,
    stream: StreamId,
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    occurred_at: Timestamp,
    actor: Actor,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    level: Level,
    state: EventState,
    schema: Option<u16>,
    #[serde(rename = "position")]
    _position: Option<Position>,
    #[serde(rename = "version")]
    _version: Option<u64>,
    recorded_at: Option<Timestamp>,
    #[serde(rename = "prev_hash")]
    _prev_hash: Option<ChainHash>,
}

/// An event of the file, decoded.
struct Line {
    /// 1-based line number in the file, for messages.
    number: usize,
    stream: StreamId,
    event: NewEvent,
    /// The ids the payload refers to, by kind.
    references: Vec<(Kind, Uuid)>,
    /// When the source log recorded it (an export carries it): kept when the whole log is
    /// restored into an empty one, see [`import`].
    recorded_at: Option<Timestamp>,
}

/// What a payload id refers to (by its JSON member name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Account,
    Domain,
    ServiceOffering,
    DiskOffering,
}

impl Kind {
    fn of_member(name: &str) -> Option<Kind> {
        match name {
            "account_id" => Some(Kind::Account),
            "domain_id" => Some(Kind::Domain),
            "service_offering_id" => Some(Kind::ServiceOffering),
            "disk_offering_id" => Some(Kind::DiskOffering),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Domain => "domain",
            Kind::ServiceOffering => "service offering",
            Kind::DiskOffering => "disk offering",
        }
    }
}

/// Problems found so far, each `line N: what is wrong`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, line: usize, what: impl std::fmt::Display) {
        self.0.push(format!("line {line}: {what}"));
    }

    fn full(&self) -> bool {
        self.0.len() >= MAX_PROBLEMS
    }

    /// Fails with every problem, one per line, or succeeds when there are none.
    fn check(&self, file: &Path) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let more = if self.full() {
            " (stopped looking)"
        } else {
            ""
        };
        bail!(
            "{}\n{} invalid line(s) in {}{more}: nothing was appended",
            self.0.join("\n"),
            self.0.len(),
            file.display()
        )
    }
}

/// Imports the file: parse, check against the log, append what is new.
pub(crate) async fn run(args: ImportArgs) -> Result<()> {
    let lines = parse_file(&args.file)?;
    info!(file = %args.file.display(), events = lines.len(), "file read");
    if !args.data_dir.exists() {
        // A restore into a new data directory.
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
    } else if !args.data_dir.is_dir() {
        bail!("{} is not a directory", args.data_dir.display());
    }
    // Recorded-at comes from this clock: the system's time, or the source's when restoring.
    let clock = ManualClock::new(Timestamp::EPOCH);
    let options = EmbeddedOptions {
        clock: Arc::new(clock.clone()),
        ..EmbeddedOptions::default()
    };
    let store = match EmbeddedStore::open(&args.data_dir, options) {
        Ok(store) => store,
        Err(StoreError::Locked { path }) => bail!(
            "the event log in {} is locked ({}): a ledgerstack server is running on this data directory; stop it before importing",
            args.data_dir.display(),
            path.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("opening the event log in {}", args.data_dir.display()));
        }
    };
    let result = import(&store, &clock, &args, lines).await;
    store.close();
    let summary = result?;
    println!(
        "Imported {}: {} appended, {} already present; the log is at position {}.",
        args.file.display(),
        summary.appended,
        summary.present,
        summary.head.0
    );
    Ok(())
}

/// What an import did.
struct Summary {
    appended: usize,
    present: usize,
    head: Position,
}

/// Checks the lines against the log and appends the new ones.
///
/// Into an empty log, a file whose every line carries `recorded_at` (an export) is a
/// **restore**: each event keeps the recorded-at of the source, so the restored log is the
/// source's, hash chain included, and its read models (which keep recorded-at, e.g. in usage
/// records) digest the same. Otherwise the store stamps recorded-at from the system clock.
async fn import(
    store: &EmbeddedStore,
    clock: &ManualClock,
    args: &ImportArgs,
    lines: Vec<Line>,
) -> Result<Summary> {
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let restore = log.head().await? == Position::START
        && !lines.is_empty()
        && lines.iter().all(|l| l.recorded_at.is_some());
    let known = known_ids(log.clone(), &args.data_dir).await?;
    let scan = scan_log(log.as_ref(), &lines).await?;
    let limit = SystemClock.now().max(scan.last_recorded_at);
    let is_new = validate(&lines, known, &scan, limit, &args.file)?;
    let total = is_new.iter().filter(|&&n| n).count();
    let present = lines.len() - total;
    info!(
        new = total,
        present, "file checked against the log; appending"
    );

    let bar = progress_bar(total as u64, "appending");
    let mut appended = 0usize;
    let mut pending = lines
        .into_iter()
        .zip(is_new)
        .filter_map(|(line, new)| new.then_some(line))
        .peekable();
    while let Some(line) = pending.next() {
        let stream = line.stream;
        let recorded_at = line.recorded_at.filter(|_| restore);
        clock.advance_to(recorded_at.unwrap_or_else(|| SystemClock.now()));
        let mut batch = vec![line.event];
        while batch.len() < BATCH
            && let Some(next) = pending
                .next_if(|l| l.stream == stream && (!restore || l.recorded_at == recorded_at))
        {
            batch.push(next.event);
        }
        let count = batch.len();
        log.append(&stream, ExpectedVersion::Any, batch)
            .await
            .with_context(|| {
                format!("appending to {stream} failed after {appended} events were appended")
            })?;
        appended += count;
        bar.inc(count as u64);
        debug!(%stream, events = count, "appended");
    }
    bar.finish_and_clear();
    let head = log.head().await?;
    info!(appended, present, head = head.0, restore, "import finished");
    Ok(Summary {
        appended,
        present,
        head,
    })
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads and decodes every line; fails listing the bad ones.
fn parse_file(path: &Path) -> Result<Vec<Line>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("opening {}", path.display()))?
        .len();
    // An export may be zstd-compressed (`export --zstd`); the bar then counts decompressed
    // bytes against the compressed size, so it only says that work goes on.
    let input = audit::open_export(path).with_context(|| format!("opening {}", path.display()))?;
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("reading [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut lines = Vec::new();
    let mut problems = Problems::default();
    let mut ids: HashMap<Uuid, usize> = HashMap::new();
    let mut trailer_line: Option<usize> = None;
    for (index, raw) in input.split(b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.with_context(|| format!("reading {}", path.display()))?;
        bar.inc(raw.len() as u64 + 1);
        let Ok(text) = std::str::from_utf8(&raw) else {
            problems.add(number, "not UTF-8");
            continue;
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            continue;
        }
        if let Some(trailer) = trailer_line {
            problems.add(
                number,
                format!("follows the final chain_head line of an export (line {trailer})"),
            );
        }
        // The last line of `ledgerstack export` states the chain head; it is no event.
        if audit::Trailer::looks_like(text) {
            if let Err(e) = audit::Trailer::parse(text) {
                problems.add(number, format!("not a valid chain_head line: {e}"));
            }
            trailer_line = Some(number);
            continue;
        }
        match parse_line(text) {
            Ok(line) => {
                if let Some(first) = ids.insert(line.event.id, number) {
                    problems.add(
                        number,
                        format!("event id {} already appears on line {first}", line.event.id),
                    );
                }
                lines.push(Line { number, ..line });
            }
            Err(what) => problems.add(number, what),
        }
        if problems.full() {
            break;
        }
    }
    bar.finish_and_clear();
    problems.check(path)?;
    Ok(lines)
}

/// Decodes one line (its number is filled in by the caller).
fn parse_line(text: &str) -> Result<Line, String> {
    let parsed: ImportLine =
        serde_json::from_str(text).map_err(|e| format!("not an event line: {e}"))?;
    let event_type = EventType::from_name(&parsed.event_type)
        .ok_or_else(|| format!("unknown event type {:?}", parsed.event_type))?;
    if let Some(schema) = parsed.schema
        && schema > event_type.schema()
    {
        return Err(format!(
            "{event_type} recorded at schema {schema}, newer than this build's {}: upgrade ledgerstack",
            event_type.schema()
        ));
    }
    let mut references = Vec::new();
    collect_references(&parsed.data, &mut references);
    let body = EventBody::from_data_json(event_type, parsed.data)
        .map_err(|e| format!("data of {event_type}: {e}"))?;
    let mut event = NewEvent::with_id(parsed.id, body)
        .occurred_at(parsed.occurred_at)
        .by(parsed.actor)
        .level(parsed.level)
        .state(parsed.state);
    event.correlation_id = parsed.correlation_id;
    event.causation_id = parsed.causation_id;
    Ok(Line {
        number: 0,
        stream: parsed.stream,
        event,
        references,
        recorded_at: parsed.recorded_at,
    })
}

/// Every id under a member named like a reference, at any depth of the payload.
fn collect_references(value: &serde_json::Value, out: &mut Vec<(Kind, Uuid)>) {
    match value {
        serde_json::Value::Object(members) => {
            for (name, member) in members {
                if let (Some(kind), Some(text)) = (Kind::of_member(name), member.as_str())
                    && let Ok(id) = Uuid::try_parse(text)
                {
                    out.push((kind, id));
                } else {
                    collect_references(member, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_references(item, out);
            }
        }
        _ => {}
    }
}

/// The accounts, domains and offerings that exist in the log, from its read models (caught up
/// first, exactly as `ledgerstack digest` does), and the built-in router offering.
async fn known_ids(log: Arc<dyn EventStore>, data_dir: &Path) -> Result<HashSet<(Kind, Uuid)>> {
    let (models, handle) = runner::start(
        log,
        &data_dir.join("read-models"),
        StartMode::Resume,
        usage::model::read_models,
    )
    .await
    .context("loading the read models")?;
    handle.stop().await;
    let state = models.read();
    let mut known = HashSet::new();
    known.extend(
        state
            .identity
            .accounts
            .iter()
            .map(|(id, _)| (Kind::Account, *id)),
    );
    known.extend(
        state
            .identity
            .domains
            .iter()
            .map(|(id, _)| (Kind::Domain, *id)),
    );
    known.extend(
        state
            .catalog
            .service_offerings
            .iter()
            .map(|(id, _)| (Kind::ServiceOffering, *id)),
    );
    // Routers run with a built-in system offering that no event creates.
    known.insert((
        Kind::ServiceOffering,
        api::network_implementation::ROUTER_OFFERING,
    ));
    known.extend(
        state
            .catalog
            .disk_offerings
            .iter()
            .map(|(id, _)| (Kind::DiskOffering, *id)),
    );
    Ok(known)
}

/// What the log holds that the file's events are checked against.
struct LogScan {
    /// The file's events already in the log, by id.
    stored: HashMap<Uuid, RecordedEvent>,
    /// Occurred-at of the last event in the log of each stream the file appends to.
    last_occurred: HashMap<StreamId, Timestamp>,
    /// Recorded-at of the log's last event: the store stamps nothing earlier.
    last_recorded_at: Timestamp,
}

/// Reads the whole log once, keeping what concerns the file's ids and streams.
async fn scan_log(log: &dyn EventStore, lines: &[Line]) -> Result<LogScan> {
    let ids: HashSet<Uuid> = lines.iter().map(|l| l.event.id).collect();
    let streams: HashSet<&StreamId> = lines.iter().map(|l| &l.stream).collect();
    let head = log.head().await?;
    let bar = progress_bar(head.0, "checking the log");
    let mut scan = LogScan {
        stored: HashMap::new(),
        last_occurred: HashMap::new(),
        last_recorded_at: Timestamp::EPOCH,
    };
    let mut from = Position::START.next();
    loop {
        let events = log
            .read_all(from, SCAN_CHUNK)
            .await
            .context("reading the log")?;
        let Some(last) = events.last() else { break };
        from = last.envelope.position.next();
        scan.last_recorded_at = last.envelope.recorded_at;
        bar.set_position(last.envelope.position.0);
        for event in events {
            let envelope = &event.envelope;
            if streams.contains(&envelope.stream) {
                scan.last_occurred
                    .insert(envelope.stream.clone(), envelope.occurred_at);
            }
            if ids.contains(&envelope.id) {
                scan.stored.insert(envelope.id, event);
            }
        }
    }
    bar.finish_and_clear();
    Ok(scan)
}

/// Whether `stored` is the event `line` proposes, as the store judges a repeated id.
fn same_event(stored: &RecordedEvent, line: &Line) -> bool {
    let (s, e) = (&stored.envelope, &line.event);
    s.stream == line.stream
        && *stored.body == e.body
        && Some(s.occurred_at) == e.occurred_at
        && s.actor == e.actor
        && s.correlation_id == e.correlation_id
        && s.causation_id == e.causation_id
        && s.level == e.level
        && s.state == e.state
}

/// The ids an event creates (before its own references are checked).
fn created_by(body: &EventBody) -> Option<(Kind, Uuid)> {
    match body {
        EventBody::Account(AccountEvent::Create(e)) => Some((Kind::Account, e.account.account_id)),
        EventBody::Domain(DomainEvent::Create(e)) => Some((Kind::Domain, e.domain.domain_id)),
        EventBody::ServiceOffering(ServiceOfferingEvent::Create(e)) => {
            Some((Kind::ServiceOffering, e.offering.service_offering_id))
        }
        EventBody::DiskOffering(DiskOfferingEvent::Create(e)) => {
            Some((Kind::DiskOffering, e.offering.disk_offering_id))
        }
        _ => None,
    }
}

/// Checks every line; returns, for each, whether it is new (to append) rather than already
/// in the log.
fn validate(
    lines: &[Line],
    mut known: HashSet<(Kind, Uuid)>,
    scan: &LogScan,
    limit: Timestamp,
    file: &Path,
) -> Result<Vec<bool>> {
    let mut problems = Problems::default();
    let mut new = vec![false; lines.len()];
    let mut last_in_file: HashMap<&StreamId, (Timestamp, usize)> = HashMap::new();
    for (index, line) in lines.iter().enumerate() {
        let n = line.number;
        let at = line.event.occurred_at.unwrap_or(Timestamp::EPOCH);
        if let Some(&(previous, previous_line)) = last_in_file.get(&line.stream)
            && at < previous
        {
            problems.add(
                n,
                format!(
                    "occurred_at {at} is before {previous}, the time of the event of {} on line {previous_line}",
                    line.stream
                ),
            );
        }
        last_in_file.insert(&line.stream, (at, n));
        if let Some(created) = created_by(&line.event.body) {
            known.insert(created);
        }
        match scan.stored.get(&line.event.id) {
            Some(stored) if same_event(stored, line) => continue,
            Some(stored) => {
                problems.add(
                    n,
                    format!(
                        "event {} is already in the log at position {} with different content",
                        line.event.id, stored.envelope.position
                    ),
                );
                continue;
            }
            None => {}
        }
        if let Some(&last) = scan.last_occurred.get(&line.stream)
            && at < last
        {
            problems.add(
                n,
                format!(
                    "occurred_at {at} is before {last}, the time of the last event of {} already in the log",
                    line.stream
                ),
            );
        }
        if at > limit {
            problems.add(
                n,
                format!("occurred_at {at} is in the future (the log's clock reads {limit})"),
            );
        }
        for &(kind, id) in &line.references {
            if !known.contains(&(kind, id)) {
                problems.add(
                    n,
                    format!(
                        "unknown {} {id}: not in the log, nor created earlier in the file",
                        kind.name()
                    ),
                );
            }
        }
        new[index] = true;
        if problems.full() {
            break;
        }
    }
    problems.check(file)?;
    Ok(new)
}
