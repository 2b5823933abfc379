//! The `EventStore` conformance suite, run against every backend. A new backend adds one
//! `conformance!` line with a function that opens a fresh, empty store.

mod conformance {
    pub mod suite;
}

use std::sync::Arc;

use conformance::suite::{self, Harness, TestClock};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::memory::MemoryStore;
use proptest::prelude::*;

fn open_memory(clock: TestClock) -> Harness {
    let store = MemoryStore::new(clock);
    let closer = store.clone();
    Harness {
        store: Arc::new(store),
        close: Box::new(move || closer.close()),
        _dir: None,
    }
}

fn open_embedded(clock: TestClock) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        // Small segments, so the suite crosses rollovers.
        segment_bytes: 4096,
        clock: Arc::new(clock),
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let closer = store.clone();
    Harness {
        store: Arc::new(store),
        close: Box::new(move || closer.close()),
        _dir: Some(dir),
    }
}

/// Property-test cases per backend: `PROPTEST_CASES` if set, else a CI-sized default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

macro_rules! conformance {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            fn open() -> (Harness, TestClock) {
                let clock = TestClock::default();
                clock.set(1_000);
                ($open(clock.clone()), clock)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn append_assigns_positions_versions_and_times() {
                let (h, clock) = open();
                suite::append_assigns_positions_versions_and_times(h, clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expected_version_is_enforced() {
                suite::expected_version_is_enforced(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn malformed_appends_are_rejected_and_write_nothing() {
                suite::malformed_appends_are_rejected_and_write_nothing(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reappending_the_same_events_is_idempotent() {
                suite::reappending_the_same_events_is_idempotent(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn same_id_with_another_payload_is_a_conflict() {
                suite::same_id_with_another_payload_is_a_conflict(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_mixing_stored_and_new_ids_is_refused() {
                suite::a_batch_mixing_stored_and_new_ids_is_refused(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recorded_at_never_goes_backwards() {
                let (h, clock) = open();
                suite::recorded_at_never_goes_backwards(h, clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_page_by_position_and_version() {
                suite::reads_page_by_position_and_version(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn subscription_catches_up_then_follows_live() {
                suite::subscription_catches_up_then_follows_live(open().0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn closed_store_refuses_appends() {
                suite::closed_store_refuses_appends(open().0).await;
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

                #[test]
                fn concurrent_appends_keep_order_and_subscribers_see_each_event_once(
                    plans in prop::collection::vec(
                        prop::collection::vec((0u8..4, 1u8..4, any::<bool>()), 1..12),
                        1..9,
                    ),
                    subscriber_starts in prop::collection::vec(0u64..30, 0..4),
                ) {
                    runtime().block_on(suite::concurrent_appends_and_subscribers(
                        open().0,
                        plans,
                        subscriber_starts,
                    ));
                }
            }
        }
    };
}

conformance!(memory, open_memory);
conformance!(embedded, open_embedded);
