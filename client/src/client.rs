//! The client: signs a command's parameters, sends them over HTTP, turns the JSON envelope or
//! error envelope into a value or a [`ClientError`], and waits for async jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::error::ClientError;
use crate::signing;

/// How long one HTTP exchange (connect, send, read the whole body) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The first pause between two `queryAsyncJobResult` polls; it doubles up to
/// [`MAX_POLL_INTERVAL`], so quick jobs return quickly and slow ones cost few requests.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause between two polls (Libcloud's fixed interval).
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Parameters the client sets itself; a user giving one would break the signature or the
/// response parsing.
const RESERVED: &[&str] = &[
    "command",
    "apikey",
    "signature",
    "response",
    "signatureversion",
    "expires",
];

/// The `expires` of a URL valid for `seconds` from now (for [`Client::signed_url`]).
pub fn expires_in(seconds: u32) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(i64::from(seconds))
}

/// How a request travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Parameters in the query string (what `cs` and `cmk` do by default).
    Get,
    /// Parameters in an `application/x-www-form-urlencoded` body, for values too long for a URL
    /// (user data, certificates).
    Post,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A sync command's response object, or an async command's (`jobid`, maybe `id`) when not
    /// waiting.
    Response(Value),
    /// An async command waited for: the finished job's `jobresult`.
    Job {
        /// The job.
        job_id: String,
        /// `jobresult` (e.g. `{"virtualmachine":{...}}` or `{"success":true}`).
        result: Value,
    },
}

impl Outcome {
    /// The value to print: the response object or the job result.
    pub fn value(&self) -> &Value {
        match self {
            Outcome::Response(value) => value,
            Outcome::Job { result, .. } => result,
        }
    }
}

/// Where requests go: an `http://` endpoint split into what a TCP connection and an HTTP/1.1
/// request need.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The endpoint as configured, for messages and signed URLs.
    url: String,
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// The path of the API (`/client/api`).
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::Endpoint {
            endpoint: url.to_owned(),
            reason,
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| invalid("not a URL (expected http://HOST:PORT/client/api)"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https is not supported; use http")),
            _ => return Err(invalid("not an http:// URL")),
        }
        if uri.query().is_some() {
            return Err(invalid("the endpoint must not carry a query string"));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = match uri.path() {
            "" | "/" => "/client/api".to_owned(),
            path => path.to_owned(),
        };
        Ok(Endpoint {
            url: format!(
                "http://{}{path}",
                uri.authority().map_or(host, |a| a.as_str())
            ),
            authority: if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            },
            path,
        })
    }
}

/// A CloudStack API client for one endpoint and one key pair.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    api_key: String,
    secret_key: String,
    method: Method,
}

impl Client {
    /// A client for `settings`, sending requests with `method`.
    pub fn new(settings: &Settings, method: Method) -> Result<Self, ClientError> {
        Ok(Client {
            endpoint: Endpoint::parse(&settings.endpoint)?,
            api_key: settings.api_key.clone(),
            secret_key: settings.secret_key.clone(),
            method,
        })
    }

    /// The complete, signed parameter list of `command` with `params`: `command`, `apiKey`,
    /// `response=json`, with `expires` also `signatureVersion=3` and `expires` (spec/api.md
    /// "Expiry"), then `signature`. A repeated name keeps its last value, as the server does,
    /// so that both sides sign the same set. Reserved names are refused.
    pub fn signed_params(
        &self,
        command: &str,
        params: &[(String, String)],
        expires: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, String)>, ClientError> {
        let mut all: Vec<(String, String)> = vec![
            ("command".into(), command.to_owned()),
            ("apiKey".into(), self.api_key.clone()),
            ("response".into(), "json".into()),
        ];
        if let Some(expires) = expires {
            all.push(("signatureVersion".into(), "3".into()));
            all.push((
                "expires".into(),
                expires.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
            ));
        }
        for (name, value) in params {
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ClientError::Parameter {
                    name: name.clone(),
                    reason: "the client sets it itself",
                });
            }
            match all.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => all.push((name.clone(), value.clone())),
            }
        }
        let signature = signing::sign(
            all.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &self.secret_key,
        );
        all.push(("signature".into(), signature));
        Ok(all)
    }

    /// A signed GET URL of `command` with `params` (see [`Client::signed_params`]).
    pub fn signed_url(
        &self,
        command: &str,
        params: &[(String, String)],
        expires: Option<DateTime<Utc>>,
    ) -> Result<String, ClientError> {
        let all = self.signed_params(command, params, expires)?;
        Ok(format!(
            "{}?{}",
            self.endpoint.url,
            signing::query_string(all.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        ))
    }

    /// Sends one signed request and returns the response object (the value of the envelope's
    /// single `<cmd>response` key). An error envelope becomes [`ClientError::Api`].
    pub async fn request(
        &self,
        command: &str,
        params: &[(String, String)],
    ) -> Result<Value, ClientError> {
        let all = self.signed_params(command, params, None)?;
        let encoded = signing::query_string(all.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let (status, body) =
            match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(encoded)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(self.transport(format!(
                        "no complete answer within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    )));
                }
            };
        parse_envelope(&self.endpoint.url, status, &body)
    }

    /// Runs `command`: sends it and, when the answer is an async job (a `jobid` without a
    /// `jobstatus`) and `wait` is given, polls `queryAsyncJobResult` until the job finishes or
    /// `wait` has passed.
    pub async fn call(
        &self,
        command: &str,
        params: &[(String, String)],
        wait: Option<Duration>,
    ) -> Result<Outcome, ClientError> {
        let response = self.request(command, params).await?;
        let job_id = match (response.get("jobid"), response.get("jobstatus")) {
            (Some(Value::String(job_id)), None) => job_id.clone(),
            _ => return Ok(Outcome::Response(response)),
        };
        match wait {
            Some(timeout) => {
                let result = self.wait_for_job(&job_id, timeout).await?;
                Ok(Outcome::Job { job_id, result })
            }
            None => Ok(Outcome::Response(response)),
        }
    }

    /// Polls `queryAsyncJobResult` until job `job_id` is done (its `jobresult`) or failed
    /// ([`ClientError::JobFailed`]), or `timeout` has passed ([`ClientError::JobTimeout`]).
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let started = tokio::time::Instant::now();
        let mut interval = FIRST_POLL_INTERVAL;
        let params = [("jobid".to_owned(), job_id.to_owned())];
        loop {
            let job = self.request("queryAsyncJobResult", &params).await?;
            match job.get("jobstatus").and_then(Value::as_u64) {
                Some(0) => {}
                Some(1) => return Ok(job.get("jobresult").cloned().unwrap_or(Value::Null)),
                Some(2) => {
                    let result = job.get("jobresult");
                    let code = result
                        .and_then(|r| r.get("errorcode"))
                        .or_else(|| job.get("jobresultcode"))
                        .and_then(Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(530);
                    let text = result
                        .and_then(|r| r.get("errortext"))
                        .and_then(Value::as_str)
                        .unwrap_or("the job failed without an error text")
                        .to_owned();
                    return Err(ClientError::JobFailed {
                        job_id: job_id.to_owned(),
                        code,
                        text,
                    });
                }
                _ => {
                    return Err(ClientError::Response {
                        endpoint: self.endpoint.url.clone(),
                        status: 200,
                        detail: format!(
                            "queryAsyncJobResult without a jobstatus of 0, 1 or 2: {job}"
                        ),
                    });
                }
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(ClientError::JobTimeout {
                    job_id: job_id.to_owned(),
                    waited,
                });
            }
            tokio::time::sleep(interval.min(timeout - waited)).await;
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// One HTTP/1.1 exchange on a fresh connection: the status and the whole body.
    async fn exchange(&self, encoded: String) -> Result<(u16, Bytes), ClientError> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint.authority)
            .await
            .map_err(|e| {
                self.transport(format!("connecting to {}: {e}", self.endpoint.authority))
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(format!("HTTP handshake: {e}")))?;
        // The connection task ends with the exchange; its error, if any, surfaces through
        // `send_request` below.
        tokio::spawn(connection);
        let builder = hyper::Request::builder()
            .header(hyper::header::HOST, self.endpoint.authority.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("ledgerstack-call/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "application/json");
        let request = match self.method {
            Method::Get => builder
                .method(hyper::Method::GET)
                .uri(format!("{}?{encoded}", self.endpoint.path))
                .body(Full::new(Bytes::new())),
            Method::Post => builder
                .method(hyper::Method::POST)
                .uri(self.endpoint.path.as_str())
                .header(
                    hyper::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(Full::new(Bytes::from(encoded))),
        }
        .map_err(|e| self.transport(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.transport(format!("sending the request: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(format!("reading the response: {e}")))?
            .to_bytes();
        Ok((status, body))
    }

    fn transport(&self, message: String) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.url.clone(),
            message,
        }
    }
}

/// Unwraps `{"<cmd>response": {...}}`: the inner object on success, [`ClientError::Api`] for an
/// error envelope (whatever the HTTP status), [`ClientError::Response`] for anything else.
fn parse_envelope(endpoint: &str, status: u16, body: &[u8]) -> Result<Value, ClientError> {
    let bad = |detail: String| ClientError::Response {
        endpoint: endpoint.to_owned(),
        status,
        detail,
    };
    let envelope: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        bad(format!("{e}; body starts {start:?}"))
    })?;
    let mut entries = envelope.into_iter();
    let inner = match (entries.next(), entries.next()) {
        (Some((_, inner @ Value::Object(_))), None) => inner,
        _ => return Err(bad("expected one <command>response object".to_owned())),
    };
    if let Some(code) = inner.get("errorcode").and_then(Value::as_u64) {
        return Err(ClientError::Api {
            code: u16::try_from(code).unwrap_or(u16::MAX),
            cs_error_code: inner
                .get("cserrorcode")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok()),
            text: inner
                .get("errortext")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(bad("an error status without errorcode".to_owned()));
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Result<Client, ClientError> {
        Client::new(
            &Settings {
                endpoint: endpoint.into(),
                api_key: "foo".into(),
                secret_key: "bar".into(),
            },
            Method::Get,
        )
    }

    #[test]
    fn endpoints_are_checked_and_default_to_client_api() {
        let c = client("http://127.0.0.1:9/").unwrap();
        assert_eq!(c.endpoint.path, "/client/api");
        assert_eq!(c.endpoint.authority, "127.0.0.1:9");
        assert_eq!(
            client("http://h/client/api").unwrap().endpoint.authority,
            "h:80"
        );
        assert!(matches!(
            client("https://h/client/api"),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(matches!(
            client("h:8080"),
            Err(ClientError::Endpoint { .. })
        ));
    }

    #[test]
    fn signed_params_keep_the_last_of_a_repeated_name_and_refuse_reserved_ones() {
        let c = client("http://127.0.0.1:9/client/api").unwrap();
        let params = vec![
            ("listall".to_owned(), "false".to_owned()),
            ("listall".to_owned(), "true".to_owned()),
        ];
        let all = c
            .signed_params("listVirtualMachines", &params, None)
            .unwrap();
        let (last, rest) = all.split_last().unwrap();
        assert_eq!(last.0, "signature");
        assert_eq!(last.1, "B0d6hBsZTcFVCiioSxzwKA9Pke8=");
        assert_eq!(rest.iter().filter(|(n, _)| n == "listall").count(), 1);
        let bad = vec![("Signature".to_owned(), "x".to_owned())];
        assert!(c.signed_params("listZones", &bad, None).is_err());
    }

    #[test]
    fn signed_urls_with_expiry_carry_signature_version_3() {
        let c = client("http://127.0.0.1:9/client/api").unwrap();
        let at = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let url = c
            .signed_url("listZones", &[("name".into(), "a b".into())], Some(at))
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:9/client/api?command=listZones&apiKey=foo&response=json&signatureVersion=3&expires=2030-01-02T03%3A04%3A05%2B0000&name=a%20b&signature="), "{url}");
    }

    #[test]
    fn envelopes_and_error_envelopes() {
        let ok = parse_envelope(
            "e",
            200,
            br#"{"listzonesresponse":{"count":1,"zone":[{"id":"z"}]}}"#,
        )
        .unwrap();
        assert_eq!(ok["zone"][0]["id"], "z");
        let err = parse_envelope(
            "e",
            431,
            br#"{"createaccountresponse":{"uuidList":[],"errorcode":431,"cserrorcode":4350,"errortext":"missing parameter email"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::Api { code: 431, cs_error_code: Some(4350), text } if text == "missing parameter email"),
            "{err:?}"
        );
        assert!(matches!(
            parse_envelope("e", 404, b"Not Found"),
            Err(ClientError::Response { status: 404, .. })
        ));
        assert!(matches!(
            parse_envelope("e", 500, br#"{"xresponse":{}}"#),
            Err(ClientError::Response { status: 500, .. })
        ));
    }
}
