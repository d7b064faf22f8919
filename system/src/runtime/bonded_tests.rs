//! A bonded mobile client over real UDP sockets: the roles with keys on loopback, run by the
//! one driver loop on tokio, the client with two uplinks bound to two local addresses
//! (`127.0.0.1` and `127.0.0.2`: Linux routes all of 127/8 to `lo`).

use std::time::Duration;

use super::socket::{bind, Uplink};
use crate::cluster::{ClientConfig, Connector, Tier1, Tier1Config, Tier2, Tier2Config};
use crate::driver;
use crate::metrics::{Observed, RoleMetrics};
use crate::net::{Clock, TokioClock};
use crate::proto::{Receiver, ReceiverConfig, Sender, SenderConfig};
use crate::role::{
    Camera, CameraConfig, FrameContent, Mobile, MobileConfig, Sink, Tier1Server, Tier2Server,
};
use crate::secure::{DeviceRegistry, DeviceSecurity, Entropy, Gate, StaticKey};

#[tokio::test(flavor = "current_thread")]
async fn a_bonded_client_streams_over_both_of_its_sockets() {
    let mut e = Entropy::seeded(80);
    let cluster = StaticKey::generate(&mut e);
    let device = StaticKey::generate(&mut e);
    let mut devices = DeviceRegistry::new();
    devices.insert(7, device.public());
    let t1_socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let t2_socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let uplinks = [
        Uplink::parse("127.0.0.1").unwrap().bind().unwrap(),
        Uplink::parse("127.0.0.2").unwrap().bind().unwrap(),
    ];
    let t1 = t1_socket.local_addr().unwrap();
    let clock = TokioClock::new();
    let now = clock.now();
    let mut tier1 = Tier1Server::new(Tier1::new(Tier1Config::new(1, t1, Vec::new()), now), None);
    let tier2 = Tier2::new(Tier2Config::new(11, vec![t1]), now).with_gate(Gate::new(
        cluster.clone(),
        devices,
        Entropy::seeded(81),
    ));
    let sink = Sink::new(
        Receiver::new(ReceiverConfig::default()),
        Box::new(FrameContent { seed: 1 }),
    );
    let mut tier2 = Tier2Server::new(tier2, sink);
    let camera = Camera::new(
        CameraConfig {
            fps: 20.0,
            frames: 30,
            frame_bytes: 6000,
            start_at: now + Duration::from_millis(300),
        },
        Sender::new(SenderConfig::new(7, t2_socket.local_addr().unwrap())),
        Box::new(FrameContent { seed: 1 }),
    );
    let dev = DeviceSecurity::new(device, cluster.public(), 0, Entropy::seeded(82));
    let connector = Connector::new(ClientConfig::new(7, vec![t1])).with_security(dev);
    let cfg = MobileConfig {
        uplinks: 2,
        ..MobileConfig::default()
    };
    let mut mobile = Mobile::new(cfg, connector, camera);
    let sockets: Vec<&tokio::net::UdpSocket> = uplinks.iter().collect();
    let run = async {
        tokio::select! {
            r = driver::run(&mut tier1, &t1_socket, &clock) => r,
            r = driver::run(&mut tier2, &t2_socket, &clock) => r,
            r = driver::run_uplinks(&mut mobile, &sockets, &clock) => r,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the camera finishes")
        .expect("no socket error");
    let report = mobile.camera().report();
    assert_eq!(report.frames_delivered, 30, "{report:?}");
    let bond = mobile.bond().expect("a bonded session");
    let stats = bond.stats();
    assert!(
        stats.iter().all(|u| u.datagrams > 20 && u.echoes > 0),
        "{stats:?}"
    );
    // An operator sees both uplinks carry.
    let m = RoleMetrics::default();
    mobile.mirror(&m);
    let text = m.encode();
    for uplink in ["0", "1"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "livecam_uplink_bytes_total{{uplink=\"{uplink}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("uplink {uplink} in {text}"));
        let bytes: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(bytes > 20_000, "{line}");
    }
    // Every copy opened: the tier-2's ACKs and NACKs by both paths were each sealed on their
    // own, so none was taken for a replay, and nothing the client sent was refused.
    assert_eq!(mobile.rejected(), 0);
    assert_eq!(tier2.rejected(), 0);
    // The second uplink proved itself with one challenge, and is answered on.
    assert_eq!(
        tier2.paths().stats().validated,
        1,
        "{:?}",
        tier2.paths().stats()
    );
}
