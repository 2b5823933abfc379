//! A small CloudStack API client, the library behind `ledgerstack call` and `ledgerstack sign`:
//! operators can drive a Ledgerstack (or any CloudStack) endpoint without another tool.
//!
//! - [`signing`]: the canonical string and HMAC-SHA1 signature of spec/api.md "Signing".
//! - [`config`]: the endpoint and keys from flags, environment, a data directory, a config file.
//! - [`Client`]: signed GET/POST over plain HTTP, JSON envelopes, typed errors, async job polling.
//! - [`output`]: tables and field lines for a terminal.

mod client;
pub mod config;
mod error;
pub mod output;
pub mod signing;

pub use client::{Client, Method, Outcome, REQUEST_TIMEOUT, expires_in};
pub use error::{ClientError, ConfigError};
