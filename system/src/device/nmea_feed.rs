//! NMEA 0183 receivers read on a background thread: a serial port (a GPS receiver on
//! `/dev/ttyUSB0`, `/dev/ttyACM0`, `/dev/serial0`, ...) or a log file, fed through
//! [`NmeaParser`] into a [`SharedFix`] that the frame producer reads.
//!
//! A bad, checksum-failing, over-long or non-UTF-8 line is counted and skipped, never fatal. A
//! serial port that fails (a USB receiver unplugged) is reopened every second until it is back.
//! A log file is read once to its end, or replayed round and round at a given number of lines
//! per second (a 1 Hz receiver sends about 5 to 8 lines a second).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;

use super::gps::{Fix, GpsSource, GpsStats, NmeaParser, SharedFix};
use crate::time::Instant;

/// The longest line taken as a sentence: NMEA 0183 allows 82 characters; some receivers'
/// proprietary sentences run longer.
pub const MAX_LINE: usize = 256;
/// How long a serial read waits before the reader looks at its stop flag again.
const SERIAL_POLL: Duration = Duration::from_millis(200);
/// Pause before reopening a serial port that failed.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A receiver that cannot be read.
#[derive(Debug, Error)]
pub enum NmeaFeedError {
    #[error("no serial port at {0}")]
    NoSerialPort(String),
    #[error("serial port {path}: {message}")]
    Serial { path: String, message: String },
    #[error("reading {path}: {source}")]
    File { path: String, source: io::Error },
    #[error("baud rate {0} is not a positive number up to 4000000")]
    Baud(u32),
    #[error("replay rate {0} is not a positive number of lines per second up to 10000")]
    Rate(f64),
    #[error("starting the reader thread: {0}")]
    Thread(io::Error),
}

/// How a log file is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Replay {
    /// Every line at once, to the end; the last fix stays.
    Once,
    /// This many lines a second, from the start again at the end.
    LinesPerSecond(f64),
}

/// A receiver read on a background thread. Dropping it stops the thread (within a serial poll
/// interval or one replay line).
#[derive(Debug)]
pub struct NmeaFeed {
    shared: SharedFix,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    source: String,
}

impl NmeaFeed {
    /// Reads the serial port at `path` at `baud` (8 data bits, no parity, 1 stop bit).
    pub fn serial(path: &str, baud: u32) -> Result<Self, NmeaFeedError> {
        if baud == 0 || baud > 4_000_000 {
            return Err(NmeaFeedError::Baud(baud));
        }
        let port = open_serial(path, baud)?;
        let (path_owned, source) = (path.to_string(), format!("{path}@{baud}"));
        Self::start(source, move |parser, shared, stop| {
            let mut port = Some(port);
            while !stop.load(Ordering::Relaxed) {
                let Some(p) = port.take() else {
                    std::thread::sleep(REOPEN_AFTER);
                    match open_serial(&path_owned, baud) {
                        Ok(p) => {
                            tracing::info!(path = %path_owned, "serial GPS back");
                            port = Some(p);
                        }
                        Err(e) => tracing::debug!(error = %e, "serial GPS still away"),
                    }
                    continue;
                };
                match pump(p, parser, shared, stop, None) {
                    Ok(()) if stop.load(Ordering::Relaxed) => {}
                    Ok(()) => tracing::warn!(path = %path_owned, "serial GPS hung up; reopening"),
                    Err(e) => {
                        tracing::warn!(path = %path_owned, error = %e, "serial GPS failed; reopening")
                    }
                }
            }
        })
    }

    /// Reads the NMEA log file at `path`, once or replayed.
    pub fn file(path: &Path, replay: Replay) -> Result<Self, NmeaFeedError> {
        let interval = match replay {
            Replay::Once => None,
            Replay::LinesPerSecond(r) if r.is_finite() && r > 0.0 && r <= 10_000.0 => {
                Some(Duration::from_secs_f64(1.0 / r))
            }
            Replay::LinesPerSecond(r) => return Err(NmeaFeedError::Rate(r)),
        };
        let open = |p: &Path| {
            std::fs::File::open(p).map_err(|source| NmeaFeedError::File {
                path: p.display().to_string(),
                source,
            })
        };
        let file = open(path)?;
        let path: PathBuf = path.to_path_buf();
        Self::start(path.display().to_string(), move |parser, shared, stop| {
            let mut file = Some(file);
            while let Some(f) = file.take() {
                let before = parser.stats().sentences;
                if let Err(e) = pump(f, parser, shared, stop, interval) {
                    tracing::warn!(path = %path.display(), error = %e, "NMEA log read failed");
                    return;
                }
                let read_some = parser.stats().sentences > before;
                if interval.is_some() && read_some && !stop.load(Ordering::Relaxed) {
                    match open(&path) {
                        Ok(f) => file = Some(f),
                        Err(e) => tracing::warn!(error = %e, "NMEA log replay ended"),
                    }
                }
            }
        })
    }

    /// Reads NMEA lines from any byte source (to its end) on a background thread.
    pub fn reader(
        name: &str,
        input: impl Read + Send + 'static,
        replay: Replay,
    ) -> Result<Self, NmeaFeedError> {
        let interval = match replay {
            Replay::Once => None,
            Replay::LinesPerSecond(r) if r.is_finite() && r > 0.0 && r <= 10_000.0 => {
                Some(Duration::from_secs_f64(1.0 / r))
            }
            Replay::LinesPerSecond(r) => return Err(NmeaFeedError::Rate(r)),
        };
        Self::start(name.to_string(), move |parser, shared, stop| {
            if let Err(e) = pump(input, parser, shared, stop, interval) {
                tracing::warn!(error = %e, "NMEA read failed");
            }
        })
    }

    fn start(
        source: String,
        run: impl FnOnce(&mut NmeaParser, &SharedFix, &AtomicBool) + Send + 'static,
    ) -> Result<Self, NmeaFeedError> {
        let shared = SharedFix::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let reader = std::thread::Builder::new()
            .name(format!("nmea {source}"))
            .spawn(move || {
                let mut parser = NmeaParser::new();
                run(&mut parser, &s, &st);
                s.set_stats(parser.stats());
            })
            .map_err(NmeaFeedError::Thread)?;
        tracing::info!(%source, "reading NMEA");
        Ok(NmeaFeed {
            shared,
            stop,
            reader: Some(reader),
            source,
        })
    }

    /// What the reader has read so far.
    pub fn read_stats(&self) -> GpsStats {
        self.shared.read_stats()
    }

    /// The latest fix.
    pub fn latest(&self) -> Option<Fix> {
        self.shared.clone().fix(Instant::ZERO)
    }

    /// True once the reader has stopped (a file read to its end, or stopped).
    pub fn is_finished(&self) -> bool {
        self.reader.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// What it reads, for logs: the port and baud rate, or the file.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Drop for NmeaFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl GpsSource for NmeaFeed {
    fn fix(&mut self, now: Instant) -> Option<Fix> {
        self.shared.fix(now)
    }

    fn stats(&self) -> Option<GpsStats> {
        Some(self.read_stats())
    }
}

fn open_serial(path: &str, baud: u32) -> Result<Box<dyn serialport::SerialPort>, NmeaFeedError> {
    if !Path::new(path).exists() {
        return Err(NmeaFeedError::NoSerialPort(path.to_string()));
    }
    serialport::new(path, baud)
        .timeout(SERIAL_POLL)
        .open()
        .map_err(|e| NmeaFeedError::Serial {
            path: path.to_string(),
            message: match e.kind() {
                serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied) => format!(
                    "{e} (add the service's user to the `dialout` group, see deploy/HARDWARE.md)"
                ),
                _ => e.to_string(),
            },
        })
}

/// Reads `input` to its end (or until `stop`), splitting lines and feeding each to `parser`;
/// publishes fixes and counts to `shared`. Read timeouts are waited through; `interval`
/// paces the lines. Over-long lines are counted bad and skipped.
fn pump(
    mut input: impl Read,
    parser: &mut NmeaParser,
    shared: &SharedFix,
    stop: &AtomicBool,
    interval: Option<Duration>,
) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut too_long = false;
    let mut take_line = |line: &mut Vec<u8>, too_long: &mut bool| {
        if std::mem::take(too_long) {
            parser.count_bad();
        } else if let Some(fix) = parser.feed(&String::from_utf8_lossy(line)) {
            shared.set(fix);
        }
        shared.set_stats(parser.stats());
        line.clear();
        if let Some(pause) = interval {
            std::thread::sleep(pause);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            match b {
                b'\n' | b'\r' => {
                    if !line.is_empty() || too_long {
                        take_line(&mut line, &mut too_long);
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                    }
                }
                _ if line.len() < MAX_LINE => line.push(b),
                _ => too_long = true,
            }
        }
    }
    // A last line without its end of line: a file cut off mid-sentence.
    if !line.is_empty() || too_long {
        take_line(&mut line, &mut too_long);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76\r
$GPRMC,092751.000,A,5321.6802,N,00630.3371,W,0.06,31.66,280511,,,A*45\r
$GPGGA,092751.000,5321.6802,N,00630.3371,W,1,8,1.03,61.7,M,55.3,M,,*00\r
$GPVTG,31.66,T,,M,0.06,N,0.1,K,A*38\r
";

    /// Waits (bounded) until `done` holds.
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("livecam-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_log_file_is_read_on_a_thread_and_bad_lines_are_counted() {
        let path = temp("nmea-once.log");
        let mut log = LOG.to_string();
        log.push_str(&"X".repeat(5000)); // garbage without an end of line
        log.push('\n');
        log.push_str("\u{0}\u{1}not nmea\n");
        std::fs::write(&path, log.as_bytes()).unwrap();
        let mut feed = NmeaFeed::file(&path, Replay::Once).unwrap();
        wait_for("the reader to reach the end", || feed.is_finished());
        let s = feed.read_stats();
        // 4 sentences (one with a bad checksum), an over-long line, a garbage line.
        assert_eq!((s.sentences, s.bad_sentences, s.fixes), (6, 3, 3), "{s:?}");
        let fix = feed.fix(Instant::ZERO).expect("a fix");
        assert!((fix.lat - 53.361_336).abs() < 1e-5, "{fix:?}");
        assert_eq!(GpsSource::stats(&feed), Some(s));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_replayed_log_goes_round_at_its_rate_and_stops_when_dropped() {
        let path = temp("nmea-replay.log");
        std::fs::write(&path, LOG).unwrap();
        let feed = NmeaFeed::file(&path, Replay::LinesPerSecond(2000.0)).unwrap();
        // More lines than the file has: it went round.
        wait_for("a second pass", || feed.read_stats().sentences > 8);
        assert!(!feed.is_finished());
        let stop = feed.stop.clone();
        let handle = {
            let mut feed = feed;
            feed.reader.take().unwrap()
        };
        assert!(stop.load(Ordering::Relaxed), "dropping the feed stops it");
        handle.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn missing_files_ports_and_bad_rates_name_what_is_wrong() {
        let e = NmeaFeed::file(Path::new("/nonexistent/gps.log"), Replay::Once).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/gps.log"), "{e}");
        let e = NmeaFeed::serial("/dev/ttyNOPE9", 9600).unwrap_err();
        assert_eq!(e.to_string(), "no serial port at /dev/ttyNOPE9");
        assert!(matches!(
            NmeaFeed::serial("/dev/ttyNOPE9", 0),
            Err(NmeaFeedError::Baud(0))
        ));
        for r in [0.0, -1.0, f64::NAN, 1e9] {
            assert!(matches!(
                NmeaFeed::file(Path::new("/nonexistent"), Replay::LinesPerSecond(r)),
                Err(NmeaFeedError::Rate(_))
            ));
        }
        // Not a tty: the serial layer says so.
        let path = temp("not-a-tty");
        std::fs::write(&path, "x").unwrap();
        let e = NmeaFeed::serial(path.to_str().unwrap(), 9600).unwrap_err();
        assert!(matches!(e, NmeaFeedError::Serial { .. }), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_serial_port_is_really_read_through_a_pseudo_terminal() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        use std::io::Write;
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let name = name.to_str().unwrap().to_string();
        let mut master = std::fs::File::from(master);

        let mut feed = NmeaFeed::serial(&name, 9600).unwrap();
        assert_eq!(feed.source(), format!("{name}@9600"));
        assert_eq!(feed.fix(Instant::ZERO), None);
        // The receiver talks in pieces, as a serial line delivers them.
        for chunk in LOG.as_bytes().chunks(17) {
            master.write_all(chunk).unwrap();
            master.flush().unwrap();
        }
        wait_for("four sentences over the pty", || {
            feed.read_stats().sentences == 4
        });
        let s = feed.read_stats();
        assert_eq!((s.bad_sentences, s.fixes), (1, 3), "{s:?}");
        let fix = feed.fix(Instant::ZERO).expect("a fix over the serial line");
        assert!((fix.lon - -6.505_62).abs() < 1e-5, "{fix:?}");
        assert!((fix.heading_deg - 31.66).abs() < 1e-3);
        assert!(!feed.is_finished());
        drop(feed);
    }
}
