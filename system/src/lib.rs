//! The livecam product: everything that runs in a vehicle or a server.
//!
//! livecam streams live camera frames from vehicles over a lossy radio link to a two-tier server
//! cluster, using the variable segment size protocol of the seed patent: a frame is cut into
//! segments at the application layer, each segment travels as one UDP datagram, the receiver
//! asks again for exactly the segments that were lost or damaged, and the segment size adapts to
//! the link.
//!
//! Layers, from the bottom:
//! - [`proto`]: the protocol as sans-IO state machines ([`proto::Sender`], [`proto::Receiver`]),
//!   the wire format and the segment size policies. `now` and datagrams go in; datagrams, the
//!   next deadline and events come out. No sockets, clocks, tasks or randomness of their own.
//! - [`link`]: seeded link models (loss, bit errors, bursts, delay, rate) shared by every backend.
//! - [`machine`]: the one surface of every machine ([`machine::Endpoint`], [`machine::Role`]).
//! - [`net`]: the datagram-socket and clock traits, their tokio implementation, and the one
//!   [`driver`] loop that runs any [`machine::Endpoint`] over any implementation.
//! - [`runtime`]: real runs over tokio UDP, such as `livecam transfer`.
//!
//! Features: the machines (`proto`, `link`, `secure`, `cluster`, `role`, `machine`, `time`)
//! need no runtime and no device crate: `--no-default-features` builds just them, as
//! quinn-proto is built apart from quinn. `io` adds the tokio glue (`driver`, `net`) and the
//! devices (`device`: NMEA over serial ports and gpsd, cameras); `server` (default) adds the
//! role processes, backend, metrics and tools (`runtime`, `backend`, `metrics`); `camera` real
//! capture. A feature set rather than a crate of its own: the machines, their tests and their
//! fuzz targets stay in one crate with one version, and the split is still checked (`.ci/run`
//! builds the crate without default features and checks tokio is not in that build).
//!
//! A minimal lossless exchange at function-call level:
//!
//! ```
//! use livecam_system::proto::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig};
//! use livecam_system::machine::Endpoint;
//! use livecam_system::time::Instant;
//!
//! let rx_addr = "127.0.0.1:9000".parse().unwrap();
//! let tx_addr = "127.0.0.1:9001".parse().unwrap();
//! let mut tx = Sender::new(SenderConfig::new(7, rx_addr));
//! let mut rx = Receiver::new(ReceiverConfig::default());
//! let now = Instant::ZERO;
//! tx.push_frame(now, vec![42u8; 10_000]).unwrap();
//! let mut buf = Vec::new();
//! while let Some(dst) = tx.poll_transmit(now, &mut buf) {
//!     assert_eq!(dst, rx_addr);
//!     rx.handle_datagram(now, tx_addr, &buf);
//! }
//! let mut delivered = None;
//! while let Some(ev) = rx.poll_event() {
//!     if let ReceiverEvent::FrameDelivered { data, .. } = ev {
//!         delivered = Some(data);
//!     }
//! }
//! assert_eq!(delivered.unwrap(), vec![42u8; 10_000]);
//! ```

#[cfg(feature = "server")]
pub mod backend;
pub mod cluster;
#[cfg(feature = "io")]
pub mod device;
#[cfg(feature = "io")]
pub mod driver;
pub mod link;
pub mod lookup;
pub mod machine;
#[cfg(feature = "server")]
pub mod metrics;
pub mod mutants;
#[cfg(feature = "io")]
pub mod net;
pub mod outbox;
pub mod proto;
pub mod role;
#[cfg(feature = "server")]
pub mod runtime;
pub mod secure;
pub mod stats;
pub mod time;
