//! Datagrams a state machine has decided to send, waiting for the driver to poll them.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::proto::wire::Message;

/// A FIFO of encoded datagrams and their destinations.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Outbox {
    /// Encodes `msg` and queues it for `to`.
    pub fn send(&mut self, to: SocketAddr, msg: &Message<'_>) {
        let mut buf = Vec::with_capacity(48);
        msg.encode(&mut buf);
        self.queue.push_back((to, buf));
    }

    /// Queues the encoded `datagram` for `to` ahead of everything queued.
    pub fn send_first(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.queue.push_front((to, datagram.to_vec()));
    }

    /// Moves the next datagram into `buf` (cleared first) and returns its destination.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, bytes) = self.queue.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(to)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
