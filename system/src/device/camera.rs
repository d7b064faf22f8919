//! Camera sources: where a mobile client's frames come from.
//!
//! - [`SyntheticCamera`]: renders a moving test picture with the vehicle id, frame number and
//!   time into a real JPEG (about 10 KB at the default 320 x 240, quality 85).
//! - [`FolderReplay`]: the JPEG files of a folder, in name order, round and round.
//! - `NokhwaCamera` (module `capture`, cargo feature `camera`): a real camera through nokhwa
//!   (V4L2 on Linux).
//!
//! Picture settings (resolution, JPEG quality) change at run time through
//! [`FrameSource::set_resolution`] and [`FrameSource::set_quality`]; every source checks them
//! against the same bounds ([`check_resolution`], [`check_quality`]).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::role::adapt::{check_quality, check_resolution, PictureError};
use crate::role::adapt::{MAX_RESOLUTION, MIN_RESOLUTION};

/// A camera that cannot deliver.
#[derive(Debug, Error)]
pub enum CameraError {
    #[error("encoding a JPEG: {0}")]
    Encode(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no .jpg or .jpeg files")]
    Empty(String),
    #[error("{path}: not a JPEG (no SOI marker)")]
    NotJpeg { path: String },
    /// A picture setting out of bounds.
    #[error("{0}")]
    Setting(String),
    /// A setting this source cannot change.
    #[error("{0}")]
    Unsupported(String),
    /// The camera device does not exist.
    #[error("no camera at {0}")]
    NoCamera(String),
    /// The camera device exists but failed (busy, no permission, unplugged, bad frame).
    #[error("camera {device}: {message}")]
    Device { device: String, message: String },
}

impl From<PictureError> for CameraError {
    fn from(e: PictureError) -> Self {
        CameraError::Setting(e.0)
    }
}

/// Anything that produces JPEG frames.
pub trait FrameSource {
    /// The next frame's JPEG bytes. `frame` and `time_ms` are what the picture may show.
    fn capture(&mut self, frame: u64, time_ms: u64) -> Result<Vec<u8>, CameraError>;

    /// Captures at `width` x `height` from the next frame on. Err (and no change) when the
    /// resolution is out of bounds or the source cannot give it.
    fn set_resolution(&mut self, width: u16, height: u16) -> Result<(), CameraError>;

    /// Encodes at JPEG quality `quality` (1..=100) from the next frame on. Err (and no change)
    /// when out of bounds or the source cannot change it.
    fn set_quality(&mut self, quality: u8) -> Result<(), CameraError>;
}

impl<T: FrameSource + ?Sized> FrameSource for Box<T> {
    fn capture(&mut self, frame: u64, time_ms: u64) -> Result<Vec<u8>, CameraError> {
        (**self).capture(frame, time_ms)
    }
    fn set_resolution(&mut self, width: u16, height: u16) -> Result<(), CameraError> {
        (**self).set_resolution(width, height)
    }
    fn set_quality(&mut self, quality: u8) -> Result<(), CameraError> {
        (**self).set_quality(quality)
    }
}

/// What the synthetic camera renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSettings {
    pub width: u16,
    pub height: u16,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

impl Default for SyntheticSettings {
    fn default() -> Self {
        SyntheticSettings {
            width: 320,
            height: 240,
            quality: 85,
        }
    }
}

/// A moving test picture: colour bars drifting sideways, a bouncing block, and a caption with
/// the vehicle id, frame number and time.
#[derive(Debug, Clone)]
pub struct SyntheticCamera {
    vehicle: u32,
    settings: SyntheticSettings,
    pixels: Vec<u8>,
}

impl SyntheticCamera {
    /// A camera for `vehicle`. Settings out of bounds are brought within them (use
    /// [`check_resolution`] and [`check_quality`] first to refuse them instead).
    pub fn new(vehicle: u32, settings: SyntheticSettings) -> Self {
        let settings = SyntheticSettings {
            width: settings.width.clamp(MIN_RESOLUTION.0, MAX_RESOLUTION.0),
            height: settings.height.clamp(MIN_RESOLUTION.1, MAX_RESOLUTION.1),
            quality: settings.quality.clamp(1, 100),
        };
        SyntheticCamera {
            vehicle,
            settings,
            pixels: vec![0; usize::from(settings.width) * usize::from(settings.height) * 3],
        }
    }

    /// What it renders now.
    pub fn settings(&self) -> SyntheticSettings {
        self.settings
    }

    fn render(&mut self, frame: u64) {
        let (w, h) = (
            usize::from(self.settings.width),
            usize::from(self.settings.height),
        );
        let shift = (frame as usize * 3) % w;
        for y in 0..h {
            for x in 0..w {
                let bar = ((x + shift) * 8 / w) % 8;
                let shade = (y * 255 / h) as u8;
                let (r, g, b) = (
                    if bar & 1 != 0 { 230 } else { shade / 3 },
                    if bar & 2 != 0 { 210 } else { shade / 2 },
                    if bar & 4 != 0 { 220 } else { 255 - shade / 2 },
                );
                let i = (y * w + x) * 3;
                self.pixels[i..i + 3].copy_from_slice(&[r, g, b]);
            }
        }
        // A block bouncing across the picture.
        let span = w.saturating_sub(40).max(1);
        let phase = (frame as usize * 5) % (2 * span);
        let bx = if phase < span {
            phase
        } else {
            2 * span - phase
        };
        self.fill(bx, h / 2 - 20, 40, 40, [250, 250, 40]);
        self.fill(0, h - 28, w, 28, [16, 16, 16]);
    }

    fn fill(&mut self, x0: usize, y0: usize, fw: usize, fh: usize, rgb: [u8; 3]) {
        let (w, h) = (
            usize::from(self.settings.width),
            usize::from(self.settings.height),
        );
        for y in y0..(y0 + fh).min(h) {
            for x in x0..(x0 + fw).min(w) {
                let i = (y * w + x) * 3;
                self.pixels[i..i + 3].copy_from_slice(&rgb);
            }
        }
    }

    /// Draws `text` in the 5x7 font, scaled 2x, from (x0, y0).
    fn text(&mut self, x0: usize, y0: usize, text: &str) {
        for (n, c) in text.chars().enumerate() {
            let rows = glyph(c);
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill(x0 + n * 12 + col * 2, y0 + row * 2, 2, 2, [255, 255, 255]);
                    }
                }
            }
        }
    }
}

impl FrameSource for SyntheticCamera {
    fn capture(&mut self, frame: u64, time_ms: u64) -> Result<Vec<u8>, CameraError> {
        self.render(frame);
        let caption = format!(
            "CAR {} F {} T {}.{:03}",
            self.vehicle,
            frame,
            time_ms / 1000,
            time_ms % 1000
        );
        let y = usize::from(self.settings.height) - 21;
        self.text(6, y, &caption);
        let mut out = Vec::with_capacity(16 * 1024);
        jpeg_encoder::Encoder::new(&mut out, self.settings.quality)
            .encode(
                &self.pixels,
                self.settings.width,
                self.settings.height,
                jpeg_encoder::ColorType::Rgb,
            )
            .map_err(|e| CameraError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn set_resolution(&mut self, width: u16, height: u16) -> Result<(), CameraError> {
        check_resolution(width, height)?;
        self.settings.width = width;
        self.settings.height = height;
        self.pixels = vec![0; usize::from(width) * usize::from(height) * 3];
        Ok(())
    }

    fn set_quality(&mut self, quality: u8) -> Result<(), CameraError> {
        check_quality(quality)?;
        self.settings.quality = quality;
        Ok(())
    }
}

/// 5x7 glyphs, a row a byte (bit 4 leftmost), for what captions need.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'C' => [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e],
        'F' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        _ => [0; 7],
    }
}

/// The JPEG files of a folder, in name order, replayed round and round.
#[derive(Debug, Clone)]
pub struct FolderReplay {
    files: Vec<PathBuf>,
    next: usize,
}

impl FolderReplay {
    pub fn open(dir: &Path) -> Result<Self, CameraError> {
        let read = |source| CameraError::Read {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg")
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CameraError::Empty(dir.display().to_string()));
        }
        Ok(FolderReplay { files, next: 0 })
    }
}

impl FrameSource for FolderReplay {
    fn capture(&mut self, _frame: u64, _time_ms: u64) -> Result<Vec<u8>, CameraError> {
        let path = &self.files[self.next % self.files.len()];
        self.next = (self.next + 1) % self.files.len();
        let bytes = std::fs::read(path).map_err(|source| CameraError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if !bytes.starts_with(&[0xff, 0xd8]) {
            return Err(CameraError::NotJpeg {
                path: path.display().to_string(),
            });
        }
        Ok(bytes)
    }

    fn set_resolution(&mut self, width: u16, height: u16) -> Result<(), CameraError> {
        check_resolution(width, height)?;
        Err(CameraError::Unsupported(
            "folder replay sends its JPEG files as they are: resolution cannot change".into(),
        ))
    }

    fn set_quality(&mut self, quality: u8) -> Result<(), CameraError> {
        check_quality(quality)?;
        Err(CameraError::Unsupported(
            "folder replay sends its JPEG files as they are: quality cannot change".into(),
        ))
    }
}

/// What a camera is opened with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraSettings {
    /// The vehicle's id, which the synthetic picture shows.
    pub vehicle: u32,
    pub width: u16,
    pub height: u16,
    /// Frames per second a real camera is asked for.
    pub fps: f64,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

impl Default for CameraSettings {
    fn default() -> Self {
        let s = SyntheticSettings::default();
        CameraSettings {
            vehicle: 0,
            width: s.width,
            height: s.height,
            fps: 10.0,
            quality: s.quality,
        }
    }
}

impl CameraSettings {
    /// Checks resolution, quality and frame rate.
    pub fn check(&self) -> Result<(), CameraError> {
        check_resolution(self.width, self.height)?;
        check_quality(self.quality)?;
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 1000.0) {
            return Err(CameraError::Setting(format!(
                "frame rate {} is not within (0, 1000]",
                self.fps
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_camera_makes_real_jpegs_of_about_10_kb_that_move() {
        let mut cam = SyntheticCamera::new(1001, SyntheticSettings::default());
        let a = cam.capture(0, 0).unwrap();
        let b = cam.capture(7, 700).unwrap();
        for jpeg in [&a, &b] {
            assert!(jpeg.starts_with(&[0xff, 0xd8]) && jpeg.ends_with(&[0xff, 0xd9]));
            assert!(
                (6_000..=16_000).contains(&jpeg.len()),
                "{} bytes",
                jpeg.len()
            );
            let mut dec = jpeg_decoder::Decoder::new(&jpeg[..]);
            let pixels = dec.decode().expect("a JPEG a viewer opens");
            let info = dec.info().unwrap();
            assert_eq!((info.width, info.height), (320, 240));
            assert_eq!(pixels.len(), 320 * 240 * 3);
        }
        assert_ne!(a, b, "the picture moves");
    }

    #[test]
    fn folder_replay_cycles_the_jpegs_in_name_order() {
        let dir = std::env::temp_dir().join(format!("livecam-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cam = SyntheticCamera::new(1, SyntheticSettings::default());
        for (name, frame) in [("b.jpg", 2), ("a.JPG", 1)] {
            std::fs::write(dir.join(name), cam.capture(frame, 0).unwrap()).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a frame").unwrap();
        let mut replay = FolderReplay::open(&dir).unwrap();
        let first = replay.capture(0, 0).unwrap();
        let second = replay.capture(1, 0).unwrap();
        assert_eq!(first, std::fs::read(dir.join("a.JPG")).unwrap());
        assert_eq!(second, std::fs::read(dir.join("b.jpg")).unwrap());
        assert_eq!(replay.capture(2, 0).unwrap(), first);
        std::fs::write(dir.join("c.jpg"), "not a jpeg").unwrap();
        let mut replay = FolderReplay::open(&dir).unwrap();
        replay.capture(0, 0).unwrap();
        replay.capture(0, 0).unwrap();
        assert!(matches!(
            replay.capture(0, 0),
            Err(CameraError::NotJpeg { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let empty = std::env::temp_dir().join(format!("livecam-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(
            FolderReplay::open(&empty),
            Err(CameraError::Empty(_))
        ));
        let _ = std::fs::remove_dir_all(&empty);
    }

    fn decoded_size(jpeg: &[u8]) -> (u16, u16) {
        let mut dec = jpeg_decoder::Decoder::new(jpeg);
        dec.decode().expect("a JPEG a viewer opens");
        let info = dec.info().unwrap();
        (info.width, info.height)
    }

    #[test]
    fn the_synthetic_camera_changes_resolution_and_quality_at_run_time() {
        let mut cam = SyntheticCamera::new(5, SyntheticSettings::default());
        let q85 = cam.capture(3, 0).unwrap();
        cam.set_quality(20).unwrap();
        let q20 = cam.capture(3, 0).unwrap();
        assert!(
            q20.len() * 2 < q85.len(),
            "quality 20 gave {} bytes, 85 gave {}",
            q20.len(),
            q85.len()
        );
        cam.set_resolution(640, 480).unwrap();
        assert_eq!(decoded_size(&cam.capture(4, 0).unwrap()), (640, 480));
        cam.set_resolution(64, 48).unwrap();
        assert_eq!(decoded_size(&cam.capture(5, 0).unwrap()), (64, 48));
        // Out of bounds: refused, settings unchanged.
        for (w, h) in [(63, 48), (64, 47), (3841, 2160), (3840, 2161), (0, 0)] {
            let e = cam.set_resolution(w, h).unwrap_err();
            assert!(e.to_string().contains(&format!("{w}x{h}")), "{e}");
        }
        for q in [0, 101, 255] {
            assert!(matches!(cam.set_quality(q), Err(CameraError::Setting(_))));
        }
        assert_eq!(
            cam.settings(),
            SyntheticSettings {
                width: 64,
                height: 48,
                quality: 20
            }
        );
    }

    #[test]
    fn folder_replay_refuses_picture_settings_and_says_why() {
        let dir = std::env::temp_dir().join(format!("livecam-replay-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cam = SyntheticCamera::new(1, SyntheticSettings::default());
        std::fs::write(dir.join("a.jpg"), cam.capture(0, 0).unwrap()).unwrap();
        let mut replay = FolderReplay::open(&dir).unwrap();
        let e = replay.set_resolution(640, 480).unwrap_err();
        assert!(matches!(e, CameraError::Unsupported(_)));
        assert!(e.to_string().contains("as they are"), "{e}");
        assert!(matches!(
            replay.set_quality(50),
            Err(CameraError::Unsupported(_))
        ));
        // Bounds are checked first, whatever the source.
        assert!(matches!(
            replay.set_quality(0),
            Err(CameraError::Setting(_))
        ));
        assert_eq!(
            replay.capture(0, 0).unwrap(),
            std::fs::read(dir.join("a.jpg")).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
