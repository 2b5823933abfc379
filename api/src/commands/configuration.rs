//! Settings (`listConfigurations`, `updateConfiguration`): the catalogue in
//! [`projections::configuration::SETTINGS`] with the values set globally or per account,
//! domain or zone.
//!
//! Changes are decided on the `configuration` stream. They take effect at once: the dispatcher
//! reads `default.page.size` and `api.throttling.*` from the read model on every request, and
//! [`Ctx::decide`] returns only once the read model includes the change.

use engine::event::infrastructure::{ConfigScope, ConfigurationChanged};
use engine::event::{ConfigurationEvent, EventBody};
use projections::State;
use projections::configuration::{Configuration, SETTINGS, Setting, setting};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, Paging, keyword_matches};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Role, Roles, field,
    param, required,
};
use crate::response::Reply;

/// The stream that orders configuration changes, so each records the value it replaced.
pub const CONFIGURATION: &str = "configuration";

const CONFIGURATION_FIELDS: &[ResponseField] = &[
    field("name", "string", "the name of the configuration"),
    field("value", "string", "the value of the configuration"),
    field(
        "defaultvalue",
        "string",
        "the default value of the configuration",
    ),
    field("category", "string", "the category of the configuration"),
    field(
        "description",
        "string",
        "the description of the configuration",
    ),
    field("type", "string", "the type of the configuration value"),
    field(
        "scope",
        "string",
        "scope(zone/cluster/pool/account) of the parameter that needs to be updated",
    ),
    field(
        "isdynamic",
        "boolean",
        "true if the configuration is dynamic",
    ),
    field("component", "string", "the component of the configuration"),
];

/// The scope parameters both commands take. Clusters, storage pools and image stores do not
/// exist in Ledgerstack; the parameters are accepted so CloudStack clients' calls still parse.
const SCOPE_PARAMS: [ParamSpec; 6] = [
    param(
        "zoneid",
        T::Uuid,
        "the ID of the Zone to update the parameter value for corresponding zone",
    ),
    param(
        "clusterid",
        T::Uuid,
        "the ID of the Cluster to update the parameter value for corresponding cluster",
    ),
    param(
        "storageid",
        T::Uuid,
        "the ID of the Storage pool to update the parameter value for corresponding storage pool",
    ),
    param(
        "accountid",
        T::Uuid,
        "the ID of the Account to update the parameter value for corresponding account",
    ),
    param(
        "domainid",
        T::Uuid,
        "the ID of the Domain to update the parameter value for corresponding domain",
    ),
    param(
        "imagestoreuuid",
        T::Uuid,
        "the ID of the Image Store to update the parameter value for corresponding image store",
    ),
];

/// The configuration commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listConfigurations",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Lists all configurations.",
        params: &[
            param("category", T::String, "lists configurations by category"),
            param("name", T::String, "lists configuration by name"),
            SCOPE_PARAMS[0],
            SCOPE_PARAMS[1],
            SCOPE_PARAMS[2],
            SCOPE_PARAMS[3],
            SCOPE_PARAMS[4],
            SCOPE_PARAMS[5],
        ],
        inherits: Inherits::Paging,
        response: CONFIGURATION_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_configurations),
    },
    CommandSpec {
        name: "updateConfiguration",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Updates a configuration.",
        params: &[
            required("name", T::String, "the name of the configuration"),
            param(
                "value",
                T::String,
                "the value of the configuration; empty to reset it to the default",
            ),
            SCOPE_PARAMS[0],
            SCOPE_PARAMS[1],
            SCOPE_PARAMS[2],
            SCOPE_PARAMS[3],
            SCOPE_PARAMS[4],
            SCOPE_PARAMS[5],
        ],
        inherits: Inherits::Nothing,
        response: CONFIGURATION_FIELDS,
        related: "listConfigurations",
        manual_clock_only: false,
        handler: handler!(update_configuration),
    },
];

/// Where a value is read or set: everywhere, or one account, domain or zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Global, account, domain or zone.
    pub kind: ConfigScope,
    /// The account, domain or zone; `None` for global.
    pub id: Option<Uuid>,
}

impl Scope {
    /// The whole installation.
    pub const GLOBAL: Scope = Scope {
        kind: ConfigScope::Global,
        id: None,
    };

    /// How `listConfigurations` names the scope.
    fn name(self) -> &'static str {
        match self.kind {
            ConfigScope::Global => "global",
            ConfigScope::Zone => "zone",
            ConfigScope::Cluster => "cluster",
            ConfigScope::Domain => "domain",
            ConfigScope::Account => "account",
        }
    }

    /// "per account", for messages.
    fn per(self) -> &'static str {
        match self.kind {
            ConfigScope::Global => "globally",
            ConfigScope::Zone => "per zone",
            ConfigScope::Cluster => "per cluster",
            ConfigScope::Domain => "per domain",
            ConfigScope::Account => "per account",
        }
    }
}

/// True when `setting` may be set (and listed) at `scope`.
fn allows(setting: &Setting, scope: Scope) -> bool {
    scope.kind == ConfigScope::Global || setting.scopes.contains(&scope.kind)
}

/// The value of `setting` in effect at `scope`: the value set there, else the value set
/// globally, else the default. CloudStack only falls back from an account to its domain when
/// `enable.account.settings.for.domain` is on, which is off by default; Ledgerstack behaves as
/// that default does.
pub fn effective_value(config: &Configuration, setting: &Setting, scope: Scope) -> String {
    let scoped = (scope.kind != ConfigScope::Global)
        .then(|| config.value_at(setting.name, scope.kind, scope.id))
        .flatten();
    scoped
        .or_else(|| config.value_at(setting.name, ConfigScope::Global, None))
        .unwrap_or(setting.default)
        .to_owned()
}

/// A setting as `listConfigurations` shows it at `scope`.
pub fn configuration_json(config: &Configuration, setting: &Setting, scope: Scope) -> Value {
    json!({
        "name": setting.name,
        "value": effective_value(config, setting, scope),
        "defaultvalue": setting.default,
        "category": setting.category,
        "description": setting.description,
        "type": setting.kind.type_name(),
        "scope": scope.name(),
        "isdynamic": true,
        "component": "management-server",
    })
}

/// The scope named by `zoneid`, `accountid` or `domainid` (at most one), checked: it must exist
/// and be the caller's to see. `None` when no scope parameter is given.
fn requested_scope(state: &State, call: &Call) -> Result<Option<Scope>, ApiError> {
    let zone = call.uuid("zoneid")?;
    let account = call.uuid("accountid")?;
    let domain = call.uuid("domainid")?;
    let others = ["clusterid", "storageid", "imagestoreuuid"]
        .iter()
        .filter(|p| call.str(p).is_some())
        .count();
    let given = [zone, account, domain].iter().flatten().count() + others;
    if given > 1 {
        return Err(ApiError::invalid_param(
            "cannot handle multiple IDs, provide only one ID corresponding to the scope",
        ));
    }
    let caller = &call.caller;
    if let Some(id) = zone {
        if state.catalog.zones.get(&id).is_none() {
            return Err(ApiError::invalid_param(format!(
                "unable to find zone by id {id}"
            )));
        }
        if !caller.is_root_admin() {
            return Err(ApiError::permission_denied(
                "Domain admins can use only account or domain scoped settings",
            ));
        }
        return Ok(Some(Scope {
            kind: ConfigScope::Zone,
            id: Some(id),
        }));
    }
    if let Some(id) = account {
        let row =
            state.identity.accounts.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("unable to find account by id {id}"))
            })?;
        if !caller.may_access(state, id, row.facts.domain_id) {
            return Err(ApiError::permission_denied(format!(
                "Caller cannot access account {}",
                row.facts.name
            )));
        }
        return Ok(Some(Scope {
            kind: ConfigScope::Account,
            id: Some(id),
        }));
    }
    if let Some(id) = domain {
        let row =
            state.identity.domains.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("unable to find domain by id {id}"))
            })?;
        if !caller.may_access_domain(state, id) {
            return Err(ApiError::permission_denied(format!(
                "Caller has no access to domain {}",
                row.facts.path
            )));
        }
        return Ok(Some(Scope {
            kind: ConfigScope::Domain,
            id: Some(id),
        }));
    }
    Ok(None)
}

async fn list_configurations(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = match requested_scope(&state, call)? {
        Some(scope) => scope,
        // Since 4.17 CloudStack lets domain admins see settings, but only those they may set
        // for their accounts and domains.
        None if call.caller.role == Role::DomainAdmin => {
            return Err(ApiError::permission_denied(
                "Domain admins can list only account or domain scoped settings: pass accountid or domainid",
            ));
        }
        None => Scope::GLOBAL,
    };
    let category = call.str("category");
    let name = call.str("name").map(str::to_lowercase);
    let keyword = call.str("keyword");
    let mut settings: Vec<&Setting> = SETTINGS
        .iter()
        .filter(|s| {
            allows(s, scope)
                && category.is_none_or(|c| s.category.eq_ignore_ascii_case(c))
                // CloudStack filters with `name LIKE %x%`.
                && name.as_deref().is_none_or(|n| s.name.contains(n))
                && keyword_matches(keyword, &[s.name, s.description, s.category])
        })
        .collect();
    settings.sort_by_key(|s| s.name);
    let items = settings
        .into_iter()
        .map(|s| configuration_json(&state.configuration, s, scope))
        .collect();
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: "configuration",
        count,
        items,
    })
}

/// Where `updateConfiguration` sets the value. Like CloudStack, a domain admin who names no
/// scope sets it for their own domain.
fn update_scope(state: &State, call: &Call, setting: &Setting) -> Result<Scope, ApiError> {
    for (param, what) in [
        ("clusterid", "cluster"),
        ("storageid", "storage pool"),
        ("imagestoreuuid", "image store"),
    ] {
        if let Some(id) = call.str(param) {
            requested_scope(state, call)?;
            return Err(ApiError::invalid_param(format!(
                "unable to find {what} by id {id}"
            )));
        }
    }
    let scope = match requested_scope(state, call)? {
        Some(scope) => scope,
        None if call.caller.role == Role::DomainAdmin => {
            let own = Scope {
                kind: ConfigScope::Domain,
                id: Some(call.caller.domain_id),
            };
            if !allows(setting, own) {
                return Err(ApiError::permission_denied(format!(
                    "Domain admins can change only account or domain scoped settings, and {} is global",
                    setting.name
                )));
            }
            own
        }
        None => Scope::GLOBAL,
    };
    if !allows(setting, scope) {
        return Err(ApiError::invalid_param(format!(
            "Invalid scope id provided for the parameter {}: it cannot be set {}",
            setting.name,
            scope.per()
        )));
    }
    Ok(scope)
}

/// The new value, `None` to reset to the default (an absent, empty or `null` value, as
/// CloudStack treats an empty global value).
fn new_value(call: &Call, setting: &Setting) -> Result<Option<String>, ApiError> {
    let Some(value) = call.str("value").map(str::trim) else {
        return Ok(None);
    };
    if value.is_empty() || value == "null" {
        return Ok(None);
    }
    setting.kind.validate(value).map_err(|why| {
        ApiError::invalid_param(format!("Invalid value for {}: {why}", setting.name))
    })?;
    Ok(Some(value.to_owned()))
}

async fn update_configuration(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim();
    let setting = setting(name).ok_or_else(|| {
        ApiError::invalid_param(format!("Config parameter with name {name} doesn't exist"))
    })?;
    let value = new_value(call, setting)?;
    let scope = update_scope(&ctx.models.read(), call, setting)?;
    ctx.decide(CONFIGURATION, |state| {
        // Checked again on the state the append is expected at: the account, domain or zone
        // may have gone since.
        update_scope(state, call, setting)?;
        let previous = state
            .configuration
            .value_at(setting.name, scope.kind, scope.id)
            .map(str::to_owned);
        Ok(vec![call.event(EventBody::Configuration(
            ConfigurationEvent::ValueEdit(ConfigurationChanged {
                name: setting.name.into(),
                value: value.clone(),
                previous_value: previous,
                scope: scope.kind,
                scope_id: scope.id,
            }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    Ok(Reply::Object {
        key: "configuration",
        value: configuration_json(&state.configuration, setting, scope),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_show_their_default_at_every_scope() {
        let config = Configuration::default();
        let page = setting("default.page.size").unwrap();
        let json = configuration_json(&config, page, Scope::GLOBAL);
        assert_eq!(json["value"], "500");
        assert_eq!(json["defaultvalue"], "500");
        assert_eq!(json["type"], "Number");
        assert_eq!(json["scope"], "global");
        assert_eq!(json["isdynamic"], true);
        let account = Scope {
            kind: ConfigScope::Account,
            id: Some(Uuid::nil()),
        };
        let tz = setting("usage.aggregation.timezone").unwrap();
        assert_eq!(configuration_json(&config, tz, account)["scope"], "account");
        assert_eq!(effective_value(&config, tz, account), "GMT");
    }

    #[test]
    fn global_only_settings_refuse_other_scopes() {
        let page = setting("default.page.size").unwrap();
        let tz = setting("usage.aggregation.timezone").unwrap();
        let account = Scope {
            kind: ConfigScope::Account,
            id: Some(Uuid::nil()),
        };
        assert!(allows(page, Scope::GLOBAL));
        assert!(!allows(page, account));
        assert!(allows(tz, account));
        assert_eq!(account.per(), "per account");
    }
}
