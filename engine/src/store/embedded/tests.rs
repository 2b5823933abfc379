//! Crash-consistency tests of the embedded store, beside the code they hold to account.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::format::{self, FLAG_COMMIT, SEGMENT_HEADER_LEN, classify_tail};
use super::sim_fs::{PowerCut, SimFs};
use super::{EmbeddedOptions, EmbeddedStore, index_dir, log_dir};
use crate::clock::ManualClock;
use crate::event::chain::ChainVerifier;
use crate::event::operations::AlertRaised;
use crate::event::{AlertEvent, EventBody, NewEvent, Position, RecordedEvent, StreamId, samples};
use crate::store::sequencer::{PreparedEvent, SequencedEvent};
use crate::store::{EventStore, ExpectedVersion, StoreError};
use crate::time::Timestamp;

fn options(segment_bytes: u64) -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes,
        clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_772_946_000_000))),
    }
}

fn stream(n: u128) -> StreamId {
    StreamId::new("crash", Uuid::from_u128(n)).unwrap()
}

fn event(label: String) -> NewEvent {
    NewEvent::new(EventBody::Alert(AlertEvent::Raise(AlertRaised {
        alert_id: Uuid::from_u128(7),
        alert_type: 20,
        name: "ALERT.USAGE.RESULT".into(),
        description: label,
        zone_id: None,
        pod_id: None,
        cluster_id: None,
        account_id: None,
    })))
}

async fn read_everything(store: &EmbeddedStore) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = all
            .last()
            .map_or(Position::START, |e| e.envelope.position.next());
        let batch = store.read_all(from, 500).await?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

/// Every acknowledged event is at its acknowledged position, positions run 1..=n, the hash
/// chain and stream versions verify, and every record decodes (no partial record is visible).
async fn assert_log_holds(store: &EmbeddedStore, acked: &HashMap<Uuid, Position>) -> usize {
    let all = read_everything(store).await.expect("log reads back");
    let mut verifier = ChainVerifier::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.envelope.position, Position(i as u64 + 1));
        verifier.check(e).expect("chain verifies");
    }
    let by_id: HashMap<Uuid, Position> = all
        .iter()
        .map(|e| (e.envelope.id, e.envelope.position))
        .collect();
    for (id, position) in acked {
        assert_eq!(
            by_id.get(id),
            Some(position),
            "acknowledged event {id} lost or moved"
        );
    }
    all.len()
}

/// Acknowledged appends: the batch as sent, and where the store put it.
type Acked = Vec<(StreamId, Vec<NewEvent>, Vec<Position>)>;

/// Appenders that run until the store fails them (the power cut), occasionally re-sending an
/// append they already had acknowledged, which must be deduplicated to the same positions.
async fn append_until_failure(store: &EmbeddedStore, seed: u64, appenders: usize) -> Acked {
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let store = store.clone();
        let mut rng = StdRng::seed_from_u64(seed * 31 + a as u64);
        tasks.push(tokio::spawn(async move {
            let mut acked: Acked = Vec::new();
            for i in 0..400 {
                if !acked.is_empty() && rng.random_ratio(1, 8) {
                    let (s, batch, positions) = &acked[rng.random_range(0..acked.len())];
                    match store.append(s, ExpectedVersion::Any, batch.clone()).await {
                        Ok(out) => {
                            assert!(out.deduplicated, "re-sent append was appended again");
                            assert_eq!(&out.positions, positions);
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                let s = stream(rng.random_range(0..3));
                let batch: Vec<NewEvent> = (0..rng.random_range(1..4))
                    .map(|k| event(format!("{seed}/{a}/{i}/{k}")))
                    .collect();
                match store.append(&s, ExpectedVersion::Any, batch.clone()).await {
                    Ok(out) => acked.push((s, batch, out.positions)),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("appender panicked"));
    }
    acked
}

fn open_sim(sim: &SimFs, index: &Path) -> Result<EmbeddedStore, StoreError> {
    EmbeddedStore::open_on(Arc::new(sim.clone()), index, options(2048), None)
}

/// (1) Power cuts at random points under concurrent appends: after every reboot, whatever the
/// disk kept of unsynced writes, every acknowledged event is present and intact, the chain
/// verifies, and the log accepts new appends. Several lives per log, some cut during recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_at_random_points_never_lose_an_acknowledged_event() {
    let iterations: u64 = std::env::var("LEDGERSTACK_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut total_acked = 0;
    for seed in 0..iterations {
        let mut rng = StdRng::seed_from_u64(seed);
        let sim = SimFs::new();
        let index = tempfile::tempdir().unwrap();
        let mut acked: HashMap<Uuid, Position> = HashMap::new();
        for life in 0..4 {
            if rng.random_ratio(1, 5) {
                // Cut the power during recovery itself.
                sim.cut_power_after(rng.random_range(0..6));
            }
            let store = match open_sim(&sim, index.path()) {
                Ok(store) => store,
                Err(e) => {
                    assert!(sim.is_off(), "open failed with the power on: {e}");
                    sim.reboot(PowerCut::KeepPrefix, &mut rng);
                    open_sim(&sim, index.path()).expect("open after a cut during recovery")
                }
            };
            assert_log_holds(&store, &acked).await;
            sim.cut_power_after(rng.random_range(0..150));
            for (_, batch, positions) in append_until_failure(&store, seed * 10 + life, 4).await {
                for (e, p) in batch.iter().zip(positions) {
                    acked.insert(e.id, p);
                }
            }
            store.close();
            let cut = [
                PowerCut::DropUnsynced,
                PowerCut::KeepPrefix,
                PowerCut::ZeroFill,
            ][rng.random_range(0..3)];
            sim.reboot(cut, &mut rng);
        }
        let store = open_sim(&sim, index.path()).unwrap();
        assert_log_holds(&store, &acked).await;
        store
            .append(
                &stream(9),
                ExpectedVersion::Any,
                vec![event("after".into())],
            )
            .await
            .expect("log accepts appends after recovery");
        store.close();
        total_acked += acked.len();
    }
    assert!(
        total_acked > 1000,
        "too little was acknowledged to prove anything: {total_acked}"
    );
}

/// Writes `appends` sequential appends (one group commit each) of 1..=3 events into a fresh
/// store in `dir`; returns the number of events in each append.
async fn write_sequential(dir: &Path, appends: usize, segment_bytes: u64) -> Vec<usize> {
    let store = EmbeddedStore::open(dir, options(segment_bytes)).unwrap();
    let mut sizes = Vec::new();
    for i in 0..appends {
        let size = i % 3 + 1;
        let batch = (0..size).map(|k| event(format!("{i}/{k}"))).collect();
        store
            .append(&stream(i as u128 % 2), ExpectedVersion::Any, batch)
            .await
            .unwrap();
        sizes.push(size);
    }
    store.close();
    sizes
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(log_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    names.sort();
    names.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// (2a) Cutting the last segment at every offset of its final records: the store opens, holds
/// exactly the appends whose group commit lies wholly before the cut, and accepts new appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_at_every_offset_of_the_final_records_keeps_whole_commits() {
    let original = tempfile::tempdir().unwrap();
    let sizes = write_sequential(original.path(), 12, 1 << 20).await;
    let data = std::fs::read(last_segment(original.path())).unwrap();
    let (frames, _) = classify_tail(&data);
    assert_eq!(frames.len(), sizes.iter().sum::<usize>());
    // Group commits end where a frame carries the commit flag.
    let commit_ends: Vec<u64> = frames
        .iter()
        .filter(|f| f.commit)
        .map(|f| f.offset + f.len as u64)
        .collect();
    assert_eq!(commit_ends.len(), sizes.len());
    let final_start = frames[frames.len() - 5].offset;

    for cut in final_start..data.len() as u64 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&log_dir(original.path()), &log_dir(dir.path()));
        // Keep the original (now ahead) index for some cuts: it must be found out and rebuilt.
        if cut % 97 == 0 {
            copy_dir(&index_dir(original.path()), &index_dir(dir.path()));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(last_segment(dir.path()))
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        let store = EmbeddedStore::open(dir.path(), options(1 << 20)).unwrap();
        let whole = commit_ends.iter().filter(|&&end| end <= cut).count();
        let expected: usize = sizes[..whole].iter().sum();
        let held = assert_log_holds(&store, &HashMap::new()).await;
        assert_eq!(held, expected, "cut at byte {cut}");
        assert_eq!(
            store.stream_version(&stream(0)).await.unwrap()
                + store.stream_version(&stream(1)).await.unwrap(),
            expected as u64,
            "index agrees with the cut log (cut at byte {cut})"
        );
        store
            .append(
                &stream(5),
                ExpectedVersion::Any,
                vec![event("after".into())],
            )
            .await
            .unwrap();
        store.close();
    }
}

/// (2b) Any single bit flipped in an acknowledged record makes open fail, naming the segment
/// and the record's offset; nothing is truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flips_in_acknowledged_records_make_open_fail_at_the_record() {
    let dir = tempfile::tempdir().unwrap();
    write_sequential(dir.path(), 9, 1 << 20).await;
    let path = last_segment(dir.path());
    let data = std::fs::read(&path).unwrap();
    let (frames, _) = classify_tail(&data);
    let mut rng = StdRng::seed_from_u64(7);
    for frame in &frames[frames.len() - 4..] {
        for byte in frame.offset..frame.offset + frame.len as u64 {
            let mut damaged = data.clone();
            damaged[byte as usize] ^= 1 << rng.random_range(0..8);
            std::fs::write(&path, &damaged).unwrap();
            match EmbeddedStore::open(dir.path(), options(1 << 20)) {
                Err(StoreError::Corrupt {
                    path: p, offset, ..
                }) => {
                    assert_eq!(p, path);
                    assert_eq!(offset, frame.offset, "flip in byte {byte}");
                }
                Err(other) => panic!("flip in byte {byte}: unexpected error {other}"),
                Ok(_) => panic!("flip in byte {byte} went unnoticed"),
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                damaged,
                "recovery changed a damaged log"
            );
        }
    }
    std::fs::write(&path, &data).unwrap();
    let store = EmbeddedStore::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(assert_log_holds(&store, &HashMap::new()).await, 18);
}

/// Damage in a sealed (not last) segment is not scanned for at open, but any read that reaches
/// it (a query, or re-indexing at open) fails with an error naming the segment and record; it is
/// never skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_sealed_segment_is_reported_when_read() {
    let dir = tempfile::tempdir().unwrap();
    write_sequential(dir.path(), 30, 1024).await;
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() > 3, "expected several segments");
    let first = &segments[0];
    let mut data = std::fs::read(first).unwrap();
    let (frames, _) = classify_tail(&data);
    let target = &frames[2];
    data[(target.offset + 20) as usize] ^= 0x04;
    std::fs::write(first, &data).unwrap();

    // If the background indexer had not reached that segment before the store closed, open
    // re-indexes it and meets the damage there; otherwise the first read does. Either way the
    // error names the segment and the record.
    let outcome = match EmbeddedStore::open(dir.path(), options(1024)) {
        Ok(store) => read_everything(&store).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match outcome {
        Err(StoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(&path, first);
            assert_eq!(offset, target.offset);
        }
        other => panic!("damage not reported: {other:?}"),
    }
}

async fn fill(
    store: &EmbeddedStore,
    from: usize,
    to: usize,
) -> Vec<(StreamId, NewEvent, Position)> {
    let mut out = Vec::new();
    for i in from..to {
        let s = stream(i as u128 % 4);
        let e = event(format!("fill {i}"));
        let done = store
            .append(&s, ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
        out.push((s, e, done.positions[0]));
    }
    out
}

/// Checks that reads by stream, stream versions and idempotency all agree with the log.
async fn assert_index_serves(store: &EmbeddedStore, appended: &[(StreamId, NewEvent, Position)]) {
    let all = read_everything(store).await.unwrap();
    for n in 0..4 {
        let s = stream(n);
        let expected: Vec<Uuid> = all
            .iter()
            .filter(|e| e.envelope.stream == s)
            .map(|e| e.envelope.id)
            .collect();
        let by_stream: Vec<Uuid> = store
            .read_stream(&s, 1, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope.id)
            .collect();
        assert_eq!(by_stream, expected, "read_stream of {s}");
        assert_eq!(
            store.stream_version(&s).await.unwrap(),
            expected.len() as u64
        );
    }
    for (s, e, position) in appended {
        let again = store
            .append(s, ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
        assert!(
            again.deduplicated,
            "re-append of {} was not recognised",
            e.id
        );
        assert_eq!(again.positions, vec![*position]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_and_id_filter_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    let appended = fill(&store, 0, 300).await;
    store.close();
    std::fs::remove_dir_all(index_dir(dir.path())).unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    assert_index_serves(&store, &appended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_behind_the_log_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    let mut appended = fill(&store, 0, 100).await;
    store.close();
    let behind = tempfile::tempdir().unwrap();
    copy_dir(&index_dir(dir.path()), behind.path());
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    appended.extend(fill(&store, 100, 250).await);
    store.close();
    std::fs::remove_dir_all(index_dir(dir.path())).unwrap();
    copy_dir(behind.path(), &index_dir(dir.path()));
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    assert_index_serves(&store, &appended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_the_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    let appended = fill(&store, 0, 120).await;
    store.close();
    let earlier_log = tempfile::tempdir().unwrap();
    copy_dir(&log_dir(dir.path()), earlier_log.path());
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    fill(&store, 120, 200).await;
    store.close();
    // The log goes back to 120 events (restored from a backup); the index still knows 200.
    std::fs::remove_dir_all(log_dir(dir.path())).unwrap();
    copy_dir(earlier_log.path(), &log_dir(dir.path()));
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    assert_eq!(store.head().await.unwrap(), Position(120));
    assert_index_serves(&store, &appended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_id_filter_is_rebuilt_and_duplicates_are_still_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    let appended = fill(&store, 0, 150).await;
    store.close();
    let filter = index_dir(dir.path()).join("ids.filter");
    let mut bytes = std::fs::read(&filter).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&filter, bytes).unwrap();
    let store = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    assert_index_serves(&store, &appended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path(), options(2048)).unwrap();
    match EmbeddedStore::open(dir.path(), options(2048)) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("second open was not refused: {:?}", other.err()),
    }
}

/// The record bodies of every event type, as a frozen file: any change to the binary form of an
/// envelope or payload fails this test. Regenerate with `UPDATE_GOLDEN=1` only together with a
/// format version bump or a new event type (see `docs/events.md`).
#[test]
fn record_bodies_match_the_golden_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/records-v1.txt");
    let mut lines = String::new();
    for event in samples::recorded_events() {
        let mut payload = Vec::new();
        event.body.encode_payload(&mut payload).unwrap();
        let sequenced = SequencedEvent {
            envelope: event.envelope.clone(),
            prepared: PreparedEvent {
                new: NewEvent::with_id(event.envelope.id, (*event.body).clone()),
                event_type: event.body.event_type(),
                schema: event.envelope.schema,
                payload: payload.into(),
                data_json: String::new(),
            },
        };
        let mut body = Vec::new();
        format::encode_body(&sequenced, &mut body).unwrap();
        assert_eq!(format::decode_event(&body).unwrap(), event, "round trip");
        lines.push_str(&format!(
            "{} {}\n",
            event.body.event_type(),
            hex::encode(&body)
        ));
    }
    let mut frame = super::format::SegmentHeader { first_position: 1 }
        .encode()
        .to_vec();
    format::encode_frame(b"frame", FLAG_COMMIT, &mut frame);
    lines.push_str(&format!("SEGMENT {}\n", hex::encode(&frame)));
    assert_eq!(frame.len() as u64, SEGMENT_HEADER_LEN + 5 + 14);

    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &lines).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .expect("golden file missing: run once with UPDATE_GOLDEN=1 and commit it");
    for (expected, actual) in golden.lines().zip(lines.lines()) {
        assert_eq!(actual, expected, "binary form changed");
    }
    assert_eq!(golden.lines().count(), lines.lines().count());

    // And the frozen bytes still decode into the same events.
    for (line, event) in golden.lines().zip(samples::recorded_events()) {
        let (_, hex_body) = line.split_once(' ').unwrap();
        let decoded = format::decode_event(&hex::decode(hex_body).unwrap()).unwrap();
        assert_eq!(decoded, event);
    }
}
