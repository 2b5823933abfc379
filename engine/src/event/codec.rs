//! The one place that knows the binary (bincode) encoding of payloads and envelopes.
//!
//! bincode is pinned to `=2.0.1` (its 3.0.0 release does not compile). Everything binary goes
//! through these two functions, so moving to another codec is one module plus a format version
//! bump, and the golden-bytes tests catch any silent change.

use bincode::config::{self, Configuration, LittleEndian, NoLimit, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CodecError;

/// Little-endian varints. No byte limit is configured: values are only ever decoded from a
/// slice, so every length prefix is checked against the bytes actually there (a damaged prefix
/// is an error, never a huge allocation), and a limit only added bookkeeping to every read.
const BINCODE: Configuration<LittleEndian, Varint, NoLimit> = config::standard();

/// Appends the binary form of `value` to `out`.
pub(crate) fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, BINCODE)
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Reads a value from the front of `bytes`; returns it and how many bytes it took.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    bincode::serde::decode_from_slice(bytes, BINCODE).map_err(|e| CodecError::Decode(e.to_string()))
}

/// Reads a value that must occupy all of `bytes`.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}
