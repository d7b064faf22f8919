//! Device specs, parsed in this one place: the `camera` and `gps` strings of a mobile client's
//! config become a [`FrameSource`] and a [`GpsSource`].
//!
//! | camera spec | source |
//! | --- | --- |
//! | `synthetic` | [`SyntheticCamera`]: a moving test picture |
//! | `folder:PATH` | [`FolderReplay`]: the JPEG files of a folder |
//! | `v4l2:/dev/videoN` (or a `/dev/v4l/by-id/...` link) | a real camera (feature `camera`) |
//! | `camera:N` | the same, for `/dev/videoN` |
//!
//! | gps spec | source |
//! | --- | --- |
//! | `synthetic` | [`SyntheticRoute`] through the synthetic city |
//! | `gpsd` or `gpsd:HOST:PORT` | gpsd's JSON protocol (default `127.0.0.1:2947`), reconnecting |
//! | `nmea:/dev/ttyUSB0` or `nmea:/dev/ttyUSB0@9600` | NMEA 0183 on a serial port (4800 baud unless given) |
//! | `nmea-file:PATH` or `nmea-file:PATH@8` | an NMEA log, read once, or replayed at 8 lines a second |
//!
//! Errors quote the spec and name what is wrong.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::camera::{
    CameraError, CameraSettings, FolderReplay, FrameSource, SyntheticCamera, SyntheticSettings,
};
use super::gps::{follow_gpsd, City, Fix, GpsSource, GpsStats, SharedFix, SyntheticRoute};
use super::nmea_feed::{NmeaFeed, NmeaFeedError, Replay};
use crate::time::Instant;

/// What the camera specs accept, for error messages.
pub const CAMERA_SPECS: &str = "`synthetic`, `folder:PATH`, `v4l2:/dev/videoN` or `camera:N`";
/// What the GPS specs accept, for error messages.
pub const GPS_SPECS: &str =
    "`synthetic`, `gpsd:HOST:PORT`, `nmea:/dev/ttyUSB0@9600` or `nmea-file:PATH[@LINES_PER_SECOND]`";
/// gpsd's port.
pub const GPSD_PORT: u16 = 2947;
/// NMEA 0183's standard baud rate, used when a serial spec gives none.
pub const NMEA_BAUD: u32 = 4800;

/// A device spec that cannot be opened.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("camera `{spec}`: expected {CAMERA_SPECS}")]
    UnknownCamera { spec: String },
    #[error(
        "camera `{spec}`: real cameras need livecam built with the `camera` feature \
         (cargo build --release --features camera)"
    )]
    NoCameraFeature { spec: String },
    #[error("camera `{spec}`: {source}")]
    Camera { spec: String, source: CameraError },
    #[error("gps `{spec}`: expected {GPS_SPECS}")]
    UnknownGps { spec: String },
    #[error("gps `{spec}`: {message}")]
    BadGps { spec: String, message: String },
    #[error("gps `{spec}`: {source}")]
    Gps { spec: String, source: NmeaFeedError },
}

/// A parsed camera spec (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSpec {
    Synthetic,
    Folder(PathBuf),
    /// A V4L2 device path.
    V4l2(PathBuf),
    /// `/dev/videoN`.
    Index(u32),
}

impl CameraSpec {
    /// Parses `spec` without touching any device: what a config check calls. A real camera in
    /// a build without the `camera` feature is an error here already.
    pub fn parse(spec: &str) -> Result<Self, DeviceError> {
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        let parsed = match (kind, arg) {
            ("synthetic", "") => CameraSpec::Synthetic,
            ("folder", dir) if !dir.is_empty() => CameraSpec::Folder(dir.into()),
            ("v4l2", path) if !path.is_empty() => CameraSpec::V4l2(path.into()),
            ("camera", n) if !n.is_empty() => {
                CameraSpec::Index(n.parse().map_err(|_| DeviceError::Camera {
                    spec: spec.to_string(),
                    source: CameraError::Setting(format!("`{n}` is not a camera number")),
                })?)
            }
            _ => {
                return Err(DeviceError::UnknownCamera {
                    spec: spec.to_string(),
                })
            }
        };
        if matches!(parsed, CameraSpec::V4l2(_) | CameraSpec::Index(_)) && !cfg!(feature = "camera")
        {
            return Err(DeviceError::NoCameraFeature {
                spec: spec.to_string(),
            });
        }
        Ok(parsed)
    }
}

/// Opens the camera named by `spec` (see the module docs).
pub fn open_camera(
    spec: &str,
    settings: &CameraSettings,
) -> Result<Box<dyn FrameSource + Send>, DeviceError> {
    let camera_err = |source| DeviceError::Camera {
        spec: spec.to_string(),
        source,
    };
    let parsed = CameraSpec::parse(spec)?;
    settings.check().map_err(camera_err)?;
    match parsed {
        CameraSpec::Synthetic => Ok(Box::new(SyntheticCamera::new(
            settings.vehicle,
            SyntheticSettings {
                width: settings.width,
                height: settings.height,
                quality: settings.quality,
            },
        ))),
        CameraSpec::Folder(dir) => Ok(Box::new(FolderReplay::open(&dir).map_err(camera_err)?)),
        real => real_camera(spec, real, settings),
    }
}

#[cfg(feature = "camera")]
fn real_camera(
    spec: &str,
    device: CameraSpec,
    settings: &CameraSettings,
) -> Result<Box<dyn FrameSource + Send>, DeviceError> {
    use super::capture::{CameraDevice, NokhwaCamera};
    let device = match device {
        CameraSpec::Index(n) => CameraDevice::Index(n),
        CameraSpec::V4l2(p) => CameraDevice::Path(p),
        // Opened by `open_camera` itself.
        other => {
            return Err(DeviceError::UnknownCamera {
                spec: format!("{other:?}"),
            })
        }
    };
    NokhwaCamera::open(&device, settings)
        .map(|c| Box::new(c) as Box<dyn FrameSource + Send>)
        .map_err(|source| DeviceError::Camera {
            spec: spec.to_string(),
            source,
        })
}

#[cfg(not(feature = "camera"))]
fn real_camera(
    spec: &str,
    _device: CameraSpec,
    _settings: &CameraSettings,
) -> Result<Box<dyn FrameSource + Send>, DeviceError> {
    Err(DeviceError::NoCameraFeature {
        spec: spec.to_string(),
    })
}

/// What a GPS source is opened with (the synthetic route's parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsSettings {
    /// The synthetic route's seed (the vehicle's id, so each vehicle drives its own route).
    pub seed: u64,
    /// When the synthetic route starts.
    pub start: Instant,
    pub city: City,
    /// The synthetic vehicle's speed, metres per second.
    pub speed_mps: f64,
}

impl Default for GpsSettings {
    fn default() -> Self {
        GpsSettings {
            seed: 0,
            start: Instant::ZERO,
            city: City::default(),
            speed_mps: 10.0,
        }
    }
}

/// A parsed GPS spec (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum GpsSpec {
    Synthetic,
    /// gpsd at `HOST:PORT`, resolved when opened.
    Gpsd(String),
    Serial {
        path: String,
        baud: u32,
    },
    File {
        path: PathBuf,
        replay: Replay,
    },
}

impl GpsSpec {
    /// Parses `spec` without touching any device or the network: what a config check calls.
    pub fn parse(spec: &str) -> Result<Self, DeviceError> {
        let bad = |message: String| DeviceError::BadGps {
            spec: spec.to_string(),
            message,
        };
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        match (kind, arg) {
            ("synthetic", "") => Ok(GpsSpec::Synthetic),
            ("gpsd", "") => Ok(GpsSpec::Gpsd(format!("127.0.0.1:{GPSD_PORT}"))),
            ("gpsd", addr) => match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(GpsSpec::Gpsd(addr.to_string()))
                }
                _ => Err(bad(format!("`{addr}` is not HOST:PORT"))),
            },
            ("nmea", port) if !port.is_empty() => {
                let (path, baud) = match port.rsplit_once('@') {
                    Some((path, baud)) => (
                        path,
                        baud.parse()
                            .map_err(|_| bad(format!("`{baud}` is not a baud rate")))?,
                    ),
                    None => (port, NMEA_BAUD),
                };
                if baud == 0 || baud > 4_000_000 {
                    return Err(DeviceError::Gps {
                        spec: spec.to_string(),
                        source: NmeaFeedError::Baud(baud),
                    });
                }
                Ok(GpsSpec::Serial {
                    path: path.to_string(),
                    baud,
                })
            }
            ("nmea-file", file) if !file.is_empty() => {
                // `@RATE` only when it is a number, so a path may hold an `@`.
                let (path, replay) = match file
                    .rsplit_once('@')
                    .and_then(|(path, rate)| Some((path, rate.parse::<f64>().ok()?)))
                {
                    Some((path, rate)) if rate.is_finite() && rate > 0.0 && rate <= 10_000.0 => {
                        (path, Replay::LinesPerSecond(rate))
                    }
                    Some((_, rate)) => {
                        return Err(DeviceError::Gps {
                            spec: spec.to_string(),
                            source: NmeaFeedError::Rate(rate),
                        })
                    }
                    None => (file, Replay::Once),
                };
                Ok(GpsSpec::File {
                    path: path.into(),
                    replay,
                })
            }
            _ => Err(DeviceError::UnknownGps {
                spec: spec.to_string(),
            }),
        }
    }
}

/// Opens the GPS source named by `spec` (see the module docs). Receivers are read on a
/// background thread (serial, file) or task (gpsd: on the current tokio runtime, else on a
/// thread of its own) until the returned source is dropped.
pub fn open_gps(spec: &str, settings: &GpsSettings) -> Result<Box<dyn GpsSource>, DeviceError> {
    let feed_err = |source| DeviceError::Gps {
        spec: spec.to_string(),
        source,
    };
    match GpsSpec::parse(spec)? {
        GpsSpec::Synthetic => Ok(Box::new(SyntheticRoute::new(
            settings.city,
            settings.speed_mps,
            settings.seed,
            settings.start,
        ))),
        GpsSpec::Gpsd(addr) => {
            let resolved = addr
                .to_socket_addrs()
                .map_err(|e| DeviceError::BadGps {
                    spec: spec.to_string(),
                    message: format!("resolving `{addr}`: {e}"),
                })?
                .next()
                .ok_or_else(|| DeviceError::BadGps {
                    spec: spec.to_string(),
                    message: format!("`{addr}` resolves to no address"),
                })?;
            Ok(Box::new(GpsdFeed::start(resolved)))
        }
        GpsSpec::Serial { path, baud } => {
            Ok(Box::new(NmeaFeed::serial(&path, baud).map_err(feed_err)?))
        }
        GpsSpec::File { path, replay } => {
            Ok(Box::new(NmeaFeed::file(&path, replay).map_err(feed_err)?))
        }
    }
}

/// gpsd followed in the background, reconnecting a second after the connection ends or
/// fails, until dropped.
struct GpsdFeed {
    shared: SharedFix,
    // Dropping it tells the task to end.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GpsdFeed {
    fn start(addr: SocketAddr) -> Self {
        let shared = SharedFix::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let follow = shared.clone();
        let run = async move {
            loop {
                tokio::select! {
                    r = follow_gpsd(addr, follow.clone()) => match r {
                        Ok(()) => tracing::warn!(%addr, "gpsd closed the connection; reconnecting"),
                        Err(e) => tracing::warn!(%addr, error = %e, "gpsd unreachable; retrying"),
                    },
                    _ = &mut stopped => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = &mut stopped => return,
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run);
            }
            Err(_) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("gpsd {addr}"))
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(run),
                            Err(e) => tracing::warn!(error = %e, "no runtime for gpsd"),
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start the gpsd thread");
                }
            }
        }
        tracing::info!(%addr, "following gpsd");
        GpsdFeed {
            shared,
            _stop: stop,
        }
    }
}

impl GpsSource for GpsdFeed {
    fn fix(&mut self, now: Instant) -> Option<Fix> {
        self.shared.fix(now)
    }

    fn stats(&self) -> Option<GpsStats> {
        Some(self.shared.read_stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera_error(spec: &str, settings: &CameraSettings) -> String {
        match open_camera(spec, settings) {
            Ok(_) => panic!("`{spec}` opened"),
            Err(e) => e.to_string(),
        }
    }

    fn gps_error(spec: &str) -> String {
        match open_gps(spec, &GpsSettings::default()) {
            Ok(_) => panic!("`{spec}` opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn camera_specs_open_their_sources() {
        let settings = CameraSettings {
            vehicle: 42,
            width: 160,
            height: 120,
            ..CameraSettings::default()
        };
        let mut cam = open_camera("synthetic", &settings).unwrap();
        let jpeg = cam.capture(1, 0).unwrap();
        let mut dec = jpeg_decoder::Decoder::new(&jpeg[..]);
        dec.decode().unwrap();
        assert_eq!(
            (dec.info().unwrap().width, dec.info().unwrap().height),
            (160, 120)
        );

        let dir = std::env::temp_dir().join(format!("livecam-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.jpg"), &jpeg).unwrap();
        let mut replay = open_camera(&format!("folder:{}", dir.display()), &settings).unwrap();
        assert_eq!(replay.capture(0, 0).unwrap(), jpeg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_camera_specs_and_settings_name_what_is_wrong() {
        let ok = CameraSettings::default();
        for spec in ["", "webcam", "synthetic:1", "folder:", "v4l2:", "camera:"] {
            let e = camera_error(spec, &ok);
            assert!(
                e.contains(&format!("`{spec}`")) && e.contains(CAMERA_SPECS),
                "{e}"
            );
        }
        let e = camera_error("folder:/nonexistent/frames", &ok);
        assert!(e.contains("/nonexistent/frames"), "{e}");
        let e = camera_error("camera:front", &ok);
        assert!(e.contains("`front` is not a camera number"), "{e}");
        let e = camera_error("synthetic", &CameraSettings { quality: 0, ..ok });
        assert!(e.contains("quality 0"), "{e}");
        let e = camera_error("synthetic", &CameraSettings { width: 8000, ..ok });
        assert!(e.contains("8000x240"), "{e}");
        let e = camera_error("synthetic", &CameraSettings { fps: 0.0, ..ok });
        assert!(e.contains("frame rate"), "{e}");
    }

    #[cfg(not(feature = "camera"))]
    #[test]
    fn real_camera_specs_name_the_missing_feature() {
        for spec in ["v4l2:/dev/video0", "camera:0"] {
            let e = camera_error(spec, &CameraSettings::default());
            assert!(e.contains("`camera` feature") && e.contains(spec), "{e}");
        }
    }

    #[cfg(feature = "camera")]
    #[test]
    fn real_camera_specs_fail_cleanly_without_a_camera() {
        // No /dev/video57 here, nor on CI.
        let e = camera_error("v4l2:/dev/video57", &CameraSettings::default());
        assert_eq!(e, "camera `v4l2:/dev/video57`: no camera at /dev/video57");
        let e = camera_error("camera:57", &CameraSettings::default());
        assert_eq!(e, "camera `camera:57`: no camera at /dev/video57");
    }

    #[test]
    fn gps_specs_open_their_sources() {
        let settings = GpsSettings {
            seed: 9,
            ..GpsSettings::default()
        };
        let mut route = open_gps("synthetic", &settings).unwrap();
        let mut same = SyntheticRoute::new(City::default(), 10.0, 9, Instant::ZERO);
        let now = Instant::from_millis(12_345);
        assert_eq!(route.fix(now), Some(same.fix(now)));
        assert_eq!(route.stats(), None);

        let path = std::env::temp_dir().join(format!("livecam-open-{}.nmea", std::process::id()));
        std::fs::write(
            &path,
            "$GPRMC,092751.000,A,5321.6802,N,00630.3371,W,0.06,31.66,280511,,,A*45\n",
        )
        .unwrap();
        let mut file = open_gps(&format!("nmea-file:{}", path.display()), &settings).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while file.fix(now).is_none() {
            assert!(std::time::Instant::now() < deadline, "no fix from the file");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(file.stats().map(|s| s.fixes), Some(1));
        assert!(open_gps(&format!("nmea-file:{}@5", path.display()), &settings).is_ok());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn gpsd_specs_follow_gpsd_without_a_runtime_of_their_own() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut watch = String::new();
            BufReader::new(&s).read_line(&mut watch).unwrap();
            assert!(watch.starts_with("?WATCH="), "{watch}");
            (&s).write_all(b"{\"class\":\"TPV\",\"mode\":3,\"lat\":35.5,\"lon\":139.5}\n")
                .unwrap();
            s
        });
        let mut gps = open_gps(&format!("gpsd:{addr}"), &GpsSettings::default()).unwrap();
        let _conn = server.join().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while gps.fix(Instant::ZERO).is_none() {
            assert!(std::time::Instant::now() < deadline, "no fix from gpsd");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            gps.fix(Instant::ZERO).map(|f| (f.lat, f.lon)),
            Some((35.5, 139.5))
        );
        assert_eq!(gps.stats().map(|s| (s.sentences, s.fixes)), Some((1, 1)));
    }

    #[test]
    fn specs_parse_without_touching_devices() {
        assert_eq!(
            CameraSpec::parse("synthetic").unwrap(),
            CameraSpec::Synthetic
        );
        assert_eq!(
            CameraSpec::parse("folder:/nonexistent").unwrap(),
            CameraSpec::Folder("/nonexistent".into())
        );
        if cfg!(feature = "camera") {
            assert_eq!(
                CameraSpec::parse("v4l2:/dev/video9").unwrap(),
                CameraSpec::V4l2("/dev/video9".into())
            );
            assert_eq!(CameraSpec::parse("camera:3").unwrap(), CameraSpec::Index(3));
        }
        assert_eq!(
            GpsSpec::parse("nmea:/dev/ttyNOPE0").unwrap(),
            GpsSpec::Serial {
                path: "/dev/ttyNOPE0".into(),
                baud: NMEA_BAUD
            }
        );
        assert_eq!(
            GpsSpec::parse("nmea:/dev/ttyNOPE0@115200").unwrap(),
            GpsSpec::Serial {
                path: "/dev/ttyNOPE0".into(),
                baud: 115_200
            }
        );
        assert_eq!(
            GpsSpec::parse("gpsd").unwrap(),
            GpsSpec::Gpsd("127.0.0.1:2947".into())
        );
        assert_eq!(
            GpsSpec::parse("gpsd:gps.example:2947").unwrap(),
            GpsSpec::Gpsd("gps.example:2947".into())
        );
        assert_eq!(
            GpsSpec::parse("nmea-file:/logs/a@b.nmea").unwrap(),
            GpsSpec::File {
                path: "/logs/a@b.nmea".into(),
                replay: Replay::Once
            }
        );
        assert_eq!(
            GpsSpec::parse("nmea-file:/logs/drive.nmea@8").unwrap(),
            GpsSpec::File {
                path: "/logs/drive.nmea".into(),
                replay: Replay::LinesPerSecond(8.0)
            }
        );
        assert!(GpsSpec::parse("nmea:/dev/ttyUSB0@0").is_err());
    }

    #[test]
    fn bad_gps_specs_name_what_is_wrong() {
        for spec in [
            "",
            "gps",
            "synthetic:3",
            "nmea:",
            "nmea-file:",
            "serial:/dev/ttyS0",
        ] {
            let e = gps_error(spec);
            assert!(
                e.contains(&format!("`{spec}`")) && e.contains(GPS_SPECS),
                "{e}"
            );
        }
        let e = gps_error("gpsd:nowhere");
        assert!(e.contains("`nowhere` is not HOST:PORT"), "{e}");
        let e = gps_error("nmea:/dev/ttyUSB0@fast");
        assert!(e.contains("`fast` is not a baud rate"), "{e}");
        assert_eq!(
            gps_error("nmea:/dev/ttyNOPE7@9600"),
            "gps `nmea:/dev/ttyNOPE7@9600`: no serial port at /dev/ttyNOPE7"
        );
        assert_eq!(
            gps_error("nmea:/dev/ttyNOPE7"),
            "gps `nmea:/dev/ttyNOPE7`: no serial port at /dev/ttyNOPE7"
        );
        let e = gps_error("nmea-file:/nonexistent/drive.nmea@0");
        assert!(e.contains("replay rate 0"), "{e}");
        let e = gps_error("nmea-file:/nonexistent/drive.nmea");
        assert!(e.contains("/nonexistent/drive.nmea"), "{e}");
    }
}
