//! The delivery worker: the one place alerts leave the server. It reads the outbox from the
//! delivery model, attempts every due delivery (webhooks over HTTP, e-mail through SMTP), and
//! records each attempt as `ALERT.DELIVERY.DONE` or `ALERT.DELIVERY.FAILED` with an id derived
//! from (delivery, attempt), so a restart never records an attempt twice.
//!
//! The attempt is made before it is recorded: a crash in between makes the delivery pending
//! again after restart and the receiver sees the same idempotency key twice. Delivery is at
//! least once; receivers deduplicate by the key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use engine::clock::Clock;
use engine::event::billing::{
    AlertDelivered, AlertDeliveryFailed, AlertSinkDefined, AlertSinkKind,
};
use engine::event::{AlertDeliveryEvent, EventBody, NewEvent, StreamId};
use engine::secrets::MasterKeys;
use engine::store::{EventStore, ExpectedVersion, StoreError};
use engine::time::Timestamp;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use projections::ReadModels;
use tokio::task::JoinSet;
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    Delivery, attempt_event_id, backoff_ms, email, password_context, secret_context, signature,
};
use crate::task::TaskHandle;

/// How often the worker looks for due deliveries (a manual clock's jump is seen at the next look).
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Longest an attempt may take, connecting included, before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most deliveries attempted in one look, so one look stays bounded.
const BATCH: usize = 64;

/// The stream sink definitions and delivery attempts are recorded on.
pub const ALERT_DELIVERY_STREAM: &str = "alert_delivery";

/// The `User-Agent` of webhook requests.
const USER_AGENT: &str = concat!("Ledgerstack/", env!("CARGO_PKG_VERSION"));

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("url {0:?} is not a valid URL")]
    Invalid(String),
    /// Only plain `http://` is delivered to.
    #[error(
        "url {0:?}: only http:// webhook URLs are supported (https is not implemented; put a TLS-terminating proxy in front of the receiver)"
    )]
    Scheme(String),
    /// No host.
    #[error("url {0:?} has no host")]
    NoHost(String),
}

/// A webhook URL this worker can post to: `http://host[:port]/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl WebhookUrl {
    /// Parses and checks a webhook URL.
    pub fn parse(url: &str) -> Result<WebhookUrl, UrlError> {
        let uri: hyper::Uri = url
            .trim()
            .parse()
            .map_err(|_| UrlError::Invalid(url.to_owned()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(UrlError::Scheme(url.to_owned())),
            None => return Err(UrlError::Invalid(url.to_owned())),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_owned()));
        }
        Ok(WebhookUrl {
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// What one look found to do.
struct Due {
    deliveries: Vec<(Delivery, AlertSinkDefined)>,
    base_ms: i64,
    max_ms: i64,
}

/// Starts the worker. `keys` open the sinks' sealed secrets.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    clock: Arc<dyn Clock>,
    keys: MasterKeys,
) -> TaskHandle {
    let keys = Arc::new(keys);
    TaskHandle::spawn(move |mut stop_rx| async move {
        // Attempts recorded but perhaps not yet folded into the model: not attempted again.
        let mut recorded: HashMap<Uuid, u32> = HashMap::new();
        loop {
            let now = clock.now();
            let due = look(&models, now, &mut recorded);
            let mut attempts = JoinSet::new();
            for (delivery, sink) in due.deliveries {
                let keys = keys.clone();
                attempts.spawn(async move {
                    let outcome = attempt(&sink, &delivery, &keys, now).await;
                    (delivery, sink, outcome)
                });
            }
            let mut stopped = false;
            loop {
                let joined = tokio::select! {
                    _ = &mut stop_rx, if !stopped => { stopped = true; break; }
                    joined = attempts.join_next() => joined,
                };
                let Some(Ok((delivery, sink, outcome))) = joined else {
                    if attempts.is_empty() {
                        break;
                    }
                    continue;
                };
                let attempt = delivery.attempts + 1;
                let event = result_event(
                    &delivery,
                    &sink,
                    attempt,
                    outcome,
                    clock.now(),
                    due.base_ms,
                    due.max_ms,
                );
                match record(&*store, event).await {
                    Ok(()) => {
                        recorded.insert(delivery.key, attempt);
                    }
                    Err(e) => {
                        warn!(error = %e, key = %delivery.key, "could not record a delivery attempt")
                    }
                }
            }
            if stopped {
                attempts.abort_all();
                return;
            }
            tokio::select! {
                _ = &mut stop_rx => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    })
}

/// The due deliveries with their sinks, and the backoff settings; forgets recorded attempts
/// the model has caught up with.
fn look(models: &ReadModels, now: Timestamp, recorded: &mut HashMap<Uuid, u32>) -> Due {
    let state = models.read();
    let config = &state.configuration;
    let base_ms = config.global_i64("alert.delivery.backoff.base");
    let max_ms = config.global_i64("alert.delivery.backoff.max");
    let Some(model) = super::of(&state) else {
        return Due {
            deliveries: Vec::new(),
            base_ms,
            max_ms,
        };
    };
    recorded.retain(|key, attempt| {
        model
            .deliveries
            .get(key)
            .is_some_and(|d| d.attempts < *attempt && d.state == super::DeliveryState::Pending)
    });
    let deliveries = model
        .due(now, BATCH)
        .into_iter()
        .filter(|d| !recorded.contains_key(&d.key))
        .filter_map(|d| model.sink(d.sink_id).map(|s| (d.clone(), s.clone())))
        .collect();
    Due {
        deliveries,
        base_ms,
        max_ms,
    }
}

/// The event recording attempt `attempt`'s outcome.
fn result_event(
    delivery: &Delivery,
    sink: &AlertSinkDefined,
    attempt: u32,
    outcome: Result<(), String>,
    now: Timestamp,
    base_ms: i64,
    max_ms: i64,
) -> NewEvent {
    let notification_id = delivery.notification.notification_id;
    let body = match outcome {
        Ok(()) => {
            info!(key = %delivery.key, sink = %sink.name, attempt, "alert delivered");
            AlertDeliveryEvent::Done(AlertDelivered {
                notification_id,
                sink_id: sink.sink_id,
                idempotency_key: delivery.key,
                attempt,
            })
        }
        Err(error) => {
            let retry_at = (attempt < sink.max_attempts).then(|| {
                Timestamp::from_millis(
                    now.millis()
                        .saturating_add(backoff_ms(base_ms, max_ms, attempt)),
                )
            });
            warn!(key = %delivery.key, sink = %sink.name, attempt, %error, "alert delivery failed");
            AlertDeliveryEvent::Failed(AlertDeliveryFailed {
                notification_id,
                sink_id: sink.sink_id,
                idempotency_key: delivery.key,
                attempt,
                error,
                retry_at,
            })
        }
    };
    NewEvent::with_id(
        attempt_event_id(delivery.key, attempt),
        EventBody::AlertDelivery(body),
    )
}

/// Appends an attempt's event; one already recorded (by an earlier run) counts as recorded.
async fn record(store: &dyn EventStore, event: NewEvent) -> Result<(), String> {
    let stream = StreamId::singleton(ALERT_DELIVERY_STREAM).map_err(|e| e.to_string())?;
    match store
        .append(&stream, ExpectedVersion::Any, vec![event])
        .await
    {
        Ok(_) | Err(StoreError::IdConflict { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// One attempt to deliver to a sink, at `now`.
async fn attempt(
    sink: &AlertSinkDefined,
    delivery: &Delivery,
    keys: &MasterKeys,
    now: Timestamp,
) -> Result<(), String> {
    match sink.kind {
        AlertSinkKind::Webhook => {
            let url = sink
                .url
                .as_deref()
                .ok_or_else(|| "the sink has no URL".to_owned())?;
            let url = WebhookUrl::parse(url).map_err(|e| e.to_string())?;
            let secret = match &sink.secret {
                Some(sealed) => keys
                    .open_sealed(sealed, &secret_context(sink.sink_id))
                    .map_err(|e| format!("opening the sink's secret: {e}"))?,
                None => Vec::new(),
            };
            let body = delivery.notification.payload(delivery.key);
            let signature = signature(&secret, &body);
            match tokio::time::timeout(ATTEMPT_TIMEOUT, post(&url, delivery.key, &signature, body))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
            }
        }
        AlertSinkKind::Email => {
            let password = match &sink.smtp_password {
                Some(sealed) => {
                    let plain = keys
                        .open_sealed(sealed, &password_context(sink.sink_id))
                        .map_err(|e| format!("opening the sink's SMTP password: {e}"))?;
                    Some(
                        String::from_utf8(plain)
                            .map_err(|_| "the sink's SMTP password is not UTF-8".to_owned())?,
                    )
                }
                None => None,
            };
            // lettre's own timeout bounds each SMTP command; this one bounds the whole attempt.
            match tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                email::send(sink, delivery, password, now, ATTEMPT_TIMEOUT),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
            }
        }
    }
}

/// POSTs a signed payload; a 2xx answer is a delivery.
async fn post(url: &WebhookUrl, key: Uuid, signature: &str, body: Vec<u8>) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connecting to {}: {e}", url.authority))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", url.authority))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(url.path_and_query.as_str())
        .header(hyper::header::HOST, url.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header("Idempotency-Key", key.to_string())
        .header("X-Ledgerstack-Signature", signature)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender.send_request(request).await;
    driver.abort();
    let response = response.map_err(|e| format!("posting to {}: {e}", url.authority))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{} answered HTTP {}",
            url.authority,
            status.as_u16()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let url = WebhookUrl::parse("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 8080);
        assert_eq!(url.path_and_query, "/hook?x=1");
        assert_eq!(WebhookUrl::parse("http://example.com").unwrap().port, 80);
        assert!(matches!(
            WebhookUrl::parse("https://example.com/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("not a url"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("/relative"),
            Err(UrlError::Invalid(_))
        ));
    }
}
