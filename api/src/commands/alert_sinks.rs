//! Alert sinks (Ledgerstack, beyond CloudStack; docs/alert-delivery.md): where alerts are
//! delivered, and the outbox of deliveries. `createAlertSink`, `listAlertSinks`,
//! `updateAlertSink`, `deleteAlertSink`, `listAlertDeliveries`; root admins only.
//!
//! Sinks live in the log (`ALERT.SINK.*` on their own stream); their webhook secret and SMTP
//! password enter it only sealed with the master key, and no answer ever shows them back.
//! Deliveries are folded by `usage::delivery::DeliveryModel` and worked off by its worker.

use compact_str::CompactString;
use engine::event::billing::{AlertSinkDefined, AlertSinkKind, AlertSinkRemoved};
use engine::event::{AlertDeliveryEvent, EventBody};
use projections::State;
use serde_json::{Value, json};
use usage::alerts::AlertType;
use usage::delivery::worker::WebhookUrl;
use usage::delivery::{
    self, ALERT_SINKS_STREAM, Delivery, DeliveryModel, DeliveryState, email, password_context,
    secret_context,
};
use uuid::Uuid;

use crate::call::{Call, Paging, keyword_matches};
use crate::commands::{SUCCESS_FIELDS, date};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Roles, field, param,
    required,
};
use crate::response::Reply;

/// Attempts per delivery when `maxattempts` is not given: with the default backoff (30 s
/// doubling up to an hour) about three hours of trying.
const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Most attempts a sink may ask for.
const MAX_MAX_ATTEMPTS: i64 = 100;

const SINK_FIELDS: &[ResponseField] = &[
    field("id", "string", "the sink's ID"),
    field("name", "string", "the sink's name"),
    field("type", "string", "webhook or email"),
    field(
        "alerttypes",
        "list",
        "the alert type numbers delivered; empty: every type",
    ),
    field("url", "string", "webhook: the URL payloads are posted to"),
    field(
        "hassecret",
        "boolean",
        "webhook: whether payloads are signed with a secret (the secret is never shown)",
    ),
    field("smtphost", "string", "email: the SMTP server"),
    field("smtpport", "integer", "email: the SMTP server's port"),
    field("smtpusername", "string", "email: the SMTP user"),
    field(
        "hassmtppassword",
        "boolean",
        "email: whether an SMTP password is set (it is never shown)",
    ),
    field("emailfrom", "string", "email: the sender"),
    field("emailto", "list", "email: the recipients"),
    field(
        "maxattempts",
        "integer",
        "attempts per delivery before it is given up",
    ),
    field("pending", "integer", "deliveries waiting for an attempt"),
    field("delivered", "integer", "deliveries the sink accepted"),
    field("failed", "integer", "deliveries given up"),
];

const DELIVERY_FIELDS: &[ResponseField] = &[
    field(
        "id",
        "string",
        "the delivery's idempotency key (the same on every attempt)",
    ),
    field("sinkid", "string", "the sink's ID"),
    field("sink", "string", "the sink's name, while it exists"),
    field(
        "notificationid",
        "string",
        "the ID of the ALERT.RAISE or ALERT.RESOLVE event delivered",
    ),
    field("alertid", "string", "the alert's ID"),
    field("alerttype", "short", "the alert's type number"),
    field("alertname", "string", "the alert's name"),
    field("kind", "string", "raise or resolve"),
    field("state", "string", "pending, delivered or failed"),
    field("attempts", "integer", "attempts made so far"),
    field(
        "lasterror",
        "string",
        "what the last failed attempt reported",
    ),
    field(
        "nextattempt",
        "date",
        "when the next attempt is due (pending deliveries)",
    ),
    field("sent", "date", "when the notification was recorded"),
];

/// Parameters create and update share (a fixed-size array: `with_definition_params!` spells
/// out every element, so adding one must change both).
const DEFINITION_PARAMS: [ParamSpec; 10] = [
    ParamSpec {
        length: 2048,
        ..param(
            "url",
            T::String,
            "webhook: the http:// URL the signed JSON payload is posted to (https is not supported)",
        )
    },
    ParamSpec {
        length: 1024,
        ..param(
            "secret",
            T::String,
            "webhook: the HMAC-SHA256 key signing each payload (X-Ledgerstack-Signature)",
        )
    },
    param(
        "alerttypes",
        T::List,
        "the alert type numbers to deliver (listAlertTypes); omitted or 'all': every type",
    ),
    param("smtphost", T::String, "email: the SMTP server's host"),
    param("smtpport", T::Integer, "email: the SMTP server's port (25)"),
    param(
        "smtpusername",
        T::String,
        "email: the SMTP user (with smtppassword)",
    ),
    param(
        "smtppassword",
        T::String,
        "email: the SMTP password (with smtpusername)",
    ),
    param(
        "emailfrom",
        T::String,
        "email: the sender, user@host or Name <user@host>",
    ),
    ParamSpec {
        length: 4096,
        ..param("emailto", T::List, "email: the recipients, comma-separated")
    },
    param(
        "maxattempts",
        T::Integer,
        "attempts per delivery before it is given up (1 to 100; 10)",
    ),
];

/// A parameter list: the given parameters, then every one of [`DEFINITION_PARAMS`] (create and
/// update take the same definition; const slices cannot be concatenated, so this spells them).
macro_rules! with_definition_params {
    ($($param:expr),* $(,)?) => {
        &[
            $($param,)*
            DEFINITION_PARAMS[0],
            DEFINITION_PARAMS[1],
            DEFINITION_PARAMS[2],
            DEFINITION_PARAMS[3],
            DEFINITION_PARAMS[4],
            DEFINITION_PARAMS[5],
            DEFINITION_PARAMS[6],
            DEFINITION_PARAMS[7],
            DEFINITION_PARAMS[8],
            DEFINITION_PARAMS[9],
        ]
    };
}

/// The sink commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createAlertSink",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Creates an alert sink: every alert raised or resolved from now on (of the chosen types) is delivered to it, at least once, as a signed webhook or an e-mail (Ledgerstack)",
        params: with_definition_params!(
            required("name", T::String, "the sink's name (unique)"),
            required("type", T::String, "webhook or email"),
        ),
        inherits: Inherits::Nothing,
        response: SINK_FIELDS,
        related: "listAlertSinks,updateAlertSink,deleteAlertSink,listAlertDeliveries",
        manual_clock_only: false,
        handler: handler!(create_alert_sink),
    },
    CommandSpec {
        name: "listAlertSinks",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists alert sinks; secrets and passwords are never shown (Ledgerstack)",
        params: &[
            param("id", T::Uuid, "the sink's ID"),
            param("name", T::String, "the sink's name"),
            param("type", T::String, "webhook or email"),
        ],
        inherits: Inherits::Paging,
        response: SINK_FIELDS,
        related: "createAlertSink",
        manual_clock_only: false,
        handler: handler!(list_alert_sinks),
    },
    CommandSpec {
        name: "updateAlertSink",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Changes an alert sink; the change applies to every attempt from now on, pending deliveries included (Ledgerstack)",
        params: with_definition_params!(
            required("id", T::Uuid, "the sink's ID"),
            param("name", T::String, "a new name"),
        ),
        inherits: Inherits::Nothing,
        response: SINK_FIELDS,
        related: "listAlertSinks",
        manual_clock_only: false,
        handler: handler!(update_alert_sink),
    },
    CommandSpec {
        name: "deleteAlertSink",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Deletes an alert sink; deliveries still pending to it are dropped, finished ones stay listed (Ledgerstack)",
        params: &[required("id", T::Uuid, "the sink's ID")],
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "listAlertSinks",
        manual_clock_only: false,
        handler: handler!(delete_alert_sink),
    },
    CommandSpec {
        name: "listAlertDeliveries",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists alert deliveries (the outbox): one per notification and sink, with its attempts, oldest first (Ledgerstack)",
        params: &[
            param("id", T::Uuid, "the delivery's idempotency key"),
            param("sinkid", T::Uuid, "deliveries to this sink"),
            param("alertid", T::Uuid, "deliveries of this alert"),
            param("state", T::String, "pending, delivered or failed"),
        ],
        inherits: Inherits::Paging,
        response: DELIVERY_FIELDS,
        related: "listAlertSinks,listAlerts",
        manual_clock_only: false,
        handler: handler!(list_alert_deliveries),
    },
];

fn model(state: &State) -> Result<&DeliveryModel, ApiError> {
    delivery::of(state).ok_or_else(|| ApiError::internal("the alert delivery model is not loaded"))
}

fn kind_name(kind: AlertSinkKind) -> &'static str {
    match kind {
        AlertSinkKind::Webhook => "webhook",
        AlertSinkKind::Email => "email",
    }
}

fn parse_kind(text: &str) -> Result<AlertSinkKind, ApiError> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("webhook") => Ok(AlertSinkKind::Webhook),
        t if t.eq_ignore_ascii_case("email") => Ok(AlertSinkKind::Email),
        other => Err(ApiError::invalid_param(format!(
            "Unable to verify parameter type: '{other}' is not a sink type (webhook or email)"
        ))),
    }
}

fn sink_name(text: &str) -> Result<CompactString, ApiError> {
    let name = text.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::invalid_param(
            "An alert sink's name must be 1 to 255 characters",
        ));
    }
    Ok(name.into())
}

/// `alerttypes`: listed type numbers, sorted and without repeats; `all` is every type (empty).
fn alert_types(call: &Call) -> Result<Option<Vec<u16>>, ApiError> {
    let Some(text) = call.str("alerttypes") else {
        return Ok(None);
    };
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(Some(Vec::new()));
    }
    let mut types = Vec::new();
    for item in parse_list(text) {
        let id = item
            .parse::<u16>()
            .ok()
            .filter(|id| AlertType::ALL.iter().any(|t| t.id == *id))
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to verify parameter alerttypes: unknown alert type '{item}' (listAlertTypes lists the type numbers)"
                ))
            })?;
        types.push(id);
    }
    types.sort_unstable();
    types.dedup();
    Ok(Some(types))
}

fn max_attempts(call: &Call) -> Result<Option<u32>, ApiError> {
    call.int("maxattempts")?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_MAX_ATTEMPTS).contains(&i64::from(*n)))
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to verify parameter maxattempts: {n} is not between 1 and {MAX_MAX_ATTEMPTS}"
                    ))
                })
        })
        .transpose()
}

fn smtp_port(call: &Call) -> Result<Option<u16>, ApiError> {
    call.int("smtpport")?
        .map(|p| {
            u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to verify parameter smtpport: {p} is not a port (1 to 65535)"
                ))
            })
        })
        .transpose()
}

fn emails(call: &Call) -> Option<Vec<CompactString>> {
    call.str("emailto")
        .map(|v| parse_list(v).into_iter().map(CompactString::from).collect())
}

/// Checks a definition as a whole: what create and update both must hold.
fn validate(sink: &AlertSinkDefined) -> Result<(), ApiError> {
    match sink.kind {
        AlertSinkKind::Webhook => {
            let url = sink.url.as_deref().ok_or_else(|| {
                ApiError::invalid_param("Unable to verify parameter url: a webhook sink needs one")
            })?;
            WebhookUrl::parse(url).map_err(|e| {
                ApiError::invalid_param(format!("Unable to verify parameter url: {e}"))
            })?;
            let email_params = sink.smtp_host.is_some()
                || sink.smtp_port.is_some()
                || sink.smtp_username.is_some()
                || sink.smtp_password.is_some()
                || sink.email_from.is_some()
                || !sink.email_to.is_empty();
            if email_params {
                return Err(ApiError::invalid_param(
                    "smtphost, smtpport, smtpusername, smtppassword, emailfrom and emailto are for email sinks",
                ));
            }
        }
        AlertSinkKind::Email => {
            if sink.url.is_some() || sink.secret.is_some() {
                return Err(ApiError::invalid_param(
                    "url and secret are for webhook sinks",
                ));
            }
            let host = sink.smtp_host.as_deref().ok_or_else(|| {
                ApiError::invalid_param(
                    "Unable to verify parameter smtphost: an email sink needs one",
                )
            })?;
            if host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ApiError::invalid_param(format!(
                    "Unable to verify parameter smtphost: '{host}' is not a host name or address"
                )));
            }
            if sink.smtp_username.is_some() != sink.smtp_password.is_some() {
                return Err(ApiError::invalid_param(
                    "smtpusername and smtppassword go together",
                ));
            }
            let from = sink.email_from.as_deref().ok_or_else(|| {
                ApiError::invalid_param(
                    "Unable to verify parameter emailfrom: an email sink needs a sender",
                )
            })?;
            email::parse_mailbox(from).map_err(|e| {
                ApiError::invalid_param(format!("Unable to verify parameter emailfrom: {e}"))
            })?;
            if sink.email_to.is_empty() {
                return Err(ApiError::invalid_param(
                    "Unable to verify parameter emailto: an email sink needs at least one recipient",
                ));
            }
            for to in &sink.email_to {
                email::parse_mailbox(to).map_err(|e| {
                    ApiError::invalid_param(format!("Unable to verify parameter emailto: {e}"))
                })?;
            }
        }
    }
    Ok(())
}

fn name_free(state: &State, name: &str, except: Option<Uuid>) -> Result<(), ApiError> {
    let taken = model(state)?
        .sinks()
        .any(|s| s.name.eq_ignore_ascii_case(name) && Some(s.sink_id) != except);
    if taken {
        return Err(ApiError::invalid_param(format!(
            "An alert sink named '{name}' already exists"
        )));
    }
    Ok(())
}

fn sink_json(model: &DeliveryModel, sink: &AlertSinkDefined) -> Value {
    let (mut pending, mut delivered, mut failed) = (0u64, 0u64, 0u64);
    for d in model.deliveries().filter(|d| d.sink_id == sink.sink_id) {
        match d.state {
            DeliveryState::Pending => pending += 1,
            DeliveryState::Delivered => delivered += 1,
            DeliveryState::Failed => failed += 1,
        }
    }
    let mut value = json!({
        "id": sink.sink_id,
        "name": sink.name,
        "type": kind_name(sink.kind),
        "alerttypes": sink.alert_types,
        "maxattempts": sink.max_attempts,
        "pending": pending,
        "delivered": delivered,
        "failed": failed,
    });
    match sink.kind {
        AlertSinkKind::Webhook => {
            value["url"] = json!(sink.url);
            value["hassecret"] = json!(sink.secret.is_some());
        }
        AlertSinkKind::Email => {
            value["smtphost"] = json!(sink.smtp_host);
            value["smtpport"] = json!(sink.smtp_port.unwrap_or(email::DEFAULT_SMTP_PORT));
            if let Some(user) = &sink.smtp_username {
                value["smtpusername"] = json!(user);
            }
            value["hassmtppassword"] = json!(sink.smtp_password.is_some());
            value["emailfrom"] = json!(sink.email_from);
            value["emailto"] = json!(sink.email_to);
        }
    }
    value
}

fn reply(ctx: &Ctx, sink_id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let model = model(&state)?;
    let sink = model.sink(sink_id).ok_or_else(|| {
        ApiError::internal(format!(
            "alert sink {sink_id} vanished after it was written"
        ))
    })?;
    Ok(Reply::Object {
        key: "alertsink",
        value: sink_json(model, sink),
    })
}

/// A live sink by id (431 otherwise).
fn sink(state: &State, id: Uuid) -> Result<&AlertSinkDefined, ApiError> {
    model(state)?
        .sink(id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find alert sink by id {id}")))
}

async fn create_alert_sink(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = sink_name(call.required("name")?)?;
    let kind = parse_kind(call.required("type")?)?;
    let sink_id = Uuid::new_v4();
    let facts = AlertSinkDefined {
        sink_id,
        name: name.clone(),
        kind,
        alert_types: alert_types(call)?.unwrap_or_default(),
        url: call.str("url").map(|u| u.trim().to_owned()),
        secret: call
            .str("secret")
            .map(|s| ctx.keys.seal(s.as_bytes(), &secret_context(sink_id))),
        smtp_host: call.str("smtphost").map(|h| h.trim().into()),
        smtp_port: smtp_port(call)?,
        smtp_username: call.str("smtpusername").map(CompactString::from),
        smtp_password: call
            .str("smtppassword")
            .map(|p| ctx.keys.seal(p.as_bytes(), &password_context(sink_id))),
        email_from: call.str("emailfrom").map(|f| f.trim().into()),
        email_to: emails(call).unwrap_or_default(),
        max_attempts: max_attempts(call)?.unwrap_or(DEFAULT_MAX_ATTEMPTS),
    };
    validate(&facts)?;
    ctx.decide(ALERT_SINKS_STREAM, |state| {
        name_free(state, &name, None)?;
        Ok(vec![call.event(EventBody::AlertDelivery(
            AlertDeliveryEvent::SinkCreate(facts.clone()),
        ))])
    })
    .await?;
    reply(ctx, sink_id)
}

async fn update_alert_sink(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let new_name = call.str("name").map(sink_name).transpose()?;
    let types = alert_types(call)?;
    let port = smtp_port(call)?;
    let attempts = max_attempts(call)?;
    let to = emails(call);
    let secret = call
        .str("secret")
        .map(|s| ctx.keys.seal(s.as_bytes(), &secret_context(id)));
    let password = call
        .str("smtppassword")
        .map(|p| ctx.keys.seal(p.as_bytes(), &password_context(id)));
    ctx.decide(ALERT_SINKS_STREAM, |state| {
        let mut facts = sink(state, id)?.clone();
        if let Some(name) = &new_name {
            name_free(state, name, Some(id))?;
            facts.name = name.clone();
        }
        if let Some(types) = &types {
            facts.alert_types = types.clone();
        }
        if let Some(url) = call.str("url") {
            facts.url = Some(url.trim().to_owned());
        }
        if secret.is_some() {
            facts.secret = secret.clone();
        }
        if let Some(host) = call.str("smtphost") {
            facts.smtp_host = Some(host.trim().into());
        }
        if port.is_some() {
            facts.smtp_port = port;
        }
        if let Some(user) = call.str("smtpusername") {
            facts.smtp_username = Some(user.into());
        }
        if password.is_some() {
            facts.smtp_password = password.clone();
        }
        if let Some(from) = call.str("emailfrom") {
            facts.email_from = Some(from.trim().into());
        }
        if let Some(to) = &to {
            facts.email_to = to.clone();
        }
        if let Some(attempts) = attempts {
            facts.max_attempts = attempts;
        }
        validate(&facts)?;
        Ok(vec![call.event(EventBody::AlertDelivery(
            AlertDeliveryEvent::SinkUpdate(facts),
        ))])
    })
    .await?;
    reply(ctx, id)
}

async fn delete_alert_sink(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(ALERT_SINKS_STREAM, |state| {
        let facts = sink(state, id)?;
        Ok(vec![call.event(EventBody::AlertDelivery(
            AlertDeliveryEvent::SinkDelete(AlertSinkRemoved {
                sink_id: id,
                name: facts.name.clone(),
            }),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

async fn list_alert_sinks(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let model = model(&state)?;
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let kind = call.str("type").map(parse_kind).transpose()?;
    let name = call.str("name").map(str::trim);
    let keyword = call.str("keyword");
    let mut sinks: Vec<&AlertSinkDefined> = model
        .sinks()
        .filter(|s| {
            id.is_none_or(|id| s.sink_id == id)
                && kind.is_none_or(|k| s.kind == k)
                && name.is_none_or(|n| s.name.eq_ignore_ascii_case(n))
                && keyword_matches(keyword, &[&s.name])
        })
        .collect();
    sinks.sort_by(|a, b| a.name.cmp(&b.name).then(a.sink_id.cmp(&b.sink_id)));
    let (count, items) = paging.apply(sinks.into_iter().map(|s| sink_json(model, s)).collect());
    Ok(Reply::List {
        key: "alertsink",
        count,
        items,
    })
}

fn parse_state(text: &str) -> Result<DeliveryState, ApiError> {
    [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    .ok_or_else(|| {
        ApiError::invalid_param(format!(
            "Unable to verify parameter state: '{text}' is not pending, delivered or failed"
        ))
    })
}

fn delivery_json(model: &DeliveryModel, d: &Delivery) -> Value {
    let n = &d.notification;
    let mut value = json!({
        "id": d.key,
        "sinkid": d.sink_id,
        "notificationid": n.notification_id,
        "alertid": n.alert_id,
        "alerttype": n.alert_type,
        "alertname": n.name,
        "kind": n.kind.as_str(),
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "sent": date(n.sent),
    });
    if let Some(sink) = model.sink(d.sink_id) {
        value["sink"] = json!(sink.name);
    }
    if let Some(error) = &d.last_error {
        value["lasterror"] = json!(error);
    }
    if let Some(next) = d.next_attempt {
        value["nextattempt"] = json!(date(next));
    }
    value
}

async fn list_alert_deliveries(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let model = model(&state)?;
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let sink_id = call.uuid("sinkid")?;
    let alert_id = call.uuid("alertid")?;
    let wanted = call.str("state").map(parse_state).transpose()?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&Delivery> = model
        .deliveries()
        .filter(|d| {
            id.is_none_or(|id| d.key == id)
                && sink_id.is_none_or(|s| d.sink_id == s)
                && alert_id.is_none_or(|a| d.notification.alert_id == a)
                && wanted.is_none_or(|s| d.state == s)
                && keyword_matches(
                    keyword,
                    &[&d.notification.name, &d.notification.description],
                )
        })
        .collect();
    rows.sort_by_key(|d| (d.notification.sent, d.key));
    let (count, items) = paging.apply(rows.into_iter().map(|d| delivery_json(model, d)).collect());
    Ok(Reply::List {
        key: "alertdelivery",
        count,
        items,
    })
}
