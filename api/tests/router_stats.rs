//! Router traffic counters (`router.stats.interval`): every interval of the server's clock the
//! orchestrator appends a ROUTER.STATS reading per running router, monotonic while it runs,
//! starting again from zero after `rebootRouter`, and none while the router is stopped.
//! Driven through real HTTP on a manual clock.

mod support;

use std::time::{Duration, Instant};

use api::app::ClockChoice;
use api::bootstrap::demo_id;
use engine::event::vm::NetworkCounterReading;
use engine::event::{EventBody, Position, RouterEvent};
use serde_json::Value;
use support::Server;
use uuid::Uuid;

async fn readings(server: &Server, router: Uuid) -> Vec<NetworkCounterReading> {
    server
        .ctx
        .store
        .read_all(Position(1), usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match *e.body {
            EventBody::Router(RouterEvent::Stats(r)) if r.router_id == router => Some(r),
            _ => None,
        })
        .collect()
}

async fn ok(server: &Server, pairs: &[(&str, &str)]) -> Value {
    let mut all = pairs.to_vec();
    all.push(("response", "json"));
    let (status, body) = server.signed_get(&all).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    body.as_object()
        .and_then(|o| o.values().next())
        .unwrap()
        .clone()
}

/// Runs an async command to its successful end.
async fn job(server: &Server, pairs: &[(&str, &str)]) -> Value {
    let submitted = ok(server, pairs).await;
    let job = submitted["jobid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = ok(
            server,
            &[("command", "queryAsyncJobResult"), ("jobid", &job)],
        )
        .await;
        match status["jobstatus"].as_u64() {
            Some(1) => return status["jobresult"].clone(),
            Some(2) => panic!("{pairs:?} failed: {status}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Advances the clock an hour and waits (the orchestrator looks every 250 ms) until the
/// router has `n` readings.
async fn hour_later(server: &Server, router: Uuid, n: usize) -> Vec<NetworkCounterReading> {
    ok(server, &[("command", "advanceClock"), ("hours", "1")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = readings(server, router).await;
        if found.len() >= n {
            return found;
        }
        assert!(Instant::now() < deadline, "only {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_counters_are_read_every_interval_and_reset_by_a_reboot() {
    let start = "2026-03-01T00:00:00Z".parse().unwrap();
    let server = Server::start_with(ClockChoice::Manual { start: Some(start) }, true).await;
    let template = ok(
        &server,
        &[("command", "listTemplates"), ("templatefilter", "featured")],
    )
    .await["template"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (zone, small) = (demo_id("zone").to_string(), demo_id("small").to_string());
    let vm = job(
        &server,
        &[
            ("command", "deployVirtualMachine"),
            ("zoneid", &zone),
            ("templateid", &template),
            ("serviceofferingid", &small),
        ],
    )
    .await;
    let network = vm["virtualmachine"]["nic"][0]["networkid"]
        .as_str()
        .unwrap()
        .to_owned();
    let routers = ok(
        &server,
        &[("command", "listRouters"), ("networkid", &network)],
    )
    .await;
    let router_id = routers["router"][0]["id"].as_str().unwrap().to_owned();
    let router: Uuid = router_id.parse().unwrap();

    // CloudStack's default interval, 300 s: the first look starts it, each hour is a reading.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let first = hour_later(&server, router, 1).await;
    let second = hour_later(&server, router, first.len() + 1).await;
    let (a, b) = (&second[second.len() - 2], &second[second.len() - 1]);
    assert_eq!(b.network_id.to_string(), network);
    assert!(a.bytes_sent > 0 && a.bytes_received > 0, "{a:?}");
    assert!(
        b.bytes_sent > a.bytes_sent && b.bytes_received > a.bytes_received,
        "counters grow while the router runs: {a:?} then {b:?}"
    );

    // A reboot restarts the counters: the next reading is lower (usage sees a reset).
    job(&server, &[("command", "rebootRouter"), ("id", &router_id)]).await;
    let after = hour_later(&server, router, second.len() + 1).await;
    let c = after.last().unwrap();
    assert!(
        c.bytes_sent < b.bytes_sent,
        "a reboot resets the counters: {b:?} then {c:?}"
    );

    // A stopped router is not read.
    job(&server, &[("command", "stopRouter"), ("id", &router_id)]).await;
    let stopped = readings(&server, router).await.len();
    ok(&server, &[("command", "advanceClock"), ("hours", "2")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(readings(&server, router).await.len(), stopped);
    server.stop().await;
}
