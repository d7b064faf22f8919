//! The role processes' UDP sockets, with receive and send buffers sized for bursts.
//!
//! A tier-2 takes every camera of its share on one socket. The kernel's default receive buffer
//! (`net.core.rmem_default`, 208 KiB on most Linux systems) holds about 0.4 s of five cameras at
//! 100 kB/s. A process that loses the CPU for longer (a busy host, a start-up with many
//! processes) then drops datagrams in the kernel. Near a full buffer, small datagrams still fit
//! where large ones do not, so that loss also grows with datagram size. The link estimator
//! cannot tell it from bit errors, so the size policy shrinks the segments, which makes more
//! datagrams per byte and drops more: a collapse seen in the multi-host test. So role sockets ask
//! for [`BUFFER_BYTES`] each way. The kernel caps the request at `net.core.rmem_max` /
//! `wmem_max`; the size obtained is logged, with the sysctl to raise when it falls short.
//!
//! `socket2` sets the options before the socket is bound and handed to tokio (tokio's
//! `UdpSocket` does not expose them).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked for on every role socket: about 20 s of one camera at
/// 100 kB/s, or 0.4 s of a hundred.
pub const BUFFER_BYTES: usize = 4 << 20;

/// A UDP socket bound to `addr`, with buffers of [`BUFFER_BYTES`] where the kernel allows.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    bind_on(addr, None)
}

/// One uplink of a bonded mobile client (`uplinks` in its config), as written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// A local address (`10.64.0.2`, or with a port `10.64.0.2:7100`): the modem's.
    Address(SocketAddr),
    /// A network interface (`wwan0`): the socket is bound to it (`SO_BINDTODEVICE`, which
    /// needs `CAP_NET_RAW`), so its datagrams leave by that modem whatever the routing table
    /// says.
    Device(String),
}

impl Uplink {
    /// Reads an uplink as written in a config: an address, else an interface name.
    pub fn parse(text: &str) -> Result<Uplink, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Uplink::Address(addr));
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(Uplink::Address(SocketAddr::new(ip, 0)));
        }
        // Linux's IFNAMSIZ: 15 bytes and the NUL; no '/', no whitespace.
        let valid = !text.is_empty()
            && text.len() < 16
            && text
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if valid {
            Ok(Uplink::Device(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is neither an address nor an interface name"
            ))
        }
    }

    /// A socket on this uplink, with the buffers of [`bind`].
    pub fn bind(&self) -> io::Result<tokio::net::UdpSocket> {
        match self {
            Uplink::Address(addr) => bind(*addr),
            Uplink::Device(name) => bind_on(([0, 0, 0, 0], 0).into(), Some(name)),
        }
    }
}

fn bind_on(addr: SocketAddr, device: Option<&str>) -> io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(name) = device {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        socket
            .bind_device(Some(name.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("binding to interface {name:?}: {e}")))?;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("binding to interface {name:?} needs Linux; give the modem's address"),
        ));
    }
    // Best effort: a smaller buffer is a worse socket, not a broken one.
    let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(BUFFER_BYTES);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    // Linux reports twice the size asked for (its bookkeeping overhead included).
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < BUFFER_BYTES {
        tracing::warn!(
            %addr,
            asked = BUFFER_BYTES,
            got,
            "UDP receive buffer smaller than asked: raise net.core.rmem_max"
        );
    } else {
        tracing::debug!(%addr, got, "UDP receive buffer");
    }
    tokio::net::UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_are_addresses_or_interface_names() {
        assert_eq!(
            Uplink::parse("10.64.0.2").unwrap(),
            Uplink::Address("10.64.0.2:0".parse().unwrap())
        );
        assert_eq!(
            Uplink::parse("10.64.0.2:7100").unwrap(),
            Uplink::Address("10.64.0.2:7100".parse().unwrap())
        );
        assert_eq!(
            Uplink::parse("wwan0").unwrap(),
            Uplink::Device("wwan0".into())
        );
        for bad in ["", "a/b", "wwan 0", "sixteen-bytes-xx", "10.0.0.1:99999"] {
            assert!(Uplink::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_uplink_binds_to_its_address_or_its_interface() {
        let by_addr = Uplink::parse("127.0.0.1").unwrap().bind().unwrap();
        assert_eq!(by_addr.local_addr().unwrap().ip().to_string(), "127.0.0.1");
        // Binding to a device needs CAP_NET_RAW: CI runs as root, and so must this check.
        let privileged = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        if privileged {
            let lo = Uplink::Device("lo".into()).bind().expect("bound to lo");
            let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            lo.send_to(b"hi", peer.local_addr().unwrap()).await.unwrap();
            let mut buf = [0u8; 4];
            let (n, _) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hi");
            let none = Uplink::Device("nosuchif0".into()).bind().unwrap_err();
            assert!(none.to_string().contains("nosuchif0"), "{none}");
        }
    }

    #[tokio::test]
    async fn role_sockets_get_large_buffers_where_the_kernel_allows() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let s = socket2::SockRef::from(&socket);
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok());
        let got = s.recv_buffer_size().unwrap();
        let default = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok());
        // At least what the kernel lets an unprivileged socket have, up to what was asked.
        if let (Some(max), Some(default)) = (max, default) {
            let want = BUFFER_BYTES.min(max);
            assert!(got >= want.max(default), "got {got}, max {max}");
        }
        // And it is a working socket.
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"hi", socket.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
    }
}
