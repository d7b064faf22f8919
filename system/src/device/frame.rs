//! A captured frame as it travels: capture time, the latest GPS fix, and the JPEG, with a
//! CRC-32C of the JPEG so the receiving side can check it end to end.
//!
//! ```text
//! "LF" | version u8 | flags u8 (bit 0: fix present) | capture_ms u64
//!      | lat f64 | lon f64 | speed_mps f32 | heading_deg f32 | fix_time_ms u64
//!      | jpeg_len u32 | jpeg_crc32c u32 | jpeg
//! ```
//! Big-endian. Decoding never panics and names what is wrong.

use thiserror::Error;

use super::camera::{CameraError, FrameSource};
use super::gps::{Fix, GpsSource};
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::Command;
use crate::role::adapt::{check_quality, check_resolution};
use crate::role::{FrameCheck, FrameProducer};
use crate::time::Instant;

const MAGIC: [u8; 2] = *b"LF";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 2 + 1 + 1 + 8 + 8 + 8 + 4 + 4 + 8 + 4 + 4;

/// A frame that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame too short: {0} bytes")]
    TooShort(usize),
    #[error("not a livecam frame")]
    BadMagic,
    #[error("unsupported frame version {0}")]
    Version(u8),
    #[error("JPEG length {stated} does not match the {actual} bytes that follow")]
    Length { stated: usize, actual: usize },
    #[error("JPEG checksum mismatch: frame damaged")]
    Checksum,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedFrame {
    /// Capture time, milliseconds on the client's clock.
    pub capture_ms: u64,
    pub fix: Option<Fix>,
    pub jpeg: Vec<u8>,
}

impl CapturedFrame {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + self.jpeg.len());
        b.put_bytes(&MAGIC);
        b.put_u8(VERSION);
        b.put_u8(u8::from(self.fix.is_some()));
        b.put_u64(self.capture_ms);
        let f = self.fix.unwrap_or(Fix {
            lat: 0.0,
            lon: 0.0,
            speed_mps: 0.0,
            heading_deg: 0.0,
            fix_time_ms: 0,
        });
        b.put_f64(f.lat);
        b.put_f64(f.lon);
        b.put_f32(f.speed_mps as f32);
        b.put_f32(f.heading_deg as f32);
        b.put_u64(f.fix_time_ms);
        b.put_u32(self.jpeg.len() as u32);
        b.put_u32(crc32c::crc32c(&self.jpeg));
        b.put_bytes(&self.jpeg);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort(bytes.len()));
        }
        // Every read below is within the checked length: a short read is still only an error.
        let short = |_| FrameError::TooShort(bytes.len());
        let mut r = Reader::new(bytes);
        if r.array::<2>().map_err(short)? != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let version = r.u8().map_err(short)?;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let has_fix = r.u8().map_err(short)? & 1 != 0;
        let capture_ms = r.u64().map_err(short)?;
        let lat = r.f64().map_err(short)?;
        let lon = r.f64().map_err(short)?;
        let speed = r.f32().map_err(short)?;
        let heading = r.f32().map_err(short)?;
        let fix_time_ms = r.u64().map_err(short)?;
        let len = r.u32().map_err(short)? as usize;
        let crc = r.u32().map_err(short)?;
        let jpeg = r.rest();
        if jpeg.len() != len {
            return Err(FrameError::Length {
                stated: len,
                actual: jpeg.len(),
            });
        }
        if crc32c::crc32c(jpeg) != crc {
            return Err(FrameError::Checksum);
        }
        Ok(CapturedFrame {
            capture_ms,
            fix: has_fix.then_some(Fix {
                lat,
                lon,
                speed_mps: f64::from(speed),
                heading_deg: f64::from(heading),
                fix_time_ms,
            }),
            jpeg: jpeg.to_vec(),
        })
    }
}

/// Frames from a camera, each with the latest fix of a GPS source. Picture-setting commands
/// (resolution, JPEG quality) reach the camera through [`FrameProducer::apply`].
pub struct DeviceFrames<C> {
    pub camera: C,
    pub gps: Box<dyn GpsSource>,
    /// The role time at which the wall clock read the given milliseconds since the Unix
    /// epoch: capture times are wall-clock times, so the tier-2 and the browser (on clocks kept
    /// by NTP) can tell how old a picture is. `(Instant::ZERO, 0)` stamps role time.
    pub wall_origin: (Instant, u64),
    pub errors: u64,
    /// The camera refused a quality rate adaptation chose (said once).
    pub adapt_refused: bool,
}

impl<C: FrameSource + Send> FrameProducer for DeviceFrames<C> {
    fn produce(&mut self, _session: u32, frame: u32, now: Instant, _len: usize) -> Vec<u8> {
        let (at, unix_ms) = self.wall_origin;
        let since = now.saturating_duration_since(at).as_millis();
        let capture_ms = unix_ms.saturating_add(u64::try_from(since).unwrap_or(u64::MAX));
        let jpeg = match self.camera.capture(u64::from(frame), capture_ms) {
            Ok(j) => j,
            Err(e) => {
                self.errors += 1;
                tracing::warn!(error = %e, "camera failed; sending an empty picture");
                Vec::new()
            }
        };
        CapturedFrame {
            capture_ms,
            fix: self.gps.fix(now),
            jpeg,
        }
        .encode()
    }

    fn apply(&mut self, command: &Command) -> Result<(), String> {
        match *command {
            Command::SetResolution { width, height } => check_resolution(width, height)
                .map_err(CameraError::from)
                .and_then(|()| self.camera.set_resolution(width, height))
                .map_err(|e| e.to_string()),
            Command::SetQuality { quality } => check_quality(quality)
                .map_err(CameraError::from)
                .and_then(|()| self.camera.set_quality(quality))
                .map_err(|e| e.to_string()),
            ref other => Err(format!(
                "{other:?} is not a picture setting: the frame source takes only resolution and quality"
            )),
        }
    }

    /// Rate adaptation's picture: the JPEG quality is set on the camera (the synthetic,
    /// folder and nokhwa cameras each take it or say why not, once); the resolution is left
    /// at the operator's setting, because changing a real camera's format mid-stream stalls
    /// capture for hundreds of milliseconds.
    fn adapt(&mut self, picture: &crate::role::adapt::Picture) {
        if let Err(e) = self.camera.set_quality(picture.quality) {
            if !self.adapt_refused {
                self.adapt_refused = true;
                tracing::warn!(error = %e, "the camera cannot follow rate adaptation's quality");
            }
        }
    }
}

/// A receiver's check of captured frames: they decode and their JPEG checksum holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapturedCheck;

impl FrameCheck for CapturedCheck {
    fn is_intact(&self, _session: u32, _frame: u32, data: &[u8]) -> bool {
        CapturedFrame::decode(data).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{City, SyntheticCamera, SyntheticRoute, SyntheticSettings};
    use proptest::prelude::*;

    /// The frame layout, byte for byte: stored frames must keep decoding.
    #[test]
    fn golden_frame_bytes() {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let with = CapturedFrame {
            capture_ms: 1_700_000_000_123,
            fix: Some(Fix {
                lat: 52.5,
                lon: -13.25,
                speed_mps: 4.5,
                heading_deg: 270.0,
                fix_time_ms: 1_700_000_000_000,
            }),
            jpeg: vec![0xff, 0xd8, 1, 2, 0xff, 0xd9],
        };
        let without = CapturedFrame {
            capture_ms: 5,
            fix: None,
            jpeg: vec![7],
        };
        for (f, want) in [(with, "4c4601010000018bcfe5687b404a400000000000c02a80000000000040900000438700000000018bcfe56800000000066f8f6157ffd80102ffd9"), (without, "4c460100000000000000000500000000000000000000000000000000000000000000000000000000000000000000000186b737ba07")] {
            let bytes = f.encode();
            assert_eq!(hex(&bytes), want);
            assert_eq!(CapturedFrame::decode(&bytes), Ok(f));
        }
    }

    #[test]
    fn device_frames_carry_a_jpeg_and_the_fix_and_detect_damage() {
        let mut frames = DeviceFrames {
            camera: SyntheticCamera::new(7, SyntheticSettings::default()),
            gps: Box::new(SyntheticRoute::new(City::default(), 10.0, 1, Instant::ZERO)),
            wall_origin: (Instant::from_millis(1000), 1_700_000_000_000),
            errors: 0,
            adapt_refused: false,
        };
        let bytes = frames.produce(7, 3, Instant::from_millis(1500), 0);
        let f = CapturedFrame::decode(&bytes).unwrap();
        assert_eq!(f.capture_ms, 1_700_000_000_500, "wall-clock capture time");
        assert!(f.jpeg.starts_with(&[0xff, 0xd8]));
        let fix = f.fix.unwrap();
        assert!((fix.lat - City::default().centre_lat).abs() < 0.02);
        assert!(CapturedCheck.is_intact(7, 3, &bytes));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 10;
        damaged[last] ^= 1;
        assert!(!CapturedCheck.is_intact(7, 3, &damaged));
        assert_eq!(CapturedFrame::decode(&damaged), Err(FrameError::Checksum));
    }

    fn frames_of(camera: Box<dyn FrameSource + Send>) -> DeviceFrames<Box<dyn FrameSource + Send>> {
        DeviceFrames {
            camera,
            gps: Box::new(SyntheticRoute::new(City::default(), 10.0, 1, Instant::ZERO)),
            wall_origin: (Instant::ZERO, 0),
            errors: 0,
            adapt_refused: false,
        }
    }

    fn picture_size(bytes: &[u8]) -> (u16, u16) {
        let f = CapturedFrame::decode(bytes).unwrap();
        let mut dec = jpeg_decoder::Decoder::new(&f.jpeg[..]);
        dec.decode().unwrap();
        let info = dec.info().unwrap();
        (info.width, info.height)
    }

    #[test]
    fn picture_commands_reach_the_camera_and_others_are_refused() {
        let mut frames = frames_of(Box::new(SyntheticCamera::new(
            7,
            SyntheticSettings::default(),
        )));
        let before = frames.produce(7, 1, Instant::from_millis(100), 0);
        assert_eq!(picture_size(&before), (320, 240));
        frames
            .apply(&Command::SetResolution {
                width: 640,
                height: 360,
            })
            .unwrap();
        let big = frames.produce(7, 2, Instant::from_millis(200), 0);
        assert_eq!(picture_size(&big), (640, 360));
        frames.apply(&Command::SetQuality { quality: 10 }).unwrap();
        let small = frames.produce(7, 3, Instant::from_millis(300), 0);
        assert_eq!(picture_size(&small), (640, 360));
        assert!(
            small.len() * 2 < big.len(),
            "{} vs {}",
            small.len(),
            big.len()
        );

        let e = frames
            .apply(&Command::SetResolution {
                width: 7680,
                height: 4320,
            })
            .unwrap_err();
        assert!(e.contains("7680x4320") && e.contains("3840x2160"), "{e}");
        let e = frames
            .apply(&Command::SetQuality { quality: 0 })
            .unwrap_err();
        assert!(e.contains("1..=100"), "{e}");
        for other in [
            Command::SetFps { milli_fps: 5000 },
            Command::Snapshot,
            Command::Start,
            Command::Stop,
        ] {
            let e = frames.apply(&other).unwrap_err();
            assert!(e.contains("not a picture setting"), "{e}");
            assert!(e.len() <= crate::proto::wire::MAX_REASON_LEN, "{e}");
        }
        // Refused commands changed nothing.
        let after = frames.produce(7, 4, Instant::from_millis(400), 0);
        assert_eq!(picture_size(&after), (640, 360));
        assert_eq!(frames.errors, 0);
    }

    #[test]
    fn a_replayed_folder_refuses_picture_commands_with_its_reason() {
        let dir = std::env::temp_dir().join(format!("livecam-apply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jpeg = SyntheticCamera::new(1, SyntheticSettings::default())
            .capture(0, 0)
            .unwrap();
        std::fs::write(dir.join("a.jpg"), &jpeg).unwrap();
        let mut frames = frames_of(Box::new(crate::device::FolderReplay::open(&dir).unwrap()));
        let e = frames
            .apply(&Command::SetQuality { quality: 50 })
            .unwrap_err();
        assert!(e.contains("as they are"), "{e}");
        let f = CapturedFrame::decode(&frames.produce(1, 1, Instant::ZERO, 0)).unwrap();
        assert_eq!(f.jpeg, jpeg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CapturedFrame::decode(&bytes);
        }
    }
}
