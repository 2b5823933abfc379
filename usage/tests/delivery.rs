//! Alert delivery: backoff, payload signing, the outbox folded from the log, and the worker
//! posting to a real loopback HTTP receiver that refuses the first attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::CompactString;
use engine::clock::{Clock, ManualClock};
use engine::event::billing::{AlertSinkDefined, AlertSinkKind, AlertSinkRemoved};
use engine::event::operations::{AlertRaised, AlertResolved};
use engine::event::{AlertDeliveryEvent, AlertEvent, EventBody, NewEvent, StreamId};
use engine::secrets::MasterKeys;
use engine::store::memory::MemoryStore;
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::ReadModels;
use projections::runner::{self, RunnerHandle, StartMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use usage::delivery::{self, Delivery, DeliveryState, backoff_ms, idempotency_key, signature};
use uuid::Uuid;

#[test]
fn backoff_doubles_from_the_base_up_to_the_cap() {
    assert_eq!(backoff_ms(1_000, 60_000, 1), 1_000);
    assert_eq!(backoff_ms(1_000, 60_000, 2), 2_000);
    assert_eq!(backoff_ms(1_000, 60_000, 3), 4_000);
    assert_eq!(backoff_ms(1_000, 60_000, 6), 32_000);
    assert_eq!(backoff_ms(1_000, 60_000, 7), 60_000);
    assert_eq!(backoff_ms(1_000, 60_000, u32::MAX), 60_000);
}

#[test]
fn signatures_are_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn idempotency_keys_depend_on_notification_and_sink_only() {
    let (n, s) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(idempotency_key(n, s), idempotency_key(n, s));
    assert_ne!(idempotency_key(n, s), idempotency_key(s, n));
    assert_eq!(idempotency_key(n, s).get_version_num(), 5);
}

fn sink(id: Uuid, url: &str, types: Vec<u16>, keys: &MasterKeys) -> EventBody {
    EventBody::AlertDelivery(AlertDeliveryEvent::SinkCreate(AlertSinkDefined {
        sink_id: id,
        name: CompactString::from(format!("sink-{id}")),
        kind: AlertSinkKind::Webhook,
        alert_types: types,
        url: Some(url.to_owned()),
        secret: Some(keys.seal(b"s3cret", id.as_bytes())),
        smtp_host: None,
        smtp_port: None,
        smtp_username: None,
        smtp_password: None,
        email_from: None,
        email_to: Vec::new(),
        max_attempts: 3,
    }))
}

fn raise(alert_id: Uuid, alert_type: u16) -> EventBody {
    EventBody::Alert(AlertEvent::Raise(AlertRaised {
        alert_id,
        alert_type,
        name: "ALERT.USAGE".into(),
        description: "usage job failed".into(),
        zone_id: None,
        pod_id: None,
        cluster_id: None,
        account_id: None,
    }))
}

struct Fixture {
    store: Arc<MemoryStore>,
    models: Arc<ReadModels>,
    runner: RunnerHandle,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let (models, runner) = runner::start(
        store.clone(),
        &dir.path().join("models"),
        StartMode::Resume,
        usage::model::read_models,
    )
    .await
    .unwrap();
    Fixture {
        store,
        models,
        runner,
        clock,
        _dir: dir,
    }
}

impl Fixture {
    async fn append(&self, body: EventBody) -> Uuid {
        let event = NewEvent::new(body);
        let id = event.id;
        let outcome = self
            .store
            .append(
                &StreamId::singleton("test").unwrap(),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .unwrap();
        self.models.wait_for(outcome.positions[0]).await.unwrap();
        id
    }
}

#[tokio::test]
async fn the_outbox_holds_matching_notifications_recorded_after_each_sink() {
    let f = fixture().await;
    let keys = MasterKeys::open_or_create(f._dir.path()).unwrap();
    let early = f.append(raise(Uuid::new_v4(), 13)).await;
    let (all, usage_only) = (Uuid::new_v4(), Uuid::new_v4());
    f.append(sink(all, "http://127.0.0.1:9/", vec![], &keys))
        .await;
    f.append(sink(usage_only, "http://127.0.0.1:9/", vec![1003], &keys))
        .await;
    let alert = Uuid::new_v4();
    let raised = f.append(raise(alert, 13)).await;
    let threshold = f.append(raise(Uuid::new_v4(), 1003)).await;
    let resolved = f
        .append(EventBody::Alert(AlertEvent::Resolve(AlertResolved {
            alert_id: alert,
            alert_type: 13,
        })))
        .await;
    {
        let state = f.models.read();
        let model = delivery::of(&state).unwrap();
        let mut pairs: Vec<(Uuid, Uuid)> = model
            .deliveries()
            .map(|d| (d.notification.notification_id, d.sink_id))
            .collect();
        pairs.sort();
        let mut expected = vec![
            (raised, all),
            (threshold, all),
            (threshold, usage_only),
            (resolved, all),
        ];
        expected.sort();
        assert_eq!(pairs, expected);
        assert!(!pairs.iter().any(|(n, _)| *n == early));
        let resolve = model
            .deliveries()
            .find(|d| d.notification.notification_id == resolved)
            .unwrap();
        assert_eq!(resolve.notification.description, "usage job failed");
        assert_eq!(model.due(f.clock.now(), 10).len(), 4);
    }
    f.append(EventBody::AlertDelivery(AlertDeliveryEvent::SinkDelete(
        AlertSinkRemoved {
            sink_id: all,
            name: "x".into(),
        },
    )))
    .await;
    {
        let state = f.models.read();
        let model = delivery::of(&state).unwrap();
        assert_eq!(model.deliveries().count(), 1);
    }
    f.runner.stop().await;
}

/// What the loopback receiver saw: (idempotency key, signature header, body).
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal HTTP/1.1 receiver: answers 503 to the first `refuse` requests, then 200.
async fn receiver(refuse: usize) -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let (head, body) = loop {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            count += 1;
            let status = if count <= refuse {
                "503 Service Unavailable"
            } else {
                out.lock().unwrap().push((
                    header("idempotency-key"),
                    header("x-ledgerstack-signature"),
                    body,
                ));
                "200 OK"
            };
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (port, seen)
}

#[tokio::test]
async fn the_worker_retries_with_backoff_and_records_each_attempt() {
    let f = fixture().await;
    let (port, seen) = receiver(1).await;
    let keys = MasterKeys::open_or_create(f._dir.path()).unwrap();
    let sink_id = Uuid::new_v4();
    f.append(sink(
        sink_id,
        &format!("http://127.0.0.1:{port}/hook"),
        vec![],
        &keys,
    ))
    .await;
    let notification = f.append(raise(Uuid::new_v4(), 13)).await;
    let worker = delivery::worker::start(
        f.store.clone(),
        f.models.clone(),
        Arc::new(f.clock.clone()),
        MasterKeys::open(f._dir.path()).unwrap(),
    );
    let key = idempotency_key(notification, sink_id);
    // The first attempt fails; the retry waits for the (default, 30 s) backoff.
    let failed = wait_for_delivery(&f.models, key, |d| d.attempts == 1).await;
    assert_eq!(failed.state, DeliveryState::Pending);
    assert_eq!(
        failed.next_attempt,
        Some(Timestamp::from_millis(f.clock.now().millis() + 30_000))
    );
    assert!(failed.last_error.unwrap().contains("503"));
    f.clock.advance_millis(30_000);
    let done = wait_for_delivery(&f.models, key, |d| d.state == DeliveryState::Delivered).await;
    assert_eq!(done.state, DeliveryState::Delivered);
    assert_eq!(done.attempts, 2);
    worker.stop().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (header_key, sig, body) = &seen[0];
    assert_eq!(header_key, &key.to_string());
    assert_eq!(sig, &signature(b"s3cret", body));
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["idempotencykey"], key.to_string());
    assert_eq!(payload["kind"], "raise");
    assert_eq!(payload["type"], 13);
    f.runner.stop().await;
}

/// What the loopback SMTP server accepted: (MAIL FROM, RCPT TOs, the message as sent).
type Mails = Arc<Mutex<Vec<(String, Vec<String>, String)>>>;

/// A minimal SMTP server (RFC 5321's commands lettre sends, no extensions): answers 451 to the
/// first `refuse` messages' DATA, then accepts.
async fn smtp_server(refuse: usize) -> (u16, Mails) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Mails = Arc::default();
    let out = mails.clone();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let (mut from, mut to) = (String::new(), Vec::new());
            while let Ok(Some(line)) = lines.next_line().await {
                let upper = line.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    b"250 test\r\n"
                } else if upper.starts_with("MAIL FROM:") {
                    from = line[10..].trim().to_owned();
                    b"250 OK\r\n"
                } else if upper.starts_with("RCPT TO:") {
                    to.push(line[8..].trim().to_owned());
                    b"250 OK\r\n"
                } else if upper == "DATA" {
                    write.write_all(b"354 go ahead\r\n").await.unwrap();
                    let mut message = String::new();
                    while let Ok(Some(data)) = lines.next_line().await {
                        if data == "." {
                            break;
                        }
                        message.push_str(&data);
                        message.push('\n');
                    }
                    count += 1;
                    if count <= refuse {
                        b"451 4.3.0 try again later\r\n"
                    } else {
                        out.lock()
                            .unwrap()
                            .push((from.clone(), to.clone(), message));
                        b"250 OK queued\r\n"
                    }
                } else if upper == "QUIT" {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                } else if upper == "RSET" || upper == "NOOP" {
                    b"250 OK\r\n"
                } else {
                    b"502 not implemented\r\n"
                };
                write.write_all(reply).await.unwrap();
            }
        }
    });
    (port, mails)
}

#[tokio::test]
async fn e_mail_sinks_send_through_smtp_with_the_key_in_the_headers() {
    let f = fixture().await;
    let (port, mails) = smtp_server(1).await;
    let sink_id = Uuid::new_v4();
    f.append(EventBody::AlertDelivery(AlertDeliveryEvent::SinkCreate(
        AlertSinkDefined {
            sink_id,
            name: "mail".into(),
            kind: AlertSinkKind::Email,
            alert_types: vec![],
            url: None,
            secret: None,
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            smtp_username: None,
            smtp_password: None,
            email_from: Some("Ledgerstack <alerts@ledgerstack.test>".into()),
            email_to: vec!["ops@example.org".into(), "oncall@example.org".into()],
            max_attempts: 3,
        },
    )))
    .await;
    let alert_id = Uuid::new_v4();
    let notification = f.append(raise(alert_id, 13)).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let worker = delivery::worker::start(
        f.store.clone(),
        f.models.clone(),
        Arc::new(f.clock.clone()),
        MasterKeys::open_or_create(keys_dir.path()).unwrap(),
    );
    let key = idempotency_key(notification, sink_id);
    let failed = wait_for_delivery(&f.models, key, |d| d.attempts == 1).await;
    assert_eq!(failed.state, DeliveryState::Pending);
    assert!(failed.last_error.unwrap().contains("451"));
    f.clock.advance_millis(30_000);
    let done = wait_for_delivery(&f.models, key, |d| d.state == DeliveryState::Delivered).await;
    assert_eq!(done.state, DeliveryState::Delivered);
    worker.stop().await;
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let (from, to, message) = &mails[0];
    assert_eq!(from, "<alerts@ledgerstack.test>");
    assert_eq!(to, &["<ops@example.org>", "<oncall@example.org>"]);
    let header = |name: &str| {
        message
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("X-Ledgerstack-Idempotency-Key"), key.to_string());
    assert_eq!(header("Message-ID"), format!("<{key}@alerts.ledgerstack>"));
    assert_eq!(header("Subject"), "ALERT.USAGE: usage job failed");
    // Dated by the server's (here manual) clock at the attempt, not the wall clock.
    assert_eq!(header("Date"), "Fri, 15 Jan 2027 08:00:30 +0000");
    let (_, body) = message.split_once("\n\n").unwrap();
    assert!(body.starts_with(&format!("idempotencykey: {key}\nnotificationid: {notification}\nkind: raise\nalertid: {alert_id}\ntype: 13\nname: ALERT.USAGE\n")));
    assert!(body.contains("accountid: -\nzoneid: -\n"), "{message}");
    f.runner.stop().await;
}

/// The delivery with idempotency key `key` once `done` holds for it (the worker runs on its own
/// task; up to 10 s of polling, then it is returned as it is, for the assertions to report).
async fn wait_for_delivery(
    models: &ReadModels,
    key: Uuid,
    done: impl Fn(&Delivery) -> bool,
) -> Delivery {
    let current = || {
        let state = models.read();
        delivery::of(&state)
            .unwrap()
            .deliveries()
            .find(|d| d.key == key)
            .unwrap()
            .clone()
    };
    for _ in 0..200 {
        let delivery = current();
        if done(&delivery) {
            return delivery;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    current()
}
