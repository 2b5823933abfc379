//! Templates, ISOs and guest OS types: `listOsTypes`, `registerTemplate`, `listTemplates`,
//! `updateTemplate`, `deleteTemplate`, `copyTemplate`, `createTemplate`, `registerIso`,
//! `listIsos`, `deleteIso`, `attachIso`, `detachIso`.
//!
//! Ledgerstack downloads nothing: a registered template or ISO is ready at once ("Download
//! Complete") with the documented size [`REGISTERED_IMAGE_SIZE`]. Every change is decided on the
//! allocation stream: registering and copying count against the `template` and
//! `secondary_storage` limits, and deleting must see the VMs that still use an image.

use compact_str::CompactString;
use engine::event::storage::{
    IsoAttachment, IsoCopied, IsoFacts, IsoLifecycle, TemplateCopied, TemplateFacts,
    TemplateLifecycle,
};
use engine::event::{EventBody, IsoEvent, TemplateEvent};
use futures::FutureExt;
use projections::State;
use projections::compute::VmState;
use projections::storage::{ImageRow, IsoRow, TemplateRow, VolumeStateName};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ALLOCATION, ResourceType, check_limit, gib, owner};
use crate::call::{Call, Caller, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{AsyncWork, JobMeta};
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

const GIB: u64 = 1024 * 1024 * 1024;

/// The size of a registered template or ISO (physical and virtual): Ledgerstack never
/// downloads the URL, so it cannot measure the image; usage and the `secondary_storage` limit
/// count this size.
pub const REGISTERED_IMAGE_SIZE: u64 = 2 * GIB;

/// Namespace of the guest OS type and category ids: a type's id is
/// `Uuid::new_v5(&OS_TYPE_NAMESPACE, b"ostype/<description>")` and a category's
/// `b"oscategory/<name>"`, so the ids are the same on every installation and every start.
pub const OS_TYPE_NAMESPACE: Uuid = Uuid::from_u128(0x4c656467_6572_4f53_8054_797065730001);

/// The guest OS catalogue: (description, category), with CloudStack's names.
const OS_TYPES: &[(&str, &str)] = &[
    ("CentOS 5.6 (64-bit)", "CentOS"),
    ("CentOS 7", "CentOS"),
    ("CentOS 8", "CentOS"),
    ("Debian GNU/Linux 11 (64-bit)", "Debian"),
    ("Debian GNU/Linux 12 (64-bit)", "Debian"),
    ("Oracle Linux 8", "Oracle"),
    ("Red Hat Enterprise Linux 8", "RedHat"),
    ("Red Hat Enterprise Linux 9", "RedHat"),
    ("SUSE Linux Enterprise Server 15 (64-bit)", "SUSE"),
    ("Windows 10 (64-bit)", "Windows"),
    ("Windows 11 (64-bit)", "Windows"),
    ("Windows Server 2019 (64-bit)", "Windows"),
    ("Windows Server 2022 (64-bit)", "Windows"),
    ("FreeBSD 12 (64-bit)", "Unix"),
    ("Ubuntu 18.04 LTS", "Ubuntu"),
    ("Ubuntu 20.04 LTS", "Ubuntu"),
    ("Ubuntu 22.04 LTS", "Ubuntu"),
    ("Ubuntu 24.04 LTS", "Ubuntu"),
    ("Other Linux (32-bit)", "Other"),
    ("Other Linux (64-bit)", "Other"),
    ("Other (32-bit)", "Other"),
    ("Other (64-bit)", "Other"),
];

/// The OS type a template gets when `registerTemplate` names none.
const DEFAULT_OS_TYPE: &str = "Other (64-bit)";

/// The id of a guest OS type of the catalogue, by its description.
pub fn os_type_id(description: &str) -> Uuid {
    Uuid::new_v5(
        &OS_TYPE_NAMESPACE,
        format!("ostype/{description}").as_bytes(),
    )
}

fn os_category_id(name: &str) -> Uuid {
    Uuid::new_v5(&OS_TYPE_NAMESPACE, format!("oscategory/{name}").as_bytes())
}

/// (description, category) of a catalogue OS type.
fn os_type(id: Uuid) -> Option<(&'static str, &'static str)> {
    OS_TYPES
        .iter()
        .copied()
        .find(|(description, _)| os_type_id(description) == id)
}

/// Formats `registerTemplate` accepts (CloudStack's `ImageFormat`, ISO aside: ISOs are
/// registered with `registerIso`).
const TEMPLATE_FORMATS: &[&str] = &[
    "QCOW2",
    "RAW",
    "VHD",
    "VHDX",
    "OVA",
    "VMDK",
    "VDI",
    "TAR",
    "ZIP",
    "BAREMETAL",
];

/// The one hypervisor Ledgerstack runs.
const HYPERVISOR: &str = "Simulator";

const OS_TYPE_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the OS type"),
    field("name", "string", "the name of the OS type"),
    field(
        "description",
        "string",
        "the name/description of the OS type",
    ),
    field("oscategoryid", "string", "the ID of the OS category"),
    field("oscategoryname", "string", "the name of the OS category"),
    field("isuserdefined", "boolean", "is the guest OS user defined"),
    field(
        "fordisplay",
        "boolean",
        "is the guest OS visible for the users",
    ),
];

const TEMPLATE_FIELDS: &[ResponseField] = &[
    field("id", "string", "the template ID"),
    field("name", "string", "the template name"),
    field("displaytext", "string", "the template display text"),
    field(
        "ispublic",
        "boolean",
        "true if this template is a public template, false otherwise",
    ),
    field(
        "isfeatured",
        "boolean",
        "true if this template is a featured template, false otherwise",
    ),
    field(
        "isready",
        "boolean",
        "true if the template is ready to be deployed from, false otherwise.",
    ),
    field("status", "string", "the status of the template"),
    field("format", "imageformat", "the format of the template."),
    field(
        "hypervisor",
        "string",
        "the hypervisor on which the template runs",
    ),
    field(
        "ostypeid",
        "string",
        "the ID of the OS type for this template.",
    ),
    field(
        "ostypename",
        "string",
        "the name of the OS type for this template.",
    ),
    field(
        "size",
        "long",
        "the size of the template (virtual size, bytes)",
    ),
    field(
        "physicalsize",
        "long",
        "the physical size of the template (bytes)",
    ),
    field("zoneid", "string", "the ID of the zone for this template"),
    field(
        "zonename",
        "string",
        "the name of the zone for this template",
    ),
    field(
        "account",
        "string",
        "the account name to which the template belongs",
    ),
    field(
        "accountid",
        "string",
        "the account id to which the template belongs",
    ),
    field(
        "domainid",
        "string",
        "the ID of the domain to which the template belongs",
    ),
    field(
        "domain",
        "string",
        "the name of the domain to which the template belongs",
    ),
    field("created", "date", "the date this template was created"),
    field("templatetype", "string", "the type of the template"),
    field(
        "crossZones",
        "boolean",
        "true if the template is managed across all Zones, false otherwise",
    ),
    field(
        "passwordenabled",
        "boolean",
        "true if the reset password feature is enabled, false otherwise",
    ),
    field(
        "isextractable",
        "boolean",
        "true if the template is extractable, false otherwise",
    ),
    field(
        "sshkeyenabled",
        "boolean",
        "true if template is sshkey enabled, false otherwise",
    ),
    field(
        "isdynamicallyscalable",
        "boolean",
        "true if template contains XS/VMWare tools inorder to support dynamic scaling of VM cpu/memory",
    ),
    field(
        "requireshvm",
        "boolean",
        "true if template requires HVM enabled, false otherwise",
    ),
    field("bits", "int", "the processor bit size"),
    field(
        "url",
        "string",
        "the URL which the template/iso is registered from",
    ),
    field(
        "sourcetemplateid",
        "string",
        "the template ID of the parent template if present",
    ),
    field("tags", "list", "the list of resource tags associated"),
];

const ISO_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ISO ID"),
    field("name", "string", "the ISO name"),
    field("displaytext", "string", "the ISO display text"),
    field(
        "ispublic",
        "boolean",
        "true if this ISO is public, false otherwise",
    ),
    field(
        "isfeatured",
        "boolean",
        "true if this ISO is featured, false otherwise",
    ),
    field("isready", "boolean", "true if the ISO is ready to be used"),
    field("status", "string", "the status of the ISO"),
    field(
        "bootable",
        "boolean",
        "true if the ISO is bootable, false otherwise",
    ),
    field("format", "imageformat", "the format of the ISO (ISO)"),
    field("ostypeid", "string", "the ID of the OS type for this ISO."),
    field(
        "ostypename",
        "string",
        "the name of the OS type for this ISO.",
    ),
    field("size", "long", "the size of the ISO (bytes)"),
    field("zoneid", "string", "the ID of the zone for this ISO"),
    field("zonename", "string", "the name of the zone for this ISO"),
    field(
        "account",
        "string",
        "the account name to which the ISO belongs",
    ),
    field(
        "accountid",
        "string",
        "the account id to which the ISO belongs",
    ),
    field(
        "domainid",
        "string",
        "the ID of the domain to which the ISO belongs",
    ),
    field(
        "domain",
        "string",
        "the name of the domain to which the ISO belongs",
    ),
    field("created", "date", "the date this ISO was created"),
    field(
        "crossZones",
        "boolean",
        "true if the ISO is managed across all Zones, false otherwise",
    ),
    field(
        "isextractable",
        "boolean",
        "true if the ISO is extractable, false otherwise",
    ),
    field("url", "string", "the URL which the ISO is registered from"),
    field("tags", "list", "the list of resource tags associated"),
];

const VM_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the virtual machine"),
    field("name", "string", "the name of the virtual machine"),
    field("state", "string", "the state of the virtual machine"),
    field(
        "isoid",
        "string",
        "the ID of the ISO attached to the virtual machine",
    ),
    field(
        "isoname",
        "string",
        "the name of the ISO attached to the virtual machine",
    ),
];

const FILTER_HELP: &str = "featured: featured public ones; self: the caller's own; selfexecutable: the caller's own that are ready; sharedexecutable: shared with the caller (Ledgerstack has no sharing: always empty); executable: the caller's own and public ones, usable to deploy; community: public, not featured; all: everything (admins only)";

/// The template, ISO and OS type commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listOsTypes",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all supported OS types for this cloud.",
        params: &[
            param("id", T::Uuid, "list by Os type Id"),
            param("description", T::String, "list os by description"),
            param("oscategoryid", T::Uuid, "list by Os Category id"),
        ],
        inherits: Inherits::Paging,
        response: OS_TYPE_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_os_types),
    },
    CommandSpec {
        name: "registerTemplate",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Registers an existing template into the CloudStack cloud. Ledgerstack downloads nothing: the template is ready at once, 2 GiB in size.",
        params: &[
            required("name", T::String, "the name of the template"),
            param(
                "displaytext",
                T::String,
                "The display text of the template, defaults to the name.",
            ),
            required(
                "url",
                T::String,
                "the URL of where the template is hosted (http or https; not downloaded)",
            ),
            required(
                "format",
                T::String,
                "the format for the template. Possible values include QCOW2, RAW, VHD, VHDX, OVA, VMDK, VDI, TAR, ZIP, BAREMETAL",
            ),
            required(
                "hypervisor",
                T::String,
                "the target hypervisor for the template (Ledgerstack: Simulator)",
            ),
            param(
                "ostypeid",
                T::Uuid,
                "the ID of the OS Type that best represents the OS of this template (default: Other (64-bit))",
            ),
            param(
                "zoneid",
                T::String,
                "the ID of the zone the template is to be hosted on; -1 for all zones (admins only)",
            ),
            param(
                "zoneids",
                T::List,
                "A list of zone ids where the template will be hosted",
            ),
            param(
                "ispublic",
                T::Boolean,
                "true if the template is available to all accounts; default is false",
            ),
            param(
                "isfeatured",
                T::Boolean,
                "true if this template is a featured template (admins only; ignored for users), false otherwise",
            ),
            param(
                "isextractable",
                T::Boolean,
                "true if the template or its derivatives are extractable (Ledgerstack has no extractTemplate: only false)",
            ),
            param(
                "passwordenabled",
                T::Boolean,
                "true if the template supports the password reset feature (Ledgerstack: only false)",
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
        ],
        inherits: Inherits::Nothing,
        response: TEMPLATE_FIELDS,
        related: "listTemplates",
        manual_clock_only: false,
        handler: handler!(register_template),
    },
    CommandSpec {
        name: "listTemplates",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List all public, private, and privileged templates: one item per zone a template is in.",
        params: &[
            required("templatefilter", T::String, FILTER_HELP),
            param(
                "id",
                T::Uuid,
                "the template ID (the filter is then ignored)",
            ),
            param("name", T::String, "the template name"),
            param("zoneid", T::Uuid, "list templates by zoneId"),
            param(
                "hypervisor",
                T::String,
                "the hypervisor for which to restrict the search",
            ),
            param(
                "showunique",
                T::Boolean,
                "If set to true, list only unique templates across zones",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: TEMPLATE_FIELDS,
        related: "registerTemplate",
        manual_clock_only: false,
        handler: handler!(list_templates),
    },
    CommandSpec {
        name: "updateTemplate",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Updates attributes of a template.",
        params: &[
            required("id", T::Uuid, "the ID of the image file"),
            param("name", T::String, "the name of the image file"),
            param("displaytext", T::String, "the display text of the image"),
            param(
                "ostypeid",
                T::Uuid,
                "the ID of the OS type that best represents the OS of this image.",
            ),
            param("format", T::String, "the format for the image"),
            param(
                "passwordenabled",
                T::Boolean,
                "true if the image supports the password reset feature (Ledgerstack: only false)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: TEMPLATE_FIELDS,
        related: "listTemplates",
        manual_clock_only: false,
        handler: handler!(update_template),
    },
    CommandSpec {
        name: "deleteTemplate",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a template from the system. All virtual machines using the deleted template will not be affected. Refused while VMs use it, unless forced.",
        params: &[
            required("id", T::Uuid, "the ID of the template"),
            param(
                "zoneid",
                T::Uuid,
                "the ID of zone of the template (default: every zone)",
            ),
            param(
                "forced",
                T::Boolean,
                "Force delete a template even when VMs use it.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_template),
    },
    CommandSpec {
        name: "copyTemplate",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Copies a template from one zone to another.",
        params: &[
            required("id", T::Uuid, "Template ID."),
            param(
                "sourcezoneid",
                T::Uuid,
                "ID of the zone the template is currently hosted on. If not specified, any zone holding it.",
            ),
            param(
                "destzoneid",
                T::Uuid,
                "ID of the zone the template is being copied to.",
            ),
            param(
                "destzoneids",
                T::List,
                "A list of IDs of the zones that the template is being copied to.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: TEMPLATE_FIELDS,
        related: "listTemplates",
        manual_clock_only: false,
        handler: handler!(copy_template),
    },
    CommandSpec {
        name: "createTemplate",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a template of a virtual machine's volume (its VM must be stopped) or of a backed-up snapshot.",
        params: &[
            required("name", T::String, "the name of the template"),
            param(
                "displaytext",
                T::String,
                "The display text of the template, defaults to the name.",
            ),
            required(
                "ostypeid",
                T::Uuid,
                "the ID of the OS Type that best represents the OS of this template.",
            ),
            param(
                "volumeid",
                T::Uuid,
                "the ID of the disk volume the template is being created from. Either this parameter, or snapshotId has to be passed in",
            ),
            param(
                "snapshotid",
                T::Uuid,
                "the ID of the snapshot the template is being created from. Either this parameter, or volumeId has to be passed in",
            ),
            param(
                "ispublic",
                T::Boolean,
                "true if this template is a public template, false otherwise",
            ),
            param(
                "isfeatured",
                T::Boolean,
                "true if this template is a featured template (admins only; ignored for users), false otherwise",
            ),
            param(
                "passwordenabled",
                T::Boolean,
                "true if the template supports the password reset feature (Ledgerstack: only false)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: TEMPLATE_FIELDS,
        related: "listTemplates",
        manual_clock_only: false,
        handler: handler!(create_template),
    },
    CommandSpec {
        name: "registerIso",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Registers an existing ISO into the CloudStack Cloud. Ledgerstack downloads nothing: the ISO is ready at once, 2 GiB in size.",
        params: &[
            required("name", T::String, "the name of the ISO"),
            param(
                "displaytext",
                T::String,
                "the display text of the ISO, defaults to the name",
            ),
            required(
                "url",
                T::String,
                "the URL to where the ISO is currently being hosted (http or https; not downloaded)",
            ),
            required(
                "zoneid",
                T::String,
                "the ID of the zone you wish to register the ISO to; -1 for all zones (admins only)",
            ),
            param(
                "bootable",
                T::Boolean,
                "true if this ISO is bootable. If not passed explicitly its assumed to be true",
            ),
            param(
                "ostypeid",
                T::Uuid,
                "the ID of the OS type that best represents the OS of this ISO. If the ISO is bootable this parameter needs to be passed",
            ),
            param(
                "ispublic",
                T::Boolean,
                "true if you want to register the ISO to be publicly available to all users, false otherwise.",
            ),
            param(
                "isfeatured",
                T::Boolean,
                "true if you want this ISO to be featured (admins only; ignored for users)",
            ),
            param(
                "isextractable",
                T::Boolean,
                "true if the ISO or its derivatives are extractable (Ledgerstack: only false)",
            ),
            param(
                "account",
                T::String,
                "an optional account name. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId. If the account parameter is used, domainId must also be used.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ISO_FIELDS,
        related: "listIsos",
        manual_clock_only: false,
        handler: handler!(register_iso),
    },
    CommandSpec {
        name: "listIsos",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available ISO files: one item per zone an ISO is in.",
        params: &[
            param(
                "isofilter",
                T::String,
                "possible values are featured, self, selfexecutable (the default), sharedexecutable, executable, community, all (admins only)",
            ),
            param("id", T::Uuid, "list ISO by ID (the filter is then ignored)"),
            param("name", T::String, "list all ISOs by name"),
            param("zoneid", T::Uuid, "the ID of the zone"),
            param(
                "bootable",
                T::Boolean,
                "true if the ISO is bootable, false otherwise",
            ),
            param(
                "ispublic",
                T::Boolean,
                "true if the ISO is publicly available to all users, false otherwise.",
            ),
            param(
                "isready",
                T::Boolean,
                "true if this ISO is ready to be deployed",
            ),
            param(
                "showunique",
                T::Boolean,
                "If set to true, list only unique isos across zones",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: ISO_FIELDS,
        related: "registerIso",
        manual_clock_only: false,
        handler: handler!(list_isos),
    },
    CommandSpec {
        name: "deleteIso",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes an ISO file. Refused while it is attached to a VM.",
        params: &[
            required("id", T::Uuid, "the ID of the ISO file"),
            param(
                "zoneid",
                T::Uuid,
                "the ID of the zone of the ISO file. If not specified, the ISO will be deleted from all the zones",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_iso),
    },
    CommandSpec {
        name: "attachIso",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Attaches an ISO to a virtual machine.",
        params: &[
            required("id", T::Uuid, "the ID of the ISO file"),
            required("virtualmachineid", T::Uuid, "the ID of the virtual machine"),
        ],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "detachIso",
        manual_clock_only: false,
        handler: handler!(attach_iso),
    },
    CommandSpec {
        name: "detachIso",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Detaches any ISO file (if any) currently attached to a virtual machine.",
        params: &[required(
            "virtualmachineid",
            T::Uuid,
            "The ID of the virtual machine",
        )],
        inherits: Inherits::Nothing,
        response: VM_FIELDS,
        related: "attachIso",
        manual_clock_only: false,
        handler: handler!(detach_iso),
    },
];

// ---------------------------------------------------------------------------------------------
// OS types

async fn list_os_types(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let description = call.str("description");
    let category = call.uuid("oscategoryid")?;
    let keyword = call.str("keyword");
    let items: Vec<Value> = OS_TYPES
        .iter()
        .filter(|(d, c)| {
            id.is_none_or(|id| os_type_id(d) == id)
                && description.is_none_or(|x| d.eq_ignore_ascii_case(x))
                && category.is_none_or(|x| os_category_id(c) == x)
                && keyword_matches(keyword, &[d])
        })
        .map(|(d, c)| {
            json!({
                "id": os_type_id(d),
                "name": d,
                "description": d,
                "oscategoryid": os_category_id(c),
                "oscategoryname": c,
                "isuserdefined": false,
                "fordisplay": true,
            })
        })
        .collect();
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: "ostype",
        count,
        items,
    })
}

/// An `ostypeid` parameter, which must name a type of the catalogue.
fn os_type_param(call: &Call, name: &str) -> Result<Option<Uuid>, ApiError> {
    match call.uuid(name)? {
        Some(id) if os_type(id).is_none() => Err(ApiError::invalid_param(format!(
            "Please specify a valid guest OS type: no OS type has id {id} (see listOsTypes)"
        ))),
        other => Ok(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// CloudStack's `UriUtils.validateUrl` for registrations: an http or https URL with a host.
fn checked_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unsupported scheme for url: {url}: use http or https"
            ))
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(ApiError::invalid_param(format!(
            "Invalid URL {url}: it names no host"
        )));
    }
    Ok(url.to_owned())
}

fn simulator_only(hypervisor: &str) -> Result<CompactString, ApiError> {
    if hypervisor.trim().eq_ignore_ascii_case(HYPERVISOR) {
        Ok(HYPERVISOR.into())
    } else {
        Err(ApiError::invalid_param(format!(
            "Hypervisor type {hypervisor} is not supported by Ledgerstack: use Simulator"
        )))
    }
}

fn template_format(format: &str) -> Result<CompactString, ApiError> {
    let upper = format.trim().to_ascii_uppercase();
    if TEMPLATE_FORMATS.contains(&upper.as_str()) {
        Ok(upper.into())
    } else if upper == "ISO" {
        Err(ApiError::invalid_param(
            "Image format ISO is not a template format: register ISOs with registerIso",
        ))
    } else {
        Err(ApiError::invalid_param(format!(
            "Image format: {format} is incorrect. Supported formats are {}",
            TEMPLATE_FORMATS.join(", ")
        )))
    }
}

/// Refuses `true` for flags whose feature Ledgerstack does not have, rather than recording a
/// promise it cannot keep.
fn unsupported_flags(call: &Call, names: &[&str]) -> Result<(), ApiError> {
    for name in names {
        if call.flag(name) {
            return Err(ApiError::invalid_param(format!(
                "{name}=true is not supported by Ledgerstack: {}",
                match *name {
                    "passwordenabled" => "the simulator has no guest agent to set passwords",
                    _ => "it has no extractTemplate or extractIso",
                }
            )));
        }
    }
    Ok(())
}

/// Featured images are for admins: CloudStack silently makes a user's image not featured.
fn featured(call: &Call) -> bool {
    call.caller.role != Role::User && call.flag("isfeatured")
}

/// Where a registration puts the image: every zone (`zoneid=-1`, admins only), or the listed
/// zones, which must exist.
fn registration_zones(call: &Call, state: &State) -> Result<Option<Vec<Uuid>>, ApiError> {
    let zone = call.str("zoneid").map(str::trim);
    let zones = call.str("zoneids");
    let ids: Vec<String> = match (zone, zones) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_param(
                "Both zoneid and zoneids cannot be specified at the same time",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_param(
                "Either zoneid or zoneids is required",
            ));
        }
        (Some(zone), None) => vec![zone.to_owned()],
        (None, Some(list)) => parse_list(list),
    };
    if ids.iter().any(|z| z == "-1") {
        if ids.len() > 1 {
            return Err(ApiError::invalid_param(
                "Parameter zoneids cannot combine all zones (-1) with other zones",
            ));
        }
        if call.caller.role == Role::User {
            return Err(ApiError::invalid_param(
                "Please specify a valid zone Id. Only admins can create templates in all zones.",
            ));
        }
        return Ok(None);
    }
    let mut zones = Vec::new();
    for id in ids {
        let zone = Uuid::parse_str(&id).map_err(|_| {
            ApiError::invalid_param(format!(
                "Invalid parameter zoneid value={id}: not a zone id"
            ))
        })?;
        existing_zone(state, zone)?;
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    Ok(Some(zones))
}

fn existing_zone(state: &State, id: Uuid) -> Result<(), ApiError> {
    if state.catalog.zones.get(&id).is_some() {
        Ok(())
    } else {
        Err(ApiError::invalid_param(format!(
            "Unable to find zone by id {id}"
        )))
    }
}

/// The zones an image is listed in: a cross-zone image is in every zone.
fn image_zones<F: Image>(state: &State, row: &ImageRow<F>) -> Vec<Uuid> {
    if cross_zone(row) {
        let mut all: Vec<_> = state.catalog.zones.values().collect();
        all.sort_by_key(|z| (z.created, z.facts.zone_id));
        all.into_iter().map(|z| z.facts.zone_id).collect()
    } else {
        let mut listed: Vec<_> = row
            .zones
            .iter()
            .filter_map(|z| state.catalog.zones.get(z))
            .collect();
        listed.sort_by_key(|z| (z.created, z.facts.zone_id));
        listed.into_iter().map(|z| z.facts.zone_id).collect()
    }
}

fn no_permission(state: &State, caller: &Caller, what: &str, id: Uuid) -> ApiError {
    let name = state
        .identity
        .account_name(caller.account_id)
        .map_or_else(|| caller.account_id.to_string(), |n| n.to_string());
    ApiError::permission_denied(format!(
        "Account {name} does not have permission to operate on {what} {id}"
    ))
}

// ---------------------------------------------------------------------------------------------
// Listing filters

/// CloudStack's `TemplateFilter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Featured,
    OwnOnly,
    SelfExecutable,
    SharedExecutable,
    Executable,
    Community,
    All,
}

fn parse_filter(call: &Call, name: &str, value: &str) -> Result<Filter, ApiError> {
    let filter = match value.trim().to_ascii_lowercase().as_str() {
        "featured" => Filter::Featured,
        "self" => Filter::OwnOnly,
        "selfexecutable" => Filter::SelfExecutable,
        "sharedexecutable" | "shared" => Filter::SharedExecutable,
        "executable" => Filter::Executable,
        "community" => Filter::Community,
        "all" => Filter::All,
        _ => {
            return Err(ApiError::invalid_param(format!(
                "Invalid {name} value {value}: use featured, self, selfexecutable, sharedexecutable, executable, community or all"
            )));
        }
    };
    if filter == Filter::All && call.caller.role == Role::User {
        return Err(ApiError::invalid_param(
            "Filter all can be specified by admin only",
        ));
    }
    Ok(filter)
}

/// What every listed image has for the filters.
struct Ownership {
    account_id: Uuid,
    domain_id: Uuid,
    is_public: bool,
    is_featured: bool,
}

/// Whether an image passes the filter (CloudStack's `searchForTemplatesInternal`): the own
/// images are those of the accounts in the list scope.
fn passes(state: &State, call: &Call, scope: ListScope, filter: Filter, image: &Ownership) -> bool {
    let own = || scope.admits(state, Some(image.account_id), Some(image.domain_id));
    match filter {
        Filter::Featured => image.is_public && image.is_featured,
        Filter::Community => image.is_public && !image.is_featured,
        Filter::OwnOnly | Filter::SelfExecutable => own(),
        // Ledgerstack has no template permissions: nothing is shared with anyone.
        Filter::SharedExecutable => false,
        Filter::Executable => image.is_public || own(),
        Filter::All => match call.caller.role {
            Role::RootAdmin => true,
            _ => {
                image.is_public
                    || state
                        .identity
                        .is_in_subtree(image.domain_id, call.caller.domain_id)
            }
        },
    }
}

/// Whether the caller may see an image by id: public ones, and those of accounts they may act
/// for.
fn may_see(state: &State, caller: &Caller, image: &Ownership) -> bool {
    image.is_public || caller.may_access(state, image.account_id, image.domain_id)
}

fn tags_json(state: &State, id: Uuid) -> Vec<Value> {
    state
        .compute
        .tags_of(id)
        .into_iter()
        .map(|t| {
            json!({
                "key": t.key,
                "value": t.value,
                "resourcetype": t.resource_type,
                "resourceid": t.resource_id,
                "account": state.identity.account_name(t.account_id),
                "domainid": t.domain_id,
                "domain": domain_name(state, t.domain_id),
            })
        })
        .collect()
}

fn domain_name(state: &State, id: Uuid) -> Option<CompactString> {
    state
        .identity
        .domains
        .get(&id)
        .map(|d| d.facts.name.clone())
}

fn zone_name(state: &State, id: Uuid) -> Option<CompactString> {
    state.catalog.zones.get(&id).map(|z| z.facts.name.clone())
}

// ---------------------------------------------------------------------------------------------
// What templates and ISOs share

/// What differs between templates and ISOs for registering, listing and deleting them.
trait Image: Clone + 'static {
    /// The reply key (`template`, `iso`).
    const KEY: &'static str;
    /// The word for one in messages (`template`, `ISO`).
    const WHAT: &'static str;
    /// The same word starting a sentence (`Template`, `ISO`).
    const TITLE: &'static str;
    fn row(state: &State, id: Uuid) -> Option<&ImageRow<Self>>;
    fn rows(state: &State) -> impl Iterator<Item = &ImageRow<Self>>;
    fn id(&self) -> Uuid;
    fn name(&self) -> &str;
    /// The zone it was registered in; `None` for a cross-zone image.
    fn zone_id(&self) -> Option<Uuid>;
    /// The same image in `zone`: the payload of a per-zone event.
    fn in_zone(&self, zone: Uuid) -> Self;
    fn ownership(&self) -> Ownership;
    fn create_event(self) -> EventBody;
    fn copy_event(self, source_zone_id: Uuid) -> EventBody;
    fn delete_event(self) -> EventBody;
    /// The image in one zone, as CloudStack shows it.
    fn json(state: &State, row: &ImageRow<Self>, zone: Option<Uuid>) -> Value;
}

/// [`Image`] for the facts of templates or ISOs: the two differ only in names.
macro_rules! image {
    ($facts:ident {
        table: $table:ident,
        id: $id:ident,
        json: $json:ident,
        key: $key:literal,
        what: $what:literal,
        title: $title:literal,
        event: $variant:ident($event:ident),
        lifecycle: $lifecycle:ident { $field:ident },
        copied: $copied:ident,
    }) => {
        impl Image for $facts {
            const KEY: &'static str = $key;
            const WHAT: &'static str = $what;
            const TITLE: &'static str = $title;
            fn row(state: &State, id: Uuid) -> Option<&ImageRow<Self>> {
                state.storage.$table.get(&id)
            }
            fn rows(state: &State) -> impl Iterator<Item = &ImageRow<Self>> {
                state.storage.$table.values()
            }
            fn id(&self) -> Uuid {
                self.$id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn zone_id(&self) -> Option<Uuid> {
                self.zone_id
            }
            fn in_zone(&self, zone: Uuid) -> Self {
                $facts {
                    zone_id: Some(zone),
                    ..self.clone()
                }
            }
            fn ownership(&self) -> Ownership {
                Ownership {
                    account_id: self.account_id,
                    domain_id: self.domain_id,
                    is_public: self.is_public,
                    is_featured: self.is_featured,
                }
            }
            fn create_event(self) -> EventBody {
                EventBody::$variant($event::Create($lifecycle { $field: self }))
            }
            fn copy_event(self, source_zone_id: Uuid) -> EventBody {
                EventBody::$variant($event::Copy($copied {
                    $field: self,
                    source_zone_id,
                }))
            }
            fn delete_event(self) -> EventBody {
                EventBody::$variant($event::Delete($lifecycle { $field: self }))
            }
            fn json(state: &State, row: &ImageRow<Self>, zone: Option<Uuid>) -> Value {
                $json(state, row, zone)
            }
        }
    };
}

image!(TemplateFacts {
    table: templates,
    id: template_id,
    json: template_json,
    key: "template",
    what: "template",
    title: "Template",
    event: Template(TemplateEvent),
    lifecycle: TemplateLifecycle { template },
    copied: TemplateCopied,
});

image!(IsoFacts {
    table: isos,
    id: iso_id,
    json: iso_json,
    key: "iso",
    what: "ISO",
    title: "ISO",
    event: Iso(IsoEvent),
    lifecycle: IsoLifecycle { iso },
    copied: IsoCopied,
});

fn cross_zone<F: Image>(row: &ImageRow<F>) -> bool {
    row.facts.zone_id().is_none()
}

fn existing<F: Image>(state: &State, id: Uuid) -> Result<&ImageRow<F>, ApiError> {
    F::row(state, id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find {} by id {id}", F::WHAT)))
}

fn written<F: Image>(state: &State, id: Uuid) -> Result<&ImageRow<F>, ApiError> {
    F::row(state, id).ok_or_else(|| {
        ApiError::internal(format!("{} {id} vanished after it was written", F::WHAT))
    })
}

/// `registerTemplate` and `registerIso` once the parameters are read: `facts` makes the image
/// of id `id` for its owner (account, domain) and first zone (`None`: every zone), after the
/// limit checks (CloudStack counts ISOs against the template limit too). There is one usage
/// record per zone: the image is created in the first zone and copied to the others. The
/// reply is every zone's item of the image.
async fn register<F: Image>(
    ctx: &Ctx,
    call: &Call,
    id: Uuid,
    facts: impl Fn(Uuid, Uuid, Option<Uuid>) -> F,
) -> Result<Reply, ApiError> {
    ctx.decide(ALLOCATION, |state| {
        let (account_id, domain_id) = owner(call, state)?;
        let zones = registration_zones(call, state)?;
        check_limit(state, account_id, ResourceType::Template, 1)?;
        check_limit(
            state,
            account_id,
            ResourceType::SecondaryStorage,
            gib(REGISTERED_IMAGE_SIZE),
        )?;
        let facts = facts(
            account_id,
            domain_id,
            zones.as_ref().and_then(|z| z.first().copied()),
        );
        let source_zone = facts.zone_id();
        let mut events = vec![call.event(facts.clone().create_event())];
        if let (Some(zones), Some(source)) = (zones, source_zone) {
            for zone in zones.into_iter().skip(1) {
                events.push(call.event(facts.in_zone(zone).copy_event(source)));
            }
        }
        Ok(events)
    })
    .await?;
    let state = ctx.models.read();
    let row = written::<F>(&state, id)?;
    let items: Vec<Value> = image_zones(&state, row)
        .into_iter()
        .map(|z| F::json(&state, row, Some(z)))
        .collect();
    Ok(Reply::List {
        key: F::KEY,
        count: items.len(),
        items,
    })
}

/// `listTemplates` and `listIsos` once the paging and the filter are read: the image `id`
/// names (refused with `unknown` when there is none), or those passing the filter, among those
/// `matches` admits; one item per zone (the first only with `showunique`), oldest first.
fn list_images<F: Image>(
    state: &State,
    call: &Call,
    paging: Paging,
    filter: Filter,
    unknown: impl FnOnce(Uuid) -> ApiError,
    matches: impl Fn(&F) -> bool,
) -> Result<Reply, ApiError> {
    let scope = ListScope::from_call(call, state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let zone = call.uuid("zoneid")?;
    let keyword = call.str("keyword");
    let unique = call.flag("showunique");
    if let Some(id) = id {
        let row = F::row(state, id).ok_or_else(|| unknown(id))?;
        if !may_see(state, &call.caller, &row.facts.ownership()) {
            return Err(no_permission(state, &call.caller, F::WHAT, id));
        }
    }
    let mut rows: Vec<&ImageRow<F>> = F::rows(state)
        .filter(|row| match id {
            Some(id) => row.facts.id() == id,
            None => passes(state, call, scope, filter, &row.facts.ownership()),
        })
        .filter(|row| {
            let f = &row.facts;
            name.is_none_or(|n| f.name().eq_ignore_ascii_case(n))
                && matches(f)
                && keyword_matches(keyword, &[f.name()])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.id()));
    let mut items = Vec::new();
    for row in rows {
        let zones = image_zones(state, row)
            .into_iter()
            .filter(|z| zone.is_none_or(|wanted| *z == wanted));
        for z in zones {
            items.push(F::json(state, row, Some(z)));
            if unique {
                break;
            }
        }
    }
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: F::KEY,
        count,
        items,
    })
}

/// The zones a deletion removes a zoned image from: `zone`, which must hold it, else all of
/// them.
fn zones_to_delete<F: Image>(
    state: &State,
    row: &ImageRow<F>,
    zone: Option<Uuid>,
) -> Result<Vec<Uuid>, ApiError> {
    match zone {
        Some(z) if row.zones.contains(&z) => Ok(vec![z]),
        Some(z) => {
            existing_zone(state, z)?;
            Err(ApiError::invalid_param(format!(
                "{} {} is not in zone {z}",
                F::TITLE,
                row.facts.id()
            )))
        }
        None => Ok(row.zones.iter().copied().collect()),
    }
}

/// The delete payloads of a deletion from `zones`: one per zone, so usage closes each zone's
/// record; one without zone for a cross-zone image.
fn deleted<F: Image>(row: &ImageRow<F>, zones: Vec<Uuid>) -> Vec<F> {
    if cross_zone(row) {
        return vec![row.facts.clone()];
    }
    zones.into_iter().map(|z| row.facts.in_zone(z)).collect()
}

/// `deleteTemplate` and `deleteIso`: `deletion` (the payloads, after the checks) is checked at
/// once, then decided again by the job.
async fn delete_image<F: Image + Send>(
    ctx: &Ctx,
    id: Uuid,
    instance_type: &'static str,
    event_type: &'static str,
    deletion: impl Fn(&State) -> Result<Vec<F>, ApiError> + Send + Sync + 'static,
) -> Result<Reply, ApiError> {
    let name = {
        let state = ctx.models.read();
        deletion(&state)?;
        existing::<F>(&state, id)?.facts.name().to_owned()
    };
    let meta = JobMeta::on(
        instance_type,
        id,
        event_type,
        format!("deleting {} {name}", F::WHAT),
    );
    Ok(Reply::Async(meta.run(Box::new(move |job| {
        async move {
            job.ctx
                .decide(ALLOCATION, |state| {
                    Ok(deletion(state)?
                        .into_iter()
                        .map(|facts| job.event(facts.delete_event()))
                        .collect())
                })
                .await?;
            Ok(Reply::success())
        }
        .boxed()
    }))))
}

// ---------------------------------------------------------------------------------------------
// Templates

/// A template in one zone, as CloudStack shows it.
pub fn template_json(state: &State, row: &TemplateRow, zone: Option<Uuid>) -> Value {
    let t = &row.facts;
    let os = t.os_type_id.and_then(os_type);
    // The seeded simulator template plays CloudStack's built-in one.
    let template_type = if t.template_id == crate::bootstrap::demo_id("template") {
        "BUILTIN"
    } else {
        "USER"
    };
    json!({
        "id": t.template_id,
        "name": t.name,
        "displaytext": t.display_text,
        "ispublic": t.is_public,
        "isfeatured": t.is_featured,
        "isready": true,
        "status": "Download Complete",
        "format": t.format,
        "hypervisor": t.hypervisor,
        "ostypeid": t.os_type_id,
        "ostypename": os.map(|(d, _)| d),
        "size": t.virtual_size,
        "physicalsize": t.size,
        "zoneid": zone,
        "zonename": zone.and_then(|z| zone_name(state, z)),
        "account": state.identity.account_name(t.account_id),
        "accountid": t.account_id,
        "domainid": t.domain_id,
        "domain": domain_name(state, t.domain_id),
        "created": date(row.created),
        "templatetype": template_type,
        "crossZones": cross_zone(row),
        "passwordenabled": false,
        "isextractable": false,
        "sshkeyenabled": false,
        "isdynamicallyscalable": false,
        "requireshvm": true,
        "bits": 64,
        "url": t.url,
        "sourcetemplateid": source_template(state, t),
        "tags": tags_json(state, t.template_id),
    })
}

/// The template the volume (or the snapshot's volume) a template was made of came from, while
/// that volume exists.
fn source_template(state: &State, t: &TemplateFacts) -> Option<Uuid> {
    let volume = t.source_volume_id.or_else(|| {
        t.source_snapshot_id
            .and_then(|s| state.storage.snapshots.get(&s))
            .map(|s| s.facts.volume_id)
    })?;
    state.storage.volumes.get(&volume)?.facts.template_id
}

/// A template the caller may change: their own (or, for admins, one they may act for).
fn own_template<'s>(
    state: &'s State,
    caller: &Caller,
    id: Uuid,
) -> Result<&'s TemplateRow, ApiError> {
    let row = existing::<TemplateFacts>(state, id)?;
    if !caller.may_access(state, row.facts.account_id, row.facts.domain_id) {
        return Err(no_permission(state, caller, "template", id));
    }
    Ok(row)
}

async fn register_template(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    let display_text = call.str("displaytext").unwrap_or(&name).to_owned();
    let url = checked_url(call.required("url")?)?;
    let format = template_format(call.required("format")?)?;
    let hypervisor = simulator_only(call.required("hypervisor")?)?;
    let os_type_id =
        os_type_param(call, "ostypeid")?.unwrap_or_else(|| os_type_id(DEFAULT_OS_TYPE));
    unsupported_flags(call, &["passwordenabled", "isextractable"])?;
    let template_id = Uuid::new_v4();
    register(ctx, call, template_id, |account_id, domain_id, zone_id| {
        TemplateFacts {
            template_id,
            name: name.as_str().into(),
            display_text: display_text.clone(),
            account_id,
            domain_id,
            zone_id,
            format: format.clone(),
            hypervisor: hypervisor.clone(),
            os_type_id: Some(os_type_id),
            size: REGISTERED_IMAGE_SIZE,
            virtual_size: REGISTERED_IMAGE_SIZE,
            is_public: call.flag("ispublic"),
            is_featured: featured(call),
            url: Some(url.clone()),
            source_volume_id: None,
            source_snapshot_id: None,
        }
    })
    .await
}

async fn list_templates(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let filter = parse_filter(call, "templatefilter", call.required("templatefilter")?)?;
    let hypervisor = call.str("hypervisor");
    list_images(
        &state,
        call,
        paging,
        filter,
        |_| ApiError::invalid_param("Please specify a valid template ID."),
        |t: &TemplateFacts| hypervisor.is_none_or(|h| t.hypervisor.eq_ignore_ascii_case(h)),
    )
}

async fn update_template(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = call.str("name").map(str::trim);
    if name.is_some_and(str::is_empty) {
        return Err(ApiError::invalid_param("name can't be empty"));
    }
    let display_text = call.str("displaytext");
    let os = os_type_param(call, "ostypeid")?;
    let format = call.str("format").map(template_format).transpose()?;
    unsupported_flags(call, &["passwordenabled"])?;
    ctx.decide(ALLOCATION, |state| {
        let row = own_template(state, &call.caller, id)?;
        let mut facts = row.facts.clone();
        if let Some(name) = name {
            facts.name = name.into();
        }
        if let Some(text) = display_text {
            facts.display_text = text.to_owned();
        }
        if let Some(os) = os {
            facts.os_type_id = Some(os);
        }
        if let Some(format) = &format {
            facts.format = format.clone();
        }
        if facts == row.facts {
            return Ok(vec![]);
        }
        Ok(vec![call.event(EventBody::Template(
            TemplateEvent::Update(TemplateLifecycle { template: facts }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    let row = written::<TemplateFacts>(&state, id)?;
    let zone = image_zones(&state, row).first().copied();
    Ok(Reply::Object {
        key: "template",
        value: template_json(&state, row, zone),
    })
}

/// The TEMPLATE.DELETE payloads of a deletion (one per zone, so usage closes each zone's
/// record; one without zone for a cross-zone template), after the checks.
fn template_deletion(
    state: &State,
    caller: &Caller,
    id: Uuid,
    zone: Option<Uuid>,
    forced: bool,
) -> Result<Vec<TemplateFacts>, ApiError> {
    let row = own_template(state, caller, id)?;
    let cross_zone = cross_zone(row);
    // CloudStack deletes a cross-zone template from every zone, whatever zoneid says.
    let zones = if cross_zone {
        vec![]
    } else {
        zones_to_delete(state, row, zone)?
    };
    if !forced {
        let users: Vec<String> = state
            .compute
            .vms
            .values()
            .filter(|vm| {
                vm.facts.template_id == id && (cross_zone || zones.contains(&vm.facts.zone_id))
            })
            .map(|vm| vm.facts.name.to_string())
            .collect();
        if !users.is_empty() {
            return Err(ApiError::in_use(format!(
                "Unable to delete template {id}: it is used by virtual machines {}; pass forced=true to delete it anyway",
                users.join(", ")
            )));
        }
    }
    Ok(deleted(row, zones))
}

async fn delete_template(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let zone = call.uuid("zoneid")?;
    let forced = call.flag("forced");
    let caller = call.caller.clone();
    delete_image(ctx, id, "Template", "TEMPLATE.DELETE", move |state| {
        template_deletion(state, &caller, id, zone, forced)
    })
    .await
}

/// The zones a copy goes to, after the checks; empty when the template is in all of them
/// already (CloudStack then answers the template without copying).
fn template_copy(
    state: &State,
    caller: &Caller,
    id: Uuid,
    source: Option<Uuid>,
    destinations: &[Uuid],
) -> Result<(TemplateFacts, Uuid, Vec<Uuid>), ApiError> {
    let row = own_template(state, caller, id)?;
    if cross_zone(row) {
        return Err(ApiError::invalid_param(format!(
            "Template {id} is cross-zone: it is in every zone already"
        )));
    }
    let source = match source {
        Some(z) => {
            existing_zone(state, z)?;
            if !row.zones.contains(&z) {
                return Err(ApiError::invalid_param(format!(
                    "Template {id} is not in the source zone {z}"
                )));
            }
            z
        }
        None => *row
            .zones
            .iter()
            .next()
            .ok_or_else(|| ApiError::invalid_param(format!("Template {id} is in no zone")))?,
    };
    let mut new = Vec::new();
    for &z in destinations {
        existing_zone(state, z)?;
        if z == source && destinations.len() == 1 {
            return Err(ApiError::invalid_param(
                "Please specify different source and destination zones.",
            ));
        }
        if !row.zones.contains(&z) && !new.contains(&z) {
            new.push(z);
        }
    }
    let more = i64::try_from(new.len()).unwrap_or(i64::MAX);
    check_limit(
        state,
        row.facts.account_id,
        ResourceType::SecondaryStorage,
        gib(row.facts.size).saturating_mul(more),
    )?;
    Ok((row.facts.clone(), source, new))
}

async fn copy_template(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let source = call.uuid("sourcezoneid")?;
    let mut destinations: Vec<Uuid> = call.uuid("destzoneid")?.into_iter().collect();
    if let Some(list) = call.str("destzoneids") {
        for item in parse_list(list) {
            destinations.push(Uuid::parse_str(&item).map_err(|_| {
                ApiError::invalid_param(format!(
                    "Invalid parameter destzoneids value={item}: not a zone id"
                ))
            })?);
        }
    }
    if destinations.is_empty() {
        return Err(ApiError::invalid_param(
            "Please specify valid destination zone(s): destzoneid or destzoneids",
        ));
    }
    let caller = call.caller.clone();
    let name = {
        let state = ctx.models.read();
        let (facts, _, _) = template_copy(&state, &caller, id, source, &destinations)?;
        facts.name
    };
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("Template"),
        instance_id: Some(id),
        event_type: "TEMPLATE.COPY",
        description: format!("copying template {name}"),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(ALLOCATION, |state| {
                        let (facts, source, new) =
                            template_copy(state, &caller, id, source, &destinations)?;
                        Ok(new
                            .into_iter()
                            .map(|zone| {
                                job.event(EventBody::Template(TemplateEvent::Copy(
                                    TemplateCopied {
                                        template: TemplateFacts {
                                            zone_id: Some(zone),
                                            ..facts.clone()
                                        },
                                        source_zone_id: source,
                                    },
                                )))
                            })
                            .collect())
                    })
                    .await?;
                let state = job.ctx.models.read();
                let row = written::<TemplateFacts>(&state, id)?;
                Ok(Reply::Object {
                    key: "template",
                    value: template_json(&state, row, destinations.first().copied()),
                })
            }
            .boxed()
        }),
    }))
}

/// What a new template is made of: a stopped VM's volume or a backed-up snapshot.
struct TemplateSource {
    account_id: Uuid,
    domain_id: Uuid,
    zone_id: Uuid,
    hypervisor: CompactString,
    format: CompactString,
    size: u64,
    virtual_size: u64,
    volume_id: Option<Uuid>,
    snapshot_id: Option<Uuid>,
}

/// The format of the template a volume was created from (the simulator keeps it), else RAW.
fn format_of_volume(state: &State, volume: Uuid) -> CompactString {
    state
        .storage
        .volumes
        .get(&volume)
        .and_then(|v| v.facts.template_id)
        .and_then(|t| state.storage.templates.get(&t))
        .map_or_else(|| "RAW".into(), |t| t.facts.format.clone())
}

fn template_source(
    state: &State,
    caller: &Caller,
    volume: Option<Uuid>,
    snapshot: Option<Uuid>,
) -> Result<TemplateSource, ApiError> {
    match (volume, snapshot) {
        (Some(_), Some(_)) => Err(ApiError::invalid_param(
            "Specify either volumeid or snapshotid, not both",
        )),
        (None, None) => Err(ApiError::invalid_param(
            "Failed to create private template record, need to specify snapshot ID or volume ID",
        )),
        (Some(id), None) => {
            let volume = state.storage.volumes.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find volume by id {id}"))
            })?;
            let v = &volume.facts;
            if !caller.may_access(state, v.account_id, v.domain_id) {
                return Err(no_permission(state, caller, "volume", id));
            }
            let vm = volume.vm_id.and_then(|vm| state.compute.vms.get(&vm));
            match vm {
                Some(vm) if vm.state != VmState::Stopped => {
                    return Err(ApiError::invalid_param(format!(
                        "Unable to create a template of volume {}: its virtual machine {} must be Stopped, not {}",
                        v.name,
                        vm.facts.name,
                        vm.state.as_str()
                    )));
                }
                None if volume.state == VolumeStateName::Allocated => {
                    return Err(ApiError::invalid_param(format!(
                        "Unable to create a template of volume {}: it holds no data yet (Allocated)",
                        v.name
                    )));
                }
                _ => {}
            }
            Ok(TemplateSource {
                account_id: v.account_id,
                domain_id: v.domain_id,
                zone_id: v.zone_id,
                hypervisor: vm.map_or_else(|| HYPERVISOR.into(), |vm| vm.facts.hypervisor.clone()),
                format: format_of_volume(state, id),
                size: v.size,
                virtual_size: v.size,
                volume_id: Some(id),
                snapshot_id: None,
            })
        }
        (None, Some(id)) => {
            let snapshot = state.storage.snapshots.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find snapshot by id {id}"))
            })?;
            let s = &snapshot.facts;
            if !caller.may_access(state, s.account_id, s.domain_id) {
                return Err(no_permission(state, caller, "snapshot", id));
            }
            if !snapshot.backed_up {
                return Err(ApiError::invalid_param(format!(
                    "Snapshot {id} is not in BackedUp state yet and can't be used for template creation"
                )));
            }
            Ok(TemplateSource {
                account_id: s.account_id,
                domain_id: s.domain_id,
                zone_id: s.zone_id,
                hypervisor: HYPERVISOR.into(),
                format: format_of_volume(state, s.volume_id),
                size: s.size,
                virtual_size: s.virtual_size,
                volume_id: None,
                snapshot_id: Some(id),
            })
        }
    }
}

async fn create_template(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    let display_text = call.str("displaytext").unwrap_or(&name).to_owned();
    let os = os_type_param(call, "ostypeid")?;
    let volume = call.uuid("volumeid")?;
    let snapshot = call.uuid("snapshotid")?;
    unsupported_flags(call, &["passwordenabled"])?;
    let template_id = Uuid::new_v4();
    // As CloudStack's create phase: the record (and the limits it counts against) is decided
    // before the job starts; the template belongs to the volume's or snapshot's owner.
    ctx.decide(ALLOCATION, |state| {
        let source = template_source(state, &call.caller, volume, snapshot)?;
        check_limit(state, source.account_id, ResourceType::Template, 1)?;
        check_limit(
            state,
            source.account_id,
            ResourceType::SecondaryStorage,
            gib(source.size),
        )?;
        Ok(vec![call.event(EventBody::Template(
            TemplateEvent::Create(TemplateLifecycle {
                template: TemplateFacts {
                    template_id,
                    name: name.as_str().into(),
                    display_text: display_text.clone(),
                    account_id: source.account_id,
                    domain_id: source.domain_id,
                    zone_id: Some(source.zone_id),
                    format: source.format,
                    hypervisor: source.hypervisor,
                    os_type_id: os,
                    size: source.size,
                    virtual_size: source.virtual_size,
                    is_public: call.flag("ispublic"),
                    is_featured: featured(call),
                    url: None,
                    source_volume_id: source.volume_id,
                    source_snapshot_id: source.snapshot_id,
                },
            }),
        ))])
    })
    .await?;
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("Template"),
        instance_id: Some(template_id),
        event_type: "TEMPLATE.CREATE",
        description: format!("creating template {name}"),
        create_id: Some(template_id),
        run: Box::new(move |job| {
            async move {
                let state = job.ctx.models.read();
                let row = existing::<TemplateFacts>(&state, template_id)?;
                let zone = row.facts.zone_id;
                Ok(Reply::Object {
                    key: "template",
                    value: template_json(&state, row, zone),
                })
            }
            .boxed()
        }),
    }))
}

// ---------------------------------------------------------------------------------------------
// ISOs

/// An ISO in one zone, as CloudStack shows it.
pub fn iso_json(state: &State, row: &IsoRow, zone: Option<Uuid>) -> Value {
    let i = &row.facts;
    json!({
        "id": i.iso_id,
        "name": i.name,
        "displaytext": i.display_text,
        "ispublic": i.is_public,
        "isfeatured": i.is_featured,
        "isready": true,
        "status": "Successfully Installed",
        "bootable": i.bootable,
        "format": "ISO",
        "ostypeid": i.os_type_id,
        "ostypename": i.os_type_id.and_then(os_type).map(|(d, _)| d),
        "size": i.size,
        "zoneid": zone,
        "zonename": zone.and_then(|z| zone_name(state, z)),
        "account": state.identity.account_name(i.account_id),
        "accountid": i.account_id,
        "domainid": i.domain_id,
        "domain": domain_name(state, i.domain_id),
        "created": date(row.created),
        "crossZones": cross_zone(row),
        "isextractable": false,
        "url": i.url,
        "tags": tags_json(state, i.iso_id),
    })
}

async fn register_iso(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    let display_text = call.str("displaytext").unwrap_or(&name).to_owned();
    let url = checked_url(call.required("url")?)?;
    let bootable = call.bool_opt("bootable").unwrap_or(true);
    let os = os_type_param(call, "ostypeid")?;
    if bootable && os.is_none() {
        return Err(ApiError::invalid_param(
            "Please pass a valid GuestOS Id: a bootable ISO needs ostypeid",
        ));
    }
    unsupported_flags(call, &["isextractable"])?;
    let iso_id = Uuid::new_v4();
    register(ctx, call, iso_id, |account_id, domain_id, zone_id| {
        IsoFacts {
            iso_id,
            name: name.as_str().into(),
            display_text: display_text.clone(),
            account_id,
            domain_id,
            zone_id,
            os_type_id: os,
            size: REGISTERED_IMAGE_SIZE,
            is_public: call.flag("ispublic"),
            is_featured: featured(call),
            bootable,
            url: Some(url.clone()),
        }
    })
    .await
}

async fn list_isos(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let filter = parse_filter(
        call,
        "isofilter",
        call.str("isofilter").unwrap_or("selfexecutable"),
    )?;
    let bootable = call.bool_opt("bootable");
    let public = call.bool_opt("ispublic");
    // Every ISO is ready at once: asking for ISOs not ready finds none.
    let ready = call.bool_opt("isready") != Some(false);
    list_images(
        &state,
        call,
        paging,
        filter,
        |id| ApiError::invalid_param(format!("Unable to find ISO by id {id}")),
        |i: &IsoFacts| {
            ready
                && bootable.is_none_or(|b| i.bootable == b)
                && public.is_none_or(|p| i.is_public == p)
        },
    )
}

/// The ISO.DELETE payloads of a deletion (one per zone), after the checks.
fn iso_deletion(
    state: &State,
    caller: &Caller,
    id: Uuid,
    zone: Option<Uuid>,
) -> Result<Vec<IsoFacts>, ApiError> {
    let row = existing::<IsoFacts>(state, id)?;
    if !caller.may_access(state, row.facts.account_id, row.facts.domain_id) {
        return Err(no_permission(state, caller, "ISO", id));
    }
    let attached: Vec<String> = state
        .compute
        .vms
        .values()
        .filter(|vm| vm.iso_id == Some(id))
        .map(|vm| vm.facts.name.to_string())
        .collect();
    if !attached.is_empty() {
        return Err(ApiError::in_use(format!(
            "Unable to delete ISO {id}: it is attached to virtual machines {}; detach it first",
            attached.join(", ")
        )));
    }
    let zones = if cross_zone(row) {
        vec![]
    } else {
        zones_to_delete(state, row, zone)?
    };
    Ok(deleted(row, zones))
}

async fn delete_iso(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let zone = call.uuid("zoneid")?;
    let caller = call.caller.clone();
    delete_image(ctx, id, "Iso", "ISO.DELETE", move |state| {
        iso_deletion(state, &caller, id, zone)
    })
    .await
}

/// The attachment an `attachIso` or `detachIso` records, after the checks (`iso` is `None`
/// for a detach).
fn iso_attachment(
    state: &State,
    caller: &Caller,
    vm_id: Uuid,
    iso: Option<Uuid>,
) -> Result<IsoAttachment, ApiError> {
    let vm = state.compute.vms.get(&vm_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find virtual machine by id {vm_id}"))
    })?;
    let v = &vm.facts;
    if !caller.may_access(state, v.account_id, v.domain_id) {
        return Err(no_permission(state, caller, "virtual machine", vm_id));
    }
    if !matches!(vm.state, VmState::Running | VmState::Stopped) {
        return Err(ApiError::invalid_param(format!(
            "Virtual machine {} is {}: an ISO can be attached or detached only when it is Running or Stopped",
            v.name,
            vm.state.as_str()
        )));
    }
    let iso_id = match iso {
        Some(iso_id) => {
            let row = existing::<IsoFacts>(state, iso_id)?;
            if !may_see(state, caller, &row.facts.ownership()) {
                return Err(no_permission(state, caller, "ISO", iso_id));
            }
            if vm.iso_id.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "An ISO is already attached to virtual machine {}: detach it first",
                    v.name
                )));
            }
            if !cross_zone(row) && !row.zones.contains(&v.zone_id) {
                return Err(ApiError::invalid_param(format!(
                    "ISO {iso_id} is not available in the zone of virtual machine {}",
                    v.name
                )));
            }
            iso_id
        }
        None => vm.iso_id.ok_or_else(|| {
            ApiError::invalid_param(format!("Virtual machine {} has no ISO attached", v.name))
        })?,
    };
    Ok(IsoAttachment {
        iso_id,
        vm_id,
        account_id: v.account_id,
        domain_id: v.domain_id,
        zone_id: v.zone_id,
    })
}

async fn attach_iso(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let iso = call.required_uuid("id")?;
    let vm = call.required_uuid("virtualmachineid")?;
    iso_action(ctx, call, vm, Some(iso)).await
}

async fn detach_iso(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let vm = call.required_uuid("virtualmachineid")?;
    iso_action(ctx, call, vm, None).await
}

/// attachIso (`iso` given) or detachIso: checked at once, recorded by the job, answered with
/// the VM.
async fn iso_action(
    ctx: &Ctx,
    call: &Call,
    vm_id: Uuid,
    iso: Option<Uuid>,
) -> Result<Reply, ApiError> {
    let caller = call.caller.clone();
    let vm_name = {
        let state = ctx.models.read();
        iso_attachment(&state, &caller, vm_id, iso)?;
        state
            .compute
            .vms
            .get(&vm_id)
            .map(|vm| vm.facts.name.clone())
            .unwrap_or_default()
    };
    let (event_type, description) = match iso {
        Some(_) => ("ISO.ATTACH", format!("attaching ISO to {vm_name}")),
        None => ("ISO.DETACH", format!("detaching ISO from {vm_name}")),
    };
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("VirtualMachine"),
        instance_id: Some(vm_id),
        event_type,
        description,
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(ALLOCATION, |state| {
                        let attachment = iso_attachment(state, &caller, vm_id, iso)?;
                        let body = match iso {
                            Some(_) => IsoEvent::Attach(attachment),
                            None => IsoEvent::Detach(attachment),
                        };
                        Ok(vec![job.event(EventBody::Iso(body))])
                    })
                    .await?;
                let state = job.ctx.models.read();
                crate::commands::vms::vm_reply(&state, vm_id)
            }
            .boxed()
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_type_ids_are_stable_and_distinct() {
        let ids: std::collections::BTreeSet<Uuid> =
            OS_TYPES.iter().map(|(d, _)| os_type_id(d)).collect();
        assert_eq!(ids.len(), OS_TYPES.len());
        let centos = os_type_id("CentOS 5.6 (64-bit)");
        assert_eq!(centos, os_type_id("CentOS 5.6 (64-bit)"));
        assert_eq!(os_type(centos), Some(("CentOS 5.6 (64-bit)", "CentOS")));
        assert_eq!(os_type(Uuid::nil()), None);
        assert!(os_type(os_type_id(DEFAULT_OS_TYPE)).is_some());
    }

    #[test]
    fn registration_urls_must_be_http_with_a_host() {
        assert!(checked_url("http://example.org/t.qcow2").is_ok());
        assert!(checked_url("HTTPS://example.org").is_ok());
        assert!(checked_url("ftp://example.org/t.qcow2").is_err());
        assert!(checked_url("http:///t.qcow2").is_err());
        assert!(checked_url("example.org/t.qcow2").is_err());
    }

    #[test]
    fn template_formats_are_checked() {
        assert_eq!(template_format("qcow2").ok(), Some("QCOW2".into()));
        assert!(template_format("ISO").is_err());
        assert!(template_format("EXE").is_err());
    }
}
