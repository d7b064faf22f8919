//! `GET /api/clients/{id}/export.zip?from&to&limit`: a client's history of a time range as a
//! zip archive (issue 20, item 4), for any logged-in user (as the history it packs):
//!
//! - `frames/CAPTUREMS_FRAME.jpg`: every stored picture received in `[from, to]` (the same
//!   range rules as `/frames`: the last ten minutes by default), named by its capture time
//!   (ms since the Unix epoch on the camera's clock, 13 digits) and frame id (20 digits), so
//!   that names sort by capture time; the entry's modification time is the capture time too.
//! - `frames.csv`: one row per picture in the archive: its file, frame id, capture and receive
//!   times, fix (empty when it had none) and segment size.
//! - `fixes.csv`: every fix received in the range, with a header: `received_ms, fix_time_ms,
//!   lat, lon, speed_mps, heading_deg`.
//! - `TRUNCATED.txt`, only when the range holds more than `limit` pictures (at most and by
//!   default [`MAX_FRAMES`]) or more than [`MAX_FIXES`] fixes: what was left out and the `from`
//!   to ask for the rest.
//!
//! The archive is streamed: a blocking task reads one picture at a time (the storage lock is
//! held per picture, never while the network waits) and writes it through a small bounded
//! channel to the response, so memory stays at a few chunks whatever the range. Entries are
//! stored uncompressed (JPEGs do not compress). At most [`MAX_CONCURRENT`] exports run at once
//! per server; beyond that a request gets 503 at once. A storage failure halfway ends the
//! response early (the archive then lacks its directory and no unzipper takes it as whole).

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, Semaphore};

use super::routes::{params, parse_id, QueryArg};
use super::{with_storage, ApiError, AppState};
use crate::backend::{FixRecord, FrameMeta};

/// Pictures per archive at most (and by default).
pub const MAX_FRAMES: u32 = 10_000;
/// Fixes per archive at most.
pub const MAX_FIXES: u32 = 100_000;
/// Exports running at once at most.
pub const MAX_CONCURRENT: usize = 2;
/// Bytes per chunk sent to the response.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the network at most.
const CHUNKS_QUEUED: usize = 4;

static EXPORTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT);

/// The archive's name of a picture.
pub fn frame_file(m: &FrameMeta) -> String {
    format!("frames/{:013}_{:020}.jpg", m.capture_ms, m.frame)
}

pub(super) async fn export(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    query: QueryArg,
) -> Result<Response, ApiError> {
    let id: u32 = parse_id(&id, "client id")?;
    let (from, to, limit) = params(query)?.range_limited(MAX_FRAMES, MAX_FRAMES)?;
    // A `'static` permit: it moves into the writing task and ends with it.
    let permit = EXPORTS.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_CONCURRENT} exports are running already; try again when one ends"),
        )
    })?;
    let (mut frames, mut fixes) = with_storage(&shared, move |s| {
        Ok((
            s.frames(id, from, to, limit + 1)?,
            s.track(id, from, to, MAX_FIXES + 1)?,
        ))
    })
    .await?;
    let more_frames = frames.len() > limit as usize;
    frames.truncate(limit as usize);
    let more_fixes = fixes.len() > MAX_FIXES as usize;
    fixes.truncate(MAX_FIXES as usize);
    let plan = Plan {
        client: id,
        from,
        to,
        frames,
        fixes,
        more_frames,
        more_fixes,
    };
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let storage = shared.state.storage.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let written = write_archive(&plan, &mut out, |frame| {
            let mut db = storage
                .lock()
                .map_err(|_| "storage lock poisoned".to_string())?;
            db.frame(plan.client, frame).map_err(|e| e.to_string())
        })
        .and_then(|()| out.flush().map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(client = plan.client, error = %e, "export ended early");
            let _ = out.tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"livecam-client{id}-{from}-{to}.zip\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(ChunkStream(rx)),
    )
        .into_response())
}

/// What goes into an archive.
struct Plan {
    client: u32,
    from: i64,
    to: i64,
    frames: Vec<FrameMeta>,
    fixes: Vec<FixRecord>,
    more_frames: bool,
    more_fixes: bool,
}

/// The entries' modification time: the capture time, when a zip can hold it (1980-2107).
fn zip_time(ms: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp_millis(ms)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                u16::try_from(t.year()).ok()?,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

fn num(v: f64) -> String {
    v.to_string()
}

/// Writes the archive of `plan` to `out`, reading pictures with `frame`. A picture gone
/// meanwhile (retention) is left out (and out of `frames.csv`).
fn write_archive<W: Write>(
    plan: &Plan,
    out: W,
    mut frame: impl FnMut(u64) -> Result<Option<crate::backend::FrameRecord>, String>,
) -> Result<(), String> {
    let zip_err = |e: zip::result::ZipError| e.to_string();
    let mut zip = zip::ZipWriter::new_stream(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);

    let mut fixes = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| e.to_string();
    fixes
        .write_record([
            "received_ms",
            "fix_time_ms",
            "lat",
            "lon",
            "speed_mps",
            "heading_deg",
        ])
        .map_err(csv_err)?;
    for f in &plan.fixes {
        fixes
            .write_record([
                f.received_ms.to_string(),
                f.fix.fix_time_ms.to_string(),
                num(f.fix.lat),
                num(f.fix.lon),
                num(f.fix.speed_mps),
                num(f.fix.heading_deg),
            ])
            .map_err(csv_err)?;
    }
    let fixes = fixes.into_inner().map_err(|e| e.to_string())?;
    zip.start_file("fixes.csv", options).map_err(zip_err)?;
    zip.write_all(&fixes).map_err(|e| e.to_string())?;

    let mut index = csv::Writer::from_writer(Vec::new());
    index
        .write_record([
            "file",
            "frame",
            "capture_ms",
            "received_ms",
            "lat",
            "lon",
            "speed_mps",
            "heading_deg",
            "fix_time_ms",
            "segment_size",
        ])
        .map_err(csv_err)?;
    for m in &plan.frames {
        let Some(record) = frame(m.frame)? else {
            continue;
        };
        let name = frame_file(m);
        zip.start_file(
            name.as_str(),
            options.last_modified_time(zip_time(m.capture_ms)),
        )
        .map_err(zip_err)?;
        zip.write_all(&record.jpeg).map_err(|e| e.to_string())?;
        let fix = |f: fn(&crate::device::Fix) -> String| m.fix.as_ref().map(f).unwrap_or_default();
        index
            .write_record([
                name,
                m.frame.to_string(),
                m.capture_ms.to_string(),
                m.received_ms.to_string(),
                fix(|f| num(f.lat)),
                fix(|f| num(f.lon)),
                fix(|f| num(f.speed_mps)),
                fix(|f| num(f.heading_deg)),
                fix(|f| f.fix_time_ms.to_string()),
                m.segment_size.to_string(),
            ])
            .map_err(csv_err)?;
    }
    let index = index.into_inner().map_err(|e| e.to_string())?;
    zip.start_file("frames.csv", options).map_err(zip_err)?;
    zip.write_all(&index).map_err(|e| e.to_string())?;

    if plan.more_frames || plan.more_fixes {
        let mut note = format!(
            "This archive of client {} from {} to {} (ms since the Unix epoch) is incomplete:\n",
            plan.client, plan.from, plan.to
        );
        if let (true, Some(last)) = (plan.more_frames, plan.frames.last()) {
            note.push_str(&format!(
                "- it holds the first {} pictures of the range; export again with from={} for \
                 the rest.\n",
                plan.frames.len(),
                last.received_ms
            ));
        }
        if let (true, Some(last)) = (plan.more_fixes, plan.fixes.last()) {
            note.push_str(&format!(
                "- fixes.csv holds the first {} fixes of the range; export again with from={} \
                 for the rest.\n",
                plan.fixes.len(),
                last.received_ms
            ));
        }
        zip.start_file("TRUNCATED.txt", options).map_err(zip_err)?;
        zip.write_all(note.as_bytes()).map_err(|e| e.to_string())?;
    }
    zip.finish().map_err(zip_err)?;
    Ok(())
}

/// Writes in chunks of [`CHUNK`] to the response's channel; fails once the response is gone.
struct Chunks {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download ended"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A response body of chunks as they come (the export's zip, the MJPEG stream's parts).
pub(super) struct ChunkStream(pub(super) mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
