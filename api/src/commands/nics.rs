//! A VM's network interfaces: `addNicToVirtualMachine`, `removeNicFromVirtualMachine`,
//! `updateDefaultNicForVirtualMachine`.
//!
//! A NIC's guest address comes from its network's pool, so adding one is decided on the
//! [`ALLOCATION`](crate::allocation::ALLOCATION) stream (DESIGN.md invariant 8). NICs are facts:
//! the hypervisor has nothing to carry out in the simulator, and the orchestration read model
//! tells the network's router about the DHCP entry. Every NIC change is paired with
//! NETWORK.OFFERING.ASSIGN / REMOVE, which usage (type 13, keyed by VM and NIC, with
//! `isdefault`) reads.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use compact_str::CompactString;
use engine::event::network::{NetworkOfferingAssignment, NicFacts};
use engine::event::{EventBody, NetworkOfferingEvent, NewEvent, NicEvent};
use projections::State;
use projections::compute::{VmRow, VmState};
use uuid::Uuid;

use crate::call::Call;
use crate::commands::networks::{self, settle_router};
use crate::commands::vms::{VM_FIELDS, vm_reply};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobIds, JobMeta};
use crate::registry::{CommandSpec, Inherits, Kind, ParamType as T, Roles, param, required};
use crate::response::Reply;

const VM_ID: crate::registry::ParamSpec =
    required("virtualmachineid", T::Uuid, "Virtual Machine ID");

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "addNicToVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Adds VM to specified network by creating a NIC",
        params: &[
            VM_ID,
            required("networkid", T::Uuid, "Network ID"),
            param("ipaddress", T::String, "IP Address for the new network"),
            param("macaddress", T::String, "Mac Address for the new network"),
            param(
                "dhcpoptions",
                T::Map,
                "DHCP options which are passed to the nic (ignored)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(add_nic),
    },
    CommandSpec {
        name: "removeNicFromVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Removes VM from specified network by deleting a NIC",
        params: &[VM_ID, required("nicid", T::Uuid, "NIC ID")],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(remove_nic),
    },
    CommandSpec {
        name: "updateDefaultNicForVirtualMachine",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Changes the default NIC on a VM",
        params: &[VM_ID, required("nicid", T::Uuid, "NIC ID")],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update_default_nic),
    },
];

/// A locally administered MAC address derived from a NIC's id (so a NIC keeps its MAC across
/// replays of the log).
pub fn mac_address(nic_id: Uuid) -> CompactString {
    let b = nic_id.as_bytes();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]).into()
}

/// A `macaddress` parameter, normalized to lower case (431 when it is not a unicast MAC).
fn mac_param(call: &Call) -> Result<Option<CompactString>, ApiError> {
    let Some(mac) = call.str("macaddress") else {
        return Ok(None);
    };
    let mac = mac.trim().to_ascii_lowercase();
    let octets: Vec<&str> = mac.split(':').collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
    let unicast = octets
        .first()
        .and_then(|o| u8::from_str_radix(o, 16).ok())
        .is_some_and(|b| b & 1 == 0);
    if !valid || !unicast {
        return Err(ApiError::invalid_param(format!(
            "Mac address is not valid: {mac}"
        )));
    }
    Ok(Some(mac.into()))
}

/// The VM `id`, if the caller may act on it.
fn accessible_vm<'a>(state: &'a State, call: &Call, id: Uuid) -> Result<&'a VmRow, ApiError> {
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

/// The name of VM `id`, if the caller may act on it: what a NIC job's description names,
/// read before the decision without holding the state.
fn vm_name(ctx: &Ctx, call: &Call, id: Uuid) -> Result<CompactString, ApiError> {
    let state = ctx.models.read();
    Ok(accessible_vm(&state, call, id)?.facts.name.clone())
}

/// A VM whose NICs may change: running or stopped, as CloudStack requires.
fn changeable_vm<'a>(state: &'a State, call: &Call, id: Uuid) -> Result<&'a VmRow, ApiError> {
    let vm = accessible_vm(state, call, id)?;
    if !matches!(vm.state, VmState::Running | VmState::Stopped) {
        return Err(ApiError::invalid_param(format!(
            "The VM {} must be Running or Stopped to change its NICs; it is {}",
            vm.facts.name,
            vm.state.as_str()
        )));
    }
    Ok(vm)
}

/// The NIC `nic_id` of the VM `vm_id`.
fn nic_of(state: &State, vm_id: Uuid, nic_id: Uuid) -> Result<NicFacts, ApiError> {
    state
        .compute
        .nics
        .get(&nic_id)
        .map(|n| n.facts.clone())
        .filter(|n| n.vm_id == vm_id)
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find nic {nic_id} of virtual machine {vm_id}"
            ))
        })
}

/// NETWORK.OFFERING.ASSIGN / REMOVE for a NIC as `nic` says it is.
fn offering_event(state: &State, nic: &NicFacts, assign: bool) -> Option<EventBody> {
    let network = state.compute.networks.get(&nic.network_id)?;
    let assignment = NetworkOfferingAssignment {
        vm_id: nic.vm_id,
        nic_id: nic.nic_id,
        network_id: nic.network_id,
        network_offering_id: network.facts.network_offering_id,
        account_id: nic.account_id,
        domain_id: nic.domain_id,
        zone_id: nic.zone_id,
        is_default: nic.is_default,
    };
    Some(EventBody::NetworkOffering(if assign {
        NetworkOfferingEvent::Assign(assignment)
    } else {
        NetworkOfferingEvent::Remove(assignment)
    }))
}

fn nic_job(vm_id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("VirtualMachine", vm_id, event_type, description)
}

fn decide_add_nic(
    state: &State,
    call: &Call,
    ids: JobIds,
    vm_id: Uuid,
    network_id: Uuid,
    requested: Option<IpAddr>,
    mac: Option<&CompactString>,
) -> Result<Vec<NewEvent>, ApiError> {
    let vm = changeable_vm(state, call, vm_id)?;
    let f = &vm.facts;
    let network = networks::usable_network(state, call, f.account_id, f.domain_id, network_id)?;
    let n = &network.facts;
    if n.zone_id != f.zone_id {
        return Err(ApiError::invalid_param(format!(
            "Network {} is not in the zone of virtual machine {}",
            n.name, f.name
        )));
    }
    let nics = state.compute.nics_of(vm_id);
    if nics.iter().any(|nic| nic.facts.network_id == network_id) {
        return Err(ApiError::invalid_param(format!(
            "A NIC already exists for VM : {} in network: {}",
            f.instance_name, n.name
        )));
    }
    if let Some(mac) = mac
        && state
            .compute
            .nics
            .values()
            .any(|nic| nic.facts.network_id == network_id && nic.facts.mac_address == *mac)
    {
        return Err(ApiError::invalid_param(format!(
            "MAC address {mac} is already in use in network {}",
            n.name
        )));
    }
    let address = networks::guest_address(state, n, requested)?;
    let implementation = networks::implementation(state, call, n, &BTreeSet::new())?;
    let nic_id = Uuid::new_v4();
    let nic = NicFacts {
        nic_id,
        vm_id,
        network_id,
        account_id: f.account_id,
        domain_id: f.domain_id,
        zone_id: f.zone_id,
        ip_address: address,
        mac_address: mac.cloned().unwrap_or_else(|| mac_address(nic_id)),
        is_default: false,
        device_id: nics
            .iter()
            .map(|n| n.facts.device_id + 1)
            .max()
            .unwrap_or(0),
    };
    let mut events = Vec::new();
    let start = implementation.map(|i| {
        events.extend(i.facts);
        i.start
    });
    events.push(ids.event(call, EventBody::Nic(NicEvent::Create(nic.clone()))));
    if let Some(body) = offering_event(state, &nic, true) {
        events.push(ids.event(call, body));
    }
    // The router of a network implemented here boots with this NIC's DHCP entry.
    events.extend(start);
    Ok(events)
}

async fn add_nic(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let vm_id = call.required_uuid("virtualmachineid")?;
    let network_id = call.required_uuid("networkid")?;
    let requested = call
        .str("ipaddress")
        .map(|v| {
            v.trim().parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                ApiError::invalid_param(format!("Please specify a valid IPv4 address: {v}"))
            })
        })
        .transpose()?;
    let mac = mac_param(call)?;
    let name = vm_name(ctx, call, vm_id)?;
    settle_router(ctx, Some(network_id), None).await;
    jobs::submit_decided(
        ctx,
        call,
        nic_job(
            vm_id,
            "NIC.CREATE",
            format!("adding a nic on network {network_id} to VM {name}"),
        ),
        |state, ids| decide_add_nic(state, call, ids, vm_id, network_id, requested, mac.as_ref()),
        move |state| vm_reply(state, vm_id),
    )
    .await
}

/// Whether rules on `network_id` still send traffic to the VM (static NAT, port forwarding,
/// load balancing): its NIC there cannot go before them.
fn has_rules_on(state: &State, vm_id: Uuid, network_id: Uuid) -> bool {
    let on = Some(network_id);
    state.network.public_ips.values().any(|ip| {
        ip.static_nat
            .as_ref()
            .is_some_and(|n| n.facts.vm_id == vm_id && n.facts.network_id == network_id)
    }) || state
        .network
        .nat_rules
        .values()
        .any(|r| r.facts.vm_id == Some(vm_id) && r.facts.network_id == on)
        || state
            .network
            .load_balancers
            .values()
            .any(|lb| lb.rule.facts.network_id == on && lb.members.contains_key(&vm_id))
}

async fn remove_nic(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let vm_id = call.required_uuid("virtualmachineid")?;
    let nic_id = call.required_uuid("nicid")?;
    let name = vm_name(ctx, call, vm_id)?;
    jobs::submit_decided(
        ctx,
        call,
        nic_job(
            vm_id,
            "NIC.DELETE",
            format!("removing nic {nic_id} from VM {name}"),
        ),
        |state, ids| {
            let vm = changeable_vm(state, call, vm_id)?;
            let nic = nic_of(state, vm_id, nic_id)?;
            let network = state
                .compute
                .networks
                .get(&nic.network_id)
                .map(|n| n.facts.name.clone())
                .unwrap_or_default();
            if nic.is_default {
                return Err(ApiError::invalid_param(format!(
                    "Unable to remove nic from {} in {network}, nic is default.",
                    vm.facts.instance_name
                )));
            }
            if has_rules_on(state, vm_id, nic.network_id) {
                return Err(ApiError::invalid_param(format!(
                    "Unable to remove nic from {} in {network}: static NAT, port forwarding or load balancing rules on that network still use the VM",
                    vm.facts.instance_name
                )));
            }
            let mut events = Vec::new();
            if let Some(body) = offering_event(state, &nic, false) {
                events.push(ids.event(call, body));
            }
            events.push(ids.event(call, EventBody::Nic(NicEvent::Delete(nic))));
            Ok(events)
        },
        move |state| vm_reply(state, vm_id),
    )
    .await
}

async fn update_default_nic(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let vm_id = call.required_uuid("virtualmachineid")?;
    let nic_id = call.required_uuid("nicid")?;
    let name = vm_name(ctx, call, vm_id)?;
    jobs::submit_decided(
        ctx,
        call,
        nic_job(
            vm_id,
            "NIC.UPDATE",
            format!("making nic {nic_id} the default of VM {name}"),
        ),
        |state, ids| {
            let vm = changeable_vm(state, call, vm_id)?;
            let new = nic_of(state, vm_id, nic_id)?;
            if new.is_default {
                return Err(ApiError::invalid_param(format!(
                    "Failed to change default nic to {nic_id}: it is already the default nic of {}",
                    vm.facts.instance_name
                )));
            }
            let old = state
                .compute
                .nics_of(vm_id)
                .into_iter()
                .map(|n| n.facts.clone())
                .find(|n| n.is_default);
            let mut events = Vec::new();
            // Usage keys NETWORK_OFFERING records by VM and NIC with `isdefault`: each NIC's
            // interval closes under its old flag and reopens under the new one.
            let mut change = |before: NicFacts, is_default: bool| {
                let after = NicFacts {
                    is_default,
                    ..before.clone()
                };
                if let Some(body) = offering_event(state, &before, false) {
                    events.push(ids.event(call, body));
                }
                events.push(ids.event(call, EventBody::Nic(NicEvent::Update(after.clone()))));
                if let Some(body) = offering_event(state, &after, true) {
                    events.push(ids.event(call, body));
                }
            };
            if let Some(old) = old {
                change(old, false);
            }
            change(new, true);
            Ok(events)
        },
        move |state| vm_reply(state, vm_id),
    )
    .await
}
