//! `ledgerstack admin rotate-key` and `ledgerstack admin key-ids`: the master key file's
//! operations (docs/operators.md, "The master key"). Neither prints key material, and neither
//! re-encrypts anything: sealed secrets name the key they were sealed with, and old keys stay.

use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::{Context, Result, bail};
use engine::secrets::MasterKeys;
use engine::store::embedded::log_dir;

/// Whether a server holds the log of `data_dir` (its lock file is locked). Takes a shared lock
/// for an instant when none does, which a server starting at that very moment would report as
/// "locked"; it never creates the lock file.
fn server_running(data_dir: &Path) -> Result<bool> {
    let lock = log_dir(data_dir).join("LOCK");
    let file = match File::open(&lock) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", lock.display())),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", lock.display()))
        }
    }
}

/// Loads the key file of `data_dir`, which must exist: these commands never create one (a
/// server does at its first start).
fn open(data_dir: &Path) -> Result<MasterKeys> {
    MasterKeys::open(data_dir).with_context(|| {
        format!(
            "loading the master keys of {} (a server creates master.key at its first start; restore it from your key backup if it was lost)",
            data_dir.display()
        )
    })
}

/// `ledgerstack admin rotate-key`: adds a new key, makes it current, prints its id.
pub(crate) fn rotate(data_dir: &Path) -> Result<()> {
    let mut keys = open(data_dir)?;
    let old = keys.current_key_id().to_owned();
    let new = keys
        .rotate(data_dir)
        .with_context(|| format!("rotating the master key of {}", data_dir.display()))?;
    println!("{new}");
    eprintln!(
        "Rotated the master key of {}: new secrets are sealed with key {new}; key {old} and older keys stay in master.key so the secrets sealed with them still open (nothing was re-encrypted). Back up master.key again.",
        data_dir.display()
    );
    if server_running(data_dir)? {
        eprintln!(
            "A server is running on {}: it read master.key when it started and keeps sealing new secrets with key {old} until it is restarted (safe: it never writes master.key).",
            data_dir.display()
        );
    }
    Ok(())
}

/// `ledgerstack admin key-ids`: the key ids in file order, the current one marked, with how
/// many sealed secrets of the log each opens; fails naming the key ids the log's secrets need
/// that the file lacks (a lost or wrong master.key).
pub(crate) fn list(data_dir: &Path, json: bool) -> Result<()> {
    let keys = open(data_dir)?;
    let path = data_dir.join("master.key");
    let ids: Vec<&str> = keys.key_ids().collect();
    let current = keys.current_key_id();
    let sealed = audit::backup::sealed_secrets_by_key(data_dir)?;
    let count = |id: &str| sealed.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
    let missing: Vec<&(String, u64)> = sealed
        .iter()
        .filter(|(id, _)| !ids.contains(&id.as_str()))
        .collect();
    if json {
        let by_key: serde_json::Map<String, serde_json::Value> = sealed
            .iter()
            .map(|(id, n)| (id.clone(), (*n).into()))
            .collect();
        let value = serde_json::json!({
            "key_ids": ids,
            "current": current,
            "sealed_secrets": by_key,
            "missing_key_ids": missing.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for id in &ids {
            let mark = if *id == current { " (current)" } else { "" };
            println!("{id}{mark}: {} sealed secrets in the log", count(id));
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(id, n)| format!("{id} ({n} sealed secrets)"))
            .collect();
        bail!(
            "the log holds secrets sealed with master keys that {} does not hold: {}. The API keys sealed with them do not authenticate; put back the master.key this log was written with (from your key backup).",
            path.display(),
            list.join(", ")
        );
    }
    Ok(())
}
