//! The map server ([0025]-[0026] of the seed): what the browser draws under the mobile clients.
//!
//! - [`city_geojson`]: the synthetic city's streets (the same [`City`] the synthetic vehicles
//!   drive) as a GeoJSON `FeatureCollection` of `LineString`s, so the map works with no
//!   internet and no tile files.
//! - [`Tiles`]: where the map's raster tiles come from, when any are configured: a tile
//!   server's URL template ([`TileUrl`], e.g. OpenStreetMap's, with the attribution it asks
//!   for), which the browser asks directly as every fleet map does, or an MBTiles file
//!   ([`TileSource`], an SQLite database) this server serves for sites without internet.
//!   MBTiles rows are TMS-numbered (y counted from the south); requests are XYZ.
//! - [`BBox`] and [`clients_in`]: "all clients inside this area" ([0003]: supervise the group
//!   of mobile clients in a specified area), and [`positions_geojson`] for their positions.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Value};
use thiserror::Error;

use crate::backend::ClientRow;
use crate::device::City;

/// The city's streets: one `LineString` per street, east-west ones (`kind: "street"`, south to
/// north) then north-south ones (`kind: "avenue"`, west to east), coordinates `[lon, lat]`.
pub fn city_geojson(city: &City) -> Value {
    let n = city.streets.max(1);
    let far = city.block_m * f64::from(n - 1);
    let mut features = Vec::with_capacity(2 * n as usize);
    let point = |x: f64, y: f64| {
        let (lat, lon) = city.to_lat_lon(x, y);
        json!([lon, lat])
    };
    for i in 0..n {
        let y = city.block_m * f64::from(i);
        features.push(json!({
            "type": "Feature",
            "properties": {"kind": "street", "index": i, "name": format!("Street {}", i + 1)},
            "geometry": {"type": "LineString", "coordinates": [point(0.0, y), point(far, y)]},
        }));
    }
    for i in 0..n {
        let x = city.block_m * f64::from(i);
        features.push(json!({
            "type": "Feature",
            "properties": {"kind": "avenue", "index": i, "name": format!("Avenue {}", i + 1)},
            "geometry": {"type": "LineString", "coordinates": [point(x, 0.0), point(x, far)]},
        }));
    }
    let b = city_bounds(city);
    json!({
        "type": "FeatureCollection",
        "bbox": [b.west, b.south, b.east, b.north],
        "features": features,
    })
}

/// The rectangle the city's streets span.
pub fn city_bounds(city: &City) -> BBox {
    let far = city.block_m * f64::from(city.streets.max(1) - 1);
    let (south, west) = city.to_lat_lon(0.0, 0.0);
    let (north, east) = city.to_lat_lon(far, far);
    BBox {
        south,
        west,
        north,
        east,
    }
}

/// A bad area.
#[derive(Debug, Error, PartialEq)]
pub enum BBoxError {
    #[error("{field} must be a finite number of degrees")]
    NotFinite { field: &'static str },
    #[error("{field} = {value} is outside {min}..={max} degrees")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("south ({south}) is north of north ({north})")]
    Inverted { south: f64, north: f64 },
}

/// A latitude/longitude rectangle. `west > east` means the box crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BBox {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl BBox {
    /// Checks every edge: finite, latitudes within +-90, longitudes within +-180, south not
    /// north of north.
    pub fn new(south: f64, west: f64, north: f64, east: f64) -> Result<BBox, BBoxError> {
        for (field, value, limit) in [
            ("south", south, 90.0),
            ("west", west, 180.0),
            ("north", north, 90.0),
            ("east", east, 180.0),
        ] {
            if !value.is_finite() {
                return Err(BBoxError::NotFinite { field });
            }
            if value.abs() > limit {
                return Err(BBoxError::OutOfRange {
                    field,
                    value,
                    min: -limit,
                    max: limit,
                });
            }
        }
        if south > north {
            return Err(BBoxError::Inverted { south, north });
        }
        Ok(BBox {
            south,
            west,
            north,
            east,
        })
    }

    /// Whether the point lies inside or on the edge.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        let lat_ok = lat >= self.south && lat <= self.north;
        let lon_ok = if self.west <= self.east {
            lon >= self.west && lon <= self.east
        } else {
            lon >= self.west || lon <= self.east
        };
        lat_ok && lon_ok
    }
}

/// The clients whose last fix lies inside `area`, in the order given.
pub fn clients_in<'a>(rows: &'a [ClientRow], area: &BBox) -> Vec<&'a ClientRow> {
    rows.iter()
        .filter(|r| {
            r.last_fix
                .is_some_and(|f| area.contains(f.fix.lat, f.fix.lon))
        })
        .collect()
}

/// The last known position of every client that has one, as GeoJSON points with the client id,
/// fix time, speed and heading as properties.
pub fn positions_geojson(rows: &[ClientRow]) -> Value {
    let features: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let f = r.last_fix?;
            Some(json!({
                "type": "Feature",
                "id": r.client,
                "properties": {
                    "client": r.client,
                    "received_ms": f.received_ms,
                    "speed_mps": f.fix.speed_mps,
                    "heading_deg": f.fix.heading_deg,
                },
                "geometry": {"type": "Point", "coordinates": [f.fix.lon, f.fix.lat]},
            }))
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// Where the map's raster tiles come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Tiles {
    /// An MBTiles file this server serves at `/tiles/{z}/{x}/{y}.png`.
    MbTiles(PathBuf),
    /// A tile server the browser asks directly.
    Url(TileUrl),
}

impl Tiles {
    /// What the browser needs to draw them: the URL template and the attribution to show.
    pub fn browser_view(&self) -> Value {
        match self {
            Tiles::MbTiles(_) => json!({
                "url": "/tiles/{z}/{x}/{y}.png",
                "attribution": "local tiles",
            }),
            Tiles::Url(u) => json!({"url": u.template, "attribution": u.attribution}),
        }
    }
}

/// Longest tile URL template and attribution taken.
pub const MAX_TILE_URL: usize = 2048;
pub const MAX_ATTRIBUTION: usize = 512;

/// A tile server's XYZ URL template, `http(s)://host/.../{z}/{x}/{y}.png`, with the
/// attribution its terms ask to be shown on the map (OpenStreetMap's: "(c) OpenStreetMap
/// contributors"). Placeholders are Leaflet's: `{z}`, `{x}`, `{y}` (all three required), `{s}`
/// (a subdomain `a`-`c`) and `{r}` (`@2x` on dense screens).
#[derive(Debug, Clone, PartialEq)]
pub struct TileUrl {
    pub template: String,
    pub attribution: String,
}

/// Why a tile URL template or its attribution was refused.
#[derive(Debug, Error, PartialEq)]
pub enum TileUrlError {
    #[error("tile URL must start with http:// or https://, got {0:?}")]
    Scheme(String),
    #[error("tile URL lacks the placeholder {0} (a template looks like https://tile.example.org/{{z}}/{{x}}/{{y}}.png)")]
    Missing(&'static str),
    #[error("tile URL has an unknown placeholder {{{0}}} (known: z, x, y, s, r)")]
    Unknown(String),
    #[error("tile URL has an unclosed '{{'")]
    Unclosed,
    #[error("tile URL holds whitespace, a quote, '<', '>' or a control character")]
    BadCharacter,
    #[error("{what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("a tile URL needs the attribution its tile source asks for (e.g. \"(c) OpenStreetMap contributors\"); it is empty")]
    NoAttribution,
}

impl TileUrl {
    /// Checks `template` and `attribution`. The browser fills the template in, so nothing in
    /// it may break out of a URL (no whitespace, quotes or angle brackets); the attribution is
    /// shown as text, never as HTML.
    pub fn new(template: &str, attribution: &str) -> Result<TileUrl, TileUrlError> {
        if template.len() > MAX_TILE_URL {
            return Err(TileUrlError::TooLong {
                what: "tile URL",
                max: MAX_TILE_URL,
            });
        }
        if !(template.starts_with("https://") || template.starts_with("http://")) {
            return Err(TileUrlError::Scheme(template.chars().take(40).collect()));
        }
        if template
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'<>`\\".contains(c))
        {
            return Err(TileUrlError::BadCharacter);
        }
        let mut rest = template;
        let mut seen = [false; 3];
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TileUrlError::Unclosed)?;
            match &after[..close] {
                "z" => seen[0] = true,
                "x" => seen[1] = true,
                "y" => seen[2] = true,
                "s" | "r" => {}
                other => return Err(TileUrlError::Unknown(other.chars().take(20).collect())),
            }
            rest = &after[close + 1..];
        }
        for (i, name) in ["{z}", "{x}", "{y}"].into_iter().enumerate() {
            if !seen[i] {
                return Err(TileUrlError::Missing(name));
            }
        }
        let attribution = attribution.trim();
        if attribution.is_empty() {
            return Err(TileUrlError::NoAttribution);
        }
        if attribution.len() > MAX_ATTRIBUTION {
            return Err(TileUrlError::TooLong {
                what: "tile attribution",
                max: MAX_ATTRIBUTION,
            });
        }
        Ok(TileUrl {
            template: template.to_string(),
            attribution: attribution.to_string(),
        })
    }
}

/// An MBTiles failure.
#[derive(Debug, Error)]
pub enum TileError {
    #[error("mbtiles {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("mbtiles {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// A tile as stored, with the content type its first bytes tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub content_type: &'static str,
    pub data: Vec<u8>,
}

/// Raster tiles from an MBTiles file, opened read-only.
#[derive(Debug)]
pub struct TileSource {
    path: PathBuf,
    conn: Connection,
}

/// Highest zoom level asked of a tile file (web maps stop well before it).
pub const MAX_ZOOM: u32 = 24;

impl TileSource {
    pub fn open(path: &Path) -> Result<TileSource, TileError> {
        let err = |e: rusqlite::Error| TileError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        // Fails here, not on the first request, when the file is not MBTiles.
        conn.prepare("SELECT tile_data FROM tiles LIMIT 0")
            .map_err(err)?;
        Ok(TileSource {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Tile `(z, x, y)` in XYZ numbering (y from the north, as web maps ask), if the file has
    /// it. Coordinates outside the zoom level's grid have no tile.
    pub fn tile(&self, z: u32, x: u32, y: u32) -> Result<Option<Tile>, TileError> {
        if z > MAX_ZOOM {
            return Ok(None);
        }
        let side = 1u64 << z;
        if u64::from(x) >= side || u64::from(y) >= side {
            return Ok(None);
        }
        let tms_row = side - 1 - u64::from(y);
        let data: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT tile_data FROM tiles \
                 WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
                rusqlite::params![i64::from(z), i64::from(x), tms_row as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| TileError::Read {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(data.map(|data| Tile {
            content_type: sniff_image(&data),
            data,
        }))
    }
}

/// The content type of an image by its magic bytes (MBTiles holds PNG, JPEG or WebP).
fn sniff_image(data: &[u8]) -> &'static str {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{FixRecord, SessionRecord};
    use crate::device::Fix;

    #[test]
    fn tile_urls_need_a_scheme_all_three_placeholders_and_an_attribution() {
        let osm = TileUrl::new(
            "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}{r}.png",
            " (c) OpenStreetMap contributors ",
        )
        .unwrap();
        assert_eq!(osm.attribution, "(c) OpenStreetMap contributors");
        let view = Tiles::Url(osm).browser_view();
        assert_eq!(
            view["url"],
            "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}{r}.png"
        );
        let bad = |t: &str, a: &str| TileUrl::new(t, a).unwrap_err();
        assert!(matches!(
            bad("ftp://x/{z}/{x}/{y}", "a"),
            TileUrlError::Scheme(_)
        ));
        assert_eq!(
            bad("https://x/{z}/{x}.png", "a"),
            TileUrlError::Missing("{y}")
        );
        assert_eq!(
            bad("https://x/{z}/{x}/{y}/{q}", "a"),
            TileUrlError::Unknown("q".into())
        );
        assert_eq!(bad("https://x/{z}/{x}/{y", "a"), TileUrlError::Unclosed);
        assert_eq!(
            bad("https://x/{z}/{x}/{y}\"onerror=", "a"),
            TileUrlError::BadCharacter
        );
        assert_eq!(
            bad("https://x/{z} /{x}/{y}", "a"),
            TileUrlError::BadCharacter
        );
        assert_eq!(
            bad("https://x/{z}/{x}/{y}", "  "),
            TileUrlError::NoAttribution
        );
        let long = format!("https://x/{{z}}/{{x}}/{{y}}/{}", "a".repeat(MAX_TILE_URL));
        assert!(matches!(bad(&long, "a"), TileUrlError::TooLong { .. }));
        assert!(matches!(
            bad("https://x/{z}/{x}/{y}", &"a".repeat(MAX_ATTRIBUTION + 1)),
            TileUrlError::TooLong { .. }
        ));
    }

    fn row(client: u32, lat: f64, lon: f64) -> ClientRow {
        ClientRow {
            client,
            session: None::<SessionRecord>,
            last_fix: Some(FixRecord {
                client,
                received_ms: 1,
                fix: Fix {
                    lat,
                    lon,
                    speed_mps: 0.0,
                    heading_deg: 0.0,
                    fix_time_ms: 0,
                },
            }),
            last_link: None,
            last_frame: None,
        }
    }

    #[test]
    fn city_streets_span_the_city_bounds() {
        let city = City::default();
        let g = city_geojson(&city);
        let features = g["features"].as_array().unwrap();
        assert_eq!(features.len(), 2 * city.streets as usize);
        let b = city_bounds(&city);
        assert!(b.south < city.centre_lat && city.centre_lat < b.north);
        assert!(b.west < city.centre_lon && city.centre_lon < b.east);
        // 11 blocks of 200 m: 2.2 km north to south.
        let span_m = (b.north - b.south).to_radians() * 6_371_000.0;
        assert!((span_m - 2200.0).abs() < 1.0, "{span_m}");
        for f in features {
            for c in f["geometry"]["coordinates"].as_array().unwrap() {
                let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
                assert!(b.contains(lat, lon), "{lat},{lon} outside {b:?}");
            }
        }
        assert_eq!(features[0]["properties"]["kind"], "street");
        assert_eq!(features[12]["properties"]["kind"], "avenue");
    }

    #[test]
    fn bbox_checks_every_edge() {
        assert!(BBox::new(1.0, 2.0, 3.0, 4.0).is_ok());
        assert_eq!(
            BBox::new(f64::NAN, 0.0, 1.0, 1.0),
            Err(BBoxError::NotFinite { field: "south" })
        );
        assert!(matches!(
            BBox::new(0.0, 0.0, 91.0, 1.0),
            Err(BBoxError::OutOfRange { field: "north", .. })
        ));
        assert!(matches!(
            BBox::new(0.0, -181.0, 1.0, 1.0),
            Err(BBoxError::OutOfRange { field: "west", .. })
        ));
        assert!(matches!(
            BBox::new(2.0, 0.0, 1.0, 1.0),
            Err(BBoxError::Inverted { .. })
        ));
    }

    #[test]
    fn area_selects_clients_inside_including_across_the_antimeridian() {
        let rows = vec![
            row(1, 35.0, 139.0),
            row(2, 36.0, 139.0),
            row(3, 0.0, 179.5),
            row(4, 0.0, -179.5),
            ClientRow {
                last_fix: None,
                ..row(5, 35.0, 139.0)
            },
        ];
        let ids =
            |b: BBox| -> Vec<u32> { clients_in(&rows, &b).iter().map(|r| r.client).collect() };
        assert_eq!(ids(BBox::new(34.5, 138.5, 35.5, 139.5).unwrap()), vec![1]);
        assert_eq!(
            ids(BBox::new(34.0, 138.0, 37.0, 140.0).unwrap()),
            vec![1, 2]
        );
        assert_eq!(
            ids(BBox::new(-1.0, 179.0, 1.0, -179.0).unwrap()),
            vec![3, 4]
        );
        assert_eq!(
            ids(BBox::new(-1.0, -1.0, 1.0, 1.0).unwrap()),
            Vec::<u32>::new()
        );
        let g = positions_geojson(&rows);
        assert_eq!(g["features"].as_array().unwrap().len(), 4);
        assert_eq!(g["features"][0]["geometry"]["coordinates"][0], 139.0);
    }

    /// Writes an MBTiles file with one tile at XYZ (z, x, y) holding `data`.
    pub(crate) fn write_mbtiles(path: &Path, z: u32, x: u32, y: u32, data: &[u8]) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE metadata (name TEXT, value TEXT);
             INSERT INTO metadata VALUES ('format', 'png');
             CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,
                                 tile_data BLOB);",
        )
        .unwrap();
        let tms = (1u32 << z) - 1 - y;
        conn.execute(
            "INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![z, x, tms, data],
        )
        .unwrap();
    }

    #[test]
    fn mbtiles_rows_are_flipped_to_xyz() {
        let dir = std::env::temp_dir().join(format!("livecam-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flip.mbtiles");
        let _ = std::fs::remove_file(&path);
        let png = b"\x89PNG\r\n\x1a\nrest";
        write_mbtiles(&path, 3, 5, 1, png);
        let tiles = TileSource::open(&path).unwrap();
        let t = tiles.tile(3, 5, 1).unwrap().unwrap();
        assert_eq!(t.content_type, "image/png");
        assert_eq!(t.data, png);
        // The same row read without the flip is another tile.
        assert_eq!(tiles.tile(3, 5, 6).unwrap(), None);
        assert_eq!(tiles.tile(3, 8, 1).unwrap(), None);
        assert_eq!(tiles.tile(40, 0, 0).unwrap(), None);
        // A file that is not MBTiles fails at open, naming the file.
        let bad = dir.join("bad.mbtiles");
        std::fs::write(&bad, b"not a database at all, just text").unwrap();
        let e = TileSource::open(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.mbtiles"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
