//! JSON fields common to CloudStack objects: the owner (`account`, `domainid`, `domain`) every
//! owned resource shows, and the small map helpers the `*_json` views build on, so each family
//! renders them alike.

use projections::State;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The owner fields every resource shows: `account`, `domainid`, `domain`.
pub(crate) fn owner_fields(state: &State, account: Uuid, domain: Uuid) -> Value {
    json!({
        "account": state.identity.account_name(account),
        "domainid": domain,
        "domain": state.identity.domains.get(&domain).map(|d| d.facts.name.clone()),
    })
}

/// Copies the members of `extra` into `value` (both JSON objects).
pub(crate) fn merge(mut value: Value, extra: Value) -> Value {
    if let (Value::Object(into), Value::Object(from)) = (&mut value, extra) {
        into.extend(from);
    }
    value
}

/// Sets `key` to `value` unless it is null: views built field by field leave out what a
/// resource does not have, as CloudStack's responses do.
pub(crate) fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        map.insert(key.into(), value);
    }
}

/// [`put`]s the owner fields ([`owner_fields`]) at this place of a view built field by field
/// (members keep their insertion order in the reply).
pub(crate) fn put_owner(map: &mut Map<String, Value>, state: &State, account: Uuid, domain: Uuid) {
    if let Value::Object(owner) = owner_fields(state, account, domain) {
        for (key, value) in owner {
            put(map, &key, value);
        }
    }
}
