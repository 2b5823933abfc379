//! A real process appending under load, killed with SIGKILL at random moments.
//!
//! The test runs itself as the child: with `LEDGERSTACK_SIGKILL_CHILD` set to a data directory,
//! the same test function becomes an appender that prints one line per acknowledged event
//! (after the acknowledgement, so the parent only ever learns of acknowledged events). The
//! parent kills it at a random moment, reopens the log, and checks that every event it was told
//! about is there, at its position, with the chain intact; then starts the next child on the
//! same directory.
//!
//! SIGKILL keeps the page cache, so this cannot catch a missing fsync (the simulated power cuts
//! next to the storage code do that); it catches everything a process death can: torn writes,
//! half-built batches, an index or id filter left behind by a dead indexer, a held lock.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use engine::event::chain::ChainVerifier;
use engine::event::operations::AlertRaised;
use engine::event::{AlertEvent, EventBody, NewEvent, Position, StreamId};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::{EventStore, ExpectedVersion};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const CHILD_ENV: &str = "LEDGERSTACK_SIGKILL_CHILD";

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        // Small segments, so kills also land around rollovers.
        segment_bytes: 64 * 1024,
        ..EmbeddedOptions::default()
    }
}

fn event(label: String) -> NewEvent {
    NewEvent::new(EventBody::Alert(AlertEvent::Raise(AlertRaised {
        alert_id: Uuid::new_v4(),
        alert_type: 13,
        name: "ALERT.USAGE".into(),
        description: label,
        zone_id: None,
        pod_id: None,
        cluster_id: None,
        account_id: None,
    })))
}

/// The child: eight appenders on a few streams, forever, reporting each acknowledged event.
async fn child(dir: &str) {
    let store = EmbeddedStore::open(dir, options()).expect("child opens the log");
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    // libtest leaves "test <name> ... " unterminated on stdout: start a fresh line.
    println!("\nREADY");
    let mut tasks = Vec::new();
    for a in 0..8u128 {
        let store = store.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let stream = StreamId::new("load", Uuid::from_u128(a % 3)).unwrap();
                let batch: Vec<NewEvent> = (0..(i % 3 + 1))
                    .map(|k| event(format!("{a}/{i}/{k}")))
                    .collect();
                let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                let done = store
                    .append(&stream, ExpectedVersion::Any, batch)
                    .await
                    .expect("append");
                let mut out = out.lock().unwrap();
                for (id, p) in ids.iter().zip(&done.positions) {
                    writeln!(out, "ACK {id} {}", p.0).unwrap();
                }
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn sigkill_under_load_never_loses_an_acknowledged_event() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(&dir));
        return;
    }

    let rounds: usize = std::env::var("LEDGERSTACK_SIGKILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut acked: HashMap<Uuid, u64> = HashMap::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_under_load_never_loses_an_acknowledged_event",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.random_range(10..300));
        // Read acknowledgements on another thread; kill from this one once the child is ready.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut ready = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "READY" {
                    ready = true;
                    let _ = ready_tx.send(());
                } else if let Some(rest) = line.strip_prefix("ACK ") {
                    let (id, position) = rest.split_once(' ').unwrap();
                    seen.push((
                        Uuid::parse_str(id).unwrap(),
                        position.parse::<u64>().unwrap(),
                    ));
                }
            }
            (ready, seen)
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(kill_after);
        child.kill().unwrap();
        child.wait().unwrap();
        let (ready, seen) = reader.join().unwrap();
        assert!(ready, "round {round}: the child never opened the log");
        acked.extend(seen);

        let all = runtime.block_on(async {
            let store = EmbeddedStore::open(dir.path(), options()).expect("reopen after SIGKILL");
            let mut all = Vec::new();
            loop {
                let from = all
                    .last()
                    .map_or(Position::START, |e: &engine::event::RecordedEvent| {
                        e.envelope.position.next()
                    });
                let batch = store.read_all(from, 2000).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                all.extend(batch);
            }
            store.close();
            all
        });
        let mut verifier = ChainVerifier::new();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.envelope.position.0, i as u64 + 1);
            verifier
                .check(e)
                .unwrap_or_else(|v| panic!("round {round}: {v}"));
        }
        let by_id: HashMap<Uuid, u64> = all
            .iter()
            .map(|e| (e.envelope.id, e.envelope.position.0))
            .collect();
        for (id, position) in &acked {
            assert_eq!(
                by_id.get(id),
                Some(position),
                "round {round}: acknowledged event {id} lost"
            );
        }
    }
    assert!(
        acked.len() > 500,
        "too few acknowledged events to prove anything: {}",
        acked.len()
    );
}
