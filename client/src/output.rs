//! Rendering a response for a terminal: a list as a table with chosen columns, one object as
//! field/value lines.

use serde_json::{Map, Value};

/// Columns shown for a list when none are asked for, in this order, those the rows have: the
/// fields an operator looks for first in CloudStack objects.
const PREFERRED_COLUMNS: &[&str] = &[
    "id",
    "name",
    "key",
    "value",
    "displayname",
    "username",
    "state",
    "allocationstate",
    "type",
    "zonename",
    "account",
    "domain",
    "ipaddress",
    "created",
    "description",
];

/// At most this many columns are chosen by default, so a table fits a terminal.
const MAX_DEFAULT_COLUMNS: usize = 6;
/// Rows with fewer preferred fields are topped up to this many columns with their own fields,
/// so that an unfamiliar object still shows something to tell the rows apart.
const MIN_DEFAULT_COLUMNS: usize = 3;

/// The rows of a list response (`{"count":N,"<item>":[...]}`): the one array of objects in it.
/// `None` for anything else (a single object, a success flag, an async job id).
pub fn list_rows(response: &Value) -> Option<&[Value]> {
    let object = response.as_object()?;
    let mut arrays = object
        .iter()
        .filter(|(key, _)| key.as_str() != "count")
        .filter_map(|(_, value)| value.as_array())
        .filter(|rows| rows.iter().all(Value::is_object));
    let rows = arrays.next()?;
    match arrays.next() {
        None => Some(rows.as_slice()),
        Some(_) => None,
    }
}

/// True for an empty list response (`{}` or `{"count":0}`): CloudStack omits the item key then.
pub fn is_empty_list(response: &Value) -> bool {
    response
        .as_object()
        .is_some_and(|o| o.is_empty() || (o.len() == 1 && o.get("count") == Some(&Value::from(0))))
}

/// The default columns of `rows`: the [`PREFERRED_COLUMNS`] some row has as a scalar (at most
/// [`MAX_DEFAULT_COLUMNS`]), topped up to [`MIN_DEFAULT_COLUMNS`] with the rows' other scalar
/// fields in the order they first appear.
pub fn default_columns(rows: &[Value]) -> Vec<String> {
    let scalar_keys: Vec<&String> = {
        let mut keys: Vec<&String> = Vec::new();
        for row in rows.iter().filter_map(Value::as_object) {
            for (key, value) in row {
                if !value.is_object() && !value.is_array() && !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    };
    let mut columns: Vec<String> = PREFERRED_COLUMNS
        .iter()
        .filter(|c| scalar_keys.iter().any(|k| k == *c))
        .map(|c| (*c).to_owned())
        .take(MAX_DEFAULT_COLUMNS)
        .collect();
    for key in scalar_keys {
        if columns.len() >= MIN_DEFAULT_COLUMNS {
            break;
        }
        if !columns.contains(key) {
            columns.push(key.clone());
        }
    }
    columns
}

/// A cell: strings as they are (line breaks as spaces), other scalars as JSON, absent as
/// empty, nested values as compact JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.replace(['\n', '\r'], " "),
        Some(other) => other.to_string(),
    }
}

/// A table of `rows` with a header of `columns`, columns padded to their widest cell and
/// separated by two spaces.
pub fn table(rows: &[Value], columns: &[String]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row.get(c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |values: &[String]| {
        let mut text = String::new();
        for (i, value) in values.iter().enumerate() {
            if i + 1 == values.len() {
                text.push_str(value);
            } else {
                let pad = widths[i] - value.chars().count();
                text.push_str(value);
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(columns);
    for row in &cells {
        line(row);
    }
    out
}

/// One object as `field  value` lines (nested values as compact JSON), fields in the order the
/// server sent them.
pub fn fields(object: &Map<String, Value>) -> String {
    let width = object.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in object {
        let pad = width - key.chars().count();
        out.push_str(key);
        out.extend(std::iter::repeat_n(' ', pad + 2));
        out.push_str(&cell(Some(value)));
        out.push('\n');
    }
    out
}

/// A response for a terminal. A list is a table (of `columns`, else [`default_columns`]); an
/// empty list prints the header of `columns`, or nothing; a response holding one object
/// (`{"virtualmachine":{...}}`) shows that object's fields, or a one-row table of `columns`;
/// anything else (a success flag, a job id) its own fields.
pub fn render(response: &Value, columns: Option<&[String]>) -> String {
    if let Some(rows) = list_rows(response) {
        let chosen = columns.map_or_else(|| default_columns(rows), <[String]>::to_vec);
        return table(rows, &chosen);
    }
    if is_empty_list(response) {
        return columns.map_or_else(String::new, |c| table(&[], c));
    }
    let Some(object) = response.as_object() else {
        return format!("{response}\n");
    };
    let single = match (object.len(), object.values().next()) {
        (1, Some(Value::Object(inner))) => inner,
        _ => object,
    };
    match columns {
        Some(columns) => table(&[Value::Object(single.clone())], columns),
        None => fields(single),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_become_tables_of_sensible_columns() {
        let response = json!({"count": 2, "zone": [
            {"id": "z1", "name": "Zone One", "networktype": "Advanced", "allocationstate": "Enabled", "tags": []},
            {"id": "z2", "name": "z2", "networktype": "Basic", "allocationstate": "Disabled"},
        ]});
        let text = render(&response, None);
        assert_eq!(
            text,
            "id  name      allocationstate\nz1  Zone One  Enabled\nz2  z2        Disabled\n"
        );
        let chosen = [
            "name".to_owned(),
            "networktype".to_owned(),
            "tags".to_owned(),
        ];
        assert_eq!(
            render(&response, Some(&chosen)),
            "name      networktype  tags\nZone One  Advanced     []\nz2        Basic\n"
        );
    }

    #[test]
    fn rows_without_preferred_fields_fall_back_to_their_own() {
        let rows = [json!({"a": 1, "b": {"x": 1}, "c": "y"})];
        assert_eq!(default_columns(&rows), ["a", "c"]);
    }

    #[test]
    fn single_objects_and_flags_become_field_lines() {
        let vm =
            json!({"virtualmachine": {"id": "v", "state": "Running", "nic": [{"ip": "10.1.1.2"}]}});
        assert_eq!(
            render(&vm, None),
            "id     v\nstate  Running\nnic    [{\"ip\":\"10.1.1.2\"}]\n"
        );
        assert_eq!(
            render(&json!({"success": true, "displaytext": "ok"}), None),
            "success      true\ndisplaytext  ok\n"
        );
        assert_eq!(render(&json!({}), None), "");
        assert_eq!(render(&json!({}), Some(&["id".to_owned()])), "id\n");
    }
}
