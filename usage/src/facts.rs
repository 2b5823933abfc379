//! Derives usage [`Fact`]s from events: which track opens or closes, which device was read,
//! which account went away (spec/usage.md "Usage types").
//!
//! Architecture Invariant: only events in state `Completed` mean anything for usage. A
//! hypervisor or router action is a request (`Started`) and then its result (`Completed`, or
//! DRIVER.FAILED); facts are appended `Completed` directly. Reading only `Completed` counts each
//! lifecycle moment once, from the driver's confirmation, and a refused action accrues nothing.
//!
//! Record facts are rendered here, when an interval opens, from the event and the read models
//! already updated with it (names of offerings, templates, VMs...): `description` in CloudStack's
//! current wording (its `ApiResponseHelper.createUsageResponse`), `old_description` in the form
//! CloudStack's usage parsers store (`oldformat=true`), with UUIDs where CloudStack prints
//! database ids. Counter records (types 4, 5, 21–24) share one device's facts across several
//! usage types and their wording contains the quantity, so their descriptions are templates that
//! [`record_description`] completes.

use engine::event::network::{IpAddressFacts, NetworkFacts, RulePurpose};
use engine::event::storage::{SnapshotFacts, VmSnapshotFacts, VolumeCounterReading, VolumeFacts};
use engine::event::vm::{NetworkCounterReading, VmFacts};
use engine::event::{
    AccountEvent, BackupEvent, EventBody, EventState, IsoEvent, LoadBalancerEvent, NetEvent,
    NetworkEvent, NetworkOfferingEvent, RecordedEvent, RouterEvent, SecurityGroupEvent,
    SnapshotEvent, TemplateEvent, VmEvent, VmSnapshotEvent, VolumeEvent, VpcEvent, VpnEvent,
};
use engine::time::Timestamp;
use projections::State;
use projections::compute::VmState;
use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use crate::fact::{DeviceKey, DeviceKind, Fact, RecordFacts, TrackKey};
use crate::usage_type::UsageType;

/// In a counter device's description: where the words naming the usage type go.
const WHAT: &str = "{what}";
/// In a counter device's description: where the quantity goes (CloudStack prints it as a size).
const SIZE: &str = "{size}";

/// Appends to `out` what `event` means for usage; `upstream` holds every read model already
/// updated with `event` (names of offerings, templates, VMs, networks; whether a VM runs).
pub fn facts_of(event: &RecordedEvent, upstream: &State, out: &mut Vec<Fact>) {
    if event.envelope.state != EventState::Completed {
        return;
    }
    let mut out = Out {
        at: event.envelope.occurred_at,
        facts: out,
    };
    match &*event.body {
        EventBody::Vm(e) => vm_event(e, upstream, &mut out),
        EventBody::Volume(e) => volume_event(e, upstream, &mut out),
        EventBody::Snapshot(e) => snapshot_event(e, &mut out),
        EventBody::VmSnapshot(e) => vm_snapshot_event(e, upstream, &mut out),
        EventBody::Template(e) => template_event(e, upstream, &mut out),
        EventBody::Iso(e) => iso_event(e, upstream, &mut out),
        EventBody::Net(e) => net_event(e, &mut out),
        EventBody::Network(e) => network_event(e, &mut out),
        EventBody::NetworkOffering(e) => network_offering_event(e, upstream, &mut out),
        EventBody::SecurityGroup(e) => security_group_event(e, upstream, &mut out),
        EventBody::LoadBalancer(e) => load_balancer_event(e, &mut out),
        EventBody::Vpn(e) => vpn_event(e, &mut out),
        EventBody::Vpc(e) => vpc_event(e, &mut out),
        EventBody::Backup(e) => backup_event(e, upstream, &mut out),
        EventBody::Router(RouterEvent::Stats(reading)) => {
            router_reading(reading, upstream, &mut out)
        }
        EventBody::Account(AccountEvent::Delete(account)) => {
            out.facts.push(Fact::AccountDeleted {
                account_id: account.account_id,
                at: out.at,
            });
        }
        _ => {}
    }
}

/// A record's `description` as `listUsageRecords` shows it (`old_format`: `oldformat=true`) for
/// a record of `usage_type` with `quantity` (bytes or operations for counters).
///
/// Time-based records show the text rendered when their interval opened. A counter device's
/// facts serve several usage types and CloudStack's wording names the type and the quantity,
/// so their text holds `{what}` (first occurrence: the type's words) and `{size}` (last
/// occurrence: the quantity, as CloudStack's `toHumanReadableSize` prints it), filled in here.
pub fn record_description(
    facts: &RecordFacts,
    usage_type: UsageType,
    quantity: u64,
    old_format: bool,
) -> String {
    let text = if old_format {
        &facts.old_description
    } else {
        &facts.description
    };
    let Some(words) = counter_words(usage_type, old_format) else {
        return text.clone();
    };
    let mut text = text.replacen(WHAT, words, 1);
    if let Some(at) = text.rfind(SIZE) {
        text.replace_range(at..at + SIZE.len(), &human_size(quantity));
    }
    text
}

/// The words naming a counter usage type in CloudStack's current and stored wordings.
fn counter_words(usage_type: UsageType, old_format: bool) -> Option<&'static str> {
    let (current, old) = match usage_type {
        UsageType::NetworkBytesSent => ("Bytes sent by", "bytes sent"),
        UsageType::NetworkBytesReceived => ("Bytes received by", "bytes received"),
        UsageType::VmDiskIoRead => ("Disk I/O read requests", "read (io requests)"),
        UsageType::VmDiskIoWrite => ("Disk I/O write requests", "write (io requests)"),
        UsageType::VmDiskBytesRead => ("Disk I/O read bytes", "read (bytes)"),
        UsageType::VmDiskBytesWrite => ("Disk I/O write bytes", "write (bytes)"),
        _ => return None,
    };
    Some(if old_format { old } else { current })
}

/// Where facts go, stamped with the event's occurred-at.
struct Out<'a> {
    at: Timestamp,
    facts: &'a mut Vec<Fact>,
}

impl Out<'_> {
    fn open(&mut self, track: TrackKey, facts: RecordFacts) {
        self.facts.push(Fact::Open {
            track,
            at: self.at,
            facts,
        });
    }

    fn close(&mut self, track: TrackKey) {
        self.facts.push(Fact::Close { track, at: self.at });
    }

    fn reading(&mut self, device: DeviceKey, counters: [u64; 4], facts: RecordFacts) {
        self.facts.push(Fact::Reading {
            device,
            at: self.at,
            counters,
            facts,
        });
    }
}

/// The track of an entity without a second key part.
fn track(account_id: Uuid, usage_type: UsageType, entity_id: Uuid) -> TrackKey {
    TrackKey {
        account_id,
        usage_type,
        entity_id,
        sub_id: Uuid::nil(),
    }
}

/// CloudStack's `NumbersUtil.toHumanReadableSize`: `(1.00 GB) 1073741824`.
fn human_size(bytes: u64) -> String {
    format!("({}) {bytes}", readable_size(bytes))
}

/// CloudStack's `NumbersUtil.toReadableSize`: bytes below 1 KiB, then KB, MB, GB with two
/// decimals and TB with four (binary units), rounded half up, computed in decimals.
fn readable_size(bytes: u64) -> String {
    const KB: u64 = 1 << 10;
    const MB: u64 = 1 << 20;
    const GB: u64 = 1 << 30;
    const TB: u64 = 1 << 40;
    let (unit, divisor, places) = match bytes {
        b if b < KB => return format!("{bytes} bytes"),
        b if b < MB => ("KB", KB, 2),
        b if b < GB => ("MB", MB, 2),
        b if b < TB => ("GB", GB, 2),
        _ => ("TB", TB, 4),
    };
    let value = (Decimal::from(bytes) / Decimal::from(divisor))
        .round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    format!("{value:.prec$} {unit}", prec = places as usize)
}

/// The name of a template or ISO (VMs and root disks may come from either).
fn image_name(upstream: &State, id: Uuid) -> Option<&str> {
    let storage = &upstream.storage;
    storage
        .templates
        .get(&id)
        .map(|t| t.facts.name.as_str())
        .or_else(|| storage.isos.get(&id).map(|i| i.facts.name.as_str()))
}

/// A VM's name (`hostname`), if the VM is known.
fn vm_name(upstream: &State, vm_id: Uuid) -> Option<&str> {
    upstream
        .compute
        .vms
        .get(&vm_id)
        .map(|vm| vm.facts.name.as_str())
}

// ---------------------------------------------------------------------------------------------
// VMs: RUNNING_VM (1), ALLOCATED_VM (2)

fn vm_event(event: &VmEvent, upstream: &State, out: &mut Out) {
    use UsageType::{AllocatedVm, RunningVm};
    match event {
        VmEvent::Create(e) => open_vm(&e.vm, AllocatedVm, upstream, out),
        VmEvent::Recover(e) => open_vm(&e.vm, AllocatedVm, upstream, out),
        VmEvent::Start(e) => open_vm(&e.vm, RunningVm, upstream, out),
        VmEvent::Stop(e) => out.close(track(e.vm.account_id, RunningVm, e.vm.vm_id)),
        VmEvent::Destroy(e) => {
            out.close(track(e.vm.account_id, RunningVm, e.vm.vm_id));
            out.close(track(e.vm.account_id, AllocatedVm, e.vm.vm_id));
        }
        // The interval under the old offering (or template) closes and one under the new
        // opens: the ledger does so when the facts differ.
        VmEvent::Upgrade(e) | VmEvent::DynamicScale(e) => reshaped(&e.vm, upstream, out),
        VmEvent::Restore(e) => reshaped(&e.vm, upstream, out),
        VmEvent::Move(e) => {
            out.close(track(e.previous_account_id, RunningVm, e.vm.vm_id));
            out.close(track(e.previous_account_id, AllocatedVm, e.vm.vm_id));
            reshaped(&e.vm, upstream, out);
        }
        _ => {}
    }
}

/// Opens ALLOCATED_VM with `vm`'s facts, and RUNNING_VM too when the VM runs.
fn reshaped(vm: &VmFacts, upstream: &State, out: &mut Out) {
    open_vm(vm, UsageType::AllocatedVm, upstream, out);
    if runs(upstream, vm.vm_id) {
        open_vm(vm, UsageType::RunningVm, upstream, out);
    }
}

/// Whether the VM's RUNNING_VM interval is open: its start was confirmed and no stop was yet
/// (a stop, destroy or migration in flight leaves it running).
fn runs(upstream: &State, vm_id: Uuid) -> bool {
    upstream.compute.vms.get(&vm_id).is_some_and(|vm| {
        matches!(
            vm.state,
            VmState::Running | VmState::Stopping | VmState::Migrating
        )
    })
}

fn open_vm(vm: &VmFacts, usage_type: UsageType, upstream: &State, out: &mut Out) {
    out.open(
        track(vm.account_id, usage_type, vm.vm_id),
        vm_record(vm, usage_type, upstream),
    );
}

/// VMInstanceUsageParser's record; the wording of createUsageResponse.
fn vm_record(vm: &VmFacts, usage_type: UsageType, upstream: &State) -> RecordFacts {
    let running = usage_type == UsageType::RunningVm;
    let mut description = String::from(if running {
        "Running VM usage "
    } else {
        "Allocated VM usage "
    });
    description += &format!("for {} ({}) ({}) ", vm.name, vm.instance_name, vm.vm_id);
    if let Some(offering) = upstream
        .catalog
        .service_offerings
        .get(&vm.service_offering_id)
    {
        description += &format!(
            "using service offering {} ({}) ",
            offering.facts.name, vm.service_offering_id
        );
    }
    if let Some(template) = image_name(upstream, vm.template_id) {
        description += &format!("and template {template} ({})", vm.template_id);
    }
    RecordFacts {
        domain_id: vm.domain_id,
        zone_id: Some(vm.zone_id),
        description,
        old_description: format!(
            "{} {} (ServiceOffering: {}) (Template: {})",
            vm.instance_name,
            if running { "running time" } else { "allocated" },
            vm.service_offering_id,
            vm.template_id
        ),
        vm_id: Some(vm.vm_id),
        name: Some(vm.name.to_string()),
        offering_id: Some(vm.service_offering_id),
        template_id: Some(vm.template_id),
        kind: Some(vm.hypervisor.to_string()),
        cpu_number: Some(vm.cpu_number),
        cpu_speed: Some(vm.cpu_speed),
        memory: Some(vm.memory),
        ..RecordFacts::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Volumes: VOLUME (6), VOLUME_SECONDARY (26), VM_DISK_* (21–24)

fn volume_event(event: &VolumeEvent, upstream: &State, out: &mut Out) {
    use UsageType::{Volume, VolumeSecondary};
    match event {
        VolumeEvent::Create(e) => {
            let v = &e.volume;
            // An uploaded volume leaves secondary storage when it is created on primary.
            out.close(track(v.account_id, VolumeSecondary, v.volume_id));
            out.open(
                track(v.account_id, Volume, v.volume_id),
                volume_record(v, upstream),
            );
        }
        VolumeEvent::Resize(e) => {
            let v = &e.volume;
            out.open(
                track(v.account_id, Volume, v.volume_id),
                volume_record(v, upstream),
            );
        }
        VolumeEvent::Delete(e) => {
            let v = &e.volume;
            out.close(track(v.account_id, Volume, v.volume_id));
            // An uploaded volume may be deleted without ever reaching primary storage.
            out.close(track(v.account_id, VolumeSecondary, v.volume_id));
        }
        VolumeEvent::Upload(e) => {
            let v = &e.volume;
            out.open(
                track(v.account_id, VolumeSecondary, v.volume_id),
                secondary_volume_record(v),
            );
        }
        VolumeEvent::Stats(reading) => disk_reading(reading, upstream, out),
        _ => {}
    }
}

/// VolumeUsageParser's record (no VM: CloudStack bills a volume whoever it is attached to).
fn volume_record(v: &VolumeFacts, upstream: &State) -> RecordFacts {
    let mut description = format!("Volume usage for {} ({})", v.name, v.volume_id);
    let offering = v
        .disk_offering_id
        .and_then(|id| upstream.catalog.disk_offerings.get(&id).map(|o| (id, o)));
    if let Some((id, offering)) = offering {
        description += &format!(" with disk offering {} ({id})", offering.facts.name);
    }
    let template = v
        .template_id
        .and_then(|id| image_name(upstream, id).map(|name| (id, name)));
    if let Some((id, name)) = template {
        description += &format!(" and template {name} ({id})");
    }
    description += &format!(" and size {}", human_size(v.size));
    let mut old_description = format!("Volume Id: {} usage time", v.volume_id);
    if let Some(template) = v.template_id {
        old_description += &format!(" (Template: {template})");
    } else if let Some(offering) = v.disk_offering_id {
        old_description += &format!(" (DiskOffering: {offering})");
    }
    RecordFacts {
        domain_id: v.domain_id,
        zone_id: Some(v.zone_id),
        description,
        old_description,
        offering_id: v.disk_offering_id,
        template_id: v.template_id,
        size: Some(v.size),
        ..RecordFacts::default()
    }
}

/// StorageUsageParser's record of a volume on secondary storage.
fn secondary_volume_record(v: &VolumeFacts) -> RecordFacts {
    RecordFacts {
        domain_id: v.domain_id,
        zone_id: Some(v.zone_id),
        description: format!(
            "Volume on secondary storage usage for {} ({}) with size {}",
            v.name,
            v.volume_id,
            human_size(v.size)
        ),
        old_description: format!(
            "Volume Id:{} Size:{} VirtualSize: {}",
            v.volume_id,
            human_size(v.size),
            human_size(v.size)
        ),
        size: Some(v.size),
        virtual_size: Some(v.size),
        ..RecordFacts::default()
    }
}

/// VmDiskUsageParser's records: per volume, typed `VirtualMachine` as CloudStack types them.
fn disk_reading(r: &VolumeCounterReading, upstream: &State, out: &mut Out) {
    let mut description = String::from(WHAT);
    if let Some(vm) = vm_name(upstream, r.vm_id) {
        description += &format!(" for VM {vm} ({})", r.vm_id);
    }
    if let Some(volume) = upstream.storage.volumes.get(&r.volume_id) {
        description += &format!(" and volume {} ({})", volume.facts.name, r.volume_id);
    }
    description += " ";
    description += SIZE;
    let facts = RecordFacts {
        domain_id: r.domain_id,
        zone_id: Some(r.zone_id),
        description,
        old_description: format!(
            "disk I/O {WHAT} for Vm: {} and Volume: {}",
            r.vm_id, r.volume_id
        ),
        vm_id: Some(r.vm_id),
        kind: Some("VirtualMachine".to_owned()),
        ..RecordFacts::default()
    };
    out.reading(
        DeviceKey {
            account_id: r.account_id,
            kind: DeviceKind::Disk,
            device_id: r.volume_id,
        },
        [r.io_read, r.io_write, r.bytes_read, r.bytes_write],
        facts,
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshots (9), VM snapshots (25, 27)

fn snapshot_event(event: &SnapshotEvent, out: &mut Out) {
    match event {
        SnapshotEvent::Create(e) => {
            let s = &e.snapshot;
            out.open(
                track(s.account_id, UsageType::Snapshot, s.snapshot_id),
                snapshot_record(s),
            );
        }
        SnapshotEvent::Delete(e) => {
            let s = &e.snapshot;
            out.close(track(s.account_id, UsageType::Snapshot, s.snapshot_id));
        }
        SnapshotEvent::Revert(_) => {}
    }
}

/// StorageUsageParser's snapshot record.
fn snapshot_record(s: &SnapshotFacts) -> RecordFacts {
    RecordFacts {
        domain_id: s.domain_id,
        zone_id: Some(s.zone_id),
        description: format!(
            "Snapshot usage for {} ({}) with size {}",
            s.name,
            s.snapshot_id,
            human_size(s.size)
        ),
        old_description: format!("Snapshot Id:{} Size:{}", s.snapshot_id, human_size(s.size)),
        size: Some(s.size),
        ..RecordFacts::default()
    }
}

fn vm_snapshot_event(event: &VmSnapshotEvent, upstream: &State, out: &mut Out) {
    use UsageType::{VmSnapshot, VmSnapshotOnPrimary};
    match event {
        VmSnapshotEvent::Create(e) => {
            let s = &e.vm_snapshot;
            out.open(
                track(s.account_id, VmSnapshot, s.vm_snapshot_id),
                vm_snapshot_record(s, upstream),
            );
        }
        VmSnapshotEvent::Delete(e) => {
            let s = &e.vm_snapshot;
            out.close(track(s.account_id, VmSnapshot, s.vm_snapshot_id));
            out.close(track(s.account_id, VmSnapshotOnPrimary, s.vm_snapshot_id));
        }
        VmSnapshotEvent::OnPrimary(e) => {
            let s = &e.vm_snapshot;
            out.open(
                track(s.account_id, VmSnapshotOnPrimary, s.vm_snapshot_id),
                on_primary_record(s, upstream),
            );
        }
        VmSnapshotEvent::OffPrimary(e) => {
            let s = &e.vm_snapshot;
            out.close(track(s.account_id, VmSnapshotOnPrimary, s.vm_snapshot_id));
        }
        VmSnapshotEvent::RevertTo(_) => {}
    }
}

/// Bytes a VM snapshot holds over all its volumes.
fn vm_snapshot_size(s: &VmSnapshotFacts) -> u64 {
    s.volumes
        .iter()
        .fold(0u64, |sum, v| sum.saturating_add(v.size))
}

/// The name CloudStack shows for a VM snapshot (its display name).
fn vm_snapshot_name(s: &VmSnapshotFacts) -> String {
    s.display_name.as_deref().unwrap_or(&s.name).to_owned()
}

/// VMSnapshotUsageParser's record, one per VM snapshot (CloudStack's is per volume; the
/// Ledgerstack record sums the volumes, so it names none of them).
fn vm_snapshot_record(s: &VmSnapshotFacts, upstream: &State) -> RecordFacts {
    let size = vm_snapshot_size(s);
    let mut description = format!("VMSnapshot usage Id: {}", s.vm_snapshot_id);
    if let Some(vm) = vm_name(upstream, s.vm_id) {
        description += &format!(" for VM {vm} ({})", s.vm_id);
    }
    description += &format!(" and size {}", human_size(size));
    RecordFacts {
        domain_id: s.domain_id,
        zone_id: Some(s.zone_id),
        description,
        old_description: format!(
            "VMSnapshot Id: {} Usage: VM Id: {} Size: {}",
            s.vm_snapshot_id,
            s.vm_id,
            human_size(size)
        ),
        vm_id: Some(s.vm_id),
        name: Some(vm_snapshot_name(s)),
        size: Some(size),
        ..RecordFacts::default()
    }
}

/// VMSnapshotOnPrimaryParser's record.
fn on_primary_record(s: &VmSnapshotFacts, upstream: &State) -> RecordFacts {
    let size = vm_snapshot_size(s);
    let mut description = format!(
        "VMSnapshot on primary storage usage Id: {}",
        s.vm_snapshot_id
    );
    if let Some(vm) = vm_name(upstream, s.vm_id) {
        description += &format!(" for VM {vm} ({}) with size {}", s.vm_id, human_size(size));
    }
    RecordFacts {
        domain_id: s.domain_id,
        zone_id: Some(s.zone_id),
        description,
        old_description: format!(
            "VMSnapshot Id: {} On Primary Usage: VM Id: {} Size: {}",
            s.vm_snapshot_id,
            s.vm_id,
            human_size(size)
        ),
        vm_id: Some(s.vm_id),
        name: Some(vm_snapshot_name(s)),
        size: Some(size),
        virtual_size: Some(size),
        ..RecordFacts::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Templates (7), ISOs (8): one track per zone copy

fn template_event(event: &TemplateEvent, upstream: &State, out: &mut Out) {
    let (t, opens) = match event {
        TemplateEvent::Create(e) => (&e.template, true),
        TemplateEvent::Copy(e) => (&e.template, true),
        TemplateEvent::Delete(e) => (&e.template, false),
        _ => return,
    };
    let image = Image {
        usage_type: UsageType::Template,
        label: "Template",
        id: t.template_id,
        name: &t.name,
        account_id: t.account_id,
        domain_id: t.domain_id,
        zone_id: t.zone_id,
        size: t.size,
        virtual_size: t.virtual_size,
    };
    image.apply(opens, upstream, out);
}

fn iso_event(event: &IsoEvent, upstream: &State, out: &mut Out) {
    let (i, opens) = match event {
        IsoEvent::Create(e) => (&e.iso, true),
        IsoEvent::Copy(e) => (&e.iso, true),
        IsoEvent::Delete(e) => (&e.iso, false),
        _ => return,
    };
    let image = Image {
        usage_type: UsageType::Iso,
        label: "ISO",
        id: i.iso_id,
        name: &i.name,
        account_id: i.account_id,
        domain_id: i.domain_id,
        zone_id: i.zone_id,
        size: i.size,
        // CloudStack shows an ISO's size as its virtual size too.
        virtual_size: i.size,
    };
    image.apply(opens, upstream, out);
}

/// What a template's or an ISO's usage needs: the two are billed alike, per zone copy.
struct Image<'a> {
    usage_type: UsageType,
    /// How both descriptions name it.
    label: &'static str,
    id: Uuid,
    name: &'a str,
    account_id: Uuid,
    domain_id: Uuid,
    zone_id: Option<Uuid>,
    size: u64,
    virtual_size: u64,
}

impl Image<'_> {
    fn apply(&self, opens: bool, upstream: &State, out: &mut Out) {
        if !opens {
            close_image(
                self.account_id,
                self.usage_type,
                self.id,
                self.zone_id,
                upstream,
                out,
            );
            return;
        }
        let (size, virtual_size) = (human_size(self.size), human_size(self.virtual_size));
        let facts = RecordFacts {
            domain_id: self.domain_id,
            zone_id: self.zone_id,
            description: format!(
                "{} usage for {} ({}) with size {size} and virtual size {virtual_size}",
                self.label, self.name, self.id
            ),
            old_description: format!(
                "{} Id:{} Size:{size} VirtualSize: {virtual_size}",
                self.label, self.id
            ),
            size: Some(self.size),
            virtual_size: Some(self.virtual_size),
            ..RecordFacts::default()
        };
        out.open(
            image_track(self.account_id, self.usage_type, self.id, self.zone_id),
            facts,
        );
    }
}

/// A template's or ISO's track in one zone (nil: a cross-zone image).
fn image_track(account_id: Uuid, usage_type: UsageType, id: Uuid, zone: Option<Uuid>) -> TrackKey {
    TrackKey {
        sub_id: zone.unwrap_or_else(Uuid::nil),
        ..track(account_id, usage_type, id)
    }
}

/// Closes an image's track in `zone`. The product deletes a zoned image with one event per
/// zone; a delete without a zone (a cross-zone image, or history from elsewhere deleting every
/// copy at once) closes the cross-zone track and the track of every zone there is: closing a
/// track that is not open changes nothing.
fn close_image(
    account_id: Uuid,
    usage_type: UsageType,
    id: Uuid,
    zone: Option<Uuid>,
    upstream: &State,
    out: &mut Out,
) {
    out.close(image_track(account_id, usage_type, id, zone));
    if zone.is_none() {
        for (zone, _) in upstream.catalog.zones.iter() {
            out.close(image_track(account_id, usage_type, id, Some(*zone)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public IPs (3), port forwarding rules (12)

fn net_event(event: &NetEvent, out: &mut Out) {
    match event {
        NetEvent::IpAssign(ip) => {
            out.open(
                track(ip.account_id, UsageType::IpAddress, ip.ip_id),
                ip_record(ip),
            );
        }
        NetEvent::IpRelease(ip) => out.close(track(ip.account_id, UsageType::IpAddress, ip.ip_id)),
        NetEvent::RuleAdd(rule) if rule.purpose == RulePurpose::PortForwarding => {
            let facts = RecordFacts {
                domain_id: rule.domain_id,
                zone_id: Some(rule.zone_id),
                description: format!("Port forwarding rule usage ({})", rule.rule_id),
                old_description: format!("Port Forwarding Rule: {} usage time", rule.rule_id),
                ..RecordFacts::default()
            };
            out.open(
                track(rule.account_id, UsageType::PortForwardingRule, rule.rule_id),
                facts,
            );
        }
        NetEvent::RuleDelete(rule) if rule.purpose == RulePurpose::PortForwarding => {
            out.close(track(
                rule.account_id,
                UsageType::PortForwardingRule,
                rule.rule_id,
            ));
        }
        _ => {}
    }
}

/// IPAddressUsageParser's record (CloudStack has no other wording for it).
fn ip_record(ip: &IpAddressFacts) -> RecordFacts {
    let description = format!("IPAddress: {}", ip.address);
    RecordFacts {
        domain_id: ip.domain_id,
        zone_id: Some(ip.zone_id),
        old_description: description.clone(),
        description,
        kind: ip.is_source_nat.then(|| "SourceNat".to_owned()),
        is_source_nat: Some(ip.is_source_nat),
        is_system: Some(ip.is_system),
        ..RecordFacts::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Networks (30), network offerings of NICs (13), router counters (4, 5)

fn network_event(event: &NetworkEvent, out: &mut Out) {
    match event {
        // An update reopens with the facts after it: a new record only if they changed.
        NetworkEvent::Create(e) | NetworkEvent::Update(e) => {
            let n = &e.network;
            out.open(
                track(n.account_id, UsageType::Network, n.network_id),
                network_record(n),
            );
        }
        NetworkEvent::Delete(e) => {
            let n = &e.network;
            out.close(track(n.account_id, UsageType::Network, n.network_id));
        }
        NetworkEvent::Restart(_) => {}
    }
}

/// NetworksUsageParser's record (CloudStack has no other wording for it).
fn network_record(n: &NetworkFacts) -> RecordFacts {
    let description = format!(
        "Network usage for network ID: {}, network offering: {}",
        n.network_id, n.network_offering_id
    );
    RecordFacts {
        domain_id: n.domain_id,
        zone_id: Some(n.zone_id),
        old_description: description.clone(),
        description,
        offering_id: Some(n.network_offering_id),
        ..RecordFacts::default()
    }
}

fn network_offering_event(event: &NetworkOfferingEvent, upstream: &State, out: &mut Out) {
    match event {
        NetworkOfferingEvent::Assign(a) => {
            let mut description = String::from("Network offering ");
            if let Some(offering) = upstream.network.offerings.get(&a.network_offering_id) {
                description +=
                    &format!("{} ({}) usage ", offering.facts.name, a.network_offering_id);
            }
            if let Some(vm) = vm_name(upstream, a.vm_id) {
                description += &format!("for VM {vm} ({}) ", a.vm_id);
            }
            let facts = RecordFacts {
                domain_id: a.domain_id,
                zone_id: Some(a.zone_id),
                description,
                old_description: format!(
                    "Network offering:{} for Vm : {} usage time",
                    a.network_offering_id, a.vm_id
                ),
                vm_id: Some(a.vm_id),
                offering_id: Some(a.network_offering_id),
                is_default: Some(a.is_default),
                ..RecordFacts::default()
            };
            out.open(nic_track(a.account_id, a.vm_id, a.nic_id), facts);
        }
        NetworkOfferingEvent::Remove(a) => out.close(nic_track(a.account_id, a.vm_id, a.nic_id)),
        _ => {}
    }
}

/// NETWORK_OFFERING's track: VM + NIC.
fn nic_track(account_id: Uuid, vm_id: Uuid, nic_id: Uuid) -> TrackKey {
    TrackKey {
        sub_id: nic_id,
        ..track(account_id, UsageType::NetworkOffering, vm_id)
    }
}

/// NetworkUsageParser's records: per router, typed `DomainRouter`, named after the network.
fn router_reading(r: &NetworkCounterReading, upstream: &State, out: &mut Out) {
    let network = upstream.compute.networks.get(&r.network_id);
    let mut description = format!("{WHAT} network ");
    if let Some(network) = network {
        description += &format!("{} ({}) ", network.facts.name, r.network_id);
        description += &format!(" {SIZE} ");
    }
    if let Some(router) = upstream.network.routers.get(&r.router_id) {
        description += &format!("using router {} ({})", router.facts.name, r.router_id);
    }
    let facts = RecordFacts {
        domain_id: r.domain_id,
        zone_id: Some(r.zone_id),
        description,
        old_description: format!("network {WHAT} for Host: {}", r.router_id),
        name: network.map(|n| n.facts.name.to_string()),
        kind: Some("DomainRouter".to_owned()),
        network_id: Some(r.network_id),
        ..RecordFacts::default()
    };
    out.reading(
        DeviceKey {
            account_id: r.account_id,
            kind: DeviceKind::Router,
            device_id: r.router_id,
        },
        [r.bytes_sent, r.bytes_received, 0, 0],
        facts,
    );
}

// ---------------------------------------------------------------------------------------------
// Security groups (10), load balancers (11), VPN users (14), VPCs (31), backups (28)

fn security_group_event(event: &SecurityGroupEvent, upstream: &State, out: &mut Out) {
    let group_track = |account_id, vm_id, group_id| TrackKey {
        sub_id: group_id,
        ..track(account_id, UsageType::SecurityGroup, vm_id)
    };
    match event {
        SecurityGroupEvent::Assign(m) => {
            let mut description = String::from("Security group");
            if let Some(group) = upstream.network.security_groups.get(&m.group_id) {
                description += &format!(" {} ({}) usage", group.facts.name, m.group_id);
            }
            if let Some(vm) = vm_name(upstream, m.vm_id) {
                description += &format!(" for VM {vm} ({})", m.vm_id);
            }
            let facts = RecordFacts {
                domain_id: m.domain_id,
                zone_id: Some(m.zone_id),
                description,
                old_description: format!(
                    "Security Group: {} for Vm : {} usage time",
                    m.group_id, m.vm_id
                ),
                vm_id: Some(m.vm_id),
                ..RecordFacts::default()
            };
            out.open(group_track(m.account_id, m.vm_id, m.group_id), facts);
        }
        SecurityGroupEvent::Remove(m) => out.close(group_track(m.account_id, m.vm_id, m.group_id)),
        _ => {}
    }
}

fn load_balancer_event(event: &LoadBalancerEvent, out: &mut Out) {
    match event {
        LoadBalancerEvent::Create(lb) => {
            let facts = RecordFacts {
                domain_id: lb.domain_id,
                zone_id: Some(lb.zone_id),
                description: format!("Loadbalancer policy usage {} ({})", lb.name, lb.rule_id),
                old_description: format!("Load Balancing Policy: {} usage time", lb.rule_id),
                ..RecordFacts::default()
            };
            out.open(
                track(lb.account_id, UsageType::LoadBalancerPolicy, lb.rule_id),
                facts,
            );
        }
        LoadBalancerEvent::Delete(lb) => {
            out.close(track(
                lb.account_id,
                UsageType::LoadBalancerPolicy,
                lb.rule_id,
            ));
        }
        _ => {}
    }
}

fn vpn_event(event: &VpnEvent, out: &mut Out) {
    match event {
        VpnEvent::UserAdd(u) => {
            let facts = RecordFacts {
                domain_id: u.domain_id,
                zone_id: u.zone_id,
                description: format!("VPN usage for user {} ({})", u.username, u.vpn_user_id),
                old_description: format!(
                    "VPN User: {}, Id: {} usage time",
                    u.username, u.vpn_user_id
                ),
                ..RecordFacts::default()
            };
            out.open(
                track(u.account_id, UsageType::VpnUsers, u.vpn_user_id),
                facts,
            );
        }
        VpnEvent::UserRemove(u) => {
            out.close(track(u.account_id, UsageType::VpnUsers, u.vpn_user_id))
        }
        _ => {}
    }
}

fn vpc_event(event: &VpcEvent, out: &mut Out) {
    match event {
        VpcEvent::Create(v) => {
            // VpcUsageParser's wording; CloudStack has no other.
            let description = format!("VPC usage for VPC ID: {}", v.vpc_id);
            let facts = RecordFacts {
                domain_id: v.domain_id,
                zone_id: Some(v.zone_id),
                old_description: description.clone(),
                description,
                ..RecordFacts::default()
            };
            out.open(track(v.account_id, UsageType::Vpc, v.vpc_id), facts);
        }
        VpcEvent::Delete(v) => out.close(track(v.account_id, UsageType::Vpc, v.vpc_id)),
        _ => {}
    }
}

fn backup_event(event: &BackupEvent, upstream: &State, out: &mut Out) {
    match event {
        BackupEvent::OfferingAssign(b) => {
            // CloudStack's current wording starts "Backup usage of size <hours> Hrs": a
            // quantity of the record, not of the interval, so it is left out here.
            let mut description = String::from("Backup usage");
            let vm = upstream.compute.vms.get(&b.vm_id);
            if let Some(vm) = vm {
                description += &format!(" for VM {} ({})", vm.facts.name, b.vm_id);
            }
            description += &format!(" and backup offering ({})", b.backup_offering_id);
            let facts = RecordFacts {
                domain_id: b.domain_id,
                zone_id: Some(b.zone_id),
                description,
                old_description: format!(
                    "Backup usage VM ID: {}, backup offering: {}",
                    b.vm_id, b.backup_offering_id
                ),
                vm_id: Some(b.vm_id),
                name: vm.map(|vm| vm.facts.instance_name.to_string()),
                offering_id: Some(b.backup_offering_id),
                size: Some(b.size),
                virtual_size: Some(b.protected_size),
                ..RecordFacts::default()
            };
            out.open(track(b.account_id, UsageType::Backup, b.vm_id), facts);
        }
        BackupEvent::OfferingRemove(b) => {
            out.close(track(b.account_id, UsageType::Backup, b.vm_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use engine::clock::ManualClock;
    use engine::event::infrastructure::{ServiceOfferingFacts, ServiceOfferingLifecycle};
    use engine::event::network::{NetworkLifecycle, RulePurpose};
    use engine::event::operations::DriverFailed;
    use engine::event::storage::{
        TemplateFacts, TemplateLifecycle, VolumeCreated, VolumeResized, VolumeType,
    };
    use engine::event::vm::{
        RouterFacts, RouterLifecycle, VmCreated, VmDestroyed, VmStarted, VmStopped,
    };
    use engine::event::{DriverEvent, NewEvent, ServiceOfferingEvent, StreamId};
    use engine::store::memory::MemoryStore;
    use engine::store::{EventStore, ExpectedVersion};
    use projections::runner::{DownstreamModel, replay_in_memory};
    use projections::table::PersistedTable;

    use super::*;

    const GIB: u64 = 1 << 30;

    /// A downstream model that records what [`facts_of`] makes of every event, with the read
    /// models exactly as the usage model sees them.
    #[derive(Debug, Default)]
    struct Collector {
        seen: Vec<(String, EventState, Vec<Fact>)>,
    }

    impl DownstreamModel for Collector {
        fn version(&self) -> &'static str {
            "facts-collector"
        }
        fn apply(&mut self, event: &RecordedEvent, upstream: &State) {
            let mut facts = Vec::new();
            facts_of(event, upstream, &mut facts);
            let name = event.body.event_type().name().to_owned();
            self.seen.push((name, event.envelope.state, facts));
        }
        fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
            Vec::new()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    fn collector() -> Vec<Box<dyn DownstreamModel>> {
        vec![Box::new(Collector::default())]
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    struct World {
        store: MemoryStore,
        account: Uuid,
        domain: Uuid,
        zone: Uuid,
    }

    impl World {
        fn new() -> World {
            World {
                store: MemoryStore::new(ManualClock::new(Timestamp::from_millis(0))),
                account: Uuid::new_v4(),
                domain: Uuid::new_v4(),
                zone: Uuid::new_v4(),
            }
        }

        async fn append(&self, events: Vec<NewEvent>) {
            let stream = StreamId::new("test", Uuid::new_v4()).unwrap();
            self.store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }

        /// A fact, appended in state `Completed` at `seconds`.
        async fn fact(&self, seconds: i64, body: EventBody) -> Uuid {
            let id = Uuid::new_v4();
            self.append(vec![NewEvent::with_id(id, body).occurred_at(at(seconds))])
                .await;
            id
        }

        /// A driver request, appended in state `Started` at `seconds`.
        async fn request(&self, seconds: i64, body: EventBody) -> Uuid {
            let id = Uuid::new_v4();
            self.append(vec![
                NewEvent::with_id(id, body)
                    .occurred_at(at(seconds))
                    .state(EventState::Started),
            ])
            .await;
            id
        }

        /// The driver's confirmation of `request`: the same body in state `Completed`.
        async fn result(&self, seconds: i64, request: Uuid, body: EventBody) {
            self.append(vec![
                NewEvent::derived(request, "result", body).occurred_at(at(seconds)),
            ])
            .await;
        }

        /// What each event meant, in log order.
        async fn seen(&self) -> Vec<(String, EventState, Vec<Fact>)> {
            let state = replay_in_memory(Arc::new(self.store.clone()), collector)
                .await
                .unwrap();
            state.downstream::<Collector>().unwrap().seen.clone()
        }

        fn vm(&self, offering: Uuid, template: Uuid) -> VmFacts {
            VmFacts {
                vm_id: Uuid::new_v4(),
                name: "web1".into(),
                instance_name: "i-2-5-VM".into(),
                display_name: None,
                account_id: self.account,
                domain_id: self.domain,
                zone_id: self.zone,
                service_offering_id: offering,
                template_id: template,
                hypervisor: "Simulator".into(),
                cpu_number: 1,
                cpu_speed: 500,
                memory: 512,
            }
        }
    }

    fn offering(id: Uuid) -> EventBody {
        EventBody::ServiceOffering(ServiceOfferingEvent::Create(ServiceOfferingLifecycle {
            offering: ServiceOfferingFacts {
                service_offering_id: id,
                name: "Small Instance".into(),
                display_text: "Small Instance".into(),
                cpu_number: Some(1),
                cpu_speed: Some(500),
                memory: Some(512),
                is_customized: false,
                offer_ha: false,
                limit_cpu_use: false,
                dynamic_scaling_enabled: true,
                storage_type: "shared".into(),
                host_tags: None,
                storage_tags: None,
                root_disk_size: None,
                domain_ids: Vec::new(),
                zone_ids: Vec::new(),
                system_vm_type: None,
            },
        }))
    }

    fn template(world: &World, id: Uuid) -> EventBody {
        EventBody::Template(TemplateEvent::Create(TemplateLifecycle {
            template: TemplateFacts {
                template_id: id,
                name: "CentOS".into(),
                display_text: "CentOS".into(),
                account_id: world.account,
                domain_id: world.domain,
                zone_id: Some(world.zone),
                format: "QCOW2".into(),
                hypervisor: "Simulator".into(),
                os_type_id: None,
                size: 2 * GIB,
                virtual_size: 2 * GIB,
                is_public: true,
                is_featured: false,
                url: None,
                source_volume_id: None,
                source_snapshot_id: None,
            },
        }))
    }

    fn facts_for(
        seen: &[(String, EventState, Vec<Fact>)],
        name: &str,
        state: EventState,
    ) -> Vec<Vec<Fact>> {
        seen.iter()
            .filter(|(n, s, _)| n == name && *s == state)
            .map(|(_, _, facts)| facts.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_vm_accrues_from_confirmed_start_to_confirmed_stop_and_until_destroyed() {
        let world = World::new();
        let (offering_id, template_id) = (Uuid::new_v4(), Uuid::new_v4());
        world.fact(1, offering(offering_id)).await;
        world.fact(2, template(&world, template_id)).await;
        let vm = world.vm(offering_id, template_id);
        let created = VmCreated {
            vm: vm.clone(),
            host_id: None,
            disk_offering_id: None,
            root_disk_size: None,
            user_data: None,
            ssh_keypairs: Vec::new(),
            affinity_group_ids: Vec::new(),
        };
        world
            .fact(10, EventBody::Vm(VmEvent::Create(created)))
            .await;
        let start = || {
            EventBody::Vm(VmEvent::Start(VmStarted {
                vm: vm.clone(),
                host_id: Some(Uuid::new_v4()),
            }))
        };
        let request = world.request(20, start()).await;
        world.result(30, request, start()).await;
        let stop = || {
            EventBody::Vm(VmEvent::Stop(VmStopped {
                vm: vm.clone(),
                forced: false,
            }))
        };
        let request = world.request(40, stop()).await;
        world.result(50, request, stop()).await;
        let destroy = || {
            EventBody::Vm(VmEvent::Destroy(VmDestroyed {
                vm: vm.clone(),
                expunge: false,
            }))
        };
        let request = world.request(60, destroy()).await;
        world.result(70, request, destroy()).await;

        let seen = world.seen().await;
        let allocated = track(world.account, UsageType::AllocatedVm, vm.vm_id);
        let running = track(world.account, UsageType::RunningVm, vm.vm_id);
        let created = facts_for(&seen, "VM.CREATE", EventState::Completed);
        let [opened] = created[0].as_slice() else {
            panic!("VM.CREATE: {created:?}");
        };
        let Fact::Open {
            track,
            at: when,
            facts,
        } = opened
        else {
            panic!("{opened:?}");
        };
        assert_eq!((*track, *when), (allocated, at(10)));
        assert_eq!(
            facts.description,
            format!(
                "Allocated VM usage for web1 (i-2-5-VM) ({}) using service offering Small Instance ({offering_id}) and template CentOS ({template_id})",
                vm.vm_id
            )
        );
        assert_eq!(
            facts.old_description,
            format!(
                "i-2-5-VM allocated (ServiceOffering: {offering_id}) (Template: {template_id})"
            )
        );
        assert_eq!(facts.kind.as_deref(), Some("Simulator"));
        assert_eq!(facts.vm_id, Some(vm.vm_id));
        assert_eq!(facts.name.as_deref(), Some("web1"));
        assert_eq!(
            (facts.cpu_number, facts.cpu_speed, facts.memory),
            (Some(1), Some(500), Some(512))
        );

        // Requests mean nothing; results open and close.
        for name in ["VM.START", "VM.STOP", "VM.DESTROY"] {
            assert_eq!(
                facts_for(&seen, name, EventState::Started),
                vec![Vec::<Fact>::new()]
            );
        }
        let started = facts_for(&seen, "VM.START", EventState::Completed);
        let [
            Fact::Open {
                track,
                at: when,
                facts,
            },
        ] = started[0].as_slice()
        else {
            panic!("VM.START: {started:?}");
        };
        assert_eq!((*track, *when), (running, at(30)));
        assert!(
            facts
                .description
                .starts_with("Running VM usage for web1 (i-2-5-VM)")
        );
        assert!(
            facts
                .old_description
                .starts_with("i-2-5-VM running time (ServiceOffering: ")
        );
        assert_eq!(
            facts_for(&seen, "VM.STOP", EventState::Completed),
            vec![vec![Fact::Close {
                track: running,
                at: at(50)
            }]]
        );
        assert_eq!(
            facts_for(&seen, "VM.DESTROY", EventState::Completed),
            vec![vec![
                Fact::Close {
                    track: running,
                    at: at(70)
                },
                Fact::Close {
                    track: allocated,
                    at: at(70)
                },
            ]]
        );
    }

    #[tokio::test]
    async fn a_start_the_driver_refuses_accrues_nothing() {
        let world = World::new();
        let vm = world.vm(Uuid::new_v4(), Uuid::new_v4());
        let start = EventBody::Vm(VmEvent::Start(VmStarted {
            vm: vm.clone(),
            host_id: Some(Uuid::new_v4()),
        }));
        let request = world.request(20, start).await;
        let failed = DriverFailed {
            command_id: request,
            command: "StartCommand".into(),
            resource_type: "VirtualMachine".into(),
            resource_id: vm.vm_id,
            account_id: world.account,
            domain_id: world.domain,
            error: "no capacity".into(),
        };
        world
            .result(30, request, EventBody::Driver(DriverEvent::Failed(failed)))
            .await;
        let seen = world.seen().await;
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter().all(|(_, _, facts)| facts.is_empty()),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_confirmed_resize_reopens_the_volume_with_its_new_size() {
        let world = World::new();
        let template_id = Uuid::new_v4();
        world.fact(1, template(&world, template_id)).await;
        let volume = VolumeFacts {
            volume_id: Uuid::new_v4(),
            name: "ROOT-5".into(),
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            volume_type: VolumeType::Root,
            size: 2 * GIB,
            disk_offering_id: None,
            template_id: Some(template_id),
        };
        world
            .fact(
                10,
                EventBody::Volume(VolumeEvent::Create(VolumeCreated {
                    volume: volume.clone(),
                    vm_id: None,
                    snapshot_id: None,
                })),
            )
            .await;
        let resize = || {
            EventBody::Volume(VolumeEvent::Resize(VolumeResized {
                volume: VolumeFacts {
                    size: 5 * GIB,
                    ..volume.clone()
                },
                previous_size: 2 * GIB,
                previous_disk_offering_id: None,
            }))
        };
        let request = world.request(20, resize()).await;
        world.result(30, request, resize()).await;

        let seen = world.seen().await;
        let key = track(world.account, UsageType::Volume, volume.volume_id);
        let created = facts_for(&seen, "VOLUME.CREATE", EventState::Completed);
        let [
            Fact::Close {
                track: secondary, ..
            },
            Fact::Open {
                track: opened,
                facts,
                ..
            },
        ] = created[0].as_slice()
        else {
            panic!("VOLUME.CREATE: {created:?}");
        };
        assert_eq!(secondary.usage_type, UsageType::VolumeSecondary);
        assert_eq!(*opened, key);
        assert_eq!(facts.size, Some(2 * GIB));
        assert_eq!(
            facts.description,
            format!(
                "Volume usage for ROOT-5 ({}) and template CentOS ({template_id}) and size (2.00 GB) 2147483648",
                volume.volume_id
            )
        );
        assert_eq!(
            facts.old_description,
            format!(
                "Volume Id: {} usage time (Template: {template_id})",
                volume.volume_id
            )
        );
        assert_eq!(
            facts_for(&seen, "VOLUME.RESIZE", EventState::Started),
            vec![Vec::<Fact>::new()]
        );
        let resized = facts_for(&seen, "VOLUME.RESIZE", EventState::Completed);
        let [
            Fact::Open {
                track,
                at: when,
                facts,
            },
        ] = resized[0].as_slice()
        else {
            panic!("VOLUME.RESIZE: {resized:?}");
        };
        assert_eq!((*track, *when), (key, at(30)));
        assert_eq!(facts.size, Some(5 * GIB));
        assert!(facts.description.ends_with("and size (5.00 GB) 5368709120"));
    }

    #[tokio::test]
    async fn a_public_ip_accrues_from_assignment_to_release() {
        let world = World::new();
        let ip = IpAddressFacts {
            ip_id: Uuid::new_v4(),
            address: "172.16.0.11".parse().unwrap(),
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            vlan_range_id: None,
            network_id: None,
            vpc_id: None,
            is_source_nat: true,
            is_system: false,
        };
        world
            .fact(10, EventBody::Net(NetEvent::IpAssign(ip.clone())))
            .await;
        world
            .fact(20, EventBody::Net(NetEvent::IpRelease(ip.clone())))
            .await;
        let seen = world.seen().await;
        let key = track(world.account, UsageType::IpAddress, ip.ip_id);
        let expected = RecordFacts {
            domain_id: world.domain,
            zone_id: Some(world.zone),
            description: "IPAddress: 172.16.0.11".into(),
            old_description: "IPAddress: 172.16.0.11".into(),
            kind: Some("SourceNat".into()),
            is_source_nat: Some(true),
            is_system: Some(false),
            ..RecordFacts::default()
        };
        assert_eq!(
            seen.iter().map(|(_, _, f)| f.clone()).collect::<Vec<_>>(),
            vec![
                vec![Fact::Open {
                    track: key,
                    at: at(10),
                    facts: expected
                }],
                vec![Fact::Close {
                    track: key,
                    at: at(20)
                }],
            ]
        );
    }

    #[tokio::test]
    async fn only_port_forwarding_rules_accrue() {
        let world = World::new();
        let rule = |purpose| engine::event::network::NetworkRule {
            rule_id: Uuid::new_v4(),
            purpose,
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            network_id: None,
            ip_address_id: None,
            protocol: "tcp".into(),
            public_start_port: Some(22),
            public_end_port: Some(22),
            private_start_port: Some(22),
            private_end_port: Some(22),
            vm_id: None,
            vm_guest_ip: None,
            cidrs: Vec::new(),
        };
        let forwarding = rule(RulePurpose::PortForwarding);
        world
            .fact(10, EventBody::Net(NetEvent::RuleAdd(forwarding.clone())))
            .await;
        world
            .fact(
                10,
                EventBody::Net(NetEvent::RuleAdd(rule(RulePurpose::StaticNat))),
            )
            .await;
        let seen = world.seen().await;
        let [(_, _, first), (_, _, second)] = seen.as_slice() else {
            panic!("{seen:?}");
        };
        assert!(second.is_empty());
        let [Fact::Open { track, facts, .. }] = first.as_slice() else {
            panic!("{first:?}");
        };
        assert_eq!(track.usage_type, UsageType::PortForwardingRule);
        assert_eq!(
            facts.description,
            format!("Port forwarding rule usage ({})", forwarding.rule_id)
        );
    }

    #[tokio::test]
    async fn a_router_reading_feeds_its_device_with_sent_and_received_counters() {
        let world = World::new();
        let network_id = Uuid::new_v4();
        let router = RouterFacts {
            router_id: Uuid::new_v4(),
            name: "r-7-VM".into(),
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            network_id: Some(network_id),
            vpc_id: None,
            host_id: None,
            service_offering_id: Uuid::new_v4(),
            template_id: None,
            public_ip: None,
            guest_ip: None,
        };
        let network = NetworkFacts {
            network_id,
            name: "net1".into(),
            display_text: "net1".into(),
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            network_offering_id: Uuid::new_v4(),
            guest_type: "Isolated".into(),
            vpc_id: None,
            cidr: Some("10.1.1.0/24".into()),
            gateway: None,
            vlan: None,
            network_domain: None,
        };
        world
            .fact(
                1,
                EventBody::Network(NetworkEvent::Create(NetworkLifecycle { network })),
            )
            .await;
        world
            .fact(
                2,
                EventBody::Router(RouterEvent::Create(RouterLifecycle {
                    router: router.clone(),
                })),
            )
            .await;
        let reading = NetworkCounterReading {
            router_id: router.router_id,
            network_id,
            account_id: world.account,
            domain_id: world.domain,
            zone_id: world.zone,
            bytes_sent: 2048,
            bytes_received: 512,
        };
        world
            .fact(300, EventBody::Router(RouterEvent::Stats(reading)))
            .await;
        let seen = world.seen().await;
        let stats = facts_for(&seen, "ROUTER.STATS", EventState::Completed);
        let [
            Fact::Reading {
                device,
                at: when,
                counters,
                facts,
            },
        ] = stats[0].as_slice()
        else {
            panic!("ROUTER.STATS: {stats:?}");
        };
        assert_eq!(
            *device,
            DeviceKey {
                account_id: world.account,
                kind: DeviceKind::Router,
                device_id: router.router_id,
            }
        );
        assert_eq!((*when, *counters), (at(300), [2048, 512, 0, 0]));
        assert_eq!(facts.kind.as_deref(), Some("DomainRouter"));
        assert_eq!(facts.network_id, Some(network_id));
        assert_eq!(facts.name.as_deref(), Some("net1"));
        assert_eq!(
            record_description(facts, UsageType::NetworkBytesSent, 2048, false),
            format!(
                "Bytes sent by network net1 ({network_id})  (2.00 KB) 2048 using router r-7-VM ({})",
                router.router_id
            )
        );
        assert_eq!(
            record_description(facts, UsageType::NetworkBytesReceived, 512, true),
            format!("network bytes received for Host: {}", router.router_id)
        );
        // The network's record: the NETWORK.CREATE that came first.
        let created = facts_for(&seen, "NETWORK.CREATE", EventState::Completed);
        let [Fact::Open { track, .. }] = created[0].as_slice() else {
            panic!("{created:?}");
        };
        assert_eq!(track.usage_type, UsageType::Network);
    }

    #[test]
    fn sizes_read_as_cloudstack_prints_them() {
        assert_eq!(human_size(1023), "(1023 bytes) 1023");
        assert_eq!(human_size(1536), "(1.50 KB) 1536");
        assert_eq!(human_size(1024 * 1024 * 5 / 2), "(2.50 MB) 2621440");
        // 1.005 KiB = 1029.12 bytes: 1029 is 1.00488..., rounded to 1.00.
        assert_eq!(readable_size(1029), "1.00 KB");
        assert_eq!(readable_size(1030), "1.01 KB");
        assert_eq!(readable_size(3 << 40), "3.0000 TB");
    }

    #[test]
    fn time_based_descriptions_are_shown_as_rendered() {
        let facts = RecordFacts {
            description: "VPC usage for VPC ID: x {size}".into(),
            old_description: "old".into(),
            ..RecordFacts::default()
        };
        assert_eq!(
            record_description(&facts, UsageType::Vpc, 5, false),
            "VPC usage for VPC ID: x {size}"
        );
        assert_eq!(record_description(&facts, UsageType::Vpc, 5, true), "old");
    }
}
