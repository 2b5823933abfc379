//! What a client asks first: `listApis` (everything `cmk sync` needs, from the command table),
//! `listCapabilities`, `listHypervisors`, `getApiLimit`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::call::Call;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{self, CommandSpec, Inherits, Kind, ParamType as T, Roles, field, param};
use crate::response::{CLOUDSTACK_VERSION, Reply};

/// The discovery commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listApis",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "lists all available apis on the server, provided by the Api Discovery plugin",
        params: &[param("name", T::String, "API name")],
        inherits: Inherits::Nothing,
        response: &[
            field("name", "string", "the name of the api command"),
            field("description", "string", "description of the api"),
            field("isasync", "boolean", "true if api is asynchronous"),
            field(
                "since",
                "string",
                "version of CloudStack the api was introduced in",
            ),
            field("related", "string", "comma separated related apis"),
            field("params", "set", "the list params the api accepts"),
            field("response", "set", "api response fields"),
            field("type", "string", "response field type"),
        ],
        related: "",
        manual_clock_only: false,
        handler: handler!(list_apis),
    },
    CommandSpec {
        name: "listCapabilities",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists capabilities",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[
            field("cloudstackversion", "string", "version of the cloud stack"),
            field(
                "securitygroupsenabled",
                "boolean",
                "true if security groups support is enabled, false otherwise",
            ),
            field(
                "userpublictemplateenabled",
                "boolean",
                "true if user and domain admins can set templates to be shared, false otherwise",
            ),
            field(
                "apilimitinterval",
                "integer",
                "time interval (in seconds) to reset api count",
            ),
            field(
                "apilimitmax",
                "integer",
                "Max allowed number of api requests within the specified interval",
            ),
            field(
                "customdiskofferingminsize",
                "long",
                "minimum size that can be specified when create disk from disk offering with custom size",
            ),
            field(
                "customdiskofferingmaxsize",
                "long",
                "maximum size that can be specified when create disk from disk offering with custom size",
            ),
        ],
        related: "",
        manual_clock_only: false,
        handler: handler!(list_capabilities),
    },
    CommandSpec {
        name: "listHypervisors",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List hypervisors",
        params: &[param(
            "zoneid",
            T::Uuid,
            "the zone id for listing hypervisors.",
        )],
        inherits: Inherits::Nothing,
        response: &[field("name", "string", "Hypervisor name")],
        related: "",
        manual_clock_only: false,
        handler: handler!(list_hypervisors),
    },
    CommandSpec {
        name: "getApiLimit",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Get API limit count for the caller",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[
            field(
                "accountid",
                "string",
                "the account uuid of the api remaining count",
            ),
            field(
                "account",
                "string",
                "the account name of the api remaining count",
            ),
            field("apiIssued", "int", "number of api already issued"),
            field("apiAllowed", "int", "currently allowed number of apis"),
            field("expireAfter", "long", "seconds left to reset counters"),
        ],
        related: "",
        manual_clock_only: false,
        handler: handler!(get_api_limit),
    },
];

/// One command as `listApis` describes it. Every key `cmk` reads is always present with the
/// type it expects (spec/api.md "API discovery").
pub fn api_json(spec: &CommandSpec) -> Value {
    let params: Vec<Value> = spec
        .all_params()
        .map(|p| {
            json!({
                "name": p.name,
                "description": p.description,
                "type": p.ty.name(),
                "length": p.length,
                "required": p.required,
            })
        })
        .collect();
    let response: Vec<Value> = spec
        .response
        .iter()
        .map(|f| json!({ "name": f.name, "description": f.description, "type": f.ty }))
        .collect();
    let mut api = json!({
        "name": spec.name,
        "description": spec.description,
        "isasync": spec.is_async(),
        "since": "4.0.0",
        "params": params,
        "response": response,
    });
    if !spec.related.is_empty() {
        api["related"] = Value::String(spec.related.to_owned());
    }
    api
}

async fn list_apis(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.str("name");
    let apis: Vec<Value> = registry::commands()
        .filter(|c| c.roles.admits(call.caller.role))
        .filter(|c| !c.manual_clock_only || ctx.manual_clock.is_some())
        .filter(|c| name.is_none_or(|n| c.name == n))
        .map(api_json)
        .collect();
    if let Some(name) = name
        && apis.is_empty()
    {
        return Err(ApiError::invalid_param(format!(
            "Api Discovery plugin was unable to find an api by that name or process any apis: {name}"
        )));
    }
    Ok(Reply::List {
        key: "api",
        count: apis.len(),
        items: apis,
    })
}

async fn list_capabilities(ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let config = &state.configuration;
    Ok(Reply::Object {
        key: "capability",
        value: json!({
            "cloudstackversion": CLOUDSTACK_VERSION,
            "securitygroupsenabled": false,
            "userpublictemplateenabled": true,
            "supportELB": "false",
            "projectinviterequired": false,
            "allowusercreateprojects": false,
            "kvmsnapshotenabled": false,
            "dynamicrolesenabled": false,
            "apilimitinterval": config.global_i64("api.throttling.interval"),
            "apilimitmax": config.global_i64("api.throttling.max"),
            "customdiskofferingminsize": 1,
            "customdiskofferingmaxsize": 1024,
            "allowuserviewdestroyedvm": false,
            "allowuserexpungerecovervm": config.global_bool("allow.user.expunge.recover.vm"),
        }),
    })
}

async fn list_hypervisors(_ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::List {
        key: "hypervisor",
        count: 1,
        items: vec![json!({ "name": "Simulator" })],
    })
}

async fn get_api_limit(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let (interval, max, account) = {
        let state = ctx.models.read();
        (
            state.configuration.global_i64("api.throttling.interval"),
            state.configuration.global_i64("api.throttling.max"),
            state.identity.account_name(call.caller.account_id),
        )
    };
    let usage = ctx.throttle.usage(
        call.caller.account_id,
        Duration::from_secs(interval.max(1) as u64),
        max.max(1) as u64,
    );
    Ok(Reply::Object {
        key: "apilimit",
        value: json!({
            "accountid": call.caller.account_id,
            "account": account,
            "apiIssued": usage.issued,
            "apiAllowed": usage.allowed,
            "expireAfter": usage.expire_after_ms / 1000,
        }),
    })
}
