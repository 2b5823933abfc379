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
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{info, warn};
use uuid::Uuid;

use projections::State;
use projections::jobs::JobRow;
use projections::orchestration::CommandResult;

use crate::allocation::ALLOCATION;
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

/// The task of a job: what runs once the job is recorded.
pub type JobTask = Box<dyn FnOnce(JobRun) -> BoxFuture<'static, Result<Reply, ApiError>> + Send>;

/// A job whose reply is ready as soon as it runs (its events were appended when the command
/// was accepted, or need no hypervisor).
pub fn immediate(
    render: impl FnOnce(&State) -> Result<Reply, ApiError> + Send + 'static,
) -> JobTask {
    Box::new(move |job: JobRun| {
        Box::pin(async move {
            let state = job.ctx.models.read();
            render(&state)
        })
    })
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
    pub run: JobTask,
}

/// What a job is, but its task: the fields of [`AsyncWork`] the caller fills in before the
/// work is known.
pub struct JobMeta {
    /// `jobinstancetype`, such as `Volume`.
    pub instance_type: Option<&'static str>,
    /// `jobinstanceid`.
    pub instance_id: Option<Uuid>,
    /// The CloudStack event type of the action (`VOLUME.ATTACH`).
    pub event_type: &'static str,
    /// What it does, in words ("attaching volume ...").
    pub description: String,
    /// For async-create commands: the id of the entity being created, answered as `id`.
    pub create_id: Option<Uuid>,
}

impl JobMeta {
    /// A job acting on the `instance_type` of id `id`.
    pub fn on(
        instance_type: &'static str,
        id: Uuid,
        event_type: &'static str,
        description: String,
    ) -> JobMeta {
        JobMeta {
            instance_type: Some(instance_type),
            instance_id: Some(id),
            event_type,
            description,
            create_id: None,
        }
    }

    /// A job creating the `instance_type` of id `id` (answered as `id`).
    pub fn creating(
        instance_type: &'static str,
        id: Uuid,
        event_type: &'static str,
        description: String,
    ) -> JobMeta {
        JobMeta {
            instance_type: Some(instance_type),
            instance_id: None,
            event_type,
            description,
            create_id: Some(id),
        }
    }

    /// The work of this job: `run`.
    pub fn run(self, run: JobTask) -> AsyncWork {
        AsyncWork {
            instance_type: self.instance_type,
            instance_id: self.instance_id,
            event_type: self.event_type,
            description: self.description,
            create_id: self.create_id,
            run,
        }
    }
}

/// The ids a job's decision uses: the job's own, and that of the driver command it may request.
#[derive(Clone, Copy, Debug)]
pub struct JobIds {
    /// The job.
    pub job: Uuid,
    /// The driver command the job waits for, when the decision requests it.
    pub command: Uuid,
}

impl JobIds {
    /// A driver request: the event a hypervisor action starts with, in state `Started`. Its id
    /// is chosen beforehand (a decision may be re-run, and the job waits for the command of
    /// that id) and it is correlated with the job, which the orchestrator's result will name
    /// too.
    pub fn request(self, call: &Call, body: EventBody) -> NewEvent {
        NewEvent::with_id(self.command, body)
            .by(call.actor())
            .correlated_with(self.job)
            .state(EventState::Started)
    }

    /// An event of the job's decision, correlated with the job so `listEvents` shows them
    /// together.
    pub fn event(self, call: &Call, body: EventBody) -> NewEvent {
        call.event(body).correlated_with(self.job)
    }
}

/// Decides an async command's events on the [`ALLOCATION`] stream, then records its job (a
/// refused decision records none). When the decision requested the driver command
/// ([`JobIds::request`]) the job waits for it and fails with its error; otherwise it is done
/// at once. Either way its reply is `render`'s.
pub async fn submit_decided(
    ctx: &Ctx,
    call: &Call,
    meta: JobMeta,
    decide: impl Fn(&State, JobIds) -> Result<Vec<NewEvent>, ApiError>,
    render: impl FnOnce(&State) -> Result<Reply, ApiError> + Send + 'static,
) -> Result<Reply, ApiError> {
    let ids = JobIds {
        job: Uuid::new_v4(),
        command: Uuid::new_v4(),
    };
    let requested = AtomicBool::new(false);
    ctx.decide(ALLOCATION, |state| {
        let events = decide(state, ids)?;
        requested.store(
            events.iter().any(|e| e.id == ids.command),
            Ordering::Relaxed,
        );
        Ok(events)
    })
    .await?;
    let run = if requested.load(Ordering::Relaxed) {
        after_command(ids.command, render)
    } else {
        immediate(render)
    };
    submit_as(ctx, call, ids.job, meta.run(run)).await
}

/// [`submit_decided`] for a decision that is one driver request: the job waits for the
/// hypervisor to carry out the action `decide` returns.
pub async fn submit_request(
    ctx: &Ctx,
    call: &Call,
    meta: JobMeta,
    decide: impl Fn(&State) -> Result<EventBody, ApiError>,
    render: impl FnOnce(&State) -> Result<Reply, ApiError> + Send + 'static,
) -> Result<Reply, ApiError> {
    submit_decided(
        ctx,
        call,
        meta,
        |state, ids| Ok(vec![ids.request(call, decide(state)?)]),
        render,
    )
    .await
}

fn job_stream(job_id: Uuid) -> StreamId {
    StreamId::new("job", job_id).expect("\"job\" is a valid stream category")
}

/// Records the job, starts its task, and answers `jobid` (and `id`).
pub async fn submit(ctx: &Ctx, call: &Call, work: AsyncWork) -> Result<Reply, ApiError> {
    submit_as(ctx, call, Uuid::new_v4(), work).await
}

/// [`submit`] with a job id chosen beforehand: a driver command's request event is appended
/// (correlated with the job) before the job is recorded, so that a refused request (532,
/// 533, ...) records no job at all.
pub async fn submit_as(
    ctx: &Ctx,
    call: &Call,
    job_id: Uuid,
    work: AsyncWork,
) -> Result<Reply, ApiError> {
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

async fn execute(run: JobRun, work: JobTask, is_root_admin: bool) {
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

/// The work of a job that waits for a driver command already requested: the job succeeds with
/// `render`'s reply once the command succeeded, and fails with the driver's error text (534)
/// when it failed.
pub fn after_command(
    command_id: Uuid,
    render: impl FnOnce(&State) -> Result<Reply, ApiError> + Send + 'static,
) -> JobTask {
    Box::new(move |job: JobRun| {
        Box::pin(async move {
            await_command(&job.ctx, command_id).await?;
            let state = job.ctx.models.read();
            render(&state)
        })
    })
}

/// Waits until a driver command has its result in the read models.
pub async fn await_command(ctx: &Ctx, command_id: Uuid) -> Result<(), ApiError> {
    ctx.models
        .wait_until(|s| s.orchestration.results.get(&command_id).is_some())
        .await?;
    let state = ctx.models.read();
    match state
        .orchestration
        .results
        .get(&command_id)
        .map(|f| &f.result)
    {
        Some(CommandResult::Failed(error)) => Err(ApiError::unavailable(error.clone())),
        _ => Ok(()),
    }
}

/// Settles every job that was still running when the server last stopped. A job waiting for
/// a driver command is resumed: the orchestrator re-issues the command, and the job completes
/// from its result (rendered by `render`). Any other job's task died with the process, and
/// is failed: a job must never stay pending forever. Returns (resumed, failed).
pub async fn settle_interrupted(
    ctx: &Ctx,
    render: fn(&State, &JobRow) -> Result<Reply, ApiError>,
) -> Result<(usize, usize), ApiError> {
    type Unfinished = (Vec<(JobRow, Uuid)>, Vec<(Uuid, Uuid, Uuid)>);
    let (resumable, unfinished): Unfinished = {
        let state = ctx.models.read();
        let mut resumable = Vec::new();
        let mut unfinished = Vec::new();
        for job in state.jobs.unfinished() {
            match state.orchestration.command_of_job(job.job_id) {
                Some(command) => resumable.push((job.clone(), command)),
                None => unfinished.push((job.job_id, job.user_id, job.account_id)),
            }
        }
        (resumable, unfinished)
    };
    let resumed = resumable.len();
    for (job, command_id) in resumable {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let outcome = match await_command(&ctx, command_id).await {
                Ok(()) => render(&ctx.models.read(), &job),
                Err(e) => Err(e),
            };
            let completed = match outcome {
                Ok(reply) => AsyncJobCompleted {
                    job_id: job.job_id,
                    outcome: JobOutcome::Succeeded,
                    result_code: 0,
                    result: JsonDocument::new(&reply.into_job_result()),
                },
                Err(error) => failure(job.job_id, &error),
            };
            let actor = Actor::user(job.user_id, job.account_id);
            if let Err(e) = complete(&ctx, actor, completed).await {
                warn!(job_id = %job.job_id, error = %e, "could not record the end of a resumed job");
            } else {
                info!(job_id = %job.job_id, "completed a job resumed after a restart");
            }
        });
    }
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
    Ok((resumed, unfinished.len()))
}
