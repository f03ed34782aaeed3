//! Reading a journal file at start-up: [`replay`] (cut a torn tail, refuse corruption),
//! [`repair`] (cut at any damage), and opening the replayed file for appends.
//!
//! Start-up I/O is plain blocking `std::fs`: it runs once, before the service accepts
//! anything, and reading the file in one `read` is what takes the time.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ringcore_runtime::fs::{File, OpenOptions};
use ringcore_runtime::AlignedBuf;

use super::commit::{block_start, BLOCK};
use super::format::{self, Damage, HeaderCheck, HEADER_LEN, RECORD_OVERHEAD};
use super::{Journal, JournalOptions, SyncMode};

/// What [`replay`] (or [`repair`], or [`Journal::open`]) found in a journal file.
#[derive(Debug, Default)]
pub struct Replay {
    /// The file's bytes as read (the cut part included).
    bytes: Vec<u8>,
    /// Payload ranges of the valid records within `bytes`, in order.
    records: Vec<Range<usize>>,
    /// Payload ranges of the whole records that a repair cut off after the damage.
    dropped: Vec<Range<usize>>,
    /// Length of the valid prefix: where the next record goes.
    pub valid_len: u64,
    /// The file's length after replay: `valid_len` plus the zero-filled (prepared) tail
    /// that follows the last record, if there is one.
    pub file_len: u64,
    /// Bytes cut off the end of the file (0 when the file was intact).
    pub truncated_bytes: u64,
    /// Why bytes were cut, if they were.
    pub damage: Option<Damage>,
    /// Where the cut bytes were saved before the file was truncated (none for an intact file
    /// or a cut-short header, which holds no records).
    pub cut_saved_to: Option<PathBuf>,
}

/// One record of a replayed journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Where the record starts in the file (its length field).
    pub offset: u64,
    /// The payload, as appended.
    pub payload: &'a [u8],
}

impl Replay {
    fn entries<'a>(&'a self, ranges: &'a [Range<usize>]) -> impl ExactSizeIterator<Item = Entry<'a>> + 'a {
        ranges.iter().map(|r| Entry {
            offset: (r.start - RECORD_OVERHEAD) as u64,
            payload: &self.bytes[r.clone()],
        })
    }

    /// The valid records, in the order they were appended.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        self.entries(&self.records)
    }

    /// The payloads of the valid records, in order.
    pub fn payloads(&self) -> Vec<&[u8]> {
        self.records().map(|e| e.payload).collect()
    }

    /// The payload of the first damaged record when it failed its checksum (all its bytes are
    /// there, but any of them may be wrong).
    pub fn damaged_payload(&self) -> Option<&[u8]> {
        match self.damage {
            Some(Damage::Checksum { offset, len }) => {
                let start = offset as usize + RECORD_OVERHEAD;
                self.bytes.get(start..start + len as usize)
            }
            _ => None,
        }
    }

    /// The whole, checksummed records that [`repair`] cut off after the damage (empty for
    /// [`replay`], which never cuts a valid record). They are also in the side file.
    pub fn dropped(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        self.entries(&self.dropped)
    }
}

/// Damage followed by valid records: the error [`replay`] returns (inside an
/// `io::ErrorKind::InvalidData` error; get it back with [`Corruption::of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The journal file.
    pub path: PathBuf,
    /// The first damaged record.
    pub damage: Damage,
    /// Whole, checksummed records found after it.
    pub valid_after: usize,
}

impl Corruption {
    /// The corruption report inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&Corruption> {
        e.get_ref()?.downcast_ref::<Corruption>()
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal {}: corrupt at offset {}: {}, and {} valid record(s) follow it, so this is \
             damage to acknowledged records, not a torn tail; the file is left untouched",
            self.path.display(),
            self.damage.offset(),
            self.damage,
            self.valid_after
        )
    }
}

impl std::error::Error for Corruption {}

/// What to do with damage that valid records follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnCorruption {
    Refuse,
    Cut,
}

/// The file name of core `core_id`'s journal.
pub fn file_name(core_id: usize) -> String {
    format!("journal-{core_id}.log")
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("journal {}: {what}: {e}", path.display()))
}

/// Reads core `core_id`'s journal in `dir` (creating `dir` and the file if missing) and
/// returns its valid records, each with its file offset.
///
/// A damaged record (cut short, bad length or bad checksum) with no valid record after it is a
/// **torn tail**: the bytes from it on are first saved, durably, to
/// `journal-<core>.log.cut-<offset>[-n]` next to the file ([`Replay::cut_saved_to`]), then the
/// file is truncated there and synced. A damaged record *followed by* valid records is
/// **corruption**: an `InvalidData` error carrying a [`Corruption`], and the file is left
/// untouched ([`repair`] cuts it).
///
/// Errors: `InvalidData` also for a file that is not a journal or has another format version
/// (left untouched); I/O errors with the path in the message.
pub fn replay(dir: &Path, core_id: usize) -> io::Result<Replay> {
    read(dir, core_id, OnCorruption::Refuse)
}

/// Like [`replay`], but cuts the file at the first damaged record even when valid records
/// follow it (saving the cut bytes to the side file first): the records after the damage are
/// lost from the journal, and [`Replay::dropped`] lists them.
pub fn repair(dir: &Path, core_id: usize) -> io::Result<Replay> {
    read(dir, core_id, OnCorruption::Cut)
}

fn read(dir: &Path, core_id: usize, on_corruption: OnCorruption) -> io::Result<Replay> {
    load(dir, core_id)?.settle(on_corruption)
}

/// A journal file read and scanned, with nothing on disk changed yet: [`load`] does the
/// reading (which can run on any thread, several files at once), then [`Loaded::replay`] or
/// [`Loaded::repair`] cuts what needs cutting, exactly as [`replay`] and [`repair`] do.
#[derive(Debug)]
pub struct Loaded {
    dir: PathBuf,
    path: PathBuf,
    file: std::fs::File,
    /// The file's bytes as read.
    bytes: Vec<u8>,
    /// The scan of the records after the header; `None` when the header is incomplete (a
    /// new file, or its creation was cut short).
    scan: Option<format::Scan>,
}

/// Reads and scans core `core_id`'s journal in `dir` (creating `dir` and the file if
/// missing), changing nothing else on disk: the first half of [`replay`].
///
/// Errors: `InvalidData` for a file that is not a journal or has another format version;
/// I/O errors with the path in the message.
pub fn load(dir: &Path, core_id: usize) -> io::Result<Loaded> {
    std::fs::create_dir_all(dir).map_err(|e| with_path(e, "create directory", dir))?;
    let path = dir.join(file_name(core_id));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| with_path(e, "open", &path))?;
    let len = file.metadata().map_err(|e| with_path(e, "fstat", &path))?.len();
    let cap = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "journal larger than memory"))?;
    let mut bytes = Vec::with_capacity(cap);
    file.read_to_end(&mut bytes)
        .map_err(|e| with_path(e, "read", &path))?;

    let scan = match format::check_header(&bytes) {
        HeaderCheck::Valid => Some(format::scan(&bytes[HEADER_LEN as usize..], HEADER_LEN)),
        HeaderCheck::Partial => None,
        HeaderCheck::Foreign => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a journal file (bad magic); left untouched",
                    path.display()
                ),
            ));
        }
        HeaderCheck::Version(v) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: journal format version {v}, this build reads version {}; left untouched",
                    path.display(),
                    format::VERSION
                ),
            ));
        }
    };
    Ok(Loaded {
        dir: dir.to_path_buf(),
        path,
        file,
        bytes,
        scan,
    })
}

impl Loaded {
    /// The records of the valid prefix, in order: what [`Replay::records`] will hold (unless
    /// [`Loaded::replay`] refuses the file).
    pub fn records(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        let base = HEADER_LEN as usize;
        let ranges: &[Range<usize>] = self.scan.as_ref().map_or(&[], |s| &s.records);
        ranges.iter().map(move |r| Entry {
            offset: (r.start + base - RECORD_OVERHEAD) as u64,
            payload: &self.bytes[r.start + base..r.end + base],
        })
    }

    /// Finishes [`replay`]: cuts a torn tail, refuses corruption.
    pub fn replay(self) -> io::Result<Replay> {
        self.settle(OnCorruption::Refuse)
    }

    /// Finishes [`repair`]: cuts at any damage.
    pub fn repair(self) -> io::Result<Replay> {
        self.settle(OnCorruption::Cut)
    }

    fn settle(self, on_corruption: OnCorruption) -> io::Result<Replay> {
        let Loaded {
            dir,
            path,
            mut file,
            bytes,
            scan,
        } = self;
        let len = bytes.len() as u64;
        let mut replay = Replay::default();
        let Some(scan) = scan else {
            // New, or its creation was cut short: (re)write the header, make the file's
            // directory entry durable too, and start empty.
            if len > 0 {
                replay.damage = Some(Damage::TornHeader { len });
                replay.truncated_bytes = len;
                file.set_len(0).map_err(|e| with_path(e, "truncate", &path))?;
            }
            std::io::Seek::rewind(&mut file).map_err(|e| with_path(e, "seek", &path))?;
            file.write_all(&format::header())
                .map_err(|e| with_path(e, "write header", &path))?;
            file.sync_all().map_err(|e| with_path(e, "fsync", &path))?;
            sync_dir(&dir)?;
            replay.valid_len = HEADER_LEN;
            replay.file_len = HEADER_LEN;
            return Ok(replay);
        };

        let base = HEADER_LEN as usize;
        if scan.is_corruption() && on_corruption == OnCorruption::Refuse {
            let damage = scan.damage.clone().unwrap_or(Damage::TornHeader { len });
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Corruption {
                    path,
                    damage,
                    valid_after: scan.after_damage.len(),
                },
            ));
        }
        let shift = |r: &Range<usize>| r.start + base..r.end + base;
        replay.records = scan.records.iter().map(shift).collect();
        replay.dropped = scan.after_damage.iter().map(shift).collect();
        replay.valid_len = HEADER_LEN + scan.valid as u64;
        replay.file_len = len;
        replay.damage = scan.damage;
        if replay.damage.is_some() {
            // The damaged bytes are saved without the zero-filled (prepared) space after
            // them, which holds nothing.
            let cut = &bytes[replay.valid_len as usize..];
            let cut = &cut[..cut.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)];
            replay.cut_saved_to = Some(save_cut(&dir, &path, replay.valid_len, cut)?);
            file.set_len(replay.valid_len)
                .map_err(|e| with_path(e, "truncate", &path))?;
            file.sync_all().map_err(|e| with_path(e, "fsync", &path))?;
            replay.truncated_bytes = len - replay.valid_len;
            replay.file_len = replay.valid_len;
        }
        replay.bytes = bytes;
        Ok(replay)
    }
}

/// Saves the bytes about to be cut off the journal to a new file next to it, durably.
fn save_cut(dir: &Path, path: &Path, offset: u64, cut: &[u8]) -> io::Result<PathBuf> {
    let base = format!("{}.cut-{offset}", path.display());
    for n in 0..1000 {
        let side = PathBuf::from(if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&side)
        {
            Ok(mut f) => {
                f.write_all(cut)
                    .map_err(|e| with_path(e, "save the damaged tail", &side))?;
                f.sync_all().map_err(|e| with_path(e, "fsync", &side))?;
                drop(f);
                sync_dir(dir)?;
                return Ok(side);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, "create", &side)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{base}: 1000 saved damaged tails already exist; clean them up"),
    ))
}

/// `fsync` on the directory, so a file created in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "fsync directory", dir))
}

impl Journal {
    /// Replays core `core_id`'s journal in `dir` with [`replay`] (creating it if missing),
    /// then opens it for appends ([`Journal::open_replayed`]) with the default
    /// [`JournalOptions`].
    ///
    /// Must run on a ringcore shard (the flusher is a task on the calling core). The replay
    /// is plain blocking I/O: `open` runs at start-up.
    pub async fn open(dir: impl AsRef<Path>, core_id: usize) -> io::Result<(Journal, Replay)> {
        Journal::open_with(dir, core_id, &JournalOptions::default()).await
    }

    /// [`Journal::open`] with `opts`.
    pub async fn open_with(
        dir: impl AsRef<Path>,
        core_id: usize,
        opts: &JournalOptions,
    ) -> io::Result<(Journal, Replay)> {
        let dir = dir.as_ref();
        let replay = replay(dir, core_id)?;
        let journal = Journal::open_replayed_with(dir, core_id, replay.valid_len, opts).await?;
        Ok((journal, replay))
    }

    /// Opens core `core_id`'s journal in `dir`, already replayed to `valid_len` bytes, for
    /// appends, without reading it again, and starts the flusher on the calling core, with
    /// the default [`JournalOptions`].
    ///
    /// Errors: `InvalidData` if the file is shorter than `valid_len` (it changed since the
    /// replay); I/O errors with the path in the message.
    pub async fn open_replayed(dir: impl AsRef<Path>, core_id: usize, valid_len: u64) -> io::Result<Journal> {
        Journal::open_replayed_with(dir, core_id, valid_len, &JournalOptions::default()).await
    }

    /// [`Journal::open_replayed`] with `opts`. The bytes past `valid_len` (replay found them
    /// all zero) count as prepared space; with preallocation on, the first step of space is
    /// prepared before this returns (a failure there starts the journal stopped, not the
    /// open: see [`Journal::on_health`]).
    pub async fn open_replayed_with(
        dir: impl AsRef<Path>,
        core_id: usize,
        valid_len: u64,
        opts: &JournalOptions,
    ) -> io::Result<Journal> {
        let path = dir.as_ref().join(file_name(core_id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(|e| with_path(e, "open", &path))?;
        let len = file.metadata().map_err(|e| with_path(e, "fstat", &path))?.len();
        if len < valid_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "journal {}: {len} bytes, but replay read {valid_len}: the file changed \
                     since it was replayed",
                    path.display()
                ),
            ));
        }
        let direct = match opts.sync {
            SyncMode::Direct => open_direct(&path, &file, valid_len).await?,
            _ => None,
        };
        let journal = Journal::start(file, path, valid_len, len, opts, direct);
        journal.prepare_initial().await;
        Ok(journal)
    }
}

/// For [`SyncMode::Direct`]: the journal opened again with `O_DIRECT` (write only), and the
/// bytes of `end`'s block before `end`, read with `O_DIRECT` too, which checks that the file
/// system takes aligned direct I/O of [`BLOCK`]s. `None`, and the journal writes its batches
/// buffered, where it does not (`EINVAL`: a file system without `O_DIRECT`, or a logical
/// block larger than 4 KiB), and where memory pages are larger than a block (a buffered
/// growth could then share a cached page with a direct write).
async fn open_direct(path: &Path, file: &File, end: u64) -> io::Result<Option<(File, Vec<u8>)>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if ringcore_runtime::fs::page_size() as u64 > BLOCK {
        return Ok(None);
    }
    let refused = |e: &io::Error| e.raw_os_error() == Some(libc::EINVAL);
    let reader = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if refused(&e) => return Ok(None),
        Err(e) => return Err(with_path(e, "open with O_DIRECT", path)),
    };
    let from = block_start(end);
    let want = (end - from) as usize;
    let mut block = AlignedBuf::with_capacity(BLOCK as usize);
    block.resize(BLOCK as usize, 0);
    let mut got = 0;
    while got < want {
        // (Blocking I/O at open, like the replay before it.)
        match reader.read_at(&mut block.as_mut_slice()[got..], from + got as u64) {
            Ok(0) => {
                return Err(with_path(
                    io::ErrorKind::UnexpectedEof.into(),
                    "read the last block",
                    path,
                ))
            }
            Ok(n) => got += n,
            Err(e) if refused(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(with_path(e, "read the last block", path)),
        }
    }
    let tail = block[..want].to_vec();
    let direct = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await
    {
        Ok(f) => f,
        Err(e) if refused(&e) => return Ok(None),
        Err(e) => return Err(with_path(e, "open with O_DIRECT", path)),
    };
    // The replay read the file through the page cache; a direct write over cached pages is
    // handed to a kernel worker thread. (A hint: its failure costs only speed.)
    let _ = file.drop_cache(0, 0);
    Ok(Some((direct, tail)))
}
