//! Users and their API keys (`createUser`, `listUsers`, `updateUser`, `disableUser`,
//! `enableUser`, `deleteUser`, `registerUserKeys`, `getUserKeys`).

use engine::event::identity::{UserCreated, UserFacts, UserKeysRegistered, UserRef, UserUpdated};
use engine::event::{EventBody, NewEvent, RegisterEvent, UserEvent};
use engine::secrets;
use futures::FutureExt;
use projections::State;
use projections::identity::UserRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::commands::domains::IDENTITY;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::AsyncWork;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

const USER_FIELDS: &[ResponseField] = &[
    field("id", "string", "the user ID"),
    field("username", "string", "the user name"),
    field("firstname", "string", "the user firstname"),
    field("lastname", "string", "the user lastname"),
    field("email", "string", "the user email address"),
    field(
        "created",
        "date",
        "the date and time the user account was created",
    ),
    field("state", "string", "the user state"),
    field("account", "string", "the account name of the user"),
    field("accountid", "string", "the account ID of the user"),
    field("accounttype", "integer", "the account type of the user"),
    field("roletype", "string", "the type of the role"),
    field("domainid", "string", "the domain ID of the user"),
    field("domain", "string", "the domain name of the user"),
    field("timezone", "string", "the timezone user was created in"),
    field("apikey", "string", "the api key of the user"),
    field(
        "isdefault",
        "boolean",
        "true if user is default, false otherwise",
    ),
    field(
        "usersource",
        "string",
        "the source type of the user in lowercase, such as native, ldap, saml2",
    ),
];

const KEY_FIELDS: &[ResponseField] = &[
    field("apikey", "string", "the api key of the registered user"),
    field(
        "secretkey",
        "string",
        "the secret key of the registered user",
    ),
];

const USER_ID: &[crate::registry::ParamSpec] = &[required("id", T::Uuid, "the ID of the user")];

/// The user commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createUser",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Creates a user for an account that already exists",
        params: &[
            required(
                "account",
                T::String,
                "Creates the user under the specified account. If no account is specified, the username will be used as the account name.",
            ),
            required("username", T::String, "Unique username."),
            required("password", T::String, "Clear text password"),
            required("firstname", T::String, "firstname"),
            required("lastname", T::String, "lastname"),
            param("email", T::String, "email"),
            param(
                "domainid",
                T::Uuid,
                "Creates the user under the specified domain. Has to be accompanied with the account parameter",
            ),
            param(
                "timezone",
                T::String,
                "Specifies a timezone for this command.",
            ),
            param(
                "userid",
                T::Uuid,
                "User UUID, required for adding account from external provisioning system",
            ),
        ],
        inherits: Inherits::Nothing,
        response: USER_FIELDS,
        related: "listUsers",
        manual_clock_only: false,
        handler: handler!(create_user),
    },
    CommandSpec {
        name: "listUsers",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists user accounts",
        params: &[
            param("id", T::Uuid, "List user by ID."),
            param("username", T::String, "List user by the username"),
            param(
                "accounttype",
                T::Integer,
                "List users by account type. Valid types include admin, domain-admin, read-only-admin, or user.",
            ),
            param(
                "state",
                T::String,
                "List users by state of the user account.",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: USER_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_users),
    },
    CommandSpec {
        name: "updateUser",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Updates a user account",
        params: &[
            required("id", T::Uuid, "User uuid"),
            param("username", T::String, "Unique username"),
            param("firstname", T::String, "first name"),
            param("lastname", T::String, "last name"),
            param("email", T::String, "email"),
            param(
                "password",
                T::String,
                "Clear text password (default hashed to SHA256SALT).",
            ),
            param(
                "currentpassword",
                T::String,
                "Current password that was being used by the user. You must inform the current password when updating the password.",
            ),
            param(
                "timezone",
                T::String,
                "Specifies a timezone for this command.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: USER_FIELDS,
        related: "listUsers",
        manual_clock_only: false,
        handler: handler!(update_user),
    },
    CommandSpec {
        name: "disableUser",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Disables a user account",
        params: &[required("id", T::Uuid, "Disables user by user ID.")],
        inherits: Inherits::Nothing,
        response: USER_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(disable_user),
    },
    CommandSpec {
        name: "enableUser",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Enables a user account",
        params: &[required("id", T::Uuid, "Enables user by user ID.")],
        inherits: Inherits::Nothing,
        response: USER_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(enable_user),
    },
    CommandSpec {
        name: "deleteUser",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Deletes a user for an account",
        params: &[required("id", T::Uuid, "id of the user to be deleted")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_user),
    },
    CommandSpec {
        name: "registerUserKeys",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "This command allows a user to register for the developer API, returning a secret key and an API key. This request is made through the integration API port, so it is a privileged command and must be made on behalf of a user. It is up to the implementer just how the username and password are entered, and then how that translates to an integration API request. Both secret key and API key should be returned to the user",
        params: USER_ID,
        inherits: Inherits::Nothing,
        response: KEY_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(register_user_keys),
    },
    CommandSpec {
        name: "getUserKeys",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "This command allows the user to query the seceret and API keys for the account",
        params: USER_ID,
        inherits: Inherits::Nothing,
        response: KEY_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(get_user_keys),
    },
];

/// Hashes a password off the async threads: argon2 is deliberately slow.
pub async fn password_hash(password: &str) -> Result<String, ApiError> {
    if password.is_empty() {
        return Err(ApiError::invalid_param("Password can't be empty"));
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(format!("hashing the password failed: {e}")))
}

/// A user as CloudStack shows it (never with the secret key: that takes `getUserKeys`).
pub fn user_json(state: &State, row: &UserRow) -> Value {
    let facts = &row.facts;
    let account = state.identity.accounts.get(&facts.account_id);
    let domain = state.identity.domains.get(&facts.domain_id);
    json!({
        "id": facts.user_id,
        "username": facts.username,
        "firstname": facts.first_name,
        "lastname": facts.last_name,
        "email": facts.email,
        "created": date(row.created),
        "state": row.state.as_str(),
        "account": account.map(|a| a.facts.name.clone()),
        "accountid": facts.account_id,
        "accounttype": account.map(|a| a.facts.account_type.code()),
        "roletype": account.map(|a| match a.facts.account_type.code() { 1 | 4 => "Admin", 2 => "DomainAdmin", _ => "User" }),
        "domainid": facts.domain_id,
        "domain": domain.map(|d| d.facts.name.clone()),
        "timezone": facts.timezone,
        "apikey": row.api_key,
        "isdefault": facts.username == "admin" && account.is_some_and(|a| a.facts.account_type.code() == 1),
        "usersource": "native",
    })
}

fn user_reply(ctx: &Ctx, id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let row =
        state.identity.users.get(&id).ok_or_else(|| {
            ApiError::internal(format!("user {id} vanished after it was written"))
        })?;
    Ok(Reply::Object {
        key: "user",
        value: user_json(&state, row),
    })
}

/// The user `id`, if the caller may see it: admins within their scope, users themselves.
fn accessible_user<'s>(state: &'s State, call: &Call, id: Uuid) -> Result<&'s UserRow, ApiError> {
    let user = state
        .identity
        .users
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find user by id {id}")))?;
    let allowed = match call.caller.role {
        Role::User => user.facts.user_id == call.caller.user_id,
        _ => call
            .caller
            .may_access(state, user.facts.account_id, user.facts.domain_id),
    };
    if !allowed {
        return Err(ApiError::permission_denied(format!(
            "Caller cannot access user {}",
            user.facts.username
        )));
    }
    Ok(user)
}

fn user_ref(row: &UserRow) -> UserRef {
    UserRef {
        user_id: row.facts.user_id,
        username: row.facts.username.clone(),
        account_id: row.facts.account_id,
        domain_id: row.facts.domain_id,
    }
}

fn check_timezone(call: &Call) -> Result<(), ApiError> {
    match call.str("timezone") {
        Some(tz) if tz.parse::<chrono_tz::Tz>().is_err() => Err(ApiError::invalid_param(format!(
            "Invalid timezone {tz}: use an IANA name such as Europe/Paris"
        ))),
        _ => Ok(()),
    }
}

async fn create_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    check_timezone(call)?;
    let username = call.required("username")?.to_owned();
    let password = password_hash(call.required("password")?).await?;
    let user_id = call.uuid("userid")?.unwrap_or_else(Uuid::new_v4);
    ctx.decide(IDENTITY, |state| {
        let domain_id = call.uuid("domainid")?.unwrap_or(call.caller.domain_id);
        let account_name = call.required("account")?;
        let account = state
            .identity
            .account_by_name(domain_id, account_name)
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to find account {account_name} in domain {domain_id}"
                ))
            })?;
        if !call
            .caller
            .may_access(state, account.facts.account_id, domain_id)
        {
            return Err(ApiError::permission_denied(format!(
                "Caller cannot add users to account {account_name}"
            )));
        }
        if state.identity.user_by_name(domain_id, &username).is_some() {
            return Err(ApiError::invalid_param(format!(
                "The user {username} already exists in domain {domain_id}"
            )));
        }
        if state.identity.users.get(&user_id).is_some() {
            return Err(ApiError::invalid_param(format!(
                "A user with id {user_id} already exists"
            )));
        }
        let user = UserFacts {
            user_id,
            username: username.as_str().into(),
            account_id: account.facts.account_id,
            domain_id,
            first_name: call.required("firstname")?.into(),
            last_name: call.required("lastname")?.into(),
            email: call.str("email").map(Into::into),
            timezone: call.str("timezone").map(Into::into),
        };
        Ok(vec![call.event(EventBody::User(UserEvent::Create(
            UserCreated {
                user,
                password_hash: Some(password.clone()),
            },
        )))])
    })
    .await?;
    user_reply(ctx, user_id)
}

async fn list_users(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, true)?;
    let id = call.uuid("id")?;
    let username = call.str("username");
    let account_type = call.int("accounttype")?;
    let wanted_state = call.str("state");
    let keyword = call.str("keyword");
    let rows: Vec<Value> = state
        .identity
        .users
        .values()
        .filter(|u| {
            let f = &u.facts;
            let account = state.identity.accounts.get(&f.account_id);
            scope.admits(&state, Some(f.account_id), Some(f.domain_id))
                && id.is_none_or(|id| f.user_id == id)
                && username.is_none_or(|n| f.username == n)
                && account_type.is_none_or(|t| {
                    account.is_some_and(|a| i64::from(a.facts.account_type.code()) == t)
                })
                && wanted_state.is_none_or(|s| u.state.as_str().eq_ignore_ascii_case(s))
                && keyword_matches(keyword, &[&f.username, &f.first_name, &f.last_name])
        })
        .map(|u| user_json(&state, u))
        .collect();
    let (count, items) = paging.apply(rows);
    Ok(Reply::List {
        key: "user",
        count,
        items,
    })
}

async fn update_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    check_timezone(call)?;
    let id = call.required_uuid("id")?;
    let new_hash = match call.str("password") {
        Some(password) => {
            let current_hash = {
                let state = ctx.models.read();
                accessible_user(&state, call, id)?.password_hash.clone()
            };
            // A user changing their own password proves they know the old one, as CloudStack
            // asks; admins resetting someone else's do not.
            if call.caller.user_id == id && call.caller.role == Role::User {
                let current = call.str("currentpassword").ok_or_else(|| {
                    ApiError::invalid_param(
                        "Current password is required when updating the password",
                    )
                })?;
                let current = current.to_owned();
                let hash = current_hash.unwrap_or_default();
                let ok =
                    tokio::task::spawn_blocking(move || secrets::verify_password(&current, &hash))
                        .await
                        .unwrap_or(false);
                if !ok {
                    return Err(ApiError::invalid_param("Current password is incorrect"));
                }
            }
            Some(password_hash(password).await?)
        }
        None => None,
    };
    ctx.decide(IDENTITY, |state| {
        let row = accessible_user(state, call, id)?;
        let mut user = row.facts.clone();
        if let Some(username) = call.str("username") {
            if let Some(other) = state.identity.user_by_name(user.domain_id, username)
                && other.facts.user_id != id
            {
                return Err(ApiError::invalid_param(format!(
                    "The user {username} already exists in the domain"
                )));
            }
            user.username = username.into();
        }
        if let Some(v) = call.str("firstname") {
            user.first_name = v.into();
        }
        if let Some(v) = call.str("lastname") {
            user.last_name = v.into();
        }
        if let Some(v) = call.str("email") {
            user.email = Some(v.into());
        }
        if let Some(v) = call.str("timezone") {
            user.timezone = Some(v.into());
        }
        Ok(vec![call.event(EventBody::User(UserEvent::Update(
            UserUpdated {
                user,
                password_hash: new_hash.clone(),
            },
        )))])
    })
    .await?;
    user_reply(ctx, id)
}

fn state_change(
    call: &Call,
    id: Uuid,
    state: &State,
    body: fn(UserRef) -> UserEvent,
) -> Result<Vec<NewEvent>, ApiError> {
    let row = accessible_user(state, call, id)?;
    if id == call.caller.user_id {
        return Err(ApiError::invalid_param(
            "A user can't change the state of their own user",
        ));
    }
    Ok(vec![call.event(EventBody::User(body(user_ref(row))))])
}

async fn enable_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(IDENTITY, |state| {
        state_change(call, id, state, UserEvent::Enable)
    })
    .await?;
    user_reply(ctx, id)
}

async fn delete_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(IDENTITY, |state| {
        state_change(call, id, state, UserEvent::Delete)
    })
    .await?;
    ctx.sessions.remove_user(id);
    ctx.forget_secrets();
    Ok(Reply::success())
}

async fn disable_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let username = {
        let state = ctx.models.read();
        state_change(call, id, &state, UserEvent::Disable)?;
        state
            .identity
            .users
            .get(&id)
            .map(|u| u.facts.username.clone())
            .unwrap_or_default()
    };
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("User"),
        instance_id: Some(id),
        event_type: "USER.DISABLE",
        description: format!("disabling user {username}"),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(IDENTITY, |state| {
                        let row = state.identity.users.get(&id).ok_or_else(|| {
                            ApiError::invalid_param(format!("Unable to find user by id {id}"))
                        })?;
                        Ok(vec![
                            job.event(EventBody::User(UserEvent::Disable(user_ref(row)))),
                        ])
                    })
                    .await?;
                job.ctx.sessions.remove_user(id);
                job.ctx.forget_secrets();
                user_reply(&job.ctx, id)
            }
            .boxed()
        }),
    }))
}

/// Registers a fresh key pair for `user_id` (also used by the first-run bootstrap): the secret
/// goes into the log only sealed with the master key, bound to the user's id.
pub fn key_registration(ctx: &Ctx, row: &UserRow, api_key: String, secret: &str) -> EventBody {
    EventBody::Register(RegisterEvent::UserKey(UserKeysRegistered {
        user_id: row.facts.user_id,
        account_id: row.facts.account_id,
        domain_id: row.facts.domain_id,
        api_key,
        secret_key: ctx
            .keys
            .seal(secret.as_bytes(), row.facts.user_id.as_bytes()),
    }))
}

async fn register_user_keys(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let (api_key, secret) = secrets::generate_api_key_pair();
    ctx.decide(IDENTITY, |state| {
        let row = accessible_user(state, call, id)?;
        Ok(vec![call.event(key_registration(
            ctx,
            row,
            api_key.clone(),
            &secret,
        ))])
    })
    .await?;
    ctx.forget_secrets();
    Ok(Reply::Object {
        key: "userkeys",
        value: json!({ "apikey": api_key, "secretkey": secret }),
    })
}

async fn get_user_keys(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let api_key = {
        let state = ctx.models.read();
        accessible_user(&state, call, id)?.api_key.clone()
    };
    let Some(api_key) = api_key else {
        return Ok(Reply::Object {
            key: "userkeys",
            value: json!({}),
        });
    };
    let (_, secret) = ctx.secret_for(&api_key).ok_or_else(|| {
        ApiError::internal("the user's secret key cannot be opened with this server's master key")
    })?;
    Ok(Reply::Object {
        key: "userkeys",
        value: json!({ "apikey": api_key, "secretkey": secret }),
    })
}
