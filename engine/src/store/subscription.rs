//! Catch-up-then-live subscriptions, shared by the backends that publish their committed head.
//!
//! A subscription reads acknowledged events in batches from its cursor; when it has read
//! everything, it waits for the committed head to move past what it saw, then reads again.
//! Because every event is read from the log by position, there is nothing to merge between a
//! "history" phase and a "live" phase, so there can be no gap and no duplicate at the seam.

use std::collections::VecDeque;

use futures::stream;
use tokio::sync::watch;

use super::{EventStore, EventStream, StoreError};
use crate::event::{Position, RecordedEvent};

/// How many events a subscription reads per batch: large enough to amortise a read, small
/// enough that a slow consumer holds little memory.
const BATCH: usize = 1024;

struct Cursor<S> {
    store: S,
    head: watch::Receiver<Position>,
    next: Position,
    buffered: VecDeque<RecordedEvent>,
    finished: bool,
}

/// Every event from `from` onwards, from `store`, following `head` (the committed position,
/// whose sender is dropped when the store closes).
pub(crate) fn catch_up_then_live<S>(
    store: S,
    head: watch::Receiver<Position>,
    from: Position,
) -> EventStream
where
    S: EventStore + Clone,
{
    let cursor = Cursor {
        store,
        head,
        next: from,
        buffered: VecDeque::new(),
        finished: false,
    };
    Box::pin(stream::unfold(cursor, |mut c| async move {
        if c.finished {
            return None;
        }
        loop {
            if let Some(event) = c.buffered.pop_front() {
                c.next = event.envelope.position.next();
                return Some((Ok(event), c));
            }
            let seen = *c.head.borrow_and_update();
            match c.store.read_all(c.next, BATCH).await {
                Ok(batch) if !batch.is_empty() => c.buffered.extend(batch),
                Ok(_) => {
                    // Nothing new up to `seen`: wait until the head moves beyond it.
                    while *c.head.borrow_and_update() <= seen {
                        if c.head.changed().await.is_err() {
                            c.finished = true;
                            return Some((Err(StoreError::Closed), c));
                        }
                    }
                }
                Err(e) => {
                    c.finished = true;
                    return Some((Err(e), c));
                }
            }
        }
    }))
}
