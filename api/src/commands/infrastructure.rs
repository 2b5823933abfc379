//! Pods, clusters and simulator hosts, and the capacity they offer: `addHost`, `listHosts`,
//! `listClusters`, `listPods`, `updateHost`, `prepareHostForMaintenance`,
//! `cancelHostMaintenance`, `listCapacity`.
//!
//! Hosts are what placement chooses from, so every change to them is decided on the
//! allocation stream, which owns host capacity (DESIGN.md invariant 8): a host cannot enter
//! maintenance while a placement decided on an older state puts a VM on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use compact_str::CompactString;
use engine::event::infrastructure::{ClusterFacts, ClusterLifecycle, HostFacts, HostLifecycle};
use engine::event::{EventBody, HostEvent};
use futures::FutureExt;
use projections::State;
use projections::catalog::Created;
use projections::infrastructure::{HostCapacity, Infrastructure};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::ALLOCATION;
use crate::call::{Call, Paging, keyword_matches};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::JobMeta;
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::CLOUDSTACK_VERSION;
use crate::response::Reply;

/// Cores of a host `addHost` adds without `cpunumber`.
const DEFAULT_CPU_NUMBER: i64 = 8;
/// MHz per core without `cpuspeed`.
const DEFAULT_CPU_SPEED: i64 = 2000;
/// MiB without `memory`.
const DEFAULT_MEMORY: i64 = 16384;

const MIB: u64 = 1024 * 1024;

/// CloudStack declares these sizes as Java `Integer`s.
const JAVA_INT_MAX: i64 = i32::MAX as i64;

/// The host events CloudStack lists in `events` (what its state machine reacts to).
const HOST_EVENTS: &str = "AgentConnected; AgentDisconnected; HostDown; PingTimeout; Ping; ShutdownRequested; ManagementServerDown; Remove; StartAgentRebalance; HypervisorVersionChanged";

const HOST_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the host"),
    field("name", "string", "the name of the host"),
    field("state", "status", "the state of the host"),
    field("resourcestate", "string", "the resource state of the host"),
    field("type", "type", "the host type"),
    field("hypervisor", "string", "the host hypervisor"),
    field("ipaddress", "string", "the IP address of the host"),
    field("zoneid", "string", "the Zone ID of the host"),
    field("zonename", "string", "the Zone name of the host"),
    field("podid", "string", "the Pod ID of the host"),
    field("podname", "string", "the Pod name of the host"),
    field("clusterid", "string", "the cluster ID of the host"),
    field("clustername", "string", "the cluster name of the host"),
    field(
        "clustertype",
        "string",
        "the cluster type of the cluster that host belongs to",
    ),
    field("cpunumber", "integer", "the CPU number of the host"),
    field("cpuspeed", "long", "the CPU speed of the host"),
    field(
        "cpuallocated",
        "string",
        "the amount of the host's CPU currently allocated, as a percentage",
    ),
    field(
        "cpuallocatedvalue",
        "long",
        "the amount of the host's CPU currently allocated in MHz",
    ),
    field(
        "cpuused",
        "string",
        "the amount of the host's CPU currently used",
    ),
    field(
        "memorytotal",
        "long",
        "the memory total of the host, in bytes",
    ),
    field(
        "memoryallocated",
        "long",
        "the amount of the host's memory currently allocated, in bytes",
    ),
    field(
        "memoryallocatedpercentage",
        "string",
        "the amount of the host's memory currently allocated in percentage",
    ),
    field(
        "memoryused",
        "long",
        "the amount of the host's memory currently used, in bytes",
    ),
    field(
        "hosttags",
        "string",
        "comma-separated list of tags for the host",
    ),
    field("created", "date", "the date and time the host was created"),
    field("version", "string", "the host version"),
    field("events", "string", "events available for the host"),
    field(
        "islocalstorageactive",
        "boolean",
        "true if local storage is active, false otherwise",
    ),
];

const CLUSTER_FIELDS: &[ResponseField] = &[
    field("id", "string", "the cluster ID"),
    field("name", "string", "the cluster name"),
    field("zoneid", "string", "the Zone ID of the cluster"),
    field("zonename", "string", "the Zone name of the cluster"),
    field("podid", "string", "the Pod ID of the cluster"),
    field("podname", "string", "the Pod name of the cluster"),
    field(
        "hypervisortype",
        "string",
        "the hypervisor type of the cluster",
    ),
    field("clustertype", "string", "the type of the cluster"),
    field(
        "allocationstate",
        "string",
        "the allocation state of the cluster",
    ),
    field(
        "managedstate",
        "string",
        "whether this cluster is managed by cloudstack",
    ),
];

const POD_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the Pod"),
    field("name", "string", "the name of the Pod"),
    field("zoneid", "string", "the Zone ID of the Pod"),
    field("zonename", "string", "the Zone name of the Pod"),
    field("gateway", "string", "the gateway of the Pod"),
    field("netmask", "string", "the netmask of the Pod"),
    field("startip", "string", "the starting IP for the Pod"),
    field("endip", "string", "the ending IP for the Pod"),
    field(
        "allocationstate",
        "string",
        "the allocation state of the Pod",
    ),
];

const CAPACITY_FIELDS: &[ResponseField] = &[
    field(
        "type",
        "short",
        "the capacity type: 0 memory (bytes), 1 CPU (MHz)",
    ),
    field("name", "string", "the capacity name"),
    field("zoneid", "string", "the Zone ID"),
    field("zonename", "string", "the Zone name"),
    field("podid", "string", "the Pod ID"),
    field("podname", "string", "the Pod name"),
    field("clusterid", "string", "the Cluster ID"),
    field("clustername", "string", "the Cluster name"),
    field("capacityused", "long", "the capacity currently in use"),
    field(
        "capacityallocated",
        "long",
        "the capacity currently allocated",
    ),
    field("capacitytotal", "long", "the total capacity available"),
    field(
        "percentused",
        "string",
        "the percentage of capacity currently in use",
    ),
];

/// The infrastructure commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "addHost",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Adds a new host. Ledgerstack adds simulator hosts: their capacity is given by its cpunumber, cpuspeed and memory extensions.",
        params: &[
            required("zoneid", T::Uuid, "the Zone ID for the host"),
            required("podid", T::Uuid, "the Pod ID for the host"),
            param("clusterid", T::Uuid, "the cluster ID for the host"),
            param(
                "clustername",
                T::String,
                "the cluster name for the host (created in the pod when new)",
            ),
            required(
                "hypervisor",
                T::String,
                "hypervisor type of the host (Ledgerstack: Simulator)",
            ),
            required(
                "url",
                T::String,
                "the host URL, such as http://sim/c1/h1: the host is named after its last path segment, or its host part",
            ),
            param(
                "username",
                T::String,
                "the username for the host (accepted, not stored)",
            ),
            param(
                "password",
                T::String,
                "the password for the host (accepted, not stored)",
            ),
            param("hosttags", T::List, "list of tags to be added to the host"),
            param(
                "allocationstate",
                T::String,
                "Allocation state of this Host for allocation of new resources: Enabled (default) or Disabled",
            ),
            param(
                "cpunumber",
                T::Integer,
                "Ledgerstack extension: CPU cores of the simulated host (default 8)",
            ),
            param(
                "cpuspeed",
                T::Integer,
                "Ledgerstack extension: speed of each core in MHz (default 2000)",
            ),
            param(
                "memory",
                T::Long,
                "Ledgerstack extension: memory of the simulated host in MiB (default 16384)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: HOST_FIELDS,
        related: "listHosts",
        manual_clock_only: false,
        handler: handler!(add_host),
    },
    CommandSpec {
        name: "listHosts",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists hosts.",
        params: &[
            param("id", T::Uuid, "the id of the host"),
            param("name", T::String, "the name of the host"),
            param("zoneid", T::Uuid, "the Zone ID for the host"),
            param("podid", T::Uuid, "the Pod ID for the host"),
            param(
                "clusterid",
                T::Uuid,
                "lists hosts existing in particular cluster",
            ),
            param(
                "type",
                T::String,
                "the host type (Ledgerstack has Routing hosts only)",
            ),
            param(
                "state",
                T::String,
                "the state of the host (simulator hosts are always Up)",
            ),
            param(
                "resourcestate",
                T::String,
                "list hosts by resource state: Enabled, Disabled, Maintenance",
            ),
            param(
                "hypervisor",
                T::String,
                "hypervisor type of host: Simulator",
            ),
        ],
        inherits: Inherits::Paging,
        response: HOST_FIELDS,
        related: "addHost",
        manual_clock_only: false,
        handler: handler!(list_hosts),
    },
    CommandSpec {
        name: "listClusters",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists clusters.",
        params: &[
            param("id", T::Uuid, "lists clusters by the cluster ID"),
            param("name", T::String, "lists clusters by the cluster name"),
            param("zoneid", T::Uuid, "lists clusters by Zone ID"),
            param("podid", T::Uuid, "lists clusters by Pod ID"),
            param("hypervisor", T::String, "lists clusters by hypervisor type"),
            param("clustertype", T::String, "lists clusters by cluster type"),
            param(
                "allocationstate",
                T::String,
                "lists clusters by allocation state",
            ),
            param(
                "managedstate",
                T::String,
                "whether this cluster is managed by cloudstack (always Managed)",
            ),
        ],
        inherits: Inherits::Paging,
        response: CLUSTER_FIELDS,
        related: "addHost",
        manual_clock_only: false,
        handler: handler!(list_clusters),
    },
    CommandSpec {
        name: "listPods",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists all Pods.",
        params: &[
            param("id", T::Uuid, "list Pods by ID"),
            param("name", T::String, "list Pods by name"),
            param("zoneid", T::Uuid, "list Pods by Zone ID"),
            param(
                "allocationstate",
                T::String,
                "list pods by allocation state",
            ),
        ],
        inherits: Inherits::Paging,
        response: POD_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_pods),
    },
    CommandSpec {
        name: "updateHost",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Updates a host.",
        params: &[
            required("id", T::Uuid, "the ID of the host to update"),
            param(
                "name",
                T::String,
                "the new name of the host (unique in its zone)",
            ),
            param("hosttags", T::List, "list of tags to be added to the host"),
            param(
                "allocationstate",
                T::String,
                "Change resource state of host, valid values are [Enable, Disable]. Operation may failed if host in states not allowing Enable/Disable",
            ),
        ],
        inherits: Inherits::Nothing,
        response: HOST_FIELDS,
        related: "listHosts",
        manual_clock_only: false,
        handler: handler!(update_host),
    },
    CommandSpec {
        name: "prepareHostForMaintenance",
        kind: Kind::Async,
        roles: Roles::ADMIN,
        description: "Prepares a host for maintenance. CloudStack migrates the host's VMs away first; Ledgerstack refuses (536) while VMs run on the host: migrate or stop them first.",
        params: &[required("id", T::Uuid, "the host ID")],
        inherits: Inherits::Nothing,
        response: HOST_FIELDS,
        related: "cancelHostMaintenance",
        manual_clock_only: false,
        handler: handler!(prepare_host_for_maintenance),
    },
    CommandSpec {
        name: "cancelHostMaintenance",
        kind: Kind::Async,
        roles: Roles::ADMIN,
        description: "Cancels host maintenance: the host is Enabled again.",
        params: &[required("id", T::Uuid, "the host ID")],
        inherits: Inherits::Nothing,
        response: HOST_FIELDS,
        related: "prepareHostForMaintenance",
        manual_clock_only: false,
        handler: handler!(cancel_host_maintenance),
    },
    CommandSpec {
        name: "listCapacity",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists all the system wide capacities: memory (type 0, bytes) and CPU (type 1, MHz) of the enabled hosts, allocated to the VMs placed on them; per zone, or per pod or cluster when filtered by one.",
        params: &[
            param("zoneid", T::Uuid, "lists capacity by the Zone ID"),
            param(
                "podid",
                T::Uuid,
                "lists capacity by the Pod ID (one item per pod)",
            ),
            param(
                "clusterid",
                T::Uuid,
                "lists capacity by the Cluster ID (one item per cluster)",
            ),
            param(
                "type",
                T::Integer,
                "lists capacity by type: 0 memory, 1 CPU",
            ),
            param(
                "fetchlatest",
                T::Boolean,
                "recalculate capacities (always current in Ledgerstack)",
            ),
            param(
                "sortby",
                T::String,
                "Sort the results. Available values: Usage",
            ),
        ],
        inherits: Inherits::Paging,
        response: CAPACITY_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_capacity),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// `12.5`: CloudStack's `DecimalFormat("#.##")` of a share in percent (`0` without a total).
fn decimal_percent(used: u64, total: u64) -> String {
    if total == 0 {
        return "0".to_owned();
    }
    let value = used as f64 * 100.0 / total as f64;
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `12.5%`, as host allocations show.
fn percent(used: u64, total: u64) -> String {
    format!("{}%", decimal_percent(used, total))
}

fn zone_name(state: &State, id: Uuid) -> Option<CompactString> {
    state.catalog.zones.get(&id).map(|z| z.facts.name.clone())
}

fn pod_name(state: &State, id: Uuid) -> Option<CompactString> {
    state
        .infrastructure
        .pods
        .get(&id)
        .map(|p| p.facts.name.clone())
}

fn cluster_name(state: &State, id: Uuid) -> Option<CompactString> {
    state
        .infrastructure
        .clusters
        .get(&id)
        .map(|c| c.facts.name.clone())
}

/// A host as CloudStack shows it; `used` is what the VMs placed on it hold.
pub fn host_json(state: &State, row: &Created<HostFacts>, used: HostCapacity) -> Value {
    let h = &row.facts;
    let total = Infrastructure::total_capacity(h);
    json!({
        "id": h.host_id,
        "name": h.name,
        "state": "Up",
        "resourcestate": h.resource_state,
        "type": "Routing",
        "hypervisor": h.hypervisor,
        "ipaddress": h.ip_address,
        "zoneid": h.zone_id,
        "zonename": zone_name(state, h.zone_id),
        "podid": h.pod_id,
        "podname": pod_name(state, h.pod_id),
        "clusterid": h.cluster_id,
        "clustername": cluster_name(state, h.cluster_id),
        "clustertype": state.infrastructure.clusters.get(&h.cluster_id).map(|c| c.facts.cluster_type.clone()),
        "cpunumber": h.cpu_number,
        "cpuspeed": h.cpu_speed,
        "cpuallocated": percent(used.cpu_used_mhz, total.cpu_total_mhz),
        "cpuallocatedvalue": used.cpu_used_mhz,
        "cpuallocatedpercentage": percent(used.cpu_used_mhz, total.cpu_total_mhz),
        "cpuused": "0%",
        "memorytotal": total.memory_total_mib * MIB,
        "memoryallocated": used.memory_used_mib * MIB,
        "memoryallocatedbytes": used.memory_used_mib * MIB,
        "memoryallocatedpercentage": percent(used.memory_used_mib, total.memory_total_mib),
        "memoryused": used.memory_used_mib * MIB,
        "hosttags": h.host_tags,
        "created": date(row.created),
        "version": CLOUDSTACK_VERSION,
        "events": HOST_EVENTS,
        "islocalstorageactive": false,
        "hasenoughcapacity": total.cpu_total_mhz > used.cpu_used_mhz && total.memory_total_mib > used.memory_used_mib,
    })
}

fn cluster_json(state: &State, row: &Created<ClusterFacts>) -> Value {
    let c = &row.facts;
    json!({
        "id": c.cluster_id,
        "name": c.name,
        "zoneid": c.zone_id,
        "zonename": zone_name(state, c.zone_id),
        "podid": c.pod_id,
        "podname": pod_name(state, c.pod_id),
        "hypervisortype": c.hypervisor,
        "clustertype": c.cluster_type,
        "allocationstate": c.allocation_state,
        "managedstate": "Managed",
    })
}

fn host_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let row = existing_host(state, id)?;
    let used = state
        .compute
        .host_allocations()
        .get(&id)
        .copied()
        .unwrap_or_default();
    Ok(Reply::Object {
        key: "host",
        value: host_json(state, row, used),
    })
}

fn existing_host(state: &State, id: Uuid) -> Result<&Created<HostFacts>, ApiError> {
    state
        .infrastructure
        .hosts
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find host by id {id}")))
}

// ---------------------------------------------------------------------------------------------
// addHost

/// The host name and address an `addHost` URL gives: `http://sim/c1/h1` is host `h1`,
/// `http://10.0.0.5` is host `10.0.0.5` at that address. A URL without a scheme is read as
/// http, as CloudStack does.
fn host_from_url(url: &str) -> Result<(CompactString, Option<IpAddr>), ApiError> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest
        }
        Some((scheme, _)) => {
            return Err(ApiError::invalid_param(format!(
                "Unsupported scheme {scheme} in host url {url}: use http://"
            )));
        }
        None => url,
    };
    let mut parts = rest.split(['/', '?', '#']);
    let authority = parts.next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(ApiError::invalid_param(format!(
            "Invalid host url {url}: it names no host"
        )));
    }
    let segment = rest
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .last();
    let name = segment.unwrap_or(host);
    Ok((name.into(), host.parse().ok()))
}

/// A size parameter in `1..=i32::MAX`, or its default.
fn size_param(call: &Call, name: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    match call.int(name)? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid_param(format!(
            "Invalid {name} {n}: specify a value between 1 and {max}"
        ))),
    }
}

fn host_tags(call: &Call) -> Option<CompactString> {
    call.str("hosttags").map(|v| parse_list(v).join(",").into())
}

fn name_taken(state: &State, zone_id: Uuid, name: &str, except: Option<Uuid>) -> bool {
    state.infrastructure.hosts.values().any(|h| {
        h.facts.zone_id == zone_id
            && Some(h.facts.host_id) != except
            && h.facts.name.eq_ignore_ascii_case(name)
    })
}

async fn add_host(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let zone_id = call.required_uuid("zoneid")?;
    let pod_id = call.required_uuid("podid")?;
    let hypervisor = call.required("hypervisor")?.trim();
    if !hypervisor.eq_ignore_ascii_case("Simulator") {
        return Err(ApiError::invalid_param(format!(
            "Hypervisor type {hypervisor} is not supported by Ledgerstack: use Simulator"
        )));
    }
    let (name, ip_address) = host_from_url(call.required("url")?)?;
    let cpu_number = size_param(call, "cpunumber", DEFAULT_CPU_NUMBER, JAVA_INT_MAX)?;
    let cpu_speed = size_param(call, "cpuspeed", DEFAULT_CPU_SPEED, JAVA_INT_MAX)?;
    let memory = size_param(call, "memory", DEFAULT_MEMORY, i64::MAX / MIB as i64)?;
    let resource_state: CompactString = match call.str("allocationstate") {
        None => "Enabled".into(),
        Some(s) if s.eq_ignore_ascii_case("enabled") || s.eq_ignore_ascii_case("enable") => {
            "Enabled".into()
        }
        Some(s) if s.eq_ignore_ascii_case("disabled") || s.eq_ignore_ascii_case("disable") => {
            "Disabled".into()
        }
        Some(s) => {
            return Err(ApiError::invalid_param(format!(
                "Unable to resolve Allocation State '{s}' to a supported state"
            )));
        }
    };
    let cluster_param = call.uuid("clusterid")?;
    let cluster_name_param = call.str("clustername").map(str::trim);
    let host_id = Uuid::new_v4();
    let new_cluster_id = Uuid::new_v4();
    ctx.decide(ALLOCATION, |state| {
        if state.catalog.zones.get(&zone_id).is_none() {
            return Err(ApiError::invalid_param(format!(
                "Unable to find zone by id {zone_id}"
            )));
        }
        let pod =
            state.infrastructure.pods.get(&pod_id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find pod by id {pod_id}"))
            })?;
        if pod.facts.zone_id != zone_id {
            return Err(ApiError::invalid_param(format!(
                "Pod {pod_id} does not belong to zone {zone_id}"
            )));
        }
        let mut events = Vec::new();
        let cluster_id = match (cluster_param, cluster_name_param) {
            (Some(id), _) => {
                let cluster = state.infrastructure.clusters.get(&id).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find cluster by id {id}"))
                })?;
                if cluster.facts.pod_id != pod_id {
                    return Err(ApiError::invalid_param(format!(
                        "Cluster {id} does not belong to pod {pod_id}"
                    )));
                }
                id
            }
            (None, Some(name)) => {
                let existing =
                    state.infrastructure.clusters.values().find(|c| {
                        c.facts.pod_id == pod_id && c.facts.name.eq_ignore_ascii_case(name)
                    });
                match existing {
                    Some(c) => c.facts.cluster_id,
                    None => {
                        events.push(call.event(EventBody::Host(HostEvent::ClusterAdd(
                            ClusterLifecycle {
                                cluster: ClusterFacts {
                                    cluster_id: new_cluster_id,
                                    name: name.into(),
                                    zone_id,
                                    pod_id,
                                    hypervisor: "Simulator".into(),
                                    cluster_type: "CloudManaged".into(),
                                    allocation_state: "Enabled".into(),
                                },
                            },
                        ))));
                        new_cluster_id
                    }
                }
            }
            (None, None) => {
                return Err(ApiError::invalid_param(
                    "Unable to add the host: specify clusterid or clustername",
                ));
            }
        };
        if let Some(cluster) = state.infrastructure.clusters.get(&cluster_id)
            && !cluster.facts.hypervisor.eq_ignore_ascii_case("Simulator")
        {
            return Err(ApiError::invalid_param(format!(
                "Cluster {} has hypervisor {}, not Simulator",
                cluster.facts.name, cluster.facts.hypervisor
            )));
        }
        if name_taken(state, zone_id, &name, None) {
            return Err(ApiError::invalid_param(format!(
                "A host named {name} already exists in zone {zone_id}"
            )));
        }
        events.push(call.event(EventBody::Host(HostEvent::Add(HostLifecycle {
            host: HostFacts {
                host_id,
                name: name.clone(),
                zone_id,
                pod_id,
                cluster_id,
                hypervisor: "Simulator".into(),
                ip_address,
                // Bounded by size_param above.
                cpu_number: cpu_number as u32,
                cpu_speed: cpu_speed as u32,
                memory: memory as u64,
                resource_state: resource_state.clone(),
                host_tags: host_tags(call),
            },
        }))));
        Ok(events)
    })
    .await?;
    let state = ctx.models.read();
    let Reply::Object { value, .. } = host_reply(&state, host_id)? else {
        return Err(ApiError::internal("a host reply is an object"));
    };
    Ok(Reply::List {
        key: "host",
        count: 1,
        items: vec![value],
    })
}

// ---------------------------------------------------------------------------------------------
// Lists

/// The filters every infrastructure list has: `id`, `name`, `zoneid` and `keyword`.
struct ListFilter<'c> {
    id: Option<Uuid>,
    name: Option<&'c str>,
    zone: Option<Uuid>,
    keyword: Option<&'c str>,
}

impl<'c> ListFilter<'c> {
    fn from_call(call: &'c Call) -> Result<Self, ApiError> {
        Ok(ListFilter {
            id: call.uuid("id")?,
            name: call.str("name"),
            zone: call.uuid("zoneid")?,
            keyword: call.str("keyword"),
        })
    }

    /// Whether a row of this id, name and zone passes them.
    fn admits(&self, id: Uuid, name: &str, zone: Uuid) -> bool {
        self.id.is_none_or(|x| x == id)
            && self.name.is_none_or(|n| name.eq_ignore_ascii_case(n))
            && self.zone.is_none_or(|z| z == zone)
            && keyword_matches(self.keyword, &[name])
    }
}

/// A page of `items`, answered as a list of `key`.
fn page(paging: Paging, key: &'static str, items: Vec<Value>) -> Result<Reply, ApiError> {
    let (count, items) = paging.apply(items);
    Ok(Reply::List { key, count, items })
}

/// The `rows` that `keep` admits, oldest first (then by `id`), as a page of `key` items.
fn page_of<'s, F: 's>(
    paging: Paging,
    key: &'static str,
    rows: impl Iterator<Item = &'s Created<F>>,
    id: impl Fn(&F) -> Uuid,
    keep: impl Fn(&F) -> bool,
    json: impl Fn(&Created<F>) -> Value,
) -> Result<Reply, ApiError> {
    let mut rows: Vec<&Created<F>> = rows.filter(|r| keep(&r.facts)).collect();
    rows.sort_by_key(|r| (r.created, id(&r.facts)));
    page(paging, key, rows.into_iter().map(json).collect())
}

async fn list_hosts(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let common = ListFilter::from_call(call)?;
    let pod = call.uuid("podid")?;
    let cluster = call.uuid("clusterid")?;
    let host_type = call.str("type");
    let host_state = call.str("state");
    let resource_state = call.str("resourcestate");
    let hypervisor = call.str("hypervisor");
    // Ledgerstack's hosts are all Routing hosts and always Up.
    let type_matches = host_type.is_none_or(|t| t.eq_ignore_ascii_case("Routing"));
    let state_matches = host_state.is_none_or(|s| s.eq_ignore_ascii_case("Up"));
    let used = state.compute.host_allocations();
    page_of(
        paging,
        "host",
        state.infrastructure.hosts.values(),
        |f| f.host_id,
        |f| {
            type_matches
                && state_matches
                && common.admits(f.host_id, &f.name, f.zone_id)
                && pod.is_none_or(|p| f.pod_id == p)
                && cluster.is_none_or(|c| f.cluster_id == c)
                && resource_state.is_none_or(|r| f.resource_state.eq_ignore_ascii_case(r))
                && hypervisor.is_none_or(|x| f.hypervisor.eq_ignore_ascii_case(x))
        },
        |h| {
            let u = used.get(&h.facts.host_id).copied().unwrap_or_default();
            host_json(&state, h, u)
        },
    )
}

async fn list_clusters(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let common = ListFilter::from_call(call)?;
    let pod = call.uuid("podid")?;
    let hypervisor = call.str("hypervisor");
    let cluster_type = call.str("clustertype");
    let allocation = call.str("allocationstate");
    let managed = call
        .str("managedstate")
        .is_none_or(|m| m.eq_ignore_ascii_case("Managed"));
    page_of(
        paging,
        "cluster",
        state.infrastructure.clusters.values(),
        |f| f.cluster_id,
        |f| {
            managed
                && common.admits(f.cluster_id, &f.name, f.zone_id)
                && pod.is_none_or(|p| f.pod_id == p)
                && hypervisor.is_none_or(|h| f.hypervisor.eq_ignore_ascii_case(h))
                && cluster_type.is_none_or(|t| f.cluster_type.eq_ignore_ascii_case(t))
                && allocation.is_none_or(|a| f.allocation_state.eq_ignore_ascii_case(a))
        },
        |c| cluster_json(&state, c),
    )
}

async fn list_pods(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let common = ListFilter::from_call(call)?;
    let allocation = call.str("allocationstate");
    page_of(
        paging,
        "pod",
        state.infrastructure.pods.values(),
        |f| f.pod_id,
        |f| {
            common.admits(f.pod_id, &f.name, f.zone_id)
                && allocation.is_none_or(|a| f.allocation_state.eq_ignore_ascii_case(a))
        },
        |p| {
            let f = &p.facts;
            json!({
                "id": f.pod_id,
                "name": f.name,
                "zoneid": f.zone_id,
                "zonename": zone_name(&state, f.zone_id),
                "gateway": f.gateway,
                "netmask": f.netmask,
                "startip": f.start_ip,
                "endip": f.end_ip,
                "allocationstate": f.allocation_state,
            })
        },
    )
}

// ---------------------------------------------------------------------------------------------
// updateHost and maintenance

async fn update_host(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = call.str("name").map(str::trim);
    let tags = host_tags(call);
    let enable = match call.str("allocationstate") {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("enable") => Some(true),
        Some(s) if s.eq_ignore_ascii_case("disable") => Some(false),
        Some(s) => {
            return Err(ApiError::invalid_param(format!(
                "Invalid allocation state {s}: valid values are Enable and Disable"
            )));
        }
    };
    ctx.decide(ALLOCATION, |state| {
        let row = existing_host(state, id)?;
        let mut host = row.facts.clone();
        if let Some(enable) = enable {
            if !matches!(host.resource_state.as_str(), "Enabled" | "Disabled") {
                return Err(ApiError::invalid_param(format!(
                    "Host {} is in {}: cancel its maintenance before enabling or disabling it",
                    host.name, host.resource_state
                )));
            }
            host.resource_state = if enable { "Enabled" } else { "Disabled" }.into();
        }
        if let Some(name) = name {
            if name_taken(state, host.zone_id, name, Some(id)) {
                return Err(ApiError::invalid_param(format!(
                    "A host named {name} already exists in zone {}",
                    host.zone_id
                )));
            }
            host.name = name.into();
        }
        if let Some(tags) = &tags {
            host.host_tags = Some(tags.clone());
        }
        if host == row.facts {
            return Ok(vec![]);
        }
        Ok(vec![call.event(EventBody::Host(HostEvent::Update(
            HostLifecycle { host },
        )))])
    })
    .await?;
    host_reply(&ctx.models.read(), id)
}

/// The host after `prepareHostForMaintenance`, after the checks.
fn host_into_maintenance(state: &State, id: Uuid) -> Result<HostFacts, ApiError> {
    let row = existing_host(state, id)?;
    let host = &row.facts;
    if host.resource_state == "Maintenance" {
        return Err(ApiError::invalid_param(format!(
            "Host {} is already in Maintenance",
            host.name
        )));
    }
    let running = state.compute.vms.values().any(|vm| {
        vm.state.holds_host() && (vm.host_id == Some(id) || vm.migrating_from == Some(id))
    });
    if running {
        return Err(ApiError::in_use(format!(
            "Host {} has running VMs; migrate or stop them first",
            host.name
        )));
    }
    Ok(HostFacts {
        resource_state: "Maintenance".into(),
        ..host.clone()
    })
}

/// The host after `cancelHostMaintenance`, after the checks.
fn host_out_of_maintenance(state: &State, id: Uuid) -> Result<HostFacts, ApiError> {
    let row = existing_host(state, id)?;
    let host = &row.facts;
    if host.resource_state != "Maintenance" {
        return Err(ApiError::invalid_param(format!(
            "Cannot perform cancelMaintenance when resource state is {}, host {}",
            host.resource_state, host.name
        )));
    }
    Ok(HostFacts {
        resource_state: "Enabled".into(),
        ..host.clone()
    })
}

async fn prepare_host_for_maintenance(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    maintenance(ctx, call, true).await
}

async fn cancel_host_maintenance(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    maintenance(ctx, call, false).await
}

/// Both maintenance commands: checked at once (so a refusal needs no job), decided again by
/// the job on the newest state.
async fn maintenance(ctx: &Ctx, call: &Call, enter: bool) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let change = if enter {
        host_into_maintenance
    } else {
        host_out_of_maintenance
    };
    let name = change(&ctx.models.read(), id)?.name;
    let (event_type, description) = if enter {
        (
            "MAINT.PREPARE",
            format!("preparing host {name} for maintenance"),
        )
    } else {
        (
            "MAINT.CANCEL",
            format!("cancelling maintenance of host {name}"),
        )
    };
    let meta = JobMeta::on("Host", id, event_type, description);
    Ok(Reply::Async(meta.run(Box::new(move |job| {
        async move {
            job.ctx
                .decide(ALLOCATION, |state| {
                    let host = HostLifecycle {
                        host: change(state, id)?,
                    };
                    let body = if enter {
                        HostEvent::MaintenancePrepare(host)
                    } else {
                        HostEvent::MaintenanceCancel(host)
                    };
                    Ok(vec![job.event(EventBody::Host(body))])
                })
                .await?;
            host_reply(&job.ctx.models.read(), id)
        }
        .boxed()
    }))))
}

// ---------------------------------------------------------------------------------------------
// listCapacity

/// Capacity summed over a group of hosts.
#[derive(Default)]
struct Sums {
    cpu_total: u64,
    cpu_used: u64,
    memory_total: u64,
    memory_used: u64,
}

async fn list_capacity(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let zone = call.uuid("zoneid")?;
    let pod = call.uuid("podid")?;
    let cluster = call.uuid("clusterid")?;
    let wanted = call.int("type")?;
    let used = state.compute.host_allocations();
    // CloudStack groups by the finest level the filters name.
    let mut groups: BTreeMap<(Uuid, Option<Uuid>, Option<Uuid>), Sums> = BTreeMap::new();
    // Disabled hosts and hosts in maintenance offer no capacity (CloudStack disables their
    // capacity rows).
    for h in state.infrastructure.hosts.values() {
        let f = &h.facts;
        if f.resource_state != "Enabled"
            || zone.is_some_and(|z| f.zone_id != z)
            || pod.is_some_and(|p| f.pod_id != p)
            || cluster.is_some_and(|c| f.cluster_id != c)
        {
            continue;
        }
        let key = (
            f.zone_id,
            (pod.is_some() || cluster.is_some()).then_some(f.pod_id),
            cluster.is_some().then_some(f.cluster_id),
        );
        let total = Infrastructure::total_capacity(f);
        let u = used.get(&f.host_id).copied().unwrap_or_default();
        let sums = groups.entry(key).or_default();
        sums.cpu_total += total.cpu_total_mhz;
        sums.cpu_used += u.cpu_used_mhz;
        sums.memory_total += total.memory_total_mib * MIB;
        sums.memory_used += u.memory_used_mib * MIB;
    }
    let mut items = Vec::new();
    for ((zone_id, pod_id, cluster_id), sums) in groups {
        let capacities = [
            (0, "MEMORY", sums.memory_used, sums.memory_total),
            (1, "CPU", sums.cpu_used, sums.cpu_total),
        ];
        for (kind, name, used, total) in capacities {
            if wanted.is_some_and(|w| w != kind) {
                continue;
            }
            items.push(json!({
                "type": kind,
                "name": name,
                "zoneid": zone_id,
                "zonename": zone_name(&state, zone_id),
                "podid": pod_id,
                "podname": pod_id.and_then(|p| pod_name(&state, p)),
                "clusterid": cluster_id,
                "clustername": cluster_id.and_then(|c| cluster_name(&state, c)),
                "capacityused": used,
                "capacityallocated": used,
                "capacitytotal": total,
                "percentused": decimal_percent(used, total),
            }));
        }
    }
    page(paging, "capacity", items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_formatted_as_cloudstack_does() {
        assert_eq!(percent(0, 16000), "0%");
        assert_eq!(percent(2000, 16000), "12.5%");
        assert_eq!(percent(1, 3), "33.33%");
        assert_eq!(percent(5, 0), "0%");
        assert_eq!(percent(16000, 16000), "100%");
        assert_eq!(decimal_percent(1, 8), "12.5");
        assert_eq!(decimal_percent(0, 0), "0");
    }

    #[test]
    fn host_names_come_from_the_url() {
        let (name, ip) = host_from_url("http://sim/c1/h1").unwrap_or_default();
        assert_eq!((name.as_str(), ip), ("h1", None));
        let (name, ip) = host_from_url("http://10.0.0.5").unwrap_or_default();
        assert_eq!(name, "10.0.0.5");
        assert_eq!(ip, "10.0.0.5".parse().ok());
        let (name, _) = host_from_url("10.0.0.6:8250/").unwrap_or_default();
        assert_eq!(name, "10.0.0.6");
        assert!(host_from_url("ftp://sim/h").is_err());
        assert!(host_from_url("http:///h").is_err());
    }
}
