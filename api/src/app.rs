//! Putting the server together: opens the log, the master keys and the read models, fails jobs
//! a previous run left unfinished, bootstraps the admin, seeds demo data, binds the listener.
//! `ledgerstack serve` is this plus argument parsing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use engine::clock::{Clock, ManualClock, SystemClock};
use engine::secrets::{MasterKeys, SecretsError};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::{EventStore, StoreError};
use engine::time::Timestamp;
use projections::ProjectionError;
use projections::runner::{self, RunnerHandle, StartMode};
use tracing::info;

use crate::bootstrap::{self, AdminCredentials, BootstrapError};
use crate::context::{Ctx, Sessions, Shared, Throttle};
use crate::error::ApiError;
use crate::jobs;
use projections::driver::Simulator;
pub use projections::driver::SimulatorConfig;
use projections::orchestrator::{self, OrchestratorHandle};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockChoice {
    /// The system clock.
    System,
    /// A manual clock, moved only by `advanceClock`; starts at `start` (default: now), never
    /// before the last event already in the log.
    Manual {
        /// Its first reading.
        start: Option<Timestamp>,
    },
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Event log, read models, master key and credentials live here.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// System or manual clock.
    pub clock: ClockChoice,
    /// Seed a demo zone and offerings.
    pub demo: bool,
    /// Rebuild the read models from the log instead of resuming from their checkpoint.
    pub rebuild_read_models: bool,
    /// The simulator hypervisor's settings (latency of every command).
    pub simulator: SimulatorConfig,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The event log.
    #[error("opening the event log in {dir}: {source}")]
    Log {
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        source: StoreError,
    },
    /// The master key file.
    #[error(transparent)]
    Keys(#[from] SecretsError),
    /// The read models.
    #[error(transparent)]
    ReadModels(#[from] ProjectionError),
    /// Bootstrap.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// Recovering jobs or seeding.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// Binding the listener.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A server ready to accept requests.
pub struct Running {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// Shared state (for tests and tools).
    pub ctx: Ctx,
    /// The admin's credentials, when this start created them (print once).
    pub new_admin: Option<AdminCredentials>,
    /// Jobs of an earlier run that were failed at this start.
    pub interrupted_jobs: usize,
    /// Jobs of an earlier run waiting for a driver command, resumed at this start.
    pub resumed_jobs: usize,
    store: EmbeddedStore,
    runner: RunnerHandle,
    orchestrator: OrchestratorHandle,
    usage_scheduler: usage::task::TaskHandle,
    threshold_watcher: usage::task::TaskHandle,
    alert_watcher: usage::task::TaskHandle,
    delivery_worker: usage::task::TaskHandle,
    quota_watcher: usage::task::TaskHandle,
    listener: tokio::net::TcpListener,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Opens everything and binds the listener; [`Running::serve`] then answers requests.
pub async fn open(options: ServerOptions) -> Result<Running, StartError> {
    std::fs::create_dir_all(&options.data_dir).map_err(|e| StartError::Log {
        dir: options.data_dir.clone(),
        source: StoreError::Io {
            op: "create",
            path: options.data_dir.clone(),
            source: Arc::new(e),
        },
    })?;
    let keys = MasterKeys::open_or_create(&options.data_dir)?;
    let (clock, manual_clock): (Arc<dyn Clock>, Option<ManualClock>) = match options.clock {
        ClockChoice::System => (Arc::new(SystemClock), None),
        ClockChoice::Manual { start } => {
            let manual = ManualClock::new(start.unwrap_or_else(|| SystemClock.now()));
            (Arc::new(manual.clone()), Some(manual))
        }
    };
    let dir = options.data_dir.clone();
    let store_clock = clock.clone();
    let store = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(
            &dir,
            EmbeddedOptions {
                clock: store_clock,
                ..EmbeddedOptions::default()
            },
        )
    })
    .await
    .map_err(|e| StartError::Api(ApiError::internal(format!("opening the log: {e}"))))?
    .map_err(|source| StartError::Log {
        dir: options.data_dir.clone(),
        source,
    })?;
    let shared_store: Arc<dyn EventStore> = Arc::new(store.clone());
    if let Some(manual) = &manual_clock {
        // The manual clock never starts before what the log already recorded, so recorded-at
        // keeps moving forward across restarts.
        let head = shared_store
            .head()
            .await
            .map_err(|source| StartError::Log {
                dir: options.data_dir.clone(),
                source,
            })?;
        if head.0 > 0
            && let Ok(last) = shared_store.read_all(head, 1).await
            && let Some(last) = last.first()
        {
            manual.advance_to(last.envelope.recorded_at);
        }
    }
    let mode = if options.rebuild_read_models {
        StartMode::Rebuild
    } else {
        StartMode::Resume
    };
    let (models, runner) = runner::start(
        shared_store.clone(),
        &options.data_dir.join("read-models"),
        mode,
        usage::model::read_models,
    )
    .await?;
    let simulator = Simulator::new(options.simulator.clone());
    let orchestrator = orchestrator::start(
        shared_store.clone(),
        models.clone(),
        Arc::new(simulator.clone()),
        Arc::new(simulator.clone()),
        clock.clone(),
    );
    let usage_scheduler =
        usage::scheduler::start(shared_store.clone(), models.clone(), clock.clone());
    let threshold_watcher =
        usage::thresholds::start(shared_store.clone(), models.clone(), clock.clone());
    let alert_watcher =
        usage::alerts::watcher::start(shared_store.clone(), models.clone(), clock.clone());
    // The worker opens sink secrets itself: its own copy of the master keys the server uses.
    let delivery_worker = usage::delivery::worker::start(
        shared_store.clone(),
        models.clone(),
        clock.clone(),
        MasterKeys::open(&options.data_dir)?,
    );
    let quota_watcher = usage::quota_watch::start(shared_store.clone(), models.clone());
    let ctx = Ctx::new(Shared {
        store: shared_store,
        models,
        simulator,
        keys,
        clock,
        manual_clock,
        sessions: Sessions::default(),
        throttle: Throttle::default(),
        secret_cache: Default::default(),
        metrics: Some(Arc::new(crate::metrics::Metrics::new(
            store.clone(),
            orchestrator.stats(),
        ))),
    });
    let (resumed_jobs, interrupted_jobs) =
        jobs::settle_interrupted(&ctx, crate::commands::render_job_result).await?;
    let new_admin = bootstrap::ensure_admin(&ctx, &options.data_dir).await?;
    if options.demo && bootstrap::seed_demo(&ctx).await? {
        info!("seeded the demo zone and offerings");
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: options.listen,
        source,
    })?;
    Ok(Running {
        addr,
        ctx,
        new_admin,
        interrupted_jobs,
        resumed_jobs,
        store,
        runner,
        orchestrator,
        usage_scheduler,
        threshold_watcher,
        alert_watcher,
        delivery_worker,
        quota_watcher,
        listener,
    })
}

impl Running {
    /// Answers requests until `shutdown` resolves, lets in-flight requests finish, stops the
    /// projection runner and closes the log. Returns how many events the log holds.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<u64> {
        let served = crate::server::serve(self.listener, self.ctx.clone(), shutdown).await;
        self.usage_scheduler.stop().await;
        self.threshold_watcher.stop().await;
        self.alert_watcher.stop().await;
        self.delivery_worker.stop().await;
        self.quota_watcher.stop().await;
        self.orchestrator.stop().await;
        self.runner.stop().await;
        let head = self.store.head().await.map(|p| p.0).unwrap_or(0);
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        served.map(|_| head)
    }
}
