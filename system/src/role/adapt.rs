//! Source adaptation: the picture a camera takes to fit the rate its sender may use.
//!
//! The rate control ([`crate::proto::rate`]) says how many payload bytes per second the link
//! takes ([`crate::proto::Sender::source_rate`]); [`Ladder::choose`] turns that into a
//! [`Picture`]: JPEG quality first (the cheapest loss to the eye), then resolution, then frame
//! rate, each within the bounds an operator set. `set_quality`, `set_resolution` and
//! `set_fps` set the ceilings; the floors are the camera's configuration. When even the floor
//! picture at the floor rate does not fit, the camera still captures at the floor and the
//! sender's window decides: a frame that cannot start before the next one is captured is
//! dropped at the source (the newest frame wins), never queued to die.
//!
//! The size model is the synthetic camera's, and roughly a JPEG's: bytes scale with the
//! pixel count and with `0.1 + 0.9 (q/100)^1.5` of the quality `q`. A real camera's frames
//! are as long as they are; it gets the same settings and does what it can (see
//! [`super::FrameProducer::adapt`]).

use serde::Serialize;

/// A picture setting outside what any camera here captures (an operator's `set_resolution` or
/// `set_quality`, or a camera's configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PictureError(pub String);

/// Smallest picture a source captures (width, height).
pub const MIN_RESOLUTION: (u16, u16) = (64, 48);
/// Largest picture a source captures (width, height): 4K UHD.
pub const MAX_RESOLUTION: (u16, u16) = (3840, 2160);

/// Checks a requested resolution against [`MIN_RESOLUTION`]..=[`MAX_RESOLUTION`].
pub fn check_resolution(width: u16, height: u16) -> Result<(), PictureError> {
    let (min, max) = (MIN_RESOLUTION, MAX_RESOLUTION);
    if (min.0..=max.0).contains(&width) && (min.1..=max.1).contains(&height) {
        Ok(())
    } else {
        Err(PictureError(format!(
            "resolution {width}x{height} is outside {}x{}..={}x{}",
            min.0, min.1, max.0, max.1
        )))
    }
}

/// Checks a requested JPEG quality: 1..=100.
pub fn check_quality(quality: u8) -> Result<(), PictureError> {
    if (1..=100).contains(&quality) {
        Ok(())
    } else {
        Err(PictureError(format!(
            "JPEG quality {quality} is outside 1..=100"
        )))
    }
}

/// The resolution a synthetic frame of the configured size is taken at.
pub const NOMINAL_RESOLUTION: (u16, u16) = (1280, 720);
/// The JPEG quality a synthetic frame of the configured size is taken at.
pub const NOMINAL_QUALITY: u8 = 80;

/// What an operator allows and what the camera will not go below.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bounds {
    /// JPEG quality ceiling (`set_quality`) and floor.
    pub quality: (u8, u8),
    /// Resolution ceiling (`set_resolution`), width x height.
    pub resolution: (u16, u16),
    /// The smallest fraction of the ceiling's width (and height) the camera scales down to.
    pub min_scale: f64,
    /// Frame rate ceiling (`set_fps`) and floor.
    pub fps: (f64, f64),
}

impl Default for Bounds {
    /// Quality 80 down to 20, 1280 x 720 down to half, the frame rate down to 1 fps.
    fn default() -> Self {
        Bounds {
            quality: (NOMINAL_QUALITY, 20),
            resolution: NOMINAL_RESOLUTION,
            min_scale: 0.5,
            fps: (10.0, 1.0),
        }
    }
}

/// One capture's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Picture {
    pub quality: u8,
    pub width: u16,
    pub height: u16,
    pub fps: f64,
    /// The frame's expected length, for the synthetic camera its exact length.
    pub bytes: usize,
}

/// The relative size of a JPEG at quality `q` (see the module docs).
fn quality_factor(q: u8) -> f64 {
    0.1 + 0.9 * (f64::from(q.clamp(1, 100)) / 100.0).powf(1.5)
}

/// The inverse of [`quality_factor`], rounded down to a whole quality within `1..=100`.
fn quality_for(factor: f64) -> u8 {
    let x = ((factor - 0.1) / 0.9).max(0.0).powf(1.0 / 1.5) * 100.0;
    (x.floor() as u8).clamp(1, 100)
}

/// Chooses pictures. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ladder {
    pub bounds: Bounds,
    /// The length of a frame at [`NOMINAL_QUALITY`] and [`NOMINAL_RESOLUTION`].
    pub nominal_bytes: usize,
}

impl Ladder {
    /// The frame length at quality `q` and `width x height`.
    fn bytes(&self, q: u8, width: u16, height: u16) -> f64 {
        let (nw, nh) = NOMINAL_RESOLUTION;
        let area = f64::from(width) * f64::from(height) / (f64::from(nw) * f64::from(nh));
        self.nominal_bytes as f64 * area * quality_factor(q) / quality_factor(NOMINAL_QUALITY)
    }

    fn scaled(&self, scale: f64) -> (u16, u16) {
        let (w, h) = self.bounds.resolution;
        let s = |x: u16| ((f64::from(x) * scale).round() as u16).max(16);
        (s(w), s(h))
    }

    /// The best picture for `rate` payload bytes per second (`None`: no rate control, the
    /// ceilings).
    pub fn choose(&self, rate: Option<f64>) -> Picture {
        let b = &self.bounds;
        let (q_max, q_min) = (b.quality.0, b.quality.1.min(b.quality.0));
        let (fps_max, fps_min) = (b.fps.0, b.fps.1.min(b.fps.0));
        let min_scale = b.min_scale.clamp(0.05, 1.0);
        let (w, h) = b.resolution;
        let full = Picture {
            quality: q_max,
            width: w,
            height: h,
            fps: fps_max,
            bytes: self.bytes(q_max, w, h).round().max(1.0) as usize,
        };
        let Some(rate) = rate.filter(|r| r.is_finite() && *r >= 0.0) else {
            return full;
        };
        let budget = rate / fps_max.max(1e-3);
        if budget >= full.bytes as f64 {
            return full;
        }
        // Quality first.
        let q_floor_bytes = self.bytes(q_min, w, h);
        if budget >= q_floor_bytes {
            let factor = quality_factor(q_max) * budget / full.bytes as f64;
            let quality = quality_for(factor).clamp(q_min, q_max);
            return Picture {
                quality,
                bytes: self.bytes(quality, w, h).round().max(1.0) as usize,
                ..full
            };
        }
        // Then resolution, at the floor quality.
        let scale = (budget / q_floor_bytes).sqrt();
        if scale >= min_scale {
            let (width, height) = self.scaled(scale);
            return Picture {
                quality: q_min,
                width,
                height,
                fps: fps_max,
                bytes: self.bytes(q_min, width, height).round().max(1.0) as usize,
            };
        }
        // Then the frame rate, at the floor picture.
        let (width, height) = self.scaled(min_scale);
        let bytes = self.bytes(q_min, width, height).round().max(1.0);
        Picture {
            quality: q_min,
            width,
            height,
            fps: (rate / bytes).clamp(fps_min, fps_max),
            bytes: bytes as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Ladder {
        Ladder {
            bounds: Bounds::default(),
            nominal_bytes: 10_000,
        }
    }

    #[test]
    fn quality_then_resolution_then_frame_rate() {
        let l = ladder();
        let full = l.choose(Some(1e9));
        assert_eq!(
            (full.quality, full.width, full.fps, full.bytes),
            (80, 1280, 10.0, 10_000)
        );
        assert_eq!(l.choose(None), full);
        // 60 KB/s at 10 fps: 6 KB frames, by quality alone.
        let p = l.choose(Some(60_000.0));
        assert_eq!((p.width, p.fps), (1280, 10.0));
        assert!(p.quality < 80 && p.quality > 20, "{p:?}");
        assert!(p.bytes <= 6_000 && p.bytes > 5_500, "{p:?}");
        // 15 KB/s: below the floor quality's 2.6 KB at full size, so smaller pictures.
        let p = l.choose(Some(15_000.0));
        assert_eq!((p.quality, p.fps), (20, 10.0));
        assert!(p.width < 1280 && p.width >= 640, "{p:?}");
        assert!(p.bytes <= 1_500, "{p:?}");
        // 3 KB/s: the floor picture (a quarter of the floor quality's size), fewer frames.
        let p = l.choose(Some(3_000.0));
        assert_eq!((p.quality, p.width, p.height), (20, 640, 360));
        assert!(p.fps < 10.0 && p.fps >= 1.0, "{p:?}");
        assert!((p.fps * p.bytes as f64 - 3_000.0).abs() < 10.0, "{p:?}");
        // Nothing at all: the floors.
        let p = l.choose(Some(0.0));
        assert_eq!(p.fps, 1.0);
    }

    #[test]
    fn the_operators_ceilings_bound_every_choice() {
        let mut l = ladder();
        l.bounds.quality = (50, 30);
        l.bounds.resolution = (640, 480);
        l.bounds.fps = (5.0, 2.0);
        for rate in [0.0, 1e3, 1e4, 3e4, 1e5, 1e9, f64::NAN, f64::INFINITY] {
            let p = l.choose(Some(rate));
            assert!((30..=50).contains(&p.quality), "{rate} {p:?}");
            assert!(p.width <= 640 && p.height <= 480, "{rate} {p:?}");
            assert!((2.0..=5.0).contains(&p.fps), "{rate} {p:?}");
        }
    }

    #[test]
    fn the_quality_model_inverts() {
        for q in 1..=100u8 {
            let back = quality_for(quality_factor(q) + 1e-12);
            assert!(back == q || back + 1 == q, "{q} {back}");
        }
    }
}
