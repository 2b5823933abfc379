//! One module per command family (as mini-redis keeps one file per command): each holds its
//! commands' table entries, parameter handling, authorization and the call into the log or a
//! read model.

pub mod accounts;
pub mod catalog;
pub mod clock;
pub mod configuration;
pub mod discovery;
pub mod domains;
pub mod events;
pub mod jobs;
pub mod session;
pub mod users;

use engine::time::Timestamp;

use crate::protocol::dates::format_date;

/// A time as CloudStack shows it: `2024-05-01T10:00:00+0000`.
pub fn date(at: Timestamp) -> String {
    format_date(at.to_datetime())
}
