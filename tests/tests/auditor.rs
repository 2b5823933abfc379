//! An auditor verifies the log with nothing of Ledgerstack's: the events the embedded store
//! wrote, as JSON lines, checked by an independent Python program (`tests/python/verify_chain.py`:
//! a JSON parser and SHA-256). Tampering with one line is caught at the right line.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::event::chain::ChainVerifier;
use engine::event::common::{HexBytes, KeyValue, SealedSecret};
use engine::event::identity::UserKeysRegistered;
use engine::event::infrastructure::{ConfigScope, ConfigurationChanged, ResourceTags};
use engine::event::operations::AlertRaised;
use engine::event::vm::{VmFacts, VmStarted};
use engine::event::{
    Actor, AlertEvent, ConfigurationEvent, EventBody, NewEvent, Position, RecordedEvent,
    RegisterEvent, StreamId, TagsEvent, VmEvent,
};
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use uuid::Uuid;

fn python() -> String {
    std::env::var("LEDGERSTACK_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn verifier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/verify_chain.py")
}

/// Runs the Python verifier on `lines`; returns (succeeded, what it printed).
fn audit(dir: &Path, lines: &[String]) -> (bool, String) {
    let file = dir.join("export.jsonl");
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let output = Command::new(python())
        .arg(verifier())
        .arg(&file)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success(), text)
}

fn events(n: u128) -> Vec<NewEvent> {
    let id = |k: u128| Uuid::from_u128(n * 1000 + k);
    let user = Actor::user(id(1), id(2));
    vec![
        NewEvent::new(EventBody::Vm(VmEvent::Start(VmStarted {
            vm: VmFacts {
                vm_id: id(3),
                name: "web".into(),
                instance_name: "i-2-3-VM".into(),
                display_name: Some("Serveur « web » — prod".into()),
                account_id: id(2),
                domain_id: id(4),
                zone_id: id(5),
                service_offering_id: id(6),
                template_id: id(7),
                hypervisor: "Simulator".into(),
                cpu_number: 2,
                cpu_speed: 1000,
                memory: 2048,
            },
            host_id: None,
        })))
        .by(user),
        NewEvent::new(EventBody::Register(RegisterEvent::UserKey(
            UserKeysRegistered {
                user_id: id(1),
                account_id: id(2),
                domain_id: id(4),
                api_key: "key-with-~-and-[brackets]".into(),
                secret_key: SealedSecret {
                    key_id: "mk-1".into(),
                    nonce: HexBytes(vec![1; 12]),
                    ciphertext: HexBytes(vec![0xff, 0, 0x7f]),
                },
            },
        )))
        .by(user),
        NewEvent::new(EventBody::Tags(TagsEvent::Create(ResourceTags {
            resource_type: "UserVm".into(),
            resource_ids: vec![id(3)],
            tags: vec![KeyValue {
                key: "note".into(),
                value: "quote \" backslash \\ tab \t newline \n emoji 🦀".into(),
            }],
            account_id: id(2),
            domain_id: id(4),
        })))
        .occurred_at(Timestamp::from_millis(1_700_000_000_000)),
        NewEvent::new(EventBody::Configuration(ConfigurationEvent::ValueEdit(
            ConfigurationChanged {
                name: "usage.aggregation.timezone".into(),
                value: None,
                previous_value: Some("America/New_York".into()),
                scope: ConfigScope::Global,
                scope_id: None,
            },
        ))),
        NewEvent::new(EventBody::Alert(AlertEvent::Raise(AlertRaised {
            alert_id: id(8),
            alert_type: 13,
            name: "ALERT.USAGE".into(),
            description: format!("lagging {n}"),
            zone_id: None,
            pod_id: None,
            cluster_id: None,
            account_id: None,
        })))
        .caused_by(id(9)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_verifier_accepts_the_log_and_catches_each_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    for n in 0..8 {
        let stream = StreamId::new("audit", Uuid::from_u128(n % 3)).unwrap();
        store
            .append(&stream, ExpectedVersion::Any, events(n))
            .await
            .unwrap();
    }
    let all: Vec<RecordedEvent> = store.read_all(Position::START, 1000).await.unwrap();
    store.close();
    assert_eq!(all.len(), 40);
    let mut chain = ChainVerifier::new();
    for e in &all {
        chain.check(e).unwrap();
    }
    let lines: Vec<String> = all.iter().map(|e| e.to_json_line().unwrap()).collect();

    let (ok, said) = audit(dir.path(), &lines);
    assert!(ok, "verifier refused a genuine log: {said}");
    assert_eq!(said, format!("ok: 40 events, head {}", chain.head()));

    // One value changed: that line still parses, but the next line's prev_hash no longer fits.
    let mut changed = lines.clone();
    changed[10] = changed[10].replace("\"cpu_number\":2", "\"cpu_number\":3");
    assert_ne!(changed[10], lines[10]);
    assert_eq!(
        audit(dir.path(), &changed),
        (
            false,
            "line 12: prev_hash does not match the previous line's hash".into()
        )
    );

    // One line deleted: the line after it no longer follows.
    let mut deleted = lines.clone();
    deleted.remove(20);
    assert_eq!(
        audit(dir.path(), &deleted).1,
        "line 21: prev_hash does not match the previous line's hash"
    );

    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(30, 31);
    assert_eq!(
        audit(dir.path(), &swapped).1,
        "line 31: prev_hash does not match the previous line's hash"
    );

    // Re-formatted (still the same JSON value): the bytes that were hashed are gone.
    let mut spaced = lines.clone();
    spaced[5] = spaced[5].replacen(",", ", ", 1);
    assert_eq!(
        audit(dir.path(), &spaced).1,
        "line 6: not in canonical form"
    );
}
