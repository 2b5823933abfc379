//! `ledgerstack bench api`: signed `listZones` requests per second through the real server,
//! beside a baseline measured in the same run (machines are noisy; only ratios travel).
//!
//! - The subject: the real server, started in-process on a fresh data directory with the demo
//!   zone (`serve --demo`), answering `listZones&response=json` signed with the admin's keys.
//!   Every request is signed afresh, so the server parses, looks up the key, verifies the
//!   HMAC-SHA1, authorizes, checks parameters, runs the handler under the read lock and renders
//!   the envelope each time.
//! - The baseline: an axum server on another port whose one handler answers the very bytes the
//!   real server answers, with the same content type: no parsing, no authentication. It is the
//!   most an axum/hyper server on this machine can answer.
//!
//! The load generator keeps `connections` keep-alive HTTP/1.1 connections to each server, each
//! with one request in flight at a time, written and read with a minimal HTTP/1.1 writer and
//! reader on raw sockets (the generator shares the CPUs with the servers, so it is kept lean).
//! Both servers receive the same request: the client signs every request afresh for both, so
//! the client's cost is the same on both sides and the ratio isolates the server's work.
//!
//! The two figures are measured interleaved: every round runs each server for one slice, the
//! order alternating from round to round, after an untimed warm-up of both. Every response must
//! be HTTP 200 with exactly the expected body; any other answer is an error, and any error fails
//! the bench, so a fast but wrong server cannot report numbers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::routing::any;
use engine::bench::BenchProgress;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{self, ClockChoice, ServerOptions, StartError};
use crate::protocol::params::Params;
use crate::protocol::signature;

/// The target: signed requests at no less than this fraction of the baseline's rate.
pub const TARGET_RATIO: f64 = 0.5;

/// What to run.
#[derive(Debug, Clone)]
pub struct ApiBenchConfig {
    /// Interleaved rounds (each runs both servers for one slice).
    pub rounds: usize,
    /// How long each server is measured in each round.
    pub slice: Duration,
    /// Concurrent keep-alive connections to each server.
    pub connections: usize,
}

/// Requests answered over a time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Requests answered correctly.
    pub requests: u64,
    /// Wall time, from the first request sent until the last connection finished.
    pub elapsed: Duration,
}

impl Rate {
    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, other: Rate) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
    }
}

/// One interleaved round.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// The real server, signed requests.
    pub signed: Rate,
    /// The baseline handler.
    pub baseline: Rate,
    /// Whether the signed slice ran first in this round.
    pub signed_first: bool,
}

impl Round {
    /// Signed requests/s over baseline requests/s.
    pub fn ratio(&self) -> f64 {
        self.signed.per_second() / self.baseline.per_second().max(1e-9)
    }
}

/// Everything `bench api` measured.
#[derive(Debug, Clone)]
pub struct ApiBenchReport {
    /// The configuration it ran with.
    pub config: ApiBenchConfig,
    /// CPUs available to the process (servers and load generator share them).
    pub cpus: usize,
    /// Bytes of the `listZones` body both servers answer.
    pub body_bytes: usize,
    /// Its content type.
    pub content_type: String,
    /// Zones in the body.
    pub zones: u64,
    /// Every round, in order.
    pub rounds: Vec<Round>,
    /// Requests that got anything but the expected answer (always 0 in a report: any error
    /// fails the bench).
    pub errors: u64,
}

impl ApiBenchReport {
    /// Every round's signed slices summed.
    pub fn signed_total(&self) -> Rate {
        let mut total = Rate::default();
        self.rounds.iter().for_each(|r| total.add(r.signed));
        total
    }

    /// Every round's baseline slices summed.
    pub fn baseline_total(&self) -> Rate {
        let mut total = Rate::default();
        self.rounds.iter().for_each(|r| total.add(r.baseline));
        total
    }

    /// The ratio of the summed rates.
    pub fn overall_ratio(&self) -> f64 {
        self.signed_total().per_second() / self.baseline_total().per_second().max(1e-9)
    }

    /// The median of the per-round ratios: the figure held to [`TARGET_RATIO`].
    pub fn median_ratio(&self) -> f64 {
        let mut ratios: Vec<f64> = self.rounds.iter().map(Round::ratio).collect();
        ratios.sort_by(f64::total_cmp);
        match ratios.len() {
            0 => 0.0,
            n if n % 2 == 1 => ratios[n / 2],
            n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        }
    }

    /// Whether the median ratio reaches the target.
    pub fn target_met(&self) -> bool {
        self.median_ratio() >= TARGET_RATIO
    }
}

/// Why the bench could not run, or found a wrong answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiBenchError {
    /// The real server did not start.
    #[error("starting the server: {0}")]
    Start(#[from] StartError),
    /// A socket or file operation failed outside the measured requests.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The server's first answer was not a usable `listZones` body.
    #[error("setting up: {0}")]
    Setup(String),
    /// Some measured requests were not answered with the expected response.
    #[error(
        "{errors} request(s) were not answered with HTTP 200 and the expected body; first: {first}"
    )]
    WrongAnswers {
        /// How many.
        errors: u64,
        /// The first one's description.
        first: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiBenchError {
    let what = what.into();
    move |e| ApiBenchError::Io(what, e)
}

/// A data directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, ApiBenchError> {
        let path =
            std::env::temp_dir().join(format!("ledgerstack-bench-api-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).map_err(io_error(format!("create {}", path.display())))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real server with the demo data (`serve --demo`), in-process on a fresh temporary data
/// directory, answering on a free loopback port until stopped; with the admin's credentials.
pub(crate) async fn start_demo_server()
-> Result<(TempDir, Server, crate::bootstrap::AdminCredentials), ApiBenchError> {
    let dir = TempDir::new()?;
    let running = app::open(ServerOptions {
        data_dir: dir.0.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        clock: ClockChoice::System,
        demo: true,
        rebuild_read_models: false,
        simulator: Default::default(),
    })
    .await?;
    let admin = running
        .new_admin
        .clone()
        .ok_or_else(|| ApiBenchError::Setup("a fresh data directory created no admin".into()))?;
    let addr = running.addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = running
            .serve(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((dir, Server { addr, stop, task }, admin))
}

/// A server running on this runtime until told to stop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// What the client sends and expects: the admin's keys and the exact answer.
struct Target {
    api_key: String,
    secret_key: String,
    expected_body: Bytes,
}

impl Target {
    /// A freshly signed `listZones&response=json` GET (the same bytes go to either server).
    fn request(&self, out: &mut Vec<u8>) {
        let mut params = Params::default();
        params.insert("apiKey", &self.api_key);
        params.insert("command", "listZones");
        params.insert("response", "json");
        let signature = signature::sign(&params, &self.secret_key);
        out.clear();
        out.extend_from_slice(b"GET /client/api?apiKey=");
        percent_encode(out, &self.api_key);
        out.extend_from_slice(b"&command=listZones&response=json&signature=");
        percent_encode(out, &signature);
        out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

/// Runs the whole API benchmark.
pub async fn run_api_bench(
    config: &ApiBenchConfig,
    progress: &dyn BenchProgress,
) -> Result<ApiBenchReport, ApiBenchError> {
    if config.rounds == 0 || config.connections == 0 || config.slice.is_zero() {
        return Err(ApiBenchError::Setup(
            "rounds, connections and slice must all be positive".into(),
        ));
    }
    progress.phase("starting the server (demo data)", None);
    let (dir, real, admin) = start_demo_server().await?;

    progress.finish();
    let outcome = measure(config, progress, real.addr, admin.api_key, admin.secret_key).await;
    progress.phase("stopping the server", None);
    real.stop().await;
    progress.finish();
    drop(dir);
    outcome
}

async fn measure(
    config: &ApiBenchConfig,
    progress: &dyn BenchProgress,
    real_addr: SocketAddr,
    api_key: String,
    secret_key: String,
) -> Result<ApiBenchReport, ApiBenchError> {
    // The exact answer, from the real server.
    let mut target = Target {
        api_key,
        secret_key,
        expected_body: Bytes::new(),
    };
    let mut request = Vec::new();
    target.request(&mut request);
    let mut first = Connection::open(real_addr)
        .await
        .map_err(io_error(format!("connect to {real_addr}")))?;
    let answer = first
        .exchange(&request)
        .await
        .map_err(|e| ApiBenchError::Setup(format!("first listZones request: {e}")))?;
    if answer.status != 200 {
        return Err(ApiBenchError::Setup(format!(
            "listZones answered HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(answer.body)
        )));
    }
    let content_type = answer
        .header("content-type")
        .map(str::to_owned)
        .ok_or_else(|| ApiBenchError::Setup("listZones answered no content type".into()))?;
    let json: serde_json::Value = serde_json::from_slice(answer.body)
        .map_err(|e| ApiBenchError::Setup(format!("listZones answered no JSON: {e}")))?;
    let zones = json["listzonesresponse"]["count"].as_u64().unwrap_or(0);
    if zones == 0 {
        return Err(ApiBenchError::Setup(format!(
            "listZones lists no zone (was the demo zone seeded?): {json}"
        )));
    }
    target.expected_body = Bytes::copy_from_slice(answer.body);
    drop(first);
    let target = Arc::new(target);

    let baseline = start_baseline(target.expected_body.clone(), &content_type).await?;
    let outcome = rounds(config, progress, &target, real_addr, baseline.addr).await;
    baseline.stop().await;
    let rounds = outcome?;
    Ok(ApiBenchReport {
        config: config.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        body_bytes: target.expected_body.len(),
        content_type,
        zones,
        rounds,
        errors: 0,
    })
}

/// The baseline: one axum handler answering `body` with `content_type`, nothing else.
async fn start_baseline(body: Bytes, content_type: &str) -> Result<Server, ApiBenchError> {
    let content_type = HeaderValue::from_str(content_type)
        .map_err(|e| ApiBenchError::Setup(format!("content type {content_type:?}: {e}")))?;
    let handler = move || {
        let body = body.clone();
        let content_type = content_type.clone();
        async move { ([(header::CONTENT_TYPE, content_type)], body) }
    };
    let router = Router::new()
        .route("/client/api", any(handler.clone()))
        .route("/client/api/", any(handler));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(io_error("bind the baseline server"))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("baseline address"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server { addr, stop, task })
}

/// The warm-up and the interleaved rounds; fails if any request got a wrong answer.
async fn rounds(
    config: &ApiBenchConfig,
    progress: &dyn BenchProgress,
    target: &Arc<Target>,
    real_addr: SocketAddr,
    baseline_addr: SocketAddr,
) -> Result<Vec<Round>, ApiBenchError> {
    let mut real = Pool::open(real_addr, config.connections).await?;
    let mut baseline = Pool::open(baseline_addr, config.connections).await?;
    let mut errors = 0;
    let mut first_error: Option<String> = None;
    let mut tally = |outcome: SliceOutcome| {
        errors += outcome.errors;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
        outcome.rate
    };

    progress.phase("warm-up (untimed)", None);
    let warm_up = (config.slice / 2).max(Duration::from_millis(50));
    tally(real.slice(target, warm_up).await);
    tally(baseline.slice(target, warm_up).await);
    progress.finish();

    progress.phase(
        "interleaved rounds: signed / baseline",
        Some(config.rounds as u64),
    );
    let mut rounds = Vec::with_capacity(config.rounds);
    for round in 0..config.rounds {
        let signed_first = round % 2 == 0;
        let (signed, base) = if signed_first {
            let signed = tally(real.slice(target, config.slice).await);
            (signed, tally(baseline.slice(target, config.slice).await))
        } else {
            let base = tally(baseline.slice(target, config.slice).await);
            (tally(real.slice(target, config.slice).await), base)
        };
        rounds.push(Round {
            signed,
            baseline: base,
            signed_first,
        });
        progress.progress(round as u64 + 1);
    }
    progress.finish();
    if errors > 0 {
        return Err(ApiBenchError::WrongAnswers {
            errors,
            first: first_error.unwrap_or_default(),
        });
    }
    Ok(rounds)
}

/// What one slice against one server gave.
struct SliceOutcome {
    rate: Rate,
    errors: u64,
    first_error: Option<String>,
}

/// Keep-alive connections to one server, kept across slices.
struct Pool {
    addr: SocketAddr,
    connections: Vec<Option<Connection>>,
}

impl Pool {
    async fn open(addr: SocketAddr, n: usize) -> Result<Pool, ApiBenchError> {
        let mut connections = Vec::with_capacity(n);
        for _ in 0..n {
            connections.push(Some(
                Connection::open(addr)
                    .await
                    .map_err(io_error(format!("connect to {addr}")))?,
            ));
        }
        Ok(Pool { addr, connections })
    }

    /// Every connection sends requests, one at a time, until `length` has passed.
    async fn slice(&mut self, target: &Arc<Target>, length: Duration) -> SliceOutcome {
        let start = Instant::now();
        let deadline = start + length;
        let addr = self.addr;
        let tasks: Vec<_> = self
            .connections
            .iter_mut()
            .map(|slot| {
                let connection = slot.take();
                let target = target.clone();
                tokio::spawn(client(addr, connection, target, deadline))
            })
            .collect();
        let mut outcome = SliceOutcome {
            rate: Rate::default(),
            errors: 0,
            first_error: None,
        };
        for (slot, task) in self.connections.iter_mut().zip(tasks) {
            match task.await {
                Ok(done) => {
                    *slot = done.connection;
                    outcome.rate.requests += done.ok;
                    outcome.errors += done.errors;
                    if outcome.first_error.is_none() {
                        outcome.first_error = done.first_error;
                    }
                }
                Err(e) => {
                    outcome.errors += 1;
                    outcome
                        .first_error
                        .get_or_insert_with(|| format!("client task failed: {e}"));
                }
            }
        }
        outcome.rate.elapsed = start.elapsed();
        outcome
    }
}

/// What one connection's loop did in a slice.
struct ClientDone {
    connection: Option<Connection>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One connection's loop: a freshly signed request, its answer checked, until `deadline`. A
/// connection that fails is reopened.
async fn client(
    addr: SocketAddr,
    mut connection: Option<Connection>,
    target: Arc<Target>,
    deadline: Instant,
) -> ClientDone {
    let mut done = ClientDone {
        connection: None,
        ok: 0,
        errors: 0,
        first_error: None,
    };
    let mut request = Vec::with_capacity(256);
    fn fail(done: &mut ClientDone, why: String) {
        done.errors += 1;
        done.first_error.get_or_insert(why);
    }
    while Instant::now() < deadline {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match Connection::open(addr).await {
                Ok(conn) => connection.insert(conn),
                Err(e) => {
                    fail(&mut done, format!("reconnecting to {addr}: {e}"));
                    break;
                }
            },
        };
        target.request(&mut request);
        match conn.exchange(&request).await {
            Ok(answer) if answer.status == 200 && answer.body == &target.expected_body[..] => {
                done.ok += 1
            }
            Ok(answer) => fail(
                &mut done,
                format!(
                    "HTTP {} with {} body bytes (expected 200 with {}): {}",
                    answer.status,
                    answer.body.len(),
                    target.expected_body.len(),
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                ),
            ),
            Err(e) => {
                fail(&mut done, format!("{addr}: {e}"));
                connection = None;
            }
        }
    }
    done.connection = connection;
    done
}

/// One keep-alive HTTP/1.1 connection with a minimal writer and reader: one request at a time,
/// responses framed by `Content-Length` (what hyper sends for a body of known size).
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A response as read; the body is borrowed from the connection's buffer.
struct Answer<'a> {
    status: u16,
    /// Status line and headers.
    head: &'a [u8],
    body: &'a [u8],
}

impl Answer<'_> {
    /// A header's value (the first of that name).
    fn header(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.head)
            .ok()?
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }
}

impl Connection {
    async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: vec![0; 16 * 1024],
        })
    }

    /// Writes `request` and reads one response.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<Answer<'_>> {
        let mut written = 0;
        while written < request.len() {
            match self.stream.try_write(&request[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.stream.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        let mut filled = 0;
        let mut head: Option<Head> = None;
        loop {
            if filled == self.buffer.len() {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
            self.stream.readable().await?;
            match self.stream.try_read(&mut self.buffer[filled..]) {
                Ok(0) => return Err(invalid("the server closed the connection")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            if head.is_none() {
                head = parse_head(&self.buffer[..filled])?;
            }
            if let Some(head) = &head {
                let end = head.length + head.content_length;
                if filled > end {
                    return Err(invalid("bytes after the response (none were asked for)"));
                }
                if filled == end {
                    return Ok(Answer {
                        status: head.status,
                        head: &self.buffer[..head.length],
                        body: &self.buffer[head.length..end],
                    });
                }
            }
        }
    }
}

/// A response's status line and headers.
struct Head {
    /// Bytes up to and including the blank line.
    length: usize,
    status: u16,
    content_length: usize,
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned())
}

/// Parses the head once it is complete (`None` until then).
fn parse_head(bytes: &[u8]) -> std::io::Result<Option<Head>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text =
        std::str::from_utf8(&bytes[..end]).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("not an HTTP/1.1 status line"))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| invalid("response without a valid Content-Length"))?;
    Ok(Some(Head {
        length: end + 4,
        status,
        content_length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_once_complete() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n")
                .unwrap()
                .is_none()
        );
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\nContent-Length: 3\r\n\r\nabc",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, 3);
        assert_eq!(head.length, 85);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn signatures_are_percent_encoded() {
        let mut out = Vec::new();
        percent_encode(&mut out, "a+b/c=_-");
        assert_eq!(out, b"a%2Bb%2Fc%3D_-");
    }
}
