//! The promises of `EventStore`, as generic checks any backend must pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use engine::clock::Clock;
use engine::event::chain::ChainVerifier;
use engine::event::operations::AlertRaised;
use engine::event::{
    Actor, AlertEvent, EventBody, EventState, Level, NewEvent, Position, RecordedEvent, StreamId,
};
use engine::store::{EventStore, ExpectedVersion, StoreError};
use engine::time::Timestamp;
use futures::StreamExt;
use uuid::Uuid;

/// A store under test and how to close it.
pub struct Harness {
    pub store: Arc<dyn EventStore>,
    pub close: Box<dyn Fn() + Send + Sync>,
    /// Keeps a backend's directory alive for the test's duration.
    pub _dir: Option<tempfile::TempDir>,
}

/// A clock the test moves by hand, backwards too (the store must not follow it back).
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn set(&self, millis: i64) {
        self.0.store(millis, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

pub fn stream(n: u128) -> StreamId {
    StreamId::new("conformance", Uuid::from_u128(n)).unwrap()
}

/// A small event whose payload says which it is.
pub fn event(label: &str) -> NewEvent {
    NewEvent::new(EventBody::Alert(AlertEvent::Raise(AlertRaised {
        alert_id: Uuid::new_v4(),
        alert_type: 13,
        name: "ALERT.USAGE".into(),
        description: label.to_owned(),
        zone_id: None,
        pod_id: None,
        cluster_id: None,
        account_id: None,
    })))
}

pub fn label(e: &RecordedEvent) -> String {
    match &*e.body {
        EventBody::Alert(AlertEvent::Raise(a)) => a.description.clone(),
        other => panic!("unexpected event {other:?}"),
    }
}

pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let next = all.last().map_or(Position::START, |e: &RecordedEvent| {
            e.envelope.position.next()
        });
        let batch = store.read_all(next, 1000).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

pub fn verify_chain(events: &[RecordedEvent]) {
    let mut verifier = ChainVerifier::new();
    for e in events {
        verifier.check(e).unwrap();
    }
}

pub async fn append_assigns_positions_versions_and_times(h: Harness, clock: TestClock) {
    clock.set(1_772_946_000_000);
    let s = stream(1);
    let user = Actor::user(Uuid::new_v4(), Uuid::new_v4());
    let correlation = Uuid::new_v4();
    let imported_at = Timestamp::from_millis(1_700_000_000_000);
    let out = h
        .store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![
                event("a").by(user).correlated_with(correlation),
                event("b")
                    .occurred_at(imported_at)
                    .level(Level::Warn)
                    .state(EventState::Scheduled),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.positions, vec![Position(1), Position(2)]);
    assert_eq!(out.stream_version, 2);
    assert!(!out.deduplicated);
    assert_eq!(h.store.head().await.unwrap(), Position(2));
    assert_eq!(h.store.stream_version(&s).await.unwrap(), 2);

    let events = h.store.read_stream(&s, 1, 10).await.unwrap();
    assert_eq!(events.iter().map(label).collect::<Vec<_>>(), ["a", "b"]);
    let (a, b) = (&events[0].envelope, &events[1].envelope);
    assert_eq!((a.version, b.version), (1, 2));
    assert_eq!(a.recorded_at, Timestamp::from_millis(1_772_946_000_000));
    assert_eq!(
        a.occurred_at, a.recorded_at,
        "live events happen when recorded"
    );
    assert_eq!(
        b.occurred_at, imported_at,
        "imported history keeps its own time"
    );
    assert_eq!(a.actor, user);
    assert_eq!(a.correlation_id, Some(correlation));
    assert_eq!((b.level, b.state), (Level::Warn, EventState::Scheduled));
    assert_eq!(a.stream, s);
    verify_chain(&read_everything(h.store.as_ref()).await);
    (h.close)();
}

pub async fn expected_version_is_enforced(h: Harness) {
    let s = stream(2);
    h.store
        .append(&s, ExpectedVersion::NoStream, vec![event("1")])
        .await
        .unwrap();
    let err = h
        .store
        .append(&s, ExpectedVersion::NoStream, vec![event("x")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::WrongExpectedVersion { actual: 1, .. }),
        "{err}"
    );
    let err = h
        .store
        .append(&s, ExpectedVersion::Exact(5), vec![event("x")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::WrongExpectedVersion { actual: 1, .. }),
        "{err}"
    );
    h.store
        .append(&s, ExpectedVersion::Exact(1), vec![event("2")])
        .await
        .unwrap();
    h.store
        .append(&s, ExpectedVersion::Any, vec![event("3")])
        .await
        .unwrap();
    let labels: Vec<_> = h
        .store
        .read_stream(&s, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(label)
        .collect();
    assert_eq!(labels, ["1", "2", "3"], "rejected appends wrote nothing");
    assert_eq!(h.store.head().await.unwrap(), Position(3));
    (h.close)();
}

pub async fn malformed_appends_are_rejected_and_write_nothing(h: Harness) {
    let s = stream(3);
    let err = h
        .store
        .append(&s, ExpectedVersion::Any, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EmptyAppend { .. }), "{err}");
    let e = event("twice");
    let err = h
        .store
        .append(&s, ExpectedVersion::Any, vec![e.clone(), e])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateIdInAppend { .. }),
        "{err}"
    );
    assert_eq!(h.store.head().await.unwrap(), Position::START);
    (h.close)();
}

pub async fn reappending_the_same_events_is_idempotent(h: Harness) {
    let s = stream(4);
    let batch = vec![event("a"), event("b")];
    let first = h
        .store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    h.store
        .append(&s, ExpectedVersion::Any, vec![event("c")])
        .await
        .unwrap();
    // Whatever the expected version, the same ids and payloads answer with where they are.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
    ] {
        let again = h.store.append(&s, expected, batch.clone()).await.unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.positions, first.positions);
        assert_eq!(again.stream_version, 2);
    }
    assert_eq!(
        h.store.head().await.unwrap(),
        Position(3),
        "nothing appended"
    );
    (h.close)();
}

pub async fn same_id_with_another_payload_is_a_conflict(h: Harness) {
    let s = stream(5);
    let original = event("original");
    h.store
        .append(&s, ExpectedVersion::Any, vec![original.clone()])
        .await
        .unwrap();
    let mut changed = event("changed");
    changed.id = original.id;
    let err = h
        .store
        .append(&s, ExpectedVersion::Any, vec![changed])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::IdConflict {
                position: Position(1),
                ..
            }
        ),
        "{err}"
    );
    // The same event into another stream is a different event.
    let err = h
        .store
        .append(&stream(55), ExpectedVersion::Any, vec![original])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IdConflict { .. }), "{err}");
    assert_eq!(h.store.head().await.unwrap(), Position(1));
    (h.close)();
}

pub async fn a_batch_mixing_stored_and_new_ids_is_refused(h: Harness) {
    let s = stream(6);
    let stored = event("stored");
    h.store
        .append(&s, ExpectedVersion::Any, vec![stored.clone()])
        .await
        .unwrap();
    let err = h
        .store
        .append(&s, ExpectedVersion::Any, vec![stored, event("new")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::PartialDuplicate {
                duplicates: 1,
                new: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(h.store.head().await.unwrap(), Position(1));
    (h.close)();
}

pub async fn recorded_at_never_goes_backwards(h: Harness, clock: TestClock) {
    let s = stream(7);
    for (i, t) in [5_000, 9_000, 2_000, 9_500, 1_000].into_iter().enumerate() {
        clock.set(t);
        h.store
            .append(&s, ExpectedVersion::Any, vec![event(&i.to_string())])
            .await
            .unwrap();
    }
    let times: Vec<i64> = read_everything(h.store.as_ref())
        .await
        .iter()
        .map(|e| e.envelope.recorded_at.millis())
        .collect();
    assert_eq!(times, [5_000, 9_000, 9_000, 9_500, 9_500]);
    (h.close)();
}

pub async fn reads_page_by_position_and_version(h: Harness) {
    let (a, b) = (stream(8), stream(9));
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        h.store
            .append(s, ExpectedVersion::Any, vec![event(&i.to_string())])
            .await
            .unwrap();
    }
    let page = h.store.read_all(Position(4), 3).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.envelope.position.0)
            .collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert!(h.store.read_all(Position(11), 5).await.unwrap().is_empty());
    assert!(h.store.read_all(Position(1), 0).await.unwrap().is_empty());
    let tail = h.store.read_stream(&b, 3, 10).await.unwrap();
    assert_eq!(tail.iter().map(label).collect::<Vec<_>>(), ["5", "7", "9"]);
    assert_eq!(h.store.read_stream(&a, 2, 2).await.unwrap().len(), 2);
    assert!(
        h.store
            .read_stream(&stream(999), 1, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.stream_version(&stream(999)).await.unwrap(), 0);
    (h.close)();
}

pub async fn subscription_catches_up_then_follows_live(h: Harness) {
    let s = stream(10);
    for i in 0..5 {
        h.store
            .append(&s, ExpectedVersion::Any, vec![event(&format!("old{i}"))])
            .await
            .unwrap();
    }
    let mut sub = h.store.subscribe(Position(3));
    let store = h.store.clone();
    let writer = tokio::spawn(async move {
        for i in 0..5 {
            store
                .append(&s, ExpectedVersion::Any, vec![event(&format!("new{i}"))])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .unwrap();
        seen.push(label(&e));
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        [
            "old2", "old3", "old4", "new0", "new1", "new2", "new3", "new4"
        ]
    );
    (h.close)();
    let end = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("subscription did not end on close");
    assert!(matches!(end, Some(Err(StoreError::Closed))), "{end:?}");
    assert!(sub.next().await.is_none());
}

pub async fn closed_store_refuses_appends(h: Harness) {
    (h.close)();
    let err = h
        .store
        .append(&stream(11), ExpectedVersion::Any, vec![event("late")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err}");
}

/// One appender's plan: (stream, batch size, optimistic) per append.
pub type AppenderPlan = Vec<(u8, u8, bool)>;

/// Concurrent appenders over a few shared streams, some optimistic (retrying on conflicts),
/// subscribers started at various positions while they run. Then:
/// - positions are 1..=n without gaps, each append's events are contiguous and in order;
/// - read_all returns exactly the acknowledged events, in commit order, and the chain verifies;
/// - each stream's versions run 1..k, and no version was acknowledged twice;
/// - every subscriber saw exactly the events from its start, once each, in order.
pub async fn concurrent_appends_and_subscribers(
    h: Harness,
    plans: Vec<AppenderPlan>,
    subscriber_starts: Vec<u64>,
) {
    let mut subscribers = Vec::new();
    for start in subscriber_starts {
        let mut sub = h.store.subscribe(Position(start));
        subscribers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(e) => seen.push(e),
                    Err(StoreError::Closed) => break,
                    Err(e) => panic!("subscriber failed: {e}"),
                }
            }
            (start, seen)
        }));
    }

    let mut appenders = Vec::new();
    for (n, plan) in plans.into_iter().enumerate() {
        let store = h.store.clone();
        appenders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for (i, (s, size, optimistic)) in plan.into_iter().enumerate() {
                let s = stream(s as u128);
                let events: Vec<NewEvent> = (0..size.max(1))
                    .map(|k| event(&format!("{n}/{i}/{k}")))
                    .collect();
                loop {
                    let expected = if optimistic {
                        ExpectedVersion::Exact(store.stream_version(&s).await.unwrap())
                    } else {
                        ExpectedVersion::Any
                    };
                    match store.append(&s, expected, events.clone()).await {
                        Ok(out) => {
                            acked.push((
                                s.clone(),
                                events.iter().map(|e| e.id).collect::<Vec<_>>(),
                                out,
                            ));
                            break;
                        }
                        Err(StoreError::WrongExpectedVersion { .. }) if optimistic => continue,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for a in appenders {
        acked.extend(a.await.unwrap());
    }

    let all = read_everything(h.store.as_ref()).await;
    verify_chain(&all);
    let positions: Vec<u64> = all.iter().map(|e| e.envelope.position.0).collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>());
    let by_position: HashMap<u64, &RecordedEvent> =
        all.iter().map(|e| (e.envelope.position.0, e)).collect();
    let mut acked_ids = HashSet::new();
    let mut versions: BTreeMap<StreamId, Vec<u64>> = BTreeMap::new();
    for (s, ids, out) in &acked {
        assert!(!out.deduplicated);
        for w in out.positions.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "an append's events are contiguous");
        }
        for (id, position) in ids.iter().zip(&out.positions) {
            let e = by_position[&position.0];
            assert_eq!(e.envelope.id, *id, "acknowledged position holds the event");
            assert_eq!(&e.envelope.stream, s);
            versions
                .entry(s.clone())
                .or_default()
                .push(e.envelope.version);
            acked_ids.insert(*id);
        }
    }
    assert_eq!(
        acked_ids.len(),
        all.len(),
        "the log holds exactly what was acknowledged"
    );
    for (s, mut v) in versions {
        v.sort_unstable();
        assert_eq!(
            v,
            (1..=v.len() as u64).collect::<Vec<_>>(),
            "versions of {s}"
        );
    }

    (h.close)();
    for sub in subscribers {
        let (start, seen) = sub.await.unwrap();
        let expected: Vec<_> = all
            .iter()
            .filter(|e| e.envelope.position.0 >= start)
            .map(|e| e.envelope.id)
            .collect();
        let got: Vec<_> = seen.iter().map(|e| e.envelope.id).collect();
        assert_eq!(got, expected, "subscriber from {start}");
    }
}
