//! The on-disk format of segment files (format version 1).
//!
//! ```text
//! segment file  = header record*
//! header        = magic "LSTKSEG\0" (8) | format version u32 | first position u64 |
//!                 reserved u64 (0) | crc32c of the 28 bytes before it (4)          = 32 bytes
//! record        = body length u32 | flags u8 | crc32c of length+flags (4) |
//!                 body | crc32c of body (4) | end marker 0xA5 (1)                  = body + 14
//! body          = envelope (bincode) | payload (bincode of the event type's payload)
//! ```
//!
//! All integers are little-endian. Flag bit 0 (`COMMIT`) marks the last record of a group
//! commit: records after the last COMMIT were never acknowledged. The separate header CRC keeps
//! a damaged length from being mistaken for a torn write, and the non-zero end marker keeps a
//! record from ever ending in a zero byte, which [`classify_tail`] relies on to tell a zero-filled
//! torn tail from damage (see `docs/storage.md`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::codec;
use crate::event::{
    Actor, ChainHash, CodecError, Envelope, EventBody, EventState, EventType, Level, Position,
    RecordedEvent, StreamId, StreamIdError,
};
use crate::store::sequencer::{MAX_PAYLOAD_BYTES, SequencedEvent, StoredEvent};
use crate::time::Timestamp;

/// Identifies a Ledgerstack segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"LSTKSEG\0";
/// The record format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes in a segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
/// Bytes before a record's body.
pub(crate) const FRAME_HEADER_LEN: usize = 9;
/// Bytes after a record's body.
pub(crate) const FRAME_TRAILER_LEN: usize = 5;
/// Last byte of every record.
pub(crate) const END_MARKER: u8 = 0xA5;
/// Flag: last record of a group commit.
pub(crate) const FLAG_COMMIT: u8 = 1;
/// The largest body a record may declare: a bigger length is damage, not data.
pub(crate) const MAX_BODY_LEN: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// The fixed header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Position of the segment's first record (also its file name).
    pub first_position: u64,
}

/// Why a segment header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderDefect {
    #[error("segment header is {0} bytes, shorter than 32")]
    Short(u64),
    #[error("segment header checksum mismatch")]
    Checksum,
    #[error("not a Ledgerstack segment (bad magic)")]
    Magic,
    #[error(
        "segment format version {0} is not supported by this build (which reads {FORMAT_VERSION})"
    )]
    Version(u32),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.first_position.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderDefect> {
        if bytes.len() < SEGMENT_HEADER_LEN as usize {
            return Err(HeaderDefect::Short(bytes.len() as u64));
        }
        let crc = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
        if crc32c::crc32c(&bytes[0..28]) != crc {
            return Err(HeaderDefect::Checksum);
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderDefect::Magic);
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(HeaderDefect::Version(version));
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[12..20]);
        Ok(SegmentHeader {
            first_position: u64::from_le_bytes(first),
        })
    }
}

/// Appends one record holding `body` to `out`.
pub(crate) fn encode_frame(body: &[u8], flags: u8, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.push(flags);
    let header_crc = crc32c::crc32c(&out[start..start + 5]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.push(END_MARKER);
}

/// Sets the COMMIT flag of the record starting at `frame_start` in `buf`.
pub(crate) fn mark_commit(buf: &mut [u8], frame_start: usize) {
    buf[frame_start + 4] |= FLAG_COMMIT;
    let header_crc = crc32c::crc32c(&buf[frame_start..frame_start + 5]);
    buf[frame_start + 5..frame_start + 9].copy_from_slice(&header_crc.to_le_bytes());
}

/// What is wrong with a record that is not torn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameDefect {
    HeaderChecksum,
    LengthTooLarge(u32),
    BodyChecksum,
    EndMarker,
}

impl std::fmt::Display for FrameDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameDefect::HeaderChecksum => f.write_str("record header checksum mismatch"),
            FrameDefect::LengthTooLarge(n) => {
                write!(f, "record claims an impossible length of {n} bytes")
            }
            FrameDefect::BodyChecksum => f.write_str("record body checksum mismatch"),
            FrameDefect::EndMarker => f.write_str("record end marker missing"),
        }
    }
}

/// The result of reading one record from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A whole, valid record of `len` bytes.
    Valid {
        flags: u8,
        body: &'a [u8],
        len: usize,
    },
    /// The buffer ends inside the record; `needed` bytes would hold it (0: header unknown yet).
    Incomplete { needed: usize },
    /// The record is damaged; `len` is its claimed length when the header itself is sound.
    Defective {
        defect: FrameDefect,
        len: Option<usize>,
    },
}

/// Reads the record at the front of `buf`.
pub(crate) fn parse_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return Frame::Incomplete { needed: 0 };
    }
    let header_crc = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
    if crc32c::crc32c(&buf[0..5]) != header_crc {
        return Frame::Defective {
            defect: FrameDefect::HeaderChecksum,
            len: None,
        };
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if body_len as usize > MAX_BODY_LEN {
        return Frame::Defective {
            defect: FrameDefect::LengthTooLarge(body_len),
            len: None,
        };
    }
    let len = FRAME_HEADER_LEN + body_len as usize + FRAME_TRAILER_LEN;
    if buf.len() < len {
        return Frame::Incomplete { needed: len };
    }
    let body = &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len as usize];
    let trailer = &buf[len - FRAME_TRAILER_LEN..len];
    if crc32c::crc32c(body) != u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]])
    {
        return Frame::Defective {
            defect: FrameDefect::BodyChecksum,
            len: Some(len),
        };
    }
    if trailer[4] != END_MARKER {
        return Frame::Defective {
            defect: FrameDefect::EndMarker,
            len: Some(len),
        };
    }
    Frame::Valid {
        flags: buf[4],
        body,
        len,
    }
}

/// A valid record found by [`classify_tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedFrame {
    /// Offset in the file.
    pub offset: u64,
    /// Record length in bytes.
    pub len: usize,
    /// Last record of a group commit.
    pub commit: bool,
}

/// What recovery makes of a segment's bytes after its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TailVerdict {
    /// Every record is whole and the last one ends a group commit.
    Clean,
    /// The bytes from `keep` on are an unacknowledged tail (a write cut short by a crash):
    /// truncate the file to `keep`.
    Torn { keep: u64, reason: String },
    /// Acknowledged data is damaged at `offset`: refuse to open.
    Corrupt { offset: u64, reason: String },
}

/// Scans the records of a segment's `data` (the whole file, header included) and decides what
/// recovery must do. Returns the valid records up to the verdict's cut.
///
/// A tail is torn, and safe to cut, only if it can be the result of a crash during the last
/// group commit, which was never acknowledged: records without a final COMMIT, a record that
/// runs past the end of the file, or damage followed by nothing but zero bytes (a file system
/// that extended the file without writing its data). Anything else (a bad checksum in a whole
/// record followed by non-zero bytes) is damage to acknowledged data.
pub(crate) fn classify_tail(data: &[u8]) -> (Vec<ScannedFrame>, TailVerdict) {
    let zeros_from = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
    let mut frames = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN as usize;
    let mut committed_end = offset;
    let mut committed_frames = 0;
    let torn = |frames: &mut Vec<ScannedFrame>, committed_frames, keep, reason: String| {
        frames.truncate(committed_frames);
        TailVerdict::Torn {
            keep: keep as u64,
            reason,
        }
    };
    loop {
        if offset == data.len() {
            if committed_end == offset {
                return (frames, TailVerdict::Clean);
            }
            let reason = "records after the last group commit marker".to_owned();
            let verdict = torn(&mut frames, committed_frames, committed_end, reason);
            return (frames, verdict);
        }
        match parse_frame(&data[offset..]) {
            Frame::Valid { flags, len, .. } => {
                let commit = flags & FLAG_COMMIT != 0;
                frames.push(ScannedFrame {
                    offset: offset as u64,
                    len,
                    commit,
                });
                offset += len;
                if commit {
                    committed_end = offset;
                    committed_frames = frames.len();
                }
            }
            Frame::Incomplete { .. } => {
                let reason = format!("record at byte {offset} is cut short by the end of the file");
                let verdict = torn(&mut frames, committed_frames, committed_end, reason);
                return (frames, verdict);
            }
            Frame::Defective { defect, len } => {
                // Where the damaged record ends, as far as it can be known.
                let extent = offset as u64 + len.unwrap_or(FRAME_HEADER_LEN) as u64;
                if zeros_from < extent {
                    let reason = format!("{defect} at byte {offset}, followed only by zero bytes");
                    let verdict = torn(&mut frames, committed_frames, committed_end, reason);
                    return (frames, verdict);
                }
                return (
                    frames,
                    TailVerdict::Corrupt {
                        offset: offset as u64,
                        reason: defect.to_string(),
                    },
                );
            }
        }
    }
}

/// The envelope as stored: the start of every record body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEnvelope {
    /// First, so that a reader can skip records by position after decoding one varint.
    pub position: u64,
    pub id: Uuid,
    pub stream: StreamId,
    pub version: u64,
    pub event_type: u16,
    pub schema: u16,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub actor: Actor,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub level: Level,
    pub state: EventState,
    pub prev_hash: ChainHash,
}

impl StoredEnvelope {
    fn of(envelope: &Envelope, event_type: EventType) -> Self {
        StoredEnvelope {
            position: envelope.position.0,
            id: envelope.id,
            stream: envelope.stream.clone(),
            version: envelope.version,
            event_type: event_type.code(),
            schema: envelope.schema,
            occurred_at: envelope.occurred_at,
            recorded_at: envelope.recorded_at,
            actor: envelope.actor,
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            level: envelope.level,
            state: envelope.state,
            prev_hash: envelope.prev_hash,
        }
    }

    pub(crate) fn event_type(&self) -> Result<EventType, CodecError> {
        EventType::from_code(self.event_type).ok_or(CodecError::UnknownEventCode(self.event_type))
    }

    fn into_envelope(self) -> Envelope {
        Envelope {
            id: self.id,
            position: Position(self.position),
            stream: self.stream,
            version: self.version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            level: self.level,
            state: self.state,
            schema: self.schema,
            prev_hash: self.prev_hash,
        }
    }
}

/// Appends the record body of a sequenced event to `out`.
pub(crate) fn encode_body(event: &SequencedEvent, out: &mut Vec<u8>) -> Result<(), CodecError> {
    codec::encode_into(
        &StoredEnvelope::of(&event.envelope, event.prepared.event_type),
        out,
    )?;
    out.extend_from_slice(&event.prepared.payload);
    Ok(())
}

/// Splits a record body into its envelope and payload bytes.
///
/// The envelope is read with [`codec::BincodeReader`] rather than bincode's serde path (it is
/// decoded on every read of the log); the bytes are bincode's, and
/// `envelopes_decode_as_bincode_does` holds the two decoders equal. Fields are read in the order
/// `StoredEnvelope` declares them, which is the order bincode writes them.
pub(crate) fn decode_envelope(body: &[u8]) -> Result<(StoredEnvelope, &[u8]), CodecError> {
    let mut r = codec::BincodeReader::new(body);
    let invalid = |e: StreamIdError| CodecError::Decode(e.to_string());
    let envelope = StoredEnvelope {
        position: r.varint()?,
        id: r.uuid()?,
        stream: {
            let category = r.str()?;
            match r.option(|r| r.uuid())? {
                Some(id) => StreamId::new(category, id).map_err(invalid)?,
                None => StreamId::singleton(category).map_err(invalid)?,
            }
        },
        version: r.varint()?,
        event_type: r.small()?,
        schema: r.small()?,
        occurred_at: Timestamp::from_millis(r.signed()?),
        recorded_at: Timestamp::from_millis(r.signed()?),
        actor: Actor {
            user_id: r.option(|r| r.uuid())?,
            account_id: r.option(|r| r.uuid())?,
        },
        correlation_id: r.option(|r| r.uuid())?,
        causation_id: r.option(|r| r.uuid())?,
        level: match r.small::<u32>()? {
            0 => Level::Info,
            1 => Level::Warn,
            2 => Level::Error,
            n => return Err(CodecError::Decode(format!("unknown level {n}"))),
        },
        state: match r.small::<u32>()? {
            0 => EventState::Created,
            1 => EventState::Scheduled,
            2 => EventState::Started,
            3 => EventState::Completed,
            n => return Err(CodecError::Decode(format!("unknown state {n}"))),
        },
        prev_hash: ChainHash(
            r.bytes()?
                .try_into()
                .map_err(|_| CodecError::Decode("prev_hash is not 32 bytes".into()))?,
        ),
    };
    Ok((envelope, &body[r.consumed()..]))
}

/// The position of a record body, reading only its first varint.
pub(crate) fn peek_position(body: &[u8]) -> Result<u64, CodecError> {
    codec::BincodeReader::new(body).varint()
}

/// Decodes a record body into the event.
pub(crate) fn decode_event(body: &[u8]) -> Result<RecordedEvent, CodecError> {
    let (stored, payload) = decode_envelope(body)?;
    let event_type = stored.event_type()?;
    let body = EventBody::decode_payload(event_type, stored.schema, payload)?;
    Ok(RecordedEvent {
        envelope: stored.into_envelope(),
        body: Box::new(body),
    })
}

/// Decodes a record body into what an idempotent re-append is compared with.
pub(crate) fn decode_stored(body: &[u8]) -> Result<StoredEvent, CodecError> {
    let (stored, payload) = decode_envelope(body)?;
    Ok(StoredEvent {
        event_type: stored.event_type()?,
        position: Position(stored.position),
        stream: stored.stream,
        version: stored.version,
        payload: payload.into(),
        occurred_at: stored.occurred_at,
        actor: stored.actor,
        correlation_id: stored.correlation_id,
        causation_id: stored.causation_id,
        level: stored.level,
        state: stored.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_with(frames: &[(&[u8], u8)]) -> Vec<u8> {
        let mut data = SegmentHeader { first_position: 1 }.encode().to_vec();
        for (body, flags) in frames {
            encode_frame(body, *flags, &mut data);
        }
        data
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = SegmentHeader { first_position: 42 };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for byte in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[byte] ^= 0x10;
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "flip in byte {byte}"
            );
        }
        assert_eq!(
            SegmentHeader::decode(&bytes[..10]),
            Err(HeaderDefect::Short(10))
        );
    }

    #[test]
    fn clean_segment_with_committed_records() {
        let data = segment_with(&[(b"one", 0), (b"two", FLAG_COMMIT), (b"three", FLAG_COMMIT)]);
        let (frames, verdict) = classify_tail(&data);
        assert_eq!(verdict, TailVerdict::Clean);
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn uncommitted_records_are_a_torn_tail() {
        let data = segment_with(&[(b"one", FLAG_COMMIT), (b"two", 0)]);
        let (frames, verdict) = classify_tail(&data);
        let keep = SEGMENT_HEADER_LEN + 3 + 14;
        assert!(matches!(verdict, TailVerdict::Torn { keep: k, .. } if k == keep));
        assert_eq!(frames.len(), 1);
    }

    /// A write cut at any byte is torn, and recovery keeps exactly the committed records
    /// wholly before the cut.
    #[test]
    fn truncation_at_every_offset_keeps_whole_commits() {
        let data = segment_with(&[
            (b"alpha", FLAG_COMMIT),
            (b"beta", 0),
            (b"gamma", FLAG_COMMIT),
            (b"delta", FLAG_COMMIT),
        ]);
        let (all, _) = classify_tail(&data);
        for cut in SEGMENT_HEADER_LEN as usize..data.len() {
            let (frames, verdict) = classify_tail(&data[..cut]);
            let expected: Vec<_> = all
                .iter()
                .filter(|f| f.offset as usize + f.len <= cut)
                .cloned()
                .collect();
            // Only up to the last commit that fits.
            let last_commit = expected.iter().rposition(|f| f.commit).map_or(0, |i| i + 1);
            assert_eq!(frames, expected[..last_commit], "cut at {cut}");
            let keep = frames
                .last()
                .map_or(SEGMENT_HEADER_LEN, |f| f.offset + f.len as u64);
            if cut as u64 == keep {
                assert_eq!(verdict, TailVerdict::Clean, "cut at {cut}");
            } else {
                assert!(
                    matches!(verdict, TailVerdict::Torn { keep: k, .. } if k == keep),
                    "cut at {cut}: {verdict:?}"
                );
            }
        }
    }

    /// Any single bit flipped inside a committed record is damage, never a silent cut.
    #[test]
    fn single_bit_flips_in_committed_records_are_corruption() {
        let data = segment_with(&[(b"alpha", FLAG_COMMIT), (b"\0\0\0", FLAG_COMMIT)]);
        for byte in SEGMENT_HEADER_LEN as usize..data.len() {
            for bit in 0..8 {
                let mut damaged = data.clone();
                damaged[byte] ^= 1 << bit;
                let (_, verdict) = classify_tail(&damaged);
                assert!(
                    matches!(verdict, TailVerdict::Corrupt { .. }),
                    "flip of bit {bit} in byte {byte}: {verdict:?}"
                );
            }
        }
    }

    /// The hand-written envelope reader agrees with bincode's own decoder on every combination
    /// of optional fields, levels, states, stream shapes and varint widths.
    #[test]
    fn envelopes_decode_as_bincode_does() {
        let ids = [None, Some(uuid::Uuid::from_u128(0xfeed))];
        let streams = [
            StreamId::singleton("config").unwrap(),
            StreamId::new("vm", uuid::Uuid::from_u128(7)).unwrap(),
        ];
        let numbers = [
            0u64,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        let times = [0i64, -1, 1, 1_772_946_000_123, i64::MIN, i64::MAX];
        let levels = [Level::Info, Level::Warn, Level::Error];
        let states = [
            EventState::Created,
            EventState::Scheduled,
            EventState::Started,
            EventState::Completed,
        ];
        let mut checked = 0;
        for (i, &number) in numbers.iter().enumerate() {
            for user_id in ids {
                for account_id in ids {
                    for correlation_id in ids {
                        for causation_id in ids {
                            let envelope = StoredEnvelope {
                                position: number,
                                id: uuid::Uuid::from_u128(number as u128),
                                stream: streams[i % 2].clone(),
                                version: numbers[(i + 3) % numbers.len()],
                                event_type: 0x0103,
                                schema: (number % 70_000) as u16,
                                occurred_at: Timestamp::from_millis(times[i % times.len()]),
                                recorded_at: Timestamp::from_millis(times[(i + 1) % times.len()]),
                                actor: Actor {
                                    user_id,
                                    account_id,
                                },
                                correlation_id,
                                causation_id,
                                level: levels[i % 3],
                                state: states[i % 4],
                                prev_hash: ChainHash([i as u8; 32]),
                            };
                            let mut body = Vec::new();
                            codec::encode_into(&envelope, &mut body).unwrap();
                            body.extend_from_slice(b"payload");
                            let (by_bincode, used) =
                                codec::decode_prefix::<StoredEnvelope>(&body).unwrap();
                            let (by_hand, payload) = decode_envelope(&body).unwrap();
                            assert_eq!(by_hand, by_bincode);
                            assert_eq!(payload, &body[used..]);
                            assert_eq!(peek_position(&body).unwrap(), number);
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, numbers.len() * 16);
    }

    proptest::proptest! {
        /// Whatever the bytes, reading an envelope or a whole event returns, never panics.
        #[test]
        fn arbitrary_bodies_never_panic_the_decoders(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_envelope(&body);
            let _ = decode_event(&body);
            let _ = peek_position(&body);
        }
    }

    #[test]
    fn damaged_envelopes_are_errors_not_panics() {
        let envelope = decode_envelope(&[]).unwrap_err();
        assert!(envelope.to_string().contains("ends inside"), "{envelope}");
        for garbage in [&[255u8][..], &[1, 200][..], &[1, 16, 1, 2, 3][..]] {
            assert!(decode_envelope(garbage).is_err());
        }
    }

    #[test]
    fn zero_filled_tail_after_a_crash_is_torn() {
        let data = segment_with(&[(b"alpha", FLAG_COMMIT)]);
        let committed = data.len() as u64;
        // A second commit whose data never reached the disk, though the file grew.
        let mut lost = Vec::new();
        encode_frame(b"beta", FLAG_COMMIT, &mut lost);
        for keep_prefix in 0..lost.len() {
            let mut crashed = data.clone();
            crashed.extend_from_slice(&lost[..keep_prefix]);
            crashed.resize(data.len() + lost.len(), 0);
            let (frames, verdict) = classify_tail(&crashed);
            assert_eq!(frames.len(), 1);
            assert!(
                matches!(verdict, TailVerdict::Torn { keep, .. } if keep == committed),
                "prefix {keep_prefix}: {verdict:?}"
            );
        }
    }
}
