//! `ledgerstack bench lifecycle`: deploy → Running → public IP and rule churn → destroy
//! (expunge) cycles per second through the HTTP API with the simulators at zero latency; then, on the log those cycles
//! wrote, the state projection's rebuild rate beside the raw replay rate (decoding the log and
//! nothing else) measured in the same run. Target: rebuild ≥ 25 % of raw replay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use engine::bench::BenchProgress;
use engine::event::Position;
use engine::store::EventStore;
use engine::store::embedded::{EmbeddedOptions, EmbeddedStore};
use futures::StreamExt;
use projections::runner;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::ApiBenchError;
use crate::bootstrap::demo_id;
use crate::protocol::params::Params;
use crate::protocol::signature;

/// The rebuild rate must be at least this fraction of the raw replay rate.
pub const LIFECYCLE_TARGET_RATIO: f64 = 0.25;

/// How the lifecycle benchmark runs.
#[derive(Debug, Clone)]
pub struct LifecycleBenchConfig {
    /// Deploy → destroy cycles in all.
    pub cycles: u32,
    /// Clients running cycles at the same time.
    pub clients: u32,
    /// Minimum time each replay measurement runs (repeating the replay), so small logs still
    /// give stable rates.
    pub replay_time: Duration,
}

/// What the lifecycle benchmark measured.
#[derive(Debug, Clone)]
pub struct LifecycleBenchReport {
    /// Cycles completed (each: a VM deployed, seen Running, destroyed and expunged).
    pub cycles: u32,
    /// Cycles per second through the API.
    pub cycles_per_second: f64,
    /// Events in the log afterwards.
    pub events: u64,
    /// Raw replay: events decoded per second (the baseline).
    pub replay_per_second: f64,
    /// State projection rebuild: events applied per second.
    pub rebuild_per_second: f64,
    /// Two rebuilds into a store gave the same digest.
    pub digests_equal: bool,
    /// Public IP and rule changes per second through the API (part of the cycles).
    pub network_operations_per_second: f64,
    /// After the run, every router's programmed configuration equalled the read models'.
    pub routers_match: bool,
}

impl LifecycleBenchReport {
    /// Rebuild rate over raw replay rate.
    pub fn ratio(&self) -> f64 {
        self.rebuild_per_second / self.replay_per_second.max(f64::MIN_POSITIVE)
    }
}

struct Client {
    addr: SocketAddr,
    api_key: String,
    secret_key: String,
}

impl Client {
    async fn call(&self, pairs: &[(&str, &str)]) -> Result<Value, ApiBenchError> {
        let mut params = Params::default();
        params.insert("apiKey", &self.api_key);
        params.insert("response", "json");
        for (k, v) in pairs {
            params.insert(k, v);
        }
        let signature = signature::sign(&params, &self.secret_key);
        let mut query = String::new();
        for (k, v) in params.iter() {
            query.push_str(&format!("{k}={}&", encode(v)));
        }
        query.push_str(&format!("signature={}", encode(&signature)));
        let io = |what: &'static str| move |e: std::io::Error| ApiBenchError::Io(what.into(), e);
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(io("connect"))?;
        stream
            .write_all(
                format!(
                    "GET /client/api?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .map_err(io("send"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io("receive"))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ApiBenchError::Setup("an incomplete HTTP response".into()))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(ApiBenchError::Setup(format!(
                "{}: {head} {body}",
                pairs.first().map_or("", |p| p.1)
            )));
        }
        serde_json::from_str(body).map_err(|e| ApiBenchError::Setup(format!("bad JSON: {e}")))
    }

    /// Submits an async command and polls its job until it ends; the job result.
    async fn run_job(&self, pairs: &[(&str, &str)]) -> Result<Value, ApiBenchError> {
        let submitted = self.call(pairs).await?;
        let job_id = submitted
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|r| r.get("jobid"))
            .and_then(Value::as_str)
            .ok_or_else(|| ApiBenchError::Setup(format!("no jobid in {submitted}")))?
            .to_owned();
        loop {
            let answer = self
                .call(&[("command", "queryAsyncJobResult"), ("jobid", &job_id)])
                .await?;
            let result = &answer["queryasyncjobresultresponse"];
            match result["jobstatus"].as_u64() {
                Some(0) => tokio::time::sleep(Duration::from_millis(1)).await,
                Some(1) => return Ok(result["jobresult"].clone()),
                _ => {
                    return Err(ApiBenchError::Setup(format!(
                        "job {job_id} failed: {}",
                        result["jobresult"]
                    )));
                }
            }
        }
    }

    async fn cycle(&self, template: &str) -> Result<(), ApiBenchError> {
        let zone = demo_id("zone").to_string();
        let offering = demo_id("small").to_string();
        let deployed = self
            .run_job(&[
                ("command", "deployVirtualMachine"),
                ("zoneid", &zone),
                ("serviceofferingid", &offering),
                ("templateid", template),
            ])
            .await?;
        let vm = &deployed["virtualmachine"];
        if vm["state"] != "Running" {
            return Err(ApiBenchError::Setup(format!(
                "deployed VM not Running: {vm}"
            )));
        }
        let id = vm["id"].as_str().unwrap_or_default().to_owned();
        let network = vm["nic"][0]["networkid"]
            .as_str()
            .ok_or_else(|| ApiBenchError::Setup(format!("deployed VM without a NIC: {vm}")))?
            .to_owned();
        self.ip_and_rule_churn(&id, &network).await?;
        self.run_job(&[
            ("command", "destroyVirtualMachine"),
            ("id", &id),
            ("expunge", "true"),
        ])
        .await?;
        Ok(())
    }
}

impl Client {
    /// Acquires a public IP on the VM's network, forwards a port to the VM (with its firewall
    /// rule), opens another port, then takes everything down again: [`NETWORK_OPERATIONS`]
    /// router changes, each carried out by the network driver before its job ends.
    async fn ip_and_rule_churn(&self, vm: &str, network: &str) -> Result<(), ApiBenchError> {
        let ip = self
            .run_job(&[("command", "associateIpAddress"), ("networkid", network)])
            .await?;
        let ip = ip["ipaddress"]["id"]
            .as_str()
            .ok_or_else(|| ApiBenchError::Setup(format!("no ipaddress in {ip}")))?
            .to_owned();
        let forward = self
            .run_job(&[
                ("command", "createPortForwardingRule"),
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("publicport", "22"),
                ("privateport", "22"),
                ("virtualmachineid", vm),
                ("openfirewall", "false"),
            ])
            .await?;
        let forward = forward["portforwardingrule"]["id"]
            .as_str()
            .ok_or_else(|| ApiBenchError::Setup(format!("no rule in {forward}")))?
            .to_owned();
        let firewall = self
            .run_job(&[
                ("command", "createFirewallRule"),
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("startport", "22"),
                ("endport", "22"),
                ("cidrlist", "0.0.0.0/0"),
            ])
            .await?;
        let firewall = firewall["firewallrule"]["id"]
            .as_str()
            .ok_or_else(|| ApiBenchError::Setup(format!("no rule in {firewall}")))?
            .to_owned();
        self.run_job(&[("command", "deleteFirewallRule"), ("id", &firewall)])
            .await?;
        self.run_job(&[("command", "deletePortForwardingRule"), ("id", &forward)])
            .await?;
        self.run_job(&[("command", "disassociateIpAddress"), ("id", &ip)])
            .await?;
        Ok(())
    }

    /// Whether every router's programmed configuration equals what the read models say.
    async fn routers_match(&self) -> Result<bool, ApiBenchError> {
        let answer = self
            .call(&[("command", "listRouterConfigurations")])
            .await?;
        let items = answer["listrouterconfigurationsresponse"]["routerconfiguration"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(!items.is_empty() && items.iter().all(|r| r["matches"] == true))
    }
}

/// Router changes per cycle: acquire, forward, open, close, unforward, release.
pub const NETWORK_OPERATIONS: u32 = 6;

fn encode(text: &str) -> String {
    let mut out = Vec::new();
    crate::bench::percent_encode(&mut out, text);
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the whole lifecycle benchmark.
pub async fn run_lifecycle_bench(
    config: &LifecycleBenchConfig,
    progress: &dyn BenchProgress,
) -> Result<LifecycleBenchReport, ApiBenchError> {
    if config.cycles == 0 || config.clients == 0 {
        return Err(ApiBenchError::Setup(
            "cycles and clients must be positive".into(),
        ));
    }
    progress.phase(
        "starting the server (demo data, simulator at zero latency)",
        None,
    );
    let (dir, server, admin) = crate::bench::start_demo_server().await?;
    let addr = server.addr;
    let client = Arc::new(Client {
        addr,
        api_key: admin.api_key,
        secret_key: admin.secret_key,
    });
    let templates = client
        .call(&[("command", "listTemplates"), ("templatefilter", "featured")])
        .await?;
    let template = templates["listtemplatesresponse"]["template"][0]["id"]
        .as_str()
        .ok_or_else(|| ApiBenchError::Setup("the demo has no featured template".into()))?
        .to_owned();
    progress.finish();

    progress.phase(
        "deploy → Running → destroy cycles",
        Some(u64::from(config.cycles)),
    );
    let next = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..config.clients {
        let (client, next, done, template) =
            (client.clone(), next.clone(), done.clone(), template.clone());
        let cycles = config.cycles;
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < cycles {
                client.cycle(&template).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), ApiBenchError>(())
        }));
    }
    let mut all = std::pin::pin!(futures::future::join_all(workers));
    let results = loop {
        tokio::select! {
            results = &mut all => break results,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                progress.progress(u64::from(done.load(Ordering::Relaxed)));
            }
        }
    };
    let elapsed = started.elapsed();
    for result in results {
        result.map_err(|e| ApiBenchError::Setup(format!("a client panicked: {e}")))??;
    }
    // The driver's results of facts (DHCP entries) may trail the jobs by a moment.
    let mut routers_match = false;
    for _ in 0..50 {
        routers_match = client.routers_match().await?;
        if routers_match {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish();
    server.stop().await;

    progress.phase("raw replay and state rebuild of the log", None);
    let store = EmbeddedStore::open(&dir.0, EmbeddedOptions::default())
        .map_err(|e| ApiBenchError::Setup(format!("reopening the log: {e}")))?;
    let log: Arc<dyn EventStore> = Arc::new(store.clone());
    let events = log
        .head()
        .await
        .map_err(|e| ApiBenchError::Setup(e.to_string()))?
        .0;
    let mut replay_rates = Vec::new();
    let mut rebuild_rates = Vec::new();
    for _ in 0..3 {
        replay_rates.push(rate(events, config.replay_time, || raw_replay(log.clone())).await?);
        rebuild_rates.push(
            rate(events, config.replay_time, || async {
                runner::replay_in_memory(log.clone(), usage::model::read_models)
                    .await
                    .map(|_| ())
                    .map_err(|e| ApiBenchError::Setup(e.to_string()))
            })
            .await?,
        );
    }
    let first = runner::rebuild(
        log.clone(),
        &dir.0.join("rebuild-1"),
        usage::model::read_models,
        |_, _| {},
    )
    .await
    .map_err(|e| ApiBenchError::Setup(e.to_string()))?;
    let second = runner::rebuild(
        log.clone(),
        &dir.0.join("rebuild-2"),
        usage::model::read_models,
        |_, _| {},
    )
    .await
    .map_err(|e| ApiBenchError::Setup(e.to_string()))?;
    store.close();
    progress.finish();
    Ok(LifecycleBenchReport {
        cycles: config.cycles,
        cycles_per_second: f64::from(config.cycles) / elapsed.as_secs_f64().max(1e-9),
        events,
        replay_per_second: median(replay_rates),
        rebuild_per_second: median(rebuild_rates),
        digests_equal: first.digest == second.digest,
        network_operations_per_second: f64::from(config.cycles * NETWORK_OPERATIONS)
            / elapsed.as_secs_f64().max(1e-9),
        routers_match,
    })
}

/// Events per second of `pass`, repeated until `min_time` has passed.
async fn rate<F, Fut>(events: u64, min_time: Duration, pass: F) -> Result<f64, ApiBenchError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiBenchError>>,
{
    let started = Instant::now();
    let mut passes = 0u64;
    while passes == 0 || started.elapsed() < min_time {
        pass().await?;
        passes += 1;
    }
    Ok((events * passes) as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Reads and decodes every event of the log, applying nothing.
async fn raw_replay(log: Arc<dyn EventStore>) -> Result<(), ApiBenchError> {
    let head = log
        .head()
        .await
        .map_err(|e| ApiBenchError::Setup(e.to_string()))?;
    let mut events = log.subscribe(Position(1));
    let mut seen = Position(0);
    while seen < head {
        match events.next().await {
            Some(Ok(event)) => seen = event.envelope.position,
            Some(Err(e)) => return Err(ApiBenchError::Setup(e.to_string())),
            None => break,
        }
    }
    Ok(())
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}
