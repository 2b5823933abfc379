//! `GET /client/usage/export`: `listUsageRecords` as a file for billing systems, CSV or JSON
//! Lines (`usage::export`; columns in docs/usage.md, "Exports").
//!
//! The request is a `listUsageRecords` call in all but name: it is authenticated the same way
//! (API key and signature, or a session), allowed to the same roles, takes the same parameters
//! (`startdate`, `enddate`, `account`, `domainid`, `accountid`, `type`, `usageid`,
//! `isrecursive`, `oldformat`, `includetags`, `changedsince`, `showsuperseded`, ...) with the
//! same scope rules, plus `format=csv|jsonl`; it returns every matching record (no paging).
//! The command's own handler selects the records, so the export and the list never disagree.
//! Errors are CloudStack's error envelope, as on `/client/api`, in JSON unless `response=xml`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use usage::export::{ExportFormat, write_records};
use uuid::Uuid;

use crate::call::Call;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::protocol::params::Params;
use crate::registry;
use crate::response::{Format, Reply, error_body, render};
use crate::server::{self, MAX_QUERY_BYTES, Request};

/// The path this module answers on.
pub const PATH: &str = "/client/usage/export";

/// The command whose roles, parameters and records the export shares.
const COMMAND: &str = "listUsageRecords";

/// Answers one export request.
pub(crate) async fn handle(
    AxumState(ctx): AxumState<Ctx>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = uri.query().unwrap_or_default();
    let mut params = Params::default();
    params.merge_urlencoded(&query.as_bytes()[..query.len().min(MAX_QUERY_BYTES)]);
    // Errors are JSON unless `response=xml` asks otherwise (a download has no envelope to
    // match, and JSON is what scripts parse).
    let error_format = match params.get("response") {
        Some(format) => Format::from_param(Some(format)),
        None => Format::Json,
    };
    if query.len() > MAX_QUERY_BYTES {
        let error = ApiError::invalid_param(format!(
            "request line too long: the query string is over {MAX_QUERY_BYTES} bytes"
        ));
        return error_response(&error, error_format);
    }
    if method != Method::GET && method != Method::HEAD {
        return error_response(
            &ApiError::method_not_allowed("the usage export answers GET only"),
            error_format,
        );
    }
    let request = Request {
        method,
        headers,
        params,
        remote,
    };
    match export(&ctx, request).await {
        Ok((format, body)) => {
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            if let Ok(value) = HeaderValue::from_str(&format!(
                "attachment; filename=\"usage-records.{}\"",
                format.extension()
            )) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => error_response(&error, error_format),
    }
}

/// Authenticates, authorizes and runs `listUsageRecords` for every matching record; returns
/// the file's format and bytes.
async fn export(ctx: &Ctx, request: Request) -> Result<(ExportFormat, Vec<u8>), ApiError> {
    let spec = registry::find(COMMAND)
        .ok_or_else(|| ApiError::internal(format!("{COMMAND} is not in the command table")))?;
    let caller = server::authenticate(ctx, &request)?;
    let remote_ip = request.remote.ip().to_string();
    if !spec.roles.admits(caller.role) {
        return Err(ApiError::not_available(spec.name, &remote_ip));
    }
    server::throttle(ctx, &caller)?;
    let format = request
        .params
        .get("format")
        .ok_or_else(|| ApiError::missing_param("usage export", "format"))?
        .parse::<ExportFormat>()
        .map_err(|e| ApiError::invalid_param(e.to_string()))?;
    if request.params.get("page").is_some() || request.params.get("pagesize").is_some() {
        return Err(ApiError::invalid_param(
            "an export holds every matching record: page and pagesize are not accepted",
        ));
    }
    server::check_params(spec, &request.params)?;
    let mut params = request.params;
    params.insert("pagesize", "-1");
    let is_root_admin = caller.is_root_admin();
    let call = Call {
        command: spec,
        params,
        caller,
        request_id: Uuid::new_v4(),
        remote_ip,
    };
    let reply = (spec.handler)(ctx, &call)
        .await
        .map_err(|e| e.for_caller(is_root_admin))?;
    let Reply::List { items, .. } = reply else {
        return Err(ApiError::internal(format!(
            "{COMMAND} did not answer a list"
        )));
    };
    let records = items.into_iter().filter_map(|item| match item {
        Value::Object(record) => Some(record),
        _ => None,
    });
    let mut body = Vec::new();
    write_records(format, records, &mut body)
        .map_err(|e| ApiError::internal(format!("writing the export: {e}")))?;
    Ok((format, body))
}

/// CloudStack's error envelope (`errorresponse`), with the status and `X-Description` header
/// `/client/api` gives.
fn error_response(error: &ApiError, format: Format) -> Response {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = render("errorresponse", error_body(error), format);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let description: String = error.text.chars().filter(|c| !c.is_control()).collect();
    if let Ok(value) = HeaderValue::from_str(&description) {
        response.headers_mut().insert("X-Description", value);
    }
    response
}
