//! Implementing a guest network or a VPC: the public IP pool, the source-NAT address and the
//! virtual router that serves it.
//!
//! Architecture Invariant: public addresses are taken only inside decisions on the
//! [`ALLOCATION`](crate::allocation::ALLOCATION) stream, which owns every zone's public IP pool
//! (DESIGN.md invariant 8): two concurrent acquisitions can never get the same address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use engine::event::network::IpAddressFacts;
use engine::event::vm::{RouterFacts, RouterLifecycle};
use engine::event::{EventBody, EventState, NetEvent, NewEvent, RouterEvent};
use projections::State;
use uuid::Uuid;

use crate::allocation::{ResourceType, check_limit};
use crate::call::Call;
use crate::error::ApiError;

/// The system offering routers run with ("System Offering For Software Router"): fixed, so
/// every router of every log names the same one.
pub const ROUTER_OFFERING: Uuid = Uuid::from_u128(0x6c656467_6572_524f_8000_000000000001);

/// What a router is for: one isolated network, or one VPC (all its tiers).
#[derive(Debug, Clone, Copy)]
pub struct RouterTarget {
    /// The isolated network it serves.
    pub network_id: Option<Uuid>,
    /// The VPC it serves.
    pub vpc_id: Option<Uuid>,
    /// The owner.
    pub account_id: Uuid,
    /// The owner's domain.
    pub domain_id: Uuid,
    /// The zone.
    pub zone_id: Uuid,
    /// The router's address on the guest network (the network's gateway).
    pub guest_ip: Option<IpAddr>,
}

/// The lowest free public address of the zone's ranges for virtual networks (ranges dedicated
/// to another account are skipped), not in `also_taken` (addresses this same decision already
/// took); 533 when every range is full or the zone has none.
pub fn allocate_public_ip(
    state: &State,
    zone_id: Uuid,
    account_id: Uuid,
    also_taken: &BTreeSet<IpAddr>,
) -> Result<(IpAddr, Uuid), ApiError> {
    let used: BTreeSet<IpAddr> = state
        .network
        .public_ips
        .values()
        .map(|ip| ip.facts.address)
        .chain(also_taken.iter().copied())
        .collect();
    let mut ranges: Vec<_> = state
        .network
        .vlan_ranges
        .values()
        .map(|r| &r.facts)
        .filter(|r| r.zone_id == zone_id && r.for_virtual_network && r.network_id.is_none())
        .filter(|r| r.account_id.is_none_or(|a| a == account_id))
        .collect();
    // Ranges dedicated to the account first, as CloudStack does; then by address.
    ranges.sort_by_key(|r| (r.account_id.is_none(), ipv4(r.start_ip)));
    if ranges.is_empty() {
        return Err(ApiError::insufficient_capacity(format!(
            "Insufficient address capacity: zone {zone_id} has no public IP range; an administrator adds one with createVlanIpRange"
        )));
    }
    for range in ranges {
        let (Some(start), Some(end)) = (ipv4(range.start_ip), ipv4(range.end_ip)) else {
            continue;
        };
        let free = (start..=end)
            .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
            .find(|ip| !used.contains(ip) && *ip != range.gateway);
        if let Some(ip) = free {
            return Ok((ip, range.vlan_range_id));
        }
    }
    Err(ApiError::insufficient_capacity(format!(
        "Insufficient address capacity: every public IP of zone {zone_id} is in use"
    )))
}

fn ipv4(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(_) => None,
    }
}

/// The events that implement a network or VPC: its source-NAT address (a fact, checked
/// against the account's public IP limit), its router (created, a fact) and the router's start
/// (a request the orchestrator carries out, not tied to any job). Must be decided on the
/// allocation stream. Returns the events in log order and the router's facts.
pub fn router_events(
    state: &State,
    call: &Call,
    target: RouterTarget,
    also_taken: &BTreeSet<IpAddr>,
) -> Result<(Vec<NewEvent>, RouterFacts), ApiError> {
    check_limit(state, target.account_id, ResourceType::PublicIp, 1)?;
    let (address, vlan_range_id) =
        allocate_public_ip(state, target.zone_id, target.account_id, also_taken)?;
    let source_nat = IpAddressFacts {
        ip_id: Uuid::new_v4(),
        address,
        account_id: target.account_id,
        domain_id: target.domain_id,
        zone_id: target.zone_id,
        vlan_range_id: Some(vlan_range_id),
        network_id: target.network_id,
        vpc_id: target.vpc_id,
        is_source_nat: true,
        is_system: false,
    };
    let router_id = Uuid::new_v4();
    let host_id = state
        .infrastructure
        .hosts
        .values()
        .find(|h| h.facts.zone_id == target.zone_id && h.facts.resource_state == "Enabled")
        .map(|h| h.facts.host_id);
    let router = RouterFacts {
        router_id,
        name: format!("r-{}-VM", &router_id.simple().to_string()[..8]).into(),
        account_id: target.account_id,
        domain_id: target.domain_id,
        zone_id: target.zone_id,
        network_id: target.network_id,
        vpc_id: target.vpc_id,
        host_id,
        service_offering_id: ROUTER_OFFERING,
        template_id: None,
        public_ip: Some(address),
        guest_ip: target.guest_ip,
    };
    let lifecycle = || RouterLifecycle {
        router: router.clone(),
    };
    let events = vec![
        call.event(EventBody::Net(NetEvent::IpAssign(source_nat))),
        call.event(EventBody::Router(RouterEvent::Create(lifecycle()))),
        router_request(call, EventBody::Router(RouterEvent::Start(lifecycle()))),
    ];
    Ok((events, router))
}

/// A driver request that no job waits for (a sync command's, or a side effect of another
/// command): in state `Started`, by the caller, and *not* correlated with the HTTP request,
/// because the orchestrator holds a correlated request back until its job has started.
pub fn router_request(call: &Call, body: EventBody) -> NewEvent {
    NewEvent::new(body)
        .by(call.actor())
        .state(EventState::Started)
}
