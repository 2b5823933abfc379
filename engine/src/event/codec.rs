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

/// Reads bincode's standard encoding (the configuration above) field by field, by hand.
///
/// The envelope at the front of every record is decoded on every read of the log, and bincode's
/// serde path costs about 0.4 µs for it; reading the same bytes with these primitives costs a
/// fraction of that. The layout read here is bincode's, unchanged: the envelope is still
/// written by bincode, and a test holds this reader to bincode's own decoder for every shape of
/// envelope.
pub(crate) struct BincodeReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn truncated() -> CodecError {
    CodecError::Decode("record ends inside a field".into())
}

impl<'a> BincodeReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        BincodeReader { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn consumed(&self) -> usize {
        self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).ok_or_else(truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or_else(truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| truncated())
    }

    /// An unsigned varint: one byte below 251, else a marker and a 2-, 4- or 8-byte integer.
    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        Ok(match self.take(1)?[0] {
            byte @ 0..=250 => u64::from(byte),
            251 => u64::from(u16::from_le_bytes(self.fixed()?)),
            252 => u64::from(u32::from_le_bytes(self.fixed()?)),
            253 => u64::from_le_bytes(self.fixed()?),
            marker => {
                return Err(CodecError::Decode(format!(
                    "varint marker {marker} where a 64-bit value was expected"
                )));
            }
        })
    }

    /// A `u16` or `u32` (varints too).
    pub(crate) fn small<T: TryFrom<u64>>(&mut self) -> Result<T, CodecError> {
        let value = self.varint()?;
        T::try_from(value).map_err(|_| CodecError::Decode(format!("{value} out of range")))
    }

    /// A signed integer: zig-zag, then varint.
    pub(crate) fn signed(&mut self) -> Result<i64, CodecError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length-prefixed byte string.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| CodecError::Decode(e.to_string()))
    }

    /// A UUID, which serde writes as a 16-byte string.
    pub(crate) fn uuid(&mut self) -> Result<uuid::Uuid, CodecError> {
        uuid::Uuid::from_slice(self.bytes()?).map_err(|e| CodecError::Decode(e.to_string()))
    }

    /// An `Option`: a 0 or 1 tag, then the value if 1.
    pub(crate) fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(CodecError::Decode(format!("option tag {tag}"))),
        }
    }
}
