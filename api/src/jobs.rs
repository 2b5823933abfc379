//! Async jobs: an async command's checks run in the request; its work runs in a task whose
//! creation, start and completion are events (ASYNCJOB.SUBMIT / START / COMPLETE), so
//! `queryAsyncJobResult` answers from the log and a job survives a restart as a clear failure.

use engine::event::common::JsonDocument;
use engine::event::operations::{
    AsyncJobCompleted, AsyncJobStarted, AsyncJobSubmitted, JobOutcome,
};
use engine::event::{Actor, AsyncJobEvent, EventBody, EventState, Level, NewEvent, StreamId};
use engine::store::ExpectedVersion;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tracing::{info, warn};
use uuid::Uuid;

use crate::call::Call;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::response::Reply;

/// What a job's task gets: the server and the job's identity, so the events it appends carry
/// the job id as their correlation id (`listEvents` links them to the Scheduled event).
pub struct JobRun {
    /// The server.
    pub ctx: Ctx,
    /// The job.
    pub job_id: Uuid,
    /// Who submitted it.
    pub actor: Actor,
}

impl JobRun {
    /// A new event by the job's submitter, correlated with the job.
    pub fn event(&self, body: EventBody) -> NewEvent {
        NewEvent::new(body)
            .by(self.actor)
            .correlated_with(self.job_id)
    }
}

/// The work of an async command, validated and ready to run.
pub struct AsyncWork {
    /// `jobinstancetype`, such as `Account`.
    pub instance_type: Option<&'static str>,
    /// `jobinstanceid`.
    pub instance_id: Option<Uuid>,
    /// The CloudStack event type of the action (`ACCOUNT.DELETE`).
    pub event_type: &'static str,
    /// What it does, in words ("deleting account acme").
    pub description: String,
    /// For async-create commands: the id of the entity being created, answered as `id`.
    pub create_id: Option<Uuid>,
    /// The work itself.
    pub run: Box<dyn FnOnce(JobRun) -> BoxFuture<'static, Result<Reply, ApiError>> + Send>,
}

fn job_stream(job_id: Uuid) -> StreamId {
    StreamId::new("job", job_id).expect("\"job\" is a valid stream category")
}

/// Records the job, starts its task, and answers `jobid` (and `id`).
pub async fn submit(ctx: &Ctx, call: &Call, work: AsyncWork) -> Result<Reply, ApiError> {
    let job_id = Uuid::new_v4();
    let submitted = AsyncJobSubmitted {
        job_id,
        command: call.command.name.into(),
        account_id: call.caller.account_id,
        user_id: call.caller.user_id,
        domain_id: call.caller.domain_id,
        instance_type: work.instance_type.map(Into::into),
        instance_id: work.instance_id.or(work.create_id),
        event_type: Some(work.event_type.into()),
        description: work.description.clone(),
    };
    let event = NewEvent::new(EventBody::AsyncJob(AsyncJobEvent::Submit(submitted)))
        .by(call.actor())
        .correlated_with(job_id)
        .state(EventState::Scheduled);
    ctx.append_new(job_stream(job_id), ExpectedVersion::NoStream, vec![event])
        .await?;
    let run = JobRun {
        ctx: ctx.clone(),
        job_id,
        actor: call.actor(),
    };
    let is_root_admin = call.caller.is_root_admin();
    tokio::spawn(execute(run, work.run, is_root_admin));
    let mut body = Map::new();
    if let Some(id) = work.create_id {
        body.insert("id".into(), Value::String(id.to_string()));
    }
    body.insert("jobid".into(), Value::String(job_id.to_string()));
    Ok(Reply::Flat(body))
}

async fn execute(
    run: JobRun,
    work: Box<dyn FnOnce(JobRun) -> BoxFuture<'static, Result<Reply, ApiError>> + Send>,
    is_root_admin: bool,
) {
    let ctx = run.ctx.clone();
    let job_id = run.job_id;
    let actor = run.actor;
    let started = NewEvent::derived(
        job_id,
        "start",
        EventBody::AsyncJob(AsyncJobEvent::Start(AsyncJobStarted { job_id })),
    )
    .by(actor)
    .correlated_with(job_id)
    .state(EventState::Started);
    if let Err(e) = ctx
        .append_new(job_stream(job_id), ExpectedVersion::Exact(1), vec![started])
        .await
    {
        warn!(%job_id, error = %e, "could not record the start of a job");
    }
    let outcome = work(run).await;
    let completed = match outcome {
        Ok(reply) => AsyncJobCompleted {
            job_id,
            outcome: JobOutcome::Succeeded,
            result_code: 0,
            result: JsonDocument::new(&reply.into_job_result()),
        },
        Err(error) => failure(job_id, &error.for_caller(is_root_admin)),
    };
    if let Err(e) = complete(&ctx, actor, completed).await {
        warn!(%job_id, error = %e, "could not record the end of a job; it will be failed at the next start");
    }
}

fn failure(job_id: Uuid, error: &ApiError) -> AsyncJobCompleted {
    AsyncJobCompleted {
        job_id,
        outcome: JobOutcome::Failed,
        result_code: error.code as u32,
        result: JsonDocument::new(&json!({
            "errorcode": error.code,
            "errortext": error.text,
        })),
    }
}

async fn complete(ctx: &Ctx, actor: Actor, completed: AsyncJobCompleted) -> Result<(), ApiError> {
    let job_id = completed.job_id;
    let failed = completed.outcome == JobOutcome::Failed;
    let event = NewEvent::derived(
        job_id,
        "complete",
        EventBody::AsyncJob(AsyncJobEvent::Complete(completed)),
    )
    .by(actor)
    .correlated_with(job_id)
    .level(if failed { Level::Error } else { Level::Info });
    ctx.append_new(job_stream(job_id), ExpectedVersion::Any, vec![event])
        .await?;
    Ok(())
}

/// Fails every job that was still running when the server last stopped: its task died with
/// the process, and a job must never stay pending forever.
pub async fn fail_interrupted(ctx: &Ctx) -> Result<usize, ApiError> {
    let unfinished: Vec<(Uuid, Uuid, Uuid)> = ctx
        .models
        .read()
        .jobs
        .unfinished()
        .iter()
        .map(|j| (j.job_id, j.user_id, j.account_id))
        .collect();
    for (job_id, user_id, account_id) in &unfinished {
        let error = ApiError::internal(
            "the server stopped while this job was running; what it had done is in listEvents; run the command again",
        );
        complete(
            ctx,
            Actor::user(*user_id, *account_id),
            failure(*job_id, &error),
        )
        .await?;
        info!(%job_id, "failed a job interrupted by a restart");
    }
    Ok(unfinished.len())
}
