//! `livecam transfer`: one camera stream to one receiver over real UDP on loopback.
//!
//! Both ends run in one current-thread tokio runtime through the shared [`driver`] loop. With
//! `loss > 0` each side's outgoing datagrams cross a seeded [`ImpairedSocket`], so the segment
//! size adaptation shows without an emulator.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::driver;
use crate::link::LinkConfig;
use crate::net::{Clock, ImpairedSocket, TokioClock};
use crate::proto::{
    FecKind, PolicyConfig, PolicyKind, Receiver, ReceiverConfig, Sender, SenderConfig,
};
use crate::role::{Camera, CameraConfig, FrameContent, Sink};

/// What to transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferOptions {
    pub frames: u64,
    pub frame_bytes: usize,
    pub fps: f64,
    /// Per-datagram loss probability, each direction.
    pub loss: f64,
    pub seed: u64,
    pub policy: PolicyKind,
    /// Parity segments per frame.
    pub fec: FecKind,
    /// Sender pacing in bytes per second; `None` is unpaced.
    pub pacing_rate: Option<u64>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            frames: 100,
            frame_bytes: 10_000,
            fps: 30.0,
            loss: 0.0,
            seed: 1,
            policy: PolicyKind::Seed,
            fec: FecKind::Off,
            pacing_rate: None,
        }
    }
}

/// The one JSON object `livecam transfer` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    /// Frames the receiver delivered whose bytes differ from the camera's: always 0.
    pub frames_corrupted: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub goodput_bytes_per_s: f64,
    pub segments_sent: u64,
    pub segments_resent: u64,
    pub final_segment_size: usize,
    pub policy: String,
    pub fec: String,
    /// Repair bytes (parity and resent payload) per frame byte sent once.
    pub repair_ratio: f64,
    pub loss: f64,
    pub seed: u64,
    pub datagrams_lost_by_link: u64,
    pub wall_seconds: f64,
}

/// Runs a transfer and reports it. Must run inside a tokio runtime (current-thread is enough).
pub async fn transfer(opts: &TransferOptions) -> io::Result<TransferReport> {
    let policy = PolicyConfig {
        kind: opts.policy,
        fec: opts.fec,
        ..PolicyConfig::default()
    };
    policy
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let link = LinkConfig {
        loss: opts.loss,
        ..LinkConfig::default()
    };
    let clock = TokioClock::new();
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let rx_socket = tokio::net::UdpSocket::bind(loopback).await?;
    let tx_socket = tokio::net::UdpSocket::bind(loopback).await?;
    let rx_addr = rx_socket.local_addr()?;
    let rx_socket = ImpairedSocket::new(rx_socket, clock, link.clone(), opts.seed ^ 0x5eed_0001)?;
    let tx_socket = ImpairedSocket::new(tx_socket, clock, link, opts.seed ^ 0x5eed_0002)?;

    let content = FrameContent { seed: opts.seed };
    let mut sink = Sink::new(
        Receiver::new(ReceiverConfig {
            policy,
            ..ReceiverConfig::default()
        }),
        Box::new(content),
    );
    let mut sender_cfg = SenderConfig::new(1, rx_addr);
    sender_cfg.initial_segment_size = policy.initial_size();
    sender_cfg.pacing_rate = opts.pacing_rate;
    let mut camera = Camera::new(
        CameraConfig {
            fps: opts.fps,
            frames: opts.frames,
            frame_bytes: opts.frame_bytes,
            start_at: clock.now(),
        },
        Sender::new(sender_cfg),
        Box::new(content),
    );

    let started = std::time::Instant::now();
    let sent = {
        let rx = driver::run(&mut sink, &rx_socket, &clock);
        let tx = driver::run(&mut camera, &tx_socket, &clock);
        tokio::select! {
            r = tx => r,
            r = rx => r,
        }
    };
    sent?;
    // Let the receiver's last ACKs settle nothing further: the camera has every answer it
    // waits for (acknowledged or given up), so the run is over.
    let wall = started.elapsed();
    let cam = camera.report();
    let sink_report = sink.report();
    let active = Duration::from_secs_f64((cam.last_ack_at_s - cam.first_frame_at_s).max(1e-6));
    Ok(TransferReport {
        frames_sent: cam.frames_sent,
        frames_delivered: cam.frames_delivered,
        frames_dropped: cam.frames_dropped,
        frames_corrupted: sink_report.frames_corrupted,
        latency_ms_p50: cam.latency_ms_p50,
        latency_ms_p99: cam.latency_ms_p99,
        goodput_bytes_per_s: cam.bytes_delivered as f64 / active.as_secs_f64(),
        segments_sent: cam.segments_sent,
        segments_resent: cam.segments_resent,
        final_segment_size: cam.final_segment_size,
        policy: opts.policy.to_string(),
        fec: opts.fec.to_string(),
        repair_ratio: {
            let st = camera.sender().stats();
            st.repair_bytes as f64 / st.data_bytes.max(1) as f64
        },
        loss: opts.loss,
        seed: opts.seed,
        datagrams_lost_by_link: tx_socket.link_stats().lost() + rx_socket.link_stats().lost(),
        wall_seconds: wall.as_secs_f64(),
    })
}
