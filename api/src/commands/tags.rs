//! Resource tags (`createTags`, `deleteTags`, `listTags`): key/value pairs on VMs, volumes,
//! templates, ISOs, snapshots, VM snapshots and networks, shown in those resources' `tags`.
//!
//! A key is unique per resource, so tags are decided on the allocation stream: two concurrent
//! `createTags` can never both set the same key. A tag belongs to the resource's owner, which
//! the event records, so `listTags` scopes by it as CloudStack does.

use compact_str::CompactString;
use engine::event::common::KeyValue;
use engine::event::infrastructure::ResourceTags;
use engine::event::{EventBody, TagsEvent};
use futures::FutureExt;
use projections::State;
use projections::compute::TagRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::ALLOCATION;
use crate::call::{Call, Caller, ListScope, Paging, keyword_matches};
use crate::commands::SUCCESS_FIELDS;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::AsyncWork;
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Roles, field, param,
    required,
};
use crate::response::Reply;

/// The longest key or value CloudStack's `resource_tags` columns hold.
const MAX_TAG_LENGTH: usize = 255;

/// Resource ids are a comma list of UUIDs: the default limit of 255 would refuse more than six.
const ID_LIST_LENGTH: u32 = 65_535;

const TAG_FIELDS: &[ResponseField] = &[
    field("key", "string", "tag key name"),
    field("value", "string", "tag value"),
    field("resourcetype", "string", "resource type"),
    field("resourceid", "string", "id of the resource"),
    field("account", "string", "the account associated with the tag"),
    field(
        "domainid",
        "string",
        "the ID of the domain associated with the tag",
    ),
    field("domain", "string", "the domain associated with the tag"),
    field(
        "domainpath",
        "string",
        "path of the Domain associated with the tag",
    ),
];

const TYPE_PARAM: ParamSpec = required("resourcetype", T::String, "type of the resource");

const IDS_PARAM: ParamSpec = ParamSpec {
    length: ID_LIST_LENGTH,
    ..required(
        "resourceids",
        T::List,
        "list of resources to create the tags for",
    )
};

/// The tag commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createTags",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Creates resource tag(s)",
        params: &[
            // Required, but checked by the handler: the dispatcher's presence check looks for
            // a plain `tags` parameter, and a map arrives as `tags[0].key`.
            param("tags", T::Map, "Map of tags (key/value pairs)"),
            TYPE_PARAM,
            IDS_PARAM,
        ],
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(create_tags),
    },
    CommandSpec {
        name: "deleteTags",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deleting resource tag(s)",
        params: &[
            param(
                "tags",
                T::Map,
                "Delete tags matching key/value pairs; all tags of the resources without it",
            ),
            TYPE_PARAM,
            ParamSpec {
                length: ID_LIST_LENGTH,
                ..required("resourceids", T::List, "Delete tags for resource id(s)")
            },
        ],
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_tags),
    },
    CommandSpec {
        name: "listTags",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List resource tag(s)",
        params: &[
            param("resourcetype", T::String, "list by resource type"),
            param("resourceid", T::String, "list by resource id"),
            param("key", T::String, "list by key"),
            param("value", T::String, "list by value"),
        ],
        inherits: Inherits::PagingAndScope,
        response: TAG_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_tags),
    },
];

/// The resource types that take tags here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tagged {
    UserVm,
    Volume,
    Template,
    Iso,
    Snapshot,
    VmSnapshot,
    Network,
}

impl Tagged {
    const ALL: [Tagged; 7] = [
        Tagged::UserVm,
        Tagged::Volume,
        Tagged::Template,
        Tagged::Iso,
        Tagged::Snapshot,
        Tagged::VmSnapshot,
        Tagged::Network,
    ];

    /// CloudStack's `ResourceObjectType` name, as `resourcetype` shows it.
    fn name(self) -> &'static str {
        match self {
            Tagged::UserVm => "UserVm",
            Tagged::Volume => "Volume",
            Tagged::Template => "Template",
            Tagged::Iso => "ISO",
            Tagged::Snapshot => "Snapshot",
            Tagged::VmSnapshot => "VMSnapshot",
            Tagged::Network => "Network",
        }
    }

    /// The type named, case-insensitively as CloudStack matches it.
    fn find(text: &str) -> Option<Tagged> {
        let text = text.trim();
        Tagged::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text))
    }

    fn parse(text: &str) -> Result<Tagged, ApiError> {
        Tagged::find(text)
            .ok_or_else(|| ApiError::invalid_param(format!("Invalid resource type {text}")))
    }

    /// The owning account and domain of an existing resource of this type.
    fn owner(self, state: &State, id: Uuid) -> Option<(Uuid, Uuid)> {
        match self {
            Tagged::UserVm => state
                .compute
                .vms
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::Volume => state
                .storage
                .volumes
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::Template => state
                .storage
                .templates
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::Iso => state
                .storage
                .isos
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::Snapshot => state
                .storage
                .snapshots
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::VmSnapshot => state
                .storage
                .vm_snapshots
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
            Tagged::Network => state
                .compute
                .networks
                .get(&id)
                .map(|r| (r.facts.account_id, r.facts.domain_id)),
        }
    }
}

/// True while the tagged resource exists: a tag outlives nothing it was put on (the read
/// model keeps the rows of removed resources, CloudStack deletes them with the resource).
fn resource_exists(state: &State, row: &TagRow) -> bool {
    Tagged::find(&row.resource_type).is_some_and(|t| t.owner(state, row.resource_id).is_some())
}

/// One tag as CloudStack shows it, in `listTags` and nested in a resource's `tags`.
fn tag_json(state: &State, row: &TagRow) -> Value {
    let domain = state.identity.domains.get(&row.domain_id);
    json!({
        "key": row.key,
        "value": row.value,
        "resourcetype": row.resource_type,
        "resourceid": row.resource_id,
        "account": state.identity.account_name(row.account_id),
        "domainid": row.domain_id,
        "domain": domain.map(|d| d.facts.name.clone()),
        "domainpath": domain.map(|d| d.facts.path.clone()),
    })
}

/// The tags of a resource, as the `tags` array of a VM, volume, template, ... (empty when it
/// has none, as CloudStack sends it).
pub fn tags_json(state: &State, resource_id: Uuid) -> Value {
    Value::Array(
        state
            .compute
            .tags_of(resource_id)
            .into_iter()
            .map(|row| tag_json(state, row))
            .collect(),
    )
}

/// What `createTags` / `deleteTags` name: the resources, and the tags (for a delete, a missing
/// value matches any).
#[derive(Debug, Clone)]
struct TagRequest {
    resource_type: Tagged,
    resource_ids: Vec<Uuid>,
    tags: Vec<(CompactString, Option<String>)>,
}

fn request(call: &Call, values_required: bool) -> Result<TagRequest, ApiError> {
    let resource_type = Tagged::parse(call.required("resourcetype")?)?;
    let mut resource_ids = Vec::new();
    for text in parse_list(call.required("resourceids")?) {
        let id = Uuid::parse_str(&text).map_err(|_| {
            ApiError::invalid_param(format!(
                "Unable to find resource by id {text} and type {}",
                resource_type.name()
            ))
        })?;
        if !resource_ids.contains(&id) {
            resource_ids.push(id);
        }
    }
    if resource_ids.is_empty() {
        return Err(ApiError::missing_param(call.command.name, "resourceids"));
    }
    let groups = call
        .params
        .map("tags")
        .map_err(|e| ApiError::malformed_map(e.to_string()))?;
    let mut tags: Vec<(CompactString, Option<String>)> = Vec::new();
    for group in groups {
        let field = |name: &str| {
            group
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.as_str())
        };
        let key = field("key").map(str::trim).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::invalid_param("Tag key can't be empty"));
        }
        let value = field("value").filter(|v| !v.is_empty());
        if values_required && value.is_none() {
            return Err(ApiError::invalid_param(format!(
                "Value for the key {key} is either null or empty"
            )));
        }
        if key.chars().count() > MAX_TAG_LENGTH
            || value.is_some_and(|v| v.chars().count() > MAX_TAG_LENGTH)
        {
            return Err(ApiError::invalid_param(format!(
                "Tag key and value may be at most {MAX_TAG_LENGTH} characters long: {key}"
            )));
        }
        if tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(ApiError::invalid_param(format!(
                "Tag key {key} is given more than once"
            )));
        }
        tags.push((key.into(), value.map(str::to_owned)));
    }
    if values_required && tags.is_empty() {
        return Err(ApiError::missing_param(call.command.name, "tags"));
    }
    Ok(TagRequest {
        resource_type,
        resource_ids,
        tags,
    })
}

fn caller_name(state: &State, caller: &Caller) -> CompactString {
    state
        .identity
        .account_name(caller.account_id)
        .unwrap_or_else(|| caller.account_id.to_string().into())
}

/// The CREATE_TAGS events `request` makes on `state`: one per owning account (a tag records
/// the resource's owner), or why it may not be made.
fn plan_create(
    state: &State,
    caller: &Caller,
    request: &TagRequest,
) -> Result<Vec<ResourceTags>, ApiError> {
    let kind = request.resource_type;
    let mut plans: Vec<ResourceTags> = Vec::new();
    for &id in &request.resource_ids {
        let (account_id, domain_id) = kind.owner(state, id).ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find resource by uuid {id} and type {}",
                kind.name()
            ))
        })?;
        if !caller.may_access(state, account_id, domain_id) {
            return Err(ApiError::permission_denied(format!(
                "Account '{}' doesn't have permissions to create tags for resource [uuid: {id}] ({}).",
                caller_name(state, caller),
                request
                    .tags
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let existing = state.compute.tags_of(id);
        if let Some((key, _)) = request
            .tags
            .iter()
            .find(|(key, _)| existing.iter().any(|t| t.key.eq_ignore_ascii_case(key)))
        {
            return Err(ApiError::invalid_param(format!(
                "tag {key} already on {} with id {id}",
                kind.name()
            )));
        }
        match plans
            .iter_mut()
            .find(|p| p.account_id == account_id && p.domain_id == domain_id)
        {
            Some(plan) => plan.resource_ids.push(id),
            None => plans.push(ResourceTags {
                resource_type: kind.name().into(),
                resource_ids: vec![id],
                tags: request
                    .tags
                    .iter()
                    .map(|(key, value)| KeyValue {
                        key: key.clone(),
                        value: value.clone().unwrap_or_default(),
                    })
                    .collect(),
                account_id,
                domain_id,
            }),
        }
    }
    Ok(plans)
}

/// The DELETE_TAGS events `request` makes on `state`: one per resource that has matching
/// tags, naming the tags exactly as recorded. Tags that are not there are ignored.
fn plan_delete(
    state: &State,
    caller: &Caller,
    request: &TagRequest,
) -> Result<Vec<ResourceTags>, ApiError> {
    let kind = request.resource_type;
    let mut plans = Vec::new();
    for &id in &request.resource_ids {
        let doomed: Vec<&TagRow> = state
            .compute
            .tags_of(id)
            .into_iter()
            .filter(|t| t.resource_type.eq_ignore_ascii_case(kind.name()))
            .filter(|t| {
                request.tags.is_empty()
                    || request.tags.iter().any(|(key, value)| {
                        t.key.eq_ignore_ascii_case(key)
                            && value
                                .as_ref()
                                .is_none_or(|v| t.value.eq_ignore_ascii_case(v))
                    })
            })
            .collect();
        let Some(first) = doomed.first() else {
            continue;
        };
        let (account_id, domain_id) = (first.account_id, first.domain_id);
        if account_id != caller.account_id && !caller.may_access(state, account_id, domain_id) {
            return Err(ApiError::permission_denied(format!(
                "Account '{}' doesn't have permissions to delete tags of resource [uuid: {id}].",
                caller_name(state, caller)
            )));
        }
        plans.push(ResourceTags {
            resource_type: kind.name().into(),
            resource_ids: vec![id],
            tags: doomed
                .iter()
                .map(|t| KeyValue {
                    key: t.key.clone(),
                    value: t.value.clone(),
                })
                .collect(),
            account_id,
            domain_id,
        });
    }
    Ok(plans)
}

fn describe(request: &TagRequest) -> String {
    format!(
        "{} {}",
        request.resource_type.name(),
        request
            .resource_ids
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

async fn create_tags(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let request = request(call, true)?;
    let caller = call.caller.clone();
    // Refuse at once what would fail; the job decides again on the state it appends at.
    plan_create(&ctx.models.read(), &caller, &request)?;
    Ok(Reply::Async(AsyncWork {
        instance_type: None,
        instance_id: None,
        event_type: "CREATE_TAGS",
        description: format!("creating tags on {}", describe(&request)),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(ALLOCATION, |state| {
                        Ok(plan_create(state, &caller, &request)?
                            .into_iter()
                            .map(|tags| job.event(EventBody::Tags(TagsEvent::Create(tags))))
                            .collect())
                    })
                    .await?;
                Ok(Reply::success())
            }
            .boxed()
        }),
    }))
}

async fn delete_tags(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let request = request(call, false)?;
    let caller = call.caller.clone();
    plan_delete(&ctx.models.read(), &caller, &request)?;
    Ok(Reply::Async(AsyncWork {
        instance_type: None,
        instance_id: None,
        event_type: "DELETE_TAGS",
        description: format!("deleting tags on {}", describe(&request)),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(ALLOCATION, |state| {
                        Ok(plan_delete(state, &caller, &request)?
                            .into_iter()
                            .map(|tags| job.event(EventBody::Tags(TagsEvent::Delete(tags))))
                            .collect())
                    })
                    .await?;
                Ok(Reply::success())
            }
            .boxed()
        }),
    }))
}

async fn list_tags(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let resource_type = call.str("resourcetype").map(str::trim);
    let resource_id = call.str("resourceid").map(str::trim);
    let key = call.str("key");
    let value = call.str("value");
    let keyword = call.str("keyword");
    let rows: Vec<&TagRow> = state
        .compute
        .tags
        .values()
        .filter(|t| {
            scope.admits(&state, Some(t.account_id), Some(t.domain_id))
                && resource_type.is_none_or(|r| t.resource_type.eq_ignore_ascii_case(r))
                && resource_id.is_none_or(|r| t.resource_id.to_string().eq_ignore_ascii_case(r))
                && key.is_none_or(|k| t.key.eq_ignore_ascii_case(k))
                && value.is_none_or(|v| t.value.eq_ignore_ascii_case(v))
                && keyword_matches(keyword, &[&t.key, &t.value])
                && resource_exists(&state, t)
        })
        .collect();
    let (count, items) = paging.apply(rows.into_iter().map(|t| tag_json(&state, t)).collect());
    Ok(Reply::List {
        key: "tag",
        count,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_match_case_insensitively_and_show_cloudstack_names() {
        assert_eq!(Tagged::find("uservm"), Some(Tagged::UserVm));
        assert_eq!(Tagged::find("iso").map(Tagged::name), Some("ISO"));
        assert_eq!(
            Tagged::find("VMSNAPSHOT").map(Tagged::name),
            Some("VMSnapshot")
        );
        assert_eq!(Tagged::parse("Bogus").unwrap_err().code, 431);
    }

    #[test]
    fn nothing_exists_in_an_empty_state() {
        let state = State::default();
        let row = TagRow {
            resource_type: "Volume".into(),
            resource_id: Uuid::new_v4(),
            key: "k".into(),
            value: "v".into(),
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
        };
        assert!(!resource_exists(&state, &row));
        assert_eq!(tags_json(&state, row.resource_id), json!([]));
    }
}
