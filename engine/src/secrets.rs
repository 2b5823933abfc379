//! Secrets at rest: the master keys that seal API secret keys before they enter the event log,
//! password hashing, and generation of API keys and session keys.
//!
//! The event log is exported and backed up as a whole, so it must never hold a secret in clear:
//! API secret keys enter it only as [`SealedSecret`]s (XChaCha20-Poly1305 under a master key kept
//! outside the log), passwords only as argon2id PHC strings.
//!
//! # The key file
//!
//! `<data_dir>/master.key`, mode 0600, a text file operators can read and back up:
//!
//! ```text
//! # '#' starts a comment; blank lines are ignored
//! key 3fa2c1d9 <64 hex characters: the 256-bit key>
//! key 81b07e44 <64 hex characters>
//! current 81b07e44
//! ```
//!
//! Each `key` line defines a key under an id (1-32 characters of `A-Z a-z 0-9 . _ -`, unique);
//! exactly one `current` line names the key new secrets are sealed with. Older keys stay so that
//! secrets sealed before a [rotation](MasterKeys::rotate) still open. Losing the file loses every
//! sealed secret: back it up, separately from the log. Rotation rewrites the file, dropping
//! comments an operator added.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use compact_str::CompactString;

use crate::event::common::{HexBytes, SealedSecret};

const KEY_FILE: &str = "master.key";
const KEY_FILE_TMP: &str = "master.key.tmp";
/// Held (an exclusive file lock) while a rotation reads, merges and rewrites the key file, so
/// two rotations at once cannot each drop the key the other added.
const KEY_FILE_LOCK: &str = "master.key.lock";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const MAX_KEY_ID_LEN: usize = 32;

/// What went wrong loading the master keys or opening a sealed secret. Messages never contain
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file does not exist (only [`MasterKeys::open`] requires it to).
    #[error("master key file {path} not found")]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file could not be read.
    #[error("cannot read master key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file could not be written.
    #[error("cannot write master key file {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "master key file {path} has mode {mode:04o}, which lets group or others access it; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line of the key file is malformed.
    #[error("master key file {path}, line {line}: {reason}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// The key file has no `current` line, so no key to seal new secrets with.
    #[error("master key file {path} has no `current <key_id>` line")]
    NoCurrentKey {
        /// The key file.
        path: PathBuf,
    },
    /// During rotation, the file on disk holds a key id with other material than the one loaded.
    #[error(
        "master key file {path} holds key {key_id:?} with different material than the loaded key of that id; refusing to rotate"
    )]
    KeyConflict {
        /// The key file.
        path: PathBuf,
        /// The conflicting key id.
        key_id: CompactString,
    },
    /// A sealed secret names a key the key file does not hold.
    #[error("unknown master key id {key_id:?}")]
    UnknownKey {
        /// The key id from the sealed secret.
        key_id: CompactString,
    },
    /// A sealed secret's nonce has the wrong length.
    #[error("sealed secret under key {key_id:?} has a {len}-byte nonce, expected {NONCE_LEN}")]
    BadNonce {
        /// The key id from the sealed secret.
        key_id: CompactString,
        /// The nonce's length.
        len: usize,
    },
    /// Decryption failed: wrong context, tampered data, or a key replaced under the same id.
    #[error(
        "sealed secret under key {key_id:?} failed authentication (wrong context or tampered ciphertext)"
    )]
    Authentication {
        /// The key id from the sealed secret.
        key_id: CompactString,
    },
}

/// The master keys: loaded from (or created in) `<data_dir>/master.key`.
pub struct MasterKeys {
    /// In file order, so a rewritten file keeps the keys' history readable.
    keys: Vec<(CompactString, [u8; KEY_LEN])>,
    /// Index into `keys`; an index rather than an id so `seal` needs no lookup that could fail.
    current: usize,
}

impl MasterKeys {
    /// Opens `<data_dir>/master.key`, creating it with one fresh random 256-bit key (mode 0600,
    /// never overwriting an existing file) when missing. Refuses a file group or others can access.
    pub fn open_or_create(data_dir: &Path) -> Result<MasterKeys, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        if let Some(keys) = load(&path)? {
            return Ok(keys);
        }
        let id = fresh_key_id(&[]);
        let keys = MasterKeys {
            keys: vec![(id, random_key())],
            current: 0,
        };
        match write_synced(&path, &keys.render()).and_then(|()| sync_parent(&path)) {
            Ok(()) => Ok(keys),
            // Another process created it between our check and create: its key is the one in
            // use, so load it instead of ours (a file still half written fails to parse, loudly).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                load(&path)?.ok_or(SecretsError::Missing { path })
            }
            Err(source) => Err(SecretsError::Write { path, source }),
        }
    }

    /// One fresh random key held in memory only: it opens no secret of any log. For answering
    /// from a log whose key is not at hand (`ledgerstack state` on an auditor's copy), where
    /// sealed secrets are simply not shown.
    pub fn ephemeral() -> MasterKeys {
        MasterKeys {
            keys: vec![(fresh_key_id(&[]), random_key())],
            current: 0,
        }
    }

    /// Opens an existing `<data_dir>/master.key` only (offline tools); error if missing.
    pub fn open(data_dir: &Path) -> Result<MasterKeys, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        load(&path)?.ok_or(SecretsError::Missing { path })
    }

    /// Adds a new random key, makes it current and rewrites the file atomically; old keys stay.
    /// Returns the new key id.
    pub fn rotate(&mut self, data_dir: &Path) -> Result<String, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        let lock_path = data_dir.join(KEY_FILE_LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|source| SecretsError::Write {
                path: lock_path,
                source,
            })?;
        // Start from the file, not only from memory: a key another process added since this one
        // loaded must never be dropped, or the secrets sealed under it could not be opened again.
        let mut merged = load(&path)?.unwrap_or(MasterKeys {
            keys: Vec::new(),
            current: 0,
        });
        for (id, material) in &self.keys {
            match merged.material(id) {
                Some(on_disk) if on_disk != material => {
                    return Err(SecretsError::KeyConflict {
                        path,
                        key_id: id.clone(),
                    });
                }
                Some(_) => {}
                None => merged.keys.push((id.clone(), *material)),
            }
        }
        let id = fresh_key_id(&merged.keys);
        merged.keys.push((id.clone(), random_key()));
        merged.current = merged.keys.len() - 1;
        replace_file(&data_dir.join(KEY_FILE_TMP), &path, &merged.render())
            .map_err(|source| SecretsError::Write { path, source })?;
        drop(lock);
        *self = merged;
        Ok(id.into())
    }

    /// The key ids, in file order (never the key material): what `ledgerstack admin key-ids`
    /// lists.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Id of the key new secrets are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.keys[self.current].0
    }

    /// Encrypts with XChaCha20-Poly1305 under the current key and a random 24-byte nonce. The
    /// associated data binds the ciphertext to `context` (e.g. the user id), so a sealed secret
    /// copied into another user's event does not open.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> SealedSecret {
        let (id, material) = &self.keys[self.current];
        let cipher = XChaCha20Poly1305::new(Key::from_slice(material));
        // 192-bit random nonces make collisions negligible without a counter to persist.
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 only refuses plaintexts beyond 256 GiB");
        SealedSecret {
            key_id: id.clone(),
            nonce: HexBytes(nonce.to_vec()),
            ciphertext: HexBytes(ciphertext),
        }
    }

    /// Decrypts with the key named by `sealed.key_id`; fails on an unknown key id or when
    /// authentication fails (wrong `context`, tampered data).
    pub fn open_sealed(
        &self,
        sealed: &SealedSecret,
        context: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let key_id = || sealed.key_id.clone();
        let material = self
            .material(&sealed.key_id)
            .ok_or_else(|| SecretsError::UnknownKey { key_id: key_id() })?;
        // `XNonce::from_slice` panics on any other length, and this nonce comes from the log.
        if sealed.nonce.0.len() != NONCE_LEN {
            return Err(SecretsError::BadNonce {
                key_id: key_id(),
                len: sealed.nonce.0.len(),
            });
        }
        XChaCha20Poly1305::new(Key::from_slice(material))
            .decrypt(
                XNonce::from_slice(&sealed.nonce.0),
                Payload {
                    msg: &sealed.ciphertext.0,
                    aad: context,
                },
            )
            .map_err(|_| SecretsError::Authentication { key_id: key_id() })
    }

    fn material(&self, id: &str) -> Option<&[u8; KEY_LEN]> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, material)| material)
    }

    fn render(&self) -> String {
        let mut text = String::from(
            "# Ledgerstack master keys: they seal the API secret keys stored in the event log.\n\
             # Keep this file private (chmod 600) and back it up apart from the log: without it\n\
             # the sealed secrets cannot be opened. Never delete an old key line.\n\
             # Format: `key <id> <64 hex chars>` lines and one `current <id>` line.\n",
        );
        for (id, material) in &self.keys {
            text.push_str(&format!("key {id} {}\n", hex::encode(material)));
        }
        text.push_str(&format!("current {}\n", self.current_key_id()));
        text
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("MasterKeys")
            .field("key_ids", &ids)
            .field("current", &self.current_key_id())
            .finish()
    }
}

/// Reads and parses the key file; `None` if it does not exist.
fn load(path: &Path) -> Result<Option<MasterKeys>, SecretsError> {
    let read_error = |source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(source)),
    };
    // Checked on the open handle, so the file judged is the file read.
    let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    parse(path, &text).map(Some)
}

fn parse(path: &Path, text: &str) -> Result<MasterKeys, SecretsError> {
    let error = |line: usize, reason: String| SecretsError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    // Errors never echo a line's words unvalidated: a misplaced word may be key material.
    let bad_id = |line| {
        error(
            line,
            format!("invalid key id (use 1-{MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 . _ -)"),
        )
    };
    let mut keys: Vec<(CompactString, [u8; KEY_LEN])> = Vec::new();
    let mut current: Option<(usize, CompactString)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before);
        let words: Vec<&str> = content.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["key", id, key_hex] => {
                let id = valid_key_id(id).ok_or_else(|| bad_id(line))?;
                if keys.iter().any(|(k, _)| *k == id) {
                    return Err(error(line, format!("duplicate key id {id:?}")));
                }
                let mut material = [0u8; KEY_LEN];
                hex::decode_to_slice(key_hex, &mut material).map_err(|_| {
                    error(
                        line,
                        format!("key {id:?} is not {} hex characters", KEY_LEN * 2),
                    )
                })?;
                keys.push((id, material));
            }
            ["current", id] => {
                if let Some((first, _)) = &current {
                    return Err(error(
                        line,
                        format!("second `current` line (the first is line {first})"),
                    ));
                }
                current = Some((line, valid_key_id(id).ok_or_else(|| bad_id(line))?));
            }
            ["key", ..] => return Err(error(line, "expected `key <id> <64 hex chars>`".into())),
            ["current", ..] => return Err(error(line, "expected `current <id>`".into())),
            _ => {
                return Err(error(
                    line,
                    "unknown line; expected `key <id> <64 hex chars>`, `current <id>` or a # comment".into(),
                ));
            }
        }
    }
    let (line, current_id) = current.ok_or_else(|| SecretsError::NoCurrentKey {
        path: path.to_path_buf(),
    })?;
    let current = keys
        .iter()
        .position(|(id, _)| *id == current_id)
        .ok_or_else(|| {
            error(
                line,
                format!("current key {current_id:?} is not defined by a `key` line"),
            )
        })?;
    Ok(MasterKeys { keys, current })
}

fn valid_key_id(id: &str) -> Option<CompactString> {
    let valid = (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    valid.then(|| CompactString::from(id))
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut key);
    key
}

/// A random id rather than a counter: after restoring an old backup of the file, a counter would
/// reuse an id for new material, and secrets sealed under the lost key would fail to authenticate
/// instead of reporting a missing key.
fn fresh_key_id(existing: &[(CompactString, [u8; KEY_LEN])]) -> CompactString {
    loop {
        let mut bytes = [0u8; 4];
        OsRng.fill_bytes(&mut bytes);
        let id = CompactString::from(hex::encode(bytes));
        if !existing.iter().any(|(k, _)| *k == id) {
            return id;
        }
    }
}

/// Creates `path` (mode 0600, failing if it exists) holding `text`, synced to disk.
fn write_synced(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Makes a create or rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `text` so that a crash leaves either the old or the new file, never a mix.
fn replace_file(tmp: &Path, path: &Path, text: &str) -> io::Result<()> {
    // A temp file left by a crashed rotation keeps its mode on truncation: remove it so the new
    // one is created 0600.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_synced(tmp, text)?;
    fs::rename(tmp, path)?;
    sync_parent(path)
}

/// Argon2id PHC string for a password (the `argon2` crate's default parameters, random salt).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters and a generated salt cannot fail")
        .to_string()
}

/// Verifies a password against a PHC string; false on mismatch or a malformed hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A fresh `(api key, secret key)` pair shaped as CloudStack generates them: each the 86-character
/// URL-safe base64 (no padding) of 64 random bytes.
pub fn generate_api_key_pair() -> (String, String) {
    (random_token::<64>(), random_token::<64>())
}

/// A random session key for `login`: URL-safe base64 (no padding) of 32 random bytes.
pub fn generate_session_key() -> String {
    random_token::<32>()
}

fn random_token<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &Path, text: &str, mode: u32) {
        let path = dir.join(KEY_FILE);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn keys() -> (tempfile::TempDir, MasterKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = MasterKeys::open_or_create(dir.path()).unwrap();
        (dir, keys)
    }

    #[test]
    fn seal_and_open() {
        let (_dir, keys) = keys();
        let sealed = keys.seal(b"the secret", b"user-1");
        assert_eq!(sealed.key_id, keys.current_key_id());
        assert_eq!(sealed.nonce.0.len(), NONCE_LEN);
        assert!(!sealed.ciphertext.0.windows(10).any(|w| w == b"the secret"));
        assert_eq!(keys.open_sealed(&sealed, b"user-1").unwrap(), b"the secret");
        assert!(matches!(
            keys.open_sealed(&sealed, b"user-2"),
            Err(SecretsError::Authentication { .. })
        ));

        let mut tampered = sealed.clone();
        tampered.ciphertext.0[0] ^= 1;
        assert!(matches!(
            keys.open_sealed(&tampered, b"user-1"),
            Err(SecretsError::Authentication { .. })
        ));
        let mut short_nonce = sealed.clone();
        short_nonce.nonce.0.pop();
        assert!(matches!(
            keys.open_sealed(&short_nonce, b"user-1"),
            Err(SecretsError::BadNonce { len: 23, .. })
        ));

        let mut unknown = sealed;
        unknown.key_id = "nosuchkey".into();
        let err = keys.open_sealed(&unknown, b"user-1").unwrap_err();
        assert_eq!(err.to_string(), "unknown master key id \"nosuchkey\"");
    }

    #[test]
    fn concurrent_rotations_lose_no_key() {
        let (dir, first) = keys();
        let first_id = first.current_key_id().to_owned();
        let added: Vec<String> = std::thread::scope(|scope| {
            let rotators: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut keys = MasterKeys::open(dir.path()).unwrap();
                        (0..5)
                            .map(|_| keys.rotate(dir.path()).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            rotators
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect()
        });
        let on_disk = MasterKeys::open(dir.path()).unwrap();
        let ids: Vec<&str> = on_disk.key_ids().collect();
        assert_eq!(ids.len(), 21, "{ids:?}");
        assert!(ids.contains(&first_id.as_str()));
        for id in &added {
            assert!(ids.contains(&id.as_str()), "{id} was lost");
        }
    }

    #[test]
    fn rotation_keeps_old_keys() {
        let (dir, mut keys) = keys();
        let old_id = keys.current_key_id().to_owned();
        let old = keys.seal(b"old", b"ctx");
        let new_id = keys.rotate(dir.path()).unwrap();
        assert_ne!(new_id, old_id);
        assert_eq!(keys.current_key_id(), new_id);
        assert_eq!(keys.seal(b"new", b"ctx").key_id, new_id);
        assert_eq!(keys.open_sealed(&old, b"ctx").unwrap(), b"old");

        let reloaded = MasterKeys::open(dir.path()).unwrap();
        assert_eq!(reloaded.current_key_id(), new_id);
        assert_eq!(reloaded.open_sealed(&old, b"ctx").unwrap(), b"old");
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join(KEY_FILE_TMP).exists());

        // A stale copy in memory must not drop the key the rotation above added to the file.
        let mut stale = MasterKeys::open(dir.path()).unwrap();
        stale.keys.truncate(1);
        stale.current = 0;
        stale.rotate(dir.path()).unwrap();
        assert_eq!(MasterKeys::open(dir.path()).unwrap().keys.len(), 3);
    }

    #[test]
    fn created_file_is_private_and_never_overwritten() {
        let (dir, keys) = keys();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        let again = MasterKeys::open_or_create(dir.path()).unwrap();
        assert_eq!(again.current_key_id(), keys.current_key_id());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);

        write_file(dir.path(), "garbage\n", 0o600);
        assert!(MasterKeys::open_or_create(dir.path()).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "garbage\n");

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            MasterKeys::open(empty.path()),
            Err(SecretsError::Missing { .. })
        ));
    }

    #[test]
    fn readable_file_is_refused() {
        let (dir, _keys) = keys();
        fs::set_permissions(dir.path().join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let message = MasterKeys::open_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("mode 0644"), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn corrupted_files_name_the_line() {
        let key = "ab".repeat(32);
        let cases = [
            (
                format!("# c\nkey k1 {}\ncurrent k1\n", &key[..63]),
                "line 2: key \"k1\" is not 64 hex",
            ),
            (
                format!("key k1 {}zz\ncurrent k1\n", &key[..62]),
                "line 1: key \"k1\" is not 64 hex",
            ),
            (
                format!("key k1 {key}\nkeys k1\ncurrent k1\n"),
                "line 2: unknown line",
            ),
            (
                format!("key k1 {key}\n\ncurrent k2\n"),
                "line 3: current key \"k2\" is not defined",
            ),
            (
                format!("key k1 {key}\nkey k1 {key}\ncurrent k1\n"),
                "line 2: duplicate key id \"k1\"",
            ),
            (
                format!("key k1 {key}\ncurrent k1\ncurrent k1\n"),
                "line 3: second `current` line",
            ),
            (
                format!("key {key} k1\ncurrent k1\n"),
                "line 1: invalid key id",
            ),
            (format!("key k1 {key}\n"), "has no `current <key_id>` line"),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write_file(dir.path(), &text, 0o600);
            let message = MasterKeys::open(dir.path()).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(
                !message.contains(&key[..16]),
                "{message:?} leaks key material"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        write_file(
            dir.path(),
            &format!("key k-1.a_b {key} # note\n current k-1.a_b\n"),
            0o600,
        );
        assert_eq!(
            MasterKeys::open(dir.path()).unwrap().current_key_id(),
            "k-1.a_b"
        );
    }

    #[test]
    fn debug_hides_key_material() {
        let (dir, keys) = keys();
        let text = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let debug = format!("{keys:?}");
        assert!(debug.contains(keys.current_key_id()));
        assert!(!debug.contains(&hex::encode(keys.keys[0].1)));
        assert!(text.contains(&hex::encode(keys.keys[0].1)));
    }

    #[test]
    fn passwords() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password(
            "correct horse",
            "$argon2id$v=19$m=1,t=1,p=1$bad$bad"
        ));
        assert!(!verify_password("correct horse", ""));
        assert_ne!(hash_password("correct horse"), hash);
    }

    #[test]
    fn api_keys_and_session_keys() {
        let (api_key, secret_key) = generate_api_key_pair();
        for key in [&api_key, &secret_key] {
            assert_eq!(key.len(), 86);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        assert_ne!(api_key, secret_key);
        assert_ne!(generate_api_key_pair().0, api_key);
        let spec = "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg";
        assert_eq!(URL_SAFE_NO_PAD.decode(spec).unwrap().len(), 64);
        let session = generate_session_key();
        assert_eq!(URL_SAFE_NO_PAD.decode(&session).unwrap().len(), 32);
        assert_ne!(generate_session_key(), session);
    }
}
