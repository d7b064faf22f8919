//! Role processes for tests: the real `livecam` binary started with a config, stopped with
//! SIGTERM, its JSON summary parsed; the frames a mobile client kept (`keep_frames`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use livecam_system::device::CapturedFrame;

pub fn livecam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livecam"))
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create config");
    f.write_all(text.as_bytes()).expect("write config");
    path
}

pub fn spawn(role: &str, config: &Path) -> Child {
    livecam()
        .args([role, "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start livecam")
}

/// Stops a role with SIGTERM and returns its JSON summary.
pub fn stop(child: Child) -> serde_json::Value {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait for livecam");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A free UDP port on loopback.
pub fn port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A cluster's keys made with `livecam keygen --cluster`, and the config lines that use them.
pub struct Keys {
    dir: PathBuf,
}

impl Keys {
    /// Keys for devices `ids` (as `--devices` takes them, e.g. `1001-1004`) in `dir/keys`.
    pub fn make(dir: &Path, ids: &str) -> Keys {
        let dir = dir.join("keys");
        let _ = std::fs::remove_dir_all(&dir);
        let out = livecam()
            .args(["keygen", "--cluster"])
            .arg(&dir)
            .args(["--devices", ids])
            .args(["--tier1", "1-2", "--tier2", "11-14", "--backends", "1"])
            .output()
            .expect("run livecam keygen");
        assert!(out.status.success(), "keygen: {out:?}");
        Keys { dir }
    }

    fn path(&self, name: &str) -> String {
        format!("{:?}", self.dir.join(name).display().to_string())
    }

    /// Tier-2 `id`'s key lines (ids 11-14 have keys).
    pub fn tier2(&self, id: u32) -> String {
        format!(
            "key = {}\ndevices = {}\n{}",
            self.path("cluster.key"),
            self.path("devices.toml"),
            self.identity("tier2", id)
        )
    }

    /// A server config's signing key and registry lines (`role`: tier1, tier2 or backend).
    pub fn identity(&self, role: &str, id: u32) -> String {
        format!(
            "identity = {}\nservers = {}\n",
            self.path(&format!("{role}-{id}.sign")),
            self.path("servers.toml")
        )
    }

    /// Mobile client `id`'s key lines.
    pub fn mobile(&self, id: u32) -> String {
        format!(
            "key = {}\n{}",
            self.path(&format!("device-{id}.key")),
            self.cluster_key()
        )
    }

    /// The `cluster_key` line of a mobile config.
    pub fn cluster_key(&self) -> String {
        format!("cluster_key = {}\n", self.path("cluster.key.pub"))
    }
}

/// The frame ids (capture sequence numbers) and files in a client's `keep_frames` directory
/// (`SEQ.lf`).
fn kept_files(dir: &Path) -> impl Iterator<Item = (u64, PathBuf)> {
    std::fs::read_dir(dir)
        .expect("kept frames")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let id = path.file_stem()?.to_str()?.parse().ok()?;
            Some((id, path))
        })
}

/// Ids of the frames a client kept a copy of: every frame it captured. Safe while the client
/// runs (it reads names, not the files being written).
pub fn kept_ids(dir: &Path) -> BTreeSet<u64> {
    kept_files(dir).map(|(id, _)| id).collect()
}

/// What a client kept of each frame it sent: frame id -> the captured frame. Read it once the
/// client has stopped.
pub fn kept(dir: &Path) -> BTreeMap<u64, CapturedFrame> {
    kept_files(dir)
        .map(|(id, path)| {
            let bytes = std::fs::read(&path).expect("read kept frame");
            let frame = CapturedFrame::decode(&bytes).expect("a kept frame decodes");
            (id, frame)
        })
        .collect()
}
