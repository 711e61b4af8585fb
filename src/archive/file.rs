//! One context's archive as a bounded, append-only log of segment files in a directory, with a
//! RabbitMQ stream's semantics: every input gets the next offset (from 0, forever, also across
//! deletion and reopening), keeps the time it arrived, and goes when retention removes its whole
//! segment, oldest first.
//!
//! # On disk
//! A directory per context holds segments named `<first offset, 20 digits>.seg`. Only the newest
//! (active) segment is written; it is rolled when the next record would take it past the segment
//! size, an eighth of the retention's `max_bytes` (between 4 KiB and 64 MiB), so that retention by
//! size works at that granularity, as a stream's does. A segment is a plain run of records, each:
//!
//! | bytes | field                                                                     |
//! |-------|---------------------------------------------------------------------------|
//! | 1     | marker and format version, [`RECORD_MARKER`]                              |
//! | 4     | the record's total length in bytes, this header included                  |
//! | 4     | CRC32 (IEEE) of everything after it                                       |
//! | 8     | offset                                                                    |
//! | 8     | time, unix milliseconds (signed; a time before the epoch is stored as 0)  |
//! | 1 (+4+n) | content type: 0 when absent, 1 then its length and UTF-8 bytes         |
//! | 4     | header count, then per header its name's and its value's length and bytes |
//! | 4+n   | body length and bytes                                                     |
//!
//! Integers are little-endian. A record is at most 4 MiB ([`MAX_RECORD_BYTES`]), its body at most
//! 2 MiB ([`MAX_BODY_BYTES`]): every length read is checked against these caps and against the bytes
//! left, so a corrupt file is refused instead of making the reader allocate gigabytes.
//!
//! # Recovery and corruption
//! Records are written through to the OS on every append, and fsynced when a segment is rolled
//! and on [`FileArchive::sync`]. A crash can therefore tear only the tail of the last segment:
//! [`FileArchive::open`] cuts it at the last complete record and logs it. Damage anywhere else
//! (an older segment, or a record whose checksum holds but whose content does not) is an
//! [`io::ErrorKind::InvalidData`] error naming the file and position, never silently dropped.
//!
//! # In memory
//! Per segment: its offsets, its size, its newest time and a sparse index (every
//! [`INDEX_INTERVAL`]th record's offset and position, with the newest time from there to the next
//! entry), so that a read or a search by time seeks near its record and reads at most one index
//! interval it does not need. One process per directory; within it, a mutex guards the state, and
//! reads open their file under it but read outside it (an open file stays readable even when
//! retention deletes it meanwhile).

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::pipeline::Delivery;

/// The first byte of every record: a marker and the format's version.
pub const RECORD_MARKER: u8 = 0xA1;

/// The most bytes one record takes, header included.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// The most bytes a record's body takes.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// Every how many records of a segment the in-memory index keeps a position.
pub const INDEX_INTERVAL: u64 = 64;

/// The smallest and largest segment, whatever the retention's size.
const SEGMENT_BYTES_BOUNDS: (u64, u64) = (4 << 10, 64 << 20);

/// Marker, total length and checksum.
const HEADER_BYTES: usize = 1 + 4 + 4;

/// Offset, time, an absent content type, no headers and an empty body.
const MIN_RECORD_BYTES: usize = HEADER_BYTES + 8 + 8 + 1 + 4 + 4;

/// Where the offset sits in an encoded record (right after the header).
const OFFSET_AT: usize = HEADER_BYTES;

/// How much a read takes from the file at once.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// How long and how much an archive keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A segment goes when its newest record is older than this.
    pub max_age: Duration,
    /// The oldest segments go while the archive is larger than this.
    pub max_bytes: u64,
}

/// One archived input.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its place in the archive: 0 for the first input ever, then one more per input.
    pub offset: u64,
    /// When it arrived, to the millisecond.
    pub time: SystemTime,
    /// The input as the transport handed it over.
    pub delivery: Delivery,
}

/// One context's archive in its own directory; see the module doc.
pub struct FileArchive {
    /// The directory, for `Debug` without taking the lock.
    dir: PathBuf,
    /// Everything that changes, behind one lock: each call holds it only briefly.
    inner: Mutex<Inner>,
}

impl fmt::Debug for FileArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileArchive")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileArchive {
    /// Opens (creating) the archive in `dir` (one directory per context), recovering what a
    /// previous process wrote: every complete record is kept; a torn or corrupt tail of the last
    /// segment (a crash mid-write) is cut off at the last good record and logged. Damage anywhere
    /// else is an `InvalidData` error naming the file and position.
    pub fn open(dir: &Path, retention: Retention) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(in_file("cannot create the archive directory", dir))?;
        let firsts = segment_firsts(dir)?;
        let mut sealed = VecDeque::with_capacity(firsts.len());
        let mut active = None;
        for (i, &first_offset) in firsts.iter().enumerate() {
            let path = segment_path(dir, first_offset);
            let previous_next = sealed.back().map(|segment: &Segment| segment.next_offset);
            if let Some(expected) = previous_next
                && expected != first_offset
            {
                return Err(invalid_data(format!(
                    "archive segment {} starts at offset {first_offset}, but the segment before it ends at {expected}",
                    path.display()
                )));
            }
            let segment = recover_segment(path, first_offset, i + 1 == firsts.len())?;
            if i + 1 == firsts.len() {
                active = Some(segment);
            } else {
                sealed.push_back(segment);
            }
        }
        let active = match active {
            Some(segment) => segment,
            None => create_segment(dir, 0)?,
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&active.path)
            .map_err(in_file("cannot open archive segment", &active.path))?;
        let sealed_bytes = sealed.iter().map(|segment| segment.bytes).sum();
        let inner = Inner {
            dir: dir.to_path_buf(),
            retention,
            sealed,
            sealed_bytes,
            active,
            file,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
        })
    }

    /// Appends one input and returns its offset. The record is written through to the OS before
    /// this returns, but not fsynced (that happens when its segment is rolled, or on `sync`).
    /// Retention is applied afterwards, so a `set_retention` takes effect here.
    pub fn append(&self, delivery: &Delivery, time: SystemTime) -> io::Result<u64> {
        let time_millis = millis_floor(time);
        let mut record = encode(delivery, time_millis).map_err(|message| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("archive {}: {message}", self.dir.display()),
            )
        })?;
        let mut inner = self.lock();
        let offset = inner.append(&mut record, time_millis)?;
        if let Err(error) = inner.enforce(SystemTime::now()) {
            tracing::warn!(archive = %self.dir.display(), %error, "Archive retention failed; it is tried again at the next append.");
        }
        Ok(offset)
    }

    /// Up to `max` records from offset `from` on, in offset order. A `from` below the first kept
    /// offset starts at the first kept record; past the end gives none. Seeks near `from` with the
    /// index and reads outside the lock.
    pub fn read(&self, from: u64, max: usize) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        let mut from = from;
        while records.len() < max {
            let span = self.lock().span_from(from)?;
            let Some(mut span) = span else { break };
            from = span.segment_next_offset;
            while records.len() < max
                && let Some(record) = span.reader.next_record()?
            {
                if record.offset >= span.from {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }

    /// The offset of the first kept record, in offset order, whose time is at or after `time`; the
    /// next offset when none is. A clock that stepped back is allowed for: the search starts at the
    /// first segment, then the first index interval, whose newest time is at or after `time`.
    pub fn offset_at(&self, time: SystemTime) -> io::Result<u64> {
        let since = millis_ceil(time);
        let mut span = {
            let inner = self.lock();
            match inner.span_at_time(since)? {
                Some(span) => span,
                None => return Ok(inner.next_offset()),
            }
        };
        while let Some(decoded) = span.reader.next_decoded()? {
            if decoded.time_millis >= since {
                return Ok(decoded.record.offset);
            }
        }
        Err(invalid_data(format!(
            "archive segment {}: the index has a record at or after {since} ms that the file no longer holds",
            span.reader.path.display()
        )))
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.lock().next_offset()
    }

    /// The first offset still kept (the next offset when the archive is empty).
    pub fn first_offset(&self) -> u64 {
        self.lock().first_offset()
    }

    /// Bytes on disk, all segments together.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes()
    }

    /// Replaces the retention (the registry changed); applied at the next append or `enforce`.
    pub fn set_retention(&self, retention: Retention) {
        self.lock().retention = retention;
    }

    /// Applies retention now, as a RabbitMQ stream does: whole segments only, oldest first, never
    /// the active one. A segment goes when its newest record is older than `now - max_age`, or
    /// while the archive is larger than `max_bytes`. Returns how many records went.
    pub fn enforce(&self, now: SystemTime) -> io::Result<u64> {
        self.lock().enforce(now)
    }

    /// Fsyncs the active segment.
    pub fn sync(&self) -> io::Result<()> {
        let inner = self.lock();
        inner
            .file
            .sync_all()
            .map_err(in_file("cannot sync archive segment", &inner.active.path))
    }

    /// The state. A poisoned lock is taken over: the state changes only after each file operation
    /// succeeded, so a panic elsewhere while holding it cannot leave it half-changed.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An archive's state behind its lock.
#[derive(Debug)]
struct Inner {
    /// The archive's directory, where new segments are created.
    dir: PathBuf,
    /// What `enforce` keeps, and the size of the segments it rolls.
    retention: Retention,
    /// The segments no longer written, oldest first: retention removes from the front.
    sealed: VecDeque<Segment>,
    /// The sum of the sealed segments' bytes, so `bytes` needs no walk.
    sealed_bytes: u64,
    /// The segment appends go to; never removed by retention.
    active: Segment,
    /// The active segment opened for writing.
    file: File,
}

/// What is known in memory of one segment file.
#[derive(Debug)]
struct Segment {
    /// The file, `<first offset>.seg` in the archive's directory.
    path: PathBuf,
    /// Its first record's offset (kept when it is empty, for its name).
    first_offset: u64,
    /// One past its last record's offset.
    next_offset: u64,
    /// The end of its last complete record: its size, and where the next append goes.
    bytes: u64,
    /// The greatest time of its records (its last record's, unless a clock stepped back).
    newest_millis: Option<i64>,
    /// Every `INDEX_INTERVAL`th record's place, so reads seek instead of scanning.
    index: Vec<IndexEntry>,
}

/// One sparse index entry of a segment.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    /// The record's offset.
    offset: u64,
    /// Where the record starts in the file.
    position: u64,
    /// The greatest time from this record to the next entry, for `offset_at`.
    newest_millis: i64,
}

/// A run of one segment to read outside the lock.
struct Span {
    /// The records from where the index lets it start to the segment's end when it was made.
    reader: SegmentReader,
    /// The first offset wanted; records before it (at most an index interval) are skipped.
    from: u64,
    /// The segment's next offset when the span was made: where a read goes on.
    segment_next_offset: u64,
}

/// Reads records one by one from a position of a segment file up to a known end.
struct SegmentReader {
    /// The file, for errors.
    path: PathBuf,
    /// The file, positioned at `position`.
    reader: BufReader<File>,
    /// Where the next record starts.
    position: u64,
    /// Where the records end: the file's length when opening, the segment's size otherwise.
    end: u64,
    /// The offset the next record must carry.
    next_offset: u64,
}

/// A record as read, with what the index needs.
struct Decoded {
    record: Record,
    time_millis: i64,
    len: u64,
}

/// Why the bytes at a position are not a good record.
struct Damage {
    position: u64,
    kind: DamageKind,
}

enum DamageKind {
    /// What a crash mid-write leaves (too short, not a record, checksum wrong): cut when it is the
    /// last segment's tail.
    Torn(String),
    /// A record whose checksum holds but whose content is wrong: never cut.
    Invalid(String),
    /// The file could not be read.
    Io(io::Error),
}

impl Inner {
    fn first_offset(&self) -> u64 {
        self.sealed
            .front()
            .map_or(self.active.first_offset, |segment| segment.first_offset)
    }

    fn next_offset(&self) -> u64 {
        self.active.next_offset
    }

    fn bytes(&self) -> u64 {
        self.sealed_bytes + self.active.bytes
    }

    /// The size at which the active segment is rolled.
    fn segment_bytes(&self) -> u64 {
        let (smallest, largest) = SEGMENT_BYTES_BOUNDS;
        (self.retention.max_bytes / 8).clamp(smallest, largest)
    }

    /// Seals `record` with the next offset and writes it, rolling the segment first when the
    /// record would take it past the segment size.
    fn append(&mut self, record: &mut [u8], time_millis: i64) -> io::Result<u64> {
        let offset = self.next_offset();
        seal(record, offset);
        let len = record.len() as u64;
        if self.active.bytes > 0 && self.active.bytes + len > self.segment_bytes() {
            self.roll()?;
        }
        let position = self.active.bytes;
        let written = self
            .file
            .seek(SeekFrom::Start(position))
            .and_then(|_| self.file.write_all(record));
        if let Err(error) = written {
            // Best effort: a torn record left behind would be overwritten by the next append
            // anyway (it writes at the segment's known end), or cut when reopening.
            if let Err(cut_error) = self.file.set_len(position) {
                tracing::warn!(segment = %self.active.path.display(), error = %cut_error, "Could not cut a failed append off an archive segment.");
            }
            return Err(in_file("cannot write archive segment", &self.active.path)(
                error,
            ));
        }
        self.active.push(offset, position, len, time_millis);
        Ok(offset)
    }

    /// Fsyncs the active segment, seals it and starts a new one at the next offset.
    fn roll(&mut self) -> io::Result<()> {
        self.file
            .sync_all()
            .map_err(in_file("cannot sync archive segment", &self.active.path))?;
        let next = create_segment(&self.dir, self.active.next_offset)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&next.path)
            .map_err(in_file("cannot open archive segment", &next.path))?;
        let sealed = std::mem::replace(&mut self.active, next);
        self.file = file;
        self.sealed_bytes += sealed.bytes;
        self.sealed.push_back(sealed);
        Ok(())
    }

    /// Removes whole sealed segments, oldest first, while the oldest is too old or the archive
    /// too large. Returns how many records went.
    fn enforce(&mut self, now: SystemTime) -> io::Result<u64> {
        // Before this many milliseconds is too old (a record's time r < cutoff ⇔ r < ceil(cutoff)).
        let cutoff = now.checked_sub(self.retention.max_age).map(millis_ceil);
        let mut n_removed = 0;
        while let Some(oldest) = self.sealed.front() {
            let too_old = match (oldest.newest_millis, cutoff) {
                (None, _) => true,
                (Some(newest), Some(cutoff)) => newest < cutoff,
                (Some(_), None) => false,
            };
            let too_large = self.bytes() > self.retention.max_bytes;
            if !too_old && !too_large {
                break;
            }
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(in_file("cannot delete archive segment", &oldest.path)(
                        error,
                    ));
                }
            }
            n_removed += oldest.next_offset - oldest.first_offset;
            self.sealed_bytes -= oldest.bytes;
            self.sealed.pop_front();
        }
        Ok(n_removed)
    }

    /// The segment holding `offset`, if it is kept.
    fn segment_holding(&self, offset: u64) -> Option<&Segment> {
        if offset >= self.active.next_offset || offset < self.first_offset() {
            None
        } else if offset >= self.active.first_offset {
            Some(&self.active)
        } else {
            let i = self
                .sealed
                .partition_point(|segment| segment.next_offset <= offset);
            self.sealed.get(i)
        }
    }

    /// The records from `from` (or the first kept one) to the end of its segment, opened here and
    /// read by the caller after releasing the lock. None past the end.
    fn span_from(&self, from: u64) -> io::Result<Option<Span>> {
        let from = from.max(self.first_offset());
        let Some(segment) = self.segment_holding(from) else {
            return Ok(None);
        };
        let i = segment.index.partition_point(|entry| entry.offset <= from);
        let start = i.checked_sub(1).and_then(|i| segment.index.get(i));
        Ok(Some(Span {
            reader: segment.reader_at(start)?,
            from,
            segment_next_offset: segment.next_offset,
        }))
    }

    /// The index interval holding the first record whose time is at or after `since` (unix ms),
    /// opened here and searched by the caller after releasing the lock. None when no record is.
    fn span_at_time(&self, since: i64) -> io::Result<Option<Span>> {
        let reaches = |newest: Option<i64>| newest.is_some_and(|newest| newest >= since);
        let Some(segment) = self
            .sealed
            .iter()
            .chain(std::iter::once(&self.active))
            .find(|segment| reaches(segment.newest_millis))
        else {
            return Ok(None);
        };
        let start = segment
            .index
            .iter()
            .find(|entry| entry.newest_millis >= since);
        let reader = segment.reader_at(start)?;
        Ok(Some(Span {
            from: reader.next_offset,
            reader,
            segment_next_offset: segment.next_offset,
        }))
    }
}

impl Segment {
    fn empty(path: PathBuf, first_offset: u64) -> Self {
        Self {
            path,
            first_offset,
            next_offset: first_offset,
            bytes: 0,
            newest_millis: None,
            index: Vec::new(),
        }
    }

    /// Takes note of a record written (or found) at `position`.
    fn push(&mut self, offset: u64, position: u64, len: u64, time_millis: i64) {
        let n_before = offset - self.first_offset;
        match self.index.last_mut() {
            Some(entry) if !n_before.is_multiple_of(INDEX_INTERVAL) => {
                entry.newest_millis = entry.newest_millis.max(time_millis);
            }
            _ => self.index.push(IndexEntry {
                offset,
                position,
                newest_millis: time_millis,
            }),
        }
        self.newest_millis = Some(
            self.newest_millis
                .map_or(time_millis, |newest| newest.max(time_millis)),
        );
        self.next_offset = offset + 1;
        self.bytes = position + len;
    }

    /// Opens the file and reads from `start` (the segment's beginning when None) to its end now.
    fn reader_at(&self, start: Option<&IndexEntry>) -> io::Result<SegmentReader> {
        let (offset, position) = start.map_or((self.first_offset, 0), |entry| {
            (entry.offset, entry.position)
        });
        let file =
            File::open(&self.path).map_err(in_file("cannot open archive segment", &self.path))?;
        SegmentReader::new(file, self.path.clone(), position, self.bytes, offset)
    }
}

impl SegmentReader {
    fn new(
        mut file: File,
        path: PathBuf,
        position: u64,
        end: u64,
        offset: u64,
    ) -> io::Result<Self> {
        file.seek(SeekFrom::Start(position))
            .map_err(in_file("cannot seek in archive segment", &path))?;
        Ok(Self {
            path,
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            position,
            end,
            next_offset: offset,
        })
    }

    /// The next record, or None at the end.
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        Ok(self.next_decoded()?.map(|decoded| decoded.record))
    }

    /// The next record with its time in unix ms, or None at the end.
    fn next_decoded(&mut self) -> io::Result<Option<Decoded>> {
        self.next_or_damage()
            .map_err(|damage| damage.into_error(&self.path))
    }

    /// The next record with what the index needs, or None at the end.
    fn next_or_damage(&mut self) -> Result<Option<Decoded>, Damage> {
        if self.position >= self.end {
            return Ok(None);
        }
        let position = self.position;
        let damage = |kind| Damage { position, kind };
        let left = self.end - position;
        let mut header = [0u8; HEADER_BYTES];
        if left < HEADER_BYTES as u64 {
            return Err(damage(DamageKind::Torn(format!(
                "{left} bytes left, fewer than a record's header"
            ))));
        }
        self.read_exact(&mut header).map_err(damage)?;
        let [marker, l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if marker != RECORD_MARKER {
            return Err(damage(DamageKind::Torn(format!(
                "{marker:#04x} is not a record marker"
            ))));
        }
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len) {
            return Err(damage(DamageKind::Torn(format!(
                "a record length of {len} bytes is out of bounds"
            ))));
        }
        if len as u64 > left {
            return Err(damage(DamageKind::Torn(format!(
                "a record of {len} bytes, but {left} bytes left"
            ))));
        }
        let mut payload = vec![0u8; len - HEADER_BYTES];
        self.read_exact(&mut payload).map_err(damage)?;
        if crc32fast::hash(&payload) != u32::from_le_bytes([c0, c1, c2, c3]) {
            return Err(damage(DamageKind::Torn("checksum mismatch".to_owned())));
        }
        let (record, time_millis) =
            decode(Bytes::from(payload)).map_err(|reason| damage(DamageKind::Invalid(reason)))?;
        if record.offset != self.next_offset {
            return Err(damage(DamageKind::Invalid(format!(
                "offset {}, where {} was due",
                record.offset, self.next_offset
            ))));
        }
        self.position += len as u64;
        self.next_offset += 1;
        Ok(Some(Decoded {
            record,
            time_millis,
            len: len as u64,
        }))
    }

    /// Fills `buffer`; a file shorter than expected is a torn record.
    fn read_exact(&mut self, buffer: &mut [u8]) -> Result<(), DamageKind> {
        self.reader.read_exact(buffer).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                DamageKind::Torn("the file ends inside the record".to_owned())
            } else {
                DamageKind::Io(error)
            }
        })
    }
}

impl Damage {
    fn into_error(self, path: &Path) -> io::Error {
        let (kind, reason) = match self.kind {
            DamageKind::Torn(reason) | DamageKind::Invalid(reason) => {
                (io::ErrorKind::InvalidData, reason)
            }
            DamageKind::Io(error) => (error.kind(), error.to_string()),
        };
        io::Error::new(
            kind,
            format!(
                "archive segment {}: record at byte {}: {reason}",
                path.display(),
                self.position
            ),
        )
    }
}

/// Reads a segment found when opening, cutting a torn tail when it is the last segment.
fn recover_segment(path: PathBuf, first_offset: u64, is_last: bool) -> io::Result<Segment> {
    let file = File::open(&path).map_err(in_file("cannot open archive segment", &path))?;
    let end = file
        .metadata()
        .map_err(in_file("cannot read archive segment", &path))?
        .len();
    let mut reader = SegmentReader::new(file, path.clone(), 0, end, first_offset)?;
    let mut segment = Segment::empty(path, first_offset);
    loop {
        match reader.next_or_damage() {
            Ok(None) => return Ok(segment),
            Ok(Some(decoded)) => {
                let position = segment.bytes;
                segment.push(
                    decoded.record.offset,
                    position,
                    decoded.len,
                    decoded.time_millis,
                );
            }
            Err(Damage {
                position,
                kind: DamageKind::Torn(reason),
            }) if is_last => {
                cut_tail(&segment.path, position, end, &reason)?;
                return Ok(segment);
            }
            Err(damage) => return Err(damage.into_error(&segment.path)),
        }
    }
}

/// Truncates the last segment at `position`, the end of its last complete record.
fn cut_tail(path: &Path, position: u64, end: u64, reason: &str) -> io::Result<()> {
    tracing::warn!(
        segment = %path.display(),
        position,
        n_bytes_cut = end - position,
        reason,
        "The archive's last segment had a torn tail; it is cut at the last complete record."
    );
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(in_file("cannot open archive segment", path))?;
    file.set_len(position)
        .and_then(|()| file.sync_all())
        .map_err(in_file("cannot cut the torn tail of archive segment", path))
}

/// The first offsets of the segments in `dir`, in order. Other files are left alone.
fn segment_firsts(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(in_file("cannot list the archive directory", dir))?;
    let mut firsts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(in_file("cannot list the archive directory", dir))?;
        let name = entry.file_name();
        let first = name
            .to_str()
            .and_then(|name| name.strip_suffix(".seg"))
            .filter(|stem| stem.len() == 20 && stem.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|stem| stem.parse::<u64>().ok());
        firsts.extend(first);
    }
    firsts.sort_unstable();
    Ok(firsts)
}

fn segment_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.seg"))
}

/// Creates an empty segment file (which must not exist) and makes its name durable.
fn create_segment(dir: &Path, first_offset: u64) -> io::Result<Segment> {
    let path = segment_path(dir, first_offset);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(in_file("cannot create archive segment", &path))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(in_file("cannot sync the archive directory", dir))?;
    Ok(Segment::empty(path, first_offset))
}

/// One delivery as a record, its offset and checksum left for `seal`. Refused (with why) when it is
/// over the caps.
fn encode(delivery: &Delivery, time_millis: i64) -> Result<Vec<u8>, String> {
    let body_len = delivery.body.len();
    if body_len > MAX_BODY_BYTES {
        return Err(format!(
            "a body of {body_len} bytes is more than an archived record takes ({MAX_BODY_BYTES})"
        ));
    }
    let content_type_len = delivery
        .content_type
        .as_ref()
        .map_or(0, |content_type| 4 + content_type.len());
    let headers_len: usize = delivery
        .headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum();
    let len = MIN_RECORD_BYTES + content_type_len + headers_len + body_len;
    if len > MAX_RECORD_BYTES {
        return Err(format!(
            "a record of {len} bytes is more than an archived record takes ({MAX_RECORD_BYTES})"
        ));
    }
    let mut record = Vec::with_capacity(len);
    record.push(RECORD_MARKER);
    record.extend_from_slice(&u32_len(len).to_le_bytes());
    record.extend_from_slice(&[0; 4]); // The checksum, set by `seal`.
    record.extend_from_slice(&[0; 8]); // The offset, set by `seal`.
    record.extend_from_slice(&time_millis.to_le_bytes());
    match &delivery.content_type {
        None => record.push(0),
        Some(content_type) => {
            record.push(1);
            put_bytes(&mut record, content_type.as_bytes());
        }
    }
    record.extend_from_slice(&u32_len(delivery.headers.len()).to_le_bytes());
    for (name, value) in &delivery.headers {
        put_bytes(&mut record, name.as_bytes());
        put_bytes(&mut record, value.as_bytes());
    }
    put_bytes(&mut record, &delivery.body);
    Ok(record)
}

/// Sets an encoded record's offset and then its checksum.
fn seal(record: &mut [u8], offset: u64) {
    record[OFFSET_AT..OFFSET_AT + 8].copy_from_slice(&offset.to_le_bytes());
    let checksum = crc32fast::hash(&record[HEADER_BYTES..]);
    record[5..HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
}

fn put_bytes(record: &mut Vec<u8>, bytes: &[u8]) {
    record.extend_from_slice(&u32_len(bytes.len()).to_le_bytes());
    record.extend_from_slice(bytes);
}

fn u32_len(len: usize) -> u32 {
    u32::try_from(len).expect("an encoded length is at most MAX_RECORD_BYTES, far below u32::MAX")
}

/// A record's payload (what follows its header): the record and its time in unix ms.
fn decode(payload: Bytes) -> Result<(Record, i64), String> {
    let mut cursor = Cursor {
        payload: &payload[..],
        at: 0,
    };
    let offset = u64::from_le_bytes(cursor.array()?);
    let time_millis = i64::from_le_bytes(cursor.array()?);
    let time = u64::try_from(time_millis)
        .ok()
        .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
        .ok_or_else(|| format!("time {time_millis} ms is not a time an archive writes"))?;
    let content_type = match cursor.array::<1>()? {
        [0] => None,
        [1] => Some(cursor.string()?),
        [other] => return Err(format!("content type presence {other} is neither 0 nor 1")),
    };
    let n_headers = u32::from_le_bytes(cursor.array()?) as usize;
    // Each header takes at least its two lengths: a count beyond that is corrupt, not allocated.
    if n_headers > cursor.left() / 8 {
        return Err(format!("{n_headers} headers do not fit in the record"));
    }
    let mut headers = Vec::with_capacity(n_headers);
    for _ in 0..n_headers {
        let name = cursor.string()?;
        headers.push((name, cursor.string()?));
    }
    let body = cursor.bytes()?;
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("a body of {} bytes is over the cap", body.len()));
    }
    if cursor.left() != 0 {
        return Err(format!("{} bytes after the body", cursor.left()));
    }
    let delivery = Delivery {
        content_type,
        headers,
        body: payload.slice(body),
    };
    Ok((
        Record {
            offset,
            time,
            delivery,
        },
        time_millis,
    ))
}

/// Reads a payload's fields in order, each checked against the bytes left.
struct Cursor<'a> {
    payload: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.payload.len() - self.at
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let range = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(&self.payload[range]);
        Ok(array)
    }

    /// A length-prefixed field: its range in the payload.
    fn bytes(&mut self) -> Result<std::ops::Range<usize>, String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        let range = self.bytes()?;
        String::from_utf8(self.payload[range].to_vec())
            .map_err(|_| "a text field is not UTF-8".to_owned())
    }

    fn take(&mut self, len: usize) -> Result<std::ops::Range<usize>, String> {
        if len > self.left() {
            return Err(format!(
                "a field of {len} bytes, but {} bytes left in the record",
                self.left()
            ));
        }
        let range = self.at..self.at + len;
        self.at += len;
        Ok(range)
    }
}

/// Unix milliseconds, rounded down; 0 before the epoch.
fn millis_floor(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// Unix milliseconds, rounded up, so that a stored time `r` is at or after `time` exactly when
/// `r >= millis_ceil(time)`; 0 before the epoch.
fn millis_ceil(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        let partial = u128::from(since.subsec_nanos() % 1_000_000 != 0);
        i64::try_from(since.as_millis() + partial).unwrap_or(i64::MAX)
    })
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Adds what was done and to which file to an I/O error, keeping its kind.
fn in_file(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    move |error| {
        io::Error::new(
            error.kind(),
            format!("{action} {}: {error}", path.display()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const HOUR: Duration = Duration::from_secs(3600);

    /// Retention by size only: no record is ever too old.
    fn retention(max_bytes: u64) -> Retention {
        Retention {
            max_age: Duration::MAX,
            max_bytes,
        }
    }

    /// The n-th test input: a body that says its number, padded to `body_len` bytes.
    fn delivery(n: u64, body_len: usize) -> Delivery {
        let mut body = format!("input {n};").into_bytes();
        body.resize(body_len.max(body.len()), (n % 251) as u8);
        Delivery {
            content_type: Some("application/json".to_owned()),
            headers: vec![("ce-id".to_owned(), n.to_string())],
            body: Bytes::from(body),
        }
    }

    fn segment_files(dir: &Path) -> Vec<(u64, u64)> {
        segment_firsts(dir)
            .unwrap()
            .into_iter()
            .map(|first| (first, fs::metadata(segment_path(dir, first)).unwrap().len()))
            .collect()
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let (first, _) = *segment_files(dir).last().unwrap();
        segment_path(dir, first)
    }

    fn assert_is_input(record: &Record, n: u64, body_len: usize) {
        assert_eq!(record.offset, n);
        assert_eq!(
            record.delivery.body,
            delivery(n, body_len).body,
            "body of record {n}"
        );
        assert_eq!(
            record.delivery.headers,
            vec![("ce-id".to_owned(), n.to_string())]
        );
    }

    #[test]
    fn an_archive_is_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<FileArchive>();
    }

    #[test]
    fn append_then_read_keeps_every_field_and_numbers_offsets_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FileArchive::open(dir.path(), retention(1 << 30)).unwrap();
        let base =
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123) + Duration::from_micros(456);
        let deliveries: Vec<Delivery> = (0..10u8)
            .map(|n| Delivery {
                content_type: (n % 2 == 0).then(|| format!("application/vnd.test+{n}")),
                headers: vec![
                    ("b".to_owned(), format!("first {n}")),
                    ("a".to_owned(), "é".to_owned()),
                    ("b".to_owned(), format!("second {n}")),
                ],
                body: Bytes::from(
                    (0..u16::from(n) * 30)
                        .map(|i| (i % 256) as u8)
                        .collect::<Vec<_>>(),
                ),
            })
            .collect();

        let offsets: Vec<u64> = deliveries
            .iter()
            .enumerate()
            .map(|(n, delivery)| {
                archive
                    .append(delivery, base + Duration::from_secs(n as u64))
                    .unwrap()
            })
            .collect();

        assert_eq!(offsets, (0..10).collect::<Vec<_>>());
        assert_eq!((archive.first_offset(), archive.next_offset()), (0, 10));
        let records = archive.read(0, 100).unwrap();
        assert_eq!(records.len(), 10);
        for (n, (record, delivery)) in records.iter().zip(&deliveries).enumerate() {
            assert_eq!(record.offset, n as u64);
            assert_eq!(record.delivery.content_type, delivery.content_type);
            assert_eq!(record.delivery.headers, delivery.headers);
            assert_eq!(record.delivery.body, delivery.body);
            let millis = 1_700_000_000_123 + 1000 * n as u64;
            assert_eq!(record.time, UNIX_EPOCH + Duration::from_millis(millis));
        }
        let offsets_of = |records: Vec<Record>| {
            records
                .iter()
                .map(|record| record.offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets_of(archive.read(4, 3).unwrap()), vec![4, 5, 6]);
        assert_eq!(offsets_of(archive.read(8, 10).unwrap()), vec![8, 9]);
        assert!(archive.read(10, 5).unwrap().is_empty());
        assert!(archive.read(0, 0).unwrap().is_empty());
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 1);
        assert_eq!(archive.bytes(), files[0].1);
    }

    #[test]
    fn a_time_before_the_epoch_is_kept_as_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FileArchive::open(dir.path(), retention(1 << 30)).unwrap();

        archive.append(&delivery(0, 10), UNIX_EPOCH - HOUR).unwrap();

        assert_eq!(archive.read(0, 1).unwrap()[0].time, UNIX_EPOCH);
    }

    #[test]
    fn reads_seek_through_the_index_and_cross_segments() {
        let dir = tempfile::tempdir().unwrap();
        // 100 KiB segments of about 1 100 records of 90 bytes: many index entries each.
        let archive = FileArchive::open(dir.path(), retention(800 << 10)).unwrap();
        let now = SystemTime::now();
        for n in 0..4000 {
            assert_eq!(archive.append(&delivery(n, 20), now).unwrap(), n);
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 3, "segments: {files:?}");
        let boundary = files[1].0;

        for from in [0, 63, 64, 65, 1234, boundary - 1, boundary, 3999] {
            let records = archive.read(from, 300).unwrap();
            assert_eq!(records.len() as u64, 300.min(4000 - from), "from {from}");
            for (i, record) in records.iter().enumerate() {
                assert_is_input(record, from + i as u64, 20);
            }
        }
        assert_eq!(
            archive.bytes(),
            files.iter().map(|(_, len)| len).sum::<u64>()
        );
    }

    #[test]
    fn reopening_continues_offsets_and_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        {
            let archive = FileArchive::open(dir.path(), retention(64 << 10)).unwrap();
            for n in 0..30 {
                archive.append(&delivery(n, 1000), now).unwrap();
            }
            archive.sync().unwrap();
        }
        let segments_before = segment_files(dir.path());
        assert!(segments_before.len() > 1);

        let archive = FileArchive::open(dir.path(), retention(64 << 10)).unwrap();

        assert_eq!(segment_files(dir.path()), segments_before);
        assert_eq!((archive.first_offset(), archive.next_offset()), (0, 30));
        assert_eq!(archive.append(&delivery(30, 1000), now).unwrap(), 30);
        let records = archive.read(0, 100).unwrap();
        assert_eq!(records.len(), 31);
        for (n, record) in records.iter().enumerate() {
            assert_is_input(record, n as u64, 1000);
        }
    }

    #[test]
    fn a_torn_last_record_is_cut_on_open_and_its_offset_given_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        {
            let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();
            for n in 0..5 {
                archive.append(&delivery(n, 100), now).unwrap();
            }
        }
        let last = last_segment(dir.path());
        let full_len = fs::metadata(&last).unwrap().len();
        let file = OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(full_len - 3).unwrap();
        drop(file);

        let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();

        assert_eq!(archive.next_offset(), 4);
        let record_len = full_len / 5;
        assert_eq!(fs::metadata(&last).unwrap().len(), 4 * record_len);
        assert_eq!(archive.append(&delivery(4, 100), now).unwrap(), 4);
        drop(archive);
        let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();
        let records = archive.read(0, 10).unwrap();
        assert_eq!(records.len(), 5);
        for (n, record) in records.iter().enumerate() {
            assert_is_input(record, n as u64, 100);
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        {
            let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();
            for n in 0..5 {
                archive.append(&delivery(n, 100), now).unwrap();
            }
        }
        let last = last_segment(dir.path());
        let good_len = fs::metadata(&last).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&last).unwrap();
        file.write_all(&[
            RECORD_MARKER,
            0xff,
            0xff,
            0xff,
            0x7f,
            0xde,
            0xad,
            0xbe,
            0xef,
        ])
        .unwrap();
        drop(file);

        let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();

        assert_eq!(fs::metadata(&last).unwrap().len(), good_len);
        assert_eq!(archive.bytes(), good_len);
        assert_eq!(archive.append(&delivery(5, 100), now).unwrap(), 5);
        drop(archive);
        let archive = FileArchive::open(dir.path(), retention(1 << 20)).unwrap();
        let records = archive.read(0, 10).unwrap();
        assert_eq!(records.len(), 6);
        for (n, record) in records.iter().enumerate() {
            assert_is_input(record, n as u64, 100);
        }
    }

    #[test]
    fn retention_by_bytes_keeps_the_archive_within_its_size_and_drops_the_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let max_bytes = 64 << 10;
        let segment_bytes = max_bytes / 8;
        let archive = FileArchive::open(dir.path(), retention(max_bytes)).unwrap();
        let now = SystemTime::now();

        for n in 0..300 {
            assert_eq!(archive.append(&delivery(n, 1000), now).unwrap(), n);
            assert!(
                archive.bytes() <= max_bytes + segment_bytes,
                "{} bytes",
                archive.bytes()
            );
        }

        let first = archive.first_offset();
        assert!(first > 200, "first offset {first}");
        let files = segment_files(dir.path());
        assert_eq!(files[0].0, first);
        assert_eq!(
            archive.bytes(),
            files.iter().map(|(_, len)| len).sum::<u64>()
        );
        let records = archive.read(0, 1000).unwrap();
        assert_eq!(records.len() as u64, 300 - first);
        for (i, record) in records.iter().enumerate() {
            assert_is_input(record, first + i as u64, 1000);
        }
        let bytes = archive.bytes();
        drop(archive);
        let archive = FileArchive::open(dir.path(), retention(max_bytes)).unwrap();
        assert_eq!(
            (
                archive.first_offset(),
                archive.next_offset(),
                archive.bytes()
            ),
            (first, 300, bytes)
        );

        archive.set_retention(retention(0));
        let removed = archive.enforce(now).unwrap();

        let active_first = last_segment_first(dir.path());
        assert_eq!(removed, active_first - first);
        assert_eq!(archive.first_offset(), active_first);
        assert_eq!(segment_files(dir.path()).len(), 1);
    }

    fn last_segment_first(dir: &Path) -> u64 {
        segment_files(dir).last().unwrap().0
    }

    #[test]
    fn retention_by_age_removes_whole_old_segments_but_never_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        // 40 KiB segments of about 38 records; 150 records stay well under the size.
        let archive = FileArchive::open(dir.path(), retention(320 << 10)).unwrap();
        let now = SystemTime::now();
        for n in 0..100 {
            archive.append(&delivery(n, 1000), now - 2 * HOUR).unwrap();
        }
        for n in 100..150 {
            archive.append(&delivery(n, 1000), now).unwrap();
        }
        let starts: Vec<u64> = segment_files(dir.path())
            .iter()
            .map(|(first, _)| *first)
            .collect();
        assert!(starts.len() >= 3, "segments {starts:?}");
        // The first recent record's segment is the first one that is not all old.
        let expected_first = starts
            .iter()
            .copied()
            .filter(|&first| first <= 100)
            .max()
            .unwrap();

        archive.set_retention(Retention {
            max_age: HOUR,
            max_bytes: 320 << 10,
        });
        let removed = archive.enforce(now).unwrap();

        assert_eq!(removed, expected_first);
        assert_eq!(archive.first_offset(), expected_first);
        assert!(expected_first > 0);
        assert_eq!(archive.offset_at(UNIX_EPOCH).unwrap(), expected_first);
        let records = archive.read(0, 1000).unwrap();
        assert_eq!(records.len() as u64, 150 - expected_first);
        assert_is_input(&records[0], expected_first, 1000);

        // A day later everything is old, but the active segment stays.
        let active_first = *starts.last().unwrap();
        let removed = archive.enforce(now + DAY).unwrap();

        assert_eq!(removed, active_first - expected_first);
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(
            (archive.first_offset(), archive.next_offset()),
            (active_first, 150)
        );
        assert_eq!(
            archive.read(0, 1000).unwrap().len() as u64,
            150 - active_first
        );
        assert_eq!(archive.append(&delivery(150, 1000), now).unwrap(), 150);
    }

    #[test]
    fn offset_at_finds_the_first_record_at_or_after_a_time() {
        let dir = tempfile::tempdir().unwrap();
        // 8 KiB segments of about 100 records of 80 bytes: two segments, with two index entries each.
        let archive = FileArchive::open(dir.path(), retention(64 << 10)).unwrap();
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |millis: u64| base + Duration::from_millis(millis);
        for n in 0..200 {
            // Record 150's clock stepped back a second.
            let time = if n == 150 {
                base - Duration::from_secs(1)
            } else {
                at(10 * n)
            };
            archive.append(&delivery(n, 10), time).unwrap();
        }
        assert!(segment_files(dir.path()).len() >= 2);

        assert_eq!(archive.offset_at(base - Duration::from_secs(2)).unwrap(), 0);
        assert_eq!(archive.offset_at(UNIX_EPOCH).unwrap(), 0);
        assert_eq!(archive.offset_at(base).unwrap(), 0);
        assert_eq!(archive.offset_at(at(55)).unwrap(), 6);
        assert_eq!(archive.offset_at(at(60)).unwrap(), 6);
        assert_eq!(
            archive
                .offset_at(at(60) + Duration::from_micros(1))
                .unwrap(),
            7
        );
        assert_eq!(archive.offset_at(at(10 * 70)).unwrap(), 70);
        assert_eq!(archive.offset_at(at(10 * 130 + 1)).unwrap(), 131);
        assert_eq!(archive.offset_at(at(10 * 150)).unwrap(), 151);
        assert_eq!(archive.offset_at(at(10 * 199)).unwrap(), 199);
        assert_eq!(archive.offset_at(at(10 * 199 + 1)).unwrap(), 200);
        assert_eq!(
            archive.offset_at(SystemTime::now()).unwrap(),
            archive.next_offset()
        );
    }

    #[test]
    fn a_corrupt_byte_inside_an_older_segment_is_an_invalid_data_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FileArchive::open(dir.path(), retention(64 << 10)).unwrap();
        let now = SystemTime::now();
        for n in 0..40 {
            archive.append(&delivery(n, 500), now).unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        let (first, len) = files[0];
        let oldest = segment_path(dir.path(), first);
        let mut bytes = fs::read(&oldest).unwrap();
        bytes[len as usize / 2] ^= 0x55;
        fs::write(&oldest, bytes).unwrap();

        let error = archive.read(0, 100).unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("00000000000000000000.seg"),
            "{error}"
        );
        let later = files[1].0;
        assert_eq!(archive.read(later, 1).unwrap()[0].offset, later);
        drop(archive);
        let error = FileArchive::open(dir.path(), retention(64 << 10)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("00000000000000000000.seg"),
            "{error}"
        );
    }

    #[test]
    fn a_delivery_over_the_record_cap_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FileArchive::open(dir.path(), retention(1 << 30)).unwrap();

        let error = archive
            .append(&delivery(0, MAX_BODY_BYTES + 1), SystemTime::now())
            .unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!((archive.next_offset(), archive.bytes()), (0, 0));
        assert_eq!(
            archive
                .append(&delivery(0, MAX_BODY_BYTES), SystemTime::now())
                .unwrap(),
            0
        );
        assert_eq!(
            archive.read(0, 1).unwrap()[0].delivery.body.len(),
            MAX_BODY_BYTES
        );
    }
}
