//! Devices of a mobile client: the camera and the GPS receiver, each behind one trait with
//! real and synthetic sources, and [`open_camera`] / [`open_gps`], which turn a config's spec
//! string into one.

pub mod camera;
#[cfg(feature = "camera")]
pub mod capture;
pub mod frame;
pub mod gps;
pub mod nmea_feed;
pub mod open;

pub use camera::{
    CameraError, CameraSettings, FolderReplay, FrameSource, SyntheticCamera, SyntheticSettings,
};
#[cfg(feature = "camera")]
pub use capture::{CameraDevice, NokhwaCamera};
pub use frame::{CapturedCheck, CapturedFrame, DeviceFrames, FrameError};
pub use gps::{
    follow_gpsd, parse_gpsd, City, Fix, GpsSource, GpsStats, NmeaGps, NmeaParser, SharedFix,
    SyntheticRoute,
};
pub use nmea_feed::{NmeaFeed, NmeaFeedError, Replay};
pub use open::{open_camera, open_gps, CameraSpec, DeviceError, GpsSettings, GpsSpec};
