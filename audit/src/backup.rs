//! `ledgerstack backup` and `ledgerstack restore`: a consistent copy of a data directory taken
//! while its server runs, and putting it back into a new data directory.
//!
//! A backup holds what a data directory needs to start: the segment files of the log (`log/`),
//! the master key file and the admin's credentials file. It leaves out what a start rebuilds
//! from the log: the read models (`read-models/`, a sled database the server holds open) and the
//! log's index (`index/`). Nothing here opens the store or sled: the segment files are read
//! like `ledgerstack export` reads them, so the server keeps running and appending.
//!
//! # Consistency
//!
//! Segment files only ever grow at their end, and only the last one grows. The backup copies
//! every segment file as far as it reads at that moment, then scans the copy with the CRC- and
//! chain-checking [`verify_data_dir`]: records after the last group-commit marker (or a record
//! the copy caught half written) are a tail the server had not committed when it was read, and
//! the copy of the last segment is cut to the end of the last committed record. The backup thus
//! holds a prefix of the log ending at a commit boundary, never a half-written record, whatever
//! the server appends meanwhile.
//!
//! The master key file is read after the log: keys are only ever added (rotation keeps old
//! ones), so every key id a copied secret names is in the copied key file.
//!
//! # The manifest
//!
//! `manifest.json` names the head position, the chain head (SHA-256 of the last event's line),
//! the event count, and every file with its size and SHA-256, so a restore (or an operator with
//! `sha256sum`) can tell a backup that was damaged or altered from a good one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use engine::clock::{Clock, SystemClock};
use engine::event::ChainHash;
use engine::secrets::{MasterKeys, SecretsError};
use engine::store::embedded::scan::LogScanner;
use engine::store::embedded::{SEGMENT_HEADER_BYTES, log_dir};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::verify::{VerifyError, verify_data_dir};

/// The manifest's file name inside a backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The master key file of a data directory (`engine::secrets`).
pub const MASTER_KEY_FILE: &str = "master.key";
/// The admin's credentials file of a data directory (`api::bootstrap`).
pub const CREDENTIALS_FILE: &str = "admin-credentials.json";
/// The manifest layout this code writes and reads; a restore refuses any other.
pub const MANIFEST_FORMAT: u32 = 1;
/// What a data directory holds that a restore must never overwrite: a log, read models built
/// from some log, the log's index, and the files a backup carries.
const DATA_DIR_ENTRIES: [&str; 5] = [
    "log",
    "read-models",
    "index",
    MASTER_KEY_FILE,
    CREDENTIALS_FILE,
];
/// How much is copied at once.
const CHUNK: usize = 256 * 1024;

/// Why a backup or a restore failed. Nothing is left at the destination when one fails.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The data directory to back up has no log.
    #[error("no event log in {0} (no log/ directory)")]
    NoLog(PathBuf),
    /// The backup's destination exists and holds something.
    #[error("{0} exists and is not empty: a backup goes into a new or empty directory")]
    DestinationNotEmpty(PathBuf),
    /// The restore's destination already holds (part of) a data directory.
    #[error(
        "{dir} already holds {entry}: restore into a new or empty data directory (it never overwrites a log, read models or keys)"
    )]
    DestinationInUse {
        /// The data directory.
        dir: PathBuf,
        /// What it holds.
        entry: String,
    },
    /// The log (of the data directory, of the copy, or of the backup) does not check out.
    #[error("the log in {dir} does not verify: {source}")]
    Verify {
        /// The directory whose log was checked.
        dir: PathBuf,
        /// The finding.
        #[source]
        source: VerifyError,
    },
    /// The manifest is missing, unreadable or not a manifest of this format.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backup does not match its manifest: damaged or altered since it was taken.
    #[error("backup {dir} does not match its manifest: {reason}")]
    Mismatch {
        /// The backup.
        dir: PathBuf,
        /// The first difference found.
        reason: String,
    },
    /// The log could not be read to count its sealed secrets.
    #[error("reading the log in {dir}: {reason}")]
    Log {
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The backup's master key file does not load.
    #[error("the backup's master key file: {0}")]
    Keys(#[from] SecretsError),
}

impl BackupError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
        move |source| BackupError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path inside the backup (and inside the restored data directory), `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// `manifest.json`: what a backup holds, to be checked before it is restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The Ledgerstack version that took the backup (a restore by another version still works
    /// as long as it reads the segment format; this is for the operator's records).
    pub ledgerstack_version: String,
    /// When the backup was taken (UTC).
    pub created_at: Timestamp,
    /// Position of the last event in the backup (0 for an empty log).
    pub head_position: u64,
    /// SHA-256 of the last event's canonical line: compare with `ledgerstack export`'s
    /// `chain_head` line of the source up to `head_position`.
    pub chain_head: ChainHash,
    /// Events in the backup.
    pub events: u64,
    /// Every file of the backup but the manifest, in copy order.
    pub files: Vec<ManifestFile>,
}

/// Where a backup or restore is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes copied (or checked) so far, of a total.
    Bytes {
        /// Done.
        done: u64,
        /// In all.
        total: u64,
    },
    /// Events whose record and chain link have been checked so far.
    Events(u64),
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The manifest written into the backup.
    pub manifest: Manifest,
    /// Bytes at the end of the log that were being written (not yet committed) when they were
    /// read, and were left out.
    pub left_out: u64,
    /// Whether the master key file was copied (`false`: excluded on request, or the data
    /// directory had none).
    pub has_master_key: bool,
}

/// What [`restore`] wrote.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The backup's manifest, checked.
    pub manifest: Manifest,
    /// Whether a master key file was restored.
    pub has_master_key: bool,
}

/// Copies the log, master key and admin credentials of `data_dir` into the new directory
/// `dest` (which must not exist, or be empty), with a manifest; see the module documentation.
/// Safe while a server runs on `data_dir`. The copy is built under a temporary name beside
/// `dest`, synced, checked, and renamed to `dest` only when complete.
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    with_master_key: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupSummary, BackupError> {
    let source_log = log_dir(data_dir);
    if !source_log.is_dir() {
        return Err(BackupError::NoLog(data_dir.to_owned()));
    }
    // Anything at `dest` but an empty directory (a file, a directory with entries, one that
    // cannot be listed) is never replaced.
    let dest_is_empty_dir = fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_none());
    if !dest_is_empty_dir && fs::symlink_metadata(dest).is_ok() {
        return Err(BackupError::DestinationNotEmpty(dest.to_owned()));
    }
    let tmp = partial_name(dest);
    fs::create_dir(&tmp).map_err(BackupError::io("creating", &tmp))?;
    let result = build_backup(data_dir, &tmp, with_master_key, progress).and_then(|summary| {
        fs::rename(&tmp, dest).map_err(BackupError::io("renaming into place", dest))?;
        sync_dir(&parent_of(dest))?;
        Ok(summary)
    });
    if result.is_err() {
        // Ours alone (created above under a name of our own): leave nothing half made behind.
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn build_backup(
    data_dir: &Path,
    tmp: &Path,
    with_master_key: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupSummary, BackupError> {
    let source_log = log_dir(data_dir);
    let tmp_log = log_dir(tmp);
    fs::create_dir(&tmp_log).map_err(BackupError::io("creating", &tmp_log))?;
    // The segment files at this moment; one the server starts later holds events after them.
    let segments = segment_files(&source_log)?;
    let mut total = 0;
    for (_, path) in &segments {
        total += fs::metadata(path)
            .map_err(BackupError::io("reading", path))?
            .len();
    }
    let mut done = 0;
    let mut files = Vec::new();
    for (name, path) in &segments {
        let copied = copy_file(path, &tmp_log.join(name), 0o644, &mut |n| {
            done += n;
            progress(Progress::Bytes {
                done,
                total: total.max(done),
            });
        })?;
        files.push(ManifestFile {
            path: format!("log/{name}"),
            bytes: copied.0,
            sha256: copied.1,
        });
    }
    sync_dir(&tmp_log)?;
    let checked =
        verify_data_dir(tmp, &mut |n| progress(Progress::Events(n))).map_err(|source| {
            BackupError::Verify {
                dir: data_dir.to_owned(),
                source,
            }
        })?;
    // Cut what the server had not committed when it was read (only ever in the last segment).
    if let Some(last) = files.last_mut() {
        let path = tmp.join(&last.path);
        let keep = last.bytes.saturating_sub(checked.ignored_tail);
        if keep < SEGMENT_HEADER_BYTES {
            // A segment whose creation was caught before its header was complete: no events.
            fs::remove_file(&path).map_err(BackupError::io("removing", &path))?;
            files.pop();
            sync_dir(&tmp_log)?;
        } else if keep < last.bytes {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(BackupError::io("opening", &path))?;
            file.set_len(keep)
                .map_err(BackupError::io("truncating", &path))?;
            file.sync_all().map_err(BackupError::io("syncing", &path))?;
            let (bytes, sha256) = hash_file(&path)?;
            *last = ManifestFile {
                path: last.path.clone(),
                bytes,
                sha256,
            };
        }
    }
    // After the log: every key a copied secret names is in the key file read now.
    let mut extras = vec![CREDENTIALS_FILE];
    if with_master_key {
        extras.insert(0, MASTER_KEY_FILE);
    }
    let mut has_master_key = false;
    for name in extras {
        let from = data_dir.join(name);
        if !from.exists() {
            continue;
        }
        let (bytes, sha256) = copy_file(&from, &tmp.join(name), 0o600, &mut |_| {})?;
        has_master_key |= name == MASTER_KEY_FILE;
        files.push(ManifestFile {
            path: name.to_owned(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        ledgerstack_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: SystemClock.now(),
        head_position: checked.last_position,
        chain_head: checked.chain_head,
        events: checked.events,
        files,
    };
    let manifest_path = tmp.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| BackupError::Manifest {
        path: manifest_path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_new(&manifest_path, text.as_bytes(), 0o644)?;
    sync_dir(tmp)?;
    Ok(BackupSummary {
        manifest,
        left_out: checked.ignored_tail,
        has_master_key,
    })
}

/// Reads and checks the manifest of the backup in `dir` (format, and paths that stay inside
/// the backup).
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let bad = |reason: String| BackupError::Manifest {
        path: path.clone(),
        reason,
    };
    let text = fs::read_to_string(&path).map_err(|e| {
        bad(if e.kind() == io::ErrorKind::NotFound {
            "not found: is this a directory `ledgerstack backup` wrote?".into()
        } else {
            e.to_string()
        })
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a backup manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "format {} (this Ledgerstack reads format {MANIFEST_FORMAT})",
            manifest.format
        )));
    }
    for file in &manifest.files {
        let known = file.path == MASTER_KEY_FILE
            || file.path == CREDENTIALS_FILE
            || file.path.strip_prefix("log/").is_some_and(is_segment_name);
        if !known {
            return Err(bad(format!(
                "names {:?}, which is not a file a backup holds",
                file.path
            )));
        }
    }
    Ok(manifest)
}

/// Checks the backup in `dir` against its manifest without writing anything: every file's size
/// and SHA-256, no segment file the manifest does not list, and the log itself (record CRCs,
/// hash chain, invariants) ending at the manifest's head position and chain head.
pub fn check_backup(
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    let mismatch = |reason: String| BackupError::Mismatch {
        dir: dir.to_owned(),
        reason,
    };
    let total = manifest.files.iter().map(|f| f.bytes).sum();
    let mut done = 0;
    for file in &manifest.files {
        let path = dir.join(&file.path);
        let (bytes, sha256) = hash_file_with(&path, &mut |n| {
            done += n;
            progress(Progress::Bytes { done, total });
        })
        .map_err(|e| match e {
            BackupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                mismatch(format!("{} is missing", file.path))
            }
            other => other,
        })?;
        check_file(file, bytes, &sha256).map_err(mismatch)?;
    }
    for (name, _) in segment_files(&log_dir(dir))? {
        let listed = format!("log/{name}");
        if !manifest.files.iter().any(|f| f.path == listed) {
            return Err(mismatch(format!(
                "{listed} is not in the manifest (added after the backup was taken)"
            )));
        }
    }
    let checked =
        verify_data_dir(dir, &mut |n| progress(Progress::Events(n))).map_err(|source| {
            BackupError::Verify {
                dir: dir.to_owned(),
                source,
            }
        })?;
    let claims = (manifest.events, manifest.head_position, manifest.chain_head);
    let holds = (checked.events, checked.last_position, checked.chain_head);
    if claims != holds || checked.ignored_tail != 0 {
        return Err(mismatch(format!(
            "the manifest says {} events up to position {} with chain head {}; the log holds {} events up to position {} with chain head {}{}",
            claims.0,
            claims.1,
            claims.2,
            holds.0,
            holds.1,
            holds.2,
            if checked.ignored_tail != 0 {
                format!(" and {} bytes of an uncommitted tail", checked.ignored_tail)
            } else {
                String::new()
            }
        )));
    }
    Ok(manifest)
}

/// Restores the backup in `backup_dir` into the data directory `data_dir` (created if
/// missing; refused if it holds a log, read models, an index, a master key or admin
/// credentials). The backup is checked whole first ([`check_backup`]); then its files are
/// copied under a temporary name inside `data_dir`, checked again as copied, synced, and moved
/// into place, the log last. On any failure nothing of the backup is left in `data_dir`.
/// A server started on `data_dir` afterwards rebuilds its read models from the log.
pub fn restore(
    backup_dir: &Path,
    data_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<RestoreSummary, BackupError> {
    for entry in DATA_DIR_ENTRIES {
        if fs::symlink_metadata(data_dir.join(entry)).is_ok() {
            return Err(BackupError::DestinationInUse {
                dir: data_dir.to_owned(),
                entry: entry.to_owned(),
            });
        }
    }
    let manifest = check_backup(backup_dir, progress)?;
    let created_data_dir = !data_dir.exists();
    fs::create_dir_all(data_dir).map_err(BackupError::io("creating", data_dir))?;
    let tmp = data_dir.join(format!(".restore-partial-{}", std::process::id()));
    let result = fs::create_dir(&tmp)
        .map_err(BackupError::io("creating", &tmp))
        .and_then(|()| {
            let copied = copy_restore(backup_dir, data_dir, &tmp, &manifest);
            // Ours alone; after a success only the emptied directory is left.
            let _ = fs::remove_dir_all(&tmp);
            copied
        });
    if result.is_err() && created_data_dir {
        let _ = fs::remove_dir(data_dir);
    }
    let has_master_key = result?;
    Ok(RestoreSummary {
        manifest,
        has_master_key,
    })
}

/// Copies the backup's files into `tmp`, checks them, and moves them into `data_dir`; returns
/// whether a master key was restored.
fn copy_restore(
    backup_dir: &Path,
    data_dir: &Path,
    tmp: &Path,
    manifest: &Manifest,
) -> Result<bool, BackupError> {
    let tmp_log = log_dir(tmp);
    fs::create_dir(&tmp_log).map_err(BackupError::io("creating", &tmp_log))?;
    let mut has_master_key = false;
    for file in &manifest.files {
        let secret = file.path == MASTER_KEY_FILE || file.path == CREDENTIALS_FILE;
        let mode = if secret { 0o600 } else { 0o644 };
        let (bytes, sha256) = copy_file(
            &backup_dir.join(&file.path),
            &tmp.join(&file.path),
            mode,
            &mut |_| {},
        )?;
        // Checked as copied too: the backup could change between the check and the copy.
        check_file(file, bytes, &sha256).map_err(|reason| BackupError::Mismatch {
            dir: backup_dir.to_owned(),
            reason,
        })?;
        has_master_key |= file.path == MASTER_KEY_FILE;
    }
    sync_dir(&tmp_log)?;
    if has_master_key {
        MasterKeys::open(tmp)?;
    }
    // The keys and credentials first, the log last: a data directory with a log is one a
    // restore refuses, so an interrupted restore can be retried after removing the files.
    for name in [MASTER_KEY_FILE, CREDENTIALS_FILE, "log"] {
        let from = tmp.join(name);
        if from.exists() {
            let to = data_dir.join(name);
            fs::rename(&from, &to).map_err(BackupError::io("moving into place", &to))?;
        }
    }
    sync_dir(data_dir)?;
    Ok(has_master_key)
}

/// How many sealed secrets the log of `data_dir` holds under each master key id, in
/// first-seen order; read from the segment files only, so the server may be running. A sealed
/// secret is any object of an event's data with string members `key_id`, `nonce` and
/// `ciphertext` (`engine::event::common::SealedSecret`), wherever the event type keeps it, so
/// that an event type added later is counted without a change here. `ledgerstack admin
/// key-ids` compares these ids with the key file's to name the keys a data directory lacks.
pub fn sealed_secrets_by_key(data_dir: &Path) -> Result<Vec<(String, u64)>, BackupError> {
    fn walk(value: &Value, counts: &mut Vec<(String, u64)>) {
        match value {
            Value::Object(members) => {
                let text = |name: &str| members.get(name).and_then(Value::as_str);
                if let (Some(id), Some(_), Some(_)) =
                    (text("key_id"), text("nonce"), text("ciphertext"))
                {
                    match counts.iter_mut().find(|(k, _)| k == id) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((id.to_owned(), 1)),
                    }
                }
                members.values().for_each(|v| walk(v, counts));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, counts)),
            _ => {}
        }
    }
    let log_error = |reason: String| BackupError::Log {
        dir: data_dir.to_owned(),
        reason,
    };
    let mut counts = Vec::new();
    if !log_dir(data_dir).is_dir() {
        return Ok(counts);
    }
    let mut scanner = LogScanner::open(data_dir).map_err(|e| log_error(e.to_string()))?;
    while let Some(scanned) = scanner.next_event().map_err(|e| log_error(e.to_string()))? {
        let position = scanned.event.envelope.position.0;
        let value = scanned
            .event
            .to_json_line()
            .map_err(|e| e.to_string())
            .and_then(|line| serde_json::from_str::<Value>(&line).map_err(|e| e.to_string()))
            .map_err(|e| log_error(format!("position {position} has no JSON form: {e}")))?;
        walk(&value["data"], &mut counts);
    }
    Ok(counts)
}

fn check_file(file: &ManifestFile, bytes: u64, sha256: &str) -> Result<(), String> {
    if bytes != file.bytes {
        return Err(format!(
            "{} has {bytes} bytes, the manifest says {}",
            file.path, file.bytes
        ));
    }
    if sha256 != file.sha256 {
        return Err(format!(
            "{} has SHA-256 {sha256}, the manifest says {}",
            file.path, file.sha256
        ));
    }
    Ok(())
}

/// Segment files in `log`, by name (which sorts like positions).
fn segment_files(log: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(log).map_err(BackupError::io("reading", log))? {
        let entry = entry.map_err(BackupError::io("reading", log))?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_segment_name(n)) {
            segments.push((name.to_owned(), entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Whether `name` is a segment file's name: the first position in 20 digits, then `.seg`
/// (`engine::store::embedded::segments`). The lock file and anything else are not copied.
fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".seg")
        .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies `from` into the new file `to` (mode `mode`), synced; returns its size and SHA-256.
/// `copied` is called with each chunk's length.
fn copy_file(
    from: &Path,
    to: &Path,
    mode: u32,
    copied: &mut dyn FnMut(u64),
) -> Result<(u64, String), BackupError> {
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .map_err(BackupError::io("creating", to))?;
    let summary = read_hashing(from, &mut |chunk| {
        output
            .write_all(chunk)
            .map_err(BackupError::io("writing", to))?;
        copied(chunk.len() as u64);
        Ok(())
    })?;
    output.sync_all().map_err(BackupError::io("syncing", to))?;
    Ok(summary)
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    hash_file_with(path, &mut |_| {})
}

/// Size and SHA-256 of a file; `read` is called with each chunk's length.
fn hash_file_with(path: &Path, read: &mut dyn FnMut(u64)) -> Result<(u64, String), BackupError> {
    read_hashing(path, &mut |chunk| {
        read(chunk.len() as u64);
        Ok(())
    })
}

/// Reads `path` to its end in chunks, handing each to `chunk`; returns its size and SHA-256.
fn read_hashing(
    path: &Path,
    chunk: &mut dyn FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<(u64, String), BackupError> {
    let mut input = File::open(path).map_err(BackupError::io("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io("reading", path)(e)),
        };
        hasher.update(&buf[..n]);
        chunk(&buf[..n])?;
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Creates `path` (failing if it exists) holding `bytes`, synced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(BackupError::io("creating", path))?;
    file.write_all(bytes)
        .map_err(BackupError::io("writing", path))?;
    file.sync_all().map_err(BackupError::io("syncing", path))
}

/// Makes the creates and renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io("syncing", dir))
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// The temporary name a backup is built under: beside `dest` (same file system, so the final
/// rename is atomic), hidden, and naming this process.
fn partial_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    parent_of(dest).join(format!(".{name}.partial-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert!(is_segment_name("00000000000000000001.seg"));
        assert!(!is_segment_name("LOCK"));
        assert!(!is_segment_name("0000000000000000001.seg"));
        assert!(!is_segment_name("0000000000000000000a.seg"));
    }

    #[test]
    fn a_manifest_naming_a_file_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            ledgerstack_version: "0".into(),
            created_at: Timestamp::EPOCH,
            head_position: 0,
            chain_head: ChainHash::GENESIS,
            events: 0,
            files: vec![ManifestFile {
                path: "../etc/passwd".into(),
                bytes: 0,
                sha256: String::new(),
            }],
        };
        fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a file a backup holds"), "{err}");
    }
}
