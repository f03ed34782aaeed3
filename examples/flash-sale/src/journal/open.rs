//! `Journal::open`: create or replay the file, cut a damaged tail (keeping a copy of it).

use std::io;
use std::path::{Path, PathBuf};

use ringcore_runtime::fs::{File, OpenOptions};

use super::format::{self, Damage, HeaderCheck, HEADER_LEN};
use super::Journal;

/// What [`Journal::open`] found in the file.
#[derive(Debug, Default)]
pub struct Replay {
    /// The payloads of the valid records, in the order they were appended.
    pub records: Vec<Vec<u8>>,
    /// Length of the valid prefix: the file's length after `open`.
    pub valid_len: u64,
    /// Bytes cut off the end of the file (0 when the file was intact).
    pub truncated_bytes: u64,
    /// Why bytes were cut, if they were.
    pub damage: Option<Damage>,
    /// Where the cut bytes were saved before the file was truncated (none for an intact file
    /// or a cut-short header, which holds no records).
    pub cut_saved_to: Option<PathBuf>,
}

/// The file name of core `core_id`'s journal.
pub fn file_name(core_id: usize) -> String {
    format!("journal-{core_id}.log")
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("journal {}: {what}: {e}", path.display()))
}

impl Journal {
    /// Opens (creating it and `dir` if missing) core `core_id`'s journal `dir/journal-<core>.log`,
    /// replays it, and starts the flusher.
    ///
    /// The valid records come back in [`Replay::records`]. If the file ends in a damaged record
    /// (cut short, bad length or bad checksum), or any record fails, the file is cut at the
    /// first bad record: the bytes from there on are first saved, durably, to
    /// `journal-<core>.log.cut-<offset>[-n]` next to it ([`Replay::cut_saved_to`]), then the
    /// journal is truncated and synced, and appends continue from the valid end.
    ///
    /// Errors: `InvalidData` for a file that is not a journal or has another format version
    /// (the file is left untouched); I/O errors with the path in the message.
    ///
    /// Must run on a ringcore shard (the flusher is a task on the calling core). Creating
    /// `dir` is a plain blocking call: `open` runs at start-up.
    pub async fn open(dir: impl AsRef<Path>, core_id: usize) -> io::Result<(Journal, Replay)> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| with_path(e, "create directory", dir))?;
        let path = dir.join(file_name(core_id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&path)
            .await
            .map_err(|e| with_path(e, "open", &path))?;
        let replay = replay(&file, dir, &path).await?;
        let journal = Journal::start(file, path, replay.valid_len);
        Ok((journal, replay))
    }
}

async fn replay(file: &File, dir: &Path, path: &Path) -> io::Result<Replay> {
    let len = file.metadata().map_err(|e| with_path(e, "fstat", path))?.len();
    let cap = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "journal larger than memory"))?;
    let (res, bytes) = file.read_exact_at(Vec::with_capacity(cap), 0).await;
    res.map_err(|e| with_path(e, "read", path))?;

    let mut replay = Replay::default();
    match format::check_header(&bytes) {
        HeaderCheck::Valid => {}
        HeaderCheck::Partial => {
            // New, or its creation was cut short: (re)write the header, make the file's
            // directory entry durable too, and start empty.
            if len > 0 {
                replay.damage = Some(Damage::TornHeader { len });
                replay.truncated_bytes = len;
            }
            let (res, _) = file.write_all_at(format::header().to_vec(), 0).await;
            res.map_err(|e| with_path(e, "write header", path))?;
            file.sync_all().await.map_err(|e| with_path(e, "fsync", path))?;
            sync_dir(dir).await?;
            replay.valid_len = HEADER_LEN;
            return Ok(replay);
        }
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
    }

    let body = &bytes[HEADER_LEN as usize..];
    let scan = format::scan(body, HEADER_LEN);
    replay.records = scan.records.iter().map(|r| body[r.clone()].to_vec()).collect();
    replay.valid_len = HEADER_LEN + scan.valid as u64;
    replay.damage = scan.damage;
    if replay.valid_len < len {
        let cut = bytes[replay.valid_len as usize..].to_vec();
        replay.cut_saved_to = Some(save_cut(dir, path, replay.valid_len, cut).await?);
        file.set_len(replay.valid_len)
            .await
            .map_err(|e| with_path(e, "truncate", path))?;
        file.sync_all().await.map_err(|e| with_path(e, "fsync", path))?;
        replay.truncated_bytes = len - replay.valid_len;
    }
    Ok(replay)
}

/// Saves the bytes about to be cut off the journal to a new file next to it, durably.
async fn save_cut(dir: &Path, path: &Path, offset: u64, cut: Vec<u8>) -> io::Result<PathBuf> {
    let base = format!("{}.cut-{offset}", path.display());
    for n in 0..1000 {
        let side = PathBuf::from(if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        match OpenOptions::new().write(true).create_new(true).open(&side).await {
            Ok(f) => {
                let (res, _) = f.write_all_at(cut, 0).await;
                res.map_err(|e| with_path(e, "save the damaged tail", &side))?;
                f.sync_all().await.map_err(|e| with_path(e, "fsync", &side))?;
                f.close().await.map_err(|e| with_path(e, "close", &side))?;
                sync_dir(dir).await?;
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
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .await
        .map_err(|e| with_path(e, "open directory", dir))?;
    d.sync_all()
        .await
        .map_err(|e| with_path(e, "fsync directory", dir))?;
    d.close().await.map_err(|e| with_path(e, "close directory", dir))
}
