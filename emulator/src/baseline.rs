//! `tcp-vs-segment`: the same frames over the same emulated link, with the segment protocol,
//! the kernel's TCP and SRT (`srt-live-transmit`), measured the same way.
//!
//! Every run is two hosts in namespaces behind the [`Bridge`], whose link model (both
//! directions) is [`LinkConfig`] with the loss and delay asked for: loss applies per IP packet
//! on the wire, to data and acknowledgments alike, whatever the transport. Each transport
//! streams the same frames ([`FrameContent`]: `frames` of `frame_bytes` at `fps`) from host 0
//! to host 1:
//!
//! - **segment**: the protocol's own code, the [`Camera`] and [`Sink`] roles the role
//!   processes run, over UDP sockets opened in the namespaces and driven by the shared
//!   [`driver`] loop, without the cluster's control plane (the tier-1 only sets the session
//!   up; frames go from mobile client to tier-2 as here);
//! - **tcp**: one TCP connection (Linux defaults, `TCP_NODELAY`), frames length-prefixed;
//! - **srt**: `srt-live-transmit` on both hosts (live mode, default 120 ms latency), fed frames
//!   cut into 1316-byte UDP datagrams on host 0's loopback and handing them out on host 1's.
//!
//! The latency of every transport is the same figure: **one way, from the frame's scheduled
//! capture instant to the instant the receiving application has the whole frame**, both read
//! on one monotonic clock (the namespaces share the host's clock, and both ends live in this
//! process or report through it). A frame the transport gave up, or that had not arrived a
//! grace period after the stream ended, is not delivered; percentiles are over delivered
//! frames, and the delivered share is reported next to them. For the segment protocol the
//! camera's own figure (capture to acknowledgment, one round trip more) is reported too.
//! Goodput is the bytes of delivered frames over the span from the first capture to the last
//! delivery.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livecam_system::driver;
use livecam_system::link::{LinkConfig, LinkStats, Network};
use livecam_system::net::TokioClock;
use livecam_system::proto::wire::codec::{Reader, Writer};
use livecam_system::proto::{
    PolicyConfig, PolicyKind, RateConfig, Receiver, ReceiverConfig, Sender, SenderConfig,
};
use livecam_system::role::{Camera, CameraConfig, FrameContent, RoleEvent, Sink};
use livecam_system::stats::Samples;
use serde::Serialize;

use crate::bridge::Bridge;
use crate::forward::{Forwarder, Mode};
use crate::netns::{self, Net};
use crate::run::RunError;

/// The SRT tool this experiment drives.
pub const SRT_TOOL: &str = "srt-live-transmit";
/// SRT's receive latency (its default), milliseconds.
pub const SRT_LATENCY_MS: u32 = 120;
/// Largest UDP datagram handed to SRT: its live-mode payload (7 MPEG-TS packets).
const SRT_CHUNK: usize = 1316;
/// Header of an SRT chunk: frame id, chunk index, chunk count, capture microseconds.
const CHUNK_HEADER: usize = 16;
/// Header of a TCP frame: payload length, frame id, capture microseconds.
const TCP_HEADER: usize = 16;

/// One frame on the TCP baseline's stream: its length, number and capture time
/// ([`TCP_HEADER`] bytes), then its bytes.
struct TcpFrame<'a> {
    frame: u32,
    capture: u64,
    data: &'a [u8],
}

impl<'a> TcpFrame<'a> {
    fn write(&self, out: &mut Vec<u8>) {
        out.put_u32(self.data.len() as u32);
        out.put_u32(self.frame);
        out.put_u64(self.capture);
        out.put_bytes(self.data);
    }

    /// The first frame of `stream` and the bytes it takes, or `None` until all of it arrived.
    fn read(stream: &'a [u8]) -> Option<(Self, usize)> {
        let mut r = Reader::new(stream);
        let len = r.u32().ok()? as usize;
        let f = TcpFrame {
            frame: r.u32().ok()?,
            capture: r.u64().ok()?,
            data: r.take(len).ok()?,
        };
        Some((f, TCP_HEADER + len))
    }
}

/// One chunk of a frame on the SRT baseline: frame number, chunk index, chunk count and
/// capture time ([`CHUNK_HEADER`] bytes), then the chunk's bytes.
struct Chunk<'a> {
    frame: u32,
    index: u16,
    count: u16,
    capture: u64,
    part: &'a [u8],
}

impl<'a> Chunk<'a> {
    fn write(&self, out: &mut Vec<u8>) {
        out.put_u32(self.frame);
        out.put_u16(self.index);
        out.put_u16(self.count);
        out.put_u64(self.capture);
        out.put_bytes(self.part);
    }

    /// A chunk datagram, or `None` when it is shorter than its header.
    fn read(datagram: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(datagram);
        Some(Chunk {
            frame: r.u32().ok()?,
            index: r.u16().ok()?,
            count: r.u16().ok()?,
            capture: r.u64().ok()?,
            part: r.rest(),
        })
    }
}
/// How long after the last capture a frame may still arrive.
const GRACE: Duration = Duration::from_secs(8);
/// The stream starts this long after the run's clock starts.
const LEAD: Duration = Duration::from_millis(20);

/// The stream and the link, apart from loss.
#[derive(Clone, Debug, Serialize)]
pub struct StreamSpec {
    pub frames: u32,
    pub frame_bytes: usize,
    pub fps: f64,
    /// One-way delay of the link, each direction.
    pub delay_ms: f64,
    /// Seed of the link model and of the frames' content.
    pub seed: u64,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            frames: 300,
            frame_bytes: 10_000,
            fps: 10.0,
            delay_ms: 20.0,
            seed: 1,
        }
    }
}

impl StreamSpec {
    /// The link model at `loss`.
    pub fn link(&self, loss: f64) -> LinkConfig {
        LinkConfig {
            loss,
            delay_ms: self.delay_ms,
            ..LinkConfig::default()
        }
    }

    fn interval_us(&self) -> f64 {
        1e6 / self.fps.max(1e-3)
    }

    /// Scheduled capture of frame `i`, microseconds on the run's clock.
    fn capture_us(&self, start_us: u64, i: u32) -> u64 {
        start_us + (f64::from(i) * self.interval_us()).round() as u64
    }

    fn stream_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.frames) / self.fps.max(1e-3))
    }
}

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The segment protocol as the seed has it: the seed's size rule, NACK repair only.
    SegmentSeed,
    /// The model size policy, NACK repair only.
    SegmentModel,
    /// The model size policy with adaptive parity segments (our default).
    Segment,
    Tcp,
    Srt,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::SegmentSeed,
        Transport::SegmentModel,
        Transport::Segment,
        Transport::Tcp,
        Transport::Srt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::SegmentSeed => "segment-seed",
            Transport::SegmentModel => "segment-model",
            Transport::Segment => "segment",
            Transport::Tcp => "tcp",
            Transport::Srt => "srt",
        }
    }

    /// The segment protocol's policy for the segment variants.
    fn policy(self) -> Option<PolicyConfig> {
        match self {
            Transport::SegmentSeed => Some(PolicyConfig::default()),
            Transport::SegmentModel => Some(PolicyConfig {
                kind: PolicyKind::Model,
                ..PolicyConfig::default()
            }),
            Transport::Segment => Some(PolicyConfig::best()),
            Transport::Tcp | Transport::Srt => None,
        }
    }
}

/// One transport at one loss rate.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub transport: &'static str,
    pub loss: f64,
    pub frames_sent: u64,
    pub frames_delivered: u64,
    /// Delivered frames whose bytes differ from what was sent (must be 0).
    pub frames_corrupted: u64,
    /// Scheduled capture to delivery at the receiver, milliseconds (delivered frames).
    pub one_way_ms_p50: f64,
    pub one_way_ms_p99: f64,
    pub one_way_ms_max: f64,
    pub goodput_bytes_per_s: f64,
    /// The camera's own figure, capture to acknowledgment (segment protocol only).
    pub ack_ms_p50: Option<f64>,
    /// Repair bytes (parity and resent payload) and header bytes per frame byte sent
    /// (segment protocol only).
    pub repair_ratio: Option<f64>,
    pub header_ratio: Option<f64>,
    pub ack_ms_p99: Option<f64>,
    /// IP packets the bridge carried from sender to receiver, and lost on the way.
    pub packets_forward: u64,
    pub packets_forward_lost: u64,
    /// The same from receiver to sender (acknowledgments).
    pub packets_back: u64,
    pub packets_back_lost: u64,
}

impl Measured {
    pub fn delivered_ratio(&self) -> f64 {
        if self.frames_sent == 0 {
            0.0
        } else {
            self.frames_delivered as f64 / self.frames_sent as f64
        }
    }
}

/// What a receiver saw: `(frame, scheduled capture us, delivered us)` of each frame it had
/// whole, and how many of those were damaged.
#[derive(Default)]
struct Log {
    delivered: Vec<(u32, u64, u64)>,
    corrupted: u64,
    ack_ms: Option<(f64, f64)>,
    /// (repair, header) bytes per data byte.
    overhead: Option<(f64, f64)>,
    /// The segment protocol's camera: frame bytes it had acknowledged.
    camera_bytes: u64,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> RunError {
    move |source| RunError::Io {
        what: what.to_string(),
        source,
    }
}

/// Whether `srt-live-transmit` can be started here.
pub fn srt_available() -> bool {
    Command::new(SRT_TOOL)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Two hosts in namespaces (0 sends, 1 receives) behind the bridge, whose one link model
/// `link`, seeded by `seed`, carries everything between them, both ways.
pub(crate) fn two_hosts(seed: u64, link: LinkConfig) -> Result<(Net, Bridge), RunError> {
    netns::sweep()?;
    let net = Net::create(2, 1500)?;
    let ports: Vec<String> = (0..2).map(|i| net.names().root_veth(i)).collect();
    let mut network = Network::new(seed, link);
    for name in ["sender", "receiver"] {
        network.add_host(name);
    }
    let bridge = Bridge::start(&ports, Forwarder::new(Mode::Packet, network))?;
    Ok((net, bridge))
}

/// Streams `spec` with `transport` over a link losing `loss` of the packets each way.
pub fn measure(transport: Transport, loss: f64, spec: &StreamSpec) -> Result<Measured, RunError> {
    let (net, bridge) = two_hosts(spec.seed, spec.link(loss))?;
    let origin = Instant::now();
    let log = match (transport, transport.policy()) {
        (_, Some(policy)) => segment(&net, spec, origin, policy, None),
        (Transport::Srt, None) => srt(&net, spec, origin),
        (_, None) => tcp(&net, spec, origin),
    };
    let stats = |f: &Forwarder, a, b| f.link_stats(a, b).cloned().unwrap_or_default();
    let (fwd, back): (LinkStats, LinkStats) = bridge.stop(|f| (stats(f, 0, 1), stats(f, 1, 0)));
    drop(net);
    let log = log.map_err(io_err("streaming the frames"))?;
    let start_us = micros(LEAD);
    let mut one_way = Samples::default();
    let mut bytes = 0u64;
    let mut last = start_us;
    for &(_, capture, at) in &log.delivered {
        one_way.push(at.saturating_sub(capture) as f64 / 1e3);
        bytes += spec.frame_bytes as u64;
        last = last.max(at);
    }
    let span_s = last.saturating_sub(start_us) as f64 / 1e6;
    Ok(Measured {
        transport: transport.name(),
        loss,
        frames_sent: u64::from(spec.frames),
        frames_delivered: log.delivered.len() as u64,
        frames_corrupted: log.corrupted,
        one_way_ms_p50: one_way.quantile(0.5),
        one_way_ms_p99: one_way.quantile(0.99),
        one_way_ms_max: one_way.quantile(1.0),
        goodput_bytes_per_s: if span_s > 0.0 {
            bytes as f64 / span_s
        } else {
            0.0
        },
        ack_ms_p50: log.ack_ms.map(|a| a.0),
        repair_ratio: log.overhead.map(|o| o.0),
        header_ratio: log.overhead.map(|o| o.1),
        ack_ms_p99: log.ack_ms.map(|a| a.1),
        packets_forward: fwd.offered,
        packets_forward_lost: fwd.lost(),
        packets_back: back.offered,
        packets_back_lost: back.lost(),
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn now_us(origin: Instant) -> u64 {
    micros(origin.elapsed())
}

fn sleep_until_us(origin: Instant, at_us: u64) {
    let now = now_us(origin);
    if at_us > now {
        std::thread::sleep(Duration::from_micros(at_us - now));
    }
}

/// The segment protocol: a camera in host 0, a sink in host 1, one tokio runtime on the run's
/// clock.
/// `rate_control` turns the sender's rate control (and the camera's source adaptation) on.
fn segment(
    net: &Net,
    spec: &StreamSpec,
    origin: Instant,
    policy: PolicyConfig,
    rate_control: Option<RateConfig>,
) -> io::Result<Log> {
    let rx_addr = SocketAddr::from((net.ip(1), 7000));
    let tx_addr = SocketAddr::from((net.ip(0), 7000));
    let udp = |addr: SocketAddr| {
        move || {
            let s = UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        }
    };
    let rx_std = netns::within(&net.names().netns(1), udp(rx_addr))?;
    let tx_std = netns::within(&net.names().netns(0), udp(tx_addr))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let rx = tokio::net::UdpSocket::from_std(rx_std)?;
        let tx = tokio::net::UdpSocket::from_std(tx_std)?;
        let clock = TokioClock::reading(origin.elapsed());
        let content = FrameContent { seed: spec.seed };
        let mut sink = Sink::new(
            Receiver::new(ReceiverConfig {
                policy,
                ..ReceiverConfig::default()
            }),
            Box::new(content),
        );
        sink.recorder().enable();
        let mut sender = SenderConfig::new(1, rx_addr);
        sender.initial_segment_size = policy.initial_size();
        sender.rate_control = rate_control;
        let start = livecam_system::time::Instant::ZERO + LEAD;
        let mut camera = Camera::new(
            CameraConfig {
                fps: spec.fps,
                frames: u64::from(spec.frames),
                frame_bytes: spec.frame_bytes,
                start_at: start,
            },
            Sender::new(sender),
            Box::new(content),
        );
        let limit = LEAD + spec.stream_time() + GRACE;
        tokio::select! {
            r = driver::run(&mut camera, &tx, &clock) => r?,
            r = driver::run(&mut sink, &rx, &clock) => r?,
            _ = tokio::time::sleep(limit.saturating_sub(origin.elapsed())) => {}
        }
        // The last ACK may still be crossing: the sink may hold a frame the camera does not
        // know about yet, which counts (it was delivered).
        let start_us = start.as_micros();
        let mut log = Log::default();
        for (at, ev) in sink.recorder().take() {
            if let RoleEvent::FrameDelivered {
                frame,
                intact,
                duplicate: false,
                ..
            } = ev
            {
                if !intact {
                    log.corrupted += 1;
                }
                log.delivered
                    .push((frame, spec.capture_us(start_us, frame), at.as_micros()));
            }
        }
        let report = camera.report();
        log.camera_bytes = report.bytes_delivered;
        log.ack_ms = Some((report.latency_ms_p50, report.latency_ms_p99));
        let st = camera.sender().stats();
        let data = st.data_bytes.max(1) as f64;
        log.overhead = Some((st.repair_bytes as f64 / data, st.header_bytes as f64 / data));
        Ok(log)
    })
}

/// The kernel's TCP: a sender thread writing each frame at its capture instant (blocking when
/// the connection is backed up, as an application would), a receiver thread reading frames.
fn tcp(net: &Net, spec: &StreamSpec, origin: Instant) -> io::Result<Log> {
    let addr = SocketAddr::from((net.ip(1), 7001));
    let listener = netns::within(&net.names().netns(1), || TcpListener::bind(addr))?;
    let limit_us = micros(LEAD + spec.stream_time() + GRACE);
    let content = FrameContent { seed: spec.seed };
    let receiver = std::thread::spawn(move || -> io::Result<Log> {
        listener.set_nonblocking(true)?;
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if now_us(origin) > limit_us {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut log = Log::default();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut chunk = vec![0u8; 64 * 1024];
        while now_us(origin) < limit_us {
            match conn.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
            let at = now_us(origin);
            let mut used = 0;
            while let Some((f, took)) = TcpFrame::read(buf.get(used..).unwrap_or_default()) {
                if f.data != content.frame(1, f.frame, f.data.len()).as_slice() {
                    log.corrupted += 1;
                }
                log.delivered.push((f.frame, f.capture, at));
                used += took;
            }
            buf.drain(..used);
        }
        Ok(log)
    });
    let stream = netns::within(&net.names().netns(0), || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        Ok(s)
    })?;
    let control = stream.try_clone()?;
    let spec2 = spec.clone();
    let sender = std::thread::spawn(move || -> io::Result<()> {
        let mut stream = stream;
        let start_us = micros(LEAD);
        for i in 0..spec2.frames {
            let capture = spec2.capture_us(start_us, i);
            sleep_until_us(origin, capture);
            let data = content.frame(1, i, spec2.frame_bytes);
            let mut msg = Vec::with_capacity(TCP_HEADER + data.len());
            TcpFrame {
                frame: i,
                capture,
                data: &data,
            }
            .write(&mut msg);
            stream.write_all(&msg)?;
        }
        stream.shutdown(std::net::Shutdown::Write)
    });
    let log = receiver
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("TCP receiver panicked")));
    // Unblocks a sender still stuck in a write past the limit.
    let _ = control.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    log
}

/// A child process killed when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SRT: `srt-live-transmit` on both hosts between loopback UDP and the emulated link.
fn srt(net: &Net, spec: &StreamSpec, origin: Instant) -> io::Result<Log> {
    let (srt_port, in_port, out_port) = (7002, 7004, 7003);
    let tool = Path::new(SRT_TOOL);
    let quiet = |mut c: Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let out = netns::within(&net.names().netns(1), || {
        let s = UdpSocket::bind(("127.0.0.1", out_port))?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    })?;
    let input = netns::within(&net.names().netns(0), || UdpSocket::bind(("127.0.0.1", 0)))?;
    let mut rx = quiet(net.command(1, tool));
    rx.args([
        "-q".to_string(),
        format!("srt://:{srt_port}?mode=listener&latency={SRT_LATENCY_MS}"),
        format!("udp://127.0.0.1:{out_port}"),
    ]);
    let _rx = Kill(rx.spawn()?);
    std::thread::sleep(Duration::from_millis(200));
    let mut tx = quiet(net.command(0, tool));
    tx.args([
        "-q".to_string(),
        format!("udp://127.0.0.1:{in_port}"),
        format!(
            "srt://{}:{srt_port}?mode=caller&latency={SRT_LATENCY_MS}",
            net.ip(1)
        ),
    ]);
    let _tx = Kill(tx.spawn()?);
    // Connected well before the stream (the handshake crosses the lossy link too).
    std::thread::sleep(Duration::from_millis(1000));
    let lead = micros(origin.elapsed()) + micros(LEAD);
    let limit_us = lead + micros(spec.stream_time() + GRACE);
    let content = FrameContent { seed: spec.seed };
    let receiver = std::thread::spawn(move || -> io::Result<Log> {
        let mut log = Log::default();
        // Per frame: its chunks so far.
        let mut frames: std::collections::BTreeMap<u32, Vec<Option<Vec<u8>>>> =
            std::collections::BTreeMap::new();
        let mut buf = vec![0u8; 2048];
        let mut idle_after_end = 0u32;
        while now_us(origin) < limit_us {
            let n = match out.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Everything arrives within SRT's latency or never: stop once the stream
                    // is over and a second passed in silence.
                    if now_us(origin) > limit_us.saturating_sub(micros(GRACE)) {
                        idle_after_end += 1;
                        if idle_after_end >= 10 {
                            break;
                        }
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(chunk) = buf.get(..n).and_then(Chunk::read) else {
                continue;
            };
            let at = now_us(origin);
            let Chunk {
                frame,
                capture,
                part,
                ..
            } = chunk;
            let (index, count) = (usize::from(chunk.index), usize::from(chunk.count));
            if count == 0 || index >= count {
                continue;
            }
            let parts = frames.entry(frame).or_insert_with(|| vec![None; count]);
            if parts.len() != count {
                continue;
            }
            parts[index] = Some(part.to_vec());
            if parts.iter().all(Option::is_some) {
                let data: Vec<u8> = parts.iter().flatten().flatten().copied().collect();
                if data != content.frame(1, frame, data.len()) {
                    log.corrupted += 1;
                }
                log.delivered.push((frame, capture, at));
                // Keep an empty entry so late duplicates do not deliver twice.
                frames.insert(frame, Vec::new());
            }
        }
        Ok(log)
    });
    let to = SocketAddr::from(([127, 0, 0, 1], in_port));
    let per = SRT_CHUNK - CHUNK_HEADER;
    for i in 0..spec.frames {
        let capture = spec.capture_us(lead, i);
        sleep_until_us(origin, capture);
        let data = content.frame(1, i, spec.frame_bytes);
        let count = data.len().div_ceil(per).max(1);
        for (k, part) in data.chunks(per).enumerate() {
            let mut msg = Vec::with_capacity(CHUNK_HEADER + part.len());
            Chunk {
                frame: i,
                index: k as u16,
                count: count as u16,
                capture,
                part,
            }
            .write(&mut msg);
            // A full loopback buffer loses the chunk, and so the frame, as SRT would.
            let _ = input.send_to(&msg, to);
        }
    }
    let mut log = receiver
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("SRT receiver panicked")))?;
    // Captures were scheduled from `lead`; shift them to the common origin of the report
    // (stream start at LEAD) so goodput spans compare.
    let shift = lead - micros(LEAD);
    for d in &mut log.delivered {
        d.1 -= shift;
        d.2 -= shift;
    }
    Ok(log)
}

/// What a camera and a TCP bulk flow got of one bottleneck they shared ([`share_with_tcp`]),
/// bytes per second over the stream's time.
#[derive(Clone, Debug, Serialize)]
pub struct Sharing {
    pub capacity_bytes_per_s: f64,
    /// Frame bytes the camera had acknowledged (payload: headers, parity and repairs not
    /// counted).
    pub camera_bytes_per_s: f64,
    /// Bytes the TCP receiver read (payload).
    pub tcp_bytes_per_s: f64,
}

/// A camera of the segment protocol with rate control (the default policy) and one TCP bulk flow
/// (Linux defaults, writing as fast as the connection takes) from host 0 to host 1, through
/// the one emulated link of `capacity_bytes_per_s` (its default 64 KiB queue, `spec`'s delay
/// each way) for `spec`'s stream time: what each got of it.
pub fn share_with_tcp(spec: &StreamSpec, capacity_bytes_per_s: f64) -> Result<Sharing, RunError> {
    let link = LinkConfig {
        rate_bytes_per_s: Some(capacity_bytes_per_s),
        ..spec.link(0.0)
    };
    let (net, bridge) = two_hosts(spec.seed, link)?;
    let origin = Instant::now();
    let end_us = micros(LEAD + spec.stream_time());
    let addr = SocketAddr::from((net.ip(1), 7002));
    let listener = netns::within(&net.names().netns(1), || TcpListener::bind(addr))
        .map_err(io_err("listening for the TCP flow"))?;
    let reader = std::thread::spawn(move || -> io::Result<u64> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut bytes = 0u64;
        while now_us(origin) < end_us {
            match conn.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if now_us(origin) >= micros(LEAD) => bytes += n as u64,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(bytes)
    });
    let stream = netns::within(&net.names().netns(0), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .map_err(io_err("connecting the TCP flow"))?;
    let control = stream.try_clone().map_err(io_err("the TCP flow"))?;
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        let chunk = vec![0x5au8; 16 * 1024];
        while now_us(origin) < end_us {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let log = segment(
        &net,
        spec,
        origin,
        PolicyConfig::best(),
        Some(RateConfig::default()),
    );
    let tcp = reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("TCP reader panicked")));
    let _ = control.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    bridge.stop(|_| ());
    drop(net);
    let log = log.map_err(io_err("streaming the frames"))?;
    let tcp = tcp.map_err(io_err("reading the TCP flow"))?;
    let span = spec.stream_time().as_secs_f64();
    Ok(Sharing {
        capacity_bytes_per_s,
        camera_bytes_per_s: log.camera_bytes as f64 / span,
        tcp_bytes_per_s: tcp as f64 / span,
    })
}

/// Runs every transport at every loss rate; `srt` false leaves SRT out. `progress` hears of
/// each result.
pub fn sweep(
    spec: &StreamSpec,
    losses: &[f64],
    srt: bool,
    mut progress: impl FnMut(&Measured),
) -> Result<Vec<Measured>, RunError> {
    let mut out = Vec::new();
    for &loss in losses {
        for t in Transport::ALL {
            if t == Transport::Srt && !srt {
                continue;
            }
            let m = measure(t, loss, spec)?;
            progress(&m);
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baselines' framings, byte for byte, and read back.
    #[test]
    fn tcp_frames_and_srt_chunks_round_trip() {
        let mut stream = Vec::new();
        TcpFrame {
            frame: 7,
            capture: 0x0102_0304_0506_0708,
            data: b"abc",
        }
        .write(&mut stream);
        assert_eq!(
            stream,
            b"\0\0\0\x03\0\0\0\x07\x01\x02\x03\x04\x05\x06\x07\x08abc"
        );
        stream.extend_from_slice(&stream.clone()[..TCP_HEADER + 1]);
        let (f, took) = TcpFrame::read(&stream).unwrap();
        assert_eq!(
            (f.frame, f.capture, f.data, took),
            (7, 0x0102_0304_0506_0708, &b"abc"[..], 19)
        );
        assert!(
            TcpFrame::read(&stream[took..]).is_none(),
            "a frame not whole yet"
        );

        let mut d = Vec::new();
        Chunk {
            frame: 7,
            index: 1,
            count: 2,
            capture: 9,
            part: b"xy",
        }
        .write(&mut d);
        assert_eq!(d, b"\0\0\0\x07\0\x01\0\x02\0\0\0\0\0\0\0\x09xy");
        let c = Chunk::read(&d).unwrap();
        assert_eq!(
            (c.frame, c.index, c.count, c.capture, c.part),
            (7, 1, 2, 9, &b"xy"[..])
        );
        assert!(Chunk::read(&d[..CHUNK_HEADER - 1]).is_none());
    }
}
