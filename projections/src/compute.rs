//! Virtual machines, their NICs and guest networks, SSH key pairs, resource tags and resource
//! limits: the rows behind `listVirtualMachines`, `listSSHKeyPairs`, `listTags` and
//! `listResourceLimits`, and what the allocation decisions (capacity, limits, address pools,
//! unique names) read.
//!
//! A hypervisor action is two events: a request in state `Started` (the orchestrator turns it
//! into a driver command) and its result, the same event type in state `Completed`, caused by
//! the request, or a DRIVER.FAILED. Rows move to a transitional state (`Starting`, `Stopping`,
//! ...) on the request and settle on the result, so capacity is held from the moment a
//! placement is decided.

use std::collections::BTreeMap;

use compact_str::CompactString;
use engine::event::identity::{LimitOwner, SshKeyPairFacts};
use engine::event::network::{NetworkFacts, NicFacts};
use engine::event::vm::VmFacts;
use engine::event::{
    DriverEvent, EventBody, EventState, IsoEvent, NetworkEvent, NicEvent, RecordedEvent,
    RegisterEvent, ResourceLimitEvent, SshKeyPairEvent, TagsEvent, VmEvent,
};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Created;
use crate::infrastructure::HostCapacity;
use crate::orchestration::Orchestration;
use crate::table::{PersistedTable, Table};

/// A VM's state, named as CloudStack names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// A start was requested; the host's capacity is held.
    Starting,
    /// The driver confirmed the start.
    Running,
    /// A stop (or destroy) was requested.
    Stopping,
    /// Not running; holds no host capacity.
    Stopped,
    /// Moving to another host; capacity is held on both.
    Migrating,
    /// Destroyed but recoverable until expunged.
    Destroyed,
    /// Its first start failed.
    Error,
}

impl VmState {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Starting => "Starting",
            VmState::Running => "Running",
            VmState::Stopping => "Stopping",
            VmState::Stopped => "Stopped",
            VmState::Migrating => "Migrating",
            VmState::Destroyed => "Destroyed",
            VmState::Error => "Error",
        }
    }

    /// Whether a VM in this state holds capacity on its host.
    pub fn holds_host(self) -> bool {
        matches!(
            self,
            VmState::Starting | VmState::Running | VmState::Stopping | VmState::Migrating
        )
    }
}

/// A VM as `listVirtualMachines` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRow {
    /// Facts of the last event (offering and shape are the current ones).
    pub facts: VmFacts,
    /// Where it is in its lifecycle.
    pub state: VmState,
    /// The host it runs on (or is starting on).
    pub host_id: Option<Uuid>,
    /// While migrating: the host it leaves (its capacity stays held until the driver confirms).
    pub migrating_from: Option<Uuid>,
    /// The shape before a scale in flight, restored if the driver refuses it.
    pub scaling_from: Option<VmFacts>,
    /// The state before a stop/reboot/destroy in flight, restored if the driver refuses it.
    pub state_before: Option<VmState>,
    /// It has run at least once (a failed first start puts it in Error, a later one in Stopped).
    pub has_run: bool,
    /// When it was deployed.
    pub created: Timestamp,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// Installed key pairs.
    pub ssh_keypairs: Vec<CompactString>,
    /// `group`.
    pub group: Option<CompactString>,
    /// `haenable`.
    pub ha_enabled: bool,
    /// The ISO attached, if any.
    pub iso_id: Option<Uuid>,
    /// Disk offering of the data disk created at deploy.
    pub disk_offering_id: Option<Uuid>,
}

/// A guest network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRow {
    /// Facts of the last event.
    pub facts: NetworkFacts,
    /// When it was created.
    pub created: Timestamp,
    /// The delete request the driver has not answered yet (CloudStack shows `Shutdown`);
    /// cleared when it fails.
    pub deleting: Option<Uuid>,
}

/// The read model of this module.
#[derive(Debug)]
pub struct Compute {
    /// VMs by id (expunged ones removed).
    pub vms: Table<Uuid, VmRow>,
    /// NICs by id.
    pub nics: Table<Uuid, Created<NicFacts>>,
    /// Guest networks by id.
    pub networks: Table<Uuid, NetworkRow>,
    /// SSH key pairs by id.
    pub keypairs: Table<Uuid, Created<SshKeyPairFacts>>,
    /// Tags by `resource id/key`.
    pub tags: Table<String, TagRow>,
    /// Limits set by `updateResourceLimit`, by `account|domain/owner id/resource type`.
    pub limits: Table<String, i64>,
}

/// One tag on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRow {
    /// CloudStack resource type, such as `UserVm`.
    pub resource_type: CompactString,
    /// The resource.
    pub resource_id: Uuid,
    /// Key.
    pub key: CompactString,
    /// Value.
    pub value: String,
    /// The resource's account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            vms: Table::new("compute.vms"),
            nics: Table::new("compute.nics"),
            networks: Table::new("compute.networks"),
            keypairs: Table::new("compute.keypairs"),
            tags: Table::new("compute.tags"),
            limits: Table::new("compute.limits"),
        }
    }
}

/// The key of a limit row.
pub fn limit_key(owner: LimitOwner, owner_id: Uuid, resource_type: u8) -> String {
    let owner = match owner {
        LimitOwner::Account => "account",
        LimitOwner::Domain => "domain",
    };
    format!("{owner}/{owner_id}/{resource_type}")
}

/// The key of a tag row.
pub fn tag_key(resource_id: Uuid, key: &str) -> String {
    format!("{resource_id}/{key}")
}

impl Compute {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 6] {
        [
            &mut self.vms,
            &mut self.nics,
            &mut self.networks,
            &mut self.keypairs,
            &mut self.tags,
            &mut self.limits,
        ]
    }

    /// Applies one event; `orchestration` still holds the command a result answers.
    pub(crate) fn apply(&mut self, event: &RecordedEvent, orchestration: &Orchestration) {
        let at = event.envelope.occurred_at;
        let requested = event.envelope.state == EventState::Started;
        match &*event.body {
            EventBody::Vm(vm) => self.apply_vm(vm, requested, at),
            EventBody::Driver(DriverEvent::Failed(failed)) => {
                for network in self
                    .networks
                    .values_mut_where(|n| n.deleting == Some(failed.command_id))
                {
                    network.deleting = None;
                }
                let Some(pending) = orchestration.pending.get(&failed.command_id) else {
                    return;
                };
                let Some(row) = self.vms.get_mut(&failed.resource_id) else {
                    return;
                };
                match pending.event_type.as_str() {
                    "VM.START" => {
                        row.state = if row.has_run {
                            VmState::Stopped
                        } else {
                            VmState::Error
                        };
                        row.host_id = None;
                    }
                    "VM.STOP" | "VM.REBOOT" | "VM.DESTROY" => {
                        row.state = row.state_before.take().unwrap_or(VmState::Running);
                    }
                    "VM.MIGRATE" => {
                        if let Some(from) = row.migrating_from.take() {
                            row.host_id = Some(from);
                        }
                        row.state = VmState::Running;
                    }
                    "VM.DYNAMIC.SCALE" => {
                        if let Some(previous) = row.scaling_from.take() {
                            row.facts = previous;
                        }
                    }
                    _ => {}
                }
            }
            EventBody::Iso(IsoEvent::Attach(e)) => {
                if let Some(row) = self.vms.get_mut(&e.vm_id) {
                    row.iso_id = Some(e.iso_id);
                }
            }
            EventBody::Iso(IsoEvent::Detach(e)) => {
                if let Some(row) = self.vms.get_mut(&e.vm_id) {
                    row.iso_id = None;
                }
            }
            EventBody::Network(NetworkEvent::Create(e)) => self.networks.insert(
                e.network.network_id,
                NetworkRow {
                    facts: e.network.clone(),
                    created: at,
                    deleting: None,
                },
            ),
            EventBody::Network(NetworkEvent::Update(e)) => {
                if let Some(row) = self.networks.get_mut(&e.network.network_id) {
                    row.facts = e.network.clone();
                }
            }
            EventBody::Network(NetworkEvent::Delete(e)) => {
                if requested {
                    if let Some(row) = self.networks.get_mut(&e.network.network_id) {
                        row.deleting = Some(event.envelope.id);
                    }
                } else {
                    self.networks.remove(&e.network.network_id);
                }
            }
            EventBody::Nic(NicEvent::Create(nic)) => self.nics.insert(
                nic.nic_id,
                Created {
                    facts: nic.clone(),
                    created: at,
                },
            ),
            EventBody::Nic(NicEvent::Update(nic)) => {
                if let Some(row) = self.nics.get_mut(&nic.nic_id) {
                    row.facts = nic.clone();
                }
            }
            EventBody::Nic(NicEvent::Delete(nic)) => {
                self.nics.remove(&nic.nic_id);
            }
            EventBody::Register(RegisterEvent::SshKeyPair(e)) => self.keypairs.insert(
                e.keypair_id,
                Created {
                    facts: SshKeyPairFacts {
                        keypair_id: e.keypair_id,
                        name: e.name.clone(),
                        account_id: e.account_id,
                        domain_id: e.domain_id,
                        fingerprint: e.fingerprint.clone(),
                        public_key: e.public_key.clone(),
                    },
                    created: at,
                },
            ),
            EventBody::SshKeyPair(SshKeyPairEvent::Create(e)) => self.keypairs.insert(
                e.keypair_id,
                Created {
                    facts: e.clone(),
                    created: at,
                },
            ),
            EventBody::SshKeyPair(SshKeyPairEvent::Delete(e)) => {
                self.keypairs.remove(&e.keypair_id);
            }
            EventBody::Tags(TagsEvent::Create(e)) => {
                for id in &e.resource_ids {
                    for tag in &e.tags {
                        self.tags.insert(
                            tag_key(*id, &tag.key),
                            TagRow {
                                resource_type: e.resource_type.clone(),
                                resource_id: *id,
                                key: tag.key.clone(),
                                value: tag.value.clone(),
                                account_id: e.account_id,
                                domain_id: e.domain_id,
                            },
                        );
                    }
                }
            }
            EventBody::Tags(TagsEvent::Delete(e)) => {
                for id in &e.resource_ids {
                    for tag in &e.tags {
                        self.tags.remove(&tag_key(*id, &tag.key));
                    }
                }
            }
            EventBody::ResourceLimit(ResourceLimitEvent::Update(e)) => {
                let key = limit_key(e.owner, e.owner_id, e.resource_type);
                match e.max {
                    Some(max) => self.limits.insert(key, max),
                    None => {
                        self.limits.remove(&key);
                    }
                }
            }
            _ => {}
        }
    }

    fn apply_vm(&mut self, event: &VmEvent, requested: bool, at: Timestamp) {
        match event {
            VmEvent::Create(e) => {
                self.vms.insert(
                    e.vm.vm_id,
                    VmRow {
                        facts: e.vm.clone(),
                        state: VmState::Stopped,
                        host_id: None,
                        migrating_from: None,
                        scaling_from: None,
                        state_before: None,
                        has_run: false,
                        created: at,
                        user_data: e.user_data.clone(),
                        ssh_keypairs: e.ssh_keypairs.clone(),
                        group: None,
                        ha_enabled: false,
                        iso_id: None,
                        disk_offering_id: e.disk_offering_id,
                    },
                );
            }
            VmEvent::Start(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                row.facts = e.vm.clone();
                row.host_id = e.host_id.or(row.host_id);
                if requested {
                    row.state = VmState::Starting;
                } else {
                    row.state = VmState::Running;
                    row.has_run = true;
                }
            }
            VmEvent::Stop(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                if requested {
                    row.state_before = Some(row.state);
                    row.state = VmState::Stopping;
                } else {
                    row.state = VmState::Stopped;
                    row.host_id = None;
                    row.state_before = None;
                }
            }
            VmEvent::Reboot(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                if requested {
                    row.state_before = Some(row.state);
                } else {
                    row.state = VmState::Running;
                    row.state_before = None;
                }
            }
            VmEvent::Destroy(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                if requested {
                    row.state_before = Some(row.state);
                    if row.state.holds_host() {
                        row.state = VmState::Stopping;
                    }
                } else {
                    row.state = VmState::Destroyed;
                    row.host_id = None;
                    row.state_before = None;
                }
            }
            VmEvent::Expunge(e) => {
                self.vms.remove(&e.vm.vm_id);
            }
            VmEvent::Recover(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.state = VmState::Stopped;
                }
            }
            VmEvent::Update(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.facts = e.vm.clone();
                    if e.user_data.is_some() {
                        row.user_data = e.user_data.clone();
                    }
                    if e.group.is_some() {
                        row.group = e.group.clone();
                    }
                    if let Some(ha) = e.ha_enabled {
                        row.ha_enabled = ha;
                    }
                }
            }
            VmEvent::Upgrade(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.facts = e.vm.clone();
                }
            }
            VmEvent::DynamicScale(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                if requested {
                    row.scaling_from = Some(row.facts.clone());
                } else {
                    row.scaling_from = None;
                }
                row.facts = e.vm.clone();
            }
            VmEvent::Migrate(e) => {
                let Some(row) = self.vms.get_mut(&e.vm.vm_id) else {
                    return;
                };
                if requested {
                    row.migrating_from = row.host_id;
                    row.host_id = Some(e.to_host_id);
                    row.state = VmState::Migrating;
                } else {
                    row.migrating_from = None;
                    row.host_id = Some(e.to_host_id);
                    row.state = VmState::Running;
                }
            }
            VmEvent::ResetSshKey(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.ssh_keypairs = e.ssh_keypairs.clone();
                }
            }
            VmEvent::Move(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.facts = e.vm.clone();
                }
            }
            VmEvent::Restore(e) => {
                if let Some(row) = self.vms.get_mut(&e.vm.vm_id) {
                    row.facts = e.vm.clone();
                }
            }
            VmEvent::ResetPassword(_) => {}
        }
    }

    /// CPU (MHz) and memory (MiB) allocated on every host, from the VMs that hold one.
    pub fn host_allocations(&self) -> BTreeMap<Uuid, HostCapacity> {
        let mut used: BTreeMap<Uuid, HostCapacity> = BTreeMap::new();
        for vm in self.vms.values() {
            if !vm.state.holds_host() {
                continue;
            }
            let cpu = u64::from(vm.facts.cpu_number) * u64::from(vm.facts.cpu_speed);
            let hosts = vm.host_id.into_iter().chain(vm.migrating_from);
            for host in hosts {
                let entry = used.entry(host).or_default();
                entry.cpu_used_mhz += cpu;
                entry.memory_used_mib += vm.facts.memory;
            }
        }
        used
    }

    /// The account's VMs that count against its limits (all but destroyed ones).
    pub fn counted_vms(&self, account_id: Uuid) -> impl Iterator<Item = &VmRow> {
        self.vms
            .values()
            .filter(move |vm| vm.facts.account_id == account_id && vm.state != VmState::Destroyed)
    }

    /// NICs of a VM, default first, then by device number.
    pub fn nics_of(&self, vm_id: Uuid) -> Vec<&Created<NicFacts>> {
        let mut nics: Vec<_> = self
            .nics
            .values()
            .filter(|n| n.facts.vm_id == vm_id)
            .collect();
        nics.sort_by_key(|n| (!n.facts.is_default, n.facts.device_id));
        nics
    }

    /// Tags of a resource, by key.
    pub fn tags_of(&self, resource_id: Uuid) -> Vec<&TagRow> {
        let prefix = format!("{resource_id}/");
        self.tags
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .collect()
    }
}
