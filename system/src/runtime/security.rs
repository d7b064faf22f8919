//! Keys for the role processes: `livecam keygen`, and turning the `key`, `devices`,
//! `cluster_key` and `insecure` fields of the tier-2 and mobile configs into the sans-IO
//! [`Gate`] and [`DeviceSecurity`] (see [`crate::secure`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::config::{invalid, ConfigError};
use crate::secure::{
    ControlPlane, DeviceRegistry, DeviceSecurity, Entropy, Gate, KeyError, PublicKey, ServerId,
    ServerRegistry, ServerRole, SigningKey, StaticKey,
};
use crate::time::Instant;

/// Microseconds since the Unix epoch now: where a device's handshake timestamps start, so they
/// keep growing across restarts.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A server's control plane from its `identity`, `servers` and `insecure` fields (`None` for
/// `insecure = true`): signs what it sends other servers as `me`, checks what they send.
/// `now` is the server clock's time at this moment (counters follow the wall clock).
pub fn control_plane(
    identity: Option<&Path>,
    servers: Option<&Path>,
    insecure: bool,
    me: ServerId,
    now: Instant,
    origin: &str,
) -> Result<Option<ControlPlane>, ConfigError> {
    match (identity, servers, insecure) {
        (None, None, true) => Ok(None),
        (_, _, true) => Err(invalid(
            origin,
            "insecure",
            "`insecure = true` runs without keys: remove `identity` and `servers`, or remove it",
        )),
        (None, _, false) => Err(invalid(
            origin,
            "identity",
            format!(
                "server-to-server messages are signed: give this server's signing key file \
                 (`livecam keygen --cluster` writes {me}.sign), or set `insecure = true` for \
                 a lab run"
            ),
        )),
        (Some(_), None, false) => Err(invalid(
            origin,
            "servers",
            "give the registry of the cluster's servers (servers.toml, written by \
             `livecam keygen --cluster`)",
        )),
        (Some(identity), Some(servers), false) => {
            let key = SigningKey::read(identity)
                .map_err(|e| invalid(origin, "identity", e.to_string()))?;
            let registry = ServerRegistry::read(servers)
                .map_err(|e| invalid(origin, "servers", e.to_string()))?;
            if registry.get(me) != Some(&key.public()) {
                return Err(invalid(
                    origin,
                    "identity",
                    format!("this key is not the one the registry lists for {me}"),
                ));
            }
            let wall_at_zero = unix_micros().saturating_sub(now.as_micros());
            Ok(Some(ControlPlane::new(me, key, registry, wall_at_zero)))
        }
    }
}

/// A server's config file: who it is in the cluster, and its `identity`, `servers` and
/// `insecure` fields. Its control plane, and setting those fields from a cluster's keys, are
/// written once, here; [`server_identity!`](crate::server_identity) implements it.
pub trait ServerIdentity {
    /// Who this server is.
    fn server_id(&self) -> ServerId;
    /// Its `identity`, `servers` and `insecure` fields.
    fn identity(&self) -> (Option<&Path>, Option<&Path>, bool);
    /// The same, to set.
    fn identity_mut(&mut self) -> (&mut Option<PathBuf>, &mut Option<PathBuf>, &mut bool);

    /// Its control plane (`None` for `insecure = true`); `now` is the server clock's time and
    /// `origin` names the config in errors.
    fn control_plane(
        &self,
        now: Instant,
        origin: &str,
    ) -> Result<Option<ControlPlane>, ConfigError> {
        let (identity, servers, insecure) = self.identity();
        control_plane(identity, servers, insecure, self.server_id(), now, origin)
    }

    /// Sets the identity fields for the cluster's `keys`.
    fn secure_identity(&mut self, keys: &ClusterKeys) {
        let key = keys.server_key(self.server_id());
        let (identity, servers, insecure) = self.identity_mut();
        *identity = Some(key);
        *servers = Some(keys.servers.clone());
        *insecure = false;
    }
}

/// Implements [`ServerIdentity`] for a config type with `id`, `identity`, `servers` and
/// `insecure` fields, as the server of `role`.
#[macro_export]
macro_rules! server_identity {
    ($file:ty, $role:expr) => {
        impl $crate::runtime::security::ServerIdentity for $file {
            fn server_id(&self) -> $crate::secure::ServerId {
                $crate::secure::ServerId::new($role, self.id)
            }
            fn identity(&self) -> (Option<&std::path::Path>, Option<&std::path::Path>, bool) {
                (
                    self.identity.as_deref(),
                    self.servers.as_deref(),
                    self.insecure,
                )
            }
            fn identity_mut(
                &mut self,
            ) -> (
                &mut Option<std::path::PathBuf>,
                &mut Option<std::path::PathBuf>,
                &mut bool,
            ) {
                (&mut self.identity, &mut self.servers, &mut self.insecure)
            }
        }
    };
}

/// The tier-2's gate from its config's `key`, `devices` and `insecure` fields (`None` for
/// `insecure = true`); `origin` names the config in errors.
pub fn tier2_gate(
    key: Option<&Path>,
    devices: Option<&Path>,
    insecure: bool,
    origin: &str,
) -> Result<Option<Gate>, ConfigError> {
    match (key, devices, insecure) {
        (None, None, true) => Ok(None),
        (_, _, true) => Err(invalid(
            origin,
            "insecure",
            "`insecure = true` runs without keys: remove `key`, `devices`, `identity` and \
             `servers`, or remove it",
        )),
        (None, _, false) => Err(invalid(
            origin,
            "key",
            "sessions are authenticated: give the cluster's private key file (made by \
             `livecam keygen`), or set `insecure = true` for a lab run",
        )),
        (Some(_), None, false) => Err(invalid(
            origin,
            "devices",
            "give the file of device public keys this tier-2 admits",
        )),
        (Some(key), Some(devices), false) => {
            let key = StaticKey::read(key).map_err(|e| invalid(origin, "key", e.to_string()))?;
            let devices = DeviceRegistry::read(devices)
                .map_err(|e| invalid(origin, "devices", e.to_string()))?;
            Ok(Some(Gate::new(key, devices, Entropy::Os)))
        }
    }
}

/// The mobile client's keys from its config's `key`, `cluster_key` and `insecure` fields
/// (`None` for `insecure = true`).
pub fn device_security(
    key: Option<&Path>,
    cluster_key: Option<&str>,
    insecure: bool,
    origin: &str,
) -> Result<Option<DeviceSecurity>, ConfigError> {
    match (key, cluster_key, insecure) {
        (None, None, true) => Ok(None),
        (_, _, true) => Err(invalid(
            origin,
            "insecure",
            "`insecure = true` runs without keys: remove `key` and `cluster_key`, or remove it",
        )),
        (None, _, false) => Err(invalid(
            origin,
            "key",
            "sessions are authenticated: give this device's private key file (made by \
             `livecam keygen`), or set `insecure = true` for a lab run",
        )),
        (Some(_), None, false) => Err(invalid(
            origin,
            "cluster_key",
            "give the cluster's public key (64 hex digits, printed by `livecam keygen`)",
        )),
        (Some(key), Some(cluster), false) => {
            let key = StaticKey::read(key).map_err(|e| invalid(origin, "key", e.to_string()))?;
            let cluster = cluster_public(cluster)
                .map_err(|e| invalid(origin, "cluster_key", e.to_string()))?;
            Ok(Some(DeviceSecurity::new(
                key,
                cluster,
                unix_micros(),
                Entropy::Os,
            )))
        }
    }
}

/// The cluster's public key from a config: 64 hex digits, or the path of a file holding them
/// (`cluster.key.pub` as `livecam keygen` writes it).
fn cluster_public(value: &str) -> Result<PublicKey, KeyError> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return PublicKey::parse(value, "cluster_key");
    }
    PublicKey::read(Path::new(value))
}

/// Writes a new private key to `path` (readable by its owner only) and its public key to
/// `path.pub`; returns the public key.
pub fn keygen(path: &Path) -> std::io::Result<PublicKey> {
    let key = StaticKey::generate(&mut Entropy::Os);
    write_private(path, &key)?;
    std::fs::write(public_path(path), format!("{}\n", key.public()))?;
    Ok(key.public())
}

/// Writes a new server signing key to `path` (mode 0600) and its public key to `path.pub`.
pub fn keygen_signing(path: &Path) -> std::io::Result<PublicKey> {
    let key = SigningKey::generate(&mut Entropy::Os);
    write_secret(path, &key.private_hex())?;
    std::fs::write(public_path(path), format!("{}\n", key.public()))?;
    Ok(key.public())
}

/// Where [`keygen`] puts the public half of `path`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Writes `key`'s private half to `path`, created with mode 0600 (never overwriting a key).
pub fn write_private(path: &Path, key: &StaticKey) -> std::io::Result<()> {
    write_secret(path, &key.private_hex())
}

/// Writes a secret's text form to `path`, created with mode 0600 (never overwriting one).
fn write_secret(path: &Path, hex: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{hex}")
}

/// Keys for a whole cluster made at once (`livecam keygen --cluster`, `livecam up`, tests):
/// the cluster key and one key per device, written under `dir` as `cluster.key`,
/// `device-ID.key` and `devices.toml`; and one signing key per server, as `ROLE-ID.sign`,
/// with the registry of them all in `servers.toml`.
#[derive(Debug, Clone)]
pub struct ClusterKeys {
    pub dir: PathBuf,
    pub cluster_key: PathBuf,
    pub cluster_public: PublicKey,
    pub devices: PathBuf,
    pub servers: PathBuf,
}

/// The servers of a cluster with `tier1s` tier-1s, `tier2s` tier-2s and `backends` backends,
/// numbered by the given ids.
pub fn servers(tier1s: &[u32], tier2s: &[u32], backends: &[u32]) -> Vec<ServerId> {
    let of = |role, ids: &[u32]| {
        ids.iter()
            .map(move |&id| ServerId::new(role, id))
            .collect::<Vec<_>>()
    };
    [
        of(ServerRole::Tier1, tier1s),
        of(ServerRole::Tier2, tier2s),
        of(ServerRole::Backend, backends),
    ]
    .concat()
}

impl ClusterKeys {
    pub fn create(dir: &Path, device_ids: &[u32], servers: &[ServerId]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let cluster_key = dir.join("cluster.key");
        let cluster_public = keygen(&cluster_key)?;
        let mut reg = DeviceRegistry::new();
        for &id in device_ids {
            reg.insert(id, keygen(&Self::device_key_in(dir, id))?);
        }
        let devices = dir.join("devices.toml");
        std::fs::write(&devices, reg.to_toml())?;
        let mut known = ServerRegistry::new();
        for &who in servers {
            known.insert(who, keygen_signing(&Self::server_key_in(dir, who))?);
        }
        let servers = dir.join("servers.toml");
        std::fs::write(&servers, known.to_toml())?;
        Ok(ClusterKeys {
            dir: dir.to_path_buf(),
            cluster_key,
            cluster_public,
            devices,
            servers,
        })
    }

    /// Keys for one run of a bench or emulation: whatever an earlier run left in `dir` is
    /// removed first (key files are never overwritten), then [`create`](Self::create).
    pub fn create_for_run(
        dir: &Path,
        device_ids: &[u32],
        servers: &[ServerId],
    ) -> std::io::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        Self::create(dir, device_ids, servers)
    }

    fn server_key_in(dir: &Path, who: ServerId) -> PathBuf {
        dir.join(format!("{who}.sign"))
    }

    /// Server `who`'s signing key file.
    pub fn server_key(&self, who: ServerId) -> PathBuf {
        Self::server_key_in(&self.dir, who)
    }

    /// A tier-2 config's `key`, `devices`, `identity` and `servers` lines for these keys.
    pub fn tier2_toml(&self, id: u32) -> String {
        format!(
            "key = {:?}\ndevices = {:?}\n{}",
            self.cluster_key.display().to_string(),
            self.devices.display().to_string(),
            self.identity_toml(ServerId::new(ServerRole::Tier2, id))
        )
    }

    /// A server config's `identity` and `servers` lines for server `who`.
    pub fn identity_toml(&self, who: ServerId) -> String {
        format!(
            "identity = {:?}\nservers = {:?}\n",
            self.server_key(who).display().to_string(),
            self.servers.display().to_string()
        )
    }

    /// The keys [`create`](Self::create) wrote to `dir`.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let cluster_key = dir.join("cluster.key");
        let public = public_path(&cluster_key);
        Ok(ClusterKeys {
            dir: dir.to_path_buf(),
            cluster_public: PublicKey::read(&public)?,
            cluster_key,
            devices: dir.join("devices.toml"),
            servers: dir.join("servers.toml"),
        })
    }

    /// Device `id`'s side of a session, from its key file.
    pub fn device_security(&self, id: u32) -> Result<DeviceSecurity, KeyError> {
        let key = StaticKey::read(&self.device_key(id))?;
        Ok(DeviceSecurity::new(
            key,
            self.cluster_public,
            unix_micros(),
            Entropy::Os,
        ))
    }

    fn device_key_in(dir: &Path, id: u32) -> PathBuf {
        dir.join(format!("device-{id}.key"))
    }

    /// Device `id`'s private key file.
    pub fn device_key(&self, id: u32) -> PathBuf {
        Self::device_key_in(&self.dir, id)
    }
}
