//! The manual clock through real HTTP (`serve --clock manual`): `advanceClock` moves time
//! forward only, events are stamped with the clock's time, and each move is a CLOCK.ADVANCE
//! event. Also: nothing in the log holds the admin's secret key or password in clear.

mod support;

use api::app::ClockChoice;
use engine::event::Position;
use engine::time::Timestamp;
use support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advance_clock_moves_time_forward_and_records_each_move() {
    let start: Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
    let server = Server::start(ClockChoice::Manual { start: Some(start) }).await;

    let (status, json) = server
        .signed_get(&[
            ("command", "advanceClock"),
            ("days", "1"),
            ("hours", "2"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["advanceclockresponse"]["clock"]["to"],
        "2024-05-02T02:00:00+0000"
    );

    // Events are stamped with the manual clock's time.
    let (status, json) = server
        .signed_get(&[
            ("command", "createDomain"),
            ("name", "later"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["createdomainresponse"]["domain"]["created"],
        "2024-05-02T02:00:00+0000"
    );

    // Backwards is refused and appends nothing.
    let (status, json) = server
        .signed_get(&[
            ("command", "advanceClock"),
            ("to", "2024-05-01"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 431, "{json}");
    let (_, events) = server
        .signed_get(&[
            ("command", "listEvents"),
            ("type", "CLOCK.ADVANCE"),
            ("listall", "true"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(events["listeventsresponse"]["count"], 1, "{events}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_never_holds_the_admin_secret_or_password_in_clear() {
    let server = Server::start(ClockChoice::System).await;
    let kept = server.stop().await;
    let dir = kept.path().to_path_buf();
    let credentials = api::bootstrap::read_credentials(&dir).unwrap();

    // Every byte of every segment file, and every event's exported JSON line.
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(dir.join("log")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            raw.extend(std::fs::read(path).unwrap());
        }
    }
    let store = engine::store::embedded::EmbeddedStore::open(&dir, Default::default()).unwrap();
    let events = engine::store::EventStore::read_all(&store, Position(1), usize::MAX)
        .await
        .unwrap();
    assert!(!events.is_empty());
    let mut export = String::new();
    for event in &events {
        export.push_str(&event.to_json_line().unwrap());
    }
    store.close();
    for secret in [&credentials.secret_key, &credentials.password] {
        let needle = secret.as_bytes();
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "a secret is in the segment files"
        );
        assert!(
            !export.contains(secret.as_str()),
            "a secret is in the export"
        );
    }
    assert!(
        export.contains("REGISTER.USER.KEY"),
        "the key registration is in the log, sealed"
    );
}
