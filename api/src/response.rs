//! Response envelopes (spec/api.md "Envelopes") in JSON and XML.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::jobs::AsyncWork;

/// The version clients see in XML envelopes' `cloud-stack-version`: the CloudStack API level
/// Ledgerstack follows (spec/commands.md was read from 4.22).
pub const CLOUDSTACK_VERSION: &str = "4.22.0.0";

/// What a command answers.
pub enum Reply {
    /// One object under its key: `{"<cmd>response":{"domain":{...}}}`.
    Object {
        /// The object's key, such as `domain`.
        key: &'static str,
        /// The object.
        value: Value,
    },
    /// A page of a list, with the total count over all pages.
    List {
        /// The items' key, such as `zone`.
        key: &'static str,
        /// Matching rows over all pages.
        count: usize,
        /// This page.
        items: Vec<Value>,
    },
    /// `{"success":true}`, with `displaytext` when the command sets one.
    Success {
        /// Optional explanation.
        display_text: Option<String>,
    },
    /// Fields directly under the response (`login`, `logout`, `queryAsyncJobResult`).
    Flat(Map<String, Value>),
    /// Async work accepted: the dispatcher turns it into a job and answers `jobid` (and `id`).
    Async(AsyncWork),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Async(_) => f.write_str("Reply::Async"),
            Reply::Object { key, .. } => write!(f, "Reply::Object({key})"),
            Reply::List { key, count, .. } => write!(f, "Reply::List({key}, {count})"),
            Reply::Success { .. } => f.write_str("Reply::Success"),
            Reply::Flat(map) => write!(f, "Reply::Flat({} fields)", map.len()),
        }
    }
}

impl Reply {
    /// A plain success.
    pub fn success() -> Self {
        Reply::Success { display_text: None }
    }

    /// The body under `<cmd>response` for a synchronous answer. Takes the reply by value: a
    /// list's items move into the body rather than being copied.
    pub fn into_body(self) -> Value {
        let mut body = Map::new();
        match self {
            Reply::Object { key, value } => {
                body.insert(key.to_owned(), value);
            }
            Reply::List { key, count, items } => {
                if count > 0 || !items.is_empty() {
                    body.insert("count".to_owned(), count.into());
                    body.insert(key.to_owned(), Value::Array(items));
                }
            }
            Reply::Success { display_text } => {
                body.insert("success".to_owned(), true.into());
                if let Some(text) = display_text {
                    body.insert("displaytext".to_owned(), text.into());
                }
            }
            Reply::Flat(map) => body = map,
            Reply::Async(_) => {}
        }
        Value::Object(body)
    }

    /// The `jobresult` of an async job that answered this.
    pub fn into_job_result(self) -> Value {
        match self {
            Reply::Success { display_text } => {
                let mut body = json!({ "success": true });
                if let Some(text) = display_text {
                    body["details"] = Value::String(text);
                }
                body
            }
            other => other.into_body(),
        }
    }
}

/// The response format a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `response=json`.
    Json,
    /// Anything else: CloudStack's default.
    Xml,
}

impl Format {
    /// From the `response` parameter (case-insensitive `json`; anything else is XML).
    pub fn from_param(value: Option<&str>) -> Format {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Xml,
        }
    }

    /// The `Content-Type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json; charset=UTF-8",
            Format::Xml => "text/xml; charset=UTF-8",
        }
    }
}

/// `<command lowercased>response`, with CloudStack's one exception.
pub fn envelope_name(command: &str) -> String {
    if command == "restoreVirtualMachine" {
        return "restorevmresponse".into();
    }
    format!("{}response", command.to_ascii_lowercase())
}

/// The error body under its envelope.
pub fn error_body(error: &ApiError) -> Value {
    json!({
        "uuidList": [],
        "errorcode": error.code,
        "cserrorcode": error.cs_code,
        "errortext": error.text,
    })
}

/// Serialises `body` under `envelope` in `format`. Null members are dropped, as CloudStack's
/// serializer omits unset fields.
pub fn render(envelope: &str, mut body: Value, format: Format) -> String {
    strip_nulls(&mut body);
    match format {
        Format::Json => {
            // Written around the body rather than wrapping it in another map: no extra copy.
            let mut out = String::with_capacity(envelope.len() + 256);
            out.push_str("{\"");
            out.push_str(envelope);
            out.push_str("\":");
            out.push_str(&body.to_string());
            out.push('}');
            out
        }
        Format::Xml => {
            let mut out = String::with_capacity(256);
            out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
            out.push('<');
            out.push_str(envelope);
            out.push_str(r#" cloud-stack-version=""#);
            out.push_str(CLOUDSTACK_VERSION);
            out.push_str(r#"">"#);
            write_xml_members(&body, &mut out);
            out.push_str("</");
            out.push_str(envelope);
            out.push('>');
            out
        }
    }
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn write_xml_members(value: &Value, out: &mut String) {
    let Value::Object(map) = value else {
        escape_xml(&scalar_text(value), out);
        return;
    };
    for (key, member) in map {
        match member {
            Value::Array(items) => {
                for item in items {
                    write_xml_element(key, item, out);
                }
            }
            other => write_xml_element(key, other, out),
        }
    }
}

fn write_xml_element(name: &str, value: &Value, out: &mut String) {
    // Element names come from our own keys, never from input, so they need no escaping.
    out.push('<');
    out.push_str(name);
    out.push('>');
    write_xml_members(value, out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn escape_xml(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_are_an_empty_object() {
        let reply = Reply::List {
            key: "zone",
            count: 0,
            items: vec![],
        };
        assert_eq!(
            render("listzonesresponse", reply.into_body(), Format::Json),
            r#"{"listzonesresponse":{}}"#
        );
    }

    #[test]
    fn xml_repeats_list_items_and_escapes_text() {
        let reply = Reply::List {
            key: "zone",
            count: 2,
            items: vec![
                json!({"id": "a", "name": "x<y"}),
                json!({"id": "b", "tags": []}),
            ],
        };
        assert_eq!(
            render("listzonesresponse", reply.into_body(), Format::Xml),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><listzonesresponse cloud-stack-version="4.22.0.0">"#,
                "<count>2</count><zone><id>a</id><name>x&lt;y</name></zone><zone><id>b</id></zone>",
                "</listzonesresponse>"
            )
        );
    }

    #[test]
    fn nulls_are_omitted_and_success_is_a_boolean() {
        let body = json!({"success": true, "displaytext": null});
        assert_eq!(
            render("deleteuserresponse", body, Format::Json),
            r#"{"deleteuserresponse":{"success":true}}"#
        );
    }

    #[test]
    fn restore_virtual_machine_has_its_own_envelope() {
        assert_eq!(envelope_name("restoreVirtualMachine"), "restorevmresponse");
        assert_eq!(envelope_name("listZones"), "listzonesresponse");
    }
}
