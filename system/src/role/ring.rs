//! A mobile client's ring of captured frames not yet stored by the backend.
//!
//! Every frame the camera captures goes into the ring; it leaves only when a tier-2 says the
//! database has committed it (wire `STORED`). The ring is bounded by a frame count and a byte
//! count: when a new frame does not fit, the oldest frames are dropped and counted
//! ([`RingStats::frames_dropped`]), never silently.
//!
//! [`FrameRing`] is the interface the camera uses. [`MemoryRing`] keeps the frames in memory
//! (simulations, tests); [`DiskRing`] keeps them in one append-only log file, so frames not
//! yet stored survive a crash or restart of the client. Both share the bounded index
//! ([`RingIndex`]), so they evict the same frames in the same order.
//!
//! The log file is a sequence of records, all integers big-endian:
//!
//! ```text
//! put:     'F' | seq u64 | frame u64 | capture_us u64 | len u32 | header CRC-32C | data | data CRC-32C
//! release: 'D' | 0   u64 | frame u64 | 0          u64 | 0   u32 | header CRC-32C  (stored or dropped)
//! ```
//!
//! `frame` is the frame's 64-bit capture sequence number. The highest one ever written is the
//! ring's [`RingIndex::high_water`]: a compaction keeps it (as a release record of that id
//! when the frame itself is gone), so a restarted camera can number on above every frame it
//! ever captured, even with a wrong clock.
//!
//! On open the log is replayed. A record whose data checksum fails is skipped (its length is
//! known from the checked header). A record whose header is damaged (checksum or tag) has no
//! length to trust: the log is scanned forward for the next intact header and replay goes on
//! from there, so one bad sector costs the records it hit, not every record after it. Only
//! when no intact header follows is the damage a torn tail (the client died while writing):
//! then it is cut off, so new records follow intact ones. Each damaged record or region is
//! counted in [`RingStats::records_corrupt`]. Released and dropped frames leave dead bytes
//! behind; once those outweigh the live ones the log is rewritten (to a temporary file, then
//! renamed over the old one, so a crash in between leaves either the old or the new log; a
//! temporary file left by such a crash is removed on open).
//!
//! Durability: a captured frame counts as kept ([`RingStats::frames_inserted`]) only once its
//! record is on stable storage: every put is followed by `fdatasync` (group commit: the release
//! records written since the last put ride on the same sync; a release lost to a power cut
//! only brings back a frame storage already has, which is then stored again idempotently).
//! A write that fails (disk full, I/O error) keeps nothing of the frame, truncates the half
//! record, counts the frame as dropped and the error in [`RingStats::io_errors`] (and disk
//! full in [`RingStats::disk_full`]); the next frame tries again, so the ring recovers by
//! itself when space returns.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::WireError;

/// A captured frame kept until stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingFrame {
    /// The frame's capture sequence number (its 64-bit identity, see [`super::durable`]).
    pub frame: u64,
    /// Capture time, microseconds on the role clock.
    pub capture_us: u64,
    pub data: Vec<u8>,
}

/// How much a ring holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    pub max_frames: usize,
    pub max_bytes: u64,
}

impl Default for RingLimits {
    /// 64 MiB and 65,536 frames: about 11 minutes of 10 KB frames at 10 fps.
    fn default() -> Self {
        RingLimits {
            max_frames: 65_536,
            max_bytes: 64 << 20,
        }
    }
}

/// A ring's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingStats {
    /// Frames in the ring now.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    pub frames_inserted: u64,
    /// Frames released because storage has them.
    pub frames_released: u64,
    /// Frames dropped unstored because the ring was full (or one frame exceeds its bytes).
    pub frames_dropped: u64,
    /// Log records found damaged on open or on reading (disk ring only).
    pub records_corrupt: u64,
    /// Writes, syncs or reads of the log that failed (disk ring only); such a frame is not kept.
    pub io_errors: u64,
    /// Of those, writes refused because the disk (or the user's quota) was full.
    pub disk_full: u64,
    /// `fdatasync` calls made (one per kept frame, see the module docs).
    pub syncs: u64,
}

/// One frame in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingEntry {
    /// Insertion order: lower is older.
    pub seq: u64,
    pub frame: u64,
    pub capture_us: u64,
    pub len: u64,
    /// Where the data lives (the disk ring's file offset; unused in memory).
    pos: u64,
}

/// The bounded index both rings share: which frames are held, oldest first.
#[derive(Debug, Default)]
pub struct RingIndex {
    limits: RingLimits,
    by_seq: BTreeMap<u64, RingEntry>,
    by_frame: BTreeMap<u64, u64>,
    next_seq: u64,
    /// The highest frame id ever held (kept across releases, compactions and reopens).
    high_water: Option<u64>,
    stats: RingStats,
}

impl RingIndex {
    fn new(limits: RingLimits) -> Self {
        RingIndex {
            limits,
            ..RingIndex::default()
        }
    }

    /// Frames held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &RingEntry> + '_ {
        self.by_seq.values()
    }

    pub fn get(&self, frame: u64) -> Option<&RingEntry> {
        self.by_seq.get(self.by_frame.get(&frame)?)
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// The highest frame id held, if any.
    pub fn max_frame(&self) -> Option<u64> {
        self.by_frame.keys().next_back().copied()
    }

    /// The highest frame id this ring ever held, released or not (on disk: across reopens).
    /// A restarted camera numbers on above it.
    pub fn high_water(&self) -> Option<u64> {
        self.high_water
    }

    fn saw(&mut self, frame: u64) {
        self.high_water = Some(self.high_water.map_or(frame, |h| h.max(frame)));
    }

    fn remove(&mut self, frame: u64) -> Option<RingEntry> {
        let seq = self.by_frame.remove(&frame)?;
        let e = self.by_seq.remove(&seq)?;
        self.stats.frames -= 1;
        self.stats.bytes -= e.len;
        Some(e)
    }

    /// Makes room for a frame of `len` bytes by dropping the oldest frames; returns them.
    /// `None`: the frame alone exceeds the byte bound and cannot be kept.
    fn make_room(&mut self, len: u64) -> Option<Vec<RingEntry>> {
        if len > self.limits.max_bytes || self.limits.max_frames == 0 {
            self.stats.frames_dropped += 1;
            return None;
        }
        let mut dropped = Vec::new();
        while self.by_seq.len() >= self.limits.max_frames
            || self.stats.bytes + len > self.limits.max_bytes
        {
            let Some((_, oldest)) = self.by_seq.first_key_value() else {
                break;
            };
            let frame = oldest.frame;
            if let Some(e) = self.remove(frame) {
                self.stats.frames_dropped += 1;
                dropped.push(e);
            }
        }
        Some(dropped)
    }

    fn add(&mut self, mut e: RingEntry) {
        if let Some(old) = self.remove(e.frame) {
            // The same frame again (a restart reusing an id): the newer copy wins.
            let _ = old;
        }
        if e.seq == u64::MAX {
            e.seq = self.next_seq;
        }
        self.next_seq = self.next_seq.max(e.seq + 1);
        self.saw(e.frame);
        self.stats.frames += 1;
        self.stats.bytes += e.len;
        self.by_frame.insert(e.frame, e.seq);
        self.by_seq.insert(e.seq, e);
    }
}

/// Where a camera keeps frames until they are stored. See the [module docs](self).
pub trait FrameRing: Send {
    /// Keeps `frame` until released. When it does not fit, the oldest frames are dropped
    /// (counted) and their ids returned; a frame larger than the whole ring is not kept (its
    /// own id is returned).
    fn insert(&mut self, frame: RingFrame) -> Vec<u64>;
    /// Forgets a frame storage has. False if it was not held.
    fn release(&mut self, frame: u64) -> bool;
    /// The frame's bytes, if held (and, on disk, readable and intact).
    fn load(&mut self, frame: u64) -> Option<RingFrame>;
    /// The frames held, oldest first.
    fn index(&self) -> &RingIndex;
    fn stats(&self) -> RingStats {
        self.index().stats
    }
}

/// A ring in memory. See the [module docs](self).
#[derive(Debug)]
pub struct MemoryRing {
    index: RingIndex,
    data: BTreeMap<u64, Vec<u8>>,
}

impl MemoryRing {
    pub fn new(limits: RingLimits) -> Self {
        MemoryRing {
            index: RingIndex::new(limits),
            data: BTreeMap::new(),
        }
    }
}

impl FrameRing for MemoryRing {
    fn insert(&mut self, f: RingFrame) -> Vec<u64> {
        let len = f.data.len() as u64;
        let Some(dropped) = self.index.make_room(len) else {
            return vec![f.frame];
        };
        for e in &dropped {
            self.data.remove(&e.frame);
        }
        self.index.stats.frames_inserted += 1;
        self.index.add(RingEntry {
            seq: u64::MAX,
            frame: f.frame,
            capture_us: f.capture_us,
            len,
            pos: 0,
        });
        self.data.insert(f.frame, f.data);
        dropped.iter().map(|e| e.frame).collect()
    }

    fn release(&mut self, frame: u64) -> bool {
        self.data.remove(&frame);
        let held = self.index.remove(frame).is_some();
        if held {
            self.index.stats.frames_released += 1;
        }
        held
    }

    fn load(&mut self, frame: u64) -> Option<RingFrame> {
        let e = self.index.get(frame)?;
        Some(RingFrame {
            frame,
            capture_us: e.capture_us,
            data: self.data.get(&frame)?.clone(),
        })
    }

    fn index(&self) -> &RingIndex {
        &self.index
    }
}

/// Version 2 of the log (64-bit frame ids). Version 1 used 'P' and 'R' with 32-bit ids; its
/// records do not parse as version 2 and are counted as damaged, never misread.
const TAG_PUT: u8 = b'F';
const TAG_RELEASE: u8 = b'D';
/// Tag, seq, frame, capture time, length.
const HEADER_FIELDS: usize = 1 + 8 + 8 + 8 + 4;
const HEADER_LEN: usize = HEADER_FIELDS + 4;
/// Dead bytes tolerated before the log is rewritten, beyond the live bytes.
const COMPACT_SLACK: u64 = 1 << 20;

/// Appends a record header: the fields and their CRC-32C.
fn put_header(out: &mut Vec<u8>, tag: u8, seq: u64, frame: u64, capture_us: u64, len: u32) {
    let start = out.len();
    out.put_u8(tag);
    out.put_u64(seq);
    out.put_u64(frame);
    out.put_u64(capture_us);
    out.put_u32(len);
    let crc = crc32c::crc32c(out.get(start..).unwrap_or_default());
    out.put_u32(crc);
}

/// The record that releases `frame`: a header alone.
fn release_record(frame: u64) -> Vec<u8> {
    let mut rec = Vec::with_capacity(HEADER_LEN);
    put_header(&mut rec, TAG_RELEASE, 0, frame, 0, 0);
    rec
}

/// A record header read back, its checksum and tag checked.
struct Header {
    tag: u8,
    seq: u64,
    frame: u64,
    capture_us: u64,
    len: u64,
}

impl Header {
    /// The header at the start of `h` (at least [`HEADER_LEN`] bytes), if intact.
    fn parse(h: &[u8]) -> Option<Header> {
        let fields = h.get(..HEADER_FIELDS)?;
        let mut r = Reader::new(h.get(HEADER_FIELDS..HEADER_LEN)?);
        if r.u32().ok()? != crc32c::crc32c(fields) {
            return None;
        }
        let head = Self::read(&mut Reader::new(fields)).ok()?;
        [TAG_PUT, TAG_RELEASE].contains(&head.tag).then_some(head)
    }

    fn read(r: &mut Reader<'_>) -> Result<Header, WireError> {
        Ok(Header {
            tag: r.u8()?,
            seq: r.u64()?,
            frame: r.u64()?,
            capture_us: r.u64()?,
            len: u64::from(r.u32()?),
        })
    }
}

/// The offset of the first intact record header at or after `from` (before `len`), reading
/// the log in windows that overlap by a header's length.
fn find_header(file: &mut File, from: u64, len: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 64 << 10;
    let mut buf = vec![0u8; WINDOW + HEADER_LEN];
    let mut at = from;
    while at + HEADER_LEN as u64 <= len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n]
            .windows(HEADER_LEN)
            .position(|h| Header::parse(h).is_some())
        {
            return Ok(Some(at + i as u64));
        }
        at += (n - HEADER_LEN + 1) as u64;
    }
    Ok(None)
}

/// True for the errors a full disk or quota gives.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// A ring in one append-only log file. See the [module docs](self).
#[derive(Debug)]
pub struct DiskRing {
    index: RingIndex,
    path: PathBuf,
    file: File,
    /// Length of the log.
    end: u64,
    /// The log's length when a compaction last failed (disk full): the next try waits until
    /// it has grown by another [`COMPACT_SLACK`].
    compact_failed_at: Option<u64>,
}

impl DiskRing {
    /// Opens the log at `path` (creating it and its directory if missing) and replays it.
    /// Damaged records are skipped or cut off and counted; only an unusable file is an error.
    pub fn open(path: &Path, limits: RingLimits) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut ring = DiskRing {
            index: RingIndex::new(limits),
            path: path.to_path_buf(),
            file,
            end: 0,
            compact_failed_at: None,
        };
        // A compaction that a crash interrupted before its rename: the log is still whole.
        match std::fs::remove_file(ring.compact_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        ring.replay()?;
        // Replaying may have found more than the (possibly smaller) limits allow now.
        while ring.index.len() > limits.max_frames || ring.index.stats.bytes > limits.max_bytes {
            let Some(oldest) = ring.index.iter().next().map(|e| e.frame) else {
                break;
            };
            ring.index.remove(oldest);
            ring.index.stats.frames_dropped += 1;
        }
        // A compaction that fails (a full disk) is retried later, as on every insert: the log
        // as it is still serves.
        if let Err(e) = ring.compact_if_due() {
            ring.io_error("compacting on open", &e);
        }
        Ok(ring)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a compaction writes the new log before renaming it over the old one.
    fn compact_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".compact");
        PathBuf::from(name)
    }

    fn replay(&mut self) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        self.file.seek(SeekFrom::Start(0))?;
        let mut r = BufReader::new(&mut self.file);
        let mut pos = 0u64;
        let mut h = [0u8; HEADER_LEN];
        let mut entries = Vec::new();
        let mut corrupt = 0;
        loop {
            if pos + HEADER_LEN as u64 > len {
                if pos < len {
                    corrupt += 1; // torn header
                }
                break;
            }
            r.read_exact(&mut h)?;
            let Some(head) = Header::parse(&h) else {
                // Damaged header: no length to trust. Go on from the next intact one, if any.
                corrupt += 1;
                match find_header(r.get_mut(), pos + 1, len)? {
                    Some(next) => {
                        r.seek(SeekFrom::Start(next))?;
                        pos = next;
                        continue;
                    }
                    None => break,
                }
            };
            pos += HEADER_LEN as u64;
            match head.tag {
                TAG_RELEASE => entries.push(Err(head.frame)),
                _ => {
                    if pos + head.len + 4 > len {
                        corrupt += 1; // torn data
                        pos -= HEADER_LEN as u64;
                        break;
                    }
                    let mut data = vec![0u8; head.len as usize];
                    r.read_exact(&mut data)?;
                    let mut c = [0u8; 4];
                    r.read_exact(&mut c)?;
                    if crc32c::crc32c(&data) == u32::from_be_bytes(c) {
                        entries.push(Ok(RingEntry {
                            seq: head.seq,
                            frame: head.frame,
                            capture_us: head.capture_us,
                            len: head.len,
                            pos,
                        }));
                    } else {
                        corrupt += 1;
                    }
                    pos += head.len + 4;
                }
            }
        }
        drop(r);
        for e in entries {
            match e {
                Ok(e) => self.index.add(e),
                Err(frame) => {
                    self.index.saw(frame);
                    self.index.remove(frame);
                }
            }
        }
        self.index.stats.records_corrupt += corrupt;
        if pos < len {
            // Cut the torn tail off, so new records follow intact ones.
            self.file.set_len(pos)?;
            self.file.sync_all()?;
        }
        self.end = pos;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let at = self.end;
        self.file.seek(SeekFrom::Start(at))?;
        if let Err(e) = self.file.write_all(bytes) {
            // Leave no half record behind to be taken for a torn tail later.
            let _ = self.file.set_len(at);
            return Err(e);
        }
        self.end += bytes.len() as u64;
        Ok(at)
    }

    /// Syncs the log, whose last record starts at `at`; when the sync fails that record is cut
    /// off again, so a frame reported not kept cannot come back on the next open.
    fn sync_from(&mut self, at: u64) -> io::Result<u64> {
        match self.file.sync_data() {
            Ok(()) => {
                self.index.stats.syncs += 1;
                Ok(at)
            }
            Err(e) => {
                let _ = self.file.set_len(at);
                self.end = at;
                Err(e)
            }
        }
    }

    fn put_record(f: &RingFrame, seq: u64) -> Option<Vec<u8>> {
        let len = u32::try_from(f.data.len()).ok()?;
        let mut rec = Vec::with_capacity(HEADER_LEN + f.data.len() + 4);
        put_header(&mut rec, TAG_PUT, seq, f.frame, f.capture_us, len);
        rec.put_bytes(&f.data);
        rec.put_u32(crc32c::crc32c(&f.data));
        Some(rec)
    }

    fn read_at(&mut self, e: &RingEntry) -> io::Result<Option<Vec<u8>>> {
        self.file.seek(SeekFrom::Start(e.pos))?;
        let mut data = vec![0u8; e.len as usize + 4];
        self.file.read_exact(&mut data)?;
        let crc = data.split_off(e.len as usize);
        let ok = Reader::new(&crc).u32() == Ok(crc32c::crc32c(&data));
        Ok(ok.then_some(data))
    }

    /// Rewrites the log with only the live frames once dead bytes outweigh them.
    fn compact_if_due(&mut self) -> io::Result<()> {
        let live = self.index.stats.bytes + self.index.len() as u64 * (HEADER_LEN as u64 + 4);
        if self.end <= 2 * live + COMPACT_SLACK
            || self
                .compact_failed_at
                .is_some_and(|at| self.end < at + COMPACT_SLACK)
        {
            return Ok(());
        }
        let tmp = self.compact_path();
        // The new file is opened before the rename, so once the rename happened nothing can
        // fail before the ring writes to it (writing on to the old, unlinked one would lose
        // frames).
        let done = self.write_compacted(&tmp).and_then(|(moved, end)| {
            let file = OpenOptions::new().read(true).write(true).open(&tmp)?;
            std::fs::rename(&tmp, &self.path)?;
            Ok((moved, end, file))
        });
        let (moved, end, file) = match done {
            Ok(done) => done,
            Err(e) => {
                // Leave no partial copy behind (it would fill the disk further).
                let _ = std::fs::remove_file(&tmp);
                self.compact_failed_at = Some(self.end);
                return Err(e);
            }
        };
        self.compact_failed_at = None;
        self.file = file;
        self.end = end;
        for e in moved {
            if let Some(seq) = self.index.by_frame.get(&e.frame).copied() {
                self.index.by_seq.insert(seq, e);
            }
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself made durable. If that fails, a power cut may bring back the
            // old log: it holds every frame the new one does, so nothing is lost.
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(error = %e, "frame ring: syncing the directory after compaction");
            }
        }
        Ok(())
    }

    /// Writes the live frames to `tmp` and syncs it; returns their new places and the end.
    fn write_compacted(&mut self, tmp: &Path) -> io::Result<(Vec<RingEntry>, u64)> {
        let mut out = io::BufWriter::new(File::create(tmp)?);
        let mut moved = Vec::with_capacity(self.index.len());
        let mut at = 0u64;
        let entries: Vec<RingEntry> = self.index.iter().copied().collect();
        for e in entries {
            let Some(data) = self.read_at(&e)? else {
                self.index.remove(e.frame);
                self.index.stats.records_corrupt += 1;
                continue;
            };
            let f = RingFrame {
                frame: e.frame,
                capture_us: e.capture_us,
                data,
            };
            let Some(rec) = Self::put_record(&f, e.seq) else {
                continue;
            };
            out.write_all(&rec)?;
            moved.push(RingEntry {
                pos: at + HEADER_LEN as u64,
                ..e
            });
            at += rec.len() as u64;
        }
        // The high water survives the compaction, also when its frame is gone.
        if let Some(hw) = self
            .index
            .high_water
            .filter(|&hw| self.index.get(hw).is_none())
        {
            out.write_all(&release_record(hw))?;
            at += HEADER_LEN as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((moved, at))
    }

    fn io_error(&mut self, what: &str, e: &io::Error) {
        let n = self.index.stats.io_errors;
        self.index.stats.io_errors += 1;
        if is_disk_full(e) {
            self.index.stats.disk_full += 1;
        }
        if n.is_power_of_two() || n == 0 {
            tracing::warn!(path = %self.path.display(), error = %e, errors = n + 1, "frame ring {what} failed");
        }
    }
}

impl FrameRing for DiskRing {
    fn insert(&mut self, f: RingFrame) -> Vec<u64> {
        let len = f.data.len() as u64;
        let Some(dropped) = self.index.make_room(len) else {
            return vec![f.frame];
        };
        let mut out: Vec<u64> = dropped.iter().map(|e| e.frame).collect();
        for &frame in &out {
            // Dropped for good: a reopen must not bring it back.
            if let Err(e) = self.append(&release_record(frame)) {
                self.io_error("write", &e);
            }
        }
        let seq = self.index.next_seq;
        let Some(rec) = Self::put_record(&f, seq) else {
            self.index.stats.frames_dropped += 1;
            out.push(f.frame);
            return out;
        };
        // Kept only once on stable storage (the release records above ride on this sync).
        match self.append(&rec).and_then(|at| self.sync_from(at)) {
            Ok(at) => {
                self.index.stats.frames_inserted += 1;
                self.index.add(RingEntry {
                    seq,
                    frame: f.frame,
                    capture_us: f.capture_us,
                    len,
                    pos: at + HEADER_LEN as u64,
                });
            }
            Err(e) => {
                self.io_error("write", &e);
                self.index.stats.frames_dropped += 1;
                out.push(f.frame);
            }
        }
        if let Err(e) = self.compact_if_due() {
            self.io_error("compaction", &e);
        }
        out
    }

    fn release(&mut self, frame: u64) -> bool {
        if self.index.remove(frame).is_none() {
            return false;
        }
        self.index.stats.frames_released += 1;
        if let Err(e) = self.append(&release_record(frame)) {
            // Not fatal: after a restart the frame is sent again and stored idempotently.
            self.io_error("write", &e);
        }
        if let Err(e) = self.compact_if_due() {
            self.io_error("compaction", &e);
        }
        true
    }

    fn load(&mut self, frame: u64) -> Option<RingFrame> {
        let e = *self.index.get(frame)?;
        match self.read_at(&e) {
            Ok(Some(data)) => Some(RingFrame {
                frame,
                capture_us: e.capture_us,
                data,
            }),
            Ok(None) => {
                self.index.remove(frame);
                self.index.stats.records_corrupt += 1;
                None
            }
            Err(err) => {
                self.io_error("read", &err);
                None
            }
        }
    }

    fn index(&self) -> &RingIndex {
        &self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u64, len: usize) -> RingFrame {
        RingFrame {
            frame: id,
            capture_us: id.wrapping_mul(100_000),
            data: (0..len).map(|i| (i as u64 ^ id) as u8).collect(),
        }
    }

    /// The log's record layout, byte for byte: existing logs must keep reading.
    #[test]
    fn golden_record_bytes() {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let rec = DiskRing::put_record(&frame(0x0102_0304_0506_0708, 5), 9).unwrap();
        assert_eq!(
            hex(&rec),
            "4600000000000000090102030405060708b1da022a527a9500000000051078c79108090a0b0c389a7cc3"
        );
        assert_eq!(
            hex(&release_record(42)),
            "440000000000000000000000000000002a00000000000000000000000056d7f8e7"
        );
        let head = Header::parse(&rec).unwrap();
        assert_eq!(
            (head.tag, head.seq, head.frame, head.capture_us, head.len),
            (
                TAG_PUT,
                9,
                0x0102_0304_0506_0708,
                0x0102_0304_0506_0708u64.wrapping_mul(100_000),
                5
            )
        );
    }

    fn limits(max_frames: usize, max_bytes: u64) -> RingLimits {
        RingLimits {
            max_frames,
            max_bytes,
        }
    }

    fn held(ring: &dyn FrameRing) -> Vec<u64> {
        ring.index().iter().map(|e| e.frame).collect()
    }

    fn bounds_drop_the_oldest_and_count(ring: &mut dyn FrameRing) {
        // 4 frames or 1000 bytes.
        for id in 0..4 {
            assert!(ring.insert(frame(id, 200)).is_empty());
        }
        assert_eq!(ring.insert(frame(4, 200)), vec![0], "count bound");
        assert_eq!(ring.insert(frame(5, 500)), vec![1, 2], "byte bound");
        assert_eq!(held(ring), vec![3, 4, 5]);
        assert_eq!(ring.insert(frame(6, 2000)), vec![6], "larger than the ring");
        assert!(ring.release(4));
        assert!(!ring.release(4));
        assert_eq!(ring.load(5), Some(frame(5, 500)));
        assert_eq!(ring.load(4), None);
        let s = ring.stats();
        assert_eq!(
            (
                s.frames,
                s.bytes,
                s.frames_inserted,
                s.frames_released,
                s.frames_dropped
            ),
            (2, 700, 6, 1, 4)
        );
    }

    #[test]
    fn memory_ring_is_bounded() {
        bounds_drop_the_oldest_and_count(&mut MemoryRing::new(limits(4, 1000)));
    }

    #[test]
    fn disk_ring_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        bounds_drop_the_oldest_and_count(&mut DiskRing::open(&path, limits(4, 1000)).unwrap());
        // The same after a reopen.
        let mut ring = DiskRing::open(&path, limits(4, 1000)).unwrap();
        assert_eq!(held(&ring), vec![3, 5]);
        assert_eq!(ring.load(5), Some(frame(5, 500)));
        assert_eq!(ring.stats().records_corrupt, 0);
    }

    #[test]
    fn disk_ring_keeps_unreleased_frames_across_reopen_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ring.log");
        let lim = limits(1000, 1 << 30);
        {
            let mut ring = DiskRing::open(&path, lim).unwrap();
            for id in 0..600 {
                ring.insert(frame(id, 5000));
            }
            // Release all but every 100th: the log gets rewritten on the way.
            for id in (0..600).filter(|id| id % 100 != 0) {
                assert!(ring.release(id));
            }
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(
                len < 2 * 6 * 5100 + COMPACT_SLACK,
                "log compacted: {len} bytes"
            );
        }
        let mut ring = DiskRing::open(&path, lim).unwrap();
        assert_eq!(held(&ring), vec![0, 100, 200, 300, 400, 500]);
        for id in held(&ring) {
            assert_eq!(ring.load(id), Some(frame(id, 5000)));
        }
        assert_eq!(ring.index().max_frame(), Some(500));
        // Reopened with smaller limits: the oldest beyond them are dropped and counted.
        drop(ring);
        let ring = DiskRing::open(&path, limits(2, 1 << 30)).unwrap();
        assert_eq!(held(&ring), vec![400, 500]);
        assert_eq!(ring.stats().frames_dropped, 4);
    }

    #[test]
    fn the_high_water_outlives_its_frame_compactions_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        let lim = limits(1000, 1 << 30);
        let big = u64::MAX - 3;
        {
            let mut ring = DiskRing::open(&path, lim).unwrap();
            ring.insert(frame(big, 10));
            assert_eq!(ring.index().high_water(), Some(big));
            // Stored and released: nothing is held, the high water stays.
            assert!(ring.release(big));
            assert_eq!(ring.index().max_frame(), None);
            assert_eq!(ring.index().high_water(), Some(big));
            // Enough traffic below it that the log is rewritten without that frame.
            for id in 0..400 {
                ring.insert(frame(id, 5000));
                assert!(ring.release(id));
            }
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len < COMPACT_SLACK + 5100, "compacted: {len} bytes");
        }
        let ring = DiskRing::open(&path, lim).unwrap();
        assert!(held(&ring).is_empty());
        assert_eq!(
            ring.index().high_water(),
            Some(big),
            "kept across the reopen"
        );
        assert_eq!(ring.stats().records_corrupt, 0);
    }

    #[test]
    fn disk_ring_skips_corrupt_records_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        let lim = limits(100, 1 << 20);
        {
            let mut ring = DiskRing::open(&path, lim).unwrap();
            for id in 0..5 {
                ring.insert(frame(id, 100));
            }
        }
        let rec = (HEADER_LEN + 100 + 4) as u64;
        let mut bytes = std::fs::read(&path).unwrap();
        // Damage frame 1's data, and tear frame 4's record in half.
        bytes[(rec + HEADER_LEN as u64 + 10) as usize] ^= 0xff;
        bytes.truncate((4 * rec + rec / 2) as usize);
        std::fs::write(&path, &bytes).unwrap();
        let mut ring = DiskRing::open(&path, lim).unwrap();
        assert_eq!(held(&ring), vec![0, 2, 3]);
        assert_eq!(ring.stats().records_corrupt, 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * rec, "tail cut");
        // New records follow the intact ones and survive the next open.
        ring.insert(frame(7, 100));
        drop(ring);
        let mut ring = DiskRing::open(&path, lim).unwrap();
        assert_eq!(held(&ring), vec![0, 2, 3, 7]);
        assert_eq!(ring.load(7), Some(frame(7, 100)));
        assert_eq!(
            ring.stats().records_corrupt,
            1,
            "frame 1's record is still there"
        );
        // Garbage from the start, with no intact header anywhere: a torn tail at 0, an empty
        // ring, no panic.
        std::fs::write(&path, b"not a ring at all, just some bytes here....").unwrap();
        let ring = DiskRing::open(&path, lim).unwrap();
        assert!(ring.index().is_empty());
        assert_eq!(ring.stats().records_corrupt, 1);
    }

    #[test]
    fn a_damaged_header_costs_its_record_not_the_rest_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        let lim = limits(100, 1 << 20);
        {
            let mut ring = DiskRing::open(&path, lim).unwrap();
            for id in 0..6 {
                ring.insert(frame(id, 100));
            }
            assert!(ring.release(5));
        }
        let rec = HEADER_LEN + 100 + 4;
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        // A bad sector: frame 1's header, and frame 3's length field (its checksum then fails,
        // so the length is not believed).
        bytes[rec + 3] ^= 0x5a;
        bytes[3 * rec + 22] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let mut ring = DiskRing::open(&path, lim).unwrap();
        assert_eq!(
            held(&ring),
            vec![0, 2, 4],
            "frame 5's release was still read"
        );
        assert_eq!(ring.stats().records_corrupt, 2);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len as u64,
            "nothing cut off: the damage is not a tail"
        );
        for id in [0, 2, 4] {
            assert_eq!(ring.load(id), Some(frame(id, 100)));
        }
        ring.insert(frame(9, 100));
        drop(ring);
        let ring = DiskRing::open(&path, lim).unwrap();
        assert_eq!(held(&ring), vec![0, 2, 4, 9]);
    }

    #[test]
    fn every_kept_frame_is_synced_and_compaction_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        let lim = limits(3, 1 << 20);
        let mut ring = DiskRing::open(&path, lim).unwrap();
        for id in 0..5 {
            ring.insert(frame(id, 100));
        }
        ring.release(3);
        let s = ring.stats();
        assert_eq!((s.frames_inserted, s.syncs, s.frames_dropped), (5, 5, 2));
        drop(ring);
        // A crash between writing a compacted copy and renaming it leaves the copy behind.
        let leftover = dir.path().join("ring.log.compact");
        std::fs::write(&leftover, vec![7u8; 4096]).unwrap();
        let ring = DiskRing::open(&path, lim).unwrap();
        assert!(!leftover.exists(), "the half-written copy is removed");
        assert_eq!(held(&ring), vec![2, 4]);
        assert_eq!(ring.stats().records_corrupt, 0);
    }
}
