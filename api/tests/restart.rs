//! Restart behaviour of a real server on a real data directory: a job left running by a
//! stopped server is failed with a clear error at the next start, never left pending; the
//! bootstrap happens once; read models resume from their checkpoint.

use std::path::Path;

use api::app::{self, ClockChoice, Running, ServerOptions};
use engine::event::operations::AsyncJobSubmitted;
use engine::event::{AsyncJobEvent, EventBody, EventState, NewEvent, StreamId};
use engine::store::ExpectedVersion;
use projections::jobs::JobStatus;
use uuid::Uuid;

async fn start(dir: &Path) -> Running {
    app::open(ServerOptions {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: ClockChoice::System,
        demo: false,
        rebuild_read_models: false,
        simulator: Default::default(),
    })
    .await
    .unwrap()
}

async fn stop(running: Running) {
    running.serve(async {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_by_a_restart_is_failed_not_left_pending() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    assert!(
        first.new_admin.is_some(),
        "the first start bootstraps the admin"
    );
    let (account, user, domain) = {
        let state = first.ctx.models.read();
        let user = state.identity.users.values().next().unwrap();
        (
            user.facts.account_id,
            user.facts.user_id,
            user.facts.domain_id,
        )
    };
    // A job accepted just before the process died: its SUBMIT is in the log, nothing else.
    let job_id = Uuid::new_v4();
    let submit = NewEvent::new(EventBody::AsyncJob(AsyncJobEvent::Submit(
        AsyncJobSubmitted {
            job_id,
            command: "deleteAccount".into(),
            account_id: account,
            user_id: user,
            domain_id: domain,
            instance_type: Some("Account".into()),
            instance_id: None,
            event_type: Some("ACCOUNT.DELETE".into()),
            description: "deleting account acme".into(),
        },
    )))
    .state(EventState::Scheduled);
    first
        .ctx
        .store
        .append(
            &StreamId::new("job", job_id).unwrap(),
            ExpectedVersion::NoStream,
            vec![submit],
        )
        .await
        .unwrap();
    stop(first).await;

    let second = start(dir.path()).await;
    assert!(second.new_admin.is_none(), "the admin is created only once");
    assert_eq!(second.interrupted_jobs, 1);
    {
        let state = second.ctx.models.read();
        let job = state.jobs.jobs.get(&job_id).unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.result_code, 530);
        assert!(
            job.result
                .as_deref()
                .unwrap()
                .contains("the server stopped while this job was running"),
            "{:?}",
            job.result
        );
    }
    stop(second).await;

    // A third start finds nothing left to fail: the failure was recorded once.
    let third = start(dir.path()).await;
    assert_eq!(third.interrupted_jobs, 0);
    stop(third).await;
}
