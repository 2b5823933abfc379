//! The operator endpoints over real HTTP against a real demo server: `/metrics` parses as
//! Prometheus' text format (a small parser below checks every line), every documented family is
//! there, and the counters move with real traffic (a few API calls, one VM deploy);
//! `/healthz` answers `ok`; `/readyz` answers 200 once the read models have caught up.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use api::bootstrap::demo_id;
use rust_decimal::Decimal;
use support::Server;

/// One sample line: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: Decimal,
}

/// A parsed exposition: the `# TYPE` of each family, which families have `# HELP`, samples.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample with this name and these labels (a subset is enough).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<Decimal> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(matching.len() <= 1, "{name} {labels:?} is ambiguous");
        matching.first().map(|s| s.value)
    }

    /// Sum over every sample of `name`.
    fn total(&self, name: &str) -> Decimal {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: histograms name their series `_bucket`, `_sum`, `_count`.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).map(String::as_str) == Some("histogram")
        {
            return base;
        }
    }
    name
}

/// Parses the text exposition format 0.0.4, panicking on anything malformed: every sample
/// follows the `# TYPE` of its family, families are contiguous, label values are quoted and
/// escaped, values are numbers.
fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let keyword = words.next().unwrap();
            let name = words
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            let tail = words
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            assert!(is_metric_name(name), "bad metric name in {line}");
            match keyword {
                "HELP" => {
                    assert!(!tail.is_empty(), "empty help: {line}");
                    out.helps.insert(name.to_owned());
                }
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                        "bad type: {line}"
                    );
                    assert!(
                        out.types.insert(name.to_owned(), tail.to_owned()).is_none(),
                        "second TYPE for {name}"
                    );
                    if let Some(previous) = current.replace(name.to_owned()) {
                        finished.insert(previous);
                    }
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: Decimal = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line}: {e}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(is_metric_name(name), "bad metric name in {line}");
        let family = family_of(name, &out.types);
        assert!(
            out.types.contains_key(family),
            "sample before its TYPE: {line}"
        );
        assert_eq!(
            current.as_deref(),
            Some(family),
            "family {family} is not contiguous: {line}"
        );
        assert!(!finished.contains(family), "family {family} split: {line}");
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// `a="x",b="y\"z"` into a map, unescaping `\\`, `\"` and `\n`.
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line}"));
        assert!(is_metric_name(name), "bad label name in {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice in {line}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// Every histogram series has non-decreasing buckets ending in `+Inf` equal to its count.
fn check_histograms(exposition: &Exposition) {
    for (family, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(String, Decimal)>> =
            BTreeMap::new();
        for s in &exposition.samples {
            if s.name == format!("{family}_bucket") {
                let mut key = s.labels.clone();
                let le = key.remove("le").expect("a bucket has le");
                series.entry(key).or_default().push((le, s.value));
            }
        }
        for (labels, buckets) in series {
            let counts: Vec<Decimal> = buckets.iter().map(|(_, v)| *v).collect();
            assert!(
                counts.windows(2).all(|w| w[0] <= w[1]),
                "{family} {labels:?} buckets decrease: {buckets:?}"
            );
            let (last_le, last) = buckets.last().unwrap();
            assert_eq!(last_le, "+Inf", "{family} {labels:?} does not end in +Inf");
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                exposition.value(&format!("{family}_count"), &pairs),
                Some(*last),
                "{family} {labels:?}: +Inf bucket is not the count"
            );
            assert!(exposition.value(&format!("{family}_sum"), &pairs).is_some());
        }
    }
}

/// A plain GET on `path`: the status, the content type and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let reply = support::http_get(addr, path.to_owned()).await;
    (reply.status, reply.content_type, reply.body)
}

async fn scrape(server: &Server) -> Exposition {
    let (status, content_type, body) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let exposition = parse(&body);
    check_histograms(&exposition);
    exposition
}

/// Every family `docs/operators.md` documents, with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("ledgerstack_appends_total", "counter"),
    ("ledgerstack_appended_events_total", "counter"),
    ("ledgerstack_fsyncs_total", "counter"),
    ("ledgerstack_append_duration_seconds", "histogram"),
    ("ledgerstack_fsync_batch_events", "histogram"),
    ("ledgerstack_log_head_position", "gauge"),
    ("ledgerstack_projection_position", "gauge"),
    ("ledgerstack_projection_lag_events", "gauge"),
    ("ledgerstack_async_jobs", "gauge"),
    ("ledgerstack_driver_command_duration_seconds", "histogram"),
    ("ledgerstack_driver_command_failures_total", "counter"),
    ("ledgerstack_usage_lag_seconds", "gauge"),
    ("ledgerstack_alerts_raised_total", "counter"),
    ("ledgerstack_api_requests_total", "counter"),
];

/// `/readyz` until it answers 200 (the runner applies what the last append wrote right after
/// it; the API itself waits for that before answering, so this takes at most a few tries).
async fn ready(server: &Server) -> serde_json::Value {
    loop {
        let (status, _, body) = get(server.addr, "/readyz").await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        match status {
            200 => return json,
            503 => {
                assert_eq!(json["ready"], false, "{body}");
                assert!(json["behind"].as_u64().unwrap() > 0, "{body}");
                let head = engine::event::Position(json["head"].as_u64().unwrap());
                server.ctx.models.wait_for(head).await.unwrap();
            }
            other => panic!("/readyz answered {other}: {body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_over_http() {
    let server = Server::start_demo().await;

    let (status, _, body) = get(server.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let ready_body = ready(&server).await;
    assert_eq!(ready_body["ready"], true);
    assert_eq!(ready_body["behind"], 0);
    assert_eq!(ready_body["applied"], ready_body["head"]);

    let before = scrape(&server).await;
    for (name, kind) in FAMILIES {
        assert_eq!(
            before.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name} missing or mistyped"
        );
        assert!(before.helps.contains(*name), "{name} has no HELP");
    }
    // The demo seeding appended through the store.
    assert!(before.value("ledgerstack_appends_total", &[]).unwrap() > Decimal::ZERO);
    let head = before.value("ledgerstack_log_head_position", &[]).unwrap();
    assert_eq!(
        before.value("ledgerstack_projection_position", &[("model", "usage")]),
        Some(head)
    );
    assert_eq!(
        before.value("ledgerstack_projection_lag_events", &[("model", "compute")]),
        Some(Decimal::ZERO)
    );
    let listed = |e: &Exposition, code: &str| {
        e.value(
            "ledgerstack_api_requests_total",
            &[("command", "listZones"), ("code", code)],
        )
        .unwrap_or(Decimal::ZERO)
    };

    // Real traffic: two good lists, one refused with 431, one unknown command, one append.
    for _ in 0..2 {
        let (status, _) = server
            .signed_get(&[("command", "listZones"), ("response", "json")])
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = server
        .signed_get(&[
            ("command", "listZones"),
            ("id", "not-a-uuid"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 431);
    let (status, _) = server
        .signed_get(&[("command", "noSuchCommand"), ("response", "json")])
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .signed_get(&[
            ("command", "createDomain"),
            ("name", "metrics-test"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");

    // And a VM: an async job and hypervisor commands.
    let template = server.featured_template().await;
    let (zone, small) = (demo_id("zone").to_string(), demo_id("small").to_string());
    let (status, body) = server
        .signed_get(&[
            ("command", "deployVirtualMachine"),
            ("zoneid", &zone),
            ("templateid", &template),
            ("serviceofferingid", &small),
            ("name", "metrics-vm"),
            ("response", "json"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let job_id = body["deployvirtualmachineresponse"]["jobid"]
        .as_str()
        .expect("a job id")
        .to_owned();
    assert_eq!(server.wait_job(&job_id).await.0, 1, "the deploy succeeds");
    ready(&server).await;

    let after = scrape(&server).await;
    assert_eq!(listed(&after, "200") - listed(&before, "200"), Decimal::TWO);
    assert_eq!(listed(&after, "431") - listed(&before, "431"), Decimal::ONE);
    assert!(
        after
            .value(
                "ledgerstack_api_requests_total",
                &[("command", "unknown"), ("code", "401")]
            )
            .is_some_and(|v| v >= Decimal::ONE)
    );
    assert!(
        after
            .value(
                "ledgerstack_api_requests_total",
                &[("command", "createDomain"), ("code", "200")]
            )
            .is_some_and(|v| v >= Decimal::ONE)
    );
    for counter in [
        "ledgerstack_appends_total",
        "ledgerstack_appended_events_total",
        "ledgerstack_fsyncs_total",
        "ledgerstack_append_duration_seconds_count",
        "ledgerstack_fsync_batch_events_count",
        "ledgerstack_log_head_position",
    ] {
        assert!(
            after.total(counter) > before.total(counter),
            "{counter} did not move"
        );
    }
    // Events appended equal the events the batches covered.
    assert_eq!(
        after.value("ledgerstack_appended_events_total", &[]),
        after.value("ledgerstack_fsync_batch_events_sum", &[])
    );
    assert!(
        after
            .value("ledgerstack_async_jobs", &[("status", "succeeded")])
            .unwrap()
            > before
                .value("ledgerstack_async_jobs", &[("status", "succeeded")])
                .unwrap()
    );
    assert!(
        after
            .value(
                "ledgerstack_driver_command_duration_seconds_count",
                &[("command", "StartCommand")]
            )
            .is_some_and(|v| v >= Decimal::ONE),
        "no StartCommand latency"
    );
    assert_eq!(
        after.value(
            "ledgerstack_driver_command_failures_total",
            &[("command", "StartCommand")]
        ),
        Some(Decimal::ZERO)
    );
    // Caught up again: every model at the head.
    let head = after.value("ledgerstack_log_head_position", &[]).unwrap();
    assert!(
        after
            .samples
            .iter()
            .filter(|s| s.name == "ledgerstack_projection_position")
            .all(|s| s.value <= head)
    );

    server.stop().await;
}

#[test]
fn the_parser_refuses_malformed_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 3\n";
    assert_eq!(parse(good).samples[0].labels["x"], "q\"");
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total{x=\"1} 2\n",
        "# TYPE a_total counter\na_total nope\n",
        "# TYPE a counter\n# TYPE b counter\na 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad}");
    }
}
