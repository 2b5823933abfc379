//! Invariants that span resources, under many concurrent requests over real HTTP (DESIGN.md
//! invariant 8): concurrent deploys never overbook a host, never exceed an account's limit,
//! never hand out one guest address twice; and a refused deploy appends nothing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use api::bootstrap::demo_id;
use serde_json::Value;
use support::Server;

/// Fires `n` deploys at once; returns the error codes of the refused ones and the job ids of
/// the accepted ones.
async fn concurrent_deploys(
    server: &Arc<Server>,
    n: usize,
    offering: &str,
    extra: &[(&'static str, String)],
) -> (Vec<u64>, Vec<String>) {
    let template = server.featured_template().await;
    let zone = demo_id("zone").to_string();
    let mut tasks = Vec::new();
    for i in 0..n {
        let server = server.clone();
        let (template, zone, offering) = (template.clone(), zone.clone(), offering.to_owned());
        let extra = extra.to_vec();
        tasks.push(tokio::spawn(async move {
            let name = format!("race-{i}");
            let mut pairs: Vec<(&str, &str)> = vec![
                ("command", "deployVirtualMachine"),
                ("zoneid", &zone),
                ("templateid", &template),
                ("serviceofferingid", &offering),
                ("name", &name),
                ("response", "json"),
            ];
            for (k, v) in &extra {
                pairs.push((k, v));
            }
            server.signed_get(&pairs).await
        }));
    }
    let mut refused = Vec::new();
    let mut jobs = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        let reply = &body["deployvirtualmachineresponse"];
        if status == 200 {
            jobs.push(reply["jobid"].as_str().unwrap().to_owned());
        } else {
            refused.push(reply["errorcode"].as_u64().unwrap());
        }
    }
    (refused, jobs)
}

async fn list_vms(server: &Server, extra: &[(&str, &str)]) -> Vec<Value> {
    let mut pairs = vec![
        ("command", "listVirtualMachines"),
        ("listall", "true"),
        ("response", "json"),
    ];
    pairs.extend_from_slice(extra);
    let (_, body) = server.signed_get(&pairs).await;
    body["listvirtualmachinesresponse"]["virtualmachine"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_never_overbook_a_host_nor_share_an_address() {
    let server = Arc::new(Server::start_demo().await);
    // Each demo host has 8 × 2000 MHz and 16384 MiB; a medium VM takes 2 × 2000 MHz and
    // 2048 MiB, so four fit on a host by CPU: eight in all.
    let (_, hosts) = server
        .signed_get(&[("command", "listHosts"), ("response", "json")])
        .await;
    let hosts = hosts["listhostsresponse"]["host"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    let (refused, jobs) =
        concurrent_deploys(&server, 24, &demo_id("medium").to_string(), &[]).await;
    assert!(refused.iter().all(|code| *code == 533), "{refused:?}");
    assert_eq!(
        jobs.len(),
        8,
        "exactly the capacity is accepted; refused: {refused:?}"
    );
    for job in &jobs {
        let (status, result) = server.wait_job(job).await;
        assert_eq!(status, 1, "{result}");
    }
    let vms = list_vms(&server, &[]).await;
    assert_eq!(vms.len(), 8, "a refused deploy leaves no VM behind");
    let mut per_host: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut addresses = BTreeSet::new();
    for vm in &vms {
        assert_eq!(vm["state"], "Running", "{vm}");
        let used = per_host
            .entry(vm["hostid"].as_str().unwrap().to_owned())
            .or_default();
        used.0 += vm["cpunumber"].as_u64().unwrap() * vm["cpuspeed"].as_u64().unwrap();
        used.1 += vm["memory"].as_u64().unwrap();
        let ip = vm["nic"][0]["ipaddress"].as_str().unwrap().to_owned();
        assert!(
            addresses.insert(ip.clone()),
            "address {ip} handed out twice"
        );
    }
    for host in &hosts {
        let id = host["id"].as_str().unwrap();
        let (cpu, memory) = per_host.get(id).copied().unwrap_or_default();
        let cpu_total = host["cpunumber"].as_u64().unwrap() * host["cpuspeed"].as_u64().unwrap();
        let memory_total_mib = host["memorytotal"].as_u64().unwrap() / (1024 * 1024);
        assert!(
            cpu <= cpu_total,
            "host {id}: {cpu} MHz allocated of {cpu_total}"
        );
        assert!(
            memory <= memory_total_mib,
            "host {id}: {memory} MiB of {memory_total_mib}"
        );
    }
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_never_exceed_an_account_limit() {
    let server = Arc::new(Server::start_demo().await);
    let (_, root) = server
        .signed_get(&[
            ("command", "listDomains"),
            ("name", "ROOT"),
            ("response", "json"),
        ])
        .await;
    let domain = root["listdomainsresponse"]["domain"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = server
        .signed_get(&[
            ("command", "createAccount"),
            ("accounttype", "0"),
            ("username", "racer"),
            ("account", "racer"),
            ("password", "s3cret-Passw0rd"),
            ("email", "racer@example.com"),
            ("firstname", "Race"),
            ("lastname", "Condition"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .signed_get(&[
            ("command", "updateResourceLimit"),
            ("resourcetype", "0"),
            ("max", "3"),
            ("account", "racer"),
            ("domainid", &domain),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let owner = [
        ("account", "racer".to_owned()),
        ("domainid", domain.clone()),
    ];
    let (refused, jobs) =
        concurrent_deploys(&server, 12, &demo_id("small").to_string(), &owner).await;
    assert_eq!(
        jobs.len(),
        3,
        "exactly the limit is accepted; refused: {refused:?}"
    );
    assert!(refused.iter().all(|code| *code == 532), "{refused:?}");
    for job in &jobs {
        assert_eq!(server.wait_job(job).await.0, 1);
    }
    let vms = list_vms(&server, &[("account", "racer"), ("domainid", &domain)]).await;
    assert_eq!(vms.len(), 3);
    // The refused deploys appended nothing: three VM.CREATE, three root volumes in the log.
    for kind in ["VM.CREATE", "VOLUME.CREATE"] {
        let (_, body) = server
            .signed_get(&[
                ("command", "listEvents"),
                ("type", kind),
                ("listall", "true"),
                ("response", "json"),
            ])
            .await;
        let rows = body["listeventsresponse"]["event"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let completed = rows.iter().filter(|e| e["state"] == "Completed").count();
        assert_eq!(completed, 3, "{kind}: {rows:?}");
    }
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}
