//! GPS sources: where a mobile client's position comes from.
//!
//! - [`NmeaParser`]: NMEA 0183 sentences (GGA, RMC, VTG at least), parsed with the `nmea`
//!   crate. A bad or checksum-failing sentence is counted and skipped, never fatal.
//!   [`NmeaGps`] reads them from any line source; [`super::NmeaFeed`] reads a serial port or a
//!   log file on a background thread into a [`SharedFix`].
//! - [`parse_gpsd`]: one line of gpsd's JSON protocol (port 2947); a `TPV` report gives a fix.
//! - [`SyntheticRoute`]: a vehicle driving along the streets of the synthetic city,
//!   deterministic per seed.

use std::io::BufRead;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// NMEA sentence types a fix is read from (position, time, course and speed).
const FIX_SENTENCES: [&str; 5] = ["GGA", "RMC", "VTG", "GLL", "GNS"];

/// A position fix, as every frame carries it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Degrees, north positive.
    pub lat: f64,
    /// Degrees, east positive.
    pub lon: f64,
    /// Metres per second over ground.
    pub speed_mps: f64,
    /// Degrees clockwise from true north.
    pub heading_deg: f64,
    /// When the fix was taken: milliseconds since the Unix epoch for receivers that give a
    /// date, else milliseconds since midnight UTC.
    pub fix_time_ms: u64,
}

impl Fix {
    /// A position on Earth with a finite speed and heading: what a receiver's fix must be
    /// before anything uses it (a bad receiver or a damaged line can say otherwise).
    pub fn is_plausible(&self) -> bool {
        self.lat.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && self.lon.is_finite()
            && (-180.0..=180.0).contains(&self.lon)
            && self.speed_mps.is_finite()
            && self.heading_deg.is_finite()
    }
}

/// Counts of what a GPS source read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GpsStats {
    pub sentences: u64,
    pub bad_sentences: u64,
    pub fixes: u64,
}

const KNOTS_TO_MPS: f64 = 0.514_444;

/// Anything that tells where the vehicle is.
pub trait GpsSource: Send {
    /// The latest fix at `now`, if there is one.
    fn fix(&mut self, now: Instant) -> Option<Fix>;

    /// What a receiver-backed source has read so far; `None` for sources that read nothing
    /// (a synthetic route).
    fn stats(&self) -> Option<GpsStats> {
        None
    }
}

#[derive(Debug, Default)]
struct Latest {
    fix: Option<Fix>,
    stats: GpsStats,
}

/// The latest fix (and read counts) from a receiver read elsewhere: a task or thread reading
/// NMEA or gpsd lines writes it, the frame producer reads it.
#[derive(Debug, Clone, Default)]
pub struct SharedFix(std::sync::Arc<std::sync::Mutex<Latest>>);

impl SharedFix {
    pub fn set(&self, fix: Fix) {
        if let Ok(mut l) = self.0.lock() {
            l.fix = Some(fix);
        }
    }

    /// Records what the reader has read so far.
    pub fn set_stats(&self, stats: GpsStats) {
        if let Ok(mut l) = self.0.lock() {
            l.stats = stats;
        }
    }

    /// What the reader has read so far.
    pub fn read_stats(&self) -> GpsStats {
        self.0.lock().map(|l| l.stats).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Latest)) {
        if let Ok(mut l) = self.0.lock() {
            f(&mut l);
        }
    }
}

impl GpsSource for SharedFix {
    fn fix(&mut self, _now: Instant) -> Option<Fix> {
        self.0.lock().ok().and_then(|l| l.fix)
    }

    fn stats(&self) -> Option<GpsStats> {
        Some(self.read_stats())
    }
}

/// Keeps `shared` up to date from gpsd at `addr` (its JSON protocol on port 2947), until the
/// connection ends.
pub async fn follow_gpsd(addr: std::net::SocketAddr, shared: SharedFix) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"?WATCH={\"enable\":true,\"json\":true}\n")
        .await?;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Some(line) = lines.next_line().await? {
        let fix = parse_gpsd(&line);
        shared.update(|l| {
            l.stats.sentences += 1;
            if let Some(fix) = fix {
                l.stats.fixes += 1;
                l.fix = Some(fix);
            }
        });
    }
    Ok(())
}

/// The NMEA 0183 parser: sentences in, fixes out, bad sentences counted. Sans-IO.
#[derive(Debug, Default)]
pub struct NmeaParser {
    nmea: nmea::Nmea,
    stats: GpsStats,
    latest: Option<Fix>,
}

impl NmeaParser {
    pub fn new() -> Self {
        NmeaParser::default()
    }

    pub fn stats(&self) -> GpsStats {
        self.stats
    }

    /// The latest fix.
    pub fn latest(&self) -> Option<Fix> {
        self.latest
    }

    /// Takes one sentence; returns the fix when it completes or updates one.
    pub fn feed(&mut self, sentence: &str) -> Option<Fix> {
        let sentence = sentence.trim();
        if sentence.is_empty() {
            return None;
        }
        self.stats.sentences += 1;
        // Only the sentences a fix comes from reach the parser: the nmea crate's satellite
        // bookkeeping panics on some GSV sequences (found by the `nmea` fuzz target), and
        // satellites in view are not ours to track.
        let kind = sentence.get(3..6).unwrap_or_default();
        if sentence.starts_with('$') && !FIX_SENTENCES.contains(&kind) {
            return None;
        }
        if let Err(e) = self.nmea.parse(sentence) {
            self.stats.bad_sentences += 1;
            tracing::debug!(error = ?e, sentence, "NMEA sentence skipped");
            return None;
        }
        let (Some(lat), Some(lon)) = (self.nmea.latitude, self.nmea.longitude) else {
            return None;
        };
        let time_of_day = self.nmea.fix_time.map(|t| {
            use chrono::Timelike;
            u64::from(t.num_seconds_from_midnight()) * 1000 + u64::from(t.nanosecond() / 1_000_000)
        });
        let fix_time_ms = match (self.nmea.fix_date, time_of_day) {
            (Some(date), Some(tod)) => date
                .and_hms_opt(0, 0, 0)
                .map(|midnight| midnight.and_utc().timestamp_millis().max(0) as u64 + tod)
                .unwrap_or(tod),
            (None, Some(tod)) => tod,
            _ => 0,
        };
        let fix = Fix {
            lat,
            lon,
            speed_mps: self
                .nmea
                .speed_over_ground
                .map_or(0.0, |k| f64::from(k) * KNOTS_TO_MPS),
            heading_deg: self.nmea.true_course.map_or(0.0, f64::from),
            fix_time_ms,
        };
        if !fix.is_plausible() {
            // Found by fuzzing: the `nmea` crate takes `9807.038,N` (latitude 98.1).
            // The sentence is bad, and what it set must not leak into the next fix.
            self.stats.bad_sentences += 1;
            self.nmea.latitude = None;
            self.nmea.longitude = None;
            self.nmea.speed_over_ground = None;
            self.nmea.true_course = None;
            tracing::debug!(sentence, "NMEA sentence with an impossible fix skipped");
            return None;
        }
        self.stats.fixes += 1;
        self.latest = Some(fix);
        Some(fix)
    }

    /// Counts a line that could not be a sentence (too long, or cut off).
    pub fn count_bad(&mut self) {
        self.stats.sentences += 1;
        self.stats.bad_sentences += 1;
    }
}

/// NMEA 0183 from any line source.
pub struct NmeaGps<R> {
    lines: R,
    parser: NmeaParser,
    line: String,
}

impl<R: BufRead> NmeaGps<R> {
    pub fn new(lines: R) -> Self {
        NmeaGps {
            lines,
            parser: NmeaParser::new(),
            line: String::new(),
        }
    }

    pub fn stats(&self) -> GpsStats {
        self.parser.stats()
    }

    /// The latest fix.
    pub fn latest(&self) -> Option<Fix> {
        self.parser.latest()
    }

    /// Takes one sentence; returns the fix when it completes or updates one.
    pub fn feed(&mut self, sentence: &str) -> Option<Fix> {
        self.parser.feed(sentence)
    }

    /// Reads every line available now (to the end of a file); returns the latest fix.
    pub fn read_available(&mut self) -> std::io::Result<Option<Fix>> {
        loop {
            self.line.clear();
            if self.lines.read_line(&mut self.line)? == 0 {
                return Ok(self.parser.latest());
            }
            let line = std::mem::take(&mut self.line);
            self.feed(&line);
            self.line = line;
        }
    }
}

/// Reads one line of gpsd's JSON protocol; a `TPV` report with a position gives a fix. Other
/// classes (`VERSION`, `SKY`, ...), malformed lines and positions off the Earth give `None`.
pub fn parse_gpsd(line: &str) -> Option<Fix> {
    #[derive(Deserialize)]
    struct Tpv {
        class: String,
        lat: Option<f64>,
        lon: Option<f64>,
        speed: Option<f64>,
        track: Option<f64>,
        time: Option<String>,
    }
    let tpv: Tpv = serde_json::from_str(line).ok()?;
    if tpv.class != "TPV" {
        return None;
    }
    let fix_time_ms = tpv
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis().max(0) as u64);
    Some(Fix {
        lat: tpv.lat?,
        lon: tpv.lon?,
        speed_mps: tpv.speed.unwrap_or(0.0),
        heading_deg: tpv.track.unwrap_or(0.0),
        fix_time_ms,
    })
    .filter(Fix::is_plausible)
}

/// The synthetic city every simulated vehicle drives in and the map server shows: a square
/// grid of streets around a centre point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct City {
    pub centre_lat: f64,
    pub centre_lon: f64,
    /// Streets each way.
    pub streets: u32,
    /// Metres between parallel streets.
    pub block_m: f64,
}

impl Default for City {
    /// Central Tokyo, 12 x 12 streets 200 m apart.
    fn default() -> Self {
        City {
            centre_lat: 35.6812,
            centre_lon: 139.7671,
            streets: 12,
            block_m: 200.0,
        }
    }
}

const EARTH_RADIUS_M: f64 = 6_371_000.0;

impl GpsSource for SyntheticRoute {
    fn fix(&mut self, now: Instant) -> Option<Fix> {
        Some(SyntheticRoute::fix(self, now))
    }
}

impl City {
    /// The position of grid point (x, y) in metres from the south-west corner.
    pub fn to_lat_lon(&self, x_m: f64, y_m: f64) -> (f64, f64) {
        let half = self.block_m * f64::from(self.streets.saturating_sub(1)) / 2.0;
        let north = y_m - half;
        let east = x_m - half;
        let lat = self.centre_lat + (north / EARTH_RADIUS_M).to_degrees();
        let lon = self.centre_lon
            + (east / (EARTH_RADIUS_M * self.centre_lat.to_radians().cos())).to_degrees();
        (lat, lon)
    }
}

/// A vehicle driving the synthetic city's streets: from intersection to a neighbouring one,
/// turning at random (seeded), at a steady speed.
#[derive(Debug, Clone)]
pub struct SyntheticRoute {
    city: City,
    speed_mps: f64,
    rng: ChaCha8Rng,
    /// Intersections (grid indices) of the current leg.
    from: (i64, i64),
    to: (i64, i64),
    leg_started: Instant,
}

impl SyntheticRoute {
    pub fn new(city: City, speed_mps: f64, seed: u64, start: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = i64::from(city.streets.max(2));
        let from = (rng.random_range(0..n), rng.random_range(0..n));
        let mut route = SyntheticRoute {
            city,
            speed_mps: speed_mps.max(0.1),
            rng,
            from,
            to: from,
            leg_started: start,
        };
        route.to = route.next_intersection(from);
        route
    }

    fn next_intersection(&mut self, at: (i64, i64)) -> (i64, i64) {
        let n = i64::from(self.city.streets.max(2));
        let options: Vec<(i64, i64)> = [(1, 0), (-1, 0), (0, 1), (0, -1)]
            .iter()
            .map(|(dx, dy)| (at.0 + dx, at.1 + dy))
            .filter(|&(x, y)| (0..n).contains(&x) && (0..n).contains(&y))
            .collect();
        options[self.rng.random_range(0..options.len())]
    }

    fn leg_time(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.city.block_m / self.speed_mps)
    }

    /// The vehicle's fix at `now` (times must not go backwards).
    pub fn fix(&mut self, now: Instant) -> Fix {
        while now.saturating_duration_since(self.leg_started) >= self.leg_time() {
            self.leg_started += self.leg_time();
            self.from = self.to;
            self.to = self.next_intersection(self.from);
        }
        let t = now
            .saturating_duration_since(self.leg_started)
            .as_secs_f64()
            / self.leg_time().as_secs_f64();
        let b = self.city.block_m;
        let x = (self.from.0 as f64 + (self.to.0 - self.from.0) as f64 * t) * b;
        let y = (self.from.1 as f64 + (self.to.1 - self.from.1) as f64 * t) * b;
        let (lat, lon) = self.city.to_lat_lon(x, y);
        let heading_deg = match (self.to.0 - self.from.0, self.to.1 - self.from.1) {
            (0, 1) => 0.0,
            (1, 0) => 90.0,
            (0, -1) => 180.0,
            _ => 270.0,
        };
        Fix {
            lat,
            lon,
            speed_mps: self.speed_mps,
            heading_deg,
            fix_time_ms: now.as_micros() / 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Real receiver output (checksums computed by the receiver).
    const LOG: &str = "$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76
$GPRMC,092751.000,A,5321.6802,N,00630.3371,W,0.06,31.66,280511,,,A*45
$GPGGA,092751.000,5321.6802,N,00630.3371,W,1,8,1.03,61.7,M,55.3,M,,*00
$GPVTG,31.66,T,,M,0.06,N,0.1,K,A*38
";

    #[test]
    fn nmea_sentences_give_fixes_and_bad_ones_are_counted_and_skipped() {
        let mut gps = NmeaGps::new(LOG.as_bytes());
        let fix = gps.read_available().unwrap().expect("a fix");
        assert!((fix.lat - 53.361_336).abs() < 1e-5, "{fix:?}");
        assert!((fix.lon - -6.505_62).abs() < 1e-5, "{fix:?}");
        assert!((fix.heading_deg - 31.66).abs() < 1e-3);
        assert!((fix.speed_mps - 0.06 * KNOTS_TO_MPS).abs() < 1e-3);
        let s = gps.stats();
        // The third line's checksum is wrong (*00): counted, skipped, not fatal.
        assert_eq!((s.sentences, s.bad_sentences), (4, 1));
        assert_eq!(gps.feed("$GPGGA,garbage"), None);
        assert_eq!(gps.feed("not nmea at all \u{1F600}"), None);
        assert_eq!(gps.stats().bad_sentences, 3);
        assert_eq!(gps.latest(), Some(fix));
    }

    /// `$BODY*XX` with the right checksum.
    fn sentence(body: &str) -> String {
        format!("${body}*{:02X}", body.bytes().fold(0, |a, b| a ^ b))
    }

    #[test]
    fn impossible_positions_are_bad_sentences_and_never_become_fixes() {
        // Found by fuzzing: the `nmea` crate reads two digits of degrees and any minutes, so
        // these parse, as latitude 100 and longitude 255 + 16.7.
        let mut p = NmeaParser::new();
        let good = sentence("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,");
        let fix = p.feed(&good).expect("a fix");
        for body in [
            "GPGGA,092751.000,9960.0000,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,",
            "GPGGA,092751.000,5321.6802,N,2551000.0,E,1,8,1.03,61.7,M,55.2,M,,",
        ] {
            assert_eq!(p.feed(&sentence(body)), None, "{body}");
        }
        assert_eq!((p.stats().bad_sentences, p.stats().fixes), (2, 1));
        // What the bad sentences set does not come back with the next speed report.
        assert_eq!(p.feed(&sentence("GPVTG,31.66,T,,M,0.06,N,0.1,K,A")), None);
        assert_eq!(p.latest(), Some(fix));
        assert!(parse_gpsd(r#"{"class":"TPV","lat":91.0,"lon":139.5}"#).is_none());
        assert!(parse_gpsd(r#"{"class":"TPV","lat":35.5,"lon":-180.5}"#).is_none());
        assert!(parse_gpsd(r#"{"class":"TPV","lat":35.5,"lon":139.5}"#).is_some());
    }

    #[test]
    fn a_gpsd_server_keeps_the_shared_fix_up_to_date() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut watch = [0u8; 64];
                let n = s.read(&mut watch).await.unwrap();
                assert!(std::str::from_utf8(&watch[..n]).unwrap().starts_with("?WATCH="));
                s.write_all(b"{\"class\":\"VERSION\",\"release\":\"3.25\"}\n").await.unwrap();
                s.write_all(b"{\"class\":\"TPV\",\"mode\":3,\"lat\":35.5,\"lon\":139.5,\"speed\":3.0,\"track\":180.0}\n").await.unwrap();
            });
            let mut shared = SharedFix::default();
            assert_eq!(shared.fix(Instant::ZERO), None);
            follow_gpsd(addr, shared.clone()).await.unwrap();
            server.await.unwrap();
            let fix = shared.fix(Instant::ZERO).expect("a fix from gpsd");
            assert_eq!((fix.lat, fix.lon, fix.speed_mps, fix.heading_deg), (35.5, 139.5, 3.0, 180.0));
        });
    }

    #[test]
    fn gpsd_tpv_reports_give_fixes() {
        let tpv = r#"{"class":"TPV","device":"/dev/ttyUSB0","mode":3,"time":"2026-11-25T09:27:51.000Z","lat":35.6812,"lon":139.7671,"track":90.5,"speed":8.2}"#;
        let fix = parse_gpsd(tpv).expect("a fix");
        assert_eq!(
            (fix.lat, fix.lon, fix.heading_deg, fix.speed_mps),
            (35.6812, 139.7671, 90.5, 8.2)
        );
        assert!(fix.fix_time_ms > 1_700_000_000_000);
        assert_eq!(parse_gpsd(r#"{"class":"VERSION","release":"3.25"}"#), None);
        assert_eq!(parse_gpsd(r#"{"class":"TPV","mode":1}"#), None);
        assert_eq!(parse_gpsd("{not json"), None);
    }

    #[test]
    fn synthetic_routes_follow_the_streets_and_repeat_per_seed() {
        let city = City::default();
        let mut a = SyntheticRoute::new(city, 10.0, 7, Instant::ZERO);
        let mut b = SyntheticRoute::new(city, 10.0, 7, Instant::ZERO);
        let mut c = SyntheticRoute::new(city, 10.0, 8, Instant::ZERO);
        let mut differs = false;
        let mut prev = a.fix(Instant::ZERO);
        for s in 1..600 {
            let now = Instant::ZERO + Duration::from_secs(s);
            let (fa, fb, fc) = (a.fix(now), b.fix(now), c.fix(now));
            assert_eq!(fa, fb);
            differs |= fa != fc;
            // 10 m/s for one second: about 10 m, whatever the turns.
            let dy = (fa.lat - prev.lat).to_radians() * EARTH_RADIUS_M;
            let dx = (fa.lon - prev.lon).to_radians() * EARTH_RADIUS_M * fa.lat.to_radians().cos();
            let moved = (dx * dx + dy * dy).sqrt();
            assert!(moved <= 10.5, "moved {moved} m in a second");
            // Always on a street: one coordinate on the grid.
            let half = city.block_m * f64::from(city.streets - 1) / 2.0;
            let north = (fa.lat - city.centre_lat).to_radians() * EARTH_RADIUS_M + half;
            let east = (fa.lon - city.centre_lon).to_radians()
                * EARTH_RADIUS_M
                * city.centre_lat.to_radians().cos()
                + half;
            let on_grid = |m: f64| ((m / city.block_m) - (m / city.block_m).round()).abs() < 1e-3;
            assert!(on_grid(north) || on_grid(east), "off the streets at {fa:?}");
            assert!(
                (-1.0..=2.0 * half + 1.0).contains(&north)
                    && (-1.0..=2.0 * half + 1.0).contains(&east)
            );
            prev = fa;
        }
        assert!(differs, "seeds 7 and 8 drove the same route");
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Found by the `nmea` fuzz target: a GSV sequence that made the nmea crate panic.
    #[test]
    fn satellites_in_view_sentences_are_skipped_without_panicking() {
        let mut p = NmeaParser::new();
        for line in [
            "$GPGSV,2,1,09,01,4,,*47",
            "$GPGSV,2,1,09,01,4,,*47",
            "$GPGSV,2,1,09,01,4,,*47",
            "$GPGSV,2,1,09,01,4,,*47",
            "$GPGSV,2,1,09,01,4,,*47",
        ] {
            assert_eq!(p.feed(line), None);
        }
        assert_eq!(p.stats().bad_sentences, 0);
    }
}
