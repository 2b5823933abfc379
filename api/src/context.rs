//! What every handler shares: the log, the read models, the master keys, the clock, sessions
//! and throttling counters; and [`Ctx::decide`], the one way commands append.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use engine::clock::{Clock, ManualClock};
use engine::event::{NewEvent, StreamId};
use engine::secrets::MasterKeys;
use engine::store::{AppendOutcome, EventStore, ExpectedVersion, StoreError};
use projections::{ReadModels, State};
use uuid::Uuid;

use crate::error::ApiError;

/// Shared server state; cheap to clone (one `Arc`), so async jobs can own a copy.
#[derive(Clone)]
pub struct Ctx(Arc<Shared>);

/// The parts of [`Ctx`].
pub struct Shared {
    /// The event log: the only durable truth.
    pub store: Arc<dyn EventStore>,
    /// The read models every query answers from.
    pub models: Arc<ReadModels>,
    /// The simulator hypervisor the orchestrator drives (`configureSimulator` injects failures
    /// and latency into it).
    pub simulator: projections::driver::Simulator,
    /// Opens API secret keys sealed in the log.
    pub keys: MasterKeys,
    /// Where "now" comes from (the same clock the log stamps events with).
    pub clock: Arc<dyn Clock>,
    /// Set when serving on the manual clock: `advanceClock` moves it.
    pub manual_clock: Option<ManualClock>,
    /// `login` sessions.
    pub sessions: Sessions,
    /// API call counts per account (`api.throttling.*`).
    pub throttle: Throttle,
    /// Opened secret keys by API key, so a request costs one HMAC, not one AEAD open.
    pub secret_cache: Mutex<HashMap<String, (Uuid, String)>>,
    /// Counters `/metrics` shows that no read model holds (requests, appends, driver latency);
    /// `None` in a context that answers from a past state of the log and serves nothing.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Deref for Ctx {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

/// How often a decision is retried when another one won the race for its stream.
const DECIDE_ATTEMPTS: usize = 16;

impl Ctx {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Ctx {
        Ctx(Arc::new(shared))
    }

    /// Decides on the current read models and appends the result to the singleton stream that
    /// owns the invariant, expecting the version the decision was made at (DESIGN.md invariant
    /// 8); when another decision won meanwhile, decides again on the newer state. Returns once
    /// the read models include the append (invariant 7). An empty decision appends nothing.
    pub async fn decide<F>(
        &self,
        stream: &str,
        decide: F,
    ) -> Result<Option<AppendOutcome>, ApiError>
    where
        F: Fn(&State) -> Result<Vec<NewEvent>, ApiError>,
    {
        let stream_id = StreamId::singleton(stream)
            .map_err(|e| ApiError::internal(format!("bad stream name {stream}: {e}")))?;
        for _ in 0..DECIDE_ATTEMPTS {
            let (version, events) = {
                let state = self.models.read();
                (state.stream_version(stream), decide(&state)?)
            };
            if events.is_empty() {
                return Ok(None);
            }
            match self
                .store
                .append(&stream_id, ExpectedVersion::Exact(version), events)
                .await
            {
                Ok(outcome) => {
                    self.models.wait_for(outcome.last_position()).await?;
                    return Ok(Some(outcome));
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    let head = self.store.head().await?;
                    self.models.wait_for(head).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal(format!(
            "too much contention on {stream}: gave up after {DECIDE_ATTEMPTS} attempts"
        )))
    }

    /// Appends events to their own new stream (no cross-resource invariant involved) and waits
    /// until the read models include them.
    pub async fn append_new(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, ApiError> {
        let outcome = self.store.append(&stream, expected, events).await?;
        self.models.wait_for(outcome.last_position()).await?;
        Ok(outcome)
    }

    /// The secret key of the user holding `api_key`, opened with the master key.
    pub fn secret_for(&self, api_key: &str) -> Option<(Uuid, String)> {
        if let Some(hit) = self
            .secret_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_key)
        {
            return Some(hit.clone());
        }
        let (user_id, sealed) = {
            let state = self.models.read();
            let user = state.identity.user_by_api_key(api_key)?;
            (user.facts.user_id, user.secret_key.clone()?)
        };
        let secret = self
            .keys
            .open_sealed(&sealed, user_id.as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())?;
        self.secret_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(api_key.to_owned(), (user_id, secret.clone()));
        Some((user_id, secret))
    }

    /// Forgets cached secrets (a user registered new keys or was deleted).
    pub fn forget_secrets(&self) {
        self.secret_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// One `login` session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub user_id: Uuid,
    /// Must come back with every call (parameter or cookie), against cross-site requests.
    pub session_key: String,
    /// When it lapses unless used again.
    pub expires: Instant,
}

/// Sessions by `JSESSIONID`. Kept in memory only: a restart logs everyone out, as CloudStack's
/// does without a shared session store.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// CloudStack's default `session.timeout`.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(1800);

impl Sessions {
    /// Starts a session; returns its `JSESSIONID`.
    pub fn create(&self, user_id: Uuid, session_key: String) -> String {
        let id = engine::secrets::generate_session_key();
        let mut sessions = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                user_id,
                session_key,
                expires: now + SESSION_TIMEOUT,
            },
        );
        id
    }

    /// The user of a live session whose key matches, extending it.
    pub fn check(&self, session_id: &str, session_key: &str) -> Option<Uuid> {
        let mut sessions = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get_mut(session_id)?;
        let now = Instant::now();
        if session.expires <= now {
            sessions.remove(session_id);
            return None;
        }
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(session.session_key.as_bytes(), session_key.as_bytes())
                .into();
        if !matches {
            return None;
        }
        session.expires = now + SESSION_TIMEOUT;
        Some(session.user_id)
    }

    /// Ends a session; returns its user.
    pub fn remove(&self, session_id: &str) -> Option<Uuid> {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id)
            .map(|s| s.user_id)
    }

    /// Ends every session of a user (disabled, deleted).
    pub fn remove_user(&self, user_id: Uuid) {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| s.user_id != user_id);
    }
}

/// Calls per account in the current interval.
#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<Uuid, (Instant, u64)>>,
}

/// An account's standing against its API limit (`getApiLimit`).
#[derive(Debug, Clone, Copy)]
pub struct ApiUsage {
    /// Calls made in this interval.
    pub issued: u64,
    /// Calls allowed per interval.
    pub allowed: u64,
    /// Milliseconds until the interval ends.
    pub expire_after_ms: u64,
}

impl Throttle {
    /// Counts one call; `Err(retry_after_ms)` when the account is over its limit.
    pub fn admit(
        &self,
        account: Uuid,
        interval: Duration,
        max: u64,
        cache_size: usize,
    ) -> Result<(), u64> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if windows.len() >= cache_size && !windows.contains_key(&account) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < interval);
        }
        let entry = windows.entry(account).or_insert((now, 0));
        if now.duration_since(entry.0) >= interval {
            *entry = (now, 0);
        }
        if entry.1 >= max {
            let left = interval.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_millis() as u64);
        }
        entry.1 += 1;
        Ok(())
    }

    /// Where an account stands.
    pub fn usage(&self, account: Uuid, interval: Duration, max: u64) -> ApiUsage {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match windows.get(&account) {
            Some((start, issued)) if now.duration_since(*start) < interval => ApiUsage {
                issued: *issued,
                allowed: max.saturating_sub(*issued),
                expire_after_ms: interval
                    .saturating_sub(now.duration_since(*start))
                    .as_millis() as u64,
            },
            _ => ApiUsage {
                issued: 0,
                allowed: max,
                expire_after_ms: interval.as_millis() as u64,
            },
        }
    }
}
