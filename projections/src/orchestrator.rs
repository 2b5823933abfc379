//! The orchestrator: runs every requested driver command (see `orchestration`) against the
//! hypervisor or network driver and appends its result to the log; takes the disk counter
//! readings every `vm.disk.stats.interval` seconds and the router counter readings every
//! `router.stats.interval` seconds.
//!
//! Architecture Invariant: the orchestrator works only from the log. What to run is the
//! `pending` table of the read models, so after a restart every command without a result is
//! issued again with the same id (the driver answers a repeated id with its first outcome), and
//! every result event has an id derived from its command (DESIGN.md invariants 5 and 9), so a
//! result appended twice is stored once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use engine::clock::Clock;
use engine::event::network::{NetworkOfferingAssignment, NicFacts};
use engine::event::operations::{DriverApplied, DriverFailed};
use engine::event::services::{LoadBalancerMembers, SecurityGroupMembership};
use engine::event::storage::VolumeCounterReading;
use engine::event::storage::{VmSnapshotLifecycle, VolumeAttachment, VolumeLifecycle, VolumeType};
use engine::event::vm::{NetworkCounterReading, VmFacts, VmLifecycle};
use engine::event::{
    DriverEvent, EventBody, EventState, EventType, FirewallEvent, Level, LoadBalancerEvent,
    NetEvent, NetworkOfferingEvent, NewEvent, NicEvent, RouterEvent, SecurityGroupEvent,
    StaticNatEvent, StreamId, VmEvent, VmSnapshotEvent, VolumeEvent,
};
use engine::store::embedded::histogram::{Histogram, LATENCY_BOUNDS_MICROS};
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use tokio::sync::oneshot;
use tracing::{info, warn};
use uuid::Uuid;

use crate::State;
use crate::compute::VmState;
use crate::driver::{DriverAction, HypervisorDriver, NetworkDriver, SimulatedHost};
use crate::network::{RouterState, related_firewall_rule_id};
use crate::orchestration::PendingCommand;
use crate::runner::ReadModels;

/// How often the orchestrator looks at the clock when nothing else wakes it (disk readings
/// on a manual clock are taken at the next look after the clock moved).
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Stops the orchestrator.
pub struct OrchestratorHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<DriverStats>,
}

/// How driver commands went since this start, per command (the agent name, `StartCommand`),
/// for the server's metrics. Kept in memory only: the log holds every outcome for good.
#[derive(Debug, Default)]
pub struct DriverStats {
    by_command: Mutex<BTreeMap<&'static str, Arc<DriverCommandStats>>>,
}

/// One command kind's figures.
#[derive(Debug)]
pub struct DriverCommandStats {
    /// Microseconds from handing the command to its driver to the driver's answer (success or
    /// failure; recording the result in the log is not included).
    pub latency_micros: Histogram,
    /// Commands the driver answered with a failure (each appended as `DRIVER.FAILED`).
    pub failures: AtomicU64,
}

impl DriverStats {
    /// The figures of every command kind run so far, by agent name.
    pub fn snapshot(&self) -> Vec<(&'static str, Arc<DriverCommandStats>)> {
        self.by_command
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, stats)| (*name, stats.clone()))
            .collect()
    }

    fn record(&self, command: &'static str, elapsed: Duration, failed: bool) {
        let stats = self
            .by_command
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(command)
            .or_insert_with(|| {
                Arc::new(DriverCommandStats {
                    latency_micros: Histogram::new(LATENCY_BOUNDS_MICROS),
                    failures: AtomicU64::new(0),
                })
            })
            .clone();
        stats.latency_micros.observe_micros(elapsed);
        if failed {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl OrchestratorHandle {
    /// Driver command latency and failures since this start.
    pub fn stats(&self) -> Arc<DriverStats> {
        self.stats.clone()
    }

    /// Stops taking new commands and waits for the loop to end (commands in flight are
    /// abandoned; their results are missing, so the next start re-issues them).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

struct Orchestrator {
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    driver: Arc<dyn HypervisorDriver>,
    /// Runs [`DriverAction::Network`] commands (the API passes the same simulator as `driver`).
    network: Arc<dyn NetworkDriver>,
    clock: Arc<dyn Clock>,
    in_flight: Mutex<BTreeSet<Uuid>>,
    /// Latency and failures per command kind, read by the metrics endpoint.
    stats: Arc<DriverStats>,
    /// Woken when a command is no longer in flight, so the one queued behind it on the same
    /// device starts at once rather than at the next idle wake.
    finished: tokio::sync::Notify,
}

/// When a periodic counter reading is due, on the server clock.
#[derive(Debug, Default)]
struct Periodic {
    /// The previous reading (or when the interval was first seen on); none while it is off.
    last: Option<Timestamp>,
}

impl Periodic {
    /// `Some(elapsed_ms)` since the previous reading when `interval_s` has passed (and the
    /// reading is then taken as of `now`). An interval of 0 or less turns readings off; the
    /// first look after turning them on only starts the count.
    fn due(&mut self, interval_s: i64, now: Timestamp) -> Option<u64> {
        if interval_s <= 0 {
            self.last = None;
            return None;
        }
        let Some(last) = self.last else {
            self.last = Some(now);
            return None;
        };
        let elapsed = now.millis().saturating_sub(last.millis());
        if elapsed < interval_s.saturating_mul(1000) {
            return None;
        }
        self.last = Some(now);
        Some(u64::try_from(elapsed).unwrap_or(0))
    }
}

/// Starts the orchestrator on the read models of `store`: hypervisor commands go to `driver`,
/// network commands to `network`.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    driver: Arc<dyn HypervisorDriver>,
    network: Arc<dyn NetworkDriver>,
    clock: Arc<dyn Clock>,
) -> OrchestratorHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let stats = Arc::new(DriverStats::default());
    let orchestrator = Arc::new(Orchestrator {
        store,
        models,
        driver,
        network,
        clock,
        in_flight: Mutex::new(BTreeSet::new()),
        stats: stats.clone(),
        finished: tokio::sync::Notify::new(),
    });
    let task = tokio::spawn(orchestrator.run(stop_rx));
    OrchestratorHandle {
        stop: Some(stop_tx),
        task,
        stats,
    }
}

impl Orchestrator {
    async fn run(self: Arc<Self>, mut stop: oneshot::Receiver<()>) {
        let mut changes = self.models.changes();
        let mut known_hosts: BTreeSet<(Uuid, u32, u32, u64)> = BTreeSet::new();
        let mut disk_readings = Periodic::default();
        let mut router_readings = Periodic::default();
        // Commands already pending when the orchestrator starts run at once. Later ones wait
        // until their job is recorded and started, so a job's rows come before its result's
        // (a request is appended just before its job; one whose job was lost to a crash in
        // between is pending at the next start, and runs then).
        let mut startup: Option<BTreeSet<Uuid>> = None;
        loop {
            changes.borrow_and_update();
            let (hosts, todo, disk_interval, router_interval) = {
                let state = self.models.read();
                let hosts: Vec<SimulatedHost> = state
                    .infrastructure
                    .hosts
                    .values()
                    .map(|h| SimulatedHost {
                        host_id: h.facts.host_id,
                        cpu_number: h.facts.cpu_number,
                        cpu_speed: h.facts.cpu_speed,
                        memory_mib: h.facts.memory,
                    })
                    .collect();
                let startup = startup.get_or_insert_with(|| {
                    self.adopt_running(&state);
                    self.adopt_network(&state);
                    state
                        .orchestration
                        .pending
                        .iter()
                        .map(|(id, _)| *id)
                        .collect()
                });
                let in_flight = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // Network commands of one router (or security group) run one at a time in log
                // order: a device is busy while one of its commands runs or an earlier one
                // still waits.
                let mut busy: BTreeSet<Uuid> = BTreeSet::new();
                let mut todo: Vec<PendingCommand> = Vec::new();
                for c in state.orchestration.in_order() {
                    let devices = match &c.command.action {
                        DriverAction::Network(action) => action.devices(),
                        _ => BTreeSet::new(),
                    };
                    let ready = !in_flight.contains(&c.command.id)
                        && (startup.contains(&c.command.id)
                            || c.job_id.is_none_or(|job| {
                                state.jobs.jobs.get(&job).is_some_and(|j| j.proc_status > 0)
                            }))
                        && devices.is_disjoint(&busy);
                    busy.extend(devices);
                    if ready {
                        todo.push(c.clone());
                    }
                }
                (
                    hosts,
                    todo,
                    state.configuration.global_i64("vm.disk.stats.interval"),
                    state.configuration.global_i64("router.stats.interval"),
                )
            };
            for host in hosts {
                let key = (
                    host.host_id,
                    host.cpu_number,
                    host.cpu_speed,
                    host.memory_mib,
                );
                if known_hosts.insert(key) {
                    self.driver.add_host(host);
                }
            }
            for command in todo {
                self.in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(command.command.id);
                tokio::spawn(Arc::clone(&self).execute(command));
            }
            let now = self.clock.now();
            if let Some(elapsed) = disk_readings.due(disk_interval, now) {
                self.read_disks(elapsed, now).await;
            }
            if let Some(elapsed) = router_readings.due(router_interval, now) {
                self.read_routers(elapsed, now).await;
            }
            tokio::select! {
                _ = &mut stop => return,
                () = self.finished.notified() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(IDLE_WAKE) => {}
            }
        }
    }

    /// Tells the driver about the VMs the log says run (after a restart the simulator starts
    /// empty). VMs still `Starting` are not adopted: their start command is re-issued.
    fn adopt_running(&self, state: &State) {
        for vm in state.compute.vms.values() {
            let Some(host_id) = vm.host_id else {
                continue;
            };
            if !matches!(
                vm.state,
                VmState::Running | VmState::Stopping | VmState::Migrating
            ) {
                continue;
            }
            self.driver.adopt_vm(DriverAction::StartVm {
                vm_id: vm.facts.vm_id,
                host_id,
                cpu_number: vm.facts.cpu_number,
                cpu_speed: vm.facts.cpu_speed,
                memory_mib: vm.facts.memory,
                volume_ids: state
                    .storage
                    .volumes_of(vm.facts.vm_id)
                    .iter()
                    .map(|v| v.facts.volume_id)
                    .collect(),
            });
        }
    }

    /// Tells the network driver about the routers the log says run, with the configuration the
    /// log implies, and about every security group. Routers still `Starting` are not adopted:
    /// their start command is re-issued; stopped ones get their whole configuration with their
    /// next start.
    fn adopt_network(&self, state: &State) {
        // Every router the log knows: a stopped one keeps its configuration too, so requests
        // made while it is down still find it. One still `Starting` is adopted as down: its
        // start command is re-issued and brings its configuration.
        for (router_id, router) in state.network.routers.iter() {
            self.network.adopt_router(
                *router_id,
                state.network.router_config(&state.compute, *router_id),
                matches!(router.state, RouterState::Running | RouterState::Stopping),
            );
        }
        for (group_id, _) in state.network.security_groups.iter() {
            self.network
                .adopt_security_group(*group_id, state.network.security_group_config(*group_id));
        }
    }

    async fn execute(self: Arc<Self>, pending: PendingCommand) {
        let id = pending.command.id;
        // A monotonic interval for the latency metric; nothing here reads the wall clock.
        let started = std::time::Instant::now();
        let outcome = match &pending.command.action {
            DriverAction::Network(action) => self.network.execute_network(id, action.clone()).await,
            _ => self.driver.execute(pending.command.clone()).await,
        };
        self.stats.record(
            pending.command.action.kind().agent_name(),
            started.elapsed(),
            outcome.is_err(),
        );
        let events = {
            let state = self.models.read();
            match &outcome {
                Ok(()) => success_events(&state, &pending),
                Err(error) => vec![failure_event(&pending, &error.to_string())],
            }
        };
        // Its own stream: the job's stream is the job's (its submission may even come after
        // the result), and the result's derived id makes a second append a no-op.
        let stream = StreamId::new("driver", id);
        let appended = match stream {
            Ok(stream) => self
                .store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match appended {
            Ok(outcome) => {
                let _ = self.models.wait_for(outcome.last_position()).await;
                info!(command = %id, kind = pending.event_type.as_str(), position = outcome.last_position().0, "driver command finished");
            }
            Err(e) => {
                warn!(command = %id, error = %e, "could not record a driver result; it is re-issued at the next start")
            }
        }
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        // The next command of the same router may go now.
        self.finished.notify_one();
    }

    /// Appends one VOLUME.STATS per volume of every running VM, `elapsed_ms` after the
    /// previous reading.
    async fn read_disks(&self, elapsed_ms: u64, now: Timestamp) {
        let readings = self.driver.read_disk_counters(elapsed_ms);
        let events: Vec<NewEvent> = {
            let state = self.models.read();
            readings
                .into_iter()
                .filter_map(|r| {
                    let vm = state.compute.vms.get(&r.vm_id)?;
                    let reading = VolumeCounterReading {
                        volume_id: r.volume_id,
                        vm_id: r.vm_id,
                        account_id: vm.facts.account_id,
                        domain_id: vm.facts.domain_id,
                        zone_id: vm.facts.zone_id,
                        io_read: r.io_read,
                        io_write: r.io_write,
                        bytes_read: r.bytes_read,
                        bytes_write: r.bytes_write,
                    };
                    let kind = format!("disk-stats@{}", now.millis());
                    Some(NewEvent::derived(
                        r.volume_id,
                        &kind,
                        EventBody::Volume(VolumeEvent::Stats(reading)),
                    ))
                })
                .collect()
        };
        self.append_readings("diskstats", events, "disk").await;
    }

    /// Appends one ROUTER.STATS per running router that serves a guest network, `elapsed_ms`
    /// after the previous reading. Routers without a `network_id` (VPC routers, whose traffic
    /// belongs to several tiers) are skipped: a reading bills exactly one network.
    async fn read_routers(&self, elapsed_ms: u64, now: Timestamp) {
        let readings = self.network.read_router_counters(elapsed_ms);
        let events: Vec<NewEvent> = {
            let state = self.models.read();
            readings
                .into_iter()
                .filter_map(|r| {
                    let router = &state.network.routers.get(&r.router_id)?.facts;
                    let reading = NetworkCounterReading {
                        router_id: r.router_id,
                        network_id: router.network_id?,
                        account_id: router.account_id,
                        domain_id: router.domain_id,
                        zone_id: router.zone_id,
                        bytes_sent: r.bytes_sent,
                        bytes_received: r.bytes_received,
                    };
                    let kind = format!("router-stats@{}", now.millis());
                    Some(NewEvent::derived(
                        r.router_id,
                        &kind,
                        EventBody::Router(RouterEvent::Stats(reading)),
                    ))
                })
                .collect()
        };
        self.append_readings("routerstats", events, "router").await;
    }

    /// Appends counter readings on their singleton stream (`what` names them in the log).
    async fn append_readings(&self, stream: &str, events: Vec<NewEvent>, what: &str) {
        if events.is_empty() {
            return;
        }
        let count = events.len();
        match StreamId::singleton(stream) {
            Ok(stream) => {
                if let Err(e) = self
                    .store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                {
                    warn!(error = %e, "could not record {what} counter readings");
                } else {
                    info!(readings = count, "recorded {what} counter readings");
                }
            }
            Err(e) => warn!(error = %e, "bad stream name"),
        }
    }
}

/// The events recording a command's success: for a command carrying out a fact, DRIVER.APPLIED;
/// otherwise the request repeated in state `Completed`, and for a destroy with `expunge`, the
/// expunge.
pub fn success_events(state: &State, pending: &PendingCommand) -> Vec<NewEvent> {
    if pending.fact {
        return vec![applied_event(pending)];
    }
    let Some(event_type) = EventType::from_name(&pending.event_type) else {
        return vec![failure_event(pending, "unknown request type")];
    };
    let body = match EventBody::from_data_json(event_type, pending.request.clone()) {
        Ok(body) => body,
        Err(e) => return vec![failure_event(pending, &format!("unreadable request: {e}"))],
    };
    let expunge = matches!(&body, EventBody::Vm(VmEvent::Destroy(d)) if d.expunge);
    let mut events = vec![result_event(pending, "result", body)];
    if expunge {
        for (n, body) in expunge_events(state, pending.resource_id)
            .into_iter()
            .enumerate()
        {
            events.push(result_event(pending, &format!("expunge-{n}"), body));
        }
    }
    events
}

fn result_event(pending: &PendingCommand, kind: &str, body: EventBody) -> NewEvent {
    let mut event = NewEvent::derived(pending.command.id, kind, body)
        .by(pending.actor)
        .caused_by(pending.command.id)
        .state(EventState::Completed);
    if let Some(job) = pending.job_id {
        event = event.correlated_with(job);
    }
    event
}

/// DRIVER.APPLIED for a command that carried out a fact.
pub fn applied_event(pending: &PendingCommand) -> NewEvent {
    let applied = DriverApplied {
        command_id: pending.command.id,
        command: pending.command.action.kind().agent_name().into(),
        resource_type: pending.resource_type.clone(),
        resource_id: pending.resource_id,
        account_id: pending.account_id,
        domain_id: pending.domain_id,
    };
    result_event(
        pending,
        "result",
        EventBody::Driver(DriverEvent::Applied(applied)),
    )
}

/// DRIVER.FAILED for a command.
pub fn failure_event(pending: &PendingCommand, error: &str) -> NewEvent {
    let failed = DriverFailed {
        command_id: pending.command.id,
        command: pending.command.action.kind().agent_name().into(),
        resource_type: pending.resource_type.clone(),
        resource_id: pending.resource_id,
        account_id: pending.account_id,
        domain_id: pending.domain_id,
        error: error.to_owned(),
    };
    result_event(
        pending,
        "result",
        EventBody::Driver(DriverEvent::Failed(failed)),
    )
    .level(Level::Error)
}

/// What expunging a destroyed VM records: its VM snapshots, root disk and NICs go, its data
/// disks are detached, then VM.EXPUNGE.
pub fn expunge_events(state: &State, vm_id: Uuid) -> Vec<EventBody> {
    let Some(vm) = state.compute.vms.get(&vm_id) else {
        return Vec::new();
    };
    let facts: VmFacts = vm.facts.clone();
    let mut events = Vec::new();
    for snapshot in state
        .storage
        .vm_snapshots
        .values()
        .filter(|s| s.facts.vm_id == vm_id)
    {
        events.push(EventBody::VmSnapshot(VmSnapshotEvent::Delete(
            VmSnapshotLifecycle {
                vm_snapshot: snapshot.facts.clone(),
            },
        )));
    }
    for volume in state.storage.volumes_of(vm_id) {
        let body = if volume.facts.volume_type == VolumeType::Root {
            EventBody::Volume(VolumeEvent::Delete(VolumeLifecycle {
                volume: volume.facts.clone(),
            }))
        } else {
            EventBody::Volume(VolumeEvent::Detach(VolumeAttachment {
                volume: volume.facts.clone(),
                vm_id,
                device_id: volume.device_id,
            }))
        };
        events.push(body);
    }
    // Its rules go before its NICs: a load balancer member is removed from the router by the
    // address of its NIC.
    events.extend(network_cleanup(state, vm_id));
    for nic in state.compute.nics_of(vm_id) {
        let nic: &NicFacts = &nic.facts;
        if let Some(network) = state.compute.networks.get(&nic.network_id) {
            events.push(EventBody::NetworkOffering(NetworkOfferingEvent::Remove(
                NetworkOfferingAssignment {
                    vm_id,
                    nic_id: nic.nic_id,
                    network_id: nic.network_id,
                    network_offering_id: network.facts.network_offering_id,
                    account_id: nic.account_id,
                    domain_id: nic.domain_id,
                    zone_id: nic.zone_id,
                    is_default: nic.is_default,
                },
            )));
        }
        events.push(EventBody::Nic(NicEvent::Delete(nic.clone())));
    }
    events.push(EventBody::Vm(VmEvent::Expunge(VmLifecycle { vm: facts })));
    events
}

/// What expunging a VM removes from the network services: port and IP forwarding rules to it,
/// static NAT to it, its load balancer memberships and its security group memberships (each a
/// fact whose router command the orchestration read model schedules).
fn network_cleanup(state: &State, vm_id: Uuid) -> Vec<EventBody> {
    let network = &state.network;
    let mut events = Vec::new();
    for rule in network
        .nat_rules
        .values()
        .filter(|r| r.facts.vm_id == Some(vm_id))
    {
        // The firewall rule its `openfirewall` added goes first, as CloudStack revokes it.
        let opened = related_firewall_rule_id(rule.facts.rule_id);
        if let Some(firewall) = network.firewall_rules.get(&opened) {
            events.push(EventBody::Firewall(FirewallEvent::Close(
                firewall.facts.clone(),
            )));
        }
        events.push(EventBody::Net(NetEvent::RuleDelete(rule.facts.clone())));
    }
    for ip in network.public_ips.values() {
        if let Some(nat) = ip.static_nat.as_ref().filter(|n| n.facts.vm_id == vm_id) {
            events.push(EventBody::StaticNat(StaticNatEvent::Disable(
                nat.facts.clone(),
            )));
        }
    }
    for lb in network
        .load_balancers
        .values()
        .filter(|lb| lb.members.contains_key(&vm_id))
    {
        let rule = &lb.rule.facts;
        events.push(EventBody::LoadBalancer(LoadBalancerEvent::RemoveFromRule(
            LoadBalancerMembers {
                rule_id: rule.rule_id,
                account_id: rule.account_id,
                domain_id: rule.domain_id,
                zone_id: rule.zone_id,
                vm_ids: vec![vm_id],
            },
        )));
    }
    let zone_id = state
        .compute
        .vms
        .get(&vm_id)
        .map(|vm| vm.facts.zone_id)
        .unwrap_or_default();
    for group in network
        .security_groups
        .values()
        .filter(|g| g.members.contains(&vm_id))
    {
        events.push(EventBody::SecurityGroup(SecurityGroupEvent::Remove(
            SecurityGroupMembership {
                group_id: group.facts.group_id,
                vm_id,
                account_id: group.facts.account_id,
                domain_id: group.facts.domain_id,
                zone_id,
            },
        )));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DriverCommand, NetworkAction};
    use engine::event::Actor;

    #[test]
    fn periodic_readings_start_counting_then_fire_every_interval() {
        let at = |s: i64| Timestamp::from_millis(s * 1000);
        let mut periodic = Periodic::default();
        assert_eq!(periodic.due(0, at(0)), None);
        // The first look starts the count.
        assert_eq!(periodic.due(300, at(10)), None);
        assert_eq!(periodic.due(300, at(309)), None);
        assert_eq!(periodic.due(300, at(310)), Some(300_000));
        assert_eq!(periodic.due(300, at(400)), None);
        assert_eq!(periodic.due(60, at(475)), Some(165_000));
        // Turned off, then on again: counting starts over.
        assert_eq!(periodic.due(0, at(10_000)), None);
        assert_eq!(periodic.due(60, at(10_001)), None);
        assert_eq!(periodic.due(60, at(10_061)), Some(60_000));
    }

    fn dhcp_removal(fact: bool) -> PendingCommand {
        let router_id = Uuid::new_v4();
        PendingCommand {
            command: DriverCommand {
                id: Uuid::new_v4(),
                action: DriverAction::Network(NetworkAction::RemoveDhcpEntry {
                    router_id,
                    mac: "02:00:00:00:00:01".into(),
                }),
            },
            event_type: "NIC.DELETE".into(),
            job_id: Some(Uuid::new_v4()),
            resource_type: "DomainRouter".into(),
            resource_id: router_id,
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
            requested_at: 7,
            request: serde_json::Value::Null,
            actor: Actor::SYSTEM,
            fact,
        }
    }

    #[test]
    fn a_fact_is_answered_by_driver_applied() {
        let pending = dhcp_removal(true);
        let events = success_events(&State::default(), &pending);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, failure_event(&pending, "x").id);
        assert_eq!(event.causation_id, Some(pending.command.id));
        assert_eq!(event.correlation_id, pending.job_id);
        assert_eq!(event.state, EventState::Completed);
        let EventBody::Driver(DriverEvent::Applied(applied)) = &event.body else {
            panic!("not DRIVER.APPLIED: {:?}", event.body);
        };
        assert_eq!(applied.command, "DhcpEntryCommand");
        assert_eq!(applied.command_id, pending.command.id);
        assert_eq!(applied.resource_id, pending.resource_id);
        assert_eq!(applied.account_id, pending.account_id);
        // A request is repeated instead (here unreadable, so it fails).
        let events = success_events(&State::default(), &dhcp_removal(false));
        assert!(matches!(
            &events[0].body,
            EventBody::Driver(DriverEvent::Failed(_))
        ));
    }
}
