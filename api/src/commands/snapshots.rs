//! Volume snapshots (`createSnapshot`, `deleteSnapshot`, `listSnapshots`, `revertSnapshot`) and
//! VM snapshots (`createVMSnapshot`, `deleteVMSnapshot`, `revertToVMSnapshot`,
//! `listVMSnapshot`).
//!
//! Taking a snapshot counts against the `snapshot` and `secondary_storage` limits, so it is
//! decided on the [`ALLOCATION`](crate::allocation::ALLOCATION) stream like every volume
//! decision (a snapshot must also see a resize or delete of its volume). Taking a volume
//! snapshot and every VM snapshot action are performed by the hypervisor: the command appends
//! a `Started` request, and its job completes from the driver's result.

use compact_str::CompactString;
use engine::event::storage::{
    SnapshotFacts, SnapshotLifecycle, VmSnapshotFacts, VmSnapshotLifecycle, VmSnapshotVolume,
};
use engine::event::{EventBody, SnapshotEvent, VmSnapshotEvent};
use projections::State;
use projections::compute::VmState;
use projections::storage::{SnapshotRow, VmSnapshotRow, VolumeStateName};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ResourceType, check_limit, gib};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::commands::render::{merge, owner_fields};
use crate::commands::volumes::{
    accessible_row, accessible_vm, accessible_volume, listed, volume_busy, zone_name,
};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// VM snapshots one VM may have: CloudStack's default `vmsnapshot.max` (a setting Ledgerstack
/// does not offer, so its default applies).
const MAX_VM_SNAPSHOTS: usize = 10;

/// The interval of a snapshot taken on demand (policies take the others).
const MANUAL: &str = "MANUAL";

const SNAPSHOT_FIELDS: &[ResponseField] = &[
    field("id", "string", "ID of the snapshot"),
    field("name", "string", "name of the snapshot"),
    field(
        "account",
        "string",
        "the account associated with the snapshot",
    ),
    field(
        "domainid",
        "string",
        "the domain ID of the snapshot's account",
    ),
    field(
        "domain",
        "string",
        "the domain name of the snapshot's account",
    ),
    field("snapshottype", "string", "the type of the snapshot"),
    field("volumeid", "string", "ID of the disk volume"),
    field("volumename", "string", "name of the disk volume"),
    field("volumetype", "string", "type of the disk volume"),
    field("created", "date", "  the date the snapshot was created"),
    field(
        "intervaltype",
        "string",
        "valid types are hourly, daily, weekly, monthy, template, and none.",
    ),
    field(
        "state",
        "string",
        "the state of the snapshot. BackedUp means that snapshot is ready to be used; Creating - the snapshot is being allocated on the primary storage; BackingUp - the snapshot is being backed up on secondary storage",
    ),
    field(
        "physicalsize",
        "long",
        "physical size of backedup snapshot on image store",
    ),
    field(
        "virtualsize",
        "long",
        "virtual size of backedup snapshot on image store",
    ),
    field("zoneid", "string", "id of the availability zone"),
    field("zonename", "string", "name of the availability zone"),
    field(
        "revertable",
        "boolean",
        "indicates whether the underlying storage supports reverting the volume to this snapshot",
    ),
    field(
        "locationtype",
        "string",
        "valid location types are primary and secondary.",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with snapshot",
    ),
];

const VM_SNAPSHOT_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the vm snapshot"),
    field("name", "string", "the name of the vm snapshot"),
    field(
        "displayname",
        "string",
        "the display name of the vm snapshot",
    ),
    field(
        "description",
        "string",
        "the description of the vm snapshot",
    ),
    field("state", "string", "the state of the vm snapshot"),
    field("type", "string", "VM Snapshot type"),
    field("current", "boolean", "indiates if this is current snapshot"),
    field("virtualmachineid", "string", "the vm ID of the vm snapshot"),
    field(
        "virtualmachinename",
        "string",
        "the vm name of the vm snapshot",
    ),
    field(
        "hypervisor",
        "string",
        "the type of hypervisor on which snapshot is stored",
    ),
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
    field("zoneid", "string", "the Zone ID of the vm snapshot"),
    field("created", "date", "the create date of the vm snapshot"),
    field(
        "tags",
        "list",
        "the list of resource tags associated with the vm snapshot",
    ),
];

/// The snapshot commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createSnapshot",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates an instant snapshot of a volume.",
        params: &[
            required("volumeid", T::Uuid, "The ID of the disk volume"),
            param("name", T::String, "the name of the snapshot"),
            param(
                "account",
                T::String,
                "The account of the snapshot. The account parameter must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "The domain ID of the snapshot. If used with the account parameter, specifies a domain for the account associated with the disk volume.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: SNAPSHOT_FIELDS,
        related: "listSnapshots,deleteSnapshot,revertSnapshot",
        manual_clock_only: false,
        handler: handler!(create_snapshot),
    },
    CommandSpec {
        name: "deleteSnapshot",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a snapshot of a disk volume.",
        params: &[required("id", T::Uuid, "The ID of the snapshot")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_snapshot),
    },
    CommandSpec {
        name: "listSnapshots",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available snapshots for the account.",
        params: &[
            param("id", T::Uuid, "lists snapshot by snapshot ID"),
            param("name", T::String, "lists snapshot by snapshot name"),
            param("volumeid", T::Uuid, "the ID of the disk volume"),
            param("zoneid", T::Uuid, "list snapshots by zone id"),
            param(
                "snapshottype",
                T::String,
                "valid values are MANUAL or RECURRING.",
            ),
            param(
                "intervaltype",
                T::String,
                "valid values are HOURLY, DAILY, WEEKLY, and MONTHLY.",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: SNAPSHOT_FIELDS,
        related: "createSnapshot,deleteSnapshot,revertSnapshot",
        manual_clock_only: false,
        handler: handler!(list_snapshots),
    },
    CommandSpec {
        name: "revertSnapshot",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "This is supposed to revert a volume snapshot. This command is only supported with KVM so far",
        params: &[required("id", T::Uuid, "The ID of the snapshot")],
        inherits: Inherits::Nothing,
        response: SNAPSHOT_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(revert_snapshot),
    },
    CommandSpec {
        name: "createVMSnapshot",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates snapshot for a vm.",
        params: &[
            required("virtualmachineid", T::Uuid, "The ID of the vm"),
            param("name", T::String, "The display name of the snapshot"),
            param(
                "description",
                T::String,
                "The description of the snapshot (not recorded by Ledgerstack)",
            ),
            param("snapshotmemory", T::Boolean, "snapshot memory if true"),
        ],
        inherits: Inherits::Nothing,
        response: VM_SNAPSHOT_FIELDS,
        related: "listVMSnapshot,deleteVMSnapshot,revertToVMSnapshot",
        manual_clock_only: false,
        handler: handler!(create_vm_snapshot),
    },
    CommandSpec {
        name: "deleteVMSnapshot",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a vmsnapshot.",
        params: &[required(
            "vmsnapshotid",
            T::Uuid,
            "The ID of the VM snapshot",
        )],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_vm_snapshot),
    },
    CommandSpec {
        name: "revertToVMSnapshot",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Revert VM from a vmsnapshot.",
        params: &[required(
            "vmsnapshotid",
            T::Uuid,
            "The ID of the vm snapshot",
        )],
        inherits: Inherits::Nothing,
        response: &[],
        related: "",
        manual_clock_only: false,
        handler: handler!(revert_to_vm_snapshot),
    },
    CommandSpec {
        name: "listVMSnapshot",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List virtual machine snapshot by conditions",
        params: &[
            param("vmsnapshotid", T::Uuid, "The ID of the VM snapshot"),
            param("virtualmachineid", T::Uuid, "the ID of the vm"),
            param(
                "name",
                T::String,
                "lists snapshot by snapshot name or display name",
            ),
            param("state", T::String, "state of the virtual machine snapshot"),
        ],
        inherits: Inherits::PagingAndScope,
        response: VM_SNAPSHOT_FIELDS,
        related: "createVMSnapshot",
        manual_clock_only: false,
        handler: handler!(list_vm_snapshots),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// `BackingUp` until the driver confirms, then `BackedUp`.
fn snapshot_state(row: &SnapshotRow) -> &'static str {
    if row.backed_up {
        "BackedUp"
    } else {
        "BackingUp"
    }
}

/// A volume snapshot as CloudStack's SnapshotResponse shows it.
pub fn snapshot_json(state: &State, row: &SnapshotRow) -> Value {
    let s = &row.facts;
    let volume = state.storage.volumes.get(&s.volume_id);
    let value = json!({
        "id": s.snapshot_id,
        "name": s.name,
        "snapshottype": if s.interval == MANUAL { "MANUAL" } else { "RECURRING" },
        "intervaltype": s.interval,
        "volumeid": s.volume_id,
        "volumename": volume.map(|v| v.facts.name.clone()),
        "volumetype": row.volume_type,
        "created": date(row.created),
        "state": snapshot_state(row),
        "physicalsize": s.size,
        "virtualsize": s.virtual_size,
        "zoneid": s.zone_id,
        "zonename": zone_name(state, s.zone_id),
        "revertable": true,
        "locationtype": "Secondary",
        "tags": [],
    });
    merge(value, owner_fields(state, s.account_id, s.domain_id))
}

/// The `snapshot` reply for snapshot `id`.
pub fn snapshot_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let row =
        state.storage.snapshots.get(&id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find snapshot by id {id}"))
        })?;
    Ok(Reply::Object {
        key: "snapshot",
        value: snapshot_json(state, row),
    })
}

/// A VM snapshot as CloudStack's VMSnapshotResponse shows it.
pub fn vm_snapshot_json(state: &State, row: &VmSnapshotRow) -> Value {
    let s = &row.facts;
    let vm = state.compute.vms.get(&s.vm_id);
    let value = json!({
        "id": s.vm_snapshot_id,
        "name": s.name,
        "displayname": s.display_name.clone().unwrap_or_else(|| s.name.clone()),
        "state": row.state,
        "type": if s.with_memory { "DiskAndMemory" } else { "Disk" },
        "current": row.current,
        "virtualmachineid": s.vm_id,
        "virtualmachinename": vm.map(|v| v.facts.name.clone()),
        "hypervisor": vm.map(|v| v.facts.hypervisor.clone()),
        "zoneid": s.zone_id,
        "created": date(row.created),
        "tags": [],
    });
    merge(value, owner_fields(state, s.account_id, s.domain_id))
}

/// The `vmsnapshot` reply for VM snapshot `id`.
pub fn vm_snapshot_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let row =
        state.storage.vm_snapshots.get(&id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find VM snapshot by id {id}"))
        })?;
    Ok(Reply::Object {
        key: "vmsnapshot",
        value: vm_snapshot_json(state, row),
    })
}

// ---------------------------------------------------------------------------------------------
// Volume snapshots

/// The snapshot `id`, which the caller may act on.
fn accessible_snapshot<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s SnapshotRow, ApiError> {
    let row = state.storage.snapshots.get(&id);
    accessible_row(state, call, "snapshot", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// A job acting on the snapshot `id`.
fn snapshot_job(id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("Snapshot", id, event_type, description)
}

/// CloudStack's default snapshot name: `<vm>_<volume>_<yyyyMMddHHmmss>` (UTC), `detached` in
/// place of the VM for a volume attached to none.
fn default_snapshot_name(state: &State, ctx: &Ctx, volume_id: Uuid) -> CompactString {
    let volume = state.storage.volumes.get(&volume_id);
    let vm = volume
        .and_then(|v| v.vm_id)
        .and_then(|id| state.compute.vms.get(&id))
        .map_or_else(|| "detached".into(), |vm| vm.facts.name.to_string());
    let volume_name = volume.map(|v| v.facts.name.to_string()).unwrap_or_default();
    let at = ctx.clock.now().to_datetime().format("%Y%m%d%H%M%S");
    format!("{vm}_{volume_name}_{at}").into()
}

async fn create_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let volume_id = call.required_uuid("volumeid")?;
    let snapshot_id = Uuid::new_v4();
    let name: CompactString = match call.str("name").map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.into(),
        None => default_snapshot_name(&ctx.models.read(), ctx, volume_id),
    };
    let description = format!("creating snapshot {name} of volume {volume_id}");
    jobs::submit_request(
        ctx,
        call,
        JobMeta::creating("Snapshot", snapshot_id, "SNAPSHOT.CREATE", description),
        |state| {
        let volume = accessible_volume(state, call, volume_id)?;
        match volume.state {
            VolumeStateName::Allocated => {
                return Err(ApiError::invalid_param(format!(
                    "VolumeId: {volume_id} please attach this volume to a VM before create snapshot for it"
                )));
            }
            VolumeStateName::Ready => {}
            other => {
                return Err(ApiError::invalid_param(format!(
                    "VolumeId: {volume_id} is not in Ready state but {}. Cannot take snapshot.",
                    other.as_str()
                )));
            }
        }
        if volume_busy(volume) {
            return Err(ApiError::invalid_param(format!(
                "Volume {volume_id} is busy: an attach, detach or resize is in progress; try again when it has finished"
            )));
        }
        if state
            .storage
            .snapshots
            .values()
            .any(|s| s.facts.volume_id == volume_id && !s.backed_up)
        {
            return Err(ApiError::invalid_param(
                "There is other active snapshot tasks on the instance to which the volume is attached, please try again later",
            ));
        }
        let v = &volume.facts;
        check_limit(state, v.account_id, ResourceType::Snapshot, 1)?;
        check_limit(
            state,
            v.account_id,
            ResourceType::SecondaryStorage,
            gib(v.size),
        )?;
        Ok(EventBody::Snapshot(SnapshotEvent::Create(SnapshotLifecycle {
            snapshot: SnapshotFacts {
                snapshot_id,
                name: name.clone(),
                account_id: v.account_id,
                domain_id: v.domain_id,
                zone_id: v.zone_id,
                volume_id,
                size: v.size,
                virtual_size: v.size,
                interval: MANUAL.into(),
            },
        })))
        },
        move |state| snapshot_reply(state, snapshot_id),
    )
    .await
}

async fn delete_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    jobs::submit_decided(
        ctx,
        call,
        snapshot_job(id, "SNAPSHOT.DELETE", format!("deleting snapshot {id}")),
        |state, ids| {
            let row = accessible_snapshot(state, call, id)?;
            if !row.backed_up {
                return Err(ApiError::invalid_param(format!(
                    "Can't delete snapshot {id} due to it is in {} Status",
                    snapshot_state(row)
                )));
            }
            Ok(vec![ids.event(
                call,
                EventBody::Snapshot(SnapshotEvent::Delete(SnapshotLifecycle {
                    snapshot: row.facts.clone(),
                })),
            )])
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn revert_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    jobs::submit_decided(
        ctx,
        call,
        snapshot_job(id, "SNAPSHOT.REVERT", format!("reverting a volume to snapshot {id}")),
        |state, ids| {
        let row = accessible_snapshot(state, call, id)?;
        if !row.backed_up {
            return Err(ApiError::invalid_param(format!(
                "Snapshot {id} is not in BackedUp state yet and can't be reverted"
            )));
        }
        let volume_id = row.facts.volume_id;
        let volume = state.storage.volumes.get(&volume_id).ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find volume {volume_id} of snapshot {id}: it was deleted"
            ))
        })?;
        if volume.state != VolumeStateName::Ready || volume_busy(volume) {
            return Err(ApiError::invalid_param(format!(
                "Cannot revert snapshot to volume {volume_id} due to volume state is not Ready"
            )));
        }
        if let Some(vm_id) = volume.vm_id
            && let Some(vm) = state.compute.vms.get(&vm_id)
        {
            if vm.state != VmState::Stopped {
                return Err(ApiError::invalid_param(
                    "The VM the specified disk is attached to is not in the shutdown state.",
                ));
            }
            if state
                .storage
                .vm_snapshots
                .values()
                .any(|s| s.facts.vm_id == vm_id)
            {
                return Err(ApiError::invalid_param(
                    "Unable to revert snapshot for VM, please remove VM snapshots before reverting VM from snapshot",
                ));
            }
        }
        Ok(vec![ids.event(
            call,
            EventBody::Snapshot(SnapshotEvent::Revert(SnapshotLifecycle {
                snapshot: row.facts.clone(),
            })),
        )])
        },
        move |state| snapshot_reply(state, id),
    )
    .await
}

async fn list_snapshots(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let volume_id = call.uuid("volumeid")?;
    let zone_id = call.uuid("zoneid")?;
    let snapshot_type = call.str("snapshottype");
    let interval = call.str("intervaltype");
    let keyword = call.str("keyword");
    let mut rows: Vec<&SnapshotRow> = state
        .storage
        .snapshots
        .values()
        .filter(|row| {
            let s = &row.facts;
            let kind = if s.interval == MANUAL {
                "MANUAL"
            } else {
                "RECURRING"
            };
            listed(&state, call, scope, id.is_some(), s.account_id, s.domain_id)
                && id.is_none_or(|id| s.snapshot_id == id)
                && name.is_none_or(|n| s.name.eq_ignore_ascii_case(n))
                && volume_id.is_none_or(|v| s.volume_id == v)
                && zone_id.is_none_or(|z| s.zone_id == z)
                && snapshot_type.is_none_or(|t| kind.eq_ignore_ascii_case(t))
                && interval.is_none_or(|i| s.interval.eq_ignore_ascii_case(i))
                && keyword_matches(keyword, &[&s.name])
        })
        .collect();
    // CloudStack lists snapshots newest first.
    rows.sort_by_key(|r| (std::cmp::Reverse(r.created), r.facts.snapshot_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| snapshot_json(&state, r)).collect());
    Ok(Reply::List {
        key: "snapshot",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// VM snapshots

/// The VM snapshot `id`, which the caller may act on.
fn accessible_vm_snapshot<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s VmSnapshotRow, ApiError> {
    let row = state.storage.vm_snapshots.get(&id);
    accessible_row(state, call, "VM snapshot", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// 431 while another VM snapshot task (create, revert, delete) runs on the VM.
fn no_vm_snapshot_task(state: &State, vm_id: Uuid) -> Result<(), ApiError> {
    if state
        .storage
        .vm_snapshots
        .values()
        .any(|s| s.facts.vm_id == vm_id && s.state != "Ready")
    {
        return Err(ApiError::invalid_param(
            "There is other active vm snapshot tasks on the instance, please try again later",
        ));
    }
    Ok(())
}

async fn create_vm_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let vm_id = call.required_uuid("virtualmachineid")?;
    let with_memory = call.flag("snapshotmemory");
    let display_name = call
        .str("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(CompactString::from);
    let snapshot_id = Uuid::new_v4();
    let taken_at = ctx
        .clock
        .now()
        .to_datetime()
        .format("%Y%m%d%H%M%S")
        .to_string();
    jobs::submit_request(
        ctx,
        call,
        JobMeta::creating(
            "VmSnapshot",
            snapshot_id,
            "VMSNAPSHOT.CREATE",
            format!("creating snapshot for VM {vm_id}"),
        ),
        |state| {
        let vm = accessible_vm(state, call, vm_id)?;
        if !matches!(vm.state, VmState::Running | VmState::Stopped) {
            return Err(ApiError::invalid_param(format!(
                "Creating VM snapshot failed due to VM:{vm_id} is not in the running or Stopped state"
            )));
        }
        if with_memory && vm.state != VmState::Running {
            return Err(ApiError::invalid_param(
                "Can not snapshot memory when VM is not in Running state",
            ));
        }
        // CloudStack names a VM snapshot after the VM's instance name and the time; `name`
        // is its display name, unique per VM.
        let name: CompactString = format!("{}_VS_{taken_at}", vm.facts.instance_name).into();
        let shown = display_name.clone().unwrap_or_else(|| name.clone());
        let existing: Vec<&VmSnapshotRow> = state
            .storage
            .vm_snapshots
            .values()
            .filter(|s| s.facts.vm_id == vm_id)
            .collect();
        if existing
            .iter()
            .any(|s| *s.facts.display_name.as_ref().unwrap_or(&s.facts.name) == shown)
        {
            return Err(ApiError::invalid_param(format!(
                "Creating VM snapshot failed due to VM snapshot with name {shown} already exists"
            )));
        }
        if existing.len() >= MAX_VM_SNAPSHOTS {
            return Err(ApiError::invalid_param(format!(
                "Creating vm snapshot failed due to a VM can just have : {MAX_VM_SNAPSHOTS} VM snapshots. Please delete old ones"
            )));
        }
        no_vm_snapshot_task(state, vm_id)?;
        let volumes = state.storage.volumes_of(vm_id);
        if volumes.iter().any(|v| volume_busy(v)) {
            return Err(ApiError::invalid_param(
                "There is other active volume task (attach, detach or resize) on the instance, please try again later",
            ));
        }
        if volumes.iter().any(|v| {
            state
                .storage
                .snapshots
                .values()
                .any(|s| s.facts.volume_id == v.facts.volume_id && !s.backed_up)
        }) {
            return Err(ApiError::invalid_param(
                "There is other active volume snapshot tasks on the instance to which the volume is attached, please try again later",
            ));
        }
        let facts = VmSnapshotFacts {
            vm_snapshot_id: snapshot_id,
            name,
            display_name: Some(shown),
            vm_id,
            account_id: vm.facts.account_id,
            domain_id: vm.facts.domain_id,
            zone_id: vm.facts.zone_id,
            service_offering_id: Some(vm.facts.service_offering_id),
            with_memory,
            volumes: volumes
                .iter()
                .map(|v| VmSnapshotVolume {
                    volume_id: v.facts.volume_id,
                    disk_offering_id: v.facts.disk_offering_id,
                    size: v.facts.size,
                })
                .collect(),
        };
        Ok(EventBody::VmSnapshot(VmSnapshotEvent::Create(
            VmSnapshotLifecycle { vm_snapshot: facts },
        )))
        },
        move |state| vm_snapshot_reply(state, snapshot_id),
    )
    .await
}

async fn delete_vm_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("vmsnapshotid")?;
    jobs::submit_request(
        ctx,
        call,
        JobMeta::on(
            "VmSnapshot",
            id,
            "VMSNAPSHOT.DELETE",
            format!("delete vm snapshots {id}"),
        ),
        |state| {
            let row = accessible_vm_snapshot(state, call, id)?;
            no_vm_snapshot_task(state, row.facts.vm_id)?;
            Ok(EventBody::VmSnapshot(VmSnapshotEvent::Delete(
                VmSnapshotLifecycle {
                    vm_snapshot: row.facts.clone(),
                },
            )))
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn revert_to_vm_snapshot(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("vmsnapshotid")?;
    jobs::submit_request(
        ctx,
        call,
        JobMeta::on("VmSnapshot", id, "VMSNAPSHOT.REVERTTO", format!("Revert from VM snapshot {id}")),
        |state| {
        let row = accessible_vm_snapshot(state, call, id)?;
        if row.state != "Ready" {
            return Err(ApiError::invalid_param(
                "VM Snapshot reverting failed due to vm snapshot is not in the state of Created.",
            ));
        }
        let vm_id = row.facts.vm_id;
        let vm = accessible_vm(state, call, vm_id)?;
        if !matches!(vm.state, VmState::Running | VmState::Stopped) {
            return Err(ApiError::invalid_param(
                "VM Snapshot reverting failed due to vm is not in the state of Running or Stopped.",
            ));
        }
        let memory = row.facts.with_memory;
        if (vm.state == VmState::Running && !memory) || (vm.state == VmState::Stopped && memory) {
            return Err(ApiError::invalid_param(
                "VM Snapshot revert not allowed. This will result in VM state change. You can revert running VM to disk and memory type snapshot and stopped VM to disk type snapshot",
            ));
        }
        no_vm_snapshot_task(state, vm_id)?;
        Ok(EventBody::VmSnapshot(VmSnapshotEvent::RevertTo(
            VmSnapshotLifecycle {
                vm_snapshot: row.facts.clone(),
            },
        )))
        },
        move |state| reverted_vm_reply(state, id),
    )
    .await
}

/// The `virtualmachine` reply of `revertToVMSnapshot`: the VM the snapshot `id` belongs to.
pub fn reverted_vm_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let vm_id = state
        .storage
        .vm_snapshots
        .get(&id)
        .map(|s| s.facts.vm_id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find VM snapshot by id {id}")))?;
    crate::commands::vms::vm_reply(state, vm_id)
}

async fn list_vm_snapshots(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("vmsnapshotid")?;
    let vm_id = call.uuid("virtualmachineid")?;
    let name = call.str("name");
    let wanted_state = call.str("state");
    let keyword = call.str("keyword");
    let mut rows: Vec<&VmSnapshotRow> = state
        .storage
        .vm_snapshots
        .values()
        .filter(|row| {
            let s = &row.facts;
            let shown = s.display_name.as_deref().unwrap_or(&s.name);
            listed(&state, call, scope, id.is_some(), s.account_id, s.domain_id)
                && id.is_none_or(|id| s.vm_snapshot_id == id)
                && vm_id.is_none_or(|vm| s.vm_id == vm)
                && name
                    .is_none_or(|n| s.name.eq_ignore_ascii_case(n) || shown.eq_ignore_ascii_case(n))
                && wanted_state.is_none_or(|st| row.state.eq_ignore_ascii_case(st))
                && keyword_matches(keyword, &[&s.name, shown])
        })
        .collect();
    // CloudStack lists VM snapshots newest first.
    rows.sort_by_key(|r| (std::cmp::Reverse(r.created), r.facts.vm_snapshot_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|r| vm_snapshot_json(&state, r))
            .collect(),
    );
    Ok(Reply::List {
        key: "vmSnapshot",
        count,
        items,
    })
}
