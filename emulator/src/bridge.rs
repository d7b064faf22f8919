//! The bridge: one AF_PACKET channel (pnet) on the root-side veth of every host; each frame a
//! host sends is routed by its MAC addresses ([`frame::route`]) and handed to the
//! [`Engine`], which applies the pair's link model and sends it out of the destination's veth.
//!
//! Frames that are not IPv4 unicast between two hosts (IPv6 neighbour discovery, broadcasts, a
//! frame whose source MAC is not the port's host) are counted as unroutable and dropped: the
//! hosts have permanent neighbour entries, so nothing they need is lost.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender, NetworkInterface};
use thiserror::Error;

use crate::engine::{Engine, Handle};
use crate::forward::{ForwardStats, Forwarder, Out};
use crate::frame;

/// A bridge that could not start.
#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("opening an AF_PACKET channel on {name}: {source}")]
    Channel { name: String, source: io::Error },
    #[error("{0}: not an Ethernet channel")]
    NotEthernet(String),
}

/// Largest frame a port reads: a 64 KiB packet plus its Ethernet header.
const FRAME_BUFFER: usize = 65_536 + 64;
/// How often idle receive threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// A running bridge.
pub struct Bridge {
    engine: Engine,
    receivers: Vec<JoinHandle<()>>,
    handle: Handle,
}

/// Opens `port`'s AF_PACKET channel.
/// Both ends of a port's AF_PACKET channel.
type Port = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

fn open(port: &str) -> Result<Port, BridgeError> {
    let iface: NetworkInterface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == port)
        .ok_or_else(|| BridgeError::NoInterface(port.to_string()))?;
    let config = Config {
        read_buffer_size: FRAME_BUFFER,
        write_buffer_size: FRAME_BUFFER,
        read_timeout: Some(POLL),
        ..Config::default()
    };
    match pnet_datalink::channel(&iface, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok((tx, rx)),
        Ok(_) => Err(BridgeError::NotEthernet(port.to_string())),
        Err(source) => Err(BridgeError::Channel {
            name: port.to_string(),
            source,
        }),
    }
}

impl Bridge {
    /// Starts bridging `ports` (host `i` on `ports[i]`) with `forwarder` deciding.
    pub fn start(ports: &[String], forwarder: Forwarder) -> Result<Bridge, BridgeError> {
        let mut senders = Vec::with_capacity(ports.len());
        let mut receivers = Vec::with_capacity(ports.len());
        for p in ports {
            let (tx, rx) = open(p)?;
            senders.push(tx);
            receivers.push(rx);
        }
        let deliver = Box::new(move |out: &Out| {
            if let Some(tx) = senders.get_mut(out.to) {
                // A full socket buffer or a vanished interface loses the frame, as a wire would.
                let _ = tx.send_to(&out.bytes, None);
            }
        });
        let engine = Engine::start(forwarder, deliver);
        let hosts = ports.len();
        let threads = receivers
            .into_iter()
            .enumerate()
            .filter_map(|(i, mut rx)| {
                let handle = engine.handle();
                std::thread::Builder::new()
                    .name(format!("bridge-rx-{i}"))
                    .spawn(move || {
                        while !handle.stopping() {
                            match rx.next() {
                                Ok(f) => match frame::route(f, hosts) {
                                    Some(r) if r.from == i => {
                                        handle.offer(r.from, r.to, f.to_vec())
                                    }
                                    _ => handle.unroutable(),
                                },
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::TimedOut
                                            | io::ErrorKind::WouldBlock
                                            | io::ErrorKind::Interrupted
                                    ) => {}
                                Err(e) => {
                                    tracing::warn!(port = i, error = %e, "bridge port closed");
                                    break;
                                }
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        let handle = engine.handle();
        Ok(Bridge {
            engine,
            receivers: threads,
            handle,
        })
    }

    /// Stops the bridge and reads its forwarder with `read`.
    pub fn stop<R>(self, read: impl FnOnce(&Forwarder) -> R) -> R {
        self.handle.stop();
        for r in self.receivers {
            let _ = r.join();
        }
        self.engine.finish(read)
    }

    /// Stops the bridge and returns its counters.
    pub fn stop_stats(self) -> ForwardStats {
        self.stop(|f| f.stats().clone())
    }
}
