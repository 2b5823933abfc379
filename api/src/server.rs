//! The HTTP front: `/client/api` over axum. Parses the request, authenticates (signature or
//! session), authorizes, throttles, checks parameters against the command table, runs the
//! handler and writes CloudStack's envelope in JSON or XML.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;
use tracing::debug;
use uuid::Uuid;

use crate::call::{Call, Caller};
use crate::commands::session;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::jobs;
use crate::protocol::params::Params;
use crate::protocol::signature;
use crate::registry::{self, CommandSpec, ParamType, Role};
use crate::response::{Format, Reply, envelope_name, error_body, render};

/// Longest query string accepted (431 beyond): far above what any real call needs.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Largest form body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most distinct parameters in one call (431 beyond).
pub const MAX_PARAMS: usize = 1024;

/// The router serving `/client/api` (and `/client/api/`), the usage export, and the
/// unauthenticated operator endpoints `/metrics`, `/healthz` and `/readyz` (`docs/operators.md`).
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/client/api", any(handle))
        .route("/client/api/", any(handle))
        .route(
            crate::usage_download::PATH,
            any(crate::usage_download::handle),
        )
        .route("/metrics", get(crate::metrics::metrics))
        .route("/healthz", get(crate::metrics::healthz))
        .route("/readyz", get(crate::metrics::readyz))
        .with_state(ctx)
}

/// What a successful call answers besides its body.
pub(crate) struct Answer {
    pub(crate) body: Value,
    pub(crate) cookies: Vec<String>,
}

impl From<Value> for Answer {
    fn from(body: Value) -> Self {
        Answer {
            body,
            cookies: Vec::new(),
        }
    }
}

async fn handle(
    AxumState(ctx): AxumState<Ctx>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut command = crate::metrics::UNKNOWN_COMMAND;
    let response = respond(&ctx, remote, method, uri, headers, body, &mut command).await;
    if let Some(metrics) = &ctx.metrics {
        metrics.count_request(command, response.status().as_u16());
    }
    response
}

/// One `/client/api` request; sets `command` to the metrics label of the command it named as
/// soon as that is known.
async fn respond(
    ctx: &Ctx,
    remote: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    command: &mut &'static str,
) -> Response {
    let mut params = Params::default();
    let query = uri.query().unwrap_or_default();
    params.merge_urlencoded(&query.as_bytes()[..query.len().min(MAX_QUERY_BYTES)]);
    *command = crate::metrics::command_label(params.get("command"));
    let format = Format::from_param(params.get("response"));
    let envelope = envelope_for(&params);
    if query.len() > MAX_QUERY_BYTES {
        let error = ApiError::invalid_param(format!(
            "request line too long: the query string is over {MAX_QUERY_BYTES} bytes"
        ));
        return error_response(&envelope, &error, format);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                &envelope,
                &ApiError::payload_too_large(MAX_BODY_BYTES),
                format,
            );
        }
    };
    if is_form(&headers) || (method == Method::POST && !body.is_empty()) {
        params.merge_urlencoded(&body);
    }
    // The command and format may come in the form body only.
    *command = crate::metrics::command_label(params.get("command"));
    let format = Format::from_param(params.get("response"));
    let envelope = envelope_for(&params);
    if params.len() > MAX_PARAMS {
        let error = ApiError::invalid_param(format!(
            "too many parameters: {} (at most {MAX_PARAMS})",
            params.len()
        ));
        return error_response(&envelope, &error, format);
    }
    let request = Request {
        method,
        headers,
        params,
        remote,
    };
    match dispatch(ctx, request).await {
        Ok(answer) => {
            let text = render(&envelope, answer.body, format);
            let mut response = (StatusCode::OK, text).into_response();
            set_content_type(&mut response, format);
            for cookie in answer.cookies {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(error) => error_response(&envelope, &error, format),
    }
}

/// `<command>response` for a known command, `errorresponse` otherwise (as CloudStack names it).
fn envelope_for(params: &Params) -> String {
    match params.get("command") {
        Some(c) if registry::find(c).is_some() || c == "login" || c == "logout" => envelope_name(c),
        _ => "errorresponse".to_owned(),
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn set_content_type(response: &mut Response, format: Format) {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
}

fn error_response(envelope: &str, error: &ApiError, format: Format) -> Response {
    debug!(code = error.code, text = %error.text, "request failed");
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, render(envelope, error_body(error), format)).into_response();
    set_content_type(&mut response, format);
    // Header values cannot hold control characters; CloudStack's texts never need them.
    let description: String = error.text.chars().filter(|c| !c.is_control()).collect();
    if let Ok(value) = HeaderValue::from_str(&description) {
        response.headers_mut().insert("X-Description", value);
    }
    response
}

/// A parsed HTTP request.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) params: Params,
    pub(crate) remote: SocketAddr,
}

impl Request {
    /// A cookie's value.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"').to_owned())
    }
}

async fn dispatch(ctx: &Ctx, request: Request) -> Result<Answer, ApiError> {
    let Some(name) = request.params.get("command").map(str::to_owned) else {
        return Err(ApiError::unknown_command(""));
    };
    match name.as_str() {
        "login" => return session::login(ctx, &request).await,
        "logout" => return session::logout(ctx, &request).await,
        _ => {}
    }
    let spec = registry::find(&name).filter(|c| !c.manual_clock_only || ctx.manual_clock.is_some());
    let has_api_key = request.params.get("apikey").is_some();
    if spec.is_none() && has_api_key {
        // CloudStack checks the command before the signature on this path and answers 401.
        return Err(ApiError::unauthorized());
    }
    let caller = authenticate(ctx, &request)?;
    let Some(spec) = spec else {
        return Err(ApiError::unknown_command(&name));
    };
    let remote_ip = request.remote.ip().to_string();
    if !spec.roles.admits(caller.role) {
        return Err(ApiError::not_available(spec.name, &remote_ip));
    }
    throttle(ctx, &caller)?;
    request
        .params
        .validate_maps()
        .map_err(|e| ApiError::malformed_map(e.to_string()))?;
    check_params(spec, &request.params)?;
    let is_root_admin = caller.is_root_admin();
    let call = Call {
        command: spec,
        params: request.params,
        caller,
        request_id: Uuid::new_v4(),
        remote_ip,
    };
    let reply = (spec.handler)(ctx, &call)
        .await
        .map_err(|e| e.for_caller(is_root_admin))?;
    let reply = match reply {
        Reply::Async(work) => jobs::submit(ctx, &call, work).await?,
        other => other,
    };
    Ok(reply.into_body().into())
}

/// Who is calling: by API key and signature, or by session.
pub(crate) fn authenticate(ctx: &Ctx, request: &Request) -> Result<Caller, ApiError> {
    let params = &request.params;
    let user_id = if let Some(api_key) = params.get("apikey") {
        let provided = params.get("signature").ok_or_else(ApiError::unauthorized)?;
        let (user_id, secret) = ctx.secret_for(api_key).ok_or_else(ApiError::unauthorized)?;
        if !signature::verify(params, &secret, provided) {
            return Err(ApiError::unauthorized());
        }
        if let Err(e) = signature::check_expiry(params, chrono::Utc::now()) {
            // Clients match CloudStack's one 401 text; the reason goes to the log.
            debug!(reason = %e, "refused a request signed for expiry");
            return Err(ApiError::unauthorized());
        }
        user_id
    } else {
        let session_id = request
            .cookie("JSESSIONID")
            .ok_or_else(ApiError::unauthorized)?;
        let session_key = params
            .get("sessionkey")
            .map(str::to_owned)
            .or_else(|| request.cookie("sessionkey"))
            .ok_or_else(ApiError::unauthorized)?;
        ctx.sessions
            .check(&session_id, &session_key)
            .ok_or_else(ApiError::unauthorized)?
    };
    caller_for(ctx, user_id)
}

/// The caller behind a user id, refusing disabled or locked users and accounts.
pub(crate) fn caller_for(ctx: &Ctx, user_id: Uuid) -> Result<Caller, ApiError> {
    let state = ctx.models.read();
    let user = state
        .identity
        .users
        .get(&user_id)
        .ok_or_else(ApiError::unauthorized)?;
    let account = state
        .identity
        .accounts
        .get(&user.facts.account_id)
        .ok_or_else(ApiError::unauthorized)?;
    if user.state != projections::identity::AccountState::Enabled {
        return Err(ApiError::unauthorized_because(format!(
            "user {} is {}",
            user.facts.username,
            user.state.as_str()
        )));
    }
    if account.state != projections::identity::AccountState::Enabled {
        return Err(ApiError::unauthorized_because(format!(
            "account {} is {}",
            account.facts.name,
            account.state.as_str()
        )));
    }
    let role = match account.facts.account_type.code() {
        1 => Role::RootAdmin,
        2 => Role::DomainAdmin,
        _ => Role::User,
    };
    Ok(Caller {
        user_id,
        account_id: account.facts.account_id,
        domain_id: account.facts.domain_id,
        role,
    })
}

pub(crate) fn throttle(ctx: &Ctx, caller: &Caller) -> Result<(), ApiError> {
    if caller.is_root_admin() {
        return Ok(());
    }
    let (enabled, interval, max, cache) = {
        let state = ctx.models.read();
        let c = &state.configuration;
        (
            c.global_bool("api.throttling.enabled"),
            c.global_i64("api.throttling.interval"),
            c.global_i64("api.throttling.max"),
            c.global_i64("api.throttling.cachesize"),
        )
    };
    if !enabled {
        return Ok(());
    }
    ctx.throttle
        .admit(
            caller.account_id,
            Duration::from_secs(interval.max(1) as u64),
            max.max(1) as u64,
            cache.max(1) as usize,
        )
        .map_err(ApiError::throttled)
}

/// Required parameters present, typed ones well-formed, none over its length.
pub(crate) fn check_params(spec: &CommandSpec, params: &Params) -> Result<(), ApiError> {
    for p in spec.all_params() {
        let value = params.get(p.name);
        let Some(value) = value else {
            if p.required {
                return Err(ApiError::missing_param(spec.name, p.name));
            }
            continue;
        };
        let invalid = |why: &str| {
            ApiError::invalid_param(format!(
                "Unable to execute API command {} due to invalid value {value:?} for parameter {}: {why}",
                spec.name, p.name
            ))
        };
        match p.ty {
            ParamType::Uuid if Uuid::parse_str(value.trim()).is_err() => {
                return Err(invalid("not a valid id"));
            }
            ParamType::Integer | ParamType::Long | ParamType::Short
                if value.trim().parse::<i64>().is_err() =>
            {
                return Err(invalid("not a whole number"));
            }
            ParamType::Date
                if crate::protocol::dates::parse_filter_date(value, false).is_none() =>
            {
                return Err(invalid(
                    "not a date (yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ)",
                ));
            }
            _ => {}
        }
        // CloudStack checks the declared length of string parameters only.
        if p.ty == ParamType::String && value.chars().count() > p.length as usize {
            return Err(invalid(&format!("longer than {} characters", p.length)));
        }
    }
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Ctx,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(ctx).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
