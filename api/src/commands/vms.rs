//! Virtual machines: `deployVirtualMachine`, `listVirtualMachines`, `startVirtualMachine`,
//! `stopVirtualMachine`, `rebootVirtualMachine`, `destroyVirtualMachine`,
//! `recoverVirtualMachine`, `expungeVirtualMachine`, `changeServiceForVirtualMachine`,
//! `scaleVirtualMachine`, `updateVirtualMachine`, `resetPasswordForVirtualMachine`,
//! `migrateVirtualMachine`, and the simulator's `configureSimulator`.
//!
//! Every action the hypervisor performs is a `Started` request decided on the allocation
//! stream (capacity, limits, addresses and names are checked there, DESIGN.md invariant 8);
//! the orchestrator runs it and the job completes from its result (see `jobs::after_command`).

use std::collections::BTreeSet;
use std::time::Duration;

use compact_str::CompactString;
use engine::event::network::{NetworkFacts, NetworkLifecycle, NetworkOfferingAssignment, NicFacts};
use engine::event::services::SecurityGroupMembership;
use engine::event::storage::{VolumeCreated, VolumeFacts, VolumeType};
use engine::event::vm::{
    VmCreated, VmDestroyed, VmFacts, VmLifecycle, VmMigrated, VmOfferingChanged, VmStarted,
    VmStopped, VmUpdated,
};
use engine::event::{
    EventBody, NetworkEvent, NetworkOfferingEvent, NewEvent, NicEvent, SecurityGroupEvent, VmEvent,
    VolumeEvent,
};
use projections::State;
use projections::catalog::Created;
use projections::compute::{VmRow, VmState};
use projections::driver::CommandKind;
use projections::orchestrator::expunge_events;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::networks;
use crate::allocation::{self, ALLOCATION, ResourceType, check_limit, gib};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobIds, JobMeta, JobRun, JobTask};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Roles, field, param,
    required,
};
use crate::response::Reply;

const GIB: u64 = 1024 * 1024 * 1024;

/// The network offering of every account's default guest network (defined with the other
/// built-in offerings in `networks`).
pub use super::networks::DEFAULT_NETWORK_OFFERING;

/// The fields of a `virtualmachine` (listApis).
pub const VM_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the virtual machine"),
    field("name", "string", "the name of the virtual machine"),
    field("displayname", "string", "user generated name"),
    field("instancename", "string", "instance name of the user vm"),
    field("state", "string", "the state of the virtual machine"),
    field(
        "account",
        "string",
        "the account associated with the virtual machine",
    ),
    field(
        "domainid",
        "string",
        "the ID of the domain in which the virtual machine exists",
    ),
    field(
        "domain",
        "string",
        "the name of the domain in which the virtual machine exists",
    ),
    field(
        "created",
        "date",
        "the date when this virtual machine was created",
    ),
    field(
        "zoneid",
        "string",
        "the ID of the availability zone for the virtual machine",
    ),
    field(
        "zonename",
        "string",
        "the name of the availability zone for the virtual machine",
    ),
    field(
        "hostid",
        "string",
        "the ID of the host for the virtual machine",
    ),
    field(
        "hostname",
        "string",
        "the name of the host for the virtual machine",
    ),
    field(
        "templateid",
        "string",
        "the ID of the template for the virtual machine",
    ),
    field(
        "templatename",
        "string",
        "the name of the template for the virtual machine",
    ),
    field(
        "serviceofferingid",
        "string",
        "the ID of the service offering of the virtual machine",
    ),
    field(
        "serviceofferingname",
        "string",
        "the name of the service offering of the virtual machine",
    ),
    field(
        "cpunumber",
        "integer",
        "the number of vCPUs this virtual machine is using",
    ),
    field("cpuspeed", "integer", "the speed of each vCPU"),
    field(
        "memory",
        "integer",
        "the memory allocated for the virtual machine",
    ),
    field(
        "hypervisor",
        "string",
        "the hypervisor on which the template runs",
    ),
    field("nic", "set", "the list of nics associated with vm"),
    field(
        "securitygroup",
        "set",
        "list of security groups associated with the virtual machine",
    ),
    field(
        "affinitygroup",
        "set",
        "list of affinity groups associated with the virtual machine",
    ),
    field("keypairs", "string", "ssh key-pairs"),
    field(
        "isoid",
        "string",
        "the ID of the ISO attached to the virtual machine",
    ),
    field(
        "haenable",
        "boolean",
        "true if high-availability is enabled, false otherwise",
    ),
    field("group", "string", "the group name of the virtual machine"),
    field(
        "isdynamicallyscalable",
        "boolean",
        "true if vm contains XS/VMWare tools in order to support dynamic scaling of VM cpu/memory",
    ),
    field("tags", "set", "the list of resource tags associated"),
    field(
        "password",
        "string",
        "the password (if exists) of the virtual machine",
    ),
];

const VM_ID: ParamSpec = required("id", T::Uuid, "The ID of the virtual machine");

/// The VM commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "deployVirtualMachine",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates and automatically starts a virtual machine based on a service offering, disk offering, and template.",
        params: &[
            required(
                "zoneid",
                T::Uuid,
                "availability zone for the virtual machine",
            ),
            required(
                "serviceofferingid",
                T::Uuid,
                "the ID of the service offering for the virtual machine",
            ),
            required(
                "templateid",
                T::Uuid,
                "the ID of the template for the virtual machine",
            ),
            param("name", T::String, "host name for the virtual machine"),
            param(
                "displayname",
                T::String,
                "an optional user generated name for the virtual machine",
            ),
            param(
                "startvm",
                T::Boolean,
                "true by default; false creates the VM Stopped",
            ),
            param(
                "userdata",
                T::String,
                "an optional binary data that can be sent to the virtual machine upon a successful deployment (base64)",
            ),
            param(
                "keypair",
                T::String,
                "name of the ssh key pair used to login to the virtual machine",
            ),
            param(
                "keypairs",
                T::List,
                "names of the ssh key pairs used to login to the virtual machine",
            ),
            param(
                "rootdisksize",
                T::Long,
                "Optional field to resize root disk on deploy (GB)",
            ),
            param(
                "diskofferingid",
                T::Uuid,
                "the ID of the disk offering for a data disk",
            ),
            param(
                "size",
                T::Long,
                "the size of the data disk in GB for a custom disk offering",
            ),
            param(
                "networkids",
                T::List,
                "list of network ids used by virtual machine (default: the account's default guest network)",
            ),
            param(
                "securitygroupids",
                T::List,
                "comma separated list of security groups id that going to be applied to the virtual machine. Mutually exclusive with securitygroupnames parameter",
            ),
            param(
                "securitygroupnames",
                T::List,
                "comma separated list of security groups names that going to be applied to the virtual machine. Mutually exclusive with securitygroupids parameter",
            ),
            param(
                "hostid",
                T::Uuid,
                "destination Host ID to deploy the VM to (root admin)",
            ),
            param(
                "hypervisor",
                T::String,
                "the hypervisor on which to deploy the virtual machine (Simulator)",
            ),
            param(
                "group",
                T::String,
                "an optional group for the virtual machine",
            ),
            param(
                "details",
                T::Map,
                "custom offering shape: details[0].cpuNumber, details[0].cpuSpeed, details[0].memory",
            ),
            param(
                "account",
                T::String,
                "an optional account for the virtual machine. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId for the virtual machine",
            ),
            param(
                "projectid",
                T::Uuid,
                "Deploy vm for the project (not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "listVirtualMachines",
        manual_clock_only: false,
        handler: handler!(deploy),
    },
    CommandSpec {
        name: "listVirtualMachines",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List the virtual machines owned by the account.",
        params: &[
            param("id", T::Uuid, "the ID of the virtual machine"),
            param("ids", T::List, "the IDs of the virtual machines"),
            param("name", T::String, "name of the virtual machine"),
            param("state", T::String, "state of the virtual machine"),
            param("zoneid", T::Uuid, "the availability zone ID"),
            param("templateid", T::Uuid, "list vms by template"),
            param("serviceofferingid", T::Uuid, "list by the service offering"),
            param("hostid", T::Uuid, "the host ID (root admin)"),
            param("groupid", T::String, "the group ID"),
            param("networkid", T::Uuid, "list by network id"),
        ],
        inherits: Inherits::PagingAndScope,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list),
    },
    CommandSpec {
        name: "startVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Starts a virtual machine.",
        params: &[
            VM_ID,
            param(
                "hostid",
                T::Uuid,
                "destination Host ID to deploy the VM to (root admin)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(start),
    },
    CommandSpec {
        name: "stopVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Stops a virtual machine.",
        params: &[
            VM_ID,
            param(
                "forced",
                T::Boolean,
                "Force stop the VM (vm is marked as Stopped even when command fails to be send to the backend)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(stop),
    },
    CommandSpec {
        name: "rebootVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Reboots a virtual machine.",
        params: &[VM_ID],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(reboot),
    },
    CommandSpec {
        name: "destroyVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Destroys a virtual machine. Once destroyed, only the administrator can recover it.",
        params: &[
            VM_ID,
            param(
                "expunge",
                T::Boolean,
                "If true is passed, the vm is expunged immediately.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(destroy),
    },
    CommandSpec {
        name: "recoverVirtualMachine",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Recovers a virtual machine.",
        params: &[VM_ID],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(recover),
    },
    CommandSpec {
        name: "expungeVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Expunge a virtual machine. Once expunged, it cannot be recoverd.",
        params: &[VM_ID],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(expunge),
    },
    CommandSpec {
        name: "changeServiceForVirtualMachine",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Changes the service offering for a virtual machine. The virtual machine must be in a \"Stopped\" state for this command to take effect.",
        params: &[
            VM_ID,
            required(
                "serviceofferingid",
                T::Uuid,
                "the service offering ID to apply to the virtual machine",
            ),
            param(
                "details",
                T::Map,
                "custom offering shape: details[0].cpuNumber, details[0].cpuSpeed, details[0].memory",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(change_service),
    },
    CommandSpec {
        name: "scaleVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Scales the virtual machine to a new service offering. A running VM needs an offering with dynamic scaling enabled.",
        params: &[
            VM_ID,
            required(
                "serviceofferingid",
                T::Uuid,
                "the ID of the service offering for the virtual machine",
            ),
            param(
                "details",
                T::Map,
                "custom offering shape: details[0].cpuNumber, details[0].cpuSpeed, details[0].memory",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(scale),
    },
    CommandSpec {
        name: "updateVirtualMachine",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Updates properties of a virtual machine.",
        params: &[
            VM_ID,
            param("displayname", T::String, "user generated name"),
            param(
                "name",
                T::String,
                "new host name of the vm (the VM must be stopped)",
            ),
            param("group", T::String, "group of the virtual machine"),
            param(
                "haenable",
                T::Boolean,
                "true if high-availability is enabled for the virtual machine",
            ),
            param(
                "userdata",
                T::String,
                "an optional binary data that can be sent to the virtual machine (base64)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update),
    },
    CommandSpec {
        name: "resetPasswordForVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Resets the password for virtual machine. The virtual machine must be in a \"Stopped\" state. The new password is returned once and never recorded.",
        params: &[VM_ID],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(reset_password),
    },
    CommandSpec {
        name: "migrateVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ADMIN,
        description: "Attempts Migration of a VM to a different host.",
        params: &[
            required("virtualmachineid", T::Uuid, "the ID of the virtual machine"),
            param(
                "hostid",
                T::Uuid,
                "Destination Host ID to migrate VM to (default: the first other host with capacity)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(migrate),
    },
    CommandSpec {
        name: "configureSimulator",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Configures the simulator hypervisor: make the next commands of one kind fail, fail with a probability, or wait.",
        params: &[
            required(
                "name",
                T::String,
                "the agent command: StartCommand, StopCommand, RebootCommand, DestroyCommand, MigrateCommand, ScaleVmCommand, AttachCommand, DettachCommand, ResizeVolumeCommand, CreateSnapshotCommand, CreateVMSnapshotCommand, RevertToVMSnapshotCommand, DeleteVMSnapshotCommand",
            ),
            required(
                "value",
                T::String,
                "result:fail (with count: the next N fail), probability:P (percent), wait:MS (latency), or clear",
            ),
            param(
                "count",
                T::Integer,
                "how many of the next commands fail (result:fail; default 1)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(configure_simulator),
    },
];

// ---------------------------------------------------------------------------------------------
// Views

/// A VM as CloudStack shows it (UserVmResponse).
pub fn vm_json(state: &State, row: &VmRow) -> Value {
    let f = &row.facts;
    let mut vm = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            vm.insert(k.into(), v);
        }
    };
    put("id", json!(f.vm_id));
    put("name", json!(f.name));
    put(
        "displayname",
        json!(f.display_name.as_deref().unwrap_or(&f.name)),
    );
    put("instancename", json!(f.instance_name));
    put("account", json!(state.identity.account_name(f.account_id)));
    put("domainid", json!(f.domain_id));
    put(
        "domain",
        json!(
            state
                .identity
                .domains
                .get(&f.domain_id)
                .map(|d| &d.facts.name)
        ),
    );
    put("created", json!(super::date(row.created)));
    put("state", json!(row.state.as_str()));
    put("haenable", json!(row.ha_enabled));
    put("group", json!(row.group));
    put("zoneid", json!(f.zone_id));
    put(
        "zonename",
        json!(state.catalog.zones.get(&f.zone_id).map(|z| &z.facts.name)),
    );
    if let Some(host) = row.host_id {
        put("hostid", json!(host));
        put(
            "hostname",
            json!(state.infrastructure.hosts.get(&host).map(|h| &h.facts.name)),
        );
    }
    put("templateid", json!(f.template_id));
    if let Some(t) = state.storage.templates.get(&f.template_id) {
        put("templatename", json!(t.facts.name));
        put("templatedisplaytext", json!(t.facts.display_text));
        put("ostypeid", json!(t.facts.os_type_id));
        put("guestosid", json!(t.facts.os_type_id));
    }
    put("passwordenabled", json!(false));
    if let Some(iso) = row.iso_id {
        put("isoid", json!(iso));
        put(
            "isoname",
            json!(state.storage.isos.get(&iso).map(|i| &i.facts.name)),
        );
    }
    put("serviceofferingid", json!(f.service_offering_id));
    put(
        "serviceofferingname",
        json!(
            state
                .catalog
                .service_offerings
                .get(&f.service_offering_id)
                .map(|o| &o.facts.name)
        ),
    );
    put("cpunumber", json!(f.cpu_number));
    put("cpuspeed", json!(f.cpu_speed));
    put("memory", json!(f.memory));
    if let Some(d) = row.disk_offering_id {
        put("diskofferingid", json!(d));
        put(
            "diskofferingname",
            json!(state.catalog.disk_offerings.get(&d).map(|o| &o.facts.name)),
        );
    }
    put("rootdeviceid", json!(0));
    put("rootdevicetype", json!("ROOT"));
    put("hypervisor", json!(f.hypervisor));
    put(
        "isdynamicallyscalable",
        json!(
            state
                .catalog
                .service_offerings
                .get(&f.service_offering_id)
                .is_some_and(|o| o.facts.dynamic_scaling_enabled)
        ),
    );
    if !row.ssh_keypairs.is_empty() {
        put("keypairs", json!(row.ssh_keypairs.join(",")));
    }
    let nics: Vec<Value> = state
        .compute
        .nics_of(f.vm_id)
        .into_iter()
        .map(|nic| nic_json(state, nic))
        .collect();
    put("nic", Value::Array(nics));
    let groups: Vec<Value> = state
        .network
        .security_groups
        .values()
        .filter(|g| g.members.contains(&f.vm_id))
        .map(|g| {
            let mut group = Map::new();
            group.insert("id".into(), json!(g.facts.group_id));
            group.insert("name".into(), json!(g.facts.name));
            if let Some(d) = &g.facts.description {
                group.insert("description".into(), json!(d));
            }
            group.insert(
                "account".into(),
                json!(state.identity.account_name(g.facts.account_id)),
            );
            group.insert("domainid".into(), json!(g.facts.domain_id));
            Value::Object(group)
        })
        .collect();
    put("securitygroup", Value::Array(groups));
    put("affinitygroup", json!([]));
    put("tags", super::tags::tags_json(state, f.vm_id));
    Value::Object(vm)
}

fn nic_json(state: &State, nic: &Created<NicFacts>) -> Value {
    let n = &nic.facts;
    let network = state.compute.networks.get(&n.network_id);
    let netmask = network
        .and_then(|net| net.facts.cidr.as_deref())
        .and_then(allocation::parse_cidr)
        .map(|(_, prefix)| networks::netmask_of(prefix));
    let mut nic = json!({
        "id": n.nic_id,
        "networkid": n.network_id,
        "networkname": network.map(|net| &net.facts.name),
        "ipaddress": n.ip_address,
        "gateway": network.and_then(|net| net.facts.gateway),
        "netmask": netmask,
        "macaddress": n.mac_address,
        "isdefault": n.is_default,
        "deviceid": n.device_id.to_string(),
        "type": network.map(|net| &net.facts.guest_type),
        "traffictype": "Guest",
        "virtualmachineid": n.vm_id,
    });
    if let Some(vlan) = network.and_then(|net| net.facts.vlan.as_ref()) {
        nic["broadcasturi"] = json!(vlan);
        nic["isolationuri"] = json!(vlan);
    }
    if let Some(vpc) = network.and_then(|net| net.facts.vpc_id) {
        nic["vpcid"] = json!(vpc);
        nic["vpcname"] = json!(state.network.vpcs.get(&vpc).map(|v| &v.facts.name));
    }
    // The public address static NAT maps to this NIC (NicResponse `publicip`).
    if let Some(ip) = state.network.public_ips.values().find(|ip| {
        ip.static_nat
            .as_ref()
            .is_some_and(|s| s.facts.vm_id == n.vm_id && s.facts.network_id == n.network_id)
    }) {
        nic["publicipid"] = json!(ip.facts.ip_id);
        nic["publicip"] = json!(ip.facts.address);
    }
    nic
}

/// The `virtualmachine` reply for a VM.
pub fn vm_reply(state: &State, vm_id: Uuid) -> Result<Reply, ApiError> {
    let row = state.compute.vms.get(&vm_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find virtual machine by id {vm_id}"))
    })?;
    Ok(Reply::Object {
        key: "virtualmachine",
        value: vm_json(state, row),
    })
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// The VM with this id, if the caller may act on it.
fn accessible<'a>(state: &'a State, call: &Call, id: Uuid) -> Result<&'a VmRow, ApiError> {
    let row = state.compute.vms.get(&id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find virtual machine by id {id}"))
    })?;
    if !call
        .caller
        .may_access(state, row.facts.account_id, row.facts.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Acct[{}] does not have permission to operate on virtual machine {id}",
            call.caller.account_id
        )));
    }
    Ok(row)
}

/// Refuses (531) a user's expunge or recover unless `allow.user.expunge.recover.vm` is set,
/// as CloudStack does.
fn may_expunge_or_recover(state: &State, call: &Call, what: &str) -> Result<(), ApiError> {
    if call.caller.role == crate::registry::Role::User
        && !state
            .configuration
            .global_bool("allow.user.expunge.recover.vm")
    {
        return Err(ApiError::permission_denied(format!(
            "Parameter {what} can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."
        )));
    }
    Ok(())
}

fn wrong_state(row: &VmRow, action: &str) -> ApiError {
    ApiError::invalid_param(format!(
        "Unable to {action} virtual machine {} ({}): it is {}",
        row.facts.name,
        row.facts.vm_id,
        row.state.as_str()
    ))
}

/// A VM's CPU in MHz and memory in MiB, as placement and capacity count them.
fn size_of(facts: &VmFacts) -> (u64, u64) {
    (
        u64::from(facts.cpu_number) * u64::from(facts.cpu_speed),
        facts.memory,
    )
}

/// The shape a service offering gives a VM: its own, or for a custom offering `details`.
fn shape(
    call: &Call,
    offering: &engine::event::infrastructure::ServiceOfferingFacts,
) -> Result<(u32, u32, u64), ApiError> {
    let mut details: Vec<(String, String)> = Vec::new();
    if call.params.get("details[0].cpuNumber").is_some()
        || call.params.iter().any(|(k, _)| k.starts_with("details["))
    {
        for entry in call
            .params
            .map("details")
            .map_err(|e| ApiError::malformed_map(e.to_string()))?
        {
            details.extend(entry);
        }
    }
    let detail = |name: &str| -> Result<Option<u64>, ApiError> {
        details
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "details {name} must be a positive number, not {v}"
                        ))
                    })
            })
            .transpose()
    };
    let pick = |fixed: Option<u64>, name: &str| -> Result<u64, ApiError> {
        match (fixed, detail(name)?) {
            (Some(v), _) => Ok(v),
            (None, Some(v)) => Ok(v),
            (None, None) => Err(ApiError::invalid_param(format!(
                "Service offering {} is customized: pass details[0].{name}",
                offering.name
            ))),
        }
    };
    let cpu = pick(offering.cpu_number.map(u64::from), "cpuNumber")?;
    let speed = pick(offering.cpu_speed.map(u64::from), "cpuSpeed")?;
    let memory = pick(offering.memory, "memory")?;
    let cpu = u32::try_from(cpu).map_err(|_| ApiError::invalid_param("cpuNumber is too large"))?;
    let speed =
        u32::try_from(speed).map_err(|_| ApiError::invalid_param("cpuSpeed is too large"))?;
    Ok((cpu, speed, memory))
}

fn service_offering(
    state: &State,
    id: Uuid,
) -> Result<&engine::event::infrastructure::ServiceOfferingFacts, ApiError> {
    state
        .catalog
        .service_offerings
        .get(&id)
        .map(|o| &o.facts)
        .filter(|o| o.system_vm_type.is_none())
        .ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find service offering by id {id}"))
        })
}

/// A job acting on the VM `vm_id`.
fn vm_job(vm_id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("VirtualMachine", vm_id, event_type, description)
}

/// Submits a job that waits for the hypervisor to carry out the request `decide` decides on
/// the allocation stream; the job's reply is the VM afterwards.
async fn driver_job(
    ctx: &Ctx,
    call: &Call,
    vm_id: Uuid,
    event_type: &'static str,
    description: String,
    decide: impl Fn(&State) -> Result<EventBody, ApiError>,
) -> Result<Reply, ApiError> {
    jobs::submit_request(
        ctx,
        call,
        vm_job(vm_id, event_type, description),
        decide,
        move |state| vm_reply(state, vm_id),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// deployVirtualMachine

/// What deploy resolved from its parameters before deciding.
struct DeployPlan {
    vm_id: Uuid,
    zone_id: Uuid,
    template_id: Uuid,
    offering_id: Uuid,
    name: Option<String>,
    display_name: Option<String>,
    start: bool,
    user_data: Option<String>,
    keypairs: Vec<String>,
    root_disk_gb: Option<u64>,
    disk_offering_id: Option<Uuid>,
    data_disk_gb: Option<u64>,
    network_ids: Vec<Uuid>,
    security_group_ids: Vec<Uuid>,
    security_group_names: Vec<String>,
    host_id: Option<Uuid>,
    group: Option<String>,
}

fn positive_gb(call: &Call, name: &str) -> Result<Option<u64>, ApiError> {
    match call.int(name)? {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u64)),
        Some(n) => Err(ApiError::invalid_param(format!(
            "{name} must be a positive number of GB, not {n}"
        ))),
    }
}

fn plan(call: &Call) -> Result<DeployPlan, ApiError> {
    if call.str("projectid").is_some() {
        return Err(ApiError::invalid_param("projects are not supported"));
    }
    if let Some(h) = call.str("hypervisor")
        && !h.eq_ignore_ascii_case("Simulator")
    {
        return Err(ApiError::invalid_param(format!(
            "Hypervisor type {h} is not available: Ledgerstack runs VMs on the Simulator"
        )));
    }
    if call.str("hostid").is_some() && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(
            "Only the root admin may choose the host of a VM",
        ));
    }
    let mut keypairs: Vec<String> = call
        .str("keypairs")
        .map(crate::protocol::params::parse_list)
        .unwrap_or_default();
    if let Some(k) = call.str("keypair") {
        keypairs.insert(0, k.to_owned());
    }
    keypairs.dedup();
    let network_ids = call
        .str("networkids")
        .map(crate::protocol::params::parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(|id| {
            Uuid::parse_str(id.trim())
                .map_err(|_| ApiError::invalid_param(format!("Invalid network id {id}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let security_group_ids = call
        .str("securitygroupids")
        .map(crate::protocol::params::parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(|id| {
            Uuid::parse_str(id.trim())
                .map_err(|_| ApiError::invalid_param(format!("Invalid security group id {id}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let security_group_names: Vec<String> = call
        .str("securitygroupnames")
        .map(crate::protocol::params::parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if !security_group_ids.is_empty() && !security_group_names.is_empty() {
        return Err(ApiError::invalid_param(
            "securitygroupids parameter is mutually exclusive with securitygroupnames parameter",
        ));
    }
    let name = call.str("name").map(str::to_owned);
    if let Some(n) = &name
        && !is_valid_host_name(n)
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid name {n}. Vm name can contain ASCII letters 'a' through 'z', the digits '0' through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and can't start or end with \"-\" and can't start with digit"
        )));
    }
    Ok(DeployPlan {
        vm_id: Uuid::new_v4(),
        zone_id: call.required_uuid("zoneid")?,
        template_id: call.required_uuid("templateid")?,
        offering_id: call.required_uuid("serviceofferingid")?,
        name,
        display_name: call.str("displayname").map(str::to_owned),
        start: call.bool_opt("startvm").unwrap_or(true),
        user_data: call.str("userdata").map(str::to_owned),
        keypairs,
        root_disk_gb: positive_gb(call, "rootdisksize")?,
        disk_offering_id: call.uuid("diskofferingid")?,
        data_disk_gb: positive_gb(call, "size")?,
        network_ids,
        security_group_ids,
        security_group_names,
        host_id: call.uuid("hostid")?,
        group: call.str("group").map(str::to_owned),
    })
}

/// RFC 1123 host names as CloudStack accepts them.
fn is_valid_host_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The security groups a deploy names (`securitygroupids` or `securitygroupnames`): each must
/// exist and belong to the VM's account (431 otherwise).
fn security_groups(
    state: &State,
    plan: &DeployPlan,
    account_id: Uuid,
    account_name: &str,
) -> Result<Vec<Uuid>, ApiError> {
    let mut groups: Vec<Uuid> = Vec::new();
    for id in &plan.security_group_ids {
        let group = state.network.security_groups.get(id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find security group by id {id}"))
        })?;
        if group.facts.account_id != account_id {
            return Err(ApiError::invalid_param(format!(
                "Security group {id} does not belong to account {account_name}"
            )));
        }
        groups.push(*id);
    }
    for name in &plan.security_group_names {
        let group = state
            .network
            .security_groups
            .values()
            .find(|g| g.facts.account_id == account_id && g.facts.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to find group by name {name} for account {account_name}"
                ))
            })?;
        groups.push(group.facts.group_id);
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// Every event of a deploy, decided on `state`.
fn decide_deploy(
    state: &State,
    call: &Call,
    plan: &DeployPlan,
    ids: JobIds,
) -> Result<Vec<NewEvent>, ApiError> {
    let (account_id, domain_id) = allocation::owner(call, state)?;
    let zone = state.catalog.zones.get(&plan.zone_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find zone by id {}", plan.zone_id))
    })?;
    let template = state
        .storage
        .templates
        .get(&plan.template_id)
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find template by id {}",
                plan.template_id
            ))
        })?;
    if !template.facts.is_public
        && !template.facts.is_featured
        && !call
            .caller
            .may_access(state, template.facts.account_id, template.facts.domain_id)
        && template.facts.account_id != account_id
    {
        return Err(ApiError::permission_denied(format!(
            "Acct[{account_id}] does not have permission to use template {}",
            plan.template_id
        )));
    }
    if !template.zones.is_empty() && !template.zones.contains(&plan.zone_id) {
        return Err(ApiError::invalid_param(format!(
            "Template {} is not available in zone {}",
            template.facts.name, zone.facts.name
        )));
    }
    let offering = service_offering(state, plan.offering_id)?;
    let (cpu_number, cpu_speed, memory) = shape(call, offering)?;

    let account_name = state.identity.account_name(account_id).unwrap_or_default();
    let short = |id: Uuid| id.simple().to_string()[..8].to_owned();
    let name: CompactString = match &plan.name {
        Some(n) => n.as_str().into(),
        None => format!("VM-{}", plan.vm_id).into(),
    };
    if allocation::vm_name_taken(state, account_id, &name) {
        return Err(ApiError::invalid_param(format!(
            "The vm with hostname {name} already exists in the account {account_name}"
        )));
    }
    let mut keypair_names = Vec::new();
    for k in &plan.keypairs {
        let found =
            state.compute.keypairs.values().any(|kp| {
                kp.facts.account_id == account_id && kp.facts.name.eq_ignore_ascii_case(k)
            });
        if !found {
            return Err(ApiError::invalid_param(format!(
                "A key pair with name '{k}' was not found for account {account_name}"
            )));
        }
        keypair_names.push(CompactString::from(k.as_str()));
    }

    // Disks.
    let root_size = plan
        .root_disk_gb
        .map(|gb| gb * GIB)
        .or(offering.root_disk_size)
        .unwrap_or(template.facts.virtual_size);
    if root_size < template.facts.virtual_size {
        return Err(ApiError::invalid_param(format!(
            "Root disk size {} GB is smaller than the template's {} GB",
            root_size / GIB,
            template.facts.virtual_size.div_ceil(GIB)
        )));
    }
    let data_disk = match plan.disk_offering_id {
        None => None,
        Some(id) => {
            let d = state.catalog.disk_offerings.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find disk offering by id {id}"))
            })?;
            let size = match (d.facts.disk_size, plan.data_disk_gb) {
                (Some(size), _) => size,
                (None, Some(gb)) => gb * GIB,
                (None, None) => {
                    return Err(ApiError::invalid_param(format!(
                        "Disk offering {} is customized: pass size (GB)",
                        d.facts.name
                    )));
                }
            };
            Some((id, size))
        }
    };

    // Limits (532) before capacity (533), as CloudStack checks them.
    let volumes = 1 + i64::from(data_disk.is_some());
    let storage = gib(root_size) + data_disk.map_or(0, |(_, s)| gib(s));
    check_limit(state, account_id, ResourceType::UserVm, 1)?;
    check_limit(state, account_id, ResourceType::Cpu, i64::from(cpu_number))?;
    check_limit(
        state,
        account_id,
        ResourceType::Memory,
        i64::try_from(memory).unwrap_or(i64::MAX),
    )?;
    check_limit(state, account_id, ResourceType::Volume, volumes)?;
    check_limit(state, account_id, ResourceType::PrimaryStorage, storage)?;

    let vm = VmFacts {
        vm_id: plan.vm_id,
        name: name.clone(),
        instance_name: format!("i-{}-{}-VM", short(account_id), short(plan.vm_id)).into(),
        display_name: plan.display_name.as_deref().map(Into::into),
        account_id,
        domain_id,
        zone_id: plan.zone_id,
        service_offering_id: plan.offering_id,
        template_id: plan.template_id,
        hypervisor: "Simulator".into(),
        cpu_number,
        cpu_speed,
        memory,
    };
    let host_id = if plan.start {
        let (cpu, mem) = size_of(&vm);
        Some(match plan.host_id {
            Some(host) => {
                let h = state.infrastructure.hosts.get(&host).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find host by id {host}"))
                })?;
                if h.facts.zone_id != plan.zone_id {
                    return Err(ApiError::invalid_param(format!(
                        "Host {} is not in zone {}",
                        h.facts.name, zone.facts.name
                    )));
                }
                if !host_fits(state, host, cpu, mem) {
                    return Err(ApiError::insufficient_capacity(format!(
                        "Unable to create a deployment for VM: host {} has not {cpu} MHz and {mem} MiB free",
                        h.facts.name
                    )));
                }
                host
            }
            None => allocation::place(state, plan.zone_id, cpu, mem)?,
        })
    } else {
        None
    };

    let mut events = Vec::new();
    // The NICs: one per given network (the first is the default), or one on the account's
    // default network, created on first need.
    let mut nets: Vec<NetworkFacts> = Vec::new();
    if plan.network_ids.is_empty() {
        match networks::default_network(state, account_id, plan.zone_id) {
            Some(n) => nets.push(n.facts.clone()),
            None => {
                check_limit(state, account_id, ResourceType::Network, 1)?;
                let cidr: CompactString = zone
                    .facts
                    .guest_cidr
                    .clone()
                    .unwrap_or_else(|| networks::DEFAULT_GUEST_CIDR.into());
                let gateway = allocation::parse_cidr(&cidr)
                    .map(|(base, _)| std::net::IpAddr::V4(std::net::Ipv4Addr::from(base + 1)));
                let network = NetworkFacts {
                    network_id: Uuid::new_v4(),
                    name: format!("{account_name}-network").into(),
                    display_text: format!("Default guest network of account {account_name}"),
                    account_id,
                    domain_id,
                    zone_id: plan.zone_id,
                    network_offering_id: DEFAULT_NETWORK_OFFERING,
                    guest_type: "Isolated".into(),
                    vpc_id: None,
                    cidr: Some(cidr),
                    gateway,
                    vlan: None,
                    network_domain: zone.facts.network_domain.clone(),
                };
                events.push(call.event(EventBody::Network(NetworkEvent::Create(
                    NetworkLifecycle {
                        network: network.clone(),
                    },
                ))));
                nets.push(network);
            }
        }
    } else {
        for id in &plan.network_ids {
            if nets.iter().any(|n| n.network_id == *id) {
                return Err(ApiError::invalid_param(format!(
                    "Network {id} is given more than once in networkids"
                )));
            }
            let n = networks::usable_network(state, call, account_id, domain_id, *id)?;
            if n.facts.zone_id != plan.zone_id {
                return Err(ApiError::invalid_param(format!(
                    "Network {} is not in zone {}",
                    n.facts.name, zone.facts.name
                )));
            }
            nets.push(n.facts.clone());
        }
    }
    let groups = security_groups(state, plan, account_id, &account_name)?;
    // A network without its router yet is implemented now (its source-NAT address counts
    // against the public IP limit); its router starts after the NICs it serves exist.
    let mut taken = BTreeSet::new();
    let mut router_starts = Vec::new();
    for network in &nets {
        if let Some(implementation) = networks::implementation(state, call, network, &taken)? {
            taken.extend(implementation.address);
            events.extend(implementation.facts);
            router_starts.push(implementation.start);
        }
    }
    let addresses = nets
        .iter()
        .map(|n| networks::guest_address(state, n, None))
        .collect::<Result<Vec<_>, _>>()?;

    events.push(call.event(EventBody::Vm(VmEvent::Create(VmCreated {
        vm: vm.clone(),
        host_id,
        disk_offering_id: plan.disk_offering_id,
        root_disk_size: plan.root_disk_gb.map(|gb| gb * GIB),
        user_data: plan.user_data.clone(),
        ssh_keypairs: keypair_names,
        affinity_group_ids: Vec::new(),
    }))));
    if plan.group.is_some() {
        events.push(call.event(EventBody::Vm(VmEvent::Update(VmUpdated {
            vm: vm.clone(),
            user_data: None,
            group: plan.group.as_deref().map(Into::into),
            ha_enabled: None,
        }))));
    }
    let volume = |volume_type, size, disk_offering_id, template_id| VolumeFacts {
        volume_id: Uuid::new_v4(),
        name: match volume_type {
            VolumeType::Root => format!("ROOT-{}", short(plan.vm_id)).into(),
            VolumeType::DataDisk => format!("DATA-{}", short(plan.vm_id)).into(),
        },
        account_id,
        domain_id,
        zone_id: plan.zone_id,
        volume_type,
        size,
        disk_offering_id,
        template_id,
    };
    events.push(
        call.event(EventBody::Volume(VolumeEvent::Create(VolumeCreated {
            volume: volume(VolumeType::Root, root_size, None, Some(plan.template_id)),
            vm_id: Some(plan.vm_id),
            snapshot_id: None,
        }))),
    );
    if let Some((offering, size)) = data_disk {
        events.push(
            call.event(EventBody::Volume(VolumeEvent::Create(VolumeCreated {
                volume: volume(VolumeType::DataDisk, size, Some(offering), None),
                vm_id: Some(plan.vm_id),
                snapshot_id: None,
            }))),
        );
    }
    for (device, (network, address)) in nets.iter().zip(addresses).enumerate() {
        let nic_id = Uuid::new_v4();
        let is_default = device == 0;
        let nic = NicFacts {
            nic_id,
            vm_id: plan.vm_id,
            network_id: network.network_id,
            account_id,
            domain_id,
            zone_id: plan.zone_id,
            ip_address: address,
            mac_address: super::nics::mac_address(nic_id),
            is_default,
            device_id: u32::try_from(device).unwrap_or(u32::MAX),
        };
        events.push(call.event(EventBody::Nic(NicEvent::Create(nic))));
        events.push(
            call.event(EventBody::NetworkOffering(NetworkOfferingEvent::Assign(
                NetworkOfferingAssignment {
                    vm_id: plan.vm_id,
                    nic_id,
                    network_id: network.network_id,
                    network_offering_id: network.network_offering_id,
                    account_id,
                    domain_id,
                    zone_id: plan.zone_id,
                    is_default,
                },
            ))),
        );
    }
    for group_id in groups {
        events.push(
            call.event(EventBody::SecurityGroup(SecurityGroupEvent::Assign(
                SecurityGroupMembership {
                    group_id,
                    vm_id: plan.vm_id,
                    account_id,
                    domain_id,
                    zone_id: plan.zone_id,
                },
            ))),
        );
    }
    events.extend(router_starts);
    if let Some(host_id) = host_id {
        events.push(ids.request(
            call,
            EventBody::Vm(VmEvent::Start(VmStarted {
                vm,
                host_id: Some(host_id),
            })),
        ));
    }
    Ok(events)
}

fn host_fits(state: &State, host: Uuid, cpu: u64, mem: u64) -> bool {
    let Some(h) = state.infrastructure.hosts.get(&host) else {
        return false;
    };
    if h.facts.resource_state != "Enabled" {
        return false;
    }
    let mut capacity = projections::infrastructure::Infrastructure::total_capacity(&h.facts);
    if let Some(used) = state.compute.host_allocations().get(&host) {
        capacity.cpu_used_mhz = used.cpu_used_mhz;
        capacity.memory_used_mib = used.memory_used_mib;
    }
    capacity.fits(cpu, mem)
}

async fn deploy(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let plan = plan(call)?;
    let vm_id = plan.vm_id;
    let description = format!(
        "deploying VM {}",
        plan.name.as_deref().unwrap_or(&vm_id.to_string())
    );
    // The job waits for the VM's start when the deploy starts it.
    jobs::submit_decided(
        ctx,
        call,
        JobMeta {
            create_id: Some(vm_id),
            ..vm_job(vm_id, "VM.CREATE", description)
        },
        |state, ids| decide_deploy(state, call, &plan, ids),
        move |state| vm_reply(state, vm_id),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// listVirtualMachines

async fn list(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let ids: Option<Vec<Uuid>> = call
        .str("ids")
        .map(|v| {
            crate::protocol::params::parse_list(v)
                .iter()
                .map(|s| {
                    Uuid::parse_str(s.trim())
                        .map_err(|_| ApiError::invalid_param(format!("Invalid id {s} in ids")))
                })
                .collect()
        })
        .transpose()?;
    let name = call.str("name");
    let wanted_state = call.str("state");
    let zone = call.uuid("zoneid")?;
    let template = call.uuid("templateid")?;
    let offering = call.uuid("serviceofferingid")?;
    let host = call.uuid("hostid")?;
    let network = call.uuid("networkid")?;
    let group = call.str("groupid");
    let keyword = call.str("keyword");
    let admin = call.caller.role != crate::registry::Role::User;
    let mut rows: Vec<&VmRow> = state
        .compute
        .vms
        .values()
        .filter(|vm| {
            let f = &vm.facts;
            scope.admits(&state, Some(f.account_id), Some(f.domain_id))
                && id.is_none_or(|id| f.vm_id == id)
                && ids.as_ref().is_none_or(|ids| ids.contains(&f.vm_id))
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && match wanted_state {
                    Some(s) => vm.state.as_str().eq_ignore_ascii_case(s),
                    // Destroyed VMs are shown to admins (who may recover them) or on request.
                    None => admin || vm.state != VmState::Destroyed,
                }
                && zone.is_none_or(|z| f.zone_id == z)
                && template.is_none_or(|t| f.template_id == t)
                && offering.is_none_or(|o| f.service_offering_id == o)
                && host.is_none_or(|h| vm.host_id == Some(h))
                && network.is_none_or(|n| {
                    state
                        .compute
                        .nics_of(f.vm_id)
                        .iter()
                        .any(|nic| nic.facts.network_id == n)
                })
                && group.is_none_or(|g| vm.group.as_deref() == Some(g))
                && keyword_matches(
                    keyword,
                    &[
                        &f.name,
                        f.display_name.as_deref().unwrap_or_default(),
                        vm.state.as_str(),
                    ],
                )
        })
        .collect();
    rows.sort_by_key(|vm| (vm.created, vm.facts.vm_id));
    let (count, items) = paging.apply(rows.into_iter().map(|vm| vm_json(&state, vm)).collect());
    Ok(Reply::List {
        key: "virtualmachine",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// Power actions

async fn start(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let chosen = call.uuid("hostid")?;
    if chosen.is_some() && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(
            "Only the root admin may choose the host of a VM",
        ));
    }
    let (name, running) = {
        let state = ctx.models.read();
        let row = accessible(&state, call, id)?;
        (row.facts.name.clone(), row.state == VmState::Running)
    };
    if running {
        // Starting a running VM changes nothing, as in CloudStack.
        let description = format!("starting VM {name}");
        let run = jobs::immediate(move |s| vm_reply(s, id));
        return jobs::submit(ctx, call, vm_job(id, "VM.START", description).run(run)).await;
    }
    driver_job(ctx, call, id, "VM.START", format!("starting VM {name}"), |state| {
        let row = accessible(state, call, id)?;
        if !matches!(row.state, VmState::Stopped) {
            return Err(wrong_state(row, "start"));
        }
        let (cpu, mem) = size_of(&row.facts);
        let host = match chosen {
            Some(host) => {
                if !host_fits(state, host, cpu, mem) {
                    return Err(ApiError::insufficient_capacity(format!(
                        "Unable to start VM {}: host {host} has not {cpu} MHz and {mem} MiB free",
                        row.facts.name
                    )));
                }
                host
            }
            None => allocation::place(state, row.facts.zone_id, cpu, mem)?,
        };
        Ok(EventBody::Vm(VmEvent::Start(VmStarted {
            vm: row.facts.clone(),
            host_id: Some(host),
        })))
    })
    .await
}

async fn stop(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let forced = call.flag("forced");
    let (name, stopped) = {
        let state = ctx.models.read();
        let row = accessible(&state, call, id)?;
        (row.facts.name.clone(), row.state == VmState::Stopped)
    };
    if stopped {
        let description = format!("stopping VM {name}");
        let run = jobs::immediate(move |s| vm_reply(s, id));
        return jobs::submit(ctx, call, vm_job(id, "VM.STOP", description).run(run)).await;
    }
    driver_job(
        ctx,
        call,
        id,
        "VM.STOP",
        format!("stopping VM {name}"),
        |state| {
            let row = accessible(state, call, id)?;
            if row.state != VmState::Running {
                return Err(wrong_state(row, "stop"));
            }
            Ok(EventBody::Vm(VmEvent::Stop(VmStopped {
                vm: row.facts.clone(),
                forced,
            })))
        },
    )
    .await
}

async fn reboot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = vm_name(ctx, call, id)?;
    driver_job(
        ctx,
        call,
        id,
        "VM.REBOOT",
        format!("rebooting VM {name}"),
        |state| {
            let row = accessible(state, call, id)?;
            if row.state != VmState::Running {
                return Err(wrong_state(row, "reboot"));
            }
            Ok(EventBody::Vm(VmEvent::Reboot(VmLifecycle {
                vm: row.facts.clone(),
            })))
        },
    )
    .await
}

fn vm_name(ctx: &Ctx, call: &Call, id: Uuid) -> Result<CompactString, ApiError> {
    let state = ctx.models.read();
    Ok(accessible(&state, call, id)?.facts.name.clone())
}

async fn destroy(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let expunge = call.flag("expunge");
    let (name, before) = {
        let state = ctx.models.read();
        if expunge {
            may_expunge_or_recover(&state, call, "expunge")?;
        }
        let row = accessible(&state, call, id)?;
        (row.facts.name.clone(), vm_json(&state, row))
    };
    let render = move |state: &State| {
        if state.compute.vms.get(&id).is_some() {
            return vm_reply(state, id);
        }
        // Expunged: CloudStack answers with the VM as it was, in state Expunging.
        let mut value = before;
        if let Some(object) = value.as_object_mut() {
            object.insert("state".into(), json!("Expunging"));
            object.remove("hostid");
            object.remove("hostname");
        }
        Ok(Reply::Object {
            key: "virtualmachine",
            value,
        })
    };
    jobs::submit_request(
        ctx,
        call,
        vm_job(id, "VM.DESTROY", format!("destroying VM {name}")),
        |state| {
            let row = accessible(state, call, id)?;
            if matches!(row.state, VmState::Destroyed)
                || !matches!(
                    row.state,
                    VmState::Running | VmState::Stopped | VmState::Error
                )
            {
                return Err(wrong_state(row, "destroy"));
            }
            Ok(EventBody::Vm(VmEvent::Destroy(VmDestroyed {
                vm: row.facts.clone(),
                expunge,
            })))
        },
        render,
    )
    .await
}

async fn recover(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(ALLOCATION, |state| {
        may_expunge_or_recover(state, call, "recover")?;
        let row = accessible(state, call, id)?;
        if row.state != VmState::Destroyed {
            return Err(wrong_state(row, "recover"));
        }
        let f = &row.facts;
        check_limit(state, f.account_id, ResourceType::UserVm, 1)?;
        check_limit(
            state,
            f.account_id,
            ResourceType::Cpu,
            i64::from(f.cpu_number),
        )?;
        check_limit(
            state,
            f.account_id,
            ResourceType::Memory,
            i64::try_from(f.memory).unwrap_or(i64::MAX),
        )?;
        Ok(vec![call.event(EventBody::Vm(VmEvent::Recover(
            VmLifecycle { vm: f.clone() },
        )))])
    })
    .await?;
    vm_reply(&ctx.models.read(), id)
}

async fn expunge(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = {
        let state = ctx.models.read();
        may_expunge_or_recover(&state, call, "expunge")?;
        let row = accessible(&state, call, id)?;
        if row.state != VmState::Destroyed {
            return Err(ApiError::invalid_param(format!(
                "Please specify a VM that is in Destroyed state, not {} ({})",
                row.state.as_str(),
                row.facts.name
            )));
        }
        row.facts.name.clone()
    };
    let run: JobTask = Box::new(move |job: JobRun| {
        Box::pin(async move {
            job.ctx
                .decide(ALLOCATION, |state| {
                    let Some(row) = state.compute.vms.get(&id) else {
                        return Ok(vec![]);
                    };
                    if row.state != VmState::Destroyed {
                        return Err(wrong_state(row, "expunge"));
                    }
                    Ok(expunge_events(state, id)
                        .into_iter()
                        .map(|body| job.event(body))
                        .collect())
                })
                .await?;
            Ok(Reply::success())
        })
    });
    jobs::submit(
        ctx,
        call,
        vm_job(id, "VM.EXPUNGE", format!("expunging VM {name}")).run(run),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Offering changes

/// The VM with a new offering and shape, checked against the account's CPU and memory limits.
fn reshaped(
    state: &State,
    call: &Call,
    row: &VmRow,
    offering_id: Uuid,
) -> Result<(VmFacts, VmOfferingChanged), ApiError> {
    let offering = service_offering(state, offering_id)?;
    let (cpu_number, cpu_speed, memory) = shape(call, offering)?;
    let f = &row.facts;
    if f.service_offering_id == offering_id
        && (f.cpu_number, f.cpu_speed, f.memory) == (cpu_number, cpu_speed, memory)
    {
        return Err(ApiError::invalid_param(format!(
            "Not upgrading vm {} since it already has the requested service offering ({})",
            f.name, offering.name
        )));
    }
    check_limit(
        state,
        f.account_id,
        ResourceType::Cpu,
        i64::from(cpu_number) - i64::from(f.cpu_number),
    )?;
    check_limit(
        state,
        f.account_id,
        ResourceType::Memory,
        i64::try_from(memory).unwrap_or(i64::MAX) - i64::try_from(f.memory).unwrap_or(0),
    )?;
    let vm = VmFacts {
        service_offering_id: offering_id,
        cpu_number,
        cpu_speed,
        memory,
        ..f.clone()
    };
    let change = VmOfferingChanged {
        vm: vm.clone(),
        previous_service_offering_id: f.service_offering_id,
        previous_cpu_number: f.cpu_number,
        previous_cpu_speed: f.cpu_speed,
        previous_memory: f.memory,
    };
    Ok((vm, change))
}

async fn change_service(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let offering_id = call.required_uuid("serviceofferingid")?;
    ctx.decide(ALLOCATION, |state| {
        let row = accessible(state, call, id)?;
        if row.state != VmState::Stopped {
            return Err(ApiError::invalid_param(format!(
                "Unable to upgrade virtual machine {}: it must be Stopped, it is {} (scaleVirtualMachine changes a running VM)",
                row.facts.name,
                row.state.as_str()
            )));
        }
        let (_, change) = reshaped(state, call, row, offering_id)?;
        Ok(vec![call.event(EventBody::Vm(VmEvent::Upgrade(change)))])
    })
    .await?;
    vm_reply(&ctx.models.read(), id)
}

async fn scale(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let offering_id = call.required_uuid("serviceofferingid")?;
    let (name, running) = {
        let state = ctx.models.read();
        let row = accessible(&state, call, id)?;
        (row.facts.name.clone(), row.state == VmState::Running)
    };
    if !running {
        // A stopped VM scales like changeServiceForVirtualMachine, without the hypervisor.
        ctx.decide(ALLOCATION, |state| {
            let row = accessible(state, call, id)?;
            if row.state != VmState::Stopped {
                return Err(wrong_state(row, "scale"));
            }
            let (_, change) = reshaped(state, call, row, offering_id)?;
            Ok(vec![call.event(EventBody::Vm(VmEvent::Upgrade(change)))])
        })
        .await?;
        return jobs::submit(
            ctx,
            call,
            vm_job(id, "VM.UPGRADE", format!("scaling VM {name}"))
                .run(jobs::immediate(move |s| vm_reply(s, id))),
        )
        .await;
    }
    driver_job(ctx, call, id, "VM.DYNAMIC.SCALE", format!("scaling VM {name}"), |state| {
        let row = accessible(state, call, id)?;
        if row.state != VmState::Running {
            return Err(wrong_state(row, "scale"));
        }
        let offering = service_offering(state, offering_id)?;
        if !offering.dynamic_scaling_enabled {
            return Err(ApiError::invalid_param(format!(
                "Unable to scale the running VM {}: service offering {} does not allow dynamic scaling",
                row.facts.name, offering.name
            )));
        }
        let (vm, change) = reshaped(state, call, row, offering_id)?;
        // CloudStack only scales a running VM up: no value may shrink, and one must grow
        // (UserVmManagerImpl.upgradeRunningVirtualMachine); shrinking needs a stopped VM.
        let (old, new) = (&row.facts, &vm);
        if new.cpu_speed < old.cpu_speed
            || new.memory < old.memory
            || new.cpu_number < old.cpu_number
            || (new.cpu_speed, new.memory, new.cpu_number)
                == (old.cpu_speed, old.memory, old.cpu_number)
        {
            return Err(ApiError::invalid_param(format!(
                "Only scaling up the vm is supported, new service offering(speed={},cpu={},memory=,{}) should have at least one value(cpu/ram) greater than old value and no resource value less than older(speed={},cpu={},memory=,{})",
                new.cpu_speed, new.cpu_number, new.memory, old.cpu_speed, old.cpu_number, old.memory
            )));
        }
        let host = row
            .host_id
            .ok_or_else(|| ApiError::internal(format!("running VM {id} has no host")))?;
        let (old_cpu, old_mem) = size_of(&row.facts);
        let (new_cpu, new_mem) = size_of(&vm);
        if !host_fits(
            state,
            host,
            new_cpu.saturating_sub(old_cpu),
            new_mem.saturating_sub(old_mem),
        ) {
            return Err(ApiError::insufficient_capacity(format!(
                "Unable to scale VM {}: its host has not the capacity for {new_cpu} MHz and {new_mem} MiB",
                row.facts.name
            )));
        }
        Ok(EventBody::Vm(VmEvent::DynamicScale(change)))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Attributes, password, migration

async fn update(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let new_name = call.str("name");
    if let Some(n) = new_name
        && !is_valid_host_name(n)
    {
        return Err(ApiError::invalid_param(format!("Invalid name {n}")));
    }
    ctx.decide(ALLOCATION, |state| {
        let row = accessible(state, call, id)?;
        let mut vm = row.facts.clone();
        if let Some(n) = new_name
            && !n.eq_ignore_ascii_case(&vm.name)
        {
            if row.state != VmState::Stopped {
                return Err(ApiError::invalid_param(
                    "The VM must be stopped to change its host name",
                ));
            }
            if allocation::vm_name_taken(state, vm.account_id, n) {
                return Err(ApiError::invalid_param(format!(
                    "The vm with hostname {n} already exists in the account"
                )));
            }
            vm.name = n.into();
        }
        if let Some(d) = call.str("displayname") {
            vm.display_name = Some(d.into());
        }
        Ok(vec![call.event(EventBody::Vm(VmEvent::Update(
            VmUpdated {
                vm,
                user_data: call.str("userdata").map(str::to_owned),
                group: call.str("group").map(Into::into),
                ha_enabled: call.bool_opt("haenable"),
            },
        )))])
    })
    .await?;
    vm_reply(&ctx.models.read(), id)
}

async fn reset_password(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = {
        let state = ctx.models.read();
        let row = accessible(&state, call, id)?;
        if row.state != VmState::Stopped {
            return Err(ApiError::invalid_param(format!(
                "Vm {} should be stopped to reset its password",
                row.facts.name
            )));
        }
        row.facts.name.clone()
    };
    let run: JobTask = Box::new(move |job: JobRun| {
        Box::pin(async move {
            job.ctx
                .decide(ALLOCATION, |state| {
                    let Some(row) = state.compute.vms.get(&id) else {
                        return Err(ApiError::invalid_param(format!(
                            "Unable to find virtual machine by id {id}"
                        )));
                    };
                    Ok(vec![job.event(EventBody::Vm(VmEvent::ResetPassword(
                        VmLifecycle {
                            vm: row.facts.clone(),
                        },
                    )))])
                })
                .await?;
            let password = engine::secrets::generate_session_key()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect::<String>();
            let state = job.ctx.models.read();
            let mut reply = vm_reply(&state, id)?;
            if let Reply::Object { value, .. } = &mut reply
                && let Some(object) = value.as_object_mut()
            {
                object.insert("password".into(), json!(password));
            }
            Ok(reply)
        })
    });
    jobs::submit(
        ctx,
        call,
        vm_job(
            id,
            "VM.RESETPASSWORD",
            format!("resetting the password of VM {name}"),
        )
        .run(run),
    )
    .await
}

async fn migrate(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("virtualmachineid")?;
    let chosen = call.uuid("hostid")?;
    let name = vm_name(ctx, call, id)?;
    driver_job(
        ctx,
        call,
        id,
        "VM.MIGRATE",
        format!("migrating VM {name}"),
        |state| {
            let row = accessible(state, call, id)?;
            if row.state != VmState::Running {
                return Err(ApiError::invalid_param(format!(
                    "VM {} is not Running, unable to migrate the vm (it is {})",
                    row.facts.name,
                    row.state.as_str()
                )));
            }
            let from = row
                .host_id
                .ok_or_else(|| ApiError::internal(format!("running VM {id} has no host")))?;
            let (cpu, mem) = size_of(&row.facts);
            let to = match chosen {
            Some(host) => {
                let h = state.infrastructure.hosts.get(&host).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find host by id {host}"))
                })?;
                if host == from {
                    return Err(ApiError::invalid_param(format!(
                        "VM {} already runs on host {}",
                        row.facts.name, h.facts.name
                    )));
                }
                if h.facts.zone_id != row.facts.zone_id {
                    return Err(ApiError::invalid_param(
                        "Cannot migrate a VM to a host of another zone",
                    ));
                }
                if !host_fits(state, host, cpu, mem) {
                    return Err(ApiError::insufficient_capacity(format!(
                        "Unable to migrate VM {}: host {} has not {cpu} MHz and {mem} MiB free",
                        row.facts.name, h.facts.name
                    )));
                }
                host
            }
            None => state
                .infrastructure
                .hosts
                .values()
                .filter(|h| h.facts.zone_id == row.facts.zone_id && h.facts.host_id != from)
                .map(|h| h.facts.host_id)
                .find(|h| host_fits(state, *h, cpu, mem))
                .ok_or_else(|| {
                    ApiError::insufficient_capacity(format!(
                        "Unable to migrate VM {}: no other host has {cpu} MHz and {mem} MiB free",
                        row.facts.name
                    ))
                })?,
        };
            Ok(EventBody::Vm(VmEvent::Migrate(VmMigrated {
                vm: row.facts.clone(),
                from_host_id: Some(from),
                to_host_id: to,
            })))
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// configureSimulator

async fn configure_simulator(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?;
    let kind = CommandKind::from_agent_name(name).ok_or_else(|| {
        ApiError::invalid_param(format!(
            "Unknown simulator command {name}; known: {}",
            CommandKind::ALL
                .iter()
                .map(|k| k.agent_name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let value = call.required("value")?.trim();
    let count = call.int("count")?.unwrap_or(1);
    let (what, arg) = value.split_once(':').unwrap_or((value, ""));
    match what.to_ascii_lowercase().as_str() {
        "result" if arg.eq_ignore_ascii_case("fail") => {
            let count = u32::try_from(count)
                .map_err(|_| ApiError::invalid_param("count must be between 0 and 2^32"))?;
            ctx.simulator.fail_next(kind, count);
        }
        "probability" => {
            let p: u8 = arg.parse().ok().filter(|p| *p <= 100).ok_or_else(|| {
                ApiError::invalid_param("probability:P needs P between 0 and 100")
            })?;
            ctx.simulator.fail_with_probability(kind, p);
        }
        "wait" => {
            let ms: u64 = arg
                .parse()
                .map_err(|_| ApiError::invalid_param("wait:MS needs a number of milliseconds"))?;
            ctx.simulator
                .set_latency(Some(kind), Duration::from_millis(ms));
        }
        "clear" => ctx.simulator.clear_injections(),
        _ => {
            return Err(ApiError::invalid_param(format!(
                "Unknown simulator setting {value}: use result:fail, probability:P, wait:MS or clear"
            )));
        }
    }
    Ok(Reply::success())
}
