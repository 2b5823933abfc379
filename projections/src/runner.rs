//! The projection runner: loads the read models from their store, catches up with the log from
//! the checkpoint, then follows live appends; publishes how far it has applied so the API can
//! read its own writes (DESIGN.md invariant 7).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use engine::event::{Position, RecordedEvent};
use engine::store::EventStore;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ProjectionError;
use crate::catalog::Catalog;
use crate::compute::Compute;
use crate::configuration::Configuration;
use crate::event_history::EventHistory;
use crate::identity::Identity;
use crate::infrastructure::Infrastructure;
use crate::jobs::Jobs;
use crate::network::Network;
use crate::orchestration::Orchestration;
use crate::storage::Storage;
use crate::table::{PersistedTable, Table};

/// Bumped whenever a row type or an `apply` changes meaning: a store written by another
/// version is rebuilt from the log rather than trusted.
const MODEL_VERSION: &str = "ledgerstack-read-models-6";
const VERSION_KEY: &[u8] = b"\0model-version";
const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
/// Persist at least this often during a long catch-up, so a crash mid-rebuild loses little.
const PERSIST_EVERY: usize = 10_000;

/// A read model that lives in a crate above this one (the usage server), folded in the same
/// pass as the read models here and right after them, so that it reads them at exactly the
/// position it is applying: the fold stays deterministic (DESIGN.md invariant 2) and its rows
/// are persisted, checkpointed and digested with everyone else's.
pub trait DownstreamModel: Send + Sync + std::fmt::Debug {
    /// Changes whenever the model's rows or fold change meaning: a store written with another
    /// version is rebuilt from the log.
    fn version(&self) -> &'static str;
    /// Folds one event; `upstream` holds every read model of this crate, already at `event`.
    fn apply(&mut self, event: &RecordedEvent, upstream: &State);
    /// The model's tables, in a fixed order.
    fn tables(&mut self) -> Vec<&mut dyn PersistedTable>;
    /// For [`State::downstream`].
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Makes the downstream models of fresh read models (`usage::read_models` for the server;
/// [`no_downstream`] where only this crate's models matter).
pub type DownstreamFactory = fn() -> Vec<Box<dyn DownstreamModel>>;

/// No downstream models.
pub fn no_downstream() -> Vec<Box<dyn DownstreamModel>> {
    Vec::new()
}

/// Every read model, as of one log position.
#[derive(Debug)]
pub struct State {
    /// Domains, accounts, users, keys.
    pub identity: Identity,
    /// Async jobs.
    pub jobs: Jobs,
    /// `listEvents`.
    pub events: EventHistory,
    /// Settings.
    pub configuration: Configuration,
    /// Zones and offerings.
    pub catalog: Catalog,
    /// Pods, clusters, hosts.
    pub infrastructure: Infrastructure,
    /// VMs, NICs, guest networks, key pairs, tags, limits.
    pub compute: Compute,
    /// Volumes, snapshots, VM snapshots, templates, ISOs.
    pub storage: Storage,
    /// Offerings, public IPs, rules, load balancers, VPNs, security groups, VPCs, routers.
    pub network: Network,
    /// Driver commands awaiting their result.
    pub orchestration: Orchestration,
    /// Versions of the singleton streams (`identity`, `catalog`, ...) whose invariants command
    /// decisions check: a decision appends with the version its state was read at
    /// (DESIGN.md invariant 8).
    stream_versions: Table<String, u64>,
    /// Read models of the crates above (usage), applied after these.
    downstream: Vec<Box<dyn DownstreamModel>>,
    /// The last position applied.
    pub position: Position,
}

impl Default for State {
    fn default() -> Self {
        State {
            identity: Identity::default(),
            jobs: Jobs::default(),
            events: EventHistory::default(),
            configuration: Configuration::default(),
            catalog: Catalog::default(),
            infrastructure: Infrastructure::default(),
            compute: Compute::default(),
            storage: Storage::default(),
            network: Network::default(),
            orchestration: Orchestration::default(),
            stream_versions: Table::new("stream_versions"),
            downstream: Vec::new(),
            position: Position(0),
        }
    }
}

impl State {
    /// Fresh read models with the downstream models `factory` makes.
    pub fn with_downstream(factory: DownstreamFactory) -> Self {
        State {
            downstream: factory(),
            ..State::default()
        }
    }

    /// The downstream model of type `T`, if this state has one.
    pub fn downstream<T: 'static>(&self) -> Option<&T> {
        self.downstream
            .iter()
            .find_map(|model| model.as_any().downcast_ref::<T>())
    }

    /// The stored-format version: this crate's and every downstream model's.
    fn version(&self) -> String {
        let mut version = MODEL_VERSION.to_owned();
        for model in &self.downstream {
            version.push('+');
            version.push_str(model.version());
        }
        version
    }

    fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        self.tables_by_origin()
            .into_iter()
            .map(|(table, _)| table)
            .collect()
    }

    /// Every table in a fixed order, this crate's first, each with whether it belongs to a
    /// downstream model (`rebuild --only` picks tables by both).
    fn tables_by_origin(&mut self) -> Vec<(&mut dyn PersistedTable, bool)> {
        let mut upstream: Vec<&mut dyn PersistedTable> = Vec::new();
        upstream.extend(self.identity.tables());
        upstream.extend(self.jobs.tables());
        upstream.extend(self.events.tables());
        upstream.extend(self.configuration.tables());
        upstream.extend(self.catalog.tables());
        upstream.extend(self.infrastructure.tables());
        upstream.extend(self.compute.tables());
        upstream.extend(self.storage.tables());
        upstream.extend(self.network.tables());
        upstream.extend(self.orchestration.tables());
        upstream.push(&mut self.stream_versions);
        let mut tables: Vec<(&mut dyn PersistedTable, bool)> =
            upstream.into_iter().map(|table| (table, false)).collect();
        for model in &mut self.downstream {
            tables.extend(model.tables().into_iter().map(|table| (table, true)));
        }
        tables
    }

    /// Folds one event into every read model. The runner applies the whole log in order; a
    /// point-in-time replay (`ledgerstack state --at`) applies the events of the log that had
    /// happened by a moment, still in log order.
    pub fn apply(&mut self, event: &RecordedEvent) {
        self.events.apply(event, &self.identity);
        self.identity.apply(event);
        self.jobs.apply(event);
        self.configuration.apply(event);
        self.catalog.apply(event);
        self.infrastructure.apply(event);
        self.compute.apply(event, &self.orchestration);
        self.storage.apply(event, &self.orchestration);
        let is_result = self.orchestration.answers(event);
        self.network.apply(event, is_result);
        self.orchestration
            .apply(event, &self.compute, &self.storage, &self.network);
        if event.envelope.stream.id().is_none() {
            self.stream_versions
                .insert(event.envelope.stream.to_string(), event.envelope.version);
        }
        let mut downstream = std::mem::take(&mut self.downstream);
        for model in &mut downstream {
            model.apply(event, self);
        }
        self.downstream = downstream;
        self.position = event.envelope.position;
    }

    /// SHA-256 (hex) of every read model, table by table in a fixed order and row by row in
    /// key order: equal for equal logs, whatever the history of the store (rebuilt, resumed,
    /// another node).
    pub fn digest(&mut self) -> Result<String, ProjectionError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.version().as_bytes());
        hasher.update(self.position.0.to_be_bytes());
        for table in self.tables() {
            table.digest(&mut hasher)?;
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Version of a singleton stream as applied here (0 before its first event).
    pub fn stream_version(&self, stream: &str) -> u64 {
        self.stream_versions
            .get(&stream.to_owned())
            .copied()
            .unwrap_or(0)
    }
}

/// The read models, shared by the runner (which writes) and the API (which reads).
pub struct ReadModels {
    state: RwLock<State>,
    applied: watch::Receiver<Position>,
}

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModels")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl ReadModels {
    /// Read models that never move: `state` as it is, shared with handlers that answer from a
    /// past moment of the log (the offline API of `ledgerstack state`). Waiting for a later
    /// position fails with [`ProjectionError::Stopped`], as nothing will ever be applied.
    pub fn frozen(state: State) -> Arc<ReadModels> {
        let (_, applied) = watch::channel(state.position);
        Arc::new(ReadModels {
            state: RwLock::new(state),
            applied,
        })
    }

    /// The read models as they are now. Hold the guard briefly: the runner waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last position applied.
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    /// Resolves once every event up to `position` has been applied (read your writes).
    pub async fn wait_for(&self, position: Position) -> Result<(), ProjectionError> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|p| *p >= position)
            .await
            .map(|_| ())
            .map_err(|_| ProjectionError::Stopped)
    }
}

impl ReadModels {
    /// Resolves once `condition` holds on the read models (checked after every applied
    /// batch): how a job waits for its driver command's result.
    pub async fn wait_until(
        &self,
        condition: impl Fn(&State) -> bool,
    ) -> Result<(), ProjectionError> {
        let mut applied = self.applied.clone();
        loop {
            applied.borrow_and_update();
            if condition(&self.read()) {
                return Ok(());
            }
            applied
                .changed()
                .await
                .map_err(|_| ProjectionError::Stopped)?;
        }
    }

    /// A receiver that wakes whenever more of the log has been applied.
    pub fn changes(&self) -> watch::Receiver<Position> {
        self.applied.clone()
    }
}

/// Stops the runner's live tail and flushes the read-model store.
pub struct RunnerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    /// Stops following the log, persists what was applied, and waits for that to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Whether to trust the stored read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Resume from the stored checkpoint (rebuilding only if the store is unusable).
    Resume,
    /// Drop the stored read models and rebuild them from the start of the log.
    Rebuild,
}

/// Opens the read-model store in `dir`, catches up with `store` (so the first request sees
/// everything the log held at start), then follows it in a background task.
pub async fn start(
    store: Arc<dyn EventStore>,
    dir: &Path,
    mode: StartMode,
    downstream: DownstreamFactory,
) -> Result<(Arc<ReadModels>, RunnerHandle), ProjectionError> {
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("read-models")?;
    let head = store.head().await?;
    let mut state = State::with_downstream(downstream);
    let checkpoint = match load(&tree, &mut state, head, mode) {
        Ok(checkpoint) => checkpoint,
        Err(reason) => {
            if tree.is_empty() {
                info!("building the read models from the log");
            } else {
                warn!(%reason, "rebuilding the read models from the log");
            }
            state = State::with_downstream(downstream);
            tree.clear()?;
            tree.insert(VERSION_KEY, state.version().as_bytes())?;
            Position(0)
        }
    };
    let mut events = store.subscribe(checkpoint.next());
    let started = std::time::Instant::now();
    let caught_up =
        apply_until(&mut state, &mut events, head, |state| persist(&tree, state)).await?;
    persist(&tree, &mut state)?;
    info!(
        from = checkpoint.0,
        to = state.position.0,
        events = caught_up,
        millis = started.elapsed().as_millis() as u64,
        "read models caught up"
    );
    let (applied_tx, applied_rx) = watch::channel(state.position);
    let models = Arc::new(ReadModels {
        state: RwLock::new(state),
        applied: applied_rx,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(follow(
        models.clone(),
        events,
        db,
        tree,
        applied_tx,
        stop_rx,
    ));
    Ok((
        models,
        RunnerHandle {
            stop: Some(stop_tx),
            task,
        },
    ))
}

/// What an offline [`rebuild`] or [`load_current`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events applied.
    pub events: u64,
    /// The log position the read models are at.
    pub position: Position,
    /// [`State::digest`] of the result.
    pub digest: String,
}

/// Drops the read models stored in `dir` and rebuilds them from the whole log (the server must
/// be stopped: sled locks `dir`), calling `progress(applied, head)` as it goes.
pub async fn rebuild(
    store: Arc<dyn EventStore>,
    dir: &Path,
    downstream: DownstreamFactory,
    mut progress: impl FnMut(Position, Position),
) -> Result<Summary, ProjectionError> {
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("read-models")?;
    let mut state = State::with_downstream(downstream);
    tree.clear()?;
    tree.insert(VERSION_KEY, state.version().as_bytes())?;
    let head = store.head().await?;
    let mut events = store.subscribe(Position(0).next());
    let applied = apply_until(&mut state, &mut events, head, |state| {
        persist(&tree, state)?;
        progress(state.position, head);
        Ok(())
    })
    .await?;
    persist(&tree, &mut state)?;
    progress(state.position, head);
    db.flush_async().await?;
    Ok(Summary {
        events: applied,
        position: state.position,
        digest: state.digest()?,
    })
}

/// Which tables a partial rebuild rewrote, and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSummary {
    /// The tables dropped and rebuilt, by name.
    pub tables: Vec<&'static str>,
    /// Events replayed to rebuild them.
    pub events: u64,
    /// The log position every read model is at afterwards.
    pub position: Position,
    /// [`State::digest`] of the stored read models afterwards (equal to a full rebuild's).
    pub digest: String,
}

/// Drops the tables `select` picks (by name, and whether a downstream model owns them) from
/// the store in `dir` and rebuilds them from the whole log, leaving the others as stored; the
/// server must be stopped. The other tables are first brought to the log's head so every
/// table ends at the same checkpoint (DESIGN.md invariant 4). Fails with
/// [`ProjectionError::NothingSelected`] when `select` picks no table.
pub async fn rebuild_only(
    store: Arc<dyn EventStore>,
    dir: &Path,
    downstream: DownstreamFactory,
    select: &dyn Fn(&str, bool) -> bool,
    mut progress: impl FnMut(Position, Position),
) -> Result<PartialSummary, ProjectionError> {
    let mut fresh = State::with_downstream(downstream);
    let tables: Vec<&'static str> = fresh
        .tables_by_origin()
        .into_iter()
        .filter(|(table, downstream)| select(table.name(), *downstream))
        .map(|(table, _)| table.name())
        .collect();
    if tables.is_empty() {
        return Err(ProjectionError::NothingSelected);
    }
    // Everything caught up first: the rebuilt tables are written at this position.
    let caught_up = load_current(store.clone(), dir, downstream).await?;
    let head = caught_up.position;
    let mut events = store.subscribe(Position(0).next());
    let applied = apply_until(&mut fresh, &mut events, head, |state| {
        progress(state.position, head);
        Ok(())
    })
    .await?;
    drop(events);
    progress(fresh.position, head);
    {
        let db = sled::Config::new().path(dir).open()?;
        let tree = db.open_tree("read-models")?;
        let mut batch = sled::Batch::default();
        for (table, _) in fresh.tables_by_origin() {
            if tables.contains(&table.name()) {
                table.erase_stored(&tree, &mut batch)?;
                table.drain_dirty(&mut batch)?;
            }
        }
        tree.apply_batch(batch)?;
        db.flush_async().await?;
    }
    let stored = load_current(store, dir, downstream).await?;
    Ok(PartialSummary {
        tables,
        events: applied,
        position: stored.position,
        digest: stored.digest,
    })
}

/// The read models stored in `dir`, caught up with the log (rebuilt if unusable), and their
/// digest; the server must be stopped.
pub async fn load_current(
    store: Arc<dyn EventStore>,
    dir: &Path,
    downstream: DownstreamFactory,
) -> Result<Summary, ProjectionError> {
    let (models, handle) = start(store, dir, StartMode::Resume, downstream).await?;
    handle.stop().await;
    let mut state = models.state.write().unwrap_or_else(PoisonError::into_inner);
    Ok(Summary {
        events: 0,
        position: state.position,
        digest: state.digest()?,
    })
}

/// Applies the whole log to fresh in-memory read models, without a store (the rebuild rate of
/// `ledgerstack bench lifecycle`).
pub async fn replay_in_memory(
    store: Arc<dyn EventStore>,
    downstream: DownstreamFactory,
) -> Result<State, ProjectionError> {
    let head = store.head().await?;
    let mut state = State::with_downstream(downstream);
    let mut events = store.subscribe(Position(0).next());
    apply_until(&mut state, &mut events, head, |_| Ok(())).await?;
    Ok(state)
}

/// Applies `events` to `state` until it reaches `head`, calling `every` after each
/// [`PERSIST_EVERY`] events (persisting, progress); returns how many were applied.
async fn apply_until(
    state: &mut State,
    events: &mut engine::store::EventStream,
    head: Position,
    mut every: impl FnMut(&mut State) -> Result<(), ProjectionError>,
) -> Result<u64, ProjectionError> {
    let mut applied = 0u64;
    while state.position < head {
        match events.next().await {
            Some(Ok(event)) => {
                state.apply(&event);
                applied += 1;
                if applied.is_multiple_of(PERSIST_EVERY as u64) {
                    every(state)?;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ProjectionError::Stopped),
        }
    }
    Ok(applied)
}

/// Loads the stored read models; `Err` (with the reason) when they must be rebuilt instead.
fn load(
    tree: &sled::Tree,
    state: &mut State,
    head: Position,
    mode: StartMode,
) -> Result<Position, String> {
    if mode == StartMode::Rebuild {
        return Err("a rebuild was asked for".into());
    }
    let version = tree.get(VERSION_KEY).map_err(|e| e.to_string())?;
    if version.as_deref() != Some(state.version().as_bytes()) {
        return Err("the store was written by another version of Ledgerstack".into());
    }
    let checkpoint = match tree.get(CHECKPOINT_KEY).map_err(|e| e.to_string())? {
        Some(bytes) => Position(u64::from_be_bytes(
            bytes
                .as_ref()
                .try_into()
                .map_err(|_| "the checkpoint is not 8 bytes".to_string())?,
        )),
        None => Position(0),
    };
    if checkpoint > head {
        return Err(format!(
            "the checkpoint ({}) is beyond the log's head ({}): the log was replaced",
            checkpoint.0, head.0
        ));
    }
    for table in state.tables() {
        table.load(tree).map_err(|e| e.to_string())?;
    }
    state.position = checkpoint;
    Ok(checkpoint)
}

/// Writes the dirty rows and the checkpoint in one atomic batch.
fn persist(tree: &sled::Tree, state: &mut State) -> Result<(), ProjectionError> {
    let mut batch = sled::Batch::default();
    for table in state.tables() {
        table.drain_dirty(&mut batch)?;
    }
    batch.insert(CHECKPOINT_KEY, &state.position.0.to_be_bytes());
    tree.apply_batch(batch)?;
    Ok(())
}

async fn follow(
    models: Arc<ReadModels>,
    mut events: engine::store::EventStream,
    db: sled::Db,
    tree: sled::Tree,
    applied: watch::Sender<Position>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let first = tokio::select! {
            next = events.next() => next,
            _ = &mut stop => break,
        };
        let mut batch = match first {
            Some(Ok(event)) => vec![event],
            Some(Err(e)) => {
                error!(error = %e, "the projection runner lost the log; read models stop here");
                break;
            }
            None => break,
        };
        // Take whatever else is ready, so a burst of appends is applied and persisted together.
        while batch.len() < PERSIST_EVERY {
            match events.next().now_or_never() {
                Some(Some(Ok(event))) => batch.push(event),
                _ => break,
            }
        }
        let position = {
            let mut state = models.state.write().unwrap_or_else(PoisonError::into_inner);
            for event in &batch {
                state.apply(event);
            }
            if let Err(e) = persist(&tree, &mut state) {
                error!(error = %e, "persisting read models failed; they will be rebuilt from the log at the next start");
                let _ = tree.remove(VERSION_KEY);
            }
            state.position
        };
        applied.send_replace(position);
    }
    if let Err(e) = db.flush_async().await {
        error!(error = %e, "flushing the read-model store");
    }
}
