//! The projection runner against a real log and a real sled store: catch-up at start, live
//! tail with read-your-writes, resume from the persisted checkpoint, and rebuild.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::event::identity::{DomainFacts, DomainLifecycle};
use engine::event::{DomainEvent, EventBody, NewEvent, StreamId};
use engine::store::memory::MemoryStore;
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::runner::{self, StartMode};
use uuid::Uuid;

fn domain_created(name: &str) -> NewEvent {
    NewEvent::new(EventBody::Domain(DomainEvent::Create(DomainLifecycle {
        domain: DomainFacts {
            domain_id: Uuid::new_v4(),
            name: name.into(),
            parent_id: None,
            path: format!("/{name}"),
            network_domain: None,
        },
    })))
}

async fn append(store: &MemoryStore, names: &[&str]) -> engine::event::Position {
    let stream = StreamId::singleton("identity").unwrap();
    let events = names.iter().map(|n| domain_created(n)).collect();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap()
        .last_position()
}

fn names(models: &projections::ReadModels) -> Vec<String> {
    let mut names: Vec<String> = models
        .read()
        .identity
        .domains
        .values()
        .map(|d| d.facts.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn read_models_catch_up_follow_resume_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(ManualClock::new(Timestamp::from_millis(0)));
    append(&store, &["a", "b"]).await;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());

    // Catch-up: everything in the log at start is applied before `start` returns.
    let (models, handle) = runner::start(
        shared.clone(),
        dir.path(),
        StartMode::Resume,
        runner::no_downstream,
    )
    .await
    .unwrap();
    assert_eq!(names(&models), ["a", "b"]);

    // Live tail: a later append is visible once `wait_for` its position resolves.
    let position = append(&store, &["c"]).await;
    models.wait_for(position).await.unwrap();
    assert_eq!(names(&models), ["a", "b", "c"]);
    handle.stop().await;

    // Resume: rows and checkpoint were persisted together; the new event is applied on top.
    append(&store, &["d"]).await;
    let (resumed, handle) = runner::start(
        shared.clone(),
        dir.path(),
        StartMode::Resume,
        runner::no_downstream,
    )
    .await
    .unwrap();
    assert_eq!(names(&resumed), ["a", "b", "c", "d"]);
    assert_eq!(resumed.applied(), store.head().await.unwrap());
    handle.stop().await;

    // Rebuild: dropping the store and replaying the log gives the same read models.
    let (rebuilt, handle) = runner::start(
        shared,
        dir.path(),
        StartMode::Rebuild,
        runner::no_downstream,
    )
    .await
    .unwrap();
    assert_eq!(names(&rebuilt), ["a", "b", "c", "d"]);
    handle.stop().await;
}

#[tokio::test]
async fn a_store_ahead_of_the_log_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let long_log = MemoryStore::new(ManualClock::new(Timestamp::from_millis(0)));
    append(&long_log, &["a", "b", "c"]).await;
    let (_, handle) = runner::start(
        Arc::new(long_log),
        dir.path(),
        StartMode::Resume,
        runner::no_downstream,
    )
    .await
    .unwrap();
    handle.stop().await;

    // The log was replaced by a shorter one: the checkpoint is beyond its head.
    let short_log = MemoryStore::new(ManualClock::new(Timestamp::from_millis(0)));
    append(&short_log, &["x"]).await;
    let (models, handle) = runner::start(
        Arc::new(short_log),
        dir.path(),
        StartMode::Resume,
        runner::no_downstream,
    )
    .await
    .unwrap();
    assert_eq!(names(&models), ["x"]);
    handle.stop().await;
}

#[tokio::test]
async fn a_partial_rebuild_repairs_the_picked_tables_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(ManualClock::new(Timestamp::from_millis(0)));
    append(&store, &["a", "b", "c"]).await;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let intact = runner::load_current(shared.clone(), dir.path(), runner::no_downstream)
        .await
        .unwrap();

    // Damage the stored domains: one row goes missing behind the runner's back.
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("read-models").unwrap();
        let key = tree
            .scan_prefix(b"identity.domains/")
            .keys()
            .next()
            .unwrap()
            .unwrap();
        tree.remove(key).unwrap();
        db.flush().unwrap();
    }
    let damaged = runner::load_current(shared.clone(), dir.path(), runner::no_downstream)
        .await
        .unwrap();
    assert_ne!(damaged.digest, intact.digest);

    // Picking nothing is refused and changes nothing.
    let nothing = runner::rebuild_only(
        shared.clone(),
        dir.path(),
        runner::no_downstream,
        &|_, _| false,
        |_, _| {},
    )
    .await;
    assert!(matches!(
        nothing,
        Err(projections::ProjectionError::NothingSelected)
    ));

    let repaired = runner::rebuild_only(
        shared.clone(),
        dir.path(),
        runner::no_downstream,
        &|name, _| name.starts_with("identity."),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        repaired.tables,
        ["identity.domains", "identity.accounts", "identity.users"]
    );
    assert_eq!(repaired.digest, intact.digest);
    assert_eq!(repaired.position, intact.position);
    let (models, handle) =
        runner::start(shared, dir.path(), StartMode::Resume, runner::no_downstream)
            .await
            .unwrap();
    assert_eq!(names(&models), ["a", "b", "c"]);
    handle.stop().await;
}
