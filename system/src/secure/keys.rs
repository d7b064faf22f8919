//! Static keys: generation, their text form (64 hex digits) and files, and the registry of
//! device public keys a tier-2 admits.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use thiserror::Error;

use super::Entropy;

/// Why a key or registry could not be read.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{what}: expected 64 hex digits (a 32-byte key)")]
    Format { what: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Registry { path: String, message: String },
}

/// A public X25519 key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses 64 hex digits; `what` names the field in the error.
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        parse_hex32(text, what).map(PublicKey)
    }

    /// Reads a public key file (`NAME.pub`, as `livecam keygen` writes it).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A static X25519 key pair. Its private half never appears in `Debug` output.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; 32],
    public: PublicKey,
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKey {{ public: {} }}", self.public)
    }
}

impl StaticKey {
    /// A new key pair from `entropy`.
    pub fn generate(entropy: &mut Entropy) -> Self {
        Self::from_private(entropy.bytes32())
    }

    /// The key pair of a private key (X25519 clamps it).
    pub fn from_private(private: [u8; 32]) -> Self {
        let public = match DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519) {
            Some(mut dh) => {
                dh.set(&private);
                let mut p = [0u8; 32];
                p.copy_from_slice(&dh.pubkey()[..32]);
                p
            }
            None => [0u8; 32], // unreachable: the default resolver always has Curve25519
        };
        StaticKey {
            private,
            public: PublicKey(public),
        }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// Parses a private key's text form (64 hex digits, surrounding white space ignored).
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        parse_hex32(text, what).map(Self::from_private)
    }

    /// Reads a private key file (as `livecam keygen` writes it).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The private key's text form, as written to key files.
    pub fn private_hex(&self) -> String {
        hex::encode(self.private)
    }
}

/// A key or registry file's text; the error names the file.
pub(crate) fn read_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

pub(crate) fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| KeyError::Format {
        what: what.to_string(),
    })?;
    Ok(out)
}

/// The devices a tier-2 admits: client id -> public key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRegistry {
    keys: BTreeMap<u32, PublicKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    device: Vec<DeviceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    id: u32,
    key: String,
}

impl DeviceRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `client` with `key` (replacing an earlier key).
    pub fn insert(&mut self, client: u32, key: PublicKey) {
        self.keys.insert(client, key);
    }

    pub fn get(&self, client: u32) -> Option<&PublicKey> {
        self.keys.get(&client)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a registry file:
    ///
    /// ```toml
    /// [[device]]
    /// id = 7
    /// key = "<64 hex digits: the device's public key>"
    /// ```
    ///
    /// `origin` names the file in errors; a bad entry is named by its position and id.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| KeyError::Registry {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut reg = DeviceRegistry::new();
        for (i, d) in file.device.iter().enumerate() {
            let what = format!("{origin}: device[{i}] (id {}) key", d.id);
            let key = PublicKey::parse(&d.key, &what)?;
            if reg.keys.insert(d.id, key).is_some() {
                return Err(KeyError::Registry {
                    path: origin.to_string(),
                    message: format!("device[{i}]: id {} listed twice", d.id),
                });
            }
        }
        Ok(reg)
    }

    /// Reads a registry file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The registry's text form (what [`parse`](Self::parse) reads).
    pub fn to_toml(&self) -> String {
        self.keys
            .iter()
            .map(|(id, key)| format!("[[device]]\nid = {id}\nkey = \"{key}\"\n\n"))
            .collect()
    }
}
