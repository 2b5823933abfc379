//! A Bloom filter over every event id in the log.
//!
//! Idempotent appends must check each new event id against the whole history. Asking sled costs
//! microseconds per event on the writer's critical path; asking this filter costs nanoseconds and
//! only a "maybe" (about 1% of new ids, plus real duplicates) goes on to sled. The filter is a
//! cache: saved on close and at segment rollover with the position it covers, topped up from the
//! log on open, rebuilt from the log if its file is missing or damaged.

use std::fs;
use std::io;
use std::path::Path;

use uuid::Uuid;

/// Bits per id: with [`PROBES`] probes, about a 1% false-positive rate per layer.
const BITS_PER_ID: u64 = 10;
/// Probes per id.
const PROBES: u64 = 7;
/// Ids the first layer is sized for; each later layer holds twice the previous.
const FIRST_LAYER_IDS: u64 = 1 << 16;
const FILE_MAGIC: &[u8; 8] = b"LSTKIDF1";

/// A growable Bloom filter of event ids: a list of layers, each sized for twice as many ids as
/// the one before, so that the false-positive rate stays bounded as the log grows.
#[derive(Clone)]
pub(crate) struct IdFilter {
    layers: Vec<Layer>,
}

#[derive(Clone)]
struct Layer {
    bits: Vec<u64>,
    capacity: u64,
    inserted: u64,
}

impl Layer {
    fn with_capacity(capacity: u64) -> Self {
        let words = (capacity * BITS_PER_ID).div_ceil(64) as usize;
        Layer {
            bits: vec![0; words],
            capacity,
            inserted: 0,
        }
    }

    fn probes(&self, id: &Uuid) -> impl Iterator<Item = (usize, u64)> + use<> {
        let nbits = self.bits.len() as u64 * 64;
        let value = id.as_u128();
        let h1 = mix((value >> 64) as u64 ^ mix(value as u64));
        let h2 = mix(h1 ^ 0x9e37_79b9_7f4a_7c15) | 1;
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdFilter {
    pub(crate) fn new() -> Self {
        IdFilter {
            layers: vec![Layer::with_capacity(FIRST_LAYER_IDS)],
        }
    }

    pub(crate) fn insert(&mut self, id: &Uuid) {
        let full = self.layers.last().is_none_or(|l| l.inserted >= l.capacity);
        if full {
            let capacity = self
                .layers
                .last()
                .map_or(FIRST_LAYER_IDS, |l| l.capacity * 2);
            self.layers.push(Layer::with_capacity(capacity));
        }
        if let Some(layer) = self.layers.last_mut() {
            for (word, mask) in layer.probes(id) {
                layer.bits[word] |= mask;
            }
            layer.inserted += 1;
        }
    }

    /// False means the id is certainly not in the log.
    pub(crate) fn may_contain(&self, id: &Uuid) -> bool {
        self.layers.iter().any(|layer| {
            layer
                .probes(id)
                .all(|(word, mask)| layer.bits[word] & mask != 0)
        })
    }

    /// Writes the filter, stating that it covers every id up to `covers_through`. Written to a
    /// temporary file and renamed, so a crash leaves either the old file or the new one.
    pub(crate) fn save(&self, path: &Path, covers_through: u64) -> io::Result<()> {
        let mut out =
            Vec::with_capacity(32 + self.layers.iter().map(|l| l.bits.len() * 8).sum::<usize>());
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&covers_through.to_le_bytes());
        out.extend_from_slice(&(self.layers.len() as u32).to_le_bytes());
        for layer in &self.layers {
            out.extend_from_slice(&layer.capacity.to_le_bytes());
            out.extend_from_slice(&layer.inserted.to_le_bytes());
            out.extend_from_slice(&(layer.bits.len() as u64).to_le_bytes());
            for word in &layer.bits {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &out)?;
        fs::rename(&tmp, path)
    }

    /// Reads a saved filter and the position it covers; `None` if missing or damaged in any way.
    pub(crate) fn load(path: &Path) -> Option<(IdFilter, u64)> {
        let data = fs::read(path).ok()?;
        let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return None;
        }
        let mut reader = Fields(body.strip_prefix(FILE_MAGIC)?);
        let covers_through = reader.u64()?;
        let layer_count = reader.u32()?;
        let mut layers = Vec::new();
        for _ in 0..layer_count {
            let capacity = reader.u64()?;
            let inserted = reader.u64()?;
            let words = usize::try_from(reader.u64()?).ok()?;
            // A layer with no bits would make every probe divide by zero.
            if capacity == 0 || words != (capacity.checked_mul(BITS_PER_ID)?).div_ceil(64) as usize
            {
                return None;
            }
            let bits = (0..words)
                .map(|_| reader.u64())
                .collect::<Option<Vec<_>>>()?;
            layers.push(Layer {
                bits,
                capacity,
                inserted,
            });
        }
        (reader.0.is_empty() && !layers.is_empty()).then_some((IdFilter { layers }, covers_through))
    }
}

/// Little-endian fields read off the front of a byte slice.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_ids_are_always_found_across_layer_growth() {
        let mut filter = IdFilter::new();
        let ids: Vec<Uuid> = (0..(FIRST_LAYER_IDS * 3)).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            filter.insert(id);
        }
        assert!(filter.layers.len() >= 2);
        assert!(ids.iter().all(|id| filter.may_contain(id)));
    }

    #[test]
    fn false_positive_rate_is_low() {
        let mut filter = IdFilter::new();
        for _ in 0..FIRST_LAYER_IDS {
            filter.insert(&Uuid::new_v4());
        }
        let trials = 100_000;
        let hits = (0..trials)
            .filter(|_| filter.may_contain(&Uuid::new_v4()))
            .count();
        assert!(hits < trials / 40, "{hits} false positives in {trials}");
    }

    #[test]
    fn save_and_load_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.filter");
        let mut filter = IdFilter::new();
        let ids: Vec<Uuid> = (0..1000).map(|_| Uuid::new_v4()).collect();
        ids.iter().for_each(|id| filter.insert(id));
        filter.save(&path, 1000).unwrap();
        let (loaded, covers) = IdFilter::load(&path).unwrap();
        assert_eq!(covers, 1000);
        assert!(ids.iter().all(|id| loaded.may_contain(id)));

        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(IdFilter::load(&path).is_none());
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(IdFilter::load(&path).is_none());
    }

    /// A file whose checksum is right but which describes an empty layer is refused, not used
    /// (probing an empty layer would divide by zero).
    #[test]
    fn a_well_formed_file_with_an_empty_layer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.filter");
        let mut out = FILE_MAGIC.to_vec();
        out.extend_from_slice(&0u64.to_le_bytes()); // covers through
        out.extend_from_slice(&1u32.to_le_bytes()); // one layer
        out.extend_from_slice(&[0u8; 24]); // capacity 0, inserted 0, no words
        out.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
        fs::write(&path, &out).unwrap();
        assert!(IdFilter::load(&path).is_none());
    }
}
