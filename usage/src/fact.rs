//! What the usage projection takes from an event: a resource interval opening or closing, a
//! device counter reading, an account deleted. `facts.rs` derives them from events; the ledger
//! folds them into tracks and records.

use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::usage_type::UsageType;

/// One time-based usage stream: a usage type of one entity owned by one account. Its record
/// key within a period is this plus the variant of [`RecordFacts`] in force (offering, size).
///
/// Field order is the records' sort order within a period (account, type, usage id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrackKey {
    /// Who is billed. A VM moved to another account starts a new track there.
    pub account_id: Uuid,
    /// The usage type.
    pub usage_type: UsageType,
    /// The entity (`usageid`): VM, volume, IP, rule, network, VPC, VPN user, snapshot...
    pub entity_id: Uuid,
    /// The second half of keys that have one: the security group (type 10, VM + group), the NIC
    /// (type 13, VM + NIC), the zone of a template or ISO copy (types 7, 8). Nil otherwise.
    pub sub_id: Uuid,
}

impl TrackKey {
    /// Every track of `account_id` of `usage_type`, whatever the entity: a range of a table
    /// keyed by track.
    pub fn range_of(account_id: Uuid, usage_type: UsageType) -> std::ops::RangeInclusive<TrackKey> {
        let first = TrackKey {
            account_id,
            usage_type,
            entity_id: Uuid::nil(),
            sub_id: Uuid::nil(),
        };
        let last = TrackKey {
            entity_id: Uuid::max(),
            sub_id: Uuid::max(),
            ..first
        };
        first..=last
    }
}

/// Which counters a device reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeviceKind {
    /// A virtual router: bytes sent and received (types 4, 5).
    Router,
    /// A VM's volume: I/O and bytes read and written (types 21–24).
    Disk,
}

/// A device whose monotonic counters are read: deltas are tracked per device, never per account
/// and zone (spec/usage.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceKey {
    /// Who is billed.
    pub account_id: Uuid,
    /// Router or disk.
    pub kind: DeviceKind,
    /// The router's or volume's id.
    pub device_id: Uuid,
}

/// The record fields that stay constant over an interval (spec/usage.md "Record fields").
/// A change of any of them (offering change, resize) closes the interval and opens another: the
/// two get separate records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFacts {
    /// The account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Option<Uuid>,
    /// `description` in CloudStack's current wording, rendered when the interval opened.
    pub description: String,
    /// `description` with `oldformat=true` (the stored form, `i-3-4-WC running time ...`).
    pub old_description: String,
    /// `virtualmachineid`.
    pub vm_id: Option<Uuid>,
    /// `name` (the VM's or the resource's).
    pub name: Option<String>,
    /// `offeringid` (service, disk or network offering).
    pub offering_id: Option<Uuid>,
    /// `templateid`.
    pub template_id: Option<Uuid>,
    /// `type`: the hypervisor, the device type, or `SourceNat` for a source-NAT IP.
    pub kind: Option<String>,
    /// `size` in bytes.
    pub size: Option<u64>,
    /// `virtualsize` in bytes.
    pub virtual_size: Option<u64>,
    /// `cpunumber`.
    pub cpu_number: Option<u32>,
    /// `cpuspeed` (MHz).
    pub cpu_speed: Option<u32>,
    /// `memory` (MiB).
    pub memory: Option<u64>,
    /// `issourcenat`.
    pub is_source_nat: Option<bool>,
    /// `issystem`.
    pub is_system: Option<bool>,
    /// `isdefault`.
    pub is_default: Option<bool>,
    /// `networkid`.
    pub network_id: Option<Uuid>,
    /// `vpcid`.
    pub vpc_id: Option<Uuid>,
}

/// Counter readings of one device at one instant: cumulative values since the device (re)started.
/// Routers fill `[sent, received, 0, 0]`; disks `[io read, io write, bytes read, bytes write]`.
pub type Counters = [u64; 4];

/// One thing an event means for usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The track accrues from `at` with these record facts (an already open track with other
    /// facts is closed and reopened at `at`; with equal facts nothing changes).
    Open {
        /// The track.
        track: TrackKey,
        /// From when (the event's occurred-at).
        at: Timestamp,
        /// Its record facts from now on.
        facts: RecordFacts,
    },
    /// The track stops accruing at `at` (nothing if it is not open).
    Close {
        /// The track.
        track: TrackKey,
        /// Until when.
        at: Timestamp,
    },
    /// A reading of a device's counters.
    Reading {
        /// The device.
        device: DeviceKey,
        /// When it was read.
        at: Timestamp,
        /// The cumulative counters.
        counters: Counters,
        /// Record facts of the device's records (kept from its latest reading).
        facts: RecordFacts,
    },
    /// The account was deleted at `at`: every open track of it closes there.
    AccountDeleted {
        /// The account.
        account_id: Uuid,
        /// When.
        at: Timestamp,
    },
}
