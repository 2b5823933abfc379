//! The macro that turns the event table in `mod.rs` into types.
//!
//! One table lists every event type once: its family, its stable numeric code, its CloudStack
//! wire name and its payload type. Everything that must agree with that table (the family enums,
//! [`EventBody`](super::EventBody), [`EventType`](super::EventType) lookups, binary and JSON
//! dispatch) is generated from it, so adding an event type is one line and nothing can drift.

/// Generates the event families from the table in `event/mod.rs`.
macro_rules! event_catalogue {
    ($(
        $(#[$family_meta:meta])*
        family $Family:ident($FamilyEnum:ident) = $family_code:literal, schema $schema:literal {
            $(
                $(#[$variant_meta:meta])*
                $Variant:ident = $variant_code:literal, $wire:literal => $Payload:ty;
            )*
        }
    )*) => {
        $(
            $(#[$family_meta])*
            #[derive(Debug, Clone, PartialEq)]
            pub enum $FamilyEnum {
                $( $(#[$variant_meta])* $Variant($Payload), )*
            }

            impl $FamilyEnum {
                /// Schema version of this family's payloads, recorded with each event.
                pub const SCHEMA: u16 = $schema;

                /// The event type of this event.
                pub fn event_type(&self) -> EventType {
                    match self {
                        $( Self::$Variant(_) => EventType::compose($family_code, $variant_code), )*
                    }
                }

                fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
                    match self {
                        $( Self::$Variant(payload) => codec::encode_into(payload, out), )*
                    }
                }

                fn decode_payload(variant: u8, bytes: &[u8]) -> Result<Self, CodecError> {
                    match variant {
                        $( $variant_code => Ok(Self::$Variant(codec::decode_exact(bytes)?)), )*
                        _ => Err(CodecError::UnknownEventCode(EventType::compose($family_code, variant).code())),
                    }
                }

                fn data_json(&self) -> Result<serde_json::Value, CodecError> {
                    match self {
                        $( Self::$Variant(payload) => serde_json::to_value(payload).map_err(CodecError::Json), )*
                    }
                }

                fn from_data_json(variant: u8, data: serde_json::Value) -> Result<Self, CodecError> {
                    match variant {
                        $( $variant_code => Ok(Self::$Variant(serde_json::from_value(data).map_err(CodecError::Json)?)), )*
                        _ => Err(CodecError::UnknownEventCode(EventType::compose($family_code, variant).code())),
                    }
                }
            }
        )*

        /// What happened: one variant per event family, each holding that family's typed event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventBody {
            $( $(#[$family_meta])* $Family($FamilyEnum), )*
        }

        impl EventBody {
            /// The event type (and with it the CloudStack wire name) of this event.
            pub fn event_type(&self) -> EventType {
                match self {
                    $( Self::$Family(event) => event.event_type(), )*
                }
            }

            /// Schema version of this event's family.
            pub fn schema(&self) -> u16 {
                match self {
                    $( Self::$Family(_) => $FamilyEnum::SCHEMA, )*
                }
            }

            /// Appends the binary (bincode) form of the payload to `out`.
            pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
                match self {
                    $( Self::$Family(event) => event.encode_payload(out), )*
                }
            }

            /// Decodes a payload of type `event_type` recorded at family schema `schema`.
            ///
            /// A payload recorded at an older schema goes through [`super::upcast`]; one recorded
            /// by a newer binary is refused with a clear error rather than misread.
            pub fn decode_payload(event_type: EventType, schema: u16, bytes: &[u8]) -> Result<Self, CodecError> {
                let current = event_type.schema();
                if schema != current {
                    return upcast::upcast(event_type, schema, bytes);
                }
                let variant = event_type.variant_code();
                match event_type.family_code() {
                    $( $family_code => Ok(Self::$Family($FamilyEnum::decode_payload(variant, bytes)?)), )*
                    _ => Err(CodecError::UnknownEventCode(event_type.code())),
                }
            }

            /// The JSON object of the payload: the `data` member of an event's JSON line.
            pub fn data_json(&self) -> Result<serde_json::Value, CodecError> {
                match self {
                    $( Self::$Family(event) => event.data_json(), )*
                }
            }

            /// Reads the `data` member of an event's JSON line as a payload of `event_type`.
            pub fn from_data_json(event_type: EventType, data: serde_json::Value) -> Result<Self, CodecError> {
                let variant = event_type.variant_code();
                match event_type.family_code() {
                    $( $family_code => Ok(Self::$Family($FamilyEnum::from_data_json(variant, data)?)), )*
                    _ => Err(CodecError::UnknownEventCode(event_type.code())),
                }
            }
        }

        /// Every event type, in code order within each family.
        pub(crate) const CATALOGUE: &[EventTypeInfo] = &[
            $( $(
                EventTypeInfo {
                    code: EventType::compose($family_code, $variant_code).code(),
                    name: $wire,
                    family: stringify!($Family),
                    payload: stringify!($Payload),
                    schema: $schema,
                },
            )* )*
        ];
    };
}

pub(crate) use event_catalogue;
