//! The operator endpoints: `/metrics` in Prometheus' text exposition format (version 0.0.4),
//! `/healthz` and `/readyz` (`docs/operators.md` lists every metric).
//!
//! The exposition is written by hand, without a metrics crate: the figures already live where
//! they are made (the store's [`WriterStats`], the orchestrator's [`DriverStats`], the read
//! models), so a scrape only reads atomics and counts rows. Only what nothing else keeps, the
//! API request counts, is counted here. A scrape appends nothing and takes no write lock.
//!
//! The endpoints are unauthenticated, like any Prometheus target: who may reach them is decided
//! by the listen address and the network in front of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State as AxumState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::store::embedded::histogram::HistogramSnapshot;
use engine::store::embedded::{EmbeddedStore, WriterStats};
use projections::jobs::JobStatus;
use projections::orchestrator::DriverStats;
use rust_decimal::Decimal;

use crate::context::Ctx;
use crate::registry;

/// The `command` label of a request naming no command the server knows, so that arbitrary
/// strings from the network cannot grow the label set without bound.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The read models the projection runner folds, named as `/metrics` labels them. They are all
/// folded in one pass over the log (the usage models right after the others), so they share one
/// position; each gets its own series so that dashboards need no change if that ever splits.
const MODELS: &[&str] = &[
    "identity",
    "jobs",
    "events",
    "configuration",
    "catalog",
    "infrastructure",
    "compute",
    "storage",
    "network",
    "orchestration",
    "usage",
    "usage_thresholds",
    "alerts",
    "alert_delivery",
];

/// The counters `/metrics` shows that no read model holds.
pub struct Metrics {
    /// The log, for its group-commit statistics (kept as the concrete store: the
    /// [`engine::store::EventStore`] trait has no statistics).
    store: EmbeddedStore,
    /// Driver command latency and failures, kept by the orchestrator.
    driver: Arc<DriverStats>,
    /// `/client/api` requests by command label and HTTP status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The metrics label of a request's `command` parameter: the command's own name when the server
/// knows it (or `login`/`logout`), [`UNKNOWN_COMMAND`] otherwise.
pub fn command_label(command: Option<&str>) -> &'static str {
    match command {
        Some("login") => "login",
        Some("logout") => "logout",
        Some(name) => registry::find(name).map_or(UNKNOWN_COMMAND, |spec| spec.name),
        None => UNKNOWN_COMMAND,
    }
}

impl Metrics {
    /// Metrics over this store's statistics and the orchestrator's.
    pub fn new(store: EmbeddedStore, driver: Arc<DriverStats>) -> Self {
        Metrics {
            store,
            driver,
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one answered `/client/api` request.
    pub fn count_request(&self, command: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((command, status))
            .or_insert(0) += 1;
    }

    fn store_stats(&self) -> &WriterStats {
        self.store.stats()
    }
}

/// How far the read models trail the log.
struct Progress {
    /// Last position the read models applied.
    applied: u64,
    /// Last position in the log.
    head: u64,
}

impl Progress {
    async fn of(ctx: &Ctx) -> Result<Progress, engine::store::StoreError> {
        // The applied position first: the head read after it can only be further on, so the
        // lag is never understated.
        let applied = ctx.models.applied().0;
        let head = ctx.store.head().await?.0;
        Ok(Progress { applied, head })
    }

    fn behind(&self) -> u64 {
        self.head.saturating_sub(self.applied)
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(AxumState(ctx): AxumState<Ctx>) -> Response {
    let Some(metrics) = ctx.metrics.clone() else {
        return (StatusCode::NOT_FOUND, "no metrics: not a serving server\n").into_response();
    };
    match Progress::of(&ctx).await {
        Ok(progress) => {
            let mut response = (StatusCode::OK, render(&ctx, &metrics, &progress)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the log head: {e}\n"),
        )
            .into_response(),
    }
}

/// `GET /healthz`: the process is up and serving HTTP.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once the read models have applied everything in the log, else 503; the
/// body says how far behind they are.
pub(crate) async fn readyz(AxumState(ctx): AxumState<Ctx>) -> Response {
    let (status, body) = match Progress::of(&ctx).await {
        Ok(p) => {
            let ready = p.behind() == 0;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                serde_json::json!({
                    "ready": ready,
                    "applied": p.applied,
                    "head": p.head,
                    "behind": p.behind(),
                }),
            )
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ready": false, "error": e.to_string() }),
        ),
    };
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The whole exposition.
fn render(ctx: &Ctx, metrics: &Metrics, progress: &Progress) -> String {
    let mut out = Exposition::default();
    let stats = metrics.store_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);

    out.family(
        "ledgerstack_appends_total",
        "counter",
        "Append requests the event log answered since the server started.",
    );
    out.sample("ledgerstack_appends_total", &[], load(&stats.appends));
    out.family(
        "ledgerstack_appended_events_total",
        "counter",
        "Events written to the event log since the server started.",
    );
    out.sample(
        "ledgerstack_appended_events_total",
        &[],
        load(&stats.events),
    );
    out.family(
        "ledgerstack_fsyncs_total",
        "counter",
        "fdatasync calls that committed events since the server started.",
    );
    out.sample("ledgerstack_fsyncs_total", &[], load(&stats.fsyncs));
    out.histogram(
        "ledgerstack_append_duration_seconds",
        "Time from an append's submission to its durable acknowledgement.",
        &[],
        &stats.append_latency_micros.snapshot(),
        6,
    );
    out.histogram(
        "ledgerstack_fsync_batch_events",
        "Events made durable by one fdatasync (group commit).",
        &[],
        &stats.fsync_batch_events.snapshot(),
        0,
    );

    out.family(
        "ledgerstack_log_head_position",
        "gauge",
        "Position of the last event in the log.",
    );
    out.sample("ledgerstack_log_head_position", &[], progress.head);
    out.family(
        "ledgerstack_projection_position",
        "gauge",
        "Last log position the read model has applied.",
    );
    for model in MODELS {
        out.sample(
            "ledgerstack_projection_position",
            &[("model", model)],
            progress.applied,
        );
    }
    out.family(
        "ledgerstack_projection_lag_events",
        "gauge",
        "Events in the log the read model has not applied yet.",
    );
    for model in MODELS {
        out.sample(
            "ledgerstack_projection_lag_events",
            &[("model", model)],
            progress.behind(),
        );
    }

    let now_ms = ctx.clock.now().millis();
    let (jobs, closed_until, alerts) = {
        let state = ctx.models.read();
        let mut jobs = [0u64; 3];
        for job in state.jobs.jobs.values() {
            jobs[usize::from(job.status.code())] += 1;
        }
        let closed_until = usage::model::of(&state)
            .and_then(|u| u.ledger.status().closed_until)
            .map(|t| t.millis());
        let mut alerts: BTreeMap<u16, u64> = BTreeMap::new();
        if let Some(model) = usage::alerts::of(&state) {
            for alert in model.alerts.values() {
                *alerts.entry(alert.alert_type).or_insert(0) += 1;
            }
        }
        (jobs, closed_until, alerts)
    };
    out.family(
        "ledgerstack_async_jobs",
        "gauge",
        "Async jobs in the read models by status (pending, succeeded, failed).",
    );
    for status in [JobStatus::Pending, JobStatus::Succeeded, JobStatus::Failed] {
        let label = match status {
            JobStatus::Pending => "pending",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        };
        out.sample(
            "ledgerstack_async_jobs",
            &[("status", label)],
            jobs[usize::from(status.code())],
        );
    }

    out.family(
        "ledgerstack_driver_command_duration_seconds",
        "histogram",
        "Time a driver took to answer a command, by command (agent name).",
    );
    let driver = metrics.driver.snapshot();
    for (command, figures) in &driver {
        out.histogram_samples(
            "ledgerstack_driver_command_duration_seconds",
            &[("command", command)],
            &figures.latency_micros.snapshot(),
            6,
        );
    }
    out.family(
        "ledgerstack_driver_command_failures_total",
        "counter",
        "Driver commands answered with a failure since the server started, by command.",
    );
    for (command, figures) in &driver {
        out.sample(
            "ledgerstack_driver_command_failures_total",
            &[("command", command)],
            load(&figures.failures),
        );
    }

    out.family(
        "ledgerstack_usage_lag_seconds",
        "gauge",
        "How far the end of the last closed usage period trails the server clock.",
    );
    if let Some(closed_until) = closed_until {
        let lag_ms = now_ms.saturating_sub(closed_until).max(0);
        out.sample(
            "ledgerstack_usage_lag_seconds",
            &[],
            Decimal::new(lag_ms, 3).normalize(),
        );
    }

    out.family(
        "ledgerstack_alerts_raised_total",
        "counter",
        "Alerts raised since the log began, by alert type number.",
    );
    for (alert_type, count) in alerts {
        out.sample(
            "ledgerstack_alerts_raised_total",
            &[("type", &alert_type.to_string())],
            count,
        );
    }

    out.family(
        "ledgerstack_api_requests_total",
        "counter",
        "/client/api requests answered since the server started, by command and HTTP status.",
    );
    let requests: Vec<_> = metrics
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(&(command, code), &count)| (command, code, count))
        .collect();
    for (command, code, count) in requests {
        out.sample(
            "ledgerstack_api_requests_total",
            &[("command", command), ("code", &code.to_string())],
            count,
        );
    }
    out.text
}

/// Text in the exposition format.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines of a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A histogram family with one series.
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        snapshot: &HistogramSnapshot,
        scale: u32,
    ) {
        self.family(name, "histogram", help);
        self.histogram_samples(name, labels, snapshot, scale);
    }

    /// The bucket, sum and count lines of one histogram series whose observations are whole
    /// units of `10^-scale` (scale 6: microseconds shown as seconds).
    fn histogram_samples(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        snapshot: &HistogramSnapshot,
        scale: u32,
    ) {
        let in_unit = |v: u64| (Decimal::from(v) / Decimal::from(10u64.pow(scale))).normalize();
        let bucket = format!("{name}_bucket");
        for (bound, count) in snapshot.bounds.iter().zip(&snapshot.cumulative) {
            let le = in_unit(*bound).to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, count);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, snapshot.count);
        self.sample(&format!("{name}_sum"), labels, in_unit(snapshot.sum));
        self.sample(&format!("{name}_count"), labels, snapshot.count);
    }
}

/// `# HELP` text escapes backslashes and line feeds.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslashes, double quotes and line feeds.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::embedded::histogram::Histogram;

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let h = Histogram::new(&[500, 1_000_000]);
        h.observe(250);
        h.observe(2_000_000);
        let mut out = Exposition::default();
        out.histogram_samples("x_seconds", &[("command", "a\"b")], &h.snapshot(), 6);
        assert_eq!(
            out.text,
            "x_seconds_bucket{command=\"a\\\"b\",le=\"0.0005\"} 1\n\
             x_seconds_bucket{command=\"a\\\"b\",le=\"1\"} 1\n\
             x_seconds_bucket{command=\"a\\\"b\",le=\"+Inf\"} 2\n\
             x_seconds_sum{command=\"a\\\"b\"} 2.00025\n\
             x_seconds_count{command=\"a\\\"b\"} 2\n"
        );
    }

    #[test]
    fn unknown_commands_share_one_label() {
        assert_eq!(command_label(Some("listZones")), "listZones");
        assert_eq!(command_label(Some("no such command")), UNKNOWN_COMMAND);
        assert_eq!(command_label(None), UNKNOWN_COMMAND);
    }
}
