//! What a server process costs, read from Linux's `/proc`: CPU seconds and resident memory of
//! a process, and which process owns a UDP socket (so a load generator pointed at an address
//! can report the cost of the server behind it). Elsewhere every reading is `None`.

use std::net::{IpAddr, SocketAddr};

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcSample {
    pub pid: u32,
    /// User plus system CPU time since the process started.
    pub cpu_s: f64,
    pub rss_bytes: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ; 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// Cores a process kept busy between two readings `seconds` apart (0 when either is missing).
pub fn cores(before: Option<ProcSample>, after: Option<ProcSample>, seconds: f64) -> f64 {
    before
        .zip(after)
        .map_or(0.0, |(b, a)| (a.cpu_s - b.cpu_s) / seconds.max(1e-9))
}

/// Reads process `pid`.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(ProcSample {
        pid,
        cpu_s: (utime + stime) / USER_HZ,
        rss_bytes: rss_kb * 1024,
    })
}

/// The inode of the UDP socket bound to `addr` (or to the wildcard address on its port).
fn udp_inode(addr: SocketAddr) -> Option<u64> {
    let table = match addr.ip() {
        IpAddr::V4(_) => "/proc/net/udp",
        IpAddr::V6(_) => "/proc/net/udp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let want_port = format!("{:04X}", addr.port());
    let want_ip = match addr.ip() {
        IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        IpAddr::V6(_) => String::new(),
    };
    let mut wildcard = None;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
            continue;
        };
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        if port != want_port {
            continue;
        }
        let inode: u64 = inode.parse().ok()?;
        if ip == want_ip {
            return Some(inode);
        }
        if ip.chars().all(|c| c == '0') {
            wildcard = Some(inode);
        }
    }
    wildcard
}

/// The process that owns the UDP socket bound to `addr`, if this machine has one (and we may
/// look at its file descriptors).
pub fn udp_owner(addr: SocketAddr) -> Option<u32> {
    let link = format!("socket:[{}]", udp_inode(addr)?);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == link.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_and_its_socket() {
        let me = sample(std::process::id()).expect("reading /proc/self");
        assert!(me.rss_bytes > 0);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_owner(s.local_addr().unwrap()), Some(std::process::id()));
        assert_eq!(sample(u32::MAX), None);
    }
}
