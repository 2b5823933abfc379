//! Driver commands that have been requested and have no result yet: what the orchestrator must
//! run, and after a restart re-issue (DESIGN.md invariant 5).
//!
//! Architecture Invariant: a command's id is the id of the request event that caused it, and a
//! command leaves this table exactly when its result is in the log (the request's event type in
//! state `Completed`, caused by the request, or a DRIVER.FAILED naming it).

use compact_str::CompactString;
use engine::event::{
    Actor, DriverEvent, EventBody, EventState, RecordedEvent, SnapshotEvent, VmEvent,
    VmSnapshotEvent, VolumeEvent,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::compute::Compute;
use crate::driver::{DriverAction, DriverCommand};
use crate::network::Network;
use crate::router_commands::{RoutedCommand, network_command};
use crate::storage::Storage;
use crate::table::{PersistedTable, Table};

/// A requested driver command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// The command (its id is the request event's id).
    pub command: DriverCommand,
    /// The request's event type, such as `VM.START`: its result has the same type.
    pub event_type: CompactString,
    /// The job waiting for the result (the request's correlation id).
    pub job_id: Option<Uuid>,
    /// CloudStack resource type acted on, such as `VirtualMachine`.
    pub resource_type: CompactString,
    /// The resource acted on.
    pub resource_id: Uuid,
    /// Its account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Position of the request, so commands run in log order.
    pub requested_at: u64,
    /// The request's payload: a success result repeats it in state `Completed`.
    pub request: serde_json::Value,
    /// Who asked: the result is recorded in their name.
    pub actor: Actor,
    /// The command carries out a fact already recorded in state `Completed` (a NIC's DHCP
    /// entry, a rule deleted while its VM was expunged) rather than a request: its success is
    /// DRIVER.APPLIED, and no job waits for it.
    pub fact: bool,
}

/// How a command ended, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The driver confirmed it.
    Succeeded,
    /// The driver refused it, with its error text.
    Failed(String),
}

/// A command with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedCommand {
    /// How it ended.
    pub result: CommandResult,
    /// The job that waited for it.
    pub job_id: Option<Uuid>,
}

/// The orchestration read model.
#[derive(Debug)]
pub struct Orchestration {
    /// Commands without a result, by command id.
    pub pending: Table<Uuid, PendingCommand>,
    /// Results of finished commands, by command id: a job that outlived its server finds its
    /// outcome here.
    pub results: Table<Uuid, FinishedCommand>,
}

impl Default for Orchestration {
    fn default() -> Self {
        Orchestration {
            pending: Table::new("orchestration.pending"),
            results: Table::new("orchestration.results"),
        }
    }
}

impl Orchestration {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 2] {
        [&mut self.pending, &mut self.results]
    }

    /// Whether `event` is the result of a pending command (its type in state `Completed`, or
    /// DRIVER.APPLIED, caused by the command).
    pub(crate) fn answers(&self, event: &RecordedEvent) -> bool {
        event.envelope.state == EventState::Completed
            && event
                .envelope
                .causation_id
                .is_some_and(|cause| self.pending.get(&cause).is_some())
    }

    /// Applies one event, after `compute`, `storage` and `network` have (they read the pending
    /// command a result answers, so it is removed only here).
    pub(crate) fn apply(
        &mut self,
        event: &RecordedEvent,
        compute: &Compute,
        storage: &Storage,
        network: &Network,
    ) {
        let envelope = &event.envelope;
        if let EventBody::Driver(DriverEvent::Failed(failed)) = &*event.body {
            if let Some(pending) = self.pending.remove(&failed.command_id) {
                self.results.insert(
                    failed.command_id,
                    FinishedCommand {
                        result: CommandResult::Failed(failed.error.clone()),
                        job_id: pending.job_id,
                    },
                );
            }
            return;
        }
        match envelope.state {
            EventState::Completed => {
                if let Some(cause) = envelope.causation_id
                    && let Some(pending) = self.pending.remove(&cause)
                {
                    self.results.insert(
                        cause,
                        FinishedCommand {
                            result: CommandResult::Succeeded,
                            job_id: pending.job_id,
                        },
                    );
                    return;
                }
                // A fact that changes a router: the driver must be told, though nobody waits.
                if let Some(routed) = network_command(&event.body, compute, network, true) {
                    self.schedule(event, routed, true);
                }
            }
            EventState::Started => {
                if let Some(routed) = request(&event.body, compute, storage)
                    .or_else(|| network_command(&event.body, compute, network, false))
                {
                    self.schedule(event, routed, false);
                }
            }
            _ => {}
        }
    }

    /// Records the command an event asks for. A request's command is correlated with its job
    /// and answered by its own type in state `Completed`; a fact's by DRIVER.APPLIED, with no
    /// job (a fact may be correlated with a job that waits for another command).
    fn schedule(&mut self, event: &RecordedEvent, routed: RoutedCommand, fact: bool) {
        let envelope = &event.envelope;
        let (action, resource_type, resource_id, account_id, domain_id) = routed;
        self.pending.insert(
            envelope.id,
            PendingCommand {
                command: DriverCommand {
                    id: envelope.id,
                    action,
                },
                event_type: event.body.event_type().name().into(),
                job_id: if fact { None } else { envelope.correlation_id },
                resource_type: resource_type.into(),
                resource_id,
                account_id,
                domain_id,
                requested_at: envelope.position.0,
                request: if fact {
                    serde_json::Value::Null
                } else {
                    event.body.data_json().unwrap_or_default()
                },
                actor: envelope.actor,
                fact,
            },
        );
    }

    /// Pending commands in the order they were requested.
    pub fn in_order(&self) -> Vec<&PendingCommand> {
        let mut commands: Vec<&PendingCommand> = self.pending.values().collect();
        commands.sort_by_key(|c| c.requested_at);
        commands
    }

    /// The driver command a job waits for (pending or finished), if it has one.
    pub fn command_of_job(&self, job_id: Uuid) -> Option<Uuid> {
        self.pending
            .values()
            .find(|p| p.job_id == Some(job_id))
            .map(|p| p.command.id)
            .or_else(|| {
                self.results
                    .iter()
                    .find(|(_, f)| f.job_id == Some(job_id))
                    .map(|(id, _)| *id)
            })
    }
}

/// The driver command a request event asks for (after `compute` and `storage` applied it).
fn request(body: &EventBody, compute: &Compute, storage: &Storage) -> Option<RoutedCommand> {
    const VM: &str = "VirtualMachine";
    let host_of = |vm_id: Uuid| compute.vms.get(&vm_id).and_then(|v| v.host_id);
    Some(match body {
        EventBody::Vm(VmEvent::Start(e)) => {
            let vm = &e.vm;
            let action = DriverAction::StartVm {
                vm_id: vm.vm_id,
                host_id: e.host_id.or_else(|| host_of(vm.vm_id))?,
                cpu_number: vm.cpu_number,
                cpu_speed: vm.cpu_speed,
                memory_mib: vm.memory,
                volume_ids: storage
                    .volumes_of(vm.vm_id)
                    .iter()
                    .map(|v| v.facts.volume_id)
                    .collect(),
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Vm(VmEvent::Stop(e)) => {
            let vm = &e.vm;
            let action = DriverAction::StopVm {
                vm_id: vm.vm_id,
                host_id: host_of(vm.vm_id)?,
                forced: e.forced,
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Vm(VmEvent::Reboot(e)) => {
            let vm = &e.vm;
            let action = DriverAction::RebootVm {
                vm_id: vm.vm_id,
                host_id: host_of(vm.vm_id)?,
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Vm(VmEvent::Destroy(e)) => {
            let vm = &e.vm;
            let action = DriverAction::DestroyVm {
                vm_id: vm.vm_id,
                host_id: host_of(vm.vm_id),
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Vm(VmEvent::Migrate(e)) => {
            let vm = &e.vm;
            let from = compute
                .vms
                .get(&vm.vm_id)
                .and_then(|v| v.migrating_from)
                .or(e.from_host_id)?;
            let action = DriverAction::MigrateVm {
                vm_id: vm.vm_id,
                from_host_id: from,
                to_host_id: e.to_host_id,
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Vm(VmEvent::DynamicScale(e)) => {
            let vm = &e.vm;
            let action = DriverAction::ScaleVm {
                vm_id: vm.vm_id,
                host_id: host_of(vm.vm_id)?,
                cpu_number: vm.cpu_number,
                cpu_speed: vm.cpu_speed,
                memory_mib: vm.memory,
            };
            (action, VM, vm.vm_id, vm.account_id, vm.domain_id)
        }
        EventBody::Volume(VolumeEvent::Attach(e)) => {
            let v = &e.volume;
            let action = DriverAction::AttachVolume {
                volume_id: v.volume_id,
                vm_id: e.vm_id,
                host_id: host_of(e.vm_id),
            };
            (action, "Volume", v.volume_id, v.account_id, v.domain_id)
        }
        EventBody::Volume(VolumeEvent::Detach(e)) => {
            let v = &e.volume;
            let action = DriverAction::DetachVolume {
                volume_id: v.volume_id,
                vm_id: e.vm_id,
                host_id: host_of(e.vm_id),
            };
            (action, "Volume", v.volume_id, v.account_id, v.domain_id)
        }
        EventBody::Volume(VolumeEvent::Resize(e)) => {
            let v = &e.volume;
            let action = DriverAction::ResizeVolume {
                volume_id: v.volume_id,
                new_size: v.size,
            };
            (action, "Volume", v.volume_id, v.account_id, v.domain_id)
        }
        EventBody::Snapshot(SnapshotEvent::Create(e)) => {
            let s = &e.snapshot;
            let action = DriverAction::TakeSnapshot {
                snapshot_id: s.snapshot_id,
                volume_id: s.volume_id,
            };
            (action, "Snapshot", s.snapshot_id, s.account_id, s.domain_id)
        }
        EventBody::VmSnapshot(event) => {
            let (facts, action) = match event {
                VmSnapshotEvent::Create(e) => (
                    &e.vm_snapshot,
                    DriverAction::TakeVmSnapshot {
                        vm_snapshot_id: e.vm_snapshot.vm_snapshot_id,
                        vm_id: e.vm_snapshot.vm_id,
                    },
                ),
                VmSnapshotEvent::RevertTo(e) => (
                    &e.vm_snapshot,
                    DriverAction::RevertToVmSnapshot {
                        vm_snapshot_id: e.vm_snapshot.vm_snapshot_id,
                        vm_id: e.vm_snapshot.vm_id,
                    },
                ),
                VmSnapshotEvent::Delete(e) => (
                    &e.vm_snapshot,
                    DriverAction::DeleteVmSnapshot {
                        vm_snapshot_id: e.vm_snapshot.vm_snapshot_id,
                        vm_id: e.vm_snapshot.vm_id,
                    },
                ),
                _ => return None,
            };
            (
                action,
                "VMSnapshot",
                facts.vm_snapshot_id,
                facts.account_id,
                facts.domain_id,
            )
        }
        _ => return None,
    })
}
