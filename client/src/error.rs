//! What can go wrong talking to a CloudStack endpoint, kept apart by cause so that a caller (the
//! `ledgerstack call` command) can tell the server's "no" from an unreachable server.

use std::time::Duration;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a CloudStack error envelope.
    #[error("CloudStack error {code}{}: {text}", cs_suffix(*.cs_error_code))]
    Api {
        /// `errorcode`, equal to the HTTP status (431 bad parameter, 432 unknown command, ...).
        code: u16,
        /// `cserrorcode` (the exception class, e.g. 4350), when the server sent one.
        cs_error_code: Option<u32>,
        /// `errortext`.
        text: String,
    },
    /// An async job finished with a failure (`jobstatus` 2).
    #[error("job {job_id} failed: CloudStack error {code}: {text}")]
    JobFailed {
        /// The job.
        job_id: String,
        /// `jobresult.errorcode` (or `jobresultcode`).
        code: u16,
        /// `jobresult.errortext`.
        text: String,
    },
    /// An async job was still pending when the wait ran out; it may still finish.
    #[error(
        "job {job_id} still pending after {}s; query it with `queryAsyncJobResult jobid={job_id}`",
        .waited.as_secs()
    )]
    JobTimeout {
        /// The job.
        job_id: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// A parameter the client cannot send as given.
    #[error("parameter {name}: {reason}")]
    Parameter {
        /// The parameter as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The endpoint is not a URL this client can use.
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting, sending or receiving failed, or the server took too long.
    #[error("{endpoint}: {message}")]
    Transport {
        /// Where the request went.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The server answered with something that is not a CloudStack JSON response.
    #[error("{endpoint}: HTTP {status}, not a CloudStack response: {detail}")]
    Response {
        /// Where the request went.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong, with the start of the body.
        detail: String,
    },
}

fn cs_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(" ({c})")).unwrap_or_default()
}

/// Why the endpoint and keys could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config or credentials file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config or credentials file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No source gave a value for a setting every call needs.
    #[error(
        "no {what}: pass {flag}, set {env}, put `{key} = \"...\"` in the config file, or use --from-data-dir"
    )]
    Missing {
        /// The setting, in words.
        what: &'static str,
        /// The command-line flag that sets it.
        flag: &'static str,
        /// The environment variable that sets it.
        env: &'static str,
        /// The config file key.
        key: &'static str,
    },
}
