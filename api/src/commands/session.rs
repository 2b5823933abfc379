//! `login` and `logout`: session authentication for clients that hold a password rather than
//! API keys. CloudStack handles both before its role checks; so does [`crate::server`].

use axum::http::Method;
use engine::event::identity::UserRef;
use engine::event::{EventBody, NewEvent, UserEvent};
use engine::secrets;
use serde_json::{Map, Value, json};

use crate::call::Call;
use crate::commands::domains::IDENTITY;
use crate::context::{Ctx, SESSION_TIMEOUT};
use crate::error::ApiError;
use crate::handler;
use crate::registry::{CommandSpec, Inherits, Kind, ParamType as T, Roles, field, param, required};
use crate::response::Reply;
use crate::server::{Answer, Request, caller_for};

/// The session commands (listed by `listApis`; answered by [`login`] and [`logout`]).
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "login",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Logs a user into the CloudStack. A successful login attempt will generate a JSESSIONID cookie value that can be passed in subsequent Query command calls until the \"logout\" command has been issued or the session has expired.",
        params: &[
            required("username", T::String, "Username"),
            required(
                "password",
                T::String,
                "Hashed password (Default is MD5). If you wish to use any other hashing algorithm, you would need to write a custom authentication adapter See Docs section.",
            ),
            param(
                "domain",
                T::String,
                "Path of the domain that the user belongs to. Example: domain=/com/cloud/internal. If no domain is passed in, the ROOT (/) domain is assumed.",
            ),
            param(
                "domainId",
                T::Long,
                "The id of the domain that the user belongs to. If both domain and domainId are passed in, \"domainId\" parameter takes precedence.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: &[
            field("username", "string", "Username"),
            field("userid", "string", "User ID"),
            field("domainid", "string", "Domain ID that the user belongs to"),
            field(
                "timeout",
                "integer",
                "the time period before the session has expired",
            ),
            field("account", "string", "the account name the user belongs to"),
            field("firstname", "string", "first name of the user"),
            field("lastname", "string", "last name of the user"),
            field(
                "type",
                "string",
                "the account type (admin, domain-admin, read-only-admin, user)",
            ),
            field("timezone", "string", "user time zone"),
            field(
                "sessionkey",
                "string",
                "Session key that can be passed in subsequent Query command calls",
            ),
        ],
        related: "",
        manual_clock_only: false,
        handler: handler!(intercepted),
    },
    CommandSpec {
        name: "logout",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Logs out the user",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[field("description", "string", "Response description")],
        related: "",
        manual_clock_only: false,
        handler: handler!(intercepted),
    },
];

async fn intercepted(_ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    Err(ApiError::method_not_allowed(format!(
        "{} is handled before dispatch",
        call.command.name
    )))
}

/// `login`: checks the password, opens a session, sets `JSESSIONID` and `sessionkey` cookies.
pub(crate) async fn login(ctx: &Ctx, request: &Request) -> Result<Answer, ApiError> {
    if request.method != Method::POST {
        return Err(ApiError::method_not_allowed(
            "Please use HTTP POST to authenticate using this API",
        ));
    }
    let params = &request.params;
    let username = params
        .get("username")
        .ok_or_else(|| ApiError::missing_param("login", "username"))?;
    let password = params
        .get("password")
        .ok_or_else(|| ApiError::missing_param("login", "password"))?
        .to_owned();
    let failure = || {
        ApiError::permission_denied("Failed to authenticate user; please provide valid credentials")
    };
    let (user_id, hash) = {
        let state = ctx.models.read();
        let domain = match (params.get("domainid"), params.get("domain")) {
            (Some(id), _) => id
                .parse()
                .ok()
                .and_then(|id| state.identity.domains.get(&id)),
            (None, Some(path)) => state.identity.domain_by_path(path),
            (None, None) => state.identity.domain_by_path("/"),
        }
        .ok_or_else(failure)?;
        let user = state
            .identity
            .user_by_name(domain.facts.domain_id, username)
            .ok_or_else(failure)?;
        (
            user.facts.user_id,
            user.password_hash.clone().ok_or_else(failure)?,
        )
    };
    let verified = tokio::task::spawn_blocking(move || secrets::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !verified {
        return Err(failure());
    }
    let caller = caller_for(ctx, user_id).map_err(|e| ApiError::permission_denied(e.text))?;
    let session_key = secrets::generate_session_key();
    let session_id = ctx.sessions.create(user_id, session_key.clone());
    let body = {
        let state = ctx.models.read();
        let user = state.identity.users.get(&user_id).ok_or_else(failure)?;
        let account = state
            .identity
            .accounts
            .get(&caller.account_id)
            .ok_or_else(failure)?;
        json!({
            "username": user.facts.username,
            "userid": user_id,
            "domainid": caller.domain_id,
            "timeout": SESSION_TIMEOUT.as_secs().to_string(),
            "account": account.facts.name,
            "firstname": user.facts.first_name,
            "lastname": user.facts.last_name,
            "type": account.facts.account_type.code().to_string(),
            "timezone": user.facts.timezone,
            "registered": "false",
            "sessionkey": session_key,
        })
    };
    record(ctx, user_id, UserEvent::Login).await?;
    Ok(Answer {
        body,
        cookies: vec![
            format!("JSESSIONID={session_id}; Path=/client; HttpOnly"),
            format!("sessionkey={session_key}; Path=/client; HttpOnly"),
        ],
    })
}

/// `logout`: ends the session named by the `JSESSIONID` cookie.
pub(crate) async fn logout(ctx: &Ctx, request: &Request) -> Result<Answer, ApiError> {
    let session_id = request
        .cookie("JSESSIONID")
        .ok_or_else(ApiError::unauthorized)?;
    let user_id = ctx
        .sessions
        .remove(&session_id)
        .ok_or_else(ApiError::unauthorized)?;
    record(ctx, user_id, UserEvent::Logout).await?;
    let mut body = Map::new();
    body.insert("description".into(), Value::String("success".into()));
    Ok(Answer {
        body: Value::Object(body),
        cookies: vec![
            "JSESSIONID=; Path=/client; Max-Age=0".into(),
            "sessionkey=; Path=/client; Max-Age=0".into(),
        ],
    })
}

async fn record(
    ctx: &Ctx,
    user_id: uuid::Uuid,
    kind: fn(UserRef) -> UserEvent,
) -> Result<(), ApiError> {
    ctx.decide(IDENTITY, |state| {
        let Some(user) = state.identity.users.get(&user_id) else {
            return Ok(vec![]);
        };
        let user_ref = UserRef {
            user_id,
            username: user.facts.username.clone(),
            account_id: user.facts.account_id,
            domain_id: user.facts.domain_id,
        };
        Ok(vec![NewEvent::new(EventBody::User(kind(user_ref))).by(
            engine::event::Actor::user(user_id, user.facts.account_id),
        )])
    })
    .await?;
    Ok(())
}
