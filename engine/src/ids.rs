//! Event ids that are derived from their cause.
//!
//! DESIGN.md invariant 9: events appended by a projection or scheduler (alerts, period closes,
//! quota locks, driver results) carry ids derived from the causing event and a kind, so a rebuild
//! or a second node appending the same fact hits the store's idempotent-append rule instead of
//! writing it twice.

use uuid::Uuid;

/// The UUIDv5 namespace of Ledgerstack's derived event ids. Fixed forever: changing it would
/// make every rebuild append its derived events a second time.
pub const DERIVED_EVENT_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6c, 0x65, 0x64, 0x67, 0x65, 0x72, 0x73, 0x74, 0x61, 0x63, 0x6b, 0x2d, 0x65, 0x76, 0x74, 0x73,
]);

/// The id of the event of kind `kind` caused by event `cause`: UUIDv5 over the cause's 16 bytes
/// followed by the kind's UTF-8 bytes.
///
/// ```
/// use engine::ids::derived_event_id;
/// let cause = uuid::Uuid::new_v4();
/// assert_eq!(derived_event_id(cause, "alert.raise"), derived_event_id(cause, "alert.raise"));
/// assert_ne!(derived_event_id(cause, "alert.raise"), derived_event_id(cause, "alert.resolve"));
/// ```
pub fn derived_event_id(cause: Uuid, kind: &str) -> Uuid {
    let mut name = Vec::with_capacity(16 + kind.len());
    name.extend_from_slice(cause.as_bytes());
    name.extend_from_slice(kind.as_bytes());
    Uuid::new_v5(&DERIVED_EVENT_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frozen: a change here would silently break idempotency of every derived event already
    /// in a log, since a rebuild would derive different ids and append its events again.
    #[test]
    fn derived_ids_are_frozen() {
        let cause = Uuid::parse_str("00000000-0000-0000-0000-000000000001").unwrap();
        let id = derived_event_id(cause, "usage.period.close");
        assert_eq!(id.get_version_num(), 5);
        assert_eq!(id.to_string(), "095d80a8-4e5e-5fd3-9df2-d1db39a61fe0");
    }
}
