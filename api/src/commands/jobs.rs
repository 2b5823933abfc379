//! Async job queries (`queryAsyncJobResult`, `listAsyncJobs`), answered from the jobs read
//! model, which is built from ASYNCJOB.* events.

use projections::State;
use projections::jobs::{JobRow, JobStatus};
use serde_json::{Map, Value, json};

use crate::call::{Call, ListScope, Paging};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

const JOB_FIELDS: &[ResponseField] = &[
    field("jobid", "string", "the ID of the async job"),
    field(
        "accountid",
        "string",
        "the account id that executed the async command",
    ),
    field(
        "account",
        "string",
        "the account that executed the async command",
    ),
    field(
        "userid",
        "string",
        "the user that executed the async command",
    ),
    field(
        "domainid",
        "string",
        "the domain id that the job belongs to",
    ),
    field("cmd", "string", "the async command executed"),
    field(
        "jobstatus",
        "integer",
        "the current job status-should be 0 for PENDING",
    ),
    field(
        "jobprocstatus",
        "integer",
        "the progress information of the PENDING job",
    ),
    field("jobresultcode", "integer", "the result code for the job"),
    field("jobresulttype", "string", "the result type"),
    field("jobresult", "responseobject", "the result reason"),
    field(
        "jobinstancetype",
        "string",
        "the instance/entity object related to the job",
    ),
    field(
        "jobinstanceid",
        "string",
        "the unique ID of the instance/entity object related to the job",
    ),
    field("created", "date", "the created date of the job"),
    field("completed", "date", "the completed date of the job"),
];

/// The job commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "queryAsyncJobResult",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Retrieves the current status of asynchronous job.",
        params: &[required("jobid", T::Uuid, "the ID of the asynchronous job")],
        inherits: Inherits::Nothing,
        response: JOB_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(query_async_job_result),
    },
    CommandSpec {
        name: "listAsyncJobs",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all pending asynchronous jobs for the account.",
        params: &[
            param(
                "startdate",
                T::Date,
                "The start date of the async job (use format \"yyyy-MM-dd'T'HH:mm:ss'+'SSSS\")",
            ),
            param("id", T::Uuid, "the id of the async job"),
        ],
        inherits: Inherits::PagingAndScope,
        response: JOB_FIELDS,
        related: "queryAsyncJobResult",
        manual_clock_only: false,
        handler: handler!(list_async_jobs),
    },
];

/// A job as `queryAsyncJobResult` shows it: flat, `jobstatus` a number, `jobresultcode` always
/// present, `jobresult` only once finished.
pub fn job_json(state: &State, job: &JobRow) -> Map<String, Value> {
    let mut body = json!({
        "jobid": job.job_id,
        "accountid": job.account_id,
        "account": state.identity.account_name(job.account_id),
        "userid": job.user_id,
        "domainid": job.domain_id,
        "cmd": job.command,
        "jobstatus": job.status.code(),
        "jobprocstatus": job.proc_status,
        "jobresultcode": job.result_code,
        "jobinstancetype": job.instance_type,
        "jobinstanceid": job.instance_id,
        "created": date(job.created),
        "completed": job.completed.map(date),
    });
    if job.status != JobStatus::Pending {
        let result = job
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .unwrap_or_else(|| json!({}));
        body["jobresulttype"] = Value::String("object".into());
        body["jobresult"] = result;
    }
    match body {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

async fn query_async_job_result(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("jobid")?;
    let state = ctx.models.read();
    let job = state
        .jobs
        .jobs
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find job by id {id}")))?;
    if !call
        .caller
        .may_access(&state, job.account_id, job.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Caller has no access to job {id}"
        )));
    }
    Ok(Reply::Flat(job_json(&state, job)))
}

async fn list_async_jobs(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let since = call.date("startdate", false)?;
    let id = call.uuid("id")?;
    let keyword = call.str("keyword").map(str::to_lowercase);
    let mut jobs: Vec<&JobRow> = state
        .jobs
        .jobs
        .values()
        .filter(|j| {
            scope.admits(&state, Some(j.account_id), Some(j.domain_id))
                && since.is_none_or(|s| j.created >= s)
                && id.is_none_or(|id| j.job_id == id)
                && keyword
                    .as_deref()
                    .is_none_or(|k| j.command.to_lowercase().contains(k))
        })
        .collect();
    jobs.sort_by(|a, b| b.created.cmp(&a.created).then(b.job_id.cmp(&a.job_id)));
    let rows = jobs
        .into_iter()
        .map(|j| Value::Object(job_json(&state, j)))
        .collect();
    let (count, items) = paging.apply(rows);
    Ok(Reply::List {
        key: "asyncjobs",
        count,
        items,
    })
}
