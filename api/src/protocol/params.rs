//! Request parameters as CloudStack sees them (spec/api.md "Transport"): the query string merged
//! with an `application/x-www-form-urlencoded` body, decoded as UTF-8, last value wins.
//!
//! Two views of the same parameters are needed: the signature covers the raw names exactly as
//! sent, while dispatch looks names up case-insensitively. [`Params`] keeps both.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Highest index accepted in a map parameter `name[N].field`. CloudStack takes any `int`; a cap
/// keeps one request from describing a map it would take gigabytes to hold.
pub const MAX_MAP_INDEX: u32 = 10_000;

/// Request parameters after decoding: query string merged with a form body, last value wins for a repeated name.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// One entry per distinct raw name, in the order each name was first sent.
    entries: Vec<Entry>,
    /// Raw name → position in `entries`.
    by_raw: HashMap<String, usize>,
    /// Lowercased name → position of the case variant assigned most recently, which is the one
    /// `get` answers with.
    by_lower: HashMap<String, usize>,
    /// Counts assignments so that map parameters spelt in several cases resolve to the one sent
    /// last, like `get` does.
    assignments: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    value: String,
    /// The assignment that last set `value`.
    sequence: u64,
}

impl Params {
    /// Parses `a=1&b=2` (query string or x-www-form-urlencoded body) into self; later values of the same raw name replace earlier ones.
    ///
    /// Splits on '&', then on the first '='; fragments without '=' are ignored, and so are empty
    /// names (Tomcat drops them, so CloudStack never sees them). Percent-decoding treats '+' as a
    /// space and keeps a '%' that does not start two hex digits literally; invalid UTF-8 is
    /// decoded lossily (U+FFFD) as a Java servlet does. Never panics on any input.
    pub fn merge_urlencoded(&mut self, raw: &[u8]) {
        for fragment in raw.split(|&byte| byte == b'&') {
            let Some(equals) = fragment.iter().position(|&byte| byte == b'=') else {
                continue;
            };
            let name = percent_decode(&fragment[..equals]);
            if name.is_empty() {
                continue;
            }
            let value = percent_decode(&fragment[equals + 1..]);
            self.set(name, value);
        }
    }

    /// Sets `name` to `value` as if it had been sent last, for callers that build requests
    /// (`ledgerstack sign`, tests, the bench) rather than parse them.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.set(Cow::Borrowed(name), Cow::Borrowed(value));
    }

    fn set(&mut self, name: Cow<'_, str>, value: Cow<'_, str>) {
        self.assignments += 1;
        let sequence = self.assignments;
        let position = match self.by_raw.get(name.as_ref()) {
            Some(&position) => {
                let entry = &mut self.entries[position];
                entry.value = value.into_owned();
                entry.sequence = sequence;
                position
            }
            None => {
                let position = self.entries.len();
                let name = name.into_owned();
                self.by_raw.insert(name.clone(), position);
                self.entries.push(Entry {
                    name,
                    value: value.into_owned(),
                    sequence,
                });
                position
            }
        };
        let lower = fold_case(&self.entries[position].name).into_owned();
        self.by_lower.insert(lower, position);
    }

    /// Value by raw name exactly as sent (used for `signature`, `apiKey`, `command`...).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.by_raw
            .get(name)
            .map(|&position| self.entries[position].value.as_str())
    }

    /// Value by top-level name, case-insensitively (`zoneId` = `zoneid`); an empty value counts as absent (CloudStack treats `name=` as not given). If several case variants are present, the one sent last wins.
    pub fn get(&self, name: &str) -> Option<&str> {
        let position = *self.by_lower.get(fold_case(name).as_ref())?;
        let value = self.entries[position].value.as_str();
        (!value.is_empty()).then_some(value)
    }

    /// Iterates (raw name, value) pairs — all of them, including empty values — for signing.
    ///
    /// Names come in the order they were first sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry.value.as_str()))
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no parameter was sent at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Map parameters `name[N].field=value` (name matched case-insensitively, as spec: lowercase the part before `[`, keep the field's case): returns entries grouped by index N in ascending numeric order, each a Vec<(field, value)> sorted by field.
    ///
    /// Only the grouping survives, not the index values themselves: `tags[0]` and `tags[7]` are
    /// simply the first and second group, as in CloudStack. Empty values are kept, since a map
    /// entry has no "not given" meaning of its own. The same field of the same index sent in
    /// several spellings of `name` resolves to the one sent last.
    ///
    /// Malformed forms (`name[x].f`, `name[0]` without `.field`, `name[0].`, missing `]`,
    /// negative or non-numeric index, index above [`MAX_MAP_INDEX`]) give an error naming the
    /// bad parameter, e.g. "unable to decode map parameter details[x].key".
    pub fn map(&self, name: &str) -> Result<Vec<Vec<(String, String)>>, MapParamError> {
        let wanted = fold_case(name);
        let mut matching = Vec::new();
        for entry in &self.entries {
            let Some(open) = entry.name.find('[') else {
                continue;
            };
            if fold_case(&entry.name[..open]) != wanted {
                continue;
            }
            let key = parse_map_key(&entry.name).ok_or_else(|| MapParamError::new(&entry.name))?;
            matching.push((entry.sequence, key.index, key.field, entry.value.as_str()));
        }
        matching.sort_unstable_by_key(|&(sequence, ..)| sequence);

        let mut groups: BTreeMap<u32, BTreeMap<&str, &str>> = BTreeMap::new();
        for (_, index, field, value) in matching {
            groups.entry(index).or_default().insert(field, value);
        }
        Ok(groups
            .into_values()
            .map(|fields| {
                fields
                    .into_iter()
                    .map(|(field, value)| (field.to_owned(), value.to_owned()))
                    .collect()
            })
            .collect())
    }

    /// Every raw name that looks like a map parameter (contains '['), validated; the dispatcher calls this once so a malformed map anywhere is 430 even for commands that ignore it.
    ///
    /// The first malformed name in the order sent is reported.
    pub fn validate_maps(&self) -> Result<(), MapParamError> {
        for entry in &self.entries {
            if entry.name.contains('[') && parse_map_key(&entry.name).is_none() {
                return Err(MapParamError::new(&entry.name));
            }
        }
        Ok(())
    }
}

/// `true` case-insensitively; anything else false (Libcloud sends `True`).
///
/// Like Java's `Boolean.parseBoolean`, surrounding spaces make it false.
pub fn parse_bool(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

/// Comma-separated list, trimming each item, dropping empty items.
pub fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A map parameter whose name does not have the form `name[N].field`; CloudStack answers 430.
#[derive(Debug, thiserror::Error)]
#[error("unable to decode map parameter {}", Escaped(&self.param))]
pub struct MapParamError {
    param: String,
}

impl MapParamError {
    fn new(param: &str) -> Self {
        Self {
            param: param.to_owned(),
        }
    }

    /// The offending parameter name, decoded but otherwise exactly as sent.
    pub fn param(&self) -> &str {
        &self.param
    }
}

/// Shows control characters escaped: the message ends up in an `X-Description` header and in
/// logs, where a decoded `%0d%0a` in a parameter name must not start a new line.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

struct MapKey<'a> {
    index: u32,
    field: &'a str,
}

/// Parses `name[N].field` strictly. CloudStack lets a few odd spellings through (`a[0]x.f`
/// silently becomes field `f`, `a[0].` an empty field); they can only be client bugs, so they
/// are refused here rather than guessed at.
fn parse_map_key(raw: &str) -> Option<MapKey<'_>> {
    let open = raw.find('[')?;
    let (prefix, rest) = (&raw[..open], &raw[open + 1..]);
    if prefix.is_empty() || prefix.contains(']') {
        return None;
    }
    let close = rest.find(']')?;
    let index = parse_index(&rest[..close])?;
    let field = rest[close + 1..].strip_prefix('.')?;
    if field.is_empty() || field.contains(['[', ']']) {
        return None;
    }
    Some(MapKey { index, field })
}

fn parse_index(digits: &str) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let mut index: u32 = 0;
    for byte in digits.bytes() {
        if !byte.is_ascii_digit() {
            return None;
        }
        index = index.checked_mul(10)?.checked_add(u32::from(byte - b'0'))?;
        if index > MAX_MAP_INDEX {
            return None;
        }
    }
    Some(index)
}

/// Lowercases a parameter name the way CloudStack's `toLowerCase` does, without allocating for
/// the usual already-lowercase ASCII name.
fn fold_case(name: &str) -> Cow<'_, str> {
    if name
        .bytes()
        .all(|byte| byte.is_ascii() && !byte.is_ascii_uppercase())
    {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

/// Decodes one name or value of an urlencoded string.
fn percent_decode(input: &[u8]) -> Cow<'_, str> {
    if !input.contains(&b'%') && !input.contains(&b'+') {
        return String::from_utf8_lossy(input);
    }
    let mut bytes = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                bytes.push(b' ');
                i += 1;
            }
            b'%' => match (
                input.get(i + 1).copied().and_then(hex_digit),
                input.get(i + 2).copied().and_then(hex_digit),
            ) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    bytes.push(b'%');
                    i += 1;
                }
            },
            byte => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(raw: &str) -> Params {
        let mut params = Params::default();
        params.merge_urlencoded(raw.as_bytes());
        params
    }

    fn pairs(params: &Params) -> Vec<(&str, &str)> {
        params.iter().collect()
    }

    #[test]
    fn splits_on_ampersand_then_first_equals() {
        let params = parse("command=listZones&response=json");
        assert_eq!(
            pairs(&params),
            [("command", "listZones"), ("response", "json")]
        );
        assert_eq!(params.len(), 2);
        assert!(!params.is_empty());
    }

    #[test]
    fn last_value_wins_for_a_repeated_name() {
        let params = parse("page=1&pagesize=10&page=2");
        assert_eq!(params.raw("page"), Some("2"));
        assert_eq!(params.get("page"), Some("2"));
        assert_eq!(params.len(), 2);
        assert_eq!(pairs(&params), [("page", "2"), ("pagesize", "10")]);
    }

    #[test]
    fn plus_is_a_space_and_percent_escapes_decode() {
        let params = parse("name=my+vm&text=a%20b%2Bc&name2=%41%62");
        assert_eq!(params.raw("name"), Some("my vm"));
        assert_eq!(params.raw("text"), Some("a b+c"));
        assert_eq!(params.raw("name2"), Some("Ab"));
    }

    #[test]
    fn names_are_decoded_too() {
        let params = parse("tags%5B0%5D.key=env&my+name=x");
        assert_eq!(params.raw("tags[0].key"), Some("env"));
        assert_eq!(params.raw("my name"), Some("x"));
    }

    #[test]
    fn bad_escapes_are_kept_literally() {
        let params = parse("a=%zz&b=100%&c=%4&d=%%41&e=%4g");
        assert_eq!(params.raw("a"), Some("%zz"));
        assert_eq!(params.raw("b"), Some("100%"));
        assert_eq!(params.raw("c"), Some("%4"));
        assert_eq!(params.raw("d"), Some("%A"));
        assert_eq!(params.raw("e"), Some("%4g"));
    }

    #[test]
    fn fragment_without_equals_is_ignored() {
        let params = parse("listall&command=listZones&&=orphan&response");
        assert_eq!(pairs(&params), [("command", "listZones")]);
    }

    #[test]
    fn value_keeps_everything_after_the_first_equals() {
        let params = parse("a==b&c=d=e");
        assert_eq!(params.raw("a"), Some("=b"));
        assert_eq!(params.raw("c"), Some("d=e"));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let params = parse("a=%FF%FEok&b=caf%C3%A9&c=%C3");
        assert_eq!(params.raw("a"), Some("\u{FFFD}\u{FFFD}ok"));
        assert_eq!(params.raw("b"), Some("café"));
        assert_eq!(params.raw("c"), Some("\u{FFFD}"));

        let mut raw_bytes = Params::default();
        raw_bytes.merge_urlencoded(b"x\xff=v\xc3");
        assert_eq!(pairs(&raw_bytes), [("x\u{FFFD}", "v\u{FFFD}")]);
    }

    #[test]
    fn query_and_body_merge_with_the_later_winning() {
        let mut params = parse("command=deployVirtualMachine&userdata=old");
        params.merge_urlencoded(b"userdata=new&zoneid=z1");
        assert_eq!(params.raw("userdata"), Some("new"));
        assert_eq!(params.get("zoneId"), Some("z1"));
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn get_is_case_insensitive_and_raw_is_not() {
        let params = parse("zoneId=z1&COMMAND=listZones");
        assert_eq!(params.get("zoneid"), Some("z1"));
        assert_eq!(params.get("ZONEID"), Some("z1"));
        assert_eq!(params.get("command"), Some("listZones"));
        assert_eq!(params.raw("zoneid"), None);
        assert_eq!(params.raw("zoneId"), Some("z1"));
    }

    #[test]
    fn get_answers_with_the_case_variant_sent_last() {
        let params = parse("zoneid=1&zoneId=2&zoneid=3");
        assert_eq!(params.get("ZoneId"), Some("3"));
        assert_eq!(params.raw("zoneId"), Some("2"));

        let params = parse("zoneId=5&zoneid=");
        assert_eq!(params.get("zoneid"), None);
    }

    #[test]
    fn empty_value_is_absent_from_get_but_present_in_iter() {
        let params = parse("filter=&name=&command=listApis");
        assert_eq!(params.get("filter"), None);
        assert_eq!(params.get("name"), None);
        assert_eq!(params.raw("filter"), Some(""));
        assert_eq!(
            pairs(&params),
            [("filter", ""), ("name", ""), ("command", "listApis")]
        );
    }

    #[test]
    fn insert_behaves_like_a_later_parameter() {
        let mut params = parse("a=1");
        params.insert("a", "2");
        params.insert("B", "3");
        assert_eq!(pairs(&params), [("a", "2"), ("B", "3")]);
        assert_eq!(params.get("b"), Some("3"));
    }

    #[test]
    fn map_groups_by_index_in_numeric_order_with_fields_sorted() {
        let params = parse(
            "tags%5B10%5D.value=v10&tags%5B2%5D.value=v2&tags%5B2%5D.key=k2\
             &Tags%5B10%5D.key=k10&tags%5B0%5D.Key=K0&other%5B0%5D.key=x&tags=plain",
        );
        let map = params.map("tags").expect("well-formed");
        assert_eq!(
            map,
            vec![
                vec![("Key".to_owned(), "K0".to_owned())],
                vec![
                    ("key".to_owned(), "k2".to_owned()),
                    ("value".to_owned(), "v2".to_owned()),
                ],
                vec![
                    ("key".to_owned(), "k10".to_owned()),
                    ("value".to_owned(), "v10".to_owned()),
                ],
            ]
        );
        assert_eq!(params.map("TAGS").expect("well-formed").len(), 3);
        assert!(params.map("details").expect("absent is empty").is_empty());
        assert!(params.validate_maps().is_ok());
    }

    #[test]
    fn map_resolves_case_spellings_of_the_name_to_the_one_sent_last() {
        let params = parse("details[0].cpu=1&DETAILS[0].cpu=2&Details[0].memory=");
        assert_eq!(
            params.map("details").expect("well-formed"),
            vec![vec![
                ("cpu".to_owned(), "2".to_owned()),
                ("memory".to_owned(), String::new()),
            ]]
        );
    }

    #[test]
    fn malformed_map_parameters_are_rejected_with_their_name() {
        for bad in [
            "details[x].key",
            "details[0]",
            "details[0].",
            "details[0.key",
            "details[-1].key",
            "details[+1].key",
            "details[].key",
            "details[ 1].key",
            "details[10001].key",
            "details[99999999999999999999].key",
            "details[0]key",
            "details[0][1].key",
            "details[0].key]",
        ] {
            let mut params = Params::default();
            params.insert(bad, "v");
            params.insert("command", "deployVirtualMachine");
            let error = params.map("details").expect_err(bad);
            assert_eq!(error.param(), bad);
            assert_eq!(
                error.to_string(),
                format!("unable to decode map parameter {bad}")
            );
            assert_eq!(params.validate_maps().expect_err(bad).param(), bad);
        }
    }

    #[test]
    fn largest_accepted_index_is_the_cap() {
        let params = parse("details[10000].key=a&details[007].key=b");
        assert_eq!(params.map("details").expect("within the cap").len(), 2);
    }

    #[test]
    fn validate_maps_covers_names_no_command_asks_for() {
        let params = parse("command=listZones&junk[x].y=1");
        assert!(params.map("details").is_ok());
        assert_eq!(
            params.validate_maps().expect_err("malformed").param(),
            "junk[x].y"
        );
        assert!(
            parse("[0].key=v").validate_maps().is_err(),
            "a map needs a name"
        );
        assert!(
            parse("details]x[0].key=v").validate_maps().is_err(),
            "']' before '['"
        );
        assert!(
            parse("odd]name=v").validate_maps().is_ok(),
            "no '[': not a map"
        );
    }

    #[test]
    fn map_error_message_escapes_control_characters() {
        let params = parse("a%0D%0Ab[x].c=1");
        let error = params.validate_maps().expect_err("malformed");
        assert_eq!(error.param(), "a\r\nb[x].c");
        assert_eq!(
            error.to_string(),
            "unable to decode map parameter a\\r\\nb[x].c"
        );
    }

    #[test]
    fn booleans_are_case_insensitive_true() {
        for yes in ["true", "True", "TRUE", "tRuE"] {
            assert!(parse_bool(yes), "{yes}");
        }
        for no in ["false", "False", "1", "yes", "", " true", "truee"] {
            assert!(!parse_bool(no), "{no}");
        }
    }

    #[test]
    fn lists_are_comma_separated_trimmed_without_empties() {
        assert_eq!(parse_list("a, b ,,c,"), ["a", "b", "c"]);
        assert_eq!(parse_list(""), Vec::<String>::new());
        assert_eq!(parse_list(" , "), Vec::<String>::new());
        assert_eq!(parse_list("10.0.0.0/8"), ["10.0.0.0/8"]);
    }

    proptest! {
        #[test]
        fn merge_urlencoded_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut params = Params::default();
            params.merge_urlencoded(&raw);
            let _ = params.validate_maps();
            for (name, value) in params.iter() {
                prop_assert_eq!(params.raw(name), Some(value));
                if let Some(found) = params.get(name) {
                    prop_assert!(!found.is_empty());
                }
            }
        }

        #[test]
        fn query_like_input_never_panics(
            raw in "([a-zA-Z%+=&\\[\\].0-9]|%[0-9a-fA-F]{2}|%[C-F][0-9A-F]%[89AB][0-9A-F]){0,64}"
        ) {
            let mut params = Params::default();
            params.merge_urlencoded(raw.as_bytes());
            let _ = params.validate_maps();
            for (name, _) in params.iter() {
                if let Some(open) = name.find('[') {
                    let _ = params.map(&name[..open]);
                }
            }
        }
    }
}
