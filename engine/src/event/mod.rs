//! Typed events: every event family Ledgerstack emits, named on the wire exactly as CloudStack
//! names them (`VM.START`, `NET.IPASSIGN`, ...), plus the envelope they travel in.
//!
//! The table below is the single source of truth. Each line gives an event type's stable numeric
//! code (family byte, variant byte: stored on disk, never reused), its wire name and its payload.
//! Each family carries a schema version recorded with every event; see `docs/events.md` for the
//! rules on evolving them.

pub mod billing;
mod catalogue;
pub mod chain;
pub(crate) mod codec;
pub mod common;
mod envelope;
pub mod identity;
pub mod infrastructure;
pub mod json;
pub mod network;
pub mod operations;
pub mod services;
pub mod storage;
mod upcast;
pub mod vm;

#[cfg(test)]
pub(crate) mod samples;

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

pub use envelope::{
    Actor, ChainHash, Envelope, EventState, Level, NewEvent, Position, RecordedEvent, StreamId,
    StreamIdError,
};

use billing::*;
use catalogue::event_catalogue;
use identity::*;
use infrastructure::*;
use network::*;
use operations::*;
use services::*;
use storage::*;
use vm::*;

event_catalogue! {
    /// Virtual machines.
    family Vm(VmEvent) = 1, schema 1 {
        /// A VM was deployed.
        Create = 1, "VM.CREATE" => VmCreated;
        /// A VM was destroyed.
        Destroy = 2, "VM.DESTROY" => VmDestroyed;
        /// A VM was started.
        Start = 3, "VM.START" => VmStarted;
        /// A VM was stopped.
        Stop = 4, "VM.STOP" => VmStopped;
        /// A VM was rebooted.
        Reboot = 5, "VM.REBOOT" => VmLifecycle;
        /// A VM's attributes changed.
        Update = 6, "VM.UPDATE" => VmUpdated;
        /// A stopped VM's offering changed.
        Upgrade = 7, "VM.UPGRADE" => VmOfferingChanged;
        /// A running VM was scaled.
        DynamicScale = 8, "VM.DYNAMIC.SCALE" => VmOfferingChanged;
        /// A VM's password was reset.
        ResetPassword = 9, "VM.RESETPASSWORD" => VmLifecycle;
        /// A VM's SSH keys were reset.
        ResetSshKey = 10, "VM.RESETSSHKEY" => VmSshKeyReset;
        /// A VM moved to another host.
        Migrate = 11, "VM.MIGRATE" => VmMigrated;
        /// A VM moved to another account.
        Move = 12, "VM.MOVE" => VmMoved;
        /// A VM's root disk was restored from a template.
        Restore = 13, "VM.RESTORE" => VmRestored;
        /// A destroyed VM was removed for good.
        Expunge = 14, "VM.EXPUNGE" => VmLifecycle;
        /// A destroyed VM was recovered.
        Recover = 15, "VM.RECOVER" => VmLifecycle;
    }

    /// Virtual routers, and their network counter readings.
    family Router(RouterEvent) = 2, schema 1 {
        /// A router was created.
        Create = 1, "ROUTER.CREATE" => RouterLifecycle;
        /// A router was destroyed.
        Destroy = 2, "ROUTER.DESTROY" => RouterLifecycle;
        /// A router was started.
        Start = 3, "ROUTER.START" => RouterLifecycle;
        /// A router was stopped.
        Stop = 4, "ROUTER.STOP" => RouterLifecycle;
        /// A router was rebooted.
        Reboot = 5, "ROUTER.REBOOT" => RouterLifecycle;
        /// A router was restarted by HA.
        Ha = 6, "ROUTER.HA" => RouterLifecycle;
        /// A router was upgraded.
        Upgrade = 7, "ROUTER.UPGRADE" => RouterLifecycle;
        /// A reading of a router's network byte counters (Ledgerstack).
        Stats = 8, "ROUTER.STATS" => NetworkCounterReading;
    }

    /// Public IPs and port/IP forwarding rules.
    family Net(NetEvent) = 3, schema 1 {
        /// A public IP was acquired.
        IpAssign = 1, "NET.IPASSIGN" => IpAddressFacts;
        /// A public IP was released.
        IpRelease = 2, "NET.IPRELEASE" => IpAddressFacts;
        /// A forwarding rule was added.
        RuleAdd = 3, "NET.RULEADD" => NetworkRule;
        /// A forwarding rule was deleted.
        RuleDelete = 4, "NET.RULEDELETE" => NetworkRule;
        /// A forwarding rule was changed.
        RuleModify = 5, "NET.RULEMODIFY" => NetworkRule;
    }

    /// Guest networks.
    family Network(NetworkEvent) = 4, schema 1 {
        /// A network was created.
        Create = 1, "NETWORK.CREATE" => NetworkLifecycle;
        /// A network was deleted.
        Delete = 2, "NETWORK.DELETE" => NetworkLifecycle;
        /// A network was changed.
        Update = 3, "NETWORK.UPDATE" => NetworkLifecycle;
        /// A network was restarted.
        Restart = 4, "NETWORK.RESTART" => NetworkRestarted;
    }

    /// Ingress and egress firewall rules.
    family Firewall(FirewallEvent) = 5, schema 1 {
        /// An ingress rule was added.
        Open = 1, "FIREWALL.OPEN" => FirewallRuleFacts;
        /// An ingress rule was removed.
        Close = 2, "FIREWALL.CLOSE" => FirewallRuleFacts;
        /// An egress rule was added.
        EgressOpen = 3, "FIREWALL.EGRESS.OPEN" => FirewallRuleFacts;
        /// An egress rule was removed.
        EgressClose = 4, "FIREWALL.EGRESS.CLOSE" => FirewallRuleFacts;
    }

    /// VM network interfaces.
    family Nic(NicEvent) = 6, schema 1 {
        /// A NIC was added to a VM.
        Create = 1, "NIC.CREATE" => NicFacts;
        /// A NIC was removed from a VM.
        Delete = 2, "NIC.DELETE" => NicFacts;
        /// A NIC changed (such as becoming the default).
        Update = 3, "NIC.UPDATE" => NicFacts;
    }

    /// One-to-one NAT.
    family StaticNat(StaticNatEvent) = 7, schema 1 {
        /// Static NAT was enabled.
        Enable = 1, "STATICNAT.ENABLE" => StaticNatFacts;
        /// Static NAT was disabled.
        Disable = 2, "STATICNAT.DISABLE" => StaticNatFacts;
    }

    /// Public and shared-network address ranges.
    family Vlan(VlanEvent) = 8, schema 1 {
        /// A range was added.
        IpRangeCreate = 1, "VLAN.IP.RANGE.CREATE" => VlanIpRangeFacts;
        /// A range was removed.
        IpRangeDelete = 2, "VLAN.IP.RANGE.DELETE" => VlanIpRangeFacts;
    }

    /// Network offerings, and VM NICs joining networks of an offering.
    family NetworkOffering(NetworkOfferingEvent) = 9, schema 1 {
        /// An offering was created.
        Create = 1, "NETWORK.OFFERING.CREATE" => NetworkOfferingFacts;
        /// A VM NIC joined a network of the offering.
        Assign = 2, "NETWORK.OFFERING.ASSIGN" => NetworkOfferingAssignment;
        /// An offering was changed.
        Edit = 3, "NETWORK.OFFERING.EDIT" => NetworkOfferingFacts;
        /// A VM NIC left a network of the offering.
        Remove = 4, "NETWORK.OFFERING.REMOVE" => NetworkOfferingAssignment;
        /// An offering was deleted.
        Delete = 5, "NETWORK.OFFERING.DELETE" => NetworkOfferingFacts;
    }

    /// Load balancer rules and their policies.
    family LoadBalancer(LoadBalancerEvent) = 10, schema 1 {
        /// VMs were added to a rule.
        AssignToRule = 1, "LB.ASSIGN.TO.RULE" => LoadBalancerMembers;
        /// VMs were removed from a rule.
        RemoveFromRule = 2, "LB.REMOVE.FROM.RULE" => LoadBalancerMembers;
        /// A rule was created.
        Create = 3, "LB.CREATE" => LoadBalancerFacts;
        /// A rule was deleted.
        Delete = 4, "LB.DELETE" => LoadBalancerFacts;
        /// A stickiness policy was created.
        StickinessPolicyCreate = 5, "LB.STICKINESSPOLICY.CREATE" => LoadBalancerPolicy;
        /// A stickiness policy was deleted.
        StickinessPolicyDelete = 6, "LB.STICKINESSPOLICY.DELETE" => LoadBalancerPolicy;
        /// A health check policy was created.
        HealthCheckPolicyCreate = 7, "LB.HEALTHCHECKPOLICY.CREATE" => LoadBalancerPolicy;
        /// A health check policy was deleted.
        HealthCheckPolicyDelete = 8, "LB.HEALTHCHECKPOLICY.DELETE" => LoadBalancerPolicy;
        /// A rule was changed.
        Update = 9, "LB.UPDATE" => LoadBalancerFacts;
    }

    /// Remote access VPNs and their users.
    family Vpn(VpnEvent) = 11, schema 1 {
        /// A remote access VPN was created.
        RemoteAccessCreate = 1, "VPN.REMOTE.ACCESS.CREATE" => RemoteAccessVpnFacts;
        /// A remote access VPN was destroyed.
        RemoteAccessDestroy = 2, "VPN.REMOTE.ACCESS.DESTROY" => RemoteAccessVpnFacts;
        /// A VPN user was added.
        UserAdd = 3, "VPN.USER.ADD" => VpnUserFacts;
        /// A VPN user was removed.
        UserRemove = 4, "VPN.USER.REMOVE" => VpnUserFacts;
    }

    /// Security groups.
    family SecurityGroup(SecurityGroupEvent) = 12, schema 1 {
        /// Ingress rules were authorized.
        AuthIngress = 1, "SG.AUTH.INGRESS" => SecurityGroupRules;
        /// Ingress rules were revoked.
        RevokeIngress = 2, "SG.REVOKE.INGRESS" => SecurityGroupRules;
        /// Egress rules were authorized.
        AuthEgress = 3, "SG.AUTH.EGRESS" => SecurityGroupRules;
        /// Egress rules were revoked.
        RevokeEgress = 4, "SG.REVOKE.EGRESS" => SecurityGroupRules;
        /// A group was created.
        Create = 5, "SG.CREATE" => SecurityGroupFacts;
        /// A group was deleted.
        Delete = 6, "SG.DELETE" => SecurityGroupFacts;
        /// A VM joined a group.
        Assign = 7, "SG.ASSIGN" => SecurityGroupMembership;
        /// A VM left a group.
        Remove = 8, "SG.REMOVE" => SecurityGroupMembership;
    }

    /// Virtual private clouds.
    family Vpc(VpcEvent) = 13, schema 1 {
        /// A VPC was created.
        Create = 1, "VPC.CREATE" => VpcFacts;
        /// A VPC was changed.
        Update = 2, "VPC.UPDATE" => VpcFacts;
        /// A VPC was deleted.
        Delete = 3, "VPC.DELETE" => VpcFacts;
        /// A VPC was restarted.
        Restart = 4, "VPC.RESTART" => VpcFacts;
    }

    /// VPC offerings.
    family VpcOffering(VpcOfferingEvent) = 14, schema 1 {
        /// An offering was created.
        Create = 1, "VPC.OFFERING.CREATE" => VpcOfferingFacts;
        /// An offering was changed.
        Update = 2, "VPC.OFFERING.UPDATE" => VpcOfferingFacts;
        /// An offering was deleted.
        Delete = 3, "VPC.OFFERING.DELETE" => VpcOfferingFacts;
    }

    /// Volumes, and their disk counter readings.
    family Volume(VolumeEvent) = 15, schema 1 {
        /// A volume was created.
        Create = 1, "VOLUME.CREATE" => VolumeCreated;
        /// A volume was deleted.
        Delete = 2, "VOLUME.DELETE" => VolumeLifecycle;
        /// A volume was attached to a VM.
        Attach = 3, "VOLUME.ATTACH" => VolumeAttachment;
        /// A volume was detached from a VM.
        Detach = 4, "VOLUME.DETACH" => VolumeAttachment;
        /// A volume was extracted for download.
        Extract = 5, "VOLUME.EXTRACT" => VolumeLifecycle;
        /// A volume was uploaded to secondary storage.
        Upload = 6, "VOLUME.UPLOAD" => VolumeUploaded;
        /// A volume moved to another storage pool.
        Migrate = 7, "VOLUME.MIGRATE" => VolumeLifecycle;
        /// A volume was resized.
        Resize = 8, "VOLUME.RESIZE" => VolumeResized;
        /// A reading of a volume's disk counters (Ledgerstack).
        Stats = 9, "VOLUME.STATS" => VolumeCounterReading;
    }

    /// Volume snapshots.
    family Snapshot(SnapshotEvent) = 16, schema 1 {
        /// A snapshot was taken.
        Create = 1, "SNAPSHOT.CREATE" => SnapshotLifecycle;
        /// A snapshot was deleted.
        Delete = 2, "SNAPSHOT.DELETE" => SnapshotLifecycle;
        /// A volume was reverted to a snapshot.
        Revert = 3, "SNAPSHOT.REVERT" => SnapshotLifecycle;
    }

    /// Recurring snapshot policies.
    family SnapshotPolicy(SnapshotPolicyEvent) = 17, schema 1 {
        /// A policy was created.
        Create = 1, "SNAPSHOTPOLICY.CREATE" => SnapshotPolicyFacts;
        /// A policy was changed.
        Update = 2, "SNAPSHOTPOLICY.UPDATE" => SnapshotPolicyFacts;
        /// A policy was deleted.
        Delete = 3, "SNAPSHOTPOLICY.DELETE" => SnapshotPolicyFacts;
    }

    /// VM snapshots.
    family VmSnapshot(VmSnapshotEvent) = 18, schema 1 {
        /// A VM snapshot was taken.
        Create = 1, "VMSNAPSHOT.CREATE" => VmSnapshotLifecycle;
        /// A VM snapshot was deleted.
        Delete = 2, "VMSNAPSHOT.DELETE" => VmSnapshotLifecycle;
        /// A VM was reverted to a VM snapshot.
        RevertTo = 3, "VMSNAPSHOT.REVERTTO" => VmSnapshotLifecycle;
        /// A VM snapshot started occupying primary storage.
        OnPrimary = 4, "VMSNAPSHOT.ON_PRIMARY" => VmSnapshotLifecycle;
        /// A VM snapshot stopped occupying primary storage.
        OffPrimary = 5, "VMSNAPSHOT.OFF_PRIMARY" => VmSnapshotLifecycle;
    }

    /// Templates.
    family Template(TemplateEvent) = 19, schema 1 {
        /// A template was registered or created.
        Create = 1, "TEMPLATE.CREATE" => TemplateLifecycle;
        /// A template was deleted.
        Delete = 2, "TEMPLATE.DELETE" => TemplateLifecycle;
        /// A template's attributes changed.
        Update = 3, "TEMPLATE.UPDATE" => TemplateLifecycle;
        /// A template download began.
        DownloadStart = 4, "TEMPLATE.DOWNLOAD.START" => TemplateLifecycle;
        /// A template download finished.
        DownloadSuccess = 5, "TEMPLATE.DOWNLOAD.SUCCESS" => TemplateLifecycle;
        /// A template download failed.
        DownloadFailed = 6, "TEMPLATE.DOWNLOAD.FAILED" => TemplateDownloadFailed;
        /// A template was copied to another zone.
        Copy = 7, "TEMPLATE.COPY" => TemplateCopied;
        /// A template was extracted for download.
        Extract = 8, "TEMPLATE.EXTRACT" => TemplateLifecycle;
        /// A template was uploaded.
        Upload = 9, "TEMPLATE.UPLOAD" => TemplateLifecycle;
        /// A template's leftovers were cleaned up.
        Cleanup = 10, "TEMPLATE.CLEANUP" => TemplateLifecycle;
    }

    /// ISOs.
    family Iso(IsoEvent) = 20, schema 1 {
        /// An ISO was registered.
        Create = 1, "ISO.CREATE" => IsoLifecycle;
        /// An ISO was deleted.
        Delete = 2, "ISO.DELETE" => IsoLifecycle;
        /// An ISO was copied to another zone.
        Copy = 3, "ISO.COPY" => IsoCopied;
        /// An ISO was attached to a VM.
        Attach = 4, "ISO.ATTACH" => IsoAttachment;
        /// An ISO was detached from a VM.
        Detach = 5, "ISO.DETACH" => IsoAttachment;
        /// An ISO was extracted for download.
        Extract = 6, "ISO.EXTRACT" => IsoLifecycle;
        /// An ISO was uploaded.
        Upload = 7, "ISO.UPLOAD" => IsoLifecycle;
    }

    /// Domains.
    family Domain(DomainEvent) = 21, schema 1 {
        /// A domain was created.
        Create = 1, "DOMAIN.CREATE" => DomainLifecycle;
        /// A domain was deleted.
        Delete = 2, "DOMAIN.DELETE" => DomainDeleted;
        /// A domain was changed.
        Update = 3, "DOMAIN.UPDATE" => DomainLifecycle;
    }

    /// Accounts.
    family Account(AccountEvent) = 22, schema 1 {
        /// An account was enabled.
        Enable = 1, "ACCOUNT.ENABLE" => AccountRef;
        /// An account was disabled or locked.
        Disable = 2, "ACCOUNT.DISABLE" => AccountDisabled;
        /// An account was created.
        Create = 3, "ACCOUNT.CREATE" => AccountCreated;
        /// An account was deleted.
        Delete = 4, "ACCOUNT.DELETE" => AccountRef;
        /// An account was changed.
        Update = 5, "ACCOUNT.UPDATE" => AccountUpdated;
        /// An account's default zone was set.
        MarkDefaultZone = 6, "ACCOUNT.MARK.DEFAULT.ZONE" => AccountDefaultZone;
    }

    /// Users.
    family User(UserEvent) = 23, schema 1 {
        /// A user logged in.
        Login = 1, "USER.LOGIN" => UserRef;
        /// A user logged out.
        Logout = 2, "USER.LOGOUT" => UserRef;
        /// A user was created.
        Create = 3, "USER.CREATE" => UserCreated;
        /// A user was deleted.
        Delete = 4, "USER.DELETE" => UserRef;
        /// A user was disabled.
        Disable = 5, "USER.DISABLE" => UserRef;
        /// A user was changed.
        Update = 6, "USER.UPDATE" => UserUpdated;
        /// A user was enabled.
        Enable = 7, "USER.ENABLE" => UserRef;
        /// A user was locked.
        Lock = 8, "USER.LOCK" => UserRef;
    }

    /// Credentials: API key pairs and SSH key pairs.
    family Register(RegisterEvent) = 24, schema 1 {
        /// A user's API key pair was (re)generated.
        UserKey = 1, "REGISTER.USER.KEY" => UserKeysRegistered;
        /// An SSH key pair was created or registered.
        SshKeyPair = 2, "REGISTER.SSH.KEYPAIR" => SshKeyPairRegistered;
    }

    /// Zones.
    family Zone(ZoneEvent) = 25, schema 1 {
        /// A zone was created.
        Create = 1, "ZONE.CREATE" => ZoneLifecycle;
        /// A zone was changed.
        Edit = 2, "ZONE.EDIT" => ZoneLifecycle;
        /// A zone was deleted.
        Delete = 3, "ZONE.DELETE" => ZoneLifecycle;
    }

    /// Pods.
    family Pod(PodEvent) = 26, schema 1 {
        /// A pod was created.
        Create = 1, "POD.CREATE" => PodLifecycle;
        /// A pod was changed.
        Edit = 2, "POD.EDIT" => PodLifecycle;
        /// A pod was deleted.
        Delete = 3, "POD.DELETE" => PodLifecycle;
    }

    /// Service (compute) offerings.
    family ServiceOffering(ServiceOfferingEvent) = 27, schema 1 {
        /// An offering was created.
        Create = 1, "SERVICE.OFFERING.CREATE" => ServiceOfferingLifecycle;
        /// An offering was changed.
        Edit = 2, "SERVICE.OFFERING.EDIT" => ServiceOfferingLifecycle;
        /// An offering was deleted.
        Delete = 3, "SERVICE.OFFERING.DELETE" => ServiceOfferingLifecycle;
    }

    /// Disk offerings.
    family DiskOffering(DiskOfferingEvent) = 28, schema 1 {
        /// An offering was created.
        Create = 1, "DISK.OFFERING.CREATE" => DiskOfferingLifecycle;
        /// An offering was changed.
        Edit = 2, "DISK.OFFERING.EDIT" => DiskOfferingLifecycle;
        /// An offering was deleted.
        Delete = 3, "DISK.OFFERING.DELETE" => DiskOfferingLifecycle;
    }

    /// Configuration settings.
    family Configuration(ConfigurationEvent) = 29, schema 1 {
        /// A setting changed.
        ValueEdit = 1, "CONFIGURATION.VALUE.EDIT" => ConfigurationChanged;
    }

    /// Resource tags.
    family Tags(TagsEvent) = 30, schema 1 {
        /// Tags were added.
        Create = 1, "CREATE_TAGS" => ResourceTags;
        /// Tags were removed.
        Delete = 2, "DELETE_TAGS" => ResourceTags;
    }

    /// Backup offerings assigned to VMs.
    family Backup(BackupEvent) = 31, schema 1 {
        /// A VM was put under a backup offering.
        OfferingAssign = 1, "BACKUP.OFFERING.ASSIGN" => BackupOfferingAssignment;
        /// A VM was taken out of its backup offering.
        OfferingRemove = 2, "BACKUP.OFFERING.REMOVE" => BackupOfferingAssignment;
    }

    /// Asynchronous job lifecycle (Ledgerstack).
    family AsyncJob(AsyncJobEvent) = 32, schema 1 {
        /// A job was accepted.
        Submit = 1, "ASYNCJOB.SUBMIT" => AsyncJobSubmitted;
        /// A job ended.
        Complete = 2, "ASYNCJOB.COMPLETE" => AsyncJobCompleted;
        /// A job began running.
        Start = 3, "ASYNCJOB.START" => AsyncJobStarted;
    }

    /// Alerts (Ledgerstack: CloudStack keeps them in a table).
    family Alert(AlertEvent) = 33, schema 1 {
        /// An alert was raised.
        Raise = 1, "ALERT.RAISE" => AlertRaised;
        /// An alert's condition cleared.
        Resolve = 2, "ALERT.RESOLVE" => AlertResolved;
        /// Alerts were archived.
        Archive = 3, "ALERT.ARCHIVE" => AlertsHidden;
        /// Alerts were deleted (hidden; the log keeps them).
        Delete = 4, "ALERT.DELETE" => AlertsHidden;
    }

    /// The event-history view (Ledgerstack: `archiveEvents` / `deleteEvents`).
    family EventHistory(EventHistoryEvent) = 34, schema 1 {
        /// Events were archived.
        Archive = 1, "EVENT.ARCHIVE" => EventsHidden;
        /// Events were deleted (hidden; the log keeps them).
        Delete = 2, "EVENT.DELETE" => EventsHidden;
    }

    /// The manual clock (Ledgerstack, `serve --clock manual`).
    family Clock(ClockEvent) = 35, schema 1 {
        /// The clock was moved forward.
        Advance = 1, "CLOCK.ADVANCE" => ClockAdvanced;
    }

    /// Hypervisor hosts and clusters.
    family Host(HostEvent) = 36, schema 1 {
        /// A host was added (`addHost`, Ledgerstack).
        Add = 1, "HOST.ADD" => HostLifecycle;
        /// A host's attributes changed (`updateHost`).
        Update = 2, "HOST.UPDATE" => HostLifecycle;
        /// A host entered maintenance (`prepareHostForMaintenance`).
        MaintenancePrepare = 3, "MAINT.PREPARE" => HostLifecycle;
        /// A host left maintenance (`cancelHostMaintenance`).
        MaintenanceCancel = 4, "MAINT.CANCEL" => HostLifecycle;
        /// A cluster was added (Ledgerstack).
        ClusterAdd = 5, "CLUSTER.ADD" => ClusterLifecycle;
    }

    /// Results of driver commands: failures, and successes of commands that carry out facts
    /// (Ledgerstack).
    family Driver(DriverEvent) = 37, schema 1 {
        /// A driver command failed.
        Failed = 1, "DRIVER.FAILED" => DriverFailed;
        /// A driver command carrying out a recorded fact succeeded.
        Applied = 2, "DRIVER.APPLIED" => DriverApplied;
    }

    /// SSH key pairs created and deleted (Ledgerstack; registering is REGISTER.SSH.KEYPAIR).
    family SshKeyPair(SshKeyPairEvent) = 38, schema 1 {
        /// A key pair was generated.
        Create = 1, "SSH.KEYPAIR.CREATE" => SshKeyPairFacts;
        /// A key pair was deleted.
        Delete = 2, "SSH.KEYPAIR.DELETE" => SshKeyPairFacts;
    }

    /// Resource limits (Ledgerstack).
    family ResourceLimit(ResourceLimitEvent) = 39, schema 1 {
        /// A limit was set.
        Update = 1, "RESOURCE.LIMIT.UPDATE" => ResourceLimitChanged;
    }

    /// Usage periods closed and records pruned (Ledgerstack): how the wall clock and usage
    /// administration reach the usage projection.
    family Usage(UsageEvent) = 40, schema 1 {
        /// Usage periods up to an instant were closed.
        Close = 1, "USAGE.CLOSE" => UsagePeriodsClosed;
        /// Published usage records older than an instant were pruned.
        Prune = 2, "USAGE.PRUNE" => UsageRecordsPruned;
    }

    /// Quota tariffs and credits (CloudStack's quota plugin keeps them in tables).
    family Quota(QuotaEvent) = 41, schema 1 {
        /// A tariff was created.
        TariffCreate = 1, "QUOTA.TARIFF.CREATE" => QuotaTariffDefined;
        /// A tariff was changed.
        TariffUpdate = 2, "QUOTA.TARIFF.UPDATE" => QuotaTariffDefined;
        /// A tariff was removed.
        TariffDelete = 3, "QUOTA.TARIFF.DELETE" => QuotaTariffRemoved;
        /// Credits were added to an account.
        Credits = 4, "QUOTA.CREDITS" => QuotaCreditsAdded;
    }

    /// Alert sinks and the delivery outbox (Ledgerstack).
    family AlertDelivery(AlertDeliveryEvent) = 42, schema 1 {
        /// A sink was configured.
        SinkCreate = 1, "ALERT.SINK.CREATE" => AlertSinkDefined;
        /// A sink was changed.
        SinkUpdate = 2, "ALERT.SINK.UPDATE" => AlertSinkDefined;
        /// A sink was removed.
        SinkDelete = 3, "ALERT.SINK.DELETE" => AlertSinkRemoved;
        /// A notification reached a sink.
        Done = 4, "ALERT.DELIVERY.DONE" => AlertDelivered;
        /// A delivery attempt failed.
        Failed = 5, "ALERT.DELIVERY.FAILED" => AlertDeliveryFailed;
    }

    /// Per-account usage thresholds (Ledgerstack).
    family UsageThreshold(UsageThresholdEvent) = 43, schema 1 {
        /// A threshold was created.
        Create = 1, "USAGE.THRESHOLD.CREATE" => UsageThresholdDefined;
        /// A threshold was changed.
        Update = 2, "USAGE.THRESHOLD.UPDATE" => UsageThresholdDefined;
        /// A threshold was removed.
        Delete = 3, "USAGE.THRESHOLD.DELETE" => UsageThresholdRemoved;
    }
}

/// One row of the event table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeInfo {
    /// Stable numeric code: family byte, variant byte.
    pub code: u16,
    /// CloudStack wire name, such as `VM.START`.
    pub name: &'static str,
    /// Rust family name, such as `Vm`.
    pub family: &'static str,
    /// Rust payload type, such as `VmStarted`.
    pub payload: &'static str,
    /// The family's current schema version.
    pub schema: u16,
}

/// An event type, such as `VM.START`. Only types in the catalogue can be constructed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(u16);

impl EventType {
    const fn compose(family: u8, variant: u8) -> EventType {
        EventType(((family as u16) << 8) | variant as u16)
    }

    /// The event type with this stable code, if the catalogue has it.
    pub fn from_code(code: u16) -> Option<EventType> {
        CATALOGUE
            .binary_search_by_key(&code, |info| info.code)
            .ok()
            .map(|_| EventType(code))
    }

    /// The event type with this CloudStack wire name, if the catalogue has it.
    ///
    /// ```
    /// use engine::event::EventType;
    /// assert_eq!(EventType::from_name("VM.START").unwrap().name(), "VM.START");
    /// assert!(EventType::from_name("VM.NAP").is_none());
    /// ```
    pub fn from_name(name: &str) -> Option<EventType> {
        static BY_NAME: LazyLock<HashMap<&'static str, u16>> =
            LazyLock::new(|| CATALOGUE.iter().map(|i| (i.name, i.code)).collect());
        BY_NAME.get(name).map(|&code| EventType(code))
    }

    /// Every event type in the catalogue.
    pub fn all() -> impl Iterator<Item = EventType> {
        CATALOGUE.iter().map(|info| EventType(info.code))
    }

    /// The catalogue row of this type.
    pub fn info(self) -> &'static EventTypeInfo {
        // An EventType only exists for catalogue codes (see the constructors), so the search
        // always succeeds; the fallback keeps this total without a panic path.
        const UNKNOWN: EventTypeInfo = EventTypeInfo {
            code: 0,
            name: "UNKNOWN",
            family: "Unknown",
            payload: "Unknown",
            schema: 0,
        };
        CATALOGUE
            .binary_search_by_key(&self.0, |info| info.code)
            .map(|i| &CATALOGUE[i])
            .unwrap_or(&UNKNOWN)
    }

    /// The stable numeric code stored on disk.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The CloudStack wire name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The current schema version of this type's family.
    pub fn schema(self) -> u16 {
        self.info().schema
    }

    fn family_code(self) -> u8 {
        (self.0 >> 8) as u8
    }

    fn variant_code(self) -> u8 {
        self.0 as u8
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({})", self.name())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A stored code that this build's catalogue does not have.
    #[error("unknown event type code {0:#06x}")]
    UnknownEventCode(u16),
    /// A JSON `type` that is not a CloudStack event name Ledgerstack knows.
    #[error("unknown event type {0:?}")]
    UnknownEventName(String),
    /// Written by a newer Ledgerstack whose family schema this build cannot read.
    #[error(
        "{event_type} was recorded at schema {found}, newer than this build's {supported}: upgrade ledgerstack to read it"
    )]
    NewerSchema {
        /// The event type.
        event_type: EventType,
        /// Schema found in the record.
        found: u16,
        /// Newest schema this build reads.
        supported: u16,
    },
    /// An old schema with no upcaster (a bug: every past schema must keep an upcaster).
    #[error(
        "{event_type} was recorded at schema {found} and no upcaster to schema {supported} exists"
    )]
    NoUpcaster {
        /// The event type.
        event_type: EventType,
        /// Schema found in the record.
        found: u16,
        /// Current schema.
        supported: u16,
    },
    /// The binary form could not be written.
    #[error("binary encoding failed: {0}")]
    Encode(String),
    /// The binary form could not be read.
    #[error("binary decoding failed: {0}")]
    Decode(String),
    /// The binary form had bytes left over after the value.
    #[error("binary decoding left {0} unread bytes")]
    TrailingBytes(usize),
    /// The JSON form could not be read or written.
    #[error("JSON: {0}")]
    Json(#[source] serde_json::Error),
}
