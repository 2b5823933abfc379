//! Disk counter readings (`vm.disk.stats.interval`): every interval of the server's clock, the
//! orchestrator appends a VOLUME.STATS reading of each running VM's disks, monotonic while the
//! VM runs; none while the setting is 0. Driven through real HTTP on a manual clock.

mod support;

use std::time::{Duration, Instant};

use api::app::ClockChoice;
use api::bootstrap::demo_id;
use engine::event::storage::VolumeCounterReading;
use engine::event::{EventBody, Position, VolumeEvent};
use support::Server;

async fn readings(server: &Server) -> Vec<VolumeCounterReading> {
    server
        .ctx
        .store
        .read_all(Position(1), usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match *e.body {
            EventBody::Volume(VolumeEvent::Stats(r)) => Some(r),
            _ => None,
        })
        .collect()
}

async fn ok(server: &Server, pairs: &[(&str, &str)]) -> serde_json::Value {
    let mut all = pairs.to_vec();
    all.push(("response", "json"));
    let (status, body) = server.signed_get(&all).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    body
}

/// Waits (the orchestrator looks at the clock every 250 ms) until `n` readings exist.
async fn wait_for_readings(server: &Server, n: usize) -> Vec<VolumeCounterReading> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = readings(server).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} readings: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_vms_disks_are_read_every_interval_of_the_server_clock() {
    let start = "2026-03-01T00:00:00Z".parse().unwrap();
    let server = Server::start_with(ClockChoice::Manual { start: Some(start) }, true).await;
    let template = server.featured_template().await;
    let (zone, small) = (demo_id("zone").to_string(), demo_id("small").to_string());
    let deployed = ok(
        &server,
        &[
            ("command", "deployVirtualMachine"),
            ("zoneid", &zone),
            ("templateid", &template),
            ("serviceofferingid", &small),
        ],
    )
    .await;
    let job = deployed["deployvirtualmachineresponse"]["jobid"]
        .as_str()
        .unwrap()
        .to_owned();
    let vm_id = deployed["deployvirtualmachineresponse"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, result) = server.wait_job(&job).await;
    assert_eq!(status, 1, "{result}");

    // Off by default (CloudStack's 0): a day passes without a reading.
    ok(&server, &[("command", "advanceClock"), ("days", "1")]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(readings(&server).await.is_empty());

    ok(
        &server,
        &[
            ("command", "updateConfiguration"),
            ("name", "vm.disk.stats.interval"),
            ("value", "300"),
        ],
    )
    .await;
    // The first look after the setting starts the interval; each hour after it is a reading.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ok(&server, &[("command", "advanceClock"), ("hours", "1")]).await;
    let first = wait_for_readings(&server, 1).await;
    ok(&server, &[("command", "advanceClock"), ("hours", "1")]).await;
    let second = wait_for_readings(&server, first.len() + 1).await;

    let vm: uuid::Uuid = vm_id.parse().unwrap();
    let root: Vec<&VolumeCounterReading> = second.iter().filter(|r| r.vm_id == vm).collect();
    assert!(root.len() >= 2, "{second:?}");
    let (a, b) = (root[0], root[root.len() - 1]);
    assert_eq!(a.volume_id, b.volume_id, "one device, its own counters");
    assert!(a.io_read > 0 && a.bytes_read > 0 && a.io_write > 0, "{a:?}");
    assert!(
        b.io_read > a.io_read && b.bytes_write > a.bytes_write,
        "counters grow with running time: {a:?} then {b:?}"
    );
    server.stop().await;
}
