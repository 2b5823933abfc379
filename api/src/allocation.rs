//! Decisions that span resources: resource limits, host capacity (placement), guest network
//! address pools and unique names. All of them are decided on one stream, [`ALLOCATION`], and
//! appended with the version they were decided at (DESIGN.md invariant 8), so two concurrent
//! deploys can never both take the last slot of a limit, a host or a pool, on one node or many.
//!
//! Architecture Invariant: every event that *consumes* a limit, capacity, an address or a name
//! is appended to [`ALLOCATION`] through `Ctx::decide`. Events that only release (a driver's
//! failure, a stop confirmed) may go to other streams: a decision that has not seen a release
//! yet is merely conservative.

use std::net::{IpAddr, Ipv4Addr};

use engine::event::identity::{AccountType, LimitOwner};
use engine::event::network::NetworkFacts;
use projections::State;
use projections::compute::{VmState, limit_key};
use projections::infrastructure::Infrastructure;
use projections::storage::VolumeStateName;
use uuid::Uuid;

use crate::call::Call;
use crate::error::ApiError;

/// The stream that owns every cross-resource invariant of compute and storage.
pub const ALLOCATION: &str = "allocation";

/// CloudStack's resource types, with the numbers `listResourceLimits` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceType {
    /// User VMs (not destroyed).
    UserVm = 0,
    /// Public IP addresses.
    PublicIp = 1,
    /// Volumes.
    Volume = 2,
    /// Volume snapshots.
    Snapshot = 3,
    /// Templates the account owns.
    Template = 4,
    /// Guest networks.
    Network = 6,
    /// VPCs.
    Vpc = 7,
    /// vCPUs of its VMs.
    Cpu = 8,
    /// Memory of its VMs, MiB.
    Memory = 9,
    /// Volume sizes, GiB.
    PrimaryStorage = 10,
    /// Snapshot and template sizes, GiB.
    SecondaryStorage = 11,
}

impl ResourceType {
    /// Every type, in number order.
    pub const ALL: [ResourceType; 11] = [
        ResourceType::UserVm,
        ResourceType::PublicIp,
        ResourceType::Volume,
        ResourceType::Snapshot,
        ResourceType::Template,
        ResourceType::Network,
        ResourceType::Vpc,
        ResourceType::Cpu,
        ResourceType::Memory,
        ResourceType::PrimaryStorage,
        ResourceType::SecondaryStorage,
    ];

    /// The type with this number.
    pub fn from_number(n: i64) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| *t as i64 == n)
    }

    /// The type with this name (`user_vm`, `cpu`, ...) or number.
    pub fn parse(text: &str) -> Option<ResourceType> {
        if let Ok(n) = text.parse::<i64>() {
            return ResourceType::from_number(n);
        }
        ResourceType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text))
    }

    /// CloudStack's name (`resourcetypename`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::UserVm => "user_vm",
            ResourceType::PublicIp => "public_ip",
            ResourceType::Volume => "volume",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Template => "template",
            ResourceType::Network => "network",
            ResourceType::Vpc => "vpc",
            ResourceType::Cpu => "cpu",
            ResourceType::Memory => "memory",
            ResourceType::PrimaryStorage => "primary_storage",
            ResourceType::SecondaryStorage => "secondary_storage",
        }
    }

    /// The setting holding the default limit of an account.
    pub fn setting(self) -> &'static str {
        match self {
            ResourceType::UserVm => "max.account.user.vms",
            ResourceType::PublicIp => "max.account.public.ips",
            ResourceType::Volume => "max.account.volumes",
            ResourceType::Snapshot => "max.account.snapshots",
            ResourceType::Template => "max.account.templates",
            ResourceType::Network => "max.account.networks",
            ResourceType::Vpc => "max.account.vpcs",
            ResourceType::Cpu => "max.account.cpus",
            ResourceType::Memory => "max.account.memory",
            ResourceType::PrimaryStorage => "max.account.primary.storage",
            ResourceType::SecondaryStorage => "max.account.secondary.storage",
        }
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// How much of a resource type an account holds now, derived from the read models.
pub fn count(state: &State, account_id: Uuid, resource: ResourceType) -> i64 {
    let vms = || state.compute.counted_vms(account_id);
    let volumes = || {
        state
            .storage
            .volumes
            .values()
            .filter(move |v| v.facts.account_id == account_id)
    };
    let snapshots = || {
        state
            .storage
            .snapshots
            .values()
            .filter(move |s| s.facts.account_id == account_id)
    };
    let templates = || {
        state
            .storage
            .templates
            .values()
            .filter(move |t| t.facts.account_id == account_id)
    };
    let isos = || {
        state
            .storage
            .isos
            .values()
            .filter(move |i| i.facts.account_id == account_id)
    };
    let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
    let gib = |bytes: u64| i64::try_from(bytes.div_ceil(GIB)).unwrap_or(i64::MAX);
    match resource {
        ResourceType::UserVm => n(vms().count()),
        ResourceType::Cpu => vms().map(|v| i64::from(v.facts.cpu_number)).sum(),
        ResourceType::Memory => vms()
            .map(|v| i64::try_from(v.facts.memory).unwrap_or(i64::MAX))
            .sum(),
        ResourceType::Volume => n(volumes().count()),
        ResourceType::PrimaryStorage => gib(volumes()
            .filter(|v| v.state != VolumeStateName::Uploaded)
            .map(|v| v.facts.size)
            .sum()),
        ResourceType::Snapshot => n(snapshots().count()),
        // CloudStack counts ISOs as templates.
        ResourceType::Template => n(templates().count() + isos().count()),
        ResourceType::SecondaryStorage => gib(snapshots().map(|s| s.facts.size).sum::<u64>()
            + templates()
                .map(|t| t.facts.size * t.zones.len().max(1) as u64)
                .sum::<u64>()
            + isos()
                .map(|i| i.facts.size * i.zones.len().max(1) as u64)
                .sum::<u64>()
            + volumes()
                .filter(|v| v.state == VolumeStateName::Uploaded)
                .map(|v| v.facts.size)
                .sum::<u64>()),
        ResourceType::Network => n(state
            .compute
            .networks
            .values()
            .filter(|n| n.facts.account_id == account_id)
            .count()),
        ResourceType::PublicIp => n(state
            .network
            .public_ips
            .values()
            .filter(|ip| ip.facts.account_id == account_id && !ip.facts.is_system)
            .count()),
        ResourceType::Vpc => n(state
            .network
            .vpcs
            .values()
            .filter(|v| v.facts.account_id == account_id)
            .count()),
    }
}

/// The account's limit for a type (-1: unlimited): its own, else the default setting.
pub fn account_limit(state: &State, account_id: Uuid, resource: ResourceType) -> i64 {
    state
        .compute
        .limits
        .get(&limit_key(LimitOwner::Account, account_id, resource as u8))
        .copied()
        .unwrap_or_else(|| state.configuration.global_i64(resource.setting()))
}

/// The domain's limit for a type (-1: unlimited; unset means unlimited, as in CloudStack).
pub fn domain_limit(state: &State, domain_id: Uuid, resource: ResourceType) -> i64 {
    state
        .compute
        .limits
        .get(&limit_key(LimitOwner::Domain, domain_id, resource as u8))
        .copied()
        .unwrap_or(-1)
}

/// Refuses (532) when `account_id` taking `more` of a resource would exceed its limit or its
/// domain's. Root admin accounts have no limits, as in CloudStack.
pub fn check_limit(
    state: &State,
    account_id: Uuid,
    resource: ResourceType,
    more: i64,
) -> Result<(), ApiError> {
    if more <= 0 {
        return Ok(());
    }
    let Some(account) = state.identity.accounts.get(&account_id) else {
        return Err(ApiError::invalid_param(format!(
            "Unable to find account {account_id}"
        )));
    };
    if account.facts.account_type == AccountType::RootAdmin {
        return Ok(());
    }
    let held = count(state, account_id, resource);
    let limit = account_limit(state, account_id, resource);
    if limit >= 0 && held + more > limit {
        return Err(ApiError::limit_exceeded(format!(
            "Maximum number of resources of type '{}' for account name={} in domain id={} has been exceeded.",
            resource.name(),
            account.facts.name,
            account.facts.domain_id
        )));
    }
    let domain_id = account.facts.domain_id;
    let domain_limit = domain_limit(state, domain_id, resource);
    if domain_limit >= 0 {
        let domain_held: i64 = state
            .identity
            .accounts
            .values()
            .filter(|a| state.identity.is_in_subtree(a.facts.domain_id, domain_id))
            .map(|a| count(state, a.facts.account_id, resource))
            .sum();
        if domain_held + more > domain_limit {
            return Err(ApiError::limit_exceeded(format!(
                "Maximum number of resources of type '{}' for domain id={domain_id} has been exceeded.",
                resource.name()
            )));
        }
    }
    Ok(())
}

/// Whole GiB a size in bytes counts for against `primary_storage` / `secondary_storage`.
pub fn gib(bytes: u64) -> i64 {
    i64::try_from(bytes.div_ceil(GIB)).unwrap_or(i64::MAX)
}

/// The account a command acts for: the caller's, or (for admins) the one named by `account`
/// + `domainid`.
pub fn owner(call: &Call, state: &State) -> Result<(Uuid, Uuid), ApiError> {
    let Some(name) = call.str("account") else {
        if call.str("domainid").is_some() && call.caller.role != crate::registry::Role::User {
            return Err(ApiError::invalid_param(
                "account must be given with domainid",
            ));
        }
        return Ok((call.caller.account_id, call.caller.domain_id));
    };
    let domain = call.uuid("domainid")?.unwrap_or(call.caller.domain_id);
    let account = state
        .identity
        .account_by_name(domain, name)
        .ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find account {name} in domain {domain}"))
        })?;
    if !call
        .caller
        .may_access(state, account.facts.account_id, domain)
    {
        return Err(ApiError::permission_denied(format!(
            "Account {name} is not accessible by the caller"
        )));
    }
    Ok((account.facts.account_id, domain))
}

/// A replaceable placement policy: which host of a zone runs a VM of this size.
pub trait Placement: Send + Sync {
    /// The chosen host, or `None` when none fits.
    fn choose(&self, state: &State, zone_id: Uuid, cpu_mhz: u64, memory_mib: u64) -> Option<Uuid>;
}

/// First fit: the first enabled host of the zone, in id order, with room.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstFit;

impl Placement for FirstFit {
    fn choose(&self, state: &State, zone_id: Uuid, cpu_mhz: u64, memory_mib: u64) -> Option<Uuid> {
        let used = state.compute.host_allocations();
        state
            .infrastructure
            .hosts
            .values()
            .filter(|h| h.facts.zone_id == zone_id && h.facts.resource_state == "Enabled")
            .find(|h| {
                let mut capacity = Infrastructure::total_capacity(&h.facts);
                if let Some(u) = used.get(&h.facts.host_id) {
                    capacity.cpu_used_mhz = u.cpu_used_mhz;
                    capacity.memory_used_mib = u.memory_used_mib;
                }
                capacity.fits(cpu_mhz, memory_mib)
            })
            .map(|h| h.facts.host_id)
    }
}

/// A host for a VM of this size in the zone, or 533.
pub fn place(
    state: &State,
    zone_id: Uuid,
    cpu_mhz: u64,
    memory_mib: u64,
) -> Result<Uuid, ApiError> {
    FirstFit
        .choose(state, zone_id, cpu_mhz, memory_mib)
        .ok_or_else(|| {
            ApiError::insufficient_capacity(format!(
                "Unable to create a deployment for VM: no host in zone {zone_id} has {cpu_mhz} MHz of CPU and {memory_mib} MiB of memory free"
            ))
        })
}

/// The lowest free address of a network's CIDR (not its network, gateway or broadcast
/// address), or 533 when the pool is exhausted.
pub fn allocate_address(state: &State, network: &NetworkFacts) -> Result<IpAddr, ApiError> {
    let cidr = network.cidr.as_deref().ok_or_else(|| {
        ApiError::invalid_param(format!("network {} has no CIDR", network.network_id))
    })?;
    let (base, prefix) = parse_cidr(cidr).ok_or_else(|| {
        ApiError::internal(format!(
            "network {} has a bad CIDR {cidr}",
            network.network_id
        ))
    })?;
    let used: std::collections::BTreeSet<IpAddr> = state
        .compute
        .nics
        .values()
        .filter(|n| n.facts.network_id == network.network_id)
        .filter_map(|n| n.facts.ip_address)
        .chain(network.gateway)
        .collect();
    let size = 1u64 << (32 - prefix);
    (1..size.saturating_sub(1))
        .map(|offset| IpAddr::V4(Ipv4Addr::from(base + offset as u32)))
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            ApiError::insufficient_capacity(format!(
                "Insufficient address capacity: network {} ({cidr}) has no free address",
                network.name
            ))
        })
}

/// `10.1.1.0/24` → (network address as u32, prefix length); only IPv4 prefixes 8..=30.
pub fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if !(8..=30).contains(&prefix) {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    Some((u32::from(addr) & mask, prefix))
}

/// Whether a VM name is taken among the account's VMs that still exist (CloudStack keeps
/// host names unique per account network; Ledgerstack per account).
pub fn vm_name_taken(state: &State, account_id: Uuid, name: &str) -> bool {
    state.compute.vms.values().any(|v| {
        v.facts.account_id == account_id
            && v.state != VmState::Destroyed
            && v.facts.name.eq_ignore_ascii_case(name)
    })
}
