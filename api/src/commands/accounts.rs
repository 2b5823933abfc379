//! Accounts: who owns resources and is billed (`createAccount`, `listAccounts`,
//! `updateAccount`, `disableAccount`, `enableAccount`, `lockAccount`, `deleteAccount`).

use compact_str::CompactString;
use engine::event::identity::{
    AccountCreated, AccountDisabled, AccountFacts, AccountRef, AccountType, AccountUpdated,
    UserCreated, UserFacts,
};
use engine::event::{AccountEvent, EventBody, UserEvent};
use futures::FutureExt;
use projections::State;
use projections::identity::AccountRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::commands::domains::{IDENTITY, accessible_domain};
use crate::commands::users::{password_hash, user_json};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::AsyncWork;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

const ACCOUNT_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the account"),
    field("name", "string", "the name of the account"),
    field(
        "accounttype",
        "integer",
        "account type (admin, domain-admin, user)",
    ),
    field(
        "roletype",
        "string",
        "the type of the role (Admin, ResourceAdmin, DomainAdmin, User)",
    ),
    field(
        "domainid",
        "string",
        "id of the Domain the account belongs to",
    ),
    field(
        "domain",
        "string",
        "name of the Domain the account belongs to",
    ),
    field(
        "domainpath",
        "string",
        "path of the Domain the account belongs to",
    ),
    field("state", "string", "the state of the account"),
    field("networkdomain", "string", "the network domain"),
    field("created", "date", "the date when this account was created"),
    field(
        "isdefault",
        "boolean",
        "true if account is default, false otherwise",
    ),
    field("user", "list", "the list of users associated with account"),
];

const SELECT_ACCOUNT: &[crate::registry::ParamSpec] = &[
    param("id", T::Uuid, "Account id"),
    param("account", T::String, "the account name (with domainid)"),
    param(
        "domainid",
        T::Uuid,
        "the domain ID of the account (with account)",
    ),
];

/// The account commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createAccount",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Creates an account",
        params: &[
            required("username", T::String, "Unique username."),
            required(
                "password",
                T::String,
                "Clear text password (Default hashed to SHA256SALT). If you wish to use any other hashing algorithm, you would need to write a custom authentication adapter See Docs section.",
            ),
            required("email", T::String, "email"),
            required("firstname", T::String, "firstname"),
            required("lastname", T::String, "lastname"),
            param(
                "account",
                T::String,
                "Name of the account to be created. The user will be added to this newly created account. If no account is specified, the username will be used as the account name.",
            ),
            param(
                "accounttype",
                T::Integer,
                "Type of the account.  Specify 0 for user, 1 for root admin, and 2 for domain admin",
            ),
            param(
                "domainid",
                T::Uuid,
                "Creates the user under the specified domain.",
            ),
            param(
                "networkdomain",
                T::String,
                "Network domain for the account's networks",
            ),
            param(
                "timezone",
                T::String,
                "Specifies a timezone for this command. For more information on the timezone parameter, see Time Zone Format.",
            ),
            param(
                "accountid",
                T::Uuid,
                "Account UUID, required for adding account from external provisioning system",
            ),
            param(
                "userid",
                T::Uuid,
                "User UUID, required for adding account from external provisioning system",
            ),
            param("accountdetails", T::Map, "details for the account"),
        ],
        inherits: Inherits::Nothing,
        response: ACCOUNT_FIELDS,
        related: "listAccounts",
        manual_clock_only: false,
        handler: handler!(create_account),
    },
    CommandSpec {
        name: "listAccounts",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists accounts and provides detailed account information for listed accounts",
        params: &[
            param("id", T::Uuid, "list account by account ID"),
            param("name", T::String, "list account by account name"),
            param(
                "accounttype",
                T::Integer,
                "list accounts by account type. Valid account types are 1 (admin), 2 (domain-admin), and 0 (user).",
            ),
            param(
                "state",
                T::String,
                "list accounts by state. Valid states are enabled, disabled, and locked.",
            ),
            param(
                "iscleanuprequired",
                T::Boolean,
                "list accounts by cleanuprequired attribute (values are true or false)",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: ACCOUNT_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_accounts),
    },
    CommandSpec {
        name: "updateAccount",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Updates account information for the authenticated user",
        params: &[
            param("id", T::Uuid, "Account id"),
            param("account", T::String, "the current account name"),
            param(
                "domainid",
                T::Uuid,
                "the ID of the domain where the account exists",
            ),
            param("newname", T::String, "new name for the account"),
            param(
                "networkdomain",
                T::String,
                "Network domain for the account's networks; empty string will update domainName with NULL value",
            ),
            param(
                "accountdetails",
                T::Map,
                "details for the account used to store specific parameters",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ACCOUNT_FIELDS,
        related: "listAccounts",
        manual_clock_only: false,
        handler: handler!(update_account),
    },
    CommandSpec {
        name: "disableAccount",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Disables an account",
        params: &[
            param("id", T::Uuid, "Account id"),
            param("account", T::String, "Disables specified account."),
            param(
                "domainid",
                T::Uuid,
                "Disables specified account in this domain.",
            ),
            required(
                "lock",
                T::Boolean,
                "If true, only lock the account; else disable the account",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ACCOUNT_FIELDS,
        related: "listAccounts",
        manual_clock_only: false,
        handler: handler!(disable_account),
    },
    CommandSpec {
        name: "enableAccount",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Enables an account",
        params: SELECT_ACCOUNT,
        inherits: Inherits::Nothing,
        response: ACCOUNT_FIELDS,
        related: "listAccounts",
        manual_clock_only: false,
        handler: handler!(enable_account),
    },
    CommandSpec {
        name: "lockAccount",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "This deprecated function used to locks an account. Look for the API DisableAccount instead",
        params: &[
            required("account", T::String, "Locks the specified account."),
            required(
                "domainid",
                T::Uuid,
                "Locks the specified account on this domain.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ACCOUNT_FIELDS,
        related: "disableAccount",
        manual_clock_only: false,
        handler: handler!(lock_account),
    },
    CommandSpec {
        name: "deleteAccount",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Deletes a account, and all users associated with this account",
        params: &[required("id", T::Uuid, "Account id")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_account),
    },
];

fn role_type(account_type: AccountType) -> &'static str {
    match account_type {
        AccountType::RootAdmin => "Admin",
        AccountType::DomainAdmin => "DomainAdmin",
        AccountType::ReadOnlyAdmin => "Admin",
        AccountType::User | AccountType::Project => "User",
    }
}

/// An account as CloudStack shows it, with its users.
pub fn account_json(state: &State, row: &AccountRow) -> Value {
    let facts = &row.facts;
    let domain = state.identity.domains.get(&facts.domain_id);
    let users: Vec<Value> = state
        .identity
        .users
        .values()
        .filter(|u| u.facts.account_id == facts.account_id)
        .map(|u| user_json(state, u))
        .collect();
    json!({
        "id": facts.account_id,
        "name": facts.name,
        "accounttype": facts.account_type.code(),
        "roletype": role_type(facts.account_type),
        "domainid": facts.domain_id,
        "domain": domain.map(|d| d.facts.name.clone()),
        "domainpath": domain.map(|d| d.facts.path.clone()),
        "state": row.state.as_str(),
        "networkdomain": facts.network_domain,
        "created": date(row.created),
        "isdefault": facts.name == "admin" && facts.account_type == AccountType::RootAdmin,
        "user": users,
    })
}

fn account_reply(ctx: &Ctx, id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let row =
        state.identity.accounts.get(&id).ok_or_else(|| {
            ApiError::internal(format!("account {id} vanished after it was written"))
        })?;
    Ok(Reply::Object {
        key: "account",
        value: account_json(&state, row),
    })
}

/// The account named by `id`, or by `account` + `domainid`, if the caller may manage it.
pub fn selected_account<'s>(state: &'s State, call: &Call) -> Result<&'s AccountRow, ApiError> {
    let account =
        match (call.uuid("id")?, call.str("account")) {
            (Some(id), _) => state.identity.accounts.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find account by id {id}"))
            })?,
            (None, Some(name)) => {
                let domain = call
                    .uuid("domainid")?
                    .ok_or_else(|| ApiError::missing_param(call.command.name, "domainid"))?;
                state
                    .identity
                    .account_by_name(domain, name)
                    .ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "Unable to find account {name} in domain {domain}"
                        ))
                    })?
            }
            (None, None) => {
                return Err(ApiError::invalid_param(
                    "Either id or account name with domainid must be specified",
                ));
            }
        };
    if !call
        .caller
        .may_access(state, account.facts.account_id, account.facts.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Caller cannot manage account {}",
            account.facts.name
        )));
    }
    Ok(account)
}

fn account_ref(row: &AccountRow) -> AccountRef {
    AccountRef {
        account_id: row.facts.account_id,
        name: row.facts.name.clone(),
        domain_id: row.facts.domain_id,
    }
}

async fn create_account(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let username = call.required("username")?.to_owned();
    let password = password_hash(call.required("password")?).await?;
    let account_name = call.str("account").unwrap_or(&username).to_owned();
    let account_type = match call.int("accounttype")?.unwrap_or(0) {
        0 => AccountType::User,
        1 => AccountType::RootAdmin,
        2 => AccountType::DomainAdmin,
        other => {
            return Err(ApiError::invalid_param(format!(
                "Invalid account type {other}: use 0 (user), 1 (root admin) or 2 (domain admin)"
            )));
        }
    };
    if account_type == AccountType::RootAdmin && call.caller.role != Role::RootAdmin {
        return Err(ApiError::permission_denied(
            "Only a root admin can create root admin accounts",
        ));
    }
    let account_id = call.uuid("accountid")?.unwrap_or_else(Uuid::new_v4);
    let user_id = call.uuid("userid")?.unwrap_or_else(Uuid::new_v4);
    let timezone = call.str("timezone").map(Into::into);
    if let Some(tz) = call.str("timezone")
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid timezone {tz}: use an IANA name such as Europe/Paris"
        )));
    }
    ctx.decide(IDENTITY, |state| {
        let domain_id = call.uuid("domainid")?.unwrap_or(call.caller.domain_id);
        accessible_domain(state, call, domain_id)?;
        if state
            .identity
            .account_by_name(domain_id, &account_name)
            .is_some()
        {
            return Err(ApiError::invalid_param(format!(
                "The specified account: {account_name} already exists"
            )));
        }
        if state.identity.user_by_name(domain_id, &username).is_some() {
            return Err(ApiError::invalid_param(format!(
                "The user {username} already exists in domain {domain_id}"
            )));
        }
        if state.identity.accounts.get(&account_id).is_some()
            || state.identity.users.get(&user_id).is_some()
        {
            return Err(ApiError::invalid_param(
                "An account or user with that id already exists",
            ));
        }
        let account = AccountFacts {
            account_id,
            name: account_name.as_str().into(),
            account_type,
            domain_id,
            network_domain: call.str("networkdomain").map(Into::into),
        };
        let user = UserFacts {
            user_id,
            username: username.as_str().into(),
            account_id,
            domain_id,
            first_name: call.required("firstname")?.into(),
            last_name: call.required("lastname")?.into(),
            email: call.str("email").map(Into::into),
            timezone: timezone.clone(),
        };
        Ok(vec![
            call.event(EventBody::Account(AccountEvent::Create(AccountCreated {
                account,
            }))),
            call.event(EventBody::User(UserEvent::Create(UserCreated {
                user,
                password_hash: Some(password.clone()),
            }))),
        ])
    })
    .await?;
    account_reply(ctx, account_id)
}

async fn list_accounts(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, true)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let account_type = call.int("accounttype")?;
    let wanted_state = call.str("state");
    let keyword = call.str("keyword");
    let rows: Vec<Value> = state
        .identity
        .accounts
        .values()
        .filter(|a| {
            let f = &a.facts;
            scope.admits(&state, Some(f.account_id), Some(f.domain_id))
                && id.is_none_or(|id| f.account_id == id)
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && account_type.is_none_or(|t| i64::from(f.account_type.code()) == t)
                && wanted_state.is_none_or(|s| a.state.as_str().eq_ignore_ascii_case(s))
                && keyword_matches(keyword, &[&f.name])
        })
        .map(|a| account_json(&state, a))
        .collect();
    let (count, items) = paging.apply(rows);
    Ok(Reply::List {
        key: "account",
        count,
        items,
    })
}

async fn update_account(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    ctx.decide(IDENTITY, |state| {
        let row = selected_account(state, call)?;
        let mut account = row.facts.clone();
        let mut previous_name = None;
        if let Some(new_name) = call.str("newname") {
            if let Some(other) = state.identity.account_by_name(account.domain_id, new_name)
                && other.facts.account_id != account.account_id
            {
                return Err(ApiError::invalid_param(format!(
                    "There already exists an account with the name:{new_name} in the domain"
                )));
            }
            previous_name = Some(account.name.clone());
            account.name = new_name.into();
        }
        if let Some(network_domain) = call.str("networkdomain") {
            account.network_domain = Some(network_domain.into());
        }
        Ok(vec![call.event(EventBody::Account(AccountEvent::Update(
            AccountUpdated {
                account,
                previous_name,
            },
        )))])
    })
    .await?;
    account_reply(ctx, selected_id(ctx, call)?)
}

/// The id of the account `id` or `account` + `domainid` (after a rename, `newname`) names.
fn selected_id(ctx: &Ctx, call: &Call) -> Result<Uuid, ApiError> {
    if let Some(id) = call.uuid("id")? {
        return Ok(id);
    }
    let state = ctx.models.read();
    let name = call
        .str("newname")
        .or(call.str("account"))
        .unwrap_or_default();
    let domain = call.uuid("domainid")?.unwrap_or(call.caller.domain_id);
    state
        .identity
        .account_by_name(domain, name)
        .map(|a| a.facts.account_id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find account {name}")))
}

async fn enable_account(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    ctx.decide(IDENTITY, |state| {
        let row = selected_account(state, call)?;
        Ok(vec![call.event(EventBody::Account(AccountEvent::Enable(
            account_ref(row),
        )))])
    })
    .await?;
    account_reply(ctx, selected_id(ctx, call)?)
}

async fn lock_account(_ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    Err(ApiError::internal(
        "LockAccount does not lock accounts. Its implementation is disabled. Use DisableAccount instead",
    ))
}

/// The account `id` or `account` + `domainid` name, for an action the caller may not take on
/// their own account (`verb` completes the refusal).
fn another_account(ctx: &Ctx, call: &Call, verb: &str) -> Result<(Uuid, CompactString), ApiError> {
    let state = ctx.models.read();
    let row = selected_account(&state, call)?;
    if row.facts.account_id == call.caller.account_id {
        return Err(ApiError::invalid_param(format!(
            "Caller can't {verb} its own account"
        )));
    }
    Ok((row.facts.account_id, row.facts.name.clone()))
}

/// The account `id` as an async job finds it when it runs (it may have gone meanwhile).
fn existing_account(state: &State, id: Uuid) -> Result<&AccountRow, ApiError> {
    state
        .identity
        .accounts
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find account by id {id}")))
}

async fn disable_account(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let lock = call.flag("lock");
    let (id, name) = another_account(ctx, call, "disable")?;
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("Account"),
        instance_id: Some(id),
        event_type: "ACCOUNT.DISABLE",
        description: format!(
            "{} account {name}",
            if lock { "locking" } else { "disabling" }
        ),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(IDENTITY, |state| {
                        let row = existing_account(state, id)?;
                        Ok(vec![job.event(EventBody::Account(AccountEvent::Disable(
                            AccountDisabled {
                                account_id: id,
                                name: row.facts.name.clone(),
                                domain_id: row.facts.domain_id,
                                locked: lock,
                                reason: None,
                            },
                        )))])
                    })
                    .await?;
                job.ctx.forget_secrets();
                account_reply(&job.ctx, id)
            }
            .boxed()
        }),
    }))
}

async fn delete_account(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let (id, name) = another_account(ctx, call, "delete")?;
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("Account"),
        instance_id: Some(id),
        event_type: "ACCOUNT.DELETE",
        description: format!("deleting account {name}"),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(IDENTITY, |state| {
                        let row = existing_account(state, id)?;
                        Ok(vec![job.event(EventBody::Account(AccountEvent::Delete(
                            account_ref(row),
                        )))])
                    })
                    .await?;
                job.ctx.forget_secrets();
                Ok(Reply::success())
            }
            .boxed()
        }),
    }))
}
