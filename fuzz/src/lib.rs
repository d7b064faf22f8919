//! What every livecam decoder must hold to, whatever its input: the checks the fuzz targets
//! (`fuzz_targets/*.rs`, one per decoder) run on each input libFuzzer makes.
//!
//! The same file is compiled into the main workspace's `tests/decode_props.rs`, which runs
//! every committed corpus file and proptest's inputs through these checks on each
//! `cargo test`, so the fuzzers and the always-on tests share one oracle.
//!
//! Each check returns normally for an input that is rejected cleanly or accepted
//! consistently, and panics (a finding) when a decoder panics, or when what it accepted does
//! not survive its own encoder.

use std::io::Cursor;
use std::path::Path;
use std::str::FromStr;

use livecam_experiments::Sweep;
use livecam_sim::Scenario;
use livecam_system::device::{
    parse_gpsd, CameraSpec, CapturedFrame, Fix, GpsSpec, NmeaGps, NmeaParser,
};
use livecam_system::proto::wire::{self, Command, Message};
use livecam_system::proto::PolicyKind;
use livecam_system::runtime::backend::BackendFile;
use livecam_system::runtime::service::{MobileFile, Tier1File, Tier2File};

/// The longest line an NMEA receiver's reader passes on (longer ones are counted bad).
const NMEA_MAX_LINE: usize = livecam_system::device::nmea_feed::MAX_LINE;

/// One datagram off the network: [`wire::decode`] must not panic, and whatever it accepts
/// must encode back to exactly the same bytes (the encoding is canonical: no message has two)
/// and decode again to the same message. [`wire::is_control`], the routing peek on the hot
/// path, must agree with the decoded type. New message types are covered with no change here.
pub fn wire(data: &[u8]) {
    let control = wire::is_control(data);
    let Ok(msg) = wire::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    msg.encode(&mut again);
    assert_eq!(again, data, "{} re-encodes differently", msg.name());
    assert_eq!(wire::decode(&again).as_ref(), Ok(&msg));
    let protocol = matches!(
        msg,
        Message::Segment(_)
            | Message::Parity(_)
            | Message::Nack(_)
            | Message::FrameAck(_)
            | Message::Stored(_)
            | Message::KeepAlive(_)
            | Message::PathChallenge(_)
            | Message::PathResponse(_)
            | Message::PathPing(_)
            | Message::PathEcho(_)
            | Message::PathMark(_)
            | Message::SessionTier1s(_)
            | Message::Sealed(_)
    );
    assert_eq!(control, !protocol, "is_control disagrees on {}", msg.name());
    // The other header peeks: the sealed check, and the session a session datagram names.
    assert_eq!(
        wire::is_sealed(data),
        matches!(msg, Message::Sealed(_)),
        "is_sealed disagrees on {}",
        msg.name()
    );
    let session = match &msg {
        Message::Segment(m) => Some(m.session),
        Message::Parity(m) => Some(m.session),
        Message::Nack(m) => Some(m.session),
        Message::FrameAck(m) => Some(m.session),
        Message::Stored(m) => Some(m.session),
        Message::KeepAlive(m) => Some(m.session),
        Message::PathChallenge(m) | Message::PathResponse(m) => Some(m.session),
        Message::PathPing(m) | Message::PathEcho(m) => Some(m.session),
        Message::PathMark(m) => Some(m.session),
        Message::SessionTier1s(m) => Some(m.session),
        Message::Sealed(m) => Some(m.session),
        Message::Command(m) => Some(m.client),
        Message::CommandResult(m) => Some(m.client),
        _ => None,
    };
    assert_eq!(
        wire::session_of(data),
        session,
        "session_of disagrees on {}",
        msg.name()
    );
}

/// A captured frame (the payload a tier-2 checks and stores): decoding must not panic, and a
/// frame that decodes encodes to bytes that decode to the same frame, byte for byte.
pub fn frame(data: &[u8]) {
    let Ok(f) = CapturedFrame::decode(data) else {
        return;
    };
    let once = f.encode();
    let back = CapturedFrame::decode(&once).expect("an encoded frame decodes");
    assert_eq!(back.encode(), once, "frame encoding is not stable");
    assert_eq!(back.jpeg, f.jpeg);
    assert_eq!(back.capture_ms, f.capture_ms);
    assert_eq!(back.fix.is_some(), f.fix.is_some());
}

/// A fix any GPS decoder hands on: a place on Earth, a finite speed and heading.
fn assert_plausible(fix: &Fix, from: &str) {
    assert!(
        fix.lat.is_finite() && (-90.0..=90.0).contains(&fix.lat),
        "{from}: latitude {} off the Earth",
        fix.lat
    );
    assert!(
        fix.lon.is_finite() && (-180.0..=180.0).contains(&fix.lon),
        "{from}: longitude {} off the Earth",
        fix.lon
    );
    assert!(
        fix.speed_mps.is_finite() && fix.heading_deg.is_finite(),
        "{from}: speed {} or heading {} not finite",
        fix.speed_mps,
        fix.heading_deg
    );
}

/// Bytes from an NMEA 0183 receiver (a serial port or a log file). Lines are cut the way the
/// receiver's reader cuts them and fed to [`NmeaParser`]: no panic, every non-empty line is
/// counted, the bad ones among them, each fix is plausible, and the parser's latest fix is
/// the last one it returned. The same bytes through [`NmeaGps`] (a `BufRead` source) give the
/// same latest fix when they are UTF-8.
pub fn nmea(data: &[u8]) {
    let mut parser = NmeaParser::new();
    let mut lines = 0u64;
    let mut too_long = 0u64;
    let mut last = None;
    for line in data.split(|&b| b == b'\n' || b == b'\r') {
        if line.len() > NMEA_MAX_LINE {
            parser.count_bad();
            too_long += 1;
            continue;
        }
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            lines += 1;
        }
        if let Some(fix) = parser.feed(&text) {
            assert_plausible(&fix, "NMEA");
            last = Some(fix);
        }
    }
    let stats = parser.stats();
    assert_eq!(stats.sentences, lines + too_long, "every line is counted");
    assert!(stats.bad_sentences >= too_long && stats.bad_sentences <= stats.sentences);
    assert!(stats.fixes <= stats.sentences - stats.bad_sentences);
    assert_eq!(parser.latest(), last);

    if let Ok(text) = std::str::from_utf8(data) {
        if text.lines().all(|l| l.len() <= NMEA_MAX_LINE) && !text.contains('\r') {
            let mut gps = NmeaGps::new(Cursor::new(text.as_bytes()));
            let latest = gps.read_available().expect("reading from memory");
            assert_eq!(latest, last, "NmeaGps and NmeaParser disagree");
        }
    }
}

/// Lines from gpsd's JSON protocol: no panic, and every fix is plausible.
pub fn gpsd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some(fix) = parse_gpsd(line) {
            assert_plausible(&fix, "gpsd");
        }
    }
}

/// The short texts a config or a browser gives: spec strings (camera, GPS source, size
/// policy) and a command's JSON body (`POST /api/clients/ID/commands`). No panic; a policy
/// that parses prints back to the same text, a command that parses survives a JSON round trip.
pub fn specs(data: &[u8]) {
    if let Ok(c) = serde_json::from_slice::<Command>(data) {
        let json = serde_json::to_vec(&c).expect("a command serializes");
        assert_eq!(serde_json::from_slice::<Command>(&json).ok(), Some(c));
    }
    let text = String::from_utf8_lossy(data);
    let _ = CameraSpec::parse(&text);
    let _ = GpsSpec::parse(&text);
    if let Ok(p) = PolicyKind::from_str(&text) {
        let printed: String = p.into();
        assert_eq!(
            PolicyKind::from_str(&printed),
            Ok(p),
            "{text:?} -> {printed:?}"
        );
    }
}

/// Parses `text` as a config of type `T`; one that is accepted serializes to TOML that is
/// accepted again as the same config.
macro_rules! config_round_trip {
    ($t:ty, $text:expr) => {
        let path = Path::new("fuzz.toml");
        if let Ok(c) = <$t>::parse($text, path) {
            let printed = toml::to_string(&c).expect("an accepted config serializes");
            let again = <$t>::parse(&printed, path)
                .unwrap_or_else(|e| panic!("{printed}\nis not accepted again: {e}"));
            assert_eq!(again, c, "{printed}");
        }
    };
}

/// A role's or the backend's config file: each parser must not panic, and a config it
/// accepts must survive being written out and read back.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    config_round_trip!(Tier1File, text);
    config_round_trip!(Tier2File, text);
    config_round_trip!(MobileFile, text);
    config_round_trip!(BackendFile, text);
}

/// A simulator scenario: no panic, and a scenario that is accepted can be laid out (its hosts
/// expanded, its names resolved) without panicking either.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = Scenario::parse(text) {
        // Every host resolves to itself alone, and every group to its members in order:
        // resolving costs a pass over the specs, so this stays linear in the hosts.
        let hosts = s.hosts();
        let mut group: &[livecam_sim::scenario::Host] = &[];
        for (i, h) in hosts.iter().enumerate() {
            assert_eq!(h.index, i, "host {} has index {}", h.name, h.index);
            assert_eq!(
                s.resolve(&h.name),
                std::slice::from_ref(h),
                "host {} resolves",
                h.name
            );
            if h.member == 0 {
                let end = hosts[i..]
                    .iter()
                    .position(|x| x.group != h.group)
                    .map_or(hosts.len(), |n| i + n);
                group = &hosts[i..end];
                if group.len() > 1 {
                    assert_eq!(s.resolve(&h.group), group, "group {} resolves", h.group);
                }
            }
            assert_eq!(group.get(h.member), Some(h), "host {} in its group", h.name);
        }
        let _ = s.frames_per_camera();
    }
}

/// An experiment sweep file: no panic (nor unbounded memory) however many points it asks
/// for, and every point of an accepted sweep renders to a scenario that is accepted.
pub fn sweep(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = Sweep::parse("fuzz.toml", text) {
        for p in &s.points {
            s.scenario(p)
                .expect("an accepted sweep's points are scenarios");
        }
    }
}

/// One fuzz target's check: it panics on a finding.
pub type Check = fn(&[u8]);

/// The checks by target name, for the corpus replay in the main workspace's tests.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire", wire),
    ("frame", frame),
    ("nmea", nmea),
    ("gpsd", gpsd),
    ("specs", specs),
    ("config", config),
    ("scenario", scenario),
    ("sweep", sweep),
];
