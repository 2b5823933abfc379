//! Async jobs, as `queryAsyncJobResult` and `listAsyncJobs` show them.

use compact_str::CompactString;
use engine::event::operations::JobOutcome;
use engine::event::{AsyncJobEvent, EventBody, RecordedEvent};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::table::{PersistedTable, Table};

/// CloudStack's `jobstatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// 0: accepted, not finished.
    Pending,
    /// 1: finished successfully.
    Succeeded,
    /// 2: failed.
    Failed,
}

impl JobStatus {
    /// The number clients compare (`cmk` needs a JSON number).
    pub fn code(self) -> u8 {
        match self {
            JobStatus::Pending => 0,
            JobStatus::Succeeded => 1,
            JobStatus::Failed => 2,
        }
    }
}

/// One async job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// `jobid`.
    pub job_id: Uuid,
    /// The API command (`cmd`).
    pub command: CompactString,
    /// Caller's account.
    pub account_id: Uuid,
    /// Caller.
    pub user_id: Uuid,
    /// Caller's domain.
    pub domain_id: Uuid,
    /// `jobinstancetype`.
    pub instance_type: Option<CompactString>,
    /// `jobinstanceid`.
    pub instance_id: Option<Uuid>,
    /// Pending, succeeded or failed.
    pub status: JobStatus,
    /// `jobprocstatus`: 0 until the job starts running, then 1 (CloudStack reports progress
    /// steps the same way: a small integer, not a percentage).
    pub proc_status: u32,
    /// `jobresultcode`: 0 or the error code.
    pub result_code: u32,
    /// `jobresult` as canonical JSON text, once finished.
    pub result: Option<String>,
    /// When it was submitted.
    pub created: Timestamp,
    /// When it finished.
    pub completed: Option<Timestamp>,
}

/// The jobs read model.
#[derive(Debug)]
pub struct Jobs {
    /// Jobs by id.
    pub jobs: Table<Uuid, JobRow>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            jobs: Table::new("jobs"),
        }
    }
}

impl Jobs {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 1] {
        [&mut self.jobs]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent) {
        let at = event.envelope.occurred_at;
        match &*event.body {
            EventBody::AsyncJob(AsyncJobEvent::Submit(e)) => self.jobs.insert(
                e.job_id,
                JobRow {
                    job_id: e.job_id,
                    command: e.command.clone(),
                    account_id: e.account_id,
                    user_id: e.user_id,
                    domain_id: e.domain_id,
                    instance_type: e.instance_type.clone(),
                    instance_id: e.instance_id,
                    status: JobStatus::Pending,
                    proc_status: 0,
                    result_code: 0,
                    result: None,
                    created: at,
                    completed: None,
                },
            ),
            EventBody::AsyncJob(AsyncJobEvent::Start(e)) => {
                if let Some(job) = self.jobs.get_mut(&e.job_id) {
                    job.proc_status = 1;
                }
            }
            EventBody::AsyncJob(AsyncJobEvent::Complete(e)) => {
                if let Some(job) = self.jobs.get_mut(&e.job_id) {
                    job.status = match e.outcome {
                        JobOutcome::Succeeded => JobStatus::Succeeded,
                        JobOutcome::Failed => JobStatus::Failed,
                    };
                    job.result_code = e.result_code;
                    job.result = Some(e.result.as_str().to_owned());
                    job.completed = Some(at);
                }
            }
            _ => {}
        }
    }

    /// Jobs accepted but not finished: after a restart, the server fails these with a clear
    /// error rather than leaving them pending forever.
    pub fn unfinished(&self) -> Vec<&JobRow> {
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Pending)
            .collect()
    }
}
