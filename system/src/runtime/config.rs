//! Reading the role processes' config files: the text, its TOML, and [`ConfigError`], which
//! names the file and the field at fault. Below the files' types ([`super::service`],
//! [`super::backend`]) and the key loading ([`super::security`]), which all report through it.

use std::io;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

/// A config that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: &'static str,
        message: String,
    },
}

/// The text of the config file at `path`.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Config text as TOML; `path` only names the file in the error.
pub(crate) fn from_toml<T: for<'de> Deserialize<'de>>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A field of the config `origin` (its path, or a name such as "tier-2 3") that cannot work.
pub(crate) fn invalid(
    origin: impl std::fmt::Display,
    field: &'static str,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        path: origin.to_string(),
        field,
        message: message.into(),
    }
}
