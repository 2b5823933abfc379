//! Volumes, volume snapshots, VM snapshots, templates and ISOs: the rows behind `listVolumes`,
//! `listSnapshots`, `listVMSnapshot`, `listTemplates` and `listIsos`.
//!
//! Like VMs (see `compute`), an action the hypervisor performs is a `Started` request and a
//! `Completed` result (or DRIVER.FAILED); the row reserves what the request needs (the new
//! size, the attachment) so allocation decisions count it at once.

use std::collections::BTreeSet;

use compact_str::CompactString;
use engine::event::storage::{
    IsoFacts, SnapshotFacts, TemplateFacts, VmSnapshotFacts, VolumeFacts,
};
use engine::event::{
    DriverEvent, EventBody, EventState, IsoEvent, RecordedEvent, SnapshotEvent, TemplateEvent,
    VmEvent, VmSnapshotEvent, VolumeEvent,
};
use engine::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::orchestration::Orchestration;
use crate::table::{PersistedTable, Table};

/// A volume as `listVolumes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRow {
    /// Facts of the last event (size is the requested one while a resize is in flight).
    pub facts: VolumeFacts,
    /// `Allocated` (never attached), `Ready`, `Uploaded` (on secondary storage), `Resizing`.
    pub state: VolumeStateName,
    /// The VM it is attached to (or being attached to).
    pub vm_id: Option<Uuid>,
    /// Device number on that VM.
    pub device_id: Option<u32>,
    /// When it was created.
    pub created: Timestamp,
    /// When it was last attached.
    pub attached: Option<Timestamp>,
    /// Size and offering before a resize in flight, restored if the driver refuses it.
    pub resizing_from: Option<(u64, Option<Uuid>)>,
    /// An attach is in flight (undone if the driver refuses it).
    pub attaching: bool,
    /// A detach is in flight.
    pub detaching: bool,
}

/// A volume's state, named as CloudStack names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeStateName {
    /// Created but never attached to a running VM.
    Allocated,
    /// Usable.
    Ready,
    /// Uploaded to secondary storage (`uploadVolume`).
    Uploaded,
    /// A resize is in flight.
    Resizing,
}

impl VolumeStateName {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeStateName::Allocated => "Allocated",
            VolumeStateName::Ready => "Ready",
            VolumeStateName::Uploaded => "Uploaded",
            VolumeStateName::Resizing => "Resizing",
        }
    }
}

/// A volume snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Facts.
    pub facts: SnapshotFacts,
    /// `BackingUp` until the driver confirms, then `BackedUp`.
    pub backed_up: bool,
    /// The snapshotted volume's type (`ROOT` or `DATADISK`), for `volumetype`.
    pub volume_type: Option<String>,
    /// When it was taken.
    pub created: Timestamp,
}

/// A VM snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSnapshotRow {
    /// Facts.
    pub facts: VmSnapshotFacts,
    /// `Creating`, `Ready`, `Reverting` or `Expunging`.
    pub state: CompactString,
    /// The VM's current snapshot (the last one taken or reverted to).
    pub current: bool,
    /// When it was taken.
    pub created: Timestamp,
}

/// A template or an ISO, with every zone it is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow<F> {
    /// Facts of the last event (`zone_id` is the zone it was registered in).
    pub facts: F,
    /// Zones holding a copy (empty with `facts.zone_id == None`: cross-zone).
    pub zones: BTreeSet<Uuid>,
    /// When it was registered.
    pub created: Timestamp,
}

/// A template, with every zone it is in.
pub type TemplateRow = ImageRow<TemplateFacts>;

/// An ISO, with every zone it is in.
pub type IsoRow = ImageRow<IsoFacts>;

/// Registered (`zone`: where; `None`: cross-zone).
fn image_created<F: Serialize + DeserializeOwned>(
    images: &mut Table<Uuid, ImageRow<F>>,
    id: Uuid,
    facts: F,
    zone: Option<Uuid>,
    created: Timestamp,
) {
    let zones = zone.into_iter().collect();
    images.insert(
        id,
        ImageRow {
            facts,
            zones,
            created,
        },
    );
}

/// Copied into `zone`.
fn image_copied<F: Serialize + DeserializeOwned>(
    images: &mut Table<Uuid, ImageRow<F>>,
    id: Uuid,
    zone: Option<Uuid>,
) {
    if let Some(row) = images.get_mut(&id)
        && let Some(zone) = zone
    {
        row.zones.insert(zone);
    }
}

/// Deleted from `zone` (`None`: from every zone); gone once no zone holds it.
fn image_deleted<F: Serialize + DeserializeOwned>(
    images: &mut Table<Uuid, ImageRow<F>>,
    id: Uuid,
    zone: Option<Uuid>,
) {
    let gone = match (images.get_mut(&id), zone) {
        (Some(row), Some(zone)) => {
            row.zones.remove(&zone);
            row.zones.is_empty()
        }
        _ => true,
    };
    if gone {
        images.remove(&id);
    }
}

/// The storage read model.
#[derive(Debug)]
pub struct Storage {
    /// Volumes by id (deleted ones removed).
    pub volumes: Table<Uuid, VolumeRow>,
    /// Volume snapshots by id.
    pub snapshots: Table<Uuid, SnapshotRow>,
    /// VM snapshots by id.
    pub vm_snapshots: Table<Uuid, VmSnapshotRow>,
    /// Templates by id.
    pub templates: Table<Uuid, TemplateRow>,
    /// ISOs by id.
    pub isos: Table<Uuid, IsoRow>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            volumes: Table::new("storage.volumes"),
            snapshots: Table::new("storage.snapshots"),
            vm_snapshots: Table::new("storage.vm_snapshots"),
            templates: Table::new("storage.templates"),
            isos: Table::new("storage.isos"),
        }
    }
}

impl Storage {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 5] {
        [
            &mut self.volumes,
            &mut self.snapshots,
            &mut self.vm_snapshots,
            &mut self.templates,
            &mut self.isos,
        ]
    }

    /// Applies one event; `orchestration` still holds the command a result answers.
    pub(crate) fn apply(&mut self, event: &RecordedEvent, orchestration: &Orchestration) {
        let at = event.envelope.occurred_at;
        let requested = event.envelope.state == EventState::Started;
        match &*event.body {
            EventBody::Volume(v) => self.apply_volume(v, requested, at),
            EventBody::Vm(VmEvent::Start(e)) if !requested => {
                // A running VM's disks are Ready.
                for row in self
                    .volumes
                    .values_mut_where(|v| v.vm_id == Some(e.vm.vm_id))
                {
                    if row.state == VolumeStateName::Allocated {
                        row.state = VolumeStateName::Ready;
                    }
                }
            }
            EventBody::Snapshot(SnapshotEvent::Create(e)) => {
                let volume_type = self
                    .volumes
                    .get(&e.snapshot.volume_id)
                    .map(|v| volume_type_name(&v.facts).to_owned());
                match self.snapshots.get_mut(&e.snapshot.snapshot_id) {
                    Some(row) => row.backed_up = !requested,
                    None => self.snapshots.insert(
                        e.snapshot.snapshot_id,
                        SnapshotRow {
                            facts: e.snapshot.clone(),
                            backed_up: !requested,
                            volume_type,
                            created: at,
                        },
                    ),
                }
            }
            EventBody::Snapshot(SnapshotEvent::Delete(e)) => {
                self.snapshots.remove(&e.snapshot.snapshot_id);
            }
            EventBody::VmSnapshot(VmSnapshotEvent::Create(e)) => {
                let id = e.vm_snapshot.vm_snapshot_id;
                if requested {
                    self.vm_snapshots.insert(
                        id,
                        VmSnapshotRow {
                            facts: e.vm_snapshot.clone(),
                            state: "Creating".into(),
                            current: false,
                            created: at,
                        },
                    );
                } else {
                    self.make_current(e.vm_snapshot.vm_id, id);
                    if let Some(row) = self.vm_snapshots.get_mut(&id) {
                        row.state = "Ready".into();
                    }
                }
            }
            EventBody::VmSnapshot(VmSnapshotEvent::RevertTo(e)) => {
                let id = e.vm_snapshot.vm_snapshot_id;
                if requested {
                    if let Some(row) = self.vm_snapshots.get_mut(&id) {
                        row.state = "Reverting".into();
                    }
                } else {
                    self.make_current(e.vm_snapshot.vm_id, id);
                    if let Some(row) = self.vm_snapshots.get_mut(&id) {
                        row.state = "Ready".into();
                    }
                }
            }
            EventBody::VmSnapshot(VmSnapshotEvent::Delete(e)) => {
                let id = e.vm_snapshot.vm_snapshot_id;
                if requested {
                    if let Some(row) = self.vm_snapshots.get_mut(&id) {
                        row.state = "Expunging".into();
                    }
                } else {
                    self.vm_snapshots.remove(&id);
                }
            }
            EventBody::Template(t) => self.apply_template(t, at),
            EventBody::Iso(i) => self.apply_iso(i, at),
            EventBody::Driver(DriverEvent::Failed(failed)) => {
                let Some(pending) = orchestration.pending.get(&failed.command_id) else {
                    return;
                };
                let id = failed.resource_id;
                match pending.event_type.as_str() {
                    "VOLUME.ATTACH" => {
                        if let Some(row) = self.volumes.get_mut(&id) {
                            row.vm_id = None;
                            row.device_id = None;
                            row.attaching = false;
                        }
                    }
                    "VOLUME.DETACH" => {
                        if let Some(row) = self.volumes.get_mut(&id) {
                            row.detaching = false;
                        }
                    }
                    "VOLUME.RESIZE" => {
                        if let Some(row) = self.volumes.get_mut(&id)
                            && let Some((size, offering)) = row.resizing_from.take()
                        {
                            row.facts.size = size;
                            row.facts.disk_offering_id = offering;
                            row.state = VolumeStateName::Ready;
                        }
                    }
                    "SNAPSHOT.CREATE" => {
                        self.snapshots.remove(&id);
                    }
                    "VMSNAPSHOT.CREATE" => {
                        self.vm_snapshots.remove(&id);
                    }
                    "VMSNAPSHOT.REVERTTO" | "VMSNAPSHOT.DELETE" => {
                        if let Some(row) = self.vm_snapshots.get_mut(&id) {
                            row.state = "Ready".into();
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn make_current(&mut self, vm_id: Uuid, current: Uuid) {
        for row in self
            .vm_snapshots
            .values_mut_where(|s| s.facts.vm_id == vm_id)
        {
            row.current = row.facts.vm_snapshot_id == current;
        }
    }

    fn apply_volume(&mut self, event: &VolumeEvent, requested: bool, at: Timestamp) {
        match event {
            VolumeEvent::Create(e) => {
                let state = if e.vm_id.is_some() {
                    VolumeStateName::Ready
                } else {
                    VolumeStateName::Allocated
                };
                let previous = self.volumes.get(&e.volume.volume_id).cloned();
                self.volumes.insert(
                    e.volume.volume_id,
                    VolumeRow {
                        facts: e.volume.clone(),
                        state,
                        vm_id: e.vm_id,
                        device_id: e.vm_id.map(|_| match e.volume.volume_type {
                            engine::event::storage::VolumeType::Root => 0,
                            engine::event::storage::VolumeType::DataDisk => 1,
                        }),
                        created: previous.map_or(at, |p| p.created),
                        attached: e.vm_id.map(|_| at),
                        resizing_from: None,
                        attaching: false,
                        detaching: false,
                    },
                );
            }
            VolumeEvent::Upload(e) => self.volumes.insert(
                e.volume.volume_id,
                VolumeRow {
                    facts: e.volume.clone(),
                    state: VolumeStateName::Uploaded,
                    vm_id: None,
                    device_id: None,
                    created: at,
                    attached: None,
                    resizing_from: None,
                    attaching: false,
                    detaching: false,
                },
            ),
            VolumeEvent::Delete(e) => {
                self.volumes.remove(&e.volume.volume_id);
            }
            VolumeEvent::Attach(e) => {
                if let Some(row) = self.volumes.get_mut(&e.volume.volume_id) {
                    row.vm_id = Some(e.vm_id);
                    row.device_id = e.device_id;
                    row.attaching = requested;
                    if !requested {
                        row.attached = Some(at);
                        row.state = VolumeStateName::Ready;
                    }
                }
            }
            VolumeEvent::Detach(e) => {
                if let Some(row) = self.volumes.get_mut(&e.volume.volume_id) {
                    if requested {
                        row.detaching = true;
                    } else {
                        row.vm_id = None;
                        row.device_id = None;
                        row.attached = None;
                        row.detaching = false;
                    }
                }
            }
            VolumeEvent::Resize(e) => {
                if let Some(row) = self.volumes.get_mut(&e.volume.volume_id) {
                    if requested {
                        row.resizing_from = Some((e.previous_size, e.previous_disk_offering_id));
                        row.state = VolumeStateName::Resizing;
                    } else {
                        row.resizing_from = None;
                        row.state = VolumeStateName::Ready;
                    }
                    row.facts = e.volume.clone();
                }
            }
            VolumeEvent::Migrate(e) | VolumeEvent::Extract(e) => {
                if let Some(row) = self.volumes.get_mut(&e.volume.volume_id) {
                    row.facts = e.volume.clone();
                }
            }
            VolumeEvent::Stats(_) => {}
        }
    }

    fn apply_template(&mut self, event: &TemplateEvent, at: Timestamp) {
        let images = &mut self.templates;
        match event {
            TemplateEvent::Create(e) => {
                let t = &e.template;
                image_created(images, t.template_id, t.clone(), t.zone_id, at);
            }
            TemplateEvent::Copy(e) => {
                image_copied(images, e.template.template_id, e.template.zone_id);
            }
            TemplateEvent::Delete(e) => {
                image_deleted(images, e.template.template_id, e.template.zone_id);
            }
            TemplateEvent::Update(e) => {
                if let Some(row) = images.get_mut(&e.template.template_id) {
                    let zone = row.facts.zone_id;
                    row.facts = e.template.clone();
                    row.facts.zone_id = zone;
                }
            }
            _ => {}
        }
    }

    fn apply_iso(&mut self, event: &IsoEvent, at: Timestamp) {
        let images = &mut self.isos;
        match event {
            IsoEvent::Create(e) => {
                image_created(images, e.iso.iso_id, e.iso.clone(), e.iso.zone_id, at)
            }
            IsoEvent::Copy(e) => image_copied(images, e.iso.iso_id, e.iso.zone_id),
            IsoEvent::Delete(e) => image_deleted(images, e.iso.iso_id, e.iso.zone_id),
            _ => {}
        }
    }

    /// Volumes attached (or being attached) to a VM, root first, then by device number.
    pub fn volumes_of(&self, vm_id: Uuid) -> Vec<&VolumeRow> {
        let mut volumes: Vec<&VolumeRow> = self
            .volumes
            .values()
            .filter(|v| v.vm_id == Some(vm_id))
            .collect();
        volumes.sort_by_key(|v| {
            (
                v.facts.volume_type != engine::event::storage::VolumeType::Root,
                v.device_id,
            )
        });
        volumes
    }
}

/// `ROOT` or `DATADISK`.
pub fn volume_type_name(volume: &VolumeFacts) -> &'static str {
    match volume.volume_type {
        engine::event::storage::VolumeType::Root => "ROOT",
        engine::event::storage::VolumeType::DataDisk => "DATADISK",
    }
}
