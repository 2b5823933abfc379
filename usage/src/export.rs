//! Usage records for billing systems as files: CSV (a header row and one row per record, RFC
//! 4180) or JSON Lines (one `usagerecord` object per line, as `listUsageRecords` shows it).
//! `ledgerstack usage export` and the API's `/client/usage/export` write them; `docs/usage.md`
//! ("Exports") documents the columns.
//!
//! Both formats are written from the record's JSON object, so a CSV row and a JSON line of the
//! same record always say the same thing: [`record_object`] makes it from a [`RecordView`], and
//! the API hands over the objects its `listUsageRecords` rendered.

use std::io::{self, Write};
use std::str::FromStr;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use engine::time::Timestamp;
use serde_json::{Map, Value};

use crate::period::AggregationRule;
use crate::view::{RecordView, displayed_end, zoned_date};

/// The CSV columns, in their stable order: the `usagerecord` fields of `listUsageRecords`, in
/// its order, without `tags` (a list does not fit a cell; the JSON Lines form carries them).
pub const COLUMNS: &[&str] = &[
    "account",
    "accountid",
    "domainid",
    "domain",
    "domainpath",
    "zoneid",
    "description",
    "usage",
    "usagetype",
    "rawusage",
    "virtualmachineid",
    "name",
    "offeringid",
    "templateid",
    "usageid",
    "type",
    "size",
    "virtualsize",
    "cpunumber",
    "cpuspeed",
    "memory",
    "startdate",
    "enddate",
    "issourcenat",
    "issystem",
    "networkid",
    "isdefault",
    "vpcid",
    "revision",
    "publishedat",
    "superseded",
];

/// An export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values: a header row of [`COLUMNS`], then one row per record.
    Csv,
    /// JSON Lines: one `usagerecord` object per line.
    JsonLines,
}

/// The name given for a format is neither `csv` nor `jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}: use csv or jsonl")]
pub struct UnknownFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" | "ndjson" => Ok(ExportFormat::JsonLines),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

impl ExportFormat {
    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8; header=present",
            ExportFormat::JsonLines => "application/x-ndjson",
        }
    }

    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::JsonLines => "jsonl",
        }
    }
}

/// Which end of an export's date range a date gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Records whose period starts at or after it.
    From,
    /// Records whose period's last second is at or before it.
    To,
}

/// A date bound that is neither a day nor an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid date {0:?}: use yyyy-MM-dd (a day in the aggregation time zone) or an RFC 3339 time such as 2024-05-01T00:00:00Z"
)]
pub struct BadDate(pub String);

/// The instant a date bound of an export stands for, as `listUsageRecords` reads `startdate`
/// and `enddate`: an RFC 3339 time is that instant; a day alone (`yyyy-MM-dd`) is a local date
/// in `zone` (the global aggregation zone), its first instant as a start and its last second as
/// an end, so that `--from D --to D` selects day D's daily records.
pub fn date_bound(text: &str, zone: Tz, bound: Bound) -> Result<Timestamp, BadDate> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| BadDate(text.to_owned()))?;
    // An instant of the local day, away from any transition (which happen at night), gives the
    // day's daily period: from the first instant whose local date is D to that of D+1.
    let noon = day
        .and_hms_opt(12, 0, 0)
        .and_then(|noon| zone.from_local_datetime(&noon).earliest())
        .ok_or_else(|| BadDate(text.to_owned()))?;
    let daily = AggregationRule {
        range_minutes: 1440,
        zone,
    };
    let period = daily.period_containing(Timestamp::from_millis(noon.timestamp_millis()));
    Ok(match bound {
        Bound::From => period.start,
        Bound::To => displayed_end(period.end),
    })
}

/// A record as `listUsageRecords` shows it (`usagerecord`, without `tags`): the fields of
/// [`COLUMNS`] in that order, absent ones left out.
pub fn record_object(view: &RecordView) -> Map<String, Value> {
    let mut object = Map::new();
    let mut put = |name: &str, value: Value| {
        if !value.is_null() {
            object.insert(name.to_owned(), value);
        }
    };
    let text = |value: Option<&str>| value.map_or(Value::Null, |v| Value::from(v.to_owned()));
    let id = |value: Option<uuid::Uuid>| value.map_or(Value::Null, |v| Value::from(v.to_string()));
    put("account", text(view.account.as_deref()));
    put("accountid", id(Some(view.account_id)));
    put("domainid", id(Some(view.domain_id)));
    put("domain", text(view.domain.as_deref()));
    put("domainpath", text(view.domain_path.as_deref()));
    put("zoneid", id(view.zone_id));
    put("description", Value::from(view.description.clone()));
    put("usage", Value::from(view.usage.clone()));
    put("usagetype", Value::from(view.usage_type.id()));
    put("rawusage", Value::from(view.raw_usage.clone()));
    put("virtualmachineid", id(view.vm_id));
    put("name", text(view.name.as_deref()));
    put("offeringid", id(view.offering_id));
    put("templateid", id(view.template_id));
    put("usageid", id(Some(view.usage_id)));
    put("type", text(view.kind.as_deref()));
    put("size", view.size.into());
    put("virtualsize", view.virtual_size.into());
    put("cpunumber", view.cpu_number.into());
    put("cpuspeed", view.cpu_speed.into());
    put("memory", view.memory.into());
    put("startdate", Value::from(view.start_date.clone()));
    put("enddate", Value::from(view.end_date.clone()));
    put("issourcenat", view.is_source_nat.into());
    put("issystem", view.is_system.into());
    put("networkid", id(view.network_id));
    put("isdefault", view.is_default.into());
    put("vpcid", id(view.vpc_id));
    put("revision", view.revision.into());
    put(
        "publishedat",
        Value::from(zoned_date(view.published_at, chrono_tz::UTC)),
    );
    put("superseded", view.superseded.then_some(true).into());
    object
}

/// Writes `records` (objects as [`record_object`] or `listUsageRecords` make them) in `format`;
/// returns how many were written. Members that are `null` are left out of JSON lines, as the
/// API leaves them out; in CSV they are empty cells.
pub fn write_records<W: Write>(
    format: ExportFormat,
    records: impl IntoIterator<Item = Map<String, Value>>,
    out: W,
) -> io::Result<usize> {
    let mut out = io::BufWriter::new(out);
    let mut count = 0;
    if format == ExportFormat::Csv {
        write_csv_row(&mut out, COLUMNS.iter().copied())?;
    }
    for mut record in records {
        match format {
            ExportFormat::Csv => {
                let cells: Vec<String> = COLUMNS
                    .iter()
                    .map(|column| record.get(*column).map(cell).unwrap_or_default())
                    .collect();
                write_csv_row(&mut out, cells.iter().map(String::as_str))?;
            }
            ExportFormat::JsonLines => {
                record.retain(|_, value| {
                    strip_nulls(value);
                    !value.is_null()
                });
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
            }
        }
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// Writes record views in `format` (see [`write_records`]).
pub fn write_views<'a, W: Write>(
    format: ExportFormat,
    views: impl IntoIterator<Item = &'a RecordView>,
    out: W,
) -> io::Result<usize> {
    write_records(format, views.into_iter().map(record_object), out)
}

/// A JSON value as the text of a CSV cell: strings as they are, numbers and booleans as JSON
/// writes them, `null` empty, lists and objects as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One CSV record (RFC 4180): cells separated by commas, a cell holding a comma, a quote, a
/// carriage return or a line feed quoted with its quotes doubled, and CRLF at the end.
fn write_csv_row<'a>(out: &mut impl Write, cells: impl Iterator<Item = &'a str>) -> io::Result<()> {
    for (i, text) in cells.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        if text.contains([',', '"', '\r', '\n']) {
            out.write_all(b"\"")?;
            out.write_all(text.replace('"', "\"\"").as_bytes())?;
            out.write_all(b"\"")?;
        } else {
            out.write_all(text.as_bytes())?;
        }
    }
    out.write_all(b"\r\n")
}

/// Removes `null` members from objects at any depth, as the API's renderer does.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(members) => members.retain(|_, member| {
            strip_nulls(member);
            !member.is_null()
        }),
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use uuid::Uuid;

    use super::*;
    use crate::fact::TrackKey;
    use crate::ledger::RecordKey;
    use crate::usage_type::UsageType;

    fn view() -> RecordView {
        let start: Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
        RecordView {
            key: RecordKey {
                period_start: start.millis(),
                track: TrackKey {
                    account_id: Uuid::from_u128(1),
                    usage_type: UsageType::RunningVm,
                    entity_id: Uuid::from_u128(3),
                    sub_id: Uuid::nil(),
                },
                variant: 0,
            },
            account: Some("acme, \"ops\"".into()),
            account_id: Uuid::from_u128(1),
            domain_id: Uuid::from_u128(2),
            domain: Some("acme".into()),
            domain_path: Some("ROOT/acme".into()),
            zone_id: None,
            description: "line one\nline two".into(),
            usage: "14 Hrs".into(),
            usage_type: UsageType::RunningVm,
            raw_usage: "14".into(),
            raw_quantity: Decimal::from(14),
            quantity: 50_400_000,
            vm_id: Some(Uuid::from_u128(3)),
            name: Some("web-01".into()),
            offering_id: None,
            template_id: None,
            usage_id: Uuid::from_u128(3),
            kind: Some("Simulator".into()),
            size: None,
            virtual_size: None,
            cpu_number: Some(1),
            cpu_speed: Some(1000),
            memory: Some(1024),
            start,
            end: "2024-05-02T00:00:00Z".parse().unwrap(),
            start_date: "2024-05-01T00:00:00+0000".into(),
            end_date: "2024-05-01T23:59:59+0000".into(),
            is_source_nat: None,
            is_system: Some(false),
            is_default: None,
            network_id: None,
            vpc_id: None,
            revision: 1,
            published_at: "2024-05-02T00:15:00Z".parse().unwrap(),
            superseded: false,
        }
    }

    #[test]
    fn date_bounds_are_days_in_the_zone_or_instants() {
        let ny = chrono_tz::America::New_York;
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            date_bound("2026-03-08", ny, Bound::From),
            Ok(at("2026-03-08T05:00:00Z"))
        );
        // A 23-hour day: its last second is 03:59:59 UTC.
        assert_eq!(
            date_bound("2026-03-08", ny, Bound::To),
            Ok(at("2026-03-09T03:59:59Z"))
        );
        // Santiago's 2026-09-06 begins at 01:00 local (midnight does not exist).
        assert_eq!(
            date_bound("2026-09-06", chrono_tz::America::Santiago, Bound::From),
            Ok(at("2026-09-06T04:00:00Z"))
        );
        assert_eq!(
            date_bound("2024-05-01T10:00:00+02:00", ny, Bound::To),
            Ok(at("2024-05-01T08:00:00Z"))
        );
        assert!(date_bound("yesterday", ny, Bound::From).is_err());
        assert!(date_bound("2024-02-30", ny, Bound::From).is_err());
    }

    #[test]
    fn formats_have_names_and_content_types() {
        assert_eq!("csv".parse::<ExportFormat>(), Ok(ExportFormat::Csv));
        assert_eq!("JSONL".parse::<ExportFormat>(), Ok(ExportFormat::JsonLines));
        assert!("xml".parse::<ExportFormat>().is_err());
        assert_eq!(ExportFormat::Csv.extension(), "csv");
        assert_eq!(
            ExportFormat::JsonLines.content_type(),
            "application/x-ndjson"
        );
    }

    #[test]
    fn the_object_has_the_columns_in_order_without_absent_fields() {
        let object = record_object(&view());
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let expected: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| object.contains_key(*c))
            .collect();
        assert_eq!(keys, expected);
        assert!(!object.contains_key("zoneid") && !object.contains_key("superseded"));
        assert_eq!(object["usagetype"], 1);
        assert_eq!(object["publishedat"], "2024-05-02T00:15:00+0000");
        assert_eq!(object["issystem"], false);
    }

    #[test]
    fn csv_has_a_header_and_quotes_as_rfc_4180_says() {
        let mut out = Vec::new();
        let count = write_views(ExportFormat::Csv, &[view()], &mut out).unwrap();
        assert_eq!(count, 1);
        let text = String::from_utf8(out).unwrap();
        let (header, rest) = text.split_once("\r\n").unwrap();
        assert_eq!(header, COLUMNS.join(","));
        assert!(
            rest.starts_with("\"acme, \"\"ops\"\"\",00000000-0000-0000-0000-000000000001,"),
            "{rest}"
        );
        assert!(
            rest.contains(",,\"line one\nline two\",14 Hrs,1,14,"),
            "{rest}"
        );
        assert!(
            rest.ends_with(",false,,,,1,2024-05-02T00:15:00+0000,\r\n"),
            "{rest}"
        );
        assert_eq!(rest.matches("\r\n").count(), 1, "one record, one line end");
    }

    #[test]
    fn json_lines_hold_one_object_per_record_without_nulls() {
        let mut superseded = view();
        superseded.superseded = true;
        let mut with_nulls = record_object(&view());
        with_nulls.insert("zoneid".into(), Value::Null);
        with_nulls.insert(
            "tags".into(),
            serde_json::json!([{"key": "a", "value": null}]),
        );
        let mut out = Vec::new();
        let records = [record_object(&superseded), with_nulls];
        let count = write_records(ExportFormat::JsonLines, records, &mut out).unwrap();
        assert_eq!(count, 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["superseded"], true);
        assert_eq!(lines[0]["description"], "line one\nline two");
        assert!(lines[1].get("zoneid").is_none());
        assert_eq!(lines[1]["tags"], serde_json::json!([{"key": "a"}]));
    }

    #[test]
    fn an_empty_csv_export_is_its_header() {
        let mut out = Vec::new();
        assert_eq!(write_views(ExportFormat::Csv, &[], &mut out).unwrap(), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\r\n", COLUMNS.join(","))
        );
    }
}
