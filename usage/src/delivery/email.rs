//! E-mail sinks: one plain-text message per delivery, sent through the sink's SMTP server with
//! `lettre` (docs/alert-delivery.md "E-mail").
//!
//! Plain SMTP only: no TLS backend is compiled in, so neither STARTTLS nor SMTPS is offered
//! (a loopback relay, or one on a trusted network, is what this serves).
//!
//! The idempotency key travels twice, so a receiver can deduplicate whichever it reads: in the
//! `X-Ledgerstack-Idempotency-Key` header and as the `Message-ID` (`<key@alerts.ledgerstack>`),
//! the same on every attempt of one delivery.

use std::time::{Duration, SystemTime};

use engine::event::billing::AlertSinkDefined;
use engine::time::Timestamp;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use super::{Delivery, Notification, NotificationKind};

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "X-Ledgerstack-Idempotency-Key";

/// The SMTP port used when a sink names none (plain SMTP).
pub const DEFAULT_SMTP_PORT: u16 = 25;

/// Longest subject sent: a long description is cut (the body carries it whole).
const SUBJECT_CHARS: usize = 200;

/// Why an e-mail address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not `user@host` nor `Name <user@host>`.
    #[error("{0:?} is not an e-mail address (user@host or Name <user@host>)")]
    Invalid(String),
}

/// Parses a sender or recipient as `user@host` or `Name <user@host>`: what the sink commands
/// check before anything is recorded, and what the worker parses again for each message.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, AddressError> {
    text.trim()
        .parse::<Mailbox>()
        .map_err(|_| AddressError::Invalid(text.to_owned()))
}

/// The `Message-ID` of delivery `key`: derived from the key only, so every attempt of one
/// delivery carries the same id and a mail store can drop repeats.
pub fn message_id(key: Uuid) -> String {
    format!("<{key}@alerts.ledgerstack>")
}

/// The subject: the alert's name and description (`Resolved:` first for a resolve), on one
/// line, cut to a readable length.
pub fn subject(notification: &Notification) -> String {
    let prefix = match notification.kind {
        NotificationKind::Raise => "",
        NotificationKind::Resolve => "Resolved: ",
    };
    let text = format!(
        "{prefix}{}: {}",
        notification.name, notification.description
    );
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(SUBJECT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The body: every field of the webhook payload, in the payload's order, one `name: value`
/// line each (`-` for an absent value), so a mail reader sees what a webhook receiver gets.
pub fn body(notification: &Notification, key: Uuid) -> String {
    let payload: serde_json::Value =
        serde_json::from_slice(&notification.payload(key)).unwrap_or_default();
    let mut text = String::new();
    if let Some(fields) = payload.as_object() {
        for (name, value) in fields {
            let value = match value {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            text.push_str(name);
            text.push_str(": ");
            text.push_str(&value);
            text.push('\n');
        }
    }
    text.push_str(
        "\nThe same idempotency key may arrive more than once (delivery is at least once): \
         keep the first message with a given key.\n",
    );
    text
}

/// The message for `delivery` to `sink`, dated `now`.
pub fn message(
    sink: &AlertSinkDefined,
    delivery: &Delivery,
    now: Timestamp,
) -> Result<Message, String> {
    let from = sink
        .email_from
        .as_deref()
        .ok_or_else(|| "the sink has no sender address".to_owned())?;
    let mut builder = Message::builder()
        .from(parse_mailbox(from).map_err(|e| e.to_string())?)
        .subject(subject(&delivery.notification))
        .message_id(Some(message_id(delivery.key)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(IDEMPOTENCY_HEADER),
            delivery.key.to_string(),
        ))
        // Dated by the server's clock (a manual clock included), never the wall clock here.
        .date(
            SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(now.millis()).unwrap_or(0)),
        )
        .header(ContentType::TEXT_PLAIN);
    if sink.email_to.is_empty() {
        return Err("the sink has no recipients".to_owned());
    }
    for to in &sink.email_to {
        builder = builder.to(parse_mailbox(to).map_err(|e| e.to_string())?);
    }
    builder
        .body(body(&delivery.notification, delivery.key))
        .map_err(|e| format!("building the message: {e}"))
}

/// Sends one delivery through the sink's SMTP server; the server accepting the message for
/// every recipient is a delivery. `password` is the opened SMTP password, when the sink has one.
pub async fn send(
    sink: &AlertSinkDefined,
    delivery: &Delivery,
    password: Option<String>,
    now: Timestamp,
    timeout: Duration,
) -> Result<(), String> {
    let host = sink
        .smtp_host
        .as_deref()
        .ok_or_else(|| "the sink has no SMTP host".to_owned())?;
    let port = sink.smtp_port.unwrap_or(DEFAULT_SMTP_PORT);
    let message = message(sink, delivery, now)?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout));
    if let Some(user) = &sink.smtp_username {
        transport = transport.credentials(Credentials::new(
            user.to_string(),
            password.unwrap_or_default(),
        ));
    }
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("sending through SMTP {host}:{port}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(parse_mailbox("ops@example.org").is_ok());
        assert!(parse_mailbox("Ops Team <ops@example.org>").is_ok());
        assert!(parse_mailbox("not an address").is_err());
        assert!(parse_mailbox("").is_err());
    }
}
