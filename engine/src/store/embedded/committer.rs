//! Who commits, and when: group commit without a handoff when there is no one to group with.
//!
//! An append puts its request in a queue. If it is alone (nothing else queued, and the previous
//! commit held a single request, so appends are not arriving concurrently) and the writer is free,
//! the appender commits right there, on its own thread: no thread handoff and no wake-up stand
//! between the request and its fsync, which is what lets a lone appender run at the speed of the
//! disk. Otherwise it signals the writer thread and waits; the writer thread takes the writer as
//! soon as it is free and commits everything that queued up meanwhile in one batch, so concurrent
//! appends share fsyncs. (Letting the first of a crowd commit alone would alternate one-event
//! fsyncs with big ones and halve the batching.)
//!
//! Every request is committed by whoever next holds the writer after it was queued, and the queue
//! is drained completely at every commit, so no request is left behind. The cost: an uncontended
//! append blocks its async worker for one write and fsync (at most one worker at a time, since
//! the writer is held for it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use tracing::debug;

use super::writer::{AppendRequest, Writer};
use crate::store::StoreError;

/// At most this many events go into one group commit.
const MAX_EVENTS_PER_COMMIT: usize = 8192;
/// When this many acknowledged events are still waiting for the index, commits wait for it
/// (backpressure): the overlay that serves them meanwhile lives in memory.
const MAX_UNINDEXED_EVENTS: u64 = 500_000;

pub(crate) struct Committer {
    queue: Mutex<Queue>,
    /// Requests in the last commit: more than one means appends arrive concurrently.
    last_commit_requests: AtomicUsize,
    writer: Mutex<Writer>,
    /// Wakes the writer thread; taken on close, which ends the thread's loop.
    wake: Mutex<Option<Sender<()>>>,
}

#[derive(Default)]
struct Queue {
    requests: Vec<AppendRequest>,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Committer {
    /// A committer over `writer`, and the signal receiver the writer thread must run with.
    pub(crate) fn new(writer: Writer) -> (Self, Receiver<()>) {
        let (wake, signals) = mpsc::channel();
        (
            Committer {
                queue: Mutex::new(Queue::default()),
                last_commit_requests: AtomicUsize::new(1),
                writer: Mutex::new(writer),
                wake: Mutex::new(Some(wake)),
            },
            signals,
        )
    }

    /// Queues `request`, and commits it at once if the writer is free.
    pub(crate) fn submit(&self, request: AppendRequest) {
        let alone = {
            let mut queue = lock(&self.queue);
            if queue.closed {
                let _ = request.reply.send(Err(StoreError::Closed));
                return;
            }
            queue.requests.push(request);
            queue.requests.len() == 1 && self.last_commit_requests.load(Ordering::Relaxed) <= 1
        };
        if alone {
            match self.writer.try_lock() {
                Ok(mut writer) if writer.unindexed() < MAX_UNINDEXED_EVENTS => {
                    return self.commit_queued(&mut writer);
                }
                Err(TryLockError::Poisoned(p)) => return self.commit_queued(&mut p.into_inner()),
                // Busy, or the index is so far behind that the writer thread must hold back.
                Ok(_) | Err(TryLockError::WouldBlock) => {}
            }
        }
        if let Some(wake) = lock(&self.wake).as_ref() {
            let _ = wake.send(());
        }
    }

    /// Commits what is queued, in batches of at most [`MAX_EVENTS_PER_COMMIT`] events.
    fn commit_queued(&self, writer: &mut Writer) {
        loop {
            let batch = {
                let mut queue = lock(&self.queue);
                let mut events = 0;
                let take = queue
                    .requests
                    .iter()
                    .take_while(|r| {
                        events += r.events.len();
                        events <= MAX_EVENTS_PER_COMMIT
                    })
                    .count()
                    .max(1)
                    .min(queue.requests.len());
                queue.requests.drain(..take).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                return;
            }
            self.last_commit_requests
                .store(batch.len(), Ordering::Relaxed);
            writer.commit(batch);
        }
    }

    /// The writer thread: commits whatever queued up while the writer was busy, applying
    /// backpressure when the index is too far behind.
    pub(crate) fn run_writer_thread(&self, signals: Receiver<()>) {
        while signals.recv().is_ok() {
            while signals.try_recv().is_ok() {}
            let mut writer = lock(&self.writer);
            while writer.unindexed() >= MAX_UNINDEXED_EVENTS {
                debug!(
                    unindexed = writer.unindexed(),
                    "waiting for the index to catch up"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            self.commit_queued(&mut writer);
        }
    }

    /// Refuses new requests, commits what was already queued, stops the writer thread (the
    /// caller joins it) and saves the id filter to `filter_path`.
    pub(crate) fn close(&self, filter_path: &std::path::Path) {
        lock(&self.queue).closed = true;
        lock(&self.wake).take();
        let mut writer = lock(&self.writer);
        self.commit_queued(&mut writer);
        writer.end_subscriptions();
        writer.save_filter(filter_path);
        let stopped_at = writer.unindexed();
        if stopped_at > 0 {
            debug!(
                unindexed = stopped_at,
                "closing with events still to index: they are indexed on the next open"
            );
        }
    }
}
