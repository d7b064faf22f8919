//! Real capture (cargo feature `camera`): a camera opened through nokhwa (V4L2 on Linux),
//! its frames re-encoded as JPEG at the configured quality.
//!
//! The camera is asked for the mode nearest the configured resolution and frame rate
//! ([`choose_mode`]), preferring MJPEG (a USB 2 camera gives its higher resolutions at full
//! frame rate only so), then YUYV, NV12, RGB, BGR and grey. Every frame is decoded to RGB and
//! encoded again with `jpeg-encoder` rather than sent as the camera's MJPEG: the quality must
//! be the configured (and browser-commanded) one, which few UVC cameras let software set, and
//! many cameras' MJPEG frames leave out the Huffman tables, which not every viewer opens.
//!
//! A capture blocks until the camera's next frame; the camera runs at the
//! frame rate nearest the configured one, so a capture waits at most about one frame time.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nokhwa::utils::{
    nv12_to_rgb, yuyv422_to_rgb, CameraFormat, CameraIndex, FrameFormat, RequestedFormat,
    RequestedFormatType, Resolution,
};
use nokhwa::Camera;

use super::camera::{CameraError, CameraSettings, FrameSource};
use crate::role::adapt::{check_quality, check_resolution};

/// The pixel formats this module decodes, most preferred first.
const DECODABLE: [FrameFormat; 6] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
    FrameFormat::GRAY,
];

/// Which camera: `/dev/videoN` by number, or a device path (symlinks such as
/// `/dev/v4l/by-id/...` are followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraDevice {
    Index(u32),
    Path(PathBuf),
}

impl CameraDevice {
    /// The V4L2 device number behind this device, or why there is none.
    pub fn index(&self) -> Result<u32, CameraError> {
        match self {
            CameraDevice::Index(n) => {
                let path = format!("/dev/video{n}");
                if Path::new(&path).exists() {
                    Ok(*n)
                } else {
                    Err(CameraError::NoCamera(path))
                }
            }
            CameraDevice::Path(p) => {
                let shown = p.display().to_string();
                let real =
                    std::fs::canonicalize(p).map_err(|_| CameraError::NoCamera(shown.clone()))?;
                real.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("video"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| CameraError::Device {
                        device: shown,
                        message: format!(
                            "{} is not a V4L2 capture device (/dev/videoN)",
                            real.display()
                        ),
                    })
            }
        }
    }

    fn name(&self) -> String {
        match self {
            CameraDevice::Index(n) => format!("/dev/video{n}"),
            CameraDevice::Path(p) => p.display().to_string(),
        }
    }
}

/// Picks the camera mode for `width` x `height` at `fps` among those `offered`: the nearest
/// resolution (squared distance; the larger on a tie), then the nearest frame rate (the
/// higher on a tie), then the most preferred pixel format. `None` when no offered mode has a
/// pixel format this module decodes.
pub fn choose_mode(
    offered: &[CameraFormat],
    width: u16,
    height: u16,
    fps: f64,
) -> Option<CameraFormat> {
    let rank = |f: FrameFormat| DECODABLE.iter().position(|&d| d == f);
    offered
        .iter()
        .filter(|m| rank(m.format()).is_some())
        .min_by(|a, b| {
            let key = |m: &CameraFormat| {
                let dx = i64::from(m.width()) - i64::from(width);
                let dy = i64::from(m.height()) - i64::from(height);
                let area = u64::from(m.width()) * u64::from(m.height());
                let fps_off = (f64::from(m.frame_rate()) - fps).abs();
                (
                    dx * dx + dy * dy,
                    std::cmp::Reverse(area),
                    fps_off,
                    std::cmp::Reverse(m.frame_rate()),
                    rank(m.format()),
                )
            };
            let (ka, kb) = (key(a), key(b));
            (ka.0, ka.1)
                .cmp(&(kb.0, kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then((ka.3, ka.4).cmp(&(kb.3, kb.4)))
        })
        .copied()
}

/// The resolutions among `offered` that this module can decode, sorted and without repeats.
fn resolutions(offered: &[CameraFormat]) -> Vec<(u32, u32)> {
    let mut r: Vec<(u32, u32)> = offered
        .iter()
        .filter(|m| DECODABLE.contains(&m.format()))
        .map(|m| (m.width(), m.height()))
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// Decodes one camera frame of `format` at `width` x `height` into RGB (3 bytes a pixel).
pub fn to_rgb(
    format: FrameFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let want = width as usize * height as usize * 3;
    let rgb = match format {
        FrameFormat::MJPEG => {
            let mut dec = jpeg_decoder::Decoder::new(data);
            let pixels = dec.decode().map_err(|e| format!("MJPEG frame: {e}"))?;
            let info = dec.info().ok_or("MJPEG frame without a header")?;
            if (u32::from(info.width), u32::from(info.height)) != (width, height) {
                return Err(format!(
                    "MJPEG frame is {}x{}, the camera said {width}x{height}",
                    info.width, info.height
                ));
            }
            match info.pixel_format {
                jpeg_decoder::PixelFormat::RGB24 => pixels,
                jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
                other => return Err(format!("MJPEG frame in {other:?}, not RGB or grey")),
            }
        }
        FrameFormat::YUYV => yuyv422_to_rgb(data, false).map_err(|e| e.to_string())?,
        FrameFormat::NV12 => {
            nv12_to_rgb(Resolution::new(width, height), data, false).map_err(|e| e.to_string())?
        }
        FrameFormat::RAWRGB => data.to_vec(),
        FrameFormat::RAWBGR => data
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect(),
        FrameFormat::GRAY => data.iter().flat_map(|&l| [l, l, l]).collect(),
    };
    if rgb.len() != want {
        return Err(format!(
            "{format} frame gave {} bytes of RGB for {width}x{height}, not {want}",
            rgb.len()
        ));
    }
    Ok(rgb)
}

/// What the camera's thread is asked to do.
enum Job {
    /// Capture one frame and encode it at this quality.
    Capture(u8, mpsc::Sender<Result<Vec<u8>, CameraError>>),
    /// Switch to a mode of exactly this size.
    SetResolution(u16, u16, mpsc::Sender<Result<CameraFormat, CameraError>>),
}

/// A real camera through nokhwa. The camera lives on a thread of its own (nokhwa's camera may
/// not move between threads); capture and mode changes are requests to that thread, which
/// ends, closing the camera, when this is dropped.
pub struct NokhwaCamera {
    jobs: mpsc::Sender<Job>,
    device: String,
    mode: CameraFormat,
    quality: u8,
}

impl NokhwaCamera {
    /// Opens `device` in the mode nearest `settings` and starts its stream.
    pub fn open(device: &CameraDevice, settings: &CameraSettings) -> Result<Self, CameraError> {
        settings.check()?;
        let name = device.name();
        let index = device.index()?;
        let (jobs, inbox) = mpsc::channel();
        let (opened_tx, opened) = mpsc::channel();
        let (worker_name, settings_copy) = (name.clone(), *settings);
        std::thread::Builder::new()
            .name(format!("camera {name}"))
            .spawn(
                move || match Worker::open(worker_name, index, &settings_copy) {
                    Ok(worker) => {
                        let _ = opened_tx.send(Ok(worker.mode));
                        worker.serve(inbox);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| CameraError::Device {
                device: name.clone(),
                message: format!("starting its thread: {e}"),
            })?;
        let mode = opened.recv().map_err(|_| CameraError::Device {
            device: name.clone(),
            message: "its thread ended while opening".into(),
        })??;
        Ok(NokhwaCamera {
            jobs,
            device: name,
            mode,
            quality: settings.quality,
        })
    }

    /// The mode the camera runs in.
    pub fn mode(&self) -> CameraFormat {
        self.mode
    }

    fn ask<T>(
        &self,
        job: impl FnOnce(mpsc::Sender<Result<T, CameraError>>) -> Job,
    ) -> Result<T, CameraError> {
        let gone = || CameraError::Device {
            device: self.device.clone(),
            message: "its capture thread has ended".into(),
        };
        let (tx, rx) = mpsc::channel();
        self.jobs.send(job(tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl FrameSource for NokhwaCamera {
    fn capture(&mut self, _frame: u64, _time_ms: u64) -> Result<Vec<u8>, CameraError> {
        let quality = self.quality;
        self.ask(|tx| Job::Capture(quality, tx))
    }

    /// Switches the camera to a mode of exactly `width` x `height` (the frame rate nearest the
    /// configured one); Err naming the resolutions it offers when it has none.
    fn set_resolution(&mut self, width: u16, height: u16) -> Result<(), CameraError> {
        check_resolution(width, height)?;
        self.mode = self.ask(|tx| Job::SetResolution(width, height, tx))?;
        Ok(())
    }

    fn set_quality(&mut self, quality: u8) -> Result<(), CameraError> {
        check_quality(quality)?;
        self.quality = quality;
        Ok(())
    }
}

/// The camera, on its own thread.
struct Worker {
    camera: Camera,
    device: String,
    mode: CameraFormat,
    fps: f64,
}

impl Worker {
    fn open(device: String, index: u32, settings: &CameraSettings) -> Result<Self, CameraError> {
        let failed = |e: nokhwa::NokhwaError| CameraError::Device {
            device: device.clone(),
            message: e.to_string(),
        };
        let mut camera = Camera::new(
            CameraIndex::Index(index),
            RequestedFormat::with_formats(RequestedFormatType::None, &DECODABLE),
        )
        .map_err(failed)?;
        let offered = camera.compatible_camera_formats().map_err(failed)?;
        let mode = choose_mode(&offered, settings.width, settings.height, settings.fps)
            .ok_or_else(|| CameraError::Device {
                device: device.clone(),
                message: "offers no pixel format livecam decodes (MJPEG, YUYV, NV12, RGB, grey)"
                    .into(),
            })?;
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(mode),
                &DECODABLE,
            ))
            .map_err(failed)?;
        camera.open_stream().map_err(failed)?;
        if (mode.width(), mode.height()) != (u32::from(settings.width), u32::from(settings.height))
        {
            tracing::warn!(
                %device, %mode,
                "the camera has no {}x{} mode; using the nearest", settings.width, settings.height
            );
        }
        tracing::info!(%device, %mode, quality = settings.quality, "camera open");
        Ok(Worker {
            camera,
            device,
            mode,
            fps: settings.fps,
        })
    }

    fn serve(mut self, inbox: mpsc::Receiver<Job>) {
        while let Ok(job) = inbox.recv() {
            match job {
                Job::Capture(quality, reply) => {
                    let _ = reply.send(self.capture(quality));
                }
                Job::SetResolution(w, h, reply) => {
                    let _ = reply.send(self.set_resolution(w, h));
                }
            }
        }
        if let Err(e) = self.camera.stop_stream() {
            tracing::debug!(device = %self.device, error = %e, "closing the camera");
        }
    }

    fn failed(&self, message: impl std::fmt::Display) -> CameraError {
        CameraError::Device {
            device: self.device.clone(),
            message: message.to_string(),
        }
    }

    fn capture(&mut self, quality: u8) -> Result<Vec<u8>, CameraError> {
        let frame = self.camera.frame().map_err(|e| self.failed(e))?;
        let res = frame.resolution();
        let (w, h) = (res.width(), res.height());
        let rgb = to_rgb(frame.source_frame_format(), w, h, frame.buffer())
            .map_err(|e| self.failed(e))?;
        let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
            (Ok(w), Ok(h)) => (w, h),
            _ => return Err(self.failed(format!("frame of {w}x{h} is too large to encode"))),
        };
        let mut out = Vec::with_capacity(rgb.len() / 8);
        jpeg_encoder::Encoder::new(&mut out, quality)
            .encode(&rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| CameraError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn set_resolution(&mut self, width: u16, height: u16) -> Result<CameraFormat, CameraError> {
        let offered = self
            .camera
            .compatible_camera_formats()
            .map_err(|e| self.failed(e))?;
        let exact: Vec<CameraFormat> = offered
            .iter()
            .filter(|m| (m.width(), m.height()) == (u32::from(width), u32::from(height)))
            .copied()
            .collect();
        let Some(mode) = choose_mode(&exact, width, height, self.fps) else {
            let list: Vec<String> = resolutions(&offered)
                .iter()
                .map(|(w, h)| format!("{w}x{h}"))
                .collect();
            return Err(CameraError::Unsupported(format!(
                "camera has no {width}x{height} mode; it offers {}",
                list.join(", ")
            )));
        };
        // V4L2 refuses a new format while streaming: stop, switch, start again.
        self.camera.stop_stream().map_err(|e| self.failed(e))?;
        let switched = self
            .camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(mode),
                &DECODABLE,
            ))
            .map_err(|e| self.failed(e));
        if switched.is_ok() {
            self.mode = mode;
        }
        self.camera.open_stream().map_err(|e| self.failed(e))?;
        switched.map(|_| self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(w: u32, h: u32, f: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new_from(w, h, f, fps)
    }

    #[test]
    fn the_nearest_mode_is_chosen_mjpeg_first() {
        use FrameFormat::*;
        let offered = [
            mode(640, 480, YUYV, 30),
            mode(640, 480, MJPEG, 30),
            mode(640, 480, MJPEG, 15),
            mode(1280, 720, YUYV, 10),
            mode(1280, 720, MJPEG, 30),
            mode(320, 240, YUYV, 30),
        ];
        assert_eq!(
            choose_mode(&offered, 640, 480, 30.0),
            Some(mode(640, 480, MJPEG, 30))
        );
        assert_eq!(
            choose_mode(&offered, 640, 480, 12.0),
            Some(mode(640, 480, MJPEG, 15))
        );
        assert_eq!(
            choose_mode(&offered, 1280, 720, 10.0),
            Some(mode(1280, 720, YUYV, 10))
        );
        assert_eq!(
            choose_mode(&offered, 1280, 720, 25.0),
            Some(mode(1280, 720, MJPEG, 30))
        );
        // No 800x600: the nearest resolution.
        assert_eq!(
            choose_mode(&offered, 800, 600, 30.0),
            Some(mode(640, 480, MJPEG, 30))
        );
        assert_eq!(
            choose_mode(&offered, 64, 48, 30.0),
            Some(mode(320, 240, YUYV, 30))
        );
        assert_eq!(choose_mode(&[], 640, 480, 30.0), None);
        assert_eq!(
            resolutions(&offered),
            vec![(320, 240), (640, 480), (1280, 720)]
        );
    }

    #[test]
    fn frames_of_every_pixel_format_decode_to_rgb_and_bad_ones_are_errors() {
        use FrameFormat::*;
        // 2x2: YUYV of mid grey, NV12 of mid grey, BGR swapped, grey expanded.
        assert_eq!(
            to_rgb(GRAY, 2, 1, &[10, 20]).unwrap(),
            vec![10, 10, 10, 20, 20, 20]
        );
        assert_eq!(to_rgb(RAWBGR, 1, 1, &[1, 2, 3]).unwrap(), vec![3, 2, 1]);
        assert_eq!(to_rgb(RAWRGB, 1, 1, &[1, 2, 3]).unwrap(), vec![1, 2, 3]);
        let yuyv = to_rgb(YUYV, 2, 2, &[128; 8]).unwrap();
        assert_eq!(yuyv.len(), 12);
        assert!(yuyv.iter().all(|&v| (120..=136).contains(&v)), "{yuyv:?}");
        let nv12 = to_rgb(NV12, 2, 2, &[128; 6]).unwrap();
        assert!(nv12.iter().all(|&v| (120..=136).contains(&v)), "{nv12:?}");
        // A real JPEG, as an MJPEG camera sends it.
        let mut cam =
            super::super::SyntheticCamera::new(1, super::super::SyntheticSettings::default());
        let jpeg = cam.capture(0, 0).unwrap();
        assert_eq!(to_rgb(MJPEG, 320, 240, &jpeg).unwrap().len(), 320 * 240 * 3);
        let e = to_rgb(MJPEG, 640, 480, &jpeg).unwrap_err();
        assert!(e.contains("320x240"), "{e}");
        assert!(to_rgb(MJPEG, 320, 240, &jpeg[..jpeg.len() / 3]).is_err());
        assert!(to_rgb(MJPEG, 320, 240, b"not a jpeg").is_err());
        // Short frames (a camera unplugged mid-frame) are errors, not panics.
        assert!(to_rgb(YUYV, 640, 480, &[0; 100]).is_err());
        assert!(to_rgb(RAWRGB, 640, 480, &[0; 100]).is_err());
        assert!(to_rgb(GRAY, 2, 2, &[0; 3]).is_err());
    }

    #[test]
    fn a_missing_camera_fails_cleanly_naming_the_device() {
        let settings = CameraSettings {
            vehicle: 1,
            width: 640,
            height: 480,
            fps: 10.0,
            quality: 80,
        };
        // No /dev/video57 here, nor on any CI machine.
        let e = NokhwaCamera::open(&CameraDevice::Index(57), &settings)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "no camera at /dev/video57");
        let e = NokhwaCamera::open(&CameraDevice::Path("/dev/video57".into()), &settings)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "no camera at /dev/video57");
        // A device that is not a V4L2 capture node.
        let e = NokhwaCamera::open(&CameraDevice::Path("/dev/null".into()), &settings)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a V4L2 capture device"), "{e}");
        // Settings are checked before any device is touched.
        let bad = CameraSettings {
            quality: 0,
            ..settings
        };
        assert!(matches!(
            NokhwaCamera::open(&CameraDevice::Index(57), &bad),
            Err(CameraError::Setting(_))
        ));
        let bad = CameraSettings {
            width: 10_000,
            ..settings
        };
        assert!(matches!(
            NokhwaCamera::open(&CameraDevice::Index(57), &bad),
            Err(CameraError::Setting(_))
        ));
        let bad = CameraSettings {
            fps: 0.0,
            ..settings
        };
        assert!(matches!(
            NokhwaCamera::open(&CameraDevice::Index(57), &bad),
            Err(CameraError::Setting(_))
        ));
    }
}
