//! The orchestrator: runs every requested driver command (see `orchestration`) against the
//! hypervisor driver and appends its result to the log; takes the disk counter readings every
//! `vm.disk.stats.interval` seconds.
//!
//! Architecture Invariant: the orchestrator works only from the log. What to run is the
//! `pending` table of the read models, so after a restart every command without a result is
//! issued again with the same id (the driver answers a repeated id with its first outcome), and
//! every result event has an id derived from its command (DESIGN.md invariants 5 and 9), so a
//! result appended twice is stored once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use engine::clock::Clock;
use engine::event::network::{NetworkOfferingAssignment, NicFacts};
use engine::event::operations::DriverFailed;
use engine::event::storage::VolumeCounterReading;
use engine::event::storage::{VmSnapshotLifecycle, VolumeAttachment, VolumeLifecycle, VolumeType};
use engine::event::vm::{VmFacts, VmLifecycle};
use engine::event::{
    EventBody, EventState, EventType, Level, NetworkOfferingEvent, NewEvent, NicEvent, StreamId,
    VmEvent, VmSnapshotEvent, VolumeEvent,
};
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use tokio::sync::oneshot;
use tracing::{info, warn};
use uuid::Uuid;

use crate::State;
use crate::compute::VmState;
use crate::driver::{DriverAction, HypervisorDriver, SimulatedHost};
use crate::orchestration::PendingCommand;
use crate::runner::ReadModels;

/// How often the orchestrator looks at the clock when nothing else wakes it (disk readings
/// on a manual clock are taken at the next look after the clock moved).
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Stops the orchestrator.
pub struct OrchestratorHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl OrchestratorHandle {
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
    clock: Arc<dyn Clock>,
    in_flight: Mutex<BTreeSet<Uuid>>,
}

/// Starts the orchestrator on the read models of `store`.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    driver: Arc<dyn HypervisorDriver>,
    clock: Arc<dyn Clock>,
) -> OrchestratorHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let orchestrator = Arc::new(Orchestrator {
        store,
        models,
        driver,
        clock,
        in_flight: Mutex::new(BTreeSet::new()),
    });
    let task = tokio::spawn(orchestrator.run(stop_rx));
    OrchestratorHandle {
        stop: Some(stop_tx),
        task,
    }
}

impl Orchestrator {
    async fn run(self: Arc<Self>, mut stop: oneshot::Receiver<()>) {
        let mut changes = self.models.changes();
        let mut known_hosts: BTreeSet<(Uuid, u32, u32, u64)> = BTreeSet::new();
        let mut last_reading: Option<Timestamp> = None;
        // Commands already pending when the orchestrator starts run at once. Later ones wait
        // until their job is recorded and started, so a job's rows come before its result's
        // (a request is appended just before its job; one whose job was lost to a crash in
        // between is pending at the next start, and runs then).
        let mut startup: Option<BTreeSet<Uuid>> = None;
        loop {
            changes.borrow_and_update();
            let (hosts, todo, interval) = {
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
                let todo: Vec<PendingCommand> = state
                    .orchestration
                    .in_order()
                    .into_iter()
                    .filter(|c| !in_flight.contains(&c.command.id))
                    .filter(|c| {
                        startup.contains(&c.command.id)
                            || c.job_id.is_none_or(|job| {
                                state.jobs.jobs.get(&job).is_some_and(|j| j.proc_status > 0)
                            })
                    })
                    .cloned()
                    .collect();
                let interval = state.configuration.global_i64("vm.disk.stats.interval");
                (hosts, todo, interval)
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
            last_reading = self.read_disks(interval, last_reading).await;
            tokio::select! {
                _ = &mut stop => return,
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

    async fn execute(self: Arc<Self>, pending: PendingCommand) {
        let id = pending.command.id;
        let outcome = self.driver.execute(pending.command.clone()).await;
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
    }

    /// Appends one VOLUME.STATS per volume of every running VM when the interval has passed.
    async fn read_disks(&self, interval_s: i64, last: Option<Timestamp>) -> Option<Timestamp> {
        let now = self.clock.now();
        if interval_s <= 0 {
            return None;
        }
        let Some(last) = last else {
            return Some(now);
        };
        let elapsed = now.millis() - last.millis();
        if elapsed < interval_s * 1000 {
            return Some(last);
        }
        let readings = self
            .driver
            .read_disk_counters(u64::try_from(elapsed).unwrap_or(0));
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
        if !events.is_empty() {
            let count = events.len();
            match StreamId::singleton("diskstats") {
                Ok(stream) => {
                    if let Err(e) = self
                        .store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                    {
                        warn!(error = %e, "could not record disk counter readings");
                    } else {
                        info!(volumes = count, "recorded disk counter readings");
                    }
                }
                Err(e) => warn!(error = %e, "bad stream name"),
            }
        }
        Some(now)
    }
}

/// The events recording a command's success: the request repeated in state `Completed`, and
/// for a destroy with `expunge`, the expunge.
pub fn success_events(state: &State, pending: &PendingCommand) -> Vec<NewEvent> {
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
        EventBody::Driver(engine::event::DriverEvent::Failed(failed)),
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
