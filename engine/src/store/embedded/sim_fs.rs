//! A file layer that can lose power.
//!
//! A killed process keeps its page cache, so killing a process cannot show a missing fsync. This
//! layer keeps, for every file, what the last fsync made durable besides what was written; at a
//! chosen operation it "cuts the power" (that operation and every later one fail), and
//! [`SimFs::reboot`] then leaves each file as a disk could after a power cut:
//!
//! - [`PowerCut::DropUnsynced`]: exactly what was fsynced;
//! - [`PowerCut::KeepPrefix`]: what was fsynced plus some prefix of what was written after it
//!   (the disk got part of the way);
//! - [`PowerCut::ZeroFill`]: like `KeepPrefix`, but the rest of the written length reads as
//!   zeros (a file system that extended the file before its data blocks reached the disk).
//!
//! A file created since the last directory fsync disappears. Removals are durable at once (the
//! store always fsyncs the directory right after removing a file).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::fs::{LogFile, LogFs};

/// How a power cut treats data written but not yet fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PowerCut {
    DropUnsynced,
    KeepPrefix,
    ZeroFill,
}

#[derive(Default)]
struct SimFile {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, SimFile>,
    /// Names whose creation a directory fsync made durable.
    durable_names: BTreeSet<String>,
    /// Operations (writes, fsyncs, creations) left before the power goes.
    ops_until_cut: Option<u64>,
    powered_off: bool,
    /// Bumped at every reboot, so that handles from before it stop working.
    boot: u64,
}

impl State {
    /// Counts one mutating operation; fails if the power is (now) off.
    fn operate(&mut self) -> io::Result<()> {
        if let Some(left) = self.ops_until_cut.as_mut() {
            if *left == 0 {
                self.powered_off = true;
            } else {
                *left -= 1;
            }
        }
        if self.powered_off {
            return Err(io::Error::other("simulated power cut"));
        }
        Ok(())
    }
}

/// A simulated directory; clones share it.
#[derive(Clone)]
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimFs {
    pub(crate) fn new() -> Self {
        SimFs {
            state: Arc::default(),
            path: PathBuf::from("/sim/log"),
        }
    }

    /// Cuts the power after `ops` more mutating operations succeed.
    pub(crate) fn cut_power_after(&self, ops: u64) {
        lock(&self.state).ops_until_cut = Some(ops);
    }

    /// Whether the power has been cut.
    pub(crate) fn is_off(&self) -> bool {
        lock(&self.state).powered_off
    }

    /// Restores power, leaving every file as `cut` says a disk could.
    pub(crate) fn reboot(&self, cut: PowerCut, rng: &mut impl Rng) {
        let mut state = lock(&self.state);
        let durable_names = state.durable_names.clone();
        state.files.retain(|name, _| durable_names.contains(name));
        for file in state.files.values_mut() {
            let appended =
                file.data.len() > file.durable.len() && file.data.starts_with(&file.durable);
            let mut after = file.durable.clone();
            if appended && cut != PowerCut::DropUnsynced {
                let unsynced = &file.data[file.durable.len()..];
                let kept = rng.random_range(0..=unsynced.len());
                after.extend_from_slice(&unsynced[..kept]);
                if cut == PowerCut::ZeroFill {
                    after.resize(file.data.len(), 0);
                }
            }
            file.data = after.clone();
            file.durable = after;
        }
        state.ops_until_cut = None;
        state.powered_off = false;
        state.boot += 1;
    }

    fn handle(&self, name: &str, state: &State) -> Arc<dyn LogFile> {
        Arc::new(SimHandle {
            state: self.state.clone(),
            name: name.to_owned(),
            boot: state.boot,
        })
    }
}

impl LogFs for SimFs {
    fn path(&self) -> &Path {
        &self.path
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(lock(&self.state).files.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let state = lock(&self.state);
        if !state.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, name.to_owned()));
        }
        Ok(self.handle(name, &state))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let mut state = lock(&self.state);
        state.operate()?;
        if state.files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_owned(),
            ));
        }
        state.files.insert(name.to_owned(), SimFile::default());
        Ok(self.handle(name, &state))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.operate()?;
        state.files.remove(name);
        state.durable_names.remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.operate()?;
        state.durable_names = state.files.keys().cloned().collect();
        Ok(())
    }
}

struct SimHandle {
    state: Arc<Mutex<State>>,
    name: String,
    boot: u64,
}

impl SimHandle {
    fn with_file<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut SimFile) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = lock(&self.state);
        if state.boot != self.boot {
            return Err(io::Error::other("file handle from before a reboot"));
        }
        if mutating {
            state.operate()?;
        }
        let file = state
            .files
            .get_mut(&self.name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, self.name.clone()))?;
        f(file)
    }
}

impl LogFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_file(false, |file| {
            let start = (offset as usize).min(file.data.len());
            let n = buf.len().min(file.data.len() - start);
            buf[..n].copy_from_slice(&file.data[start..start + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_file(true, |file| {
            let end = offset as usize + buf.len();
            if file.data.len() < end {
                file.data.resize(end, 0);
            }
            file.data[offset as usize..end].copy_from_slice(buf);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_file(true, |file| {
            file.durable = file.data.clone();
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with_file(false, |file| Ok(file.data.len() as u64))
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with_file(true, |file| {
            file.data.truncate(len as usize);
            Ok(())
        })
    }
}
