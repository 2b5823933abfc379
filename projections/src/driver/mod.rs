//! The hypervisor driver layer: what the orchestrator asks a hypervisor to do, and what it answers.
//!
//! The orchestrator decides (through events) what should happen to VMs and volumes; a
//! [`HypervisorDriver`] makes it happen on a hypervisor and reports success or why not. Every
//! command carries the id of the event that caused it (DESIGN.md invariant 5), so replaying that
//! event after a crash or a rebuild sends the same command again and the driver answers its first
//! outcome instead of acting twice.
//!
//! Only [`simulator::Simulator`] exists today: an in-process hypervisor with failure injection
//! and latency (CloudStack's `configureSimulator`), used by the API in place of real hosts.

pub mod network;
pub mod simulator;

use futures::future::BoxFuture;
use uuid::Uuid;

pub use network::{NetworkAction, NetworkDriver, RouterConfig, SecurityGroupConfig};
pub use simulator::{Simulator, SimulatorConfig};

/// What kind of command: failure injection and latency are configured per kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum CommandKind {
    /// Boot a VM on a host.
    StartVm,
    /// Shut a VM down.
    StopVm,
    /// Restart a running VM in place.
    RebootVm,
    /// Remove a VM from the hypervisor for good.
    DestroyVm,
    /// Live-migrate a running VM to another host.
    MigrateVm,
    /// Change a running VM's CPU and memory.
    ScaleVm,
    /// Plug a volume into a VM.
    AttachVolume,
    /// Unplug a volume from a VM.
    DetachVolume,
    /// Grow (or shrink) a volume.
    ResizeVolume,
    /// Snapshot one volume.
    TakeSnapshot,
    /// Snapshot a whole VM (disks, and memory where supported).
    TakeVmSnapshot,
    /// Return a VM to one of its VM snapshots.
    RevertToVmSnapshot,
    /// Delete a VM snapshot.
    DeleteVmSnapshot,
    /// Boot a virtual router with its configuration.
    StartRouter,
    /// Shut a virtual router down.
    StopRouter,
    /// Restart a virtual router in place.
    RebootRouter,
    /// Remove a virtual router.
    DestroyRouter,
    /// Plumb or unplumb a public IP.
    IpAssoc,
    /// One-to-one NAT.
    StaticNat,
    /// Port and IP forwarding rules.
    PortForwarding,
    /// Ingress and egress firewall rules.
    Firewall,
    /// Load balancer configuration.
    LoadBalancer,
    /// DHCP/DNS entries of VM NICs.
    DhcpEntry,
    /// Remote access VPN on or off.
    RemoteAccessVpn,
    /// VPN users.
    VpnUsers,
    /// Security group rules on the hosts.
    SecurityGroupRules,
}

impl CommandKind {
    /// Every kind, in declaration order (for listing the simulator's configuration).
    pub const ALL: [CommandKind; 26] = [
        CommandKind::StartVm,
        CommandKind::StopVm,
        CommandKind::RebootVm,
        CommandKind::DestroyVm,
        CommandKind::MigrateVm,
        CommandKind::ScaleVm,
        CommandKind::AttachVolume,
        CommandKind::DetachVolume,
        CommandKind::ResizeVolume,
        CommandKind::TakeSnapshot,
        CommandKind::TakeVmSnapshot,
        CommandKind::RevertToVmSnapshot,
        CommandKind::DeleteVmSnapshot,
        CommandKind::StartRouter,
        CommandKind::StopRouter,
        CommandKind::RebootRouter,
        CommandKind::DestroyRouter,
        CommandKind::IpAssoc,
        CommandKind::StaticNat,
        CommandKind::PortForwarding,
        CommandKind::Firewall,
        CommandKind::LoadBalancer,
        CommandKind::DhcpEntry,
        CommandKind::RemoteAccessVpn,
        CommandKind::VpnUsers,
        CommandKind::SecurityGroupRules,
    ];

    /// CloudStack's agent command name, as its simulator's `configureSimulator name=` uses it,
    /// so scripts written against CloudStack's simulator configure the same failures here.
    /// Note CloudStack's spelling "DettachCommand" for [`CommandKind::DetachVolume`].
    pub fn agent_name(self) -> &'static str {
        match self {
            CommandKind::StartVm => "StartCommand",
            CommandKind::StopVm => "StopCommand",
            CommandKind::RebootVm => "RebootCommand",
            CommandKind::DestroyVm => "DestroyCommand",
            CommandKind::MigrateVm => "MigrateCommand",
            CommandKind::ScaleVm => "ScaleVmCommand",
            CommandKind::AttachVolume => "AttachCommand",
            CommandKind::DetachVolume => "DettachCommand",
            CommandKind::ResizeVolume => "ResizeVolumeCommand",
            CommandKind::TakeSnapshot => "CreateSnapshotCommand",
            CommandKind::TakeVmSnapshot => "CreateVMSnapshotCommand",
            CommandKind::RevertToVmSnapshot => "RevertToVMSnapshotCommand",
            CommandKind::DeleteVmSnapshot => "DeleteVMSnapshotCommand",
            // CloudStack sends routers the hypervisor's StartCommand & co.; distinct names let
            // `configureSimulator` fail a router without failing VMs.
            CommandKind::StartRouter => "StartRouterCommand",
            CommandKind::StopRouter => "StopRouterCommand",
            CommandKind::RebootRouter => "RebootRouterCommand",
            CommandKind::DestroyRouter => "DestroyRouterCommand",
            CommandKind::IpAssoc => "IpAssocCommand",
            CommandKind::StaticNat => "SetStaticNatRulesCommand",
            CommandKind::PortForwarding => "SetPortForwardingRulesCommand",
            CommandKind::Firewall => "SetFirewallRulesCommand",
            CommandKind::LoadBalancer => "LoadBalancerConfigCommand",
            CommandKind::DhcpEntry => "DhcpEntryCommand",
            CommandKind::RemoteAccessVpn => "RemoteAccessVpnCfgCommand",
            CommandKind::VpnUsers => "VpnUsersCfgCommand",
            CommandKind::SecurityGroupRules => "SecurityGroupRulesCmd",
        }
    }

    /// Parses an agent name case-insensitively; also accepts the correct spelling
    /// "DetachCommand", which users type when they do not know CloudStack's.
    pub fn from_agent_name(name: &str) -> Option<CommandKind> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("DetachCommand") {
            return Some(CommandKind::DetachVolume);
        }
        CommandKind::ALL
            .into_iter()
            .find(|kind| kind.agent_name().eq_ignore_ascii_case(name))
    }
}

/// One command to the hypervisor. `id` is the id of the event that caused it (DESIGN invariant 5):
/// the driver treats a repeated id as already done and answers the first outcome again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriverCommand {
    /// The causing event's id, the command's idempotency key.
    pub id: Uuid,
    /// What to do.
    pub action: DriverAction,
}

/// What a [`DriverCommand`] asks the hypervisor to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DriverAction {
    /// Boot a VM with these resources and disks.
    StartVm {
        /// The VM.
        vm_id: Uuid,
        /// The host placement chose.
        host_id: Uuid,
        /// Virtual CPUs.
        cpu_number: u32,
        /// MHz per virtual CPU.
        cpu_speed: u32,
        /// Memory in MiB.
        memory_mib: u64,
        /// The VM's volumes (root first), whose disk counters start being reported.
        volume_ids: Vec<Uuid>,
    },
    /// Shut a VM down; stopping a VM that is not running succeeds.
    StopVm {
        /// The VM.
        vm_id: Uuid,
        /// The host it runs on.
        host_id: Uuid,
        /// Power off rather than ask the guest to shut down.
        forced: bool,
    },
    /// Restart a running VM on its host.
    RebootVm {
        /// The VM.
        vm_id: Uuid,
        /// The host it runs on.
        host_id: Uuid,
    },
    /// Remove a VM; stops it first if it runs.
    DestroyVm {
        /// The VM.
        vm_id: Uuid,
        /// The host it last ran on, if any (a VM never started has none).
        host_id: Option<Uuid>,
    },
    /// Move a running VM to another host.
    MigrateVm {
        /// The VM.
        vm_id: Uuid,
        /// Where it runs now.
        from_host_id: Uuid,
        /// Where it should run.
        to_host_id: Uuid,
    },
    /// Change a running VM's resources on its host.
    ScaleVm {
        /// The VM.
        vm_id: Uuid,
        /// The host it runs on.
        host_id: Uuid,
        /// New number of virtual CPUs.
        cpu_number: u32,
        /// New MHz per virtual CPU.
        cpu_speed: u32,
        /// New memory in MiB.
        memory_mib: u64,
    },
    /// Plug a volume into a VM (a no-op on the hypervisor while the VM is stopped: the volume is
    /// then passed with the next [`DriverAction::StartVm`]).
    AttachVolume {
        /// The volume.
        volume_id: Uuid,
        /// The VM.
        vm_id: Uuid,
        /// The VM's host, when it runs.
        host_id: Option<Uuid>,
    },
    /// Unplug a volume from a VM.
    DetachVolume {
        /// The volume.
        volume_id: Uuid,
        /// The VM.
        vm_id: Uuid,
        /// The VM's host, when it runs.
        host_id: Option<Uuid>,
    },
    /// Change a volume's size.
    ResizeVolume {
        /// The volume.
        volume_id: Uuid,
        /// New size in bytes.
        new_size: u64,
    },
    /// Snapshot one volume.
    TakeSnapshot {
        /// The snapshot being created.
        snapshot_id: Uuid,
        /// The volume.
        volume_id: Uuid,
    },
    /// Snapshot a whole VM.
    TakeVmSnapshot {
        /// The VM snapshot being created.
        vm_snapshot_id: Uuid,
        /// The VM.
        vm_id: Uuid,
    },
    /// Return a VM to a VM snapshot.
    RevertToVmSnapshot {
        /// The VM snapshot.
        vm_snapshot_id: Uuid,
        /// The VM.
        vm_id: Uuid,
    },
    /// Delete a VM snapshot.
    DeleteVmSnapshot {
        /// The VM snapshot.
        vm_snapshot_id: Uuid,
        /// The VM.
        vm_id: Uuid,
    },
    /// A change to a virtual router or security group, run by the [`NetworkDriver`].
    Network(NetworkAction),
}

impl DriverAction {
    /// The kind, which selects the failure injection and latency that apply.
    pub fn kind(&self) -> CommandKind {
        match self {
            DriverAction::StartVm { .. } => CommandKind::StartVm,
            DriverAction::StopVm { .. } => CommandKind::StopVm,
            DriverAction::RebootVm { .. } => CommandKind::RebootVm,
            DriverAction::DestroyVm { .. } => CommandKind::DestroyVm,
            DriverAction::MigrateVm { .. } => CommandKind::MigrateVm,
            DriverAction::ScaleVm { .. } => CommandKind::ScaleVm,
            DriverAction::AttachVolume { .. } => CommandKind::AttachVolume,
            DriverAction::DetachVolume { .. } => CommandKind::DetachVolume,
            DriverAction::ResizeVolume { .. } => CommandKind::ResizeVolume,
            DriverAction::TakeSnapshot { .. } => CommandKind::TakeSnapshot,
            DriverAction::TakeVmSnapshot { .. } => CommandKind::TakeVmSnapshot,
            DriverAction::RevertToVmSnapshot { .. } => CommandKind::RevertToVmSnapshot,
            DriverAction::DeleteVmSnapshot { .. } => CommandKind::DeleteVmSnapshot,
            DriverAction::Network(action) => action.kind(),
        }
    }
}

/// Why a command failed: the text becomes the failed async job's `errortext`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Failure injection (`configureSimulator`), e.g. "Simulated failure of StartCommand
    /// (injected by configureSimulator)".
    #[error("{0}")]
    Injected(String),
    /// The host cannot fit the VM. Placement upstream should prevent this; the driver checks
    /// again as defense in depth (two decisions racing on stale read models).
    #[error(
        "host {host_id} has not enough capacity: needs {needed_cpu_mhz} MHz and {needed_memory_mib} MiB, \
         has {free_cpu_mhz} MHz and {free_memory_mib} MiB free"
    )]
    NoCapacity {
        /// The host.
        host_id: Uuid,
        /// CPU the VM needs (`cpu_number * cpu_speed`).
        needed_cpu_mhz: u64,
        /// Memory the VM needs.
        needed_memory_mib: u64,
        /// CPU left on the host (not counting the VM itself when it already runs there).
        free_cpu_mhz: u64,
        /// Memory left on the host (not counting the VM itself when it already runs there).
        free_memory_mib: u64,
    },
    /// The host was never registered with [`HypervisorDriver::add_host`].
    #[error("host {0} is not known to the simulator")]
    UnknownHost(Uuid),
    /// The command needs a running VM and this one is not.
    #[error("vm {0} is not running on the simulator")]
    NotRunning(Uuid),
    /// A network action named a router the driver never started or adopted (or has
    /// destroyed). Removals are not refused: what they remove is absent anyway.
    #[error("router {0} is not known to the simulator")]
    UnknownRouter(Uuid),
}

/// A host the driver manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedHost {
    /// The host.
    pub host_id: Uuid,
    /// Physical CPU cores.
    pub cpu_number: u32,
    /// MHz per core.
    pub cpu_speed: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// One reading of a volume's monotonic disk counters (becomes a VOLUME.STATS event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCounters {
    /// The volume.
    pub volume_id: Uuid,
    /// The running VM it is attached to.
    pub vm_id: Uuid,
    /// Read operations since the driver started.
    pub io_read: u64,
    /// Write operations since the driver started.
    pub io_write: u64,
    /// Bytes read since the driver started.
    pub bytes_read: u64,
    /// Bytes written since the driver started.
    pub bytes_write: u64,
}

/// The hypervisor as the orchestrator sees it. Object-safe (used as `Arc<dyn HypervisorDriver>`).
pub trait HypervisorDriver: Send + Sync + 'static {
    /// Registers (or updates the capacity of) a host. Idempotent.
    fn add_host(&self, host: SimulatedHost);
    /// Takes over a VM that already runs (a `StartVm` that the log says succeeded before this
    /// driver was created, such as before a server restart), without acting or checking.
    fn adopt_vm(&self, running: DriverAction);
    /// Runs one command; the same `command.id` again returns the first outcome without acting again.
    fn execute(&self, command: DriverCommand) -> BoxFuture<'static, Result<(), DriverError>>;
    /// Current counters of every volume attached to a VM the driver runs; `elapsed_ms` is how much
    /// (server-clock) time passed since the previous reading, so counters grow with running time
    /// even on a manual clock. Volumes of stopped VMs are not reported.
    fn read_disk_counters(&self, elapsed_ms: u64) -> Vec<DiskCounters>;
    /// Name shown as the hypervisor type, "Simulator".
    fn hypervisor(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_round_trip() {
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::from_agent_name(kind.agent_name()), Some(kind));
            assert_eq!(
                CommandKind::from_agent_name(&kind.agent_name().to_ascii_lowercase()),
                Some(kind)
            );
        }
        assert_eq!(
            CommandKind::from_agent_name("DetachCommand"),
            Some(CommandKind::DetachVolume)
        );
        assert_eq!(
            CommandKind::from_agent_name("dettachcommand"),
            Some(CommandKind::DetachVolume)
        );
        assert_eq!(CommandKind::from_agent_name("NoSuchCommand"), None);
    }

    #[test]
    fn error_texts() {
        let msg = DriverError::Injected(
            "Simulated failure of StartCommand (injected by configureSimulator)".into(),
        )
        .to_string();
        assert_eq!(
            msg,
            "Simulated failure of StartCommand (injected by configureSimulator)"
        );
        let host = Uuid::nil();
        let msg = DriverError::NoCapacity {
            host_id: host,
            needed_cpu_mhz: 2000,
            needed_memory_mib: 1024,
            free_cpu_mhz: 1000,
            free_memory_mib: 512,
        }
        .to_string();
        assert!(msg.starts_with(&format!("host {host} has not enough capacity: ")));
    }
}
