//! Volumes: `createVolume`, `attachVolume`, `detachVolume`, `resizeVolume`, `deleteVolume`,
//! `listVolumes`, `uploadVolume`.
//!
//! Every decision about a volume is made on the [`ALLOCATION`] stream: creating one counts
//! against the `volume` and `primary_storage` limits, and attach, detach, resize and delete
//! must see each other (a volume being attached cannot be deleted meanwhile). Attach, detach
//! and resize are performed by the hypervisor: the command appends a `Started` request and
//! its job completes from the driver's result (see `jobs::after_command`).

use compact_str::CompactString;
use engine::event::storage::{
    VolumeAttachment, VolumeCreated, VolumeFacts, VolumeLifecycle, VolumeResized, VolumeType,
    VolumeUploaded,
};
use engine::event::{EventBody, NewEvent, VolumeEvent};
use projections::State;
use projections::compute::{VmRow, VmState};
use projections::storage::{VolumeRow, VolumeStateName, volume_type_name};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ALLOCATION, ResourceType, check_limit, gib, owner};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::render::{merge, owner_fields};
use crate::commands::{date, row_reply};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobIds, JobMeta};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

const GIB: u64 = 1024 * 1024 * 1024;

/// Smallest custom volume, GB: CloudStack's default `custom.diskoffering.size.min` (a setting
/// Ledgerstack does not offer, so its default applies).
const CUSTOM_SIZE_MIN_GB: i64 = 1;

/// Largest custom volume, GB: CloudStack's default `custom.diskoffering.size.max`.
const CUSTOM_SIZE_MAX_GB: i64 = 1024;

/// Data disks one VM may have: CloudStack's fallback when a hypervisor declares no
/// `max_data_volumes_limit`.
const MAX_DATA_VOLUMES: usize = 6;

/// The highest device number of a data disk: with device 3 kept for the CD-ROM, devices 1, 2
/// and 4 to 7 give [`MAX_DATA_VOLUMES`] slots.
const MAX_DEVICE_ID: u32 = MAX_DATA_VOLUMES as u32 + 1;

/// The device number CloudStack keeps for the CD-ROM drive.
const CDROM_DEVICE_ID: u32 = 3;

/// Size recorded for an uploaded volume: Ledgerstack downloads nothing, so it cannot learn
/// the image's size as CloudStack's secondary storage VM does; every upload counts 1 GiB.
pub const UPLOADED_VOLUME_SIZE: u64 = GIB;

/// What `uploadVolume` accepts as `format` (CloudStack's `ImageFormat` values for disks).
const UPLOAD_FORMATS: &[&str] = &["QCOW2", "RAW", "VHD", "VHDX", "OVA", "VMDK", "TAR"];

const VOLUME_FIELDS: &[ResponseField] = &[
    field("id", "string", "ID of the disk volume"),
    field("name", "string", "name of the disk volume"),
    field("zoneid", "string", "ID of the availability zone"),
    field("zonename", "string", "name of the availability zone"),
    field(
        "type",
        "string",
        "type of the disk volume (ROOT or DATADISK)",
    ),
    field(
        "deviceid",
        "long",
        "the ID of the device on user vm the volume is attahed to. This tag is not returned when the volume is detached.",
    ),
    field("virtualmachineid", "string", "id of the virtual machine"),
    field("vmname", "string", "name of the virtual machine"),
    field(
        "vmdisplayname",
        "string",
        "display name of the virtual machine",
    ),
    field("vmstate", "string", "state of the virtual machine"),
    field("vmtype", "string", "type of the virtual machine"),
    field("size", "long", "size of the disk volume"),
    field("created", "date", "the date the disk volume was created"),
    field("state", "string", "the state of the disk volume"),
    field(
        "account",
        "string",
        "the account associated with the disk volume",
    ),
    field(
        "domainid",
        "string",
        "the ID of the domain associated with the disk volume",
    ),
    field(
        "domain",
        "string",
        "the domain associated with the disk volume",
    ),
    field("storagetype", "string", "shared or local storage"),
    field("hypervisor", "string", "Hypervisor the volume belongs to"),
    field("diskofferingid", "string", "ID of the disk offering"),
    field("diskofferingname", "string", "name of the disk offering"),
    field(
        "diskofferingdisplaytext",
        "string",
        "the display text of the disk offering",
    ),
    field(
        "serviceofferingid",
        "string",
        "ID of the service offering for root disk",
    ),
    field(
        "serviceofferingname",
        "string",
        "name of the service offering for root disk",
    ),
    field(
        "templateid",
        "string",
        "the ID of the template for the virtual machine. A -1 is returned if the virtual machine was created from an ISO file.",
    ),
    field(
        "templatename",
        "string",
        "the name of the template for the virtual machine",
    ),
    field(
        "templatedisplaytext",
        "string",
        "an alternate display text of the template for the virtual machine",
    ),
    field(
        "snapshotid",
        "string",
        "ID of the snapshot from which this volume was created",
    ),
    field(
        "attached",
        "date",
        "the date the volume was attached to a VM instance",
    ),
    field(
        "destroyed",
        "boolean",
        "the boolean state of whether the volume is destroyed or not",
    ),
    field(
        "isextractable",
        "boolean",
        "true if the volume is extractable, false otherwise",
    ),
    field(
        "provisioningtype",
        "string",
        "provisioning type used to create volumes.",
    ),
    field(
        "displayvolume",
        "boolean",
        "an optional field whether to the display the volume to the end user or not.",
    ),
    field(
        "quiescevm",
        "boolean",
        "need quiesce vm or not when taking snapshot",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with volume",
    ),
];

/// The volume commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createVolume",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a disk volume from a disk offering. This disk volume must still be attached to a virtual machine to make use of it.",
        params: &[
            param("name", T::String, "the name of the disk volume"),
            param(
                "diskofferingid",
                T::Uuid,
                "the ID of the disk offering. Either diskOfferingId or snapshotId must be passed in.",
            ),
            param(
                "snapshotid",
                T::Uuid,
                "the snapshot ID for the disk volume. Either diskOfferingId or snapshotId must be passed in.",
            ),
            param(
                "size",
                T::Long,
                "Arbitrary volume size, in GB (custom disk offerings only)",
            ),
            param("zoneid", T::Uuid, "the ID of the availability zone"),
            param(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine; to be used with snapshot Id, VM to which the volume gets attached after creation",
            ),
            param(
                "account",
                T::String,
                "the account associated with the disk volume. Must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID associated with the disk offering. If used with the account parameter returns the disk volume associated with the account for the specified domain.",
            ),
            param(
                "projectid",
                T::Uuid,
                "the project associated with the volume (projects are not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VOLUME_FIELDS,
        related: "attachVolume,detachVolume,listVolumes",
        manual_clock_only: false,
        handler: handler!(create_volume),
    },
    CommandSpec {
        name: "attachVolume",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Attaches a disk volume to a virtual machine.",
        params: &[
            required("id", T::Uuid, "the ID of the disk volume"),
            required("virtualmachineid", T::Uuid, "the ID of the virtual machine"),
            param(
                "deviceid",
                T::Long,
                "the ID of the device to map the volume to the guest OS (1, 2, 4 and up; 0 is the root disk, 3 the CD-ROM); the next free one when absent",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VOLUME_FIELDS,
        related: "detachVolume,listVolumes",
        manual_clock_only: false,
        handler: handler!(attach_volume),
    },
    CommandSpec {
        name: "detachVolume",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Detaches a disk volume from a virtual machine.",
        params: &[
            param("id", T::Uuid, "the ID of the disk volume"),
            param(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine where the volume is detached from",
            ),
            param(
                "deviceid",
                T::Long,
                "the device ID on the virtual machine where volume is detached from",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VOLUME_FIELDS,
        related: "attachVolume,listVolumes",
        manual_clock_only: false,
        handler: handler!(detach_volume),
    },
    CommandSpec {
        name: "resizeVolume",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Resizes a volume",
        params: &[
            required("id", T::Uuid, "the ID of the disk volume"),
            param("size", T::Long, "New volume size in GB"),
            param("diskofferingid", T::Uuid, "new disk offering id"),
            param("shrinkok", T::Boolean, "Verify OK to Shrink"),
        ],
        inherits: Inherits::Nothing,
        response: VOLUME_FIELDS,
        related: "listVolumes",
        manual_clock_only: false,
        handler: handler!(resize_volume),
    },
    CommandSpec {
        name: "deleteVolume",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Deletes a detached disk volume.",
        params: &[required("id", T::Uuid, "The ID of the disk volume")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_volume),
    },
    CommandSpec {
        name: "listVolumes",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all volumes.",
        params: &[
            param("id", T::Uuid, "the ID of the disk volume"),
            param("name", T::String, "the name of the disk volume"),
            param("virtualmachineid", T::Uuid, "the ID of the virtual machine"),
            param(
                "type",
                T::String,
                "the type of disk volume (ROOT or DATADISK)",
            ),
            param("zoneid", T::Uuid, "the ID of the availability zone"),
        ],
        inherits: Inherits::PagingAndScope,
        response: VOLUME_FIELDS,
        related: "createVolume,attachVolume,detachVolume,resizeVolume",
        manual_clock_only: false,
        handler: handler!(list_volumes),
    },
    CommandSpec {
        name: "uploadVolume",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Uploads a data disk. Ledgerstack downloads nothing: the volume counts 1 GiB on secondary storage until it is attached.",
        params: &[
            required("name", T::String, "the name of the volume"),
            required(
                "url",
                T::String,
                "the URL of where the volume is hosted. Possible URL include http:// and https://",
            ),
            required(
                "format",
                T::String,
                "the format for the volume. Possible values include QCOW2, OVA, and VHD.",
            ),
            required(
                "zoneid",
                T::Uuid,
                "the ID of the zone the volume is to be hosted on",
            ),
            param("checksum", T::String, "the checksum value of this volume."),
            param(
                "diskofferingid",
                T::Uuid,
                "the ID of the disk offering. This must be a custom sized offering since during uploadVolume volume size is unknown.",
            ),
            param(
                "account",
                T::String,
                "an optional accountName. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId. If the account parameter is used, domainId must also be used.",
            ),
            param(
                "projectid",
                T::Uuid,
                "Upload volume for the project (projects are not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VOLUME_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(upload_volume),
    },
];

// ---------------------------------------------------------------------------------------------
// Shared with the snapshot commands

/// 531 unless the caller may act on a resource of `account` in `domain`.
pub(crate) fn check_access(
    state: &State,
    call: &Call,
    account: Uuid,
    domain: Uuid,
    what: &str,
    id: Uuid,
) -> Result<(), ApiError> {
    if call.caller.may_access(state, account, domain) {
        return Ok(());
    }
    let name = state
        .identity
        .account_name(call.caller.account_id)
        .unwrap_or_default();
    Err(ApiError::permission_denied(format!(
        "Account {name} does not have permission to operate on {what} {id}"
    )))
}

/// The zone's name, for `zonename`.
pub(crate) fn zone_name(state: &State, zone: Uuid) -> Option<CompactString> {
    state.catalog.zones.get(&zone).map(|z| z.facts.name.clone())
}

/// The `what` of id `id` found in `row`, which the caller may act on (431 when unknown, 531
/// when not theirs); `owner` gives its account and domain.
pub(crate) fn accessible_row<'s, R>(
    state: &State,
    call: &Call,
    what: &str,
    id: Uuid,
    row: Option<&'s R>,
    owner: impl FnOnce(&R) -> (Uuid, Uuid),
) -> Result<&'s R, ApiError> {
    let row =
        row.ok_or_else(|| ApiError::invalid_param(format!("Unable to find {what} by id {id}")))?;
    let (account, domain) = owner(row);
    check_access(state, call, account, domain, what, id)?;
    Ok(row)
}

/// The VM `id`, which the caller may act on (431 when unknown, 531 when not theirs).
pub(crate) fn accessible_vm<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s VmRow, ApiError> {
    let row = state.compute.vms.get(&id);
    accessible_row(state, call, "virtual machine", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// The volume `id`, which the caller may act on (431 when unknown, 531 when not theirs).
pub(crate) fn accessible_volume<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s VolumeRow, ApiError> {
    let row = state.storage.volumes.get(&id);
    accessible_row(state, call, "volume", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// Whether a list shows a resource of `account` in `domain`. Given an `id` (and no
/// `account`/`domainid`), an admin finds any resource they may act on, without `listall`, as
/// CloudStack's search by id does; otherwise the scope decides.
pub(crate) fn listed(
    state: &State,
    call: &Call,
    scope: ListScope,
    by_id: bool,
    account: Uuid,
    domain: Uuid,
) -> bool {
    let unscoped = call.str("account").is_none()
        && call.str("domainid").is_none()
        && scope != ListScope::Nothing;
    if by_id && unscoped {
        call.caller.may_access(state, account, domain)
    } else {
        scope.admits(state, Some(account), Some(domain))
    }
}

/// True while the hypervisor works on the volume (attach, detach or resize in flight).
pub(crate) fn volume_busy(row: &VolumeRow) -> bool {
    row.attaching || row.detaching || row.state == VolumeStateName::Resizing
}

/// True while a snapshot of the volume is being taken.
fn snapshot_in_progress(state: &State, volume_id: Uuid) -> bool {
    state
        .storage
        .snapshots
        .values()
        .any(|s| s.facts.volume_id == volume_id && !s.backed_up)
}

// ---------------------------------------------------------------------------------------------
// JSON views

/// A volume as CloudStack's VolumeResponse shows it.
pub fn volume_json(state: &State, row: &VolumeRow) -> Value {
    let volume = &row.facts;
    let vm = row.vm_id.and_then(|id| state.compute.vms.get(&id));
    let offering = volume
        .disk_offering_id
        .and_then(|id| state.catalog.disk_offerings.get(&id));
    let is_root = volume.volume_type == VolumeType::Root;
    let template = volume
        .template_id
        .filter(|_| is_root)
        .and_then(|id| state.storage.templates.get(&id));
    let service_offering = vm.filter(|_| is_root).and_then(|vm| {
        state
            .catalog
            .service_offerings
            .get(&vm.facts.service_offering_id)
    });
    let value = json!({
        "id": volume.volume_id,
        "name": volume.name,
        "zoneid": volume.zone_id,
        "zonename": zone_name(state, volume.zone_id),
        "type": volume_type_name(volume),
        "deviceid": row.device_id,
        "virtualmachineid": row.vm_id,
        "vmname": vm.map(|v| v.facts.name.clone()),
        "vmdisplayname": vm.map(|v| v.facts.display_name.clone().unwrap_or_else(|| v.facts.name.clone())),
        "vmstate": vm.map(|v| v.state.as_str()),
        "vmtype": vm.map(|_| "User"),
        "size": volume.size,
        "created": date(row.created),
        "state": row.state.as_str(),
        "storagetype": offering.map_or_else(|| "shared".into(), |o| o.facts.storage_type.clone()),
        "hypervisor": vm.map_or_else(|| "Simulator".into(), |v| v.facts.hypervisor.clone()),
        "diskofferingid": volume.disk_offering_id,
        "diskofferingname": offering.map(|o| o.facts.name.clone()),
        "diskofferingdisplaytext": offering.map(|o| o.facts.display_text.clone()),
        "serviceofferingid": service_offering.map(|o| o.facts.service_offering_id),
        "serviceofferingname": service_offering.map(|o| o.facts.name.clone()),
        "templateid": volume.template_id.filter(|_| is_root),
        "templatename": template.map(|t| t.facts.name.clone()),
        "templatedisplaytext": template.map(|t| t.facts.display_text.clone()),
        "attached": row.attached.map(date),
        "destroyed": false,
        // CloudStack lets data disks be extracted; a root disk only when its template is
        // extractable, which registered templates are not by default.
        "isextractable": !is_root,
        "provisioningtype": "thin",
        "displayvolume": true,
        "quiescevm": false,
        "tags": super::tags::tags_json(state, volume.volume_id),
    });
    merge(
        value,
        owner_fields(state, volume.account_id, volume.domain_id),
    )
}

/// The `volume` reply for volume `id`.
pub fn volume_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.storage.volumes.get(&id),
        "volume",
        "volume",
        id,
        |r| volume_json(state, r),
    )
}

// ---------------------------------------------------------------------------------------------
// Checks

/// A custom size in GB, within CloudStack's default bounds, in bytes.
fn custom_size(size_gb: i64) -> Result<u64, ApiError> {
    if size_gb < CUSTOM_SIZE_MIN_GB {
        return Err(ApiError::invalid_param(format!(
            "Invalid size for custom volume creation: {size_gb}, min volume size is: {CUSTOM_SIZE_MIN_GB}GB"
        )));
    }
    if size_gb > CUSTOM_SIZE_MAX_GB {
        return Err(ApiError::invalid_param(format!(
            "Invalid size for custom volume creation: {size_gb} ,max volume size is:{CUSTOM_SIZE_MAX_GB}GB"
        )));
    }
    Ok(size_gb as u64 * GIB)
}

/// The disk offering `id` for a volume of `domain` in `zone`, with the size it gives (the
/// offering's, or `size_gb` for a custom one).
fn offering_size(
    state: &State,
    id: Uuid,
    domain: Uuid,
    zone: Uuid,
    size_gb: Option<i64>,
) -> Result<u64, ApiError> {
    let offering = &state
        .catalog
        .disk_offerings
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find disk offering by id {id}")))?
        .facts;
    if !offering.domain_ids.is_empty()
        && !offering
            .domain_ids
            .iter()
            .any(|&d| state.identity.is_in_subtree(domain, d))
    {
        return Err(ApiError::permission_denied(format!(
            "Disk offering {} is not available to domain {domain}",
            offering.name
        )));
    }
    if !offering.zone_ids.is_empty() && !offering.zone_ids.contains(&zone) {
        return Err(ApiError::invalid_param(format!(
            "Disk offering {} is not available in zone {zone}",
            offering.name
        )));
    }
    match (offering.is_customized, offering.disk_size, size_gb) {
        (true, _, Some(gb)) => custom_size(gb),
        (true, _, None) => Err(ApiError::invalid_param(
            "This disk offering requires a custom size specified",
        )),
        (false, _, Some(_)) => Err(ApiError::invalid_param(
            "This disk offering does not allow custom size",
        )),
        (false, Some(bytes), None) => Ok(bytes),
        (false, None, None) => Err(ApiError::invalid_param(format!(
            "Disk offering {} has no size",
            offering.name
        ))),
    }
}

/// The zone `id`, usable by the caller (a disabled zone is for root admins only).
fn usable_zone(state: &State, call: &Call, id: Uuid) -> Result<(), ApiError> {
    let zone = state
        .catalog
        .zones
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find zone by id {id}")))?;
    if zone.facts.allocation_state == "Disabled" && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(format!(
            "Cannot perform this operation, Zone is currently disabled: {id}"
        )));
    }
    Ok(())
}

/// The lowest free data-disk device number of a VM (1 upward, skipping the CD-ROM's 3).
fn next_device_id(used: &[u32]) -> Option<u32> {
    (1..=MAX_DEVICE_ID).find(|d| *d != CDROM_DEVICE_ID && !used.contains(d))
}

/// Checks attaching `volume` to VM `vm_id` on `state`; returns the device number to use.
fn check_attach(
    state: &State,
    call: &Call,
    volume: &VolumeFacts,
    attached_to: Option<Uuid>,
    vm_id: Uuid,
    device: Option<i64>,
) -> Result<u32, ApiError> {
    if let Some(other) = attached_to {
        let vm_name = state
            .compute
            .vms
            .get(&other)
            .map_or_else(|| other.to_string(), |v| v.facts.name.to_string());
        return Err(ApiError::in_use(format!(
            "Volume {} is already attached to VM {vm_name}; please specify a volume that is not attached to any VM.",
            volume.name
        )));
    }
    if volume.volume_type != VolumeType::DataDisk {
        return Err(ApiError::invalid_param(
            "Please specify a valid data volume.",
        ));
    }
    let vm = accessible_vm(state, call, vm_id)?;
    if vm.facts.account_id != volume.account_id && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(format!(
            "Entity volume {} and entity virtual machine {vm_id} belong to different accounts",
            volume.volume_id
        )));
    }
    if !matches!(vm.state, VmState::Running | VmState::Stopped) {
        return Err(ApiError::invalid_param(
            "Please specify a VM that is either running or stopped.",
        ));
    }
    if vm.facts.zone_id != volume.zone_id {
        return Err(ApiError::invalid_param(
            "Please specify a VM that is in the same zone as the volume.",
        ));
    }
    if state
        .storage
        .vm_snapshots
        .values()
        .any(|s| s.facts.vm_id == vm_id)
    {
        return Err(ApiError::invalid_param(
            "Unable to attach volume, please specify a VM that does not have VM snapshots",
        ));
    }
    let data_disks: Vec<u32> = state
        .storage
        .volumes_of(vm_id)
        .into_iter()
        .filter(|v| v.facts.volume_type == VolumeType::DataDisk)
        .filter_map(|v| v.device_id)
        .collect();
    if data_disks.len() >= MAX_DATA_VOLUMES {
        return Err(ApiError::invalid_param(format!(
            "The specified VM already has the maximum number of data disks ({MAX_DATA_VOLUMES}). Please specify another VM."
        )));
    }
    match device {
        Some(0) => Err(ApiError::invalid_param(
            "deviceId can't be 0, which is used by Root device",
        )),
        Some(d) if d < 0 || d > i64::from(MAX_DEVICE_ID) || d == i64::from(CDROM_DEVICE_ID) => Err(
            ApiError::invalid_param(format!("deviceId should be 1,2,4-{MAX_DEVICE_ID}")),
        ),
        Some(d) => {
            let d = d as u32;
            if data_disks.contains(&d) {
                return Err(ApiError::invalid_param(format!(
                    "deviceId {d} is used by vm {vm_id}"
                )));
            }
            Ok(d)
        }
        None => next_device_id(&data_disks)
            .ok_or_else(|| ApiError::invalid_param(format!("No free device id on vm {vm_id}"))),
    }
}

/// The events of an attach: a volume uploaded to secondary storage is first created on
/// primary storage (VOLUME.CREATE ends its VOLUME_SECONDARY usage), then the request.
fn attach_events(
    call: &Call,
    row: Option<&VolumeRow>,
    volume: &VolumeFacts,
    vm_id: Uuid,
    device_id: u32,
    ids: JobIds,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    if row.is_some_and(|r| r.state == VolumeStateName::Uploaded) {
        events.push(ids.event(
            call,
            EventBody::Volume(VolumeEvent::Create(VolumeCreated {
                volume: volume.clone(),
                vm_id: None,
                snapshot_id: None,
            })),
        ));
    }
    events.push(ids.request(
        call,
        EventBody::Volume(VolumeEvent::Attach(VolumeAttachment {
            volume: volume.clone(),
            vm_id,
            device_id: Some(device_id),
        })),
    ));
    events
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// `projectid` is refused where a command would create in a project (spec/api.md).
fn no_project(call: &Call) -> Result<(), ApiError> {
    if call.str("projectid").is_some() {
        return Err(ApiError::invalid_param("projects are not supported"));
    }
    Ok(())
}

/// What `createVolume` creates, decided on `state`.
fn planned_volume(
    state: &State,
    call: &Call,
    volume_id: Uuid,
    name: &CompactString,
) -> Result<(VolumeFacts, Option<Uuid>), ApiError> {
    let (account_id, domain_id) = owner(call, state)?;
    let offering_id = call.uuid("diskofferingid")?;
    let size_gb = call.int("size")?;
    let (zone_id, size, disk_offering_id, snapshot_id) = match call.uuid("snapshotid")? {
        Some(snapshot_id) => {
            let snapshot = state.storage.snapshots.get(&snapshot_id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find snapshot by id {snapshot_id}"))
            })?;
            let s = &snapshot.facts;
            check_access(
                state,
                call,
                s.account_id,
                s.domain_id,
                "snapshot",
                snapshot_id,
            )?;
            if !snapshot.backed_up {
                return Err(ApiError::invalid_param(format!(
                    "Snapshot id={snapshot_id} is not in BackedUp state yet and can't be used for volume creation"
                )));
            }
            if let Some(zone) = call.uuid("zoneid")?
                && zone != s.zone_id
            {
                return Err(ApiError::invalid_param(format!(
                    "Snapshot {snapshot_id} is in zone {}: create its volume in that zone",
                    s.zone_id
                )));
            }
            let offering = offering_id.or_else(|| {
                state
                    .storage
                    .volumes
                    .get(&s.volume_id)
                    .and_then(|v| v.facts.disk_offering_id)
            });
            (s.zone_id, s.virtual_size, offering, Some(snapshot_id))
        }
        None => {
            let Some(offering_id) = offering_id else {
                return Err(ApiError::invalid_param(
                    "Either disk Offering Id or snapshot Id must be passed whilst creating volume",
                ));
            };
            let zone_id = call.required_uuid("zoneid")?;
            usable_zone(state, call, zone_id)?;
            let size = offering_size(state, offering_id, domain_id, zone_id, size_gb)?;
            (zone_id, size, Some(offering_id), None)
        }
    };
    Ok((
        VolumeFacts {
            volume_id,
            name: name.clone(),
            account_id,
            domain_id,
            zone_id,
            volume_type: VolumeType::DataDisk,
            size,
            disk_offering_id,
            template_id: None,
        },
        snapshot_id,
    ))
}

async fn create_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    no_project(call)?;
    let volume_id = Uuid::new_v4();
    // CloudStack names an unnamed volume with a random UUID.
    let name: CompactString = call
        .str("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(|| Uuid::new_v4().to_string().into(), Into::into);
    let vm_id = call.uuid("virtualmachineid")?;
    // With a VM to attach to, the job waits for the attach.
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "Volume",
            volume_id,
            "VOLUME.CREATE",
            format!("creating volume {name}"),
        ),
        |state, ids| {
            let (volume, snapshot_id) = planned_volume(state, call, volume_id, &name)?;
            check_limit(state, volume.account_id, ResourceType::Volume, 1)?;
            check_limit(
                state,
                volume.account_id,
                ResourceType::PrimaryStorage,
                gib(volume.size),
            )?;
            let mut events = vec![ids.event(
                call,
                EventBody::Volume(VolumeEvent::Create(VolumeCreated {
                    volume: volume.clone(),
                    vm_id: None,
                    snapshot_id,
                })),
            )];
            if let Some(vm_id) = vm_id {
                let device = check_attach(state, call, &volume, None, vm_id, None)?;
                events.extend(attach_events(call, None, &volume, vm_id, device, ids));
            }
            Ok(events)
        },
        move |state| volume_reply(state, volume_id),
    )
    .await
}

async fn attach_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let vm_id = call.required_uuid("virtualmachineid")?;
    let device = call.int("deviceid")?;
    jobs::submit_decided(
        ctx,
        call,
        volume_job(
            id,
            "VOLUME.ATTACH",
            format!("attaching volume {id} to vm {vm_id}"),
        ),
        |state, ids| {
            let row = accessible_volume(state, call, id)?;
            if volume_busy(row) {
                return Err(busy(row));
            }
            let device = check_attach(state, call, &row.facts, row.vm_id, vm_id, device)?;
            Ok(attach_events(
                call,
                Some(row),
                &row.facts,
                vm_id,
                device,
                ids,
            ))
        },
        move |state| volume_reply(state, id),
    )
    .await
}

/// A job acting on the volume `id`.
fn volume_job(id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("Volume", id, event_type, description)
}

fn busy(row: &VolumeRow) -> ApiError {
    ApiError::invalid_param(format!(
        "Volume {} is busy: an attach, detach or resize is in progress; try again when it has finished",
        row.facts.volume_id
    ))
}

/// The volume `detachVolume` names: by `id`, or by `virtualmachineid` + `deviceid`.
fn volume_to_detach<'s>(state: &'s State, call: &Call) -> Result<&'s VolumeRow, ApiError> {
    let id = call.uuid("id")?;
    let vm_id = call.uuid("virtualmachineid")?;
    let device = call.int("deviceid")?;
    match (id, vm_id, device) {
        (Some(id), None, None) => accessible_volume(state, call, id),
        (None, Some(vm_id), Some(device)) => {
            accessible_vm(state, call, vm_id)?;
            let row = state
                .storage
                .volumes_of(vm_id)
                .into_iter()
                .find(|v| v.device_id.map(i64::from) == Some(device))
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find volume with device id {device} on vm {vm_id}"
                    ))
                })?;
            accessible_volume(state, call, row.facts.volume_id)
        }
        _ => Err(ApiError::invalid_param(
            "Please provide either a volume id, or a tuple(device id, instance id)",
        )),
    }
}

async fn detach_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    // `virtualmachineid` + `deviceid` name a volume through its attachment: resolve it once,
    // then decide on the volume itself (the decision re-checks that it is still attached).
    let id = {
        let state = ctx.models.read();
        volume_to_detach(&state, call)?.facts.volume_id
    };
    jobs::submit_request(
        ctx,
        call,
        volume_job(id, "VOLUME.DETACH", format!("detaching volume {id}")),
        |state| {
            let row = accessible_volume(state, call, id)?;
            let Some(vm_id) = row.vm_id else {
                return Err(ApiError::invalid_param(
                    "The specified volume is not attached to a VM.",
                ));
            };
            if volume_busy(row) {
                return Err(busy(row));
            }
            let vm = state.compute.vms.get(&vm_id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find virtual machine by id {vm_id}"))
            })?;
            if row.facts.volume_type == VolumeType::Root {
                return Err(ApiError::invalid_param(format!(
                    "Root volume detach is not supported for hypervisor type {}",
                    vm.facts.hypervisor
                )));
            }
            if !matches!(
                vm.state,
                VmState::Running | VmState::Stopped | VmState::Destroyed
            ) {
                return Err(ApiError::invalid_param(
                    "Please specify a VM that is either running or stopped.",
                ));
            }
            if state
                .storage
                .vm_snapshots
                .values()
                .any(|s| s.facts.vm_id == vm_id)
            {
                return Err(ApiError::invalid_param(
                    "Unable to detach volume, please specify a VM that does not have VM snapshots",
                ));
            }
            Ok(EventBody::Volume(VolumeEvent::Detach(VolumeAttachment {
                volume: row.facts.clone(),
                vm_id,
                device_id: row.device_id,
            })))
        },
        move |state| volume_reply(state, id),
    )
    .await
}

/// The size and offering `resizeVolume` asks for, checked on `state`.
fn planned_resize(
    state: &State,
    call: &Call,
    row: &VolumeRow,
) -> Result<(u64, Option<Uuid>), ApiError> {
    let volume = &row.facts;
    let size_gb = call.int("size")?;
    let new_offering = call.uuid("diskofferingid")?;
    match (new_offering, size_gb) {
        (Some(_), _) if volume.volume_type == VolumeType::Root => Err(ApiError::invalid_param(
            "The disk offering of a ROOT volume cannot be changed with resizeVolume: give its new size instead",
        )),
        (Some(offering), size_gb) => {
            let size = offering_size(state, offering, volume.domain_id, volume.zone_id, size_gb)?;
            Ok((size, Some(offering)))
        }
        (None, Some(gb)) => {
            let customizable = volume.volume_type == VolumeType::Root
                || volume
                    .disk_offering_id
                    .and_then(|id| state.catalog.disk_offerings.get(&id))
                    .is_some_and(|o| o.facts.is_customized);
            if !customizable {
                return Err(ApiError::invalid_param(
                    "To change a volume's size without providing a new disk offering, its current disk offering must be customizable or it must be a root volume (if providing a disk offering, make sure it is different from the current disk offering).",
                ));
            }
            Ok((custom_size(gb)?, volume.disk_offering_id))
        }
        (None, None) => Err(ApiError::invalid_param(
            "Please specify a new size (size) or a new disk offering (diskofferingid)",
        )),
    }
}

async fn resize_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let shrink_ok = call.flag("shrinkok");
    // Nothing to change: no request, and the job answers the volume as it is.
    jobs::submit_decided(
        ctx,
        call,
        volume_job(id, "VOLUME.RESIZE", format!("resizing volume {id}")),
        |state, ids| {
            let row = accessible_volume(state, call, id)?;
            if !matches!(
                row.state,
                VolumeStateName::Ready | VolumeStateName::Allocated
            ) {
                return Err(ApiError::invalid_param(format!(
                    "Volume should be in ready or allocated state before attempting a resize. Volume {id} is in state {}.",
                    row.state.as_str()
                )));
            }
            if volume_busy(row) {
                return Err(busy(row));
            }
            if snapshot_in_progress(state, id) {
                return Err(ApiError::invalid_param(
                    "There are snapshot operations in progress on the volume, unable to resize it",
                ));
            }
            let (size, offering) = planned_resize(state, call, row)?;
            let current = row.facts.size;
            if size == current && offering == row.facts.disk_offering_id {
                // Nothing to change: CloudStack answers the volume as it is.
                return Ok(Vec::new());
            }
            if size < current && !shrink_ok {
                return Err(ApiError::invalid_param(format!(
                    "Going from existing size of {current} to size of {size} would shrink the volume.Need to sign off by supplying the shrinkok parameter with value of true."
                )));
            }
            if size > current {
                check_limit(
                    state,
                    row.facts.account_id,
                    ResourceType::PrimaryStorage,
                    gib(size - current),
                )?;
            }
            let mut resized = row.facts.clone();
            resized.size = size;
            resized.disk_offering_id = offering;
            Ok(vec![ids.request(
                call,
                EventBody::Volume(VolumeEvent::Resize(VolumeResized {
                    volume: resized,
                    previous_size: current,
                    previous_disk_offering_id: row.facts.disk_offering_id,
                })),
            )])
        },
        move |state| volume_reply(state, id),
    )
    .await
}

async fn delete_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(ALLOCATION, |state| {
        let row = accessible_volume(state, call, id)?;
        if row.vm_id.is_some() {
            return Err(ApiError::in_use(
                "Please specify a volume that is not attached to any VM.",
            ));
        }
        if row.facts.volume_type == VolumeType::Root {
            return Err(ApiError::invalid_param(
                "A ROOT volume goes with its VM: destroy the VM instead",
            ));
        }
        if volume_busy(row) {
            return Err(busy(row));
        }
        if snapshot_in_progress(state, id) {
            return Err(ApiError::invalid_param(
                "There are snapshot operations in progress on the volume, unable to delete it",
            ));
        }
        Ok(vec![call.event(EventBody::Volume(VolumeEvent::Delete(
            VolumeLifecycle {
                volume: row.facts.clone(),
            },
        )))])
    })
    .await?;
    Ok(Reply::success())
}

async fn list_volumes(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let vm_id = call.uuid("virtualmachineid")?;
    let zone_id = call.uuid("zoneid")?;
    let volume_type = call.str("type");
    let keyword = call.str("keyword");
    let mut rows: Vec<&VolumeRow> = state
        .storage
        .volumes
        .values()
        .filter(|row| {
            let v = &row.facts;
            let visible = listed(&state, call, scope, id.is_some(), v.account_id, v.domain_id);
            visible
                && id.is_none_or(|id| v.volume_id == id)
                && name.is_none_or(|n| v.name.eq_ignore_ascii_case(n))
                && vm_id.is_none_or(|vm| row.vm_id == Some(vm))
                && zone_id.is_none_or(|z| v.zone_id == z)
                && volume_type.is_none_or(|t| volume_type_name(v).eq_ignore_ascii_case(t))
                && keyword_matches(keyword, &[&v.name])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.volume_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| volume_json(&state, r)).collect());
    Ok(Reply::List {
        key: "volume",
        count,
        items,
    })
}

async fn upload_volume(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    no_project(call)?;
    let name: CompactString = call.required("name")?.trim().into();
    let url = call.required("url")?.trim().to_owned();
    let scheme_ok = url.split_once("://").is_some_and(|(scheme, rest)| {
        ["http", "https"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
            && !rest.is_empty()
    });
    if !scheme_ok {
        return Err(ApiError::invalid_param(format!(
            "Unsupported scheme for url: {url}"
        )));
    }
    let format = call.required("format")?.trim().to_ascii_uppercase();
    if !UPLOAD_FORMATS.contains(&format.as_str()) {
        return Err(ApiError::invalid_param(format!(
            "Image format: {format} is incorrect. Supported formats are {}",
            UPLOAD_FORMATS.join(", ")
        )));
    }
    let zone_id = call.required_uuid("zoneid")?;
    let volume_id = Uuid::new_v4();
    jobs::submit_decided(
        ctx,
        call,
        volume_job(
            volume_id,
            "VOLUME.UPLOAD",
            format!("uploading volume {name}"),
        ),
        |state, ids| {
            let (account_id, domain_id) = owner(call, state)?;
            usable_zone(state, call, zone_id)?;
            let disk_offering_id = call.uuid("diskofferingid")?;
            if let Some(offering) = disk_offering_id {
                let row = state.catalog.disk_offerings.get(&offering).ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find disk offering by id {offering}"
                    ))
                })?;
                if !row.facts.is_customized {
                    return Err(ApiError::invalid_param(
                        "Please specify a custom sized disk offering.",
                    ));
                }
            }
            check_limit(state, account_id, ResourceType::Volume, 1)?;
            check_limit(
                state,
                account_id,
                ResourceType::SecondaryStorage,
                gib(UPLOADED_VOLUME_SIZE),
            )?;
            Ok(vec![ids.event(
                call,
                EventBody::Volume(VolumeEvent::Upload(VolumeUploaded {
                    volume: VolumeFacts {
                        volume_id,
                        name: name.clone(),
                        account_id,
                        domain_id,
                        zone_id,
                        volume_type: VolumeType::DataDisk,
                        size: UPLOADED_VOLUME_SIZE,
                        disk_offering_id,
                        template_id: None,
                    },
                    format: format.as_str().into(),
                    url: Some(url.clone()),
                })),
            )])
        },
        move |state| volume_reply(state, volume_id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_skip_the_cdrom_and_fill_gaps() {
        assert_eq!(next_device_id(&[]), Some(1));
        assert_eq!(next_device_id(&[1]), Some(2));
        assert_eq!(next_device_id(&[1, 2]), Some(4));
        assert_eq!(next_device_id(&[2, 4]), Some(1));
        assert_eq!(next_device_id(&[1, 2, 4, 5, 6, 7]), None);
    }

    #[test]
    fn custom_sizes_are_bounded() {
        assert_eq!(custom_size(1).ok(), Some(GIB));
        assert_eq!(custom_size(0).map_err(|e| e.code), Err(431));
        assert_eq!(
            custom_size(CUSTOM_SIZE_MAX_GB + 1).map_err(|e| e.code),
            Err(431)
        );
    }
}
