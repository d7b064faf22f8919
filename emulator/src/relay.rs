//! The relay: the same link models between processes on loopback UDP, with no privileges.
//!
//! Host `i`'s process binds its own port (`bind(i)`), and everyone reaches it at the relay's
//! socket for it (`public(i)`). A datagram that reaches `public(j)` from `bind(i)` crosses the
//! link `i -> j` and leaves the relay from `public(i)` for `bind(j)`: host `j` sees it come from
//! `public(i)`, which is where it reaches `i`, so every host has one address that everyone
//! uses, as in the namespaces. Datagrams from unknown sources are counted and dropped.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::{Engine, Handle};
use crate::forward::{Forwarder, Out};

/// A running relay.
pub struct Relay {
    engine: Engine,
    receivers: Vec<JoinHandle<()>>,
    handle: Handle,
    public: Vec<SocketAddr>,
}

impl Relay {
    /// Binds one public socket per host on 127.0.0.1 (ephemeral ports) and starts relaying;
    /// host `i`'s process must bind `binds[i]`.
    pub fn start(binds: Vec<SocketAddr>, forwarder: Forwarder) -> io::Result<Relay> {
        let sockets: Vec<Arc<UdpSocket>> = binds
            .iter()
            .map(|_| UdpSocket::bind(("127.0.0.1", 0)).map(Arc::new))
            .collect::<io::Result<_>>()?;
        let public = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        for s in &sockets {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let senders = sockets.clone();
        let targets = binds.clone();
        let deliver = Box::new(move |out: &Out| {
            if let (Some(s), Some(to)) = (senders.get(out.from), targets.get(out.to)) {
                // A full buffer loses the datagram, as a wire would.
                let _ = s.send_to(&out.bytes, to);
            }
        });
        let engine = Engine::start(forwarder, deliver);
        let by_bind: Arc<BTreeMap<SocketAddr, usize>> =
            Arc::new(binds.iter().enumerate().map(|(i, a)| (*a, i)).collect());
        let receivers = sockets
            .into_iter()
            .enumerate()
            .filter_map(|(to, socket)| {
                let handle = engine.handle();
                let by_bind = by_bind.clone();
                std::thread::Builder::new()
                    .name(format!("relay-rx-{to}"))
                    .spawn(move || {
                        let mut buf = vec![0u8; 65_536];
                        while !handle.stopping() {
                            match socket.recv_from(&mut buf) {
                                Ok((n, src)) => match by_bind.get(&src) {
                                    Some(&from) => handle.offer(from, to, buf[..n].to_vec()),
                                    None => handle.unroutable(),
                                },
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::TimedOut
                                            | io::ErrorKind::WouldBlock
                                            | io::ErrorKind::Interrupted
                                            // An ICMP port unreachable from an earlier send.
                                            | io::ErrorKind::ConnectionRefused
                                    ) => {}
                                Err(e) => {
                                    tracing::warn!(host = to, error = %e, "relay socket failed");
                                    break;
                                }
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        let handle = engine.handle();
        Ok(Relay {
            engine,
            receivers,
            handle,
            public,
        })
    }

    /// Where everyone reaches host `i`.
    pub fn public(&self) -> &[SocketAddr] {
        &self.public
    }

    /// Stops the relay and reads its forwarder with `read`.
    pub fn stop<R>(self, read: impl FnOnce(&Forwarder) -> R) -> R {
        self.handle.stop();
        for r in self.receivers {
            let _ = r.join();
        }
        self.engine.finish(read)
    }
}
