//! The alerts model folded from a log: raise, the open index, resolve, archive and delete, and
//! derived ids that make a second raise of the same cause a no-op.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::event::operations::AlertsHidden;
use engine::event::{AlertEvent, EventBody, NewEvent, StreamId};
use engine::store::memory::MemoryStore;
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::State;
use projections::runner::replay_in_memory;
use uuid::Uuid;

use super::*;

fn alerts_only() -> Vec<Box<dyn DownstreamModel>> {
    vec![Box::new(AlertsModel::default())]
}

async fn fold(events: Vec<NewEvent>) -> State {
    let store = MemoryStore::new(ManualClock::new(Timestamp::from_millis(1_000)));
    let stream = StreamId::singleton(ALERTS_STREAM).unwrap();
    for event in events {
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let store: Arc<dyn EventStore> = Arc::new(store);
    replay_in_memory(store, alerts_only).await.unwrap()
}

fn zone() -> AlertScope {
    AlertScope {
        zone_id: Some(Uuid::from_u128(7)),
        ..AlertScope::default()
    }
}

#[tokio::test]
async fn a_raise_is_listed_and_open_until_resolved() {
    let cause = Uuid::from_u128(1);
    let raise = raise_event(cause, "usage.lag", AlertType::USAGE, "lags".into(), zone())
        .occurred_at(Timestamp::from_millis(5_000));
    let state = fold(vec![raise.clone()]).await;
    let model = of(&state).unwrap();
    let row = model.get(alert_id(cause, "usage.lag")).unwrap();
    assert_eq!(row.alert_type, 13);
    assert_eq!(row.name, "ALERT.USAGE");
    assert_eq!(row.description, "lags");
    assert_eq!(row.sent, Timestamp::from_millis(5_000));
    assert!(row.visible());
    assert!(model.is_open(13, &zone()));
    assert!(!model.is_open(13, &AlertScope::default()));
    assert_eq!(model.open_of_type(13).count(), 1);

    let resolve = resolve_event(row);
    let state = fold(vec![raise, resolve]).await;
    let model = of(&state).unwrap();
    assert!(!model.is_open(13, &zone()));
    let row = model.get(alert_id(cause, "usage.lag")).unwrap();
    assert!(row.resolved_at.is_some());
    assert!(row.visible(), "a resolved alert is still listed");
}

#[tokio::test]
async fn the_same_cause_raises_once() {
    let cause = Uuid::from_u128(2);
    let raise = || raise_event(cause, "k", AlertType::USAGE_SANITY, "bad".into(), zone());
    let state = fold(vec![raise(), raise()]).await;
    let model = of(&state).unwrap();
    assert_eq!(model.alerts.len(), 1);
    assert_eq!(raise().id, alert_id(cause, "k"));
    assert_ne!(alert_id(cause, "k"), alert_id(cause, "other"));
}

#[tokio::test]
async fn archive_and_delete_hide_and_close() {
    let a = raise_event(Uuid::from_u128(3), "k", AlertType::CPU, "a".into(), zone());
    let b = raise_event(
        Uuid::from_u128(4),
        "k",
        AlertType::MEMORY,
        "b".into(),
        zone(),
    );
    let (a_id, b_id) = (a.id, b.id);
    let archive = NewEvent::new(EventBody::Alert(AlertEvent::Archive(AlertsHidden {
        alert_ids: vec![a_id],
    })));
    let delete = NewEvent::new(EventBody::Alert(AlertEvent::Delete(AlertsHidden {
        alert_ids: vec![b_id],
    })));
    let state = fold(vec![a, b, archive, delete]).await;
    let model = of(&state).unwrap();
    let (a, b) = (model.get(a_id).unwrap(), model.get(b_id).unwrap());
    assert!(a.archived && !a.deleted && !a.visible());
    assert!(b.deleted && !b.archived && !b.visible());
    assert!(!model.is_open(1, &zone()));
    assert!(!model.is_open(0, &zone()));
}

#[tokio::test]
async fn a_second_alert_of_an_open_type_does_not_replace_the_open_one() {
    let first = raise_event(Uuid::from_u128(5), "k", AlertType::CPU, "1".into(), zone());
    let second = raise_event(Uuid::from_u128(6), "k", AlertType::CPU, "2".into(), zone());
    let (first_id, second_id) = (first.id, second.id);
    let state = fold(vec![first, second]).await;
    let model = of(&state).unwrap();
    assert_eq!(model.open_alert(1, &zone()).map(|r| r.id), Some(first_id));
    // Resolving the second leaves the first open.
    let resolve = resolve_event(model.get(second_id).unwrap());
    let first = raise_event(Uuid::from_u128(5), "k", AlertType::CPU, "1".into(), zone());
    let second = raise_event(Uuid::from_u128(6), "k", AlertType::CPU, "2".into(), zone());
    let state = fold(vec![first, second, resolve]).await;
    assert_eq!(
        of(&state).unwrap().open_alert(1, &zone()).map(|r| r.id),
        Some(first_id)
    );
}
