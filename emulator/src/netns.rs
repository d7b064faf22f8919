//! Network namespaces and veth pairs, set up and torn down with iproute2's `ip`; the veths'
//! offloads are turned off through the kernel's ethtool ioctl (`SIOCETHTOOL`, no `ethtool`
//! binary needed), so every frame the bridge sees is a real, checksummed, MTU-sized packet.
//!
//! Every name a run creates starts with `lce<PID>`, the emulator's process id: the namespace of
//! host `i` is `lce<PID>-<i>`, its root-side veth `lce<PID>r<i>` and the namespace side
//! `lce<PID>n<i>` (at most 15 characters: hosts up to 99 999 with a 7-digit PID). A [`Net`]
//! deletes what it made when dropped (normal exit, error, panic, after Ctrl-C); what a killed
//! run leaves behind is removed by [`sweep`], which every run calls first and which deletes
//! only names whose PID is no longer alive, so parallel runs never touch each other.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use thiserror::Error;

use crate::frame::{host_ip, host_mac, mac_text};

/// Prefix of every name a run creates.
pub const PREFIX: &str = "lce";

/// A namespace command that failed.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("running `{command}`: {source} (is iproute2 installed?)")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("turning off offload {feature} on {interface}: {source}")]
    Offload {
        interface: String,
        feature: &'static str,
        source: io::Error,
    },
    #[error(
        "network namespaces need root or CAP_NET_ADMIN; run as root, or use --relay (loopback \
         UDP, no privileges)"
    )]
    NotPrivileged,
    #[error("turning rp_filter off in {ns}: {source}")]
    RpFilter { ns: String, source: io::Error },
}

/// Whether this process may create namespaces and interfaces: its effective capabilities
/// include CAP_NET_ADMIN (root has it). CAP_SYS_ADMIN is also needed for `ip netns add`; root
/// has both, and so does any realistic setup that has the first.
pub fn privileged() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0 && caps & (1 << 21) != 0)
}

/// Why the namespace emulator cannot run here, or `None` when it can: it needs CAP_NET_ADMIN
/// ([`privileged`]) and iproute2's `ip` on the `PATH`. Tests call this to skip with the reason
/// (or, under `LIVECAM_REQUIRE_ROOT=1`, to fail with it).
pub fn unavailable() -> Option<String> {
    if !privileged() {
        return Some(NetError::NotPrivileged.to_string());
    }
    match Command::new("ip").arg("-V").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip -V` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!(
            "iproute2's `ip` cannot run: {e} (apt-get install iproute2)"
        )),
    }
}

/// Turns off checksum, segmentation and receive offloads on interface `name` in this process's
/// namespace, as `ethtool -K name tx off rx off tso off gso off gro off` does, and by the same
/// means: the kernel's ethtool ioctl, reading the device's feature names (`ETH_SS_FEATURES`)
/// and clearing every `tx-checksum-*`, `rx-checksum`, `tx-tcp*-segmentation`,
/// `tx-generic-segmentation` and `rx-gro` bit in one `ETHTOOL_SFEATURES` (names rather than
/// bit numbers, which change between kernels; the legacy one-feature commands miss newer bits
/// such as `tx-tcp-accecn-segmentation`). The `ethtool` binary would be one more package for a
/// user to install for three ioctls.
pub fn offloads_off(name: &str) -> Result<(), NetError> {
    Ethtool::open(name)
        .and_then(|e| e.clear_offloads())
        .map_err(|(step, source)| NetError::Offload {
            interface: name.to_string(),
            feature: step,
            source,
        })
}

/// The offloads [`offloads_off`] clears that are active on interface `name` now (empty once
/// they are off).
pub fn offloads_on(name: &str) -> Result<Vec<String>, NetError> {
    Ethtool::open(name)
        .and_then(|e| e.active_offloads())
        .map_err(|(step, source)| NetError::Offload {
            interface: name.to_string(),
            feature: step,
            source,
        })
}

/// Whether ethtool feature `name` is one [`offloads_off`] clears.
fn is_offload(name: &str) -> bool {
    name.starts_with("tx-checksum")
        || name == "rx-checksum"
        || (name.starts_with("tx-tcp") && name.ends_with("segmentation"))
        || name == "tx-generic-segmentation"
        || name == "rx-gro"
}

/// One interface's ethtool ioctl (`SIOCETHTOOL` on a datagram socket).
struct Ethtool {
    fd: std::os::fd::OwnedFd,
    name: [libc::c_char; libc::IFNAMSIZ],
}

/// A failed step of [`Ethtool`]: what it was doing, and the error.
type EthtoolError = (&'static str, io::Error);

impl Ethtool {
    // <linux/ethtool.h>
    const GSTRINGS: u32 = 0x1b;
    const GSSET_INFO: u32 = 0x37;
    const GFEATURES: u32 = 0x3a;
    const SFEATURES: u32 = 0x3b;
    const SS_FEATURES: u32 = 4;
    const GSTRING_LEN: usize = 32;

    fn open(name: &str) -> Result<Ethtool, EthtoolError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "bad interface name length");
            return Err(("name", e));
        }
        let mut ifname = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in ifname.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(("socket", io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns; OwnedFd closes it.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Ethtool { fd, name: ifname })
    }

    /// Runs one ethtool command whose request (starting with its `u32` command) is `data`.
    fn call(&self, step: &'static str, data: &mut [u8]) -> Result<(), EthtoolError> {
        // SAFETY: ifreq is plain old data; all zeroes is a valid (empty) request.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.name;
        req.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        // SAFETY: the name is NUL-terminated (shorter than IFNAMSIZ, the rest zeroed), and
        // every caller sizes `data` for what the kernel reads and writes for its command
        // (header plus the counts it announced); `data` outlives the call.
        let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut req) };
        if rc < 0 {
            return Err((step, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn clear_offloads(&self) -> Result<(), EthtoolError> {
        let names = self.feature_names()?;
        let words = names.len().div_ceil(32);
        // struct ethtool_sfeatures { cmd, size, features[size] { valid, requested } }
        let mut blocks = vec![(0u32, 0u32); words];
        for (bit, _) in names.iter().enumerate().filter(|(_, n)| is_offload(n)) {
            blocks[bit / 32].0 |= 1 << (bit % 32);
        }
        let mut req = Vec::with_capacity(8 + 8 * words);
        req.extend(Self::SFEATURES.to_ne_bytes());
        req.extend((words as u32).to_ne_bytes());
        for (valid, requested) in blocks {
            req.extend(valid.to_ne_bytes());
            req.extend(requested.to_ne_bytes());
        }
        // A positive return (features the device could not change) is not an error: those
        // are fixed, and a fixed offload on a veth is a fixed "off".
        self.call("set features", &mut req)
    }

    fn active_offloads(&self) -> Result<Vec<String>, EthtoolError> {
        let names = self.feature_names()?;
        let words = names.len().div_ceil(32);
        // struct ethtool_gfeatures { cmd, size, features[size] { available, requested,
        // active, never_changed } }
        let mut req = vec![0u8; 8 + 16 * words];
        req[..4].copy_from_slice(&Self::GFEATURES.to_ne_bytes());
        req[4..8].copy_from_slice(&(words as u32).to_ne_bytes());
        self.call("read features", &mut req)?;
        let active = |bit: usize| {
            let at = 8 + 16 * (bit / 32) + 8;
            let word = u32::from_ne_bytes(req[at..at + 4].try_into().expect("4 bytes"));
            word & (1 << (bit % 32)) != 0
        };
        Ok(names
            .into_iter()
            .enumerate()
            .filter(|(bit, n)| is_offload(n) && active(*bit))
            .map(|(_, n)| n)
            .collect())
    }

    /// The device's feature names, by bit.
    fn feature_names(&self) -> Result<Vec<String>, EthtoolError> {
        // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[] }
        let mut info = Vec::with_capacity(20);
        info.extend(Self::GSSET_INFO.to_ne_bytes());
        info.extend(0u32.to_ne_bytes());
        info.extend((1u64 << Self::SS_FEATURES).to_ne_bytes());
        info.extend(0u32.to_ne_bytes());
        self.call("count features", &mut info)?;
        let mask = u64::from_ne_bytes(info[8..16].try_into().expect("8 bytes"));
        let count = if mask & (1 << Self::SS_FEATURES) != 0 {
            u32::from_ne_bytes(info[16..20].try_into().expect("4 bytes")) as usize
        } else {
            0
        };
        if count == 0 || count > 4096 {
            let e = io::Error::other(format!("{count} feature names"));
            return Err(("count features", e));
        }
        // struct ethtool_gstrings { cmd, string_set, len, u8 data[len * ETH_GSTRING_LEN] }
        let mut strings = vec![0u8; 12 + count * Self::GSTRING_LEN];
        strings[..4].copy_from_slice(&Self::GSTRINGS.to_ne_bytes());
        strings[4..8].copy_from_slice(&Self::SS_FEATURES.to_ne_bytes());
        strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
        self.call("read feature names", &mut strings)?;
        Ok(strings[12..]
            .chunks(Self::GSTRING_LEN)
            .map(|s| {
                let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                String::from_utf8_lossy(&s[..end]).into_owned()
            })
            .collect())
    }
}

/// Runs a command, failing unless it exits 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// The names of run `tag` (`lce<PID>`).
#[derive(Clone, Debug)]
pub struct Names {
    tag: String,
}

impl Names {
    /// The names of this process's run.
    pub fn own() -> Names {
        Names::for_pid(std::process::id())
    }

    fn for_pid(pid: u32) -> Names {
        Names {
            tag: format!("{PREFIX}{pid}"),
        }
    }

    /// Namespace of host `i`.
    pub fn netns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Root-side veth of host `i` (the bridge's port).
    pub fn root_veth(&self, i: usize) -> String {
        format!("{}r{i}", self.tag)
    }

    /// Namespace-side veth of host `i`.
    pub fn host_veth(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }
}

/// The namespaces and veths of one run; dropping it deletes them.
#[derive(Debug)]
pub struct Net {
    names: Names,
    /// The namespace (host) each node made so far lives in: a host's own, or for a bonded
    /// host's further interface, its host's.
    owners: Vec<usize>,
}

impl Net {
    /// Creates `hosts` namespaces, each with loopback up and one veth to the root namespace:
    /// host `i` has address [`host_ip`]`(i)/16` and MAC [`host_mac`]`(i)`, a permanent
    /// neighbour entry for every other host (so no ARP crosses the bridge), and interface MTU
    /// `mtu`. Offloads are off on both ends. On error, whatever was made is deleted.
    pub fn create(hosts: usize, mtu: usize) -> Result<Net, NetError> {
        Net::create_nodes(&(0..hosts).collect::<Vec<_>>(), mtu)
    }

    /// As [`Net::create`], for nodes that may share a namespace: node `k` lives in the
    /// namespace of node `owners[k]` (itself for a host, which must come before the nodes it
    /// owns). A bonded host's further interfaces are nodes of its namespace, each with its own
    /// veth, address and MAC, so each has its own links; its role process binds a socket to
    /// each veth (`SO_BINDTODEVICE`). In such a namespace reverse-path filtering is off: its
    /// veths share one subnet, and a strict filter would drop what arrives on all but one.
    pub fn create_nodes(owners: &[usize], mtu: usize) -> Result<Net, NetError> {
        if !privileged() {
            return Err(NetError::NotPrivileged);
        }
        let net = Net {
            names: Names::own(),
            owners: Vec::new(),
        };
        net.build(owners, mtu)
    }

    fn build(mut self, owners: &[usize], mtu: usize) -> Result<Net, NetError> {
        let mtu = mtu.to_string();
        let hosts = owners.len();
        for i in 0..hosts {
            let owner = owners[i].min(i);
            let ns = self.names.netns(owner);
            let root = self.names.root_veth(i);
            let host = self.names.host_veth(i);
            if owner == i {
                run("ip", &["netns", "add", &ns])?;
            }
            self.owners.push(owner);
            // Both ends are made here, their offloads turned off by ioctl (which acts in this
            // process's namespace), then the host end moves into its namespace, keeping them off.
            run(
                "ip",
                &[
                    "link", "add", &root, "mtu", &mtu, "type", "veth", "peer", "name", &host,
                    "mtu", &mtu,
                ],
            )?;
            offloads_off(&root)?;
            offloads_off(&host)?;
            run("ip", &["link", "set", &host, "netns", &ns])?;
            let mac = mac_text(host_mac(i));
            let ip = format!("{}/16", host_ip(i));
            run("ip", &["-n", &ns, "link", "set", &host, "address", &mac])?;
            run("ip", &["-n", &ns, "addr", "add", &ip, "dev", &host])?;
            for j in (0..hosts).filter(|&j| owners[j].min(j) != owner) {
                run(
                    "ip",
                    &[
                        "-n",
                        &ns,
                        "neigh",
                        "replace",
                        &host_ip(j).to_string(),
                        "lladdr",
                        &mac_text(host_mac(j)),
                        "dev",
                        &host,
                        "nud",
                        "permanent",
                    ],
                )?;
            }
            // No IPv6 on the root side: it would only send router solicitations at the host.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{root}/disable_ipv6"), "1");
            run("ip", &["link", "set", &root, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", &ns, "link", "set", &host, "up"])?;
            if owner != i {
                set_rp_filter_off(&ns)?;
            }
        }
        Ok(self)
    }

    /// The run's names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Number of nodes (hosts and their further interfaces).
    pub fn hosts(&self) -> usize {
        self.owners.len()
    }

    /// The address of host `i`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        host_ip(i)
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names.netns(i)]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (i, &owner) in self.owners.iter().enumerate() {
            if owner == i {
                remove_netns(&self.names.netns(i));
            }
            // Deleting the namespace deletes its end of the pair, and so the pair; this catches
            // a root end whose peer was never moved in.
            let _ = run("ip", &["link", "del", &self.names.root_veth(i)]);
        }
    }
}

/// Turns reverse-path filtering off in namespace `ns`, for every interface it has now and
/// any it gets (`all` and `default`, and each device's own setting, since the kernel takes
/// the stricter of `all` and the device's).
fn set_rp_filter_off(ns: &str) -> Result<(), NetError> {
    within(ns, || {
        for entry in std::fs::read_dir("/proc/sys/net/ipv4/conf")? {
            std::fs::write(entry?.path().join("rp_filter"), "0")?;
        }
        Ok(())
    })
    .map_err(|source| NetError::RpFilter {
        ns: ns.to_string(),
        source,
    })
}

/// Kills every process left in namespace `ns` and deletes it.
fn remove_netns(ns: &str) {
    if let Ok(out) = run("ip", &["netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) with a plain pid and signal has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let _ = run("ip", &["netns", "del", ns]);
}

/// Runs `f` on a thread that has entered namespace `ns` (`setns`), and returns its result:
/// sockets `f` creates belong to that namespace for good, wherever they are used afterwards.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns(2) on a valid namespace fd; it changes only this thread's network
            // namespace, and the thread ends right after `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// The PID a name of ours carries, if it is one of ours.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() == rest.len() {
        return None;
    }
    digits.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of ours (namespaces, then interfaces) present now: `ip netns list` and `ip link`.
pub fn present() -> Result<(Vec<String>, Vec<String>), NetError> {
    let ns = run("ip", &["netns", "list"])?;
    let namespaces = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| owner(n).is_some())
        .map(str::to_string)
        .collect();
    let links = run("ip", &["-o", "link", "show"])?;
    let interfaces = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| owner(n).is_some())
        .collect();
    Ok((namespaces, interfaces))
}

/// Deletes the namespaces and interfaces of runs whose process is gone (killed, crashed), and
/// kills what still runs inside them. Returns how many names it removed.
pub fn sweep() -> Result<usize, NetError> {
    let (namespaces, interfaces) = present()?;
    let stale = |n: &String| owner(n).is_some_and(|pid| !alive(pid));
    let mut removed = 0;
    for ns in namespaces.iter().filter(|n| stale(n)) {
        remove_netns(ns);
        removed += 1;
    }
    // Interfaces go with their namespace; delete any root-side one left.
    let (_, interfaces_now) = present()?;
    for link in interfaces.iter().filter(|n| stale(n)) {
        if interfaces_now.contains(link) {
            let _ = run("ip", &["link", "del", link]);
            removed += 1;
        }
    }
    Ok(removed)
}

/// The names of a run that are present now (for tests: `pid` is the emulator's).
pub fn present_for(pid: u32) -> Result<Vec<String>, NetError> {
    let (mut namespaces, interfaces) = present()?;
    namespaces.extend(interfaces);
    Ok(namespaces
        .into_iter()
        .filter(|n| owner(n) == Some(pid))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A veth pair made as [`Net`] makes them, offloads turned off by ioctl, checked by
    /// ioctl. Root only (skipped otherwise, unless `LIVECAM_REQUIRE_ROOT=1`).
    #[test]
    fn offloads_go_off_by_ioctl() {
        if let Some(why) = unavailable() {
            assert!(
                std::env::var("LIVECAM_REQUIRE_ROOT").as_deref() != Ok("1"),
                "LIVECAM_REQUIRE_ROOT=1 but {why}"
            );
            eprintln!("SKIPPED offloads_go_off_by_ioctl: {why}");
            return;
        }
        let (a, b) = (
            format!("{PREFIX}{}t0", std::process::id()),
            format!("{PREFIX}{}t1", std::process::id()),
        );
        run(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        )
        .expect("veth pair");
        let result = (|| {
            let before = offloads_on(&a)?;
            offloads_off(&a)?;
            offloads_off(&b)?;
            Ok::<_, NetError>((before, offloads_on(&a)?, offloads_on(&b)?))
        })();
        let _ = run("ip", &["link", "del", &a]);
        let (before, after_a, after_b) = result.expect("ethtool ioctl");
        assert!(
            before.iter().any(|f| f == "tx-generic-segmentation"),
            "{before:?}"
        );
        assert!(after_a.is_empty(), "still on: {after_a:?}");
        assert!(after_b.is_empty(), "still on: {after_b:?}");
        assert!(matches!(
            offloads_off("lce-no-such-if"),
            Err(NetError::Offload { .. })
        ));
    }

    #[test]
    fn names_fit_and_carry_the_pid() {
        let n = Names::for_pid(4_194_304);
        assert_eq!(n.netns(3), "lce4194304-3");
        assert_eq!(n.root_veth(99_999), "lce4194304r99999");
        assert!(n.root_veth(9_999).len() <= 15);
        assert!(n.host_veth(9_999).len() <= 15);
        for name in [n.netns(7), n.root_veth(7), n.host_veth(7)] {
            assert_eq!(owner(&name), Some(4_194_304), "{name}");
        }
        assert_eq!(owner("lce"), None);
        assert_eq!(owner("lce123"), None, "no separator: not ours");
        assert_eq!(owner("eth0"), None);
        assert_eq!(owner("lcex1-2"), None);
    }

    #[test]
    fn our_own_process_is_alive() {
        assert!(alive(std::process::id()));
    }
}
