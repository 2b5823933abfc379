//! A real server for tests: `api::app` on a temporary data directory, answering signed HTTP
//! requests as the root admin until stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use api::app::{self, ClockChoice, ServerOptions};
use api::protocol::params::Params;
use api::protocol::signature;
use serde_json::Value;
use tokio::sync::oneshot;

// Each test binary uses its own part of this harness.
#[allow(dead_code)]
pub mod usage_scene;

/// A server answering on a temporary data directory until dropped.
// Each test binary uses its own part of this harness.
#[allow(dead_code)]
pub struct Server {
    pub addr: SocketAddr,
    pub api_key: String,
    pub secret_key: String,
    /// The server's shared state (its log, read models, simulator), for what HTTP does not show.
    pub ctx: api::context::Ctx,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    temp_dir: tempfile::TempDir,
}

// Each test binary uses its own part of this harness.
#[allow(dead_code)]
impl Server {
    pub async fn start(clock: ClockChoice) -> Server {
        Server::start_with(clock, false).await
    }

    /// A server seeded with the demo zone, offerings, hosts and template (`serve --demo`).
    pub async fn start_demo() -> Server {
        Server::start_with(ClockChoice::System, true).await
    }

    pub async fn start_with(clock: ClockChoice, demo: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let running = app::open(ServerOptions {
            data_dir: dir.path().to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock,
            demo,
            rebuild_read_models: false,
            simulator: Default::default(),
        })
        .await
        .unwrap();
        let admin = running
            .new_admin
            .clone()
            .expect("a fresh directory creates the admin");
        let addr = running.addr;
        let ctx = running.ctx.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            running
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            addr,
            api_key: admin.api_key,
            secret_key: admin.secret_key,
            ctx,
            stop: Some(stop),
            task: Some(task),
            temp_dir: dir,
        }
    }

    /// GET `/client/api` signed as the root admin with `pairs` plus apiKey and signature;
    /// returns the HTTP status and the body parsed as JSON.
    pub async fn signed_get(&self, pairs: &[(&str, &str)]) -> (u16, Value) {
        let mut params = Params::default();
        params.insert("apiKey", &self.api_key);
        for (name, value) in pairs {
            params.insert(name, value);
        }
        let signature = signature::sign(&params, &self.secret_key);
        let mut query = format!("apiKey={}", encode(&self.api_key));
        for (name, value) in pairs {
            query.push_str(&format!("&{name}={}", encode(value)));
        }
        query.push_str(&format!("&signature={}", encode(&signature)));
        let reply = http_get(self.addr, format!("/client/api?{query}")).await;
        let (status, body) = (reply.status, reply.body.as_str());
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, json)
    }

    /// The id of the demo's first featured template (servers started with the demo data).
    pub async fn featured_template(&self) -> String {
        let (_, body) = self
            .signed_get(&[
                ("command", "listTemplates"),
                ("templatefilter", "featured"),
                ("response", "json"),
            ])
            .await;
        body["listtemplatesresponse"]["template"][0]["id"]
            .as_str()
            .expect("the demo has a featured template")
            .to_owned()
    }

    /// Polls an async job until it ends (at most a minute): (jobstatus, jobresult).
    pub async fn wait_job(&self, job_id: &str) -> (u64, Value) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, body) = self
                .signed_get(&[
                    ("command", "queryAsyncJobResult"),
                    ("jobid", job_id),
                    ("response", "json"),
                ])
                .await;
            let job = &body["queryasyncjobresultresponse"];
            let status = job["jobstatus"].as_u64().expect("a numeric jobstatus");
            if status != 0 {
                return (status, job["jobresult"].clone());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {job_id} still pending"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully; returns its data directory, which is deleted when dropped.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.temp_dir
    }
}

/// What a plain HTTP/1.1 GET answered.
// Each test binary uses its own part of this harness.
#[allow(dead_code)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header ("" when absent).
    pub content_type: String,
    /// The body, as text.
    pub body: String,
}

/// A plain GET of `path` (with its query) on a blocking socket, `Connection: close`: the
/// server's bytes as any HTTP client sees them.
pub async fn http_get(addr: SocketAddr, path: String) -> HttpReply {
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {head}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    HttpReply {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
