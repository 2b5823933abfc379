//! Payload pieces shared by several event families.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Raw bytes: lowercase hex in JSON, length-prefixed bytes in the binary form.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({})", hex::encode(&self.0))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            if text.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(de::Error::custom("hex must be lowercase"));
            }
            hex::decode(&text).map(HexBytes).map_err(de::Error::custom)
        } else {
            ByteBuf::deserialize(deserializer).map(|bytes| HexBytes(bytes.0))
        }
    }
}

/// Reads a length-prefixed byte string efficiently (one copy, not one visit per byte).
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> de::Visitor<'de> for BytesVisitor {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// A secret encrypted with the master key, which lives outside the log (a 0600 file in the data
/// directory). The log, and therefore every export of it, only ever holds this sealed form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which master key sealed it, so rotation can add keys and still open old secrets.
    pub key_id: CompactString,
    /// The cipher's nonce.
    pub nonce: HexBytes,
    /// The encrypted secret with its authentication tag.
    pub ciphertext: HexBytes,
}

/// A JSON document carried inside an event (an async job's result object). Embedded as JSON in
/// the event's JSON line, stored as canonical JSON text in the binary form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonDocument(String);

impl JsonDocument {
    /// Wraps a JSON value, keeping its canonical text.
    pub fn new(value: &serde_json::Value) -> Self {
        JsonDocument(crate::event::json::canonical_json(value))
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for JsonDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let value: serde_json::Value =
                serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
            value.serialize(serializer)
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for JsonDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = serde_json::Value::deserialize(deserializer)?;
            Ok(JsonDocument::new(&value))
        } else {
            let text = String::deserialize(deserializer)?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(de::Error::custom)?;
            Ok(JsonDocument::new(&value))
        }
    }
}

/// A key/value pair (load balancer policy parameters, resource tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: CompactString,
    /// The value.
    pub value: String,
}
