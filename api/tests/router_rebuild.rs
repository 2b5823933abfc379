//! The virtual routers' configuration, end to end on a real server: after real API traffic
//! (a network, two VMs, a public IP, port forwarding, firewall, a load balancer over both VMs,
//! a VPN with users, an injected driver failure), what the network simulator has programmed
//! equals what the read models say; a replay of the log from scratch computes the same
//! configurations; and a server restarted on the same data directory, with its read models
//! rebuilt, hands its fresh simulator exactly those configurations.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::app::{self, ClockChoice, ServerOptions};
use engine::store::EventStore;
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use projections::driver::network::{NetworkDriver, RouterConfig};
use serde_json::Value;
use support::Server;
use uuid::Uuid;

/// Runs an async command and waits for its job; the job's result, or its error as `Err`.
async fn job(server: &Server, pairs: &[(&str, &str)]) -> Result<Value, Value> {
    let (status, body) = server.signed_get(pairs).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    let answer = body.as_object().and_then(|o| o.values().next()).unwrap();
    let job_id = answer["jobid"].as_str().unwrap().to_owned();
    for _ in 0..600 {
        let (_, body) = server
            .signed_get(&[
                ("command", "queryAsyncJobResult"),
                ("jobid", &job_id),
                ("response", "json"),
            ])
            .await;
        let result = &body["queryasyncjobresultresponse"];
        match result["jobstatus"].as_u64() {
            Some(1) => return Ok(result["jobresult"].clone()),
            Some(2) => return Err(result["jobresult"].clone()),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("job {job_id} of {pairs:?} never ended");
}

async fn sync(server: &Server, pairs: &[(&str, &str)]) -> Value {
    let (status, body) = server.signed_get(pairs).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    body.as_object()
        .and_then(|o| o.values().next())
        .unwrap()
        .clone()
}

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

/// Every router's configuration as the read models compute it, once no command is pending.
async fn expected_configs(ctx: &api::context::Ctx) -> BTreeMap<Uuid, RouterConfig> {
    ctx.models
        .wait_until(|s| s.orchestration.pending.is_empty())
        .await
        .unwrap();
    let state = ctx.models.read();
    state
        .network
        .routers
        .iter()
        .map(|(id, _)| (*id, state.network.router_config(&state.compute, *id)))
        .collect()
}

fn programmed_configs(
    simulator: &dyn NetworkDriver,
    routers: &BTreeMap<Uuid, RouterConfig>,
) -> BTreeMap<Uuid, RouterConfig> {
    routers
        .keys()
        .map(|id| (*id, simulator.router_config(*id).unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_are_programmed_as_the_log_says_before_and_after_a_rebuild() {
    let server = Server::start_demo().await;
    let zone =
        sync(&server, &[("command", "listZones"), ("response", "json")]).await["zone"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let offerings = sync(
        &server,
        &[("command", "listNetworkOfferings"), ("response", "json")],
    )
    .await;
    let isolated = offerings["networkoffering"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "DefaultIsolatedNetworkOfferingWithSourceNatService")
        .map(id)
        .expect("the default isolated offering is seeded");
    let network = sync(
        &server,
        &[
            ("command", "createNetwork"),
            ("name", "web"),
            ("displaytext", "web tier"),
            ("zoneid", &zone),
            ("networkofferingid", &isolated),
            ("response", "json"),
        ],
    )
    .await;
    let network = id(&network["network"]);
    let template = sync(
        &server,
        &[
            ("command", "listTemplates"),
            ("templatefilter", "featured"),
            ("response", "json"),
        ],
    )
    .await["template"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let small = api::bootstrap::demo_id("small").to_string();
    let mut vms = Vec::new();
    for _ in 0..2 {
        let deployed = job(
            &server,
            &[
                ("command", "deployVirtualMachine"),
                ("zoneid", &zone),
                ("templateid", &template),
                ("serviceofferingid", &small),
                ("networkids", &network),
                ("response", "json"),
            ],
        )
        .await
        .unwrap();
        vms.push(id(&deployed["virtualmachine"]));
    }
    let ip = job(
        &server,
        &[
            ("command", "associateIpAddress"),
            ("networkid", &network),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    let ip = id(&ip["ipaddress"]);
    job(
        &server,
        &[
            ("command", "createPortForwardingRule"),
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "2222"),
            ("privateport", "22"),
            ("virtualmachineid", &vms[0]),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    // A refused command changes nothing on the router, nor in the read models.
    sync(
        &server,
        &[
            ("command", "configureSimulator"),
            ("name", "SetFirewallRulesCommand"),
            ("value", "result:fail"),
            ("count", "1"),
            ("response", "json"),
        ],
    )
    .await;
    let refused = job(
        &server,
        &[
            ("command", "createFirewallRule"),
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "443"),
            ("endport", "443"),
            ("response", "json"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused["errorcode"], 534, "{refused}");
    job(
        &server,
        &[
            ("command", "createFirewallRule"),
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "80"),
            ("endport", "80"),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    let lb = job(
        &server,
        &[
            ("command", "createLoadBalancerRule"),
            ("name", "web"),
            ("publicipid", &ip),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("algorithm", "roundrobin"),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    let lb = id(&lb["loadbalancer"]);
    let members = vms.join(",");
    job(
        &server,
        &[
            ("command", "assignToLoadBalancerRule"),
            ("id", &lb),
            ("virtualmachineids", &members),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    let source_nat = sync(
        &server,
        &[
            ("command", "listPublicIpAddresses"),
            ("associatednetworkid", &network),
            ("issourcenat", "true"),
            ("response", "json"),
        ],
    )
    .await;
    let source_nat = id(&source_nat["publicipaddress"][0]);
    job(
        &server,
        &[
            ("command", "createRemoteAccessVpn"),
            ("publicipid", &source_nat),
            ("response", "json"),
        ],
    )
    .await
    .unwrap();
    for user in ["alice", "bob"] {
        job(
            &server,
            &[
                ("command", "addVpnUser"),
                ("username", user),
                ("password", "s3cret-Passw0rd"),
                ("response", "json"),
            ],
        )
        .await
        .unwrap();
    }

    let expected = expected_configs(&server.ctx).await;
    let router = {
        let state = server.ctx.models.read();
        state
            .network
            .router_of_network(&state.compute, network.parse().unwrap())
            .map(|r| r.facts.router_id)
            .expect("the network has a router")
    };
    let config = &expected[&router];
    assert_eq!(config.port_forwards.len(), 1, "{config:?}");
    // Port 80, and the ports the forwarding and balancing rules opened; not the refused 443.
    let mut opened: Vec<Option<u16>> = config.firewall.values().map(|f| f.start_port).collect();
    opened.sort();
    assert_eq!(opened, [Some(80), Some(2222), Some(8080)], "{config:?}");
    assert_eq!(config.load_balancers.len(), 1, "{config:?}");
    assert_eq!(
        config.load_balancers.values().next().unwrap().members.len(),
        2
    );
    assert_eq!(config.dhcp.len(), 2, "one entry per VM NIC: {config:?}");
    assert_eq!(config.vpn_users.len(), 2, "{config:?}");
    assert_eq!(config.public_ips.len(), 2, "source NAT and the acquired IP");
    assert_eq!(
        programmed_configs(&server.ctx.simulator, &expected),
        expected,
        "the simulator programmed what the log says"
    );

    // A replay of the log from scratch computes the same configurations.
    let dir = server.stop().await;
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let replayed = projections::runner::replay_in_memory(log, usage::model::read_models)
        .await
        .unwrap();
    let replayed_configs: BTreeMap<Uuid, RouterConfig> = replayed
        .network
        .routers
        .iter()
        .map(|(id, _)| (*id, replayed.network.router_config(&replayed.compute, *id)))
        .collect();
    assert_eq!(replayed_configs, expected);
    store.close();

    // A restart with rebuilt read models hands the new simulator the same configurations.
    let running = app::open(ServerOptions {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: ClockChoice::System,
        demo: true,
        rebuild_read_models: true,
        simulator: Default::default(),
    })
    .await
    .unwrap();
    let ctx = running.ctx.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        running
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let after = expected_configs(&ctx).await;
    assert_eq!(after, expected);
    let mut programmed = programmed_configs(&ctx.simulator, &after);
    for _ in 0..100 {
        if programmed == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        programmed = programmed_configs(&ctx.simulator, &after);
    }
    assert_eq!(programmed, expected, "adopted after the restart");
    let _ = stop.send(());
    task.await.unwrap();
}
