//! Capacity alerts as CloudStack's `AlertManagerImpl` raises them: when what is allocated of a
//! resource crosses its `*.capacity.notificationthreshold` fraction of the total.
//!
//! | type | name                     | measured per | allocated / total                           | setting |
//! |------|--------------------------|--------------|---------------------------------------------|---------|
//! | 0    | `ALERT.MEMORY`           | cluster      | running VMs' offerings / enabled hosts' MiB  | `cluster.memory.allocated.capacity.notificationthreshold` |
//! | 1    | `ALERT.CPU`              | cluster      | running VMs' offerings / enabled hosts' MHz  | `cluster.cpu.allocated.capacity.notificationthreshold` |
//! | 4    | `ALERT.NETWORK.PUBLICIP` | zone         | held public IPs / addresses in the zone's virtual-network ranges | `zone.virtualnetwork.publicip.capacity.notificationthreshold` |
//!
//! Allocation is read from the read models exactly as `listCapacity` and placement see it
//! (`Compute::host_allocations`: a VM holds its host from the start request until it is
//! stopped; hosts disabled or in maintenance offer nothing), and public IPs from the network
//! model (an address is held from its association request until its release completes).
//! Storage (types 2 and 3) is not measured: Ledgerstack has no primary storage pools, so there
//! is no total to compare volumes with.
//!
//! An alert is raised when `allocated / total > threshold` (CloudStack compares strictly) and
//! no alert of its type is open for the scope; it is resolved when the fraction is back at or
//! under the threshold (or the scope no longer has any capacity). Each raise's id derives from
//! the scope's entity (the cluster, the zone) and the ordinal of the crossing (how many alerts
//! of that type and scope the log holds before it), so two looks, a restart, a second node or a
//! rebuild that see the same log append the same id: nothing is raised twice.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use engine::event::NewEvent;
use engine::event::infrastructure::ConfigScope;
use projections::State;
use projections::infrastructure::Infrastructure;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{AlertScope, AlertType, AlertsModel, raise_event, resolve_event};

/// The setting of memory allocation per cluster (CloudStack's name and default 0.75).
pub const MEMORY_SETTING: &str = "cluster.memory.allocated.capacity.notificationthreshold";
/// The setting of CPU allocation per cluster.
pub const CPU_SETTING: &str = "cluster.cpu.allocated.capacity.notificationthreshold";
/// The setting of public IP allocation per zone.
pub const PUBLIC_IP_SETTING: &str = "zone.virtualnetwork.publicip.capacity.notificationthreshold";

/// The default of every threshold, used when a stored value cannot be read as a decimal.
const DEFAULT_THRESHOLD: Decimal = Decimal::from_parts(75, 0, 0, false, 2);

/// A resource whose allocation is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// Memory of a cluster's hosts, MiB.
    Memory,
    /// CPU of a cluster's hosts, MHz.
    Cpu,
    /// Public IP addresses of a zone's virtual-network ranges.
    PublicIp,
}

impl Resource {
    /// Every resource watched, in the order looks go through them.
    pub const ALL: [Resource; 3] = [Resource::Memory, Resource::Cpu, Resource::PublicIp];

    /// The alert type raised for it.
    pub fn alert_type(self) -> AlertType {
        match self {
            Resource::Memory => AlertType::MEMORY,
            Resource::Cpu => AlertType::CPU,
            Resource::PublicIp => AlertType::PUBLIC_IP,
        }
    }

    /// The threshold setting.
    pub fn setting(self) -> &'static str {
        match self {
            Resource::Memory => MEMORY_SETTING,
            Resource::Cpu => CPU_SETTING,
            Resource::PublicIp => PUBLIC_IP_SETTING,
        }
    }

    /// The scope level CloudStack sets (and measures) it at.
    fn config_scope(self) -> ConfigScope {
        match self {
            Resource::Memory | Resource::Cpu => ConfigScope::Cluster,
            Resource::PublicIp => ConfigScope::Zone,
        }
    }

    /// The unit amounts are shown in.
    fn unit(self) -> &'static str {
        match self {
            Resource::Memory => " MiB",
            Resource::Cpu => " MHz",
            Resource::PublicIp => " addresses",
        }
    }

    /// A scope of this resource's shape (the scopes its alerts are raised for): a cluster (with
    /// its pod and zone) for memory and CPU, a zone for public IPs; never an account.
    fn owns(self, scope: &AlertScope) -> bool {
        let cluster_shaped = scope.cluster_id.is_some();
        scope.account_id.is_none()
            && scope.zone_id.is_some()
            && match self {
                Resource::Memory | Resource::Cpu => cluster_shaped,
                Resource::PublicIp => !cluster_shaped && scope.pod_id.is_none(),
            }
    }
}

/// What is allocated of a resource in one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    /// The resource.
    pub resource: Resource,
    /// The cluster (with pod and zone) or the zone.
    pub scope: AlertScope,
    /// Allocated, in the resource's unit.
    pub allocated: u64,
    /// Total, in the resource's unit (zero: nothing to allocate from).
    pub total: u64,
}

impl Measure {
    /// The entity the scope names most finely: the cause alert ids derive from.
    fn entity(&self) -> Uuid {
        self.scope
            .cluster_id
            .or(self.scope.zone_id)
            .unwrap_or_default()
    }
}

/// Whether `allocated / total` is above `threshold`, in exact decimals: `allocated >
/// threshold × total`. Nothing is over when there is no total.
pub fn over(allocated: u64, total: u64, threshold: Decimal) -> bool {
    total > 0 && Decimal::from(allocated) > threshold * Decimal::from(total)
}

/// The threshold in force for `resource` in `scope`: the value set for the scope's cluster or
/// zone (as CloudStack scopes the setting), else the global value, else the default. A stored
/// value is read as a decimal (`updateConfiguration` accepts `1e-2` too).
pub fn threshold(state: &State, resource: Resource, scope: &AlertScope) -> Decimal {
    let config = &state.configuration;
    let name = resource.setting();
    let scope_id = match resource.config_scope() {
        ConfigScope::Cluster => scope.cluster_id,
        _ => scope.zone_id,
    };
    let text = config
        .value_at(name, resource.config_scope(), scope_id)
        .map(str::to_owned)
        .or_else(|| config.global(name));
    text.and_then(|t| {
        let t = t.trim();
        Decimal::from_str(t)
            .or_else(|_| Decimal::from_scientific(t))
            .ok()
    })
    .unwrap_or(DEFAULT_THRESHOLD)
}

/// Number of addresses from `start` to `end` inclusive (zero when they are of different
/// families or reversed; IPv6 ranges beyond `u64` count as `u64::MAX`).
fn addresses(start: IpAddr, end: IpAddr) -> u64 {
    let span = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => u128::from(u32::from(e)).checked_sub(u32::from(s).into()),
        (IpAddr::V6(s), IpAddr::V6(e)) => u128::from(e).checked_sub(u128::from(s)),
        _ => None,
    };
    span.map_or(0, |n| {
        u64::try_from(n.saturating_add(1)).unwrap_or(u64::MAX)
    })
}

/// Memory and CPU allocation of every cluster with hosts, and public IP allocation of every
/// zone with virtual-network ranges, in scope order.
pub fn measure(state: &State) -> Vec<Measure> {
    let used = state.compute.host_allocations();
    let mut clusters: BTreeMap<(Uuid, Uuid, Uuid), [(u64, u64); 2]> = BTreeMap::new();
    for host in state.infrastructure.hosts.values() {
        let f = &host.facts;
        let sums = clusters
            .entry((f.zone_id, f.pod_id, f.cluster_id))
            .or_default();
        // Disabled hosts and hosts in maintenance offer no capacity, as in `listCapacity`.
        if f.resource_state != "Enabled" {
            continue;
        }
        let total = Infrastructure::total_capacity(f);
        let u = used.get(&f.host_id).copied().unwrap_or_default();
        sums[0].0 += u.memory_used_mib;
        sums[0].1 += total.memory_total_mib;
        sums[1].0 += u.cpu_used_mhz;
        sums[1].1 += total.cpu_total_mhz;
    }
    let mut measures = Vec::new();
    for ((zone_id, pod_id, cluster_id), sums) in clusters {
        let scope = AlertScope {
            zone_id: Some(zone_id),
            pod_id: Some(pod_id),
            cluster_id: Some(cluster_id),
            account_id: None,
        };
        for (resource, (allocated, total)) in
            [Resource::Memory, Resource::Cpu].into_iter().zip(sums)
        {
            measures.push(Measure {
                resource,
                scope,
                allocated,
                total,
            });
        }
    }
    let network = &state.network;
    let mut zones: BTreeMap<Uuid, (u64, u64)> = BTreeMap::new();
    let mut range_zone: BTreeMap<Uuid, Uuid> = BTreeMap::new();
    for range in network.vlan_ranges.values() {
        let f = &range.facts;
        if !f.for_virtual_network {
            continue;
        }
        range_zone.insert(f.vlan_range_id, f.zone_id);
        let sums = zones.entry(f.zone_id).or_default();
        sums.1 = sums.1.saturating_add(addresses(f.start_ip, f.end_ip));
    }
    for ip in network.public_ips.values() {
        if let Some(zone) = ip.facts.vlan_range_id.and_then(|r| range_zone.get(&r))
            && let Some(sums) = zones.get_mut(zone)
        {
            sums.0 += 1;
        }
    }
    for (zone_id, (allocated, total)) in zones {
        measures.push(Measure {
            resource: Resource::PublicIp,
            scope: AlertScope {
                zone_id: Some(zone_id),
                ..AlertScope::default()
            },
            allocated,
            total,
        });
    }
    measures
}

/// The alert kind (for the derived id) of the `ordinal`-th crossing of `resource`.
fn kind(resource: Resource, ordinal: usize) -> String {
    format!("alert.capacity:{}:{ordinal}", resource.alert_type().id)
}

/// CloudStack's subject for the alert, with the figures and the setting after it.
fn description(state: &State, m: &Measure, threshold: Decimal) -> String {
    let zone = m
        .scope
        .zone_id
        .and_then(|id| state.catalog.zones.get(&id))
        .map_or_else(String::new, |z| z.facts.name.to_string());
    let pod = m
        .scope
        .pod_id
        .and_then(|id| state.infrastructure.pods.get(&id))
        .map_or_else(String::new, |p| p.facts.name.to_string());
    let cluster = m
        .scope
        .cluster_id
        .and_then(|id| state.infrastructure.clusters.get(&id))
        .map_or_else(String::new, |c| c.facts.name.to_string());
    let place = format!("cluster {cluster} pod {pod} of availability zone {zone}");
    let subject = match m.resource {
        Resource::Memory => format!("System Alert: Low Available Memory in {place}"),
        Resource::Cpu => format!("System Alert: Low Unallocated CPU in {place}"),
        Resource::PublicIp => format!(
            "System Alert: Number of unallocated virtual network public IPs is low in availability zone {zone}"
        ),
    };
    let percent = (Decimal::from(m.allocated) * Decimal::ONE_HUNDRED / Decimal::from(m.total))
        .round_dp(2)
        .normalize();
    let unit = m.resource.unit();
    format!(
        "{subject}: allocated {}{unit} of {}{unit} ({percent}%), above {} = {}",
        m.allocated,
        m.total,
        m.resource.setting(),
        threshold.normalize()
    )
}

/// The capacity alert events due now: a raise for every scope over its threshold without an
/// open alert of the type, a resolution of every open alert of these types whose scope is not
/// over (any more, or at all: a scope with no capacity left is not over).
pub fn due_events(state: &State, alerts: &AlertsModel) -> Vec<NewEvent> {
    let mut events = Vec::new();
    let mut over_scopes: Vec<(Resource, AlertScope)> = Vec::new();
    for m in measure(state) {
        let threshold = threshold(state, m.resource, &m.scope);
        if !over(m.allocated, m.total, threshold) {
            continue;
        }
        over_scopes.push((m.resource, m.scope));
        let alert_type = m.resource.alert_type();
        if alerts.is_open(alert_type.id, &m.scope) {
            continue;
        }
        let ordinal = alerts
            .alerts
            .values()
            .filter(|row| row.alert_type == alert_type.id && row.scope == m.scope)
            .count();
        events.push(raise_event(
            m.entity(),
            &kind(m.resource, ordinal),
            alert_type,
            description(state, &m, threshold),
            m.scope,
        ));
    }
    for resource in Resource::ALL {
        events.extend(
            alerts
                .open_of_type(resource.alert_type().id)
                .filter(|row| {
                    resource.owns(&row.scope) && !over_scopes.contains(&(resource, row.scope))
                })
                .map(resolve_event),
        );
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn over_is_strictly_above_the_fraction() {
        // 3 of 4 is exactly 0.75: not above.
        assert!(!over(3, 4, dec("0.75")));
        assert!(over(4, 4, dec("0.75")));
        assert!(over(7501, 10_000, dec("0.75")));
        assert!(!over(7500, 10_000, dec("0.75")));
        // A zero threshold fires on anything allocated, never on nothing.
        assert!(over(1, 4081, Decimal::ZERO));
        assert!(!over(0, 4081, Decimal::ZERO));
        // No total: never over.
        assert!(!over(5, 0, Decimal::ZERO));
        // Exact: 1/3 against 0.3333 and 0.33334.
        assert!(over(1, 3, dec("0.3333")));
        assert!(!over(1, 3, dec("0.33334")));
    }

    #[test]
    fn ranges_count_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(addresses(ip("172.16.0.10"), ip("172.16.15.250")), 4081);
        assert_eq!(addresses(ip("10.0.0.1"), ip("10.0.0.1")), 1);
        assert_eq!(addresses(ip("10.0.0.2"), ip("10.0.0.1")), 0);
        assert_eq!(addresses(ip("10.0.0.1"), ip("::1")), 0);
        assert_eq!(addresses(ip("2001:db8::"), ip("2001:db8::ff")), 256);
        assert_eq!(addresses(ip("::"), ip("ffff::")), u64::MAX);
    }

    #[test]
    fn kinds_differ_per_type_and_crossing() {
        assert_ne!(kind(Resource::Memory, 0), kind(Resource::Cpu, 0));
        assert_ne!(kind(Resource::Memory, 0), kind(Resource::Memory, 1));
    }

    #[test]
    fn scopes_belong_to_their_resource() {
        let zone = AlertScope {
            zone_id: Some(Uuid::from_u128(1)),
            ..AlertScope::default()
        };
        let cluster = AlertScope {
            pod_id: Some(Uuid::from_u128(2)),
            cluster_id: Some(Uuid::from_u128(3)),
            ..zone
        };
        assert!(Resource::PublicIp.owns(&zone));
        assert!(!Resource::PublicIp.owns(&cluster));
        assert!(Resource::Memory.owns(&cluster) && Resource::Cpu.owns(&cluster));
        assert!(!Resource::Memory.owns(&zone));
        assert!(!Resource::Memory.owns(&AlertScope::default()));
        let account = AlertScope {
            account_id: Some(Uuid::from_u128(4)),
            ..zone
        };
        assert!(!Resource::PublicIp.owns(&account));
    }

    mod crossing {
        use super::*;
        use engine::event::network::{IpAddressFacts, VlanIpRangeFacts};
        use engine::event::{AlertEvent, EventBody};
        use engine::time::Timestamp;
        use projections::catalog::Created;
        use projections::configuration::ConfigValue;
        use projections::network::{IpState, PublicIpRow};

        const ZONE: Uuid = Uuid::from_u128(0x20);
        const RANGE: Uuid = Uuid::from_u128(0x21);

        /// A zone whose virtual-network range has four addresses.
        fn zone_of_four() -> State {
            let mut state = State::default();
            state.network.vlan_ranges.insert(
                RANGE,
                Created {
                    facts: VlanIpRangeFacts {
                        vlan_range_id: RANGE,
                        zone_id: ZONE,
                        pod_id: None,
                        vlan: "untagged".into(),
                        gateway: [10, 0, 0, 1].into(),
                        netmask: "255.255.255.0".into(),
                        start_ip: [10, 0, 0, 10].into(),
                        end_ip: [10, 0, 0, 13].into(),
                        for_virtual_network: true,
                        network_id: None,
                        account_id: None,
                        domain_id: None,
                    },
                    created: Timestamp::EPOCH,
                },
            );
            state
        }

        fn hold(state: &mut State, n: u8) {
            let ip_id = Uuid::from_u128(0x100 + u128::from(n));
            state.network.public_ips.insert(
                ip_id,
                PublicIpRow {
                    facts: IpAddressFacts {
                        ip_id,
                        address: [10, 0, 0, 10 + n].into(),
                        account_id: Uuid::from_u128(9),
                        domain_id: Uuid::from_u128(8),
                        zone_id: ZONE,
                        vlan_range_id: Some(RANGE),
                        network_id: None,
                        vpc_id: None,
                        is_source_nat: false,
                        is_system: false,
                    },
                    state: IpState::Allocated,
                    allocated: Timestamp::EPOCH,
                    static_nat: None,
                    pending: None,
                },
            );
        }

        fn release(state: &mut State, n: u8) {
            state
                .network
                .public_ips
                .remove(&Uuid::from_u128(0x100 + u128::from(n)));
        }

        /// Folds the alert events into `alerts` as the alerts model would.
        fn fold(alerts: &mut AlertsModel, events: &[NewEvent]) {
            for event in events {
                match &event.body {
                    EventBody::Alert(AlertEvent::Raise(r)) => alerts.raise(r, Timestamp::EPOCH),
                    EventBody::Alert(AlertEvent::Resolve(r)) => alerts.resolve(r, Timestamp::EPOCH),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }

        fn zone_scope() -> AlertScope {
            AlertScope {
                zone_id: Some(ZONE),
                ..AlertScope::default()
            }
        }

        #[test]
        fn raised_once_while_over_resolved_under_and_raised_anew() {
            let mut state = zone_of_four();
            let mut alerts = AlertsModel::default();
            for n in 0..3 {
                hold(&mut state, n);
            }
            // 3 of 4 is the default 0.75 exactly: nothing.
            assert!(due_events(&state, &alerts).is_empty());
            hold(&mut state, 3);
            let raised = due_events(&state, &alerts);
            assert_eq!(raised.len(), 1);
            // Looking again before the raise is folded derives the same id: a no-op append.
            assert_eq!(due_events(&state, &alerts)[0].id, raised[0].id);
            fold(&mut alerts, &raised);
            let row = alerts.open_alert(4, &zone_scope()).unwrap();
            assert_eq!(row.name, "ALERT.NETWORK.PUBLICIP");
            assert!(
                row.description
                    .contains("allocated 4 addresses of 4 addresses (100%)")
            );
            // Open: not raised again.
            assert!(due_events(&state, &alerts).is_empty());

            release(&mut state, 3);
            let resolved = due_events(&state, &alerts);
            assert_eq!(resolved.len(), 1);
            fold(&mut alerts, &resolved);
            assert!(!alerts.is_open(4, &zone_scope()));
            assert!(due_events(&state, &alerts).is_empty());

            // A second crossing is a new alert with its own id.
            hold(&mut state, 3);
            let again = due_events(&state, &alerts);
            assert_eq!(again.len(), 1);
            assert_ne!(again[0].id, raised[0].id);
            fold(&mut alerts, &again);
            assert_eq!(alerts.alerts.len(), 2);
        }

        #[test]
        fn a_zone_value_of_the_setting_wins_over_the_global_one() {
            let mut state = zone_of_four();
            let mut set = |scope: &str, value: &str| {
                state.configuration.values.insert(
                    format!("{scope}/{PUBLIC_IP_SETTING}"),
                    ConfigValue {
                        name: PUBLIC_IP_SETTING.into(),
                        scope: if scope.starts_with("Zone") {
                            ConfigScope::Zone
                        } else {
                            ConfigScope::Global
                        },
                        scope_id: scope.starts_with("Zone").then_some(ZONE),
                        value: value.into(),
                    },
                )
            };
            set("Global/", "0.9");
            set(&format!("Zone/{ZONE}"), "0.2");
            let mut state = state;
            assert_eq!(
                threshold(&state, Resource::PublicIp, &zone_scope()),
                dec("0.2")
            );
            hold(&mut state, 0);
            // 1 of 4 = 0.25 > 0.2.
            let events = due_events(&state, &AlertsModel::default());
            assert_eq!(events.len(), 1);
            // Nothing set: the default.
            assert_eq!(
                threshold(&State::default(), Resource::Cpu, &zone_scope()),
                dec("0.75")
            );
        }

        #[test]
        fn alerts_of_other_shapes_are_left_alone() {
            let state = zone_of_four();
            let mut alerts = AlertsModel::default();
            let pod_scope = AlertScope {
                pod_id: Some(Uuid::from_u128(5)),
                ..zone_scope()
            };
            let generated = raise_event(
                Uuid::from_u128(6),
                "generated",
                AlertType::PUBLIC_IP,
                "by hand".into(),
                pod_scope,
            );
            fold(&mut alerts, &[generated]);
            assert!(due_events(&state, &alerts).is_empty());
        }
    }
}
