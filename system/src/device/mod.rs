//! Devices of a mobile client: the camera and the GPS receiver, each behind one trait (or
//! type) with real and synthetic sources.

pub mod camera;
pub mod frame;
pub mod gps;

pub use camera::{CameraError, FolderReplay, FrameSource, SyntheticCamera, SyntheticSettings};
pub use frame::{CapturedCheck, CapturedFrame, DeviceFrames, FrameError};
pub use gps::{
    follow_gpsd, parse_gpsd, City, Fix, GpsSource, GpsStats, NmeaGps, SharedFix, SyntheticRoute,
};
