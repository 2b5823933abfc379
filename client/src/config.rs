//! Where the endpoint and keys come from: flags, environment, a data directory's admin
//! credentials, a TOML config file, in that order of precedence, so an operator can keep keys in
//! a file and still point one call elsewhere.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;

/// The endpoint when nothing names one: `ledgerstack serve`'s default listen address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080/client/api";

/// The environment variable naming the config file.
pub const ENV_CONFIG: &str = "LEDGERSTACK_CONFIG";
/// The environment variable naming the endpoint.
pub const ENV_ENDPOINT: &str = "LEDGERSTACK_ENDPOINT";
/// The environment variable holding the API key.
pub const ENV_API_KEY: &str = "LEDGERSTACK_API_KEY";
/// The environment variable holding the secret key.
pub const ENV_SECRET_KEY: &str = "LEDGERSTACK_SECRET_KEY";

/// The file a data directory's first start writes with the root admin's keys.
pub const CREDENTIALS_FILE: &str = "admin-credentials.json";

/// What the command line gave; `None` leaves the setting to the next source.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`: a config file that must exist.
    pub config: Option<PathBuf>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// `--secret-key`.
    pub secret_key: Option<String>,
    /// `--from-data-dir`: read the keys from the data directory's `admin-credentials.json`.
    pub data_dir: Option<PathBuf>,
}

/// The settled endpoint and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http://HOST:PORT/client/api`.
    pub endpoint: String,
    /// The API key sent as `apiKey`.
    pub api_key: String,
    /// The secret key the requests are signed with (never sent).
    pub secret_key: String,
}

/// The config file: every key optional, unknown keys refused so that a typo does not silently
/// fall back to another source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    endpoint: Option<String>,
    api_key: Option<String>,
    secret_key: Option<String>,
}

/// The part of `admin-credentials.json` the client needs.
#[derive(Deserialize)]
struct AdminCredentials {
    api_key: String,
    secret_key: String,
}

/// The config file read when neither `--config` nor `LEDGERSTACK_CONFIG` names one:
/// `$XDG_CONFIG_HOME/ledgerstack/client.toml`, else `$HOME/.config/ledgerstack/client.toml`.
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".config"))
        })?;
    Some(base.join("ledgerstack").join("client.toml"))
}

/// Settles the endpoint and keys. Per setting, the first source that has it wins: the flag,
/// then `--from-data-dir` (keys only), then the environment, then the config file (the one
/// named by `--config` or `LEDGERSTACK_CONFIG`, which must exist, else the default path if it
/// exists); the endpoint falls back to [`DEFAULT_ENDPOINT`]. `env` looks up environment
/// variables (a parameter so that tests need not touch the process environment).
pub fn resolve(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let explicit = overrides
        .config
        .clone()
        .or_else(|| env(ENV_CONFIG).filter(|v| !v.is_empty()).map(PathBuf::from));
    let file = match explicit {
        Some(path) => read_config(&path)?,
        None => match default_config_path(env) {
            Some(path) if path.exists() => read_config(&path)?,
            _ => ConfigFile::default(),
        },
    };
    let credentials = match &overrides.data_dir {
        Some(dir) => Some(read_credentials(&dir.join(CREDENTIALS_FILE))?),
        None => None,
    };
    let from_env = |name: &str| env(name).filter(|v| !v.is_empty());

    let endpoint = overrides
        .endpoint
        .clone()
        .or_else(|| from_env(ENV_ENDPOINT))
        .or(file.endpoint)
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let api_key = overrides
        .api_key
        .clone()
        .or_else(|| credentials.as_ref().map(|c| c.api_key.clone()))
        .or_else(|| from_env(ENV_API_KEY))
        .or(file.api_key)
        .ok_or(ConfigError::Missing {
            what: "API key",
            flag: "--api-key",
            env: ENV_API_KEY,
            key: "api_key",
        })?;
    let secret_key = overrides
        .secret_key
        .clone()
        .or_else(|| credentials.map(|c| c.secret_key))
        .or_else(|| from_env(ENV_SECRET_KEY))
        .or(file.secret_key)
        .ok_or(ConfigError::Missing {
            what: "secret key",
            flag: "--secret-key",
            env: ENV_SECRET_KEY,
            key: "secret_key",
        })?;
    Ok(Settings {
        endpoint,
        api_key,
        secret_key,
    })
}

fn read_config(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_credentials(path: &Path) -> Result<AdminCredentials, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: format!("not a credentials file: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            "endpoint = \"http://file:1/client/api\"\napi_key = \"file-key\"\nsecret_key = \"file-secret\"\n",
        )
        .unwrap();
        let path_text = path.to_str().unwrap().to_owned();
        let env = env_of(&[(ENV_CONFIG, &path_text), (ENV_API_KEY, "env-key")]);
        let overrides = Overrides {
            secret_key: Some("flag-secret".into()),
            ..Overrides::default()
        };
        let settings = resolve(&overrides, &env).unwrap();
        assert_eq!(
            settings,
            Settings {
                endpoint: "http://file:1/client/api".into(),
                api_key: "env-key".into(),
                secret_key: "flag-secret".into(),
            }
        );
    }

    #[test]
    fn the_default_file_is_read_when_it_exists_and_the_endpoint_defaults() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".config/ledgerstack");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("client.toml"),
            "api_key = \"k\"\nsecret_key = \"s\"\n",
        )
        .unwrap();
        let home_text = home.path().to_str().unwrap().to_owned();
        let settings = resolve(&Overrides::default(), &env_of(&[("HOME", &home_text)])).unwrap();
        assert_eq!(settings.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(settings.api_key, "k");
    }

    #[test]
    fn data_dir_credentials_supply_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CREDENTIALS_FILE),
            r#"{"username":"admin","password":"p","api_key":"ak","secret_key":"sk"}"#,
        )
        .unwrap();
        let overrides = Overrides {
            data_dir: Some(dir.path().to_owned()),
            ..Overrides::default()
        };
        let settings = resolve(&overrides, &env_of(&[(ENV_API_KEY, "env-key")])).unwrap();
        assert_eq!(
            (settings.api_key.as_str(), settings.secret_key.as_str()),
            ("ak", "sk")
        );
    }

    #[test]
    fn missing_keys_unknown_config_keys_and_missing_named_files_are_clear_errors() {
        let err = resolve(&Overrides::default(), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("--api-key"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "apikey = \"typo\"\n").unwrap();
        let overrides = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let err = resolve(&overrides, &env_of(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");

        let overrides = Overrides {
            config: Some(dir.path().join("absent.toml")),
            ..Overrides::default()
        };
        let err = resolve(&overrides, &env_of(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
