//! Reading payloads recorded at an older family schema.
//!
//! Every family starts at schema 1 and none has changed yet, so any schema other than the
//! current one is either newer than this build (refused: the operator must upgrade) or a missing
//! upcaster. When a family's payload changes, its old payload structs move into a `legacy` module
//! of that family, a match arm here decodes them at their schema and converts them to the current
//! form, and golden vectors of the old schema stay in the tests (see `docs/events.md`).

use super::{CodecError, EventBody, EventType};

/// Decodes `bytes`, recorded as `event_type` at `schema`, into the current payload form.
pub(super) fn upcast(
    event_type: EventType,
    schema: u16,
    _bytes: &[u8],
) -> Result<EventBody, CodecError> {
    let supported = event_type.schema();
    if schema > supported {
        Err(CodecError::NewerSchema {
            event_type,
            found: schema,
            supported,
        })
    } else {
        Err(CodecError::NoUpcaster {
            event_type,
            found: schema,
            supported,
        })
    }
}
