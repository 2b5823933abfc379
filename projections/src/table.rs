//! [`Table`]: one read model's rows, held in memory for queries and persisted to sled so a
//! restart resumes from a checkpoint instead of replaying the whole log.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ProjectionError;

/// A key that orders rows deterministically and has a byte form for sled.
pub trait RowKey: Ord + Clone + Send + Sync + 'static {
    /// The key's bytes (after the table's prefix); order need not match `Ord`.
    fn to_bytes(&self) -> Vec<u8>;
    /// The key back from its bytes; `None` for bytes it never wrote.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl RowKey for uuid::Uuid {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        uuid::Uuid::from_slice(bytes).ok()
    }
}

impl RowKey for u64 {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl RowKey for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Rows of one kind, keyed by `K`. Every change marks its key dirty; the runner writes the dirty
/// rows and the checkpoint in one sled batch, so what is persisted always matches the checkpoint
/// stored with it (DESIGN.md invariant 4).
#[derive(Debug)]
pub struct Table<K, V> {
    /// Distinguishes this table's rows from the others' in the shared sled tree.
    prefix: &'static str,
    rows: BTreeMap<K, V>,
    /// Keys changed since the last persist: only these are rewritten.
    dirty: BTreeSet<K>,
}

impl<K: RowKey, V: Serialize + DeserializeOwned> Table<K, V> {
    /// An empty table whose rows are stored under `prefix`.
    pub fn new(prefix: &'static str) -> Self {
        Table {
            prefix,
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The row with this key.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key)
    }

    /// The row with this key, to change in place (marked dirty).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let row = self.rows.get_mut(key)?;
        self.dirty.insert(key.clone());
        Some(row)
    }

    /// Inserts or replaces a row.
    pub fn insert(&mut self, key: K, row: V) {
        self.dirty.insert(key.clone());
        self.rows.insert(key, row);
    }

    /// Removes a row.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.rows.remove(key);
        if removed.is_some() {
            self.dirty.insert(key.clone());
        }
        removed
    }

    /// The rows matching `filter`, to change in place (each marked dirty).
    pub fn values_mut_where(
        &mut self,
        filter: impl Fn(&V) -> bool,
    ) -> impl Iterator<Item = &mut V> {
        let dirty = &mut self.dirty;
        self.rows.iter_mut().filter_map(move |(k, v)| {
            if filter(v) {
                dirty.insert(k.clone());
                Some(v)
            } else {
                None
            }
        })
    }

    /// The rows whose keys fall in `range`, in key order.
    pub fn range(
        &self,
        range: impl std::ops::RangeBounds<K>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.rows.range(range)
    }

    /// Every row in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.rows.iter()
    }

    /// Every row in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.rows.values()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn storage_key(&self, key: &K) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.prefix.len() + 17);
        bytes.extend_from_slice(self.prefix.as_bytes());
        bytes.push(b'/');
        bytes.extend_from_slice(&key.to_bytes());
        bytes
    }
}

/// What the runner needs of every table, whatever its row type.
pub trait PersistedTable: Send + Sync {
    /// Adds the rows changed since the last call to `batch` and forgets that they were dirty.
    fn drain_dirty(&mut self, batch: &mut sled::Batch) -> Result<(), ProjectionError>;
    /// Replaces the rows with those stored in `tree`.
    fn load(&mut self, tree: &sled::Tree) -> Result<(), ProjectionError>;
    /// Empties the table (rebuild).
    fn clear(&mut self);
    /// Feeds the table's name and every row, in key order, to `hasher` (`ledgerstack digest`).
    fn digest(&self, hasher: &mut sha2::Sha256) -> Result<(), ProjectionError>;
    /// The prefix its rows are stored under: its name for `rebuild --only`.
    fn name(&self) -> &'static str;
    /// Adds the removal of every row stored for this table in `tree` to `batch` (before the
    /// table's rows are written again by a partial rebuild).
    fn erase_stored(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
    ) -> Result<(), ProjectionError>;
}

impl<K: RowKey, V: Serialize + DeserializeOwned + Send + Sync> PersistedTable for Table<K, V> {
    fn drain_dirty(&mut self, batch: &mut sled::Batch) -> Result<(), ProjectionError> {
        for key in std::mem::take(&mut self.dirty) {
            let storage_key = self.storage_key(&key);
            match self.rows.get(&key) {
                Some(row) => {
                    let bytes = serde_json::to_vec(row).map_err(|e| ProjectionError::Encode {
                        table: self.prefix,
                        message: e.to_string(),
                    })?;
                    batch.insert(storage_key, bytes);
                }
                None => batch.remove(storage_key),
            }
        }
        Ok(())
    }

    fn load(&mut self, tree: &sled::Tree) -> Result<(), ProjectionError> {
        self.clear();
        let mut prefix = self.prefix.as_bytes().to_vec();
        prefix.push(b'/');
        for entry in tree.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let key = K::from_bytes(&key[prefix.len()..]).ok_or(ProjectionError::Decode {
                table: self.prefix,
                message: "a key this table never wrote".into(),
            })?;
            let row = serde_json::from_slice(&value).map_err(|e| ProjectionError::Decode {
                table: self.prefix,
                message: e.to_string(),
            })?;
            self.rows.insert(key, row);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.dirty.clear();
    }

    fn name(&self) -> &'static str {
        self.prefix
    }

    fn erase_stored(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
    ) -> Result<(), ProjectionError> {
        let mut prefix = self.prefix.as_bytes().to_vec();
        prefix.push(b'/');
        for key in tree.scan_prefix(&prefix).keys() {
            batch.remove(key?);
        }
        Ok(())
    }

    fn digest(&self, hasher: &mut sha2::Sha256) -> Result<(), ProjectionError> {
        use sha2::Digest;
        hasher.update(self.prefix.as_bytes());
        hasher.update((self.rows.len() as u64).to_be_bytes());
        for (key, row) in &self.rows {
            let bytes = serde_json::to_vec(row).map_err(|e| ProjectionError::Encode {
                table: self.prefix,
                message: e.to_string(),
            })?;
            let key = key.to_bytes();
            hasher.update((key.len() as u64).to_be_bytes());
            hasher.update(&key);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(&bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_rows_round_trip_through_sled() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut table: Table<u64, String> = Table::new("things");
        table.insert(1, "one".into());
        table.insert(2, "two".into());
        let mut batch = sled::Batch::default();
        table.drain_dirty(&mut batch).unwrap();
        tree.apply_batch(batch).unwrap();

        table.remove(&1);
        *table.get_mut(&2).unwrap() = "deux".into();
        let mut batch = sled::Batch::default();
        table.drain_dirty(&mut batch).unwrap();
        tree.apply_batch(batch).unwrap();

        let mut loaded: Table<u64, String> = Table::new("things");
        loaded.load(&tree).unwrap();
        assert_eq!(
            loaded.iter().collect::<Vec<_>>(),
            vec![(&2, &"deux".to_string())]
        );
    }
}
