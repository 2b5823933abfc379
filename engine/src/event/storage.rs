//! Volumes (`VOLUME.*`), snapshots (`SNAPSHOT.*`, `SNAPSHOTPOLICY.*`), VM snapshots
//! (`VMSNAPSHOT.*`), templates (`TEMPLATE.*`), ISOs (`ISO.*`) and backups (`BACKUP.OFFERING.*`).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A volume's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeType {
    /// The disk a VM boots from.
    #[serde(rename = "ROOT")]
    Root,
    /// An additional data disk.
    #[serde(rename = "DATADISK")]
    DataDisk,
}

/// What every VOLUME.* event carries (VOLUME usage, type 6: keyed by volume + offering + size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    /// The volume's id.
    pub volume_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// ROOT or DATADISK.
    pub volume_type: VolumeType,
    /// Size in bytes.
    pub size: u64,
    /// Disk offering (data disks, custom root disks).
    pub disk_offering_id: Option<Uuid>,
    /// Template a root disk was created from.
    pub template_id: Option<Uuid>,
}

/// VOLUME.CREATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCreated {
    /// The volume.
    pub volume: VolumeFacts,
    /// VM a root disk belongs to.
    pub vm_id: Option<Uuid>,
    /// Snapshot it was created from.
    pub snapshot_id: Option<Uuid>,
}

/// VOLUME.DELETE, VOLUME.EXTRACT, VOLUME.MIGRATE: actions that need only the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLifecycle {
    /// The volume.
    pub volume: VolumeFacts,
}

/// VOLUME.ATTACH / VOLUME.DETACH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttachment {
    /// The volume.
    pub volume: VolumeFacts,
    /// The VM.
    pub vm_id: Uuid,
    /// Device number on the VM (attach).
    pub device_id: Option<u32>,
}

/// VOLUME.RESIZE: usage closes the interval at the old size and opens one at the new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeResized {
    /// The volume at its new size and offering.
    pub volume: VolumeFacts,
    /// Size before, in bytes.
    pub previous_size: u64,
    /// Offering before.
    pub previous_disk_offering_id: Option<Uuid>,
}

/// VOLUME.UPLOAD: a volume uploaded to secondary storage (VOLUME_SECONDARY usage, type 26, until
/// the VOLUME.CREATE that moves it to primary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUploaded {
    /// The volume, sized as stored on secondary storage.
    pub volume: VolumeFacts,
    /// Image format, such as `QCOW2`.
    pub format: CompactString,
    /// Where it was uploaded from.
    pub url: Option<String>,
}

/// VOLUME.STATS (Ledgerstack): a reading of a volume's monotonic disk counters, taken every
/// `vm.disk.stats.interval` seconds (VM_DISK_* usage, types 21–24, bill the deltas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCounterReading {
    /// The volume whose counters were read: the device deltas are tracked per.
    pub volume_id: Uuid,
    /// The VM it is attached to.
    pub vm_id: Uuid,
    /// Account billed.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Read operations since the counter started.
    pub io_read: u64,
    /// Write operations since the counter started.
    pub io_write: u64,
    /// Bytes read since the counter started.
    pub bytes_read: u64,
    /// Bytes written since the counter started.
    pub bytes_write: u64,
}

/// What every SNAPSHOT.* event carries (SNAPSHOT usage, type 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    /// The snapshot's id.
    pub snapshot_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Volume it was taken of.
    pub volume_id: Uuid,
    /// Physical size stored, in bytes.
    pub size: u64,
    /// Size of the volume it was taken of, in bytes.
    pub virtual_size: u64,
    /// `MANUAL`, `HOURLY`, `DAILY`, `WEEKLY` or `MONTHLY`.
    pub interval: CompactString,
}

/// SNAPSHOT.CREATE / DELETE / REVERT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLifecycle {
    /// The snapshot.
    pub snapshot: SnapshotFacts,
}

/// SNAPSHOTPOLICY.CREATE / UPDATE / DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPolicyFacts {
    /// The policy's id.
    pub policy_id: Uuid,
    /// Volume it snapshots.
    pub volume_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// `HOURLY`, `DAILY`, `WEEKLY` or `MONTHLY`.
    pub interval: CompactString,
    /// Schedule such as `30:2` (minute 30 of hour 2).
    pub schedule: CompactString,
    /// IANA time zone the schedule is read in.
    pub timezone: CompactString,
    /// How many snapshots to keep.
    pub max_snapshots: u32,
}

/// One volume captured by a VM snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSnapshotVolume {
    /// The volume.
    pub volume_id: Uuid,
    /// Its disk offering.
    pub disk_offering_id: Option<Uuid>,
    /// Bytes the snapshot holds for this volume.
    pub size: u64,
}

/// What every VMSNAPSHOT.* event carries (VM_SNAPSHOT usage, type 25, and
/// VM_SNAPSHOT_ON_PRIMARY, type 27).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSnapshotFacts {
    /// The VM snapshot's id.
    pub vm_snapshot_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its display name.
    pub display_name: Option<CompactString>,
    /// The VM.
    pub vm_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// The VM's service offering when taken.
    pub service_offering_id: Option<Uuid>,
    /// Memory was captured too (`Disk` or `DiskAndMemory`).
    pub with_memory: bool,
    /// Per-volume sizes.
    pub volumes: Vec<VmSnapshotVolume>,
}

/// VMSNAPSHOT.CREATE / DELETE / REVERTTO / ON_PRIMARY / OFF_PRIMARY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSnapshotLifecycle {
    /// The VM snapshot.
    pub vm_snapshot: VmSnapshotFacts,
}

/// What every TEMPLATE.* event carries (TEMPLATE usage, type 7, keyed by template + zone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateFacts {
    /// The template's id.
    pub template_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone this copy lives in (`None`: cross-zone).
    pub zone_id: Option<Uuid>,
    /// Image format, such as `QCOW2`.
    pub format: CompactString,
    /// Hypervisor it is for.
    pub hypervisor: CompactString,
    /// Guest OS type.
    pub os_type_id: Option<Uuid>,
    /// Physical size on secondary storage, in bytes.
    pub size: u64,
    /// Size of the disk it creates, in bytes.
    pub virtual_size: u64,
    /// Visible to all accounts.
    pub is_public: bool,
    /// Featured by an admin.
    pub is_featured: bool,
    /// Registered from this URL.
    pub url: Option<String>,
    /// Created from this volume.
    pub source_volume_id: Option<Uuid>,
    /// Created from this snapshot.
    pub source_snapshot_id: Option<Uuid>,
}

/// TEMPLATE.CREATE / DELETE / UPDATE / DOWNLOAD.START / DOWNLOAD.SUCCESS / EXTRACT / UPLOAD /
/// CLEANUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateLifecycle {
    /// The template.
    pub template: TemplateFacts,
}

/// TEMPLATE.COPY: the template was copied into another zone (a new usage key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateCopied {
    /// The template in its destination zone.
    pub template: TemplateFacts,
    /// Zone it was copied from.
    pub source_zone_id: Uuid,
}

/// TEMPLATE.DOWNLOAD.FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDownloadFailed {
    /// The template.
    pub template: TemplateFacts,
    /// Why.
    pub error: String,
}

/// What every ISO.* event carries (ISO usage, type 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoFacts {
    /// The ISO's id.
    pub iso_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone this copy lives in (`None`: cross-zone).
    pub zone_id: Option<Uuid>,
    /// Guest OS type.
    pub os_type_id: Option<Uuid>,
    /// Size in bytes.
    pub size: u64,
    /// Visible to all accounts.
    pub is_public: bool,
    /// Featured by an admin.
    pub is_featured: bool,
    /// A VM can boot from it.
    pub bootable: bool,
    /// Registered from this URL.
    pub url: Option<String>,
}

/// ISO.CREATE / DELETE / EXTRACT / UPLOAD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoLifecycle {
    /// The ISO.
    pub iso: IsoFacts,
}

/// ISO.COPY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoCopied {
    /// The ISO in its destination zone.
    pub iso: IsoFacts,
    /// Zone it was copied from.
    pub source_zone_id: Uuid,
}

/// ISO.ATTACH / ISO.DETACH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoAttachment {
    /// The ISO.
    pub iso_id: Uuid,
    /// The VM.
    pub vm_id: Uuid,
    /// The VM's account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
}

/// BACKUP.OFFERING.ASSIGN / REMOVE (BACKUP usage, type 28).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOfferingAssignment {
    /// The VM.
    pub vm_id: Uuid,
    /// The backup offering.
    pub backup_offering_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Backup storage used, in bytes.
    pub size: u64,
    /// Size of what is protected, in bytes.
    pub protected_size: u64,
}
