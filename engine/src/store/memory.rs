//! An event store held in memory: the same rules as the embedded store (it shares the
//! sequencer), no durability. For fast unit tests of code above the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use uuid::Uuid;

use super::sequencer::{self, ChainTip, Decision, SequencedEvent, SequencerView, StoredEvent};
use super::subscription::catch_up_then_live;
use super::{AppendOutcome, EventStore, EventStream, ExpectedVersion, StoreError};
use crate::clock::Clock;
use crate::event::{NewEvent, Position, RecordedEvent, StreamId};

/// An in-memory event store; clones share the same log.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use engine::clock::SystemClock;
/// use engine::store::{EventStore, memory::MemoryStore};
/// let store = MemoryStore::new(SystemClock);
/// assert_eq!(store.head().await.unwrap().0, 0);
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    log: Mutex<Log>,
    clock: Box<dyn Clock>,
    /// Dropped by [`MemoryStore::close`], which ends every subscription.
    head_tx: Mutex<Option<watch::Sender<Position>>>,
    head_rx: watch::Receiver<Position>,
}

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    /// What a re-append is compared with, parallel to `events`.
    stored: Vec<StoredEvent>,
    by_id: HashMap<Uuid, usize>,
    by_stream: HashMap<StreamId, Vec<usize>>,
    tip: Option<ChainTip>,
}

impl SequencerView for Log {
    fn stream_version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.by_stream.get(stream).map_or(0, |v| v.len() as u64))
    }

    fn find_event(&mut self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.by_id.get(&id).map(|&i| self.stored[i].clone()))
    }

    fn note_sequenced(&mut self, stream: &StreamId, events: &[SequencedEvent]) {
        for event in events {
            let index = self.events.len();
            self.by_id.insert(event.envelope.id, index);
            self.by_stream
                .entry(stream.clone())
                .or_default()
                .push(index);
            self.stored.push(event.stored());
            self.events.push(RecordedEvent {
                envelope: event.envelope.clone(),
                body: Box::new(event.prepared.new.body.clone()),
            });
        }
    }
}

impl MemoryStore {
    /// An empty store that stamps recorded-at from `clock`.
    pub fn new(clock: impl Clock) -> Self {
        let (head_tx, head_rx) = watch::channel(Position::START);
        MemoryStore {
            inner: Arc::new(Inner {
                log: Mutex::new(Log::default()),
                clock: Box::new(clock),
                head_tx: Mutex::new(Some(head_tx)),
                head_rx,
            }),
        }
    }

    /// Stops accepting appends and ends every subscription.
    pub fn close(&self) {
        lock(&self.inner.head_tx).take();
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.inner.log)
    }
}

/// A poisoned lock only means another thread panicked while holding it; the log it guards is
/// updated in a way that is consistent at every await-free step, so keep using it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let prepared = sequencer::prepare(stream, events)?;
        let head_tx = lock(&self.inner.head_tx);
        let Some(head_tx) = head_tx.as_ref() else {
            return Err(StoreError::Closed);
        };
        let mut log = self.log();
        let mut tip = log.tip.clone().unwrap_or(ChainTip::EMPTY);
        let now = self.inner.clock.now();
        match sequencer::decide(stream, expected, prepared, &mut *log, &mut tip, now)? {
            Decision::Duplicate(outcome) => Ok(outcome),
            Decision::Append(_, outcome) => {
                log.tip = Some(tip);
                head_tx.send_replace(outcome.last_position());
                Ok(outcome)
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log();
        let Some(indexes) = log.by_stream.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = from_version.saturating_sub(1) as usize;
        Ok(indexes
            .iter()
            .skip(skip)
            .take(max_count)
            .map(|&i| log.events[i].clone())
            .collect())
    }

    async fn read_all(
        &self,
        from: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log();
        // Positions are 1, 2, 3, ...: event at position p is at index p - 1.
        let start = from.0.saturating_sub(1) as usize;
        Ok(log
            .events
            .iter()
            .skip(start)
            .take(max_count)
            .cloned()
            .collect())
    }

    fn subscribe(&self, from: Position) -> EventStream {
        catch_up_then_live(self.clone(), self.inner.head_rx.clone(), from)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(self
            .log()
            .tip
            .as_ref()
            .map_or(Position::START, |t| t.last_position))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.log().stream_version(stream)
    }
}
