//! The usage scheduler: the one place the wall clock reaches usage. At
//! `usage.stats.job.exec.time` in `usage.execution.timezone` (and, for ranges shorter than a
//! day, every range minutes after it) it appends `USAGE.CLOSE` with the run's instant as
//! `until`; the usage projection closes the periods that ended by then.
//!
//! The event's id is derived from the run instant, so two nodes, or a restart, appending the
//! same run append it once (DESIGN.md invariant 9).

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;
use engine::clock::Clock;
use engine::event::operations::UsagePeriodsClosed;
use engine::event::{EventBody, NewEvent, StreamId, UsageEvent};
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::ReadModels;
use tracing::{info, warn};
use uuid::Uuid;

use crate::period::parse_zone;
use crate::task::TaskHandle;

/// How often the scheduler looks at the clock (a manual clock's jump is seen at the next look).
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The stream usage runs are recorded on.
pub const USAGE_STREAM: &str = "usage";

/// Fixed namespace of run ids: `uuid5(namespace, "usage.close:<until ms>")`.
const RUN_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6c, 0x65, 0x64, 0x67, 0x65, 0x72, 0x75, 0x73, 0x61, 0x67, 0x65, 0x72, 0x75, 0x6e, 0x73, 0x31,
]);

/// When the usage job runs: its time of day, in its zone, and the aggregation range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTimes {
    /// `usage.stats.job.exec.time`.
    pub time_of_day: NaiveTime,
    /// `usage.execution.timezone`.
    pub zone: Tz,
    /// `usage.stats.job.aggregation.range`: shorter than a day, the job also runs every range
    /// minutes after its time of day.
    pub range_minutes: u32,
}

impl RunTimes {
    /// The latest run instant at or before `now`.
    pub fn latest_run(&self, now: Timestamp) -> Timestamp {
        let local_date = now.to_datetime().with_timezone(&self.zone).date_naive();
        let mut day = local_date;
        // Today's run may be later than now: then yesterday's is the latest (two steps back
        // covers a zone offset crossing the date line).
        for _ in 0..3 {
            let run = self.daily_run(day);
            if run <= now {
                if self.range_minutes >= 1440 {
                    return run;
                }
                let step = i64::from(self.range_minutes) * 60_000;
                let steps = (now.millis() - run.millis()) / step;
                return Timestamp::from_millis(run.millis() + steps * step);
            }
            day = day.pred_opt().unwrap_or(day);
        }
        now
    }

    fn daily_run(&self, day: chrono::NaiveDate) -> Timestamp {
        let local = day.and_time(self.time_of_day);
        match self.zone.from_local_datetime(&local).earliest() {
            Some(at) => Timestamp::from(at.with_timezone(&chrono::Utc)),
            // In a gap: the time after it, an hour on.
            None => self
                .zone
                .from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
                .map_or(Timestamp::EPOCH, |at| {
                    Timestamp::from(at.with_timezone(&chrono::Utc))
                }),
        }
    }
}

/// The id of the run closing periods up to `until`.
pub fn run_id(until: Timestamp) -> Uuid {
    Uuid::new_v5(
        &RUN_NAMESPACE,
        format!("usage.close:{}", until.millis()).as_bytes(),
    )
}

/// The `USAGE.CLOSE` event of a scheduled run.
pub fn close_event(until: Timestamp) -> NewEvent {
    NewEvent::with_id(
        run_id(until),
        EventBody::Usage(UsageEvent::Close(UsagePeriodsClosed {
            until,
            recompute_from: None,
        })),
    )
}

/// Starts the scheduler.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    clock: Arc<dyn Clock>,
) -> TaskHandle {
    TaskHandle::spawn(move |mut stop_rx| async move {
        let mut last_appended: Option<Timestamp> = None;
        loop {
            let due = {
                let state = models.read();
                let times = run_times(&state);
                let latest = times.latest_run(clock.now());
                let closed =
                    crate::model::of(&state).and_then(|usage| usage.ledger.status().closed_until);
                let done = closed.max(last_appended);
                (done.is_none_or(|d| latest > d)).then_some(latest)
            };
            if let Some(until) = due {
                match append_close(&*store, until).await {
                    Ok(()) => {
                        info!(until = %until, "usage run: periods closed");
                        last_appended = Some(until);
                    }
                    Err(e) => {
                        warn!(error = %e, "could not record the usage run");
                        crate::alerts::watcher::run_failed(&*store, &models, until, &e).await;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop_rx => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    })
}

async fn append_close(store: &dyn EventStore, until: Timestamp) -> Result<(), String> {
    let stream = StreamId::singleton(USAGE_STREAM).map_err(|e| e.to_string())?;
    store
        .append(&stream, ExpectedVersion::Any, vec![close_event(until)])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The run times the settings give.
pub fn run_times(state: &projections::State) -> RunTimes {
    let config = &state.configuration;
    let time_of_day = config
        .global("usage.stats.job.exec.time")
        .and_then(|v| NaiveTime::parse_from_str(&v, "%H:%M").ok())
        .unwrap_or(NaiveTime::MIN);
    let zone = config
        .global("usage.execution.timezone")
        .and_then(|v| parse_zone(&v).ok())
        .unwrap_or(chrono_tz::GMT);
    let range_minutes = u32::try_from(config.global_i64("usage.stats.job.aggregation.range"))
        .unwrap_or(1440)
        .max(1);
    RunTimes {
        time_of_day,
        zone,
        range_minutes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_runs_at_the_execution_time_in_its_zone() {
        let times = RunTimes {
            time_of_day: NaiveTime::from_hms_opt(0, 15, 0).unwrap(),
            zone: chrono_tz::America::New_York,
            range_minutes: 1440,
        };
        assert_eq!(
            times.latest_run(at("2026-03-09T12:00:00Z")),
            at("2026-03-09T04:15:00Z")
        );
        assert_eq!(
            times.latest_run(at("2026-03-09T04:14:00Z")),
            at("2026-03-08T05:15:00Z")
        );
    }

    #[test]
    fn sub_daily_ranges_run_every_range_after_the_execution_time() {
        let times = RunTimes {
            time_of_day: NaiveTime::from_hms_opt(0, 15, 0).unwrap(),
            zone: chrono_tz::GMT,
            range_minutes: 60,
        };
        assert_eq!(
            times.latest_run(at("2026-03-09T12:20:00Z")),
            at("2026-03-09T12:15:00Z")
        );
        assert_eq!(
            times.latest_run(at("2026-03-09T00:10:00Z")),
            at("2026-03-08T23:15:00Z")
        );
    }

    #[test]
    fn run_ids_are_derived_from_the_instant() {
        let until = at("2026-03-09T00:15:00Z");
        assert_eq!(run_id(until), run_id(until));
        assert_ne!(run_id(until), run_id(at("2026-03-10T00:15:00Z")));
    }
}
