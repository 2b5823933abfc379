//! The in-process simulator driver: CloudStack's `Simulator` hypervisor, without hosts, and its
//! virtual routers and security group firewall.
//!
//! It keeps just enough state to behave like a hypervisor: which VMs run on which host with what
//! resources (so an over-committed start is refused), which volumes those VMs have (so disk
//! counters can be reported), and the outcome of every command id it has seen (so a repeated
//! command is answered, not re-run). On the network side it keeps every router's effective
//! [`RouterConfig`], whether it runs and its byte counters, and every security group's
//! [`SecurityGroupConfig`], so tests can compare them with what the log implies. Failures and
//! latency can be injected per command kind at runtime, as CloudStack's `configureSimulator`
//! does; hypervisor and network commands go through the same path, so both have them.
//!
//! Nothing here is durable: a server restart gets a fresh simulator with no running VMs or
//! routers and counters back at zero. The usage layer treats a reading lower than the previous
//! one as a counter reset (it counts the new reading from zero), exactly as it would for a real
//! hypervisor whose host rebooted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::debug;
use uuid::Uuid;

use super::network::{
    Direction, NetworkAction, NetworkDriver, PublicIpEntry, RouterConfig, RouterCounters,
    SecurityGroupConfig, SecurityRuleEntry,
};
use super::{
    CommandKind, DiskCounters, DriverAction, DriverCommand, DriverError, HypervisorDriver,
    SimulatedHost,
};

/// How the simulator starts; everything can be changed at runtime through [`Simulator`]'s
/// methods.
#[derive(Debug, Clone, Default)]
pub struct SimulatorConfig {
    /// Default latency of every command (applied with `tokio::time::sleep`), so async jobs stay
    /// pending long enough for clients to poll them, as against a real hypervisor.
    pub latency: Duration,
    /// Seed of the PRNG behind [`Simulator::fail_with_probability`], so a failure pattern can
    /// be replayed exactly.
    pub seed: u64,
}

/// The in-process hypervisor. A cheap, cloneable handle: every clone shares the same state.
#[derive(Debug, Clone)]
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
}

/// Failure injection configured for one command kind.
#[derive(Debug, Clone, Copy, Default)]
struct Injection {
    /// Scripted failures still to come.
    fail_next: u32,
    /// Percentage of the other commands that fail (0..=100).
    probability_percent: u8,
}

/// A VM the simulator runs.
#[derive(Debug, Clone)]
struct RunningVm {
    host_id: Uuid,
    cpu_number: u32,
    cpu_speed: u32,
    memory_mib: u64,
    volumes: BTreeSet<Uuid>,
}

impl RunningVm {
    fn cpu_mhz(&self) -> u64 {
        u64::from(self.cpu_number) * u64::from(self.cpu_speed)
    }
}

/// A virtual router the simulator knows (started or adopted, and not destroyed).
#[derive(Debug, Clone)]
struct SimRouter {
    /// Stopped routers keep their configuration (a later start replaces it anyway).
    running: bool,
    config: RouterConfig,
    /// Bytes sent since the last start or reboot.
    bytes_sent: u64,
    /// Bytes received since the last start or reboot.
    bytes_received: u64,
}

impl SimRouter {
    /// A router just booted with `config`: running, counters at zero.
    fn booted(config: RouterConfig) -> SimRouter {
        SimRouter {
            running: true,
            config,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

#[derive(Debug)]
struct SimState {
    hosts: BTreeMap<Uuid, SimulatedHost>,
    vms: BTreeMap<Uuid, RunningVm>,
    routers: BTreeMap<Uuid, SimRouter>,
    security_groups: BTreeMap<Uuid, SecurityGroupConfig>,
    /// Outcome of every command id seen, the idempotency record.
    outcomes: HashMap<Uuid, Result<(), DriverError>>,
    injections: BTreeMap<CommandKind, Injection>,
    default_latency: Duration,
    latencies: BTreeMap<CommandKind, Duration>,
    rng: SplitMix64,
    executed: BTreeMap<CommandKind, usize>,
    /// Per volume, the total time it has been attached to a running VM (ms): its counters are a
    /// function of this, so they are monotonic and survive detach/re-attach.
    volume_running_ms: BTreeMap<Uuid, u64>,
}

/// A tiny deterministic PRNG (SplitMix64): good enough to decide injected failures, the same
/// sequence for the same seed on every platform, and no dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with `percent` percent probability.
    fn chance(&mut self, percent: u8) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }
}

/// Milliseconds of running time per read operation.
const MS_PER_READ: u64 = 100;
/// Milliseconds of running time per write operation.
const MS_PER_WRITE: u64 = 200;
/// Bytes per simulated I/O operation.
const BYTES_PER_IO: u64 = 4096;
/// Bytes a router's guests send per millisecond of running time, per served NIC (DHCP entry)
/// plus one for the router itself.
const SENT_PER_MS: u64 = 10;
/// Bytes a router's guests receive per millisecond of running time, likewise.
const RECEIVED_PER_MS: u64 = 25;

impl Simulator {
    /// A simulator with no hosts, no VMs and no failure injection.
    pub fn new(config: SimulatorConfig) -> Simulator {
        Simulator {
            state: Arc::new(Mutex::new(SimState {
                hosts: BTreeMap::new(),
                vms: BTreeMap::new(),
                routers: BTreeMap::new(),
                security_groups: BTreeMap::new(),
                outcomes: HashMap::new(),
                injections: BTreeMap::new(),
                default_latency: config.latency,
                latencies: BTreeMap::new(),
                rng: SplitMix64(config.seed),
                executed: BTreeMap::new(),
                volume_running_ms: BTreeMap::new(),
            })),
        }
    }

    /// The state. A panic while holding the lock cannot leave it half-updated in a way that
    /// matters for a simulator, so a poisoned lock is used as is rather than failing every
    /// later command.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scripted failure: the next `count` commands of `kind` fail with
    /// [`DriverError::Injected`] (replacing any count still pending). Scripted failures are
    /// consumed before the probability of [`Simulator::fail_with_probability`] is consulted.
    pub fn fail_next(&self, kind: CommandKind, count: u32) {
        self.lock().injections.entry(kind).or_default().fail_next = count;
    }

    /// Each later command of `kind` fails with this probability (percent, capped at 100),
    /// drawn from the seeded PRNG so a run is reproducible for a given seed. 0 turns it off.
    pub fn fail_with_probability(&self, kind: CommandKind, probability_percent: u8) {
        self.lock()
            .injections
            .entry(kind)
            .or_default()
            .probability_percent = probability_percent.min(100);
    }

    /// Sets the latency of `kind`, or the default of every kind without its own when `None`.
    pub fn set_latency(&self, kind: Option<CommandKind>, latency: Duration) {
        let mut state = self.lock();
        match kind {
            Some(kind) => {
                state.latencies.insert(kind, latency);
            }
            None => state.default_latency = latency,
        }
    }

    /// Removes every failure injection, scripted and probabilistic. Latencies stay as set
    /// (change them back with [`Simulator::set_latency`]).
    pub fn clear_injections(&self) {
        self.lock().injections.clear();
    }

    /// The VMs running, as `(vm, host)` pairs sorted by VM then host.
    pub fn running_vms(&self) -> Vec<(Uuid, Uuid)> {
        let mut vms: Vec<(Uuid, Uuid)> = self
            .lock()
            .vms
            .iter()
            .map(|(vm, running)| (*vm, running.host_id))
            .collect();
        vms.sort();
        vms
    }

    /// How many commands of `kind` the simulator has run (successes and failures, injected ones
    /// included), not counting repeated ids, which are answered without running.
    pub fn executed(&self, kind: CommandKind) -> usize {
        self.lock().executed.get(&kind).copied().unwrap_or(0)
    }

    /// The routers the simulator knows (running or stopped, not destroyed), sorted.
    pub fn routers(&self) -> Vec<Uuid> {
        self.lock().routers.keys().copied().collect()
    }

    /// The one path of every command, hypervisor or network: a repeated id is answered at once
    /// with the stored outcome; otherwise the command waits its kind's latency and runs. A
    /// command whose id is still in flight (sleeping its latency) when the repeat arrives is not
    /// yet recorded: the repeat sleeps too, and whichever finishes first runs it; the other
    /// answers its outcome.
    fn submit(&self, command: DriverCommand) -> BoxFuture<'static, Result<(), DriverError>> {
        let latency = {
            let state = self.lock();
            if let Some(outcome) = state.outcomes.get(&command.id) {
                return futures::future::ready(outcome.clone()).boxed();
            }
            state.latency(command.action.kind())
        };
        let simulator = self.clone();
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut state = simulator.lock();
            if let Some(outcome) = state.outcomes.get(&command.id) {
                return outcome.clone();
            }
            state.run(&command)
        }
        .boxed()
    }
}

impl SimState {
    fn latency(&self, kind: CommandKind) -> Duration {
        self.latencies
            .get(&kind)
            .copied()
            .unwrap_or(self.default_latency)
    }

    /// Runs a command that was not seen before and records its outcome.
    fn run(&mut self, command: &DriverCommand) -> Result<(), DriverError> {
        let kind = command.action.kind();
        *self.executed.entry(kind).or_default() += 1;
        let outcome = match self.injected_failure(kind) {
            Some(error) => Err(error),
            None => self.apply(&command.action),
        };
        debug!(command = %command.id, kind = kind.agent_name(), ?outcome, "simulator command");
        self.outcomes.insert(command.id, outcome.clone());
        outcome
    }

    fn injected_failure(&mut self, kind: CommandKind) -> Option<DriverError> {
        let injection = self.injections.get_mut(&kind)?;
        let fail = if injection.fail_next > 0 {
            injection.fail_next -= 1;
            true
        } else {
            match injection.probability_percent {
                0 => false,
                100.. => true,
                percent => self.rng.chance(percent),
            }
        };
        fail.then(|| {
            DriverError::Injected(format!(
                "Simulated failure of {} (injected by configureSimulator)",
                kind.agent_name()
            ))
        })
    }

    fn known_host(&self, host_id: Uuid) -> Result<&SimulatedHost, DriverError> {
        self.hosts
            .get(&host_id)
            .ok_or(DriverError::UnknownHost(host_id))
    }

    /// Checks `host_id` can take `cpu_mhz` and `memory_mib` more, not counting `vm_id`'s own
    /// use when it already runs there (a restart or a scale replaces it).
    fn check_capacity(
        &self,
        host_id: Uuid,
        vm_id: Uuid,
        cpu_mhz: u64,
        memory_mib: u64,
    ) -> Result<(), DriverError> {
        let host = self.known_host(host_id)?;
        let (used_mhz, used_mib) = self
            .vms
            .iter()
            .filter(|(id, vm)| **id != vm_id && vm.host_id == host_id)
            .fold((0u64, 0u64), |(mhz, mib), (_, vm)| {
                (mhz + vm.cpu_mhz(), mib + vm.memory_mib)
            });
        let total_mhz = u64::from(host.cpu_number) * u64::from(host.cpu_speed);
        let free_cpu_mhz = total_mhz.saturating_sub(used_mhz);
        let free_memory_mib = host.memory_mib.saturating_sub(used_mib);
        if cpu_mhz > free_cpu_mhz || memory_mib > free_memory_mib {
            return Err(DriverError::NoCapacity {
                host_id,
                needed_cpu_mhz: cpu_mhz,
                needed_memory_mib: memory_mib,
                free_cpu_mhz,
                free_memory_mib,
            });
        }
        Ok(())
    }

    fn running(&self, vm_id: Uuid) -> Result<&RunningVm, DriverError> {
        self.vms.get(&vm_id).ok_or(DriverError::NotRunning(vm_id))
    }

    fn apply(&mut self, action: &DriverAction) -> Result<(), DriverError> {
        match action {
            DriverAction::StartVm {
                vm_id,
                host_id,
                cpu_number,
                cpu_speed,
                memory_mib,
                volume_ids,
            } => {
                let cpu_mhz = u64::from(*cpu_number) * u64::from(*cpu_speed);
                self.check_capacity(*host_id, *vm_id, cpu_mhz, *memory_mib)?;
                // Starting a VM that already runs (here or elsewhere) replaces it: the newest
                // decision is the truth, and its capacity was just checked without the old one.
                self.vms.insert(
                    *vm_id,
                    RunningVm {
                        host_id: *host_id,
                        cpu_number: *cpu_number,
                        cpu_speed: *cpu_speed,
                        memory_mib: *memory_mib,
                        volumes: volume_ids.iter().copied().collect(),
                    },
                );
                Ok(())
            }
            DriverAction::StopVm { vm_id, .. } | DriverAction::DestroyVm { vm_id, .. } => {
                // Stopping a VM that is not running is a success: the goal state holds.
                self.vms.remove(vm_id);
                Ok(())
            }
            DriverAction::RebootVm { vm_id, host_id } => {
                self.known_host(*host_id)?;
                self.running(*vm_id).map(|_| ())
            }
            DriverAction::MigrateVm {
                vm_id, to_host_id, ..
            } => {
                let vm = self.running(*vm_id)?;
                let (cpu_mhz, memory_mib) = (vm.cpu_mhz(), vm.memory_mib);
                self.check_capacity(*to_host_id, *vm_id, cpu_mhz, memory_mib)?;
                if let Some(vm) = self.vms.get_mut(vm_id) {
                    vm.host_id = *to_host_id;
                }
                Ok(())
            }
            DriverAction::ScaleVm {
                vm_id,
                cpu_number,
                cpu_speed,
                memory_mib,
                ..
            } => {
                // The VM's actual host is the one whose capacity matters.
                let host_id = self.running(*vm_id)?.host_id;
                let cpu_mhz = u64::from(*cpu_number) * u64::from(*cpu_speed);
                self.check_capacity(host_id, *vm_id, cpu_mhz, *memory_mib)?;
                if let Some(vm) = self.vms.get_mut(vm_id) {
                    vm.cpu_number = *cpu_number;
                    vm.cpu_speed = *cpu_speed;
                    vm.memory_mib = *memory_mib;
                }
                Ok(())
            }
            DriverAction::AttachVolume {
                volume_id,
                vm_id,
                host_id,
            } => {
                if let Some(host_id) = host_id {
                    self.known_host(*host_id)?;
                }
                // A stopped VM gets the volume with its next StartVm.
                if let Some(vm) = self.vms.get_mut(vm_id) {
                    vm.volumes.insert(*volume_id);
                }
                Ok(())
            }
            DriverAction::DetachVolume {
                volume_id, vm_id, ..
            } => {
                if let Some(vm) = self.vms.get_mut(vm_id) {
                    vm.volumes.remove(volume_id);
                }
                Ok(())
            }
            // Storage operations have no state the simulator needs to keep.
            DriverAction::ResizeVolume { .. }
            | DriverAction::TakeSnapshot { .. }
            | DriverAction::TakeVmSnapshot { .. }
            | DriverAction::RevertToVmSnapshot { .. }
            | DriverAction::DeleteVmSnapshot { .. } => Ok(()),
            DriverAction::Network(action) => self.apply_network(action),
        }
    }

    /// The router a change applies to. An unknown router is an error, except for a removal
    /// (`removal`), which then has nothing to do: cleanup after a destroy, or of a router whose
    /// start failed, must not fail.
    fn router_mut(
        &mut self,
        router_id: Uuid,
        removal: bool,
    ) -> Result<Option<&mut RouterConfig>, DriverError> {
        match self.routers.get_mut(&router_id) {
            Some(router) => Ok(Some(&mut router.config)),
            None if removal => Ok(None),
            None => Err(DriverError::UnknownRouter(router_id)),
        }
    }

    /// Applies one network action (see [`NetworkAction`] for each one's meaning).
    fn apply_network(&mut self, action: &NetworkAction) -> Result<(), DriverError> {
        match action {
            NetworkAction::StartRouter { router_id, config } => {
                self.routers
                    .insert(*router_id, SimRouter::booted(config.clone()));
            }
            NetworkAction::StopRouter { router_id } => {
                // Stopping a router that is not known succeeds: the goal state holds.
                if let Some(router) = self.routers.get_mut(router_id) {
                    router.running = false;
                }
            }
            NetworkAction::RebootRouter { router_id } => {
                let router = self
                    .routers
                    .get_mut(router_id)
                    .ok_or(DriverError::UnknownRouter(*router_id))?;
                router.bytes_sent = 0;
                router.bytes_received = 0;
            }
            NetworkAction::DestroyRouter { router_id } => {
                self.routers.remove(router_id);
            }
            NetworkAction::AssociateIp {
                router_id,
                address,
                source_nat,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config
                        .public_ips
                        .entry(*address)
                        .and_modify(|ip| ip.source_nat = *source_nat)
                        .or_insert(PublicIpEntry {
                            source_nat: *source_nat,
                            static_nat: None,
                        });
                }
            }
            NetworkAction::ReleaseIp { router_id, address } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    release_ip(config, *address);
                }
            }
            NetworkAction::EnableStaticNat {
                router_id,
                address,
                vm_ip,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    // An address not plumbed yet is plumbed with it, as the router would.
                    config
                        .public_ips
                        .entry(*address)
                        .or_insert(PublicIpEntry {
                            source_nat: false,
                            static_nat: None,
                        })
                        .static_nat = Some(*vm_ip);
                }
            }
            NetworkAction::DisableStaticNat { router_id, address } => {
                if let Some(config) = self.router_mut(*router_id, true)?
                    && let Some(ip) = config.public_ips.get_mut(address)
                {
                    ip.static_nat = None;
                }
            }
            NetworkAction::AddPortForward {
                router_id,
                rule_id,
                entry,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config.port_forwards.insert(*rule_id, entry.clone());
                }
            }
            NetworkAction::RemovePortForward { router_id, rule_id } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    config.port_forwards.remove(rule_id);
                }
            }
            NetworkAction::AddFirewallRule {
                router_id,
                rule_id,
                entry,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config.firewall.insert(*rule_id, entry.clone());
                }
            }
            NetworkAction::RemoveFirewallRule { router_id, rule_id } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    config.firewall.remove(rule_id);
                }
            }
            NetworkAction::ConfigureLoadBalancer {
                router_id,
                rule_id,
                entry,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config.load_balancers.insert(*rule_id, entry.clone());
                }
            }
            NetworkAction::AssignToLoadBalancer {
                router_id,
                rule_id,
                members,
            } => {
                // Members of a rule the router does not have wait for its configuration, which
                // carries the complete member list.
                if let Some(config) = self.router_mut(*router_id, false)?
                    && let Some(rule) = config.load_balancers.get_mut(rule_id)
                {
                    rule.members.extend(members.iter().copied());
                }
            }
            NetworkAction::RemoveFromLoadBalancer {
                router_id,
                rule_id,
                members,
            } => {
                if let Some(config) = self.router_mut(*router_id, true)?
                    && let Some(rule) = config.load_balancers.get_mut(rule_id)
                {
                    rule.members.retain(|m| !members.contains(m));
                }
            }
            NetworkAction::RemoveLoadBalancer { router_id, rule_id } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    config.load_balancers.remove(rule_id);
                }
            }
            NetworkAction::AddDhcpEntry {
                router_id,
                mac,
                entry,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config.dhcp.insert(mac.clone(), entry.clone());
                }
            }
            NetworkAction::RemoveDhcpEntry { router_id, mac } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    config.dhcp.remove(mac);
                }
            }
            NetworkAction::EnableVpn {
                router_id,
                entry,
                users,
            } => {
                if let Some(config) = self.router_mut(*router_id, false)? {
                    config.vpn = Some(entry.clone());
                    config.vpn_users = users.clone();
                }
            }
            NetworkAction::DisableVpn { router_id } => {
                if let Some(config) = self.router_mut(*router_id, true)? {
                    config.vpn = None;
                    config.vpn_users.clear();
                }
            }
            NetworkAction::AddVpnUser {
                router_ids,
                username,
            } => {
                // Routers destroyed since the command was decided are skipped.
                for router_id in router_ids {
                    if let Some(router) = self.routers.get_mut(router_id) {
                        router.config.vpn_users.insert(username.clone());
                    }
                }
            }
            NetworkAction::RemoveVpnUser {
                router_ids,
                username,
            } => {
                for router_id in router_ids {
                    if let Some(router) = self.routers.get_mut(router_id) {
                        router.config.vpn_users.remove(username);
                    }
                }
            }
            NetworkAction::AuthorizeSecurityGroupRules {
                group_id,
                direction,
                rules,
            } => {
                let side = rules_of(
                    self.security_groups.entry(*group_id).or_default(),
                    *direction,
                );
                side.extend(rules.iter().map(|rule| (rule.rule_id, rule.clone())));
            }
            NetworkAction::RevokeSecurityGroupRules {
                group_id,
                direction,
                rule_ids,
            } => {
                let side = rules_of(
                    self.security_groups.entry(*group_id).or_default(),
                    *direction,
                );
                for rule_id in rule_ids {
                    side.remove(rule_id);
                }
            }
            NetworkAction::JoinSecurityGroup { group_id, vm_id } => {
                self.security_groups
                    .entry(*group_id)
                    .or_default()
                    .members
                    .insert(*vm_id);
            }
            NetworkAction::LeaveSecurityGroup { group_id, vm_id } => {
                self.security_groups
                    .entry(*group_id)
                    .or_default()
                    .members
                    .remove(vm_id);
            }
            NetworkAction::RemoveSecurityGroup { group_id } => {
                self.security_groups.remove(group_id);
            }
        }
        Ok(())
    }
}

/// The rules of `group` in `direction`.
fn rules_of(
    group: &mut SecurityGroupConfig,
    direction: Direction,
) -> &mut BTreeMap<Uuid, SecurityRuleEntry> {
    match direction {
        Direction::Ingress => &mut group.ingress,
        Direction::Egress => &mut group.egress,
    }
}

/// Unplumbs `address` from a router with everything that still names it: port and IP
/// forwards, ingress firewall rules, load balancer rules and the remote access VPN (whose users
/// go with it, as with [`NetworkAction::DisableVpn`]).
fn release_ip(config: &mut RouterConfig, address: IpAddr) {
    config.public_ips.remove(&address);
    config
        .port_forwards
        .retain(|_, rule| rule.public_ip != address);
    config
        .firewall
        .retain(|_, rule| rule.public_ip != Some(address));
    config
        .load_balancers
        .retain(|_, rule| rule.public_ip != address);
    if config
        .vpn
        .as_ref()
        .is_some_and(|vpn| vpn.public_ip == address)
    {
        config.vpn = None;
        config.vpn_users.clear();
    }
}

impl HypervisorDriver for Simulator {
    fn add_host(&self, host: SimulatedHost) {
        self.lock().hosts.insert(host.host_id, host);
    }

    fn adopt_vm(&self, running: DriverAction) {
        if let DriverAction::StartVm {
            vm_id,
            host_id,
            cpu_number,
            cpu_speed,
            memory_mib,
            volume_ids,
        } = running
        {
            self.lock().vms.insert(
                vm_id,
                RunningVm {
                    host_id,
                    cpu_number,
                    cpu_speed,
                    memory_mib,
                    volumes: volume_ids.into_iter().collect(),
                },
            );
        }
    }

    /// See [`Simulator::submit`]; a [`DriverAction::Network`] runs exactly as through
    /// [`NetworkDriver::execute_network`] (the same idempotency record and injections).
    fn execute(&self, command: DriverCommand) -> BoxFuture<'static, Result<(), DriverError>> {
        self.submit(command)
    }

    /// Counters are a pure function of how long each volume has been attached to a running VM
    /// (one read per 100 ms, one write per 200 ms, 4 KiB each), so they are deterministic,
    /// monotonic per volume for the life of this simulator (also across detach and re-attach),
    /// and start from zero in a new one.
    fn read_disk_counters(&self, elapsed_ms: u64) -> Vec<DiskCounters> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut readings = Vec::new();
        for (vm_id, vm) in &state.vms {
            for volume_id in &vm.volumes {
                let running_ms = state.volume_running_ms.entry(*volume_id).or_default();
                *running_ms = running_ms.saturating_add(elapsed_ms);
                let io_read = *running_ms / MS_PER_READ;
                let io_write = *running_ms / MS_PER_WRITE;
                readings.push(DiskCounters {
                    volume_id: *volume_id,
                    vm_id: *vm_id,
                    io_read,
                    io_write,
                    bytes_read: io_read.saturating_mul(BYTES_PER_IO),
                    bytes_write: io_write.saturating_mul(BYTES_PER_IO),
                });
            }
        }
        readings
    }

    fn hypervisor(&self) -> &'static str {
        "Simulator"
    }
}

impl NetworkDriver for Simulator {
    fn adopt_router(&self, router_id: Uuid, config: RouterConfig, running: bool) {
        let router = SimRouter {
            running,
            ..SimRouter::booted(config)
        };
        self.lock().routers.insert(router_id, router);
    }

    fn adopt_security_group(&self, group_id: Uuid, config: SecurityGroupConfig) {
        self.lock().security_groups.insert(group_id, config);
    }

    /// See [`Simulator::submit`]: the same path, idempotency record and injections as
    /// hypervisor commands, under the action's own [`CommandKind`].
    fn execute_network(
        &self,
        command_id: Uuid,
        action: NetworkAction,
    ) -> BoxFuture<'static, Result<(), DriverError>> {
        self.submit(DriverCommand {
            id: command_id,
            action: DriverAction::Network(action),
        })
    }

    fn router_config(&self, router_id: Uuid) -> Option<RouterConfig> {
        self.lock()
            .routers
            .get(&router_id)
            .map(|router| router.config.clone())
    }

    fn router_running(&self, router_id: Uuid) -> Option<bool> {
        self.lock()
            .routers
            .get(&router_id)
            .map(|router| router.running)
    }

    fn security_group_config(&self, group_id: Uuid) -> Option<SecurityGroupConfig> {
        self.lock().security_groups.get(&group_id).cloned()
    }

    /// Counters of a running router grow by `elapsed_ms` times 10 bytes sent and 25 received,
    /// times one plus its DHCP entries (busier networks move more traffic): deterministic,
    /// monotonic until the router is started again or rebooted, frozen while it is stopped.
    fn read_router_counters(&self, elapsed_ms: u64) -> Vec<RouterCounters> {
        let mut state = self.lock();
        state
            .routers
            .iter_mut()
            .filter(|(_, router)| router.running)
            .map(|(router_id, router)| {
                let load = u64::try_from(router.config.dhcp.len())
                    .unwrap_or(u64::MAX)
                    .saturating_add(1)
                    .saturating_mul(elapsed_ms);
                router.bytes_sent = router
                    .bytes_sent
                    .saturating_add(load.saturating_mul(SENT_PER_MS));
                router.bytes_received = router
                    .bytes_received
                    .saturating_add(load.saturating_mul(RECEIVED_PER_MS));
                RouterCounters {
                    router_id: *router_id,
                    bytes_sent: router.bytes_sent,
                    bytes_received: router.bytes_received,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cpu_number: u32, cpu_speed: u32, memory_mib: u64) -> SimulatedHost {
        SimulatedHost {
            host_id: Uuid::new_v4(),
            cpu_number,
            cpu_speed,
            memory_mib,
        }
    }

    fn command(action: DriverAction) -> DriverCommand {
        DriverCommand {
            id: Uuid::new_v4(),
            action,
        }
    }

    fn start(vm_id: Uuid, host_id: Uuid, cpu: u32, mib: u64, volumes: &[Uuid]) -> DriverCommand {
        command(DriverAction::StartVm {
            vm_id,
            host_id,
            cpu_number: cpu,
            cpu_speed: 1000,
            memory_mib: mib,
            volume_ids: volumes.to_vec(),
        })
    }

    fn stop(vm_id: Uuid, host_id: Uuid) -> DriverCommand {
        command(DriverAction::StopVm {
            vm_id,
            host_id,
            forced: false,
        })
    }

    fn simulator_with_host(cpu: u32, mib: u64) -> (Simulator, Uuid) {
        let sim = Simulator::new(SimulatorConfig::default());
        let h = host(cpu, 1000, mib);
        let id = h.host_id;
        sim.add_host(h);
        (sim, id)
    }

    #[tokio::test]
    async fn refuses_start_beyond_capacity() {
        let (sim, host_id) = simulator_with_host(4, 4096);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sim.execute(start(a, host_id, 2, 2048, &[])).await.unwrap();
        // CPU would be 5000 MHz of 4000.
        let err = sim
            .execute(start(b, host_id, 3, 1024, &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::NoCapacity { host_id: h, .. } if h == host_id));
        // Memory would be 4097 MiB of 4096.
        let err = sim
            .execute(start(b, host_id, 1, 2049, &[]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            DriverError::NoCapacity {
                free_memory_mib: 2048,
                free_cpu_mhz: 2000,
                ..
            }
        ));
        // Exactly full fits.
        sim.execute(start(b, host_id, 2, 2048, &[])).await.unwrap();
        // Unknown host.
        let other = Uuid::new_v4();
        assert_eq!(
            sim.execute(start(c, other, 1, 1, &[])).await,
            Err(DriverError::UnknownHost(other))
        );
        // Stopping frees the room.
        sim.execute(stop(a, host_id)).await.unwrap();
        sim.execute(start(c, host_id, 2, 2048, &[])).await.unwrap();
        let mut expected = vec![(b, host_id), (c, host_id)];
        expected.sort();
        assert_eq!(sim.running_vms(), expected);
    }

    #[tokio::test]
    async fn repeated_id_answers_first_outcome_and_runs_once() {
        let (sim, host_id) = simulator_with_host(4, 4096);
        let vm = Uuid::new_v4();
        let first = start(vm, host_id, 1, 512, &[]);
        sim.execute(first.clone()).await.unwrap();
        sim.execute(first.clone()).await.unwrap();
        assert_eq!(sim.executed(CommandKind::StartVm), 1);

        // A failure is answered again too, even once the injection is gone, and the repeat
        // does not consume an injected failure.
        let vm2 = Uuid::new_v4();
        sim.fail_next(CommandKind::StartVm, 1);
        let failing = start(vm2, host_id, 1, 512, &[]);
        let outcome = sim.execute(failing.clone()).await;
        assert!(matches!(outcome, Err(DriverError::Injected(_))));
        sim.fail_next(CommandKind::StartVm, 1);
        assert_eq!(sim.execute(failing.clone()).await, outcome);
        assert_eq!(sim.executed(CommandKind::StartVm), 2);
        // The injected failure is still pending for a new command.
        assert!(matches!(
            sim.execute(start(vm2, host_id, 1, 512, &[])).await,
            Err(DriverError::Injected(_))
        ));

        // A stop, then the old start again: not started a second time.
        sim.execute(stop(vm, host_id)).await.unwrap();
        sim.execute(first).await.unwrap();
        assert!(sim.running_vms().is_empty());
    }

    #[tokio::test]
    async fn scripted_failures_fail_exactly_n_times() {
        let (sim, host_id) = simulator_with_host(64, 65536);
        sim.fail_next(CommandKind::StartVm, 3);
        let vm = Uuid::new_v4();
        for _ in 0..3 {
            let err = sim
                .execute(start(vm, host_id, 1, 1, &[]))
                .await
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "Simulated failure of StartCommand (injected by configureSimulator)"
            );
        }
        sim.execute(start(vm, host_id, 1, 1, &[])).await.unwrap();
        // Other kinds are not affected.
        sim.fail_next(CommandKind::RebootVm, 1);
        sim.execute(stop(vm, host_id)).await.unwrap();
        assert_eq!(sim.executed(CommandKind::StartVm), 4);

        sim.fail_next(CommandKind::StopVm, 5);
        sim.clear_injections();
        sim.execute(stop(vm, host_id)).await.unwrap();
    }

    #[tokio::test]
    async fn probability_zero_and_hundred() {
        let (sim, host_id) = simulator_with_host(64, 65536);
        let vm = Uuid::new_v4();
        sim.fail_with_probability(CommandKind::StopVm, 100);
        for _ in 0..20 {
            assert!(matches!(
                sim.execute(stop(vm, host_id)).await,
                Err(DriverError::Injected(_))
            ));
        }
        sim.fail_with_probability(CommandKind::StopVm, 0);
        for _ in 0..20 {
            sim.execute(stop(vm, host_id)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn probability_is_deterministic_for_a_seed() {
        async fn pattern(seed: u64) -> Vec<bool> {
            let sim = Simulator::new(SimulatorConfig {
                latency: Duration::ZERO,
                seed,
            });
            sim.fail_with_probability(CommandKind::ResizeVolume, 50);
            let mut failed = Vec::new();
            for _ in 0..64 {
                let outcome = sim
                    .execute(command(DriverAction::ResizeVolume {
                        volume_id: Uuid::new_v4(),
                        new_size: 1 << 30,
                    }))
                    .await;
                failed.push(outcome.is_err());
            }
            failed
        }
        let a = pattern(7).await;
        assert_eq!(a, pattern(7).await);
        let failures = a.iter().filter(|f| **f).count();
        assert!((1..64).contains(&failures), "{failures} of 64 failed");
    }

    #[tokio::test]
    async fn migrate_moves_capacity() {
        let sim = Simulator::new(SimulatorConfig::default());
        let (h1, h2) = (host(2, 1000, 2048), host(2, 1000, 2048));
        let (h1, h2) = {
            let ids = (h1.host_id, h2.host_id);
            sim.add_host(h1);
            sim.add_host(h2);
            ids
        };
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sim.execute(start(a, h1, 2, 2048, &[])).await.unwrap();
        sim.execute(start(b, h2, 1, 1024, &[])).await.unwrap();
        // h2 has only half left.
        let err = sim
            .execute(command(DriverAction::MigrateVm {
                vm_id: a,
                from_host_id: h1,
                to_host_id: h2,
            }))
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::NoCapacity { host_id, .. } if host_id == h2));
        // Move b to h2 -> h1 is full; move a away first.
        sim.execute(stop(b, h2)).await.unwrap();
        sim.execute(command(DriverAction::MigrateVm {
            vm_id: a,
            from_host_id: h1,
            to_host_id: h2,
        }))
        .await
        .unwrap();
        assert_eq!(sim.running_vms(), vec![(a, h2)]);
        // h1 is free now, h2 is full.
        sim.execute(start(c, h1, 2, 2048, &[])).await.unwrap();
        assert!(sim.execute(start(b, h2, 1, 1, &[])).await.is_err());
        // Migrating a VM that does not run.
        assert_eq!(
            sim.execute(command(DriverAction::MigrateVm {
                vm_id: b,
                from_host_id: h2,
                to_host_id: h1,
            }))
            .await,
            Err(DriverError::NotRunning(b))
        );
    }

    #[tokio::test]
    async fn scale_rechecks_capacity_on_its_host() {
        let (sim, host_id) = simulator_with_host(4, 4096);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        sim.execute(start(a, host_id, 2, 2048, &[])).await.unwrap();
        sim.execute(start(b, host_id, 1, 1024, &[])).await.unwrap();
        let scale = |cpu: u32, mib: u64| {
            command(DriverAction::ScaleVm {
                vm_id: a,
                host_id,
                cpu_number: cpu,
                cpu_speed: 1000,
                memory_mib: mib,
            })
        };
        // Its own use does not count against it.
        sim.execute(scale(3, 3072)).await.unwrap();
        assert!(matches!(
            sim.execute(scale(4, 3072)).await,
            Err(DriverError::NoCapacity { .. })
        ));
        sim.execute(stop(b, host_id)).await.unwrap();
        sim.execute(scale(4, 4096)).await.unwrap();
    }

    #[tokio::test]
    async fn counters_grow_only_for_running_vms_and_detach_stops_reporting() {
        let (sim, host_id) = simulator_with_host(8, 8192);
        let (vm, stopped_vm) = (Uuid::new_v4(), Uuid::new_v4());
        let (root, data, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(sim.read_disk_counters(1000).is_empty());

        sim.execute(start(vm, host_id, 1, 512, &[root]))
            .await
            .unwrap();
        // Attach to a stopped VM: nothing to report.
        sim.execute(command(DriverAction::AttachVolume {
            volume_id: other,
            vm_id: stopped_vm,
            host_id: None,
        }))
        .await
        .unwrap();
        sim.execute(command(DriverAction::AttachVolume {
            volume_id: data,
            vm_id: vm,
            host_id: Some(host_id),
        }))
        .await
        .unwrap();

        let first = sim.read_disk_counters(1000);
        assert_eq!(
            first.iter().map(|c| c.volume_id).collect::<BTreeSet<_>>(),
            BTreeSet::from([root, data])
        );
        assert!(first.iter().all(|c| c.vm_id == vm && c.io_read > 0));
        let second = sim.read_disk_counters(50);
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.volume_id, b.volume_id);
            assert!(b.io_read >= a.io_read && b.io_write >= a.io_write);
            assert!(b.bytes_read >= a.bytes_read && b.bytes_write >= a.bytes_write);
        }
        // Small readings accumulate rather than round away.
        let third = sim.read_disk_counters(50);
        let root_at = |readings: &[DiskCounters]| {
            readings
                .iter()
                .find(|c| c.volume_id == root)
                .cloned()
                .unwrap()
        };
        assert!(root_at(&third).io_read > root_at(&first).io_read);

        // Detach: the volume is no longer reported.
        sim.execute(command(DriverAction::DetachVolume {
            volume_id: data,
            vm_id: vm,
            host_id: Some(host_id),
        }))
        .await
        .unwrap();
        let after_detach = sim.read_disk_counters(1000);
        assert_eq!(after_detach.len(), 1);
        assert_eq!(after_detach[0].volume_id, root);

        // Stopped: nothing reported, and counters do not grow while stopped.
        let before_stop = root_at(&after_detach);
        sim.execute(stop(vm, host_id)).await.unwrap();
        assert!(sim.read_disk_counters(60_000).is_empty());
        sim.execute(start(vm, host_id, 1, 512, &[root]))
            .await
            .unwrap();
        let restarted = sim.read_disk_counters(0);
        assert_eq!(restarted, vec![before_stop]);
    }

    #[tokio::test]
    async fn latency_setting_is_honoured() {
        let sim = Simulator::new(SimulatorConfig {
            latency: Duration::from_millis(1),
            seed: 1,
        });
        let h = host(4, 1000, 4096);
        let host_id = h.host_id;
        sim.add_host(h);
        sim.set_latency(Some(CommandKind::StartVm), Duration::from_millis(2));
        sim.set_latency(None, Duration::from_millis(1));
        let vm = Uuid::new_v4();
        sim.execute(start(vm, host_id, 1, 512, &[])).await.unwrap();
        sim.execute(stop(vm, host_id)).await.unwrap();
        assert!(sim.running_vms().is_empty());
    }

    #[tokio::test]
    async fn usable_as_trait_object() {
        let driver: Arc<dyn HypervisorDriver> =
            Arc::new(Simulator::new(SimulatorConfig::default()));
        assert_eq!(driver.hypervisor(), "Simulator");
        let h = host(1, 1000, 1024);
        let host_id = h.host_id;
        driver.add_host(h.clone());
        driver.add_host(h);
        let vm = Uuid::new_v4();
        driver
            .execute(start(vm, host_id, 1, 1024, &[]))
            .await
            .unwrap();
        assert_eq!(
            driver
                .execute(command(DriverAction::RebootVm {
                    vm_id: Uuid::new_v4(),
                    host_id,
                }))
                .await
                .map_err(|e| matches!(e, DriverError::NotRunning(_))),
            Err(true)
        );
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn dhcp_entry(address: &str) -> super::super::network::DhcpEntry {
        super::super::network::DhcpEntry {
            ip: ip(address),
            hostname: "vm".into(),
            default: true,
        }
    }

    /// A router configuration with one public IP and `nics` DHCP entries.
    fn router_config(public: &str, nics: usize) -> RouterConfig {
        let mut config = RouterConfig::default();
        config.public_ips.insert(
            ip(public),
            PublicIpEntry {
                source_nat: true,
                static_nat: None,
            },
        );
        for n in 0..nics {
            config
                .dhcp
                .insert(format!("02:00:00:00:00:{n:02x}"), dhcp_entry("10.1.1.10"));
        }
        config
    }

    async fn net(sim: &Simulator, action: NetworkAction) -> Result<(), DriverError> {
        sim.execute_network(Uuid::new_v4(), action).await
    }

    async fn started_router(sim: &Simulator, config: RouterConfig) -> Uuid {
        let router_id = Uuid::new_v4();
        net(sim, NetworkAction::StartRouter { router_id, config })
            .await
            .unwrap();
        router_id
    }

    #[tokio::test]
    async fn network_repeated_id_answers_first_outcome_through_either_entry() {
        let sim = Simulator::new(SimulatorConfig::default());
        let router_id = started_router(&sim, router_config("192.0.2.1", 0)).await;
        let id = Uuid::new_v4();
        let add = NetworkAction::AddDhcpEntry {
            router_id,
            mac: "02:00:00:00:00:01".into(),
            entry: dhcp_entry("10.1.1.5"),
        };
        sim.execute_network(id, add.clone()).await.unwrap();
        // Removed meanwhile; the repeated id does not add it back.
        net(
            &sim,
            NetworkAction::RemoveDhcpEntry {
                router_id,
                mac: "02:00:00:00:00:01".into(),
            },
        )
        .await
        .unwrap();
        sim.execute_network(id, add.clone()).await.unwrap();
        // The hypervisor entry shares the record.
        sim.execute(DriverCommand {
            id,
            action: DriverAction::Network(add),
        })
        .await
        .unwrap();
        assert!(sim.router_config(router_id).unwrap().dhcp.is_empty());
        assert_eq!(sim.executed(CommandKind::DhcpEntry), 2);

        // A network action sent through the hypervisor entry acts like one sent directly.
        let other = Uuid::new_v4();
        sim.execute(command(DriverAction::Network(NetworkAction::StartRouter {
            router_id: other,
            config: RouterConfig::default(),
        })))
        .await
        .unwrap();
        assert_eq!(sim.router_running(other), Some(true));
        let mut expected = vec![router_id, other];
        expected.sort();
        assert_eq!(sim.routers(), expected);
    }

    #[tokio::test]
    async fn injected_failure_on_a_network_kind() {
        let sim = Simulator::new(SimulatorConfig::default());
        let router_id = started_router(&sim, RouterConfig::default()).await;
        let kind = CommandKind::from_agent_name("SetFirewallRulesCommand").unwrap();
        sim.fail_next(kind, 1);
        let entry = super::super::network::FirewallEntry {
            direction: Direction::Ingress,
            public_ip: Some(ip("192.0.2.1")),
            protocol: "tcp".into(),
            start_port: Some(22),
            end_port: Some(22),
            icmp_type: None,
            icmp_code: None,
            source_cidrs: vec!["0.0.0.0/0".into()],
            destination_cidrs: Vec::new(),
        };
        let (rule_id, id) = (Uuid::new_v4(), Uuid::new_v4());
        let add = NetworkAction::AddFirewallRule {
            router_id,
            rule_id,
            entry,
        };
        let err = sim.execute_network(id, add.clone()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Simulated failure of SetFirewallRulesCommand (injected by configureSimulator)"
        );
        // The failure is the command's outcome for good; other kinds are unaffected.
        assert_eq!(sim.execute_network(id, add.clone()).await, Err(err));
        assert!(sim.router_config(router_id).unwrap().firewall.is_empty());
        net(
            &sim,
            NetworkAction::RemoveDhcpEntry {
                router_id,
                mac: "x".into(),
            },
        )
        .await
        .unwrap();
        net(&sim, add).await.unwrap();
        assert!(
            sim.router_config(router_id)
                .unwrap()
                .firewall
                .contains_key(&rule_id)
        );
        assert_eq!(sim.executed(CommandKind::Firewall), 2);
        assert_eq!(sim.executed(CommandKind::DhcpEntry), 1);
    }

    #[tokio::test]
    async fn release_ip_removes_everything_on_the_address() {
        let sim = Simulator::new(SimulatorConfig::default());
        let (kept, released) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let router_id = started_router(&sim, router_config("192.0.2.1", 1)).await;
        net(
            &sim,
            NetworkAction::AssociateIp {
                router_id,
                address: released,
                source_nat: false,
            },
        )
        .await
        .unwrap();
        let forward = |public_ip| super::super::network::PortForwardEntry {
            public_ip,
            protocol: "tcp".into(),
            public_start_port: Some(80),
            public_end_port: Some(80),
            private_ip: ip("10.1.1.10"),
            private_start_port: Some(8080),
            private_end_port: Some(8080),
            cidrs: Vec::new(),
        };
        let firewall = |public_ip| super::super::network::FirewallEntry {
            direction: Direction::Ingress,
            public_ip: Some(public_ip),
            protocol: "tcp".into(),
            start_port: Some(80),
            end_port: Some(80),
            icmp_type: None,
            icmp_code: None,
            source_cidrs: Vec::new(),
            destination_cidrs: Vec::new(),
        };
        let balancer = |public_ip| super::super::network::LoadBalancerEntry {
            public_ip,
            public_port: 443,
            private_port: 443,
            algorithm: "roundrobin".into(),
            protocol: "tcp".into(),
            members: BTreeSet::from([ip("10.1.1.10")]),
            cidrs: Vec::new(),
        };
        let mut kept_rules = Vec::new();
        for address in [kept, released] {
            let (pf, fw, lb) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
            net(
                &sim,
                NetworkAction::AddPortForward {
                    router_id,
                    rule_id: pf,
                    entry: forward(address),
                },
            )
            .await
            .unwrap();
            net(
                &sim,
                NetworkAction::AddFirewallRule {
                    router_id,
                    rule_id: fw,
                    entry: firewall(address),
                },
            )
            .await
            .unwrap();
            net(
                &sim,
                NetworkAction::ConfigureLoadBalancer {
                    router_id,
                    rule_id: lb,
                    entry: balancer(address),
                },
            )
            .await
            .unwrap();
            if address == kept {
                kept_rules = vec![pf, fw, lb];
            }
        }
        net(
            &sim,
            NetworkAction::EnableVpn {
                router_id,
                entry: super::super::network::VpnEntry {
                    public_ip: released,
                    ip_range: "10.1.2.1-10.1.2.8".into(),
                },
                users: BTreeSet::from(["alice".to_owned()]),
            },
        )
        .await
        .unwrap();
        net(
            &sim,
            NetworkAction::ReleaseIp {
                router_id,
                address: released,
            },
        )
        .await
        .unwrap();
        let config = sim.router_config(router_id).unwrap();
        assert_eq!(
            config.public_ips.keys().copied().collect::<Vec<_>>(),
            [kept]
        );
        assert_eq!(
            config.port_forwards.keys().copied().collect::<Vec<_>>(),
            [kept_rules[0]]
        );
        assert_eq!(
            config.firewall.keys().copied().collect::<Vec<_>>(),
            [kept_rules[1]]
        );
        assert_eq!(
            config.load_balancers.keys().copied().collect::<Vec<_>>(),
            [kept_rules[2]]
        );
        assert_eq!(config.vpn, None);
        assert!(config.vpn_users.is_empty());
        assert_eq!(config.dhcp.len(), 1);
        // Releasing it again succeeds and changes nothing.
        net(
            &sim,
            NetworkAction::ReleaseIp {
                router_id,
                address: released,
            },
        )
        .await
        .unwrap();
        assert_eq!(sim.router_config(router_id), Some(config));
    }

    #[tokio::test]
    async fn reboot_resets_counters_and_stop_freezes_them() {
        let sim = Simulator::new(SimulatorConfig::default());
        assert!(sim.read_router_counters(1000).is_empty());
        // One DHCP entry: twice the traffic of an empty router.
        let busy = started_router(&sim, router_config("192.0.2.1", 1)).await;
        let idle = started_router(&sim, RouterConfig::default()).await;
        let reading = |readings: Vec<RouterCounters>, id: Uuid| {
            readings
                .into_iter()
                .find(|c| c.router_id == id)
                .map(|c| (c.bytes_sent, c.bytes_received))
        };
        let first = sim.read_router_counters(1000);
        assert_eq!(reading(first.clone(), busy), Some((20_000, 50_000)));
        assert_eq!(reading(first, idle), Some((10_000, 25_000)));
        assert_eq!(
            reading(sim.read_router_counters(100), busy),
            Some((22_000, 55_000))
        );

        net(&sim, NetworkAction::RebootRouter { router_id: busy })
            .await
            .unwrap();
        assert_eq!(sim.router_running(busy), Some(true));
        assert_eq!(sim.router_config(busy), Some(router_config("192.0.2.1", 1)));
        assert_eq!(reading(sim.read_router_counters(0), busy), Some((0, 0)));

        // Stopped: not reported, keeps its configuration, and its counters do not grow.
        assert_eq!(
            reading(sim.read_router_counters(500), busy),
            Some((10_000, 25_000))
        );
        net(&sim, NetworkAction::StopRouter { router_id: busy })
            .await
            .unwrap();
        assert_eq!(sim.router_running(busy), Some(false));
        assert_eq!(reading(sim.read_router_counters(60_000), busy), None);
        assert_eq!(sim.router_config(busy), Some(router_config("192.0.2.1", 1)));
        // A new start replaces the configuration and counts from zero.
        net(
            &sim,
            NetworkAction::StartRouter {
                router_id: busy,
                config: RouterConfig::default(),
            },
        )
        .await
        .unwrap();
        assert_eq!(sim.router_config(busy), Some(RouterConfig::default()));
        assert_eq!(reading(sim.read_router_counters(0), busy), Some((0, 0)));
        // Adopted routers run and count from zero.
        let adopted = Uuid::new_v4();
        sim.adopt_router(adopted, RouterConfig::default(), true);
        assert_eq!(
            reading(sim.read_router_counters(1), adopted),
            Some((10, 25))
        );
    }

    #[tokio::test]
    async fn unknown_router_fails_but_removals_succeed() {
        let sim = Simulator::new(SimulatorConfig::default());
        let router_id = Uuid::new_v4();
        let err = net(
            &sim,
            NetworkAction::AssociateIp {
                router_id,
                address: ip("192.0.2.1"),
                source_nat: true,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err, DriverError::UnknownRouter(router_id));
        assert_eq!(
            err.to_string(),
            format!("router {router_id} is not known to the simulator")
        );
        assert_eq!(
            net(&sim, NetworkAction::RebootRouter { router_id }).await,
            Err(DriverError::UnknownRouter(router_id))
        );
        for removal in [
            NetworkAction::ReleaseIp {
                router_id,
                address: ip("192.0.2.1"),
            },
            NetworkAction::RemovePortForward {
                router_id,
                rule_id: Uuid::new_v4(),
            },
            NetworkAction::RemoveFirewallRule {
                router_id,
                rule_id: Uuid::new_v4(),
            },
            NetworkAction::RemoveLoadBalancer {
                router_id,
                rule_id: Uuid::new_v4(),
            },
            NetworkAction::RemoveDhcpEntry {
                router_id,
                mac: "02:00:00:00:00:01".into(),
            },
            NetworkAction::DisableVpn { router_id },
            NetworkAction::StopRouter { router_id },
            NetworkAction::DestroyRouter { router_id },
        ] {
            net(&sim, removal).await.unwrap();
        }
        assert!(sim.routers().is_empty());
        assert_eq!(sim.router_config(router_id), None);
        assert_eq!(sim.router_running(router_id), None);

        // After a destroy the router is unknown again.
        let router_id = started_router(&sim, RouterConfig::default()).await;
        net(&sim, NetworkAction::DestroyRouter { router_id })
            .await
            .unwrap();
        assert_eq!(sim.router_config(router_id), None);
        assert!(matches!(
            net(
                &sim,
                NetworkAction::EnableVpn {
                    router_id,
                    entry: super::super::network::VpnEntry {
                        public_ip: ip("192.0.2.1"),
                        ip_range: "10.1.2.1-10.1.2.8".into(),
                    },
                    users: BTreeSet::new(),
                },
            )
            .await,
            Err(DriverError::UnknownRouter(id)) if id == router_id
        ));
        // VPN users go to the listed routers that exist.
        let known = started_router(&sim, RouterConfig::default()).await;
        net(
            &sim,
            NetworkAction::AddVpnUser {
                router_ids: BTreeSet::from([known, router_id]),
                username: "bob".into(),
            },
        )
        .await
        .unwrap();
        assert!(sim.router_config(known).unwrap().vpn_users.contains("bob"));
        assert_eq!(sim.routers(), vec![known]);
    }

    #[tokio::test]
    async fn security_groups_are_created_on_first_use() {
        let sim = Simulator::new(SimulatorConfig::default());
        let (group, vm) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(sim.security_group_config(group), None);
        net(
            &sim,
            NetworkAction::JoinSecurityGroup {
                group_id: group,
                vm_id: vm,
            },
        )
        .await
        .unwrap();
        let rule = super::super::network::SecurityRuleEntry {
            rule_id: Uuid::new_v4(),
            protocol: "tcp".into(),
            start_port: Some(22),
            end_port: Some(22),
            icmp_type: None,
            icmp_code: None,
            cidr: Some("0.0.0.0/0".into()),
            source_group_id: None,
        };
        net(
            &sim,
            NetworkAction::AuthorizeSecurityGroupRules {
                group_id: group,
                direction: Direction::Ingress,
                rules: vec![rule.clone()],
            },
        )
        .await
        .unwrap();
        let config = sim.security_group_config(group).unwrap();
        assert_eq!(config.members, BTreeSet::from([vm]));
        assert_eq!(config.ingress.get(&rule.rule_id), Some(&rule));
        assert!(config.egress.is_empty());
        net(
            &sim,
            NetworkAction::RevokeSecurityGroupRules {
                group_id: group,
                direction: Direction::Ingress,
                rule_ids: vec![rule.rule_id],
            },
        )
        .await
        .unwrap();
        net(
            &sim,
            NetworkAction::LeaveSecurityGroup {
                group_id: group,
                vm_id: vm,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            sim.security_group_config(group),
            Some(SecurityGroupConfig::default())
        );
        net(&sim, NetworkAction::RemoveSecurityGroup { group_id: group })
            .await
            .unwrap();
        assert_eq!(sim.security_group_config(group), None);
        assert_eq!(sim.executed(CommandKind::SecurityGroupRules), 5);
    }
}
