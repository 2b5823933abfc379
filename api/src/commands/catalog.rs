//! Zones and offerings: what every client lists first (`createZone`, `listZones`,
//! `createServiceOffering`, `listServiceOfferings`, `updateServiceOffering`,
//! `deleteServiceOffering`, `createDiskOffering`, `listDiskOfferings`, `deleteDiskOffering`).
//!
//! Every change is decided on the `catalog` stream, so checks such as a zone's unique name are
//! made against the state the append is expected at.

use std::net::{IpAddr, Ipv4Addr};

use compact_str::CompactString;
use engine::event::infrastructure::{
    DiskOfferingFacts, DiskOfferingLifecycle, ServiceOfferingFacts, ServiceOfferingLifecycle,
    ZoneFacts, ZoneLifecycle,
};
use engine::event::{DiskOfferingEvent, EventBody, ServiceOfferingEvent, ZoneEvent};
use projections::State;
use projections::catalog::Created;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, Paging, keyword_matches};
use crate::commands::date;
use crate::commands::domains::accessible_domain;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Role, Roles, field,
    param, required,
};
use crate::response::Reply;

/// The stream that owns the catalogue's invariants (unique zone names, offerings that exist
/// when they are changed).
pub const CATALOG: &str = "catalog";

const GIB: u64 = 1024 * 1024 * 1024;

/// CloudStack declares cpu, speed and memory as Java `Integer`s.
const JAVA_INT_MAX: i64 = i32::MAX as i64;

/// `domainid` and `zoneid` of offerings hold lists of UUIDs: at 37 characters each, the
/// default limit of 255 would refuse more than six of them.
const ID_LIST_LENGTH: u32 = 65_535;

const ZONE_FIELDS: &[ResponseField] = &[
    field("id", "string", "Zone id"),
    field("name", "string", "Zone name"),
    field("description", "string", "Zone description"),
    field("dns1", "string", "the first DNS for the Zone"),
    field("dns2", "string", "the second DNS for the Zone"),
    field(
        "internaldns1",
        "string",
        "the first internal DNS for the Zone",
    ),
    field(
        "internaldns2",
        "string",
        "the second internal DNS for the Zone",
    ),
    field(
        "guestcidraddress",
        "string",
        "the guest CIDR address for the Zone",
    ),
    field(
        "networktype",
        "string",
        "the network type of the zone; can be Basic or Advanced",
    ),
    field(
        "securitygroupsenabled",
        "boolean",
        "true if security groups support is enabled, false otherwise",
    ),
    field(
        "allocationstate",
        "string",
        "the allocation state of the cluster",
    ),
    field("dhcpprovider", "string", "the dhcp Provider for the Zone"),
    field(
        "localstorageenabled",
        "boolean",
        "true if local storage offering enabled, false otherwise",
    ),
    field(
        "domain",
        "string",
        "Network domain name for the networks in the zone",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with zone.",
    ),
    field(
        "hasannotations",
        "boolean",
        "true if the entity/resource has annotations",
    ),
];

const SERVICE_OFFERING_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the service offering"),
    field("name", "string", "the name of the service offering"),
    field(
        "displaytext",
        "string",
        "an alternate display text of the service offering.",
    ),
    field("cpunumber", "integer", "the number of CPU"),
    field("cpuspeed", "integer", "the clock rate CPU speed in Mhz"),
    field("memory", "integer", "the memory in MB"),
    field(
        "created",
        "date",
        "the date this service offering was created",
    ),
    field(
        "storagetype",
        "string",
        "the storage type for this service offering",
    ),
    field(
        "offerha",
        "boolean",
        "the ha support in the service offering",
    ),
    field(
        "limitcpuuse",
        "boolean",
        "restrict the CPU usage to committed service offering",
    ),
    field(
        "isvolatile",
        "boolean",
        "true if the vm needs to be volatile, i.e., on every reboot of vm from API root disk is discarded and creates a new root disk",
    ),
    field("issystem", "boolean", "is this a system vm offering"),
    field(
        "systemvmtype",
        "string",
        "is this a the systemvm type for system vm offering",
    ),
    field(
        "defaultuse",
        "boolean",
        "is this a  default system vm offering",
    ),
    field(
        "iscustomized",
        "boolean",
        "is true if the offering is customized",
    ),
    field(
        "hosttags",
        "string",
        "the host tag for the service offering",
    ),
    field("storagetags", "string", "the tags for the service offering"),
    field("rootdisksize", "long", "Root disk size in GB"),
    field(
        "domainid",
        "string",
        "the domain ID(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "domain",
        "string",
        "the domain name(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "zoneid",
        "string",
        "the zone ID(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "zone",
        "string",
        "the zone name(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "dynamicscalingenabled",
        "boolean",
        "true if virtual machine needs to be dynamically scalable of cpu or memory",
    ),
    field(
        "hasannotations",
        "boolean",
        "true if the entity/resource has annotations",
    ),
];

const DISK_OFFERING_FIELDS: &[ResponseField] = &[
    field("id", "string", "unique ID of the disk offering"),
    field("name", "string", "the name of the disk offering"),
    field(
        "displaytext",
        "string",
        "an alternate display text of the disk offering.",
    ),
    field("disksize", "long", "the size of the disk offering in GB"),
    field(
        "iscustomized",
        "boolean",
        "true if disk offering uses custom size, false otherwise",
    ),
    field("created", "date", "the date this disk offering was created"),
    field(
        "storagetype",
        "string",
        "the storage type for this disk offering",
    ),
    field("tags", "string", "the tags for the disk offering"),
    field("miniops", "long", "the min iops of the disk offering"),
    field("maxiops", "long", "the max iops of the disk offering"),
    field(
        "domainid",
        "string",
        "the domain ID(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "domain",
        "string",
        "the domain name(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "zoneid",
        "string",
        "the zone ID(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "zone",
        "string",
        "the zone name(s) this disk offering belongs to. Ignore this information as it is not currently applicable.",
    ),
    field(
        "provisioningtype",
        "string",
        "provisioning type used to create volumes. Valid values are thin, sparse, fat.",
    ),
    field(
        "displayoffering",
        "boolean",
        "whether to display the offering to the end user or not.",
    ),
    field(
        "hasannotations",
        "boolean",
        "true if the entity/resource has annotations",
    ),
];

const fn id_list(name: &'static str, description: &'static str) -> ParamSpec {
    ParamSpec {
        length: ID_LIST_LENGTH,
        ..param(name, T::List, description)
    }
}

/// The zone and offering commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createZone",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Creates a Zone.",
        params: &[
            required("name", T::String, "the name of the Zone"),
            required(
                "networktype",
                T::String,
                "network type of the zone, can be Basic or Advanced",
            ),
            required("dns1", T::String, "the first DNS for the Zone"),
            required(
                "internaldns1",
                T::String,
                "the first internal DNS for the Zone",
            ),
            param("dns2", T::String, "the second DNS for the Zone"),
            param(
                "internaldns2",
                T::String,
                "the second internal DNS for the Zone",
            ),
            param(
                "guestcidraddress",
                T::String,
                "the guest CIDR address for the Zone",
            ),
            param(
                "domain",
                T::String,
                "Network domain name for the networks in the zone",
            ),
            param(
                "localstorageenabled",
                T::Boolean,
                "true if local storage offering enabled, false otherwise",
            ),
            param(
                "securitygroupenabled",
                T::Boolean,
                "true if network is security group enabled, false otherwise",
            ),
            param(
                "allocationstate",
                T::String,
                "Allocation state of this Zone for allocation of new resources",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ZONE_FIELDS,
        related: "listZones",
        manual_clock_only: false,
        handler: handler!(create_zone),
    },
    CommandSpec {
        name: "listZones",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists zones",
        params: &[
            param("id", T::Uuid, "the ID of the zone"),
            param("name", T::String, "the name of the zone"),
            param(
                "available",
                T::Boolean,
                "true if you want to retrieve all available Zones. False if you only want to return the Zones from which you have at least one VM. Default is false.",
            ),
            param(
                "networktype",
                T::String,
                "the network type of the zone that the virtual machine belongs to",
            ),
            param(
                "showcapacities",
                T::Boolean,
                "flag to display the capacity of the zones",
            ),
        ],
        inherits: Inherits::Paging,
        response: ZONE_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_zones),
    },
    CommandSpec {
        name: "createServiceOffering",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Creates a service offering.",
        params: &[
            required("name", T::String, "the name of the service offering"),
            param(
                "displaytext",
                T::String,
                "The display text of the service offering, defaults to 'name'.",
            ),
            param(
                "cpunumber",
                T::Integer,
                "the CPU number of the service offering",
            ),
            param(
                "cpuspeed",
                T::Integer,
                "the CPU speed of the service offering in MHz.",
            ),
            param(
                "memory",
                T::Integer,
                "the total memory of the service offering in MB",
            ),
            param(
                "customized",
                T::Boolean,
                "Whether service offering size is custom or not",
            ),
            param("offerha", T::Boolean, "the HA for the service offering"),
            param(
                "limitcpuuse",
                T::Boolean,
                "restrict the CPU usage to committed service offering",
            ),
            param(
                "isvolatile",
                T::Boolean,
                "true if the virtual machine needs to be volatile so that on every reboot of VM, original root disk is dettached then destroyed and a fresh root disk is created and attached to VM",
            ),
            param(
                "storagetype",
                T::String,
                "the storage type of the service offering. Values are local and shared.",
            ),
            param(
                "hosttags",
                T::String,
                "the host tag for this service offering.",
            ),
            param("tags", T::String, "the tags for this service offering."),
            param("rootdisksize", T::Long, "the Root disk size in GB."),
            id_list(
                "domainid",
                "the ID of the containing domain(s), null for public offerings",
            ),
            id_list(
                "zoneid",
                "the ID of the containing zone(s), null for public offerings",
            ),
            param("issystem", T::Boolean, "is this a system vm offering"),
            param(
                "systemvmtype",
                T::String,
                "the system VM type. Possible types are \"domainrouter\", \"consoleproxy\" and \"secondarystoragevm\".",
            ),
            param(
                "dynamicscalingenabled",
                T::Boolean,
                "true if virtual machine needs to be dynamically scalable of cpu or memory",
            ),
        ],
        inherits: Inherits::Nothing,
        response: SERVICE_OFFERING_FIELDS,
        related: "listServiceOfferings",
        manual_clock_only: false,
        handler: handler!(create_service_offering),
    },
    CommandSpec {
        name: "listServiceOfferings",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available service offerings.",
        params: &[
            param("id", T::Uuid, "ID of the service offering"),
            param("name", T::String, "name of the service offering"),
            param(
                "zoneid",
                T::Uuid,
                "id of zone disk offering is associated with",
            ),
            param("issystem", T::Boolean, "is this a system vm offering"),
            param(
                "systemvmtype",
                T::String,
                "the system VM type. Possible types are \"consoleproxy\", \"secondarystoragevm\" or \"domainrouter\".",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: SERVICE_OFFERING_FIELDS,
        related: "updateServiceOffering",
        manual_clock_only: false,
        handler: handler!(list_service_offerings),
    },
    CommandSpec {
        name: "updateServiceOffering",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Updates a service offering.",
        params: &[
            required(
                "id",
                T::Uuid,
                "the ID of the service offering to be updated",
            ),
            param(
                "name",
                T::String,
                "the name of the service offering to be updated",
            ),
            param(
                "displaytext",
                T::String,
                "the display text of the service offering to be updated",
            ),
            param(
                "sortkey",
                T::Integer,
                "sort key of the service offering, integer",
            ),
            param(
                "hosttags",
                T::String,
                "comma-separated list of host tags for the service offering; empty to remove them",
            ),
            param(
                "storagetags",
                T::String,
                "comma-separated list of storage tags for the service offering; empty to remove them",
            ),
            id_list(
                "domainid",
                "the ID of the containing domain(s) as comma separated string, public for public offerings",
            ),
            id_list(
                "zoneid",
                "the ID of the containing zone(s) as comma separated string, all for all zones offerings",
            ),
        ],
        inherits: Inherits::Nothing,
        response: SERVICE_OFFERING_FIELDS,
        related: "listServiceOfferings",
        manual_clock_only: false,
        handler: handler!(update_service_offering),
    },
    CommandSpec {
        name: "deleteServiceOffering",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Deletes a service offering.",
        params: &[required("id", T::Uuid, "the ID of the service offering")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_service_offering),
    },
    CommandSpec {
        name: "createDiskOffering",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Creates a disk offering.",
        params: &[
            required("name", T::String, "name of the disk offering"),
            param(
                "displaytext",
                T::String,
                "An alternate display text of the disk offering, defaults to 'name'.",
            ),
            param(
                "disksize",
                T::Long,
                "size of the disk offering in GB (1GB = 1,073,741,824 bytes)",
            ),
            param(
                "customized",
                T::Boolean,
                "whether disk offering size is custom or not",
            ),
            param(
                "storagetype",
                T::String,
                "the storage type of the disk offering. Values are local and shared.",
            ),
            param("tags", T::String, "tags for the disk offering"),
            param("miniops", T::Long, "min iops of the disk offering"),
            param("maxiops", T::Long, "max iops of the disk offering"),
            param(
                "customizediops",
                T::Boolean,
                "whether disk offering iops is custom or not",
            ),
            param(
                "provisioningtype",
                T::String,
                "provisioning type used to create volumes. Valid values are thin, sparse, fat.",
            ),
            id_list(
                "domainid",
                "the ID of the containing domain(s), null for public offerings",
            ),
            id_list(
                "zoneid",
                "the ID of the containing zone(s), null for public offerings",
            ),
        ],
        inherits: Inherits::Nothing,
        response: DISK_OFFERING_FIELDS,
        related: "listDiskOfferings",
        manual_clock_only: false,
        handler: handler!(create_disk_offering),
    },
    CommandSpec {
        name: "listDiskOfferings",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available disk offerings.",
        params: &[
            param("id", T::Uuid, "ID of the disk offering"),
            param("name", T::String, "name of the disk offering"),
            param(
                "zoneid",
                T::Uuid,
                "id of zone disk offering is associated with",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: DISK_OFFERING_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_disk_offerings),
    },
    CommandSpec {
        name: "deleteDiskOffering",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Deletes a disk offering.",
        params: &[required("id", T::Uuid, "ID of the disk offering")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_disk_offering),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// A zone as CloudStack shows it.
pub fn zone_json(row: &Created<ZoneFacts>) -> Value {
    let zone = &row.facts;
    json!({
        "id": zone.zone_id,
        "name": zone.name,
        "description": zone.description,
        "dns1": zone.dns1,
        "dns2": zone.dns2,
        "internaldns1": zone.internal_dns1,
        "internaldns2": zone.internal_dns2,
        "guestcidraddress": zone.guest_cidr,
        "networktype": zone.network_type,
        "securitygroupsenabled": zone.security_group_enabled,
        "allocationstate": zone.allocation_state,
        "dhcpprovider": "VirtualRouter",
        "localstorageenabled": zone.local_storage_enabled,
        "domain": zone.network_domain,
        "tags": [],
        "hasannotations": false,
    })
}

/// A service offering as CloudStack shows it; `state` names its domains and zones.
pub fn service_offering_json(state: &State, row: &Created<ServiceOfferingFacts>) -> Value {
    let offering = &row.facts;
    let (domain_ids, domain_names) = domain_restriction(state, &offering.domain_ids);
    let (zone_ids, zone_names) = zone_restriction(state, &offering.zone_ids);
    json!({
        "id": offering.service_offering_id,
        "name": offering.name,
        "displaytext": offering.display_text,
        "cpunumber": offering.cpu_number,
        "cpuspeed": offering.cpu_speed,
        "memory": offering.memory,
        "created": date(row.created),
        "storagetype": offering.storage_type,
        "offerha": offering.offer_ha,
        "limitcpuuse": offering.limit_cpu_use,
        "isvolatile": false,
        "issystem": offering.system_vm_type.is_some(),
        "systemvmtype": offering.system_vm_type,
        "defaultuse": false,
        "iscustomized": offering.is_customized,
        "hosttags": offering.host_tags,
        "storagetags": offering.storage_tags,
        "rootdisksize": offering.root_disk_size.map(|bytes| bytes / GIB),
        "domainid": domain_ids,
        "domain": domain_names,
        "zoneid": zone_ids,
        "zone": zone_names,
        "dynamicscalingenabled": offering.dynamic_scaling_enabled,
        "hasannotations": false,
    })
}

/// A disk offering as CloudStack shows it; `state` names its domains and zones.
pub fn disk_offering_json(state: &State, row: &Created<DiskOfferingFacts>) -> Value {
    let offering = &row.facts;
    let (domain_ids, domain_names) = domain_restriction(state, &offering.domain_ids);
    let (zone_ids, zone_names) = zone_restriction(state, &offering.zone_ids);
    json!({
        "id": offering.disk_offering_id,
        "name": offering.name,
        "displaytext": offering.display_text,
        // CloudStack answers 0 for a custom size, and Libcloud reads the field unconditionally.
        "disksize": offering.disk_size.map_or(0, |bytes| bytes / GIB),
        "iscustomized": offering.is_customized,
        "created": date(row.created),
        "storagetype": offering.storage_type,
        "tags": offering.tags,
        "miniops": offering.min_iops,
        "maxiops": offering.max_iops,
        "domainid": domain_ids,
        "domain": domain_names,
        "zoneid": zone_ids,
        "zone": zone_names,
        "provisioningtype": "thin",
        "displayoffering": true,
        "hasannotations": false,
    })
}

/// CloudStack shows an offering's restriction as comma-joined ids and names, and nothing for
/// a public offering.
fn joined(pairs: Vec<(String, String)>) -> (Option<String>, Option<String>) {
    if pairs.is_empty() {
        return (None, None);
    }
    let (ids, names): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    (Some(ids.join(",")), Some(names.join(",")))
}

fn domain_restriction(state: &State, ids: &[Uuid]) -> (Option<String>, Option<String>) {
    joined(
        ids.iter()
            .filter_map(|id| state.identity.domains.get(id))
            .map(|d| (d.facts.domain_id.to_string(), d.facts.name.to_string()))
            .collect(),
    )
}

fn zone_restriction(state: &State, ids: &[Uuid]) -> (Option<String>, Option<String>) {
    joined(
        ids.iter()
            .filter_map(|id| state.catalog.zones.get(id))
            .map(|z| (z.facts.zone_id.to_string(), z.facts.name.to_string()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Parameter checks shared by several commands

/// A whole-number parameter that must lie in `1..=max`; `label` and `what` complete
/// CloudStack's "Failed to create ...: specify the ... value between 1 and N" message.
fn positive(
    call: &Call,
    name: &str,
    label: &str,
    max: i64,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    match call.int(name)? {
        Some(n) if !(1..=max).contains(&n) => Err(ApiError::invalid_param(format!(
            "Failed to create {what}: specify the {label} value between 1 and {max}"
        ))),
        other => Ok(other),
    }
}

/// A comma-separated list of ids (431 for an item that is not a UUID).
fn uuid_list(name: &str, value: &str) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::new();
    for item in parse_list(value) {
        let id = Uuid::parse_str(&item).map_err(|_| {
            ApiError::invalid_param(format!(
                "Invalid parameter {name} value={item} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
            ))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// `shared` (the default) or `local`.
fn storage_type(call: &Call) -> Result<CompactString, ApiError> {
    match call.str("storagetype") {
        None => Ok("shared".into()),
        Some(t) if t.eq_ignore_ascii_case("shared") || t.eq_ignore_ascii_case("local") => {
            Ok(t.to_ascii_lowercase().into())
        }
        Some(t) => Err(ApiError::invalid_param(format!(
            "Invalid storage type {t} specified, valid types are: 'local' and 'shared'"
        ))),
    }
}

/// The domains an offering is restricted to, checked against the caller: each must exist and
/// be the caller's to manage. ROOT means public, as it does in CloudStack; a domain below
/// another listed one adds nothing and is dropped. Domain admins may not create public
/// offerings, which would reach every domain.
fn restricted_domains(state: &State, call: &Call, ids: &[Uuid]) -> Result<Vec<Uuid>, ApiError> {
    let mut kept = Vec::new();
    for &id in ids {
        let domain = accessible_domain(state, call, id)?;
        if domain.facts.parent_id.is_none() {
            kept.clear();
            break;
        }
        kept.push(id);
    }
    let covered = |id: Uuid, kept: &[Uuid]| {
        kept.iter()
            .any(|&other| other != id && state.identity.is_in_subtree(id, other))
    };
    let kept: Vec<Uuid> = kept
        .iter()
        .copied()
        .filter(|&id| !covered(id, &kept))
        .collect();
    if kept.is_empty() && call.caller.role == Role::DomainAdmin {
        return Err(ApiError::permission_denied(
            "A domain admin can't make a public offering: pass domainid with domains of their own subtree",
        ));
    }
    Ok(kept)
}

/// The zones an offering is restricted to; each must exist.
fn restricted_zones(state: &State, ids: &[Uuid]) -> Result<Vec<Uuid>, ApiError> {
    for id in ids {
        existing_zone(state, *id)?;
    }
    Ok(ids.to_vec())
}

fn existing_zone(state: &State, id: Uuid) -> Result<&Created<ZoneFacts>, ApiError> {
    state
        .catalog
        .zones
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find zone by id {id}")))
}

/// True when the caller may see an offering restricted to `domains`: public offerings are for
/// everyone; a restricted one is for the accounts below one of its domains, and also for the
/// domain admins above one of them, who manage it.
fn offering_visible(state: &State, call: &Call, domains: &[Uuid]) -> bool {
    let caller = &call.caller;
    caller.is_root_admin()
        || domains.is_empty()
        || domains.iter().any(|&d| {
            state.identity.is_in_subtree(caller.domain_id, d)
                || (caller.role == Role::DomainAdmin
                    && state.identity.is_in_subtree(d, caller.domain_id))
        })
}

/// A domain admin manages only offerings restricted to domains of their own subtree: a public
/// offering, or one shared with other domains, is not theirs to change.
fn may_manage_offering(
    state: &State,
    call: &Call,
    domains: &[Uuid],
    action: &str,
    what: &str,
    id: Uuid,
) -> Result<(), ApiError> {
    let caller = &call.caller;
    if caller.is_root_admin() {
        return Ok(());
    }
    if domains.is_empty() {
        return Err(ApiError::permission_denied(format!(
            "Unable to {action} public {what} {id}: domain admins may change only offerings restricted to their domains"
        )));
    }
    if !domains
        .iter()
        .all(|&d| state.identity.is_in_subtree(d, caller.domain_id))
    {
        return Err(ApiError::permission_denied(format!(
            "Unable to {action} {what} {id} as it has linked domain(s) which are not child domains of the caller's domain"
        )));
    }
    Ok(())
}

/// The zone filter of the offering lists: offerings for every zone, or for this one.
fn zone_filter(state: &State, call: &Call) -> Result<Option<Uuid>, ApiError> {
    let zone = call.uuid("zoneid")?;
    if let Some(zone) = zone {
        existing_zone(state, zone)?;
    }
    Ok(zone)
}

/// The `domainid` filter of the offering lists: offerings linked to that domain, which the
/// caller must be able to see.
fn domain_filter(state: &State, call: &Call) -> Result<Option<Uuid>, ApiError> {
    let domain = call.uuid("domainid")?;
    if let Some(domain) = domain {
        accessible_domain(state, call, domain)?;
    }
    Ok(domain)
}

// ---------------------------------------------------------------------------------------------
// Zones

/// An IPv4 address for a DNS parameter (CloudStack accepts only IPv4 there).
fn dns(call: &Call, name: &str, label: &str) -> Result<Option<IpAddr>, ApiError> {
    call.str(name)
        .map(|v| {
            v.trim().parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                ApiError::invalid_param(format!("Please enter a valid IP address for {label}"))
            })
        })
        .transpose()
}

/// True for an IPv4 CIDR inside the RFC 1918 private ranges, which is what CloudStack's
/// `NetUtils.validateGuestCidr` accepts for a zone's guest networks.
fn is_private_ipv4_cidr(cidr: &str) -> bool {
    let Some((address, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(address), Ok(bits)) = (address.parse::<Ipv4Addr>(), bits.parse::<u8>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let first = u32::from(address);
    let last = first | (u32::MAX.checked_shr(u32::from(bits)).unwrap_or(0));
    let private = [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
    ];
    private.iter().any(|&(net, len)| {
        let mask = u32::MAX << (32 - len);
        first & mask == u32::from(net) && last & mask == u32::from(net)
    })
}

/// CloudStack's `NetUtils.verifyDomainName`: labels of 1 to 63 letters, digits and hyphens,
/// not starting with a digit or hyphen nor ending with a hyphen; at most 190 characters.
fn is_valid_network_domain(domain: &str) -> bool {
    domain.len() <= 190
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0].is_ascii_alphabetic()
                && bytes[bytes.len() - 1] != b'-'
        })
}

fn zone_facts(call: &Call, zone_id: Uuid) -> Result<ZoneFacts, ApiError> {
    let name = call.required("name")?.trim();
    let network_type: CompactString = match call.required("networktype")? {
        t if t.eq_ignore_ascii_case("basic") => "Basic".into(),
        t if t.eq_ignore_ascii_case("advanced") => "Advanced".into(),
        _ => {
            return Err(ApiError::invalid_param(
                "Invalid zone type; only Advanced and Basic values are supported",
            ));
        }
    };
    // CloudStack requires both: system VMs of the zone resolve through them.
    call.required("dns1")?;
    call.required("internaldns1")?;
    let guest_cidr = call.str("guestcidraddress").map(str::trim);
    if let Some(cidr) = guest_cidr
        && !is_private_ipv4_cidr(cidr)
    {
        return Err(ApiError::invalid_param("Please enter a valid guest cidr"));
    }
    let network_domain = call.str("domain").map(str::trim);
    if let Some(domain) = network_domain
        && !is_valid_network_domain(domain)
    {
        return Err(ApiError::invalid_param(
            "Invalid network domain. Total length shouldn't exceed 190 chars. Each domain label must be between 1 and 63 characters long, can contain ASCII letters 'a' through 'z', the digits '0' through '9', and the hyphen ('-'); can't start or end with \"-\"; can't start with digit",
        ));
    }
    // CloudStack creates zones Disabled and the UI's wizard enables them at the end with
    // updateZone; Ledgerstack has no updateZone, so a zone is Enabled unless asked otherwise.
    let allocation_state: CompactString = match call.str("allocationstate") {
        None => "Enabled".into(),
        Some(s) if s.eq_ignore_ascii_case("enabled") => "Enabled".into(),
        Some(s) if s.eq_ignore_ascii_case("disabled") => "Disabled".into(),
        Some(s) => {
            return Err(ApiError::invalid_param(format!(
                "Unable to resolve Allocation State '{s}' to a supported state"
            )));
        }
    };
    // A basic zone's default network offering provides security groups; an advanced zone has
    // them only when asked.
    let security_group_enabled = call
        .bool_opt("securitygroupenabled")
        .unwrap_or(network_type == "Basic");
    Ok(ZoneFacts {
        zone_id,
        name: name.into(),
        description: None,
        network_type,
        dns1: dns(call, "dns1", "DNS1")?,
        dns2: dns(call, "dns2", "DNS2")?,
        internal_dns1: dns(call, "internaldns1", "internal DNS1")?,
        internal_dns2: dns(call, "internaldns2", "internal DNS2")?,
        guest_cidr: guest_cidr.map(Into::into),
        network_domain: network_domain.map(Into::into),
        security_group_enabled,
        local_storage_enabled: call.flag("localstorageenabled"),
        allocation_state,
    })
}

async fn create_zone(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let zone_id = Uuid::new_v4();
    let zone = zone_facts(call, zone_id)?;
    ctx.decide(CATALOG, |state| {
        if state
            .catalog
            .zones
            .values()
            .any(|z| z.facts.name.eq_ignore_ascii_case(&zone.name))
        {
            return Err(ApiError::invalid_param(
                "A zone with that name already exists. Please specify a unique zone name.",
            ));
        }
        Ok(vec![call.event(EventBody::Zone(ZoneEvent::Create(
            ZoneLifecycle { zone: zone.clone() },
        )))])
    })
    .await?;
    let state = ctx.models.read();
    let row = state.catalog.zones.get(&zone_id).ok_or_else(|| {
        ApiError::internal(format!("zone {zone_id} vanished after it was written"))
    })?;
    Ok(Reply::Object {
        key: "zone",
        value: zone_json(row),
    })
}

async fn list_zones(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let network_type = call.str("networktype");
    let keyword = call.str("keyword");
    // `available=false` would narrow the list to zones where the caller has VMs; Ledgerstack
    // has no VMs yet, so every zone the caller may use is listed either way.
    let show_disabled = call.caller.is_root_admin();
    let mut rows: Vec<&Created<ZoneFacts>> = state
        .catalog
        .zones
        .values()
        .filter(|z| {
            let f = &z.facts;
            (show_disabled || f.allocation_state != "Disabled")
                && id.is_none_or(|id| f.zone_id == id)
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && network_type.is_none_or(|t| f.network_type.eq_ignore_ascii_case(t))
                && keyword_matches(keyword, &[&f.name, f.description.as_deref().unwrap_or("")])
        })
        .collect();
    // CloudStack orders zones by their database id, which is creation order.
    rows.sort_by_key(|z| (z.created, z.facts.zone_id));
    let (count, items) = paging.apply(rows.into_iter().map(zone_json).collect());
    Ok(Reply::List {
        key: "zone",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// Service offerings

const SYSTEM_VM_TYPES: &[&str] = &["domainrouter", "consoleproxy", "secondarystoragevm"];

/// The system VM type of a system offering: `issystem` makes one, `domainrouter` by default.
fn system_vm_type(call: &Call) -> Result<Option<CompactString>, ApiError> {
    let requested = call.str("systemvmtype");
    if !call.flag("issystem") {
        if requested.is_some() {
            return Err(ApiError::invalid_param(
                "SystemVmType should be set only when IsSystem is set",
            ));
        }
        return Ok(None);
    }
    if !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(
            "Only ROOT admins can create system offerings",
        ));
    }
    match requested.map(str::to_ascii_lowercase) {
        None => Ok(Some("domainrouter".into())),
        Some(t) if SYSTEM_VM_TYPES.contains(&t.as_str()) => Ok(Some(t.into())),
        Some(_) => Err(ApiError::invalid_param(format!(
            "Invalid systemVmType. Supported types are: {}",
            SYSTEM_VM_TYPES.join(", ")
        ))),
    }
}

/// cpu number, speed and memory: all three set, or none (`None`: chosen at deploy, a custom
/// offering), as CloudStack requires.
fn compute_size(call: &Call, name: &str) -> Result<Option<(u32, u32, u64)>, ApiError> {
    let what = format!("service offering {name}");
    let cpu = positive(call, "cpunumber", "cpu number", JAVA_INT_MAX, &what)?;
    let speed = positive(call, "cpuspeed", "cpu speed", JAVA_INT_MAX, &what)?;
    let memory = positive(call, "memory", "memory", JAVA_INT_MAX, &what)?;
    if call.flag("customized") {
        return Ok(None);
    }
    match (cpu, speed, memory) {
        (None, None, None) => Ok(None),
        // `positive` bounded all three by i32::MAX, so the conversions are lossless.
        (Some(cpu), Some(speed), Some(memory)) => {
            Ok(Some((cpu as u32, speed as u32, memory as u64)))
        }
        _ => Err(ApiError::invalid_param(
            "For creating a custom compute offering cpu, cpu speed and memory all should be null",
        )),
    }
}

fn root_disk_size(call: &Call) -> Result<Option<u64>, ApiError> {
    match call.int("rootdisksize")? {
        None => Ok(None),
        Some(gb) if gb > 0 => (gb as u64).checked_mul(GIB).map(Some).ok_or_else(|| {
            ApiError::invalid_param(format!("The Root disk size of {gb} GB is too large"))
        }),
        Some(gb) => Err(ApiError::invalid_param(format!(
            "The Root disk size is of {gb} GB but it must be greater than 0."
        ))),
    }
}

fn optional_text(call: &Call, name: &str) -> Option<CompactString> {
    call.str(name).map(|v| v.trim().into())
}

async fn create_service_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    let size = compute_size(call, &name)?;
    let id = Uuid::new_v4();
    let template = ServiceOfferingFacts {
        service_offering_id: id,
        name: name.as_str().into(),
        display_text: call.str("displaytext").unwrap_or(&name).to_owned(),
        cpu_number: size.map(|(cpu, _, _)| cpu),
        cpu_speed: size.map(|(_, speed, _)| speed),
        memory: size.map(|(_, _, memory)| memory),
        is_customized: size.is_none(),
        offer_ha: call.flag("offerha"),
        limit_cpu_use: call.flag("limitcpuuse"),
        dynamic_scaling_enabled: call.bool_opt("dynamicscalingenabled").unwrap_or(true),
        storage_type: storage_type(call)?,
        host_tags: optional_text(call, "hosttags"),
        storage_tags: optional_text(call, "tags"),
        root_disk_size: root_disk_size(call)?,
        domain_ids: Vec::new(),
        zone_ids: Vec::new(),
        system_vm_type: system_vm_type(call)?,
    };
    let domains = call
        .str("domainid")
        .map(|v| uuid_list("domainid", v))
        .transpose()?;
    let zones = call
        .str("zoneid")
        .map(|v| uuid_list("zoneid", v))
        .transpose()?;
    ctx.decide(CATALOG, |state| {
        let offering = ServiceOfferingFacts {
            domain_ids: restricted_domains(state, call, domains.as_deref().unwrap_or_default())?,
            zone_ids: restricted_zones(state, zones.as_deref().unwrap_or_default())?,
            ..template.clone()
        };
        Ok(vec![call.event(EventBody::ServiceOffering(
            ServiceOfferingEvent::Create(ServiceOfferingLifecycle { offering }),
        ))])
    })
    .await?;
    service_offering_reply(ctx, id)
}

fn service_offering_reply(ctx: &Ctx, id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let row = state.catalog.service_offerings.get(&id).ok_or_else(|| {
        ApiError::internal(format!(
            "service offering {id} vanished after it was written"
        ))
    })?;
    Ok(Reply::Object {
        key: "serviceoffering",
        value: service_offering_json(&state, row),
    })
}

fn existing_service_offering(
    state: &State,
    id: Uuid,
) -> Result<&Created<ServiceOfferingFacts>, ApiError> {
    state.catalog.service_offerings.get(&id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find service offering by id {id}"))
    })
}

async fn list_service_offerings(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    if call.str("projectid").is_some() {
        return Ok(Reply::List {
            key: "serviceoffering",
            count: 0,
            items: Vec::new(),
        });
    }
    let is_system = call.flag("issystem");
    if is_system && !call.caller.is_root_admin() {
        return Err(ApiError::invalid_param(
            "Only ROOT admins can access system's offering",
        ));
    }
    let id = call.uuid("id")?;
    let name = call.str("name");
    let zone = zone_filter(&state, call)?;
    let domain = domain_filter(&state, call)?;
    let vm_type = call.str("systemvmtype");
    let keyword = call.str("keyword");
    let mut rows: Vec<&Created<ServiceOfferingFacts>> = state
        .catalog
        .service_offerings
        .values()
        .filter(|o| {
            let f = &o.facts;
            f.system_vm_type.is_some() == is_system
                && offering_visible(&state, call, &f.domain_ids)
                && id.is_none_or(|id| f.service_offering_id == id)
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && zone.is_none_or(|z| f.zone_ids.is_empty() || f.zone_ids.contains(&z))
                && domain.is_none_or(|d| f.domain_ids.contains(&d))
                && vm_type.is_none_or(|t| {
                    f.system_vm_type
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(t))
                })
                && keyword_matches(keyword, &[&f.name, &f.display_text])
        })
        .collect();
    rows.sort_by_key(|o| (o.created, o.facts.service_offering_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|o| service_offering_json(&state, o))
            .collect(),
    );
    Ok(Reply::List {
        key: "serviceoffering",
        count,
        items,
    })
}

/// The new domain or zone restriction given to `updateServiceOffering`: `None` to keep the
/// old one; `public` and `all` lift it.
fn new_restriction(call: &Call, name: &str, lift: &str) -> Result<Option<Vec<Uuid>>, ApiError> {
    match call.str(name) {
        None => Ok(None),
        Some(v) if v.trim().eq_ignore_ascii_case(lift) => Ok(Some(Vec::new())),
        Some(v) => uuid_list(name, v).map(Some),
    }
}

/// Tags to set: `None` keeps them, an empty value removes them.
fn new_tags(call: &Call, name: &str) -> Option<Option<CompactString>> {
    call.params
        .raw(name)
        .map(|v| Some(v.trim()).filter(|v| !v.is_empty()).map(Into::into))
}

async fn update_service_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let domains = new_restriction(call, "domainid", "public")?;
    let zones = new_restriction(call, "zoneid", "all")?;
    ctx.decide(CATALOG, |state| {
        let row = existing_service_offering(state, id)?;
        may_manage_offering(
            state,
            call,
            &row.facts.domain_ids,
            "update",
            "service offering",
            id,
        )?;
        let mut offering = row.facts.clone();
        if let Some(name) = call.str("name") {
            offering.name = name.trim().into();
        }
        if let Some(text) = call.str("displaytext") {
            offering.display_text = text.to_owned();
        }
        if let Some(tags) = new_tags(call, "hosttags") {
            offering.host_tags = tags;
        }
        if let Some(tags) = new_tags(call, "storagetags") {
            offering.storage_tags = tags;
        }
        if let Some(domains) = &domains {
            offering.domain_ids = restricted_domains(state, call, domains)?;
        }
        if let Some(zones) = &zones {
            offering.zone_ids = restricted_zones(state, zones)?;
        }
        if offering == row.facts {
            return Ok(Vec::new());
        }
        Ok(vec![call.event(EventBody::ServiceOffering(
            ServiceOfferingEvent::Edit(ServiceOfferingLifecycle { offering }),
        ))])
    })
    .await?;
    service_offering_reply(ctx, id)
}

async fn delete_service_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(CATALOG, |state| {
        let row = existing_service_offering(state, id)?;
        may_manage_offering(
            state,
            call,
            &row.facts.domain_ids,
            "delete",
            "service offering",
            id,
        )?;
        Ok(vec![call.event(EventBody::ServiceOffering(
            ServiceOfferingEvent::Delete(ServiceOfferingLifecycle {
                offering: row.facts.clone(),
            }),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

// ---------------------------------------------------------------------------------------------
// Disk offerings

/// The disk size in bytes, or `None` for a custom size chosen at volume creation.
fn disk_size(call: &Call) -> Result<Option<u64>, ApiError> {
    let size = match call.int("disksize")? {
        Some(gb) if gb <= 0 => {
            return Err(ApiError::invalid_param(
                "Please specify a disk size of at least 1 GB.",
            ));
        }
        Some(gb) => Some((gb as u64).checked_mul(GIB).ok_or_else(|| {
            ApiError::invalid_param(format!("The disk size of {gb} GB is too large"))
        })?),
        None => None,
    };
    Ok(if call.flag("customized") { None } else { size })
}

fn iops(call: &Call, name: &str) -> Result<Option<u64>, ApiError> {
    match call.int(name)? {
        Some(n) if n < 0 => Err(ApiError::invalid_param(format!(
            "The {name} value {n} must be a whole number of at least 0"
        ))),
        other => Ok(other.map(|n| n as u64)),
    }
}

async fn create_disk_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    let disk_size = disk_size(call)?;
    // Custom IOPS are chosen per volume, so the offering holds none.
    let (min_iops, max_iops) = if call.flag("customizediops") {
        (None, None)
    } else {
        (iops(call, "miniops")?, iops(call, "maxiops")?)
    };
    if let (Some(min), Some(max)) = (min_iops, max_iops)
        && min > max
    {
        return Err(ApiError::invalid_param(
            "The min IOPS must be less than or equal to the max IOPS.",
        ));
    }
    if let Some(p) = call.str("provisioningtype")
        && !["thin", "sparse", "fat"]
            .iter()
            .any(|t| p.eq_ignore_ascii_case(t))
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid provisioning type {p}: valid types are thin, sparse and fat"
        )));
    }
    let id = Uuid::new_v4();
    let template = DiskOfferingFacts {
        disk_offering_id: id,
        name: name.as_str().into(),
        display_text: call.str("displaytext").unwrap_or(&name).to_owned(),
        disk_size,
        is_customized: disk_size.is_none(),
        storage_type: storage_type(call)?,
        tags: optional_text(call, "tags"),
        min_iops,
        max_iops,
        domain_ids: Vec::new(),
        zone_ids: Vec::new(),
    };
    let domains = call
        .str("domainid")
        .map(|v| uuid_list("domainid", v))
        .transpose()?;
    let zones = call
        .str("zoneid")
        .map(|v| uuid_list("zoneid", v))
        .transpose()?;
    ctx.decide(CATALOG, |state| {
        let offering = DiskOfferingFacts {
            domain_ids: restricted_domains(state, call, domains.as_deref().unwrap_or_default())?,
            zone_ids: restricted_zones(state, zones.as_deref().unwrap_or_default())?,
            ..template.clone()
        };
        Ok(vec![call.event(EventBody::DiskOffering(
            DiskOfferingEvent::Create(DiskOfferingLifecycle { offering }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    let row = state.catalog.disk_offerings.get(&id).ok_or_else(|| {
        ApiError::internal(format!("disk offering {id} vanished after it was written"))
    })?;
    Ok(Reply::Object {
        key: "diskoffering",
        value: disk_offering_json(&state, row),
    })
}

async fn list_disk_offerings(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    if call.str("projectid").is_some() {
        return Ok(Reply::List {
            key: "diskoffering",
            count: 0,
            items: Vec::new(),
        });
    }
    let id = call.uuid("id")?;
    let name = call.str("name");
    let zone = zone_filter(&state, call)?;
    let domain = domain_filter(&state, call)?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&Created<DiskOfferingFacts>> = state
        .catalog
        .disk_offerings
        .values()
        .filter(|o| {
            let f = &o.facts;
            offering_visible(&state, call, &f.domain_ids)
                && id.is_none_or(|id| f.disk_offering_id == id)
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && zone.is_none_or(|z| f.zone_ids.is_empty() || f.zone_ids.contains(&z))
                && domain.is_none_or(|d| f.domain_ids.contains(&d))
                && keyword_matches(keyword, &[&f.name, &f.display_text])
        })
        .collect();
    rows.sort_by_key(|o| (o.created, o.facts.disk_offering_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|o| disk_offering_json(&state, o))
            .collect(),
    );
    Ok(Reply::List {
        key: "diskoffering",
        count,
        items,
    })
}

async fn delete_disk_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(CATALOG, |state| {
        let row = state.catalog.disk_offerings.get(&id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find disk offering by id {id}"))
        })?;
        may_manage_offering(
            state,
            call,
            &row.facts.domain_ids,
            "delete",
            "disk offering",
            id,
        )?;
        Ok(vec![call.event(EventBody::DiskOffering(
            DiskOfferingEvent::Delete(DiskOfferingLifecycle {
                offering: row.facts.clone(),
            }),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

#[cfg(test)]
mod tests {
    use engine::time::Timestamp;

    use super::*;

    fn zone() -> Created<ZoneFacts> {
        Created {
            facts: ZoneFacts {
                zone_id: Uuid::nil(),
                name: "zone1".into(),
                description: None,
                network_type: "Advanced".into(),
                dns1: Some("8.8.8.8".parse().unwrap()),
                dns2: None,
                internal_dns1: Some("10.0.0.1".parse().unwrap()),
                internal_dns2: None,
                guest_cidr: Some("10.1.1.0/24".into()),
                network_domain: None,
                security_group_enabled: false,
                local_storage_enabled: true,
                allocation_state: "Enabled".into(),
            },
            created: Timestamp::from_millis(0),
        }
    }

    fn service_offering(cpu: Option<u32>, root_disk: Option<u64>) -> Created<ServiceOfferingFacts> {
        Created {
            facts: ServiceOfferingFacts {
                service_offering_id: Uuid::nil(),
                name: "small".into(),
                display_text: "Small".into(),
                cpu_number: cpu,
                cpu_speed: cpu.map(|_| 1000),
                memory: cpu.map(|_| 512),
                is_customized: cpu.is_none(),
                offer_ha: false,
                limit_cpu_use: false,
                dynamic_scaling_enabled: true,
                storage_type: "shared".into(),
                host_tags: None,
                storage_tags: None,
                root_disk_size: root_disk,
                domain_ids: Vec::new(),
                zone_ids: Vec::new(),
                system_vm_type: None,
            },
            created: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn zone_json_shows_addresses_as_strings() {
        let json = zone_json(&zone());
        assert_eq!(json["dns1"], "8.8.8.8");
        assert_eq!(json["internaldns1"], "10.0.0.1");
        assert_eq!(json["id"], Uuid::nil().to_string());
        assert_eq!(json["dhcpprovider"], "VirtualRouter");
        assert_eq!(json["tags"], json!([]));
        assert!(json["dns2"].is_null());
    }

    #[test]
    fn custom_service_offering_has_no_sizes() {
        let state = State::default();
        let json = service_offering_json(&state, &service_offering(None, None));
        assert_eq!(json["iscustomized"], true);
        assert!(json["cpunumber"].is_null() && json["memory"].is_null());
        assert!(json["domainid"].is_null() && json["zoneid"].is_null());
    }

    #[test]
    fn root_disk_size_is_shown_in_gigabytes() {
        let state = State::default();
        let json = service_offering_json(&state, &service_offering(Some(2), Some(20 * GIB)));
        assert_eq!(json["rootdisksize"], 20);
        assert_eq!(json["cpunumber"], 2);
        assert_eq!(json["memory"], 512);
    }

    #[test]
    fn custom_disk_offering_shows_zero_size() {
        let state = State::default();
        let row = Created {
            facts: DiskOfferingFacts {
                disk_offering_id: Uuid::nil(),
                name: "custom".into(),
                display_text: "Custom".into(),
                disk_size: None,
                is_customized: true,
                storage_type: "shared".into(),
                tags: None,
                min_iops: None,
                max_iops: None,
                domain_ids: Vec::new(),
                zone_ids: Vec::new(),
            },
            created: Timestamp::from_millis(0),
        };
        let json = disk_offering_json(&state, &row);
        assert_eq!(json["disksize"], 0);
        assert_eq!(json["provisioningtype"], "thin");
    }

    #[test]
    fn restrictions_are_comma_joined() {
        let pairs = vec![
            ("a".to_owned(), "x".to_owned()),
            ("b".to_owned(), "y".to_owned()),
        ];
        assert_eq!(joined(pairs), (Some("a,b".into()), Some("x,y".into())));
        assert_eq!(joined(Vec::new()), (None, None));
    }

    #[test]
    fn guest_cidr_must_be_private() {
        assert!(is_private_ipv4_cidr("10.1.1.0/24"));
        assert!(is_private_ipv4_cidr("172.16.0.0/12"));
        assert!(is_private_ipv4_cidr("192.168.10.0/24"));
        assert!(!is_private_ipv4_cidr("172.0.0.0/8"), "wider than 172.16/12");
        assert!(!is_private_ipv4_cidr("8.8.8.0/24"));
        assert!(!is_private_ipv4_cidr("10.0.0.0/33"));
        assert!(!is_private_ipv4_cidr("10.0.0.0"));
        assert!(!is_private_ipv4_cidr("0.0.0.0/0"));
    }

    #[test]
    fn network_domain_follows_cloudstack_rules() {
        assert!(is_valid_network_domain("cs1cloud.internal"));
        assert!(is_valid_network_domain("a-b.example"));
        assert!(
            !is_valid_network_domain("1abc.internal"),
            "starts with a digit"
        );
        assert!(
            !is_valid_network_domain("abc-.internal"),
            "ends with a hyphen"
        );
        assert!(!is_valid_network_domain("a..b"), "empty label");
        assert!(!is_valid_network_domain(&"a".repeat(64)), "label over 63");
    }

    #[test]
    fn id_lists_are_deduplicated_and_checked() {
        let id = Uuid::new_v4();
        let list = format!("{id}, {id}");
        assert_eq!(uuid_list("domainid", &list).unwrap(), vec![id]);
        assert_eq!(uuid_list("domainid", "nope").unwrap_err().code, 431);
    }
}
